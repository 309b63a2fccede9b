// Clipped value loss: hand-computed values, the no-clip variant, clip fraction and gradients.
// Tolerance 1e-6 absolute (values ≤ 1.21).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class ValueLossTests
{
    const double Tol = 1e-6;

    // ε = 0.2; per token (old, V, R) → V_clip, (V_clip − R)², (V − R)², max
    //   (1, 1.5, 2)  → 1.2,  0.64, 0.25 → 0.64 (clipped larger)
    //   (1, 1.1, 0)  → 1.1,  1.21, 1.21 → 1.21 (tie, inside the band)
    //   (0, −0.5, 0) → −0.2, 0.04, 0.25 → 0.25
    //   (0, 0.5, 1)  → 0.2,  0.64, 0.25 → 0.64 (clipped larger)
    static Tensor Old => F([1f, 1f, 0f, 0f], 2, 2);
    static Tensor V(bool grad = false) => F([1.5f, 1.1f, -0.5f, 0.5f], 2, 2).requires_grad_(grad);
    static Tensor R => F([2f, 0f, 0f, 1f], 2, 2);

    [Fact]
    public void ClippedLossIsHalfTheTokenMeanOfTheLargerError()
    {
        // 0.5·(0.64 + 1.21 + 0.25 + 0.64)/4 = 0.3425
        using var r = ValueLoss.Compute(V(), Old, R, M([1, 1, 1, 1], 2, 2), 0.2);
        Assert.Equal(0.3425, Item(r.Loss), Tol);
        Assert.Equal(0.5, Item(r.ClipFraction), Tol);
    }

    [Fact]
    public void WithoutClipItIsHalfTheMeanSquaredError()
    {
        // 0.5·(0.25 + 1.21 + 0.25 + 0.25)/4 = 0.245
        using var r = ValueLoss.Compute(V(), Old, R, M([1, 1, 1, 1], 2, 2), null);
        Assert.Equal(0.245, Item(r.Loss), Tol);
        Assert.Equal(0f, Item(r.ClipFraction));
    }

    [Fact]
    public void AggregationsUnderAMask()
    {
        // mask [[1, 0], [1, 1]]: token mean 0.5·(0.64 + 0.25 + 0.64)/3 = 0.255;
        // sequence mean 0.5·(0.64/1 + (0.25 + 0.64)/2)/2 = 0.5·(0.64 + 0.445)/2 = 0.27125
        var mask = M([1, 0, 1, 1], 2, 2);
        using var tok = ValueLoss.Compute(V(), Old, R, mask, 0.2);
        using var seq = ValueLoss.Compute(V(), Old, R, mask, 0.2, LossAggregation.SequenceMean);
        Assert.Equal(0.255, Item(tok.Loss), Tol);
        Assert.Equal(0.27125, Item(seq.Loss), Tol);
    }

    [Fact]
    public void GradientVanishesWhereTheClippedErrorWins()
    {
        // ∂/∂V of 0.5·max(..)/4: tokens 0 and 3 → 0 (V_clip saturated); token 1 (tie, both terms move with V)
        // → 0.5·2·1.1/4 = 0.275; token 2 → 0.5·2·(−0.5)/4 = −0.125
        var v = V(grad: true);
        using var r = ValueLoss.Compute(v, Old, R, null, 0.2);
        r.Loss.backward();
        TensorAssert.Close(F([0f, 0.275f, -0.125f, 0f], 2, 2), v.grad!, Tol);
    }

    [Fact]
    public void MaskedTokensDoNotMatter()
    {
        var mask = M([1, 0, 1, 1], 2, 2);
        using var a = ValueLoss.Compute(V(), Old, R, mask, 0.2);
        using var b = ValueLoss.Compute(Junk(V(), mask), Junk(Old, mask, -3), Junk(R, mask, 40), mask, 0.2);
        TensorAssert.Equal(a.Loss, b.Loss);
        TensorAssert.Equal(a.ClipFraction, b.ClipFraction);
    }
}
