// `lmmr1 bench train`: the policy update's cost on its own — forward + backward of the actor (the trainer's code path:
// PolicyForward.ActionLogProbs over a collated micro-batch, log-probs of every position after the first, as
// hf_baseline.py's train() takes them over the whole sequence) and the AdamW step with fp32 masters (ModelOptimizer,
// vision tower frozen as --freeze_prefix visual), on random text token ids at given batch × length cases, with and
// without gradient checkpointing. One JSON line per case: tokens/s of forward+backward (hf_baseline.py's number) and
// of the whole step, TFLOP/s and MFU by hf_baseline.py's formula (6 · LM params · tokens + causal attention) against
// --peak-tflops, and peak memory (the torch allocator's, via the native extension, and the whole device's). With
// --packing_samples the rows go through the padding-free forward (one sequence, flash-attention varlen on CUDA).
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Training.Optimization;
using LmmR1.Training.Ppo;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Cli.Commands;

public static class BenchTrainCommand
{
    public sealed record Case(int Batch, int Length, bool GradientCheckpointing);

    public sealed record Settings
    {
        public required string Model { get; init; }
        public required IReadOnlyList<Case> Cases { get; init; }
        public string Device { get; init; } = "cuda";
        public string DType { get; init; } = "bfloat16";
        public int Steps { get; init; } = 4;
        public bool Optimizer { get; init; } = true;
        public IReadOnlyList<string> FreezePrefix { get; init; } = ["visual"];
        public double PeakTflops { get; init; } = 989;
        public string? Output { get; init; }
        /// <summary>--packing_samples: the rows run as one sequence through the padding-free forward (PackedSequences).</summary>
        public bool Packing { get; init; }
        /// <summary>--split-phases: synchronise after the forward too and report forward, backward and the host's
        /// enqueue time of each (a phase whose enqueue time is close to its time is bound by the host, not the GPU).</summary>
        public bool SplitPhases { get; init; }
        /// <summary>--profile-kernels DIR: one more step per case, untimed, with the kernel profiler on; its table goes to
        /// DIR/train-BxL[-ckpt][-packed].tsv (KernelProfile).</summary>
        public string? ProfileKernels { get; init; }
    }

    /// <summary>"BxL" or "BxL:ckpt" / "BxL:nockpt", comma-separated (e.g. 4x1024,8x2048:ckpt).</summary>
    public static List<Case> ParseCases(string spec)
    {
        var list = new List<Case>();
        foreach (var raw in spec.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = raw.Split(':');
            var bl = parts[0].Split('x');
            bool ok = parts.Length <= 2 && bl.Length == 2 && int.TryParse(bl[0], out int b) && int.TryParse(bl[1], out int l) && b >= 1 && l >= 2
                      && (parts.Length == 1 || parts[1] is "ckpt" or "nockpt");
            if (!ok) throw InputException.At(null, null, "--cases", $"'{raw}' is not BATCHxLENGTH[:ckpt|:nockpt] with BATCH ≥ 1 and LENGTH ≥ 2 (e.g. 4x1024,8x2048:ckpt)");
            list.Add(new Case(int.Parse(bl[0]), int.Parse(bl[1]), parts.Length == 2 && parts[1] == "ckpt"));
        }
        if (list.Count == 0) throw InputException.At(null, null, "--cases", "no case given (e.g. 4x1024,8x2048:ckpt)");
        return list;
    }

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder, or preset:NAME / config:PATH for random weights built in memory", Required = true };
        var cases = new Option<string>("--cases")
        {
            Description = "BATCHxLENGTH[:ckpt] cases, comma-separated (ckpt = gradient checkpointing)", DefaultValueFactory = _ => "4x1024,8x2048:ckpt",
        };
        var device = ModelCommands.DeviceOption();
        device.DefaultValueFactory = _ => "cuda";
        var dtype = ModelCommands.DTypeOption("bfloat16");
        var steps = new Option<int>("--steps") { Description = "Timed steps per case (the first is a warm-up; the best of the rest is reported)", DefaultValueFactory = _ => 4 };
        var noOptim = new Option<bool>("--no-optimizer") { Description = "Forward + backward only (no AdamW step)" };
        var freeze = new Option<string[]>("--freeze_prefix") { Description = "Frozen parameter prefixes (default: visual)", AllowMultipleArgumentsPerToken = true };
        var tflops = new Option<double>("--peak-tflops") { Description = "Dense bf16 peak for MFU (H100/H200 SXM spec: 989)", DefaultValueFactory = _ => 989 };
        var output = new Option<string?>("--output") { Description = "Also append the JSON lines to this file" };
        var packing = new Option<bool>("--packing_samples")
        {
            Description = "Run the rows as one packed sequence (flash-attention varlen on CUDA in bf16/fp16), as lmmr1 train --packing_samples",
        };
        var split = new Option<bool>("--split-phases")
        {
            Description = "Also synchronise between forward and backward and report each one's time and the host's enqueue time (one more sync per step)",
        };
        var profile = new Option<string?>("--profile-kernels")
        {
            Description = "Folder: run one more (untimed) step per case with the kernel profiler and write its per-kernel table there (CUDA, native extension)",
        };
        var cmd = new Command("train", "Measure forward + backward + AdamW of the policy at batch × length cases (prints JSON)")
        {
            model, cases, device, dtype, steps, noOptim, freeze, tflops, output, packing, split, profile,
        };
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            var s = new Settings
            {
                Model = pr.GetValue(model)!, Cases = ParseCases(pr.GetValue(cases)!), Device = pr.GetValue(device)!, DType = pr.GetValue(dtype)!,
                Steps = pr.GetValue(steps), Optimizer = !pr.GetValue(noOptim),
                FreezePrefix = pr.GetResult(freeze) is { Implicit: false } ? pr.GetValue(freeze) ?? [] : ["visual"],
                PeakTflops = pr.GetValue(tflops), Output = pr.GetValue(output), Packing = pr.GetValue(packing),
                SplitPhases = pr.GetValue(split), ProfileKernels = pr.GetValue(profile),
            };
            Run(s, Console.WriteLine);
            return 0;
        }));
        return cmd;
    }

    public static void Run(Settings s, Action<string> emit)
    {
        if (s.Steps < 2) throw InputException.At(null, null, "--steps", $"must be ≥ 2 (one warm-up and one timed step), got {s.Steps}");
        if (!(s.PeakTflops > 0)) throw InputException.At(null, null, "--peak-tflops", $"must be > 0, got {s.PeakTflops}");
        var device = ModelCommands.ParseDevice(s.Device);
        var dtype = ModelCommands.ParseDType(s.DType);
        bool cuda = device.type == DeviceType.CUDA;
        var native = s.ProfileKernels is not null ? KernelProfile.Require(device, "--profile-kernels") : cuda ? NativeExtension.TryGet() : null;
        int devIndex = device.index < 0 ? 0 : device.index;
        using var mem = cuda ? new CudaMemory.PeakSampler() : null;
        var clock = Stopwatch.StartNew();
        using var model = BenchGenerateCommand.LoadOrCreate(s.Model, dtype, device);
        double loadS = clock.Elapsed.TotalSeconds;
        if (s.FreezePrefix.Count > 0) PpoModels.Freeze(model, s.FreezePrefix);
        var cfg = model.Config;
        var counts = model.CountParameters();
        long lmParams = counts.LanguageModel + counts.LmHead;   // hf_baseline.py's n_lm: every parameter outside the vision tower
        using var optimizer = s.Optimizer
            ? new ModelOptimizer(model.named_parameters().Select(p => (p.name, p.parameter)), new LrSchedule(1e-7, 1_000_000, 0), 0.9, 0.95, 0.0, 1.0)
            : null;
        model.train();
        foreach (var c in s.Cases)
        {
            model.GradientCheckpointing = c.GradientCheckpointing;
            var fb = new List<double>();
            var opt = new List<double>();
            var fwd = new List<double>();
            var fwdHost = new List<double>();
            var bwdHost = new List<double>();
            mem?.Reset();
            native?.ResetPeakMemory(devIndex);
            var rng = new Random(c.Batch * 100_003 + c.Length);
            int textVocab = Math.Min(150000, cfg.Text.VocabSize);
            // One prompt token, LENGTH − 1 response tokens: the log-probs of every position after the first.
            var items = Enumerable.Range(0, c.Batch).Select(i => new ExperienceItem
            {
                PromptIndex = i, SampleIndex = 0,
                PromptIds = [rng.Next(textVocab)],
                ResponseIds = Enumerable.Range(0, c.Length - 1).Select(_ => (long)rng.Next(textVocab)).ToArray(),
            }).ToList();
            void Step(bool timed)
            {
                using var scope = torch.NewDisposeScope();
                using var e = Experience.Collate(items, device, 0, pack: s.Packing);
                Sync(device);
                var sw = Stopwatch.StartNew();
                var lp = PolicyForward.ActionLogProbs(model, e, 1.0);
                var loss = lp.sum().DivS(lp.numel());
                if (s.SplitPhases && timed)
                {
                    fwdHost.Add(sw.Elapsed.TotalSeconds);
                    Sync(device);
                    fwd.Add(sw.Elapsed.TotalSeconds);
                }
                double bwdStart = sw.Elapsed.TotalSeconds;
                loss.backward();
                if (s.SplitPhases && timed) bwdHost.Add(sw.Elapsed.TotalSeconds - bwdStart);
                Sync(device);
                if (timed) fb.Add(sw.Elapsed.TotalSeconds);
                sw.Restart();
                if (optimizer is not null) optimizer.Step();
                else foreach (var prm in model.parameters()) prm.grad = null;   // as AdamW and hf_baseline.py's zero_grad(set_to_none=True)
                Sync(device);
                if (timed) opt.Add(sw.Elapsed.TotalSeconds);
            }
            for (int step = 0; step < s.Steps; step++) Step(timed: true);
            (double Seconds, long Launches)? profiled = null;
            string? profilePath = null;
            if (s.ProfileKernels is { } dir)
            {
                profilePath = Path.Combine(dir, $"train-{c.Batch}x{c.Length}{(c.GradientCheckpointing ? "-ckpt" : "")}{(s.Packing ? "-packed" : "")}.tsv");
                profiled = KernelProfile.Record(native!, device, profilePath, () => Step(timed: false));
            }
            double fbBest = fb.Skip(1).Min(), optBest = opt.Skip(1).Min();
            long tokens = (long)c.Batch * c.Length;
            int layers = cfg.Text.NumLayers, hidden = cfg.Text.HiddenSize;
            double flops = 6.0 * lmParams * tokens + 12.0 * layers * hidden * c.Length * tokens / 2;   // dense + causal attention
            var tm = native?.MemoryStats(devIndex);
            var result = new Dictionary<string, object?>
            {
                ["what"] = "lmmr1_train_fwd_bwd", ["device"] = s.Device, ["dtype"] = s.DType, ["model"] = cfg.ModelType,
                ["batch"] = c.Batch, ["seq"] = c.Length, ["grad_ckpt"] = c.GradientCheckpointing, ["packing"] = s.Packing,
                ["packed_kernel"] = s.Packing ? (PackedSequences.FlashRuns(device, dtype, cfg.Text.HeadDim) ? "flash_varlen" : "per_segment") : null,
                ["optimizer"] = !s.Optimizer ? null : dtype == ScalarType.Float32 ? "adamw" : "adamw_fp32_masters", ["trainable_params"] = model.parameters().Where(p => p.requires_grad).Sum(p => p.numel()),
                ["params_lm"] = lmParams, ["load_s"] = Math.Round(loadS, 2),
                ["seconds"] = Math.Round(fbBest, 3), ["optim_s"] = Math.Round(optBest, 3),
                ["fwd_bwd_s_all"] = fb.Select(x => Math.Round(x, 3)).ToArray(), ["optim_s_all"] = opt.Select(x => Math.Round(x, 3)).ToArray(),
                ["tokens_per_s"] = Math.Round(tokens / fbBest), ["tokens_per_s_with_optim"] = Math.Round(tokens / (fbBest + optBest)),
                ["tflops"] = Math.Round(flops / fbBest / 1e12, 1), ["mfu"] = Math.Round(flops / fbBest / (s.PeakTflops * 1e12), 3),
                ["peak_tflops"] = s.PeakTflops,
                ["torch_peak_allocated_gib"] = tm is { } a ? Math.Round(a.PeakAllocated / 1073741824.0, 2) : null,
                ["torch_peak_reserved_gib"] = tm is { } r ? Math.Round(r.PeakReserved / 1073741824.0, 2) : null,
                ["peak_device_used_gib"] = mem is null || mem.Peak < 0 ? null : Math.Round(mem.Peak / 1073741824.0, 2),
                ["native_unavailable"] = cuda ? NativeExtension.UnavailableReason : null,
            };
            if (profiled is { } pk)
            {
                result["profile_table"] = profilePath;
                result["profile_kernel_s"] = Math.Round(pk.Seconds, 4);
                result["profile_launches"] = pk.Launches;
            }
            if (s.SplitPhases)
            {
                // The step with the best forward + backward; the host's enqueue times of that step's phases.
                int best = 1 + fb.Skip(1).Select((x, i) => (x, i)).MinBy(p => p.x).i;
                result["fwd_s"] = Math.Round(fwd[best], 4);
                result["bwd_s"] = Math.Round(fb[best] - fwd[best], 4);
                result["fwd_host_s"] = Math.Round(fwdHost[best], 4);
                result["bwd_host_s"] = Math.Round(bwdHost[best], 4);
            }
            string json = JsonSerializer.Serialize(result);
            if (s.Output is { } path) File.AppendAllText(path, json + Environment.NewLine);
            emit(json);
        }
    }

    static void Sync(Device d)
    {
        if (d.type == DeviceType.CUDA) torch.cuda.synchronize(d);
    }
}
