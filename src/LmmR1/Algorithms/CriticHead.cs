// Init of the critic's value head (openrlhf/models/model.py): `score` = Linear(H, 1, bias=False), weight ~ N(0, σ)
// with standard deviation σ = 1/(H + 1) (not variance). Upstream does it only when the critic starts from the
// actor's checkpoint (critic_pretrain == pretrain); a critic checkpoint brings its own head.
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class CriticHead
{
    /// <summary>σ of the value-head weights for hidden size H: 1/(H + 1).</summary>
    public static double InitStd(long hiddenSize)
    {
        if (hiddenSize < 1) throw new ArgumentException($"hidden size must be ≥ 1, got {hiddenSize}");
        return 1.0 / (hiddenSize + 1);
    }

    /// <summary>Draws the weight [1, H] of <paramref name="score"/> from N(0, 1/(H + 1)) — in fp32 on the CPU with
    /// <paramref name="generator"/> (a CPU generator), then copied into the weight's dtype and device, so a seed gives
    /// the same head everywhere; a bias, which the upstream head does not have, is set to 0.</summary>
    public static void Initialize(Linear score, Generator? generator = null)
    {
        var w = score.weight ?? throw new ArgumentException("the value head has no weight");
        if (w.dim() != 2 || w.shape[0] != 1)
            throw new ArgumentException($"the value head must be Linear(H, 1), its weight is [{string.Join(",", w.shape)}]");
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();   // in-place ops hand back new wrappers of the same storage
        var draw = empty(w.shape, ScalarType.Float32);
        draw.normal_(0.0, InitStd(w.shape[1]), generator);
        w.copy_(draw);
        score.bias?.zero_();
    }
}
