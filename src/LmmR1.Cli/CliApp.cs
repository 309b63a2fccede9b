// The `lmmr1` command tree. Each area registers its subcommands from its own file (Commands/*.cs).
using System.CommandLine;
using LmmR1.Cli.Commands;
using LmmR1.Infrastructure;

namespace LmmR1.Cli;

public static class CliApp
{
    public static RootCommand BuildRoot()
    {
        var root = new RootCommand("LmmR1.NET: rule-based RL (LMM-R1) for Qwen2-VL / Qwen2.5-VL in one .NET binary");
        var debug = new Command("debug", "Low-level commands for checking parity and data");
        debug.Subcommands.Add(Commands.DebugTokenizeCommand.Create());
        debug.Subcommands.Add(Commands.DebugImageCommand.Create());
        debug.Subcommands.Add(Commands.DebugPromptCommand.Create());
        root.Subcommands.Add(debug);
        ModelCommands.Register(root, debug);
        GenerationCommands.Register(root, debug);
        root.Subcommands.Add(Commands.DataCommands.Create());
        root.Subcommands.Add(Commands.TrainCommand.Create());
        root.Subcommands.Add(Commands.SftCommand.Create());
        root.Subcommands.Add(Commands.PlotCommand.Create());
        root.Subcommands.Add(Commands.RewardCommands.Create());
        root.Subcommands.Add(Commands.DemoCommand.Create());
        root.Subcommands.Add(Commands.NativeCommand.Create());
        return root;
    }

    /// <summary>Parses and runs; bad input (InputException) prints `error: message` and exits 1 without a stack trace.</summary>
    public static int Run(string[] args)
    {
        var root = BuildRoot();
        try
        {
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (InputException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
