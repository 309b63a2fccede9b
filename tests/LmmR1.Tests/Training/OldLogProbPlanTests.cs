// Old log-probs from the update's own forward (OldLogProbPlan, issue 13 item 5) against the separate no-grad pass
// (--recompute_old_log_prob), fp32 on the CPU with the tiny model. Both compute the same function of the same weights,
// in other batches (the separate pass by --micro_rollout_batch_size in rollout order, the update by its shuffled
// micro-batches: other padding and GEMM shapes), so the old log-probs agree to 1e-5 as padded and packed forwards do
// (PackingTests). The reuse gives ratio exactly 1 in the first optimizer step, the separate pass 1 within e^(1e-5) − 1
// ≈ 1e-5: the per-token policy-gradient terms −A·ρ·∇log π differ by that factor and are summed in the same order (same
// micro-batches), so gradients agree to 1e-5 of each tensor's largest entry (the bound GradientAccumulation's test
// uses for a reassociated sum) and the weights after AdamW's first step within that test's bound (|Δg| / (min |g| +
// ε)·lr plus rounding); losses and logged metrics to 1e-5 (one step) and 1e-4 (a few steps of Fit, PackingTests'
// tolerance for a whole step). Checks too that the separate pass really is skipped (no actor forward in the maker,
// no "logprobs" phase), that later optimizer steps and epochs use the real old log-probs (their ratios are not 1 and
// equal the separate pass's), and that the configs where it is not exact fall back to the separate pass.
using LmmR1.Algorithms;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using LmmR1.Training.Ppo;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public class OldLogProbPlanTests(ITestOutputHelper output)
{
    static PpoConfig Config(string name, int trainBatch = 4, int micro = 2, int epochs = 1, bool recompute = false)
    {
        var c = TinyRl.Config(TestPaths.NewTempDir(name), new AlgorithmSettings { Estimator = AdvantageEstimator.ReinforceBaseline, InitKlCoef = 0 });
        return c with
        {
            Optim = c.Optim with
            {
                TrainBatchSize = trainBatch, MicroTrainBatchSize = micro, MaxEpochs = epochs, RecomputeOldLogProb = recompute,
                MaxNorm = 1e9,   // no clipping: the AdamW bound below is for unclipped gradients
            },
        };
    }

    static (PpoTrainer Trainer, PpoModels Models, MemorySink Sink) Build(PpoConfig config)
    {
        var (c, _) = config.Resolve();
        c.Validate();
        var models = PpoModels.Load(c, torch.CPU);
        var sink = new MemorySink();
        return (new PpoTrainer(c, models, TinyRl.Processor(c), TinyRl.Data(c), null, new CharacterReward(), sink), models, sink);
    }

    static Dictionary<string, Tensor> Grads(PpoModels m) => m.Actor.named_parameters()
        .Where(p => p.parameter.grad is not null)
        .ToDictionary(p => p.name, p => { using var g = p.parameter.grad; return g!.detach().clone().DetachFromDisposeScope(); });

    /// <summary>A rollout of the step-1 prompts sampled by <paramref name="t"/> (seed 7), its scores and advantages.</summary>
    static (Rollout Rollout, Tensor Advantages) Rollout(PpoTrainer t, PpoConfig c)
    {
        var prompts = TinyRl.Data(c).Take(2).ToList();
        Assert.Contains(prompts, p => p.Images.Count > 0);
        var rollout = t.Maker.Generate(prompts, 2, 1.0, seed: 7);
        var scores = t.Maker.Score(rollout);
        using var adv = t.Maker.Advantages(rollout, scores, null, null, null, 0);
        Assert.True(adv.Advantages.abs().gt(0.1).any().item<bool>());
        return (rollout, adv.Advantages.clone());
    }

    [Fact]
    public void TheOnPolicyStepTakesTheUpdatesForwardAndMatchesTheSeparatePass()
    {
        var (a, ma, _) = Build(Config("olp-reuse"));
        var (b, mb, _) = Build(Config("olp-forced", recompute: true));
        using var _ma = ma; using var _mb = mb; using var _a = a; using var _b = b;
        var (rollout, adv) = Rollout(a, a.Config);
        using var _r = rollout; using var _adv = adv;
        var plan = OldLogProbPlan.Create(a.Config, trainActor: true, rollout.Count, a.OptimizerSteps(rollout.Count, 1, 0)[0]);
        Assert.True(plan.SkipsSeparatePass);
        Assert.Null(plan.Why);
        Assert.Contains("skipped", plan.Describe());

        using var fromUpdate = torch.zeros(rollout.ActionMask.shape, ScalarType.Float32);
        using var separate = b.Maker.ActorLogProbs(rollout);
        Assert.Equal(0, a.Maker.Stats.ActorForwards);
        Assert.Equal(2, b.Maker.Stats.ActorForwards);                 // 4 samples / --micro_rollout_batch_size 2
        Dictionary<string, Tensor>? ga = null, gb = null;
        a.BeforeActorStep = () => ga = Grads(ma);
        b.BeforeActorStep = () => gb = Grads(mb);
        var sa = a.UpdateActor(rollout, new ActorTargets(fromUpdate, adv, null) { FromUpdate = plan.FromUpdate }, 1);
        var sb = b.UpdateActor(rollout, new ActorTargets(separate, adv, null), 1);
        Assert.Equal(1, a.ActorOptimizer.Steps);
        Assert.Equal(0, a.Maker.Stats.ActorForwards);

        // The update wrote its own (pre-step) log-probs into the rollout-wide tensor: the separate pass's values.
        double lpDiff = TensorAssert.Close(separate, fromUpdate, 1e-5, "old log-probs");
        Assert.True(fromUpdate.masked_select(rollout.ActionMask).lt(0).all().item<bool>(), "every action slot written (log-probs < 0)");
        Assert.Equal(0.0, fromUpdate.masked_select(rollout.ActionMask.logical_not()).abs().sum().item<float>());
        // Ratio exactly 1 with the reuse; within ~1e-5 of it with the separate pass.
        Assert.Equal(0.0, sa.ApproxKl);
        Assert.Equal(0.0, sa.ClipFrac);
        Assert.Equal(0.0, sb.ClipFrac);
        Assert.True(Math.Abs(sb.ApproxKl) <= 1e-5, $"approx kl {sb.ApproxKl}");
        Assert.True(Math.Abs(sa.PolicyLoss - sb.PolicyLoss) <= 1e-5 * Math.Max(1, Math.Abs(sb.PolicyLoss)), $"policy loss {sa.PolicyLoss} vs {sb.PolicyLoss}");
        Assert.True(Math.Abs(sa.Entropy - sb.Entropy) <= 1e-5 * Math.Max(1, Math.Abs(sb.Entropy)), $"entropy {sa.Entropy} vs {sb.Entropy}");
        Assert.True(Math.Abs(sa.GradNorm - sb.GradNorm) <= 1e-5 * Math.Max(1, sb.GradNorm), $"grad norm {sa.GradNorm} vs {sb.GradNorm}");

        double worstGrad = 0;
        Assert.Equal(gb!.Keys.Order(), ga!.Keys.Order());
        foreach (var (name, g) in ga)
        {
            double scale = g.abs().max().item<float>();
            double diff = (g - gb[name]).abs().max().item<float>();
            worstGrad = Math.Max(worstGrad, diff / Math.Max(scale, 1e-12));
            Assert.True(diff <= 1e-5 * scale + 1e-9, $"{name}: grad diff {diff:G3} vs max |g| {scale:G3}");
        }
        double worstParam = AssertWeightsWithinAdamWFirstStepBound(ma, mb, ga, gb, a.Config.Optim.ActorLearningRate);
        output.WriteLine($"max |Δ old log-prob| {lpDiff:G3}, worst relative grad diff {worstGrad:G3}, worst weight diff {worstParam:G3}; " +
                         $"policy loss {sa.PolicyLoss:G9} vs {sb.PolicyLoss:G9}, approx kl {sa.ApproxKl:G3} vs {sb.ApproxKl:G3}");
        foreach (var t in ga.Values.Concat(gb.Values)) t.Dispose();
    }

    /// <summary>AdamW's first update is −lr·g/(|g| + ε) per element (ε = 1e-8, no clipping), and |f(a) − f(b)| ≤
    /// |a − b| / (m + ε) for f(g) = g/(|g| + ε), m = min(|a|, |b|) when a and b share a sign, else 0: each weight may
    /// differ by lr·|ga − gb|/(m + ε), plus the fp32 rounding of the update (a few ulps of lr) and of the weight
    /// (PpoTrainerTests.GradientAccumulationMatchesOneLargeMicroBatch). Returns the largest weight difference.</summary>
    static double AssertWeightsWithinAdamWFirstStepBound(PpoModels a, PpoModels b, Dictionary<string, Tensor> ga, Dictionary<string, Tensor> gb, double lr)
    {
        const double eps = 1e-8;
        var pb = b.Actor.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        double worst = 0;
        foreach (var (name, p) in a.Actor.named_parameters())
        {
            using var scope = torch.NewDisposeScope();
            var w = p.detach().to(ScalarType.Float64);
            var diff = (w - pb[name].detach().to(ScalarType.Float64)).abs();
            worst = Math.Max(worst, diff.max().item<double>());
            if (!ga.TryGetValue(name, out var g1t)) { Assert.Equal(0.0, diff.max().item<double>()); continue; }
            var g1 = g1t.to(ScalarType.Float64);
            var g2 = gb[name].to(ScalarType.Float64);
            var m = torch.where(g1.sign().eq(g2.sign()), torch.minimum(g1.abs(), g2.abs()), torch.zeros_like(g1));
            var bound = (g1 - g2).abs() / (m + eps) * lr + lr * 8 * Math.Pow(2, -24) + w.abs() * (2 * Math.Pow(2, -24));
            double excess = (diff - bound).max().item<double>();
            Assert.True(excess <= 0, $"{name}: weights differ beyond the bound by {excess:G3} after one step");
        }
        return worst;
    }

    /// <summary>Several optimizer steps per rollout (train batch 2 of 4 samples) or epochs (2 over one train batch):
    /// only the first step's samples take the update's forward; the separate pass computes the others' before the
    /// update, and the later steps' ratios (weights moved) are not 1 and equal the separate pass's.</summary>
    [Theory]
    [InlineData(2, 1, 1, 2)]    // train batch 2 of 4, micro 1: 2 of 4 rows from the update, the separate pass (micro 2) covers 2: one forward
    [InlineData(4, 2, 2, 4)]    // one train batch, 2 epochs: all 4 from the update, epoch 2 reads them back: no separate forward
    public void LaterStepsAndEpochsUseTheRealOldLogProbs(int trainBatch, int micro, int epochs, int fromUpdateRows)
    {
        var (a, ma, _) = Build(Config($"olp-later-{trainBatch}-{epochs}", trainBatch, micro, epochs));
        var (b, mb, _) = Build(Config($"olp-later-{trainBatch}-{epochs}-forced", trainBatch, micro, epochs, recompute: true));
        using var _ma = ma; using var _mb = mb; using var _a = a; using var _b = b;
        var (rollout, adv) = Rollout(a, a.Config);
        using var _r = rollout; using var _adv = adv;
        var plan = OldLogProbPlan.Create(a.Config, trainActor: true, rollout.Count, a.OptimizerSteps(rollout.Count, 1, 0)[0]);
        Assert.Equal(fromUpdateRows, plan.FromUpdateCount);
        Assert.Equal(fromUpdateRows == 4, plan.SkipsSeparatePass);

        using var partial = a.Maker.ActorLogProbs(rollout, plan.SkipsSeparatePass ? [] : plan.SeparateRows);
        Assert.Equal(plan.SkipsSeparatePass ? 0 : 1, a.Maker.Stats.ActorForwards);
        using var separate = b.Maker.ActorLogProbs(rollout);
        // Before the update: the separate pass's rows are the full pass's, the update's rows still empty.
        for (int i = 0; i < rollout.Count; i++)
        {
            using var row = partial[i];
            if (plan.FromUpdate[i]) Assert.Equal(0.0, row.abs().sum().item<float>());
            else { using var full = separate[i]; TensorAssert.Close(full, row, 1e-5, $"row {i} before the update"); }
        }
        var sa = a.UpdateActor(rollout, new ActorTargets(partial, adv, null) { FromUpdate = plan.FromUpdate }, 1);
        var sb = b.UpdateActor(rollout, new ActorTargets(separate, adv, null), 1);
        Assert.Equal(2, a.ActorOptimizer.Steps);
        Assert.Equal(2, b.ActorOptimizer.Steps);
        double lpDiff = TensorAssert.Close(separate, partial, 1e-5, "old log-probs after the update");

        // The second optimizer step runs on moved weights: its ratios differ from 1 (approx kl, a mean over all
        // micro-batches, is not 0 although the first step's are exactly 0) and are the separate pass's. One step of
        // lr 1e-3 moves them by ≥ 1e-6, while the two runs' weights differ by the AdamW bound (far below it).
        Assert.True(Math.Abs(sa.ApproxKl) > 1e-6, $"approx kl {sa.ApproxKl}: the later step's ratios are 1, as if from the moved weights");
        Assert.True(Math.Abs(sa.ApproxKl - sb.ApproxKl) <= 1e-4 * Math.Abs(sb.ApproxKl) + 1e-7, $"approx kl {sa.ApproxKl:G6} vs {sb.ApproxKl:G6}");
        Assert.True(Math.Abs(sa.PolicyLoss - sb.PolicyLoss) <= 1e-5 * Math.Max(1, Math.Abs(sb.PolicyLoss)), $"policy loss {sa.PolicyLoss} vs {sb.PolicyLoss}");
        Assert.Equal(sb.ClipFrac, sa.ClipFrac, 6);
        output.WriteLine($"train batch {trainBatch}, epochs {epochs}: max |Δ old log-prob| {lpDiff:G3}; approx kl {sa.ApproxKl:G6} vs " +
                         $"{sb.ApproxKl:G6}, policy loss {sa.PolicyLoss:G9} vs {sb.PolicyLoss:G9}, clip frac {sa.ClipFrac} vs {sb.ClipFrac}");
    }

    /// <summary>Three steps of Fit: the reuse runs no separate pass and logs no "logprobs" phase; the forced pass runs
    /// one per step; the same samples are drawn (the weights differ by rounding only) and every metric agrees.</summary>
    [Fact]
    public void FitStepsSkipTheSeparatePassAndLogTheForcedPassesMetrics()
    {
        (Dictionary<string, double>[] Rows, List<string> Texts, long Forwards, Dictionary<string, Tensor> Weights) Run(bool recompute)
        {
            var c = Config(recompute ? "olp-fit-forced" : "olp-fit", recompute: recompute);
            c = c with { Optim = c.Optim with { MaxGlobalSteps = 3 } };
            var (t, m, sink) = Build(c);
            using var _m = m; using var _t = t;
            var texts = new List<string>();
            t.StepCompleted += r => texts.AddRange(r.Samples!.Select(s => s.Response));
            t.Fit();
            var weights = m.Actor.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone().DetachFromDisposeScope());
            return ([.. sink.Rows.Select(r => r.Metrics)], texts, t.Maker.Stats.ActorForwards, weights);
        }
        var reuse = Run(false);
        var forced = Run(true);
        Assert.Equal(0, reuse.Forwards);
        Assert.Equal(3 * 2, forced.Forwards);                      // 3 steps × 4 samples / --micro_rollout_batch_size 2
        Assert.Equal(3, reuse.Rows.Length);
        foreach (var r in reuse.Rows) Assert.False(r.ContainsKey("time/logprobs"));
        foreach (var r in forced.Rows) Assert.True(r.ContainsKey("time/logprobs"));
        Assert.Equal(forced.Texts, reuse.Texts);                   // same samples at every step
        for (int s = 0; s < 3; s++)
        {
            var keys = forced.Rows[s].Keys.Where(k => !k.StartsWith("time/", StringComparison.Ordinal)).Order().ToList();
            Assert.Equal(keys, reuse.Rows[s].Keys.Where(k => !k.StartsWith("time/", StringComparison.Ordinal)).Order());
            foreach (var k in keys)
            {
                double e = forced.Rows[s][k], x = reuse.Rows[s][k];
                Assert.True(Math.Abs(e - x) <= 1e-4 * Math.Max(1, Math.Abs(e)), $"step {s + 1} {k}: forced {e:G9}, reuse {x:G9}");
            }
            output.WriteLine($"step {s + 1}: " + string.Join(", ", keys.Where(k => k is "train/policy_loss" or "train/approx_kl" or "train/grad_norm"
                or "train/rollout_logprob_gap" or "train/clip_frac").Select(k => $"{k} {forced.Rows[s][k]:G6}/{reuse.Rows[s][k]:G6}")));
        }
        double worst = reuse.Weights.Max(kv => TensorAssert.MaxAbsDiff(forced.Weights[kv.Key], kv.Value));
        output.WriteLine($"largest weight difference after 3 steps: {worst:G3}");
        foreach (var t in reuse.Weights.Values.Concat(forced.Weights.Values)) t.Dispose();
    }

    [Fact]
    public void ConfigsWhereItIsNotExactTakeTheSeparatePassForEverySample()
    {
        var c = Config("olp-why");
        var firstStep = new[] { new long[] { 0, 1 }, [2, 3] };
        Assert.Null(OldLogProbPlan.WhySeparate(c, trainActor: true));
        // --use_kl_loss: the KL is a loss term on the update's log-probs, the reward does not read the old ones.
        var klLoss = c with { Algorithm = c.Algorithm with { InitKlCoef = 0.01, UseKlLoss = true } };
        Assert.Null(OldLogProbPlan.WhySeparate(klLoss, trainActor: true));
        var cases = new (PpoConfig Config, bool Train, string Why)[]
        {
            (c with { Algorithm = c.Algorithm with { InitKlCoef = 0.01 } }, true, "KL penalty in the reward"),
            (c with { Model = c.Model with { Lora = new LoraOptions { Rank = 4, Dropout = 0.1 } } }, true, "--lora_dropout"),
            (c, false, "--freezing_actor_steps"),
            (c with { Optim = c.Optim with { RecomputeOldLogProb = true } }, true, "--recompute_old_log_prob"),
        };
        foreach (var (config, train, why) in cases)
        {
            var plan = OldLogProbPlan.Create(config, train, 4, firstStep);
            Assert.Equal(0, plan.FromUpdateCount);
            Assert.Equal([0, 1, 2, 3], plan.SeparateRows);
            Assert.Contains(why, plan.Why);
            Assert.Contains(why, plan.Describe());
        }
        Assert.Null(OldLogProbPlan.WhySeparate(c with { Model = c.Model with { Lora = new LoraOptions { Rank = 4 } } }, trainActor: true));
        Assert.Contains("no separate pass", OldLogProbPlan.DescribeConfig(c));
        Assert.Contains("for the 2 samples of its first optimizer step, a separate forward for the other 2",
            OldLogProbPlan.DescribeConfig(c with { Optim = c.Optim with { TrainBatchSize = 2 } }));

        // A real step with the KL in the reward: the separate pass runs for all 4 samples (2 micro-batches).
        var (t, m, sink) = Build(c with { Algorithm = c.Algorithm with { InitKlCoef = 0.01 }, Optim = c.Optim with { MaxGlobalSteps = 1 } });
        using var _m = m; using var _t = t;
        t.Fit();
        Assert.Equal(2, t.Maker.Stats.ActorForwards);
        Assert.True(sink.Rows[0].Metrics.ContainsKey("time/logprobs"));
        Assert.True(t.Maker.Stats.ReferenceForwards > 0);
    }
}
