// Rollout-wide advantage whitening (end of experience_maker.compute_advantages_and_returns): μ and the biased σ²
// over every valid token of the whole rollout, A ← (A − μ)·rsqrt(max(σ², 1e-8)); μ only under
// --no_advantage_std_norm. Applied to all positions, so masked ones come out as (A − μ)·rstd (losses mask them).
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class AdvantageWhitening
{
    /// <summary>advantages[i], actionMasks[i]: [B_i, A_i] per micro-batch (widths may differ) → new whitened
    /// tensors, fp32. divideByStd = !no_advantage_std_norm. Skipped by the caller for group_norm and dr_grpo
    /// (<see cref="AdvantageEstimators.WhitensAdvantages"/>). A rollout without valid tokens gives NaN.</summary>
    public static Tensor[] Whiten(IReadOnlyList<Tensor> advantages, IReadOnlyList<Tensor> actionMasks, bool divideByStd)
    {
        if (advantages.Count != actionMasks.Count)
            throw new ArgumentException($"{advantages.Count} advantage tensors but {actionMasks.Count} masks");
        if (advantages.Count == 0) return [];
        using var scope = NewDisposeScope();
        var flat = cat(advantages.Select(a => Precision.Compute(a).reshape(-1)).ToArray());          // [ΣB·A]
        var valid = cat(advantages.Select((a, i) => Precision.Valid(actionMasks[i], a).reshape(-1)).ToArray());
        var count = valid.sum().to_type(flat.dtype);
        var mean = Masked.Zeroed(flat, valid).sum() / count;                                       // 0-d
        Tensor? rstd = null;
        if (divideByStd)
        {
            var variance = Masked.Zeroed((flat - mean).Square(), valid).sum() / count;
            rstd = variance.ClampMinS(1e-8).rsqrt();
        }
        var result = new Tensor[advantages.Count];
        for (int i = 0; i < result.Length; i++)
        {
            var centered = Precision.Compute(advantages[i]) - mean;                                 // [B_i, A_i]
            result[i] = (rstd is null ? centered : centered * rstd).MoveToOuterDisposeScope();
        }
        return result;
    }

    /// <summary>One [B, A] tensor holding the whole rollout.</summary>
    public static Tensor Whiten(Tensor advantages, Tensor actionMask, bool divideByStd) =>
        Whiten([advantages], [actionMask], divideByStd)[0];
}
