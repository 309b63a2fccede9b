// Building blocks whose parameters start as torch.empty in the target dtype/device (no random init, so loading a
// checkpoint never holds two copies), named like Hugging Face's (weight, bias). RmsNorm follows Qwen2RMSNorm exactly:
// normalise in fp32, cast back to the input dtype, then multiply by the weight. TorchSharp has no RMSNorm.
using LmmR1.Infrastructure;
using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

internal static class Params
{
    public static Parameter Empty(ScalarType dtype, Device device, params long[] shape) =>
        new(torch.empty(shape, dtype, device), requires_grad: true);
}

/// <summary>y = x Wᵀ + b, like nn.Linear, without its random init; with a LoRA adapter attached (Lora.cs) and switched
/// on, y + (α/r)·(dropout(x)·Aᵀ)·Bᵀ.</summary>
internal sealed class Dense : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter weight;
    [ComponentName(Name = "bias")] readonly Parameter? bias;
    LoraWeight? loraA, loraB;
    LoraState? lora;

    public Dense(long inFeatures, long outFeatures, bool hasBias, ScalarType dtype, Device device) : base(nameof(Dense))
    {
        weight = Params.Empty(dtype, device, outFeatures, inFeatures);
        bias = hasBias ? Params.Empty(dtype, device, outFeatures) : null;
        RegisterComponents();
    }

    /// <summary>A Dense whose weight (and bias) are <paramref name="weightView"/> (<paramref name="biasView"/>) made
    /// parameters: views into a larger tensor (QwenAttention's fused q/k/v), the same memory, so loading, optimizer
    /// steps and LoRA merges, all in place, change both.</summary>
    public Dense(Tensor weightView, Tensor? biasView) : base(nameof(Dense))
    {
        weight = new Parameter(weightView, requires_grad: true);
        bias = biasView is null ? null : new Parameter(biasView, requires_grad: true);
        RegisterComponents();
    }

    public Parameter Weight => weight;
    internal Parameter? Bias => bias;
    internal LoraWeight? LoraA => loraA;
    internal LoraWeight? LoraB => loraB;

    /// <summary>Registers lora_A [r, in] (from <paramref name="a"/>, on this layer's device and dtype) and lora_B [out, r] zeros.</summary>
    internal void AttachLora(Tensor a, LoraState state)
    {
        if (loraA is not null) throw new InvalidOperationException("a LoRA adapter is already attached");
        using var moved = a.to(weight.dtype, weight.device);
        loraA = new LoraWeight(moved.detach());
        loraB = new LoraWeight(torch.zeros([weight.shape[0], a.shape[0]], weight.dtype, weight.device));
        register_module("lora_A", loraA);
        register_module("lora_B", loraB);
        lora = state;
    }

    public override Tensor forward(Tensor x)
    {
        if (lora is not { Enabled: true }) return Linear(x, weight, bias);
        using var scope = torch.NewDisposeScope();
        var y = Linear(x, weight, bias);
        var h = lora.Dropout > 0 && torch.is_grad_enabled() ? nn.functional.dropout(x, lora.Dropout, training: true) : x;
        var d = nn.functional.linear(nn.functional.linear(h, loraA!.Weight), loraB!.Weight);
        return y.PlusScaled(d, lora.Scale).MoveToOuterDisposeScope();
    }

    /// <summary>x Wᵀ + b by at::linear's rule, which nn.Linear in transformers follows: a contiguous input of more than
    /// two dimensions with a bias runs as one addmm over its flattened rows, the bias added inside the GEMM (cuBLASLt's
    /// epilogue on CUDA). TorchSharp's functional linear is the C++ frontend's, which does that for 2-D inputs only and
    /// otherwise runs matmul and then a separate bias add: one more kernel per q/k/v projection, and the sum rounded
    /// to bf16 twice.</summary>
    internal static Tensor Linear(Tensor x, Tensor w, Tensor? b)
    {
        if (b is null || x.dim() <= 2 || !x.is_contiguous()) return nn.functional.linear(x, w, b);
        long[] shape = x.shape;
        long rows = 1;
        for (int i = 0; i < shape.Length - 1; i++) rows *= shape[i];
        using var flat = x.view(rows, shape[^1]);
        using var y = nn.functional.linear(flat, w, b);                                            // torch::addmm(b, x, Wᵀ)
        return y.view([.. shape[..^1], w.shape[0]]);
    }
}

/// <summary>Token embedding table [V, H]; also serves as the tied lm_head.</summary>
internal sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter weight;

    public TokenEmbedding(long vocab, long dim, ScalarType dtype, Device device) : base(nameof(TokenEmbedding))
    {
        weight = Params.Empty(dtype, device, vocab, dim);
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public override Tensor forward(Tensor ids)
    {
        using var flat = ids.reshape(-1);
        using var rows = weight.index_select(0, flat);
        return rows.view([.. ids.shape, weight.shape[1]]);
    }
}

/// <summary>Qwen2RMSNorm: h = fp32(x) · rsqrt(mean(h²) + eps), cast back to x's dtype, then · weight.</summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter weight;
    // eps as the double Scalar `+ eps` made, rooted by the module for every forward (TorchScalars.cs says why).
    readonly Scalar eps;

    public RmsNorm(long dim, double eps, ScalarType dtype, Device device) : base(nameof(RmsNorm))
    {
        weight = Params.Empty(dtype, device, dim);
        this.eps = eps.ToScalar();
        Eps = eps;
        RegisterComponents();
    }

    public Parameter Weight => weight;
    public double Eps { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.to(ScalarType.Float32);
        h = h * torch.rsqrt(h.pow(TorchScalars.Two).mean([-1], keepdim: true).add(eps, TorchScalars.One));
        return (weight * h.to(x.dtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>nn.LayerNorm with weight and bias (Qwen2-VL vision blocks and merger).</summary>
internal sealed class LayerNormWithBias : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "weight")] readonly Parameter weight;
    [ComponentName(Name = "bias")] readonly Parameter bias;
    readonly double eps;

    public LayerNormWithBias(long dim, double eps, ScalarType dtype, Device device) : base(nameof(LayerNormWithBias))
    {
        weight = Params.Empty(dtype, device, dim);
        bias = Params.Empty(dtype, device, dim);
        this.eps = eps;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => nn.functional.layer_norm(x, [x.shape[^1]], weight, bias, eps);
}

internal static class Activations
{
    /// <summary>Hugging Face's ACT2FN by name: quick_gelu = x·σ(1.702x), gelu = exact erf GELU, silu.</summary>
    public static Tensor Apply(string name, Tensor x) => name switch
    {
        "quick_gelu" => QuickGelu(x),
        "gelu" => nn.functional.gelu(x),
        "silu" => nn.functional.silu(x),
        _ => throw new ArgumentException($"unsupported activation '{name}'"),
    };

    static readonly Scalar QuickGeluScale = 1.702.ToScalar();

    public static Tensor QuickGelu(Tensor x)
    {
        using var scaled = x.mul(QuickGeluScale);
        using var s = torch.sigmoid(scaled);
        return x * s;
    }
}
