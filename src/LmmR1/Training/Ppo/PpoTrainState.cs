// The PPO loop's state in one place (what a checkpoint must restore), the random streams it derives from --seed,
// and the per-step report the trainer raises.
namespace LmmR1.Training.Ppo;

/// <summary>Everything that advances during a run (what a checkpoint must restore), in one place. The random streams
/// are derived from --seed and these counters (<see cref="PpoSeeds"/>), so there is no hidden RNG state.</summary>
public sealed record PpoTrainState
{
    /// <summary>Completed global steps (rollouts trained on).</summary>
    public long GlobalStep { get; set; }
    /// <summary>Prompts consumed so far (upstream total_consumed_samples).</summary>
    public long ConsumedPrompts { get; set; }
    /// <summary>Samples generated and trained on so far (prompts × n_samples_per_prompt).</summary>
    public long ConsumedSamples { get; set; }
    /// <summary>Current episode (pass over the prompt set), 0-based.</summary>
    public int Episode { get; set; }
    /// <summary>Next rollout batch within the episode's shuffled prompt order.</summary>
    public long RolloutInEpisode { get; set; }
    /// <summary>Optimizer steps taken (the schedules' positions).</summary>
    public long ActorOptimizerSteps { get; set; }
    public long CriticOptimizerSteps { get; set; }
    /// <summary>The KL coefficient β.</summary>
    public double KlCoef { get; set; }
    /// <summary>Optimizer steps skipped in a row for a non-finite loss or gradient (--max_nonfinite_steps).</summary>
    public int ActorNonFiniteInARow { get; set; }
    public int CriticNonFiniteInARow { get; set; }
}

/// <summary>Every random stream of a PPO run as a pure function of --seed and the loop counters (what makes a resumed
/// run bit-identical). The prompt order of an episode is PromptDataset.ShuffledOrder (seed + episode).</summary>
public static class PpoSeeds
{
    /// <summary>The engine's counter-based sampling seed of a global step (evaluation uses negative "steps").</summary>
    public static ulong Sampling(int seed, long globalStep) => unchecked((ulong)seed * 1_000_003UL + (ulong)globalStep);

    /// <summary>The permutation seed of one PPO epoch's micro-batches over a rollout.</summary>
    public static int EpochShuffle(int seed, long globalStep, int epoch) => unchecked(seed * 7919 + (int)globalStep * 104729 + epoch);

    public const string SamplingRule = "counter-based, seed·1000003 + global step";
    public const string EpochShuffleRule = "permutation seeded by seed·7919 + step·104729 + epoch";
    public const string PromptOrderRule = "permutation seeded by seed + episode";
}

/// <summary>Progress within a step: a phase ("generate", "update", "save") and how far it is (generate counts
/// samples and tokens, update counts micro-batches).</summary>
public sealed record TrainProgress(long Step, string Phase, long Done, long Total, long Tokens);

/// <summary>What one global step did: its metrics and the first sample, for people.</summary>
public sealed record PpoStepReport(long GlobalStep, PpoStepMetrics Metrics, string FirstSample, double FirstReward)
{
    /// <summary>The first --log_samples generations of the step with their rewards (what samples.jsonl gets).</summary>
    public IReadOnlyList<Logging.GeneratedSample> Samples { get; init; } = [];
}

/// <summary>Why <see cref="PpoTrainer.Fit"/> returned: StoppedEarly is null when the run reached its end (and the
/// final model was saved); LastCheckpoint is the newest checkpoint written or resumed from (null: none).</summary>
public sealed record PpoFitResult(string? StoppedEarly, string? LastCheckpoint);
