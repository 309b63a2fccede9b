// --advantage_estimator and the rules LMM-R1 attaches to each (experience_maker.compute_advantages_and_returns,
// cli/train_ppo_ray.py). Note: dr_grpo keeps OpenRLHF's token-mean loss, not the paper's constant normaliser.
namespace LmmR1.Algorithms;

public enum AdvantageEstimator { Gae, Reinforce, ReinforceBaseline, Rloo, GroupNorm, DrGrpo }

public static class AdvantageEstimators
{
    public static AdvantageEstimator Parse(string name) => name switch
    {
        "gae" => AdvantageEstimator.Gae,
        "reinforce" => AdvantageEstimator.Reinforce,
        "reinforce_baseline" => AdvantageEstimator.ReinforceBaseline,
        "rloo" => AdvantageEstimator.Rloo,
        "group_norm" => AdvantageEstimator.GroupNorm,
        "dr_grpo" => AdvantageEstimator.DrGrpo,
        _ => throw new ArgumentException(
            $"unknown advantage estimator '{name}': expected gae, reinforce, reinforce_baseline, rloo, group_norm or dr_grpo"),
    };

    public static string CliName(this AdvantageEstimator e) => e switch
    {
        AdvantageEstimator.Gae => "gae",
        AdvantageEstimator.Reinforce => "reinforce",
        AdvantageEstimator.ReinforceBaseline => "reinforce_baseline",
        AdvantageEstimator.Rloo => "rloo",
        AdvantageEstimator.GroupNorm => "group_norm",
        AdvantageEstimator.DrGrpo => "dr_grpo",
        _ => throw new ArgumentOutOfRangeException(nameof(e), e, null),
    };

    /// <summary>Only gae trains a critic (the CLI drops critic_pretrain otherwise).</summary>
    public static bool UsesCritic(this AdvantageEstimator e) => e == AdvantageEstimator.Gae;

    /// <summary>The CLI asserts n_samples_per_prompt &gt; 1 for these (dr_grpo is not checked upstream; with n = 1
    /// its baseline zeroes every reward).</summary>
    public static bool RequiresGroups(this AdvantageEstimator e) =>
        e is AdvantageEstimator.Rloo or AdvantageEstimator.ReinforceBaseline or AdvantageEstimator.GroupNorm;

    /// <summary>Rollout-wide advantage whitening runs for every estimator except group_norm and dr_grpo.</summary>
    public static bool WhitensAdvantages(this AdvantageEstimator e) =>
        e is not (AdvantageEstimator.GroupNorm or AdvantageEstimator.DrGrpo);

    /// <summary>The return-to-go of these uses γ = 1 whatever --gamma says (upstream overwrites args.gamma with a
    /// warning); plain reinforce keeps --gamma.</summary>
    public static bool ForcesUnitGamma(this AdvantageEstimator e) =>
        e is AdvantageEstimator.Rloo or AdvantageEstimator.ReinforceBaseline or AdvantageEstimator.GroupNorm
            or AdvantageEstimator.DrGrpo;
}
