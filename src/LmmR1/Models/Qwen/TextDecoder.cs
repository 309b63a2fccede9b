// The Qwen2 / Qwen2.5 text decoder shared by all three families (spec §3): pre-norm layers of GQA self-attention
// (q/k/v with bias, o_proj without, M-RoPE on q and k, the cache holding rotated k) and a SwiGLU MLP, then a final
// RMSNorm. Module and field names give the classic checkpoint keys: model.embed_tokens / model.layers.{i} / model.norm.
// Departure from HF: q/k/v and gate/up are views of one fused weight each (FusedDense), one GEMM in generation on CUDA.
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
    // generation on CUDA runs one GEMM for the three (Project) while the parameters, their names and the checkpoint
    // layout stay Hugging Face's.
    readonly FusedDense qkv;
    readonly long qd, kd;

    public QwenAttention(QwenTextConfig c, ScalarType dtype, Device device) : base(nameof(QwenAttention))
    {
        heads = c.NumHeads; kvHeads = c.NumKvHeads; headDim = c.HeadDim;
        qd = (long)heads * headDim; kd = (long)kvHeads * headDim;
        qkv = new FusedDense(c.HiddenSize, [qd, kd, kd], true, dtype, device);
        qProj = qkv[0]; kProj = qkv[1]; vProj = qkv[2];
        oProj = new Dense(heads * headDim, c.HiddenSize, false, dtype, device);
        RegisterComponents();
    }

    /// <summary>The fused [q; k; v] weight and bias whose views q_proj, k_proj and v_proj were made, or null once an
    /// adapter is attached to one of them (the fused GEMM would leave it out).</summary>
    internal (Tensor Weight, Tensor Bias)? FusedQkv() => qkv.Available ? (qkv.Weight, qkv.Bias!) : null;

    /// <summary>Whether q_proj, k_proj and v_proj (weights and biases) still start where their rows of the fused tensors
    /// do, i.e. nothing replaced a parameter since construction (every load, optimizer step and merge is in place).</summary>
    internal bool StillViews(NativeExtension native) => qkv.StillViews(native);

    /// <summary>LMMR1_FUSED_QKV=0 keeps the three GEMMs in generation too (A/B timing).</summary>
    static readonly bool FusedQkvOn = Environment.GetEnvironmentVariable("LMMR1_FUSED_QKV") != "0";

    /// <summary>Whether the projections of a generation pass (<paramref name="generating"/>: a forward that fills a KV
    /// cache, or a static decode step) run as one GEMM (<see cref="FusedDense.Fuses"/>). All generation paths alike,
    /// so the eager engine, the static step and the graphs still agree bit for bit; the log-prob, reference and
    /// training forwards keep the three GEMMs, so their log-probs stay those of the update's own forward (a KL of
    /// exactly 0 at the first step).</summary>
    internal bool ProjectsFused(Tensor x, bool generating) => qkv.Fuses(x, generating, FusedQkvOn);

    /// <summary>x [B, T, H] → q [B, T, qd], k, v [B, T, kd]: three GEMMs, or one over the fused weight whose output the
    /// three are views of (<see cref="ProjectsFused"/>).</summary>
    (Tensor Q, Tensor K, Tensor V) Project(Tensor x, bool generating)
    {
        if (ProjectsFused(x, generating))
        {
            var parts = qkv.Split(qkv.Linear(x));                              // views of [B, T, qd + 2kd]
            return (parts[0], parts[1], parts[2]);
        }
        return (qProj.forward(x), kProj.forward(x), vProj.forward(x));
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) qkv.Dispose();
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
    // gate_proj and up_proj are views of one [gate; up] weight (and bias), so that generation on CUDA runs one GEMM for
    // both (as q/k/v in QwenAttention); parameters and checkpoint layout stay Hugging Face's.
    readonly FusedDense gateUp;

    public QwenMlp(long hidden, long intermediate, bool bias, ScalarType dtype, Device device) : base(nameof(QwenMlp))
    {
        gateUp = new FusedDense(hidden, [intermediate, intermediate], bias, dtype, device);
        gate = gateUp[0]; up = gateUp[1];
        down = new Dense(intermediate, hidden, bias, dtype, device);
        RegisterComponents();
    }

    /// <summary>LMMR1_FUSED_GATE_UP=0 keeps the two GEMMs in generation too (A/B timing).</summary>
    static readonly bool FusedGateUpOn = Environment.GetEnvironmentVariable("LMMR1_FUSED_GATE_UP") != "0";

    /// <summary>Whether a generation pass runs gate and up as one GEMM (<see cref="FusedDense.Fuses"/>; the same rule as
    /// QwenAttention.ProjectsFused, so all generation paths agree and the log-prob and training forwards keep two).</summary>
    internal bool Fuses(Tensor x, bool generating) => gateUp.Fuses(x, generating, FusedGateUpOn);

    /// <summary>The fused [gate; up] weight, or null once an adapter is attached to gate_proj or up_proj.</summary>
    internal Tensor? FusedGateUp() => gateUp.Available ? gateUp.Weight : null;

    /// <summary>(gate(x), up(x)): two GEMMs, or views of one over the fused weight (<see cref="Fuses"/>).</summary>
    (Tensor Gate, Tensor Up) Project(Tensor x, bool generating)
    {
        if (!Fuses(x, generating)) return (gate.forward(x), up.forward(x));
        var parts = gateUp.Split(gateUp.Linear(x));
        return (parts[0], parts[1]);
    }

    /// <summary>down(silu(gate(x)) · up(x)).</summary>
    public override Tensor forward(Tensor x) => Forward(x, generating: false);

    /// <summary>forward; <paramref name="generating"/>: a pass that fills a KV cache or a static decode step.</summary>
    public Tensor Forward(Tensor x, bool generating)
    {
        using var scope = torch.NewDisposeScope();
        var (g, u) = Project(x, generating);
        return down.forward(nn.functional.silu(g) * u).MoveToOuterDisposeScope();
    }

    /// <summary>The decode step's forward with silu(gate) · up as one fused kernel (which reads the fused GEMM's
    /// row-strided views as they are).</summary>
    public Tensor ForwardFused(Tensor x, FusedDecodeOps fused)
    {
        using var scope = torch.NewDisposeScope();
        var (g, u) = Project(x, generating: true);
        return down.forward(fused.SiluMul(g, u)).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) gateUp.Dispose();
        base.Dispose(disposing);
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
    internal QwenMlp Mlp => mlp;

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor? mask, KvCache? cache, int layer, AttentionImpl impl, PackedSequences? packed = null)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.Plus(attn.Forward(inputNorm.forward(x), cos, sin, mask, cache, layer, impl, packed));
        h = h.Plus(mlp.Forward(postNorm.forward(h), generating: cache is not null));
        return h.MoveToOuterDisposeScope();
    }

    public Tensor ForwardStatic(Tensor x, Tensor cos, Tensor sin, Tensor mask, StaticKvCache cache, int layer, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.Plus(attn.ForwardStatic(inputNorm.forward(x), cos, sin, mask, cache, layer, impl));
        h = h.Plus(mlp.Forward(postNorm.forward(h), generating: true));
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
