// PNG plots of a run's main curves (ScottPlot 5, rendered with SkiaSharp, no GUI): reward and its format/accuracy
// parts, policy loss, clip fraction, KL, response length, entropy, learning rates, gradient norms, seconds per phase,
// critic loss and values, evaluation pass@1, SFT loss. Always drawn from metrics.jsonl (never from memory), so
// `lmmr1 plot RUN_DIR` redraws byte-identical files from the same log.
using ScottPlot;

namespace LmmR1.Training.Logging;

public static class RunPlots
{
    public const string FolderName = "plots";
    const int Width = 900, Height = 500;

    /// <summary>One figure: file name, title, y label, and which metrics it draws.</summary>
    sealed record Figure(string File, string Title, string YLabel, Func<string, bool> Selects);

    static Func<string, bool> Keys(params string[] keys) => k => keys.Contains(k);

    static readonly Figure[] Figures =
    [
        new("reward.png", "Reward (format + accuracy)", "reward", Keys("train/reward", "train/format_reward", "train/acc_reward")),
        new("policy_loss.png", "Policy loss", "loss", Keys("train/policy_loss")),
        new("clip_frac.png", "PPO clip fraction", "fraction", Keys("train/clip_frac")),
        new("kl.png", "KL to the reference", "KL", Keys("train/kl")),
        new("response_length.png", "Response length", "tokens", Keys("train/response_length")),
        new("entropy.png", "Policy entropy", "nats", Keys("train/entropy")),
        new("lr.png", "Learning rate", "lr", Keys("train/actor_lr", "train/critic_lr", "train/lr")),
        new("grad_norm.png", "Gradient norm (before clipping)", "norm", Keys("train/grad_norm", "train/critic_grad_norm")),
        new("time.png", "Seconds per phase", "seconds",
            Keys("time/generate", "time/reward", "time/logprobs", "time/reference", "time/values", "time/advantages", "time/update",
                 "time/step", "time/eval")),
        new("critic.png", "Critic loss and values", "value", Keys("train/critic_loss", "train/values")),
        new("eval_pass1.png", "Evaluation pass@1", "pass@1", k => k.StartsWith("eval/", StringComparison.Ordinal) && k.EndsWith("_pass1", StringComparison.Ordinal)),
        new("sft_loss.png", "SFT loss", "loss", Keys("train/gpt_loss")),
    ];

    /// <summary>Reads <paramref name="metricsPath"/> and writes one PNG per figure that has data into
    /// <paramref name="outDir"/>; returns the files written.</summary>
    public static IReadOnlyList<string> Write(string metricsPath, string outDir)
    {
        var rows = MetricsLog.Read(metricsPath);
        Directory.CreateDirectory(outDir);
        var written = new List<string>();
        var keys = rows.SelectMany(r => r.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        foreach (var fig in Figures)
        {
            var series = keys.Where(fig.Selects).Select(k => (Key: k, Points: rows
                    .Where(r => r.ContainsKey(k) && r.ContainsKey("train/global_step") && double.IsFinite(r[k]))
                    .Select(r => (X: r["train/global_step"], Y: r[k])).ToList()))
                .Where(s => s.Points.Count > 0).ToList();
            if (series.Count == 0) continue;
            var plt = new Plot();
            foreach (var (key, points) in series)
            {
                var sc = plt.Add.Scatter(points.Select(p => p.X).ToArray(), points.Select(p => p.Y).ToArray());
                sc.LegendText = key;
                sc.MarkerSize = points.Count > 50 ? 0 : 4;
            }
            plt.Title(fig.Title);
            plt.XLabel("global step");
            plt.YLabel(fig.YLabel);
            plt.ShowLegend(Alignment.UpperLeft);
            string path = Path.Combine(outDir, fig.File);
            string tmp = path + ".tmp.png";
            plt.SavePng(tmp, Width, Height);
            File.Move(tmp, path, overwrite: true);
            written.Add(path);
        }
        return written;
    }
}
