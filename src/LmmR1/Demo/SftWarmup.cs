// The demo's supervised warm-up: next-token cross-entropy on the target responses only (prompt tokens masked), the
// token mean over each batch, AdamW with the trainers' cosine schedule and grad clipping. Batches are built with the
// RL trainer's own pieces (processor, Experience.Collate, PolicyForward: the same forward, vision tower included), so
// SFT and RL see identical inputs. A fixed step budget over a resampled set, unlike `lmmr1 sft`'s trainer
// (Training/Sft: epochs over a jsonl dataset), which the demo's tuned numbers predate.
using LmmR1.Data;
using LmmR1.Models.Qwen;
using LmmR1.Training.Optimization;
using LmmR1.Training.Ppo;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Demo;

public sealed record SftStepReport(int Step, double Loss, double LearningRate, double Seconds);

public static class SftWarmup
{
    /// <summary>Trains <paramref name="model"/> in place on <paramref name="data"/> (the label field holds the target
    /// response). Returns the loss of every step.</summary>
    public static IReadOnlyList<SftStepReport> Run(QwenVLModel model, QwenVLProcessor processor, PromptDataset data, DemoSftSettings s,
                                                   int seed, Action<SftStepReport>? onStep = null, CancellationToken ct = default)
    {
        var tok = processor.Tokenizer;
        int end = tok.TokenToId("<|im_end|>");
        var processed = processor.ProcessMany(data);
        var items = new List<ExperienceItem>(processed.Count);
        for (int i = 0; i < processed.Count; i++)
        {
            var p = processed[i];
            var response = tok.Encode(data[i].Label).Select(t => (long)t).Append(end).ToArray();
            items.Add(new ExperienceItem
            {
                PromptIndex = i, SampleIndex = 0,
                PromptIds = p.InputIds, ResponseIds = response,
                Vision = p.PixelValues is null ? null
                    : new VisionInput { PixelValues = p.PixelValues.DetachFromDisposeScope(), ImageGridThw = p.ImageGridThw!.DetachFromDisposeScope() },
            });
        }
        var reports = new List<SftStepReport>(s.Steps);
        try
        {
            using var opt = new ModelOptimizer(model.named_parameters().Select(p => (p.name, p.parameter)),
                LrSchedule.FromRatio(s.LearningRate, Math.Max(1, s.Steps), s.WarmupRatio), 0.9, 0.95, 0.0, 1.0);
            model.train();
            int[] order = [];
            int pos = 0, epoch = 0;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            for (int step = 1; step <= s.Steps; step++)
            {
                clock.Restart();
                ct.ThrowIfCancellationRequested();
                var batch = new List<ExperienceItem>(s.BatchSize);
                while (batch.Count < s.BatchSize)
                {
                    if (pos == order.Length) { order = DatasetMixer.Permutation(items.Count, unchecked(seed * 31 + epoch++)); pos = 0; }
                    batch.Add(items[order[pos++]]);
                }
                double tokens = batch.Sum(b => b.ResponseLength), loss = 0;
                double lr = opt.CurrentLearningRate;
                for (int start = 0; start < batch.Count; start += s.MicroBatchSize)
                {
                    using var scope = torch.NewDisposeScope();
                    var micro = batch.Skip(start).Take(s.MicroBatchSize).ToList();
                    using var e = Experience.Collate(micro, model.Device, tok.PadTokenId);
                    var (lp, _) = PolicyForward.ActionLogProbs(model, e, 1.0);            // [B, A], 0 on padding
                    var nll = -lp.sum() / tokens;                                          // token mean over the whole batch
                    nll.backward();
                    loss += nll.item<float>();
                }
                opt.Step();
                var report = new SftStepReport(step, loss, lr, clock.Elapsed.TotalSeconds);
                reports.Add(report);
                onStep?.Invoke(report);
            }
        }
        finally
        {
            foreach (var v in items.Select(i => i.Vision)) v?.Dispose();   // they own the processed prompts' tensors
        }
        return reports;
    }
}
