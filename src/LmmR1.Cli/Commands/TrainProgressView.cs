// The console of `lmmr1 train` / `lmmr1 sft`: on an interactive terminal a live Spectre.Console view (overall steps
// with ETA and the latest metrics, the current step's generate bar in samples and tokens, the update bar in
// micro-batches) with log lines printed above it; when output is redirected (logs, CI) plain lines: the per-step
// summary and a generation progress line at most every 10 seconds.
using System.Diagnostics;
using System.Globalization;
using LmmR1.Training.Ppo;
using Spectre.Console;

namespace LmmR1.Cli.Commands;

internal sealed class TrainProgressView
{
    readonly bool interactive = !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;
    readonly Stopwatch plainClock = Stopwatch.StartNew();
    double lastPlain;
    ProgressTask? steps, generate, update;
    long totalSteps;
    string latest = "";

    public bool Interactive => interactive;

    /// <summary>A log line: above the live view, or a plain line.</summary>
    public void Log(string line)
    {
        if (interactive && steps is not null) AnsiConsole.MarkupLine(Markup.Escape(line));
        else Console.WriteLine(line);
    }

    /// <summary>Shows a trainer's progress while <paramref name="work"/> runs.</summary>
    public T Run<T>(PpoTrainer trainer, Func<T> work)
    {
        totalSteps = trainer.Plan.MaxGlobalSteps;
        trainer.Progress += OnProgress;
        trainer.StepCompleted += OnStep;
        try
        {
            if (!interactive) return work();
            return AnsiConsole.Progress()
                .AutoClear(false)
                .HideCompleted(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                         new RemainingTimeColumn(), new SpinnerColumn())
                .Start(ctx =>
                {
                    steps = ctx.AddTask(StepsText(trainer.State.GlobalStep), maxValue: Math.Max(1, totalSteps));
                    steps.Value = trainer.State.GlobalStep;
                    generate = ctx.AddTask("generate", maxValue: 1);
                    update = ctx.AddTask("update", maxValue: 1);
                    try { return work(); }
                    finally { steps = null; }
                });
        }
        finally
        {
            trainer.Progress -= OnProgress;
            trainer.StepCompleted -= OnStep;
        }
    }

    string StepsText(long done) => $"global steps {done}/{totalSteps}" + (latest.Length > 0 ? $"  [grey]{Markup.Escape(latest)}[/]" : "");

    void OnProgress(TrainProgress p)
    {
        if (!interactive)
        {
            if (p.Phase != "generate" || plainClock.Elapsed.TotalSeconds - lastPlain < 10 || p.Done == p.Total) return;
            lastPlain = plainClock.Elapsed.TotalSeconds;
            Console.WriteLine($"step {p.Step}: generate {p.Done}/{p.Total} samples, {p.Tokens:N0} tokens");
            return;
        }
        switch (p.Phase)
        {
            case "generate" when generate is not null:
                if (p.Done == 0 || generate.MaxValue != Math.Max(1, p.Total)) { generate.MaxValue = Math.Max(1, p.Total); }
                generate.Value = p.Done;
                generate.Description = $"step {p.Step} generate: {p.Done}/{p.Total} samples, {p.Tokens:N0} tokens";
                break;
            case "update" when update is not null:
                update.MaxValue = Math.Max(1, p.Total);
                update.Value = p.Done;
                update.Description = $"step {p.Step} update: {p.Done}/{p.Total} micro-batches";
                break;
            case "save" when steps is not null:
                steps.Description = StepsText(p.Step) + " [yellow]saving…[/]";
                break;
        }
    }

    void OnStep(PpoStepReport r)
    {
        static string M(double? v, string label, string fmt) =>
            v is { } x ? $"{label} {x.ToString(fmt, CultureInfo.InvariantCulture)}  " : "";
        var m = r.Metrics;
        latest = (M(m.Rollout.Reward, "reward", "F3") + M(m.Rollout.AccReward, "acc", "F3") + M(m.Rollout.FormatReward, "format", "F3") +
                  M(m.Actor?.PolicyLoss, "loss", "G3") + M(m.Kl, "kl", "G3") + M(m.Rollout.ResponseLength, "len", "F0") +
                  M(m.Actor?.Entropy, "entropy", "F2") + M(m.StepSeconds, "s/step", "F1")).TrimEnd();
        if (steps is null) return;
        steps.Value = r.GlobalStep;
        steps.Description = StepsText(r.GlobalStep);
        if (generate is not null) generate.Value = 0;
        if (update is not null) update.Value = 0;
    }
}
