// The Qwen2 / Qwen2.5 text decoder shared by all three families (spec §3): pre-norm layers of GQA self-attention
// (q/k/v with bias, o_proj without, M-RoPE on q and k, the cache holding rotated k) and a SwiGLU MLP, then a final
// RMSNorm. Module and field names give the classic checkpoint keys: model.embed_tokens / model.layers.{i} / model.norm.
using LmmR1.Infrastructure;
using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

internal sealed class QwenAttention : nn.Module
{
    [ComponentName(Name = "q_proj")] readonly Dense qProj;
    [ComponentName(Name = "k_proj")] readonly Dense kProj;
    [ComponentName(Name = "v_proj")] readonly Dense vProj;
    [ComponentName(Name = "o_proj")] readonly Dense oProj;
    readonly int heads, kvHeads, headDim;

    public QwenAttention(QwenTextConfig c, ScalarType dtype, Device device) : base(nameof(QwenAttention))
    {
        heads = c.NumHeads; kvHeads = c.NumKvHeads; headDim = c.HeadDim;
        qProj = new Dense(c.HiddenSize, heads * headDim, true, dtype, device);
        kProj = new Dense(c.HiddenSize, kvHeads * headDim, true, dtype, device);
        vProj = new Dense(c.HiddenSize, kvHeads * headDim, true, dtype, device);
        oProj = new Dense(heads * headDim, c.HiddenSize, false, dtype, device);
        RegisterComponents();
    }

    /// <param name="x">[B, T, H]</param>
    /// <param name="cos">[B, 1, T, D] (sin likewise)</param>
    /// <param name="mask">[B, 1, T, S] additive, or null for causal attention without padding or cache.</param>
    /// <param name="packed">Rows packed into one sequence (x [1, ΣL, H]): attention within each row, no mask or cache.</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer, AttentionImpl impl, PackedSequences? packed = null)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var q = qProj.forward(x).view(b, t, heads, headDim).transpose(1, 2);   // [B, H, T, D]
        var k = kProj.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2); // [B, kvH, T, D]
        var v = vProj.forward(x).view(b, t, kvHeads, headDim).transpose(1, 2);
        q = AttentionMath.ApplyRope(q, cos, sin);
        k = AttentionMath.ApplyRope(k, cos, sin);
        if (cache is not null) (k, v) = cache.Write(layer, k, v);            // [B, kvH, past+T, D]
        var o = packed is not null ? packed.Attend(q, k, v, impl)             // [B, H, T, D]
              : AttentionMath.TextAttention(q, k, v, mask, impl);
        o = o.transpose(1, 2).reshape(b, t, heads * headDim);
        return oProj.forward(o).MoveToOuterDisposeScope();
    }

    /// <summary>One decode token per row against a <see cref="StaticKvCache"/>: k/v written at the device-side index
    /// pos, attention over the cache's Window positions with <paramref name="mask"/> [B, 1, 1, Window] (no host values, so it can be
    /// captured in a CUDA graph). x [B, 1, H].</summary>
    public Tensor ForwardStatic(Tensor x, Tensor cos, Tensor sin, Tensor mask, StaticKvCache cache, int layer, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0];
        var q = qProj.forward(x).view(b, 1, heads, headDim).transpose(1, 2);   // [B, H, 1, D]
        var k = kProj.forward(x).view(b, 1, kvHeads, headDim).transpose(1, 2); // [B, kvH, 1, D]
        var v = vProj.forward(x).view(b, 1, kvHeads, headDim).transpose(1, 2);
        q = AttentionMath.ApplyRope(q, cos, sin);
        k = AttentionMath.ApplyRope(k, cos, sin);
        var (keys, values) = cache.Write(layer, k, v);                         // [B, kvH, Window, D]
        var o = AttentionMath.TextAttention(q, keys, values, mask, impl);      // [B, H, 1, D]
        o = o.transpose(1, 2).reshape(b, 1, heads * headDim);
        return oProj.forward(o).MoveToOuterDisposeScope();
    }

    /// <summary>ForwardStatic with RoPE and the cache write as one fused kernel (FusedDecodeOps; cos/sin contiguous), and
    /// attention too where <paramref name="mask"/> is null (QwenVLModel.UsesFusedAttention).</summary>
    public Tensor ForwardStaticFused(Tensor x, Tensor cos, Tensor sin, Tensor? mask, StaticKvCache cache, int layer, AttentionImpl impl, FusedDecodeOps fused)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0];
        var q = fused.RopeDecode(qProj.forward(x), kProj.forward(x), vProj.forward(x), cos, sin, cache, layer, heads);   // [B, H, 1, D]
        Tensor o;
        if (mask is null) o = fused.Attention(q, cache, layer);               // [B, H, 1, D]
        else
        {
            var (keys, values) = cache.Attended(layer);                        // [B, kvH, Window, D]
            o = AttentionMath.TextAttention(q, keys, values, mask, impl);
        }
        o = o.transpose(1, 2).reshape(b, 1, heads * headDim);
        return oProj.forward(o).MoveToOuterDisposeScope();
    }
}

internal sealed class QwenMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")] readonly Dense gate;
    [ComponentName(Name = "up_proj")] readonly Dense up;
    [ComponentName(Name = "down_proj")] readonly Dense down;

    public QwenMlp(long hidden, long intermediate, bool bias, ScalarType dtype, Device device) : base(nameof(QwenMlp))
    {
        gate = new Dense(hidden, intermediate, bias, dtype, device);
        up = new Dense(hidden, intermediate, bias, dtype, device);
        down = new Dense(intermediate, hidden, bias, dtype, device);
        RegisterComponents();
    }

    /// <summary>down(silu(gate(x)) · up(x)).</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return down.forward(nn.functional.silu(gate.forward(x)) * up.forward(x)).MoveToOuterDisposeScope();
    }

    /// <summary>forward with silu(gate) · up as one fused kernel.</summary>
    public Tensor ForwardFused(Tensor x, FusedDecodeOps fused)
    {
        using var scope = torch.NewDisposeScope();
        return down.forward(fused.SiluMul(gate.forward(x), up.forward(x))).MoveToOuterDisposeScope();
    }
}

internal sealed class DecoderLayer : nn.Module
{
    [ComponentName(Name = "self_attn")] readonly QwenAttention attn;
    [ComponentName(Name = "mlp")] readonly QwenMlp mlp;
    [ComponentName(Name = "input_layernorm")] readonly RmsNorm inputNorm;
    [ComponentName(Name = "post_attention_layernorm")] readonly RmsNorm postNorm;

    public DecoderLayer(QwenTextConfig c, ScalarType dtype, Device device) : base(nameof(DecoderLayer))
    {
        attn = new QwenAttention(c, dtype, device);
        mlp = new QwenMlp(c.HiddenSize, c.IntermediateSize, false, dtype, device);
        inputNorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        postNorm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer, AttentionImpl impl, PackedSequences? packed = null)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.Plus(attn.Forward(inputNorm.forward(x), cos, sin, mask, cache, layer, impl, packed));
        h = h.Plus(mlp.forward(postNorm.forward(h)));
        return h.MoveToOuterDisposeScope();
    }

    public Tensor ForwardStatic(Tensor x, Tensor cos, Tensor sin, Tensor mask, StaticKvCache cache, int layer, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.Plus(attn.ForwardStatic(inputNorm.forward(x), cos, sin, mask, cache, layer, impl));
        h = h.Plus(mlp.forward(postNorm.forward(h)));
        return h.MoveToOuterDisposeScope();
    }

    /// <summary>ForwardStatic with the fused kernels. The layer's input is x + pending (the previous layer's last residual
    /// add, fused into this layer's first RMSNorm; pending null for the first layer); returns (h, m) with the output
    /// h + m left to the next layer or the final norm (FusedDecodeOps.AddRmsNorm).</summary>
    public (Tensor H, Tensor Pending) ForwardStaticFused(Tensor x, Tensor? pending, Tensor cos, Tensor sin, Tensor? mask, StaticKvCache cache, int layer,
                                                         AttentionImpl impl, FusedDecodeOps fused)
    {
        using var scope = torch.NewDisposeScope();
        var (input, normed) = pending is null ? (x, fused.RmsNorm(x, inputNorm)) : fused.AddRmsNorm(x, pending, inputNorm);
        var a = attn.ForwardStaticFused(normed, cos, sin, mask, cache, layer, impl, fused);
        var (h, n2) = fused.AddRmsNorm(input, a, postNorm);
        var m = mlp.ForwardFused(n2, fused);
        return (h.MoveToOuterDisposeScope(), m.MoveToOuterDisposeScope());
    }
}

/// <summary>model.* : embed_tokens, layers, norm.</summary>
internal sealed class QwenTextModel : nn.Module
{
    [ComponentName(Name = "embed_tokens")] readonly TokenEmbedding embed;
    [ComponentName(Name = "layers")] readonly ModuleList<DecoderLayer> layers;
    [ComponentName(Name = "norm")] readonly RmsNorm norm;

    public QwenTextModel(QwenTextConfig c, ScalarType dtype, Device device) : base(nameof(QwenTextModel))
    {
        embed = new TokenEmbedding(c.VocabSize, c.HiddenSize, dtype, device);
        layers = new ModuleList<DecoderLayer>(Enumerable.Range(0, c.NumLayers).Select(_ => new DecoderLayer(c, dtype, device)).ToArray());
        norm = new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    public TokenEmbedding Embed => embed;
    public IList<DecoderLayer> Layers => layers;
    public RmsNorm Norm => norm;
}
