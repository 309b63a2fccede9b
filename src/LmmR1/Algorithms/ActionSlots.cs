// Where the actions sit in a batch of left-padded sequences (openrlhf/models/actor.py Actor.forward): the last A
// tokens of each [B, S] row are the action slots, and position j predicts token j + 1, so the positions that predict
// the actions are S−1−A … S−2 (upstream's `[:, :-1][:, -A:]`). The one place this offset is computed: the actor's
// log-probs and entropy, the critic's values and the golden tests all read through it.
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class ActionSlots
{
    /// <summary>The positions of <paramref name="perPosition"/> [B, S, …] (logits or hidden states) that predict the
    /// last <paramref name="numActions"/> tokens → [B, A, …] (a view).</summary>
    public static Tensor Predicting(Tensor perPosition, long numActions)
    {
        long s = perPosition.shape[1];
        if (numActions > s - 1) throw new ArgumentException($"{numActions} actions do not fit a sequence of {s} positions");
        return perPosition.narrow(1, s - 1 - numActions, numActions);
    }

    /// <summary>The action tokens: the last <paramref name="numActions"/> columns of sequences [B, S] → [B, A] (a view).</summary>
    public static Tensor Actions(Tensor sequences, long numActions)
    {
        long s = sequences.shape[1];
        if (numActions > s - 1) throw new ArgumentException($"{numActions} actions do not fit a sequence of {s} tokens");
        return sequences.narrow(1, s - numActions, numActions);
    }
}
