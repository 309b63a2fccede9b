// Exact resume with dynamic filtering on: the tiny run of RunSupport with group_norm, DAPO's clip-higher, step
// token-mean, overlong shaping and dynamic filtering (the rule reward scores a random policy 0, so every group is
// all-equal: each step rolls out its extra rounds, consumes their prompts and completes the batch with dropped
// groups). Stopped after 2 of 4 steps and resumed, it ends identical to the uninterrupted run: the prompt cursor
// (ExtraPromptsInEpisode), the filtering totals, every logged value and the final weights.
using LmmR1.Tests.Support;
using LmmR1.Tests.Training;
using LmmR1.Training.Ppo;
using Xunit.Abstractions;
using static LmmR1.Tests.Runs.RunSupport;

namespace LmmR1.Tests.Runs;

public class DapoResumeTests(ITestOutputHelper output)
{
    static readonly Lazy<string> data = new(() => DapoTrainerTests.TextPrompts(12));

    static string[] Dapo(string root, params string[] extra)
    {
        var args = Args(root, Steps, 2, extra);
        args = Set(args, "--prompt_data", data.Value);
        args = Set(args, "--advantage_estimator", "group_norm");
        args = Set(args, "--eps_clip_low_high", "0.2", "0.28");
        args = Set(args, "--loss_agg_mode", "token-mean");
        args = Set(args, "--overlong_buffer_len", "3");
        args = Set(args, "--dynamic_filtering_max_rounds", "2");
        return [.. args.Where(a => a != "--save_value_network"), "--dynamic_filtering"];
    }

    [Fact]
    public void StoppedAndResumedWithFilteringEndsIdentical()
    {
        string reference = TestPaths.NewTempDir("dapo-ref");
        var (code, stdout, stderr) = RunInProcess(Dapo(reference));
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        var rows = Rows(Path.Combine(reference, "final"));
        var steps = rows.Where(r => r.ContainsKey("train/filter_extra_rounds")).ToList();   // (evaluation rows apart)
        Assert.Equal(4, steps.Count);
        foreach (var r in steps)
        {
            Assert.Equal(2, r["train/filter_extra_rounds"]);      // every group all-equal: both extra rounds each step
            Assert.Equal(2, r["train/filter_extra_prompts"]);
            Assert.Equal(1, r["train/filter_groups_filled"]);
            Assert.Equal(0, r["train/filter_groups_kept"]);
            Assert.Equal(3, r["train/filter_groups_dropped"]);
        }

        string root = TestPaths.NewTempDir("dapo-resume");
        (code, stdout, stderr) = RunInProcess([.. Dapo(root), "--stop_after_step", "2"]);
        Assert.True(code == 0, stderr);
        var saved = PpoCheckpoint.ReadState(Path.Combine(root, "ckpt", "global_step2"));
        Assert.Equal(6, saved.State.ConsumedPrompts);             // 2 steps × (1 + 2 extra)
        Assert.Equal(4, saved.State.ExtraPromptsInEpisode);
        Assert.Equal(6, saved.State.FilterGroupsDropped);
        Assert.Equal(4, saved.State.FilterExtraRounds);
        (code, stdout, stderr) = RunInProcess([.. Dapo(root), "--load_checkpoint"]);
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        Assert.Contains("at global step 2", stdout);
        AssertSameRows(rows, Rows(Path.Combine(root, "final")));
        AssertSameWeights(Path.Combine(reference, "final"), Path.Combine(root, "final"));
    }
}
