// Evaluation metrics per datasource: pass@1 = mean accuracy over all samples; pass@k = the unbiased estimator of
// Chen et al. 2021 (1 − C(n−c, k)/C(n, k) per prompt, averaged), which for k = n is "any sample correct" — what
// OpenRLHF logs as eval_{datasource}_pass{n} when rewards are 0/1 (it takes the max reward per prompt); format rate;
// mean reward (OpenRLHF's pass1 on raw rewards); mean response length and the share of samples cut at max length.
namespace LmmR1.Generation;

/// <summary>One scored sample.</summary>
public readonly record struct ScoredSample(bool Correct, bool WellFormatted, double Reward, int ResponseTokens, bool Truncated);

public sealed record EvalMetrics
{
    public required int Prompts { get; init; }
    public required long Samples { get; init; }
    public required int K { get; init; }
    public required double Pass1 { get; init; }
    public required double PassK { get; init; }
    public required double FormatRate { get; init; }
    public required double MeanReward { get; init; }
    public required double MeanResponseTokens { get; init; }
    public required double TruncatedRate { get; init; }
}

public static class EvalSummary
{
    /// <summary>Unbiased pass@k for one prompt with n samples of which c are correct (k ≤ n).</summary>
    public static double PassAtK(int n, int c, int k)
    {
        if (k < 1 || k > n) throw new ArgumentException($"k must be in 1..n ({n}), got {k}");
        if (c < 0 || c > n) throw new ArgumentException($"c must be in 0..n ({n}), got {c}");
        if (n - c < k) return 1.0;
        // 1 − Π_{i=n−c+1}^{n} (1 − k/i): the stable product form of 1 − C(n−c, k)/C(n, k).
        double q = 1.0;
        for (int i = n - c + 1; i <= n; i++) q *= 1.0 - (double)k / i;
        return 1.0 - q;
    }

    /// <summary>Metrics over prompts (each a list of its samples, all with the same count n); k defaults to n.</summary>
    public static EvalMetrics Compute(IReadOnlyList<IReadOnlyList<ScoredSample>> prompts, int? k = null)
    {
        if (prompts.Count == 0) throw new ArgumentException("no prompts");
        int n = prompts[0].Count;
        if (n == 0 || prompts.Any(p => p.Count != n)) throw new ArgumentException("every prompt needs the same, positive number of samples");
        int kk = k ?? n;
        var all = prompts.SelectMany(p => p).ToList();
        return new EvalMetrics
        {
            Prompts = prompts.Count,
            Samples = all.Count,
            K = kk,
            Pass1 = all.Average(s => s.Correct ? 1.0 : 0.0),
            PassK = prompts.Average(p => PassAtK(n, p.Count(s => s.Correct), kk)),
            FormatRate = all.Average(s => s.WellFormatted ? 1.0 : 0.0),
            MeanReward = all.Average(s => s.Reward),
            MeanResponseTokens = all.Average(s => (double)s.ResponseTokens),
            TruncatedRate = all.Average(s => s.Truncated ? 1.0 : 0.0),
        };
    }
}
