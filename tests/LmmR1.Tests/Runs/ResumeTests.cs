// Exact resume: a run stopped after N of 2N steps and resumed matches the uninterrupted run (every metrics.jsonl value
// except wall-clock seconds, samples.jsonl, TensorBoard as shown, final actor and critic weights bit for bit); a real
// `lmmr1 train` SIGKILLed at deterministic points — mid-step, inside each stage of a checkpoint save and of the HF
// export — resumes from the newest complete checkpoint and ends identical too; a checkpoint of another configuration
// is refused naming the flag.
using LmmR1.Tests.Support;
using LmmR1.Training.Checkpointing;
using LmmR1.Training.Logging;
using LmmR1.Training.Ppo;
using Xunit.Abstractions;
using static LmmR1.Tests.Runs.RunSupport;

namespace LmmR1.Tests.Runs;

[Collection("Console")]
public class ResumeTests(ITestOutputHelper output)
{
    static void AssertSameAsReference(string root)
    {
        string reference = Reference;
        AssertSameRows(Rows(Path.Combine(reference, "final")), Rows(Path.Combine(root, "final")));
        Assert.Equal(File.ReadAllText(Path.Combine(reference, "final", MetricsLog.SamplesFileName)),
                     File.ReadAllText(Path.Combine(root, "final", MetricsLog.SamplesFileName)));
        AssertSameWeights(Path.Combine(reference, "final"), Path.Combine(root, "final"));
        AssertSameWeights(Path.Combine(reference, "final_critic"), Path.Combine(root, "final_critic"));
        AssertSameWeights(Path.Combine(reference, "ckpt", "global_step4_hf"), Path.Combine(root, "ckpt", "global_step4_hf"));
    }

    [Fact]
    public void NStepsThenResumeForNMatchTheUninterruptedTwoNStepsExactly()
    {
        string root = TestPaths.NewTempDir("run-resume");
        var (code, stdout, stderr) = RunInProcess(Args(root, Steps, "--stop_after_step", "2"));
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        Assert.Contains("stopped after global step 2 of 4", stdout);
        Assert.False(File.Exists(Path.Combine(root, "final", "model.safetensors")));    // not finished: no final export

        // What a checkpoint holds.
        string ck = Path.Combine(root, "ckpt", "global_step2");
        foreach (var f in new[] { "COMPLETE", "trainer_state.json", "train_config.json", "actor_optim.safetensors", "critic_optim.safetensors",
                                  "rng_state.safetensors", "metrics.jsonl", "samples.jsonl", "actor/model.safetensors", "actor/config.json",
                                  "actor/chat_template.json", "actor/preprocessor_config.json", "critic/model.safetensors" })
            Assert.True(File.Exists(Path.Combine(ck, f)), f);
        var saved = PpoCheckpoint.ReadState(ck);
        Assert.Equal(2, saved.State.GlobalStep);
        Assert.Equal(2, saved.State.ConsumedPrompts);
        Assert.Equal(4, saved.State.ConsumedSamples);
        Assert.Equal(2, saved.Data.RolloutInEpisode);
        Assert.Equal(3, saved.Data.Order.Length);
        Assert.Equal(4, saved.Actor.Steps);                       // 2 samples / train batch 2 × 2 epochs per step
        Assert.NotNull(saved.Critic);
        Assert.NotEqual(0.01, saved.KlCoef);                     // the adaptive controller moved β
        Assert.Equal("global_step2", File.ReadAllText(Path.Combine(root, "ckpt", CheckpointStore.LatestFile)).Trim());

        (code, stdout, stderr) = RunInProcess(Args(root, Steps, "--load_checkpoint"));
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        Assert.Contains("resumed from", stdout);
        Assert.Contains("at global step 2", stdout);
        AssertSameAsReference(root);

        // TensorBoard: the resumed run's file starts with a START at step 3; what TensorBoard shows equals the reference.
        var files = Directory.GetFiles(Path.Combine(root, "tb")).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(2, files.Count);
        Assert.Contains(ReadEvents(files[1]), e => e.SessionStart && e.Step == 3);
        var expected = VisibleScalars(Path.Combine(Reference, "tb"));
        var actual = VisibleScalars(Path.Combine(root, "tb"));
        foreach (var (tag, series) in expected.Where(kv => !kv.Key.StartsWith("time/", StringComparison.Ordinal)))
            Assert.Equal(series.ToList(), actual[tag].ToList());
    }

    [Fact]
    public void ARunKilledAtAnyMomentResumesFromTheNewestCompleteCheckpointAndEndsIdentical()
    {
        string root = TestPaths.NewTempDir("run-kill");
        string ckpt = Path.Combine(root, "ckpt");
        var store = new CheckpointStore(ckpt, 2);
        string[] args = Args(root, Steps, "--load_checkpoint");
        long? Newest() => store.Complete().Select(c => c.step).Cast<long?>().LastOrDefault();
        string Latest() => File.ReadAllText(Path.Combine(ckpt, CheckpointStore.LatestFile)).Trim();

        // 1. Inside the save of step 2, after the actor weights and before the optimizer state: step 1 stays newest.
        //    (--load_checkpoint with nothing to load starts fresh and says so.)
        using (var c = StartPaused(args, "save-actor-written:2", root))
        {
            c.Kill();
            Assert.Contains("no complete checkpoint", c.Out);
        }
        Assert.Equal(1, Newest());
        Assert.Single(Directory.GetDirectories(ckpt, ".global_step2.tmp-*"));

        // 2. Resumed from 1; killed with step 3's temp folder complete (marker written) but not renamed.
        using (var c = StartPaused(args, "save-written:3", root))
        {
            Assert.Contains("at global step 1", c.Out);
            c.Kill();
        }
        Assert.Equal(2, Newest());
        Assert.Empty(Directory.GetDirectories(ckpt, ".global_step2.tmp-*"));        // the next save cleaned the debris
        Assert.Single(Directory.GetDirectories(ckpt, ".global_step3.tmp-*"));

        // 3. Resumed from 2; killed after step 3's rename, before `latest` moved: the scan still finds step 3.
        using (var c = StartPaused(args, "save-renamed:3", root))
        {
            Assert.Contains("at global step 2", c.Out);
            c.Kill();
        }
        Assert.Equal(3, Newest());
        Assert.Equal("global_step2", Latest());

        // 4. Resumed from 3; killed in the middle of step 4 (after generation).
        using (var c = StartPaused(args, "after-generate:4", root))
        {
            Assert.Contains("at global step 3", c.Out);
            c.Kill();
        }
        Assert.Equal(3, Newest());

        // 5. Resumed from 3; killed during step 4's HF export (checkpoint 4 complete, export not renamed).
        using (var c = StartPaused(args, "hf-export-written:4", root))
        {
            Assert.Contains("at global step 3", c.Out);
            c.Kill();
        }
        Assert.Equal(4, Newest());
        Assert.False(Directory.Exists(store.HfFolder(4)));
        Assert.Equal([3L, 4L], store.Complete().Select(c => c.step));                 // --max_ckpt_num 2 pruned 1 and 2
        Assert.False(Directory.Exists(store.HfFolder(2)));

        // 6. Resumed from 4 (the plan's end): writes the missing export and the final model, identical to the reference.
        var (code, stdout, stderr) = RunInProcess(args);
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        Assert.Contains("at global step 4", stdout);
        Assert.Contains("wrote the missing Hugging Face export", stdout);
        AssertSameAsReference(root);
    }

    [Theory]
    [InlineData("--micro_train_batch_size", new[] { "--micro_train_batch_size", "2" })]
    [InlineData("--seed", new[] { "--seed", "7" })]
    [InlineData("--n_samples_per_prompt", new[] { "--n_samples_per_prompt", "4" })]
    [InlineData("--max_samples", new[] { "--max_samples", "2" })]
    [InlineData("--advantage_estimator", new[] { "--advantage_estimator", "reinforce" })]
    [InlineData("--bf16", new[] { "--bf16" })]
    [InlineData("--packing_share_prompts", new[] { "--packing_samples", "--packing_share_prompts" })]   // the update's shuffle changes
    public void ACheckpointOfAnotherConfigurationIsRefusedNamingTheFlag(string flag, string[] change)
    {
        string reference = Reference;
        string root = TestPaths.NewTempDir("run-refuse");
        // The reference's checkpoints, other outputs: the refusal comes before anything is written or loaded.
        var args = Set(Args(root, Steps, "--load_checkpoint"), "--ckpt_path", Path.Combine(reference, "ckpt"));
        args = Set(args, change[0], change[1..]);
        var (code, _, stderr) = RunInProcess(args);
        output.WriteLine(stderr);
        Assert.Equal(1, code);
        string err = stderr.Split('\n').Last(l => l.Length > 0);
        Assert.StartsWith("error:", err);
        Assert.Contains(flag, err);
        Assert.Contains("would not continue that run", err);
        Assert.False(Directory.Exists(Path.Combine(root, "final")));
    }

    [Fact]
    public void AnotherModelOrOtherPromptsAreRefused()
    {
        string reference = Reference;
        string root = TestPaths.NewTempDir("run-refuse-model");
        var args = Set(Args(root, Steps, "--load_checkpoint"), "--ckpt_path", Path.Combine(reference, "ckpt"));
        string other = Training.TinyRl.WriteModel(Path.Combine(root, "other-model"), seed: 1);   // same shapes, other weights
        var (code, _, stderr) = RunInProcess(Set(args, "--pretrain", other));
        Assert.Equal(1, code);
        Assert.Contains("'--pretrain'", stderr);

        // The same rows in another order: same count and keys, other prompt order.
        string data = Path.Combine(root, "prompts.jsonl");
        var lines = File.ReadAllLines(Training.TinyRl.ExampleData);
        File.WriteAllLines(data, [lines[1], lines[0], .. lines[2..]]);
        Directory.CreateSymbolicLink(Path.Combine(root, "images"), Path.Combine(Path.GetDirectoryName(Training.TinyRl.ExampleData)!, "images"));
        (code, _, stderr) = RunInProcess(Set(args, "--prompt_data", data));
        Assert.Equal(1, code);
        Assert.Contains("'--prompt_data'", stderr);
    }
}
