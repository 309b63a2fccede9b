// GAE(γ, λ) and discounted return-to-go over action tokens (experience_maker.get_advantages_and_returns,
// get_cumulative_returns): values and rewards are multiplied by action_mask first, then the recursion runs over
// every position. Departure: the reverse recursion is a log-depth scan instead of a Python loop over time (same
// sums, different fp32 rounding order); call it once on the whole rollout [N, A], not per micro-batch.
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class Returns
{
    /// <summary>values, rewards: [B, A]; actionMask: [B, A] or null. δ_t = r_t + γ·V_{t+1} − V_t (V_A = 0),
    /// A_t = δ_t + γλ·A_{t+1}, returns = A + V with V already masked. → (advantages, returns), both [B, A].</summary>
    public static (Tensor Advantages, Tensor Returns) Gae(
        Tensor values, Tensor rewards, Tensor? actionMask, double gamma, double lambda)
    {
        Precision.SameShape(values, rewards, "values", "rewards");
        using var scope = NewDisposeScope();
        var v = Precision.Compute(values);                                                 // [B, A]
        var r = Precision.Compute(rewards);                                                // [B, A]
        if (actionMask is not null)
        {
            var m = Precision.Valid(actionMask, v);
            v = Masked.Zeroed(v, m);
            r = Masked.Zeroed(r, m);
        }
        var nextValues = nn.functional.pad(v.narrow(1, 1, v.shape[1] - 1), [0, 1]);        // [B, A]: V_{t+1}, 0 at the end
        var delta = r.Plus(nextValues.MulS(gamma)) - v;
        var advantages = DiscountedReverseCumsum(delta, gamma * lambda);
        var returns = advantages.Plus(v);
        return (advantages.MoveToOuterDisposeScope(), returns.MoveToOuterDisposeScope());
    }

    /// <summary>Return-to-go G_t = Σ_{k≥t} γ^(k−t)·r_k of the masked rewards [B, A] → [B, A] (the advantage of every
    /// estimator but gae, before whitening).</summary>
    public static Tensor ReturnToGo(Tensor rewards, Tensor? actionMask, double gamma)
    {
        using var scope = NewDisposeScope();
        var r = Precision.Compute(rewards);                                                // [B, A]
        if (actionMask is not null) r = Masked.Zeroed(r, Precision.Valid(actionMask, r));
        return DiscountedReverseCumsum(r, gamma).MoveToOuterDisposeScope();
    }

    /// <summary>y_t = Σ_{k≥t} c^(k−t)·x_k along the last dim of x [B, T] → [B, T], i.e. y_t = x_t + c·y_{t+1}.
    /// c = 1: reverse cumsum. Otherwise Hillis–Steele doubling: after the step with offset s every y_t holds the
    /// sum over the window [t, t + 2s), so ⌈log2 T⌉ steps of [B, T] ops suffice.</summary>
    public static Tensor DiscountedReverseCumsum(Tensor x, double c)
    {
        if (x.dim() != 2) throw new ArgumentException($"expected a [B, T] tensor, got {x.dim()} dims");
        using var scope = NewDisposeScope();
        var y = Precision.Copy(x);                                                         // [B, T]
        long t = y.shape[1];
        if (c == 1.0)
            return y.flip(1).cumsum(1).flip(1).MoveToOuterDisposeScope();
        for (long s = 1; s < t; s *= 2)
        {
            double cs = Math.Pow(c, s);
            if (cs == 0.0) break;                                                          // c = 0, or c^s underflowed
            var ahead = nn.functional.pad(y.narrow(1, s, t - s), [0, s]);                  // [B, T]: y_{t+s}, 0 past the end
            y = y.Plus(ahead.MulS(cs));
        }
        return y.MoveToOuterDisposeScope();
    }
}
