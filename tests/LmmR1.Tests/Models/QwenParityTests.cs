// Parity of the Qwen2-VL / Qwen2.5-VL models with transformers on the tiny fixtures (CPU fp32): logits, M-RoPE
// positions and deltas, greedy tokens with the KV cache, and cache vs no-cache logits.
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;
using Xunit.Abstractions;

namespace LmmR1.Tests.Models;

public class QwenParityTests(QwenFixtures fx, ITestOutputHelper log) : IClassFixture<QwenFixtures>
{
    public const double LogitTolerance = Numerics.Fp32;

    [Theory]
    [InlineData("qwen2vl-tiny", AttentionImpl.Eager)]
    [InlineData("qwen2vl-tiny", AttentionImpl.Sdpa)]
    [InlineData("qwen25vl-tiny", AttentionImpl.Eager)]
    [InlineData("qwen25vl-tiny", AttentionImpl.Sdpa)]
    public void LogitsPositionsAndDeltasMatchTransformers(string name, AttentionImpl impl)
    {
        var (r, model) = fx.Get(name);
        model.Attention = impl;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var o = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw);
        TensorAssert.Equal(r.PositionIds, o.PositionIds, "position_ids");
        TensorAssert.Equal(r.RopeDeltas, o.RopeDeltas!, "rope_deltas");
        double d = TensorAssert.Close(r.RealTokens(r.Logits), r.RealTokens(o.Logits!), LogitTolerance, "logits at real tokens");
        Assert.True(o.Logits!.isfinite().all().item<bool>(), "logits at padding must be finite");
        log.WriteLine($"{name} {impl}: max |Δlogits| = {d:G3}");
    }

    [Theory]
    [InlineData("qwen2vl-tiny", AttentionImpl.Eager)]
    [InlineData("qwen2vl-tiny", AttentionImpl.Sdpa)]
    [InlineData("qwen25vl-tiny", AttentionImpl.Eager)]
    [InlineData("qwen25vl-tiny", AttentionImpl.Sdpa)]
    public void GreedyDecodingWithCacheMatchesTransformers(string name, AttentionImpl impl)
    {
        var (r, model) = fx.Get(name);
        model.Attention = impl;
        using var scope = torch.NewDisposeScope();
        int n = (int)r.Generated.shape[1];
        using var g = GreedyDecoder.Generate(model, r.InputIds, r.AttentionMask, n, r.PixelValues, r.ImageGridThw, collectStepLogits: true);
        var agree = TokenAssert.GreedyEqualExceptNearTies(TokenAssert.Rows(r.Generated), TokenAssert.Rows(g.Tokens),
            TransformersMargins(r), $"{name} {impl} generated", log.WriteLine);
        Assert.True(agree.NearTies <= 1, $"{agree.NearTies} near-tie divergences from transformers");
        // Decode step k sees token k at position L+k: its logits are those of the one-pass run at that position (while
        // the row's tokens still agree with transformers').
        double d = 0;
        for (int row = 0; row < agree.Agreed.Length; row++)
            if (agree.Agreed[row] > 0)
                d = Math.Max(d, TensorAssert.Close(r.FullLogits[row].narrow(0, 0, agree.Agreed[row]), g.StepLogits![row].narrow(0, 0, agree.Agreed[row]),
                    LogitTolerance, $"row {row}: cached decode logits vs full_logits"));
        log.WriteLine($"{name} {impl}: max |Δ cached step logits| = {d:G3}");
    }

    /// <summary>The top-2 margin of the transformers logits that chose generated token <c>step</c> of <c>row</c>:
    /// the prompt's last position for step 0, else full_logits at the previous generated token.</summary>
    public static Func<int, int, double> TransformersMargins(QwenReference r)
    {
        long l = r.InputIds.shape[1];
        var first = Numerics.Top2Margins(r.Logits.select(1, l - 1));              // [B]
        var rest = Numerics.Top2Margins(r.FullLogits);                            // [B·n]
        int n = (int)r.FullLogits.shape[1];
        return (row, step) => step == 0 ? first[row] : rest[row * n + step - 1];
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void NoCachePassOverPromptAndGeneratedMatchesFullLogits(string name)
    {
        var (r, model) = fx.Get(name);
        model.Attention = AttentionImpl.Sdpa;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (ids, mask) = r.Extended();
        int n = (int)r.Generated.shape[1];
        using var o = model.Forward(ids, mask, r.PixelValues, r.ImageGridThw, logitsForLast: n);
        double d = TensorAssert.Close(r.FullLogits, o.Logits!, LogitTolerance, "full_logits");
        log.WriteLine($"{name}: max |Δ full_logits| = {d:G3}");
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void SdpaEqualsEager(string name)
    {
        var (r, model) = fx.Get(name);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var (ids, mask) = r.Extended();
        model.Attention = AttentionImpl.Eager;
        using var eager = model.Forward(ids, mask, r.PixelValues, r.ImageGridThw);
        using var eagerVision = model.EncodeVision(r.PixelValues, r.ImageGridThw);
        model.Attention = AttentionImpl.Sdpa;
        using var sdpa = model.Forward(ids, mask, r.PixelValues, r.ImageGridThw);
        using var sdpaVision = model.EncodeVision(r.PixelValues, r.ImageGridThw);
        TensorAssert.Close(eagerVision, sdpaVision, 1e-5, "vision features");
        TensorAssert.Close(eager.Hidden, sdpa.Hidden, 1e-5, "hidden");
        TensorAssert.Close(eager.Logits!, sdpa.Logits!, 1e-5, "logits");
    }
}
