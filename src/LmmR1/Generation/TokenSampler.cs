// One sampling step for a batch of rows, all on the device with a fixed number of kernels (no per-row work, no host
// reads): fp32 softmax of logits/T, optional top-k → top-p → min-p filtering (vLLM's order), then inverse-CDF sampling
// with one given uniform per row (without top-k/top-p in two levels: a block of ids, then the id in the block), plus
// the log-prob log_softmax(logits/T)[token] that OpenRLHF's actor recomputes.
// Departs from vLLM/HF: the randomness is the caller's uniform (see CounterRng), not torch's generator, so identical
// logits and uniforms give identical tokens whatever the batch. Ties at the top-k boundary keep exactly k (vLLM keeps all).
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Generation;

public static class TokenSampler
{
    /// <param name="logits">[B, V] in any float dtype (the model's).</param>
    /// <param name="uniforms">[B] float32 in [0, 1) on the logits' device; ignored when greedy.</param>
    /// <param name="banned">int64 token ids that must not be sampled this step (stop tokens before min_new_tokens), or null.</param>
    /// <returns>tokens [B] int64 and log-probs [B] float32.</returns>
    public static (Tensor Tokens, Tensor LogProbs) Sample(Tensor logits, Tensor uniforms, SamplingParams p, Tensor? banned = null)
    {
        using var scope = torch.NewDisposeScope();
        long v = logits.shape[^1];
        Tensor tokens, logProbs;
        if (p.Greedy)
        {
            // argmax of the logits (= of their log_softmax); the log-prob is log_softmax(logits), i.e. T = 1 (OpenRLHF
            // would divide by 0). Banned columns are set to −inf after their log-probs could have been read: a banned
            // token is never the one read.
            var lsm = logits.log_softmax(-1, ScalarType.Float32);                                      // [B, V]
            if (banned is not null) lsm.index_fill_(1, banned, TorchScalars.NegInf);
            tokens = lsm.argmax(-1);                                                                    // [B]
            logProbs = lsm.gather(1, tokens.unsqueeze(1)).squeeze(1);
            return (tokens.MoveToOuterDisposeScope(), logProbs.MoveToOuterDisposeScope());
        }

        // probs = softmax(fp32(logits) / T): one fused kernel when T = 1 (LMM-R1's rollout setting).
        Tensor probs;
        if (p.Temperature == 1.0) probs = logits.softmax(-1, ScalarType.Float32);                       // [B, V]
        else
        {
            var x = logits.to(ScalarType.Float32, copy: true);
            x.DivS_(p.Temperature);                                                                     // as OpenRLHF: logits.div_(T)
            probs = x.softmax(-1);
        }
        // Banned tokens get weight 0 in place: probs is read afterwards only at the drawn token, never a banned one,
        // so the log-prob stays that of the unfiltered distribution.
        if (banned is not null) probs.IndexFillS_(1, banned, 0.0);
        var w = probs;
        var u = uniforms.to(ScalarType.Float32).unsqueeze(1);                                            // [B, 1]

        if (p.UsesTopK || p.UsesTopP)
        {
            // Sorted path: candidates by decreasing probability (top-k: only k of them).
            Tensor vals, idx;
            if (p.UsesTopK && p.TopK < v) (vals, idx) = w.topk(p.TopK, -1, largest: true, sorted: true);     // [B, k]
            else (vals, idx) = w.sort(-1, descending: true, stable: true);                                // [B, V]
            if (p.UsesTopP)
            {
                // Keep a candidate while the mass before it (renormalised over the candidates) is < top_p: the smallest
                // prefix reaching top_p, the first candidate always (vLLM: ascending cumsum ≤ 1 − p removed).
                var norm = vals / vals.sum(-1, keepdim: true);
                var before = norm.cumsum(-1) - norm;
                vals = vals.FillS(before.GeS(p.TopP), 0.0);
            }
            if (p.UsesMinP) vals = vals.FillS(vals.lt(vals.narrow(1, 0, 1).MulS(p.MinP)), 0.0);
            var cdf = vals.cumsum(-1);
            var target = u * cdf.narrow(1, cdf.shape[1] - 1, 1);                                         // < total (CounterRng)
            var j = torch.searchsorted(cdf, target, right: true).ClampMaxS(cdf.shape[1] - 1);              // [B, 1]
            // A parallel scan can round a zero-weight step upwards; candidate 0 (the most probable) is always valid.
            j = torch.where(vals.gather(1, j).gt(TorchScalars.Zero), j, torch.zeros_like(j));
            tokens = idx.gather(1, j).squeeze(1);
        }
        else
        {
            // Unsorted path: inverse CDF over the vocabulary order, no sort, in two levels so that no scan runs over the
            // whole vocabulary (a [B, V] cumsum was ~0.5 ms of a 13 ms decode step at 512 rows): the block of S
            // consecutive ids is drawn by its mass, then the id inside it by the same uniform rescaled to the block
            // (uniform again given the block), so the distribution is the one-level inverse CDF's.
            if (p.UsesMinP) w = w.FillS(w.lt(w.amax([-1], keepdim: true).MulS(p.MinP)), 0.0);
            long b = w.shape[0], s = BlockSize(v), nb = v / s;
            var blocks = w.view(b, nb, s);
            var mass = blocks.sum(-1);                                                                   // [B, nb]
            var cdf = mass.cumsum(-1);
            var target = u * cdf.narrow(1, nb - 1, 1);                                                   // < total (CounterRng)
            var bi = torch.searchsorted(cdf, target, right: true).ClampMaxS(nb - 1);                      // [B, 1]
            // A parallel scan can round a zero-mass step upwards: the heaviest block is always valid.
            bi = torch.where(mass.gather(1, bi).gt(TorchScalars.Zero), bi, mass.argmax(-1, keepdim: true));
            var m = mass.gather(1, bi);
            var within = ((target - (cdf.gather(1, bi) - m)) / m).ClampS(0.0, MaxUniform);                // [B, 1] in [0, 1)
            var block = blocks.gather(1, bi.unsqueeze(2).expand(b, 1, s)).squeeze(1);                    // [B, S]
            var bcdf = block.cumsum(-1);
            var j = torch.searchsorted(bcdf, within * bcdf.narrow(1, s - 1, 1), right: true).ClampMaxS(s - 1);
            j = torch.where(block.gather(1, j).gt(TorchScalars.Zero), j, block.argmax(-1, keepdim: true));
            tokens = bi.MulS(s).Plus(j).squeeze(1);
        }
        logProbs = probs.gather(1, tokens.unsqueeze(1)).squeeze(1).log();
        return (tokens.MoveToOuterDisposeScope(), logProbs.MoveToOuterDisposeScope());
    }

    /// <summary>The largest float32 below 1 (what CounterRng's uniforms stay under).</summary>
    const double MaxUniform = 1.0 - 1.0 / (1 << 24);

    /// <summary>Ids per block of the two-level inverse CDF: the smallest divisor of <paramref name="v"/> that is at least
    /// √v (151,936 → 1,187, so 128 blocks; a prime vocabulary is one block).</summary>
    public static long BlockSize(long v)
    {
        long root = (long)Math.Ceiling(Math.Sqrt(v));
        for (long s = Math.Max(1, root); s < v; s++)
            if (v % s == 0) return s;
        return Math.Max(1, v);
    }
}
