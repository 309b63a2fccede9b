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
    /// <summary>Current episode (pass over the prompt set), 0-based.</summary>
    public int Episode { get; set; }
    /// <summary>Next rollout batch within the episode's shuffled prompt order.</summary>
    public long RolloutInEpisode { get; set; }
    /// <summary>Optimizer steps taken (the schedules' positions).</summary>
    public long ActorOptimizerSteps { get; set; }
    public long CriticOptimizerSteps { get; set; }
    /// <summary>The KL coefficient β.</summary>
    public double KlCoef { get; set; }
}

/// <summary>What one global step did: its metrics (as logged) and the first sample, for people.</summary>
public sealed record PpoStepReport(long GlobalStep, IReadOnlyDictionary<string, double> Metrics, string FirstSample, double FirstReward);
