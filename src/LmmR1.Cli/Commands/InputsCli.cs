// Helpers shared by the inputs commands (debug tokenize/image/prompt, data): turning InputException into
// "error: …" with a non-zero exit, reading JSON lines from stdin, writing compact JSON lines.
using System.Text.Encodings.Web;
using System.Text.Json;
using LmmR1.Infrastructure;

namespace LmmR1.Cli.Commands;

internal static class InputsCli
{
    public static readonly JsonWriterOptions JsonLine = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Runs a command body through the CLI's one error path (<see cref="CliErrors"/>): bad input and I/O
    /// failures print "error: message" (no stack trace) and return 1.</summary>
    public static int Guard(Func<int> body) => CliErrors.Run(body);

    /// <summary>Non-blank lines of a reader as parsed JSON objects, with 1-based line numbers; bad JSON is an InputException.</summary>
    public static IEnumerable<(long Line, JsonDocument Doc)> ReadJsonLines(TextReader input, string name = "stdin")
    {
        long n = 0;
        for (string? line; (line = input.ReadLine()) != null;)
        {
            n++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonDocument doc;
            try { doc = JsonDocument.Parse(line); }
            catch (JsonException e) { throw InputException.At(name, n, null, $"invalid JSON ({e.Message})"); }
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                doc.Dispose();
                throw InputException.At(name, n, null, "expected a JSON object");
            }
            yield return (n, doc);
        }
    }

    /// <summary>Writes one JSON object as a line.</summary>
    public static void WriteLine(TextWriter output, Action<Utf8JsonWriter> write)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, JsonLine))
        {
            w.WriteStartObject();
            write(w);
            w.WriteEndObject();
        }
        output.WriteLine(System.Text.Encoding.UTF8.GetString(ms.GetBuffer(), 0, (int)ms.Length));
    }
}
