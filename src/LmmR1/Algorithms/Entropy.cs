// Policy entropy from logits (openrlhf/models/utils.py compute_entropy): H = logsumexp(x) − Σ softmax(x)·x, in fp32
// on the raw logits (LMM-R1 computes it before the temperature division), averaged over the action mask for the
// −entropy_loss_coef·H term; the actor computes it on the logits at the ActionSlots.Predicting positions only.
// Departure: chunked over positions so a 151k vocabulary needs no full fp32 copy.
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class Entropy
{
    /// <summary>logits: [..., V] (any float dtype) → [...] fp32 entropy per position, in chunks of at most
    /// <paramref name="chunkRows"/> positions. A [B, T, V] input is read through views (no copy even when strided).</summary>
    public static Tensor FromLogits(Tensor logits, long chunkRows = 256)
    {
        if (logits.dim() < 1) throw new ArgumentException("logits need a vocabulary dimension");
        if (chunkRows < 1) throw new ArgumentException($"chunkRows must be ≥ 1, got {chunkRows}");
        using var scope = NewDisposeScope();
        if (logits.dim() == 3)
        {
            long b = logits.shape[0];
            var rows = Enumerable.Range(0, (int)b).Select(i => Rows(logits[i], chunkRows)).ToArray();   // B × [T]
            var h3 = b == 0 ? zeros([0, logits.shape[1]], ScalarType.Float32, logits.device) : stack(rows, 0);
            return h3.MoveToOuterDisposeScope();
        }
        long[] outer = logits.shape[..^1];
        return Rows(logits.reshape(-1, logits.shape[^1]), chunkRows).reshape(outer).MoveToOuterDisposeScope();
    }

    // x: [N, V] → [N] fp32.
    static Tensor Rows(Tensor x2, long chunkRows)
    {
        long n = x2.shape[0];
        if (n == 0) return zeros([0], ScalarType.Float32, x2.device);
        var parts = new List<Tensor>();
        for (long s = 0; s < n; s += chunkRows)
        {
            var x = x2.narrow(0, s, Math.Min(chunkRows, n - s)).to_type(ScalarType.Float32);        // [c, V]
            var p = x.softmax(-1);
            parts.Add(x.logsumexp(-1) - (p * x).sum(-1));
        }
        return cat(parts, 0);
    }

    /// <summary>The entropy term of the actor loss: entropy [B, A] at the action positions averaged over the valid
    /// tokens of the micro-batch → 0-d. The trainer subtracts entropy_loss_coef times it (<see cref="ActorLoss"/>).</summary>
    public static Tensor MaskedMean(Tensor entropy, Tensor actionMask) => Masked.Mean(entropy, actionMask);
}
