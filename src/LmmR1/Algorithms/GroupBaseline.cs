// Group reward shaping over the n samples of each prompt (experience_maker.compute_advantages_and_returns).
// Layout: rewards are prompt-major, rewards[p·n + j] = sample j of prompt p (vLLM requests repeat each prompt n
// times in a row), so the rollout must not be shuffled before this. group_norm's std is torch's default: unbiased.
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class GroupBaseline
{
    /// <summary>The estimator's shaping of the scalar rewards. rewards: [N] (any shape with N = P·n elements) → same
    /// shape, fp32. gae and reinforce leave them as they are (a copy).</summary>
    public static Tensor Shape(Tensor rewards, AdvantageEstimator estimator, int samplesPerPrompt) => estimator switch
    {
        AdvantageEstimator.Gae or AdvantageEstimator.Reinforce => Precision.Copy(rewards),
        AdvantageEstimator.Rloo => LeaveOneOut(rewards, samplesPerPrompt),
        AdvantageEstimator.ReinforceBaseline or AdvantageEstimator.DrGrpo => SubtractMean(rewards, samplesPerPrompt),
        AdvantageEstimator.GroupNorm => ZScore(rewards, samplesPerPrompt),
        _ => throw new ArgumentOutOfRangeException(nameof(estimator), estimator, null),
    };

    /// <summary>RLOO: r − (Σ_group r − r)/(n − 1). Needs n &gt; 1.</summary>
    public static Tensor LeaveOneOut(Tensor rewards, int samplesPerPrompt)
    {
        RequireGroups(rewards, samplesPerPrompt, minimum: 2, "rloo");
        using var scope = NewDisposeScope();
        var r = Grouped(rewards, samplesPerPrompt);                                   // [P, n]
        var baseline = (r.sum(-1, keepdim: true) - r).DivS((double)(samplesPerPrompt - 1));
        return (r - baseline).reshape(rewards.shape).MoveToOuterDisposeScope();
    }

    /// <summary>reinforce_baseline and dr_grpo: r − mean_group(r).</summary>
    public static Tensor SubtractMean(Tensor rewards, int samplesPerPrompt)
    {
        RequireGroups(rewards, samplesPerPrompt, minimum: 1, "a group mean");
        using var scope = NewDisposeScope();
        var r = Grouped(rewards, samplesPerPrompt);                                   // [P, n]
        return (r - r.mean([-1L], keepdim: true)).reshape(rewards.shape).MoveToOuterDisposeScope();
    }

    /// <summary>group_norm (GRPO): (r − mean_group)/(std_group + eps), std unbiased (÷ (n − 1)). Needs n &gt; 1.
    /// A group of equal rewards gives 0/eps = 0.</summary>
    public static Tensor ZScore(Tensor rewards, int samplesPerPrompt, double eps = 1e-9)
    {
        RequireGroups(rewards, samplesPerPrompt, minimum: 2, "group_norm");
        using var scope = NewDisposeScope();
        var r = Grouped(rewards, samplesPerPrompt);                                   // [P, n]
        var std = r.std(-1, unbiased: true, keepdim: true);
        return ((r - r.mean([-1L], keepdim: true)) / std.AddS(eps)).reshape(rewards.shape).MoveToOuterDisposeScope();
    }

    // [P·n] → [P, n] in fp32, prompt-major.
    static Tensor Grouped(Tensor rewards, int n) => Precision.Compute(rewards).reshape(-1, n);

    static void RequireGroups(Tensor rewards, int n, int minimum, string what)
    {
        if (n < minimum)
            throw new ArgumentException($"{what} needs n_samples_per_prompt ≥ {minimum}, got {n}");
        if (rewards.numel() % n != 0)
            throw new ArgumentException(
                $"{rewards.numel()} rewards are not a whole number of groups of n_samples_per_prompt = {n}");
    }
}
