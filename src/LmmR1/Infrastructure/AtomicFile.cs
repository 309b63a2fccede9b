// Crash-safe file writes: write to a temporary sibling, fsync, rename over the target, fsync the folder.
// A reader therefore sees the old file or the new one, never a torn one.
using System.Runtime.InteropServices;
using System.Text;

namespace LmmR1.Infrastructure;

public static class AtomicFile
{
    public static void Write(string path, Action<FileStream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
            SyncDirectory(dir);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    public static void WriteAllText(string path, string text) =>
        Write(path, fs => fs.Write(Encoding.UTF8.GetBytes(text)));

    /// <summary>Moves the complete folder <paramref name="tmp"/> to <paramref name="final"/> (same parent). An existing
    /// <paramref name="final"/> is first renamed aside to `.{name}.tmp-old-{guid}`, so a crash between the two renames
    /// still leaves a complete folder under one of the two names; the old copy is deleted afterwards.</summary>
    public static void ReplaceDirectory(string tmp, string final)
    {
        string parent = Path.GetDirectoryName(Path.GetFullPath(final))!;
        if (Directory.Exists(final))
        {
            string old = Path.Combine(parent, $".{Path.GetFileName(final)}.tmp-old-{Guid.NewGuid():N}");
            Directory.Move(final, old);
            Directory.Move(tmp, final);
            SyncDirectory(parent);
            TryDeleteDirectory(old);
        }
        else
        {
            Directory.Move(tmp, final);
            SyncDirectory(parent);
        }
    }

    /// <summary>Deletes a folder tree if it exists; failures (already gone, busy, no permission) are ignored.</summary>
    public static void TryDeleteDirectory(string dir)
    {
        try { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>fsync a directory so a rename inside it survives a power cut (no-op where unsupported).</summary>
    public static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        int fd = open(dir, 0 /* O_RDONLY */);
        if (fd < 0) return;
        try { fsync(fd); } finally { close(fd); }
    }

    [DllImport("libc", SetLastError = true)] static extern int open(string path, int flags);
    [DllImport("libc", SetLastError = true)] static extern int fsync(int fd);
    [DllImport("libc", SetLastError = true)] static extern int close(int fd);
}
