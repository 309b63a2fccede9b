// pass@k against brute-force enumeration of k-subsets, and the per-datasource metrics on hand-computed values.
using LmmR1.Generation;

namespace LmmR1.Tests.Generation;

public class EvalSummaryTests
{
    /// <summary>Share of the k-subsets of n samples (c correct) that contain a correct one, by enumeration.</summary>
    static double BruteForce(int n, int c, int k)
    {
        long hit = 0, all = 0;
        for (int mask = 0; mask < 1 << n; mask++)
        {
            if (System.Numerics.BitOperations.PopCount((uint)mask) != k) continue;
            all++;
            if ((mask & ((1 << c) - 1)) != 0) hit++;   // samples 0..c−1 are the correct ones
        }
        return (double)hit / all;
    }

    [Fact]
    public void PassAtKIsTheUnbiasedEstimator()
    {
        for (int n = 1; n <= 10; n++)
            for (int c = 0; c <= n; c++)
                for (int k = 1; k <= n; k++)
                    Assert.Equal(BruteForce(n, c, k), EvalSummary.PassAtK(n, c, k), 12);
        Assert.Equal(1.0, EvalSummary.PassAtK(16, 1, 16));                    // k = n: any sample correct
        Assert.Equal(1.0 / 16, EvalSummary.PassAtK(16, 1, 1), 12);            // k = 1: c / n
        Assert.Throws<ArgumentException>(() => EvalSummary.PassAtK(4, 1, 5));
    }

    [Fact]
    public void MetricsOverPrompts()
    {
        static ScoredSample S(bool ok, bool fmt, double r, int len, bool cut) => new(ok, fmt, r, len, cut);
        var prompts = new List<IReadOnlyList<ScoredSample>>
        {
            new[] { S(true, true, 1.5, 10, false), S(false, true, 0.5, 20, false) },
            new[] { S(false, false, 0, 30, true), S(false, false, 0, 40, true) },
        };
        var m = EvalSummary.Compute(prompts);
        Assert.Equal(2, m.K);
        Assert.Equal(0.25, m.Pass1, 12);                  // 1 of 4 samples
        Assert.Equal(0.5, m.PassK, 12);                   // prompt 0 has a correct sample, prompt 1 none
        Assert.Equal(0.5, m.FormatRate, 12);
        Assert.Equal(0.5, m.MeanReward, 12);
        Assert.Equal(25, m.MeanResponseTokens, 12);
        Assert.Equal(0.5, m.TruncatedRate, 12);
        Assert.Equal(0.25, EvalSummary.Compute(prompts, k: 1).PassK, 12);     // pass@1 estimator = pass1 when n is equal
    }
}
