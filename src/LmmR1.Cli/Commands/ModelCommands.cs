// Registers the model-layer commands (`lmmr1 info`, `lmmr1 debug forward|synth-checkpoint|load-model|resave`) and the
// option parsing they share (dtype, device, attention implementation).
using System.CommandLine;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;

namespace LmmR1.Cli.Commands;

public static class ModelCommands
{
    public static void Register(RootCommand root, Command debug)
    {
        root.Subcommands.Add(InfoCommand.Create());
        debug.Subcommands.Add(DebugForwardCommand.Create());
        debug.Subcommands.Add(SynthCheckpointCommand.Create());
        debug.Subcommands.Add(RandomAdapterCommand.Create());
        debug.Subcommands.Add(LoadModelCommand.Create());
        debug.Subcommands.Add(ResaveCommand.Create());
    }

    public static Option<string> DTypeOption(string defaultValue = "float32") => new("--dtype")
    {
        Description = "Model dtype: float32 or bfloat16",
        DefaultValueFactory = _ => defaultValue,
    };

    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "cpu, cuda or cuda:N",
        DefaultValueFactory = _ => "cpu",
    };

    public static Option<string> ModelOption() => new("--model")
    {
        Description = "Hugging Face model folder (config.json + *.safetensors)",
        Required = true,
    };

    public static torch.ScalarType ParseDType(string s) => s.ToLowerInvariant() switch
    {
        "float32" or "fp32" => torch.ScalarType.Float32,
        "bfloat16" or "bf16" => torch.ScalarType.BFloat16,
        _ => throw new InputException($"--dtype: '{s}' is not supported (expected float32 or bfloat16)"),
    };

    public static string DTypeName(torch.ScalarType t) => t == torch.ScalarType.BFloat16 ? "bfloat16" : "float32";

    public static torch.Device ParseDevice(string s)
    {
        try { return TorchRuntime.Device(s); }
        catch (ArgumentException e) { throw new InputException("--device: " + e.Message); }
        catch (InvalidOperationException e) { throw new InputException("--device: " + e.Message); }
    }

    public static AttentionImpl ParseAttention(string s) => s.ToLowerInvariant() switch
    {
        "sdpa" => AttentionImpl.Sdpa,
        "eager" => AttentionImpl.Eager,
        _ => throw new InputException($"--attention: '{s}' is not supported (expected sdpa or eager)"),
    };

    public static string Shape(torch.Tensor t) => "[" + string.Join(",", t.shape) + "]";
}
