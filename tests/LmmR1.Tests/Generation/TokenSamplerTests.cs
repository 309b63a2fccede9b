// The sampler against exactly computed distributions: for fixed logits, N draws with CounterRng uniforms must follow
// softmax(logits/T) filtered by top-k → top-p → min-p (vLLM's semantics, recomputed here in float64 by a plain loop),
// never hit a filtered-out token, and return log_softmax(logits/T) of the drawn token.
using LmmR1.Generation;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using Xunit.Abstractions;

namespace LmmR1.Tests.Generation;

public class TokenSamplerTests(ITestOutputHelper log)
{
    // Distinct values (no ties at a top-k boundary), spread so that every filter removes something.
    static readonly double[] Logits = [2.0, 1.4, 1.1, 0.3, -0.5, 0.9, -2.0, 3.1, 0.05, -1.0, 2.6, -0.2];

    /// <summary>The filtered, normalised distribution in float64 (independent of the tensor code).</summary>
    static double[] Expected(double[] logits, SamplingParams p, int[]? banned = null)
    {
        int v = logits.Length;
        double max = logits.Max();
        var q = logits.Select(x => Math.Exp((x - max) / p.Temperature)).ToArray();
        double z = q.Sum();
        q = q.Select(x => x / z).ToArray();
        if (banned is not null) foreach (int b in banned) q[b] = 0;
        var order = Enumerable.Range(0, v).OrderByDescending(i => q[i]).ToArray();
        var keep = new bool[v];
        int k = p.TopK > 0 ? Math.Min(p.TopK, v) : v;
        double kMass = order.Take(k).Sum(i => q[i]);
        double before = 0;
        for (int r = 0; r < k; r++)
        {
            int i = order[r];
            keep[i] = q[i] > 0 && (!p.UsesTopP || before / kMass < p.TopP);
            before += q[i];
        }
        double top = q[order[0]];
        for (int i = 0; i < v; i++) if (p.UsesMinP && q[i] < p.MinP * top) keep[i] = false;
        var w = Enumerable.Range(0, v).Select(i => keep[i] ? q[i] : 0).ToArray();
        double s = w.Sum();
        return w.Select(x => x / s).ToArray();
    }

    static (long[] Tokens, float[] LogProbs) Draw(double[] logits, SamplingParams p, int n, int[]? banned = null, ScalarType dtype = ScalarType.Float32)
    {
        using var scope = torch.NewDisposeScope();
        var row = torch.tensor(logits, ScalarType.Float64).to(dtype);
        var batch = row.unsqueeze(0).expand(n, logits.Length).contiguous();
        var u = torch.tensor(Enumerable.Range(0, n).Select(i => CounterRng.Uniform(p.Seed, 0, i, 0)).ToArray());
        using var bannedT = banned is null ? null : torch.tensor(banned.Select(b => (long)b).ToArray());
        var (tok, lp) = TokenSampler.Sample(batch, u, p, bannedT);
        return (tok.data<long>().ToArray(), lp.data<float>().ToArray());
    }

    public static TheoryData<string, SamplingParams> Cases => new()
    {
        { "T=1", new SamplingParams { Temperature = 1.0 } },
        { "T=0.5", new SamplingParams { Temperature = 0.5 } },
        { "T=1.7", new SamplingParams { Temperature = 1.7, Seed = 7 } },
        { "top_k=3", new SamplingParams { TopK = 3 } },
        { "top_k=20 (≥ V)", new SamplingParams { TopK = 20 } },
        { "top_p=0.7", new SamplingParams { TopP = 0.7 } },
        { "top_p=0.95,T=0.6", new SamplingParams { TopP = 0.95, Temperature = 0.6 } },
        { "min_p=0.2", new SamplingParams { MinP = 0.2 } },
        { "top_k=6,top_p=0.9,min_p=0.1,T=0.8", new SamplingParams { TopK = 6, TopP = 0.9, MinP = 0.1, Temperature = 0.8 } },
        { "top_k=5,min_p=0.3", new SamplingParams { TopK = 5, MinP = 0.3, Seed = 3 } },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void DrawsFollowTheFilteredDistribution(string what, SamplingParams p) => CheckDistribution(what, p, null);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BannedTokensAreNeverDrawnButKeepTheirLogProb(bool topP)
    {
        var p = new SamplingParams { TopP = topP ? 0.8 : 1.0 };
        CheckDistribution("banned 7 and 10", p, [7, 10]);
    }

    void CheckDistribution(string what, SamplingParams p, int[]? banned)
    {
        const int n = 200_000;
        var expected = Expected(Logits, p, banned);
        var (tokens, lps) = Draw(Logits, p, n, banned);
        var counts = new long[Logits.Length];
        foreach (var t in tokens) counts[t]++;
        double worst = 0;
        for (int i = 0; i < Logits.Length; i++)
        {
            double f = (double)counts[i] / n, e = expected[i];
            if (e == 0) { Assert.True(counts[i] == 0, $"{what}: token {i} is filtered out but was drawn {counts[i]} times"); continue; }
            // 5 standard deviations of a binomial frequency: a false failure has probability < 1e-6 per token.
            double tol = 5 * Math.Sqrt(e * (1 - e) / n);
            Assert.True(Math.Abs(f - e) <= tol, $"{what}: token {i}: frequency {f:F5}, expected {e:F5} (tolerance {tol:F5})");
            worst = Math.Max(worst, Math.Abs(f - e) / tol);
        }
        // Log-probs: log_softmax(logits/T) of the unfiltered distribution, whatever was filtered.
        double max = Logits.Max(), lse = max / p.Temperature + Math.Log(Logits.Sum(x => Math.Exp((x - max) / p.Temperature)));
        for (int i = 0; i < 1000; i++)
            Assert.True(Math.Abs(lps[i] - (Logits[tokens[i]] / p.Temperature - lse)) < 2e-6, $"{what}: log-prob of draw {i}");
        log.WriteLine($"{what}: worst |freq − p| = {worst:F2} of the 5σ tolerance");
    }

    [Fact]
    public void TwoLevelDrawsFollowTheDistributionAcrossBlocksWithoutMass()
    {
        // 600 ids: blocks of 25 (BlockSize), 24 of them. Two whole blocks carry no mass (−inf), the last one included,
        // and single ids inside other blocks too; the draws must still follow the softmax, and never land on them.
        Assert.Equal(25, TokenSampler.BlockSize(600));
        var rng = new Random(5);
        var logits = Enumerable.Range(0, 600).Select(_ => rng.NextDouble() * 4 - 2).ToArray();
        for (int i = 50; i < 75; i++) logits[i] = double.NegativeInfinity;
        for (int i = 575; i < 600; i++) logits[i] = double.NegativeInfinity;
        foreach (int i in new[] { 0, 124, 125, 300 }) logits[i] = double.NegativeInfinity;
        var p = new SamplingParams { Temperature = 0.7, Seed = 9 };
        var expected = Expected(logits, p);
        const int n = 300_000;
        var (tokens, _) = Draw(logits, p, n);
        var counts = new long[logits.Length];
        foreach (var t in tokens) counts[t]++;
        for (int i = 0; i < logits.Length; i++)
        {
            double f = (double)counts[i] / n, e = expected[i];
            if (e == 0) { Assert.True(counts[i] == 0, $"id {i} has no mass but was drawn {counts[i]} times"); continue; }
            Assert.True(Math.Abs(f - e) <= 5 * Math.Sqrt(e * (1 - e) / n), $"id {i}: frequency {f:F6}, expected {e:F6}");
        }
        // Block masses: the 22 blocks with mass, each within 5σ of its total.
        for (int blk = 0; blk < 24; blk++)
        {
            double e = expected.Skip(blk * 25).Take(25).Sum(), f = counts.Skip(blk * 25).Take(25).Sum() / (double)n;
            Assert.True(Math.Abs(f - e) <= 5 * Math.Sqrt(e * (1 - e) / n) + (e == 0 ? 0 : 1e-12), $"block {blk}: {f:F5} vs {e:F5}");
        }
    }

    [Theory]
    [InlineData(151936, 1187)]
    [InlineData(1024, 32)]
    [InlineData(12, 4)]
    [InlineData(7, 7)]
    [InlineData(1, 1)]
    public void BlockSizeIsTheSmallestDivisorFromTheSquareRoot(long v, long expected) => Assert.Equal(expected, TokenSampler.BlockSize(v));

    [Fact]
    public void GreedyTakesTheArgmaxAndLogSoftmaxAtTemperatureOne()
    {
        var p = new SamplingParams { Temperature = 0 };
        var (tokens, lps) = Draw(Logits, p, 4);
        double max = Logits.Max(), lse = max + Math.Log(Logits.Sum(x => Math.Exp(x - max)));
        Assert.All(tokens, t => Assert.Equal(7, t));
        Assert.All(lps, l => Assert.Equal(3.1 - lse, l, 5));
        // Banning the argmax gives the runner-up.
        var (banned, _) = Draw(Logits, p, 2, [7]);
        Assert.All(banned, t => Assert.Equal(10, t));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ExtremeUniformsStayOnTokensWithWeight(bool sorted)
    {
        // Trailing tokens with zero weight (−inf logits; min-p removes more): u = 0 takes the first token with weight
        // in sampling order, the largest uniform the last one, never a zero-weight token.
        double[] logits = [1.0, 0.5, -0.5, 0.0, double.NegativeInfinity, -30, double.NegativeInfinity];
        var p = new SamplingParams { MinP = 0.05, TopP = sorted ? 0.999 : 1.0 };
        using var scope = torch.NewDisposeScope();
        var batch = torch.tensor(logits).to(ScalarType.Float32).unsqueeze(0).expand(2, logits.Length).contiguous();
        var u = torch.tensor(new[] { 0f, (float)((1 << 23) - 1) / (1 << 23) });
        var (tok, _) = TokenSampler.Sample(batch, u, p);
        var t = tok.data<long>().ToArray();
        // Weights after min-p (max prob × 0.05): tokens 0..3 stay; sorted order is 0, 1, 3, 2.
        Assert.Equal(0, t[0]);
        Assert.Equal(sorted ? 2 : 3, t[1]);
    }

    [Fact]
    public void Bfloat16LogitsSampleTheSameDistribution()
    {
        // bf16 logits are upcast before the softmax: the draws follow softmax of the bf16-rounded logits.
        var rounded = torch.tensor(Logits).to(ScalarType.BFloat16).to(ScalarType.Float64).data<double>().ToArray();
        var p = new SamplingParams { TopP = 0.9 };
        const int n = 100_000;
        var expected = Expected(rounded, p);
        var (tokens, _) = Draw(Logits, p, n, null, ScalarType.BFloat16);
        for (int i = 0; i < Logits.Length; i++)
        {
            double f = tokens.Count(t => t == i) / (double)n, e = expected[i];
            Assert.True(Math.Abs(f - e) <= 5 * Math.Sqrt(e * (1 - e) / n) + (e == 0 ? 0 : 1e-12), $"token {i}: {f} vs {e}");
        }
    }

    [Fact]
    public void CounterRngIsAPureFunctionOfItsCounters()
    {
        Assert.Equal(CounterRng.Uniform(42, 3, 1, 17), CounterRng.Uniform(42, 3, 1, 17));
        var seen = new HashSet<float> { CounterRng.Uniform(42, 3, 1, 17), CounterRng.Uniform(43, 3, 1, 17),
                                        CounterRng.Uniform(42, 4, 1, 17), CounterRng.Uniform(42, 3, 2, 17), CounterRng.Uniform(42, 3, 1, 18) };
        Assert.Equal(5, seen.Count);
        // Uniform on [0, 1): mean 1/2, variance 1/12 over many counters.
        var xs = Enumerable.Range(0, 100_000).Select(i => (double)CounterRng.Uniform(1, 0, 0, i)).ToArray();
        Assert.All(xs, x => Assert.InRange(x, 0, 1 - 1.0 / (1 << 23)));
        Assert.Equal(0.5, xs.Average(), 2);
        Assert.Equal(1.0 / 12, xs.Select(x => (x - 0.5) * (x - 0.5)).Average(), 3);
    }
}
