// Where trainers send their scalar metrics and sampled generations: MetricsLog (metrics.jsonl, samples.jsonl,
// TensorBoard), or anything a caller plugs in (the demo's live view, tests).
namespace LmmR1.Training.Logging;

public interface IMetricsSink
{
    /// <summary>One set of scalars at a global step (names like "train/reward", "time/generate").</summary>
    void Log(long step, IReadOnlyDictionary<string, double> metrics);

    /// <summary>A few generations of a logging step with their rewards (default: ignored).</summary>
    void LogSamples(long step, IReadOnlyList<GeneratedSample> samples) { }
}

/// <summary>One generation as logged: prompt and response text (special tokens dropped), label and reward parts.</summary>
public sealed record GeneratedSample(int Index, string Prompt, string Response, string Label, double Reward, double FormatReward,
                                     double AccuracyReward, int ResponseLength);
