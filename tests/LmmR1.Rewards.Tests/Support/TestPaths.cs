// Locates the repository root (the folder holding LmmR1.slnx) and the shared reference data beside it.
namespace LmmR1.Rewards.Tests.Support;

internal static class TestPaths
{
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir != null && !File.Exists(Path.Combine(dir.FullName, "LmmR1.slnx"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("LmmR1.slnx not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>../shared/reference/math_verify_cases.jsonl: 270 cases from Math-Verify's own tests.</summary>
    public static string MathVerifyCases => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "reference", "math_verify_cases.jsonl"));

    public static string Data(string name) => Path.Combine(RepoRoot, "tests", "LmmR1.Rewards.Tests", "Data", name);
}
