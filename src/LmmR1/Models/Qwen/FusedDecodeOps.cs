// The decode step's fused elementwise kernels (native/lmmr1_kernels.cu through NativeExtension), used by
// QwenVLModel.DecodeStatic — the step the CUDA graphs capture — on CUDA in float32/bf16 without grad. They replace,
// per decoder layer, ~23 of the ~40 kernels the TorchSharp ops launch, with the same arithmetic:
//   RMSNorm      x.to(f32), pow(2)                  → add_square (with the residual add x + r before it, when given)
//                mean(-1, keepdim)                  → unchanged (torch's own reduction, so the same sum order)
//                add(eps), rsqrt, mul, to(dtype), · w → rms_apply
//   RoPE + cache q·cos, rotate_half (neg, cat), ·sin, + for q and k, then index_copy_ of k and v → rope_decode
//   SwiGLU       silu(gate), · up                  → silu_mul
// Every rounding happens where ATen's separate kernels round, so the results are meant to be bit-identical to the
// unfused path; bench/generation/graph_check.sh checks that on the GPU (fused step vs the eager loop, which stays
// unfused), and LMMR1_FUSED_DECODE=0 switches the fusion off (QwenVLModel.FusedDecode) for A/B timing.
// Attention is the exception: decode_attention replaces SDPA over the attention window under an additive mask with
// its own split-key kernel that reads only the keys up to the cache's Position and skips invalid ones (GQA without
// expanding K/V, fp32 softmax and P·V). It is a different computation, equal up to rounding, so it has its own switch
// (QwenVLModel.FusedAttention, off unless LMMR1_FUSED_ATTENTION=1: it is correct but slower than cuDNN's kernel, see
// bench/README.md) and graph-check reports it apart from the bit-identical kernels.
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

internal sealed class FusedDecodeOps
{
    readonly NativeExtension native;

    FusedDecodeOps(NativeExtension native) => this.native = native;

    /// <summary>Whether decode_attention takes this model's attention: at most 16 query heads per kv head, a head
    /// dimension that is a multiple of 8 up to 256.</summary>
    public static bool TakesAttention(QwenTextConfig c) => c.NumHeads % c.NumKvHeads == 0 && c.KvGroups <= 16 && c.HeadDim % 8 == 0 && c.HeadDim <= 256;

    /// <summary>softmax(q·kᵀ/√D)·v of one decode token per row (q [B, H, 1, D]) over the layer's valid cached keys up to
    /// cache.Position → [B, H, 1, D] (call only where <see cref="TakesAttention"/>).</summary>
    public Tensor Attention(Tensor q, StaticKvCache cache, int layer)
    {
        var (keys, values) = cache.LayerTensors(layer);
        return native.DecodeAttention(q, keys, values, cache.KeyValid, cache.Position);
    }

    /// <summary>The fused ops for a model on <paramref name="device"/> in <paramref name="dtype"/>, or null where they
    /// cannot run (not CUDA, another dtype, no extension or one built without nvcc, LMMR1_FUSED_DECODE=0).</summary>
    public static FusedDecodeOps? For(Device device, ScalarType dtype)
    {
        if (device.type != DeviceType.CUDA || dtype is not (ScalarType.Float32 or ScalarType.BFloat16)) return null;
        if (Environment.GetEnvironmentVariable("LMMR1_FUSED_DECODE") == "0") return null;
        return NativeExtension.TryGet() is { HasFusedKernels: true } n ? new FusedDecodeOps(n) : null;
    }

    /// <summary>RmsNorm.forward(x).</summary>
    public Tensor RmsNorm(Tensor x, RmsNorm norm)
    {
        using var scope = torch.NewDisposeScope();
        var (_, sq) = native.AddSquare(x, null);
        return Normalize(x, sq, norm).MoveToOuterDisposeScope();
    }

    /// <summary>(h = x.Plus(r), RmsNorm.forward(h)).</summary>
    public (Tensor Sum, Tensor Normed) AddRmsNorm(Tensor x, Tensor r, RmsNorm norm)
    {
        using var scope = torch.NewDisposeScope();
        var (h, sq) = native.AddSquare(x, r);
        var o = Normalize(h!, sq, norm);
        return (h!.MoveToOuterDisposeScope(), o.MoveToOuterDisposeScope());
    }

    /// <summary>h normalised given sq = fp32(h)²: torch's own mean for the variance (RmsNorm's sum order), then rms_apply.</summary>
    Tensor Normalize(Tensor h, Tensor sq, RmsNorm norm)
    {
        using var variance = sq.mean([-1], keepdim: true);
        return native.RmsApply(h, variance, norm.Weight, norm.Eps);
    }

    /// <summary>silu(g) * u; g and u contiguous, or the row-strided views of one fused gate/up GEMM's output.</summary>
    public Tensor SiluMul(Tensor g, Tensor u) => native.SiluMul(g, u);

    /// <summary>ApplyRope on q [B, 1, H·D] and k [B, 1, kvH·D] with cos/sin [B, 1, 1, D] (contiguous), then k and v written
    /// into the layer's cache at cache.Position (StaticKvCache.Write); returns q rotated, [B, H, 1, D].</summary>
    public Tensor RopeDecode(Tensor q, Tensor k, Tensor v, Tensor cos, Tensor sin, StaticKvCache cache, int layer, int heads)
    {
        var (keys, values) = cache.LayerTensors(layer);
        return native.RopeDecode(q, k, v, cos, sin, keys, values, cache.Position, heads);
    }
}
