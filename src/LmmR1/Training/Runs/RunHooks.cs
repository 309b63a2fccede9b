// Deterministic places where a test can stop a running `lmmr1 train` (the kill/resume and signal tests). With
// LMMR1_TEST_PAUSE="point:step[,point:step…]" and LMMR1_TEST_PAUSE_FILE=path set, the process writes the file on
// reaching a listed point and blocks until the file is deleted, so the test can SIGKILL or signal it at exactly that
// moment (no sleep-and-hope). With LMMR1_TEST_FAIL="point:step[,…]" the process throws the IOException a full disk
// gives (ENOSPC) at that point instead, so the disk-full tests need no small file system. Unset, every Reach is a
// dictionary lookup that finds nothing.
namespace LmmR1.Training.Runs;

public static class RunHooks
{
    public const string PauseVariable = "LMMR1_TEST_PAUSE";
    public const string FileVariable = "LMMR1_TEST_PAUSE_FILE";
    public const string FailVariable = "LMMR1_TEST_FAIL";

    /// <summary>The points the trainer and the checkpoint writer reach, in order within a step.</summary>
    public static readonly string[] Points =
    [
        "step-start", "after-generate", "after-update", "save-begin", "save-actor-written", "save-written", "save-renamed",
        "save-done", "hf-export-written", "final-export-written", "tensorboard-write",
    ];

    static readonly HashSet<string> pending = Parse(Environment.GetEnvironmentVariable(PauseVariable));
    static readonly string? file = Environment.GetEnvironmentVariable(FileVariable);
    static readonly HashSet<string> failing = Parse(Environment.GetEnvironmentVariable(FailVariable));

    static HashSet<string> Parse(string? spec) =>
        string.IsNullOrWhiteSpace(spec) ? [] : spec.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet();

    /// <summary>Called at <paramref name="point"/> of global step <paramref name="step"/>; pauses there once when a test asked.</summary>
    public static void Reach(string point, long step)
    {
        if (failing.Count > 0 && failing.Contains($"{point}:{step}"))
            throw new IOException($"No space left on device (simulated at {point}:{step} by {FailVariable})", 28);
        if (pending.Count == 0 || file is null) return;
        string key = $"{point}:{step}";
        lock (pending)
            if (!pending.Remove(key)) return;
        string tmp = file + ".tmp";
        File.WriteAllText(tmp, key);
        File.Move(tmp, file, overwrite: true);   // the test sees the whole name at once
        while (File.Exists(file)) Thread.Sleep(5);
    }
}
