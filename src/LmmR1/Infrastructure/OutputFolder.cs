// Start-of-run checks of an output folder (--save_path, --ckpt_path, --use_tensorboard): it must be a folder or
// creatable as one, and writable, and the file system must have room for what the run will write. Checked before
// anything is loaded (and by --dry_run), so an unwritable path or a full disk is reported at once, not at the first
// save hours later. Nothing is created: writability is probed with a temporary file in the nearest existing folder.
namespace LmmR1.Infrastructure;

public static class OutputFolder
{
    /// <summary>Throws an InputException naming <paramref name="flag"/> when <paramref name="path"/> cannot be a
    /// writable folder: an existing file on the way, a read-only or pseudo file system (/proc), no permission.</summary>
    public static void CheckWritable(string path, string flag)
    {
        string full;
        try { full = Path.GetFullPath(path); }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            throw InputException.At(null, null, flag, $"'{path}' is not a valid path ({e.Message})");
        }
        // Every existing component must be a folder (a file, or a symlink loop, cannot hold one).
        for (var d = full; !string.IsNullOrEmpty(d); d = Path.GetDirectoryName(d))
        {
            if (Directory.Exists(d)) break;
            if (File.Exists(d) || IsLink(d))
                throw InputException.At(null, null, flag, d == full
                    ? $"'{path}' is an existing file, not a folder"
                    : $"'{path}' cannot be created: '{d}' is a file, not a folder");
        }
        string probeDir = IoErrors.ExistingAncestor(full) ?? throw InputException.At(null, null, flag, $"'{path}': no existing parent folder");
        string probe = Path.Combine(probeDir, $".lmmr1-write-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (IoErrors.IsIo(e))
        {
            throw InputException.At(null, null, flag, $"'{path}' is not writable: cannot create a file in '{probeDir}' ({IoErrors.Reason(e)})");
        }
        finally
        {
            try { File.Delete(probe); } catch (Exception e) when (IoErrors.IsIo(e)) { }
        }
    }

    /// <summary>Throws when the file system of <paramref name="path"/> has less than <paramref name="needBytes"/> free.
    /// Unknown free space passes.</summary>
    public static void CheckFreeSpace(string path, double needBytes, string flag, string what)
    {
        if (IoErrors.FreeBytes(path) is { } free && free < needBytes)
            throw InputException.At(null, null, flag, $"not enough free space for {what} in '{path}': needs about {IoErrors.Gb(needBytes)}, " +
                                                      $"{IoErrors.Gb(free)} free on that file system");
    }

    static bool IsLink(string p)
    {
        try { return new FileInfo(p).LinkTarget is not null; }
        catch (Exception e) when (IoErrors.IsIo(e)) { return false; }
    }
}
