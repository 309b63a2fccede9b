// Supervised fine-tuning (OpenRLHF cli/train_sft.py + trainer/sft_trainer.py), used to warm a policy up before RL:
// epochs over the dataset in a seeded shuffle (seed + epoch, drop_last), micro-batches of micro_train_batch_size
// with gradient accumulation to train_batch_size, loss = token-mean of −log p over the response tokens of the
// micro-batch (SFTLoss, token_level_loss) divided by the accumulation steps; AdamW with the cosine_with_min_lr
// schedule over ceil(max_epochs · len // train_batch_size) steps. Departure: logits are computed only at the loss
// positions (upstream builds them for the whole sequence).
using System.Diagnostics;
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Training.Logging;
using LmmR1.Training.Optimization;
using TorchSharp;
using static TorchSharp.torch;

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
        return this;
    }

    static InputException Flag(string flag, string message) => InputException.At(null, null, flag, message);
}

public sealed class SftTrainer : IDisposable
{
    readonly SftConfig config;
    readonly QwenVLModel model;
    readonly SftDataset data;
    readonly IMetricsSink? metrics;
    readonly Action<string> log;
    readonly long padId;

    public ModelOptimizer Optimizer { get; }
    /// <summary>len(dataset) // train_batch_size.</summary>
    public long StepsPerEpoch { get; }
    /// <summary>ceil(max_epochs · steps per epoch): the schedule length.</summary>
    public long MaxSteps { get; }
    public long GlobalStep { get; private set; }
    /// <summary>Mean loss of every optimizer step so far, in order.</summary>
    public List<double> LossHistory { get; } = [];

    public SftTrainer(SftConfig config, QwenVLModel model, SftDataset data, long padTokenId, IMetricsSink? metrics = null, Action<string>? log = null)
    {
        config.Validate();
        this.config = config;
        this.model = model;
        this.data = data;
        this.metrics = metrics;
        this.log = log ?? (_ => { });
        padId = padTokenId;
        StepsPerEpoch = data.Count / config.TrainBatchSize;
        if (StepsPerEpoch < 1)
            throw InputException.At(null, null, "--train_batch_size", $"{config.TrainBatchSize} samples per step, but the dataset holds only {data.Count}");
        MaxSteps = (long)Math.Ceiling(config.MaxEpochs * (double)StepsPerEpoch);
        Ppo.PpoModels.Freeze(model, config.FreezePrefix);
        model.GradientCheckpointing = config.GradientCheckpointing;
        Optimizer = new ModelOptimizer(model.named_parameters().Select(p => (p.name, p.parameter)),
            LrSchedule.FromRatio(config.LearningRate, MaxSteps, config.LrWarmupRatio), config.Beta1, config.Beta2, config.L2, config.MaxNorm);
    }

    public void Fit(CancellationToken ct = default)
    {
        int micro = config.MicroTrainBatchSize;
        int accum = config.TrainBatchSize / micro;
        for (int epoch = 0; epoch < config.MaxEpochs; epoch++)
        {
            var order = DatasetMixer.Permutation(data.Count, unchecked(config.Seed + epoch));
            double lossSum = 0;
            int pending = 0;
            var clock = Stopwatch.StartNew();
            for (int s = 0; s + micro <= order.Length; s += micro)
            {
                ct.ThrowIfCancellationRequested();
                var batch = order.Skip(s).Take(micro).Select(i => data[i]).ToList();
                using (var scope = torch.NewDisposeScope())
                {
                    var loss = Loss(batch);
                    (loss / accum).backward();
                    QwenVLModel.ReleaseBackwardHandles();
                    lossSum += loss.item<float>();
                }
                if (++pending < accum) continue;
                var r = Optimizer.Step();
                GlobalStep++;
                double mean = lossSum / accum;
                LossHistory.Add(mean);
                if (GlobalStep % config.LoggingSteps == 0)
                    metrics?.Log(GlobalStep, new Dictionary<string, double>
                    {
                        ["train/gpt_loss"] = mean, ["train/loss_mean"] = mean, ["train/lr"] = Optimizer.CurrentLearningRate,
                        ["train/grad_norm"] = r.GradNorm, ["time/step"] = clock.Elapsed.TotalSeconds,
                    });
                log($"sft step {GlobalStep}/{MaxSteps} (epoch {epoch + 1}): loss {mean:F4}, lr {r.LearningRate:G3}, grad norm {r.GradNorm:G3}");
                lossSum = 0;
                pending = 0;
                clock.Restart();
            }
            // A partial accumulation at the end of an epoch is dropped with its gradients (len // train_batch_size steps).
            if (pending > 0) Optimizer.ZeroGrad();
        }
    }

    /// <summary>Token-mean −log p(response tokens) of a micro-batch (left-padded; fp32 log-softmax over the vocabulary
    /// at the loss positions only) → 0-d, differentiable.</summary>
    public Tensor Loss(IReadOnlyList<SftSample> batch)
    {
        using var scope = torch.NewDisposeScope();
        var device = model.Device;
        int b = batch.Count, s = batch.Max(x => x.Length);
        var ids = new long[b * s];
        var att = new long[b * s];
        var mask = new bool[b * (s - 1)];
        Array.Fill(ids, padId);
        for (int r = 0; r < b; r++)
        {
            var x = batch[r];
            int off = s - x.Length;
            Array.Copy(x.InputIds, 0, ids, r * s + off, x.Length);
            Array.Fill(att, 1L, r * s + off, x.Length);
            var m = x.LossMask();                                      // [L − 1], position t predicts token t + 1
            for (int t = 0; t < m.Length; t++) mask[r * (s - 1) + off + t] = m[t];
        }
        var seq = torch.tensor(ids, [b, s], device: device);
        var withImages = batch.Where(x => x.PixelValues is not null).ToList();
        Tensor? pixels = withImages.Count == 0 ? null : torch.cat(withImages.Select(x => x.PixelValues!).ToArray(), 0);
        Tensor? grid = withImages.Count == 0 ? null : torch.cat(withImages.Select(x => x.ImageGridThw!).ToArray(), 0);
        var output = model.Forward(seq, torch.tensor(att, [b, s], device: device), pixels, grid, logitsForLast: 0);
        var valid = torch.tensor(mask, [b, s - 1], device: device);                                   // [B, S−1]
        var hidden = output.Hidden.narrow(1, 0, s - 1)[valid];                                         // [N, H]
        var labels = seq.narrow(1, 1, s - 1)[valid];                                                   // [N]
        var logits = model.LmHead(hidden).unsqueeze(0);                                                // [1, N, V]
        var logp = LogProbs.FromLogits(logits, labels.unsqueeze(0));                                    // [1, N] fp32
        return (-logp.mean()).MoveToOuterDisposeScope();
    }

    public void Dispose() => Optimizer.Dispose();
}
