// Writes a small byte-level BPE tokenizer.json in the Qwen2 layout (256 byte tokens, optional merges, then the
// Qwen special tokens), plus tokenizer_config.json. For tiny demo and test models whose vocabulary is ~300 ids.
using System.Text.Json;
using System.Text.Json.Nodes;

namespace LmmR1.Text;

public static class ByteLevelTokenizerWriter
{
    /// <summary>Qwen2-VL's special tokens, in their Qwen order (ids follow the vocabulary).</summary>
    public static readonly string[] QwenSpecialTokens =
    [
        "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
        "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
        "<|image_pad|>", "<|video_pad|>",
    ];

    /// <summary>
    /// Writes dir/tokenizer.json and dir/tokenizer_config.json. Ids: 0–255 the bytes (in byte order), then one id per
    /// merge (its concatenation), then <paramref name="specialTokens"/> (default: Qwen's), then <paramref name="extraTokens"/>
    /// (added, not special, e.g. &lt;think&gt;). Merges are pairs of byte-level token strings (use <see cref="ByteLevel.Encode"/>).
    /// </summary>
    public static void Write(string dir, IEnumerable<(string Left, string Right)>? merges = null,
                             IEnumerable<string>? specialTokens = null, IEnumerable<string>? extraTokens = null)
    {
        Directory.CreateDirectory(dir);
        var vocab = new JsonObject();
        var ids = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) { string t = ByteLevel.Char((byte)b).ToString(); vocab[t] = b; ids[t] = b; }
        var mergeArr = new JsonArray();
        foreach (var (l, r) in merges ?? [])
        {
            if (!ids.ContainsKey(l) || !ids.ContainsKey(r)) throw new ArgumentException($"merge ({l}, {r}) uses a token that is not yet in the vocabulary");
            string m = l + r;
            if (!ids.ContainsKey(m)) { ids[m] = ids.Count; vocab[m] = ids[m]; }
            mergeArr.Add(new JsonArray(l, r));
        }
        var added = new JsonArray();
        int next = ids.Count;
        void Add(string content, bool special) => added.Add(new JsonObject
        {
            ["id"] = next++, ["content"] = content, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = special,
        });
        var specials = (specialTokens ?? QwenSpecialTokens).ToList();
        foreach (var s in specials) Add(s, true);
        foreach (var s in extraTokens ?? []) Add(s, false);

        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false };
        var root = new JsonObject
        {
            ["version"] = "1.0", ["truncation"] = null, ["padding"] = null, ["added_tokens"] = added,
            ["normalizer"] = new JsonObject { ["type"] = "NFC" },
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = Qwen2PreTokenizer.Pattern },
                        ["behavior"] = "Isolated", ["invert"] = false,
                    },
                    byteLevel.DeepClone()),
            },
            ["post_processor"] = byteLevel.DeepClone(),
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = "",
                ["end_of_word_suffix"] = "", ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = mergeArr,
            },
        };
        var opts = new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), root.ToJsonString(opts));
        var config = new JsonObject
        {
            ["tokenizer_class"] = "Qwen2Tokenizer", ["add_bos_token"] = false, ["add_prefix_space"] = false,
            ["eos_token"] = specials.Contains("<|im_end|>") ? "<|im_end|>" : specials.FirstOrDefault(),
            ["pad_token"] = specials.Contains("<|endoftext|>") ? "<|endoftext|>" : specials.FirstOrDefault(),
            ["errors"] = "replace", ["split_special_tokens"] = false,
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), config.ToJsonString(opts));
    }
}
