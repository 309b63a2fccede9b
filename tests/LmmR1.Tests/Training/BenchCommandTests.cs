// `lmmr1 bench train` and `lmmr1 bench rl-step` on the CPU: bad arguments are `error:` lines naming the flag (exit 1),
// and a tiny-model smoke run of each prints one JSON line per case / step whose counts follow from the arguments
// (tokens = batch × length; an RL step's samples = prompts × n, its phases the trainer's). No timings are asserted.
using System.Text.Json;
using LmmR1.Cli;
using LmmR1.Cli.Commands;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Tests.Generation;
using LmmR1.Tests.Support;

namespace LmmR1.Tests.Training;

[Collection("Console")] // redirects Console.Out / Console.Error
public class BenchCommandTests(TinyModelFolder model) : IClassFixture<TinyModelFolder>
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e);
        try { return (CliApp.Run(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }

    static List<JsonElement> JsonLines(string stdout) =>
        stdout.Split('\n').Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    [Theory]
    [InlineData("4")]
    [InlineData("4x")]
    [InlineData("0x128")]
    [InlineData("4x1")]
    [InlineData("4x128:fast")]
    [InlineData("4x128:ckpt:x")]
    public void BadTrainCasesAreErrors(string cases)
    {
        var e = Assert.Throws<InputException>(() => BenchTrainCommand.ParseCases(cases));
        Assert.Contains("--cases", e.Message);
    }

    [Fact]
    public void TrainCasesParse()
    {
        var cases = BenchTrainCommand.ParseCases("4x1024, 8x2048:ckpt,2x16:nockpt");
        BenchTrainCommand.Case[] expected = [new(4, 1024, false), new(8, 2048, true), new(2, 16, false)];
        Assert.Equal(expected, cases);
    }

    [Fact]
    public void BenchTrainRejectsOneStep()
    {
        var (code, _, err) = Run("bench", "train", "--model", model.Dir, "--device", "cpu", "--dtype", "float32", "--cases", "2x8", "--steps", "1");
        Assert.Equal(1, code);
        Assert.Contains("error:", err);
        Assert.Contains("--steps", err);
    }

    [Fact]
    public void BenchTrainSmokeRunPrintsOneLinePerCase()
    {
        var (code, stdout, err) = Run("bench", "train", "--model", model.Dir, "--device", "cpu", "--dtype", "float32",
            "--cases", "2x12,3x8:ckpt", "--steps", "2");
        Assert.True(code == 0, err);
        var lines = JsonLines(stdout);
        Assert.Equal(2, lines.Count);
        Assert.Equal((2, 12, false), (lines[0].GetProperty("batch").GetInt32(), lines[0].GetProperty("seq").GetInt32(), lines[0].GetProperty("grad_ckpt").GetBoolean()));
        Assert.Equal((3, 8, true), (lines[1].GetProperty("batch").GetInt32(), lines[1].GetProperty("seq").GetInt32(), lines[1].GetProperty("grad_ckpt").GetBoolean()));
        foreach (var l in lines)
        {
            Assert.Equal(2, l.GetProperty("fwd_bwd_s_all").GetArrayLength());
            Assert.Equal("adamw", l.GetProperty("optimizer").GetString());
            // The vision tower is frozen by default: trainable = the language model's parameters.
            Assert.Equal(l.GetProperty("params_lm").GetInt64(), l.GetProperty("trainable_params").GetInt64());
        }
    }

    [Fact]
    public void BenchTrainSplitPhasesReportsForwardAndBackwardOfTheBestStep()
    {
        var (code, stdout, err) = Run("bench", "train", "--model", model.Dir, "--device", "cpu", "--dtype", "float32",
            "--cases", "2x12", "--steps", "3", "--no-optimizer", "--split-phases");
        Assert.True(code == 0, err);
        var l = Assert.Single(JsonLines(stdout));
        double fwd = l.GetProperty("fwd_s").GetDouble(), bwd = l.GetProperty("bwd_s").GetDouble(), total = l.GetProperty("seconds").GetDouble();
        Assert.True(fwd > 0 && bwd > 0, $"fwd {fwd}, bwd {bwd}");
        // fwd + bwd is the reported step (each rounded to 0.1 ms, the step to 1 ms).
        Assert.InRange(fwd + bwd, total - 0.0006, total + 0.0006);
        Assert.True(l.GetProperty("fwd_host_s").GetDouble() <= fwd + 1e-4);
        Assert.Equal(JsonValueKind.Null, l.GetProperty("optimizer").ValueKind);
    }

    [Theory]
    [InlineData("train")]
    [InlineData("generate")]
    public void ProfileKernelsNeedsCuda(string bench)
    {
        string[] args = bench == "train"
            ? ["bench", "train", "--model", model.Dir, "--device", "cpu", "--dtype", "float32", "--cases", "2x8", "--profile-kernels", "prof"]
            : ["bench", "generate", "--model", model.Dir, "--device", "cpu", "--dtype", "float32", "--cases", "1x1:4:text", "--profile-kernels", "prof"];
        var (code, _, err) = Run(args);
        Assert.Equal(1, code);
        Assert.Contains("error:", err);
        Assert.Contains("--profile-kernels", err);
        Assert.Contains("--device cuda", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Theory]
    [InlineData("generate")]
    [InlineData("graph-check")]
    public void ANegativeAttentionWindowIsAnError(string bench)
    {
        var (code, _, err) = Run("bench", bench, "--model", model.Dir, "--device", "cpu", "--dtype", "float32", "--cases", "1x1:4:text",
            "--attention-window", "-1");
        Assert.Equal(1, code);
        Assert.Contains("error: --attention-window: -1 is negative", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Fact]
    public void KernelTablesSumTheirLaunchesAndTimes()
    {
        // name<TAB>launches<TAB>ns lines as the native profiler writes them; a name may itself hold tabs-free spaces and
        // template commas, and unparsable lines are skipped.
        var (seconds, launches) = KernelProfile.Totals([
            "void at::native::vectorized_elementwise_kernel<8, at::native::CUDAFunctor_add<c10::BFloat16>, std::array<char*, 3ul> >(int)\t370\t10030000",
            "nvjet_sm90_tst_256x128_64x4_1x2_h_bz_coopA_NNT\t252\t29200000",
            "Memset (Device)\t5\t1000",
            "not a table line",
        ]);
        Assert.Equal(627, launches);
        Assert.Equal(0.039231, seconds, 9);
    }

    [Fact]
    public void BenchGenerateWithForcedLengthsCompactsOnTheStaticStep()
    {
        // 4 prompts × 8 samples, forced log-normal lengths (median 10) capped at 48: the graph path's static step run
        // eagerly, compacting (0.25) and not (2). Tokens made = Σ min(forced length, 48) over the samples (seed 1, key =
        // prompt index, as the bench sets them) in both; not compacting decodes the whole 32-row bucket every step.
        int Expected() => Enumerable.Range(0, 4).SelectMany(p => Enumerable.Range(0, 8).Select(s =>
            Math.Min(48, new SyntheticLengths(10, 0.8, 0).LengthFor(1, p, s)))).Sum();
        var lines = new List<JsonElement>();
        foreach (string cf in new[] { "0.25", "2" })
        {
            var (code, stdout, err) = Run("bench", "generate", "--model", model.Dir, "--device", "cpu", "--dtype", "float32",
                "--cases", "4x8:48:text", "--prompt-len", "8", "--synthetic-response-len", "10:0.8", "--compact-fraction", cf,
                "--static-step-without-graph", "--warmup-tokens", "0");
            Assert.True(code == 0, err);
            lines.Add(Assert.Single(JsonLines(stdout)));
        }
        foreach (var l in lines)
        {
            Assert.Equal(Expected() / 32.0, l.GetProperty("mean_response_tokens").GetDouble(), 0.051);
            Assert.True(l.GetProperty("static_step_without_graph").GetBoolean());
            Assert.Equal(32, l.GetProperty("graph_rows").GetInt32());
        }
        var (on, off) = (lines[0], lines[1]);
        Assert.True(on.GetProperty("compactions").GetInt32() > 0);
        Assert.Equal(0, off.GetProperty("compactions").GetInt32());
        Assert.Equal(off.GetProperty("decode_steps").GetInt64() * 32, off.GetProperty("row_steps").GetInt64());
        Assert.True(on.GetProperty("row_steps").GetInt64() < off.GetProperty("row_steps").GetInt64());
        Assert.Equal(off.GetProperty("decode_steps").GetInt64(), on.GetProperty("decode_steps").GetInt64());
    }

    [Theory]
    [InlineData("12")]
    [InlineData("0:1")]
    [InlineData("10:-1")]
    public void BenchGenerateRejectsBadForcedLengths(string spec)
    {
        var (code, _, err) = Run("bench", "generate", "--model", model.Dir, "--device", "cpu", "--synthetic-response-len", spec);
        Assert.Equal(1, code);
        Assert.Contains("error:", err);
        Assert.Contains("--synthetic-response-len", err);
        Assert.DoesNotContain("   at ", err);
    }

    [Theory]
    [InlineData("--bench_steps", "0", "--bench_steps")]
    [InlineData("--synthetic_response_len", "12", "--synthetic_response_len")]
    [InlineData("--synthetic_image", "30", "--synthetic_image")]
    [InlineData("--synthetic_words", "0", "--synthetic_words")]
    public void BadRlStepFlagsAreErrors(string flag, string value, string named)
    {
        var (code, _, err) = Run("bench", "rl-step", "--pretrain", model.Dir, "--device", "cpu", flag, value);
        Assert.Equal(1, code);
        Assert.Contains("error:", err);
        Assert.Contains(named, err);
        Assert.DoesNotContain("   at ", err);   // no stack trace
    }

    [Fact]
    public void RlStepWithAPresetNeedsATokenizer()
    {
        var (code, _, err) = Run("bench", "rl-step", "--pretrain", "preset:qwen2.5-vl-3b", "--device", "cpu");
        Assert.Equal(1, code);
        Assert.Contains("--tokenizer", err);
    }

    [Fact]
    public void RlStepSmokeRunTimesEveryPhase()
    {
        string work = TestPaths.NewTempDir("rlstep");
        var (code, stdout, err) = Run("bench", "rl-step", "--pretrain", model.Dir, "--device", "cpu", "--advantage_estimator", "group_norm",
            "--init_kl_coef", "0.001", "--use_kl_loss", "--kl_estimator", "k3", "--rollout_batch_size", "2", "--n_samples_per_prompt", "4",
            "--train_batch_size", "8", "--micro_train_batch_size", "4", "--micro_rollout_batch_size", "4", "--generate_max_len", "16",
            "--synthetic_response_len", "6:0.8", "--synthetic_reward", "--synthetic_image", "56", "--synthetic_words", "4",
            "--freeze_prefix", "visual", "--bench_steps", "2", "--work_dir", work);
        Assert.True(code == 0, err);
        var lines = JsonLines(stdout);
        Assert.Equal(2, lines.Count);
        for (int s = 0; s < 2; s++)
        {
            var l = lines[s];
            Assert.Equal(s + 1, l.GetProperty("step").GetInt32());
            Assert.Equal(8, l.GetProperty("samples").GetInt32());
            var phases = l.GetProperty("phases_s").EnumerateObject().Select(p => p.Name).ToList();
            // --use_kl_loss and one train batch: the old log-probs come from the update's forward, no "logprobs" phase.
            string[] expected = ["generate", "reward", "reference", "advantages", "update"];
            Assert.Equal(expected, phases.Take(5));
            Assert.DoesNotContain("logprobs", phases);
            Assert.Equal(8, l.GetProperty("old_logprobs_from_update").GetInt32());
            Assert.False(l.GetProperty("recompute_old_log_prob").GetBoolean());
            Assert.DoesNotContain("release_graphs", phases);     // CPU: no CUDA graphs to free
            double tokens = l.GetProperty("tokens").GetDouble(), resp = l.GetProperty("response_tokens").GetDouble();
            Assert.Equal(resp, l.GetProperty("mean_response_len").GetDouble() * 8, 0.5);
            Assert.True(tokens > resp);
            Assert.InRange(l.GetProperty("mean_response_len").GetDouble(), 1, 16);
        }
        Assert.Equal(2, Directory.GetFiles(Path.Combine(work, "images"), "*.png").Length);
    }
}
