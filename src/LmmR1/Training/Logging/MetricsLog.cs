// Training metrics sink: always appends one JSON object per logging step to metrics.jsonl (flushed per line),
// optionally mirrors every scalar to TensorBoard event files (--use_tensorboard DIR, TorchSharp's SummaryWriter).
// Metric names follow OpenRLHF (train/reward, train/policy_loss, …); "train/global_step" is the x axis.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;

namespace LmmR1.Training.Logging;

public sealed class MetricsLog : IMetricsSink, IDisposable
{
    public const string FileName = "metrics.jsonl";

    readonly StreamWriter jsonl;
    readonly TorchSharp.Modules.SummaryWriter? tensorboard;

    public string Path { get; }

    /// <param name="runDir">Folder of metrics.jsonl.</param>
    /// <param name="tensorboardDir">TensorBoard log folder, or null.</param>
    /// <param name="resumeAfterStep">On resume, lines with a step above this (written after the checkpoint) are
    /// dropped so the file continues exactly where the restored run left off.</param>
    public MetricsLog(string runDir, string? tensorboardDir = null, long? resumeAfterStep = null)
    {
        Directory.CreateDirectory(runDir);
        Path = System.IO.Path.Combine(runDir, FileName);
        if (resumeAfterStep is { } keep && File.Exists(Path))
        {
            var kept = File.ReadLines(Path).Where(l => StepOf(l) is { } s && s <= keep).ToList();
            Infrastructure.AtomicFile.WriteAllText(Path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
        }
        else if (resumeAfterStep is null && File.Exists(Path))
        {
            File.Delete(Path);
        }
        jsonl = new StreamWriter(new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
        if (tensorboardDir != null)
        {
            Directory.CreateDirectory(tensorboardDir);
            tensorboard = torch.utils.tensorboard.SummaryWriter(tensorboardDir, createRunName: false);
        }
    }

    public void Log(long step, IReadOnlyDictionary<string, double> metrics)
    {
        var obj = new JsonObject { ["train/global_step"] = step };
        foreach (var (k, v) in metrics.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            obj[k] = double.IsFinite(v) ? JsonValue.Create(v) : JsonValue.Create(v.ToString(CultureInfo.InvariantCulture));
        jsonl.WriteLine(obj.ToJsonString());
        jsonl.Flush();
        if (tensorboard != null)
            foreach (var (k, v) in metrics)
                if (double.IsFinite(v)) tensorboard.add_scalar(k, (float)v, (int)step);
    }

    /// <summary>Reads metrics.jsonl back (for plots and resume checks): one dictionary per line.</summary>
    public static List<Dictionary<string, double>> Read(string path)
    {
        var rows = new List<Dictionary<string, double>>();
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            using var doc = JsonDocument.Parse(line);
            var row = new Dictionary<string, double>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject())
                row[p.Name] = p.Value.ValueKind == JsonValueKind.Number ? p.Value.GetDouble()
                    : double.Parse(p.Value.GetString()!, CultureInfo.InvariantCulture);
            rows.Add(row);
        }
        return rows;
    }

    static long? StepOf(string line)
    {
        if (string.IsNullOrWhiteSpace(line)) return null;
        try
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.TryGetProperty("train/global_step", out var s) ? s.GetInt64() : null;
        }
        catch (JsonException) { return null; } // a torn last line from a crash
    }

    // SummaryWriter opens, appends and flushes its event file per event: nothing to close.
    public void Dispose() => jsonl.Dispose();
}
