// The metrics of one PPO step as typed records, turned into OpenRLHF's logged names (train/*, time/*) in one place
// (ToLog). Rollout means are over samples (upstream averages per-micro-batch means of the same values over
// equal-sized micro-batches, which is the same number); update means are over micro-batches of all epochs.
using LmmR1.Rewards;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

/// <summary>Rollout-wide means of the per-sample info. Kl: the mean per-sample KL the reward used (0 without one).
/// RolloutLogProbGap: mean |engine log-prob − recomputed log-prob| over all action tokens.</summary>
public sealed record RolloutMetrics(double Reward, double FormatReward, double AccReward, double Return, double Kl,
                                    double ResponseLength, double TotalLength, double RolloutLogProbGap)
{
    /// <summary>Samples in the rollout.</summary>
    public int Samples { get; init; }

    /// <summary>Host copies of the rollout's per-token tensors, reduced per sample as upstream's experience.info does.</summary>
    public static RolloutMetrics Of(Rollout rollout, IReadOnlyList<RewardResult> scores, Tensor oldLogProbs, RolloutAdvantages adv)
    {
        var items = rollout.Items;
        var kl = ActionTensors.PerRow(adv.Kl, items);
        var old = ActionTensors.PerRow(oldLogProbs, items);
        float[] returnSum;
        using (NewDisposeScope()) returnSum = adv.ReturnSum.to(ScalarType.Float32, CPU).data<float>().ToArray();
        double gapSum = 0;
        long gapCount = 0;
        for (int r = 0; r < items.Count; r++)
        {
            var eng = items[r].RolloutLogProbs;
            for (int t = 0; t < eng.Length; t++) { gapSum += Math.Abs(eng[t] - old[r][t]); gapCount++; }
        }
        return new RolloutMetrics(
            Reward: scores.Average(s => s.Reward),
            FormatReward: scores.Average(s => s.FormatReward),
            AccReward: scores.Average(s => s.AccuracyReward),
            Return: returnSum.Average(x => (double)x),
            Kl: kl.Average(row => row.Length == 0 ? 0 : row.Average(x => (double)x)),
            ResponseLength: items.Average(i => (double)i.ResponseLength),
            TotalLength: items.Average(i => (double)i.TotalLength),
            RolloutLogProbGap: gapCount == 0 ? 0 : gapSum / gapCount) { Samples = items.Count };
    }
}

/// <summary>The actor update's means. KlLoss: only with --use_kl_loss; EntropyLoss: only with entropy_loss_coef &gt; 1e-8
/// (the same value as Entropy, logged under its own name as upstream does). GradNorm: mean over the optimizer steps
/// taken (NaN when all were skipped).</summary>
public sealed record ActorMetrics(double PolicyLoss, double ClipFrac, double ApproxKl, double? KlLoss, double? EntropyLoss, double Entropy,
                                  double ActorLr, double GradNorm, int SkippedSteps)
{
    /// <summary>Share of tokens where the dual clip bound applied (only with --dual_clip).</summary>
    public double? ClipFracLower { get; init; }
}

public sealed record CriticMetrics(double CriticLoss, double Values, double CriticClipFrac, double CriticLr, double CriticGradNorm,
                                   int CriticSkippedSteps);

/// <summary>One step's metrics. Actor is null while --freezing_actor_steps holds the actor, Critic without a critic.
/// Seconds: wall time per phase up to logging; StepSeconds: the step up to logging.</summary>
public sealed record PpoStepMetrics(RolloutMetrics Rollout, ActorMetrics? Actor, CriticMetrics? Critic, double KlCoef,
                                    IReadOnlyDictionary<string, double> Seconds, double StepSeconds)
{
    /// <summary>Dynamic filtering's counts (null when it is off).</summary>
    public FilterMetrics? Filter { get; init; }
    /// <summary>DAPO's overlong shaping: mean penalty added to the rewards and samples penalised (null when off).</summary>
    public (double MeanPenalty, int Penalised)? Overlong { get; init; }
    /// <summary>Samples cut at --generate_max_len without a stop token (counted whether or not
    /// --mask_truncated_completions leaves them out of the loss).</summary>
    public int Truncated { get; init; }
    /// <summary>Samples whose old log-probs came from the update's own forward instead of the separate pass
    /// (OldLogProbPlan; not logged to metrics.jsonl).</summary>
    public int OldLogProbsFromUpdate { get; init; }

    /// <summary>What train/kl logs and the KL controller reads (ppo_trainer.fit's status["kl"]): the actor's KL loss
    /// with --use_kl_loss, else the rollout's KL.</summary>
    public double Kl => Actor?.KlLoss ?? Rollout.Kl;

    /// <summary>The logged names and values (metrics.jsonl, TensorBoard).</summary>
    public Dictionary<string, double> ToLog()
    {
        var d = new Dictionary<string, double>(StringComparer.Ordinal)
        {
            ["train/reward"] = Rollout.Reward,
            ["train/format_reward"] = Rollout.FormatReward,
            ["train/acc_reward"] = Rollout.AccReward,
            ["train/return"] = Rollout.Return,
            ["train/kl"] = Kl,
            ["train/response_length"] = Rollout.ResponseLength,
            ["train/total_length"] = Rollout.TotalLength,
            ["train/rollout_logprob_gap"] = Rollout.RolloutLogProbGap,
            ["train/kl_coef"] = KlCoef,
            ["train/truncated_ratio"] = Rollout.Samples == 0 ? 0 : (double)Truncated / Rollout.Samples,
        };
        if (Filter is { } f)
        {
            d["train/filter_groups_kept"] = f.GroupsKept;
            d["train/filter_groups_dropped"] = f.GroupsAllEqual + f.GroupsOutOfRange;
            d["train/filter_groups_filled"] = f.GroupsFilled;
            d["train/filter_extra_rounds"] = f.ExtraRounds;
            d["train/filter_extra_prompts"] = f.ExtraPrompts;
            d["train/dynamic_filtering_pass_rate"] = f.PassRate;
        }
        if (Overlong is { } o)
        {
            d["train/overlong_penalty"] = o.MeanPenalty;
            d["train/overlong_penalised"] = o.Penalised;
        }
        if (Critic is { } c)
        {
            d["train/critic_loss"] = c.CriticLoss;
            d["train/values"] = c.Values;
            d["train/critic_clip_frac"] = c.CriticClipFrac;
            d["train/critic_lr"] = c.CriticLr;
            d["train/critic_grad_norm"] = c.CriticGradNorm;
            d["train/critic_skipped_steps"] = c.CriticSkippedSteps;
        }
        if (Actor is { } a)
        {
            d["train/policy_loss"] = a.PolicyLoss;
            d["train/clip_frac"] = a.ClipFrac;
            if (a.ClipFracLower is { } lower) d["train/clip_frac_lower"] = lower;
            d["train/approx_kl"] = a.ApproxKl;
            if (a.EntropyLoss is { } el) d["train/entropy_loss"] = el;
            d["train/entropy"] = a.Entropy;
            d["train/actor_lr"] = a.ActorLr;
            d["train/grad_norm"] = a.GradNorm;
            d["train/skipped_steps"] = a.SkippedSteps;
        }
        foreach (var (k, v) in Seconds) d["time/" + k] = v;
        d["time/step"] = StepSeconds;
        return d;
    }
}
