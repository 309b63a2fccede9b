// Registers the generation commands: `lmmr1 bench generate` (throughput on synthetic prompts).
using System.CommandLine;

namespace LmmR1.Cli.Commands;

public static class GenerationCommands
{
    public static void Register(RootCommand root)
    {
        var bench = root.Subcommands.FirstOrDefault(c => c.Name == "bench");
        if (bench is null)
        {
            bench = new Command("bench", "Benchmarks (print JSON lines)");
            root.Subcommands.Add(bench);
        }
        bench.Subcommands.Add(BenchGenerateCommand.Create());
    }
}
