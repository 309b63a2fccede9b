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

    /// <summary>Parses and runs. Every failure goes through <see cref="CliErrors"/>: bad input and I/O failures print
    /// `error: message` and exit 1 without a stack trace; command-line syntax errors print `error: …` and exit 2.</summary>
    public static int Run(string[] args)
    {
        var root = BuildRoot();
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && !IsHelpOrVersion(args))
        {
            foreach (var e in parsed.Errors) Console.Error.WriteLine($"error: {e.Message}");
            Console.Error.WriteLine($"(see '{string.Join(" ", ["lmmr1", .. CommandPath(parsed), "--help"])}')");
            return CliErrors.Usage;
        }
        return CliErrors.Run(() => parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
    }

    static bool IsHelpOrVersion(string[] args) => args.Any(a => a is "--help" or "-h" or "-?" or "--version");

    static IEnumerable<string> CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (var r = parsed.CommandResult; r != null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            if (r.Parent != null) names.Insert(0, r.Command.Name);
        return names;
    }
}
