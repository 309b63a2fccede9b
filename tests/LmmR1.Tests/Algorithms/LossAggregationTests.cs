// Loss aggregation modes against hand-computed values, the micro-batch split invariance of the global modes
// (what makes them exact under gradient accumulation) and the peers' names. Tolerance 1e-6 absolute (values ≤ 10).
using LmmR1.Algorithms;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class LossAggregationTests
{
    const double Tol = 1e-6;

    // loss [[1, 2, 3], [4, 5, 6], [7, 8, 9]], mask [[1, 1, 0], [1, 1, 1], [0, 0, 0]] (an empty row):
    // valid tokens 1, 2, 4, 5, 6 (5 of them, sum 18); row sums 3 and 15, row means 1.5 and 5; 2 non-empty rows.
    static Tensor Loss => F([1f, 2f, 3f, 4f, 5f, 6f, 7f, 8f, 9f], 3, 3);
    static Tensor Mask => M([1, 1, 0, 1, 1, 1, 0, 0, 0], 3, 3);
    static StepTotals Whole(double normLength = 4) => StepTotals.Of([Mask], divisor: 1, normLength);

    [Theory]
    [InlineData(LossAggregation.TokenMean, 18.0 / 5)]
    [InlineData(LossAggregation.SequenceMean, (1.5 + 5) / 2)]
    [InlineData(LossAggregation.GlobalTokenMean, 18.0 / 5)]
    [InlineData(LossAggregation.GlobalSequenceMean, (1.5 + 5) / 2)]
    [InlineData(LossAggregation.GlobalSequenceSum, (3.0 + 15) / 2)]
    [InlineData(LossAggregation.SequenceSumNorm, 18.0 / (2 * 4))]
    public void HandComputedValues(LossAggregation mode, double expected)
    {
        Assert.Equal(expected, Item(Masked.Aggregate(Loss, Mask, mode, Whole())), Tol);
    }

    [Fact]
    public void TotalsCountTokensAndNonEmptySequences()
    {
        var t = Whole();
        Assert.Equal(5, t.Tokens);
        Assert.Equal(2, t.Sequences);
    }

    [Theory]
    [InlineData(LossAggregation.GlobalTokenMean)]
    [InlineData(LossAggregation.GlobalSequenceMean)]
    [InlineData(LossAggregation.GlobalSequenceSum)]
    [InlineData(LossAggregation.SequenceSumNorm)]
    public void GlobalModesDoNotDependOnTheMicroBatchSplit(LossAggregation mode)
    {
        // Rows 0 | 1, 2 as two micro-batches, each divided by the trainer's divisor 2 and summed = the whole batch.
        var totals = StepTotals.Of([Mask[..1], Mask[1..]], divisor: 2, normLength: 4);
        double split = Item(Masked.Aggregate(Loss[..1], Mask[..1], mode, totals)) / 2
                       + Item(Masked.Aggregate(Loss[1..], Mask[1..], mode, totals)) / 2;
        Assert.Equal(Item(Masked.Aggregate(Loss, Mask, mode, Whole())), split, Tol);
    }

    [Fact]
    public void MicroTokenMeanDependsOnTheSplit()
    {
        // LMM-R1's default weights each micro-batch equally: (1.5 + 15/3)/2 = 3.25 ≠ 18/5 = 3.6.
        double split = (Item(Masked.Aggregate(Loss[..1], Mask[..1], LossAggregation.TokenMean))
                        + Item(Masked.Aggregate(Loss[1..], Mask[1..], LossAggregation.TokenMean))) / 2;
        Assert.Equal(3.25, split, Tol);
    }

    [Fact]
    public void GlobalModesNeedTotals()
    {
        var e = Assert.Throws<ArgumentException>(() => Masked.Aggregate(Loss, Mask, LossAggregation.GlobalTokenMean));
        Assert.Contains("token-mean", e.Message);
    }

    [Fact]
    public void NamesAreThePeersAndRoundTrip()
    {
        Assert.Equal(["micro-token-mean", "micro-seq-mean-token-mean", "token-mean", "seq-mean-token-mean",
            "seq-mean-token-sum", "seq-mean-token-sum-norm"], LossAggregations.AllNames);
        foreach (var mode in Enum.GetValues<LossAggregation>())
            Assert.Equal(mode, LossAggregations.TryParse(LossAggregations.Name(mode)));
        Assert.Null(LossAggregations.TryParse("token_mean"));
        Assert.Equal(LossAggregation.GlobalSequenceMean, LossAggregations.SequenceLevel(LossAggregation.GlobalTokenMean));
    }
}
