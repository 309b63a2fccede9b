// Helpers of the run tests: the `lmmr1 train` arguments of a tiny gae run that exercises every piece of state
// (critic, reference, adaptive KL, 2 PPO epochs, 2 episodes, evaluation), running the real CLI in-process or as a
// child process (for SIGKILL and signals), comparing runs (metrics rows without wall-clock seconds, weights bit for
// bit), and independent readers of TensorBoard event files (TFRecord framing with CRC32C) and PNG files (chunk CRC-32).
using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using LmmR1.Tests.Training;
using LmmR1.Training.Logging;
using TorchSharp;

namespace LmmR1.Tests.Runs;

public static class RunSupport
{
    /// <summary>Arguments of the tiny run rooted at <paramref name="root"/> (ckpt/, final/, tb/ under it).</summary>
    public static string[] Args(string root, int steps, params string[] extra) => Args(root, steps, 1, extra);

    public static string[] Args(string root, int steps, int saveSteps, params string[] extra) =>
    [
        "train", "--pretrain", TinyRl.Model, "--prompt_data", TinyRl.ExampleData, "--input_key", "message", "--label_key", "answer",
        "--processor_kwargs", TinyRl.SmallImages, "--advantage_estimator", "gae", "--init_kl_coef", "0.01", "--kl_target", "0.1",
        "--kl_horizon", "100", "--rollout_batch_size", "1", "--n_samples_per_prompt", "2", "--micro_rollout_batch_size", "2",
        "--train_batch_size", "2", "--micro_train_batch_size", "1", "--max_epochs", "2", "--generate_max_len", "6",
        "--actor_learning_rate", "1e-3", "--critic_learning_rate", "1e-3", "--lr_warmup_ratio", "0.3",
        "--max_global_steps", steps.ToString(), "--save_steps", saveSteps.ToString(), "--max_ckpt_num", "2",
        "--ckpt_path", Path.Combine(root, "ckpt"), "--save_path", Path.Combine(root, "final"), "--use_tensorboard", Path.Combine(root, "tb"),
        "--eval_dataset", TinyRl.ExampleData, "--eval_steps", "2", "--eval_n_samples_per_prompt", "2", "--eval_temperature", "0",
        "--save_value_network", "--save_hf_ckpt", "--log_samples", "2",
        // The rule reward's 30 ms wall-clock budget is a wall-clock dependence: on a loaded machine one verification
        // (an empty response is scored as the whole query, whose system prompt shows $\boxed{5}$) may run out of it
        // in one run and not in the other. Equal runs need a budget nothing reaches.
        "--reward_time_budget_ms", "60000", .. extra,
    ];

    /// <summary>Replaces the values of <paramref name="flag"/> in <paramref name="args"/> (or adds it).</summary>
    public static string[] Set(string[] args, string flag, params string[] values)
    {
        var list = args.ToList();
        int i = list.IndexOf(flag);
        if (i >= 0)
        {
            int j = i + 1;
            while (j < list.Count && !list[j].StartsWith("--", StringComparison.Ordinal)) j++;
            list.RemoveRange(i, j - i);
        }
        return [.. list, flag, .. values];
    }

    /// <summary>2N steps: the reference; N + N: stopped or killed and resumed. 3 prompts per episode, so step 4 is in episode 2.</summary>
    public const int Steps = 4;

    /// <summary>The uninterrupted run every resumed run is compared with (once per test process).</summary>
    public static string Reference => reference.Value;
    static readonly Lazy<string> reference = new(() =>
    {
        string root = TestPaths.NewTempDir("run-reference");
        var (code, _, err) = RunInProcess(Args(root, Steps));
        if (code != 0) throw new InvalidOperationException("reference run failed: " + err);
        return root;
    });

    static readonly object consoleLock = new();

    /// <summary>`lmmr1 …` in this process with the console captured (callers are in the "Console" collection).</summary>
    public static (int Code, string Out, string Err) RunInProcess(params string[] args)
    {
        lock (consoleLock)
        {
            var (oldOut, oldErr) = (Console.Out, Console.Error);
            var (o, e) = (new StringWriter(), new StringWriter());
            Console.SetOut(o); Console.SetError(e);
            try { return (Cli.CliApp.Run(args), o.ToString(), e.ToString()); }
            finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
        }
    }

    /// <summary>Metrics rows with the wall-clock fields (time/*) removed: what must match between equivalent runs.</summary>
    public static List<Dictionary<string, double>> Rows(string runDir) =>
        MetricsLog.Read(Path.Combine(runDir, MetricsLog.FileName))
            .Select(r => r.Where(kv => !kv.Key.StartsWith("time/", StringComparison.Ordinal)).ToDictionary(kv => kv.Key, kv => kv.Value))
            .ToList();

    public static void AssertSameRows(List<Dictionary<string, double>> expected, List<Dictionary<string, double>> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.Equal(expected[i].Keys.Order(), actual[i].Keys.Order());
            foreach (var (k, v) in expected[i])
                Assert.True(v.Equals(actual[i][k]), $"row {i} (step {expected[i]["train/global_step"]}): {k} = {actual[i][k]:R}, expected {v:R}");
        }
    }

    /// <summary>Every tensor of two model folders is bit-identical (same names, dtypes, shapes, bytes).</summary>
    public static void AssertSameWeights(string expectedDir, string actualDir)
    {
        using var a = SafetensorsCheckpoint.Open(expectedDir);
        using var b = SafetensorsCheckpoint.Open(actualDir);
        var names = a.Names.Order(StringComparer.Ordinal).ToList();
        Assert.Equal(names, b.Names.Order(StringComparer.Ordinal).ToList());
        foreach (var n in names)
        {
            using var scope = torch.NewDisposeScope();
            var x = a.Load(n);
            var y = b.Load(n);
            Assert.True(x.dtype == y.dtype && x.shape.SequenceEqual(y.shape), n);
            Assert.True(x.eq(y).all().item<bool>(), $"{n} differs (max |Δ| {(x.to(torch.float64) - y.to(torch.float64)).abs().max().item<double>():G3})");
        }
    }

    // ------------------------------------------------------------------ child processes

    /// <summary>`lmmr1 …` as a child process (the real binary from the test output folder).</summary>
    public sealed class Child : IDisposable
    {
        readonly Process process;
        readonly StringBuilder stdout = new(), stderr = new();

        public Child(string[] args, IReadOnlyDictionary<string, string>? env = null)
        {
            var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "lmmr1.dll"));
            foreach (var a in args) psi.ArgumentList.Add(a);
            foreach (var (k, v) in env ?? new Dictionary<string, string>()) psi.Environment[k] = v;
            process = Process.Start(psi)!;
            process.OutputDataReceived += (_, e) => { if (e.Data != null) lock (stdout) stdout.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (stderr) stderr.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public int Id => process.Id;
        public string Out { get { lock (stdout) return stdout.ToString(); } }
        public string Err { get { lock (stderr) return stderr.ToString(); } }

        /// <summary>Waits until <paramref name="condition"/> holds; fails if the child exits first or after a generous guard.</summary>
        public void WaitUntil(Func<bool> condition, string what)
        {
            var guard = Stopwatch.StartNew();
            while (!condition())
            {
                if (process.HasExited && !condition())
                    throw new Xunit.Sdk.XunitException($"the child exited ({process.ExitCode}) before {what}\nstdout:\n{Out}\nstderr:\n{Err}");
                if (guard.Elapsed > TimeSpan.FromMinutes(3))
                    throw new Xunit.Sdk.XunitException($"gave up waiting for {what}\nstdout:\n{Out}\nstderr:\n{Err}");
                Thread.Sleep(10);
            }
        }

        public void Kill()
        {
            process.Kill();                // SIGKILL on Linux
            process.WaitForExit();
        }

        public void Signal(int signal)
        {
            if (kill(process.Id, signal) != 0) throw new InvalidOperationException($"kill({process.Id}, {signal}) failed");
        }

        public int WaitForExit()
        {
            if (!process.WaitForExit(TimeSpan.FromMinutes(3))) { process.Kill(); throw new Xunit.Sdk.XunitException("the child did not exit\n" + Err); }
            process.WaitForExit();         // drains the output readers
            return process.ExitCode;
        }

        public void Dispose()
        {
            if (!process.HasExited) process.Kill();
            process.Dispose();
        }

        [DllImport("libc", SetLastError = true)] static extern int kill(int pid, int sig);
    }

    public const int SIGINT = 2, SIGTERM = 15;

    /// <summary>Starts a child that pauses at <paramref name="point"/> ("after-generate:3"), and waits until it is there.</summary>
    public static Child StartPaused(string[] args, string point, string markerDir)
    {
        string marker = Path.Combine(markerDir, $"pause-{Guid.NewGuid():N}");
        var child = new Child(args, new Dictionary<string, string>
        {
            [LmmR1.Training.Runs.RunHooks.PauseVariable] = point, [LmmR1.Training.Runs.RunHooks.FileVariable] = marker,
        });
        child.WaitUntil(() => File.Exists(marker), $"the pause at {point}");
        Assert.Equal(point, File.ReadAllText(marker));
        PausedMarker = marker;
        return child;
    }

    /// <summary>The marker file of the last StartPaused: deleting it lets the child go on.</summary>
    public static string PausedMarker { get; private set; } = "";

    // ------------------------------------------------------------------ TensorBoard event files

    /// <summary>One event: step, and either scalar values (tag → value), a text summary, a START session log or the header.</summary>
    public sealed record TbEvent(long Step, Dictionary<string, float> Scalars, Dictionary<string, string> Texts, bool SessionStart, string? FileVersion);

    /// <summary>Reads a TFRecord file, checking every length and payload CRC32C, and decodes the Event protos.</summary>
    public static List<TbEvent> ReadEvents(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var events = new List<TbEvent>();
        int pos = 0;
        while (pos < bytes.Length)
        {
            Assert.True(pos + 12 <= bytes.Length, "truncated record header");
            ulong len = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(pos));
            Assert.Equal(MaskedCrc32C(bytes.AsSpan(pos, 8)), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos + 8)));
            pos += 12;
            Assert.True(pos + (long)len + 4 <= bytes.Length, "truncated record");
            var payload = bytes.AsSpan(pos, (int)len);
            Assert.Equal(MaskedCrc32C(payload), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(pos + (int)len)));
            events.Add(DecodeEvent(payload.ToArray()));
            pos += (int)len + 4;
        }
        return events;
    }

    /// <summary>TFRecord's masked CRC32C (TensorFlow's crc32c::Mask) over <see cref="Crc32C"/>.</summary>
    public static uint MaskedCrc32C(ReadOnlySpan<byte> data)
    {
        uint crc = Crc32C(data);
        return unchecked(((crc >> 15) | (crc << 17)) + 0xa282ead8u);
    }

    /// <summary>CRC-32C (Castagnoli) bit by bit from the reflected polynomial 0x82F63B78: independent of the writer's
    /// hardware-instruction BitOperations.Crc32C.</summary>
    public static uint Crc32C(ReadOnlySpan<byte> data)
    {
        uint c = ~0u;
        foreach (var x in data)
        {
            c ^= x;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0x82F63B78u ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }

    static TbEvent DecodeEvent(byte[] data)
    {
        long step = 0;
        bool start = false;
        string? version = null;
        var scalars = new Dictionary<string, float>();
        var texts = new Dictionary<string, string>();
        foreach (var (field, value, bytes) in Fields(data))
            switch (field)
            {
                case 2: step = (long)value; break;
                case 3: version = Encoding.UTF8.GetString(bytes!); break;
                case 5:
                    foreach (var (vf, _, vbytes) in Fields(bytes!))
                    {
                        if (vf != 1) continue;
                        string tag = ""; float? simple = null; string? text = null;
                        foreach (var (f, v, b) in Fields(vbytes!))
                        {
                            if (f == 1) tag = Encoding.UTF8.GetString(b!);
                            else if (f == 2) simple = BitConverter.Int32BitsToSingle((int)v);
                            else if (f == 8) foreach (var (tf, _, tb) in Fields(b!)) if (tf == 8) text = Encoding.UTF8.GetString(tb!);
                        }
                        if (simple is { } s) scalars[tag] = s;
                        if (text is not null) texts[tag] = text;
                    }
                    break;
                case 6: start = Fields(bytes!).Any(x => x.Field == 1 && x.Value == 1); break;
            }
        return new TbEvent(step, scalars, texts, start, version);
    }

    /// <summary>Protobuf fields: (number, varint or fixed value, bytes for length-delimited).</summary>
    static IEnumerable<(int Field, ulong Value, byte[]? Bytes)> Fields(byte[] data)
    {
        int pos = 0;
        ulong Varint()
        {
            ulong v = 0; int shift = 0;
            while (true) { byte b = data[pos++]; v |= (ulong)(b & 0x7F) << shift; if (b < 0x80) return v; shift += 7; }
        }
        var result = new List<(int, ulong, byte[]?)>();
        while (pos < data.Length)
        {
            ulong key = Varint();
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: result.Add((field, Varint(), null)); break;
                case 1: result.Add((field, BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(pos)), null)); pos += 8; break;
                case 5: result.Add((field, BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan(pos)), null)); pos += 4; break;
                case 2:
                    int len = (int)Varint();
                    result.Add((field, 0, data.AsSpan(pos, len).ToArray()));
                    pos += len;
                    break;
                default: throw new Xunit.Sdk.XunitException($"unexpected wire type {wire}");
            }
        }
        return result;
    }

    /// <summary>What TensorBoard shows for a log folder: files in name order; a START at step s drops every earlier
    /// point at step ≥ s (EventAccumulator's purge of orphaned data). Returns tag → step → value.</summary>
    public static Dictionary<string, SortedDictionary<long, float>> VisibleScalars(string logDir)
    {
        var result = new Dictionary<string, SortedDictionary<long, float>>();
        foreach (var file in Directory.GetFiles(logDir).Where(f => Path.GetFileName(f).Contains("tfevents")).Order(StringComparer.Ordinal))
            foreach (var ev in ReadEvents(file))
            {
                if (ev.SessionStart)
                    foreach (var series in result.Values)
                        foreach (var s in series.Keys.Where(s => s >= ev.Step).ToList()) series.Remove(s);
                foreach (var (tag, v) in ev.Scalars)
                    (result.TryGetValue(tag, out var d) ? d : result[tag] = [])[ev.Step] = v;
            }
        return result;
    }

    // ------------------------------------------------------------------ PNG

    /// <summary>Checks the PNG signature and every chunk's CRC-32, IHDR first and IEND last; returns (width, height).</summary>
    public static (int Width, int Height) CheckPng(string path)
    {
        var b = File.ReadAllBytes(path);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 13, 10, 26, 10 }, b[..8]);
        int pos = 8, width = 0, height = 0;
        var types = new List<string>();
        while (pos < b.Length)
        {
            int len = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos));
            string type = Encoding.ASCII.GetString(b, pos + 4, 4);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos + 8 + len));
            Assert.Equal(Crc32(b.AsSpan(pos + 4, len + 4)), crc);
            if (type == "IHDR")
            {
                width = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos + 8));
                height = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(pos + 12));
            }
            types.Add(type);
            pos += 12 + len;
        }
        Assert.Equal("IHDR", types[0]);
        Assert.Equal("IEND", types[^1]);
        Assert.Contains("IDAT", types);
        return (width, height);
    }

    static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = ~0u;
        foreach (var x in data)
        {
            c ^= x;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        return ~c;
    }
}
