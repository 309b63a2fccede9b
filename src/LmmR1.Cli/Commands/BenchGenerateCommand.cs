// `lmmr1 bench generate`: rollout throughput on synthetic prompts (random token ids, optionally one random image per
// prompt) with stop tokens disabled, so every sample makes exactly --new-tokens tokens (like hf_baseline.py's
// min_new_tokens), unless --stop-fraction (a share of the vocabulary stops) or --synthetic-response-len (log-normal
// forced lengths ending in a stop token, SyntheticLengths) makes the lengths vary. Prints one JSON line: tokens/s, ms per decode step, prefill time, peak device memory, and the
// per-step floors (weights + KV cache bytes ÷ HBM bandwidth; 2·params·rows FLOPs ÷ peak bf16 FLOP/s) vs measured.
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Cli.Commands;

public static class BenchGenerateCommand
{
    public sealed record Settings
    {
        public required string Model { get; init; }
        public int Prompts { get; init; } = 64;
        public int Samples { get; init; } = 8;
        public int NewTokens { get; init; } = 512;
        public int PromptLength { get; init; } = 128;
        public int ImageSide { get; init; } = 448;
        public bool TextOnly { get; init; }
        public string Device { get; init; } = "cuda";
        public string DType { get; init; } = "bfloat16";
        public int CheckEvery { get; init; } = 4;
        public bool SharePrefix { get; init; } = true;
        public double Temperature { get; init; } = 1.0;
        public double TopP { get; init; } = 1.0;
        public int TopK { get; init; } = -1;
        public int MaxRows { get; init; }
        /// <summary>Share of the vocabulary treated as stop tokens (0 = none): samples then end at scattered steps, which
        /// exercises row dropping (on random weights a sample stops with about this probability per step).</summary>
        public double StopFraction { get; init; }
        public double CompactFraction { get; init; } = 0.25;
        public int AttentionWindow { get; init; } = 128;
        /// <summary>"MEDIAN:SIGMA" of forced log-normal response lengths ending in a stop token (SyntheticLengths); null = off.</summary>
        public string? ResponseLengths { get; init; }
        public int WarmupTokens { get; init; } = 16;
        public double BandwidthTBs { get; init; } = 3.35;
        public double PeakTflops { get; init; } = 989;
        public string? Output { get; init; }
        public string Attention { get; init; } = "sdpa";
        public int Threads { get; init; }
        /// <summary>Several cases on one loaded model: "PxS:NEW:text" or "PxS:NEW:imageSIDE", comma-separated.</summary>
        public string? Cases { get; init; }
        /// <summary>Decode with captured CUDA graphs (the default on CUDA when the native extension is available).</summary>
        public bool CudaGraphs { get; init; } = true;
        /// <summary>Run the graph path's static step eagerly (any device; GenerationEngineOptions.StaticStepWithoutGraph).</summary>
        public bool StaticStep { get; init; }
        /// <summary>--profile-kernels DIR: after the measured call, one more (untimed) call of the case with the kernel
        /// profiler on; its table goes to DIR/generate-PxS-NEW-text|imageSIDE.tsv (KernelProfile).</summary>
        public string? ProfileKernels { get; init; }
    }

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder, or preset:NAME / config:PATH for random weights built in memory", Required = true };
        var prompts = new Option<int>("--prompts") { Description = "Prompts", DefaultValueFactory = _ => 64 };
        var samples = new Option<int>("--samples") { Description = "Samples per prompt", DefaultValueFactory = _ => 8 };
        var newTokens = new Option<int>("--new-tokens") { Description = "Tokens generated per sample (stop tokens off)", DefaultValueFactory = _ => 512 };
        var promptLen = new Option<int>("--prompt-len") { Description = "Text tokens per prompt", DefaultValueFactory = _ => 128 };
        var image = new Option<int>("--image") { Description = "Side in pixels of one square random image per prompt (multiple of 28)", DefaultValueFactory = _ => 448 };
        var textOnly = new Option<bool>("--text-only") { Description = "No image" };
        var device = ModelCommands.DeviceOption();
        device.DefaultValueFactory = _ => "cuda";
        var dtype = ModelCommands.DTypeOption("bfloat16");
        var checkEvery = new Option<int>("--check-every") { Description = "Decode steps between host checks", DefaultValueFactory = _ => 4 };
        var noShare = new Option<bool>("--no-share-prefix") { Description = "Prefill every sample's own copy of its prompt" };
        var temperature = new Option<double>("--temperature") { DefaultValueFactory = _ => 1.0 };
        var topP = new Option<double>("--top-p") { DefaultValueFactory = _ => 1.0 };
        var topK = new Option<int>("--top-k") { DefaultValueFactory = _ => -1 };
        var maxRows = new Option<int>("--max-rows") { Description = "Rows per micro-batch (default: all)", DefaultValueFactory = _ => 0 };
        var stopFraction = new Option<double>("--stop-fraction")
        {
            Description = "Treat this share of the vocabulary as stop tokens (variable lengths, exercises row dropping); 0 = every sample runs to --new-tokens",
            DefaultValueFactory = _ => 0,
        };
        var compact = new Option<double>("--compact-fraction") { Description = "Drop finished rows when at least this share of the batch finished (> 1 = never)", DefaultValueFactory = _ => 0.25 };
        var window = new Option<int>("--attention-window") { Description = "CUDA graphs: attention reads the filled prefix rounded up to a multiple of this many positions (0 = the whole capacity bucket)", DefaultValueFactory = _ => 128 };
        var responseLen = new Option<string?>("--synthetic-response-len")
        {
            Description = "MEDIAN:SIGMA of forced log-normal response lengths (e.g. 128:0.7), each ending in a stop token; longer ones end at --new-tokens",
        };
        var warmup = new Option<int>("--warmup-tokens") { Description = "Tokens of the warm-up run (0 = none)", DefaultValueFactory = _ => 16 };
        var bandwidth = new Option<double>("--bandwidth-tbs") { Description = "HBM bandwidth for the floor (H100 SXM: 3.35)", DefaultValueFactory = _ => 3.35 };
        var tflops = new Option<double>("--peak-tflops") { Description = "Dense bf16 peak for the compute floor (H100 SXM: 989)", DefaultValueFactory = _ => 989 };
        var output = new Option<string?>("--output") { Description = "Also append the JSON line to this file" };
        var attention = new Option<string>("--attention") { Description = "sdpa or eager", DefaultValueFactory = _ => "sdpa" };
        var cases = new Option<string?>("--cases")
        {
            Description = "Run several cases on the loaded model, e.g. 64x8:512:image448,64x8:512:text (prompts x samples : new tokens : " +
                          "text | imageSIDE); overrides --prompts/--samples/--new-tokens/--image/--text-only",
        };
        var noGraphs = new Option<bool>("--no-cuda-graphs") { Description = "Decode with the eager loop instead of captured CUDA graphs" };
        var staticStep = new Option<bool>("--static-step-without-graph") { Description = "Decode with the graph path's static step run eagerly (any device: a CPU dry run of the graph path)" };
        var threads = new Option<int>("--threads") { Description = "CPU threads of libtorch (0 = its default)", DefaultValueFactory = _ => 0 };
        var profile = new Option<string?>("--profile-kernels")
        {
            Description = "Folder: run each case once more (untimed) with the kernel profiler and write its per-kernel table there (CUDA, native extension)",
        };

        var cmd = new Command("generate", "Measure generation throughput on synthetic prompts (prints JSON)")
        {
            model, prompts, samples, newTokens, promptLen, image, textOnly, device, dtype, checkEvery, noShare, temperature, topP, topK,
            maxRows, warmup, bandwidth, tflops, output, attention, threads, cases, stopFraction, compact, window, noGraphs, responseLen, staticStep, profile,
        };
        cmd.SetAction(pr =>
        {
            var s = new Settings
            {
                Model = pr.GetValue(model)!, Prompts = pr.GetValue(prompts), Samples = pr.GetValue(samples), NewTokens = pr.GetValue(newTokens),
                PromptLength = pr.GetValue(promptLen), ImageSide = pr.GetValue(image), TextOnly = pr.GetValue(textOnly),
                Device = pr.GetValue(device)!, DType = pr.GetValue(dtype)!, CheckEvery = pr.GetValue(checkEvery), SharePrefix = !pr.GetValue(noShare),
                Temperature = pr.GetValue(temperature), TopP = pr.GetValue(topP), TopK = pr.GetValue(topK), MaxRows = pr.GetValue(maxRows),
                StopFraction = pr.GetValue(stopFraction), CompactFraction = pr.GetValue(compact), AttentionWindow = pr.GetValue(window), ResponseLengths = pr.GetValue(responseLen),
                WarmupTokens = pr.GetValue(warmup), BandwidthTBs = pr.GetValue(bandwidth), PeakTflops = pr.GetValue(tflops),
                Output = pr.GetValue(output), Attention = pr.GetValue(attention)!, Threads = pr.GetValue(threads),
                Cases = pr.GetValue(cases), CudaGraphs = !pr.GetValue(noGraphs), StaticStep = pr.GetValue(staticStep),
                ProfileKernels = pr.GetValue(profile),
            };
            Run(s, Console.WriteLine);
            return 0;
        });
        return cmd;
    }

    /// <summary>--attention-window of bench generate and bench graph-check: ≥ 0.</summary>
    internal static void CheckAttentionWindow(int window)
    {
        if (window < 0) throw new InputException($"--attention-window: {window} is negative (0 = the whole capacity bucket)");
    }

    /// <summary>Parses --cases into per-case settings.</summary>
    public static List<Settings> ExpandCases(Settings s)
    {
        if (string.IsNullOrWhiteSpace(s.Cases)) return [s];
        var list = new List<Settings>();
        foreach (var raw in s.Cases.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = raw.Split(':');
            var ps = parts[0].Split('x');
            if (parts.Length != 3 || ps.Length != 2 || !int.TryParse(ps[0], out int p) || !int.TryParse(ps[1], out int n)
                || !int.TryParse(parts[1], out int newTokens)
                || !(parts[2] == "text" || (parts[2].StartsWith("image", StringComparison.Ordinal) && int.TryParse(parts[2][5..], out _))))
                throw new InputException($"--cases: '{raw}' is not PROMPTSxSAMPLES:NEW_TOKENS:text|imageSIDE (e.g. 64x8:512:image448)");
            bool text = parts[2] == "text";
            list.Add(s with
            {
                Prompts = p, Samples = n, NewTokens = newTokens, TextOnly = text, ImageSide = text ? 0 : int.Parse(parts[2][5..]), Cases = null,
            });
        }
        return list;
    }

    /// <summary>Loads the model once and runs every case, emitting one JSON line per case as soon as it is done.</summary>
    public static void Run(Settings settings, Action<string> emit)
    {
        var all = ExpandCases(settings);
        foreach (var s in all)
        {
            if (s.Prompts < 1 || s.Samples < 1 || s.NewTokens < 1 || s.PromptLength < 1)
                throw new InputException("--prompts, --samples, --new-tokens and --prompt-len must be ≥ 1");
            if (!s.TextOnly && s.ImageSide > 0 && s.ImageSide % 28 != 0) throw new InputException($"--image: {s.ImageSide} is not a multiple of 28");
            CheckAttentionWindow(s.AttentionWindow);
        }
        if (settings.ResponseLengths is { } rl) SyntheticLengths.Parse(rl, "--synthetic-response-len");
        if (settings.Threads > 0) torch.set_num_threads(settings.Threads);
        var device = ModelCommands.ParseDevice(settings.Device);
        var dtype = ModelCommands.ParseDType(settings.DType);
        bool cuda = device.type == DeviceType.CUDA;
        if (settings.ProfileKernels is not null) KernelProfile.Require(device, "--profile-kernels");
        using var mem = cuda ? new CudaMemory.PeakSampler() : null;
        long memBefore = cuda ? CudaMemory.Query()?.Used ?? -1 : -1;
        var clock = Stopwatch.StartNew();
        using var model = LoadOrCreate(settings.Model, dtype, device);
        model.Attention = ModelCommands.ParseAttention(settings.Attention);
        double loadS = clock.Elapsed.TotalSeconds;
        foreach (var s in all)
        {
            string json = RunCase(s, model, dtype, device, mem, memBefore, loadS);
            if (s.Output is { } path) File.AppendAllText(path, json + Environment.NewLine);
            emit(json);
        }
    }

    static string RunCase(Settings s, QwenVLModel model, ScalarType dtype, Device device, CudaMemory.PeakSampler? mem, long memBefore, double loadS)
    {
        bool images = !s.TextOnly && s.ImageSide > 0;
        var cfg = model.Config;
        if (images && cfg.Vision is null) throw new InputException($"{cfg.ModelType} has no vision tower: use --text-only");
        var prompts = MakePrompts(s, cfg, images, dtype, device);
        int rows = s.Prompts * s.Samples;
        int promptTokens = prompts[0].TokenIds.Count;
        var options = new GenerationEngineOptions
        {
            MaxRowsPerBatch = s.MaxRows > 0 ? s.MaxRows : rows,
            MaxTokensPerBatch = 0,
            CheckEvery = s.CheckEvery, SharePrefix = s.SharePrefix, CompactFraction = s.CompactFraction, AttentionWindow = s.AttentionWindow, CudaGraphs = s.CudaGraphs,
            StaticStepWithoutGraph = s.StaticStep,
        };
        var sampling = new SamplingParams
        {
            N = s.Samples, Temperature = s.Temperature, TopP = s.TopP, TopK = s.TopK, MaxNewTokens = s.NewTokens,
            MinNewTokens = 0, Seed = 1,
            // Every k-th id below the text vocabulary (specials and image ids stay out of it).
            StopTokenIds = s.StopFraction > 0
                ? Enumerable.Range(0, Math.Min(150000, cfg.Text.VocabSize)).Where(i => i % Math.Max(1, (int)Math.Round(1 / s.StopFraction)) == 0).ToList()
                : [],
        };
        if (s.ResponseLengths is { } spec)
        {
            // The forced stop: the first EOS id of the config, else the last text id (below the specials).
            var (median, sigma) = SyntheticLengths.Parse(spec, "--synthetic-response-len");
            int stop = cfg.Tokens.EosTokenIds.Length > 0 && cfg.Tokens.EosTokenIds[0] < cfg.Text.VocabSize
                ? (int)cfg.Tokens.EosTokenIds[0] : Math.Min(150000, cfg.Text.VocabSize) - 1;
            sampling = sampling with { SyntheticLengths = new SyntheticLengths(median, sigma, stop) };
        }
        using var engine = new GenerationEngine(model, options);
        var clock = Stopwatch.StartNew();
        if (s.WarmupTokens > 0)
            engine.Generate(prompts.Take(Math.Min(4, prompts.Count)).ToList(), sampling with { MaxNewTokens = s.WarmupTokens });
        // The first full-size call: with CUDA graphs it captures the step for this bucket (timed apart as capture_s);
        // the measured call below then replays it, as every later rollout of a training run does.
        var native = device.type == DeviceType.CUDA ? NativeExtension.TryGet() : null;
        double firstCallS = -1, captureS = 0;
        int firstCaptures = 0;
        if (engine.Options.CudaGraphs && native is not null)
        {
            clock.Restart();
            engine.Generate(prompts, sampling);
            firstCallS = clock.Elapsed.TotalSeconds;
            captureS = engine.LastStats.GraphCaptureSeconds;
            firstCaptures = engine.LastStats.GraphCaptures;
        }
        mem?.Reset();
        int devIndex = device.index < 0 ? 0 : device.index;
        native?.ResetPeakMemory(devIndex);
        clock.Restart();
        var outs = engine.Generate(prompts, sampling);
        double seconds = clock.Elapsed.TotalSeconds;
        var st = engine.LastStats;
        var torchMem = native?.MemoryStats(devIndex);
        long made = outs.Sum(o => (long)o.ResponseLength);
        (double Seconds, long Launches)? profiled = null;
        string? profilePath = null;
        if (s.ProfileKernels is { } dir)
        {
            profilePath = Path.Combine(dir, $"generate-{s.Prompts}x{s.Samples}-{s.NewTokens}-{(images ? $"image{s.ImageSide}" : "text")}.tsv");
            profiled = KernelProfile.Record(native!, device, profilePath, () => engine.Generate(prompts, sampling));
        }
        bool fixedLength = s.StopFraction == 0 && s.ResponseLengths is null;
        if (fixedLength && made != (long)rows * s.NewTokens) throw new InvalidOperationException($"expected {rows * s.NewTokens} tokens, got {made}");

        // Floors per decode step: every language-model weight is read once (the tied embedding serves as lm_head), plus
        // the KV cache of all rows at the mean decode length.
        var counts = model.CountParameters();
        int elem = dtype == ScalarType.BFloat16 ? 2 : 4;
        long weightBytes = (counts.LanguageModel + counts.LmHead) * elem;
        long kvPerToken = (long)cfg.Text.NumLayers * 2 * cfg.Text.NumKvHeads * cfg.Text.HeadDim * elem;
        double meanKv = (double)rows * (promptTokens + s.NewTokens / 2.0) * kvPerToken;
        double floorMs = (weightBytes + meanKv) / (s.BandwidthTBs * 1e12) * 1e3;
        double computeMs = 2.0 * (counts.LanguageModel + counts.LmHead) * rows / (s.PeakTflops * 1e12) * 1e3;
        // Logits [rows, V] in the model dtype, then the sampler's fp32 passes (softmax write, cumsum read+write, reads).
        double samplerBytes = (double)rows * cfg.Text.VocabSize * (2 * elem + 4 * 5);
        double msPerStep = st.DecodeSeconds / Math.Max(1, st.DecodeSteps) * 1e3;

        var result = new Dictionary<string, object?>
        {
            ["what"] = "lmmr1_generate",
            ["device"] = s.Device, ["dtype"] = s.DType, ["model"] = cfg.ModelType,
            ["prompts"] = s.Prompts, ["samples"] = s.Samples, ["rows"] = rows, ["prompt_len"] = promptTokens,
            ["new_tokens"] = s.NewTokens, ["images"] = images, ["image_side"] = images ? s.ImageSide : 0,
            ["share_prefix"] = s.SharePrefix, ["check_every"] = s.CheckEvery, ["micro_batches"] = st.MicroBatches,
            ["temperature"] = s.Temperature, ["top_p"] = s.TopP, ["top_k"] = s.TopK,
            ["load_s"] = Math.Round(loadS, 2),
            ["seconds"] = Math.Round(seconds, 3),
            ["prefill_s"] = Math.Round(st.PrefillSeconds, 3),
            ["decode_s"] = Math.Round(st.DecodeSeconds, 3),
            ["tokens_per_s"] = Math.Round(made / seconds),
            ["decode_tokens_per_s"] = Math.Round(made / Math.Max(1e-9, st.DecodeSeconds)),
            ["ms_per_step"] = Math.Round(msPerStep, 3),
            ["ms_per_step_incl_prefill"] = Math.Round(seconds * 1e3 / s.NewTokens, 3),
            ["decode_steps"] = st.DecodeSteps,
            ["stop_fraction"] = s.StopFraction, ["synthetic_response_len"] = s.ResponseLengths, ["compact_fraction"] = s.CompactFraction, ["attention_window"] = s.AttentionWindow,
            ["mean_response_tokens"] = Math.Round((double)made / rows, 1),
            ["row_steps"] = st.RowSteps, ["compactions"] = st.Compactions,
            ["ms_per_row_step"] = st.RowSteps > 0 ? Math.Round(st.DecodeSeconds * 1e3 / st.RowSteps, 5) : null,
            ["checks"] = st.Checks,
            ["weights_gib"] = Math.Round(weightBytes / 1073741824.0, 2),
            ["kv_cache_gib"] = Math.Round((double)rows * (promptTokens + s.NewTokens) * kvPerToken / 1073741824.0, 2),
            ["floor_ms_per_step_bandwidth"] = Math.Round(floorMs, 3),
            ["floor_ms_per_step_compute"] = Math.Round(computeMs, 3),
            ["sampler_gib_per_step"] = Math.Round(samplerBytes / 1073741824.0, 3),
            ["measured_over_floor"] = Math.Round(msPerStep / Math.Max(floorMs, computeMs), 2),
            ["peak_device_used_gib"] = mem is null || mem.Peak < 0 ? null : Math.Round(mem.Peak / 1073741824.0, 2),
            ["device_used_before_load_gib"] = memBefore < 0 ? null : Math.Round(memBefore / 1073741824.0, 2),
            ["cuda_graphs"] = st.GraphRows > 0 && !s.StaticStep, ["static_step_without_graph"] = s.StaticStep, ["graph_rows"] = st.GraphRows, ["graph_capacity"] = st.GraphRows > 0 ? GraphDecodeStep.CapacityBucket(st.MaxCapacity) : null,
            ["first_call_s"] = firstCallS < 0 ? null : Math.Round(firstCallS, 3), ["capture_s"] = st.GraphRows > 0 || captureS > 0 ? Math.Round(captureS, 3) : null,
            ["first_call_graph_captures"] = firstCallS < 0 ? null : firstCaptures,
            ["torch_peak_allocated_gib"] = torchMem is { } tm ? Math.Round(tm.PeakAllocated / 1073741824.0, 2) : null,
            ["torch_peak_reserved_gib"] = torchMem is { } tr ? Math.Round(tr.PeakReserved / 1073741824.0, 2) : null,
            ["native_unavailable"] = device.type == DeviceType.CUDA ? NativeExtension.UnavailableReason : null,
            ["fused_decode"] = st.GraphRows > 0 ? model.UsesFusedDecode : null,
            ["memory_note"] = mem is not null ? "cudaMemGetInfo used (whole device: caching-allocator reserve + context), sampled every 5 ms" : null,
        };
        if (profiled is { } pk)
        {
            // The profiled call's summed kernel time: against the measured call's seconds, the share the GPU was busy.
            result["profile_table"] = profilePath;
            result["profile_kernel_s"] = Math.Round(pk.Seconds, 4);
            result["profile_launches"] = pk.Launches;
        }
        return JsonSerializer.Serialize(result);
    }

    internal static QwenVLModel LoadOrCreate(string spec, ScalarType dtype, Device device)
    {
        if (spec.StartsWith("preset:", StringComparison.Ordinal))
        {
            var cfg = QwenPresets.Get(spec["preset:".Length..]) ?? throw new InputException($"--model: unknown preset '{spec}' ({string.Join(", ", QwenPresets.Names)})");
            return QwenVLModel.Create(cfg, dtype, device, initOnDevice: true);
        }
        if (spec.StartsWith("config:", StringComparison.Ordinal))
        {
            string path = spec["config:".Length..];
            var cfg = Directory.Exists(path) ? QwenVLConfig.Load(path) : QwenVLConfig.Parse(File.ReadAllText(path), path);
            return QwenVLModel.Create(cfg, dtype, device, initOnDevice: true);
        }
        return QwenVLModel.Load(spec, dtype, device);
    }

    /// <summary>hf_baseline.py's layout: [vision_start, image_pad × n, vision_end] then random text ids below 150000
    /// (specials avoided); the image is random normal pixel patches with grid (1, side/14, side/14).</summary>
    internal static List<GenerationPrompt> MakePrompts(Settings s, QwenVLConfig cfg, bool images, ScalarType dtype, Device device)
    {
        var rng = new Random(1234);
        var tok = cfg.Tokens;
        long[] specials = [tok.ImageTokenId, tok.VideoTokenId, tok.VisionStartTokenId, tok.VisionEndTokenId];
        int textVocab = Math.Min(150000, cfg.Text.VocabSize);
        var prompts = new List<GenerationPrompt>();
        torch.manual_seed(1234); // seeds the CUDA generators too (TorchSharp's Generator objects are CPU-only)
        for (int p = 0; p < s.Prompts; p++)
        {
            var ids = new List<int>();
            Tensor? pix = null, grid = null;
            if (images)
            {
                int g = s.ImageSide / 14, merged = g * g / (cfg.Vision!.SpatialMergeSize * cfg.Vision.SpatialMergeSize);
                ids.Add((int)tok.VisionStartTokenId);
                ids.AddRange(Enumerable.Repeat((int)tok.ImageTokenId, merged));
                ids.Add((int)tok.VisionEndTokenId);
                pix = torch.randn([g * g, cfg.Vision.PatchDim], dtype, device).DetachFromDisposeScope();
                grid = torch.tensor(new long[] { 1, g, g }, [1, 3]).DetachFromDisposeScope();
            }
            int target = ids.Count + s.PromptLength;
            while (ids.Count < target)
            {
                int t = rng.Next(textVocab);
                if (!specials.Contains(t)) ids.Add(t);
            }
            prompts.Add(new GenerationPrompt(ids, pix, grid));
        }
        return prompts;
    }
}
