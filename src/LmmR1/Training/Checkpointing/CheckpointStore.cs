// The folder of training checkpoints (--ckpt_path): global_step{N}/ subfolders written crash-safely.
// A save goes to a hidden temporary folder; every file in it is fsynced, a COMPLETE marker is written last, the
// folder is renamed to global_step{N}, the parent is fsynced, and only then is the `latest` pointer replaced
// (atomically). A SIGKILL at any moment therefore leaves either the previous newest checkpoint or the new one
// complete; leftovers of an interrupted save are ignored and cleaned up by the next save. Older checkpoints
// beyond --max_ckpt_num are deleted after the new one is in place (OpenRLHF keeps the newest max_ckpt_num).
using System.Globalization;
using System.Text.RegularExpressions;
using LmmR1.Infrastructure;

namespace LmmR1.Training.Checkpointing;

public sealed partial class CheckpointStore
{
    public const string LatestFile = "latest";
    public const string CompleteMarker = "COMPLETE";
    const string Prefix = "global_step";

    public string Root { get; }
    public int MaxCheckpoints { get; }

    public CheckpointStore(string root, int maxCheckpoints)
    {
        if (maxCheckpoints < 1) throw new InputException($"--max_ckpt_num must be at least 1 (got {maxCheckpoints})");
        Root = Path.GetFullPath(root);
        MaxCheckpoints = maxCheckpoints;
    }

    public static string FolderName(long step) => Prefix + step.ToString(CultureInfo.InvariantCulture);

    /// <summary>Writes checkpoint <paramref name="step"/>: <paramref name="write"/> fills the given (temporary) folder.</summary>
    public string Save(long step, Action<string> write)
    {
        Directory.CreateDirectory(Root);
        PutBackMovedAside();
        AtomicFile.SweepStaleTempFiles(Root);
        foreach (var stale in Directory.EnumerateDirectories(Root, $".{Prefix}*.tmp-*")) TryDelete(stale);
        string tmp = Path.Combine(Root, $".{FolderName(step)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(tmp);
        try
        {
            write(tmp);
            File.WriteAllText(Path.Combine(tmp, CompleteMarker), step.ToString(CultureInfo.InvariantCulture));
            SyncTree(tmp);
            Runs.RunHooks.Reach("save-written", step);
            string final = Path.Combine(Root, FolderName(step));
            AtomicFile.ReplaceDirectory(tmp, final);
            Runs.RunHooks.Reach("save-renamed", step);
            AtomicFile.WriteAllText(Path.Combine(Root, LatestFile), FolderName(step) + "\n");
            Prune();
            Runs.RunHooks.Reach("save-done", step);
            return final;
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    /// <summary>
    /// The newest complete checkpoint folder, or null when there is none. Found by scanning for the COMPLETE marker
    /// rather than trusting `latest`: the pointer is written last, so a kill right after the rename leaves it one
    /// checkpoint behind although the newer folder is whole. `latest` is kept for people and other tools.
    /// </summary>
    public string? FindLatest()
    {
        PutBackMovedAside();
        AtomicFile.SweepStaleTempFiles(Root);   // `.latest.<pid>.<guid>.tmp` of a writer killed mid-write
        return Complete().Select(c => c.dir).LastOrDefault();
    }

    /// <summary>A kill between the two renames of a re-save leaves no global_step{N}, only its previous copy moved
    /// aside (complete, under .global_step{N}.tmp-old-*): that copy is renamed back rather than lost with the debris.
    /// The same holds for the Hugging Face exports global_step{N}_hf (complete: <see cref="HfExport.IsComplete"/>).</summary>
    void PutBackMovedAside()
    {
        if (!Directory.Exists(Root)) return;
        foreach (var old in Directory.EnumerateDirectories(Root, $".{Prefix}*.tmp-old-*"))
        {
            var m = MovedAside().Match(Path.GetFileName(old));
            if (!m.Success) continue;
            string name = m.Groups[1].Value;
            bool complete = name.EndsWith(HfSuffix, StringComparison.Ordinal) ? HfExport.IsComplete(old) : IsComplete(old);
            string final = Path.Combine(Root, name);
            if (!complete || Directory.Exists(final)) continue;
            Directory.Move(old, final);
            AtomicFile.SyncDirectory(Root);
        }
    }

    public static bool IsComplete(string dir) => File.Exists(Path.Combine(dir, CompleteMarker));

    /// <summary>Complete checkpoints, oldest first.</summary>
    public IEnumerable<(long step, string dir)> Complete()
    {
        if (!Directory.Exists(Root)) return [];
        return Directory.EnumerateDirectories(Root)
            .Select(d => (name: Path.GetFileName(d), dir: d))
            .Where(x => StepFolder().IsMatch(x.name) && IsComplete(x.dir))
            .Select(x => (long.Parse(x.name[Prefix.Length..], CultureInfo.InvariantCulture), x.dir))
            .OrderBy(x => x.Item1)
            .ToList();
    }

    /// <summary>The Hugging Face export of checkpoint <paramref name="step"/> (--save_hf_ckpt): global_step{N}_hf.</summary>
    public string HfFolder(long step) => Path.Combine(Root, FolderName(step) + HfSuffix);

    public const string HfSuffix = "_hf";

    void Prune()
    {
        var all = Complete().ToList();
        foreach (var (step, dir) in all.Take(Math.Max(0, all.Count - MaxCheckpoints)))
        {
            TryDelete(dir);
            TryDelete(HfFolder(step));   // its HF export goes with it
        }
        // Folders without the marker are remains of saves killed before the rename; never the newest complete one.
        foreach (var d in Directory.EnumerateDirectories(Root))
            if (StepFolder().IsMatch(Path.GetFileName(d)) && !IsComplete(d)) TryDelete(d);
    }

    /// <summary>fsyncs every file and folder under <paramref name="dir"/> (and the folder itself).</summary>
    public static void SyncTree(string dir)
    {
        foreach (var f in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories))
        {
            using var fs = new FileStream(f, FileMode.Open, FileAccess.ReadWrite);
            fs.Flush(flushToDisk: true);
        }
        foreach (var d in Directory.EnumerateDirectories(dir, "*", SearchOption.AllDirectories)) AtomicFile.SyncDirectory(d);
        AtomicFile.SyncDirectory(dir);
    }

    static void TryDelete(string dir) => AtomicFile.TryDeleteDirectory(dir);

    [GeneratedRegex(@"^global_step\d+$")]
    private static partial Regex StepFolder();

    [GeneratedRegex(@"^\.(global_step\d+(?:_hf)?)\.tmp-old-[0-9a-f]+$")]
    private static partial Regex MovedAside();
}
