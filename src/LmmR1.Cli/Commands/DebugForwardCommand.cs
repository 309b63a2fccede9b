// `lmmr1 debug forward`: one forward pass (and optionally greedy decoding with the KV cache) of a checkpoint on inputs
// from a safetensors file, writing logits / position_ids / rope_deltas (/ generated / full_logits) in the layout of the
// fixtures' reference.safetensors, so the outputs can be compared with transformers tensor by tensor. --adapter applies
// a PEFT LoRA adapter folder (`lmmr1 train --lora_rank` output) on top of --model (bench/gpu/peft_check.py).
using System.CommandLine;
using System.Diagnostics;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Cli.Commands;

public static class DebugForwardCommand
{
    public static Command Create()
    {
        var model = ModelCommands.ModelOption();
        var inputs = new Option<string>("--inputs")
        {
            Description = "safetensors with input_ids [B,L], attention_mask [B,L] and optionally pixel_values, image_grid_thw (other tensors are ignored)",
            Required = true,
        };
        var output = new Option<string>("--output") { Description = "safetensors file to write", Required = true };
        var maxNew = new Option<int>("--max-new-tokens")
        {
            Description = "Also decode N tokens greedily with the KV cache (no EOS stop); writes generated [B,N] and full_logits [B,N,V]",
            DefaultValueFactory = _ => 0,
        };
        var dtype = ModelCommands.DTypeOption();
        var device = ModelCommands.DeviceOption();
        var attention = new Option<string>("--attention") { Description = "sdpa or eager", DefaultValueFactory = _ => "sdpa" };
        var adapter = new Option<string?>("--adapter") { Description = "PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) applied on --model" };
        var cmd = new Command("forward", "Run a checkpoint on saved inputs and write logits, M-RoPE positions and greedy tokens")
        {
            model, inputs, output, maxNew, dtype, device, attention, adapter,
        };
        cmd.SetAction(pr =>
        {
            Run(pr.GetValue(model)!, pr.GetValue(inputs)!, pr.GetValue(output)!, pr.GetValue(maxNew),
                ModelCommands.ParseDType(pr.GetValue(dtype)!), ModelCommands.ParseDevice(pr.GetValue(device)!),
                ModelCommands.ParseAttention(pr.GetValue(attention)!), pr.GetValue(adapter));
            return 0;
        });
        return cmd;
    }

    public static void Run(string modelDir, string inputsPath, string outputPath, int maxNewTokens, ScalarType dtype, Device device,
                           AttentionImpl attention, string? adapterDir = null)
    {
        if (maxNewTokens < 0) throw new InputException($"--max-new-tokens: must be ≥ 0, got {maxNewTokens}");
        var sw = Stopwatch.StartNew();
        using var model = QwenVLModel.Load(modelDir, dtype, device);
        model.Attention = attention;
        if (adapterDir is not null)
        {
            var lora = PeftAdapterFolder.Attach(model, adapterDir);
            Console.WriteLine($"adapter {adapterDir}: r={lora.Rank}, α={lora.Alpha}, {lora.Layers.Count} layers");
        }
        double loadS = sw.Elapsed.TotalSeconds;

        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        Tensor ids, mask;
        Tensor? pixels = null, grid = null;
        using (var f = SafetensorsFile.Open(inputsPath))
        {
            Tensor? Opt(string name) => f.Entries.ContainsKey(name) ? f.Load(name) : null;
            ids = Opt("input_ids") ?? throw new InputException($"{inputsPath}: tensor 'input_ids' is missing");
            if (ids.dim() != 2) throw new InputException($"{inputsPath}: input_ids must be [B, L], got {ModelCommands.Shape(ids)}");
            mask = Opt("attention_mask") ?? torch.ones_like(ids);
            if (!mask.shape.SequenceEqual(ids.shape))
                throw new InputException($"{inputsPath}: attention_mask {ModelCommands.Shape(mask)} must have the shape of input_ids {ModelCommands.Shape(ids)}");
            pixels = Opt("pixel_values");
            grid = Opt("image_grid_thw");
            if ((pixels is null) != (grid is null))
                throw new InputException($"{inputsPath}: pixel_values and image_grid_thw must come together");
        }
        ids = ids.to(ScalarType.Int64, device);
        mask = mask.to(ScalarType.Int64, device);
        pixels = pixels?.to(device);

        sw.Restart();
        var outputs = new Dictionary<string, Tensor>();
        using (var o = model.Forward(ids, mask, pixels, grid))
        {
            outputs["logits"] = o.Logits!.to(ScalarType.Float32).cpu();
            outputs["position_ids"] = o.PositionIds.cpu();
            outputs["rope_deltas"] = o.RopeDeltas!.cpu();
        }
        double forwardS = sw.Elapsed.TotalSeconds;
        if (maxNewTokens > 0)
        {
            using var g = GreedyDecoder.Generate(model, ids, mask, maxNewTokens, pixels, grid);
            outputs["generated"] = g.Tokens.cpu();
            var fullIds = torch.cat([ids, g.Tokens], 1);
            var fullMask = torch.cat([mask, torch.ones_like(g.Tokens)], 1);
            using var full = model.Forward(fullIds, fullMask, pixels, grid, logitsForLast: maxNewTokens);
            outputs["full_logits"] = full.Logits!.to(ScalarType.Float32).cpu();
        }
        SafetensorsWriter.Write(outputPath, outputs, new Dictionary<string, string> { ["format"] = "pt" });
        Console.WriteLine($"{Path.GetFileName(Path.TrimEndingDirectorySeparator(modelDir))}: {model.Config.Architecture}, {ModelCommands.DTypeName(dtype)} on {device}, " +
                          $"{attention} attention; load {loadS:F2} s, forward {forwardS:F2} s");
        foreach (var (name, t) in outputs) Console.WriteLine($"  {name} {t.dtype} {ModelCommands.Shape(t)}");
        Console.WriteLine($"wrote {outputPath}");
    }
}
