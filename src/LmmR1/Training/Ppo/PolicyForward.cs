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
    /// <summary>Action log-probs [B, A] fp32, 0 on padding (differentiable when grad mode is on).</summary>
    public static Tensor ActionLogProbs(QwenVLModel model, Experience e, double temperature)
    {
        using var scope = torch.NewDisposeScope();
        var (lp, _) = Forward(model, e, temperature);
        return lp.MoveToOuterDisposeScope();
    }

    /// <summary>Action log-probs and the entropy [B, A] of the raw logits at the same slots (upstream computes it before
    /// the temperature division). The entropy is differentiable only with <paramref name="entropyGrad"/> (else it is
    /// computed without grad, for logging).</summary>
    public static (Tensor LogProbs, Tensor Entropy) ActionLogProbsAndEntropy(QwenVLModel model, Experience e, double temperature, bool entropyGrad)
    {
        using var scope = torch.NewDisposeScope();
        var (lp, logits) = Forward(model, e, temperature);
        Tensor entropy;
        if (entropyGrad) entropy = Entropy.FromLogits(logits);                                         // [B, A] fp32
        else
            using (torch.no_grad()) entropy = Entropy.FromLogits(logits.detach());
        return (lp.MoveToOuterDisposeScope(), entropy.MoveToOuterDisposeScope());
    }

    // → log-probs [B, A] fp32 and the action logits [B, A, V] they came from (in the caller's scope).
    static (Tensor LogProbs, Tensor ActionLogits) Forward(QwenVLModel model, Experience e, double temperature)
    {
        long a = e.NumActions;
        var output = model.Forward(e.Sequences, e.AttentionMask, imageGridThw: e.ImageGridThw, imageEmbeds: e.ImageFeatures(model), logitsForLast: 0);
        var logits = model.LmHead(ActionSlots.Predicting(output.Hidden, a));                          // [B, A, V]
        return (LogProbs.ForActions(logits, ActionSlots.Actions(e.Sequences, a), e.ActionMask, temperature), logits);   // [B, A] fp32
    }
}
