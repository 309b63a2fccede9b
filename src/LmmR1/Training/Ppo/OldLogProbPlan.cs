// Where one step's old log-probs come from (log π_θold: the PPO ratio's denominator, and what the rollout log-prob gap
// compares against). OpenRLHF computes them for every sample in a separate no-grad forward of the actor before the
// update (the "logprobs" phase). For the samples that the update's first optimizer step of its first epoch trains, that
// forward is the same function of the same weights as the update's own forward a moment later (no optimizer step has
// run yet), so their old log-probs are taken from the update's forward, detached: that step's ratio is exactly 1 and
// its gradient the plain policy gradient, as verl's actor does for an on-policy update (dp_actor.update_policy:
// on_policy → old_log_prob = log_prob.detach(), for one mini-batch and one epoch). The update writes them into the
// rollout-wide tensor as it goes, and later optimizer steps and epochs read them there like the separate pass's. The
// separate pass runs only for the other samples: none when the rollout is one train batch (--train_batch_size =
// rollout_batch_size × n_samples_per_prompt), whatever --max_epochs. Departure from OpenRLHF: the same numbers up to
// fp rounding (the separate pass batches by --micro_rollout_batch_size, the update by its shuffled micro-batches).
// The separate pass covers every sample when the old log-probs are needed before the update or the two forwards are
// not the same function: the KL penalty in the reward (--init_kl_coef > 0 without --use_kl_loss: the advantages read
// them), --lora_dropout > 0 (the update's forward draws a dropout mask, the no-grad pass does not), the actor not
// trained this step (--freezing_actor_steps), or --recompute_old_log_prob (for comparisons; the name of a verl fork's
// actor.recompute_old_log_prob, whose False saves the same forward with ppo_epochs 1).
namespace LmmR1.Training.Ppo;

/// <summary>Per rollout row, whether the update's forward provides its old log-prob (<see cref="FromUpdate"/>);
/// the other rows come from the separate pass. <see cref="Why"/>: why every row takes the separate pass (null when some
/// come from the update).</summary>
public sealed record OldLogProbPlan
{
    public required IReadOnlyList<bool> FromUpdate { get; init; }
    public string? Why { get; init; }

    public int Samples => FromUpdate.Count;
    public int FromUpdateCount => FromUpdate.Count(x => x);
    /// <summary>Every row from the update: the separate pass does not run.</summary>
    public bool SkipsSeparatePass => FromUpdateCount == Samples;
    /// <summary>The rows the separate pass computes, ascending.</summary>
    public IReadOnlyList<int> SeparateRows => [.. Enumerable.Range(0, Samples).Where(i => !FromUpdate[i])];

    /// <summary>Why this config needs the separate pass for every sample of a step (null: it need not).</summary>
    public static string? WhySeparate(PpoConfig c, bool trainActor)
    {
        if (c.Optim.RecomputeOldLogProb) return "--recompute_old_log_prob";
        if (c.UsesReference && !c.Algorithm.UseKlLoss) return "the KL penalty in the reward reads them before the update (--init_kl_coef > 0 without --use_kl_loss)";
        if (c.Model.Lora is { Dropout: > 0 } lora) return $"--lora_dropout {lora.Dropout}: the update's forward draws a dropout mask the no-grad pass does not";
        if (!trainActor) return "the actor is not trained this step (--freezing_actor_steps)";
        return null;
    }

    /// <param name="firstStep">The micro-batches (rollout rows) of the update's first optimizer step of epoch 0.</param>
    public static OldLogProbPlan Create(PpoConfig c, bool trainActor, int samples, IEnumerable<long[]> firstStep)
    {
        var fromUpdate = new bool[samples];
        string? why = WhySeparate(c, trainActor);
        if (why is null)
            foreach (var rows in firstStep)
                foreach (long r in rows) fromUpdate[r] = true;
        if (why is null && !fromUpdate.Any(x => x)) why = "the update has no optimizer step over this rollout";
        return new OldLogProbPlan { FromUpdate = fromUpdate, Why = why };
    }

    /// <summary>One line for the run log.</summary>
    public string Describe()
    {
        int k = FromUpdateCount, n = Samples;
        if (k == 0) return $"old log-probs: a separate actor forward for all {n} samples before the update ({Why})";
        if (k == n) return $"old log-probs: from the update's own forward (detached) for all {n} samples — its first optimizer step " +
                           "trains them all before any weight changes — so the separate log-prob pass is skipped (--recompute_old_log_prob runs it)";
        return $"old log-probs: from the update's own forward (detached) for the {k} samples of its first optimizer step, " +
               $"a separate actor forward before the update for the other {n - k}";
    }

    /// <summary>The run-level summary for --dry_run: which samples of each rollout the separate pass covers.</summary>
    public static string DescribeConfig(PpoConfig c)
    {
        long samples = (long)c.Rollout.RolloutBatchSize * c.Rollout.SamplesPerPrompt;
        string? why = WhySeparate(c, trainActor: true);
        if (why is not null) return $"separate actor forward for all {samples} samples before the update ({why})";
        long first = Math.Min(samples, c.Optim.TrainBatchSize);
        string frozen = c.Algorithm.FreezingActorSteps > 0 ? "; a separate forward for all while --freezing_actor_steps holds the actor" : "";
        return first == samples
            ? $"from the update's own forward (the rollout is one train batch): no separate pass{frozen}"
            : $"from the update's own forward for the {first} samples of its first optimizer step, a separate forward for the other {samples - first}{frozen}";
    }
}
