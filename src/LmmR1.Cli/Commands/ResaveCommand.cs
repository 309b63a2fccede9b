// `lmmr1 debug resave`: loads a checkpoint and writes it back with QwenVLModel.SaveHf (classic key names, released
// flat config.json, generation_config.json), optionally in another dtype — e.g. to check that transformers loads our
// output, or to normalise a transformers-5 folder to the released layout.
using System.CommandLine;
using LmmR1.Models.Qwen;
using TorchSharp;

namespace LmmR1.Cli.Commands;

public static class ResaveCommand
{
    public static Command Create()
    {
        var model = ModelCommands.ModelOption();
        var dtype = ModelCommands.DTypeOption();
        var output = new Option<string>("--output") { Description = "Folder to write", Required = true };
        var cmd = new Command("resave", "Load a checkpoint and save it in the released Hugging Face layout") { model, dtype, output };
        cmd.SetAction(pr =>
        {
            var dt = ModelCommands.ParseDType(pr.GetValue(dtype)!);
            using var m = QwenVLModel.Load(pr.GetValue(model)!, dt, torch.CPU);
            m.SaveHf(pr.GetValue(output)!);
            Console.WriteLine($"wrote {m.Config.Architecture} ({ModelCommands.DTypeName(dt)}) to {pr.GetValue(output)}");
            return 0;
        });
        return cmd;
    }
}
