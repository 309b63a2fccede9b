// Crash-safe file writes: write to a temporary sibling, fsync, rename over the target, fsync the folder.
// A reader therefore sees the old file or the new one, never a torn one.
using System.Runtime.InteropServices;
using System.Text;

namespace LmmR1.Infrastructure;

public static partial class AtomicFile
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

    /// <summary>Removes the temporary files <see cref="Write"/> leaves when its process is killed mid-write
    /// (`.{name}.{pid}.{guid}.tmp` in <paramref name="dir"/>): those whose process is gone, and any older than
    /// <paramref name="staleAfter"/> (default one day; a live process with that pid may be an unrelated one). Files of
    /// this process and of other live writers are kept. Returns the number removed; failures are ignored.</summary>
    public static int SweepStaleTempFiles(string dir, TimeSpan? staleAfter = null)
    {
        if (!Directory.Exists(dir)) return 0;
        var cutoff = DateTime.UtcNow - (staleAfter ?? TimeSpan.FromDays(1));
        int removed = 0;
        try
        {
            foreach (var f in Directory.EnumerateFiles(dir, ".*.tmp"))
            {
                var m = TempFileName().Match(Path.GetFileName(f));
                if (!m.Success || !int.TryParse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture, out int pid)) continue;
                bool stale = File.GetLastWriteTimeUtc(f) < cutoff;
                if (pid == Environment.ProcessId && !stale) continue;
                if (!stale && IsAlive(pid)) continue;
                try { File.Delete(f); removed++; } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
        }
        catch (IOException) { } catch (UnauthorizedAccessException) { }
        return removed;
    }

    static bool IsAlive(int pid)
    {
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^\..+\.(\d+)\.[0-9a-f]{32}\.tmp$")]
    private static partial System.Text.RegularExpressions.Regex TempFileName();

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
