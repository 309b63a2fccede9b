// The PPO loop's state in one place (what a checkpoint must restore) and the per-step report trainers raise.
namespace LmmR1.Training.Ppo;

/// <summary>Everything that advances during a run (what a checkpoint must restore), in one place. The random streams
/// are derived from --seed and these counters (sampling: seed and global step; shuffles: seed, step and epoch;
/// prompt order: seed and episode), so there is no hidden RNG state.</summary>
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

/// <summary>Progress within a step: a phase ("generate", "update", "save") and how far it is (generate counts
/// samples and tokens, update counts micro-batches).</summary>
public sealed record TrainProgress(long Step, string Phase, long Done, long Total, long Tokens);

/// <summary>What one global step did: its metrics (as logged) and the first sample, for people.</summary>
public sealed record PpoStepReport(long GlobalStep, IReadOnlyDictionary<string, double> Metrics, string FirstSample, double FirstReward)
{
    /// <summary>The first --log_samples generations of the step with their rewards (what samples.jsonl gets).</summary>
    public IReadOnlyList<Logging.GeneratedSample> Samples { get; init; } = [];
}
