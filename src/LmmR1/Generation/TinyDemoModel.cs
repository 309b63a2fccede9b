// A tiny random Qwen2-VL / Qwen2.5-VL model folder whose vocabulary is exactly a tiny byte-level tokenizer (256 bytes,
// Qwen's special tokens, <think>/<answer> tags): config.json, generation_config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json. For demos and CLI tests of generate/eval without downloads; its outputs are random bytes.
using LmmR1.Models.Qwen;
using LmmR1.Text;
using TorchSharp;

namespace LmmR1.Generation;

public static class TinyDemoModel
{
    public static readonly string[] ExtraTokens = ["<think>", "</think>", "<answer>", "</answer>"];

    /// <summary>Writes the folder and returns its config.</summary>
    public static QwenVLConfig Write(string dir, QwenFamily family = QwenFamily.Qwen2VL, long seed = 0)
    {
        if (family == QwenFamily.Qwen2) throw new ArgumentException("the tiny demo model is a vision-language model");
        ByteLevelTokenizerWriter.Write(dir, extraTokens: ExtraTokens);
        var tok = QwenTokenizer.Load(dir);
        int Id(string t) => tok.TokenToId(t);
        var cfg = new QwenVLConfig
        {
            Family = family,
            Text = new QwenTextConfig
            {
                VocabSize = tok.VocabSize, HiddenSize = 64, IntermediateSize = 128, NumLayers = 2, NumHeads = 4, NumKvHeads = 2,
                MropeSection = [2, 3, 3], MaxPositionEmbeddings = 32768, TieWordEmbeddings = family == QwenFamily.Qwen25VL,
            },
            Vision = family == QwenFamily.Qwen2VL
                ? new QwenVisionConfig { Depth = 2, Width = 32, NumHeads = 4, IntermediateSize = 64, OutHiddenSize = 64, HiddenAct = "quick_gelu" }
                : new QwenVisionConfig
                {
                    Depth = 2, Width = 32, NumHeads = 4, IntermediateSize = 64, OutHiddenSize = 64, HiddenAct = "silu",
                    WindowSize = 56, FullAttBlockIndexes = [1], TokensPerSecond = 2,
                },
            Tokens = new QwenTokenIds
            {
                ImageTokenId = Id("<|image_pad|>"), VideoTokenId = Id("<|video_pad|>"),
                VisionStartTokenId = Id("<|vision_start|>"), VisionEndTokenId = Id("<|vision_end|>"),
                BosTokenId = Id("<|endoftext|>"), PadTokenId = Id("<|endoftext|>"),
                EosTokenIds = [Id("<|im_end|>"), Id("<|endoftext|>")],
            },
            StoredDType = "float32",
        };
        using var model = QwenVLModel.Create(cfg, torch.ScalarType.Float32, torch.CPU, seed);
        model.SaveHf(dir);
        return cfg;
    }
}
