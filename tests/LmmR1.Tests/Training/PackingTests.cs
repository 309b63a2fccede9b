// Padding-free packing (--packing_samples, issue 13 item 3) on the CPU: the rows of a micro-batch as one sequence
// with per-row causal attention (one attention call per segment here; flash varlen on CUDA, checked by
// bench/gpu/packing_check.sh) and per-row M-RoPE positions must give the padded forward's log-probs, critic values,
// loss and gradients. Both are fp32: they differ in which zeros are added (padded keys get exp(finfo.min) = 0) and in
// GEMM shapes, so log-probs, values and the loss agree to 1e-5 and gradients (O(1) on the tiny model) to 1e-4; a whole
// training step with and without packing logs the same metrics to 1e-4 (relative for magnitudes above 1).
// --packing_share_prompts (a prompt once per group, its samples' responses attending to it) is held to the same
// tolerances against the same padded reference: it computes the same sums in another order.
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

    [Fact]
    public void SharedPromptsArePackedOncePerGroupWithEachResponseAfterItsPrompt()
    {
        // Rows (prompt, response): A = [1 2 | 5], B = [3 | 6 7], A' = [1 2 | 8 9] (A's prompt again), left-padded to S = 4:
        //   A  [_, 1, 2, 5]    B  [_, 3, 6, 7]    A' [1, 2, 8, 9]
        using var ids = torch.tensor(new long[] { 0, 1, 2, 5, 0, 3, 6, 7, 1, 2, 8, 9 }, [3, 4]);
        using var mask = torch.tensor(new long[] { 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1 }, [3, 4]);
        using var packed = PackedSequences.FromRows([new PackedRow(0, 2, 1), new PackedRow(1, 1, 2), new PackedRow(0, 2, 2)], torch.CPU);
        Assert.True(packed.SharesPrompts);
        // Layout: A's prompt, A's response, A''s response, then B whole: [1 2 | 5 | 8 9 | 3 6 7].
        using var flat = packed.Pack(ids, mask);
        Assert.Equal(new long[] { 1, 2, 5, 8, 9, 3, 6, 7 }, flat.data<long>().ToArray());
        Assert.Equal(8, packed.TotalTokens);
        // Query segments: prompt (2), response (1), response (2), B (3); keys: 2, 2 + 1, 2 + 2, 3.
        Assert.Equal(new[] { 0, 2, 3, 5, 8 }, packed.CuSeqLens.data<int>().ToArray());
        Assert.Equal(new[] { 0, 2, 5, 9, 12 }, packed.CuSeqLensK.data<int>().ToArray());
        Assert.Equal((3, 4, 12L), (packed.MaxQueryLength, packed.MaxKeyLength, packed.KeyTokens));
        // A = 2 slots. A predicts 5 from its prompt's last token (packed 1); its first slot is padding (row start, 0).
        // B predicts 6, 7 from 3, 6 (packed 5, 6). A' predicts 8 from the shared prompt's last token (1), 9 from 8 (3).
        using var index = packed.ActionSlotIndex(2, torch.CPU);
        Assert.Equal(new long[] { 0, 1, 5, 6, 1, 3 }, index.data<long>().ToArray());
        Assert.Equal(new[] { 0, 1 }, packed.PromptRows());
    }

    [Fact]
    public void RowsGroupByIdenticalPromptTokensAndImages()
    {
        ExperienceItem Item(long[] prompt, VisionInput? v) => new() { PromptIndex = 0, SampleIndex = 0, PromptIds = prompt, ResponseIds = [7], Vision = v };
        using var v1 = new VisionInput { PixelValues = torch.zeros(4, 2), ImageGridThw = torch.tensor(new long[] { 1, 2, 2 }, [1, 3]) };
        long[] p = [1, 2, 3];
        var rows = Experience.PromptGroups([Item(p, null), Item([1, 2, 3], null), Item(p, v1), Item([1, 2], null), Item([1, 2, 3], v1)]);
        // Equal tokens group (even as different arrays); the same tokens with other images, or other tokens, do not.
        Assert.Equal(new[] { 0, 0, 1, 2, 1 }, rows.Select(r => r.Group).ToArray());
    }

    [Theory]
    [InlineData(false, AttentionImpl.Sdpa, 0, false)]
    [InlineData(true, AttentionImpl.Sdpa, 0, false)]
    [InlineData(true, AttentionImpl.Sdpa, 1, false)]      // selective: only the first layer recomputed
    [InlineData(false, AttentionImpl.Eager, 0, false)]
    [InlineData(false, AttentionImpl.Sdpa, 0, true)]       // shared prompts
    [InlineData(true, AttentionImpl.Sdpa, 0, true)]
    [InlineData(false, AttentionImpl.Eager, 0, true)]
    public void PackedLogProbsLossAndGradientsEqualThePaddedOnes(bool checkpointing, AttentionImpl impl, int checkpointLayers, bool share)
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
            using var packed = Experience.Collate(items, torch.CPU, padTokenId: 0, pack: true, sharePrompts: share);
            Assert.Null(padded.Packing);
            Assert.Equal(share, packed.Packing!.SharesPrompts);
            // The rows: prompt 0 three times, prompt 1 twice, the text prompt once.
            long promptsAgain = share ? 2L * items[0].PromptIds.Length + items[1].PromptIds.Length : 0;
            Assert.Equal(items.Sum(i => i.TotalLength) - promptsAgain, packed.Packing.TotalTokens);
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
            output.WriteLine($"{impl}, checkpointing {checkpointing}, shared prompts {share}: max |Δ log-prob| {lpDiff:G3}, max |Δ grad| {worst:G3}");
        }
        finally
        {
            foreach (var v in visions) v.Dispose();
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PackedCriticValuesEqualThePaddedOnes(bool share)
    {
        var c = TinyRl.Config(TestPaths.NewTempDir("packing-critic"));
        using var critic = CriticModel.WithNewHead(QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU), seed: 3);
        var (items, visions) = VisionSharingTests.Items(c, seed: 6);
        try
        {
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            using var padded = Experience.Collate(items, torch.CPU, padTokenId: 0);
            using var packed = Experience.Collate(items, torch.CPU, padTokenId: 0, pack: true, sharePrompts: share);
            var expected = critic.Values(padded).masked_fill(padded.ActionMask.logical_not(), 0);
            var actual = critic.Values(packed).masked_fill(packed.ActionMask.logical_not(), 0);
            TensorAssert.Close(expected, actual, 1e-5, "values");
        }
        finally
        {
            foreach (var v in visions) v.Dispose();
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ATrainingStepWithPackingLogsThePaddedStepsMetrics(bool share)
    {
        // With shared prompts the update's micro-batches are cut from a shuffle of prompt groups, not of samples; one
        // micro-batch of the whole rollout makes both orders the same sums, so the metrics must agree.
        Dictionary<string, double> Step(bool pack)
        {
            var config = TinyRl.Config(TestPaths.NewTempDir(pack ? "step-packed" : "step-padded"),
                new AlgorithmSettings { Estimator = AdvantageEstimator.Gae, InitKlCoef = 0.01 });
            config = config with
            {
                Model = config.Model with { CriticPretrain = TinyRl.Model, PackingSamples = pack, PackingSharePrompts = pack && share },
                Optim = config.Optim with { MaxGlobalSteps = 1, MicroTrainBatchSize = share ? 4 : config.Optim.MicroTrainBatchSize },
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

    [Fact]
    public void SharedPromptMicroBatchesKeepEachPromptsSamplesTogether()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("share-order"));
        config = config with
        {
            Model = config.Model with { PackingSamples = true, PackingSharePrompts = true },
        };
        var (cfg, _) = config.Resolve();
        cfg.Validate();
        using var models = PpoModels.Load(cfg, torch.CPU);
        using var trainer = new PpoTrainer(cfg, models, TinyRl.Processor(cfg), TinyRl.Data(cfg), null, new CharacterReward(), new MemorySink());
        // 4 prompts × 2 samples in micro-batches of 2 (the config's --micro_train_batch_size).
        var items = Enumerable.Range(0, 8).Select(i => new ExperienceItem { PromptIndex = i / 2, SampleIndex = i % 2, PromptIds = [1], ResponseIds = [2] }).ToList();
        var steps = trainer.OptimizerSteps(items, step: 3, epoch: 1);
        var micros = steps.SelectMany(g => g).ToList();
        Assert.Equal(4, micros.Count);
        foreach (var m in micros) Assert.Equal(items[(int)m[0]].PromptIndex, items[(int)m[1]].PromptIndex);
        Assert.Equal(Enumerable.Range(0, 8).Select(i => (long)i), micros.SelectMany(m => m).Order());
        // Seeded: the same step and epoch give the same order, another epoch another one (4! orders of the groups).
        Assert.Equal(micros.SelectMany(m => m), trainer.OptimizerSteps(items, 3, 1).SelectMany(g => g).SelectMany(m => m));
        Assert.NotEqual(micros.SelectMany(m => m), trainer.OptimizerSteps(items, 3, 2).SelectMany(g => g).SelectMany(m => m));
    }
}
