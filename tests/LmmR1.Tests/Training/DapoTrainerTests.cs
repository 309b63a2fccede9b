// DAPO / GSPO / CISPO through the trainer on the tiny model: dynamic sampling refills the batch to full size with
// groups whose scores differ; token-mean over the optimizer step makes the gradient independent of the micro-batch
// split (what micro-token-mean is not, with responses of different lengths); truncated samples can be left out of
// the loss; the overlong penalty reaches the rewards; every policy loss type trains.
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Rewards;
using LmmR1.Tests.Support;
using LmmR1.Training.Ppo;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

/// <summary>Accuracy 1 for a response of even length, else 0 (reward = accuracy): a group of two samples is all-equal
/// about half the time, so dynamic filtering has something to drop.</summary>
public sealed class ParityReward : IRewardModel
{
    public Task<IReadOnlyList<RewardResult>> ScoreAsync(IReadOnlyList<string> queries, IReadOnlyList<string> prompts,
                                                        IReadOnlyList<string> labels, CancellationToken ct = default) =>
        Task.FromResult<IReadOnlyList<RewardResult>>(queries.Select(q =>
        {
            double acc = LmmR1Reward.ExtractResponse(q).Length % 2 == 0 ? 1 : 0;
            return new RewardResult(acc, 0, acc);
        }).ToList());
}

public class DapoTrainerTests
{
    static (PpoTrainer Trainer, MemorySink Sink, PpoModels Models) Build(PpoConfig config, IRewardModel reward, PromptDataset? data = null)
    {
        var (c, _) = config.Resolve();
        c.Validate();
        var models = PpoModels.Load(c, torch.CPU);
        var sink = new MemorySink();
        return (new PpoTrainer(c, models, TinyRl.Processor(c), data ?? TinyRl.Data(c), null, reward, sink), sink, models);
    }

    /// <summary>A prompt file of <paramref name="rows"/> text rows (the example's text row repeated with its index).</summary>
    internal static string TextPrompts(int rows)
    {
        string dir = TestPaths.NewTempDir("dapo-data");
        string path = Path.Combine(dir, "prompts.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, rows).Select(i =>
            $"{{\"message\": \"[{{\\\"role\\\": \\\"user\\\", \\\"content\\\": [{{\\\"type\\\": \\\"text\\\", \\\"text\\\": \\\"What is {i} + {i}?\\\"}}]}}]\", \"answer\": \"{2 * i}\"}}"));
        return path;
    }

    static PpoConfig Dapo(string dir, int prompts, int maxRounds = 4)
    {
        var c = TinyRl.Config(dir, new AlgorithmSettings
        {
            Estimator = AdvantageEstimator.GroupNorm, InitKlCoef = 0, EpsClipLow = 0.2, EpsClipHigh = 0.28,
            LossAggMode = LossAggregation.GlobalTokenMean, DynamicFiltering = true, DynamicFilteringMaxRounds = maxRounds,
        });
        return c with { Data = c.Data with { Prompts = c.Data.Prompts with { PromptData = TextPrompts(prompts) } } };
    }

    [Fact]
    public async Task DynamicSamplingRefillsTheBatchWithGroupsWhoseScoresDiffer()
    {
        var cfg = Dapo(TestPaths.NewTempDir("dapo-fill"), 16) with { Rollout = new RolloutSettings
            { RolloutBatchSize = 2, MicroRolloutBatchSize = 2, SamplesPerPrompt = 2, GenerateMaxLen = 8 } };
        var (trainer, _, models) = Build(cfg, new ParityReward());
        using var _m = models; using var _t = trainer;
        var data = TinyRl.Data(trainer.Config);
        var order = trainer.DataOrder(0);
        var prompts = order.Take(2).Select(i => data[i]).ToList();
        var reserve = order.Skip(2).Select(i => data[i]).ToList();
        int round = 0;
        using var f = DynamicFiltering.Run(prompts, reserve, 4, (0, 1), (batch, r) =>
        {
            Assert.Equal(round++, r);
            var g = trainer.Maker.Generate(batch, 2, 1.0, PpoSeeds.FilterRound(42, 1, r));
            return (g, trainer.Maker.Score(g));
        }, CPU);
        var metrics = Assert.IsType<FilterMetrics>(f.Metrics);
        // Full size, in groups of 2, every chosen group with unequal scores (unless the rounds ran out and filled it).
        Assert.Equal(4, f.Batch.Count);
        Assert.Equal(2, f.Batch.Prompts.Count);
        Assert.Equal([0, 0, 1, 1], f.Batch.Items.Select(i => i.PromptIndex));
        Assert.Equal(2, metrics.GroupsKept + metrics.GroupsFilled);
        Assert.Equal(round - 1, metrics.ExtraRounds);
        Assert.Equal(2 * metrics.ExtraRounds, metrics.ExtraPrompts);
        if (metrics.GroupsFilled == 0)
            for (int g = 0; g < 2; g++)
                Assert.NotEqual(f.Scores[2 * g].AccuracyReward, f.Scores[2 * g + 1].AccuracyReward);
        // The chosen prompts are prompts of the rounds (the first round's first, in order), and their scores are the
        // rule's for the picked responses.
        Assert.All(f.Batch.Prompts, p => Assert.Contains(p, order.Take(2 * round).Select(i => data[i])));
        var rescored = await new ParityReward().ScoreAsync(f.Batch.Queries, [], []);
        Assert.Equal(rescored.Select(r => r.AccuracyReward), f.Scores.Select(s => s.AccuracyReward));
        Assert.True(metrics.ExtraRounds > 0 || metrics.GroupsAllEqual == 0, "a dropped group needs another round");
    }

    [Fact]
    public void FitConsumesTheExtraPromptsAndCountsEverything()
    {
        var cfg = Dapo(TestPaths.NewTempDir("dapo-fit"), 16);
        cfg = cfg with { Optim = cfg.Optim with { MaxGlobalSteps = 3 } };
        var (trainer, sink, models) = Build(cfg, new ParityReward());
        using var _m = models; using var _t = trainer;
        trainer.Fit();
        long extra = 0;
        foreach (var (_, m) in sink.Rows)
        {
            Assert.Equal(2, m["train/filter_groups_kept"] + m["train/filter_groups_filled"]);
            Assert.Equal(2 * m["train/filter_extra_rounds"], m["train/filter_extra_prompts"]);
            extra += (long)m["train/filter_extra_prompts"];
        }
        Assert.Equal(3, trainer.State.GlobalStep);
        Assert.Equal(6 + extra, trainer.State.ConsumedPrompts);
        if (trainer.State.Episode == 0) Assert.Equal(extra, trainer.State.ExtraPromptsInEpisode);
        Assert.Equal((long)sink.Rows.Sum(r => r.Metrics["train/filter_groups_kept"]), trainer.State.FilterGroupsKept);
        Assert.Equal((long)sink.Rows.Sum(r => r.Metrics["train/filter_extra_rounds"]), trainer.State.FilterExtraRounds);
    }

    [Fact]
    public void StepTokenMeanGradientDoesNotDependOnTheMicroBatchSplit()
    {
        // Responses of different lengths: with token-mean over the optimizer step, 4 micro-batches of 1 give the
        // gradient of 1 micro-batch of 4 (up to fp32 reduction order: 1e-5 of each tensor's largest entry); with
        // LMM-R1's micro-token-mean they differ (each micro-batch is weighted equally, not each token).
        string dir = TestPaths.NewTempDir("dapo-accum");
        PpoConfig Cfg(int micro, LossAggregation agg)
        {
            var c = TinyRl.Config(dir, new AlgorithmSettings { Estimator = AdvantageEstimator.ReinforceBaseline, InitKlCoef = 0, LossAggMode = agg });
            return c with { Optim = c.Optim with { TrainBatchSize = 4, MicroTrainBatchSize = micro, MaxNorm = 1e9 } };
        }
        var grads = new Dictionary<(int, LossAggregation), Dictionary<string, Tensor>>();
        var prompts = TinyRl.Data(Cfg(1, LossAggregation.TokenMean)).Take(2).ToList();
        foreach (var agg in new[] { LossAggregation.GlobalTokenMean, LossAggregation.TokenMean })
            foreach (int micro in new[] { 1, 4 })
            {
                var (t, _, m) = Build(Cfg(micro, agg), new CharacterReward());
                using var _m = m; using var _t = t;
                // Responses cut to 2, 5, 3 and 8 tokens (the random model rarely stops on its own).
                using var generated = t.Maker.Generate(prompts, 2, 1.0, seed: 11);
                int[] cut = [2, 5, 3, 8];
                var items = generated.Items.Select((i, k) => new ExperienceItem
                {
                    PromptIndex = i.PromptIndex, SampleIndex = i.SampleIndex, PromptIds = i.PromptIds,
                    ResponseIds = i.ResponseIds[..Math.Min(cut[k], i.ResponseLength)], Vision = i.Vision,
                }).ToList();
                var tok = TinyRl.Processor(Cfg(1, agg)).Tokenizer;
                using var rollout = new Rollout
                {
                    Prompts = prompts, Items = items, Visions = generated.Visions, ActionMask = ActionTensors.Mask(items, CPU), OwnsVisions = false,
                    Queries = items.Select(i => tok.Decode(i.PromptIds.Concat(i.ResponseIds).Select(x => (int)x))).ToList(),
                };
                var scores = t.Maker.Score(rollout);
                using var old = t.Maker.ActorLogProbs(rollout);
                using var adv = t.Maker.Advantages(rollout, scores, old, null, null, 0);
                if (micro == 1 && agg == LossAggregation.GlobalTokenMean)
                    Assert.True(rollout.Items.Select(i => i.ResponseLength).Distinct().Count() > 1, "responses of one length prove nothing");
                t.BeforeActorStep = () => grads[(micro, agg)] = m.Actor.named_parameters()
                    .ToDictionary(p => p.name, p => { using var g = p.parameter.grad; return g!.detach().clone().DetachFromDisposeScope(); });
                t.UpdateActor(rollout, new ActorTargets(old, adv.Advantages, null), 1);
            }
        double Worst(Dictionary<string, Tensor> a, Dictionary<string, Tensor> b) => a.Max(kv =>
            (kv.Value - b[kv.Key]).abs().max().item<float>() / Math.Max(kv.Value.abs().max().item<float>(), 1e-12));
        Assert.True(Worst(grads[(1, LossAggregation.GlobalTokenMean)], grads[(4, LossAggregation.GlobalTokenMean)]) <= 1e-5);
        Assert.True(Worst(grads[(1, LossAggregation.TokenMean)], grads[(4, LossAggregation.TokenMean)]) > 1e-3);
        // One micro-batch holding the whole step: both modes are the same loss.
        Assert.True(Worst(grads[(4, LossAggregation.GlobalTokenMean)], grads[(4, LossAggregation.TokenMean)]) <= 1e-5);
    }

    [Fact]
    public void TruncatedSamplesLeftOutOfTheLossLeaveTheWeightsAlone()
    {
        // generate_max_len 1 with a minimum of one new token: every response is cut at the limit (none can end in a
        // stop token before it, except a sampled stop token itself, which the test excludes by checking the count).
        var cfg = TinyRl.Config(TestPaths.NewTempDir("dapo-trunc"));
        cfg = cfg with
        {
            Rollout = cfg.Rollout with { GenerateMaxLen = 1 },
            Reward = cfg.Reward with { MaskTruncatedCompletions = true },
            Optim = cfg.Optim with { MaxGlobalSteps = 1 },
        };
        var (trainer, sink, models) = Build(cfg, new CharacterReward());
        using var _m = models; using var _t = trainer;
        var before = models.Actor.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var report = trainer.TrainStep(TinyRl.Data(trainer.Config).Take(2).ToList());
        var m = report.Metrics.ToLog();
        Assert.Equal(1.0, m["train/truncated_ratio"]);
        Assert.Equal(0.0, m["train/policy_loss"]);
        foreach (var (name, p) in models.Actor.named_parameters())
            Assert.True(p.detach().eq(before[name]).all().item<bool>(), $"{name} changed although every sample was left out of the loss");
    }

    [Fact]
    public async Task OverlongPenaltyIsAddedToTheRewards()
    {
        var cfg = TinyRl.Config(TestPaths.NewTempDir("dapo-overlong"));
        cfg = cfg with { Reward = cfg.Reward with { OverlongBufferLen = 4, OverlongPenaltyFactor = 0.5 }, Optim = cfg.Optim with { MaxGlobalSteps = 1 } };
        var (trainer, sink, models) = Build(cfg, new CharacterReward());
        using var _m = models; using var _t = trainer;
        var prompts = TinyRl.Data(trainer.Config).Take(2).ToList();
        PpoStepReport? report = null;
        trainer.StepCompleted += r => report = r;
        trainer.TrainStep(prompts);
        var m = report!.Metrics.ToLog();
        // The same rollout again (same seed): its lengths give the expected penalty, generate_max_len 8 − buffer 4.
        using var again = trainer.Maker.Generate(prompts, 2, 1.0, PpoSeeds.Sampling(trainer.Config.Run.Seed, 1));
        var lengths = again.Items.Select(i => i.ResponseLength).ToList();
        double expected = lengths.Average(l => l <= 4 ? 0 : -Math.Min(l - 4, 4) / 4.0 * 0.5);
        Assert.Equal(expected, m["train/overlong_penalty"], 12);
        Assert.Equal(lengths.Count(l => l > 4), (int)m["train/overlong_penalised"]);
        var raw = await new CharacterReward().ScoreAsync(again.Queries, [], []);
        Assert.Equal(raw.Average(r => r.Reward) + expected, m["train/reward"], 6);
    }

    [Theory]
    [InlineData(PolicyLossType.Gspo)]
    [InlineData(PolicyLossType.Cispo)]
    [InlineData(PolicyLossType.Ppo)]
    public void EveryPolicyLossTypeTrains(PolicyLossType type)
    {
        var cfg = TinyRl.Config(TestPaths.NewTempDir("dapo-type"), new AlgorithmSettings
        {
            Estimator = AdvantageEstimator.GroupNorm, InitKlCoef = 0, PolicyLossType = type,
            DualClip = type == PolicyLossType.Ppo ? 3 : null,
            LossAggMode = type == PolicyLossType.Cispo ? LossAggregation.SequenceSumNorm : LossAggregation.TokenMean,
        });
        cfg = cfg with { Optim = cfg.Optim with { MaxGlobalSteps = 1 } };
        var (trainer, sink, models) = Build(cfg, new CharacterReward());
        using var _m = models; using var _t = trainer;
        var before = models.Actor.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        trainer.Fit();
        var m = sink.Rows.Single().Metrics;
        Assert.True(double.IsFinite(m["train/policy_loss"]));
        Assert.Equal(type == PolicyLossType.Ppo, m.ContainsKey("train/clip_frac_lower"));
        Assert.Contains(models.Actor.named_parameters(), p => !p.parameter.detach().eq(before[p.name]).all().item<bool>());
    }
}
