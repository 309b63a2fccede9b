// 3,500 more answer pairs whose verdicts come from the real Math-Verify 0.8.0 (Data/gen_oracle_cases.py: generated
// notations, seeded edits of the reference cases, and LMM-R1's verify_math). Every disagreement is listed with its
// cause in Data/oracle_disagreements.jsonl, and the test asserts the set matches exactly.
using System.Text.Json;
using LmmR1.Rewards.Tests.Support;
using Xunit.Abstractions;

namespace LmmR1.Rewards.Tests;

public sealed class OracleCasesTests(ITestOutputHelper output)
{
    private static readonly string[] Causes = ["degree sign", "unit at depth 0", "set order"];

    [Fact]
    public void AgreesWithTheReferenceImplementationExceptWhereDocumented()
    {
        MathVerifier.WarmUp(1);
        var disagreements = new List<(int Line, string Kind, string Gold, string Pred, bool Expected, string Reason)>();
        int line = 0, total = 0;
        foreach (var text in File.ReadLines(TestPaths.Data("oracle_cases.jsonl")))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            total++;
            var r = JsonDocument.Parse(text).RootElement;
            var kind = r.GetProperty("kind").GetString()!;
            var gold = r.GetProperty("gold").GetString()!;
            var pred = r.GetProperty("pred").GetString()!;
            var expected = r.GetProperty("expected").GetBoolean();
            VerifyResult ours;
            if (kind == "lmm") ours = LmmR1Reward.Accuracy(pred, gold, TimeSpan.FromSeconds(10));
            else
            {
                var (_, _, options) = VerifyJsonl.ParseLine(JsonSerializer.Serialize(new { gold, pred, config = r.GetProperty("config") }), "oracle_cases.jsonl", line);
                ours = MathVerifier.Verify(gold, pred, options with { TimeBudget = TimeSpan.FromSeconds(10) });
            }
            if (ours.Verified != expected) disagreements.Add((line, kind, gold, pred, expected, ours.Reason));
        }
        output.WriteLine($"agreement {total - disagreements.Count}/{total}");
        foreach (var d in disagreements) output.WriteLine($"line {d.Line} ({d.Kind}): expected {d.Expected}: {d.Gold} | {d.Pred} | {d.Reason}");

        var known = File.ReadLines(TestPaths.Data("oracle_disagreements.jsonl")).Where(l => !string.IsNullOrWhiteSpace(l))
            .Select(l => JsonDocument.Parse(l).RootElement)
            .ToDictionary(e => e.GetProperty("line").GetInt32(), e => (Gold: e.GetProperty("gold").GetString(), Pred: e.GetProperty("pred").GetString(), Cause: e.GetProperty("cause").GetString()));
        Assert.All(known.Values, k => Assert.Contains(k.Cause, Causes));
        foreach (var d in disagreements)
            if (known.TryGetValue(d.Line, out var k)) { Assert.Equal(k.Gold, d.Gold); Assert.Equal(k.Pred, d.Pred); }
        Assert.Equal(known.Keys.Order(), disagreements.Select(d => d.Line).Order());
    }
}
