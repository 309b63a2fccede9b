// `lmmr1 demo [--quick] [--output DIR] [--seed N] [--device cpu|cuda]`: the whole LMM-R1 recipe on a tiny
// Qwen2.5-VL in minutes on a CPU, nothing downloaded (LmmR1.Demo.DemoRunner). Without --output the files go to a
// temporary folder that is removed at the end.
using System.CommandLine;
using LmmR1.Demo;

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
        var cmd = new Command("demo", "Tiny end-to-end LMM-R1 run: SFT warm-up, FRE (RL on text arithmetic), MGT (RL on images of shapes); " +
                                      "prints held-out accuracy before/after each stage and the reward curves")
        {
            quick, output, seed, device, configFile,
        };
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            ModelCommands.ParseDevice(pr.GetValue(device)!);
            var config = (pr.GetValue(configFile) is { } file ? DemoConfig.FromJsonFile(file) : DemoConfig.For(pr.GetValue(quick)))
                with { Seed = pr.GetValue(seed), Device = pr.GetValue(device)! };
            string? keep = pr.GetValue(output);
            string dir = keep ?? Path.Combine(Path.GetTempPath(), $"lmmr1-demo-{Environment.ProcessId}");
            try
            {
                DemoRunner.Run(config, dir, Console.WriteLine);
            }
            finally
            {
                if (keep is null && Directory.Exists(dir)) Directory.Delete(dir, recursive: true);
            }
            if (keep is null) Console.WriteLine("(files removed; pass --output DIR to keep them)");
            return 0;
        }));
        return cmd;
    }
}
