// Turning operating-system I/O failures into user-facing messages: which path, what failed, and for a full disk how
// much space was needed. The CLI's one error path prints InputException messages as `error: …`; unexpected
// IOException / UnauthorizedAccessException at known points (reading inputs, writing outputs) are translated here.
namespace LmmR1.Infrastructure;

public static class IoErrors
{
    const int Enospc = 28, Edquot = 122, WinDiskFull = 112, WinHandleDiskFull = 39;

    /// <summary>Whether <paramref name="e"/> reports a full disk or an exhausted quota (ENOSPC / EDQUOT on Unix; on
    /// Unix .NET puts the raw errno into HResult).</summary>
    public static bool IsDiskFull(Exception e) =>
        e is IOException && (e.HResult is Enospc or Edquot || (e.HResult & 0xFFFF) is WinDiskFull or WinHandleDiskFull
                             || e.Message.Contains("No space left on device", StringComparison.OrdinalIgnoreCase));

    /// <summary>Whether <paramref name="e"/> is an operating-system I/O failure the CLI reports as `error:`.</summary>
    public static bool IsIo(Exception e) => e is IOException or UnauthorizedAccessException;

    /// <summary>The operating system's reason without .NET's "path" suffix repeated.</summary>
    public static string Reason(Exception e)
    {
        if (IsDiskFull(e)) return "no space left on the device";
        if (e is UnauthorizedAccessException) return "permission denied (" + e.Message + ")";
        return e.Message;
    }

    /// <summary>Reads a whole input file; a missing file, a symlink loop or another I/O failure is an InputException
    /// naming it.</summary>
    public static string ReadAllText(string path, string? what = null) => Read(path, what, File.ReadAllText);

    public static byte[] ReadAllBytes(string path, string? what = null) => Read(path, what, File.ReadAllBytes);

    static T Read<T>(string path, string? what, Func<string, T> read)
    {
        try { return read(path); }
        catch (Exception e) when (IsIo(e)) { throw new InputException($"{path}: cannot read {what ?? "the file"}: {Reason(e)}", e); }
    }

    /// <summary>Bytes free for an unprivileged writer on the file system holding <paramref name="path"/> (or its
    /// nearest existing ancestor); null when unknown. LMMR1_TEST_FREE_BYTES overrides it (tests simulate a full disk).</summary>
    public static long? FreeBytes(string path)
    {
        if (Environment.GetEnvironmentVariable(FreeBytesVariable) is { Length: > 0 } fake && long.TryParse(fake, out long f)) return f;
        string? dir = ExistingAncestor(path);
        if (dir is null) return null;
        try { return new DriveInfo(dir).AvailableFreeSpace; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException) { return null; }
    }

    public const string FreeBytesVariable = "LMMR1_TEST_FREE_BYTES";

    /// <summary>The path itself or its nearest ancestor that exists as a folder; null when none does.</summary>
    public static string? ExistingAncestor(string path)
    {
        for (var d = Path.GetFullPath(path); !string.IsNullOrEmpty(d); d = Path.GetDirectoryName(d))
            if (Directory.Exists(d)) return d;
        return null;
    }

    /// <summary>"1.23 GB".</summary>
    public static string Gb(double bytes) => (bytes / 1e9).ToString(bytes < 1e7 ? "0.0000" : "0.00", System.Globalization.CultureInfo.InvariantCulture) + " GB";
}
