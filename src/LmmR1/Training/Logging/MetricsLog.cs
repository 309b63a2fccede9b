// Training logs of a run folder: metrics.jsonl (one JSON object per logging step, flushed per line), samples.jsonl
// (a few generations per logging step with their rewards) and, with --use_tensorboard DIR, TensorBoard event files
// (scalars, and the samples as text). Metric names follow OpenRLHF (train/reward, train/policy_loss, …);
// "train/global_step" is the x axis. On resume both files continue exactly after the restored step. TensorBoard is an
// extra: a write that fails (a full disk) is a warning and turns TensorBoard off for the rest of the run, while
// metrics.jsonl, which resuming needs, keeps failing loudly.
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LmmR1.Training.Logging;

public sealed class MetricsLog : IMetricsSink, IDisposable
{
    public const string FileName = "metrics.jsonl";
    public const string SamplesFileName = "samples.jsonl";

    readonly StreamWriter jsonl;
    readonly StreamWriter samples;
    TensorBoardWriter? tensorboard;

    public string Path { get; }
    public string SamplesPath { get; }
    public string? TensorBoardFile => tensorboard?.FilePath;
    /// <summary>Where the warning of a failed TensorBoard write goes (default: standard error).</summary>
    public Action<string>? Warn { get; set; }

    /// <param name="runDir">Folder of metrics.jsonl and samples.jsonl.</param>
    /// <param name="tensorboardDir">TensorBoard log folder, or null.</param>
    /// <param name="resumeAfterStep">On resume, lines with a step above this (written after the checkpoint) are
    /// dropped so the files continue exactly where the restored run left off; null starts both files afresh.</param>
    public MetricsLog(string runDir, string? tensorboardDir = null, long? resumeAfterStep = null)
    {
        Directory.CreateDirectory(runDir);
        Path = System.IO.Path.Combine(runDir, FileName);
        SamplesPath = System.IO.Path.Combine(runDir, SamplesFileName);
        jsonl = Open(Path, resumeAfterStep, "train/global_step");
        samples = Open(SamplesPath, resumeAfterStep, "step");
        if (tensorboardDir != null) tensorboard = new TensorBoardWriter(tensorboardDir, resumeAfterStep + 1);
    }

    static StreamWriter Open(string path, long? resumeAfterStep, string stepKey)
    {
        if (resumeAfterStep is { } keep && File.Exists(path))
        {
            var kept = File.ReadLines(path).Where(l => StepOf(l, stepKey) is { } s && s <= keep).ToList();
            Infrastructure.AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
        }
        else if (resumeAfterStep is null && File.Exists(path))
        {
            File.Delete(path);
        }
        return new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read), new UTF8Encoding(false));
    }

    /// <summary>Replaces the run folder's metrics.jsonl / samples.jsonl with the copies a checkpoint holds (what the run
    /// had logged when it was saved), so a resumed run continues from exactly those lines.</summary>
    public static void RestoreFrom(string checkpointDir, string runDir)
    {
        foreach (var name in new[] { FileName, SamplesFileName })
        {
            string src = System.IO.Path.Combine(checkpointDir, name);
            if (File.Exists(src)) Infrastructure.AtomicFile.Write(System.IO.Path.Combine(runDir, name), fs => fs.Write(File.ReadAllBytes(src)));
        }
    }

    /// <summary>Copies the logs so far into a checkpoint folder being written.</summary>
    public void CopyTo(string dir)
    {
        jsonl.Flush();
        samples.Flush();
        File.Copy(Path, System.IO.Path.Combine(dir, FileName), overwrite: true);
        File.Copy(SamplesPath, System.IO.Path.Combine(dir, SamplesFileName), overwrite: true);
    }

    public void Log(long step, IReadOnlyDictionary<string, double> metrics)
    {
        var obj = new JsonObject { ["train/global_step"] = step };
        foreach (var (k, v) in metrics.OrderBy(kv => kv.Key, StringComparer.Ordinal))
            obj[k] = double.IsFinite(v) ? JsonValue.Create(v) : JsonValue.Create(v.ToString(CultureInfo.InvariantCulture));
        jsonl.WriteLine(obj.ToJsonString());
        jsonl.Flush();
        Extra(step, tb => tb.Scalars(step, metrics));
    }

    /// <summary>A TensorBoard write; an I/O failure warns once and stops TensorBoard logging.</summary>
    void Extra(long step, Action<TensorBoardWriter> write)
    {
        if (tensorboard is not { } tb) return;
        try
        {
            Runs.RunHooks.Reach("tensorboard-write", step);
            write(tb);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            tensorboard = null;
            try { tb.Dispose(); } catch (Exception d) when (d is IOException or UnauthorizedAccessException) { }
            (Warn ?? Console.Error.WriteLine)($"warning: TensorBoard logging to {tb.FilePath} failed at step {step} ({Infrastructure.IoErrors.Reason(e)}); " +
                                             $"it is off for the rest of the run (metrics.jsonl goes on)");
        }
    }

    public void LogSamples(long step, IReadOnlyList<GeneratedSample> list)
    {
        if (list.Count == 0) return;
        var md = new StringBuilder("| # | prompt | response | label | reward | format | accuracy |\n|---|---|---|---|---|---|---|\n");
        foreach (var s in list)
        {
            var obj = new JsonObject
            {
                ["step"] = step, ["sample"] = s.Index, ["prompt"] = s.Prompt, ["response"] = s.Response, ["label"] = s.Label,
                ["reward"] = Finite(s.Reward), ["format_reward"] = Finite(s.FormatReward), ["acc_reward"] = Finite(s.AccuracyReward),
                ["response_length"] = s.ResponseLength,
            };
            samples.WriteLine(obj.ToJsonString(Readable));
            md.Append(CultureInfo.InvariantCulture, $"| {s.Index} | {Cell(s.Prompt)} | {Cell(s.Response)} | {Cell(s.Label)} | {s.Reward:G4} | {s.FormatReward:G4} | {s.AccuracyReward:G4} |\n");
        }
        samples.Flush();
        Extra(step, tb => tb.Text(step, "train/generated_samples", md.ToString()));
    }

    // Valid JSON that keeps quotes, <, > and non-ASCII text as they are (people read these files).
    static readonly JsonSerializerOptions Readable = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    static JsonNode? Finite(double v) => double.IsFinite(v) ? JsonValue.Create(v) : JsonValue.Create(v.ToString(CultureInfo.InvariantCulture));

    static string Cell(string s) => s.Replace("|", "\\|").Replace("\r", "").Replace("\n", "<br>");

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

    static long? StepOf(string line, string key)
    {
        if (string.IsNullOrWhiteSpace(line)) return null;
        try
        {
            using var doc = JsonDocument.Parse(line);
            return doc.RootElement.TryGetProperty(key, out var s) ? s.GetInt64() : null;
        }
        catch (JsonException) { return null; } // a torn last line from a crash
    }

    public void Dispose()
    {
        jsonl.Dispose();
        samples.Dispose();
        tensorboard?.Dispose();
    }
}
