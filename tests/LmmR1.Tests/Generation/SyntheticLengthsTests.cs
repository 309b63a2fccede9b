// Bench-only forced response lengths (SyntheticLengths): the draw's distribution, its flag parsing, and the engine
// ending each sample at its drawn length with the synthetic stop token in place of the sampled one — checked against
// the same call without forced lengths (same seed, so the same sampled tokens), on both tiny fixtures (CPU, fp32).
using LmmR1.Generation;
using LmmR1.Infrastructure;

namespace LmmR1.Tests.Generation;

public class SyntheticLengthsTests(GenerationFixtures fx) : IClassFixture<GenerationFixtures>
{
    [Fact]
    public void LengthsFollowTheLogNormalAndDoNotDependOnCallOrder()
    {
        var sl = new SyntheticLengths(256, 0.5, 0);
        var lens = Enumerable.Range(0, 20000).Select(i => sl.LengthFor(7, i / 8, i % 8)).ToArray();
        var sorted = lens.Order().ToArray();
        // Median of 20k log-normal draws: standard error ≈ 1.25·σ·median/√n ≈ 1.1 tokens; 2 % is ~5 standard errors.
        Assert.InRange(sorted[sorted.Length / 2], 256 * 0.98, 256 * 1.02);
        // P(length > 512) = P(Z > ln 2 / 0.5) = 0.0829; standard error of the share ≈ 0.002, so ±0.01.
        Assert.InRange(lens.Count(l => l > 512) / (double)lens.Length, 0.0729, 0.0929);
        Assert.All(lens, l => Assert.True(l >= 1));
        Assert.Equal(lens[12345], sl.LengthFor(7, 12345 / 8, 12345 % 8));
        Assert.Equal(256, new SyntheticLengths(256, 0, 0).LengthFor(1, 2, 3));   // σ = 0: exactly the median
    }

    [Theory]
    [InlineData("256")]
    [InlineData("256:x")]
    [InlineData("0:0.5")]
    [InlineData("256:-1")]
    [InlineData("a:b:c")]
    public void BadSpecsNameTheFlag(string spec)
    {
        var e = Assert.Throws<InputException>(() => SyntheticLengths.Parse(spec, "--synthetic_response_len"));
        Assert.Contains("--synthetic_response_len", e.Message);
        Assert.Contains("MEDIAN:SIGMA", e.Message);
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void SamplesEndAtTheirDrawnLengthWithTheStopToken(string name)
    {
        var (_, m, prompts) = fx.Get(name);
        const int maxNew = 20, stop = 5;
        var free = new SamplingParams { N = 8, MaxNewTokens = maxNew, MinNewTokens = 0, Temperature = 1.0, Seed = 11 };
        var sl = new SyntheticLengths(9, 1.0, stop);
        var forcedParams = free with { SyntheticLengths = sl };
        var a = new GenerationEngine(m).Generate(prompts, free);
        var b = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = 3, CompactFraction = 0 }).Generate(prompts, forcedParams);
        Assert.Equal(a.Count, b.Count);
        int stopped = 0, truncated = 0;
        for (int i = 0; i < a.Count; i++)
        {
            Assert.Equal(maxNew, a[i].ResponseLength);                  // no stop tokens: the free run goes to the limit
            int len = sl.LengthFor(free.Seed, a[i].PromptIndex, a[i].SampleIndex);
            if (len <= maxNew)
            {
                stopped++;
                Assert.Equal(FinishReason.Stop, b[i].Finish);
                Assert.Equal(stop, b[i].StopTokenId);
                Assert.Equal(a[i].TokenIds.Take(len - 1).Append(stop), b[i].TokenIds);
            }
            else
            {
                truncated++;
                Assert.Equal(FinishReason.Length, b[i].Finish);
                Assert.Equal(a[i].TokenIds, b[i].TokenIds);
            }
            // Same tokens from differently shaped batches (row dropping, check interval): fp32 blocking differs by a few ulps,
            // GenerationEngineTests' batching tolerance.
            for (int t = 0; t < b[i].ResponseLength; t++) Assert.Equal(a[i].LogProbs[t], b[i].LogProbs[t], 1e-5);
        }
        Assert.True(stopped > 0 && truncated > 0, $"{stopped} stopped, {truncated} truncated: pick parameters that give both");
    }
}
