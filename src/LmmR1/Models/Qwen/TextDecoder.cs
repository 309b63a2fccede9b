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
    // q_proj, k_proj and v_proj are views of one [q; k; v] weight and bias (rows 0…qd−1, qd…qd+kd−1, qd+kd…), so that
    // inference on CUDA runs one GEMM for the three (Project) while the parameters, their names and the checkpoint
    // layout stay Hugging Face's. Held in a plain object so that RegisterComponents does not make them buffers: state
    // dicts, optimizers and checkpoints see only the three views.
    sealed class Fused(Tensor weight, Tensor bias)
    {
        public Tensor Weight { get; } = weight;
        public Tensor Bias { get; } = bias;
    }
    readonly Fused qkv;
    readonly long qd, kd;

    public QwenAttention(QwenTextConfig c, ScalarType dtype, Device device) : base(nameof(QwenAttention))
    {
        heads = c.NumHeads; kvHeads = c.NumKvHeads; headDim = c.HeadDim;
        qd = (long)heads * headDim; kd = (long)kvHeads * headDim;
        qkv = new Fused(torch.empty([qd + 2 * kd, c.HiddenSize], dtype, device).DetachFromDisposeScope(),
                        torch.empty([qd + 2 * kd], dtype, device).DetachFromDisposeScope());
        Tensor qkvWeight = qkv.Weight, qkvBias = qkv.Bias;
        using (var w = qkvWeight.narrow(0, 0, qd)) using (var b = qkvBias.narrow(0, 0, qd)) qProj = new Dense(w, b);
        using (var w = qkvWeight.narrow(0, qd, kd)) using (var b = qkvBias.narrow(0, qd, kd)) kProj = new Dense(w, b);
        using (var w = qkvWeight.narrow(0, qd + kd, kd)) using (var b = qkvBias.narrow(0, qd + kd, kd)) vProj = new Dense(w, b);
        oProj = new Dense(heads * headDim, c.HiddenSize, false, dtype, device);
        RegisterComponents();
    }

    /// <summary>The fused [q; k; v] weight and bias whose views q_proj, k_proj and v_proj were made, or null once an
    /// adapter is attached to one of them (the fused GEMM would leave it out).</summary>
    internal (Tensor Weight, Tensor Bias)? FusedQkv() =>
        qProj.LoraA is null && kProj.LoraA is null && vProj.LoraA is null ? (qkv.Weight, qkv.Bias) : null;

    /// <summary>Whether q_proj, k_proj and v_proj (weights and biases) still start where their rows of the fused tensors
    /// do, i.e. nothing replaced a parameter since construction (every load, optimizer step and merge is in place).</summary>
    internal bool StillViews(NativeExtension native)
    {
        long w0 = native.DataPtr(qkv.Weight), b0 = native.DataPtr(qkv.Bias), es = qkv.Weight.ElementSize, row = qkv.Weight.shape[1] * es;
        return native.DataPtr(qProj.Weight) == w0 && native.DataPtr(kProj.Weight) == w0 + qd * row && native.DataPtr(vProj.Weight) == w0 + (qd + kd) * row
               && qProj.Bias is { } qb && native.DataPtr(qb) == b0 && kProj.Bias is { } kb && native.DataPtr(kb) == b0 + qd * es
               && vProj.Bias is { } vb && native.DataPtr(vb) == b0 + (qd + kd) * es;
    }

    /// <summary>LMMR1_FUSED_QKV=0 keeps the three GEMMs in generation too (A/B timing).</summary>
    static readonly bool FusedQkvOn = Environment.GetEnvironmentVariable("LMMR1_FUSED_QKV") != "0";

    /// <summary>Whether the projections of a generation pass (<paramref name="generating"/>: a forward that fills a KV
    /// cache, or a static decode step) run as one GEMM: on CUDA without grad, with the native extension loaded, while
    /// <see cref="FusedQkv"/> and <see cref="StillViews"/> hold. All generation paths alike, so the eager engine, the
    /// static step and the graphs still agree bit for bit; the log-prob, reference and training forwards keep the three
    /// GEMMs, so their log-probs stay those of the update's own forward (a KL of exactly 0 at the first step).</summary>
    internal bool ProjectsFused(Tensor x, bool generating) =>
        generating && x.device.type == DeviceType.CUDA && !torch.is_grad_enabled() && FusedQkvOn && FusedQkv() is not null
        && NativeExtension.TryGet() is { } native && StillViews(native);

    /// <summary>x [B, T, H] → q [B, T, qd], k, v [B, T, kd]: three GEMMs, or one over the fused weight whose output the
    /// three are views of (<see cref="ProjectsFused"/>).</summary>
    (Tensor Q, Tensor K, Tensor V) Project(Tensor x, bool generating)
    {
        if (ProjectsFused(x, generating))
        {
            var (w, b) = FusedQkv()!.Value;
            var y = Dense.Linear(x, w, b);                                     // [B, T, qd + 2kd]
            return (y.narrow(-1, 0, qd), y.narrow(-1, qd, kd), y.narrow(-1, qd + kd, kd));
        }
        return (qProj.forward(x), kProj.forward(x), vProj.forward(x));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            qkv.Weight.Dispose();
            qkv.Bias.Dispose();
        }
        base.Dispose(disposing);
    }

    /// <param name="x">[B, T, H]</param>
    /// <param name="cos">[B, 1, T, D] (sin likewise)</param>
    /// <param name="mask">[B, 1, T, S] additive, or null for causal attention without padding or cache.</param>
    /// <param name="packed">Rows packed into one sequence (x [1, ΣL, H]): attention within each row, no mask or cache.</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer, AttentionImpl impl, PackedSequences? packed = null)
    {
        using var scope = torch.NewDisposeScope();
        long b = x.shape[0], t = x.shape[1];
        var (qp, kp, vp) = Project(x, generating: cache is not null);
        var q = qp.view(b, t, heads, headDim).transpose(1, 2);                 // [B, H, T, D]
        var k = kp.view(b, t, kvHeads, headDim).transpose(1, 2);               // [B, kvH, T, D]
        var v = vp.view(b, t, kvHeads, headDim).transpose(1, 2);
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
        var (qp, kp, vp) = Project(x, generating: true);
        var q = qp.view(b, 1, heads, headDim).transpose(1, 2);                 // [B, H, 1, D]
        var k = kp.view(b, 1, kvHeads, headDim).transpose(1, 2);               // [B, kvH, 1, D]
        var v = vp.view(b, 1, kvHeads, headDim).transpose(1, 2);
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
        var (qp, kp, vp) = Project(x, generating: true);                       // views of one GEMM's rows (row-strided)
        var q = fused.RopeDecode(qp, kp, vp, cos, sin, cache, layer, heads);   // [B, H, 1, D]
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

    internal QwenAttention SelfAttention => attn;

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
