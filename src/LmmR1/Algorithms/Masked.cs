// Masked reductions with OpenRLHF's semantics (openrlhf/models/utils.py masked_mean, masked_normalize):
// mean = Σ(x·m)/Σm (NaN when Σm = 0, as there), variance biased (÷Σm). Departure: masked elements are zeroed with
// `where` instead of multiplied by the mask, which is identical for finite values and keeps NaN/inf under mask=0 out.
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class Masked
{
    /// <summary>Mean over every element where mask ≠ 0 → 0-d. x: any shape; mask: same shape (bool/int/float) or
    /// null (plain mean). Computed in fp32 for half/bf16 inputs.</summary>
    public static Tensor Mean(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var xf = Precision.Compute(x);
        if (mask is null) return xf.mean().MoveToOuterDisposeScope();
        var m = Precision.Valid(mask, x);
        return (Zeroed(xf, m).sum() / m.sum().to_type(xf.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Mean along <paramref name="dim"/> over elements where mask ≠ 0 → x's shape without dim (e.g. [B, A] →
    /// [B] for dim = −1). A row with no valid element gives NaN, as OpenRLHF.</summary>
    public static Tensor Mean(Tensor x, Tensor? mask, long dim, bool keepDim = false)
    {
        using var scope = NewDisposeScope();
        var xf = Precision.Compute(x);
        if (mask is null) return xf.mean([dim], keepDim).MoveToOuterDisposeScope();
        var m = Precision.Valid(mask, x);
        return (Zeroed(xf, m).sum(dim, keepDim) / m.sum(dim, keepDim).to_type(xf.dtype)).MoveToOuterDisposeScope();
    }

    /// <summary>Σ over every element where mask ≠ 0 → 0-d.</summary>
    public static Tensor Sum(Tensor x, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var xf = Precision.Compute(x);
        var s = mask is null ? xf.sum() : Zeroed(xf, Precision.Valid(mask, x)).sum();
        return s.MoveToOuterDisposeScope();
    }

    /// <summary>Σ along <paramref name="dim"/> where mask ≠ 0.</summary>
    public static Tensor Sum(Tensor x, Tensor? mask, long dim, bool keepDim = false)
    {
        using var scope = NewDisposeScope();
        var xf = Precision.Compute(x);
        var s = mask is null ? xf.sum(dim, keepDim) : Zeroed(xf, Precision.Valid(mask, x)).sum(dim, keepDim);
        return s.MoveToOuterDisposeScope();
    }

    /// <summary>A per-token loss [B, A] reduced as <paramref name="aggregation"/> says → 0-d. The global modes need
    /// the optimizer step's <paramref name="totals"/> (see <see cref="LossAggregation"/>).</summary>
    public static Tensor Aggregate(Tensor loss, Tensor? mask, LossAggregation aggregation, StepTotals? totals = null)
    {
        if (LossAggregations.IsGlobal(aggregation) && totals is null)
            throw new ArgumentException($"loss aggregation {LossAggregations.Name(aggregation)} needs the optimizer step's totals");
        using var scope = NewDisposeScope();
        var result = aggregation switch
        {
            LossAggregation.TokenMean => Mean(loss, mask),
            LossAggregation.SequenceMean => MeanOfRows(loss, mask),
            LossAggregation.GlobalTokenMean => Sum(loss, mask).MulS(totals!.Divisor / totals.Tokens),
            LossAggregation.GlobalSequenceMean => RowMeans(loss, mask).sum().MulS(totals!.Divisor / totals.Sequences),
            LossAggregation.GlobalSequenceSum => Sum(loss, mask).MulS(totals!.Divisor / totals.Sequences),
            LossAggregation.SequenceSumNorm => Sum(loss, mask).MulS(totals!.Divisor / (totals.Sequences * totals.NormLength)),
            _ => throw new ArgumentOutOfRangeException(nameof(aggregation), aggregation, null),
        };
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>(x − μ)·rsqrt(max(σ², eps)) along <paramref name="dim"/>, μ and biased σ² over valid elements; masked
    /// elements come out as (0 − μ)·rsqrt(σ²) like OpenRLHF's <c>masked_normalize</c> (which zeroes them first).
    /// Upstream drops keepdim there (it only broadcasts for B = 1 or B = T) and never calls it in the PPO path; this
    /// keeps the dimension. The rollout-wide advantage whitening is <see cref="AdvantageWhitening"/>.</summary>
    public static Tensor Normalize(Tensor x, Tensor mask, long dim = 1, double eps = 1e-8)
    {
        using var scope = NewDisposeScope();
        var m = Precision.Valid(mask, x);
        var xz = Zeroed(Precision.Compute(x), m);
        var mean = Mean(xz, m, dim, keepDim: true);
        var centered = xz - mean;
        var variance = Mean(centered.Square(), m, dim, keepDim: true);
        return (centered * variance.ClampMinS(eps).rsqrt()).MoveToOuterDisposeScope();
    }

    // Mean over the rows that have a valid token of their token means (verl/OpenRLHF exclude fully masked rows).
    static Tensor MeanOfRows(Tensor loss, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        if (mask is null) return Mean(loss, null, dim: -1).mean().MoveToOuterDisposeScope();
        var nonEmpty = Precision.Valid(mask, loss).any(-1);
        return (RowMeans(loss, mask).sum() / nonEmpty.sum().to_type(ScalarType.Float32)).MoveToOuterDisposeScope();
    }

    // Per-row token means with fully masked rows contributing 0 (not NaN) → [B].
    static Tensor RowMeans(Tensor loss, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        if (mask is null) return Mean(loss, null, dim: -1).MoveToOuterDisposeScope();
        var m = Precision.Valid(mask, loss);
        var lf = Precision.Compute(loss);
        var counts = m.sum(-1).to_type(lf.dtype);
        return (Zeroed(lf, m).sum(-1) / counts.ClampMinS(1L)).MoveToOuterDisposeScope();
    }

    // x where valid, 0 elsewhere (a new tensor; gradient 0 under the mask).
    internal static Tensor Zeroed(Tensor x, Tensor valid)
    {
        using var invalid = valid.logical_not();
        return x.FillS(invalid, 0.0);
    }
}

/// <summary>Dtype rules shared by the algorithms: OpenRLHF computes the RL math in fp32 (logits are cast to fp32
/// in Actor.forward, values by <c>* action_mask.float()</c>), so half/bf16 and integer inputs are promoted to fp32;
/// fp32 and fp64 are kept.</summary>
internal static class Precision
{
    public static Tensor Compute(Tensor x) => x.dtype switch
    {
        ScalarType.Float32 or ScalarType.Float64 => x,
        _ => x.to_type(ScalarType.Float32),
    };

    /// <summary>A new fp32/fp64 tensor with x's values.</summary>
    public static Tensor Copy(Tensor x) => x.dtype is ScalarType.Float32 or ScalarType.Float64
        ? x.clone()
        : x.to_type(ScalarType.Float32);

    /// <summary>A bool mask (true = valid) on x's device with x's shape checked.</summary>
    public static Tensor Valid(Tensor mask, Tensor like)
    {
        if (!mask.shape.SequenceEqual(like.shape))
            throw new ArgumentException(
                $"mask shape [{string.Join(",", mask.shape)}] differs from tensor shape [{string.Join(",", like.shape)}]");
        var m = mask.dtype == ScalarType.Bool ? mask : mask.NeS(0);
        // Device has no value equality: compare type and index, or .to() would make a new handle every call.
        return m.device_type == like.device_type && m.device_index == like.device_index ? m : m.to(like.device);
    }

    public static void SameShape(Tensor a, Tensor b, string aName, string bName)
    {
        if (!a.shape.SequenceEqual(b.shape))
            throw new ArgumentException(
                $"{aName} shape [{string.Join(",", a.shape)}] differs from {bName} shape [{string.Join(",", b.shape)}]");
    }
}
