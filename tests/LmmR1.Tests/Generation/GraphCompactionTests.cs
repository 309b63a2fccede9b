// Row compaction in the graph path (GraphDecodeStep.LoadFrom into a smaller row bucket), checked on the CPU with the
// static step run eagerly (StaticStepWithoutGraph: the same step, warm-up writes on the shared KV arena included). With
// stop tokens that end the tiny fixtures' samples at scattered steps: compacting and not compacting give the eager
// loop's tokens (greedy and seeded sampling), log-probs within 2e-4 of the eager loop's (the static step's logits are
// within 1e-4 of the eager decode's, StaticDecodeTests, and a log-softmax moves by at most twice the largest logit
// change); the compactions, buckets and row-steps are what the documented rule gives when it is replayed from the
// samples' lengths.
using LmmR1.Generation;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using Xunit.Abstractions;

namespace LmmR1.Tests.Generation;

public class GraphCompactionTests(GenerationFixtures fx, ITestOutputHelper log) : IClassFixture<GenerationFixtures>
{
    const double LogProbTolerance = 2 * Numerics.Fp32;
    const int CheckEvery = 3, MaxNew = 40;

    // 40 of the 1024 ids (about 4 % per step for random weights) / 100 ids under top-k/top-p (which concentrate the mass).
    static readonly int[] ManyStops = Enumerable.Range(0, 40).Select(i => 7 + 25 * i).ToArray();
    static readonly int[] MoreStops = Enumerable.Range(0, 100).Select(i => 3 + 10 * i).ToArray();

    static SamplingParams Params(string kind, QwenVLModel m, List<GenerationPrompt> prompts) => kind switch
    {
        "greedy" => GreedyParams(m, prompts),
        "forced" => ForcedParams(),
        "sampled" => new SamplingParams { N = 8, Temperature = 1, MaxNewTokens = MaxNew, MinNewTokens = 2, StopTokenIds = ManyStops, Seed = 11 },
        _ => new SamplingParams { N = 8, Temperature = 0.8, TopK = 200, TopP = 0.9, MinP = 0.01, MaxNewTokens = MaxNew, MinNewTokens = 4,
                                  StopTokenIds = MoreStops, Seed = 12 },
    };

    /// <summary>Greedy: a prompt's samples are identical, so rows leave in groups of N, and random stop ids rarely hit a
    /// greedy path (the tiny models fall into loops). The stops are therefore taken from the greedy responses without
    /// stops: for prompt i the token at the step nearest 4 + 12·i where it first occurs in its response, so the prompts
    /// end at different steps (min_new_tokens 1: no ban beyond step 0, which would change the paths).</summary>
    static SamplingParams GreedyParams(QwenVLModel m, List<GenerationPrompt> prompts)
    {
        var sp = new SamplingParams { N = 8, Temperature = 0, MaxNewTokens = MaxNew, MinNewTokens = 1, Seed = 3 };
        var free = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery }).Generate(prompts, sp with { N = 1 });
        var stops = new List<int>();
        for (int i = 0; i < free.Count; i++)
        {
            var t = free[i].TokenIds;
            int at = Enumerable.Range(1, t.Length - 1).Where(j => !t.Take(j).Contains(t[j])).MinBy(j => Math.Abs(j - (4 + 12 * i)));
            stops.Add(t[at]);
        }
        return sp with { StopTokenIds = stops.Distinct().ToList() };
    }

    /// <summary>Forced lengths (SyntheticLengths, as the benchmark uses) end samples during the min_new_tokens phase too,
    /// where stop tokens are banned: compactions then happen while the step runs its "early" graph.</summary>
    static SamplingParams ForcedParams() =>
        new() { N = 8, Temperature = 1, MaxNewTokens = MaxNew, MinNewTokens = 12, StopTokenIds = ManyStops, Seed = 21,
                SyntheticLengths = new SyntheticLengths(8, 0.8, ManyStops[0]) };

    /// <summary>The rule as documented (GraphDecodeStep.CompactTo), replayed from the samples' final lengths: a sample of
    /// length L is live at the check after token e while L &gt; e.</summary>
    static (int Compactions, long RowSteps, List<int> Buckets, List<int> AtToken) Replay(IReadOnlyList<GenerationOutput> outs, double fraction)
    {
        int bucket = GraphDecodeStep.RowBucket(outs.Count), compactions = 0;
        long rowSteps = 0;
        var buckets = new List<int> { bucket };
        var at = new List<int>();       // tokens made when each compaction happens
        for (int s0 = 0; s0 < MaxNew;)
        {
            int len = Math.Min(CheckEvery, MaxNew - s0);
            rowSteps += (long)len * bucket;
            s0 += len;
            int live = outs.Count(o => o.ResponseLength > s0);
            if (live == 0 || s0 >= MaxNew) break;
            int to = GraphDecodeStep.RowBucket(live);
            if (to < bucket && 1.0 - (double)to / bucket >= fraction)
            {
                bucket = to;
                compactions++;
                buckets.Add(to);
                at.Add(s0);
            }
        }
        return (compactions, rowSteps, buckets, at);
    }

    [Theory]
    [InlineData("qwen2vl-tiny", "greedy")]
    [InlineData("qwen25vl-tiny", "greedy")]
    [InlineData("qwen2vl-tiny", "sampled")]
    [InlineData("qwen25vl-tiny", "sampled")]
    [InlineData("qwen2vl-tiny", "filtered")]
    [InlineData("qwen25vl-tiny", "filtered")]
    [InlineData("qwen2vl-tiny", "forced")]
    [InlineData("qwen25vl-tiny", "forced")]
    public void CompactingIntoSmallerBucketsKeepsTheTokens(string name, string kind)
    {
        var (_, m, prompts) = fx.Get(name);
        var sp = Params(kind, m, prompts);
        var eager = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery }).Generate(prompts, sp);
        Assert.True(eager.Select(o => o.ResponseLength).Distinct().Count() >= (kind == "greedy" ? 2 : 3),
            $"samples should end at different steps: {string.Join(",", eager.Select(o => o.ResponseLength))}");

        foreach (double fraction in new[] { 2.0, 0.25, 0.0, 0.4 })
        {
            using var engine = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery, CompactFraction = fraction, StaticStepWithoutGraph = true });
            var outs = engine.Generate(prompts, sp);
            var st = engine.LastStats;
            var (compactions, rowSteps, buckets, at) = Replay(eager, fraction);
            log.WriteLine($"{name} {kind} fraction {fraction}: buckets {string.Join(" → ", buckets)}, {st.RowSteps} row-steps, {st.Compactions} compactions");
            if (fraction <= 0.25) Assert.True(compactions >= (kind == "greedy" ? 1 : 2), $"{name} {kind}: the case should compact (buckets {string.Join(",", buckets)})");
            if (kind == "forced" && fraction <= 0.25)
                Assert.True(at[0] < sp.MinNewTokens, $"{name}: the first compaction (after token {at[0]}) should come before min_new_tokens ({sp.MinNewTokens})");
            if (fraction > 1) Assert.Equal(0, compactions);
            Assert.Equal(compactions, st.Compactions);
            Assert.Equal(rowSteps, st.RowSteps);
            Assert.Equal(buckets.Count, st.GraphCaptures);      // one step per bucket, captured on first use
            Assert.Equal(buckets[0], st.GraphRows);
            AssertSameAsEager(eager, outs, $"{name} {kind} fraction {fraction}");

            // A second call reuses every bucket's step (nothing captured) and still gives the same samples.
            var again = engine.Generate(prompts, sp);
            Assert.Equal(0, engine.LastStats.GraphCaptures);
            Assert.Equal(compactions, engine.LastStats.Compactions);
            AssertSameAsEager(eager, again, $"{name} {kind} fraction {fraction}, second call");
        }
    }

    [Theory]
    [InlineData("qwen2vl-tiny", "sampled")]
    [InlineData("qwen25vl-tiny", "forced")]
    [InlineData("qwen25vl-tiny", "greedy")]
    public void AttentionWindowsKeepTheTokensAndUndoTheirWarmUps(string name, string kind)
    {
        // Windows of 16 positions: every bucket steps through several windows, each first used mid-batch (its warm-ups
        // run at the batch's next cache index and must be undone), compactions included; window 0 = the whole capacity.
        var (_, m, prompts) = fx.Get(name);
        var sp = Params(kind, m, prompts);
        var eager = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery }).Generate(prompts, sp);
        var (_, _, buckets, _) = Replay(eager, 0.25);
        foreach (int window in new[] { 16, 0 })
        {
            using var engine = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery, AttentionWindow = window, StaticStepWithoutGraph = true });
            var outs = engine.Generate(prompts, sp);
            var st = engine.LastStats;
            log.WriteLine($"{name} {kind} window {window}: {st.GraphCaptures} captures for buckets {string.Join(" → ", buckets)}");
            if (window == 0) Assert.Equal(buckets.Count, st.GraphCaptures);
            else Assert.True(st.GraphCaptures > buckets.Count, $"window {window}: {st.GraphCaptures} captures for {buckets.Count} buckets");
            AssertSameAsEager(eager, outs, $"{name} {kind} window {window}");
            var again = engine.Generate(prompts, sp);
            Assert.True(engine.LastStats.GraphCaptures <= st.GraphCaptures);
            AssertSameAsEager(eager, again, $"{name} {kind} window {window}, second call");
        }
    }

    /// <summary>GenerationEngine.WarmUp (the RL trainer's warm-up rollout): the same micro-batch at the same capacity,
    /// cut after a few steps, with every attention window of its step captured; the call it warms up then captures no
    /// window of that step again, and its tokens are the eager loop's. The eager loop's warm-up cuts the rows the same way.</summary>
    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void AWarmUpCapturesEveryWindowOfTheStepAndLeavesTheCallItWarmsUnchanged(string name)
    {
        var (_, m, prompts) = fx.Get(name);
        var sp = Params("sampled", m, prompts);
        const int window = 16, steps = 2 * CheckEvery;
        var eager = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery }).Generate(prompts, sp);
        var (_, _, buckets, _) = Replay(eager, 0.25);
        int capacity = GraphDecodeStep.CapacityBucket(prompts.Max(p => p.TokenIds.Count) + MaxNew);
        int longest = prompts.Max(p => p.TokenIds.Count);
        // Windows from the one the cut-short batch is in (cache index longest + steps − 1) to the capacity.
        var expected = new SortedSet<int>();
        for (long f = longest + steps - 1; f < capacity; f++) expected.Add(GraphDecodeStep.WindowFor(f, capacity, window));

        using var engine = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery, AttentionWindow = window, StaticStepWithoutGraph = true });
        var warm = engine.WarmUp(prompts, sp, steps);
        var st = engine.LastStats;
        log.WriteLine($"{name}: warm-up {st.GraphCaptures} captures (windows {string.Join(",", expected)} after index {longest + steps - 1}), capacity {capacity}");
        Assert.Equal(prompts.Count * sp.N, warm.Count);
        Assert.All(warm, o => Assert.True(o.ResponseLength <= steps, $"{o.ResponseLength} tokens in a warm-up of {steps} steps"));
        Assert.Contains(warm, o => o.Finish == FinishReason.Length && o.ResponseLength == steps);
        // Its tokens are the first tokens of the real call's (same seed, same rows).
        for (int i = 0; i < warm.Count; i++)
            Assert.Equal(eager[i].TokenIds.Take(warm[i].ResponseLength), warm[i].TokenIds);
        Assert.True(st.GraphCaptures >= expected.Count, $"{st.GraphCaptures} captures for {expected.Count} windows");
        Assert.Equal(1, engine.CapturedGraphs);                         // one step: the first bucket

        var outs = engine.Generate(prompts, sp);
        AssertSameAsEager(eager, outs, $"{name} after a warm-up");
        using var cold = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery, AttentionWindow = window, StaticStepWithoutGraph = true });
        AssertSameAsEager(eager, cold.Generate(prompts, sp), $"{name} without a warm-up");
        log.WriteLine($"{name}: the call after the warm-up captured {engine.LastStats.GraphCaptures}, without it {cold.LastStats.GraphCaptures} (buckets {string.Join(" → ", buckets)})");
        Assert.True(engine.LastStats.GraphCaptures < cold.LastStats.GraphCaptures);

        var eagerWarm = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery }).WarmUp(prompts, sp, steps);
        for (int i = 0; i < warm.Count; i++) Assert.Equal(warm[i].TokenIds, eagerWarm[i].TokenIds);
    }

    [Fact]
    public void TheWindowIsTheFilledPrefixRoundedUpWithinTheCapacity()
    {
        Assert.Equal(128, GraphDecodeStep.WindowFor(0, 640, 128));      // writing index 0 reads 1 position
        Assert.Equal(128, GraphDecodeStep.WindowFor(127, 640, 128));    // index 127: 128 positions
        Assert.Equal(256, GraphDecodeStep.WindowFor(128, 640, 128));
        Assert.Equal(576, GraphDecodeStep.WindowFor(520, 576, 128));    // capped at the capacity bucket
        Assert.Equal(576, GraphDecodeStep.WindowFor(3, 576, 0));        // 0: always the whole capacity
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void ALargerBatchReplacesTheKvArenaOfItsCapacity(string name)
    {
        // 8 rows first (arena of 8 rows), then 24 rows at the same capacity bucket: the arena is replaced and the steps on
        // the old one are released; then 8 rows again on the 24-row arena (a view of its first 8 rows).
        var (_, m, prompts) = fx.Get(name);
        var sp = Params("sampled", m, prompts);
        var one = prompts.Take(1).ToList();
        var eagerEngine = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery });
        var eagerOne = eagerEngine.Generate(one, sp);
        var eagerAll = eagerEngine.Generate(prompts, sp);
        Assert.Equal(GraphDecodeStep.CapacityBucket(one[0].TokenIds.Count + MaxNew),
                     GraphDecodeStep.CapacityBucket(prompts.Max(p => p.TokenIds.Count) + MaxNew));

        using var engine = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = CheckEvery, StaticStepWithoutGraph = true });
        AssertSameAsEager(eagerOne, engine.Generate(one, sp), $"{name} 8 rows");
        int small = engine.CapturedGraphs;
        AssertSameAsEager(eagerAll, engine.Generate(prompts, sp), $"{name} 24 rows");
        var (_, _, buckets, _) = Replay(eagerAll, engine.Options.CompactFraction);
        Assert.Equal(buckets.Count, engine.CapturedGraphs);          // the small call's steps went with the old arena
        Assert.True(small >= 1);
        AssertSameAsEager(eagerOne, engine.Generate(one, sp), $"{name} 8 rows again");
    }

    [Fact]
    public void TheRuleCompactsOnlyIntoSmallerBucketsThatSaveTheFraction()
    {
        Assert.Equal(384, GraphDecodeStep.CompactTo(300, 512, 0.25));     // 1 − 384/512 = 0.25
        Assert.Null(GraphDecodeStep.CompactTo(300, 512, 0.3));
        Assert.Equal(256, GraphDecodeStep.CompactTo(200, 512, 0.3));
        Assert.Null(GraphDecodeStep.CompactTo(385, 512, 0.0));            // still the 512 bucket
        Assert.Equal(1, GraphDecodeStep.CompactTo(1, 512, 0.99));
        Assert.Null(GraphDecodeStep.CompactTo(1, 512, 2.0));
        Assert.Null(GraphDecodeStep.CompactTo(0, 512, 0.0));
        Assert.Equal(new[] { 1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512 },
                     new[] { 1, 2, 3, 5, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385 }.Select(GraphDecodeStep.RowBucket));
    }

    static void AssertSameAsEager(IReadOnlyList<GenerationOutput> eager, IReadOnlyList<GenerationOutput> outs, string what)
    {
        Assert.Equal(eager.Count, outs.Count);
        for (int i = 0; i < eager.Count; i++)
        {
            Assert.True(eager[i].TokenIds.SequenceEqual(outs[i].TokenIds),
                $"{what}, output {i}: tokens differ\n  eager  {string.Join(",", eager[i].TokenIds)}\n  static {string.Join(",", outs[i].TokenIds)}");
            Assert.Equal(eager[i].Finish, outs[i].Finish);
            Assert.Equal(eager[i].StopTokenId, outs[i].StopTokenId);
            for (int j = 0; j < eager[i].LogProbs.Length; j++)
                Assert.True(Math.Abs(eager[i].LogProbs[j] - outs[i].LogProbs[j]) <= LogProbTolerance,
                    $"{what}, output {i} token {j}: log-prob {eager[i].LogProbs[j]} vs {outs[i].LogProbs[j]}");
        }
    }
}
