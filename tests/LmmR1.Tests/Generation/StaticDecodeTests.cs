// The pieces of the CUDA-graph decode step, checked on the CPU without graphs: the device-side counter RNG gives the
// host's uniforms bit for bit, and a decode step on a StaticKvCache (device-side position, mask over the whole
// capacity, rows replicated from a prefill) gives the eager decode's logits on the tiny fixtures (fp32, 1e-4: the same
// maths over a longer, masked key axis, so summation order may differ).
using LmmR1.Generation;
using LmmR1.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Generation;

public class StaticDecodeTests(GenerationFixtures fx) : IClassFixture<GenerationFixtures>
{
    const double LogitTolerance = 1e-4;

    [Fact]
    public void DeviceUniformsEqualTheHostCounterRng()
    {
        using var scope = torch.NewDisposeScope();
        var rng = new Random(7);
        var rows = Enumerable.Range(0, 64).Select(i => (Seed: (ulong)rng.NextInt64() * 3UL, Key: rng.NextInt64(-1L << 40, 1L << 40), Sample: (long)rng.Next(16))).ToArray();
        var prefix = torch.tensor(rows.Select(r => CounterRng.RowPrefix(r.Seed, r.Key, r.Sample)).ToArray());
        foreach (long step in new long[] { 0, 1, 17, 511, 1L << 33 })
        {
            var u = CounterRng.UniformTensor(prefix, torch.tensor(new[] { step })).data<float>().ToArray();
            for (int i = 0; i < rows.Length; i++)
                Assert.Equal(CounterRng.Uniform(rows[i].Seed, rows[i].Key, rows[i].Sample, step), u[i]);
        }
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void StaticCacheDecodeEqualsEagerDecode(string name)
    {
        var (_, m, prompts) = fx.Get(name);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        int p = prompts.Count, maxLen = prompts.Max(x => x.TokenIds.Count), steps = 6;
        var (ids, mask) = LeftPad(prompts, maxLen);
        var pix = torch.cat(prompts.Where(x => x.PixelValues is not null).Select(x => x.PixelValues!).ToList(), 0);
        var grid = torch.cat(prompts.Where(x => x.ImageGridThw is not null).Select(x => x.ImageGridThw!).ToList(), 0);
        // Two samples per prompt, in the engine's order (prompt-major), and one padding row beyond them.
        long[] rep = Enumerable.Range(0, p).SelectMany(i => new long[] { i, i }).ToArray();
        var repT = torch.tensor(rep);

        using var eager = m.CreateCache(p, maxLen + steps);
        var first = m.Forward(ids, mask, pix, grid, cache: eager, logitsForLast: 1).Logits!.squeeze(1);
        eager.SelectRows(repT);
        var tok = first.index_select(0, repT).argmax(-1);                                   // [2P]

        using var prefilled = m.CreateCache(p, maxLen + steps);
        m.Forward(ids, mask, pix, grid, cache: prefilled, logitsForLast: 1);
        using var stat = new StaticKvCache(m.Config.Text, rep.Length + 1, maxLen + steps + 9, m.DType, m.Device);
        stat.Load(prefilled, repT);
        stat.InputTokens.narrow(0, 0, rep.Length).copy_(tok.unsqueeze(1));

        for (int s = 0; s < steps; s++)
        {
            var le = m.Forward(tok.unsqueeze(1), cache: eager, logitsForLast: 1).Logits!.squeeze(1);   // [2P, V]
            var ls = m.DecodeStatic(stat).narrow(0, 0, rep.Length);
            double diff = (le - ls).abs().max().item<float>();
            Assert.True(diff <= LogitTolerance, $"{name} step {s}: max |logit difference| {diff:g3}");
            tok = le.argmax(-1);
            stat.InputTokens.narrow(0, 0, rep.Length).copy_(tok.unsqueeze(1));
            stat.Position.add_(1);
        }
    }

    [Theory]
    [InlineData("qwen2vl-tiny", 0.0)]
    [InlineData("qwen25vl-tiny", 0.0)]
    [InlineData("qwen2vl-tiny", 1.0)]
    [InlineData("qwen25vl-tiny", 0.7)]
    public void EngineOnTheStaticStepEqualsTheEagerLoop(string name, double temperature)
    {
        // The graph path's loop (padded rows, compaction off: GraphCompactionTests covers it; device RNG, sampler on the
        // static step) without capturing: same tokens as the eager loop; log-probs within 2e-4 (the logits differ by
        // ≤ 1e-4, see above, and log_softmax moves by at most twice the largest logit change).
        var (_, m, prompts) = fx.Get(name);
        var sp = new SamplingParams { N = 3, Temperature = temperature, TopP = temperature == 0.7 ? 0.9 : 1.0, TopK = temperature == 0.7 ? 20 : -1,
                                      MaxNewTokens = 10, MinNewTokens = 3, StopTokenIds = [5, 9, 300], Seed = 11 };
        var eager = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = 3 }).Generate(prompts, sp);
        using var engine = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = 3, CompactFraction = 2, StaticStepWithoutGraph = true });
        var stat = engine.Generate(prompts, sp);
        Assert.Equal(1, engine.LastStats.GraphCaptures);
        Assert.Equal(eager.Count, stat.Count);
        for (int i = 0; i < eager.Count; i++)
        {
            Assert.Equal(eager[i].TokenIds, stat[i].TokenIds);
            Assert.Equal(eager[i].Finish, stat[i].Finish);
            for (int j = 0; j < eager[i].LogProbs.Length; j++)
                Assert.True(Math.Abs(eager[i].LogProbs[j] - stat[i].LogProbs[j]) <= LogitTolerance * 2,
                            $"{name} output {i} token {j}: log-prob {eager[i].LogProbs[j]} vs {stat[i].LogProbs[j]}");
        }
        // A second call reuses the step (same buckets and sampler).
        engine.Generate(prompts, sp);
        Assert.Equal(0, engine.LastStats.GraphCaptures);
    }

    static (Tensor Ids, Tensor Mask) LeftPad(List<GenerationPrompt> prompts, int maxLen)
    {
        var ids = new long[prompts.Count * maxLen];
        var mask = new long[prompts.Count * maxLen];
        for (int i = 0; i < prompts.Count; i++)
        {
            int off = maxLen - prompts[i].TokenIds.Count;
            for (int j = 0; j < prompts[i].TokenIds.Count; j++) { ids[i * maxLen + off + j] = prompts[i].TokenIds[j]; mask[i * maxLen + off + j] = 1; }
        }
        return (torch.tensor(ids, [prompts.Count, maxLen]), torch.tensor(mask, [prompts.Count, maxLen]));
    }
}
