// Per-token KL estimators between the policy and the reference (Schulman, http://joschu.net/blog/kl-approx.html),
// as openrlhf/models/utils.py compute_approx_kl at LMM-R1 f917f18: fp32, no clamping, no mask inside (LMM-R1's
// action log-probs are already 0 under mask=0, so every estimator is 0 there); the optional mask here does that.
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

/// <summary><c>--kl_estimator</c>: with d = log π − log π_ref, k1 = d, k2 = d²/2, k3 = e^(−d) − 1 + d.</summary>
public enum KlEstimator { K1, K2, K3 }

public static class Kl
{
    /// <summary>Parses the CLI spelling ("k1", "k2", "k3").</summary>
    public static KlEstimator ParseEstimator(string name) => name switch
    {
        "k1" => KlEstimator.K1,
        "k2" => KlEstimator.K2,
        "k3" => KlEstimator.K3,
        _ => throw new ArgumentException($"unknown KL estimator '{name}': expected k1, k2 or k3"),
    };

    /// <summary>Per-token KL estimate. logProbs, refLogProbs: [B, A] → [B, A] fp32. With actionMask [B, A], positions
    /// where it is 0 come out 0 (what LMM-R1 gets from its pre-masked log-probs). k3 is not clamped.</summary>
    public static Tensor Approx(Tensor logProbs, Tensor refLogProbs, KlEstimator estimator, Tensor? actionMask = null)
    {
        Precision.SameShape(logProbs, refLogProbs, "logProbs", "refLogProbs");
        using var scope = NewDisposeScope();
        var d = logProbs.to_type(ScalarType.Float32) - refLogProbs.to_type(ScalarType.Float32);   // [B, A]
        if (actionMask is not null) d = Masked.Zeroed(d, Precision.Valid(actionMask, d));
        var kl = estimator switch
        {
            KlEstimator.K1 => d.alias(),
            KlEstimator.K2 => d.Square().DivS(2.0),
            // e^(−d) − 1 − (−d), in OpenRLHF's order of operations
            KlEstimator.K3 => NegExpMinusOneMinus(d.neg()),
            _ => throw new ArgumentOutOfRangeException(nameof(estimator), estimator, null),
        };
        return kl.MoveToOuterDisposeScope();
    }

    /// <summary>The KL term of the actor loss under <c>--use_kl_loss</c> (ppo_actor.training_step): the estimate
    /// averaged over all valid tokens of the micro-batch (token-mean, whatever the policy-loss aggregation) → 0-d.
    /// The trainer adds it times the controller's β; with <c>init_kl_coef ≤ 0</c> LMM-R1 uses zeros instead.</summary>
    public static Tensor Loss(Tensor logProbs, Tensor refLogProbs, Tensor actionMask, KlEstimator estimator)
    {
        using var scope = NewDisposeScope();
        var kl = Approx(logProbs, refLogProbs, estimator, actionMask);                            // [B, A]
        return Masked.Mean(kl, actionMask).MoveToOuterDisposeScope();
    }

    static Tensor NegExpMinusOneMinus(Tensor negD) => negD.exp().SubS(1.0) - negD;
}
