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
    const double BatchingTolerance = 1e-5;   // log-probs of the same tokens computed in differently shaped batches
    const double RecomputeTolerance = 1e-4;  // log-probs vs one plain forward over prompt + response (fp32)

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
        // One padded batch as in the fixture, and one prompt per micro-batch (no padding).
        foreach (var o in new[] { new GenerationEngineOptions(), new GenerationEngineOptions { MaxPromptsPerBatch = 1, CheckEvery = 3 } })
        {
            var outs = Run(m, prompts, p, o);
            Assert.Equal(prompts.Count * 3, outs.Count);
            foreach (var x in outs)
            {
                Assert.Equal(expected.Skip(x.PromptIndex * len).Take(len).Select(t => (int)t), x.TokenIds);
                Assert.Equal(FinishReason.Length, x.Finish);
                Assert.Equal(outs[x.PromptIndex * 3].LogProbs, x.LogProbs);
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
        AssertSame(shared, copies, "independent prefill");
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
            AssertSame(reference, outs, what);
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

    static void AssertSame(IReadOnlyList<GenerationOutput> expected, IReadOnlyList<GenerationOutput> actual, string what)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            var (e, a) = (expected[i], actual[i]);
            Assert.True(e.TokenIds.SequenceEqual(a.TokenIds), $"{what}: sample {i} (prompt {e.PromptIndex}, #{e.SampleIndex}) tokens differ");
            Assert.Equal(e.Finish, a.Finish);
            Assert.Equal((e.PromptIndex, e.SampleIndex), (a.PromptIndex, a.SampleIndex));
            for (int j = 0; j < e.ResponseLength; j++)
                Assert.True(Math.Abs(e.LogProbs[j] - a.LogProbs[j]) <= BatchingTolerance,
                    $"{what}: sample {i} token {j}: log-prob {a.LogProbs[j]} vs {e.LogProbs[j]}");
        }
    }
}
