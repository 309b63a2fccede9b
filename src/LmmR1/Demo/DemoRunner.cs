// `lmmr1 demo` end to end: write the tiny model and the synthetic data (LMM-R1 jsonl + PNGs), then
//   SFT warm-up (text and images, short fixed budget)  →  FRE: RL on text arithmetic (reinforce_baseline, as FRE-Text)
//   →  MGT: RL on the image tasks from the FRE checkpoint (reinforce_baseline, as MGT-PerceReason)
// measuring every checkpoint on both held-out sets, and write summary.json, the reward curve and the logs. Each stage
// loads the previous stage's saved folder, so the checkpoints on disk are exactly what was measured.
using System.Diagnostics;
using System.Globalization;
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Text;
using LmmR1.Training.Ppo;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Demo;

public static class DemoRunner
{
    public const string TextTask = "text-arithmetic";
    public const string ImageTask = "image-shapes";

    /// <summary>Runs the demo into <paramref name="outDir"/> (models/, data/, logs, summary.json, reward_curve.png).</summary>
    /// <param name="log">Progress lines for people (also written to demo.log).</param>
    public static DemoSummary Run(DemoConfig c, string outDir, Action<string>? log = null, CancellationToken ct = default)
    {
        int threads = torch.get_num_threads();
        try { return RunStages(c, outDir, log, ct); }
        finally { torch.set_num_threads(threads); }   // the process's setting, as it was (the demo's is its own)
    }

    static DemoSummary RunStages(DemoConfig c, string outDir, Action<string>? log, CancellationToken ct)
    {
        c.Validate();
        var total = Stopwatch.StartNew();
        CheckWritable(outDir);
        File.WriteAllText(Path.Combine(outDir, "demo_config.json"), c.ToJson());
        using var logFile = new StreamWriter(Path.Combine(outDir, "demo.log"), append: false) { AutoFlush = true };
        void Log(string s)
        {
            logFile.WriteLine(s);
            log?.Invoke(s);
        }
        void Detail(string s) => logFile.WriteLine("    " + s);   // trainer lines: the log file only

        torch.set_num_threads(c.Threads);
        torch.manual_seed(c.Seed);
        var device = TorchRuntime.Device(c.Device);
        string dataDir = Path.Combine(outDir, "data"), modelsDir = Path.Combine(outDir, "models");
        string Model(string name) => Path.Combine(modelsDir, name);

        // ---------------------------------------------------------------- data and model
        var rng = new Random(c.Seed);
        var text = DemoTasks.Arithmetic(c.TextHeldOutSets, c.TextHeldOut, rng);
        var images = DemoTasks.Images(c.ImageTrainPerTask, c.ImageHeldOutPerTask, rng);
        int sftImages = (int)Math.Round(c.SftExamples * c.Sft.ImageFraction);
        var sftSet = Pick(text.Train, c.SftExamples - sftImages, rng).Concat(Pick(images.Train, sftImages, rng)).ToList();
        DemoTasks.Shuffle(sftSet, rng);
        for (int i = 0; i < sftSet.Count; i++)
            if (rng.NextDouble() < c.Sft.AnswerNoise) sftSet[i] = DemoTasks.WithWrongAnswer(sftSet[i], rng);
        string sftFile = DemoData.Write(dataDir, "sft.jsonl", sftSet, withResponse: true);
        string freFile = DemoData.Write(dataDir, "fre_train.jsonl", text.Train, withResponse: false);
        string mgtFile = DemoData.Write(dataDir, "mgt_train.jsonl", images.Train, withResponse: false);
        string textEvalFile = DemoData.Write(dataDir, "text_heldout.jsonl", text.HeldOut, withResponse: false);
        string imageEvalFile = DemoData.Write(dataDir, "image_heldout.jsonl", images.HeldOut, withResponse: false);
        var blank = new ShapeScene(new Shape?[ShapeScene.GridSide * ShapeScene.GridSide]);
        string blindFile = DemoData.Write(dataDir, "image_heldout_blank.jsonl",
            images.HeldOut.Select(e => e with { Id = "blank", Scene = blank }), withResponse: false);

        var modelConfig = DemoModel.Write(Model("init"), c.Seed);
        var tok = QwenTokenizer.Load(Model("init"));
        var processor = new QwenVLProcessor(tok);
        // The reward's default 30 ms verification budget guards a server against hostile answers; here it would make
        // rewards depend on machine load (the first, cold calls in a process exceed it), and a run would no longer
        // be a function of its seed. The demo's answers are a few characters: 10 s is never reached.
        using var reward = new RuleRewardModel(new RewardOptions { TimeBudget = TimeSpan.FromSeconds(10) });
        var evaluator = new DemoEvaluator(processor, reward, c.EvalSamplesPerPrompt, c.Temperature, c.GenerateMaxLen,
            unchecked((ulong)c.Seed * 7919UL + 17UL), c.GreedyEval);
        var textEval = LoadPrompts(textEvalFile, "answer", c.Seed);
        var imageEval = LoadPrompts(imageEvalFile, "answer", c.Seed);
        long parameters = ModelSize.Of(modelConfig).Total;

        string mode = c.Quick ? "quick" : "full";
        Log($"lmmr1 demo ({mode}, seed {c.Seed}, {c.Device}, {c.Threads} threads) → {Path.GetFullPath(outDir)}");
        Log($"model: Qwen2.5-VL architecture, {parameters / 1e6:F2} M parameters (decoder {modelConfig.Text.HiddenSize}×{modelConfig.Text.NumLayers} layers; " +
            $"vision {modelConfig.Vision!.Width}×{modelConfig.Vision.Depth} blocks, window {modelConfig.Vision.WindowSize} px), byte-level tokenizer ({tok.VocabSize} ids)");
        Log($"data: text a+b+c+d on digits 0–{DemoTasks.MaxDigit}: {text.Train.Count} training prompts, {text.HeldOut.Count} held out " +
            (c.TextHeldOutSets > 0 ? $"({c.TextHeldOutSets} of the 70 digit multisets never trained on, in any order); " : "(digit sequences never trained on); ") +
            $"images {ShapeScene.ImagePixels}×{ShapeScene.ImagePixels} px (4 vision tokens): {images.Train.Count} training, {images.HeldOut.Count} held out " +
            "(count 1–4 shapes, red vs blue; scene layouts never trained on)");
        Log($"accuracy: held-out pass@1 = mean over {c.EvalSamplesPerPrompt} samples per prompt at T={Fmt(c.Temperature)}, correct = LMM-R1 accuracy reward > 0" +
            (c.GreedyEval ? "; greedy in brackets" : ""));

        var checkpoints = new List<DemoCheckpointAccuracy>();
        (HeldOutAccuracy Text, HeldOutAccuracy Image) Measure(string name)
        {
            using var model = LoadModel(c, Model(name), device);
            var t = evaluator.Evaluate(model, textEval, ct);
            var i = evaluator.Evaluate(model, imageEval, ct);
            checkpoints.Add(new DemoCheckpointAccuracy(name, t.Pass1, i.Pass1));
            Log($"  {name,-5} text {Acc(t)}   image {Acc(i)}");
            return (t, i);
        }

        var stages = new List<DemoStageResult>();
        Log("");
        Log("held-out accuracy of the random model:");
        var init = Measure("init");

        // ---------------------------------------------------------------- SFT
        int sftSteps = c.Sft.Epochs * (sftSet.Count / c.Sft.BatchSize);
        Log("");
        Log($"[1/3] SFT warm-up: {c.Sft.Epochs} epochs = {sftSteps} steps × {c.Sft.BatchSize} examples ({sftSet.Count - sftImages} text, {sftImages} image; " +
            $"lr {Fmt(c.Sft.LearningRate)}, cosine; {Pct(c.Sft.AnswerNoise)} of the demonstrations end in a wrong final answer) — " +
            "short and sloppy on purpose, to leave headroom for RL");
        var clock = Stopwatch.StartNew();
        IReadOnlyList<double> sftCurve;
        using (var model = LoadModel(c, Model("init"), device))
        {
            sftCurve = SftStage.Run(c, model, processor, Model("init"), sftFile, Detail, ct);
            model.SaveHf(Model("sft"));
            PpoCheckpoint.CopyTokenizerFiles(Model("init"), Model("sft"));
        }
        double sftSeconds = clock.Elapsed.TotalSeconds;
        Log($"      loss {sftCurve[0]:F3} → {sftCurve[^1]:F3} in {sftSeconds:F1} s");
        var sft = Measure("sft");
        stages.Add(Stage("sft", "init", $"{TextTask}+{ImageTask}", Merge(init.Text, init.Image), Merge(sft.Text, sft.Image), sftSeconds,
            ByTask(init.Text, sft.Text, init.Image, sft.Image),
            $"SFT {c.Sft.Epochs} epochs ({sftSteps} steps) × {c.Sft.BatchSize}, lr {Fmt(c.Sft.LearningRate)}, answer noise {Fmt(c.Sft.AnswerNoise)}") with { LossCurve = sftCurve });

        // ---------------------------------------------------------------- FRE, then MGT from the FRE checkpoint
        // One RL stage: train `name` from the `from` checkpoint, measure it, and record the gain on the stage's own task
        // (text for FRE, images for MGT) against the `from` checkpoint's measurement.
        ((HeldOutAccuracy Text, HeldOutAccuracy Image) After, IReadOnlyList<RlStepPoint> Curve) RunRl(
            string name, string header, DemoRlSettings s, string from, (HeldOutAccuracy Text, HeldOutAccuracy Image) before,
            string trainFile, bool images)
        {
            Log("");
            Log($"{header}: {Recipe(s)}");
            clock.Restart();
            var curve = RlStage.Run(c, s, Model(from), trainFile, Model(name), processor, reward, device, null, Detail, ct);
            double seconds = clock.Elapsed.TotalSeconds;
            Log($"      reward {DemoReport.Sparkline(curve.Select(p => p.Reward).ToList(), 0, 1.5)}  {curve[0].Reward:F2} → {curve[^1].Reward:F2} in {seconds:F1} s");
            var after = Measure(name);
            var (b, a) = images ? (before.Image, after.Image) : (before.Text, after.Text);
            stages.Add(Stage(name, from, images ? ImageTask : TextTask, b, a, seconds,
                             images ? ByTask(null, null, b, a) : ByTask(b, a, null, null), name.ToUpperInvariant() + " " + Recipe(s))
                with { RewardCurve = curve.Select(p => p.Reward).ToList(), AccuracyRewardCurve = curve.Select(p => p.AccuracyReward).ToList() });
            return (after, curve);
        }
        var (fre, freCurve) = RunRl("fre", "[2/3] FRE (text-only RL)", c.Fre, "sft", sft, freFile, images: false);
        var (mgt, mgtCurve) = RunRl("mgt", "[3/3] MGT (image RL from the FRE checkpoint)", c.Mgt, "fre", fre, mgtFile, images: true);

        // ---------------------------------------------------------------- blind check, outputs
        double blind;
        using (var model = LoadModel(c, Model("mgt"), device))
            blind = new DemoEvaluator(processor, reward, c.EvalSamplesPerPrompt, c.Temperature, c.GenerateMaxLen, 1, greedy: false)
                .Evaluate(model, LoadPrompts(blindFile, "answer", c.Seed), ct).Pass1;
        double chance = images.HeldOut.Average(e => e.Task == DemoTask.Count ? 1.0 / (ShapeScene.GridSide * ShapeScene.GridSide) : 0.5);

        var summary = new DemoSummary
        {
            Stages = stages, Seed = c.Seed, Mode = mode, Device = c.Device, Threads = c.Threads,
            Seconds = total.Elapsed.TotalSeconds,
            Eval = $"held-out pass@1: mean accuracy over {c.EvalSamplesPerPrompt} samples per prompt at temperature {Fmt(c.Temperature)} " +
                   "(correct = LMM-R1 accuracy reward > 0); greedy_* = the greedy response",
            Model = $"qwen2_5_vl hidden {modelConfig.Text.HiddenSize}, {modelConfig.Text.NumLayers} layers, vision width {modelConfig.Vision.Width}, depth {modelConfig.Vision.Depth}",
            Parameters = parameters,
            Checkpoints = checkpoints,
            BlindImageAccuracy = blind,
            ImageChanceAccuracy = chance,
        };
        Log("");
        foreach (var line in DemoReport.Table(summary)) logFile.WriteLine(line);   // the CLI draws its own table
        Log($"transfer: image accuracy {Pct(sft.Image.Pass1)} after SFT → {Pct(fre.Image.Pass1)} after text-only FRE; text accuracy {Pct(fre.Text.Pass1)} → {Pct(mgt.Text.Pass1)} after MGT");
        Log($"blind check: the final model on the held-out images replaced by blank ones scores {Pct(blind)} (a guess that ignores the image: {Pct(chance)})");
        DemoReport.WriteRewardCurve(Path.Combine(outDir, "reward_curve.png"), freCurve, mgtCurve);
        summary = summary with { Seconds = total.Elapsed.TotalSeconds };
        AtomicFile.WriteAllText(Path.Combine(outDir, "summary.json"), summary.ToJson());
        Log($"total {summary.Seconds:F1} s; summary.json, reward_curve.png, demo.log, data/ and models/ (init, sft, fre, mgt) in {Path.GetFullPath(outDir)}");
        return summary;
    }

    /// <summary>Creates <paramref name="dir"/> and writes a probe file into it, so an unusable --output fails before
    /// any work, as an input error naming the folder.</summary>
    static void CheckWritable(string dir)
    {
        try
        {
            Directory.CreateDirectory(dir);
            string probe = Path.Combine(dir, ".lmmr1-demo-probe");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            throw InputException.At(dir, null, "--output", $"cannot write the demo's files there ({e.Message})");
        }
    }

    /// <summary>A saved stage in fp32 on <paramref name="device"/>, with the demo's attention kernels.</summary>
    internal static QwenVLModel LoadModel(DemoConfig c, string dir, Device device)
    {
        var model = QwenVLModel.Load(dir, ScalarType.Float32, device);
        model.Attention = c.Attention;
        return model;
    }

    static PromptDataset LoadPrompts(string file, string labelKey, int seed) =>
        PromptDataset.Load(new PromptDataOptions { PromptData = file, InputKey = "message", LabelKey = labelKey, Seed = seed });

    static List<DemoExample> Pick(IReadOnlyList<DemoExample> pool, int n, Random rng)
    {
        var result = new List<DemoExample>(n);
        while (result.Count < n)
        {
            var copy = pool.ToList();
            DemoTasks.Shuffle(copy, rng);
            result.AddRange(copy.Take(n - result.Count));
        }
        return result;
    }

    static string Recipe(DemoRlSettings s) =>
        $"{s.Estimator.CliName()}, {s.Steps} steps × {s.PromptsPerStep} prompts × {s.SamplesPerPrompt} samples, " +
        $"train batch {s.TrainBatchSize}, lr {Fmt(s.LearningRate)}" + (s.InitKlCoef > 0 ? $", KL {Fmt(s.InitKlCoef)}" : ", no KL") +
        (s.FreezePrefix.Count > 0 ? $", frozen {string.Join(",", s.FreezePrefix)}" : "");

    static DemoStageResult Stage(string name, string from, string task, HeldOutAccuracy before, HeldOutAccuracy after, double seconds,
                                 IReadOnlyDictionary<string, DemoTaskResult> byTask, string recipe)
    {
        var (gain, se) = after.PairedGain(before);
        return new DemoStageResult
        {
            Name = name, Task = task, InitFrom = "models/" + from,
            AccuracyBefore = before.Pass1, AccuracyAfter = after.Pass1,
            EvalSamples = after.Samples, EvalPrompts = after.Prompts, Seconds = seconds,
            Gain = gain, GainStdErr = se,
            GreedyBefore = NullIfNaN(before.Greedy), GreedyAfter = NullIfNaN(after.Greedy),
            ByTask = byTask, Recipe = recipe,
        };
    }

    static Dictionary<string, DemoTaskResult> ByTask(HeldOutAccuracy? textBefore, HeldOutAccuracy? textAfter,
                                                     HeldOutAccuracy? imageBefore, HeldOutAccuracy? imageAfter)
    {
        var d = new Dictionary<string, DemoTaskResult>(StringComparer.Ordinal);
        void Add(HeldOutAccuracy? b, HeldOutAccuracy? a)
        {
            if (b is null || a is null) return;
            foreach (var (k, av) in a.ByDatasource)
            {
                var bv = b.ByDatasource[k];
                d[k] = new DemoTaskResult
                {
                    AccuracyBefore = bv.Pass1, AccuracyAfter = av.Pass1,
                    GreedyBefore = NullIfNaN(bv.Greedy), GreedyAfter = NullIfNaN(av.Greedy),
                    FormatBefore = bv.FormatRate, FormatAfter = av.FormatRate,
                    EvalPrompts = av.Prompts, EvalSamples = av.Samples,
                };
            }
        }
        Add(textBefore, textAfter);
        Add(imageBefore, imageAfter);
        return d;
    }

    /// <summary>Two held-out sets as one (the SFT stage is measured on both).</summary>
    static HeldOutAccuracy Merge(HeldOutAccuracy a, HeldOutAccuracy b)
    {
        var per = a.PerPrompt.Concat(b.PerPrompt).ToList();
        double W(Func<HeldOutAccuracy, double> f) => (f(a) * a.Prompts + f(b) * b.Prompts) / (a.Prompts + b.Prompts);
        return new HeldOutAccuracy
        {
            Prompts = a.Prompts + b.Prompts, SamplesPerPrompt = a.SamplesPerPrompt,
            Pass1 = W(x => x.Pass1), Greedy = W(x => x.Greedy), FormatRate = W(x => x.FormatRate), MeanReward = W(x => x.MeanReward),
            PerPrompt = per,
        };
    }

    static double? NullIfNaN(double v) => double.IsNaN(v) ? null : v;
    static string Acc(HeldOutAccuracy a) => Pct(a.Pass1) + (double.IsNaN(a.Greedy) ? "" : $" [{Pct(a.Greedy)}]") + $" (format {Pct(a.FormatRate)})";
    internal static string Pct(double v) => (100 * v).ToString("F1", CultureInfo.InvariantCulture) + "%";
    internal static string Fmt(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
}
