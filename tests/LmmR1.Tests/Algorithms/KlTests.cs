// KL estimators k1/k2/k3 on hand-computed log-ratios, their non-negativity, masking and the KL loss term.
// Tolerance 1e-6 absolute on values ≤ ~1 (fp32 exp/log error is a few 1e-8).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class KlTests
{
    const double Tol = 1e-6;

    // log π = [−1, −2, −0.5, −3], log π_ref = [−1.5, −1, −0.5, −1] → d = [0.5, −1, 0, −2]
    static Tensor Lp => F([-1f, -2f, -0.5f, -3f], 1, 4);
    static Tensor LpRef => F([-1.5f, -1f, -0.5f, -1f], 1, 4);

    [Fact]
    public void K1IsTheLogRatio()
    {
        TensorAssert.Close(F([0.5f, -1f, 0f, -2f], 1, 4), Kl.Approx(Lp, LpRef, KlEstimator.K1), Tol);
    }

    [Fact]
    public void K2IsHalfTheSquaredLogRatio()
    {
        // d²/2 = [0.125, 0.5, 0, 2]
        TensorAssert.Close(F([0.125f, 0.5f, 0f, 2f], 1, 4), Kl.Approx(Lp, LpRef, KlEstimator.K2), Tol);
    }

    [Fact]
    public void K3IsExpMinusOnePlusLogRatio()
    {
        // e^(−d) − 1 + d: d = 0.5 → e^−0.5 − 0.5 = 0.60653066 − 0.5 = 0.10653066
        //                 d = −1  → e^1 − 2 = 0.71828183;  d = 0 → 0;  d = −2 → e^2 − 3 = 4.3890561
        var expected = F([(float)(Math.Exp(-0.5) - 0.5), (float)(Math.E - 2), 0f, (float)(Math.Exp(2) - 3)], 1, 4);
        TensorAssert.Close(expected, Kl.Approx(Lp, LpRef, KlEstimator.K3), 4e-6);   // 4.389: 1 ulp ≈ 4.8e-7
    }

    [Fact]
    public void K2AndK3AreNonNegativeWhereK1IsNot()
    {
        var d = D(Uniform(2000, seed: 7, lo: -8, hi: 8), 40, 50).to_type(ScalarType.Float32);
        var zero = zeros_like(d);
        Assert.True(Kl.Approx(d, zero, KlEstimator.K1).min().item<float>() < 0);
        Assert.True(Kl.Approx(d, zero, KlEstimator.K2).min().item<float>() >= 0);
        Assert.True(Kl.Approx(d, zero, KlEstimator.K3).min().item<float>() >= 0);
    }

    [Fact]
    public void K3IsNotClamped()
    {
        // upstream at f917f18 has no clamp: d = −20 gives e^20 − 21 ≈ 4.85e8
        var k3 = Kl.Approx(F([-20f], 1, 1), F([0f], 1, 1), KlEstimator.K3);
        Assert.Equal(Math.Exp(20) - 21, k3.item<float>(), 4.85e8 * 1e-6);
    }

    [Fact]
    public void MaskZeroesInvalidPositionsForEveryEstimator()
    {
        var mask = M([1, 0, 1, 0], 1, 4);
        foreach (var e in new[] { KlEstimator.K1, KlEstimator.K2, KlEstimator.K3 })
        {
            var kl = Kl.Approx(Lp, LpRef, e, mask);
            Assert.Equal(0f, kl[0, 1].item<float>());
            Assert.Equal(0f, kl[0, 3].item<float>());
            TensorAssert.Equal(kl, Kl.Approx(Junk(Lp, mask), LpRef, e, mask));
        }
    }

    [Fact]
    public void BFloat16LogProbsGiveFp32Kl()
    {
        var kl = Kl.Approx(Lp.to_type(ScalarType.BFloat16), LpRef.to_type(ScalarType.BFloat16), KlEstimator.K1);
        Assert.Equal(ScalarType.Float32, kl.dtype);
        TensorAssert.Close(F([0.5f, -1f, 0f, -2f], 1, 4), kl, Tol);   // these values are exact in bf16
    }

    [Fact]
    public void KlLossIsTheTokenMeanOverValidTokens()
    {
        // two rows; k2 values row 0 = [0.125, 0.5, 0, 2] with mask [1, 1, 0, 0], row 1 = same with mask [1, 1, 1, 1]
        // token mean = (0.125 + 0.5 + 0.125 + 0.5 + 0 + 2)/6 = 3.25/6 (sequence mean would be (0.3125 + 0.65625)/2)
        var lp = cat([Lp, Lp], 0);
        var lpRef = cat([LpRef, LpRef], 0);
        var mask = M([1, 1, 0, 0, 1, 1, 1, 1], 2, 4);
        Assert.Equal(3.25 / 6, Item(Kl.Loss(lp, lpRef, mask, KlEstimator.K2)), Tol);
    }

    [Fact]
    public void ParsesCliNames()
    {
        Assert.Equal(KlEstimator.K3, Kl.ParseEstimator("k3"));
        Assert.Throws<ArgumentException>(() => Kl.ParseEstimator("k4"));
    }
}
