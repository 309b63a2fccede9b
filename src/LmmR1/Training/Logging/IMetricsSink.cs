// Where trainers send their scalar metrics: MetricsLog (metrics.jsonl + TensorBoard), or anything a caller plugs in
// (the demo's live view, tests).
namespace LmmR1.Training.Logging;

public interface IMetricsSink
{
    /// <summary>One set of scalars at a global step (names like "train/reward", "time/generate").</summary>
    void Log(long step, IReadOnlyDictionary<string, double> metrics);
}
