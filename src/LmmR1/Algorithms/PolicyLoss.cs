// The actor's policy-gradient losses, per token [B, A] then aggregated (LossAggregation):
// - ppo (openrlhf/models/loss.py PolicyLoss): ρ = exp(log π − log π_old), −min(ρA, clip(ρ, 1 − ε_low, 1 + ε_high)A);
//   ε_low = ε_high = --eps_clip unless --eps_clip_low_high (DAPO's clip-higher); optional dual clip (--dual_clip c > 1:
//   for A < 0 the loss is at most −cA, arXiv 1912.09729). Departure from verl/newer OpenRLHF: the log-ratio is not
//   clamped to ±20 (LMM-R1 does not clamp; our goldens are its), and verl's always-on dual clip (c = 3) is opt-in.
// - gspo (arXiv 2507.18071, verl compute_policy_loss_gspo): the sequence ratio s = exp(mean_t log ρ_t) as
//   sg[log s] + log π − sg[log π] (clamped at 10 in log space, as verl), clipped to [1 − ε_low, 1 + ε_high] per
//   sequence and aggregated at the sequence level (token-mean modes become their seq-mean-token-mean mode, as verl
//   forces). Its clip ranges are the same flags (GSPO's paper uses ~3e-4 / 4e-4).
// - cispo (MiniMax-M1 arXiv 2506.13585, verl compute_policy_loss_cispo): −sg[clip(ρ, 1 − ε_low, 1 + ε_high)]·A·log π,
//   a REINFORCE token loss with clipped, stop-gradient importance weights (log-ratio clamped to ±20 as verl).
// Plus the actor's total loss (ppo_actor.training_step).
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

/// <summary>Loss (0-d, differentiable) and detached 0-d diagnostics over valid tokens: ClipFraction = share of tokens
/// whose ratio was clipped (ppo/gspo: the clipped term is the larger loss, so its gradient is cut; cispo: the weight
/// was clamped), ClipFractionLower = share where the dual clip bound applied (0 without it), ApproxKl =
/// mean(log π_old − log π), and the ratio's mean, min and max (gspo: the sequence ratio, per token).</summary>
public sealed record PolicyLossResult(
    Tensor Loss, Tensor ClipFraction, Tensor ApproxKl, Tensor RatioMean, Tensor RatioMin, Tensor RatioMax,
    Tensor ClipFractionLower) : IDisposable
{
    public void Dispose()
    {
        Loss.Dispose(); ClipFraction.Dispose(); ApproxKl.Dispose();
        RatioMean.Dispose(); RatioMin.Dispose(); RatioMax.Dispose(); ClipFractionLower.Dispose();
    }
}

public enum PolicyLossType { Ppo, Gspo, Cispo }

/// <summary>The policy loss's settings, resolved from --policy_loss_type, --eps_clip / --eps_clip_low_high,
/// --dual_clip and --loss_agg_mode.</summary>
public sealed record PolicyLossOptions(
    PolicyLossType Type, double ClipLow, double ClipHigh, double? DualClip = null,
    LossAggregation Aggregation = LossAggregation.TokenMean)
{
    /// <summary>The symmetric PPO clip LMM-R1 uses (--eps_clip).</summary>
    public static PolicyLossOptions Ppo(double eps) => new(PolicyLossType.Ppo, eps, eps);

    /// <summary>The first invalid setting (its flag and what is expected), or null.</summary>
    public (string Flag, string Message)? Problem()
    {
        if (!(ClipLow >= 0) || !(ClipHigh >= 0) || double.IsInfinity(ClipLow) || double.IsInfinity(ClipHigh))
            return ("--eps_clip_low_high", $"clip ranges must be finite and ≥ 0, got {ClipLow} {ClipHigh}");
        if (ClipLow >= 1 && Type != PolicyLossType.Cispo)
            return ("--eps_clip_low_high", $"the low clip range must be < 1 (the ratio is clipped to [1 − low, 1 + high]), got {ClipLow}");
        if (DualClip is { } c && !(c > 1 && double.IsFinite(c)))
            return ("--dual_clip", $"must be a finite number > 1, got {c}");
        if (DualClip is not null && Type != PolicyLossType.Ppo)
            return ("--dual_clip", $"applies to --policy_loss_type ppo only, not {Type.ToString().ToLowerInvariant()}");
        return null;
    }
}

public static class PolicyLoss
{
    /// <summary>LMM-R1's PPO loss: symmetric clip, no dual clip. logProbs (requires grad), oldLogProbs, advantages,
    /// actionMask: [B, A]; clipEps = --eps_clip.</summary>
    public static PolicyLossResult Compute(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor? actionMask,
        double clipEps, LossAggregation aggregation = LossAggregation.TokenMean)
    {
        if (!(clipEps >= 0)) throw new ArgumentException($"clip epsilon must be ≥ 0, got {clipEps}");
        return Compute(logProbs, oldLogProbs, advantages, actionMask, PolicyLossOptions.Ppo(clipEps) with { Aggregation = aggregation });
    }

    /// <summary>The loss <paramref name="options"/> name. Global aggregation modes need the optimizer step's
    /// <paramref name="totals"/>.</summary>
    public static PolicyLossResult Compute(Tensor logProbs, Tensor oldLogProbs, Tensor advantages, Tensor? actionMask,
        PolicyLossOptions options, StepTotals? totals = null)
    {
        Precision.SameShape(logProbs, oldLogProbs, "logProbs", "oldLogProbs");
        Precision.SameShape(logProbs, advantages, "logProbs", "advantages");
        if (options.Problem() is { } problem) throw new ArgumentException($"{problem.Flag}: {problem.Message}");
        using var scope = NewDisposeScope();
        var lp = Precision.Compute(logProbs);
        var logRatio = lp - Precision.Compute(oldLogProbs);                                      // [B, A]
        var adv = Precision.Compute(advantages);
        double lo = 1 - options.ClipLow, hi = 1 + options.ClipHigh;
        Tensor perToken, ratio, clipped, clippedLower;
        var aggregation = options.Aggregation;
        switch (options.Type)
        {
            case PolicyLossType.Ppo:
            {
                ratio = logRatio.exp();
                var surr1 = ratio * adv;
                var surr2 = ratio.ClampS(lo, hi) * adv;
                var clip1 = minimum(surr1, surr2);
                clipped = surr2.detach().lt(surr1.detach());
                if (options.DualClip is { } c)
                {
                    var bound = adv.MulS(c);
                    var negative = adv.LtS(0L);
                    perToken = where(negative, maximum(clip1, bound), clip1).neg();
                    clippedLower = negative.logical_and(bound.detach().gt(clip1.detach()));
                }
                else
                {
                    perToken = clip1.neg();
                    clippedLower = zeros_like(clipped);
                }
                break;
            }
            case PolicyLossType.Gspo:
            {
                // s_i = exp(Σ_t m·log ρ / |y_i|), carried per token as sg[log s_i] + log π − sg[log π].
                var seqLogRatio = Masked.Sum(logRatio, actionMask, -1, keepDim: true)
                                  / (actionMask is null
                                      ? TorchScalars.Full([1, 1], (double)logRatio.shape[^1], logRatio.dtype, logRatio.device)
                                      : Precision.Valid(actionMask, logRatio).sum(-1, keepdim: true).ClampMinS(1L).to_type(logRatio.dtype));
                var logS = (lp - lp.detach()).Plus(seqLogRatio.detach()).ClampMaxS(10.0);
                ratio = logS.exp();
                var surr1 = ratio * adv;
                var surr2 = ratio.ClampS(lo, hi) * adv;
                perToken = minimum(surr1, surr2).neg();
                clipped = surr2.detach().lt(surr1.detach());
                clippedLower = zeros_like(clipped);
                aggregation = LossAggregations.SequenceLevel(aggregation);
                break;
            }
            case PolicyLossType.Cispo:
            {
                ratio = logRatio.ClampS(-20.0, 20.0).exp();
                var weight = ratio.ClampS(lo, hi).detach();
                perToken = (weight * adv * lp).neg();
                clipped = weight.ne(ratio.detach());
                clippedLower = zeros_like(clipped);
                break;
            }
            default: throw new ArgumentOutOfRangeException(nameof(options), options.Type, null);
        }
        var loss = Masked.Aggregate(perToken, actionMask, aggregation, totals);

        using (no_grad())
        {
            var r = ratio.detach();
            return new PolicyLossResult(
                loss.MoveToOuterDisposeScope(),
                Masked.Mean(clipped.to_type(ScalarType.Float32), actionMask).MoveToOuterDisposeScope(),
                Masked.Mean(logRatio.detach().neg(), actionMask).MoveToOuterDisposeScope(),
                Masked.Mean(r, actionMask).MoveToOuterDisposeScope(),
                MaskedExtreme(r, actionMask, max: false).MoveToOuterDisposeScope(),
                MaskedExtreme(r, actionMask, max: true).MoveToOuterDisposeScope(),
                Masked.Mean(clippedLower.to_type(ScalarType.Float32), actionMask).MoveToOuterDisposeScope());
        }
    }

    static Tensor MaskedExtreme(Tensor x, Tensor? mask, bool max)
    {
        if (mask is null) return max ? x.max() : x.min();
        using var invalid = Precision.Valid(mask, x).logical_not();
        var filled = x.FillS(invalid, max ? double.NegativeInfinity : double.PositiveInfinity);
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
        if (klLoss is not null) total = total.Plus(klLoss.MulS(klCoef));
        if (entropyCoef > 1e-8)
        {
            if (entropyMean is null) throw new ArgumentException("entropy_loss_coef > 0 needs the entropy term");
            total = total - entropyMean.MulS(entropyCoef);
        }
        return total.MoveToOuterDisposeScope();
    }
}
