// Token log-probabilities from logits (openrlhf/models/utils.py log_probs_from_logits, actor.Actor.forward):
// logits to fp32, divided by the sampling temperature (rollout and training alike), log-softmax, gather.
// Departures: never mutates the logits (upstream divides in place) and works in row chunks to bound fp32 memory.
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class LogProbs
{
    /// <summary>log softmax(logits/T)[label]. logits: [B, T, V] (any float dtype, any strides); labels: [B, T] int64
    /// → [B, T] fp32. Each chunk of at most <paramref name="chunkRows"/> positions is cast to fp32 on its own, so the
    /// extra memory is chunkRows·V floats (plus what autograd keeps for backward).</summary>
    public static Tensor FromLogits(Tensor logits, Tensor labels, double temperature = 1.0, long chunkRows = 256)
    {
        if (logits.dim() != 3) throw new ArgumentException($"logits must be [B, T, V], got {logits.dim()} dims");
        if (labels.dim() != 2 || labels.shape[0] != logits.shape[0] || labels.shape[1] != logits.shape[1])
            throw new ArgumentException(
                $"labels [{string.Join(",", labels.shape)}] do not match logits [{string.Join(",", logits.shape)}]");
        if (!(temperature > 0)) throw new ArgumentException($"temperature must be > 0, got {temperature}");
        if (chunkRows < 1) throw new ArgumentException($"chunkRows must be ≥ 1, got {chunkRows}");
        using var scope = NewDisposeScope();
        long b = logits.shape[0], t = logits.shape[1];
        var idx = labels.to_type(ScalarType.Int64).to(logits.device);
        var rows = new List<Tensor>();
        for (long i = 0; i < b; i++)
        {
            var row = new List<Tensor>();
            for (long s = 0; s < t; s += chunkRows)
            {
                long n = Math.Min(chunkRows, t - s);
                using var chunk = NewDisposeScope();   // without grad, a chunk's fp32 copy is freed before the next
                row.Add(Rows(logits[i].narrow(0, s, n), idx[i].narrow(0, s, n), temperature).LogProbs.MoveToOuterDisposeScope());
            }
            rows.Add(cat(row, 0));
        }
        return (t == 0 ? zeros([b, 0], ScalarType.Float32, logits.device) : stack(rows, 0)).MoveToOuterDisposeScope();
    }

    /// <summary>logits [n, V] (any float dtype), labels [n] int64 → (log softmax(x)[label], logsumexp(x)), both [n] fp32,
    /// where x = fp32(logits)/T: the one rule FromLogits and the chunked head (HeadLogProbFunction, whose backward
    /// needs the log-sum-exp) share, in the caller's scope.</summary>
    public static (Tensor LogProbs, Tensor LogSumExp) Rows(Tensor logits, Tensor labels, double temperature)
    {
        var x = logits.to_type(ScalarType.Float32);                                                // [n, V] fp32
        if (temperature != 1.0) x = x.DivS(temperature);
        var picked = x.gather(-1, labels.unsqueeze(-1)).squeeze(-1);                                 // [n]
        var lse = x.logsumexp(-1);
        return (picked - lse, lse);                                                                 // log_softmax(x)[label]
    }

    /// <summary>The action log-probs the actor returns: <paramref name="actionLogits"/> [B, A, V] at the positions
    /// that predict the actions (<see cref="ActionSlots.Predicting"/>), <paramref name="actions"/> [B, A]
    /// (<see cref="ActionSlots.Actions"/>), actionMask [B, A] → [B, A] fp32, 0 where actionMask is 0 (as upstream
    /// multiplies by the mask).</summary>
    public static Tensor ForActions(Tensor actionLogits, Tensor actions, Tensor actionMask, double temperature = 1.0, long chunkRows = 256)
    {
        using var scope = NewDisposeScope();
        return Masked(FromLogits(actionLogits, actions, temperature, chunkRows), actionMask).MoveToOuterDisposeScope();   // [B, A]
    }

    /// <summary>Action log-probs [B, A] with 0 where actionMask is 0, as upstream multiplies by the mask (in the caller's
    /// scope).</summary>
    public static Tensor Masked(Tensor logProbs, Tensor actionMask) => Algorithms.Masked.Zeroed(logProbs, Precision.Valid(actionMask, logProbs));
}
