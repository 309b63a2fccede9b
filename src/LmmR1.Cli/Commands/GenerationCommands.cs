// Registers the generation commands: `lmmr1 generate`, `lmmr1 eval`, `lmmr1 bench generate` (throughput on synthetic
// prompts) and `lmmr1 debug tiny-model` (a random model with a tiny byte-level tokenizer, for demos and tests).
using System.CommandLine;

namespace LmmR1.Cli.Commands;

public static class GenerationCommands
{
    public static void Register(RootCommand root, Command debug)
    {
        root.Subcommands.Add(GenerateCommand.CreateGenerate());
        root.Subcommands.Add(GenerateCommand.CreateEval());
        debug.Subcommands.Add(CreateTinyModel());
        var bench = root.Subcommands.FirstOrDefault(c => c.Name == "bench");
        if (bench is null)
        {
            bench = new Command("bench", "Benchmarks (print JSON lines)");
            root.Subcommands.Add(bench);
        }
        bench.Subcommands.Add(BenchGenerateCommand.Create());
        bench.Subcommands.Add(BenchInputsCommand.Create());
        bench.Subcommands.Add(BenchGraphCheckCommand.Create());
        bench.Subcommands.Add(BenchTrainCommand.Create());
        bench.Subcommands.Add(BenchRlStepCommand.Create());
        bench.Subcommands.Add(BenchPackingCheckCommand.Create());
        bench.Subcommands.Add(BenchKernelCheckCommand.Create());
    }

    static Command CreateTinyModel()
    {
        var output = new Option<string>("--output") { Description = "Folder to write", Required = true };
        var family = new Option<string>("--family") { Description = "qwen2_vl or qwen2_5_vl", DefaultValueFactory = _ => "qwen2_vl" };
        var seed = new Option<long>("--seed") { Description = "Seed of the random weights", DefaultValueFactory = _ => 0 };
        var cmd = new Command("tiny-model", "Write a tiny random Qwen VL model with a byte-level tokenizer (for demos of generate/eval)") { output, family, seed };
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            var fam = pr.GetValue(family) switch
            {
                "qwen2_vl" => Models.Qwen.QwenFamily.Qwen2VL,
                "qwen2_5_vl" => Models.Qwen.QwenFamily.Qwen25VL,
                var s => throw new Infrastructure.InputException($"--family: '{s}' is not qwen2_vl or qwen2_5_vl"),
            };
            var cfg = Generation.TinyDemoModel.Write(pr.GetValue(output)!, fam, pr.GetValue(seed));
            Console.WriteLine($"wrote {cfg.Architecture} (vocabulary {cfg.Text.VocabSize}) to {pr.GetValue(output)}");
            return 0;
        }));
        return cmd;
    }
}
