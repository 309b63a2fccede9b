// Token log-probs straight from final hidden states, log_softmax(h·Wᵀ / T)[label], without ever holding the [N, V]
// logits: a custom autograd Function that runs lm_head, the fp32 log-softmax and the gather in chunks of positions
// (LogProbs.FromLogits on each chunk) and, in backward, recomputes one chunk's logits at a time and backpropagates
// through that chunk alone, into the hidden states and, when it trains, the lm_head / tied embedding weight.
// What it saves, per micro-batch of 8 × 1,024 actions on the 3B shape (vocabulary 151,936): the 2.5 GB of logits in
// bf16, the 5 GB of fp32 copies that log_softmax keeps for backward, and their gradients — instead it keeps the hidden
// states. What it costs: a second lm_head matmul per chunk in backward (~3 % of a step's FLOPs). The numbers are
// those of LmHead + LogProbs.FromLogits up to the matmul's summation order (a chunk's GEMM may pick another kernel).
// On request each chunk's raw-logit entropy (Entropy.FromLogits, before the temperature) comes out too, without grad.
// The weight reaches backward through the context, not as a graph input: the chunk backward accumulates into its
// .grad itself, as the checkpointed layers do for their parameters.
using LmmR1.Algorithms;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

internal sealed class HeadLogProbFunction : torch.autograd.SingleTensorFunction<HeadLogProbFunction>
{
    public override string Name => "QwenHeadLogProbs";

    /// <summary>Carries the lm_head weight (kept out of the autograd inputs) and receives the entropy when asked.</summary>
    internal sealed class Head(Tensor weight, double temperature, long chunkRows, bool entropy)
    {
        public Tensor Weight { get; } = weight;
        public double Temperature { get; } = temperature;
        public long ChunkRows { get; } = chunkRows;
        public bool WantsEntropy { get; } = entropy;
        public Tensor? Entropy { get; set; }
    }

    /// <summary>vars: [Tensor hidden [N, H], Tensor labels [N] int64, Head head] → log-probs [N] fp32.</summary>
    public override Tensor forward(torch.autograd.AutogradContext ctx, params object[] vars)
    {
        var hidden = (Tensor)vars[0];
        var labels = (Tensor)vars[1];
        var head = (Head)vars[2];
        ctx.save_for_backward([hidden, labels]);
        ctx.save_data("head", head);
        ctx.save_data("owner", Environment.CurrentManagedThreadId);
        using var scope = torch.NewDisposeScope();
        long n = hidden.shape[0];
        var lps = new List<Tensor>();
        var entropies = new List<Tensor>();
        for (long s = 0; s < n; s += head.ChunkRows)
        {
            long c = Math.Min(head.ChunkRows, n - s);
            var (logits, lp) = Chunk(hidden.narrow(0, s, c), labels.narrow(0, s, c), head);
            lps.Add(lp);
            if (head.WantsEntropy) entropies.Add(Algorithms.Entropy.FromLogits(logits, c));
            logits.Dispose();
        }
        if (head.WantsEntropy)
            head.Entropy = (n == 0 ? zeros([0], ScalarType.Float32, hidden.device) : cat(entropies, 0)).DetachFromDisposeScope();
        return (n == 0 ? zeros([0], ScalarType.Float32, hidden.device) : cat(lps, 0)).MoveToOuterDisposeScope();
    }

    // One chunk, forward and in backward's recompute alike: logits [c, V] in the model dtype and their log-probs [c].
    static (Tensor Logits, Tensor LogProbs) Chunk(Tensor hidden, Tensor labels, Head head)
    {
        var logits = nn.functional.linear(hidden, head.Weight);
        return (logits, LogProbs.FromLogits(logits.unsqueeze(0), labels.unsqueeze(0), head.Temperature, hidden.shape[0]).squeeze(0));
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
            Tensor hidden = saved[0], labels = saved[1];
            long n = hidden.shape[0];
            var parts = new List<Tensor>();
            for (long s = 0; s < n; s += head.ChunkRows)
            {
                long c = Math.Min(head.ChunkRows, n - s);
                var hd = hidden.narrow(0, s, c).detach().requires_grad_(true);
                using (torch.enable_grad())
                {
                    var (logits, lp) = Chunk(hd, labels.narrow(0, s, c), head);
                    torch.autograd.backward([lp], [grad.narrow(0, s, c)]);
                    lp.Dispose(); logits.Dispose();
                }
                parts.Add(hd.grad ?? torch.zeros_like(hd));
            }
            inputGrad = (n == 0 ? torch.zeros_like(hidden) : cat(parts, 0)).DetachFromDisposeScope();
        }
        // As CheckpointFunction: the incoming gradient's handle is done now, the returned one is freed after backward.
        grad.Dispose();
        ReturnedGradients.Keep((int)ctx.get_data("owner"), inputGrad);
        return [inputGrad, null!, null!];
    }
}
