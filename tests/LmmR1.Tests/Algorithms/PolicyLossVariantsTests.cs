// Clip-higher, dual clip, GSPO and CISPO against hand-computed values and gradients (the peers' own functions are
// PeerParityTests). Tolerance 1e-6 absolute, as PolicyLossTests (values ≤ 3; fp32 exp of logs).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class PolicyLossVariantsTests
{
    const double Tol = 1e-6;

    // log π = ln ρ − 1, log π_old = −1, so the ratio is ρ.
    static Tensor Lp(double[] rho, long rows, bool grad = true) =>
        F(rho.Select(r => (float)(Math.Log(r) - 1)).ToArray(), rows, rho.Length / rows).requires_grad_(grad);
    static Tensor Old(int n, long rows) => full(rows, n / rows, -1f);

    [Fact]
    public void ClipHigherWidensOnlyTheUpperSide()
    {
        // ρ = [1.5, 0.5, 1.1, 0.7], A = [1, 1, −2, −1], clip [1 − 0.2, 1 + 0.6]:
        //   1.5·1 inside the wider band → −1.5;  0.5 (unclipped side) → −0.5;  1.1·−2 → 2.2;  0.7 < 0.8, A < 0 → 0.8
        double[] rho = [1.5, 0.5, 1.1, 0.7];
        var lp = Lp(rho, 2);
        using var r = PolicyLoss.Compute(lp, Old(4, 2), F([1f, 1f, -2f, -1f], 2, 2), M([1, 1, 1, 1], 2, 2),
            new PolicyLossOptions(PolicyLossType.Ppo, 0.2, 0.6));
        Assert.Equal((-1.5 - 0.5 + 2.2 + 0.8) / 4, Item(r.Loss), Tol);
        Assert.Equal(0.25, Item(r.ClipFraction), Tol);
        Assert.Equal(0.0, Item(r.ClipFractionLower), Tol);
        r.Loss.backward();
        // −A·ρ/4 where unclipped: token 0 now has gradient −1.5/4
        TensorAssert.Close(F([-0.375f, -0.125f, 0.55f, 0f], 2, 2), lp.grad!, Tol);
    }

    [Fact]
    public void DualClipBoundsTheLossOfNegativeAdvantages()
    {
        // ρ = [4, 1.1], A = [−1, −2], ε = 0.2, c = 3: token 0: min(−4, −1.2) = −4 < c·A = −3 → loss 3 (gradient 0);
        // token 1: −2.2 > −6 → loss 2.2, gradient −A·ρ/2 = 1.1. Without the dual clip token 0's loss is 4.
        double[] rho = [4, 1.1];
        var lp = Lp(rho, 1);
        var adv = F([-1f, -2f], 1, 2);
        var mask = M([1, 1], 1, 2);
        using var dual = PolicyLoss.Compute(lp, Old(2, 1), adv, mask, new PolicyLossOptions(PolicyLossType.Ppo, 0.2, 0.2, DualClip: 3));
        Assert.Equal((3 + 2.2) / 2, Item(dual.Loss), Tol);
        Assert.Equal(0.5, Item(dual.ClipFractionLower), Tol);
        dual.Loss.backward();
        TensorAssert.Close(F([0f, 1.1f], 1, 2), lp.grad!, Tol);
        using var plain = PolicyLoss.Compute(Lp(rho, 1, grad: false), Old(2, 1), adv, mask, PolicyLossOptions.Ppo(0.2));
        Assert.Equal((4 + 2.2) / 2, Item(plain.Loss), Tol);
    }

    [Fact]
    public void GspoClipsTheSequenceRatioAndSharesItsGradient()
    {
        // One sequence with token ratios [1.21, 1, junk under the mask]: s = exp((ln 1.21 + 0)/2) = 1.1, A = 1.
        // ε = 0.2: unclipped, loss −1.1, ∂/∂log π_t = −A·s/|y| = −0.55 for both tokens, 0 under the mask.
        // ε = 0.05: s clipped to 1.05, loss −1.05, gradient 0, clip fraction 1.
        double[] rho = [1.21, 1, 7];
        var mask = M([1, 1, 0], 1, 3);
        var adv = F([1f, 1f, 0f], 1, 3);
        var lp = Lp(rho, 1);
        using var wide = PolicyLoss.Compute(lp, Old(3, 1), adv, mask, new PolicyLossOptions(PolicyLossType.Gspo, 0.2, 0.2));
        Assert.Equal(-1.1, Item(wide.Loss), Tol);
        Assert.Equal(1.1, Item(wide.RatioMean), Tol);
        wide.Loss.backward();
        TensorAssert.Close(F([-0.55f, -0.55f, 0f], 1, 3), lp.grad!, Tol);

        var lp2 = Lp(rho, 1);
        using var tight = PolicyLoss.Compute(lp2, Old(3, 1), adv, mask, new PolicyLossOptions(PolicyLossType.Gspo, 0.05, 0.05));
        Assert.Equal(-1.05, Item(tight.Loss), Tol);
        Assert.Equal(1.0, Item(tight.ClipFraction), Tol);
        tight.Loss.backward();
        TensorAssert.Close(zeros(1, 3), lp2.grad!, Tol);
    }

    [Fact]
    public void GspoIsAMeanOverSequencesEvenWithTokenMeanAggregation()
    {
        // Two sequences of 1 and 3 tokens, all ratios 1, A = 1 and 3: per-sequence loss −1 and −3; sequence mean −2
        // (a token mean would be −10/4 = −2.5).
        var mask = M([1, 0, 0, 1, 1, 1], 2, 3);
        using var r = PolicyLoss.Compute(Lp([1, 1, 1, 1, 1, 1], 2), Old(6, 2), F([1f, 0f, 0f, 3f, 3f, 3f], 2, 3), mask,
            new PolicyLossOptions(PolicyLossType.Gspo, 0.2, 0.2, Aggregation: LossAggregation.TokenMean));
        Assert.Equal(-2.0, Item(r.Loss), Tol);
    }

    [Fact]
    public void CispoWeightsAreClippedAndCarryNoGradient()
    {
        // ρ = [1.5, 0.5, 1.1, 0.7], A = [1, 1, −2, −1], ε = 0.2: w = sg[clip(ρ)] = [1.2, 0.8, 1.1, 0.8];
        // loss = mean(−w·A·log π), ∂/∂log π_t = −w_t·A_t/4 = [−0.3, −0.2, 0.55, 0.2]; 3 of 4 weights clamped.
        double[] rho = [1.5, 0.5, 1.1, 0.7], w = [1.2, 0.8, 1.1, 0.8], a = [1, 1, -2, -1];
        var lp = Lp(rho, 2);
        using var r = PolicyLoss.Compute(lp, Old(4, 2), F(a.Select(x => (float)x).ToArray(), 2, 2), M([1, 1, 1, 1], 2, 2),
            new PolicyLossOptions(PolicyLossType.Cispo, 0.2, 0.2));
        double expected = Enumerable.Range(0, 4).Average(i => -w[i] * a[i] * (Math.Log(rho[i]) - 1));
        Assert.Equal(expected, Item(r.Loss), Tol);
        Assert.Equal(0.75, Item(r.ClipFraction), Tol);
        r.Loss.backward();
        TensorAssert.Close(F([-0.3f, -0.2f, 0.55f, 0.2f], 2, 2), lp.grad!, Tol);
    }

    [Theory]
    [InlineData(PolicyLossType.Ppo, -0.1, 0.2, null, "--eps_clip_low_high")]
    [InlineData(PolicyLossType.Ppo, 1.0, 0.2, null, "low clip range must be < 1")]
    [InlineData(PolicyLossType.Ppo, 0.2, double.PositiveInfinity, null, "finite")]
    [InlineData(PolicyLossType.Ppo, 0.2, 0.2, 1.0, "--dual_clip must be a finite number > 1")]
    [InlineData(PolicyLossType.Gspo, 0.2, 0.2, 3.0, "--dual_clip applies to --policy_loss_type ppo only")]
    public void InvalidOptionsNameTheirFlag(PolicyLossType type, double low, double high, double? dual, string expected)
    {
        var problem = new PolicyLossOptions(type, low, high, dual).Problem();
        Assert.NotNull(problem);
        Assert.Contains(expected, problem);
        Assert.Throws<ArgumentException>(() => PolicyLoss.Compute(Lp([1, 1], 1), Old(2, 1), F([1f, 1f], 1, 2), null,
            new PolicyLossOptions(type, low, high, dual)));
    }

    [Fact]
    public void CispoAllowsALowClipOfOneOrMore()
    {
        // MiniMax-M1 clips only from above: a low range ≥ 1 means no lower bound (weights ≥ 0 anyway).
        Assert.Null(new PolicyLossOptions(PolicyLossType.Cispo, 10, 0.28).Problem());
    }
}
