// `lmmr1 bench graph-check`: the CUDA-graph decode path against the eager engine on the GPU (issue 12, "same outputs").
// For each case and sampler (greedy; seeded sampling with temperature/top-k/top-p/min-p, banned tokens, stop tokens and
// min_new_tokens) it runs (A) the eager loop, (B) the graph path's static step run eagerly, (C) the captured graphs, and
// then again after an in-place update of every weight matrix (C reusing its captured graphs). C must equal B bit for
// bit (the same computation replayed). C vs A are different computations (A attends over the filled prefix only, C over
// its attention window — the prefix rounded up, --attention-window — under a mask), so bf16 rounding can flip a discrete choice: a row's first differing token
// counts as a near-tie when the log-probs of A and C agreed (|Δ| ≤ 0.05) over the whole common prefix, i.e. the models
// matched up to rounding until a token was tipped. One JSON line per (case, sampler, phase). --lora_rank R attaches
// LoRA adapters (all-linear, random B) first, so the adapters run inside the captured graphs and the in-place update
// changes them too. Where the fused decode kernels run (FusedDecodeOps), (D) the static step with them switched off runs
// too: B vs D is the fused vs the unfused arithmetic of one step, which is meant to be bit-identical
// (fused_equals_unfused_rows). Where the decode_attention kernel runs too (QwenVLModel.UsesFusedAttention), which is
// equal only up to rounding, (E) the fused step with SDPA attention runs as well: E vs D is then the bit-identical
// check, and B vs E (attention_kernel_vs_sdpa) counts equal rows, divergences and near-ties as above.
using System.CommandLine;
using System.Text.Json;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Cli.Commands;

public static class BenchGraphCheckCommand
{
    const double PrefixAgreement = 0.05;

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model folder, or preset:NAME / config:PATH for random weights", Required = true };
        var device = ModelCommands.DeviceOption();
        device.DefaultValueFactory = _ => "cuda";
        var dtype = ModelCommands.DTypeOption("bfloat16");
        var cases = new Option<string>("--cases") { Description = "PROMPTSxSAMPLES:NEW:text|imageSIDE, comma-separated", DefaultValueFactory = _ => "8x4:64:text" };
        var promptLen = new Option<int>("--prompt-len") { DefaultValueFactory = _ => 32 };
        var output = new Option<string?>("--output") { Description = "Also append the JSON lines to this file" };
        var loraRank = new Option<int>("--lora_rank") { Description = "Attach LoRA adapters of this rank (all-linear, random B) first (0: none)", DefaultValueFactory = _ => 0 };
        var window = new Option<int>("--attention-window") { Description = "Attention windows of the static step and the graphs (multiples of this many positions; 0 = the whole capacity)", DefaultValueFactory = _ => 128 };
        var cmd = new Command("graph-check", "Compare CUDA-graph decoding with the eager engine (tokens, log-probs, near-ties; prints JSON)")
        {
            model, device, dtype, cases, promptLen, output, loraRank, window,
        };
        cmd.SetAction(pr =>
        {
            Run(pr.GetValue(model)!, pr.GetValue(device)!, pr.GetValue(dtype)!, pr.GetValue(cases)!, pr.GetValue(promptLen), pr.GetValue(output),
                pr.GetValue(loraRank), pr.GetValue(window));
            return 0;
        });
        return cmd;
    }

    static void Run(string modelSpec, string deviceName, string dtypeName, string casesSpec, int promptLen, string? output, int loraRank = 0, int window = 128)
    {
        BenchGenerateCommand.CheckAttentionWindow(window);
        var device = ModelCommands.ParseDevice(deviceName);
        var dtype = ModelCommands.ParseDType(dtypeName);
        using var model = BenchGenerateCommand.LoadOrCreate(modelSpec, dtype, device);
        if (loraRank != 0) RandomAdapterCommand.AttachRandom(model, new LoraOptions { Rank = loraRank }.Validate(), 0.02, 1);
        var cfg = model.Config;
        void Emit(Dictionary<string, object?> d)
        {
            string json = JsonSerializer.Serialize(d);
            Console.WriteLine(json);
            if (output is not null) File.AppendAllText(output, json + Environment.NewLine);
        }
        var settings = BenchGenerateCommand.ExpandCases(new BenchGenerateCommand.Settings { Model = modelSpec, Cases = casesSpec, PromptLength = promptLen });
        int vocab = Math.Min(150000, cfg.Text.VocabSize);
        var samplers = new (string Name, Func<int, int, SamplingParams> Make)[]
        {
            ("greedy", (n, len) => new SamplingParams { N = n, Temperature = 0, MaxNewTokens = len, MinNewTokens = 0, Seed = 3 }),
            ("sampled", (n, len) => new SamplingParams
            {
                N = n, Temperature = 0.8, TopP = 0.9, TopK = 50, MinP = 0.01, MaxNewTokens = len, MinNewTokens = 4, Seed = 5,
                StopTokenIds = Enumerable.Range(0, vocab).Where(i => i % 97 == 3).ToList(), BannedTokenIds = [7, 11, 13],
            }),
            ("plain", (n, len) => new SamplingParams { N = n, Temperature = 1, MaxNewTokens = len, MinNewTokens = 0, Seed = 9 }),
        };
        var graphEngine = new GenerationEngine(model, new GenerationEngineOptions { CheckEvery = 4, MaxTokensPerBatch = 0, AttentionWindow = window });
        foreach (var s in settings)
        {
            bool images = !s.TextOnly && s.ImageSide > 0 && cfg.Vision is not null;
            var prompts = BenchGenerateCommand.MakePrompts(s, cfg, images, dtype, device);
            foreach (string phase in new[] { "initial", "after_weight_update" })
            {
                if (phase == "after_weight_update") UpdateWeightsInPlace(model);
                foreach (var (name, make) in samplers)
                {
                    var sp = make(s.Samples, s.NewTokens);
                    var a = new GenerationEngine(model, new GenerationEngineOptions { CheckEvery = 4, CudaGraphs = false, MaxTokensPerBatch = 0 }).Generate(prompts, sp);
                    using var bEngine = new GenerationEngine(model, new GenerationEngineOptions { CheckEvery = 4, StaticStepWithoutGraph = true, MaxTokensPerBatch = 0, AttentionWindow = window });
                    var b = bEngine.Generate(prompts, sp);
                    bool fused = model.UsesFusedDecode, fusedAttention = model.UsesFusedAttention;
                    IReadOnlyList<GenerationOutput>? dOut = null, eOut = null;
                    if (fused)
                    {
                        model.FusedDecode = false;
                        using var dEngine = new GenerationEngine(model, new GenerationEngineOptions { CheckEvery = 4, StaticStepWithoutGraph = true, MaxTokensPerBatch = 0, AttentionWindow = window });
                        dOut = dEngine.Generate(prompts, sp);
                        model.FusedDecode = true;
                    }
                    if (fusedAttention)
                    {
                        model.FusedAttention = false;
                        using var eEngine = new GenerationEngine(model, new GenerationEngineOptions { CheckEvery = 4, StaticStepWithoutGraph = true, MaxTokensPerBatch = 0, AttentionWindow = window });
                        eOut = eEngine.Generate(prompts, sp);
                        model.FusedAttention = true;
                    }
                    // The bit-identical kernels are B vs D without the attention kernel (E vs D) when it runs.
                    var elementwise = eOut ?? b;
                    int capturedBefore = graphEngine.CapturedGraphs;
                    var c = graphEngine.Generate(prompts, sp);
                    var st = graphEngine.LastStats;
                    Emit(Compare(a, b, c) is var d ? new Dictionary<string, object?>(d)
                    {
                        ["what"] = "graph_check", ["model"] = cfg.ModelType, ["attention_window"] = window, ["layers"] = cfg.Text.NumLayers, ["dtype"] = dtypeName, ["lora_rank"] = loraRank,
                        ["case"] = $"{s.Prompts}x{s.Samples}:{s.NewTokens}:{(images ? "image" + s.ImageSide : "text")}",
                        ["sampler"] = name, ["phase"] = phase, ["graphs_used"] = st.GraphRows > 0,
                        ["graphs_captured_this_call"] = st.GraphCaptures, ["compactions"] = st.Compactions, ["row_steps"] = st.RowSteps,
                        ["static_compactions"] = bEngine.LastStats.Compactions, ["graphs_reused"] = st.GraphRows > 0 && st.GraphCaptures == 0 && capturedBefore > 0,
                        ["native"] = NativeExtension.TryGet()?.Path, ["native_unavailable"] = NativeExtension.UnavailableReason,
                        ["fused_decode"] = fused, ["fused_equals_unfused_rows"] = dOut is null ? null : BitEqualRows(elementwise, dOut),
                        ["fused_vs_unfused_max_abs_logprob_diff"] = dOut is null ? null : MaxLogProbDiff(elementwise, dOut),
                        ["fused_attention"] = fusedAttention,
                        ["attention_kernel_vs_sdpa"] = eOut is null ? null : Divergences(eOut, b),
                    } : null);
                }
            }
        }
        graphEngine.Dispose();
    }

    /// <summary>Every weight matrix w += 0.002·N(0, 1) in place (what an optimizer step does to the graphs' inputs).</summary>
    static void UpdateWeightsInPlace(QwenVLModel model)
    {
        using var noGrad = torch.no_grad();
        torch.manual_seed(77);
        foreach (var p in model.parameters())
            if (p.dim() >= 2)
                using (var n = torch.randn_like(p)) p.PlusScaled_(n, 0.002);
    }

    /// <summary>Same tokens and bit-identical log-probs.</summary>
    static bool BitEqual(GenerationOutput x, GenerationOutput y) =>
        x.TokenIds.AsSpan().SequenceEqual(y.TokenIds) && x.LogProbs.AsSpan().SequenceEqual(y.LogProbs);

    static int BitEqualRows(IReadOnlyList<GenerationOutput> x, IReadOnlyList<GenerationOutput> y) => x.Zip(y).Count(p => BitEqual(p.First, p.Second));

    /// <summary>How two rows agree: the length of their common token prefix, the largest |Δ log-prob| over it, and
    /// whether they are the same tokens throughout.</summary>
    static (int Common, double PrefixLp, bool Same) Agreement(GenerationOutput p, GenerationOutput q)
    {
        int n = Math.Min(p.TokenIds.Length, q.TokenIds.Length), j = 0;
        double prefixLp = 0;
        for (; j < n && p.TokenIds[j] == q.TokenIds[j]; j++) prefixLp = Math.Max(prefixLp, Math.Abs(p.LogProbs[j] - q.LogProbs[j]));
        return (j, prefixLp, j == n && p.TokenIds.Length == q.TokenIds.Length);
    }

    /// <summary>Largest |Δ log-prob| over each row's common token prefix.</summary>
    static double MaxLogProbDiff(IReadOnlyList<GenerationOutput> x, IReadOnlyList<GenerationOutput> y) =>
        Math.Round(x.Zip(y).Select(r => Agreement(r.First, r.Second).PrefixLp).DefaultIfEmpty(0).Max(), 7);

    /// <summary>Rows of <paramref name="y"/> equal to <paramref name="x"/>, divergences and how many are near-ties (as
    /// Compare counts them), and the largest |Δ log-prob| over the common prefixes.</summary>
    static Dictionary<string, object?> Divergences(IReadOnlyList<GenerationOutput> x, IReadOnlyList<GenerationOutput> y)
    {
        var rows = x.Zip(y).Select(r => Agreement(r.First, r.Second)).ToList();
        int same = rows.Count(r => r.Same), diverged = rows.Count - same, nearTies = rows.Count(r => !r.Same && r.PrefixLp <= PrefixAgreement);
        return new() { ["equal_rows"] = same, ["diverged_rows"] = diverged, ["near_tie_divergences"] = nearTies, ["other_divergences"] = diverged - nearTies,
                       ["max_abs_logprob_diff_common_prefix"] = MaxLogProbDiff(x, y) };
    }

    static Dictionary<string, object?> Compare(IReadOnlyList<GenerationOutput> a, IReadOnlyList<GenerationOutput> b, IReadOnlyList<GenerationOutput> c)
    {
        int bitExact = 0, same = 0, diverged = 0, nearTies = 0;
        long tokens = 0;
        var firstSteps = new List<int>();
        double maxPrefixLp = 0;
        for (int i = 0; i < c.Count; i++)
        {
            if (BitEqual(b[i], c[i])) bitExact++;
            tokens += c[i].TokenIds.Length;
            var (common, prefixLp, equal) = Agreement(a[i], c[i]);
            maxPrefixLp = Math.Max(maxPrefixLp, prefixLp);
            if (equal) { same++; continue; }
            diverged++;
            firstSteps.Add(common);
            if (prefixLp <= PrefixAgreement) nearTies++;
        }
        return new Dictionary<string, object?>
        {
            ["rows"] = c.Count, ["tokens"] = tokens,
            ["graph_equals_static_eager_rows"] = bitExact,
            ["graph_equals_eager_rows"] = same, ["diverged_rows"] = diverged, ["near_tie_divergences"] = nearTies,
            ["other_divergences"] = diverged - nearTies,
            ["median_first_divergence_step"] = firstSteps.Count == 0 ? null : firstSteps.Order().ElementAt(firstSteps.Count / 2),
            ["max_abs_logprob_diff_common_prefix"] = Math.Round(maxPrefixLp, 5),
        };
    }
}
