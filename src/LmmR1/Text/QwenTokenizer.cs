// The Qwen2/2.5/3 tokenizer read from a checkpoint's tokenizer.json (+ tokenizer_config.json): added tokens
// matched in the raw text, NFC on the rest (UnicodeNfc: string.Normalize is a no-op under the CLI's invariant
// globalization), the Split pre-tokenizer (Qwen2PreTokenizer), byte-level BPE from
// Microsoft.ML.Tokenizers, and tokenizers' ByteLevel decoder. Encode is add_special_tokens=False (Qwen adds none).
// Other byte-level BPE tokenizer.json files load too (GPT-2 style ByteLevel pre-tokenizer, or no normalizer).
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using LmmR1.Infrastructure;
using Microsoft.ML.Tokenizers;

namespace LmmR1.Text;

public sealed class QwenTokenizer
{
    readonly BpeTokenizer bpe;
    readonly string[] idToToken;                    // vocabulary and added tokens, by id (null where unused)
    readonly Dictionary<string, int> tokenToId;
    readonly Dictionary<int, AddedToken> addedById;
    readonly AddedTokenMatcher rawMatcher;          // added tokens with normalized=false (all of Qwen's)
    readonly AddedTokenMatcher normalizedMatcher;   // added tokens with normalized=true, matched after NFC
    readonly bool nfc;

    /// <summary>The folder or tokenizer.json file this was loaded from.</summary>
    public string Source { get; }
    /// <summary>Largest token id + 1 (the model's embedding table may be larger).</summary>
    public int VocabSize => idToToken.Length;
    public IReadOnlyList<AddedToken> AddedTokens { get; }
    /// <summary>tokenizer_config.json's eos_token (Qwen2-VL-Instruct: &lt;|im_end|&gt;).</summary>
    public int EosTokenId { get; }
    /// <summary>EosTokenId plus generation_config.json's eos_token_id entries when that file sits beside tokenizer.json.</summary>
    public IReadOnlyList<int> EosTokenIds { get; }
    /// <summary>tokenizer_config.json's pad_token, or the EOS token when it has none (as OpenRLHF's get_tokenizer does).</summary>
    public int PadTokenId { get; }

    QwenTokenizer(string source, BpeTokenizer bpe, string[] idToToken, Dictionary<string, int> tokenToId,
                  List<AddedToken> added, bool nfc, int eos, IReadOnlyList<int> eosIds, int pad)
    {
        Source = source;
        this.bpe = bpe;
        this.idToToken = idToToken;
        this.tokenToId = tokenToId;
        this.nfc = nfc;
        AddedTokens = added;
        addedById = added.ToDictionary(t => t.Id);
        rawMatcher = new AddedTokenMatcher(added.Where(t => !t.Normalized));
        normalizedMatcher = new AddedTokenMatcher(added.Where(t => t.Normalized));
        EosTokenId = eos;
        EosTokenIds = eosIds;
        PadTokenId = pad;
    }

    /// <summary>Loads from a folder holding tokenizer.json (and optionally tokenizer_config.json, generation_config.json) or from the file itself.</summary>
    public static QwenTokenizer Load(string path)
    {
        string dir = Directory.Exists(path) ? path : Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".";
        string file = Directory.Exists(path) ? Path.Combine(path, "tokenizer.json") : path;
        if (!File.Exists(file)) throw InputException.At(file, null, null, "tokenizer.json not found");

        using var doc = ParseJson(file);
        var root = doc.RootElement;

        bool nfc = ReadNormalizer(file, root);
        var preTokenizer = ReadPreTokenizer(file, root);
        CheckDecoder(file, root);

        var model = Prop(root, "model") ?? throw InputException.At(file, null, "model", "missing");
        string type = Prop(model, "type")?.GetString() ?? "BPE";
        if (type != "BPE") throw InputException.At(file, null, "model.type", $"'{type}' is not supported: expected BPE");
        if (Prop(model, "byte_fallback")?.ValueKind == JsonValueKind.True)
            throw InputException.At(file, null, "model.byte_fallback", "byte_fallback BPE is not supported (expected byte-level BPE)");
        foreach (var f in new[] { "continuing_subword_prefix", "end_of_word_suffix" })
            if (Prop(model, f)?.GetString() is { Length: > 0 })
                throw InputException.At(file, null, $"model.{f}", "must be empty for byte-level BPE");

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var vocabEl = Prop(model, "vocab") ?? throw InputException.At(file, null, "model.vocab", "missing");
        foreach (var kv in vocabEl.EnumerateObject()) vocab[kv.Name] = kv.Value.GetInt32();
        var merges = ReadMerges(file, model);

        var added = new List<AddedToken>();
        if (Prop(root, "added_tokens") is { ValueKind: JsonValueKind.Array } addedEl)
            foreach (var a in addedEl.EnumerateArray())
            {
                foreach (var f in new[] { "lstrip", "rstrip", "single_word" })
                    if (Prop(a, f)?.ValueKind == JsonValueKind.True)
                        throw InputException.At(file, null, $"added_tokens.{f}", $"'{Prop(a, "content")?.GetString()}': {f}=true is not supported");
                added.Add(new AddedToken(Prop(a, "id")!.Value.GetInt32(), Prop(a, "content")!.Value.GetString()!,
                    Prop(a, "special")?.ValueKind == JsonValueKind.True, Prop(a, "normalized")?.ValueKind == JsonValueKind.True));
            }

        int size = Math.Max(vocab.Count == 0 ? 0 : vocab.Values.Max() + 1, added.Count == 0 ? 0 : added.Max(t => t.Id) + 1);
        var idToToken = new string[size];
        foreach (var (tok, id) in vocab) idToToken[id] = tok;
        var tokenToId = new Dictionary<string, int>(vocab, StringComparer.Ordinal);
        foreach (var t in added) { idToToken[t.Id] = t.Content; tokenToId[t.Content] = t.Id; }

        var bpe = BpeTokenizer.Create(new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = preTokenizer,
        });

        var (eos, pad) = ReadConfig(Path.Combine(dir, "tokenizer_config.json"), tokenToId);
        var eosIds = new List<int> { eos };
        foreach (int id in ReadGenerationEos(Path.Combine(dir, "generation_config.json")))
            if (!eosIds.Contains(id)) eosIds.Add(id);
        return new QwenTokenizer(path, bpe, idToToken, tokenToId, added, nfc, eos, eosIds, pad);
    }

    /// <summary>Token ids of text; added tokens written in the text are matched as single tokens.</summary>
    public int[] Encode(string text)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        foreach (var (start, length, token) in rawMatcher.Split(text))
        {
            if (token != null) { ids.Add(token.Id); continue; }
            string segment = text.Substring(start, length);
            if (nfc) segment = UnicodeNfc.Normalize(segment);
            if (normalizedMatcher.IsEmpty) { EncodeOrdinary(segment, ids); continue; }
            foreach (var (s2, l2, t2) in normalizedMatcher.Split(segment))
                if (t2 != null) ids.Add(t2.Id);
                else EncodeOrdinary(segment.Substring(s2, l2), ids);
        }
        return ids.ToArray();
    }

    void EncodeOrdinary(string segment, List<int> ids) =>
        ids.AddRange(bpe.EncodeToIds(segment, considerPreTokenization: true, considerNormalization: false));

    /// <summary>Encodes texts on all cores; results are in input order.</summary>
    public int[][] EncodeBatch(IReadOnlyList<string> texts, int? maxDegreeOfParallelism = null)
    {
        var result = new int[texts.Count][];
        var opts = new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism ?? Environment.ProcessorCount };
        Parallel.For(0, texts.Count, opts, i => result[i] = Encode(texts[i]));
        return result;
    }

    /// <summary>
    /// Text of ids as tokenizers' decode: byte-level tokens joined, then UTF-8 with U+FFFD for invalid bytes.
    /// Ids that are neither vocabulary nor added tokens are skipped, as tokenizers does.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)idToToken.Length || idToToken[id] is not { } tok) continue;
            if (skipSpecialTokens && addedById.TryGetValue(id, out var a) && a.Special) continue;
            ByteLevel.AppendBytes(tok, bytes);
        }
        return Encoding.UTF8.GetString(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(bytes));
    }

    /// <summary>Id of a token string (an added token such as "&lt;|image_pad|&gt;" or a byte-level vocabulary entry).</summary>
    public int TokenToId(string token) =>
        tokenToId.TryGetValue(token, out int id) ? id : throw new KeyNotFoundException($"token '{token}' is not in the tokenizer ({Source})");

    public bool TryTokenToId(string token, out int id) => tokenToId.TryGetValue(token, out id);

    public string? IdToToken(int id) => (uint)id < (uint)idToToken.Length ? idToToken[id] : null;

    public bool IsSpecial(int id) => addedById.TryGetValue(id, out var a) && a.Special;

    // ---------------- loading helpers ----------------

    static JsonDocument ParseJson(string file)
    {
        try
        {
            using var fs = File.OpenRead(file);
            return JsonDocument.Parse(fs, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw InputException.At(file, e.LineNumber + 1, null, $"invalid JSON: {e.Message}");
        }
    }

    static JsonElement? Prop(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    static bool ReadNormalizer(string file, JsonElement root)
    {
        if (Prop(root, "normalizer") is not { } n) return false;
        string? type = Prop(n, "type")?.GetString();
        if (type == "NFC") return true;
        if (type == "Sequence" && Prop(n, "normalizers") is { } seq)
        {
            var types = seq.EnumerateArray().Select(x => Prop(x, "type")?.GetString()).ToList();
            if (types.Count == 0) return false;
            if (types.All(t => t == "NFC")) return true;
        }
        throw InputException.At(file, null, "normalizer", $"'{type}' is not supported: expected NFC or none");
    }

    static PreTokenizer ReadPreTokenizer(string file, JsonElement root)
    {
        var p = Prop(root, "pre_tokenizer") ?? throw InputException.At(file, null, "pre_tokenizer", "missing: expected Split + ByteLevel");
        var list = Prop(p, "type")?.GetString() == "Sequence"
            ? (Prop(p, "pretokenizers") ?? throw InputException.At(file, null, "pre_tokenizer.pretokenizers", "missing")).EnumerateArray().ToList()
            : [p];
        PreTokenizer? split = null;
        bool byteLevel = false;
        foreach (var step in list)
        {
            string? type = Prop(step, "type")?.GetString();
            if (type == "Split" && split == null)
            {
                string? behavior = Prop(step, "behavior")?.GetString();
                if (behavior != "Isolated" || Prop(step, "invert")?.ValueKind == JsonValueKind.True)
                    throw InputException.At(file, null, "pre_tokenizer.Split", $"behavior '{behavior}' (invert) is not supported: expected Isolated");
                string regex = Prop(Prop(step, "pattern") ?? default, "Regex")?.GetString()
                    ?? throw InputException.At(file, null, "pre_tokenizer.Split.pattern", "expected a Regex pattern");
                split = regex == Qwen2PreTokenizer.Pattern ? Qwen2PreTokenizer.Instance : new RegexSplitPreTokenizer(regex);
            }
            else if (type == "ByteLevel" && !byteLevel)
            {
                byteLevel = true;
                if (Prop(step, "add_prefix_space")?.ValueKind == JsonValueKind.True)
                    throw InputException.At(file, null, "pre_tokenizer.ByteLevel.add_prefix_space", "true is not supported");
                if (Prop(step, "use_regex")?.ValueKind != JsonValueKind.False)
                {
                    if (split != null) throw InputException.At(file, null, "pre_tokenizer", "Split followed by a ByteLevel with use_regex is not supported");
                    split = new RegexSplitPreTokenizer(RegexSplitPreTokenizer.Gpt2Pattern);
                }
            }
            else throw InputException.At(file, null, "pre_tokenizer", $"'{type}' is not supported: expected Split (Isolated) and ByteLevel");
        }
        if (!byteLevel) throw InputException.At(file, null, "pre_tokenizer", "no ByteLevel step: only byte-level BPE is supported");
        return split ?? new RegexSplitPreTokenizer(null);
    }

    static void CheckDecoder(string file, JsonElement root)
    {
        string? type = Prop(root, "decoder") is { } d ? Prop(d, "type")?.GetString() : null;
        if (type != "ByteLevel") throw InputException.At(file, null, "decoder", $"'{type}' is not supported: expected ByteLevel");
    }

    static List<string> ReadMerges(string file, JsonElement model)
    {
        var merges = new List<string>();
        if (Prop(model, "merges") is not { } m) return merges;
        foreach (var e in m.EnumerateArray())
        {
            string a, b;
            if (e.ValueKind == JsonValueKind.Array) { a = e[0].GetString()!; b = e[1].GetString()!; }
            else
            {
                var parts = e.GetString()!.Split(' ');
                if (parts.Length != 2) throw InputException.At(file, null, "model.merges", $"'{e.GetString()}' is not 'a b'");
                (a, b) = (parts[0], parts[1]);
            }
            if (a.Contains(' ') || b.Contains(' '))
                throw InputException.At(file, null, "model.merges", $"merge ('{a}', '{b}') contains a space, which byte-level BPE never does");
            merges.Add(a + " " + b);
        }
        return merges;
    }

    static (int Eos, int Pad) ReadConfig(string configFile, Dictionary<string, int> tokenToId)
    {
        string? eos = null, pad = null;
        if (File.Exists(configFile))
        {
            using var doc = ParseJson(configFile);
            eos = TokenName(doc.RootElement, "eos_token");
            pad = TokenName(doc.RootElement, "pad_token");
        }
        // Without a config: Qwen's chat EOS if the vocabulary has it, else its document separator.
        eos ??= tokenToId.ContainsKey("<|im_end|>") ? "<|im_end|>" : "<|endoftext|>";
        pad ??= tokenToId.ContainsKey("<|endoftext|>") && !File.Exists(configFile) ? "<|endoftext|>" : eos;
        int Id(string name, string field) => tokenToId.TryGetValue(name, out int id) ? id
            : throw InputException.At(configFile, null, field, $"'{name}' is not a token of tokenizer.json");
        return (Id(eos, "eos_token"), Id(pad, "pad_token"));
    }

    static string? TokenName(JsonElement root, string field) => Prop(root, field) switch
    {
        { ValueKind: JsonValueKind.String } s => s.GetString(),
        { ValueKind: JsonValueKind.Object } o => Prop(o, "content")?.GetString(),
        _ => null,
    };

    static IEnumerable<int> ReadGenerationEos(string file)
    {
        if (!File.Exists(file)) return [];
        using var doc = ParseJson(file);
        return Prop(doc.RootElement, "eos_token_id") switch
        {
            { ValueKind: JsonValueKind.Number } n => [n.GetInt32()],
            { ValueKind: JsonValueKind.Array } a => a.EnumerateArray().Select(x => x.GetInt32()).ToList(),
            _ => [],
        };
    }
}

/// <summary>A Split (Isolated) pre-tokenizer over .NET Regex, for patterns other than Qwen2's (UTF-16 semantics).</summary>
internal sealed class RegexSplitPreTokenizer : PreTokenizer
{
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
    readonly Regex? regex;

    public RegexSplitPreTokenizer(string? pattern)
    {
        regex = pattern == null ? null : new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
    }

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text);

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text.ToString());

    List<(int, int)> Split(string text)
    {
        var pieces = new List<(int, int)>();
        if (text.Length == 0) return pieces;
        if (regex == null) { pieces.Add((0, text.Length)); return pieces; }
        int pos = 0;
        for (var m = regex.Match(text); m.Success; m = m.NextMatch())
        {
            if (m.Length == 0) continue;
            if (m.Index > pos) pieces.Add((pos, m.Index - pos));
            pieces.Add((m.Index, m.Length));
            pos = m.Index + m.Length;
        }
        if (pos < text.Length) pieces.Add((pos, text.Length - pos));
        return pieces;
    }
}
