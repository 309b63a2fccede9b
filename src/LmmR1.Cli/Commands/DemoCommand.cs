// `lmmr1 demo [--quick] [--output DIR] [--seed N] [--device cpu|cuda] [--config FILE]`: the whole LMM-R1 recipe on a
// tiny Qwen2.5-VL in minutes on a CPU, nothing downloaded (LmmR1.Demo.DemoRunner). Progress lines as the stages run,
// then a Spectre.Console table of held-out accuracy before → after each stage. Without --output the files go to a
// temporary folder that is removed at the end.
using System.CommandLine;
using System.Globalization;
using LmmR1.Demo;
using LmmR1.Infrastructure;
using Spectre.Console;

namespace LmmR1.Cli.Commands;

public static class DemoCommand
{
    public static Command Create()
    {
        var quick = new Option<bool>("--quick") { Description = "Smaller budgets (under 2 minutes on 2 cores; what the test suite runs)" };
        var output = new Option<string?>("--output") { Description = "Keep the models, data, logs, summary.json and reward_curve.png in this folder" };
        var seed = new Option<int>("--seed") { Description = "Seed of everything: weights, data, sampling", DefaultValueFactory = _ => 42 };
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var configFile = new Option<string?>("--config") { Description = "All settings from a JSON file (the form of demo_config.json in the output; --seed and --device still apply)" };
        var algo = new Option<string>("--algo") { Description = "lmm-r1 (LMM-R1's PPO clip and loss) or dapo (clip-higher, step token-mean, dynamic filtering)", DefaultValueFactory = _ => "lmm-r1" };
        var cmd = new Command("demo", "Tiny end-to-end LMM-R1 run: SFT warm-up, FRE (RL on text arithmetic), MGT (RL on images of shapes); " +
                                      "prints held-out accuracy before/after each stage and the reward curves")
        {
            quick, output, seed, device, configFile, algo,
        };
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            ModelCommands.ParseDevice(pr.GetValue(device)!);
            var config = (pr.GetValue(configFile) is { } file ? DemoConfig.FromJsonFile(file) : DemoConfig.For(pr.GetValue(quick)))
                with { Seed = pr.GetValue(seed), Device = pr.GetValue(device)! };
            bool dapo = pr.GetValue(algo) switch
            {
                "lmm-r1" => false,
                "dapo" => true,
                var other => throw InputException.At(null, null, "--algo", $"expected lmm-r1 or dapo, got '{other}'"),
            };
            if (dapo) config = config with { Fre = config.Fre with { Dapo = true }, Mgt = config.Mgt with { Dapo = true } };
            string? keep = pr.GetValue(output);
            string dir = keep ?? Path.Combine(Path.GetTempPath(), $"lmmr1-demo-{Environment.ProcessId}");
            DemoSummary summary;
            try
            {
                summary = DemoRunner.Run(config, dir, Console.WriteLine);
            }
            finally
            {
                if (keep is null && Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            }
            Console.WriteLine();
            AnsiConsole.Write(Table(summary));
            var fre = summary.Stages.Single(s => s.Name == "fre");
            var mgt = summary.Stages.Single(s => s.Name == "mgt");
            Console.WriteLine($"RL gains on held-out prompts: FRE text {Points(fre.Gain)} pts, MGT images {Points(mgt.Gain)} pts " +
                              $"({summary.Mode} mode, seed {summary.Seed}, {summary.Seconds.ToString("F0", CultureInfo.InvariantCulture)} s in all)");
            if (keep is null) Console.WriteLine("(files removed; pass --output DIR to keep them)");
            // Run the finalizers of tensors the stages left to the GC now, while libtorch is alive: one full run
            // crashed (SIGSEGV) after its last line, at process exit.
            GC.Collect();
            GC.WaitForPendingFinalizers();
            return 0;
        }));
        return cmd;
    }

    /// <summary>Held-out pass@1 before → after each stage with the paired gain, greedy accuracy and training time, in
    /// 80 columns (held-out sizes and the starting checkpoints are in the caption).</summary>
    static Table Table(DemoSummary s)
    {
        var t = new Table().Border(TableBorder.Minimal)
            .Title("held-out accuracy (pass@1 at T=1; greedy beside)")
            .AddColumn("stage").AddColumn("task")
            .AddColumn(new TableColumn("pass@1").RightAligned()).AddColumn(new TableColumn("gain ± s.e.").RightAligned())
            .AddColumn(new TableColumn("greedy").RightAligned()).AddColumn(new TableColumn("train").RightAligned());
        foreach (var st in s.Stages)
        {
            string gain = $"{Points(st.Gain)} ± {(100 * st.GainStdErr).ToString("F1", CultureInfo.InvariantCulture)}";
            string greedy = st.GreedyBefore is { } gb && st.GreedyAfter is { } ga ? $"{DemoRunner.Pct(gb)} → {DemoRunner.Pct(ga)}" : "";
            t.AddRow(
                Markup.Escape(st.Name.ToUpperInvariant()),
                Markup.Escape(st.Task.Replace("text-arithmetic", "text").Replace("image-shapes", "images")),
                $"{DemoRunner.Pct(st.AccuracyBefore)} → {DemoRunner.Pct(st.AccuracyAfter)}",
                st.Gain > 0 ? $"[green]{gain}[/]" : $"[red]{gain}[/]",
                greedy, $"{st.Seconds.ToString("F0", CultureInfo.InvariantCulture)} s");
        }
        t.Caption(string.Join("; ", s.Stages.Select(st =>
            $"{st.Name} from {st.InitFrom}, {st.EvalPrompts}×{(st.EvalPrompts == 0 ? 0 : st.EvalSamples / st.EvalPrompts)} held-out samples")));
        return t;
    }

    static string Points(double gain) => (gain >= 0 ? "+" : "") + (100 * gain).ToString("F1", CultureInfo.InvariantCulture);
}
