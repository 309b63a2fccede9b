// Multimodal rotary embedding of the text decoder (spec §4): angles pos ⊗ inv_freq in fp32 for the three position
// rows (temporal, height, width), the frequency pairs split by mrope_section between the rows, cos/sin computed in
// fp32 and only then cast to the model dtype. Plain Qwen2 passes three equal rows, which is ordinary 1D RoPE.
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public static class MRope
{
    /// <summary>inv_freq[i] = 1/θ^(2i/dim), i &lt; dim/2, computed the way HF does (fp32 pow).</summary>
    public static Tensor InverseFrequencies(long dim, double theta, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var exponent = TorchScalars.Arange(0, dim, 2, ScalarType.Int64, device).to(ScalarType.Float32).DivS((double)dim);
        var basis = TorchScalars.Full([], theta, ScalarType.Float32, device);
        return basis.pow(exponent).reciprocal().MoveToOuterDisposeScope();
    }

    /// <summary>cos, sin [B, 1, T, D] in <paramref name="dtype"/> for positionIds [3, B, T].</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, QwenTextConfig cfg, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        int d = cfg.HeadDim, half = d / 2;
        var dev = positionIds.device;
        long b = positionIds.shape[1], t = positionIds.shape[2];
        var invFreq = InverseFrequencies(d, cfg.RopeTheta, dev);                                  // [D/2]
        var angles = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq;                   // [3, B, T, D/2]
        // Frequency pair i takes its position from row (i ≥ s0) + (i ≥ s0+s1): the first mrope_section[0] pairs the
        // temporal row, the next s1 the height row, the rest the width row. Built on the device: no host copy per step.
        var pair = TorchScalars.Arange(half, ScalarType.Int64, dev);
        var rowOf = pair.GeS(cfg.MropeSection[0]).to(ScalarType.Int64).Plus(pair.GeS(cfg.MropeSection[0] + cfg.MropeSection[1]).to(ScalarType.Int64));
        var index = rowOf.view(1, 1, 1, half).expand(1, b, t, half);
        var freqs = angles.gather(0, index).squeeze(0);                                            // [B, T, D/2]
        var emb = torch.cat([freqs, freqs], -1);                                                   // [B, T, D]
        var cos = emb.cos().to(dtype).unsqueeze(1);
        var sin = emb.sin().to(dtype).unsqueeze(1);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }
}
