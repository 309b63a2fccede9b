// The chunked head (QwenVLModel.HeadLogProbs) against the plain one: LmHead, then LogProbs.FromLogits and
// Entropy.FromLogits on the whole [B, A, V] logits, differentiated by autograd. Same maths, other GEMM shapes (a chunk
// of positions at a time forward, a chunk of vocabulary columns at a time in the hand-written backward), so in fp32 the
// log-probs and entropy agree to 1e-5 and the gradients of a weighted sum (O(1) on the tiny models) to 1e-4, for a tied
// lm_head (Qwen2.5-VL fixture: the gradient reaches embed_tokens) and an untied one (Qwen2-VL), with chunk sizes that do
// and do not divide the positions and the vocabulary (1,024 on the fixtures), and temperatures other than 1; the
// gradient also adds to one already in .grad (gradient accumulation), and a frozen head gets none.
using LmmR1.Algorithms;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public class HeadLogProbsTests
{
    [Theory]
    [InlineData("qwen25vl-tiny", 4, 0, 0.7)]
    [InlineData("qwen25vl-tiny", 1000, 300, 1.0)]
    [InlineData("qwen25vl-tiny", 3, 1, 1.0)]
    [InlineData("qwen2vl-tiny", 5, 256, 1.3)]
    [InlineData("qwen2vl-tiny", 7, 1023, 1.0)]
    public void ChunkedHeadGivesThePlainHeadsLogProbsEntropyAndGradients(string fixture, long chunkRows, long chunkColumns, double temperature)
    {
        using var model = QwenVLModel.Load(TestPaths.Fixture(fixture), ScalarType.Float32, torch.CPU);
        using var scope = torch.NewDisposeScope();
        var gen = new torch.Generator(11);
        long b = 3, a = 7, h = model.Config.Text.HiddenSize, v = model.Config.Text.VocabSize;
        var hiddenInit = torch.randn([b, a, h], generator: gen);
        var labels = torch.randint(0, v, [b, a], generator: gen);
        var weights = torch.randn([b, a], generator: gen);

        (Tensor Lp, Tensor Entropy, Tensor HiddenGrad, Tensor WeightGrad) Run(bool chunked)
        {
            model.zero_grad();
            var hidden = hiddenInit.clone().requires_grad_(true);
            Tensor lp, entropy;
            if (chunked)
            {
                var (l, e) = model.HeadLogProbs(hidden, labels, temperature, entropy: true, chunkRows: chunkRows, chunkColumns: chunkColumns);
                lp = l; entropy = e!;
            }
            else
            {
                var logits = model.LmHead(hidden);
                lp = LogProbs.FromLogits(logits, labels, temperature);
                using (torch.no_grad()) entropy = Entropy.FromLogits(logits.detach());
            }
            (lp * weights).sum().backward();
            QwenVLModel.ReleaseBackwardHandles();
            return (lp.detach(), entropy, hidden.grad!.clone(), model.LmHeadWeight.grad!.clone());
        }
        var plain = Run(chunked: false);
        var chunked = Run(chunked: true);

        Assert.Equal(new[] { b, a }, chunked.Lp.shape);
        Assert.Equal(ScalarType.Float32, chunked.Lp.dtype);
        TensorAssert.Close(plain.Lp, chunked.Lp, 1e-5, "log-probs");
        TensorAssert.Close(plain.Entropy, chunked.Entropy, 1e-5, "entropy");
        TensorAssert.Close(plain.HiddenGrad, chunked.HiddenGrad, 1e-4, "d/d hidden");
        TensorAssert.Close(plain.WeightGrad, chunked.WeightGrad, 1e-4, "d/d lm_head weight");
        Assert.True(plain.WeightGrad.abs().max().item<float>() > 0, "the weight gets a gradient");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void TheHeadsGradientAddsToAnAccumulatedOneAndAFrozenHeadGetsNone(bool trainHead)
    {
        using var model = QwenVLModel.Load(TestPaths.Fixture("qwen2vl-tiny"), ScalarType.Float32, torch.CPU);
        using var scope = torch.NewDisposeScope();
        var gen = new torch.Generator(5);
        long h = model.Config.Text.HiddenSize, v = model.Config.Text.VocabSize;
        var hiddenInit = torch.randn([2, 6, h], generator: gen);
        var labels = torch.randint(0, v, [2, 6], generator: gen);
        var w = model.LmHeadWeight;
        w.requires_grad_(trainHead);
        model.zero_grad();
        Tensor Backward(bool chunked)
        {
            var hidden = hiddenInit.clone().requires_grad_(true);
            var lp = chunked ? model.HeadLogProbs(hidden, labels, 0.9, chunkRows: 5, chunkColumns: 200).LogProbs
                             : LogProbs.FromLogits(model.LmHead(hidden), labels, 0.9);
            lp.sum().backward();
            QwenVLModel.ReleaseBackwardHandles();
            return hidden.grad!.clone();
        }
        var plainHidden = Backward(chunked: false);
        var plainW = trainHead ? w.grad!.clone() : null;
        var chunkedHidden = Backward(chunked: true);                   // on top of the plain head's gradient
        TensorAssert.Close(plainHidden, chunkedHidden, 1e-4, "d/d hidden");
        if (trainHead) TensorAssert.Close(plainW!.mul(TorchScalars.Two), w.grad!, 1e-4, "accumulated d/d lm_head weight");
        else Assert.Null(w.grad);
        w.requires_grad_(true);
    }

    [Fact]
    public void WithoutGradTheChunkedHeadBuildsNoGraphAndNeedsNoEntropy()
    {
        using var model = QwenVLModel.Load(TestPaths.Fixture("qwen25vl-tiny"), ScalarType.Float32, torch.CPU);
        using var scope = torch.NewDisposeScope();
        var gen = new torch.Generator(3);
        var hidden = torch.randn([2, 5, model.Config.Text.HiddenSize], generator: gen);
        var labels = torch.randint(0, model.Config.Text.VocabSize, [2, 5], generator: gen);
        using var noGrad = torch.no_grad();
        var (lp, entropy) = model.HeadLogProbs(hidden, labels, 1.0, chunkRows: 3);
        Assert.Null(entropy);
        Assert.False(lp.requires_grad);
        TensorAssert.Close(LogProbs.FromLogits(model.LmHead(hidden), labels), lp, 1e-5, "log-probs");
        // Log-probs of a distribution: ≤ 0.
        Assert.True(lp.max().item<float>() <= 0);
    }

    [Fact]
    public void MismatchedLabelsOrTemperatureAreRefused()
    {
        using var model = QwenVLModel.Load(TestPaths.Fixture("qwen25vl-tiny"), ScalarType.Float32, torch.CPU);
        using var hidden = torch.zeros([2, 5, model.Config.Text.HiddenSize]);
        using var labels = torch.zeros([2, 4], ScalarType.Int64);
        Assert.Contains("do not match", Assert.Throws<ArgumentException>(() => model.HeadLogProbs(hidden, labels, 1.0)).Message);
        using var ok = torch.zeros([2, 5], ScalarType.Int64);
        Assert.Contains("temperature", Assert.Throws<ArgumentException>(() => model.HeadLogProbs(hidden, ok, 0.0)).Message);
    }
}
