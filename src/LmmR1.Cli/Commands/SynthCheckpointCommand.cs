// `lmmr1 debug synth-checkpoint`: a Hugging Face folder with random weights for a released shape (or any config.json),
// written with our safetensors writer and flat config.json, for load-time/memory benchmarks without downloads.
using System.CommandLine;
using System.Diagnostics;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;

namespace LmmR1.Cli.Commands;

public static class SynthCheckpointCommand
{
    public static Command Create()
    {
        var config = new Option<string>("--config")
        {
            Description = $"A preset ({string.Join(", ", QwenPresets.Names)}) or a model folder / config.json to copy the shape from",
            Required = true,
        };
        var dtype = ModelCommands.DTypeOption("bfloat16");
        var output = new Option<string>("--output") { Description = "Folder to write", Required = true };
        var seed = new Option<long>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 0 };
        var cmd = new Command("synth-checkpoint", "Write a checkpoint with random weights in a released model's shape") { config, dtype, output, seed };
        cmd.SetAction(pr =>
        {
            string c = pr.GetValue(config)!;
            var cfg = QwenPresets.Get(c)
                      ?? (Directory.Exists(c) ? QwenVLConfig.Load(c)
                      : File.Exists(c) ? QwenVLConfig.Parse(File.ReadAllText(c), c)
                      : throw new InputException($"--config: '{c}' is neither a preset ({string.Join(", ", QwenPresets.Names)}) nor a model folder or config.json"));
            var dt = ModelCommands.ParseDType(pr.GetValue(dtype)!);
            var sw = Stopwatch.StartNew();
            using var model = QwenVLModel.Create(cfg with { GenerationConfigJson = null }, dt, torch.CPU, pr.GetValue(seed));
            double build = sw.Elapsed.TotalSeconds;
            sw.Restart();
            model.SaveHf(pr.GetValue(output)!);
            var counts = model.CountParameters();
            Console.WriteLine($"{cfg.Architecture}: {counts.Total:N0} parameters, {ModelCommands.DTypeName(dt)}; random init {build:F1} s, " +
                              $"write {sw.Elapsed.TotalSeconds:F1} s → {pr.GetValue(output)}");
            return 0;
        });
        return cmd;
    }
}
