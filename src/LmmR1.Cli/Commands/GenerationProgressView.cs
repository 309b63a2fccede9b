// Progress of a dataset generation: a Spectre.Console bar (prompts done, tokens/s, ETA) on an interactive terminal,
// plain lines every few seconds otherwise (logs, CI, redirected stdout).
using System.Diagnostics;
using LmmR1.Generation;
using Spectre.Console;

namespace LmmR1.Cli.Commands;

internal static class GenerationProgressView
{
    /// <summary>Runs <paramref name="work"/>, giving it the callback that updates the display.</summary>
    public static void Run(string title, int totalPrompts, TextWriter plain, Action<Action<GenerationProgress>> work, double plainIntervalSeconds = 5)
    {
        var clock = Stopwatch.StartNew();
        string Stats(GenerationProgress p)
        {
            double s = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            string eta = p.PromptsDone > 0 && p.PromptsDone < p.PromptsTotal
                ? TimeSpan.FromSeconds(s * (p.PromptsTotal - p.PromptsDone) / p.PromptsDone).ToString(@"hh\:mm\:ss") : "--:--:--";
            return $"prompts {p.PromptsDone}/{p.PromptsTotal}, samples {p.SamplesDone}/{p.SamplesTotal}, tokens {p.TokensGenerated:N0}, " +
                   $"{p.TokensGenerated / s:F0} tok/s, elapsed {clock.Elapsed:hh\\:mm\\:ss}, ETA {eta}";
        }

        bool interactive = !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
        if (!interactive)
        {
            double last = double.NegativeInfinity;
            GenerationProgress latest = default;
            work(p =>
            {
                latest = p;
                if (clock.Elapsed.TotalSeconds - last < plainIntervalSeconds && p.PromptsDone < p.PromptsTotal) return;
                last = clock.Elapsed.TotalSeconds;
                plain.WriteLine($"{title}: {Stats(p)}");
            });
            return;
        }
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                     new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(title, maxValue: Math.Max(1, totalPrompts));
                work(p =>
                {
                    task.Value = p.PromptsDone;
                    double s = Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
                    task.Description = $"{title}: {p.PromptsDone}/{p.PromptsTotal} prompts, {p.TokensGenerated:N0} tokens, {p.TokensGenerated / s:F0} tok/s";
                });
                task.Value = task.MaxValue;
            });
    }
}
