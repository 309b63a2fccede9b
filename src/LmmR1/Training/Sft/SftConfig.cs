// The configuration of `lmmr1 sft` (OpenRLHF cli/train_sft.py flags and defaults that apply to one process),
// validated once with InputExceptions naming the flag.
using LmmR1.Infrastructure;

namespace LmmR1.Training.Sft;

public sealed record SftConfig
{
    public string? Pretrain { get; init; }
    public SftDataOptions Data { get; init; } = new();
    public int TrainBatchSize { get; init; } = 128;
    public int MicroTrainBatchSize { get; init; } = 8;
    public int MaxEpochs { get; init; } = 2;
    public double LearningRate { get; init; } = 5e-6;
    public double LrWarmupRatio { get; init; } = 0.03;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double L2 { get; init; }
    public double MaxNorm { get; init; } = 1.0;
    public int Seed { get; init; } = 42;
    public bool Bf16 { get; init; }
    public bool GradientCheckpointing { get; init; }
    public IReadOnlyList<string> FreezePrefix { get; init; } = [];
    public string SavePath { get; init; } = "./ckpt";
    public string Device { get; init; } = "cpu";
    public string? ProcessorKwargs { get; init; }
    public long LoggingSteps { get; init; } = 1;
    public string? UseTensorboard { get; init; }
    /// <summary>--lora_rank &gt; 0 and the other LoRA flags (as `lmmr1 train`): adapters on the frozen model.</summary>
    public Models.Qwen.LoraOptions? Lora { get; init; }

    public SftConfig Validate()
    {
        if (string.IsNullOrWhiteSpace(Pretrain)) throw Flag("--pretrain", "required: the model folder to fine-tune");
        if (string.IsNullOrWhiteSpace(Data.Dataset)) throw Flag("--dataset", "required: a comma list of .jsonl/.json/.parquet files or folders");
        if (string.IsNullOrWhiteSpace(Data.InputKey)) throw Flag("--input_key", "must not be empty");
        if (Data.MaxLen < 4) throw Flag("--max_len", $"must be ≥ 4, got {Data.MaxLen}");
        if (Data.MaxSamples < 1) throw Flag("--max_samples", $"must be ≥ 1, got {Data.MaxSamples}");
        if (TrainBatchSize < 1) throw Flag("--train_batch_size", $"must be ≥ 1, got {TrainBatchSize}");
        if (MicroTrainBatchSize < 1) throw Flag("--micro_train_batch_size", $"must be ≥ 1, got {MicroTrainBatchSize}");
        if (TrainBatchSize % MicroTrainBatchSize != 0)
            throw Flag("--train_batch_size", $"{TrainBatchSize} is not a multiple of --micro_train_batch_size {MicroTrainBatchSize}");
        if (MaxEpochs < 1) throw Flag("--max_epochs", $"must be ≥ 1, got {MaxEpochs}");
        if (!(LearningRate >= 0) || !double.IsFinite(LearningRate)) throw Flag("--learning_rate", $"must be ≥ 0, got {LearningRate}");
        if (!(LrWarmupRatio >= 0 && LrWarmupRatio <= 1)) throw Flag("--lr_warmup_ratio", $"must be in [0, 1], got {LrWarmupRatio}");
        if (!(Beta1 >= 0 && Beta1 < 1) || !(Beta2 >= 0 && Beta2 < 1)) throw Flag("--adam_betas", $"expected two numbers in [0, 1), got {Beta1} {Beta2}");
        if (!(L2 >= 0)) throw Flag("--l2", $"must be ≥ 0, got {L2}");
        if (!(MaxNorm > 0)) throw Flag("--max_norm", $"must be > 0, got {MaxNorm}");
        if (LoggingSteps < 1) throw Flag("--logging_steps", $"must be ≥ 1, got {LoggingSteps}");
        if (Lora is { } lora)
        {
            lora.Validate();
            if (lora.Dropout > 0 && GradientCheckpointing)
                throw Flag("--lora_dropout", $"{lora.Dropout} with --gradient_checkpointing is not supported (the recomputed layer would draw " +
                                             "another dropout mask); use 0 or drop --gradient_checkpointing");
        }
        return this;
    }

    static InputException Flag(string flag, string message) => InputException.At(null, null, flag, message);
}
