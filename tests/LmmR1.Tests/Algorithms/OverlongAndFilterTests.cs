// DAPO's overlong penalty and dynamic-sampling group filter against hand-computed values.
using LmmR1.Algorithms;

namespace LmmR1.Tests.Algorithms;

public class OverlongAndFilterTests
{
    [Theory]
    // L_max = 20, buffer 8: no penalty up to 12 tokens, then −(|y| − 12)/8, −1 at 20 and beyond (capped).
    [InlineData(0, 0.0)]
    [InlineData(12, 0.0)]
    [InlineData(13, -0.125)]
    [InlineData(16, -0.5)]
    [InlineData(20, -1.0)]
    [InlineData(25, -1.0)]
    public void PenaltyFallsLinearlyOverTheBuffer(int length, double expected)
    {
        Assert.Equal(expected, OverlongShaping.Penalty(length, 20, 8, 1.0), 12);
        Assert.Equal(expected * 0.5, OverlongShaping.Penalty(length, 20, 8, 0.5), 12);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(21)]
    public void BufferMustFitTheLimit(int buffer)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => OverlongShaping.Penalty(5, 20, buffer, 1));
        Assert.Contains("--generate_max_len", e.Message);
    }

    [Theory]
    [InlineData(new[] { 1.0, 1.0, 1.0, 1.0 }, GroupVerdict.AllEqual)]
    [InlineData(new[] { 0.0, 0.0 }, GroupVerdict.AllEqual)]
    [InlineData(new[] { 0.0, 1.0, 1.0, 0.0 }, GroupVerdict.Kept)]
    [InlineData(new[] { 1.5, 1.5, 0.5, 1.5 }, GroupVerdict.MeanOutOfRange)]   // mean 1.25 ≥ high 1
    [InlineData(new[] { 0.0, 0.5, 0.0, 0.0 }, GroupVerdict.Kept)]             // mean 0.125 inside (0, 1)
    public void GroupsAreKeptOnlyWithSpreadAndAMeanInsideTheRange(double[] scores, GroupVerdict expected)
    {
        Assert.Equal(expected, GroupFilter.Judge(scores, (0, 1)));
    }

    [Fact]
    public void TheRangeIsOpen()
    {
        // mean exactly at a bound is out (OpenRLHF keeps low < mean < high)
        Assert.Equal(GroupVerdict.MeanOutOfRange, GroupFilter.Judge([0.0, 1.0], (0.5, 1)));
        Assert.Equal(GroupVerdict.Kept, GroupFilter.Judge([0.0, 1.0], (0.4, 1)));
    }
}
