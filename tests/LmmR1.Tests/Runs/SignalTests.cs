// Clean stops of a real `lmmr1 train` child process: SIGINT in the middle of a step finishes that step, saves a
// checkpoint at it and exits 0 (and resuming from it ends identical to the uninterrupted run); a second signal (SIGINT
// or SIGTERM) aborts at once with a non-zero code, leaving the previous checkpoint the newest.
using LmmR1.Tests.Support;
using LmmR1.Training.Checkpointing;
using Xunit.Abstractions;
using static LmmR1.Tests.Runs.RunSupport;

namespace LmmR1.Tests.Runs;

[Collection("Console")]
public class SignalTests(ITestOutputHelper output)
{
    [Fact]
    public void SigintFinishesTheStepSavesItAndExitsZero()
    {
        string root = TestPaths.NewTempDir("run-sigint");
        var args = Args(root, Steps, saveSteps: 3);               // step 2 is not a regular save: the stop must save it
        int code;
        using (var c = StartPaused(args, "after-generate:2", root))
        {
            c.Signal(SIGINT);
            c.WaitUntil(() => c.Err.Contains("received SIGINT"), "the signal's acknowledgement");
            File.Delete(PausedMarker);                              // let step 2 go on
            code = c.WaitForExit();
            output.WriteLine(c.Out + c.Err);
            Assert.Contains("stopped after global step 2 of 4", c.Out);
        }
        Assert.Equal(0, code);
        var store = new CheckpointStore(Path.Combine(root, "ckpt"), 2);
        Assert.Equal([2L], store.Complete().Select(x => x.step));
        Assert.Equal([1.0, 2.0, 2.0], LmmR1.Training.Logging.MetricsLog.Read(Path.Combine(root, "final", "metrics.jsonl"))
            .Select(r => r["train/global_step"]));                  // steps 1, 2 and the eval row of step 2

        var (rc, stdout, stderr) = RunInProcess(Set(args, "--load_checkpoint"));
        Assert.True(rc == 0, stderr);
        Assert.Contains("at global step 2", stdout);
        AssertSameRows(Rows(Path.Combine(Reference, "final")), Rows(Path.Combine(root, "final")));
        AssertSameWeights(Path.Combine(Reference, "final"), Path.Combine(root, "final"));
    }

    [Theory]
    [InlineData(SIGINT, "SIGINT", 130)]
    [InlineData(SIGTERM, "SIGTERM", 143)]                            // 128 + signal number, as shells report it
    public void ASecondSignalAbortsAtOnceWithANonZeroCode(int signal, string name, int expectedCode)
    {
        string root = TestPaths.NewTempDir("run-signal2");
        using var c = StartPaused(Args(root, Steps), "after-generate:2", root);
        c.Signal(signal);
        c.WaitUntil(() => c.Err.Contains($"received {name}: finishing global step 2"), "the first signal's acknowledgement");
        c.Signal(signal);                                            // still paused inside step 2
        int code = c.WaitForExit();
        output.WriteLine(c.Out + c.Err);
        Assert.Equal(expectedCode, code);
        Assert.Contains("aborting now", c.Err);
        Assert.Equal([1L], new CheckpointStore(Path.Combine(root, "ckpt"), 2).Complete().Select(x => x.step));
    }
}
