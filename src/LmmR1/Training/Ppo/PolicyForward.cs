// The actor's forward over a collated micro-batch (openrlhf/models/actor.py Actor.forward): hidden states of the
// whole sequence (vision tower included), then lm_head and log_softmax(logits / T) only at the A action slots — the
// positions S−1−A … S−2 that predict the last A tokens (ActionSlots; the golden tests check LogProbs.ForActions and
// Entropy.FromLogits on the same slots). Departure: logits are never built for prompt positions,
// which upstream computes and discards (a 4k-token prompt × 151k vocabulary in fp32 per row).
using LmmR1.Algorithms;
using LmmR1.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

public static class PolicyForward
{
    /// <summary>Action log-probs [B, A] fp32 (0 on padding) and, when asked, the entropy [B, A] of the raw logits at
    /// the same slots (upstream computes it before the temperature division). Differentiable when grad mode is on;
    /// the entropy only with <paramref name="entropyGrad"/> (else it is computed without grad, for logging).</summary>
    public static (Tensor LogProbs, Tensor? Entropy) ActionLogProbs(QwenVLModel model, Experience e, double temperature, bool withEntropy = false,
                                                                    bool entropyGrad = true)
    {
        using var scope = torch.NewDisposeScope();
        long a = e.NumActions;
        var output = model.Forward(e.Sequences, e.AttentionMask, e.PixelValues, e.ImageGridThw, e.ImageEmbeds, logitsForLast: 0);
        var logits = model.LmHead(ActionSlots.Predicting(output.Hidden, a));                          // [B, A, V]
        var lp = LogProbs.ForActions(logits, ActionSlots.Actions(e.Sequences, a), e.ActionMask, temperature);   // [B, A] fp32
        Tensor? entropy = null;
        if (withEntropy && entropyGrad) entropy = Entropy.FromLogits(logits);                          // [B, A] fp32
        else if (withEntropy)
            using (torch.no_grad()) entropy = Entropy.FromLogits(logits.detach());
        return (lp.MoveToOuterDisposeScope(), entropy?.MoveToOuterDisposeScope());
    }
}
