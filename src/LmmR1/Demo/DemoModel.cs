// The demo's model: a tiny Qwen2.5-VL (window-attention vision tower with RMSNorm blocks and a gated SiLU MLP,
// patch merger, M-RoPE decoder) from the config.json embedded in this assembly, with random weights from the
// seed, and a byte-level BPE tokenizer: 256 bytes, merges that make each word of the chat template and the demo's
// prompts one token (prompts are ~40% shorter than bytes, and so is every forward), Qwen's special tokens, and the
// <think>/<answer> tags and "\boxed{" as added tokens. Written as an ordinary Hugging Face model folder.
using LmmR1.Models.Qwen;
using LmmR1.Text;
using TorchSharp;

namespace LmmR1.Demo;

public static class DemoModel
{
    public static readonly string[] ExtraTokens = ["<think>", "</think>", "<answer>", "</answer>", "\\boxed{"];

    // Words merged into single tokens: those that start a pre-token (after a special token or punctuation) and those
    // that follow a space (the Qwen2 pre-tokenizer keeps the space: "Ġword" in byte-level form). Digits stay single
    // bytes, as in Qwen's tokenizer.
    static readonly string[] Words = ["system", "user", "assistant", "Think", "What", "Add", "How", "Count", "Are", "Which", "red", "blue"];
    static readonly string[] SpacedWords =
        ["then", "answer", "with", "is", "plus", "and", "many", "shapes", "are", "there", "the", "more", "red", "or", "blue", "colour", "common"];

    /// <summary>Left-to-right merge chains (w0+w1, w0w1+w2, …) for every word, shared prefixes once; the spaced words
    /// first, so that their merges outrank those of words inside them (" there" stays one token despite "re" of "red").</summary>
    public static IReadOnlyList<(string Left, string Right)> Merges()
    {
        var merges = new List<(string, string)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var word in SpacedWords.Select(w => " " + w).Concat(Words))
        {
            string token = ByteLevel.Encode(System.Text.Encoding.UTF8.GetBytes(word));
            for (int i = 2; i <= token.Length; i++)
                if (seen.Add(token[..i])) merges.Add((token[..(i - 1)], token[(i - 1)..i]));
        }
        return merges;
    }

    /// <summary>The embedded config.json text.</summary>
    public static string ConfigJson
    {
        get
        {
            var asm = typeof(DemoModel).Assembly;
            string name = asm.GetManifestResourceNames().Single(n => n.EndsWith("DemoModel.config.json", StringComparison.Ordinal));
            using var s = asm.GetManifestResourceStream(name)!;
            using var r = new StreamReader(s);
            return r.ReadToEnd();
        }
    }

    public static QwenVLConfig Config => QwenVLConfig.Parse(ConfigJson, "DemoModel.config.json");

    /// <summary>Writes the tokenizer and a randomly initialised model (weights from <paramref name="seed"/>) into
    /// <paramref name="dir"/>; returns the model's config. <paramref name="config"/> overrides the embedded one.</summary>
    public static QwenVLConfig Write(string dir, long seed, QwenVLConfig? config = null)
    {
        ByteLevelTokenizerWriter.Write(dir, merges: Merges(), extraTokens: ExtraTokens);
        var tok = QwenTokenizer.Load(dir);
        var cfg = config ?? Config;
        Check(cfg, tok);
        using var model = QwenVLModel.Create(cfg, torch.ScalarType.Float32, torch.CPU, seed);
        model.SaveHf(dir);
        return cfg;
    }

    /// <summary>The embedded config must agree with the tokenizer (the ids are written into config.json by hand).</summary>
    static void Check(QwenVLConfig c, QwenTokenizer tok)
    {
        void Same(string what, long configId, string token)
        {
            if (configId != tok.TokenToId(token))
                throw new InvalidOperationException($"demo config: {what} is {configId} but the tokenizer's {token} is {tok.TokenToId(token)}");
        }
        if (c.Text.VocabSize != tok.VocabSize)
            throw new InvalidOperationException($"demo config: vocab_size {c.Text.VocabSize} but the tokenizer has {tok.VocabSize} ids");
        Same("image_token_id", c.Tokens.ImageTokenId, "<|image_pad|>");
        Same("video_token_id", c.Tokens.VideoTokenId, "<|video_pad|>");
        Same("vision_start_token_id", c.Tokens.VisionStartTokenId, "<|vision_start|>");
        Same("vision_end_token_id", c.Tokens.VisionEndTokenId, "<|vision_end|>");
        Same("eos_token_id", c.Tokens.EosTokenIds[0], "<|im_end|>");
    }
}
