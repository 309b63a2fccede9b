// Attention maths shared by the text decoder and the vision tower: rotary application, the eager reference
// (softmax in fp32, cast back to the query dtype, as HF's eager_attention_forward) and the SDPA path. Masks are
// additive (0 / finfo(dtype).min) like HF's. Departs from HF: a left-pad query may always see its own key, so no row
// is fully masked (HF eager then averages every key, fused SDPA kernels do something else or NaN); real tokens are
// unaffected. GQA: SDPA in TorchSharp has no enable_gqa, so K/V are expanded (repeat_kv) except for single-token
// decode, where the g query heads of a group are folded into the query-length axis instead.
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public enum AttentionImpl
{
    /// <summary>Explicit matmul + fp32 softmax, the Hugging Face eager reference.</summary>
    Eager,
    /// <summary>torch scaled_dot_product_attention (fused kernels on CUDA).</summary>
    Sdpa,
}

internal static class AttentionMath
{
    /// <summary>cat(−x[D/2:], x[:D/2]) over the last dim (NeoX half split).</summary>
    public static Tensor RotateHalf(Tensor x)
    {
        long half = x.shape[^1] / 2;
        using var x1 = x.narrow(-1, 0, half);
        using var x2 = x.narrow(-1, half, half);
        using var neg = x2.neg();
        return torch.cat([neg, x1], -1);
    }

    /// <summary>x·cos + rotate_half(x)·sin in x's dtype (cos/sin already cast and broadcastable).</summary>
    public static Tensor ApplyRope(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = torch.NewDisposeScope();
        return (x * cos).Plus(RotateHalf(x) * sin).MoveToOuterDisposeScope();
    }

    /// <summary>[B, kvH, S, D] → [B, kvH·g, S, D], each kv head repeated g times consecutively (HF repeat_kv).</summary>
    public static Tensor RepeatKv(Tensor x, long groups)
    {
        if (groups == 1) return x.alias();
        long b = x.shape[0], h = x.shape[1], s = x.shape[2], d = x.shape[3];
        using var u = x.unsqueeze(2);
        using var e = u.expand(b, h, groups, s, d);
        return e.reshape(b, h * groups, s, d);
    }

    /// <summary>softmax(q kᵀ/√D + mask) v with the softmax in fp32; q, k, v [.., H, T|S, D] with equal head counts.</summary>
    public static Tensor Eager(Tensor q, Tensor k, Tensor v, Tensor? mask)
    {
        using var scope = torch.NewDisposeScope();
        double scale = 1.0 / Math.Sqrt(q.shape[^1]);
        var scores = torch.matmul(q, k.transpose(-2, -1)).MulS(scale);
        if (mask is not null) scores = scores.Plus(mask);
        var probs = torch.softmax(scores, -1, ScalarType.Float32).to(q.dtype);
        return torch.matmul(probs, v).MoveToOuterDisposeScope();
    }

    /// <summary>Causal additive mask for queries at positions past..past+T−1 over keys 0..S−1 that are valid; each query
    /// also sees its own key, so padding queries are never fully masked.</summary>
    /// <param name="keyValid">[B, S] bool; true where the key is a real token.</param>
    /// <returns>[B, 1, T, S] in <paramref name="dtype"/>: 0 where attending is allowed, finfo(dtype).min elsewhere.</returns>
    public static Tensor CausalMask(Tensor keyValid, long queryLength, long past, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        long s = keyValid.shape[1];
        var dev = keyValid.device;
        var qi = TorchScalars.Arange(queryLength, ScalarType.Int64, dev).AddS(past).unsqueeze(1); // [T, 1]
        var kj = TorchScalars.Arange(s, ScalarType.Int64, dev).unsqueeze(0);                      // [1, S]
        var allowed = kj.le(qi).unsqueeze(0).unsqueeze(0)                                 // [1, 1, T, S]
                      .logical_and(keyValid.unsqueeze(1).unsqueeze(1))                    // [B, 1, T, S]
                      .logical_or(kj.eq(qi).unsqueeze(0).unsqueeze(0));                   // the diagonal
        var mask = torch.zeros(allowed.shape, dtype, dev).FillS(allowed.logical_not(), torch.finfo(dtype).min);
        return mask.MoveToOuterDisposeScope();
    }

    /// <summary>Decoder self-attention. q [B, H, T, D]; k, v [B, kvH, S, D] (cache included); mask [B, 1, T, S] additive,
    /// or null for plain causal attention with S == T (no padding, no cache).</summary>
    public static Tensor TextAttention(Tensor q, Tensor k, Tensor v, Tensor? mask, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        long b = q.shape[0], h = q.shape[1], t = q.shape[2], d = q.shape[3];
        long kvh = k.shape[1], s = k.shape[2], g = h / kvh;
        if (mask is null)
            mask = impl == AttentionImpl.Eager
                ? CausalMask(torch.ones(b, s, ScalarType.Bool, q.device), t, s - t, q.dtype)
                : null;
        Tensor o;
        if (impl == AttentionImpl.Eager)
            o = Eager(q, RepeatKv(k, g), RepeatKv(v, g), mask);
        else if (mask is null)
            o = nn.functional.scaled_dot_product_attention(q, RepeatKv(k, g), RepeatKv(v, g), null, 0.0, is_casual: true);
        else if (t == 1 && g > 1)
        {
            // Decode: the g query heads sharing a kv head become g "query positions" of that kv head, so the cache
            // is read once instead of being copied g times. mask [B,1,1,S] broadcasts over them.
            var qf = q.reshape(b, kvh, g, d);
            o = nn.functional.scaled_dot_product_attention(qf, k, v, mask, 0.0, false).reshape(b, h, 1, d);
        }
        else
            o = nn.functional.scaled_dot_product_attention(q, RepeatKv(k, g), RepeatKv(v, g), mask, 0.0, false);
        return o.MoveToOuterDisposeScope();
    }
}
