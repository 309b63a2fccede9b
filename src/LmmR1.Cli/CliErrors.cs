// The one error path of `lmmr1`: every failure the user can act on ends here and prints `error: …` with no stack
// trace. InputException (bad input, naming the file, line, field or flag) and operating-system I/O failures
// (IOException, UnauthorizedAccessException: the message names the path) and libtorch's CUDA out-of-memory error (what
// to shrink) exit 1; command-line syntax errors exit 2.
// Anything else is a bug and keeps .NET's stack trace.
using LmmR1.Infrastructure;

namespace LmmR1.Cli;

internal static class CliErrors
{
    public const int Failure = 1, Usage = 2;

    /// <summary>The message to print for <paramref name="e"/>, or null when it is not a user-facing failure.</summary>
    public static string? MessageOf(Exception e) => e switch
    {
        InputException i => i.Message,
        LmmR1.Rewards.RewardInputException r => r.Message,
        AggregateException { InnerExceptions.Count: 1 } a => MessageOf(a.InnerExceptions[0]),
        System.Reflection.TargetInvocationException { InnerException: { } inner } => MessageOf(inner),
        _ when IoErrors.IsIo(e) => IoErrors.IsDiskFull(e) ? $"no space left on the device ({e.Message})" : e.Message,
        System.Runtime.InteropServices.ExternalException x when x.Message.StartsWith("CUDA out of memory", StringComparison.Ordinal) => OutOfMemory(x.Message, LmmR1.Training.PhaseTimer.PhaseOf(x)),
        _ => null,
    };

    /// <summary>libtorch's first sentence or two (what it tried to allocate, what was free), without its C++ frames,
    /// the training-step phase it happened in, and what to shrink.</summary>
    static string OutOfMemory(string message, string? phase)
    {
        string first = message.Split('\n')[0].Trim();
        int cut = first.IndexOf(" Of the allocated memory", StringComparison.Ordinal);
        if (cut > 0) first = first[..cut];
        if (phase is not null) first = $"{first} (in the step's {phase} phase)";
        return $"{first} Use smaller micro-batches (--micro_train_batch_size, --micro_rollout_batch_size; for bench commands " +
               "fewer rows), --gradient_checkpointing, a shorter --generate_max_len, or --lora_rank; a checkpoint already written is intact.";
    }

    /// <summary>Runs <paramref name="body"/>; a user-facing failure prints `error: …` and returns 1.</summary>
    public static int Run(Func<int> body)
    {
        try { return body(); }
        catch (Exception e) when (MessageOf(e) is not null) { return Report(e); }
    }

    public static async Task<int> RunAsync(Func<Task<int>> body)
    {
        try { return await body(); }
        catch (Exception e) when (MessageOf(e) is not null) { return Report(e); }
    }

    public static int Report(Exception e) => Fail(MessageOf(e) ?? e.Message);

    /// <summary>Prints `error: message` (after flushing standard output) and returns exit code 1.</summary>
    public static int Fail(string message)
    {
        Console.Out.Flush();
        Console.Error.WriteLine($"error: {message}");
        return Failure;
    }
}
