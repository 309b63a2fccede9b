// The chunked head (QwenVLModel.HeadLogProbs) against the plain one: LmHead, then LogProbs.FromLogits and
// Entropy.FromLogits on the whole [B, A, V] logits. Same maths, other GEMM shapes (a chunk of positions at a time), so
// in fp32 the log-probs and entropy agree to 1e-5 and the gradients of a weighted sum (O(1) on the tiny models) to
// 1e-4, for a tied lm_head (Qwen2.5-VL fixture: the gradient reaches embed_tokens) and an untied one (Qwen2-VL), with
// chunk sizes that do and do not divide the positions, and a temperature other than 1.
using LmmR1.Algorithms;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public class HeadLogProbsTests
{
    [Theory]
    [InlineData("qwen25vl-tiny", 4, 0.7)]
    [InlineData("qwen25vl-tiny", 1000, 1.0)]
    [InlineData("qwen2vl-tiny", 5, 1.3)]
    public void ChunkedHeadGivesThePlainHeadsLogProbsEntropyAndGradients(string fixture, long chunkRows, double temperature)
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
                var (l, e) = model.HeadLogProbs(hidden, labels, temperature, entropy: true, chunkRows: chunkRows);
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
