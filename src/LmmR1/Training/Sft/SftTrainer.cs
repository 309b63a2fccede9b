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
                    loss.DivS((long)accum).backward();
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
