// Reads the rows of a prompt data file as JSON objects with their line numbers: .jsonl (one object per line,
// blank lines skipped), .json (a list of objects, or JSON lines as Hugging Face's json loader also accepts), and
// .parquet (Parquet.Net, nested columns become JSON). A folder means its data files, recursively, in path order;
// other files in it (images, READMEs) are ignored; symbolic links are followed but every real folder is walked and
// every real file read once (a link loop does not repeat rows). Unreadable rows come back as errors, never dropped:
// a line whose bytes are not UTF-8 is one (naming the byte offset), not silently decoded to U+FFFD.
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
            var files = ListFolder(spec);
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

    /// <summary>The data files under <paramref name="root"/> in path order. Folders are walked once per real path
    /// (a symlink loop ends there), and a file reachable under several paths is listed once (the first path).</summary>
    static List<string> ListFolder(string root)
    {
        var seenDirs = new HashSet<string>(StringComparer.Ordinal);
        var found = new List<(string Path, string Real)>();
        void Walk(string dir)
        {
            if (RealPath(dir) is not { } realDir || !seenDirs.Add(realDir)) return;
            IEnumerable<string> Sorted(IEnumerable<string> xs) => xs.OrderBy(x => x, StringComparer.Ordinal);
            try
            {
                foreach (var f in Sorted(Directory.EnumerateFiles(dir)))
                {
                    if (!Extensions.Contains(Path.GetExtension(f).ToLowerInvariant())) continue;
                    string real = RealPath(f) ?? throw InputException.At(f, null, null, "symbolic link does not resolve to a file (a loop or a missing target)");
                    found.Add((Path.GetFullPath(f), real));
                }
                foreach (var d in Sorted(Directory.EnumerateDirectories(dir))) Walk(d);
            }
            catch (Exception e) when (IoErrors.IsIo(e)) { throw InputException.At(dir, null, null, $"cannot list the folder: {IoErrors.Reason(e)}"); }
        }
        Walk(root);
        var seenFiles = new HashSet<string>(StringComparer.Ordinal);
        return found.OrderBy(f => f.Path, StringComparer.Ordinal).Where(f => seenFiles.Add(f.Real)).Select(f => f.Path).ToList();
    }

    /// <summary>The canonical path with every symbolic link resolved (realpath(3)); null when it does not resolve.</summary>
    internal static string? RealPath(string path)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return Path.GetFullPath(path);
        IntPtr p = realpath(Path.GetFullPath(path), IntPtr.Zero);
        if (p == IntPtr.Zero) return null;
        try { return System.Runtime.InteropServices.Marshal.PtrToStringUTF8(p); }
        finally { free(p); }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] static extern IntPtr realpath(string path, IntPtr resolved);
    [System.Runtime.InteropServices.DllImport("libc")] static extern void free(IntPtr p);

    public static IEnumerable<RawRow> ReadRows(string file) => Path.GetExtension(file).ToLowerInvariant() switch
    {
        ".parquet" => ReadParquet(file),
        ".json" when FirstNonSpace(file) == '[' => ReadJsonArray(file),
        _ => ReadJsonLines(file),
    };

    static IEnumerable<RawRow> ReadJsonLines(string file)
    {
        long line = 0;
        foreach (var (bytes, offset) in Lines(file))
        {
            line++;
            var span = bytes.AsSpan();
            if (line == 1 && span.StartsWith(Utf8Bom)) { span = span[3..]; }
            if (StrictUtf8.FirstInvalidByte(span) is var bad and >= 0)
            {
                long at = offset + (bytes.Length - span.Length) + bad;
                yield return new RawRow(file, line, default, $"not valid UTF-8: byte 0x{span[bad]:X2} at byte offset {at} of the file (column {bad + 1} of the line)");
                continue;
            }
            string text = Encoding.UTF8.GetString(span);
            if (string.IsNullOrWhiteSpace(text)) continue;
            var (doc, error) = TryParse(text);
            if (doc == null) { yield return new RawRow(file, line, default, error); continue; }
            using (doc) yield return new RawRow(file, line, doc.RootElement, null);
        }
    }

    static readonly byte[] Utf8Bom = [0xEF, 0xBB, 0xBF];

    /// <summary>The lines of a file as raw bytes (without "\n" / "\r\n") with the file offset of each line's first byte.</summary>
    static IEnumerable<(byte[] Bytes, long Offset)> Lines(string file)
    {
        FileStream fs;
        try { fs = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16); }
        catch (Exception e) when (IoErrors.IsIo(e)) { throw InputException.At(file, null, null, $"cannot read the data file: {IoErrors.Reason(e)}"); }
        using (fs)
        {
            var buffer = new byte[1 << 16];
            var pending = new List<byte>();
            long lineStart = 0, pos = 0;
            int n;
            while ((n = fs.Read(buffer, 0, buffer.Length)) > 0)
            {
                int from = 0;
                while (from < n)
                {
                    int nl = Array.IndexOf(buffer, (byte)'\n', from, n - from);
                    if (nl < 0) { pending.AddRange(buffer.AsSpan(from, n - from)); break; }
                    pending.AddRange(buffer.AsSpan(from, nl - from));
                    yield return (TrimCr(pending), lineStart);
                    pending.Clear();
                    lineStart = pos + nl + 1;
                    from = nl + 1;
                }
                pos += n;
            }
            if (pending.Count > 0) yield return (TrimCr(pending), lineStart);
        }
    }

    static byte[] TrimCr(List<byte> line) =>
        line.Count > 0 && line[^1] == (byte)'\r' ? line.GetRange(0, line.Count - 1).ToArray() : line.ToArray();

    static (JsonDocument?, string?) TryParse(string text)
    {
        try { return (JsonDocument.Parse(text), null); }
        catch (JsonException e) { return (null, $"invalid JSON ({Short(e.Message)})"); }
    }

    static IEnumerable<RawRow> ReadJsonArray(string file)
    {
        byte[] bytes = IoErrors.ReadAllBytes(file, "the data file");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 256 }); }
        catch (JsonException e)
        {
            // A broken JSON list loses everything after the error; report it at its line.
            doc = null!;
            return [new RawRow(file, (e.LineNumber ?? 0) + 1, default, $"invalid JSON ({Short(e.Message)}); no rows after this point could be read")];
        }
        return Elements(file, doc, bytes, ElementLines(bytes));
    }

    static IEnumerable<RawRow> Elements(string file, JsonDocument doc, byte[] bytes, List<(long Line, long Start, long End)> lines)
    {
        using (doc)
        {
            int i = 0;
            foreach (var e in doc.RootElement.EnumerateArray())
            {
                var (line, start, end) = lines[i++];
                // JsonDocument does not check the UTF-8 inside strings: a row holding invalid bytes is a bad row.
                var span = bytes.AsSpan((int)start, (int)(end - start));
                if (StrictUtf8.FirstInvalidByte(span) is var bad and >= 0)
                    yield return new RawRow(file, line, default, $"not valid UTF-8: byte 0x{span[bad]:X2} at byte offset {start + bad} of the file");
                else
                    yield return new RawRow(file, line, e, null);
            }
        }
    }

    /// <summary>1-based line and byte range of each top-level element of a JSON list.</summary>
    static List<(long Line, long Start, long End)> ElementLines(byte[] bytes)
    {
        var lines = new List<(long, long, long)>();
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { MaxDepth = 256 });
        long line = 1, counted = 0;
        while (reader.Read())
        {
            if (reader.CurrentDepth != 1 || reader.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray) continue;
            long at = reader.TokenStartIndex;
            for (long k = counted; k < at; k++) if (bytes[k] == (byte)'\n') line++;
            counted = at;
            if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray) reader.Skip();
            lines.Add((line, at, reader.BytesConsumed));
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
