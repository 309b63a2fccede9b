// The JSONL batch format of `lmmr1 reward verify`: one {"gold", "pred", "config"} object per line in, one
// {"verified", "reason", "ms"} object per line out. config takes the keys of math_verify_cases.jsonl.
using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace LmmR1.Rewards;

/// <summary>A malformed input line; the message says "source:line: field 'x': what is expected".
/// (LmmR1.Rewards cannot reference LmmR1's InputException, which lives beside TorchSharp.)</summary>
public sealed class RewardInputException(string message) : Exception(message)
{
    public static RewardInputException At(string source, long line, string? field, string message) =>
        new(field == null ? $"{source}:{line}: {message}" : $"{source}:{line}: field '{field}': {message}");
}

public static class VerifyJsonl
{
    /// <summary>Verifies every line; stops with RewardInputException at the first malformed one (no line is
    /// skipped, so output line k always answers input line k, blank lines aside).</summary>
    public static int Run(TextReader reader, TextWriter output, string source, TimeSpan timeBudget)
    {
        long lineNo = 0;
        string? line;
        while ((line = reader.ReadLine()) != null)
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var (gold, pred, options) = ParseLine(line, source, lineNo);
            var sw = Stopwatch.StartNew();
            var result = MathVerifier.Verify(gold, pred, options with { TimeBudget = timeBudget });
            output.WriteLine(OutputLine(result, sw.Elapsed.TotalMilliseconds));
        }
        output.Flush();
        return 0;
    }

    public static string OutputLine(VerifyResult result, double ms)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteBoolean("verified", result.Verified);
            w.WriteString("reason", result.Reason);
            w.WriteNumber("ms", Math.Round(ms, 3));
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    public static (string Gold, string Pred, VerifyOptions Options) ParseLine(string line, string source, long lineNo)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e) { throw RewardInputException.At(source, lineNo, null, $"malformed JSON: {e.Message}"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw RewardInputException.At(source, lineNo, null, "expected a JSON object {\"gold\", \"pred\", \"config\"}");
            string Str(string name) =>
                root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
                : throw RewardInputException.At(source, lineNo, name, "expected a string");
            var gold = Str("gold");
            var pred = Str("pred");
            string? extraction = null;
            int? boxed = null, rounding = null, precision = null;
            bool? strict = null, allowSetRel = null;
            if (root.TryGetProperty("config", out var cfg) && cfg.ValueKind != JsonValueKind.Null)
            {
                if (cfg.ValueKind != JsonValueKind.Object) throw RewardInputException.At(source, lineNo, "config", "expected an object");
                extraction = OptString(cfg, "extraction", source, lineNo);
                boxed = OptInt(cfg, "latex_boxed_match_priority", source, lineNo);
                rounding = OptInt(cfg, "float_rounding", source, lineNo);
                precision = OptInt(cfg, "numeric_precision", source, lineNo);
                strict = OptBool(cfg, "strict", source, lineNo);
                allowSetRel = OptBool(cfg, "allow_set_relation_comp", source, lineNo);
            }
            try { return (gold, pred, VerifyOptions.FromConfig(extraction, boxed, rounding, precision, strict, allowSetRel)); }
            catch (ArgumentException e) { throw RewardInputException.At(source, lineNo, "config", e.Message); }
        }
    }

    private static string? OptString(JsonElement cfg, string name, string source, long line) =>
        !cfg.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.String ? v.GetString() : throw RewardInputException.At(source, line, $"config.{name}", "expected a string");

    private static int? OptInt(JsonElement cfg, string name, string source, long line) =>
        !cfg.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : throw RewardInputException.At(source, line, $"config.{name}", "expected an integer");

    private static bool? OptBool(JsonElement cfg, string name, string source, long line) =>
        !cfg.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
        : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw RewardInputException.At(source, line, $"config.{name}", "expected true or false");
}
