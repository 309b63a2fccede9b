// `lmmr1 demo --quick` end to end (the README's main-job command, under 2 minutes on 2 cores): summary.json has the
// issue's schema, both RL stages gain held-out accuracy by more than three paired standard errors and by at least
// 5 points, every promised file is written, and MGT starts from the FRE checkpoint. The run is a function of the seed
// (one torch thread, seeded weights, data and sampling): a tiny configuration run twice gives identical numbers, so
// the quick run's margins are not luck of the draw. Also: an unwritable --output is an `error:` line, not a stack trace.
using System.Text.Json;
using LmmR1.Demo;
using LmmR1.Tests.Support;
using LmmR1.Tests.Training;
using Xunit.Abstractions;

namespace LmmR1.Tests.Demo;

/// <summary>One quick demo run shared by the assertions below.</summary>
public sealed class QuickDemoRun
{
    public string Dir { get; } = TestPaths.NewTempDir("demo-quick");
    public DemoSummary Summary { get; }
    public List<string> Log { get; } = [];

    public QuickDemoRun() => Summary = DemoRunner.Run(DemoConfig.For(quick: true), Dir, Log.Add);
}

[Collection("Console")]
public class DemoQuickRunTests(QuickDemoRun run, ITestOutputHelper output) : IClassFixture<QuickDemoRun>
{
    DemoStageResult Stage(string name) => run.Summary.Stages.Single(s => s.Name == name);

    /// <summary>Issue 11: the quick demo raises held-out accuracy by at least 5 points in FRE and in MGT.</summary>
    const double RequiredQuickGain = 0.05;

    [Fact]
    public void SummaryJsonHasTheIssueSchema()
    {
        foreach (var line in run.Log) output.WriteLine(line);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(run.Dir, "summary.json")));
        var stages = doc.RootElement.GetProperty("stages").EnumerateArray().ToList();
        Assert.Equal(["sft", "fre", "mgt"], stages.Select(s => s.GetProperty("name").GetString()));
        Assert.Equal(["text-arithmetic+image-shapes", "text-arithmetic", "image-shapes"], stages.Select(s => s.GetProperty("task").GetString()));
        foreach (var s in stages)
        {
            foreach (var key in new[] { "accuracy_before", "accuracy_after" })
            {
                double v = s.GetProperty(key).GetDouble();
                Assert.InRange(v, 0, 1);
            }
            Assert.True(s.GetProperty("eval_samples").GetInt32() > 0);
            Assert.True(s.GetProperty("seconds").GetDouble() > 0);
        }
        // The file is what the run returned.
        var parsed = DemoSummary.FromJson(File.ReadAllText(Path.Combine(run.Dir, "summary.json")));
        Assert.Equal(run.Summary.Stages.Select(s => s.AccuracyAfter), parsed.Stages.Select(s => s.AccuracyAfter));
        Assert.Equal("quick", parsed.Mode);
        Assert.Equal(42, parsed.Seed);
    }

    [Fact]
    public void BothRlStagesGainHeldOutAccuracy()
    {
        // Two bounds, neither tuned on one machine. The gain must be real: it is a paired mean over the held-out
        // prompts (the same prompts before and after) and must exceed three of its own standard errors (a one-sided
        // 0.13 % chance of a false pass for a stage that gains nothing). And it must be the size issue 11 asks of the
        // quick demo on every seed and kernel path: at least 5 points. Exact figures depend on the CPU's kernel path
        // (ATEN_CPU_CAPABILITY); bench/demo/README.md has the spread over seeds 1–5 and the three paths.
        var c = DemoConfig.For(quick: true);
        foreach (var (name, settings, prompts) in new[] { ("fre", c.Fre, c.TextHeldOut), ("mgt", c.Mgt, 2 * c.ImageHeldOutPerTask) })
        {
            var s = Stage(name);
            output.WriteLine($"{name}: {s.AccuracyBefore:F3} → {s.AccuracyAfter:F3} (gain {s.Gain:F3} ± {s.GainStdErr:F3})");
            Assert.True(s.GainStdErr > 0, $"{name}: no spread over the held-out prompts");
            Assert.True(s.Gain - 3 * s.GainStdErr > 0, $"{name}: {s.AccuracyBefore} → {s.AccuracyAfter}, gain {s.Gain:F3} is within 3 s.e. ({s.GainStdErr:F3}) of 0");
            Assert.True(s.Gain >= RequiredQuickGain, $"{name}: {s.AccuracyBefore} → {s.AccuracyAfter}, gain {100 * s.Gain:F1} points, under the issue's {100 * RequiredQuickGain:F0}");
            Assert.Equal(s.AccuracyAfter - s.AccuracyBefore, s.Gain, 9);   // same prompts before and after
            Assert.Equal(prompts * c.EvalSamplesPerPrompt, s.EvalSamples);
            Assert.NotNull(s.RewardCurve);
            Assert.Equal(settings.Steps, s.RewardCurve!.Count);
        }
        // SFT is what makes the RL stages possible at all: the random model scores nothing.
        Assert.Equal(0, Stage("sft").AccuracyBefore);
        Assert.True(Stage("sft").AccuracyAfter > 0.2);
    }

    [Fact]
    public void MgtStartsFromTheFreCheckpoint()
    {
        Assert.Equal("models/init", Stage("sft").InitFrom);
        Assert.Equal("models/sft", Stage("fre").InitFrom);
        Assert.Equal("models/fre", Stage("mgt").InitFrom);
        // Before-accuracies are the measurements of the previous checkpoints on the stage's own task.
        var ck = run.Summary.Checkpoints.ToDictionary(c => c.Checkpoint);
        Assert.Equal(ck["sft"].Text, Stage("fre").AccuracyBefore);
        Assert.Equal(ck["fre"].Image, Stage("mgt").AccuracyBefore);
        Assert.Equal(ck["mgt"].Image, Stage("mgt").AccuracyAfter);
        // The FRE folder is a model that MGT could load: weights and tokenizer.
        foreach (var f in new[] { "config.json", "model.safetensors", "tokenizer.json" })
            Assert.True(File.Exists(Path.Combine(run.Dir, "models", "fre", f)), f);
    }

    [Fact]
    public void WritesTheRewardCurveLogsDataAndModels()
    {
        var png = File.ReadAllBytes(Path.Combine(run.Dir, "reward_curve.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png.Take(4));
        string log = File.ReadAllText(Path.Combine(run.Dir, "demo.log"));
        Assert.Contains("[2/3] FRE", log);
        Assert.Contains("[3/3] MGT", log);
        var c = DemoConfig.For(quick: true);
        Assert.Contains($"step {c.Fre.Steps}/{c.Fre.Steps}", log);     // the trainer's own step lines (FRE, then MGT)
        Assert.Contains($"step {c.Mgt.Steps}/{c.Mgt.Steps}", log);
        Assert.Contains("sft step 1/", log);                           // and SftTrainer's
        Assert.Equal(c.ToJson(), File.ReadAllText(Path.Combine(run.Dir, "demo_config.json")));
        foreach (var m in new[] { "init", "sft", "fre", "mgt" })
            Assert.True(File.Exists(Path.Combine(run.Dir, "models", m, "model.safetensors")), m);
        Assert.Equal(c.Fre.Steps, File.ReadLines(Path.Combine(run.Dir, "models", "fre", "metrics.jsonl")).Count());
        Assert.Equal(c.Mgt.Steps, File.ReadLines(Path.Combine(run.Dir, "models", "mgt", "metrics.jsonl")).Count());
        foreach (var f in new[] { "sft.jsonl", "fre_train.jsonl", "mgt_train.jsonl", "text_heldout.jsonl", "image_heldout.jsonl" })
            Assert.True(new FileInfo(Path.Combine(run.Dir, "data", f)).Length > 0, f);
        Assert.Equal(2 * c.ImageHeldOutPerTask, File.ReadLines(Path.Combine(run.Dir, "data", "image_heldout.jsonl")).Count());
    }
}

[Collection("Console")]
public class DemoDeterminismTests
{
    static DemoConfig Tiny => DemoConfig.For(quick: true) with
    {
        TextHeldOut = 8, ImageHeldOutPerTask = 4, ImageTrainPerTask = 32, SftExamples = 64, EvalSamplesPerPrompt = 2, GenerateMaxLen = 24,
        Sft = new DemoSftSettings { Epochs = 5, BatchSize = 16, MicroBatchSize = 16 },
        Fre = new DemoRlSettings { Steps = 2, PromptsPerStep = 4, SamplesPerPrompt = 4, TrainBatchSize = 16, MicroTrainBatchSize = 16 },
        Mgt = new DemoRlSettings { Steps = 2, PromptsPerStep = 4, SamplesPerPrompt = 4, TrainBatchSize = 16, MicroTrainBatchSize = 16 },
    };

    [Fact]
    public void TheSameSeedGivesTheSameRun()
    {
        var a = DemoRunner.Run(Tiny, TestPaths.NewTempDir("demo-det-a"));
        var b = DemoRunner.Run(Tiny, TestPaths.NewTempDir("demo-det-b"));
        var c = DemoRunner.Run(Tiny with { Seed = 7 }, TestPaths.NewTempDir("demo-det-c"));
        static IEnumerable<double> Numbers(DemoSummary s) => s.Stages.SelectMany(st =>
            new[] { st.AccuracyBefore, st.AccuracyAfter }.Concat(st.LossCurve ?? []).Concat(st.RewardCurve ?? []));
        Assert.Equal(Numbers(a), Numbers(b));                      // bit for bit
        Assert.NotEqual(Numbers(a), Numbers(c));                   // and the seed does drive it
    }

    [Fact]
    public void AnUnwritableOutputIsAnInputError()
    {
        string file = Path.Combine(TestPaths.NewTempDir("demo-out"), "a-file");
        File.WriteAllText(file, "");
        var (code, _, err) = TrainCommandTests.Run("demo", "--quick", "--output", Path.Combine(file, "sub"));
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", err);
        Assert.Contains("--output", err);
        Assert.DoesNotContain("   at ", err);                     // no stack trace
    }
}
