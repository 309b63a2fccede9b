// Issue 11 item 3 (b, c, e, j): output folders that cannot be written (under /proc, an existing file) are found at
// start and by --dry_run; a full disk is found at start, before a save (nothing written, earlier checkpoints intact),
// and during a save or the final export (an `error:` saying what failed and how much it needed; the run's weights
// are kept in a checkpoint and re-exported by --load_checkpoint); plots are best effort; the temporary files of a
// killed writer are swept; a complete Hugging Face export moved aside by a killed re-save is renamed back.
// The full disk is simulated through two test seams: LMMR1_TEST_FREE_BYTES (what the free-space probe reports) and
// LMMR1_TEST_FAIL (the ENOSPC IOException thrown at a named point of the write), in child processes only.
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Runs;
using LmmR1.Tests.Support;
using LmmR1.Tests.Training;
using LmmR1.Training.Checkpointing;
using LmmR1.Training.Logging;
using LmmR1.Training.Runs;
using LmmR1.Vision;
using TorchSharp;
using Xunit.Abstractions;
using static LmmR1.Tests.Probe.ModelInputProbeTests;

namespace LmmR1.Tests.Probe;

[Collection("Console")]
public class OutputProbeTests(ITestOutputHelper output)
{
    /// <summary>A real 1-step run of the tiny model (rooted at <paramref name="root"/>: ckpt/, final/).</summary>
    static string[] Run1(string root, int steps, int saveSteps, params string[] extra) =>
    [
        "train", "--pretrain", TinyRl.Model, "--prompt_data", TinyRl.ExampleData, "--input_key", "message", "--label_key", "answer",
        "--processor_kwargs", TinyRl.SmallImages, "--advantage_estimator", "reinforce_baseline", "--init_kl_coef", "0",
        "--rollout_batch_size", "1", "--n_samples_per_prompt", "2", "--train_batch_size", "2", "--micro_train_batch_size", "1",
        "--generate_max_len", "4", "--max_global_steps", steps.ToString(), "--save_steps", saveSteps.ToString(),
        "--ckpt_path", Path.Combine(root, "ckpt"), "--save_path", Path.Combine(root, "final"), "--reward_time_budget_ms", "60000", .. extra,
    ];

    static (int Code, string Out, string Err) Child(string[] args, Dictionary<string, string> env)
    {
        using var c = new RunSupport.Child(args, env);
        int code = c.WaitForExit();
        return (code, c.Out, c.Err);
    }

    [Theory]
    [InlineData("--save_path")]
    [InlineData("--ckpt_path")]
    public void AnUnwritableOrFileOutputPathFailsTheDryRunNamingTheFlag(string flag)
    {
        string file = Path.Combine(TestPaths.NewTempDir("probe-file"), "afile");
        File.WriteAllText(file, "x");
        foreach (var (path, says) in new[] { ("/proc/lmmr1-probe/out", "not writable"), (file, "existing file"), (Path.Combine(file, "sub"), "is a file") })
        {
            var (code, stdout, err) = TrainCommandTests.Run(DryRun(TinyRl.Model, flag, path));
            AssertError(code, err, flag, says);
            Assert.DoesNotContain("dry run:", stdout);
        }
        Assert.Equal("x", File.ReadAllText(file));
    }

    [Fact]
    public void ARealRunWithASavePathThatIsAFileFailsBeforeLoadingAnything()
    {
        string root = TestPaths.NewTempDir("probe-savefile");
        string file = Path.Combine(root, "final");
        File.WriteAllText(file, "x");
        var (code, stdout, err) = RunSupport.RunInProcess(Run1(root, 1, 1));
        AssertError(code, err, "--save_path", "existing file");
        Assert.DoesNotContain("step 1/", stdout + err);
    }

    [Fact]
    public void TooLittleFreeSpaceIsFoundByTheDryRunWithTheSizeNeeded()
    {
        string root = TestPaths.NewTempDir("probe-space");
        var (code, stdout, err) = Child(DryRun(TinyRl.Model, "--save_path", Path.Combine(root, "final"), "--ckpt_path", Path.Combine(root, "ckpt")),
                                        new() { [IoErrors.FreeBytesVariable] = "1000" });
        AssertError(code, err, "not enough free space", "needs about", "0.0000 GB free");
        (code, stdout, err) = Child(DryRun(TinyRl.Model, "--save_path", Path.Combine(root, "final")), new() { [IoErrors.FreeBytesVariable] = "100000000000" });
        Assert.True(code == 0, err);
        Assert.Contains("disk: about", stdout);

        // Room for the final model but not for a checkpoint: an error with --save_steps, a note without.
        var size = DiskEstimate.Of(TinyRl.Config(root), QwenVLConfig.Load(TinyRl.Model), null);   // reinforce_baseline, no KL: no critic
        Assert.True(size.CheckpointBytes > size.ExportBytes);
        string between = ((long)((size.CheckpointBytes + size.ExportBytes) / 2)).ToString();
        string[] noCritic = ["--advantage_estimator", "reinforce_baseline", "--init_kl_coef", "0", "--save_path", Path.Combine(root, "final")];
        (code, _, err) = Child(DryRun(TinyRl.Model, [.. noCritic, "--save_steps", "1"]), new() { [IoErrors.FreeBytesVariable] = between });
        AssertError(code, err, "--ckpt_path", "not enough free space for a checkpoint");
        (code, _, err) = Child(DryRun(TinyRl.Model, noCritic), new() { [IoErrors.FreeBytesVariable] = between });
        Assert.True(code == 0, err);
        Assert.Contains("note: ", err);
        Assert.Contains("not enough free space for a checkpoint", err);
    }

    [Fact]
    public void BeforeASaveTooLittleSpaceWritesNothingAndKeepsTheCheckpoints()
    {
        var store = new CheckpointStore(TestPaths.NewTempDir("probe-presave"), 3);
        store.Save(1, d => File.WriteAllBytes(Path.Combine(d, "w.bin"), new byte[20_000_000]));
        bool called = false;
        var e = Assert.Throws<InputException>(() => SaveSafety.SaveCheckpoint(store, 2, new DiskEstimate(1, 1), false,
            () => { called = true; return ""; }, freeBytes: _ => 10_000_000));
        Assert.False(called);
        Assert.Contains("checkpoint global_step2", e.Message);
        Assert.Contains("needs about 0.02 GB, 0.01 GB free", e.Message);   // the previous checkpoint's 20 MB, not the estimate's 1 byte
        Assert.Contains("global_step1 is intact", e.Message);
        Assert.Equal([1L], store.Complete().Select(c => c.step));
        Assert.Equal(20_000_000 + 1, SaveSafety.FolderBytes(store.Complete().Single().dir));   // + the COMPLETE marker "1"
    }

    [Fact]
    public void ADiskFullDuringAPeriodicSaveEndsWithAnErrorAndEveryCompleteCheckpointStaysUsable()
    {
        string root = TestPaths.NewTempDir("probe-enospc");
        var (code, _, err) = Child(Run1(root, 3, 1), new() { [RunHooks.FailVariable] = "save-written:2" });
        output.WriteLine(err);
        AssertError(code, err, "saving checkpoint global_step2", "no space left on the device", "needs about", "global_step1 is intact", "--load_checkpoint");
        var store = new CheckpointStore(Path.Combine(root, "ckpt"), 3);
        Assert.Equal([1L], store.Complete().Select(c => c.step));
        Assert.Empty(Directory.GetDirectories(store.Root, ".*"));                        // the partial save was removed
        using (QwenVLModel.Load(Path.Combine(store.FindLatest()!, "actor"), torch.ScalarType.Float32, torch.CPU)) { }
        // ... and it resumes: the run finishes from global_step1.
        var (code2, stdout2, err2) = RunSupport.RunInProcess(Run1(root, 3, 1, "--load_checkpoint"));
        Assert.True(code2 == 0, err2);
        Assert.Contains("resumed from", stdout2);
    }

    [Fact]
    public void AFailedFinalExportKeepsTheWeightsInACheckpointAndLoadCheckpointWritesTheExport()
    {
        string root = TestPaths.NewTempDir("probe-final");
        var (code, _, err) = Child(Run1(root, 1, -1), new() { [RunHooks.FailVariable] = "final-export-written:0" });
        output.WriteLine(err);
        AssertError(code, err, "writing the final model", "no space left on the device", "safe in the checkpoint", "--load_checkpoint");
        Assert.False(File.Exists(Path.Combine(root, "final", "model.safetensors")));
        var store = new CheckpointStore(Path.Combine(root, "ckpt"), 3);
        Assert.Equal([1L], store.Complete().Select(c => c.step));                      // saved although --save_steps -1

        var (code2, stdout2, err2) = RunSupport.RunInProcess(Run1(root, 1, -1, "--load_checkpoint"));
        Assert.True(code2 == 0, err2);
        Assert.Contains("saved the final model", stdout2);
        RunSupport.AssertSameWeights(Path.Combine(store.FindLatest()!, "actor"), Path.Combine(root, "final"));
    }

    [Fact]
    public void APlotThatCannotBeWrittenIsAWarningNotAFailure()
    {
        string root = TestPaths.NewTempDir("probe-plots");
        Directory.CreateDirectory(Path.Combine(root, "final"));
        File.WriteAllText(Path.Combine(root, "final", RunPlots.FolderName), "a file where the plots folder goes");
        var (code, stdout, err) = RunSupport.RunInProcess(Run1(root, 1, 1));
        Assert.True(code == 0, err);
        Assert.Contains("warning: could not write the plots", stdout + err);
        Assert.True(File.Exists(Path.Combine(root, "final", "model.safetensors")));
    }

    [Fact]
    public void AFailedTensorBoardWriteIsAWarningAndTheRunGoesOn()
    {
        string root = TestPaths.NewTempDir("probe-tb");
        var (code, _, err) = Child(Run1(root, 2, -1, "--use_tensorboard", Path.Combine(root, "tb")), new() { [RunHooks.FailVariable] = "tensorboard-write:1" });
        Assert.True(code == 0, err);
        Assert.Contains("warning: TensorBoard logging", err);
        Assert.Contains("no space left on the device", err);
        Assert.Equal([1.0, 2.0], MetricsLog.Read(Path.Combine(root, "final", MetricsLog.FileName)).Select(r => r["train/global_step"]));
        Assert.True(File.Exists(Path.Combine(root, "final", "model.safetensors")));
    }

    [Fact]
    public void TemporaryFilesOfAKilledWriterAreSwept()
    {
        string root = TestPaths.NewTempDir("probe-sweep");
        var store = new CheckpointStore(root, 3);
        store.Save(1, d => File.WriteAllText(Path.Combine(d, "x"), "1"));
        string Tmp(int pid) => Path.Combine(root, $".{CheckpointStore.LatestFile}.{pid}.{Guid.NewGuid():N}.tmp");
        string dead = Tmp(int.MaxValue - 1), mine = Tmp(Environment.ProcessId), old = Tmp(Environment.ProcessId), other = Path.Combine(root, ".notes.tmp");
        foreach (var f in new[] { dead, mine, old, other }) File.WriteAllText(f, "global_step1\n");
        File.SetLastWriteTimeUtc(old, DateTime.UtcNow.AddDays(-2));
        Assert.NotNull(store.FindLatest());
        Assert.False(File.Exists(dead));          // its process is gone
        Assert.False(File.Exists(old));           // stale: the pid may have been reused
        Assert.True(File.Exists(mine));           // a live writer's
        Assert.True(File.Exists(other));          // not ours
    }

    [Fact]
    public void ACompleteHfExportMovedAsideByAKilledResaveIsRenamedBack()
    {
        string parent = TestPaths.NewTempDir("probe-hf");
        string dir = Path.Combine(parent, "global_step3_hf");
        using var m = QwenVLModel.Load(TinyRl.Model, torch.ScalarType.Float32, torch.CPU);
        HfExport.WriteAtomic(m, dir, TinyRl.Model, new ImageProcessorOptions());
        Assert.True(HfExport.IsComplete(dir));
        // A kill between ReplaceDirectory's renames: the previous export is only under its moved-aside name.
        string aside = Path.Combine(parent, $".global_step3_hf.tmp-old-{Guid.NewGuid():N}");
        Directory.Move(dir, aside);
        // The next export dies before its own rename: the old copy must be back, whole.
        Assert.Throws<IOException>(() => HfExport.WriteAtomic(m, dir, TinyRl.Model, new ImageProcessorOptions(), () => throw new IOException("killed")));
        Assert.True(HfExport.IsComplete(dir));
        Assert.False(Directory.Exists(aside));
        using (QwenVLModel.Load(dir, torch.ScalarType.Float32, torch.CPU)) { }

        // CheckpointStore's sweep of `.global_step*.tmp-*` puts a moved-aside export back too instead of deleting it.
        var store = new CheckpointStore(parent, 3);
        Directory.Move(dir, aside);
        store.Save(4, d => File.WriteAllText(Path.Combine(d, "x"), "4"));
        Assert.True(HfExport.IsComplete(dir));
        // An incomplete moved-aside copy is debris and goes.
        string broken = Path.Combine(parent, $".global_step3_hf.tmp-old-{Guid.NewGuid():N}");
        Directory.CreateDirectory(broken);
        store.Save(5, d => File.WriteAllText(Path.Combine(d, "x"), "5"));
        Assert.False(Directory.Exists(broken));
    }
}
