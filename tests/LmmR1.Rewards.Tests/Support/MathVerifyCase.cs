// One row of math_verify_cases.jsonl and the VerifyOptions its config asks for.
using System.Text.Json;

namespace LmmR1.Rewards.Tests.Support;

internal sealed record MathVerifyCase(int Line, string Gold, string Pred, bool Expected, string Category, VerifyOptions Options)
{
    public static IReadOnlyList<MathVerifyCase> LoadAll()
    {
        var cases = new List<MathVerifyCase>();
        int line = 0;
        foreach (var text in File.ReadLines(TestPaths.MathVerifyCases))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            var root = JsonDocument.Parse(text).RootElement;
            var c = root.GetProperty("config");
            int? boxed = c.GetProperty("latex_boxed_match_priority").ValueKind == JsonValueKind.Null ? null : c.GetProperty("latex_boxed_match_priority").GetInt32();
            var options = VerifyOptions.FromConfig(c.GetProperty("extraction").GetString(), boxed, c.GetProperty("float_rounding").GetInt32(),
                c.GetProperty("numeric_precision").GetInt32(), c.GetProperty("strict").GetBoolean(), c.GetProperty("allow_set_relation_comp").GetBoolean())
                // Equivalence is under test here, not speed: a generous budget keeps a cold JIT or a busy machine from deciding.
                with { TimeBudget = TimeSpan.FromSeconds(10) };
            cases.Add(new MathVerifyCase(line, root.GetProperty("gold").GetString()!, root.GetProperty("pred").GetString()!,
                root.GetProperty("expected").GetBoolean(), root.GetProperty("category").GetString()!, options));
        }
        return cases;
    }
}
