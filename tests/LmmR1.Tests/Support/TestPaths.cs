// Locations the tests read from: the repository root and the shared fixtures (../shared/fixtures beside the
// checkout, as on CI; LMMR1_SHARED overrides the shared folder).
namespace LmmR1.Tests.Support;

public static class TestPaths
{
    public static string RepoRoot { get; } = FindRepoRoot();

    public static string Shared { get; } =
        Environment.GetEnvironmentVariable("LMMR1_SHARED") is { Length: > 0 } s ? s : Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    public static string Fixtures => Path.Combine(Shared, "fixtures");

    public static string Fixture(params string[] parts) => Path.Combine([Fixtures, .. parts]);

    /// <summary>A fresh empty folder under the system temp dir, deleted by the OS or the next run.</summary>
    public static string NewTempDir(string tag)
    {
        string d = Path.Combine(Path.GetTempPath(), "lmmr1-tests", $"{tag}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(d);
        return d;
    }

    static string FindRepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d != null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "LmmR1.slnx"))) return d.FullName;
        throw new InvalidOperationException("LmmR1.slnx not found above " + AppContext.BaseDirectory);
    }
}
