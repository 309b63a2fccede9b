// Padding-free packing (--packing_samples, issue 13 item 3) on the CPU: the rows of a micro-batch as one sequence
// with per-row causal attention (one attention call per segment here; flash varlen on CUDA, checked by
// bench/gpu/packing_check.sh) and per-row M-RoPE positions must give the padded forward's log-probs, critic values,
// loss and gradients. Both are fp32: they differ in which zeros are added (padded keys get exp(finfo.min) = 0) and in
// GEMM shapes, so log-probs, values and the loss agree to 1e-5 and gradients (O(1) on the tiny model) to 1e-4; a whole
// training step with and without packing logs the same metrics to 1e-4 (relative for magnitudes above 1).
using LmmR1.Algorithms;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using LmmR1.Training.Ppo;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public class PackingTests(ITestOutputHelper output)
{
    const double Temperature = 0.8;

    [Fact]
    public void ACollatedMicroBatchKeepsItsPackingUsableAfterCollateReturns()
    {
        // Collate builds the packing inside its own dispose scope; the cu_seqlens tensor (what flash varlen reads on
        // CUDA) must survive that scope and belong to the Experience.
        var items = new[] { (2, 3), (4, 1) }.Select((pr, i) => new ExperienceItem
        {
            PromptIndex = i, SampleIndex = 0,
            PromptIds = Enumerable.Range(1, pr.Item1).Select(x => (long)x).ToArray(),
            ResponseIds = Enumerable.Range(1, pr.Item2).Select(x => (long)x).ToArray(),
        }).ToList();
        using var e = Experience.Collate(items, torch.CPU, padTokenId: 0, pack: true);
        Assert.NotNull(e.Packing);
        Assert.False(e.Packing!.CuSeqLens.IsInvalid);
        Assert.Equal(new[] { 0, 5, 10 }, e.Packing.CuSeqLens.data<int>().ToArray());
    }

    [Fact]
    public void PackingKeepsTheRealTokensInRowOrderAndFindsTheActionSlots()
    {
        // Rows of 2 and 3 real tokens, left-padded to 3: [_, a, b] and [c, d, e].
        using var ids = torch.tensor(new long[] { 0, 11, 12, 13, 14, 15 }, [2, 3]);
        using var mask = torch.tensor(new long[] { 0, 1, 1, 1, 1, 1 }, [2, 3]);
        using var packed = PackedSequences.FromLengths([2, 3], torch.CPU);
        using var flat = packed.Pack(ids, mask);
        Assert.Equal(new long[] { 1, 5 }, flat.shape);
        Assert.Equal(new long[] { 11, 12, 13, 14, 15 }, flat.data<long>().ToArray());
        Assert.Equal(new[] { 0, 2, 5 }, packed.CuSeqLens.data<int>().ToArray());
        // A = 2 slots: row 0 predicts its last token from its first (packed 0; its first slot is padding, clamped to
        // the row start); row 1 predicts d, e from c, d (packed 2, 3).
        using var index = packed.ActionSlotIndex(2, torch.CPU);
        Assert.Equal(new long[] { 0, 0, 2, 3 }, index.data<long>().ToArray());
        // Positions [3, B, S] pack plane by plane.
        using var pos = torch.arange(18, ScalarType.Int64).view(3, 2, 3);
        using var flatPos = packed.Pack(pos, mask);
        Assert.Equal(new long[] { 3, 1, 5 }, flatPos.shape);
        Assert.Equal(new long[] { 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17 }, flatPos.data<long>().ToArray());
    }

    [Theory]
    [InlineData(false, AttentionImpl.Sdpa, 0)]
    [InlineData(true, AttentionImpl.Sdpa, 0)]
    [InlineData(true, AttentionImpl.Sdpa, 1)]      // selective: only the first layer recomputed
    [InlineData(false, AttentionImpl.Eager, 0)]
    public void PackedLogProbsLossAndGradientsEqualThePaddedOnes(bool checkpointing, AttentionImpl impl, int checkpointLayers)
    {
        var c = TinyRl.Config(TestPaths.NewTempDir("packing"));
        using var model = QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU);
        model.Attention = impl;
        model.GradientCheckpointing = checkpointing;
        model.CheckpointLayers = checkpointLayers;
        var (items, visions) = VisionSharingTests.Items(c, seed: 5);
        try
        {
            using var scope = torch.NewDisposeScope();
            using var padded = Experience.Collate(items, torch.CPU, padTokenId: 0);
            using var packed = Experience.Collate(items, torch.CPU, padTokenId: 0, pack: true);
            Assert.Null(padded.Packing);
            Assert.Equal(items.Sum(i => i.TotalLength), packed.Packing!.TotalTokens);
            Assert.True(packed.Packing.TotalTokens < padded.Sequences.numel(), "the batch has padding to drop");
            using var weights = torch.randn(padded.ActionMask.shape, generator: new torch.Generator(9));

            (Tensor Lp, Tensor Entropy, Tensor Loss, Dictionary<string, Tensor> Grads) Run(Experience e)
            {
                var (lp, entropy) = PolicyForward.ActionLogProbsAndEntropy(model, e, Temperature, entropyGrad: true);
                var loss = (lp * weights).masked_fill(e.ActionMask.logical_not(), 0).sum() - 0.1 * Entropy.MaskedMean(entropy, e.ActionMask);
                var grads = VisionSharingTests.GradsOf(model, loss);
                QwenVLModel.ReleaseBackwardHandles();
                return (lp, entropy, loss, grads);
            }
            var expected = Run(padded);
            var actual = Run(packed);

            double lpDiff = TensorAssert.Close(expected.Lp, actual.Lp, 1e-5, "log-probs");
            TensorAssert.Close(expected.Entropy.masked_fill(padded.ActionMask.logical_not(), 0),
                actual.Entropy.masked_fill(packed.ActionMask.logical_not(), 0), 1e-5, "entropy");
            Assert.True(Math.Abs(expected.Loss.item<float>() - actual.Loss.item<float>()) <= 1e-5, "loss");
            Assert.Equal(expected.Grads.Keys.Order(), actual.Grads.Keys.Order());
            double worst = 0;
            foreach (var (name, g) in expected.Grads) worst = Math.Max(worst, TensorAssert.Close(g, actual.Grads[name], 1e-4, name));
            output.WriteLine($"{impl}, checkpointing {checkpointing}: max |Δ log-prob| {lpDiff:G3}, max |Δ grad| {worst:G3}");
        }
        finally
        {
            foreach (var v in visions) v.Dispose();
        }
    }

    [Fact]
    public void PackedCriticValuesEqualThePaddedOnes()
    {
        var c = TinyRl.Config(TestPaths.NewTempDir("packing-critic"));
        using var critic = CriticModel.WithNewHead(QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU), seed: 3);
        var (items, visions) = VisionSharingTests.Items(c, seed: 6);
        try
        {
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            using var padded = Experience.Collate(items, torch.CPU, padTokenId: 0);
            using var packed = Experience.Collate(items, torch.CPU, padTokenId: 0, pack: true);
            var expected = critic.Values(padded).masked_fill(padded.ActionMask.logical_not(), 0);
            var actual = critic.Values(packed).masked_fill(packed.ActionMask.logical_not(), 0);
            TensorAssert.Close(expected, actual, 1e-5, "values");
        }
        finally
        {
            foreach (var v in visions) v.Dispose();
        }
    }

    [Fact]
    public void ATrainingStepWithPackingLogsThePaddedStepsMetrics()
    {
        Dictionary<string, double> Step(bool pack)
        {
            var config = TinyRl.Config(TestPaths.NewTempDir(pack ? "step-packed" : "step-padded"),
                new AlgorithmSettings { Estimator = AdvantageEstimator.Gae, InitKlCoef = 0.01 });
            config = config with
            {
                Model = config.Model with { CriticPretrain = TinyRl.Model, PackingSamples = pack },
                Optim = config.Optim with { MaxGlobalSteps = 1 },
            };
            var (cfg, _) = config.Resolve();
            cfg.Validate();
            using var models = PpoModels.Load(cfg, torch.CPU);
            var sink = new MemorySink();
            using var trainer = new PpoTrainer(cfg, models, TinyRl.Processor(cfg), TinyRl.Data(cfg), null, new CharacterReward(), sink);
            trainer.Fit();
            return sink.Rows.Single().Metrics;
        }
        var padded = Step(false);
        var packed = Step(true);
        var keys = padded.Keys.Where(k => !k.StartsWith("time/", StringComparison.Ordinal) && !k.Contains("seconds", StringComparison.Ordinal)
                                          && !k.Contains("per_second", StringComparison.Ordinal)).Order().ToList();
        Assert.Contains("train/policy_loss", keys);
        Assert.Contains("train/critic_loss", keys);
        foreach (var k in keys)
        {
            Assert.True(packed.ContainsKey(k), k);
            double a = padded[k], b = packed[k];
            if (double.IsNaN(a)) { Assert.True(double.IsNaN(b), k); continue; }
            Assert.True(Math.Abs(a - b) <= 1e-4 * Math.Max(1, Math.Abs(a)), $"{k}: padded {a:G9}, packed {b:G9}");
        }
        output.WriteLine(string.Join(", ", keys.Select(k => $"{k} {padded[k]:G6}/{packed[k]:G6}")));
    }
}
