// Multimodal rotary embedding of the text decoder (spec §4): angles pos ⊗ inv_freq in fp32 for the three position
// rows (temporal, height, width), the frequency pairs split by mrope_section between the rows, cos/sin computed in
// fp32 and only then cast to the model dtype. Plain Qwen2 passes three equal rows, which is ordinary 1D RoPE.
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public static class MRope
{
    /// <summary>inv_freq[i] = 1/θ^(2i/dim), i &lt; dim/2, computed the way HF does (fp32 pow).</summary>
    public static Tensor InverseFrequencies(long dim, double theta, Device device)
    {
        using var scope = torch.NewDisposeScope();
        var exponent = torch.arange(0, dim, 2, ScalarType.Int64, device).to(ScalarType.Float32) / (double)dim;
        var basis = torch.full([], theta, ScalarType.Float32, device);
        return basis.pow(exponent).reciprocal().MoveToOuterDisposeScope();
    }

    /// <summary>cos, sin [B, 1, T, D] in <paramref name="dtype"/> for positionIds [3, B, T].</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(Tensor positionIds, QwenTextConfig cfg, ScalarType dtype)
    {
        using var scope = torch.NewDisposeScope();
        int d = cfg.HeadDim;
        var dev = positionIds.device;
        var invFreq = InverseFrequencies(d, cfg.RopeTheta, dev);                                  // [D/2]
        var angles = positionIds.to(ScalarType.Float32).unsqueeze(-1) * invFreq;                   // [3, B, T, D/2]
        // Frequency pairs [0, s0) take the temporal row, the next s1 the height row, the last s2 the width row. Slices
        // and one cat (no index tensor: building one from host memory costs a host→device copy and sync per forward).
        var parts = new List<Tensor>(3);
        for (int r = 0, start = 0; r < 3; start += cfg.MropeSection[r], r++)
            if (cfg.MropeSection[r] > 0) parts.Add(angles[r].narrow(-1, start, cfg.MropeSection[r]));
        var freqs = torch.cat(parts, -1);                                                          // [B, T, D/2]
        var emb = torch.cat([freqs, freqs], -1);                                                   // [B, T, D]
        var cos = emb.cos().to(dtype).unsqueeze(1);
        var sin = emb.sin().to(dtype).unsqueeze(1);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }
}
