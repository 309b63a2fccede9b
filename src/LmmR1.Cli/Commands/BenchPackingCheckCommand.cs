// `lmmr1 bench packing-check`: padding-free packing (--packing_samples) against the padded forward on a device (issue
// 13 item 3). One synthetic micro-batch of rows with different prompt and response lengths (optionally one random
// image per row) runs the actor's log-prob forward + backward of a fixed weighted loss three ways: (P) padded, the
// reference; (K) packed with --kernel (auto: flash varlen through the native extension on CUDA in bf16/fp16, else per
// segment); (R) the padded path one row at a time (no padding at all), which differs from P only by rounding — the
// floor that two correct computations of the same numbers show on this device and dtype. PASS when K is within
// 2·floor + ε of P in log-probs (max |Δ| over the action slots) and in gradients (‖Δg‖/‖g‖ over all parameters), and
// under a hard cap: fp32 ε 1e-5 / cap 1e-4 (log-prob), ε 1e-5 / cap 1e-3 (gradient); bf16 ε 1e-3 / cap 0.1 (a logit of
// magnitude ~10 is cast to bf16, u = 2⁻⁹, i.e. ±0.02 per logit, before the fp32 log-softmax), ε 1e-3 / cap 0.05.
// Also reports the tokens each layout computes and the fwd+bwd time of each (not a benchmark: one warm run each).
// --samples N gives each prompt N rows (a prompt's samples); --share-prompts packs each prompt once for its rows
// (--packing_share_prompts), checked against the same padded reference.
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Training.Ppo;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Cli.Commands;

public static class BenchPackingCheckCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder, or preset:NAME / config:PATH for random weights", Required = true };
        var device = ModelCommands.DeviceOption();
        device.DefaultValueFactory = _ => "cuda";
        var dtype = ModelCommands.DTypeOption("bfloat16");
        var rows = new Option<int>("--rows") { Description = "Rows in the micro-batch", DefaultValueFactory = _ => 8 };
        var prompt = new Option<string>("--prompt-len") { Description = "Text tokens per prompt, MIN-MAX", DefaultValueFactory = _ => "16-96" };
        var response = new Option<string>("--response-len") { Description = "Response tokens per row, MIN-MAX", DefaultValueFactory = _ => "1-256" };
        var image = new Option<int>("--image") { Description = "Side of one random image per row (multiple of 28; 0 = text only)", DefaultValueFactory = _ => 0 };
        var kernel = new Option<string>("--kernel") { Description = "auto, flash or per-segment", DefaultValueFactory = _ => "auto" };
        var checkpointing = new Option<bool>("--gradient-checkpointing") { Description = "Recompute decoder layers in backward" };
        var samples = new Option<int>("--samples") { Description = "Rows per prompt (same prompt and image, different responses); --rows must be a multiple", DefaultValueFactory = _ => 1 };
        var share = new Option<bool>("--share-prompts") { Description = "Pack each prompt once for its rows (--packing_share_prompts)" };
        var output = new Option<string?>("--output") { Description = "Also append the JSON line to this file" };
        var cmd = new Command("packing-check", "Compare packed (padding-free) with padded log-probs and gradients (prints JSON, PASS/FAIL)")
        {
            model, device, dtype, rows, prompt, response, image, kernel, checkpointing, samples, share, output,
        };
        cmd.SetAction(pr => InputsCli.Guard(() => Run(pr.GetValue(model)!, pr.GetValue(device)!, pr.GetValue(dtype)!, pr.GetValue(rows),
            Range(pr.GetValue(prompt)!, "--prompt-len"), Range(pr.GetValue(response)!, "--response-len"), pr.GetValue(image),
            pr.GetValue(kernel)!, pr.GetValue(checkpointing), pr.GetValue(samples), pr.GetValue(share), pr.GetValue(output))));
        return cmd;
    }

    static (int Min, int Max) Range(string s, string flag)
    {
        var parts = s.Split('-');
        if (parts.Length == 2 && int.TryParse(parts[0], out int a) && int.TryParse(parts[1], out int b) && a >= 1 && b >= a) return (a, b);
        throw new InputException($"{flag}: '{s}' is not MIN-MAX with 1 ≤ MIN ≤ MAX");
    }

    sealed record Pass(Tensor LogProbs, Dictionary<string, Tensor> Grads, double Milliseconds);

    static int Run(string modelSpec, string deviceName, string dtypeName, int rows, (int Min, int Max) promptLen, (int Min, int Max) responseLen,
                   int imageSide, string kernelName, bool checkpointing, int samples, bool share, string? output)
    {
        var kernel = kernelName switch
        {
            "auto" => PackedKernel.Auto, "flash" => PackedKernel.Flash, "per-segment" => PackedKernel.PerSegment,
            _ => throw new InputException($"--kernel: '{kernelName}' is not auto, flash or per-segment"),
        };
        if (rows < 1) throw new InputException("--rows must be at least 1");
        if (samples < 1 || rows % samples != 0) throw new InputException($"--samples: {samples} must be ≥ 1 and divide --rows ({rows})");
        if (imageSide % 28 != 0) throw new InputException($"--image: {imageSide} is not a multiple of 28");
        var device = ModelCommands.ParseDevice(deviceName);
        var dtype = ModelCommands.ParseDType(dtypeName);
        using var model = BenchGenerateCommand.LoadOrCreate(modelSpec, dtype, device);
        model.GradientCheckpointing = checkpointing;
        var cfg = model.Config;
        bool images = imageSide > 0 && cfg.Vision is not null;

        // Rows: random text after the image block, random responses (ids below 150000, specials avoided).
        var settings = new BenchGenerateCommand.Settings { Model = modelSpec, Prompts = rows, PromptLength = promptLen.Max, ImageSide = imageSide };
        var prompts = BenchGenerateCommand.MakePrompts(settings, cfg, images, dtype, device);
        var rng = new Random(4321);
        var tok = cfg.Tokens;
        long[] specials = [tok.ImageTokenId, tok.VideoTokenId, tok.VisionStartTokenId, tok.VisionEndTokenId];
        int textVocab = Math.Min(150000, cfg.Text.VocabSize);
        var visions = new List<VisionInput>();
        var items = new List<ExperienceItem>();
        for (int g = 0; g < rows / samples; g++)
        {
            var p = prompts[g];
            int visionPart = p.TokenIds.Count - promptLen.Max;
            var ids = p.TokenIds.Take(visionPart + rng.Next(promptLen.Min, promptLen.Max + 1)).Select(t => (long)t).ToArray();
            VisionInput? v = p.PixelValues is null ? null : new VisionInput { PixelValues = p.PixelValues, ImageGridThw = p.ImageGridThw! };
            if (v is not null) visions.Add(v);
            for (int j = 0; j < samples; j++)
            {
                var resp = new List<long>();
                int len = rng.Next(responseLen.Min, responseLen.Max + 1);
                while (resp.Count < len) { int t = rng.Next(textVocab); if (!specials.Contains(t)) resp.Add(t); }
                items.Add(new ExperienceItem { PromptIndex = g, SampleIndex = j, PromptIds = ids, ResponseIds = resp.ToArray(), Vision = v });
            }
        }
        try
        {
            var named = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
            using var padded = Experience.Collate(items, device, padTokenId: 0);
            long a = padded.NumActions;
            torch.manual_seed(99);
            using var weights = torch.randn(new long[] { rows, a }, dtype: ScalarType.Float32, device: device);
            double count = padded.ActionMask.sum().item<long>();

            void Sync() { if (device.type == DeviceType.CUDA) torch.cuda.synchronize(device); }
            void ZeroGrads() { foreach (var (_, p) in named) p.grad = null; }
            Dictionary<string, Tensor> TakeGrads()
            {
                var g = new Dictionary<string, Tensor>();
                foreach (var (name, p) in named)
                {
                    using var grad = p.grad;
                    if (grad is not null) g[name] = grad.detach().clone().DetachFromDisposeScope();
                }
                ZeroGrads();
                return g;
            }
            Pass Batched(Experience e)
            {
                ZeroGrads();
                Sync();
                var clock = Stopwatch.StartNew();
                Tensor lp;
                using (var scope = torch.NewDisposeScope())
                {
                    var l = PolicyForward.ActionLogProbs(model, e, 1.0);
                    var loss = (l * weights).masked_fill(e.ActionMask.logical_not(), TorchScalars.Zero).sum().DivS(count);
                    loss.backward();
                    QwenVLModel.ReleaseBackwardHandles();
                    lp = l.detach().to(ScalarType.Float32).masked_fill(e.ActionMask.logical_not(), TorchScalars.Zero).DetachFromDisposeScope();
                }
                Sync();
                double ms = clock.Elapsed.TotalMilliseconds;
                return new Pass(lp, TakeGrads(), ms);
            }

            // The same micro-batch laid out for the packed forward with the requested kernel (Collate would pick Auto);
            // it borrows the padded experience's tensors, so it is not disposed itself.
            using var packing = share ? PackedSequences.FromRows(Experience.PromptGroups(items), device, kernel)
                                      : PackedSequences.FromLengths(items.Select(i => i.TotalLength).ToList(), device, kernel);
            var packedWithKernel = new Experience
            {
                Sequences = padded.Sequences, AttentionMask = padded.AttentionMask, ActionMask = padded.ActionMask,
                ImageGridThw = padded.ImageGridThw, Visions = padded.Visions, RowVisions = padded.RowVisions, Items = items, Packing = packing,
            };
            // Warm-up (kernel selection, the native build/load), then the measured passes.
            Batched(packedWithKernel).Grads.Values.ToList().ForEach(t => t.Dispose());
            Batched(padded).Grads.Values.ToList().ForEach(t => t.Dispose());
            var p = Batched(padded);
            var k = Batched(packedWithKernel);
            bool flash = packing.UsesFlash(torch.empty([1], dtype, device));

            // The floor: one row at a time, no padding (gradients accumulate over the rows).
            ZeroGrads();
            var rowLp = new List<Tensor>();
            for (int r = 0; r < rows; r++)
            {
                using var scope = torch.NewDisposeScope();
                using var e = Experience.Collate([items[r]], device, padTokenId: 0);
                long ar = e.NumActions;
                var l = PolicyForward.ActionLogProbs(model, e, 1.0);
                var w = weights.narrow(0, r, 1).narrow(1, a - ar, ar);
                var loss = (l * w).masked_fill(e.ActionMask.logical_not(), TorchScalars.Zero).sum().DivS(count);
                loss.backward();
                QwenVLModel.ReleaseBackwardHandles();
                rowLp.Add(ActionTensors.Align(l, e.ActionMask, a).MoveToOuterDisposeScope());
            }
            var floorLpT = torch.cat(rowLp, 0);
            var floorGrads = TakeGrads();

            double LpDiff(Tensor x) { using var scope = torch.NewDisposeScope(); return (x - p.LogProbs).abs().max().item<float>(); }
            double LpMean(Tensor x) { using var scope = torch.NewDisposeScope(); return (x - p.LogProbs).abs().sum().DivS(count).item<float>(); }
            (double Global, double WorstParam, string WorstName) GradDiff(Dictionary<string, Tensor> g)
            {
                double num = 0, den = 0, worst = 0;
                string worstName = "";
                foreach (var (name, reference) in p.Grads)
                {
                    using var r32 = reference.to(ScalarType.Float32);
                    using var x32 = g.TryGetValue(name, out var gx) ? gx.to(ScalarType.Float32) : torch.zeros_like(r32);
                    using var scope = torch.NewDisposeScope();
                    using var dn = (x32 - r32).pow(TorchScalars.Two).sum();
                    using var rn = r32.pow(TorchScalars.Two).sum();
                    double d2 = dn.item<float>(), r2 = rn.item<float>();
                    num += d2; den += r2;
                    if (r2 > 0 && Math.Sqrt(d2 / r2) > worst) { worst = Math.Sqrt(d2 / r2); worstName = name; }
                }
                return (den > 0 ? Math.Sqrt(num / den) : 0, worst, worstName);
            }
            double kLp = LpDiff(k.LogProbs), floorLp = LpDiff(floorLpT);
            var kG = GradDiff(k.Grads);
            var floorG = GradDiff(floorGrads);
            bool fp32 = dtype is ScalarType.Float32 or ScalarType.Float64;
            var (epsLp, capLp, epsG, capG) = fp32 ? (1e-5, 1e-4, 1e-5, 1e-3) : (1e-3, 0.1, 1e-3, 0.05);
            double tolLp = Math.Min(capLp, 2 * floorLp + epsLp), tolG = Math.Min(capG, 2 * floorG.Global + epsG);
            bool pass = kLp <= tolLp && kG.Global <= tolG;
            var result = new Dictionary<string, object?>
            {
                ["what"] = "packing_check", ["model"] = cfg.ModelType, ["layers"] = cfg.Text.NumLayers, ["hidden"] = cfg.Text.HiddenSize,
                ["dtype"] = dtypeName, ["device"] = deviceName, ["rows"] = rows, ["image_side"] = images ? imageSide : 0,
                ["gradient_checkpointing"] = checkpointing, ["kernel"] = kernelName, ["flash_varlen_used"] = flash,
                ["samples_per_prompt"] = samples, ["share_prompts"] = share, ["key_tokens"] = packing.KeyTokens,
                ["native"] = device.type == DeviceType.CUDA ? NativeExtension.TryGet()?.Path : null,
                ["native_unavailable"] = device.type == DeviceType.CUDA ? NativeExtension.UnavailableReason : null,
                ["tokens_real"] = packing.TotalTokens, ["tokens_padded"] = padded.Sequences.numel(), ["action_slots"] = (long)count,
                ["max_abs_logprob_diff"] = kLp, ["mean_abs_logprob_diff"] = LpMean(k.LogProbs),
                ["floor_max_abs_logprob_diff"] = floorLp, ["tolerance_logprob"] = tolLp,
                ["grad_rel_diff"] = kG.Global, ["grad_worst_param_rel_diff"] = kG.WorstParam, ["grad_worst_param"] = kG.WorstName,
                ["floor_grad_rel_diff"] = floorG.Global, ["tolerance_grad"] = tolG,
                ["padded_fwd_bwd_ms"] = Math.Round(p.Milliseconds, 1), ["packed_fwd_bwd_ms"] = Math.Round(k.Milliseconds, 1),
                ["result"] = pass ? "PASS" : "FAIL",
            };
            string json = JsonSerializer.Serialize(result);
            Console.WriteLine(json);
            if (output is not null) File.AppendAllText(output, json + Environment.NewLine);
            Console.Error.WriteLine($"{(pass ? "PASS" : "FAIL")}: {cfg.ModelType} {dtypeName} kernel {kernelName}{(flash ? " (flash varlen)" : "")}" +
                $"{(share ? $", {samples} rows share each prompt" : "")}: " +
                $"max |Δ log-prob| {kLp:G3} (tolerance {tolLp:G3}; floor {floorLp:G3}), ‖Δg‖/‖g‖ {kG.Global:G3} (tolerance {tolG:G3}; floor {floorG.Global:G3}); " +
                $"tokens {packing.TotalTokens} packed vs {padded.Sequences.numel()} padded; fwd+bwd {k.Milliseconds:F1} vs {p.Milliseconds:F1} ms");
            foreach (var t in p.Grads.Values.Concat(k.Grads.Values).Concat(floorGrads.Values)) t.Dispose();
            return pass ? 0 : 1;
        }
        finally
        {
            foreach (var v in visions) v.Dispose();
        }
    }
}
