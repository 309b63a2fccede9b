// Configurations of released checkpoint shapes (spec §1), for synthetic checkpoints (load-time and memory benchmarks,
// demos) without downloading weights. Qwen2.5-VL-3B is read from its released config.json (same as
// /work/shared/bench/hf_baseline.py); the Qwen2-VL-2B text values are marked [verify] in the spec.
namespace LmmR1.Models.Qwen;

public static class QwenPresets
{
    public static IReadOnlyList<string> Names { get; } = ["qwen2.5-vl-3b", "qwen2-vl-2b"];

    static readonly QwenTokenIds ReleasedTokens = new()
    {
        BosTokenId = 151643, PadTokenId = 151643, EosTokenIds = [151645, 151643],
    };

    public static QwenVLConfig? Get(string name) => name.ToLowerInvariant() switch
    {
        "qwen2.5-vl-3b" => new QwenVLConfig
        {
            Family = QwenFamily.Qwen25VL,
            Text = new QwenTextConfig
            {
                VocabSize = 151936, HiddenSize = 2048, IntermediateSize = 11008, NumLayers = 36, NumHeads = 16, NumKvHeads = 2,
                RmsNormEps = 1e-6, RopeTheta = 1e6, MropeSection = [16, 24, 24], MaxPositionEmbeddings = 128000, TieWordEmbeddings = true,
            },
            Vision = new QwenVisionConfig
            {
                Depth = 32, Width = 1280, NumHeads = 16, IntermediateSize = 3420, OutHiddenSize = 2048, HiddenAct = "silu",
                WindowSize = 112, FullAttBlockIndexes = [7, 15, 23, 31], TokensPerSecond = 2,
            },
            Tokens = ReleasedTokens,
            StoredDType = "bfloat16",
        },
        "qwen2-vl-2b" => new QwenVLConfig
        {
            Family = QwenFamily.Qwen2VL,
            Text = new QwenTextConfig
            {
                VocabSize = 151936, HiddenSize = 1536, IntermediateSize = 8960, NumLayers = 28, NumHeads = 12, NumKvHeads = 2,
                RmsNormEps = 1e-6, RopeTheta = 1e6, MropeSection = [16, 24, 24], MaxPositionEmbeddings = 32768, TieWordEmbeddings = true,
            },
            Vision = new QwenVisionConfig
            {
                Depth = 32, Width = 1280, NumHeads = 16, IntermediateSize = 5120, OutHiddenSize = 1536, HiddenAct = "quick_gelu",
            },
            Tokens = ReleasedTokens,
            StoredDType = "bfloat16",
        },
        _ => null,
    };
}
