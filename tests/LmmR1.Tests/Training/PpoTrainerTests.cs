// The PPO loop on the tiny model: a few real RL steps for each family of estimator (finite losses, every metric
// logged, the step counters), trainable parameters move and frozen ones (--freeze_prefix visual) do not and hold no
// optimizer state, and the reference model is neither loaded nor run when the config has no KL term.
using LmmR1.Algorithms;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using LmmR1.Training.Logging;
using LmmR1.Training.Ppo;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public sealed class MemorySink : IMetricsSink
{
    public List<(long Step, Dictionary<string, double> Metrics)> Rows { get; } = [];
    public void Log(long step, IReadOnlyDictionary<string, double> metrics) => Rows.Add((step, new Dictionary<string, double>(metrics)));
}

public class PpoTrainerTests(ITestOutputHelper output)
{
    static (PpoTrainer Trainer, MemorySink Sink, PpoModels Models) Build(PpoConfig config, CharacterReward? reward = null)
    {
        var (c, _) = config.Resolve();
        c.Validate();
        var models = PpoModels.Load(c, torch.CPU);
        var sink = new MemorySink();
        var trainer = new PpoTrainer(c, models, TinyRl.Processor(c), TinyRl.Data(c), null, reward ?? new CharacterReward(), sink);
        return (trainer, sink, models);
    }

    static Dictionary<string, Tensor> Snapshot(IEnumerable<(string, Parameter)> ps) =>
        ps.ToDictionary(p => p.Item1, p => p.Item2.detach().clone());

    [Fact]
    public void ReinforceBaselineWithKlRunsStepsAndLogsOpenRlhfMetrics()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("ppo-rb"),
            new AlgorithmSettings { Estimator = AdvantageEstimator.ReinforceBaseline, InitKlCoef = 0.01 });
        var (trainer, sink, models) = Build(config);
        using var _ = models;
        using var __ = trainer;
        trainer.Fit();

        foreach (var (st, m) in sink.Rows) output.WriteLine($"{st}: " + string.Join(", ", m.OrderBy(k => k.Key).Select(kv => $"{kv.Key}={kv.Value:G4}")));
        Assert.Equal(2, trainer.State.GlobalStep);
        Assert.Equal(4, trainer.State.ConsumedPrompts);
        Assert.Equal(2, trainer.ActorOptimizer.Steps);              // 2 prompts × 2 samples = one train batch of 4 per step
        Assert.Equal(2, sink.Rows.Count);
        foreach (var (step, m) in sink.Rows)
        {
            foreach (var key in new[] { "train/policy_loss", "train/actor_lr", "train/kl", "train/reward", "train/return", "train/response_length",
                                        "train/total_length", "train/format_reward", "train/acc_reward", "train/clip_frac", "train/grad_norm",
                                        "time/generate", "time/reward", "time/logprobs", "time/update" })
            {
                Assert.True(m.ContainsKey(key), $"step {step}: {key} missing");
                Assert.True(double.IsFinite(m[key]), $"step {step}: {key} = {m[key]}");
            }
            Assert.False(m.ContainsKey("train/critic_loss"));
        }
        Assert.True(trainer.Maker.Stats.ReferenceForwards > 0);
        // actor_lr is get_last_lr after each micro-batch, averaged: 1e-3 after the first (no step yet), then the cosine's
        // value at step 1 of 2 (no warmup): 1e-3·(0.1 + 0.9·0.5·(1 + cos π/2)) = 5.5e-4.
        Assert.Equal(0.5 * (1e-3 + 5.5e-4), sink.Rows[0].Metrics["train/actor_lr"], 12);
    }

    [Fact]
    public void EveryTrainableParameterChangesAndFrozenVisionDoesNotAndHasNoOptimizerState()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("ppo-freeze")) with { };
        config = config with
        {
            Model = config.Model with { FreezePrefix = ["visual"] },
            Optim = config.Optim with { MaxGlobalSteps = 1 },
        };
        var (trainer, _, models) = Build(config);
        using var _m = models;
        using var _t = trainer;
        var named = models.Actor.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        var before = Snapshot(named);
        trainer.Fit();

        var state = trainer.ActorOptimizer.StateTensors().Keys.ToHashSet();
        int vision = 0, trained = 0;
        foreach (var (name, p) in named)
        {
            double diff = (p.detach() - before[name]).abs().max().item<float>();
            if (name.StartsWith("visual.", StringComparison.Ordinal))
            {
                vision++;
                Assert.False(p.requires_grad, name);
                Assert.Equal(0.0, diff);                                       // bit-identical
                Assert.DoesNotContain("exp_avg." + name, state);
                Assert.DoesNotContain("master." + name, state);
            }
            else
            {
                trained++;
                Assert.True(diff > 0, $"{name} did not change");
                Assert.Contains("exp_avg." + name, state);
            }
        }
        Assert.True(vision > 0 && trained > 0);
        // Frozen vision: one vision-tower pass per prompt for the whole step (cached), not one per forward.
        Assert.True(trainer.Maker.Stats.VisionEncodes is > 0 and <= 2, $"{trainer.Maker.Stats.VisionEncodes} vision encodes");
    }

    [Fact]
    public void WithoutFreezingTheVisionTowerTrainsToo()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("ppo-nofreeze"));
        config = config with { Optim = config.Optim with { MaxGlobalSteps = 1 } };
        var (trainer, _, models) = Build(config);
        using var _m = models;
        using var _t = trainer;
        var named = models.Actor.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        var before = Snapshot(named);
        trainer.Fit();
        foreach (var (name, p) in named)
            Assert.True((p.detach() - before[name]).abs().max().item<float>() > 0, $"{name} did not change");
        // The rollout's one pass per prompt (generation and old log-probs); the update's passes: VisionSharingTests.
        Assert.True(trainer.Maker.Stats.VisionEncodes is > 0 and <= 2, $"{trainer.Maker.Stats.VisionEncodes} vision encodes");
    }

    [Fact]
    public void NoKlTermMeansNoReferenceModelAndNoReferenceForward()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("ppo-noref"),
            new AlgorithmSettings { Estimator = AdvantageEstimator.Rloo, InitKlCoef = 0 });
        config = config with { Optim = config.Optim with { MaxGlobalSteps = 1 } };
        Assert.False(config.UsesReference);
        var (trainer, sink, models) = Build(config);
        using var _m = models;
        using var _t = trainer;
        Assert.Null(models.Reference);
        trainer.Fit();
        Assert.Equal(0, trainer.Maker.Stats.ReferenceForwards);
        // Nor a separate old-log-prob forward: the one train batch's update gives them (OldLogProbPlanTests).
        Assert.Equal(0, trainer.Maker.Stats.ActorForwards);
        Assert.Equal(0.0, sink.Rows[0].Metrics["train/kl"]);

        // --use_kl_loss with β = 0 also needs no reference (upstream: kl loss = zeros).
        var klLoss = config with { Algorithm = config.Algorithm with { UseKlLoss = true, KlEstimator = KlEstimator.K3 } };
        Assert.False(klLoss.UsesReference);
    }

    [Fact]
    public void GaeTrainsTheCriticAndFreezingActorStepsHoldsTheActor()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("ppo-gae"),
            new AlgorithmSettings { Estimator = AdvantageEstimator.Gae, InitKlCoef = 0.01, FreezingActorSteps = 1, Lambda = 0.95 });
        var (trainer, sink, models) = Build(config);
        using var _m = models;
        using var _t = trainer;
        Assert.NotNull(models.Critic);
        var actorBefore = Snapshot(models.Actor.named_parameters().Select(p => (p.name, p.parameter)));
        var criticBefore = Snapshot(models.Critic!.NamedParameters());

        trainer.TrainStep(TinyRl.Data(config).Take(2).ToList());       // step 1 ≤ freezing_actor_steps: critic only
        Assert.Equal(0, trainer.ActorOptimizer.Steps);
        Assert.Equal(1, trainer.CriticOptimizer!.Steps);
        foreach (var (name, p) in models.Actor.named_parameters())
            Assert.Equal(0.0, (p.detach() - actorBefore[name]).abs().max().item<float>());
        foreach (var (name, p) in models.Critic.NamedParameters())
            Assert.True((p.detach() - criticBefore[name]).abs().max().item<float>() > 0, $"critic {name} did not change");
        var m1 = sink.Rows[0].Metrics;
        Assert.False(m1.ContainsKey("train/policy_loss"));
        foreach (var key in new[] { "train/critic_loss", "train/values", "train/critic_lr" })
            Assert.True(double.IsFinite(m1[key]), key);

        trainer.TrainStep(TinyRl.Data(config).Skip(1).Take(2).ToList());   // step 2: both
        Assert.Equal(1, trainer.ActorOptimizer.Steps);
        var m2 = sink.Rows[1].Metrics;
        foreach (var key in new[] { "train/policy_loss", "train/critic_loss", "train/values", "train/kl", "train/return" })
            Assert.True(double.IsFinite(m2[key]), key);
    }

    /// <summary>micro 1 × accumulation 4 and micro 4 × accumulation 1 give the same gradients and, after one AdamW step,
    /// the same weights. OpenRLHF's loss is a token-mean per micro-batch, so the two agree exactly only when every
    /// micro-batch holds the same number of action tokens: the responses are cut to one length. The 4-row batch is
    /// left-padded (prompts differ in length), so this also checks that padding does not leak into the result.</summary>
    /// <summary>The warm-up rollout before the first step (what `lmmr1 train` runs on CUDA) touches nothing the run
    /// reads: the same config with and without it gives the same metrics and weights bit for bit, and the same counters.</summary>
    [Fact]
    public void WarmUpRolloutLeavesTheStepsThatFollowUnchanged()
    {
        PpoConfig Cfg(string name) => TinyRl.Config(TestPaths.NewTempDir(name),
            new AlgorithmSettings { Estimator = AdvantageEstimator.GroupNorm, InitKlCoef = 0.01, UseKlLoss = true });
        var (a, sinkA, ma) = Build(Cfg("ppo-warm"));
        var (b, sinkB, mb) = Build(Cfg("ppo-nowarm"));
        using var _ma = ma; using var _mb = mb; using var _a = a; using var _b = b;

        var data = TinyRl.Data(Cfg("ppo-warm-data"));
        var first = a.DataOrder(0).Take(2).Select(i => data[i]).ToList();
        Assert.Contains(first, p => p.Images.Count > 0);
        var warm = a.WarmUp(first);
        output.WriteLine($"warm-up: {warm}");
        Assert.True(warm.ProcessSeconds > 0 && warm.EngineSeconds > 0 && warm.Seconds >= warm.ProcessSeconds + warm.EngineSeconds);
        Assert.True(warm.VisionSeconds > 0, "the prompts have images: the tower ran");
        Assert.Equal(0, a.Maker.Stats.VisionEncodes);
        Assert.Equal(0, a.Maker.Stats.ProcessSeconds);
        Assert.Equal(0, a.Maker.Engine.CapturedGraphs);

        a.Fit();
        b.Fit();
        Assert.Equal(sinkB.Rows.Count, sinkA.Rows.Count);
        for (int r = 0; r < sinkA.Rows.Count; r++)
        {
            var (stepA, mA) = sinkA.Rows[r];
            var (stepB, mB) = sinkB.Rows[r];
            Assert.Equal(stepB, stepA);
            foreach (var (key, v) in mB.Where(kv => !kv.Key.StartsWith("time/", StringComparison.Ordinal) && !kv.Key.StartsWith("perf/", StringComparison.Ordinal)))
                Assert.True(mA.TryGetValue(key, out var va) && (va == v || double.IsNaN(va) && double.IsNaN(v)), $"step {stepA}: {key} {va} vs {v}");
        }
        var pb = mb.Actor.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        foreach (var (name, p) in ma.Actor.named_parameters())
            Assert.True(p.eq(pb[name]).all().item<bool>(), $"{name} differs after the run with a warm-up");
        Assert.Equal(b.Maker.Stats.ActorForwards, a.Maker.Stats.ActorForwards);
        Assert.Equal(b.Maker.Stats.ReferenceForwards, a.Maker.Stats.ReferenceForwards);
        Assert.Equal(b.Maker.Stats.VisionEncodes, a.Maker.Stats.VisionEncodes);
    }

    [Fact]
    public void GradientAccumulationMatchesOneLargeMicroBatch()
    {
        string dir = TestPaths.NewTempDir("ppo-accum");
        PpoConfig Cfg(int micro)
        {
            var c = TinyRl.Config(dir, new AlgorithmSettings { Estimator = AdvantageEstimator.ReinforceBaseline, InitKlCoef = 0 });
            return c with { Optim = c.Optim with { TrainBatchSize = 4, MicroTrainBatchSize = micro, MaxNorm = 1e9 } };   // no clipping
        }
        var (a, _, ma) = Build(Cfg(1));
        var (b, _, mb) = Build(Cfg(4));
        using var _ma = ma; using var _mb = mb; using var _a = a; using var _b = b;

        var prompts = TinyRl.Data(Cfg(1)).Take(2).ToList();
        Assert.Contains(prompts, p => p.Images.Count > 0);
        using var generated = a.Maker.Generate(prompts, 2, 1.0, seed: 7);
        int len = Math.Min(5, generated.Items.Min(i => i.ResponseLength));
        var items = generated.Items.Select(i => new ExperienceItem
        {
            PromptIndex = i.PromptIndex, SampleIndex = i.SampleIndex, PromptIds = i.PromptIds, ResponseIds = i.ResponseIds[..len],
            Vision = i.Vision,
        }).ToList();
        Assert.NotEqual(items[0].PromptIds.Length, items[2].PromptIds.Length);
        var tok = TinyRl.Processor(Cfg(1)).Tokenizer;
        var rollout = new Rollout
        {
            Prompts = prompts, Items = items, Visions = generated.Visions, ActionMask = ActionTensors.Mask(items, torch.CPU),
            Queries = items.Select(i => tok.Decode(i.PromptIds.Concat(i.ResponseIds).Select(t => (int)t))).ToList(),
        };
        var scores = a.Maker.Score(rollout);
        using var old = a.Maker.ActorLogProbs(rollout);
        using var adv = a.Maker.Advantages(rollout, scores, old, null, null, 0);
        Assert.True(adv.Advantages.abs().gt(0.1).any().item<bool>());
        var targets = new ActorTargets(old, adv.Advantages, null);

        Dictionary<string, Tensor> Grads(PpoModels m) => m.Actor.named_parameters()
            .ToDictionary(p => p.name, p => { using var g = p.parameter.grad; return g!.detach().clone().DetachFromDisposeScope(); });
        Dictionary<string, Tensor>? ga = null, gb = null;
        a.BeforeActorStep = () => ga = Grads(ma);
        b.BeforeActorStep = () => gb = Grads(mb);
        var sa = a.UpdateActor(rollout, targets, 1);
        var sb = b.UpdateActor(rollout, targets, 1);
        Assert.Equal(1, a.ActorOptimizer.Steps);
        Assert.Equal(1, b.ActorOptimizer.Steps);

        // fp32 tolerance: gradients agree to 1e-5 of each tensor's largest entry (reduction order differs).
        double worstGrad = 0;
        foreach (var (name, g) in ga!)
        {
            double scale = g.abs().max().item<float>();
            double diff = (g - gb![name]).abs().max().item<float>();
            worstGrad = Math.Max(worstGrad, diff / Math.Max(scale, 1e-12));
            Assert.True(diff <= 1e-5 * scale + 1e-9, $"{name}: grad diff {diff:G3} vs max |g| {scale:G3}");
        }
        // Weights after the step. AdamW's first update is −lr·g/(|g| + ε) per element (ε = 1e-8, no clipping here), and
        // |f(a) − f(b)| ≤ |a − b| / (m + ε) for f(g) = g/(|g| + ε), with m = min(|a|, |b|) when a and b share a sign, else
        // 0. So each weight may differ by lr·|ga − gb|/(m + ε), plus the fp32 rounding of the update (a few ulps of lr)
        // and of the weight itself.
        const double lr = 1e-3, eps = 1e-8;
        var pb = mb.Actor.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        double worstParam = 0;
        foreach (var (name, p) in ma.Actor.named_parameters())
        {
            using var scope = torch.NewDisposeScope();
            var g1 = ga[name].to(ScalarType.Float64);
            var g2 = gb![name].to(ScalarType.Float64);
            var m = torch.where(g1.sign().eq(g2.sign()), torch.minimum(g1.abs(), g2.abs()), torch.zeros_like(g1));
            var w = p.detach().to(ScalarType.Float64);
            var bound = (g1 - g2).abs() / (m + eps) * lr + lr * 8 * Math.Pow(2, -24) + w.abs() * (2 * Math.Pow(2, -24));
            var diff = (w - pb[name].detach().to(ScalarType.Float64)).abs();
            worstParam = Math.Max(worstParam, diff.max().item<double>());
            double excess = (diff - bound).max().item<double>();
            Assert.True(excess <= 0, $"{name}: weights differ beyond the bound by {excess:G3} after one step");
        }
        output.WriteLine($"worst relative grad diff {worstGrad:G3}, worst weight diff {worstParam:G3}; " +
                         $"policy loss {sa.PolicyLoss:G6} (micro 1) vs {sb.PolicyLoss:G6} (micro 4)");
        Assert.Equal(sa.PolicyLoss, sb.PolicyLoss, 5);
    }

    /// <summary>bf16 weights with fp32 masters and gradient checkpointing (the GPU configuration) on the CPU: finite
    /// losses, weights move, and repeated steps leave no tensors behind in the caller's dispose scope.</summary>
    [Fact]
    public void Bf16WithGradientCheckpointingTrainsAndLeavesNoTensorsBehind()
    {
        var config = TinyRl.Config(TestPaths.NewTempDir("ppo-bf16"),
            new AlgorithmSettings { Estimator = AdvantageEstimator.GroupNorm, InitKlCoef = 0.001, UseKlLoss = true, KlEstimator = KlEstimator.K3, EntropyLossCoef = 0.01 });
        config = config with { Model = config.Model with { Bf16 = true, GradientCheckpointing = true, FreezePrefix = ["visual"] } };
        var (trainer, sink, models) = Build(config);
        using var _m = models;
        using var _t = trainer;
        Assert.Equal(ScalarType.BFloat16, models.Actor.DType);
        Assert.Contains(trainer.ActorOptimizer.StateTensors().Keys, k => k.StartsWith("master.", StringComparison.Ordinal));
        var embed = models.Actor.named_parameters().First(p => p.name == "model.embed_tokens.weight").parameter;
        using var before = embed.detach().to(ScalarType.Float32).clone();
        var prompts = TinyRl.Data(config).Take(2).ToList();

        using var scope = torch.NewDisposeScope();
        long Step()
        {
            trainer.TrainStep(prompts);
            return DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        }
        Step();
        long after2 = Step();
        Assert.Equal(after2, Step());
        foreach (var (_, m) in sink.Rows)
            foreach (var key in new[] { "train/policy_loss", "train/kl", "train/entropy_loss", "train/grad_norm" })
                Assert.True(double.IsFinite(m[key]), $"{key} = {m[key]}");
        Assert.True((embed.detach().to(ScalarType.Float32) - before).abs().max().item<float>() > 0);
    }
}
