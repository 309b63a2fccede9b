// GAE and return-to-go: hand-computed 3-token examples, the vectorised scan against a naive loop written like
// upstream's Python loop, masking invariance and a telescoping identity. Tolerances: 1e-6 on fp32 hand examples
// (values ≤ 3), 1e-12 on fp64 random inputs (the scan only reorders the sums).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class ReturnsTests
{
    [Fact]
    public void GaeMatchesAHandComputedThreeTokenExample()
    {
        // γ = 0.9, λ = 0.8, γλ = 0.72
        // row 0, all valid: V = [1, 2, 3], r = [0, 0, 1]
        //   δ = [0 + 0.9·2 − 1, 0 + 0.9·3 − 2, 1 + 0 − 3] = [0.8, 0.7, −2]
        //   A2 = −2; A1 = 0.7 + 0.72·(−2) = −0.74; A0 = 0.8 + 0.72·(−0.74) = 0.2672; R = A + V = [1.2672, 1.26, 1]
        // row 1, eos at 1 (mask [1, 1, 0]), junk under the mask: V = [0.5, 1, 0], r = [0, 2, 0] after masking
        //   δ = [0 + 0.9·1 − 0.5, 2 + 0 − 1, 0] = [0.4, 1, 0]; A = [0.4 + 0.72·1, 1, 0] = [1.12, 1, 0]; R = [1.62, 2, 0]
        var v = F([1f, 2f, 3f, 0.5f, 1f, 99f], 2, 3);
        var r = F([0f, 0f, 1f, 0f, 2f, -7f], 2, 3);
        var mask = M([1, 1, 1, 1, 1, 0], 2, 3);
        var (adv, ret) = Returns.Gae(v, r, mask, 0.9, 0.8);
        TensorAssert.Close(F([0.2672f, -0.74f, -2f, 1.12f, 1f, 0f], 2, 3), adv, 1e-6);
        TensorAssert.Close(F([1.2672f, 1.26f, 1f, 1.62f, 2f, 0f], 2, 3), ret, 1e-6);
    }

    [Fact]
    public void ReturnToGoMatchesHandComputedExamples()
    {
        // γ = 0.5, r = [1, 2, 4]: G2 = 4, G1 = 2 + 0.5·4 = 4, G0 = 1 + 0.5·4 = 3
        TensorAssert.Close(F([3f, 4f, 4f], 1, 3), Returns.ReturnToGo(F([1f, 2f, 4f], 1, 3), null, 0.5), 1e-6);
        // γ = 1: [7, 6, 4]; with mask [1, 1, 0] the 4 is dropped: [3, 2, 0]
        TensorAssert.Close(F([7f, 6f, 4f], 1, 3), Returns.ReturnToGo(F([1f, 2f, 4f], 1, 3), null, 1.0), 1e-6);
        TensorAssert.Close(F([3f, 2f, 0f], 1, 3), Returns.ReturnToGo(F([1f, 2f, 4f], 1, 3), M([1, 1, 0], 1, 3), 1.0), 1e-6);
    }

    [Theory]
    [InlineData(1.0, 1.0)]
    [InlineData(0.99, 0.95)]
    [InlineData(0.9, 0.0)]
    [InlineData(0.5, 1.0)]
    [InlineData(0.0, 0.5)]
    public void GaeEqualsTheNaiveLoop(double gamma, double lambda)
    {
        const int b = 5, t = 37;
        var v = Uniform(b * t, seed: 11, lo: -2, hi: 2);
        var r = Uniform(b * t, seed: 12, lo: -1, hi: 1);
        var m = RandomMask(b, t, seed: 13);
        var (expAdv, expRet) = NaiveGae(v, r, m, b, t, gamma, lambda);
        var (adv, ret) = Returns.Gae(D(v, b, t), D(r, b, t), M(m, b, t), gamma, lambda);
        TensorAssert.Close(D(expAdv, b, t), adv, 1e-12);
        TensorAssert.Close(D(expRet, b, t), ret, 1e-12);
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(0.97)]
    [InlineData(0.3)]
    [InlineData(0.0)]
    public void ReturnToGoEqualsTheNaiveLoop(double gamma)
    {
        const int b = 4, t = 53;
        var r = Uniform(b * t, seed: 21, lo: -1, hi: 1);
        var m = RandomMask(b, t, seed: 22);
        TensorAssert.Close(D(NaiveReturnToGo(r, m, b, t, gamma), b, t), Returns.ReturnToGo(D(r, b, t), M(m, b, t), gamma), 1e-12);
    }

    [Fact]
    public void LongSequencesMatchTheNaiveLoop()
    {
        // 11 doubling steps for T = 2000; fp64 so the only difference is summation order
        const int b = 2, t = 2000;
        var v = Uniform(b * t, seed: 31, lo: -1, hi: 1);
        var r = Uniform(b * t, seed: 32, lo: -1, hi: 1);
        var m = Enumerable.Repeat(1, b * t).ToArray();
        var (expAdv, _) = NaiveGae(v, r, m, b, t, 0.999, 0.95);
        var (adv, _) = Returns.Gae(D(v, b, t), D(r, b, t), M(m, b, t), 0.999, 0.95);
        TensorAssert.Close(D(expAdv, b, t), adv, 1e-10);
    }

    [Fact]
    public void Fp32ScanStaysWithinFloatErrorOfTheLoop()
    {
        // |δ| ≤ 3 and ≤ 37 terms: partial sums ≤ ~111, fp32 ulp there ≈ 7.6e-6; tolerance 5e-5 ≈ 6 levels × 1 ulp
        const int b = 5, t = 37;
        var v = Uniform(b * t, seed: 41, lo: -1, hi: 1);
        var r = Uniform(b * t, seed: 42, lo: -1, hi: 1);
        var m = RandomMask(b, t, seed: 43);
        var (expAdv, _) = NaiveGae(v, r, m, b, t, 0.99, 0.95);
        var (adv, _) = Returns.Gae(D(v, b, t).to_type(ScalarType.Float32), D(r, b, t).to_type(ScalarType.Float32),
            M(m, b, t), 0.99, 0.95);
        Assert.Equal(ScalarType.Float32, adv.dtype);
        TensorAssert.Close(D(expAdv, b, t), adv, 5e-5);
    }

    [Fact]
    public void MaskedValuesAndRewardsNeverMatter()
    {
        const int b = 3, t = 9;
        var v = D(Uniform(b * t, seed: 51), b, t);
        var r = D(Uniform(b * t, seed: 52), b, t);
        var m = M(RandomMask(b, t, seed: 53, pValid: 0.5), b, t);
        var (a1, r1) = Returns.Gae(v, r, m, 0.95, 0.9);
        var (a2, r2) = Returns.Gae(Junk(v, m), Junk(r, m, -55.5), m, 0.95, 0.9);
        TensorAssert.Equal(a1, a2);
        TensorAssert.Equal(r1, r2);
        TensorAssert.Equal(Returns.ReturnToGo(r, m, 0.9), Returns.ReturnToGo(Junk(r, m), m, 0.9));
    }

    [Fact]
    public void GaeWithUnitGammaLambdaIsReturnToGoMinusValue()
    {
        // Σ_{k≥t} (r_k + V_{k+1} − V_k) telescopes to G_t − V_t
        const int b = 3, t = 10;
        var v = D(Uniform(b * t, seed: 61), b, t);
        var r = D(Uniform(b * t, seed: 62), b, t);
        var (adv, ret) = Returns.Gae(v, r, null, 1.0, 1.0);
        var g = Returns.ReturnToGo(r, null, 1.0);
        TensorAssert.Close(g - v, adv, 1e-12);
        TensorAssert.Close(g, ret, 1e-12);
    }

    [Fact]
    public void InputsAreNotModified()
    {
        var v = F([1f, 2f, 3f], 1, 3);
        var r = F([0f, 0f, 1f], 1, 3);
        var vCopy = v.clone();
        var rCopy = r.clone();
        Returns.Gae(v, r, M([1, 1, 0], 1, 3), 0.9, 0.9);
        Returns.ReturnToGo(r, M([1, 1, 0], 1, 3), 0.9);
        TensorAssert.Equal(vCopy, v);
        TensorAssert.Equal(rCopy, r);
    }

    // Upstream's loop, one sequence at a time in doubles.
    static (double[] Adv, double[] Ret) NaiveGae(double[] v, double[] r, int[] m, int b, int t, double gamma, double lambda)
    {
        var adv = new double[b * t];
        var ret = new double[b * t];
        for (int i = 0; i < b; i++)
        {
            double last = 0;
            for (int j = t - 1; j >= 0; j--)
            {
                double vj = m[i * t + j] * v[i * t + j];
                double next = j < t - 1 ? m[i * t + j + 1] * v[i * t + j + 1] : 0.0;
                double delta = m[i * t + j] * r[i * t + j] + gamma * next - vj;
                last = delta + gamma * lambda * last;
                adv[i * t + j] = last;
                ret[i * t + j] = last + vj;
            }
        }
        return (adv, ret);
    }

    static double[] NaiveReturnToGo(double[] r, int[] m, int b, int t, double gamma)
    {
        var g = new double[b * t];
        for (int i = 0; i < b; i++)
        {
            double acc = 0;
            for (int j = t - 1; j >= 0; j--)
            {
                acc = m[i * t + j] * r[i * t + j] + gamma * acc;
                g[i * t + j] = acc;
            }
        }
        return g;
    }
}
