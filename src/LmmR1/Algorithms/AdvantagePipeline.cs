// experience_maker.compute_advantages_and_returns as one pure function over the rollout's micro-batches:
// group shaping of the scalar rewards (prompt-major, across the whole rollout) → per-token rewards (clip, −β·KL)
// → GAE or return-to-go → rollout-wide whitening (not for group_norm / dr_grpo). Departure: micro-batches of
// unequal size are split back by their sizes (upstream's torch.chunk assumes equal sizes).
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

/// <summary>The flags that shape advantages. Defaults are LMM-R1's CLI defaults.</summary>
public sealed record AdvantageSettings
{
    public AdvantageEstimator Estimator { get; init; } = AdvantageEstimator.Gae;
    /// <summary>--n_samples_per_prompt.</summary>
    public int SamplesPerPrompt { get; init; } = 1;
    /// <summary>--gamma (forced to 1 for rloo, reinforce_baseline, group_norm, dr_grpo).</summary>
    public double Gamma { get; init; } = 1.0;
    /// <summary>--lambd (gae only).</summary>
    public double Lambda { get; init; } = 1.0;
    /// <summary>--reward_clip_range; null = no clip.</summary>
    public (double Min, double Max)? RewardClipRange { get; init; } = (-10.0, 10.0);
    /// <summary>!--no_advantage_std_norm.</summary>
    public bool AdvantageStdNorm { get; init; } = true;

    public void Validate()
    {
        if (SamplesPerPrompt < 1)
            throw InputException.At(null, null, "n_samples_per_prompt", $"must be ≥ 1, got {SamplesPerPrompt}");
        if (Estimator.RequiresGroups() && SamplesPerPrompt < 2)
            throw InputException.At(null, null, "n_samples_per_prompt",
                $"{Estimator.CliName()} needs n_samples_per_prompt > 1, got {SamplesPerPrompt}");
        if (!double.IsFinite(Gamma) || Gamma < 0 || Gamma > 1)
            throw InputException.At(null, null, "gamma", $"must be in [0, 1], got {Gamma}");
        if (!double.IsFinite(Lambda) || Lambda < 0 || Lambda > 1)
            throw InputException.At(null, null, "lambd", $"must be in [0, 1], got {Lambda}");
        if (RewardClipRange is { } c && !(c.Min <= c.Max))
            throw InputException.At(null, null, "reward_clip_range", $"min must be ≤ max, got ({c.Min}, {c.Max})");
    }

    /// <summary>The γ the return-to-go uses.</summary>
    public double EffectiveGamma => Estimator.ForcesUnitGamma() ? 1.0 : Gamma;
}

/// <summary>One micro-batch of a rollout. Rewards: [B] scalar rewards from the verifier; Kl: [B, A] per-token KL
/// (null = zeros: --use_kl_loss or no reference model); ActionMask: [B, A]; Values: [B, A] critic values (gae only).</summary>
public sealed record RolloutRewards(Tensor Rewards, Tensor? Kl, Tensor ActionMask, Tensor? Values);

/// <summary>Advantages and returns [B, A] (fp32) and the per-sequence Σ_t r_t [B] LMM-R1 logs as "return".</summary>
public sealed record AdvantageBatch(Tensor Advantages, Tensor Returns, Tensor ReturnSum) : IDisposable
{
    public void Dispose()
    {
        Advantages.Dispose();
        Returns.Dispose();
        ReturnSum.Dispose();
    }
}

public static class AdvantagePipeline
{
    /// <summary>Runs the whole computation for one rollout; batches in generation order (prompt-major).
    /// klCoef is the KL controller's current β. The settings are validated once where they are built
    /// (<see cref="AdvantageSettings.Validate"/>, or PpoConfig.Validate for a run).</summary>
    public static AdvantageBatch[] Compute(IReadOnlyList<RolloutRewards> batches, AdvantageSettings settings, double klCoef)
    {
        if (batches.Count == 0) return [];
        foreach (var b in batches)
        {
            if (b.ActionMask.dim() != 2) throw new ArgumentException("action mask must be [B, A]");
            if (b.Rewards.numel() != b.ActionMask.shape[0])
                throw new ArgumentException($"{b.Rewards.numel()} rewards for {b.ActionMask.shape[0]} sequences");
            if (settings.Estimator.UsesCritic() && b.Values is null)
                throw new ArgumentException("gae needs critic values for every micro-batch");
        }

        using var scope = NewDisposeScope();
        long[] sizes = batches.Select(b => b.ActionMask.shape[0]).ToArray();
        var all = cat(batches.Select(b => Precision.Compute(b.Rewards).reshape(-1)).ToArray());    // [N], prompt-major
        var shaped = GroupBaseline.Shape(all, settings.Estimator, settings.SamplesPerPrompt).split(sizes);

        var advantages = new Tensor[batches.Count];
        var returns = new Tensor[batches.Count];
        var returnSums = new Tensor[batches.Count];
        for (int i = 0; i < batches.Count; i++)
        {
            var b = batches[i];
            var mask = b.ActionMask;
            var kl = b.Kl ?? zeros(mask.shape, ScalarType.Float32, mask.device);
            var tokenRewards = TokenRewards.Compute(shaped[i], klCoef, kl, mask, settings.RewardClipRange);  // [B, A]
            if (settings.Estimator.UsesCritic())
                (advantages[i], returns[i]) = Returns.Gae(b.Values!, tokenRewards, mask, settings.Gamma, settings.Lambda);
            else
            {
                returns[i] = Returns.ReturnToGo(tokenRewards, mask, settings.EffectiveGamma);
                advantages[i] = returns[i].clone();
            }
            returnSums[i] = tokenRewards.sum(-1);                                               // [B]
        }

        if (settings.Estimator.WhitensAdvantages())
            advantages = AdvantageWhitening.Whiten(advantages, batches.Select(b => b.ActionMask).ToArray(),
                settings.AdvantageStdNorm);

        return Enumerable.Range(0, batches.Count)
            .Select(i => new AdvantageBatch(
                advantages[i].MoveToOuterDisposeScope(),
                returns[i].MoveToOuterDisposeScope(),
                returnSums[i].MoveToOuterDisposeScope()))
            .ToArray();
    }
}
