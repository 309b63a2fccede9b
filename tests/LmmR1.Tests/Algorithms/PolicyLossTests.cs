// PPO clipped policy loss: hand-computed values, both aggregations, diagnostics, gradient signs and the zero
// gradient in the clipped direction. Tolerance 1e-6 absolute (values ≤ 2.2; ratios come from fp32 exp of a log).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class PolicyLossTests
{
    const double Tol = 1e-6;
    const double Eps = 0.2;

    // ρ = [[1.5, 0.5], [1.1, 0.7]], A = [[1, 1], [−2, −1]], old log-probs −1
    //   ρ=1.5, A=1 : min(1.5, 1.2) = 1.2 (clipped)          → −1.2
    //   ρ=0.5, A=1 : min(0.5, 0.8) = 0.5 (unclipped side)    → −0.5
    //   ρ=1.1, A=−2: min(−2.2, −2.2) = −2.2 (inside the band) → 2.2
    //   ρ=0.7, A=−1: min(−0.7, −0.8) = −0.8 (clipped)         → 0.8
    static readonly double[] Rho = [1.5, 0.5, 1.1, 0.7];
    static Tensor Old => F([-1f, -1f, -1f, -1f], 2, 2);
    static Tensor NewLogProbs(bool grad = false) =>
        F(Rho.Select(r => (float)(Math.Log(r) - 1)).ToArray(), 2, 2).requires_grad_(grad);
    static Tensor Adv => F([1f, 1f, -2f, -1f], 2, 2);

    [Fact]
    public void TokenMeanOverAllTokens()
    {
        // (−1.2 − 0.5 + 2.2 + 0.8)/4 = 0.325
        using var r = PolicyLoss.Compute(NewLogProbs(), Old, Adv, M([1, 1, 1, 1], 2, 2), Eps);
        Assert.Equal(0.325, Item(r.Loss), Tol);
        Assert.Equal(0.5, Item(r.ClipFraction), Tol);                       // tokens 0 and 3 clipped
        Assert.Equal((1.5 + 0.5 + 1.1 + 0.7) / 4, Item(r.RatioMean), Tol);
        Assert.Equal(0.5, Item(r.RatioMin), Tol);
        Assert.Equal(1.5, Item(r.RatioMax), Tol);
        // approx KL = mean(log π_old − log π) = −mean(log ρ)
        Assert.Equal(-Rho.Select(x => Math.Log(x)).Average(), Item(r.ApproxKl), Tol);
    }

    [Fact]
    public void TokenMeanAndSequenceMeanDifferUnderAMask()
    {
        // mask [[1, 1], [1, 0]]: token mean (−1.2 − 0.5 + 2.2)/3 = 0.5/3; sequence mean (−1.7/2 + 2.2/1)/2 = 0.675
        var mask = M([1, 1, 1, 0], 2, 2);
        using var tok = PolicyLoss.Compute(NewLogProbs(), Old, Adv, mask, Eps);
        using var seq = PolicyLoss.Compute(NewLogProbs(), Old, Adv, mask, Eps, LossAggregation.SequenceMean);
        Assert.Equal(0.5 / 3, Item(tok.Loss), Tol);
        Assert.Equal(0.675, Item(seq.Loss), Tol);
        Assert.Equal(1.0 / 3, Item(tok.ClipFraction), Tol);                 // only token 0 among the valid ones
        Assert.Equal(1.5, Item(tok.RatioMax), Tol);
        Assert.Equal(0.5, Item(tok.RatioMin), Tol);                         // the masked 0.7 is not seen
    }

    [Fact]
    public void GradientIsZeroInTheClippedDirectionAndSignedByTheAdvantageElsewhere()
    {
        // token mean over 4: ∂loss/∂log π = −A·ρ/4 on the active unclipped term, 0 where the clipped term is active
        //   token 0: ρ > 1 + ε with A > 0 → 0;  token 1: ρ < 1 − ε with A > 0 (unclipped side) → −0.5/4 = −0.125
        //   token 2: inside the band, A = −2 → 2·1.1/4 = 0.55;  token 3: ρ < 1 − ε with A < 0 → 0
        var lp = NewLogProbs(grad: true);
        using var r = PolicyLoss.Compute(lp, Old, Adv, M([1, 1, 1, 1], 2, 2), Eps);
        r.Loss.backward();
        TensorAssert.Close(F([0f, -0.125f, 0.55f, 0f], 2, 2), lp.grad!, Tol);
    }

    [Fact]
    public void PositiveAdvantageGradientRaisesTheLogProb()
    {
        // Inside the band a gradient-descent step on the loss must raise log π where A > 0 and lower it where A < 0.
        var lp = F([-1f, -1f], 1, 2).requires_grad_(true);
        using var r = PolicyLoss.Compute(lp, F([-1f, -1f], 1, 2), F([2f, -3f], 1, 2), null, Eps);
        r.Loss.backward();
        Assert.True(lp.grad![0, 0].item<float>() < 0);
        Assert.True(lp.grad![0, 1].item<float>() > 0);
    }

    [Fact]
    public void MaskedTokensNeitherChangeTheLossNorReceiveGradient()
    {
        var mask = M([1, 0, 1, 0], 2, 2);
        var lp1 = NewLogProbs(grad: true);
        using var r1 = PolicyLoss.Compute(lp1, Old, Adv, mask, Eps);
        r1.Loss.backward();
        // moderate junk (log-ratios of ±3) so exp stays finite, as upstream's masked log-probs are 0
        var lp2 = Junk(NewLogProbs(), mask, 2.0).requires_grad_(true);
        using var r2 = PolicyLoss.Compute(lp2, Junk(Old, mask, -1.0), Junk(Adv, mask, 7.0), mask, Eps);
        r2.Loss.backward();
        TensorAssert.Equal(r1.Loss, r2.Loss);
        TensorAssert.Equal(lp1.grad!, lp2.grad!);
        Assert.Equal(0f, lp2.grad![0, 1].item<float>());
    }

    [Fact]
    public void BFloat16LogProbsAreComputedInFp32()
    {
        using var r = PolicyLoss.Compute(NewLogProbs().to_type(ScalarType.BFloat16), Old, Adv, null, Eps);
        Assert.Equal(ScalarType.Float32, r.Loss.dtype);
    }

    [Fact]
    public void ActorLossCombinesKlAndEntropyAsUpstream()
    {
        // 0.3 + 0.01·2 − 0.001·5 = 0.315; entropy ignored at coefficient ≤ 1e-8
        var total = ActorLoss.Combine(tensor(0.3f), tensor(2f), 0.01, tensor(5f), 0.001);
        Assert.Equal(0.315, Item(total), Tol);
        Assert.Equal(0.32, Item(ActorLoss.Combine(tensor(0.3f), tensor(2f), 0.01, tensor(5f), 1e-9)), Tol);
        Assert.Equal(0.3, Item(ActorLoss.Combine(tensor(0.3f), null, 0.01, null, 0)), Tol);
    }
}
