// How several reward models and the rule (or remote) reward become one reward per sample. OpenRLHF's train_ppo_ray
// (≤ v0.6) combines reward models with `reward_fn = torch.stack(rewards).sum(dim=0)` (each model's reward normalised
// first with its config mean/std when --normalize_reward); LMM-R1's v0.7.3 fork builds a single reward-model group
// from --reward_pretrain. --reward_weights generalises the sum to a weighted one:
// r = Σ_k w_k · r_k + w_rule · r_rule. Upstream runs either reward models or a remote reward, never both, so the rule
// (or --remote_rm_url) reward's weight is 0 when reward models are given unless --reward_weights names it, and every
// model's weight is 1 by default (upstream's plain sum). --reward_clip_range applies to r later, in the token rewards.
namespace LmmR1.Training.RewardModels;

public static class RewardCombination
{
    /// <summary>r_i = Σ_k w_k · s_k,i + w_rule · rule_i for every sample i.</summary>
    /// <param name="modelScores">[K][N] each reward model's (already normalised) score per sample.</param>
    /// <param name="modelWeights">[K] w_k.</param>
    /// <param name="rule">[N] the rule / remote reward per sample.</param>
    /// <param name="ruleWeight">w_rule.</param>
    public static double[] Combine(IReadOnlyList<IReadOnlyList<double>> modelScores, IReadOnlyList<double> modelWeights,
                                   IReadOnlyList<double> rule, double ruleWeight)
    {
        if (modelScores.Count != modelWeights.Count)
            throw new ArgumentException($"{modelScores.Count} reward models but {modelWeights.Count} weights");
        int n = rule.Count;
        var total = new double[n];
        for (int i = 0; i < n; i++) total[i] = ruleWeight == 0 ? 0 : ruleWeight * rule[i];   // 0 · NaN must not poison
        for (int k = 0; k < modelScores.Count; k++)
        {
            if (modelScores[k].Count != n) throw new ArgumentException($"reward model {k} gave {modelScores[k].Count} scores for {n} samples");
            for (int i = 0; i < n; i++) total[i] += modelWeights[k] * modelScores[k][i];
        }
        return total;
    }

    /// <summary>OpenRLHF's RewardModel with normalize_reward (eval mode): (r − mean) / std.</summary>
    public static double Normalize(double raw, double mean, double std) => (raw - mean) / std;
}
