// `lmmr1 debug random-adapter`: a PEFT LoRA adapter folder for a checkpoint with random A (PEFT's init) and random B
// (normal(0, --b_std), so the adapter changes the logits), written exactly as `lmmr1 train --lora_rank` saves one:
// the input of bench/gpu/peft_check.py when no trained adapter is at hand (e.g. the tiny fixtures).
using System.CommandLine;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;

namespace LmmR1.Cli.Commands;

public static class RandomAdapterCommand
{
    public static Command Create()
    {
        var model = ModelCommands.ModelOption();
        var output = new Option<string>("--output") { Description = "Folder to write (adapter_config.json, adapter_model.safetensors)", Required = true };
        var rank = new Option<int>("--lora_rank") { Description = "Rank", DefaultValueFactory = _ => 8 };
        var alpha = new Option<double>("--lora_alpha") { Description = "α (scale α / r)", DefaultValueFactory = _ => 16 };
        var targets = new Option<string[]>("--target_modules")
        {
            Description = "As `lmmr1 train`: all-linear, q_proj … down_proj, visual[.NAME]",
            AllowMultipleArgumentsPerToken = true, Arity = ArgumentArity.OneOrMore, DefaultValueFactory = _ => [LoraOptions.AllLinear],
        };
        var bStd = new Option<double>("--b_std") { Description = "Standard deviation of the random B matrices", DefaultValueFactory = _ => 0.05 };
        var seed = new Option<long>("--seed") { Description = "Random seed", DefaultValueFactory = _ => 0 };
        var cmd = new Command("random-adapter", "Write a PEFT LoRA adapter with random weights for a checkpoint (for bench/gpu/peft_check.py)")
        {
            model, output, rank, alpha, targets, bStd, seed,
        };
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            string dir = pr.GetValue(model)!;
            var o = new LoraOptions { Rank = pr.GetValue(rank), Alpha = pr.GetValue(alpha), TargetModules = pr.GetValue(targets)! }.Validate();
            double std = pr.GetValue(bStd);
            if (!(std >= 0) || !double.IsFinite(std)) throw InputException.At(null, null, "--b_std", $"must be a finite number ≥ 0, got {std}");
            using var m = QwenVLModel.Load(dir, torch.ScalarType.Float32, torch.CPU);
            var lora = AttachRandom(m, o, std, pr.GetValue(seed));
            PeftAdapterFolder.Write(m, pr.GetValue(output)!, Path.GetFullPath(dir));
            Console.WriteLine($"wrote {pr.GetValue(output)}: r={o.Rank}, α={o.Alpha}, {lora.Layers.Count} layers, {lora.ParameterCount:N0} parameters");
            return 0;
        }));
        return cmd;
    }

    /// <summary>Attaches adapters for <paramref name="o"/> (A from <paramref name="seed"/>) and fills every B with
    /// normal(0, <paramref name="std"/>) drawn on the CPU from seed + 1.</summary>
    public static LoraAdapters AttachRandom(QwenVLModel m, LoraOptions o, double std, long seed)
    {
        var lora = m.AttachLora(o.Select(m.LinearLayerNames()), o.Rank, o.Alpha, 0, seed);
        using var gen = new torch.Generator((ulong)seed + 1, torch.CPU);
        using var noGrad = torch.no_grad();
        foreach (var (_, _, b) in lora.Adapters)
        {
            using var x = torch.empty(b.shape, torch.ScalarType.Float32).normal_(0, std, gen);
            b.copy_(x);
        }
        return lora;
    }
}
