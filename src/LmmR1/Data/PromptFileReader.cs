// Reads the rows of a prompt data file as JSON objects with their line numbers: .jsonl (one object per line,
// blank lines skipped), .json (a list of objects, or JSON lines as Hugging Face's json loader also accepts), and
// .parquet (Parquet.Net, nested columns become JSON). A folder means its data files, recursively, in path order;
// other files in it (images, READMEs) are ignored. Unreadable rows come back as errors, never dropped.
using System.Text;
using System.Text.Json;
using LmmR1.Infrastructure;
using Parquet.Serialization;

namespace LmmR1.Data;

/// <summary>A row: its JSON (valid until the enumeration moves on) or why it could not be read.</summary>
internal readonly record struct RawRow(string File, long Line, JsonElement Row, string? Error);

internal static class PromptFileReader
{
    public static readonly string[] Extensions = [".jsonl", ".json", ".parquet"];

    /// <summary>The data files of one --prompt_data entry.</summary>
    public static List<string> ListFiles(string spec)
    {
        if (Directory.Exists(spec))
        {
            var files = Directory.EnumerateFiles(spec, "*", SearchOption.AllDirectories)
                .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                .Select(Path.GetFullPath)
                .OrderBy(f => f, StringComparer.Ordinal)
                .ToList();
            if (files.Count == 0) throw InputException.At(spec, null, null, "folder has no .jsonl, .json or .parquet files");
            return files;
        }
        string ext = Path.GetExtension(spec).ToLowerInvariant();
        if (!Extensions.Contains(ext))
            throw InputException.At(spec, null, null, $"unknown data file extension '{ext}': expected .jsonl, .json, .parquet or a folder of them " +
                                                      "(Hugging Face hub names, csv, arrow and save_to_disk folders are not supported)");
        if (!File.Exists(spec)) throw InputException.At(spec, null, null, "data file not found");
        return [Path.GetFullPath(spec)];
    }

    public static IEnumerable<RawRow> ReadRows(string file) => Path.GetExtension(file).ToLowerInvariant() switch
    {
        ".parquet" => ReadParquet(file),
        ".json" when FirstNonSpace(file) == '[' => ReadJsonArray(file),
        _ => ReadJsonLines(file),
    };

    static IEnumerable<RawRow> ReadJsonLines(string file)
    {
        long line = 0;
        foreach (string text in File.ReadLines(file, Encoding.UTF8))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            var (doc, error) = TryParse(text);
            if (doc == null) { yield return new RawRow(file, line, default, error); continue; }
            using (doc) yield return new RawRow(file, line, doc.RootElement, null);
        }
    }

    static (JsonDocument?, string?) TryParse(string text)
    {
        try { return (JsonDocument.Parse(text), null); }
        catch (JsonException e) { return (null, $"invalid JSON ({Short(e.Message)})"); }
    }

    static IEnumerable<RawRow> ReadJsonArray(string file)
    {
        byte[] bytes = File.ReadAllBytes(file);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e)
        {
            // A broken JSON list loses everything after the error; report it at its line.
            doc = null!;
            return [new RawRow(file, (e.LineNumber ?? 0) + 1, default, $"invalid JSON ({Short(e.Message)}); no rows after this point could be read")];
        }
        return Elements(file, doc, ElementLines(bytes));
    }

    static IEnumerable<RawRow> Elements(string file, JsonDocument doc, List<long> lines)
    {
        using (doc)
        {
            int i = 0;
            foreach (var e in doc.RootElement.EnumerateArray())
                yield return new RawRow(file, lines[i++], e, null);
        }
    }

    /// <summary>1-based line of each top-level element of a JSON list.</summary>
    static List<long> ElementLines(byte[] bytes)
    {
        var lines = new List<long>();
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { MaxDepth = 256 });
        long line = 1, counted = 0;
        while (reader.Read())
        {
            if (reader.CurrentDepth != 1 || reader.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray) continue;
            long at = reader.TokenStartIndex;
            for (long k = counted; k < at; k++) if (bytes[k] == (byte)'\n') line++;
            counted = at;
            lines.Add(line);
            if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray) reader.Skip();
        }
        return lines;
    }

    static IEnumerable<RawRow> ReadParquet(string file)
    {
        IList<Dictionary<string, object>> rows;
        string? error = null;
        try
        {
            using var fs = File.OpenRead(file);
            var result = ParquetSerializer.DeserializeUntypedAsync(fs).GetAwaiter().GetResult();
            rows = result.Data;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            rows = [];
            error = $"not a readable parquet file ({Short(e.Message)})";
        }
        if (error != null) { yield return new RawRow(file, 1, default, error); yield break; }
        long n = 0;
        foreach (var r in rows)
        {
            n++;
            yield return new RawRow(file, n, JsonSerializer.SerializeToElement(r), null);
        }
    }

    static int FirstNonSpace(string file)
    {
        using var r = new StreamReader(file, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        int c;
        while ((c = r.Read()) >= 0) if (!char.IsWhiteSpace((char)c)) return c;
        return -1;
    }

    static string Short(string s) => s.Length <= 160 ? s : s[..160] + "…";
}
