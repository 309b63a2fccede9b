// Critic loss (openrlhf/models/loss.py ValueLoss): with value clipping V_clip = V_old + clip(V − V_old, ±ε),
// loss = 0.5·agg(max((V_clip − R)², (V − R)²)); without it 0.5·agg((V − R)²). LMM-R1 uses --value_clip 0.2
// and the token-mean aggregation.
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

/// <summary>Loss (0-d, differentiable) and the detached share of valid tokens where the clipped error is the larger.</summary>
public sealed record ValueLossResult(Tensor Loss, Tensor ClipFraction) : IDisposable
{
    public void Dispose() { Loss.Dispose(); ClipFraction.Dispose(); }
}

public static class ValueLoss
{
    /// <summary>values (requires grad), oldValues, returns, actionMask: [B, A]. valueClip null = no clipping.</summary>
    public static ValueLossResult Compute(Tensor values, Tensor oldValues, Tensor returns, Tensor? actionMask,
        double? valueClip, LossAggregation aggregation = LossAggregation.TokenMean)
    {
        Precision.SameShape(values, oldValues, "values", "oldValues");
        Precision.SameShape(values, returns, "values", "returns");
        if (valueClip is { } e && !(e >= 0)) throw new ArgumentException($"value clip must be ≥ 0, got {e}");
        using var scope = NewDisposeScope();
        var v = Precision.Compute(values);                                                         // [B, A]
        var r = Precision.Compute(returns);
        var surr2 = (v - r).Square();
        Tensor perToken, clipFraction;
        if (valueClip is { } eps)
        {
            var old = Precision.Compute(oldValues);
            var vClipped = old.Plus((v - old).ClampS(-eps, eps));
            var surr1 = (vClipped - r).Square();
            perToken = maximum(surr1, surr2);
            using (no_grad())
                clipFraction = Masked.Mean(surr1.detach().gt(surr2.detach()).to_type(ScalarType.Float32), actionMask);
        }
        else
        {
            perToken = surr2;
            clipFraction = zeros([], ScalarType.Float32, v.device);
        }
        var loss = Masked.Aggregate(perToken, actionMask, aggregation).MulS(0.5);
        return new ValueLossResult(loss.MoveToOuterDisposeScope(), clipFraction.MoveToOuterDisposeScope());
    }
}
