// summary.json of `lmmr1 demo`: {"stages": [{"name", "task", "accuracy_before", "accuracy_after", "eval_samples",
// "seconds"}, …]} as the issue specifies, each stage with extras (gain and its paired standard error, greedy
// accuracy, format rate, per-task numbers, the reward curve of RL stages), plus run-wide fields (seed, mode, wall time,
// the evaluation protocol, the model size, a blind-image check).
using System.Text.Json;
using System.Text.Json.Serialization;

namespace LmmR1.Demo;

public sealed record DemoTaskResult
{
    [JsonPropertyName("accuracy_before")] public required double AccuracyBefore { get; init; }
    [JsonPropertyName("accuracy_after")] public required double AccuracyAfter { get; init; }
    [JsonPropertyName("greedy_before")] public double? GreedyBefore { get; init; }
    [JsonPropertyName("greedy_after")] public double? GreedyAfter { get; init; }
    [JsonPropertyName("format_before")] public required double FormatBefore { get; init; }
    [JsonPropertyName("format_after")] public required double FormatAfter { get; init; }
    [JsonPropertyName("eval_prompts")] public required int EvalPrompts { get; init; }
    [JsonPropertyName("eval_samples")] public required int EvalSamples { get; init; }
}

public sealed record DemoStageResult
{
    /// <summary>sft, fre or mgt.</summary>
    [JsonPropertyName("name")] public required string Name { get; init; }
    /// <summary>What the stage trains on and is measured on: text-arithmetic, image-shapes, or both.</summary>
    [JsonPropertyName("task")] public required string Task { get; init; }
    /// <summary>Held-out pass@1 (mean accuracy over samples at the training temperature) before and after the stage.</summary>
    [JsonPropertyName("accuracy_before")] public required double AccuracyBefore { get; init; }
    [JsonPropertyName("accuracy_after")] public required double AccuracyAfter { get; init; }
    /// <summary>Held-out samples behind each accuracy (prompts × samples per prompt).</summary>
    [JsonPropertyName("eval_samples")] public required int EvalSamples { get; init; }
    /// <summary>Wall time of the stage's training (evaluations excluded).</summary>
    [JsonPropertyName("seconds")] public required double Seconds { get; init; }

    /// <summary>The checkpoint the stage started from (relative to the output folder): MGT starts from FRE's.</summary>
    [JsonPropertyName("init_from")] public required string InitFrom { get; init; }
    [JsonPropertyName("gain")] public required double Gain { get; init; }
    /// <summary>Standard error of the gain over held-out prompts (paired: same prompts, same random streams).</summary>
    [JsonPropertyName("gain_stderr")] public required double GainStdErr { get; init; }
    [JsonPropertyName("greedy_before")] public double? GreedyBefore { get; init; }
    [JsonPropertyName("greedy_after")] public double? GreedyAfter { get; init; }
    [JsonPropertyName("eval_prompts")] public required int EvalPrompts { get; init; }
    /// <summary>Per datasource (arithmetic, count, compare) of the stage's held-out set.</summary>
    [JsonPropertyName("by_task")] public required IReadOnlyDictionary<string, DemoTaskResult> ByTask { get; init; }
    /// <summary>What the stage did: steps, batch, learning rate, estimator.</summary>
    [JsonPropertyName("recipe")] public required string Recipe { get; init; }
    /// <summary>RL stages: mean rollout reward per global step (0 … 1.5).</summary>
    [JsonPropertyName("reward_curve")] public IReadOnlyList<double>? RewardCurve { get; init; }
    /// <summary>RL stages: mean accuracy reward per global step.</summary>
    [JsonPropertyName("accuracy_reward_curve")] public IReadOnlyList<double>? AccuracyRewardCurve { get; init; }
    /// <summary>SFT: the training loss per step.</summary>
    [JsonPropertyName("loss_curve")] public IReadOnlyList<double>? LossCurve { get; init; }
}

/// <summary>Held-out pass@1 of each checkpoint on each task (rows: init, sft, fre, mgt).</summary>
public sealed record DemoCheckpointAccuracy(
    [property: JsonPropertyName("checkpoint")] string Checkpoint,
    [property: JsonPropertyName("text")] double Text,
    [property: JsonPropertyName("image")] double Image);

public sealed record DemoSummary
{
    [JsonPropertyName("stages")] public required IReadOnlyList<DemoStageResult> Stages { get; init; }
    [JsonPropertyName("seed")] public required int Seed { get; init; }
    [JsonPropertyName("mode")] public required string Mode { get; init; }
    [JsonPropertyName("device")] public required string Device { get; init; }
    [JsonPropertyName("threads")] public required int Threads { get; init; }
    [JsonPropertyName("seconds")] public required double Seconds { get; init; }
    /// <summary>How accuracy is measured.</summary>
    [JsonPropertyName("eval")] public required string Eval { get; init; }
    [JsonPropertyName("model")] public required string Model { get; init; }
    [JsonPropertyName("parameters")] public required long Parameters { get; init; }
    /// <summary>Every checkpoint on both held-out sets (transfer from FRE to images, retention after MGT).</summary>
    [JsonPropertyName("checkpoints")] public required IReadOnlyList<DemoCheckpointAccuracy> Checkpoints { get; init; }
    /// <summary>The final model on the image held-out set with every image replaced by a blank one, and the chance level
    /// of a guess that ignores the image: the image task cannot be solved from the text.</summary>
    [JsonPropertyName("blind_image_accuracy")] public required double BlindImageAccuracy { get; init; }
    [JsonPropertyName("image_chance_accuracy")] public required double ImageChanceAccuracy { get; init; }

    public static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    public static DemoSummary FromJson(string json) =>
        JsonSerializer.Deserialize<DemoSummary>(json, JsonOptions) ?? throw new JsonException("summary.json is empty");
}
