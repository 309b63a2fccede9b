// The generation engine on the tiny Qwen2-VL / Qwen2.5-VL fixtures (CPU fp32, images included): greedy equals
// transformers' tokens, shared prefixes equal independent prefills, batching/row dropping/check interval leave outputs
// unchanged, returned log-probs equal a separate forward pass, and stops/lengths/masks follow from the unstopped run.
using LmmR1.Generation;
using LmmR1.Training.Ppo;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Models;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using Xunit.Abstractions;

namespace LmmR1.Tests.Generation;

public sealed class GenerationFixtures : IDisposable
{
    public QwenFixtures Models { get; } = new();
    readonly Dictionary<string, List<GenerationPrompt>> prompts = [];

    public (QwenReference Ref, QwenVLModel Model, List<GenerationPrompt> Prompts) Get(string name)
    {
        var (r, m) = Models.Get(name);
        m.Attention = AttentionImpl.Sdpa;
        if (!prompts.TryGetValue(name, out var p)) prompts[name] = p = GenerationFixture.Prompts(r);
        return (r, m, p);
    }

    public void Dispose()
    {
        foreach (var p in prompts.Values.SelectMany(x => x)) { p.PixelValues?.Dispose(); p.ImageGridThw?.Dispose(); }
        Models.Dispose();
    }
}

public class GenerationEngineTests(GenerationFixtures fx, ITestOutputHelper log) : IClassFixture<GenerationFixtures>
{
    // Log-probs of the same tokens from the same weights in differently shaped batches (a row's place in the GEMMs and
    // the decode batch, prefill shared or not): only the blocking of fp32 sums over H = 64 and V = 1024 changes, a few
    // ulps of values near −5 (ulp 4.8e-7; measured ≤ 1.5e-6 under ATEN_CPU_CAPABILITY default, avx2 and avx512), so
    // 1e-5 — tighter than the spec's 1e-4 for a different computation (RecomputeTolerance).
    const double BatchingTolerance = 1e-5;
    const double RecomputeTolerance = Numerics.Fp32;  // log-probs vs one plain forward over prompt + response (fp32)

    // 40 of the 1024 ids: about 4 % per step, so samples end at scattered steps.
    static readonly int[] ManyStops = Enumerable.Range(0, 40).Select(i => 7 + 25 * i).ToArray();
    // 100 ids (top-k/top-p concentrate the mass, so more stops keep the stop steps spread).
    static readonly int[] MoreStops = Enumerable.Range(0, 100).Select(i => 3 + 10 * i).ToArray();

    static IReadOnlyList<GenerationOutput> Run(QwenVLModel m, List<GenerationPrompt> prompts, SamplingParams p,
        GenerationEngineOptions? o = null, Func<IReadOnlyList<int>, string>? detok = null) =>
        new GenerationEngine(m, o).Generate(prompts, p, detok);

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void GreedyEqualsTransformersAndSamplesAgree(string name)
    {
        var (r, m, prompts) = fx.Get(name);
        var p = new SamplingParams { Temperature = 0, N = 3, MaxNewTokens = (int)r.Generated.shape[1] };
        var expected = r.Generated.data<long>().ToArray();
        int len = (int)r.Generated.shape[1];
        var margins = QwenParityTests.TransformersMargins(r);
        // One padded batch as in the fixture, and one prompt per micro-batch (no padding).
        foreach (var o in new[] { new GenerationEngineOptions(), new GenerationEngineOptions { MaxPromptsPerBatch = 1, CheckEvery = 3 } })
        {
            var outs = Run(m, prompts, p, o);
            Assert.Equal(prompts.Count * 3, outs.Count);
            // transformers' tokens, except where its logits have a near-tie (QwenParityTests.TransformersMargin).
            int ties = TokenAssert.GreedyEqualExceptNearTies(
                outs.Select(x => (IReadOnlyList<long>)expected.Skip(x.PromptIndex * len).Take(len).ToArray()).ToList(),
                outs.Select(x => (IReadOnlyList<long>)x.TokenIds.Select(t => (long)t).ToArray()).ToList(),
                (row, step) => margins(outs[row].PromptIndex, step), $"{name} greedy vs transformers", log.WriteLine).NearTies;
            Assert.True(ties <= 1, $"{ties} near-tie divergences from transformers");
            foreach (var x in outs)
            {
                Assert.Equal(FinishReason.Length, x.Finish);
                // The three samples of a prompt are rows of one decode batch (each checked against transformers
                // above): log-probs within the batching tolerance while their tokens agree (a row's place in the
                // batch may change the last bits).
                var first = outs[x.PromptIndex * 3];
                for (int j = 0; j < x.ResponseLength && first.TokenIds.Take(j + 1).SequenceEqual(x.TokenIds.Take(j + 1)); j++)
                    Assert.True(Math.Abs(first.LogProbs[j] - x.LogProbs[j]) <= BatchingTolerance,
                        $"prompt {x.PromptIndex} sample {x.SampleIndex} token {j}: {x.LogProbs[j]} vs {first.LogProbs[j]}");
            }
        }
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void SharedPrefixEqualsIndependentPrefill(string name)
    {
        var (_, m, prompts) = fx.Get(name);
        var p = new SamplingParams { N = 4, MaxNewTokens = 12, Seed = 5 };
        var shared = Run(m, prompts, p, new GenerationEngineOptions { SharePrefix = true });
        var copies = Run(m, prompts, p, new GenerationEngineOptions { SharePrefix = false });
        AssertSame(m, prompts, p, shared, copies, "independent prefill");
        // The samples of a prompt differ (different random streams).
        Assert.NotEqual(shared[0].TokenIds, shared[1].TokenIds);
    }

    public static TheoryData<string, string> BatchingCases => new()
    {
        { "qwen2vl-tiny", "plain" }, { "qwen25vl-tiny", "plain" }, { "qwen2vl-tiny", "filtered" }, { "qwen25vl-tiny", "filtered" },
    };

    static SamplingParams BatchingParams(string kind) => kind == "plain"
        ? new SamplingParams { N = 6, MaxNewTokens = 40, StopTokenIds = ManyStops, Seed = 11 }
        : new SamplingParams { N = 6, MaxNewTokens = 40, StopTokenIds = MoreStops, Seed = 12, Temperature = 0.8, TopK = 200, TopP = 0.9, MinP = 0.01 };

    [Theory]
    [MemberData(nameof(BatchingCases))]
    public void BatchingRowDroppingAndCheckIntervalDoNotChangeOutputs(string name, string kind)
    {
        var (_, m, prompts) = fx.Get(name);
        var p = BatchingParams(kind);
        var reference = Run(m, prompts, p, new GenerationEngineOptions { CheckEvery = 1, CompactFraction = 2 });
        Assert.Contains(reference, x => x.Finish == FinishReason.Stop);
        if (kind == "plain") Assert.Contains(reference, x => x.Finish == FinishReason.Length);
        Assert.True(reference.Select(x => x.ResponseLength).Distinct().Count() > 5,
            $"samples should end at many different steps: {string.Join(",", reference.Select(x => x.ResponseLength))}");

        var variants = new (string What, GenerationEngineOptions O)[]
        {
            ("compact at every check, check every 3", new() { CheckEvery = 3, CompactFraction = 0 }),
            ("5 rows per micro-batch (prompts split), check every 2", new() { MaxRowsPerBatch = 5, CheckEvery = 2 }),
            ("one prompt per micro-batch, check every 5, compact always", new() { MaxPromptsPerBatch = 1, CheckEvery = 5, CompactFraction = 0 }),
            ("KV budget of 2 rows", new() { MaxTokensPerBatch = 2 * (prompts.Max(x => x.TokenIds.Count) + 40), CheckEvery = 4 }),
            ("no prefix sharing, check every 7", new() { SharePrefix = false, CheckEvery = 7, CompactFraction = 0.5 }),
            ("no prefix sharing, prefill budget of 3 prompts", new() { SharePrefix = false, MaxPrefillTokens = 3 * prompts.Max(x => x.TokenIds.Count) }),
        };
        foreach (var (what, o) in variants)
        {
            var engine = new GenerationEngine(m, o);
            var outs = engine.Generate(prompts, p);
            AssertSame(m, prompts, p, reference, outs, what);
            log.WriteLine($"{what}: {engine.LastStats.MicroBatches} micro-batches, {engine.LastStats.Compactions} compactions, " +
                          $"{engine.LastStats.RowSteps} row-steps");
            if (o.CompactFraction == 0) Assert.True(engine.LastStats.Compactions > 0, $"{what}: expected compactions");

        }
    }

    [Theory]
    [InlineData("qwen2vl-tiny", 1.0)]
    [InlineData("qwen2vl-tiny", 0.7)]
    [InlineData("qwen2vl-tiny", 0.0)]
    [InlineData("qwen25vl-tiny", 1.0)]
    [InlineData("qwen25vl-tiny", 1.3)]
    public void LogProbsEqualASeparateForwardPass(string name, double temperature)
    {
        var (_, m, prompts) = fx.Get(name);
        var p = new SamplingParams { N = 3, MaxNewTokens = 16, Temperature = temperature, TopP = 0.95, StopTokenIds = ManyStops, Seed = 21 };
        var outs = Run(m, prompts, p, new GenerationEngineOptions { CheckEvery = 2, CompactFraction = 0 });
        var recomputed = GenerationFixture.RecomputeLogProbs(m, prompts, outs, temperature);
        double worst = 0;
        for (int i = 0; i < outs.Count; i++)
            for (int j = 0; j < outs[i].ResponseLength; j++)
            {
                double d = Math.Abs(outs[i].LogProbs[j] - recomputed[i][j]);
                Assert.True(d <= RecomputeTolerance, $"sample {i} token {j}: {outs[i].LogProbs[j]} vs recomputed {recomputed[i][j]}");
                worst = Math.Max(worst, d);
            }
        log.WriteLine($"{name} T={temperature}: max |Δ log-prob| = {worst:G3} over {outs.Sum(o => o.ResponseLength)} tokens");
    }

    /// <summary>Token → one of four letters, so stop strings span several tokens.</summary>
    static string Letters(IReadOnlyList<int> ids) => new(ids.Select(t => (char)('a' + t % 4)).ToArray());

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void StopsAndLengthsTruncateTheUnstoppedRun(string name)
    {
        var (_, m, prompts) = fx.Get(name);
        var baseParams = new SamplingParams { N = 8, MaxNewTokens = 40, MinNewTokens = 0, Seed = 3 };
        var free = Run(m, prompts, baseParams, new GenerationEngineOptions { CheckEvery = 1 });
        Assert.All(free, x => Assert.Equal(40, x.ResponseLength));

        int[] stopIds = Enumerable.Range(0, 20).Select(i => 5 + 50 * i).ToArray();   // ~2 % per step
        string[] stopStrings = ["dcba", "aaa"];                                      // ~2 % per step together
        foreach (int maxNew in new[] { 40, 5 })
        {
            var p = baseParams with { StopTokenIds = stopIds, StopStrings = stopStrings, MaxNewTokens = maxNew };
            var outs = Run(m, prompts, p, new GenerationEngineOptions { CheckEvery = 3, CompactFraction = 0 }, Letters);
            int byToken = 0, byString = 0;
            for (int i = 0; i < outs.Count; i++)
            {
                // The expected sample: the unstopped one cut after its first stop token or stop-string completion.
                var f = free[i];
                int end = maxNew; FinishReason reason = FinishReason.Length; int? tokenStop = null; string? stringStop = null;
                for (int j = 0; j < maxNew; j++)
                {
                    if (stopIds.Contains(f.TokenIds[j])) { end = j + 1; reason = FinishReason.Stop; tokenStop = f.TokenIds[j]; break; }
                    string text = Letters(f.TokenIds.Take(j + 1).ToArray());
                    stringStop = stopStrings.FirstOrDefault(s => text.Contains(s, StringComparison.Ordinal));
                    if (stringStop != null) { end = j + 1; reason = FinishReason.Stop; break; }
                }
                var o = outs[i];
                // Exact tokens although the two runs batch differently: a draw lands within the near-tie margin of an
                // edge (Numerics.SampledNearTieMargin: 2e-4 of probability) with probability ≈ 4e-4 per token only
                // if the logits differ by the full 1e-4; they differ by ~1e-6 (BatchingTolerance), ≈ 4e-6 per token,
                // about 1e-3 over this test's ~500 tokens.
                Assert.Equal(f.TokenIds.Take(end), o.TokenIds);
                Assert.Equal(reason, o.Finish);
                Assert.Equal(tokenStop, o.StopTokenId);
                Assert.Equal(stringStop, o.StopString);
                for (int j = 0; j < end; j++) Assert.True(Math.Abs(f.LogProbs[j] - o.LogProbs[j]) <= BatchingTolerance);
                if (tokenStop != null) byToken++;
                if (stringStop != null) byString++;
            }
            if (maxNew == 40) Assert.True(byToken > 0 && byString > 0, $"stops by token {byToken}, by string {byString}");
            else Assert.All(outs, o => Assert.True(o.ResponseLength <= 5));

            // The trainer's collated form (left-padded): each response ends at the last column, through its stop token,
            // and the action mask covers exactly its tokens.
            var items = outs.Select(o => new ExperienceItem
            {
                PromptIndex = o.PromptIndex, SampleIndex = o.SampleIndex, PromptIds = [7, 8], ResponseIds = o.TokenIds.Select(t => (long)t).ToArray(),
            }).ToList();
            using var batch = Experience.Collate(items, torch.CPU, padTokenId: 1023);
            var mask = batch.ActionMask.to(ScalarType.Int64).sum(1).data<long>().ToArray();
            var toks = batch.Sequences.data<long>().ToArray();
            int width = (int)batch.Sequences.shape[1];
            for (int i = 0; i < outs.Count; i++)
            {
                int r = outs[i].ResponseLength;
                Assert.Equal(r, mask[i]);
                Assert.Equal(outs[i].TokenIds.Select(t => (long)t), toks.Skip(i * width + width - r).Take(r));
                if (outs[i].StopTokenId is int st) Assert.Equal(st, toks[i * width + width - 1]);
                for (int j = 0; j < width - r - 2; j++) Assert.Equal(1023, toks[i * width + j]);
            }
        }
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void MinNewTokensBansStopTokensButNotTheirLogProbs(string name)
    {
        var (_, m, prompts) = fx.Get(name);
        int[] half = Enumerable.Range(0, 512).ToArray();                       // half the vocabulary stops
        var p = new SamplingParams { N = 8, MaxNewTokens = 6, StopTokenIds = half, MinNewTokens = 3, Seed = 9 };
        var outs = Run(m, prompts, p);
        // vLLM/HF semantics: the first min_new_tokens tokens are not stops, so a stop token comes at index ≥ 3.
        Assert.All(outs, o => Assert.True(o.ResponseLength >= 4 || o.Finish == FinishReason.Length, $"length {o.ResponseLength}"));
        Assert.All(outs, o => Assert.DoesNotContain(o.TokenIds.Take(3), t => t < 512));
        Assert.Contains(outs, o => o.ResponseLength == 4);
        var recomputed = GenerationFixture.RecomputeLogProbs(m, prompts, outs, 1.0);
        for (int i = 0; i < outs.Count; i++)
            for (int j = 0; j < outs[i].ResponseLength; j++)
                Assert.True(Math.Abs(outs[i].LogProbs[j] - recomputed[i][j]) <= RecomputeTolerance);
        // Without the ban, many samples stop within the first two tokens.
        var free = Run(m, prompts, p with { MinNewTokens = 0 });
        Assert.Contains(free, o => o.ResponseLength == 1);
    }

    [Fact]
    public void BadInputsAreReported()
    {
        var (_, m, prompts) = fx.Get("qwen2vl-tiny");
        var engine = new GenerationEngine(m);
        var e = Assert.Throws<InputException>(() => engine.Generate([new GenerationPrompt([1, 2, 5000])], new SamplingParams()));
        Assert.Contains("5000", e.Message);
        Assert.Throws<InputException>(() => engine.Generate(prompts, new SamplingParams { StopStrings = ["x"] }));
        Assert.Throws<InputException>(() => engine.Generate(prompts, new SamplingParams { TopP = 0 }));
        Assert.Throws<InputException>(() => engine.Generate([new GenerationPrompt([])], new SamplingParams()));
    }

    /// <summary>Two runs of the same prompts and sampling parameters in differently shaped batches: the same tokens,
    /// finish reasons and log-probs (within the batching tolerance), except where a sample diverges at a near-tie of
    /// its draw (<see cref="SampledMargin"/> below <see cref="Numerics.SampledNearTieMargin"/>); such samples are
    /// compared up to the divergence and counted.</summary>
    void AssertSame(QwenVLModel m, List<GenerationPrompt> prompts, SamplingParams p,
                    IReadOnlyList<GenerationOutput> expected, IReadOnlyList<GenerationOutput> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        int ties = 0;
        for (int i = 0; i < expected.Count; i++)
        {
            var (e, a) = (expected[i], actual[i]);
            Assert.Equal((e.PromptIndex, e.SampleIndex), (a.PromptIndex, a.SampleIndex));
            int agree = 0;
            while (agree < e.ResponseLength && agree < a.ResponseLength && e.TokenIds[agree] == a.TokenIds[agree]) agree++;
            if (agree < e.ResponseLength && agree < a.ResponseLength)
            {
                double margin = SampledMargin(m, prompts[e.PromptIndex], e, agree, p);
                Assert.True(margin < Numerics.SampledNearTieMargin,
                    $"{what}: sample {i} (prompt {e.PromptIndex}, #{e.SampleIndex}) token {agree}: {a.TokenIds[agree]} vs {e.TokenIds[agree]}, " +
                    $"the draw's distance to its CDF interval's edge is {margin:G3} (≥ {Numerics.SampledNearTieMargin:G3}: not a near-tie)");
                log.WriteLine($"{what}: sample {i} diverges at token {agree} at a near-tie of its draw (margin {margin:G3})");
                ties++;
            }
            else
            {
                Assert.True(e.TokenIds.SequenceEqual(a.TokenIds), $"{what}: sample {i} (prompt {e.PromptIndex}, #{e.SampleIndex}) tokens differ");
                Assert.Equal(e.Finish, a.Finish);
            }
            for (int j = 0; j < agree; j++)
                Assert.True(Math.Abs(e.LogProbs[j] - a.LogProbs[j]) <= BatchingTolerance,
                    $"{what}: sample {i} token {j}: log-prob {a.LogProbs[j]} vs {e.LogProbs[j]}");
        }
        Assert.True(ties <= 1, $"{what}: {ties} of {expected.Count} samples diverged at near-ties");
    }

    /// <summary>Where the draw of token <paramref name="step"/> of <paramref name="o"/> falls inside its token's CDF
    /// interval: the distance of u (CounterRng, as the engine draws it) to the nearer edge, in normalised probability,
    /// from one plain forward over prompt + the earlier tokens and the sampler's weights recomputed in fp64 (softmax of
    /// logits/T, banned ids, top-k → top-p → min-p, candidate order as TokenSampler).</summary>
    static double SampledMargin(QwenVLModel m, GenerationPrompt prompt, GenerationOutput o, int step, SamplingParams p)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var ids = prompt.TokenIds.Select(t => (long)t).Concat(o.TokenIds.Take(step).Select(t => (long)t)).ToArray();
        using var f = m.Forward(torch.tensor(ids).unsqueeze(0), torch.ones(1, ids.Length, ScalarType.Int64), prompt.PixelValues, prompt.ImageGridThw, logitsForLast: 1);
        var w = (f.Logits!.reshape(-1).to(ScalarType.Float64) / p.Temperature).softmax(-1);
        var banned = p.BannedTokenIds.Concat(step < p.MinNewTokens ? p.StopTokenIds : []).Select(t => (long)t).ToArray();
        if (banned.Length > 0) w = w.index_fill(0, torch.tensor(banned), 0.0);
        Tensor order;
        if (p.UsesTopK || p.UsesTopP)
        {
            (w, order) = p.UsesTopK && p.TopK < w.shape[0] ? w.topk(p.TopK, -1) : w.sort(-1, descending: true, stable: true);
            if (p.UsesTopP)
            {
                var norm = w / w.sum();
                w = w.masked_fill((norm.cumsum(-1) - norm).ge(p.TopP), 0.0);
            }
            if (p.UsesMinP) w = w.masked_fill(w.lt(w[0] * p.MinP), 0.0);
        }
        else
        {
            order = torch.arange(w.shape[0], ScalarType.Int64);
            if (p.UsesMinP) w = w.masked_fill(w.lt(w.max() * p.MinP), 0.0);
        }
        var cdf = (w / w.sum()).cumsum(-1).data<double>().ToArray();
        var pos = order.data<long>().ToList().IndexOf(o.TokenIds[step]);
        Assert.True(pos >= 0, $"token {o.TokenIds[step]} is not a candidate");
        double lo = pos == 0 ? 0 : cdf[pos - 1], hi = cdf[pos];
        double u = CounterRng.Uniform(p.Seed, prompt.Key ?? o.PromptIndex, o.SampleIndex, step);
        return Math.Min(Math.Abs(u - lo), Math.Abs(hi - u));
    }
}
