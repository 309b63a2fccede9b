// The JSONL batch format behind `lmmr1 reward verify` (issue item 7).
using System.Text.Json;

namespace LmmR1.Rewards.Tests;

public sealed class VerifyJsonlTests
{
    private static (int Code, string[] Lines) Run(string input)
    {
        var output = new StringWriter();
        int code = VerifyJsonl.Run(new StringReader(input), output, "in.jsonl", TimeSpan.FromSeconds(5));
        return (code, output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public void WritesOneResultPerInputLine()
    {
        var (code, lines) = Run("""
            {"gold": "$\\frac{1}{2}$", "pred": "$0.5$"}
            {"gold": "1", "pred": "2", "config": {"extraction": "expr"}}

            {"gold": "$\\frac{1}{3}$", "pred": "$0.33$", "config": {"float_rounding": 2, "latex_boxed_match_priority": null}}
            """);
        Assert.Equal(0, code);
        Assert.Equal(3, lines.Length);
        var verdicts = lines.Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        Assert.Equal([true, false, true], verdicts.Select(v => v.GetProperty("verified").GetBoolean()));
        Assert.All(verdicts, v => Assert.True(v.GetProperty("ms").GetDouble() >= 0));
        Assert.All(verdicts, v => Assert.False(string.IsNullOrEmpty(v.GetProperty("reason").GetString())));
    }

    [Theory]
    // Not JSON.
    [InlineData("{\"gold\":\"1\",\"pred\":\"1\"}\nnot json", "in.jsonl:2: malformed JSON")]
    // gold is not a string.
    [InlineData("{\"gold\":1,\"pred\":\"1\"}", "in.jsonl:1: field 'gold': expected a string")]
    // pred missing.
    [InlineData("{\"gold\":\"1\"}", "in.jsonl:1: field 'pred': expected a string")]
    // An unknown extraction target.
    [InlineData("{\"gold\":\"1\",\"pred\":\"1\",\"config\":{\"extraction\":\"words\"}}", "in.jsonl:1: field 'config': unknown extraction target 'words'")]
    // A config value of the wrong type.
    [InlineData("{\"gold\":\"1\",\"pred\":\"1\",\"config\":{\"strict\":\"yes\"}}", "in.jsonl:1: field 'config.strict': expected true or false")]
    public void MalformedLinesNameTheLine(string input, string message)
    {
        var e = Assert.Throws<RewardInputException>(() => Run(input));
        Assert.StartsWith(message, e.Message);
    }
}
