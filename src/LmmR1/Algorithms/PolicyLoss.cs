// PPO clipped surrogate (openrlhf/models/loss.py PolicyLoss): ρ = exp(log π − log π_old),
// loss = −min(ρA, clip(ρ, 1 − ε, 1 + ε)A), token-mean over the micro-batch's valid tokens (LMM-R1 builds it with
// token_level_loss = True). No dual-clip. Plus the actor's total loss (ppo_actor.training_step).
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

/// <summary>Loss (0-d, differentiable) and detached 0-d diagnostics over valid tokens: ClipFraction = share of tokens
/// where the clipped term is the smaller (so its gradient is cut), ApproxKl = mean(log π_old − log π), and ρ's
/// mean, min and max.</summary>
public sealed record PolicyLossResult(
    Tensor Loss, Tensor ClipFraction, Tensor ApproxKl, Tensor RatioMean, Tensor RatioMin, Tensor RatioMax) : IDisposable
{
    public void Dispose()
    {
        Loss.Dispose(); ClipFraction.Dispose(); ApproxKl.Dispose();
        RatioMean.Dispose(); RatioMin.Dispose(); RatioMax.Dispose();
    }
}

public static class PolicyLoss
{
    /// <summary>logProbs (requires grad), oldLogProbs, advantages, actionMask: [B, A]; clipEps = --eps_clip.</summary>
    public static PolicyLossResult Compute(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor? actionMask,
        double clipEps, LossAggregation aggregation = LossAggregation.TokenMean)
    {
        Precision.SameShape(logProbs, oldLogProbs, "logProbs", "oldLogProbs");
        Precision.SameShape(logProbs, advantages, "logProbs", "advantages");
        if (!(clipEps >= 0)) throw new ArgumentException($"clip epsilon must be ≥ 0, got {clipEps}");
        using var scope = NewDisposeScope();
        var logRatio = Precision.Compute(logProbs) - Precision.Compute(oldLogProbs);               // [B, A]
        var ratio = logRatio.exp();
        var adv = Precision.Compute(advantages);
        var surr1 = ratio * adv;
        var surr2 = ratio.clamp(1 - clipEps, 1 + clipEps) * adv;
        var perToken = minimum(surr1, surr2).neg();                                               // [B, A]
        var loss = Masked.Aggregate(perToken, actionMask, aggregation);

        using (no_grad())
        {
            var clipped = surr2.detach().lt(surr1.detach()).to_type(ScalarType.Float32);
            var r = ratio.detach();
            return new PolicyLossResult(
                loss.MoveToOuterDisposeScope(),
                Masked.Mean(clipped, actionMask).MoveToOuterDisposeScope(),
                Masked.Mean(logRatio.detach().neg(), actionMask).MoveToOuterDisposeScope(),
                Masked.Mean(r, actionMask).MoveToOuterDisposeScope(),
                MaskedExtreme(r, actionMask, max: false).MoveToOuterDisposeScope(),
                MaskedExtreme(r, actionMask, max: true).MoveToOuterDisposeScope());
        }
    }

    static Tensor MaskedExtreme(Tensor x, Tensor? mask, bool max)
    {
        if (mask is null) return max ? x.max() : x.min();
        var filled = x.masked_fill(Precision.Valid(mask, x).logical_not(), max ? double.NegativeInfinity : double.PositiveInfinity);
        return max ? filled.max() : filled.min();
    }
}

public static class ActorLoss
{
    /// <summary>ppo_actor.training_step: policy + β·KL-loss (only with --use_kl_loss; β = the KL controller's value)
    /// − entropy_loss_coef·mean entropy (only when the coefficient &gt; 1e-8, as upstream). All 0-d.</summary>
    public static Tensor Combine(Tensor policyLoss, Tensor? klLoss, double klCoef, Tensor? entropyMean, double entropyCoef)
    {
        using var scope = NewDisposeScope();
        var total = policyLoss.alias();
        if (klLoss is not null) total = total + klLoss * klCoef;
        if (entropyCoef > 1e-8)
        {
            if (entropyMean is null) throw new ArgumentException("entropy_loss_coef > 0 needs the entropy term");
            total = total - entropyMean * entropyCoef;
        }
        return total.MoveToOuterDisposeScope();
    }
}
