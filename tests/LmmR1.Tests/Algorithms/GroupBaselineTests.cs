// Group reward shaping: hand-computed groups, the prompt-major layout, and the per-group identities.
// Tolerance 1e-6 absolute (values ≤ 2 in magnitude; a few fp32 ulps).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class GroupBaselineTests
{
    const double Tol = 1e-6;

    // 2 prompts × n = 3, prompt-major: prompt 0 → [1, 0, 0.5], prompt 1 → [1.5, 1.5, 0]
    static Tensor R => F([1f, 0f, 0.5f, 1.5f, 1.5f, 0f], 6);

    [Fact]
    public void RlooSubtractsTheMeanOfTheOthers()
    {
        // prompt 0: 1 − (0 + 0.5)/2 = 0.75; 0 − (1 + 0.5)/2 = −0.75; 0.5 − (1 + 0)/2 = 0
        // prompt 1: 1.5 − (1.5 + 0)/2 = 0.75; 0.75; 0 − 3/2 = −1.5
        TensorAssert.Close(F([0.75f, -0.75f, 0f, 0.75f, 0.75f, -1.5f], 6), GroupBaseline.LeaveOneOut(R, 3), Tol);
    }

    [Fact]
    public void ReinforceBaselineAndDrGrpoSubtractTheGroupMean()
    {
        // means 0.5 and 1 → [0.5, −0.5, 0, 0.5, 0.5, −1]
        var expected = F([0.5f, -0.5f, 0f, 0.5f, 0.5f, -1f], 6);
        TensorAssert.Close(expected, GroupBaseline.Shape(R, AdvantageEstimator.ReinforceBaseline, 3), Tol);
        TensorAssert.Close(expected, GroupBaseline.Shape(R, AdvantageEstimator.DrGrpo, 3), Tol);
    }

    [Fact]
    public void GroupNormDividesByTheUnbiasedStd()
    {
        // prompt 0: centred [0.5, −0.5, 0], unbiased var = (0.25 + 0.25 + 0)/2 = 0.25 → std 0.5 → [1, −1, 0]
        // prompt 1: centred [0.5, 0.5, −1], var = (0.25 + 0.25 + 1)/2 = 0.75 → std √0.75 → centred/√0.75
        float s = (float)Math.Sqrt(0.75);
        var expected = F([1f, -1f, 0f, 0.5f / s, 0.5f / s, -1f / s], 6);
        TensorAssert.Close(expected, GroupBaseline.Shape(R, AdvantageEstimator.GroupNorm, 3), Tol);
    }

    [Fact]
    public void GaeAndReinforceLeaveRewardsAsTheyAre()
    {
        TensorAssert.Equal(R, GroupBaseline.Shape(R, AdvantageEstimator.Gae, 3));
        TensorAssert.Equal(R, GroupBaseline.Shape(R, AdvantageEstimator.Reinforce, 1));
    }

    [Fact]
    public void GroupsAreConsecutiveSamplesOfOnePrompt()
    {
        // Layout check: with n = 2 the same six rewards form groups {1, 0}, {0.5, 1.5}, {1.5, 0}: the means are
        // 0.5, 1, 0.75 → [0.5, −0.5, −0.5, 0.5, 0.75, −0.75]. (Interleaved groups {r0, r2, r4} would differ.)
        TensorAssert.Close(F([0.5f, -0.5f, -0.5f, 0.5f, 0.75f, -0.75f], 6), GroupBaseline.SubtractMean(R, 2), Tol);
    }

    [Fact]
    public void GroupIdentitiesHoldOnRandomRewards()
    {
        int p = 7, n = 5;
        var r = D(Uniform(p * n, seed: 3, lo: 0, hi: 1.5), p * n).to_type(ScalarType.Float32);
        // rloo and mean baselines: every group's advantages sum to 0
        foreach (var a in new[] { GroupBaseline.LeaveOneOut(r, n), GroupBaseline.SubtractMean(r, n) })
            TensorAssert.Close(zeros(p), a.reshape(p, n).sum(-1), 1e-6);
        // group_norm: zero mean and unbiased std 1 (up to eps = 1e-9 relative to std ≥ 0.1 here)
        var z = GroupBaseline.ZScore(r, n).reshape(p, n);
        TensorAssert.Close(zeros(p), z.mean([-1L]), 1e-6);
        TensorAssert.Close(ones(p), z.std(-1, unbiased: true), 1e-6);
    }

    [Fact]
    public void AGroupOfEqualRewardsNormalisesToZero()
    {
        TensorAssert.Equal(zeros(3), GroupBaseline.ZScore(F([1f, 1f, 1f], 3), 3));
    }

    [Fact]
    public void ShapeIsKeptAndBadGroupingRejected()
    {
        Assert.Equal(new long[] { 2, 3 }, GroupBaseline.LeaveOneOut(R.reshape(2, 3), 3).shape);
        Assert.Throws<ArgumentException>(() => GroupBaseline.LeaveOneOut(R, 1));      // n − 1 = 0
        Assert.Throws<ArgumentException>(() => GroupBaseline.ZScore(R, 1));           // unbiased std of one sample
        Assert.Throws<ArgumentException>(() => GroupBaseline.SubtractMean(R, 4));     // 6 is not a multiple of 4
    }
}
