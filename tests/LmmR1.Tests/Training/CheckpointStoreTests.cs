using LmmR1.Tests.Support;
using LmmR1.Training.Checkpointing;

namespace LmmR1.Tests.Training;

public class CheckpointStoreTests
{
    static void WritePayload(string dir, string text) => File.WriteAllText(Path.Combine(dir, "payload.txt"), text);

    [Fact]
    public void SavesRenamesUpdatesLatestAndPrunes()
    {
        var store = new CheckpointStore(TestPaths.NewTempDir("ck"), maxCheckpoints: 2);
        for (int s = 1; s <= 4; s++) store.Save(s * 10, d => WritePayload(d, $"step {s * 10}"));
        Assert.Equal([30L, 40L], store.Complete().Select(c => c.step));
        string latest = store.FindLatest()!;
        Assert.Equal("global_step40", Path.GetFileName(latest));
        Assert.Equal("step 40", File.ReadAllText(Path.Combine(latest, "payload.txt")));
        Assert.Equal("global_step40", File.ReadAllText(Path.Combine(store.Root, CheckpointStore.LatestFile)).Trim());
        Assert.Empty(Directory.GetDirectories(store.Root, ".*"));
    }

    [Fact]
    public void AFailedSaveLeavesThePreviousCheckpointAndNoDebris()
    {
        var store = new CheckpointStore(TestPaths.NewTempDir("ck"), maxCheckpoints: 3);
        store.Save(1, d => WritePayload(d, "one"));
        Assert.Throws<IOException>(() => store.Save(2, d => { WritePayload(d, "half"); throw new IOException("disk full"); }));
        Assert.Equal("global_step1", Path.GetFileName(store.FindLatest()));
        Assert.Empty(Directory.GetDirectories(store.Root, ".*"));
    }

    [Fact]
    public void RemainsOfAKilledSaveAreIgnoredAndCleanedUp()
    {
        string root = TestPaths.NewTempDir("ck");
        var store = new CheckpointStore(root, maxCheckpoints: 3);
        store.Save(5, d => WritePayload(d, "five"));
        // what a SIGKILL during the next save leaves: a temp folder, or a renamed folder without the marker
        Directory.CreateDirectory(Path.Combine(root, ".global_step6.tmp-123-abc"));
        Directory.CreateDirectory(Path.Combine(root, "global_step7"));
        Assert.Equal("global_step5", Path.GetFileName(store.FindLatest()));
        store.Save(8, d => WritePayload(d, "eight"));
        Assert.False(Directory.Exists(Path.Combine(root, ".global_step6.tmp-123-abc")));
        Assert.False(Directory.Exists(Path.Combine(root, "global_step7")));
        Assert.Equal([5L, 8L], store.Complete().Select(c => c.step));
    }

    [Fact]
    public void APointerOneStepBehindStillFindsTheNewestCompleteCheckpoint()
    {
        string root = TestPaths.NewTempDir("ck");
        var store = new CheckpointStore(root, maxCheckpoints: 3);
        store.Save(1, d => WritePayload(d, "one"));
        store.Save(2, d => WritePayload(d, "two"));
        File.WriteAllText(Path.Combine(root, CheckpointStore.LatestFile), "global_step1\n"); // crash before the pointer moved
        Assert.Equal("global_step2", Path.GetFileName(store.FindLatest()));
        File.WriteAllText(Path.Combine(root, CheckpointStore.LatestFile), "garbage");
        Assert.Equal("global_step2", Path.GetFileName(store.FindLatest()));
        File.Delete(Path.Combine(root, CheckpointStore.LatestFile));
        Assert.Equal("global_step2", Path.GetFileName(store.FindLatest()));
    }

    [Fact]
    public void ResavingTheSameStepReplacesIt()
    {
        var store = new CheckpointStore(TestPaths.NewTempDir("ck"), maxCheckpoints: 3);
        store.Save(3, d => WritePayload(d, "first"));
        store.Save(3, d => WritePayload(d, "second"));
        Assert.Equal("second", File.ReadAllText(Path.Combine(store.FindLatest()!, "payload.txt")));
        Assert.Single(store.Complete());
    }

    [Fact]
    public void AKillBetweenTheRenamesOfAResavePutsThePreviousCopyBack()
    {
        string root = TestPaths.NewTempDir("ck");
        var store = new CheckpointStore(root, maxCheckpoints: 1);
        store.Save(3, d => WritePayload(d, "first"));
        // What the kill leaves: the old copy moved aside, the new one still in its temp folder.
        Directory.Move(Path.Combine(root, "global_step3"), Path.Combine(root, ".global_step3.tmp-old-0123abcd"));
        Directory.CreateDirectory(Path.Combine(root, ".global_step3.tmp-77-ffff"));
        Assert.Equal("first", File.ReadAllText(Path.Combine(store.FindLatest()!, "payload.txt")));
        Assert.Equal("global_step3", Path.GetFileName(store.FindLatest()));

        // Before a save cleans up, too (the only checkpoint of --max_ckpt_num 1 must survive).
        Directory.Move(Path.Combine(root, "global_step3"), Path.Combine(root, ".global_step3.tmp-old-4567cdef"));
        store.Save(4, d => WritePayload(d, "four"));
        Assert.Equal([4L], store.Complete().Select(c => c.step));
        Assert.Empty(Directory.GetDirectories(root, ".*"));
        Directory.Move(Path.Combine(root, "global_step4"), Path.Combine(root, ".global_step4.tmp-old-89ab"));
        Assert.Throws<IOException>(() => store.Save(5, d => throw new IOException("disk full")));
        Assert.Equal("global_step4", Path.GetFileName(store.FindLatest()));
    }

    [Fact]
    public void EmptyOrMissingRootHasNoCheckpoint()
    {
        Assert.Null(new CheckpointStore(Path.Combine(TestPaths.NewTempDir("ck"), "absent"), 1).FindLatest());
        Assert.Throws<LmmR1.Infrastructure.InputException>(() => new CheckpointStore("x", 0));
    }
}
