// Greedy decoding with the KV cache for a fixed number of tokens (no EOS stop): the reference decode loop used by
// `lmmr1 debug forward` and the parity tests. Everything stays on the device: the argmax of one step is the next
// input, positions come from the cache's rope deltas, and nothing is read back per token.
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public static class GreedyDecoder
{
    /// <summary>Result of <see cref="Generate"/>; owns its tensors.</summary>
    public sealed class Result : IDisposable
    {
        /// <summary>[B, N] int64 generated tokens.</summary>
        public required Tensor Tokens { get; init; }
        /// <summary>[B, N, V] float32: logits of decode step k (input = token k, at position L+k), which predict
        /// token k+1 — the logits a single pass over prompt+tokens gives at its last N positions. Null unless asked for.</summary>
        public Tensor? StepLogits { get; init; }

        public void Dispose() { Tokens.Dispose(); StepLogits?.Dispose(); }
    }

    /// <param name="model">The model (its Attention setting is used).</param>
    /// <param name="inputIds">[B, L] left-padded prompts</param>
    /// <param name="attentionMask">[B, L] or null</param>
    /// <param name="maxNewTokens">N ≥ 1 tokens to generate</param>
    /// <param name="collectStepLogits">Also run the N-th token through the model and return every step's logits.</param>
    public static Result Generate(QwenVLModel model, Tensor inputIds, Tensor? attentionMask, int maxNewTokens,
                                  Tensor? pixelValues = null, Tensor? imageGridThw = null, bool collectStepLogits = false)
    {
        if (maxNewTokens < 1) throw new ArgumentException("maxNewTokens must be at least 1");
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        long b = inputIds.shape[0];
        int l = (int)inputIds.shape[1];
        using var cache = model.CreateCache(b, l + maxNewTokens);
        var tokens = new List<Tensor>();
        var stepLogits = new List<Tensor>();
        Tensor next;
        using (var prefill = model.Forward(inputIds, attentionMask, pixelValues, imageGridThw, cache: cache, logitsForLast: 1))
            next = prefill.Logits!.argmax(-1);                                         // [B, 1]
        tokens.Add(next);
        int steps = collectStepLogits ? maxNewTokens : maxNewTokens - 1;
        for (int s = 0; s < steps; s++)
        {
            using var stepScope = torch.NewDisposeScope();
            using var o = model.Forward(next, cache: cache, logitsForLast: 1);
            if (collectStepLogits) stepLogits.Add(o.Logits!.to(ScalarType.Float32).MoveToOuterDisposeScope());
            if (s < maxNewTokens - 1)
            {
                next = o.Logits!.argmax(-1).MoveToOuterDisposeScope();
                tokens.Add(next);
            }
        }
        return new Result
        {
            Tokens = torch.cat(tokens, 1).MoveToOuterDisposeScope(),
            StepLogits = collectStepLogits ? torch.cat(stepLogits, 1).MoveToOuterDisposeScope() : null,
        };
    }
}
