// Several Dense layers over the same input whose weights (and biases) are row blocks of one fused tensor: q_proj,
// k_proj and v_proj of an attention layer, gate_proj and up_proj of an MLP. Each part is a Dense whose parameters are
// views of the fused weight, so parameter names, state dicts and the checkpoint layout stay Hugging Face's, and every
// load, optimizer step and LoRA merge (all in place) writes through the views. Generation passes on CUDA run one GEMM
// over the fused weight (Linear) and split its output (Split); the log-prob, reference and training forwards keep one
// GEMM per part (QwenAttention.ProjectsFused, QwenMlp.Fuses say when). Not in HF, whose layers are separate.
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

/// <summary>The fused weight [Σ outᵢ, in] (and bias [Σ outᵢ]) and its row-block views as Dense layers. Held by its module
/// in a plain field, so that RegisterComponents does not make the fused tensors buffers: state dicts, optimizers and
/// checkpoints see only the parts' parameters.</summary>
internal sealed class FusedDense : IDisposable
{
    readonly long[] offsets;
    readonly long[] widths;
    readonly Dense[] parts;

    public FusedDense(long inFeatures, long[] outFeatures, bool hasBias, ScalarType dtype, Device device)
    {
        widths = outFeatures;
        offsets = new long[outFeatures.Length];
        for (int i = 1; i < outFeatures.Length; i++) offsets[i] = offsets[i - 1] + outFeatures[i - 1];
        long total = offsets[^1] + outFeatures[^1];
        Weight = torch.empty([total, inFeatures], dtype, device).DetachFromDisposeScope();
        Bias = hasBias ? torch.empty([total], dtype, device).DetachFromDisposeScope() : null;
        parts = new Dense[outFeatures.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            using var w = Weight.narrow(0, offsets[i], widths[i]);
            using var b = Bias?.narrow(0, offsets[i], widths[i]);
            parts[i] = new Dense(w, b);
        }
    }

    public Tensor Weight { get; }
    public Tensor? Bias { get; }

    /// <summary>Part i as a Dense layer (a view of rows offsetᵢ … offsetᵢ + outᵢ − 1).</summary>
    public Dense this[int i] => parts[i];

    /// <summary>Whether one GEMM over the fused weight gives what the parts' forwards give: no adapter attached to any
    /// part (the fused GEMM would leave it out).</summary>
    public bool Available => parts.All(p => p.LoraA is null);

    /// <summary>Whether every part's weight (and bias) still starts where its rows of the fused tensors do, i.e. nothing
    /// replaced a parameter since construction (checked by address through the native extension).</summary>
    public bool StillViews(NativeExtension native)
    {
        long w0 = native.DataPtr(Weight), es = Weight.ElementSize, row = Weight.shape[1] * es;
        long b0 = Bias is null ? 0 : native.DataPtr(Bias);
        for (int i = 0; i < parts.Length; i++)
        {
            if (native.DataPtr(parts[i].Weight) != w0 + offsets[i] * row) return false;
            if ((parts[i].Bias is null) != (Bias is null)) return false;
            if (parts[i].Bias is { } b && native.DataPtr(b) != b0 + offsets[i] * es) return false;
        }
        return true;
    }

    /// <summary>Whether a generation pass over x runs the fused GEMM: on CUDA without grad, switched on, with the native
    /// extension loaded, while <see cref="Available"/> and <see cref="StillViews"/> hold.</summary>
    public bool Fuses(Tensor x, bool generating, bool switchedOn) =>
        generating && switchedOn && x.device.type == DeviceType.CUDA && !torch.is_grad_enabled() && Available
        && NativeExtension.TryGet() is { } native && StillViews(native);

    /// <summary>x [.., in] → [.., Σ outᵢ]: one GEMM (with the bias in its epilogue).</summary>
    public Tensor Linear(Tensor x) => Dense.Linear(x, Weight, Bias);

    /// <summary>The parts' outputs as views of the fused output y [.., Σ outᵢ] (row-strided).</summary>
    public Tensor[] Split(Tensor y) => [.. Enumerable.Range(0, parts.Length).Select(i => y.narrow(-1, offsets[i], widths[i]))];

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
