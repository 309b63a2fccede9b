// Rollout-wide advantage whitening: one μ and biased σ over all valid tokens of all micro-batches.
// Tolerance 1e-6 absolute (values ≤ 4).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class AdvantageWhiteningTests
{
    const double Tol = 1e-6;

    // micro-batch 0: [[0, 2, 10]] mask [[1, 1, 0]]; micro-batch 1 (narrower): [[4, 6]] mask [[1, 1]]
    // valid tokens 0, 2, 4, 6 → μ = 3; deviations −3, −1, 1, 3 → Σ² = 20 → biased σ² = 20/4 = 5 (unbiased would be 20/3)
    static Tensor[] Adv => [F([0f, 2f, 10f], 1, 3), F([4f, 6f], 1, 2)];
    static Tensor[] Masks => [M([1, 1, 0], 1, 3), M([1, 1], 1, 2)];

    [Fact]
    public void WhitensWithOneMeanAndBiasedStdAcrossMicroBatches()
    {
        float s = (float)Math.Sqrt(5);
        var w = AdvantageWhitening.Whiten(Adv, Masks, divideByStd: true);
        // masked position too: (10 − 3)/√5, as upstream applies (A − μ)·rstd everywhere
        TensorAssert.Close(F([-3 / s, -1 / s, 7 / s], 1, 3), w[0], Tol);
        TensorAssert.Close(F([1 / s, 3 / s], 1, 2), w[1], Tol);
    }

    [Fact]
    public void NoStdNormOnlySubtractsTheMean()
    {
        var w = AdvantageWhitening.Whiten(Adv, Masks, divideByStd: false);
        TensorAssert.Close(F([-3f, -1f, 7f], 1, 3), w[0], Tol);
        TensorAssert.Close(F([1f, 3f], 1, 2), w[1], Tol);
    }

    [Fact]
    public void ValidTokensEndWithZeroMeanAndUnitBiasedStd()
    {
        const int b = 6, t = 20;
        var a = D(Uniform(b * t, seed: 5, lo: -3, hi: 5), b, t).to_type(ScalarType.Float32);
        var m = M(RandomMask(b, t, seed: 6), b, t);
        var w = AdvantageWhitening.Whiten(a, m, divideByStd: true);
        var valid = w.masked_select(m);
        Assert.Equal(0.0, valid.mean().item<float>(), 1e-6);
        Assert.Equal(1.0, valid.std(unbiased: false).item<float>(), 1e-6);
    }

    [Fact]
    public void MaskedValuesDoNotChangeValidOutputs()
    {
        var junk = new[] { Junk(Adv[0], Masks[0], -500), Adv[1] };
        var w1 = AdvantageWhitening.Whiten(Adv, Masks, divideByStd: true);
        var w2 = AdvantageWhitening.Whiten(junk, Masks, divideByStd: true);
        TensorAssert.Equal(w1[0].masked_select(Masks[0]), w2[0].masked_select(Masks[0]));
        TensorAssert.Equal(w1[1], w2[1]);
    }

    [Fact]
    public void ConstantAdvantagesHitTheVarianceFloor()
    {
        // σ² = 0 is clamped to 1e-8 → rstd = 1e4, and A − μ = 0 → 0
        var w = AdvantageWhitening.Whiten(F([2f, 2f], 1, 2), M([1, 1], 1, 2), divideByStd: true);
        TensorAssert.Equal(zeros(1, 2), w);
    }
}
