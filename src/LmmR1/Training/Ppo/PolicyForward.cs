// The actor's forward over a collated micro-batch (openrlhf/models/actor.py Actor.forward): hidden states of the
// whole sequence (vision tower included), then lm_head and log_softmax(logits / T) only at the A action slots — the
// positions S−1−A … S−2 that predict the last A tokens (ActionSlots; the golden tests check LogProbs.ForActions and
// Entropy.FromLogits on the same slots); with --packing_samples the same slots of the padding-free forward.
// Departures: logits are never built for prompt positions, which upstream computes and discards (a 4k-token prompt ×
// 151k vocabulary in fp32 per row), nor whole for the actions: the chunked head (QwenVLModel.HeadLogProbs) holds one
// chunk of positions at a time, forward and backward, unless the entropy itself is trained (--entropy_loss_coef).
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
        var (lp, _) = HeadForward(model, e, temperature, entropy: false);
        return lp.MoveToOuterDisposeScope();
    }

    /// <summary>Action log-probs and the entropy [B, A] of the raw logits at the same slots (upstream computes it before
    /// the temperature division). The entropy is differentiable only with <paramref name="entropyGrad"/> (then the
    /// action logits are built whole, as upstream); else it is computed without grad, for logging, next to the
    /// log-probs of the chunked head.</summary>
    public static (Tensor LogProbs, Tensor Entropy) ActionLogProbsAndEntropy(QwenVLModel model, Experience e, double temperature, bool entropyGrad)
    {
        using var scope = torch.NewDisposeScope();
        if (!entropyGrad)
        {
            var (lp, ent) = HeadForward(model, e, temperature, entropy: true);
            return (lp.MoveToOuterDisposeScope(), ent!.MoveToOuterDisposeScope());
        }
        long a = e.NumActions;
        var logits = model.LmHead(ActionHidden(model, e));                                             // [B, A, V]
        var lpFull = LogProbs.ForActions(logits, ActionSlots.Actions(e.Sequences, a), e.ActionMask, temperature);   // [B, A] fp32
        return (lpFull.MoveToOuterDisposeScope(), Entropy.FromLogits(logits).MoveToOuterDisposeScope());
    }

    /// <summary>Final hidden states [B, A, H] at the action slots (the positions predicting the last A tokens), in
    /// the caller's scope: from the padded forward, or with e.Packing from the padding-free one (same slots).</summary>
    public static Tensor ActionHidden(QwenVLModel model, Experience e)
    {
        long a = e.NumActions;
        var features = e.ForwardImageFeatures(model);
        if (e.Packing is { } packed)
        {
            var hidden = model.ForwardPacked(e.Sequences, e.AttentionMask, packed, e.ImageGridThw, features);   // [1, T, H]
            var index = packed.ActionSlotIndex(a, hidden.device);
            return hidden.squeeze(0).index_select(0, index).view(e.BatchSize, a, hidden.shape[^1]);
        }
        var output = model.Forward(e.Sequences, e.AttentionMask, imageGridThw: e.ImageGridThw, imageEmbeds: features, logitsForLast: 0);
        return ActionSlots.Predicting(output.Hidden, a);
    }

    // → log-probs [B, A] fp32 (0 where the action mask is 0) and, when asked, the raw entropy [B, A] (no grad), through
    // the chunked head (QwenVLModel.HeadLogProbs: no [B, A, V] logits), in the caller's scope.
    static (Tensor LogProbs, Tensor? Entropy) HeadForward(QwenVLModel model, Experience e, double temperature, bool entropy)
    {
        long a = e.NumActions;
        var (lp, ent) = model.HeadLogProbs(ActionHidden(model, e), ActionSlots.Actions(e.Sequences, a), temperature, entropy);
        return (LogProbs.Masked(lp, e.ActionMask), ent);
    }
}
