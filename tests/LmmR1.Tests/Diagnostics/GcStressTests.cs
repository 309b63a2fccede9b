// The TorchSharp finalizer race under LMMR1_GC_STRESS=1 (src/LmmR1.Cli/GcStress.cs): a real `lmmr1 eval` in a child
// process — tiny Qwen2.5-VL with images (vision tower, decoder, KV cache, sampler with top-p and min-p, rule reward) —
// while a background thread forces GC + finalizers in a loop. A Scalar or unscoped Tensor freed mid-call aborts the
// child (exit 134, libtorch reading freed memory), which fails this one test with the crash site instead of killing
// the test host. Before the fix, a smaller run of this workload aborted in 3 of 5 tries (bench/gcstress/README.md);
// a pass is evidence, not proof. TorchTemporariesTests checks the same property statically.
using LmmR1.Tests.Support;
using Xunit.Abstractions;
using static LmmR1.Tests.Runs.RunSupport;

namespace LmmR1.Tests.Diagnostics;

public class GcStressTests(ITestOutputHelper output)
{
    [Fact]
    public void StressedEvalWithImagesExitsCleanly()
    {
        string dir = TestPaths.NewTempDir("gc-stress");
        string model = LmmR1.Tests.Training.TinyRl.Model;
        string[] args =
        [
            "eval", "--pretrain", model, "--prompt_data", LmmR1.Tests.Training.TinyRl.ExampleData, "--input_key", "message",
            "--label_key", "answer", "--processor_kwargs", LmmR1.Tests.Training.TinyRl.SmallImages, "--device", "cpu",
            "--n_samples_per_prompt", "16", "--generate_max_len", "64", "--temperature", "0.9", "--top_p", "0.95",
            "--min_p", "0.01", "--micro_rollout_batch_size", "1", "--output", Path.Combine(dir, "eval.jsonl"),
        ];
        using var child = new Child(args, new Dictionary<string, string> { [LmmR1.Cli.GcStress.Variable] = "1" });
        int code = child.WaitForExit();
        output.WriteLine(child.Out);
        output.WriteLine(child.Err);
        Assert.Contains($"{LmmR1.Cli.GcStress.Variable}=1", child.Err);   // the stress thread really ran
        Assert.True(code == 0, $"lmmr1 eval under {LmmR1.Cli.GcStress.Variable}=1 exited {code} (134 = abort: a TorchSharp temporary " +
                               $"freed by its finalizer mid-call?); first frames:\n{CrashSite(child.Err)}");
        Assert.Equal(3 * 16, File.ReadAllLines(Path.Combine(dir, "eval.jsonl")).Count(l => l.Length > 0));
    }

    /// <summary>The exception line and the first LmmR1 frames of a crash report.</summary>
    static string CrashSite(string stderr)
    {
        var lines = stderr.Split('\n');
        var head = lines.Where(l => l.Contains("Exception", StringComparison.Ordinal)).Take(1);
        var frames = lines.Where(l => l.TrimStart().StartsWith("at LmmR1.", StringComparison.Ordinal)).Take(6);
        return string.Join('\n', head.Concat(frames));
    }
}
