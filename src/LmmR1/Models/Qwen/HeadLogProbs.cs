// Token log-probs straight from final hidden states, log_softmax(h·Wᵀ / T)[label], without ever holding the [N, V]
// logits: a custom autograd Function. Forward runs lm_head, the fp32 log-softmax and the gather over chunks of
// positions (LogProbs.Rows on each chunk, the ops of LogProbs.FromLogits, so the values are the plain head's) and keeps
// each position's log-sum-exp. Backward is written out rather than recomputed through autograd, and runs over chunks of
// the vocabulary: for the columns [v0, v0+c) it recomputes those logits for every position, p = exp(x/T − lse), the
// logits' gradient g·(onehot − p)/T, then dH += dlogits·W[v0:v0+c] (an fp32 accumulator) and dW[v0:v0+c] += dlogitsᵀ·H
// straight into the weight's .grad slice. So every element of the [V, H] weight gradient is written once, as in one
// whole-head GEMM; chunks over positions (the first version) added a full [V, H] partial into .grad per chunk, ~1.9 GB
// of traffic each on the 3B shape. What it saves, per micro-batch of 8 × 1,024 actions on the 3B shape (vocabulary
// 151,936): the 2.5 GB of logits in bf16, the 5 GB of fp32 copies that log_softmax keeps for backward, and their
// gradients; it keeps the hidden states and [N] log-sum-exps instead. What it costs: a second lm_head matmul in backward
// (~3 % of a step's FLOPs). Departures from the plain head, all within rounding: dH is a sum of per-chunk GEMMs (each
// rounded to the model dtype) instead of one GEMM, and the GEMMs have other shapes. On request each chunk's raw-logit
// entropy (Entropy.FromLogits, before the temperature) comes out too, without grad. The weight reaches backward through
// the context, not as a graph input (the backward fills its .grad itself, as the checkpointed layers do), and gets no
// gradient when it does not require one (a frozen or LoRA-wrapped head). On CUDA, with the native extension's kernels,
// each chunk's maths is one kernel instead of the op-by-op chains (QwenVLModel.FusedHead): head_logsoftmax reads the
// model-dtype logits once for the max and once for Σ exp (no fp32 copy; the log-sum-exp equal up to the order of its
// sum), head_dlogits writes the logits' gradient in place over the recomputed logits with the chain's own roundings
// (bench kernel-check compares both with the ops on the GPU).
using LmmR1.Algorithms;
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

internal sealed class HeadLogProbFunction : torch.autograd.SingleTensorFunction<HeadLogProbFunction>
{
    public override string Name => "QwenHeadLogProbs";

    /// <summary>Carries the lm_head weight (kept out of the autograd inputs) and receives the entropy when asked.</summary>
    internal sealed class Head(Tensor weight, double temperature, long chunkRows, long chunkColumns, bool entropy, NativeExtension? kernels = null)
    {
        /// <summary>The native extension whose head kernels run the per-chunk maths (CUDA), or null for the TorchSharp ops.</summary>
        public NativeExtension? Kernels { get; } = kernels;
        public Tensor Weight { get; } = weight;
        public double Temperature { get; } = temperature;
        /// <summary>Positions per forward chunk.</summary>
        public long ChunkRows { get; } = chunkRows;
        /// <summary>Vocabulary columns per backward chunk (0: as many as fit 256 MiB of fp32 logits for all positions).</summary>
        public long ChunkColumns { get; } = chunkColumns;
        public bool WantsEntropy { get; } = entropy;
        public Tensor? Entropy { get; set; }
    }

    /// <summary>vars: [Tensor hidden [N, H], Tensor labels [N] int64, Head head] → log-probs [N] fp32.</summary>
    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        var hidden = (Tensor)vars[0];
        var labels = (Tensor)vars[1];
        var head = (Head)vars[2];
        using var scope = torch.NewDisposeScope();
        long n = hidden.shape[0];
        var lps = new List<Tensor>();
        var lses = new List<Tensor>();
        var entropies = new List<Tensor>();
        for (long s = 0; s < n; s += head.ChunkRows)
        {
            // One chunk's logits and their fp32 copies are freed before the next chunk (only [c] results leave).
            using var chunk = torch.NewDisposeScope();
            long c = Math.Min(head.ChunkRows, n - s);
            var logits = nn.functional.linear(hidden.narrow(0, s, c), head.Weight);                 // [c, V] model dtype
            if (head.Kernels is { } k)
            {
                var (lp, lse, ent) = k.HeadLogSoftmax(logits, labels.narrow(0, s, c), head.Temperature, head.WantsEntropy);
                lps.Add(lp.MoveToOuterDisposeScope());
                lses.Add(lse.MoveToOuterDisposeScope());
                if (ent is not null) entropies.Add(ent.MoveToOuterDisposeScope());
            }
            else
            {
                var (lp, lse) = LogProbs.Rows(logits, labels.narrow(0, s, c), head.Temperature);
                lps.Add(lp.MoveToOuterDisposeScope());
                lses.Add(lse.MoveToOuterDisposeScope());
                if (head.WantsEntropy) entropies.Add(Algorithms.Entropy.FromLogits(logits, c).MoveToOuterDisposeScope());
            }
        }
        Tensor Joined(List<Tensor> parts) => n == 0 ? zeros([0], ScalarType.Float32, hidden.device) : cat(parts, 0);
        if (head.WantsEntropy) head.Entropy = Joined(entropies).DetachFromDisposeScope();
        // The log-sum-exps go to the caller's scope (QwenVLModel.HeadLogProbs), which outlives apply: TorchSharp saves the
        // variables after forward returned, when this scope is gone.
        ctx.save_for_backward([hidden, labels, Joined(lses).MoveToOuterDisposeScope()]);
        ctx.save_data("head", head);
        ctx.save_data("owner", Environment.CurrentManagedThreadId);
        return Joined(lps).MoveToOuterDisposeScope();
    }

    /// <summary>The op chain of the logits' gradient for vocabulary columns v0 … v0+c−1 (what head_dlogits does in one
    /// kernel, bench kernel-check's reference): logits [N, c], negLse = −lse and g, negG = ±grad as [N, 1] fp32, labels
    /// [N] → d(Σ g·log_softmax(x)[label])/d logits in the logits' dtype, x = fp32(logits)/T, in the caller's scope.
    /// Works in place on fp32 logits (to_type is then the same tensor).</summary>
    internal static Tensor LogitGradient(Tensor logits, Tensor negLse, Tensor g, Tensor negG, Tensor labels, long v0, double t)
    {
        long c = logits.shape[1];
        // p = exp(x − lse) with x = fp32(logits)/T, as the forward's log-sum-exp saw it (logsumexp's own backward).
        var d = (t == 1.0 ? logits.to_type(ScalarType.Float32) : logits.to_type(ScalarType.Float32).DivS(t)).Plus_(negLse);
        d.exp_().mul_(negG);                                                                          // −g·p
        // + g at the label, for the rows whose label is in this chunk (gather's backward).
        var rel = labels.AddS(-v0);
        var inChunk = rel.GeS(0L).logical_and_(rel.LtS(c)).unsqueeze(1);
        d.scatter_add_(1, rel.ClampMinS(0L).ClampMaxS(c - 1).unsqueeze(1), g.mul(inChunk));
        if (t != 1.0) d.DivS_(t);                                                                     // through x = logits/T
        return d.to_type(logits.dtype);
    }

    public override List<Tensor> backward(torch.autograd.AutogradContext ctx, Tensor grad)
    {
        var head = (Head)ctx.get_data("head");
        Tensor inputGrad;
        using (var scope = torch.NewDisposeScope())
        {
            // Unpacked saved tensors are fresh handles: inside the scope so they are freed here even when libtorch runs
            // this on a worker thread (no caller scope there).
            var saved = ctx.get_saved_variables();
            Tensor hidden = saved[0].detach(), labels = saved[1], lse = saved[2];
            var w = head.Weight;
            long n = hidden.shape[0], vocab = w.shape[0];
            double t = head.Temperature;
            long cols = head.ChunkColumns > 0 ? head.ChunkColumns : Math.Max(1, (256L << 20) / 4 / Math.Max(1, n));
            var gFlat = grad.to_type(ScalarType.Float32).contiguous();                                // [N]
            var g = gFlat.unsqueeze(1);                                                               // [N, 1]
            var negG = g.neg();
            var negLse = lse.neg().unsqueeze(1);                                                      // [N, 1]
            var dh = zeros([n, hidden.shape[1]], ScalarType.Float32, hidden.device);
            Tensor? dw = null;
            if (w.requires_grad && n > 0)
            {
                dw = w.grad;
                if (dw is null)
                {
                    w.grad = zeros_like(w);
                    dw = w.grad!;
                }
            }
            for (long v0 = 0; v0 < vocab && n > 0; v0 += cols)
            {
                using var inner = torch.NewDisposeScope();
                long c = Math.Min(cols, vocab - v0);
                var wc = w.narrow(0, v0, c);                                                          // [c, H]
                var logits = nn.functional.linear(hidden, wc);                                        // [N, c] model dtype
                Tensor dl;
                if (head.Kernels is { } k)
                {
                    k.HeadDLogits(logits, lse, gFlat, labels, v0, t);                                 // the chain below, one kernel, in place
                    dl = logits;
                }
                else dl = LogitGradient(logits, negLse, g, negG, labels, v0, t);                       // [N, c]
                dh.Plus_(dl.mm(wc));
                if (dw is not null) dw.narrow(0, v0, c).addmm_(dl.t(), hidden);
            }
            inputGrad = dh.to_type(hidden.dtype).DetachFromDisposeScope();
        }
        // As CheckpointFunction: the incoming gradient's handle is done now, the returned one is freed after backward.
        grad.Dispose();
        ReturnedGradients.Keep((int)ctx.get_data("owner"), inputGrad);
        return [inputGrad, null!, null!];
    }
}
