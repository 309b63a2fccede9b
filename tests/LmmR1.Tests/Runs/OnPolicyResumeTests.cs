// Exact resume with the old log-probs taken from the update's own forward (OldLogProbPlan): the tiny run of
// RunSupport with the KL as a loss (--use_kl_loss, so the reward does not read the old log-probs) and its one train
// batch per rollout over 2 epochs (the first epoch's step gives every sample's old log-probs, the second reads them
// back). Stopped after 2 of 4 steps and resumed, it ends identical to the uninterrupted run: every logged value and the
// final weights bit for bit; and neither run has a "logprobs" phase.
using LmmR1.Tests.Support;
using LmmR1.Training.Logging;
using Xunit.Abstractions;
using static LmmR1.Tests.Runs.RunSupport;

namespace LmmR1.Tests.Runs;

[Collection("Console")]
public class OnPolicyResumeTests(ITestOutputHelper output)
{
    static string[] OnPolicy(string root, params string[] extra) =>
        [.. Args(root, Steps, 2, extra).Where(a => a is not "--save_value_network" and not "--save_hf_ckpt"), "--use_kl_loss"];

    [Fact]
    public void StoppedAndResumedWithOldLogProbsFromTheUpdateEndsIdentical()
    {
        string reference = TestPaths.NewTempDir("onpolicy-ref");
        var (code, stdout, stderr) = RunInProcess(OnPolicy(reference));
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        Assert.Contains("old log-probs: from the update's own forward (detached) for all 2 samples", stdout);
        var all = MetricsLog.Read(Path.Combine(reference, "final", MetricsLog.FileName)).Where(r => r.ContainsKey("train/reward")).ToList();
        Assert.Equal(4, all.Count);
        foreach (var r in all)
        {
            Assert.False(r.ContainsKey("time/logprobs"));
            Assert.True(r.ContainsKey("time/reference") && r.ContainsKey("train/policy_loss"));
        }

        string root = TestPaths.NewTempDir("onpolicy-resume");
        (code, stdout, stderr) = RunInProcess([.. OnPolicy(root), "--stop_after_step", "2"]);
        Assert.True(code == 0, stderr);
        (code, stdout, stderr) = RunInProcess([.. OnPolicy(root), "--load_checkpoint"]);
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        Assert.Contains("at global step 2", stdout);
        AssertSameRows(Rows(Path.Combine(reference, "final")), Rows(Path.Combine(root, "final")));
        AssertSameWeights(Path.Combine(reference, "final"), Path.Combine(root, "final"));
    }
}
