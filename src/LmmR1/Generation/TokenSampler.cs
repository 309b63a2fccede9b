// One sampling step for a batch of rows, all on the device with a fixed number of kernels (no per-row work, no host
// reads): fp32 softmax of logits/T, optional top-k → top-p → min-p filtering (vLLM's order), then inverse-CDF sampling
// with one given uniform per row, plus the log-prob log_softmax(logits/T)[token] that OpenRLHF's actor recomputes.
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
            // Unsorted path: inverse CDF over the vocabulary order, no sort.
            if (p.UsesMinP) w = w.FillS(w.lt(w.amax([-1], keepdim: true).MulS(p.MinP)), 0.0);
            var cdf = w.cumsum(-1);                                                                      // [B, V]
            var target = u * cdf.narrow(1, v - 1, 1);
            var t = torch.searchsorted(cdf, target, right: true).ClampMaxS(v - 1);                          // [B, 1]
            var fallback = w.argmax(-1, keepdim: true);
            tokens = torch.where(w.gather(1, t).gt(TorchScalars.Zero), t, fallback).squeeze(1);
        }
        logProbs = probs.gather(1, tokens.unsqueeze(1)).squeeze(1).log();
        return (tokens.MoveToOuterDisposeScope(), logProbs.MoveToOuterDisposeScope());
    }
}
