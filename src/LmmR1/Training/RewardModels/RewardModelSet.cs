// The reward models of one PPO run (--reward_pretrain A,B,…) with their weights: loaded frozen in the policy's dtype
// (--bf16) on the run's device, each scores the rollout's samples without grad in micro-batches of
// --micro_rollout_batch_size (upstream's RewardModelRayActor.forward on the same token ids and images the actor saw,
// so a reward model must share the policy's tokenizer and image processor), and the scores are combined with the
// rule / remote reward by RewardCombination. Departure: every model runs in this one process.
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Training.Ppo;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.RewardModels;

public sealed class RewardModelSet : IDisposable
{
    public IReadOnlyList<SequenceRewardModel> Models { get; }
    public IReadOnlyList<double> Weights { get; }
    public double RuleWeight { get; }
    public bool Normalize { get; }

    public RewardModelSet(IReadOnlyList<SequenceRewardModel> models, RewardSettings settings)
    {
        if (models.Count != settings.RewardPretrain.Count)
            throw new ArgumentException($"{models.Count} reward models for {settings.RewardPretrain.Count} --reward_pretrain entries");
        Models = models;
        Weights = settings.ModelWeights;
        RuleWeight = settings.RuleWeight;
        Normalize = settings.NormalizeReward;
    }

    /// <summary>Loads every --reward_pretrain folder (null when there are none).</summary>
    public static RewardModelSet? Load(PpoConfig c, Device device, Action<string>? log = null)
    {
        if (c.Reward.RewardPretrain.Count == 0) return null;
        var dtype = c.Model.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        var models = new List<SequenceRewardModel>();
        try
        {
            foreach (var dir in c.Reward.RewardPretrain)
            {
                var m = SequenceRewardModel.Load(dir, dtype, device, c.Model.ValueHeadPrefix);
                models.Add(m);
                log?.Invoke($"reward model {dir}: {m.Info.Config.ModelType}, head '{m.Info.HeadName}'" +
                            (c.Reward.NormalizeReward ? $", normalised with mean {m.Info.Mean:G6}, std {m.Info.Std:G6}" : ""));
            }
        }
        catch
        {
            foreach (var m in models) m.Dispose();
            throw;
        }
        return new RewardModelSet(models, c.Reward);
    }

    /// <summary>Checks that a reward checkpoint can read the policy's inputs: token ids within its vocabulary, the same
    /// image token and patch layout, a vision tower when prompts have images. Throws an InputException naming
    /// --reward_pretrain and the folder.</summary>
    public static void CheckCompatible(RewardCheckpointInfo rm, QwenVLConfig policy, int tokenizerVocab, bool promptsHaveImages)
    {
        InputException Bad(string what) => InputException.At(null, null, "--reward_pretrain", $"'{rm.Dir}': {what}");
        var c = rm.Config;
        if (c.Text.VocabSize < tokenizerVocab)
            throw Bad($"its vocab_size {c.Text.VocabSize} is below the policy tokenizer's {tokenizerVocab} ids: a reward model scores the " +
                      "policy's token ids, so it must share the policy's tokenizer");
        if (!promptsHaveImages) return;
        if (c.Vision is null)
            throw Bad($"a text-only {c.ModelType} reward model cannot score prompts with images (use a Qwen2-VL / Qwen2.5-VL reward model)");
        if (c.Tokens.ImageTokenId != policy.Tokens.ImageTokenId)
            throw Bad($"its image_token_id {c.Tokens.ImageTokenId} differs from the policy's {policy.Tokens.ImageTokenId}");
        if (policy.Vision is { } pv && (c.Vision.PatchDim != pv.PatchDim || c.Vision.MergeUnit != pv.MergeUnit))
            throw Bad("its vision patches (patch_size, temporal_patch_size, spatial_merge_size, in_channels) differ from the policy's: " +
                      "it cannot read the policy's image inputs");
    }

    /// <summary>Raw scores [K][N] of <paramref name="items"/>, in micro-batches of <paramref name="micro"/> rows.</summary>
    public double[][] RawScores(IReadOnlyList<ExperienceItem> items, int micro, long padTokenId)
    {
        var result = new double[Models.Count][];
        for (int k = 0; k < Models.Count; k++)
        {
            var model = Models[k];
            var scores = new double[items.Count];
            for (int start = 0; start < items.Count; start += micro)
            {
                using var scope = torch.NewDisposeScope();
                var batch = items.Skip(start).Take(micro).ToList();
                using var e = Experience.Collate(batch, model.Backbone.Device, padTokenId);
                using var noGrad = torch.no_grad();
                var features = e.ImageFeatures(model.Backbone);              // each prompt's images once, however many samples
                var r = model.Rewards(e.Sequences, e.AttentionMask, imageGridThw: e.ImageGridThw, imageEmbeds: features).cpu().data<float>().ToArray();
                for (int i = 0; i < r.Length; i++) scores[start + i] = r[i];
            }
            result[k] = scores;
        }
        return result;
    }

    /// <summary>The per-sample rewards: Σ_k w_k · (normalised) model score + w_rule · rule reward. The format and
    /// accuracy parts stay the rule reward's (diagnostics, dynamic filtering and evaluation read them).</summary>
    public IReadOnlyList<RewardResult> Combine(IReadOnlyList<RewardResult> rule, double[][] raw)
    {
        var scores = raw.Select((s, k) => (IReadOnlyList<double>)(Normalize
            ? s.Select(x => RewardCombination.Normalize(x, Models[k].Info.Mean, Models[k].Info.Std)).ToArray()
            : s)).ToList();
        var total = RewardCombination.Combine(scores, Weights, rule.Select(r => r.Reward).ToArray(), RuleWeight);
        return rule.Select((r, i) => r with { Reward = total[i] }).ToList();
    }

    /// <summary>One line for the plan: the weighted sum the reward is.</summary>
    public static string Describe(RewardSettings r)
    {
        if (r.RewardPretrain.Count == 0) return "";
        var terms = r.RewardPretrain.Select((p, k) => $"{Fmt(r.ModelWeights[k])}·RM({p})").ToList();
        terms.Add($"{Fmt(r.RuleWeight)}·{(r.RemoteRmUrl is null ? "rule reward" : "remote reward")}");
        return $"  reward                  {string.Join(" + ", terms)}" +
               (r.NormalizeReward ? "; reward-model scores normalised with their config.json mean/std" : "") +
               $"; clipped to [{Fmt(r.ClipMin)}, {Fmt(r.ClipMax)}]" + Environment.NewLine;
    }

    static string Fmt(double v) => v.ToString("G4", System.Globalization.CultureInfo.InvariantCulture);

    public void Dispose()
    {
        foreach (var m in Models) m.Dispose();
    }
}
