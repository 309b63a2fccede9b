// Masked mean/sum/normalize and the two loss aggregations on hand-computed tensors. Tolerance 1e-6 absolute:
// every expected value is ≤ 10 in magnitude, so this is a few fp32 ulps.
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class MaskedTests
{
    const double Tol = 1e-6;

    // x = [[1, 2, 3], [4, 5, 6]], mask = [[1, 1, 0], [1, 0, 0]]
    static Tensor X => F([1, 2, 3, 4, 5, 6], 2, 3);
    static Tensor Mask => M([1, 1, 0, 1, 0, 0], 2, 3);

    [Fact]
    public void MeanAndSumOverAllValidTokens()
    {
        // valid: 1, 2, 4 → sum 7, mean 7/3
        Assert.Equal(7f, Item(Masked.Sum(X, Mask)));
        Assert.Equal(7.0 / 3.0, Item(Masked.Mean(X, Mask)), Tol);
        // no mask: plain mean 21/6 = 3.5
        Assert.Equal(3.5, Item(Masked.Mean(X, null)), Tol);
    }

    [Fact]
    public void MeanAndSumAlongLastDim()
    {
        // row 0: (1 + 2)/2 = 1.5; row 1: 4/1 = 4
        TensorAssert.Close(F([1.5f, 4f], 2), Masked.Mean(X, Mask, -1), Tol);
        TensorAssert.Close(F([3f, 4f], 2), Masked.Sum(X, Mask, -1), Tol);
        TensorAssert.Close(F([1.5f, 4f], 2, 1), Masked.Mean(X, Mask, -1, keepDim: true), Tol);
    }

    [Fact]
    public void IntegerAndFloatMasksMeanTheSameAsBool()
    {
        var intMask = tensor(new long[] { 1, 1, 0, 1, 0, 0 }).reshape(2, 3);
        var floatMask = F([1, 1, 0, 1, 0, 0], 2, 3);
        TensorAssert.Equal(Masked.Mean(X, Mask), Masked.Mean(X, intMask));
        TensorAssert.Equal(Masked.Mean(X, Mask), Masked.Mean(X, floatMask));
    }

    [Fact]
    public void MaskedValuesNeverInfluenceTheResult()
    {
        var junk = Junk(X, Mask);
        TensorAssert.Equal(Masked.Mean(X, Mask), Masked.Mean(junk, Mask));
        TensorAssert.Equal(Masked.Mean(X, Mask, -1), Masked.Mean(junk, Mask, -1));
        // even NaN / inf under mask = 0 stay out (upstream's x·mask would give NaN here)
        var poisoned = X.masked_fill(Mask.logical_not(), double.NaN);
        poisoned[0, 2] = tensor(float.PositiveInfinity);
        TensorAssert.Equal(Masked.Sum(X, Mask), Masked.Sum(poisoned, Mask));
    }

    [Fact]
    public void AllMaskedRowGivesNaNLikeUpstream()
    {
        var m = M([1, 1, 0, 0, 0, 0], 2, 3);
        var row = Masked.Mean(X, m, -1);
        Assert.Equal(1.5f, row[0].item<float>());
        Assert.True(float.IsNaN(row[1].item<float>()));
    }

    [Fact]
    public void TokenMeanVersusSequenceMean()
    {
        // token mean: (1 + 2 + 4)/3 = 7/3; sequence mean: (1.5 + 4)/2 = 2.75
        Assert.Equal(7.0 / 3.0, Item(Masked.Aggregate(X, Mask, LossAggregation.TokenMean)), Tol);
        Assert.Equal(2.75, Item(Masked.Aggregate(X, Mask, LossAggregation.SequenceMean)), Tol);
    }

    [Fact]
    public void HalfPrecisionInputsAreReducedInFp32()
    {
        var r = Masked.Mean(X.to_type(ScalarType.BFloat16), Mask);
        Assert.Equal(ScalarType.Float32, r.dtype);
        Assert.Equal(7.0 / 3.0, Item(r), Tol);
    }

    [Fact]
    public void NormalizeUsesBiasedVariancePerRow()
    {
        // row 0 valid [1, 3]: μ = 2, σ² = ((−1)² + 1²)/2 = 1 → [−1, 1]; masked position: (0 − 2)/1 = −2
        // row 1 valid [2, 4, 6]: μ = 4, σ² = (4 + 0 + 4)/3 = 8/3 → (x − 4)·sqrt(3/8)
        var x = F([1, 3, 100, 2, 4, 6], 2, 3);
        var m = M([1, 1, 0, 1, 1, 1], 2, 3);
        float k = (float)Math.Sqrt(3.0 / 8.0);
        TensorAssert.Close(F([-1, 1, -2, -2 * k, 0, 2 * k], 2, 3), Masked.Normalize(x, m, dim: 1), Tol);
    }

    [Fact]
    public void MismatchedMaskShapeIsRejected()
    {
        Assert.Throws<ArgumentException>(() => Masked.Mean(X, M([1, 1], 1, 2)));
    }
}
