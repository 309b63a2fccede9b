// Reward models (--reward_pretrain): the score equals transformers' output where the head is a row of lm_head (so
// the reward is that logit at the last token); through the trainer a random-head reward model gives each sample
// the score a direct forward gives; several models and the rule reward combine as the hand-computed weighted sum,
// normalised with config.json's mean/std and clipped afterwards; bad checkpoints fail naming the file and tensor.
using System.Text.Json.Nodes;
using LmmR1.Algorithms;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Rewards;
using LmmR1.Tests.Models;
using LmmR1.Tests.Support;
using LmmR1.Training.Ppo;
using LmmR1.Training.RewardModels;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public class RewardModelTests
{
    [Fact]
    public void ScoreIsTransformersLogitWhenTheHeadIsAnLmHeadRow()
    {
        // OpenRLHF's Qwen2-VL reward model under transformers ≥ 4.52: model.language_model.* / model.visual.* + score.weight.
        using var reference = new QwenReference("qwen2vl-tiny");
        const int k = 7;
        Tensor row;
        using (var ckpt = SafetensorsCheckpoint.Open(reference.Dir)) { using var lm = ckpt.Load("lm_head.weight"); row = lm.narrow(0, k, 1).clone(); }
        string dir = RewardModelFolders.Write(reference.Dir, TestPaths.NewTempDir("rm-fixture"),
            new Dictionary<string, Tensor> { ["score.weight"] = row }, newLayout: true);
        row.Dispose();
        using var rm = SequenceRewardModel.Load(dir, ScalarType.Float32, torch.CPU);
        using var rewards = rm.Rewards(reference.InputIds, reference.AttentionMask, reference.PixelValues, reference.ImageGridThw);
        var got = rewards.data<float>().ToArray();
        long last = reference.InputIds.shape[1] - 1;   // left padding: every row's last token is the last column
        for (int b = 0; b < got.Length; b++)
        {
            double expected = reference.Logits[b, last, k].item<float>();
            Assert.True(Math.Abs(got[b] - expected) <= Numerics.Fp32, $"row {b}: reward {got[b]}, transformers logit {expected}");
        }
    }

    [Fact]
    public void ScoreIsReadAtTheLastAttendedPositionWhateverThePadding()
    {
        // Right padding too (the server's and OpenRLHF's rollouts pad responses on the right): eos_indices = last 1.
        var (dir, baseDir, head) = RewardModelFolders.Tiny("rm-pad", 3);
        using var rm = SequenceRewardModel.Load(dir, ScalarType.Float32, torch.CPU);
        using var causal = QwenVLModel.Load(baseDir, ScalarType.Float32, torch.CPU);
        long[] a = [10, 20, 30, 40, 50], b = [60, 70, 80];
        long pad = 0;
        var seq = torch.tensor(new long[] { 10, 20, 30, 40, 50, 60, 70, 80, pad, pad }, [2, 5]);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, [2, 5]);
        var got = rm.Rewards(seq, mask).data<float>().ToArray();
        Assert.True(Math.Abs(got[0] - RewardModelFolders.DirectScore(causal, a, head)) <= Numerics.Fp32);
        Assert.True(Math.Abs(got[1] - RewardModelFolders.DirectScore(causal, b, head)) <= Numerics.Fp32);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ATextOnlyQwen2SequenceClassifierScoresLikeItsDirectForward(bool tied)
    {
        // transformers' Qwen2ForSequenceClassification layout: model.embed_tokens / model.layers.* / model.norm + score.weight.
        var cfg = new QwenVLConfig
        {
            Family = QwenFamily.Qwen2,
            Text = new QwenTextConfig
            {
                VocabSize = 300, HiddenSize = 64, IntermediateSize = 128, NumLayers = 2, NumHeads = 4, NumKvHeads = 2,
                MropeSection = [8, 0, 0], MaxPositionEmbeddings = 4096, TieWordEmbeddings = tied,
            },
            Tokens = new QwenTokenIds { EosTokenIds = [1] },
            StoredDType = "float32",
        };
        string root = TestPaths.NewTempDir("rm-qwen2");
        string baseDir = Path.Combine(root, "base");
        using (var m = QwenVLModel.Create(cfg, ScalarType.Float32, torch.CPU, seed: 4)) m.SaveHf(baseDir);
        using var head = RewardModelFolders.RandomHead(64, 9);
        var h = head.data<float>().ToArray();
        string dir = RewardModelFolders.Write(baseDir, Path.Combine(root, "rm"), new Dictionary<string, Tensor> { ["score.weight"] = head },
            editConfig: c => { c["architectures"] = new JsonArray("Qwen2ForSequenceClassification"); c["id2label"] = new JsonObject { ["0"] = "LABEL_0" }; });
        using var rm = SequenceRewardModel.Load(dir, ScalarType.Float32, torch.CPU);
        Assert.Null(rm.Info.Config.Vision);
        using var causal = QwenVLModel.Load(baseDir, ScalarType.Float32, torch.CPU);
        long[] a = [5, 6, 7, 8], b = [9, 10];
        var seq = torch.tensor(new long[] { 5, 6, 7, 8, 0, 0, 9, 10 }, [2, 4]);
        var mask = torch.tensor(new long[] { 1, 1, 1, 1, 0, 0, 1, 1 }, [2, 4]);
        var got = rm.Rewards(seq, mask).data<float>().ToArray();
        Assert.True(Math.Abs(got[0] - RewardModelFolders.DirectScore(causal, a, h)) <= Numerics.Fp32);
        Assert.True(Math.Abs(got[1] - RewardModelFolders.DirectScore(causal, b, h)) <= Numerics.Fp32);
        // With image prompts it is refused up front: it has no vision tower.
        var e = Assert.Throws<InputException>(() => RewardModelSet.CheckCompatible(rm.Info, cfg, 300, promptsHaveImages: true));
        Assert.Contains("--reward_pretrain", e.Message);
        Assert.Contains("text-only qwen2 reward model cannot score prompts with images", e.Message);
        RewardModelSet.CheckCompatible(rm.Info, cfg, 300, promptsHaveImages: false);
        var v = Assert.Throws<InputException>(() => RewardModelSet.CheckCompatible(rm.Info, cfg, 301, promptsHaveImages: false));
        Assert.Contains("vocab_size 300 is below the policy tokenizer's 301 ids", v.Message);
    }

    static PpoConfig WithRewardModels(PpoConfig c, string[] dirs, double[]? weights = null, bool normalize = false) =>
        c with { Reward = c.Reward with { RewardPretrain = dirs, RewardWeights = weights, NormalizeReward = normalize } };

    [Fact]
    public void ThroughTheTrainerEachSampleGetsTheDirectForwardsScore()
    {
        var (dir, baseDir, head) = RewardModelFolders.Tiny("rm-trainer", 7);
        var baseConfig = TinyRl.Config(TestPaths.NewTempDir("rm-trainer-run"));
        var config = WithRewardModels(baseConfig, [dir]) with { Run = baseConfig.Run with { LogSamples = 8 } };
        config.Validate();
        var data = TinyRl.Data(config);
        using var models = PpoModels.Load(config, torch.CPU);
        using var rms = RewardModelSet.Load(config, torch.CPU)!;
        using var trainer = new PpoTrainer(config, models, TinyRl.Processor(config), data, null, new CharacterReward(), null, null, rms);
        var prompts = new[] { data[0], data[1] };

        // The step's rollout, generated ahead with the step's seed (the draws depend on prompt, sample and seed only).
        using var rollout = trainer.Maker.Generate(prompts, config.Rollout.SamplesPerPrompt, config.Rollout.Temperature, PpoSeeds.Sampling(config.Run.Seed, 1));
        using var causal = QwenVLModel.Load(baseDir, ScalarType.Float32, torch.CPU);
        var expected = rollout.Items.Select(it => RewardModelFolders.DirectScore(causal, [.. it.PromptIds, .. it.ResponseIds], head,
            it.Vision?.PixelValues, it.Vision?.ImageGridThw)).ToList();
        Assert.Contains(rollout.Items, it => it.Vision is not null);   // the reward model's own vision tower is exercised

        var report = trainer.TrainStep(prompts);
        Assert.Equal(rollout.Count, report.Samples.Count);
        for (int i = 0; i < rollout.Count; i++)
        {
            Assert.Equal(rollout.Items[i].ResponseLength, report.Samples[i].ResponseLength);
            Assert.True(Math.Abs(report.Samples[i].Reward - expected[i]) <= Numerics.Fp32,
                $"sample {i}: trainer reward {report.Samples[i].Reward}, direct forward {expected[i]}");
        }
        Assert.Equal(expected.Average(), report.Metrics.Rollout.Reward, 4);
    }

    [Fact]
    public void CombinationIsTheHandComputedWeightedSum()
    {
        // Two models (scores per sample), weights 2 and −0.5, rule reward weight 1.5:
        // sample 0: 2·1 − 0.5·0.5 + 1.5·1 = 3.25; sample 1: 2·(−2) − 0.5·4 + 1.5·0.5 = −5.25.
        var total = RewardCombination.Combine([[1.0, -2.0], [0.5, 4.0]], [2, -0.5], [1.0, 0.5], 1.5);
        Assert.Equal([3.25, -5.25], total);
        // Rule weight 0: the rule reward does not count, even when it is not finite.
        Assert.Equal([2.0, -4.0], RewardCombination.Combine([[1.0, -2.0]], [2], [double.NaN, 1], 0));
        // OpenRLHF's normalisation: (r − mean) / std.
        Assert.Equal(0.5, RewardCombination.Normalize(3, 1, 4));
        Assert.Equal(-1.25, RewardCombination.Normalize(-2, 0.5, 2));
    }

    [Fact]
    public void DefaultWeightsAreUpstreamsSumOfTheModels()
    {
        var r = new RewardSettings { RewardPretrain = ["a", "b"] };
        Assert.Equal([1.0, 1.0], r.ModelWeights);
        Assert.Equal(0.0, r.RuleWeight);
        Assert.Equal(1.0, new RewardSettings().RuleWeight);
        var w = r with { RewardWeights = [0.25, 2, 3] };
        Assert.Equal([0.25, 2.0], w.ModelWeights);
        Assert.Equal(3.0, w.RuleWeight);
        Assert.Equal(0.0, (r with { RewardWeights = [0.25, 2] }).RuleWeight);
    }

    [Fact]
    public async Task TwoModelsAndTheRuleRewardCombineNormaliseAndClipAsComputedByHand()
    {
        const double mean = 0.3, std = 2.5;
        var a = RewardModelFolders.Tiny("rm-a", 11, cfg => { cfg["mean"] = mean; cfg["std"] = std; });
        var b = RewardModelFolders.Tiny("rm-b", 12);
        double[] weights = [2, -0.5, 1.5];
        var config = WithRewardModels(TinyRl.Config(TestPaths.NewTempDir("rm-combo")), [a.Dir, b.Dir], weights, normalize: true)
            with { Algorithm = new AlgorithmSettings { Estimator = AdvantageEstimator.Reinforce, InitKlCoef = 0 } };
        config.Validate();
        var data = TinyRl.Data(config);
        using var models = PpoModels.Load(config, torch.CPU);
        using var rms = RewardModelSet.Load(config, torch.CPU)!;
        var rule = new CharacterReward();
        var processor = TinyRl.Processor(config);
        var maker = new ExperienceMaker(config, models, processor.Tokenizer, processor, rule, rms);
        using var rollout = maker.Generate([data[0], data[1], data[2]], 2, 1.0, 5);
        var scores = maker.Score(rollout);

        var ruleScores = await rule.ScoreAsync(rollout.Queries, rollout.Queries, rollout.Queries);
        using var causalA = QwenVLModel.Load(a.BaseDir, ScalarType.Float32, torch.CPU);
        using var causalB = QwenVLModel.Load(b.BaseDir, ScalarType.Float32, torch.CPU);
        var expected = new double[rollout.Count];
        for (int i = 0; i < rollout.Count; i++)
        {
            var it = rollout.Items[i];
            long[] ids = [.. it.PromptIds, .. it.ResponseIds];
            double sa = RewardModelFolders.DirectScore(causalA, ids, a.Head, it.Vision?.PixelValues, it.Vision?.ImageGridThw);
            double sb = RewardModelFolders.DirectScore(causalB, ids, b.Head, it.Vision?.PixelValues, it.Vision?.ImageGridThw);
            expected[i] = weights[0] * (sa - mean) / std + weights[1] * sb + weights[2] * ruleScores[i].Reward;
            // Model scores within fp32 tolerance each; the weights scale the error by at most |2|/std + 0.5 < 1.
            Assert.True(Math.Abs(scores[i].Reward - expected[i]) <= Numerics.Fp32, $"sample {i}: {scores[i].Reward} vs {expected[i]}");
            Assert.Equal(ruleScores[i].FormatReward, scores[i].FormatReward);
            Assert.Equal(ruleScores[i].AccuracyReward, scores[i].AccuracyReward);
        }

        // --reward_clip_range applies to the combined reward: with REINFORCE, no KL and γ = 1 the return of a sample
        // is its clipped reward. A range of half the largest |r| clips at least one sample.
        double c = expected.Max(Math.Abs) / 2;
        var clipped = config with { Reward = config.Reward with { ClipMin = -c, ClipMax = c } };
        var clipMaker = new ExperienceMaker(clipped, models, processor.Tokenizer, processor, rule, rms);
        using var old = clipMaker.ActorLogProbs(rollout);
        using var adv = clipMaker.Advantages(rollout, scores, old, null, null, 0);
        var returns = adv.ReturnSum.data<float>().ToArray();
        for (int i = 0; i < rollout.Count; i++)
            Assert.True(Math.Abs(returns[i] - Math.Clamp(expected[i], -c, c)) <= Numerics.Fp32, $"sample {i}: return {returns[i]}, clip({expected[i]})");
    }

    [Fact]
    public void RewardModelsRunFrozenInTheConfiguredDtype()
    {
        var (dir, _, _) = RewardModelFolders.Tiny("rm-bf16", 5);
        var config = WithRewardModels(TinyRl.Config(TestPaths.NewTempDir("rm-bf16-run")), [dir]) with { Model = new PpoModelSettings { Pretrain = TinyRl.Model, Bf16 = true } };
        using var rms = RewardModelSet.Load(config, torch.CPU)!;
        var m = rms.Models.Single();
        Assert.Equal(ScalarType.BFloat16, m.Backbone.DType);
        Assert.Equal(ScalarType.BFloat16, m.Score.weight!.dtype);
        Assert.All(m.Backbone.parameters(), p => Assert.False(p.requires_grad));
        Assert.False(m.HasGradHead());
    }

    // ------------------------------------------------------------------ bad checkpoints

    [Fact]
    public void ACheckpointWithoutAScoreHeadIsRefusedNamingTheTensor()
    {
        var (_, baseDir, _) = RewardModelFolders.Tiny("rm-nohead", 1);
        var e = Assert.Throws<InputException>(() => RewardCheckpointInfo.Inspect(baseDir));
        Assert.Contains("--reward_pretrain", e.Message);
        Assert.Contains("no 'score.weight' tensor", e.Message);
        Assert.Contains(baseDir, e.Message);
    }

    [Fact]
    public void AWrongHeadShapeIsRefusedNamingFileAndTensor()
    {
        var (_, baseDir, _) = RewardModelFolders.Tiny("rm-shape", 1);
        using var two = RewardModelFolders.RandomHead(64, 1).repeat(2, 1);   // [2, 64]: num_labels 2
        string dir = RewardModelFolders.Write(baseDir, TestPaths.NewTempDir("rm-shape-bad"), new Dictionary<string, Tensor> { ["score.weight"] = two });
        var e = Assert.Throws<InputException>(() => SequenceRewardModel.Load(dir, ScalarType.Float32, torch.CPU));
        Assert.Contains(Path.Combine(dir, "model.safetensors"), e.Message);
        Assert.Contains("tensor 'score.weight' has shape [2, 64], expected [1, 64]", e.Message);
    }

    [Fact]
    public void AHeadWithABiasIsRefused()
    {
        var (_, baseDir, _) = RewardModelFolders.Tiny("rm-bias", 1);
        using var w = RewardModelFolders.RandomHead(64, 1);
        using var bias = torch.zeros(1);
        string dir = RewardModelFolders.Write(baseDir, TestPaths.NewTempDir("rm-bias-bad"), new Dictionary<string, Tensor> { ["score.weight"] = w, ["score.bias"] = bias });
        var e = Assert.Throws<InputException>(() => RewardCheckpointInfo.Inspect(dir));
        Assert.Contains("tensor 'score.bias'", e.Message);
        Assert.Contains("no bias", e.Message);
    }

    [Fact]
    public void AClassifierWithTwoLabelsIsRefusedNamingConfigJson()
    {
        var (dir, _, _) = RewardModelFolders.Tiny("rm-labels", 1, cfg => cfg["id2label"] = new JsonObject { ["0"] = "LABEL_0", ["1"] = "LABEL_1" });
        var e = Assert.Throws<InputException>(() => RewardCheckpointInfo.Inspect(dir));
        Assert.Contains(Path.Combine(dir, "config.json"), e.Message);
        Assert.Contains("field 'id2label'", e.Message);
        Assert.Contains("2 labels", e.Message);
    }

    [Fact]
    public void ValueHeadPrefixInConfigJsonNamesTheHead()
    {
        var (_, baseDir, head) = RewardModelFolders.Tiny("rm-prefix", 2);
        using var w = torch.tensor(head, [1, head.Length]);
        string dir = RewardModelFolders.Write(baseDir, TestPaths.NewTempDir("rm-prefix-v"), new Dictionary<string, Tensor> { ["value_head.weight"] = w },
            editConfig: cfg => cfg["value_head_prefix"] = "value_head");
        Assert.Equal("value_head.weight", RewardCheckpointInfo.Inspect(dir).HeadName);
        using var rm = SequenceRewardModel.Load(dir, ScalarType.Float32, torch.CPU);
        Assert.Equal(head, rm.Score.weight!.data<float>().ToArray());
    }
}

static class RewardModelAsserts
{
    public static bool HasGradHead(this SequenceRewardModel m) => m.Score.weight!.requires_grad;
}
