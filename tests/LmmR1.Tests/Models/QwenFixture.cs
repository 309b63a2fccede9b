// Access to the tiny Qwen2-VL / Qwen2.5-VL fixtures made by transformers (../shared/fixtures, see its README):
// the model folder, the reference tensors, and models loaded once per test class.
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public sealed class QwenReference : IDisposable
{
    public string Dir { get; }
    public Tensor InputIds { get; }
    public Tensor AttentionMask { get; }
    public Tensor PixelValues { get; }
    public Tensor ImageGridThw { get; }
    public Tensor PositionIds { get; }
    public Tensor RopeDeltas { get; }
    public Tensor Logits { get; }
    public Tensor Generated { get; }
    public Tensor FullLogits { get; }

    public QwenReference(string name)
    {
        Dir = TestPaths.Fixture(name);
        using var f = SafetensorsFile.Open(Path.Combine(Dir, "reference.safetensors"));
        InputIds = f.Load("input_ids").DetachFromDisposeScope();
        AttentionMask = f.Load("attention_mask").DetachFromDisposeScope();
        PixelValues = f.Load("pixel_values").DetachFromDisposeScope();
        ImageGridThw = f.Load("image_grid_thw").DetachFromDisposeScope();
        PositionIds = f.Load("position_ids").DetachFromDisposeScope();
        RopeDeltas = f.Load("rope_deltas").DetachFromDisposeScope();
        Logits = f.Load("logits").DetachFromDisposeScope();
        Generated = f.Load("generated").DetachFromDisposeScope();
        FullLogits = f.Load("full_logits").DetachFromDisposeScope();
    }

    public QwenVLModel Load(ScalarType dtype = ScalarType.Float32) => QwenVLModel.Load(Dir, dtype, torch.CPU);

    /// <summary>[B, L, V] logits with the left-padding rows zeroed. Outputs at padding queries are not defined the same
    /// way anywhere (HF eager averages all keys there, fused kernels differ, we let a pad query see itself), so parity
    /// is checked at real tokens.</summary>
    public Tensor RealTokens(Tensor logits) => logits.masked_fill(AttentionMask.eq(0).unsqueeze(-1), 0);

    /// <summary>prompt + generated ids and the mask extended with ones: the input of the full_logits pass.</summary>
    public (Tensor Ids, Tensor Mask) Extended() =>
        (torch.cat([InputIds, Generated], 1), torch.cat([AttentionMask, torch.ones_like(Generated)], 1));

    public void Dispose()
    {
        foreach (var t in new[] { InputIds, AttentionMask, PixelValues, ImageGridThw, PositionIds, RopeDeltas, Logits, Generated, FullLogits })
            t.Dispose();
    }
}

/// <summary>Shared per test class: both references and their fp32 models.</summary>
public sealed class QwenFixtures : IDisposable
{
    public QwenReference Qwen2VL { get; } = new("qwen2vl-tiny");
    public QwenReference Qwen25VL { get; } = new("qwen25vl-tiny");
    public QwenVLModel Qwen2VLModel { get; }
    public QwenVLModel Qwen25VLModel { get; }

    public QwenFixtures()
    {
        Qwen2VLModel = Qwen2VL.Load();
        Qwen25VLModel = Qwen25VL.Load();
    }

    public (QwenReference Ref, QwenVLModel Model) Get(string name) =>
        name == "qwen2vl-tiny" ? (Qwen2VL, Qwen2VLModel) : (Qwen25VL, Qwen25VLModel);

    public void Dispose()
    {
        Qwen2VL.Dispose(); Qwen25VL.Dispose(); Qwen2VLModel.Dispose(); Qwen25VLModel.Dispose();
    }
}
