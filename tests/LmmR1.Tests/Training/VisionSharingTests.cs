// Each image through a vision tower once per prompt, not once per sample (issue 13 item 4). The shared forward of a
// micro-batch (Experience.ImageFeatures: one tower pass over the distinct prompts' images, rows gathered from it) must
// give the per-sample path's log-probs, loss and gradients — the per-sample path, written out here as the code ran it
// before, concatenates every row's own copy of its pixels and runs the tower over all of them. Both are fp32 on the
// CPU and differ only in how many copies the tower sees and in the order gradients are summed, so log-probs and the
// loss agree to 1e-5 and gradients (O(1) magnitudes on the tiny model) to 1e-4. The trainer-level tests count the
// images each model's tower encoded in one step (QwenVLModel.VisionTowerItems) against the exact expected number.
using LmmR1.Algorithms;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using LmmR1.Training.Ppo;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public class VisionSharingTests(ITestOutputHelper output)
{
    const double Temperature = 0.9;

    /// <summary>Two image prompts and the text prompt of the example data, processed; samples interleaved (not
    /// prompt-major) with random responses of different lengths.</summary>
    internal static (List<ExperienceItem> Items, List<VisionInput> Visions) Items(PpoConfig c, long seed)
    {
        var processor = TinyRl.Processor(c);
        var data = TinyRl.Data(c);
        var prompts = Enumerable.Range(0, data.Count).Select(i => data[i]).ToList();
        var processed = processor.ProcessMany(prompts);
        Assert.Equal(2, processed.Count(p => p.PixelValues is not null));
        var visions = processed.Select(p => p.PixelValues is null ? null
            : new VisionInput { PixelValues = p.PixelValues.DetachFromDisposeScope(), ImageGridThw = p.ImageGridThw!.DetachFromDisposeScope() }).ToList();
        var rng = new Random((int)seed);
        // Order: image prompt, other image prompt, text, first again, second again, first a third time.
        int[] imageIdx = Enumerable.Range(0, prompts.Count).Where(i => visions[i] is not null).ToArray();
        int text = Enumerable.Range(0, prompts.Count).First(i => visions[i] is null);
        int[] order = [imageIdx[0], imageIdx[1], text, imageIdx[0], imageIdx[1], imageIdx[0]];
        var items = order.Select((p, k) => new ExperienceItem
        {
            PromptIndex = p, SampleIndex = k,
            PromptIds = processed[p].InputIds,
            ResponseIds = Enumerable.Range(0, 2 + rng.Next(6)).Select(_ => (long)rng.Next(3, 200)).ToArray(),
            Vision = visions[p],
        }).ToList();
        return (items, visions.Where(v => v is not null).Select(v => v!).ToList());
    }

    /// <summary>The per-sample path as it ran before: every row's own pixels concatenated, one tower pass over all.</summary>
    static Tensor PerSampleLogProbs(QwenVLModel model, Experience e)
    {
        using var scope = torch.NewDisposeScope();
        var pixels = torch.cat(e.Items.Where(i => i.Vision is not null).Select(i => i.Vision!.PixelValues).ToArray(), 0);
        long a = e.NumActions;
        var o = model.Forward(e.Sequences, e.AttentionMask, pixels, e.ImageGridThw, logitsForLast: 0);
        var logits = model.LmHead(ActionSlots.Predicting(o.Hidden, a));
        return LogProbs.ForActions(logits, ActionSlots.Actions(e.Sequences, a), e.ActionMask, Temperature).MoveToOuterDisposeScope();
    }

    internal static Dictionary<string, Tensor> GradsOf(QwenVLModel model, Tensor loss)
    {
        foreach (var p in model.parameters()) p.grad = null;
        loss.backward();
        var result = new Dictionary<string, Tensor>();
        foreach (var (name, p) in model.named_parameters())
        {
            using var g = p.grad;
            if (g is not null) result[name] = g.detach().clone();
        }
        return result;
    }

    [Fact]
    public void SharedVisionForwardGivesThePerSampleLogProbsLossAndGradientsWithOneTowerPassPerPrompt()
    {
        var c = TinyRl.Config(TestPaths.NewTempDir("vision-share"));
        using var model = QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU);
        var (items, visions) = Items(c, seed: 7);
        try
        {
            using var scope = torch.NewDisposeScope();
            using var e = Experience.Collate(items, torch.CPU, padTokenId: 0);
            Assert.Equal(2, e.Visions.Count);
            Assert.Equal(5, e.RowVisions.Count);
            using var weights = torch.randn(e.ActionMask.shape, generator: new torch.Generator(3));

            long before = model.VisionTowerItems;
            var shared = PolicyForward.ActionLogProbs(model, e, Temperature);
            long sharedImages = model.VisionTowerItems - before;
            var sharedLoss = (shared * weights).masked_fill(e.ActionMask.logical_not(), 0).sum();
            var sharedGrads = GradsOf(model, sharedLoss);

            before = model.VisionTowerItems;
            var perSample = PerSampleLogProbs(model, e);
            long perSampleImages = model.VisionTowerItems - before;
            var perSampleLoss = (perSample * weights).masked_fill(e.ActionMask.logical_not(), 0).sum();
            var perSampleGrads = GradsOf(model, perSampleLoss);

            // One tower pass over the 2 distinct images, where the per-sample path encoded all 5 rows' copies.
            Assert.Equal(2, sharedImages);
            Assert.Equal(5, perSampleImages);

            double lpDiff = TensorAssert.Close(perSample, shared, 1e-5, "log-probs");
            Assert.True(Math.Abs(perSampleLoss.item<float>() - sharedLoss.item<float>()) <= 1e-5, "loss");
            Assert.Equal(perSampleGrads.Keys.Order(), sharedGrads.Keys.Order());
            Assert.Contains(sharedGrads.Keys, k => k.StartsWith("visual.", StringComparison.Ordinal));   // the tower trains
            double worst = 0, largest = 0;
            foreach (var (name, g) in perSampleGrads)
            {
                worst = Math.Max(worst, TensorAssert.Close(g, sharedGrads[name], 1e-4, name));
                largest = Math.Max(largest, g.abs().max().item<float>());
            }
            output.WriteLine($"max |Δ log-prob| {lpDiff:G3}, max |Δ grad| {worst:G3} (largest |grad| {largest:G3})");
            Assert.True(largest > 1e-3, "gradients are not trivially zero");
        }
        finally
        {
            foreach (var v in visions) v.Dispose();
        }
    }

    [Fact]
    public void CachedEmbeddingsGiveTheSameLogProbsAsEncodingAndRunNoTower()
    {
        var c = TinyRl.Config(TestPaths.NewTempDir("vision-cache"));
        using var model = QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU);
        var (items, visions) = Items(c, seed: 11);
        try
        {
            using var noGrad = torch.no_grad();
            using var scope = torch.NewDisposeScope();
            foreach (var v in visions) v.ImageEmbeds = model.EncodeVision(v.PixelValues, v.ImageGridThw).DetachFromDisposeScope();
            using var plain = Experience.Collate(items, torch.CPU, padTokenId: 0);
            using var cached = Experience.Collate(items, torch.CPU, padTokenId: 0, v => v.ImageEmbeds);
            var expected = PerSampleLogProbs(model, plain);
            long before = model.VisionTowerItems;
            var actual = PolicyForward.ActionLogProbs(model, cached, Temperature);
            Assert.Equal(before, model.VisionTowerItems);
            TensorAssert.Close(expected, actual, 1e-5, "log-probs");
        }
        finally
        {
            foreach (var v in visions) v.Dispose();
        }
    }

    static (PpoTrainer Trainer, PpoModels Models) Build(PpoConfig config)
    {
        var (c, _) = config.Resolve();
        c.Validate();
        var models = PpoModels.Load(c, torch.CPU);
        return (new PpoTrainer(c, models, TinyRl.Processor(c), TinyRl.Data(c), null, new CharacterReward()), models);
    }

    /// <summary>The step-1 prompts' image counts, by rollout prompt index.</summary>
    static int[] StepImages(PpoTrainer trainer, PpoConfig c) =>
        trainer.DataOrder(0).Take(c.Rollout.RolloutBatchSize).Select(i => TinyRl.Data(c)[i].Images.Count).ToArray();

    [Fact]
    public void PromptsAreEncodedTogetherInOneTowerCallWithThePerPromptEmbeddings()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("vision-batched"), new AlgorithmSettings { Estimator = AdvantageEstimator.ReinforceBaseline });
        var (trainer, models) = Build(config);
        using var _m = models;
        using var _t = trainer;
        var (_, visions) = Items(trainer.Config, 3);
        try
        {
            long calls = models.Actor.VisionTowerCalls, items = models.Actor.VisionTowerItems;
            trainer.Maker.CacheVision([visions[0], null, visions[1], visions[0]]);           // a text prompt, a repeat
            Assert.Equal(calls + 1, models.Actor.VisionTowerCalls);                           // both prompts in one pass
            Assert.Equal(items + 2, models.Actor.VisionTowerItems);
            using var noGrad = torch.no_grad();
            foreach (var v in visions)
            {
                // Per prompt, as before: the same tower, other GEMM shapes (fp32 on the CPU: rounding only).
                using var alone = models.Actor.EncodeVision(v.PixelValues, v.ImageGridThw);
                Assert.Equal(v.MergedTokens(models.Actor.Config.Vision!.MergeUnit), alone.shape[0]);
                TensorAssert.Close(alone, v.ImageEmbeds!, 1e-5, "batched embeddings");
            }
        }
        finally { foreach (var v in visions) v.Dispose(); }
    }

    [Fact]
    public void VisionChunksKeepPromptsInOrderWithinThePatchBudget()
    {
        Assert.Equal([(0, 3), (3, 1), (4, 2)], ExperienceMaker.VisionChunks([10, 20, 30, 100, 40, 20], 60));
        Assert.Equal([(0, 1), (1, 1)], ExperienceMaker.VisionChunks([70, 80], 60));          // over the budget: alone
        Assert.Empty(ExperienceMaker.VisionChunks([], 60));
    }

    [Fact]
    public void FrozenTowerEncodesEachPromptOnceForTheWholeStep()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("vision-frozen"),
            new AlgorithmSettings { Estimator = AdvantageEstimator.ReinforceBaseline, InitKlCoef = 0.01 });
        config = config with { Model = config.Model with { FreezePrefix = ["visual"] }, Optim = config.Optim with { MaxGlobalSteps = 1 } };
        var (trainer, models) = Build(config);
        using var _m = models;
        using var _t = trainer;
        int images = StepImages(trainer, trainer.Config).Sum();
        Assert.True(images > 0);
        trainer.Fit();
        Assert.True(trainer.Maker.Stats.ActorForwards > 0 && trainer.Maker.Stats.ReferenceForwards > 0);
        // Generation, old log-probs, reference and update all read the one pass per prompt.
        Assert.Equal(images, models.Actor.VisionTowerItems);
        Assert.Equal(0, models.Reference!.VisionTowerItems);
    }

    [Fact]
    public void TrainableTowerEncodesOncePerPromptForTheRolloutAndOncePerPromptPerMicroBatchInTheUpdate()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("vision-trainable"),
            new AlgorithmSettings { Estimator = AdvantageEstimator.Gae, InitKlCoef = 0.01 });
        config = config with
        {
            Model = config.Model with { CriticPretrain = TinyRl.Model },
            Rollout = config.Rollout with { SamplesPerPrompt = 3 },
            Optim = config.Optim with { MaxGlobalSteps = 1, TrainBatchSize = 6, MicroTrainBatchSize = 2 },
        };
        var (trainer, models) = Build(config);
        using var _m = models;
        using var _t = trainer;
        var c = trainer.Config;
        int n = c.Rollout.SamplesPerPrompt;
        int[] perPrompt = StepImages(trainer, c);
        int images = perPrompt.Sum();
        Assert.True(images > 0);
        // Update: each micro-batch encodes the distinct prompts among its rows (rows are prompt-major: row / n).
        int update = trainer.OptimizerSteps(perPrompt.Length * n, 1, 0).SelectMany(g => g)
            .Sum(rows => rows.Select(r => (int)r / n).Distinct().Sum(p => perPrompt[p]));
        int perSampleUpdate = trainer.OptimizerSteps(perPrompt.Length * n, 1, 0).SelectMany(g => g)
            .Sum(rows => rows.Sum(r => perPrompt[(int)r / n]));
        trainer.Fit();
        output.WriteLine($"images {images}; update encodes {update} (per sample it was {perSampleUpdate})");
        Assert.Equal(images + update, models.Actor.VisionTowerItems);          // generation + old log-probs share one pass
        Assert.Equal(images, models.Reference!.VisionTowerItems);               // its own tower, once per prompt
        Assert.Equal(images + update, models.Critic!.Backbone.VisionTowerItems); // values once per prompt + its update
    }
}
