// Per-token rewards: −β·KL everywhere, the clipped scalar at the last action token, for right-padded rows (eos in
// the middle), left-padded rows and holes. Tolerance 1e-6 absolute (values ≤ 10).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class TokenRewardsTests
{
    const double Tol = 1e-6;

    [Fact]
    public void ScalarGoesToTheLastActionTokenAndKlIsPenalisedEverywhere()
    {
        // row 0: right-padded, response of 2 tokens (eos at index 1), A = 4
        // row 1: full row, last action at 3
        // row 2: left-padded (the replay buffer's layout), last action at 3
        // row 3: a hole, last valid at 2
        var mask = M([1, 1, 0, 0,
                      1, 1, 1, 1,
                      0, 0, 1, 1,
                      1, 0, 1, 0], 4, 4);
        var kl = F([0.1f, 0.2f, 0.0f, 0.0f,
                    0.1f, 0.1f, 0.1f, 0.1f,
                    0.0f, 0.0f, 0.3f, 0.4f,
                    0.5f, 0.0f, 0.5f, 0.0f], 4, 4);
        var r = F([1f, 0.5f, -1f, 2f], 4);
        // β = 0.5 → −β·kl, plus r at the last valid index
        var expected = F([-0.05f, 1f - 0.1f, 0f, 0f,
                          -0.05f, -0.05f, -0.05f, 0.5f - 0.05f,
                          0f, 0f, -0.15f, -1f - 0.2f,
                          -0.25f, 0f, 2f - 0.25f, 0f], 4, 4);
        TensorAssert.Close(expected, TokenRewards.Compute(r, 0.5, kl, mask, (-10, 10)), Tol);
        TensorAssert.Equal(tensor(new long[] { 1, 3, 3, 2 }).reshape(4, 1), TokenRewards.LastActionIndex(mask));
    }

    [Fact]
    public void ClipAppliesToTheScalarOnly()
    {
        // r = 25 → 10, r = −30 → −10; the KL term (−0.1·3 = −0.3) is not clipped
        var mask = M([1, 1, 1, 0], 2, 2);
        var kl = F([0f, 3f, 0f, 0f], 2, 2);
        var tr = TokenRewards.Compute(F([25f, -30f], 2), 0.1, kl, mask, (-10, 10));
        TensorAssert.Close(F([0f, 10f - 0.3f, -10f, 0f], 2, 2), tr, Tol);
        // no clip range: 25 stays 25
        Assert.Equal(25f - 0.3f, TokenRewards.Compute(F([25f, -30f], 2), 0.1, kl, mask, null)[0, 1].item<float>(), 1e-5);
    }

    [Fact]
    public void NonPositiveKlCoefficientMeansNoPenalty()
    {
        var mask = M([1, 1], 1, 2);
        var kl = F([1f, 1f], 1, 2);
        TensorAssert.Close(F([0f, 2f], 1, 2), TokenRewards.Compute(F([2f], 1), -0.5, kl, mask, null), Tol);
        TensorAssert.Close(F([0f, 2f], 1, 2), TokenRewards.Compute(F([2f], 1), 0.0, kl, mask, null), Tol);
    }

    [Fact]
    public void KlUnderTheMaskDoesNotReachValidPositions()
    {
        var mask = M([1, 1, 0, 0, 1, 0, 1, 0], 2, 4);
        var kl = F([0.1f, 0.2f, 0f, 0f, 0.3f, 0f, 0.4f, 0f], 2, 4);
        var a = TokenRewards.Compute(F([1f, 2f], 2), 0.2, kl, mask, (-10, 10));
        var b = TokenRewards.Compute(F([1f, 2f], 2), 0.2, Junk(kl, mask), mask, (-10, 10));
        TensorAssert.Equal(a.masked_select(mask), b.masked_select(mask));
    }

    [Fact]
    public void AllMaskedRowPutsTheScalarAtTheEndLikeUpstream()
    {
        // argmax of an all-zero row is 0 → A − 1 − 0 = A − 1 (upstream never builds one: action_mask[:, 0] = 1)
        var tr = TokenRewards.Compute(F([3f], 1), 0.0, zeros(1, 3), M([0, 0, 0], 1, 3), null);
        TensorAssert.Close(F([0f, 0f, 3f], 1, 3), tr, Tol);
    }
}
