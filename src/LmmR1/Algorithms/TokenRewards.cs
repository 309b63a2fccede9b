// Per-token rewards (openrlhf/models/utils.py compute_reward): r_t = −β·kl_t, plus the clipped scalar reward at
// the last action token (the last position whose action_mask is 1). Departs from the reference doc's order: the
// clip to --reward_clip_range happens here, after group shaping, not before it.
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public static class TokenRewards
{
    /// <summary>reward: [B] scalar (already group-shaped) reward per sequence; kl: [B, A] per-token KL (pass zeros, or
    /// klCoef = 0, under --use_kl_loss or without a reference model, as LMM-R1 does); actionMask: [B, A].
    /// → [B, A] fp32. β ≤ 0 counts as 0. clipRange null = no clipping.</summary>
    public static Tensor Compute(Tensor reward, double klCoef, Tensor kl, Tensor actionMask, (double Min, double Max)? clipRange)
    {
        Precision.SameShape(kl, actionMask, "kl", "actionMask");
        if (reward.numel() != kl.shape[0])
            throw new ArgumentException($"{reward.numel()} rewards for a batch of {kl.shape[0]} sequences");
        if (klCoef <= 0.0) klCoef = 0.0;
        using var scope = NewDisposeScope();
        var klf = Precision.Compute(kl);                                                   // [B, A]
        var r = Precision.Compute(reward).reshape(-1).to(klf.device);                      // [B]
        if (clipRange is { } c) r = r.ClampS(c.Min, c.Max);
        var klReward = klf.MulS(-klCoef);
        var last = LastActionIndex(actionMask);                                            // [B, 1]
        var lastReward = zeros_like(klf).scatter(1, last, r.unsqueeze(1).to_type(klf.dtype));
        return lastReward.Plus(klReward).MoveToOuterDisposeScope();
    }

    /// <summary>Index of the last nonzero of each row of actionMask [B, A] → [B, 1] int64, found as upstream does:
    /// A − 1 − argmax(fliplr(mask)). A row with no valid token gives A − 1 (upstream never has one: it forces the
    /// first action valid). Works for right-padded rows, left-padded rows and holes alike.</summary>
    public static Tensor LastActionIndex(Tensor actionMask)
    {
        using var scope = NewDisposeScope();
        long a = actionMask.shape[1];
        var flipped = actionMask.NeS(0).to_type(ScalarType.Int64).fliplr();               // [B, A]
        var idx = flipped.argmax(1, keepdim: true).RSubS(a - 1);                              // (A − 1) − argmax
        return idx.MoveToOuterDisposeScope();
    }
}
