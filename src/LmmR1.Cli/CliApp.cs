// The `lmmr1` command tree. Each area registers its subcommands from its own file (Commands/*.cs).
using System.CommandLine;

namespace LmmR1.Cli;

public static class CliApp
{
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("LmmR1.NET: rule-based RL (LMM-R1) for Qwen2-VL / Qwen2.5-VL in one .NET binary");
        var debug = new Command("debug", "Low-level commands for checking parity and data");
        root.Subcommands.Add(debug);
        root.Subcommands.Add(Commands.RewardCommands.Create());
        return root;
    }

    public static int Run(string[] args)
    {
        var root = BuildRoot();
        return root.Parse(args).Invoke();
    }
}
