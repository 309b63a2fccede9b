// `lmmr1 info`: what a model folder holds, read from config.json, the safetensors headers (no weights are loaded) and,
// when present, tokenizer.json's added_tokens for the special-token names.
using System.CommandLine;
using System.Text.Json.Nodes;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;

namespace LmmR1.Cli.Commands;

public static class InfoCommand
{
    public static Command Create()
    {
        var model = ModelCommands.ModelOption();
        var cmd = new Command("info", "Describe a model folder: architecture, parameter counts by part, dtype, special tokens, context length")
        {
            model,
        };
        cmd.SetAction(pr =>
        {
            Console.Write(Describe(pr.GetValue(model)!));
            return 0;
        });
        return cmd;
    }

    public static string Describe(string dir)
    {
        var cfg = QwenVLConfig.Load(dir);
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        var t = cfg.Text;
        var sb = new System.Text.StringBuilder();
        void Line(string key, string value) => sb.Append($"{key,-16}{value}\n");
        Line("model", Path.GetFullPath(dir));
        Line("architecture", $"{cfg.Architecture} (model_type {cfg.ModelType})");
        Line("language model", $"{t.NumLayers} layers, hidden {t.HiddenSize}, intermediate {t.IntermediateSize}, heads {t.NumHeads} " +
                               $"(kv {t.NumKvHeads}, head_dim {t.HeadDim}), vocab {t.VocabSize}, rms eps {t.RmsNormEps:G3}, rope θ {t.RopeTheta:G}" +
                               (cfg.Family == QwenFamily.Qwen2 ? " (1D)" : $", mrope_section [{string.Join(",", t.MropeSection)}]"));
        if (cfg.Vision is { } v)
            Line("vision", $"{v.Depth} blocks, width {v.Width}, heads {v.NumHeads}, mlp {v.IntermediateSize} ({v.HiddenAct}), patch {v.PatchSize}×{v.PatchSize}×{v.TemporalPatchSize}, " +
                           $"merge {v.SpatialMergeSize}×{v.SpatialMergeSize} → {v.OutHiddenSize}" +
                           (cfg.Family == QwenFamily.Qwen25VL ? $", window {v.WindowSize} px, full attention in blocks [{string.Join(",", v.FullAttBlockIndexes)}]" : ""));
        var counts = ParameterCounts.FromNames(ckpt.Names.Select(n => (n, ckpt.Entry(n).NumElements)), t.TieWordEmbeddings);
        Line("parameters", $"total {Format(counts.Total)}: vision {Format(counts.Vision)}, merger {Format(counts.Merger)}, " +
                           $"language model {Format(counts.LanguageModel)}, lm_head " + (counts.Tied ? "tied to embed_tokens" : Format(counts.LmHead)));
        var stored = ckpt.Names.Select(n => ckpt.Entry(n).DType.ToString()).Distinct().Order();
        Line("dtype", $"{cfg.StoredDType ?? "(not in config.json)"} in config.json; stored as {string.Join(", ", stored)} " +
                      $"in {ckpt.Files.Count} file(s)");
        Line("context length", $"{t.MaxPositionEmbeddings} (max_position_embeddings)");
        var names = TokenNames(dir);
        string Tok(long id) => names.TryGetValue(id, out var s) ? $"{id} {s}" : id.ToString();
        var tok = cfg.Tokens;
        var special = new List<string>();
        if (cfg.Family != QwenFamily.Qwen2)
            special.AddRange([$"image {Tok(tok.ImageTokenId)}", $"video {Tok(tok.VideoTokenId)}",
                              $"vision_start {Tok(tok.VisionStartTokenId)}", $"vision_end {Tok(tok.VisionEndTokenId)}"]);
        special.Add("eos " + (tok.EosTokenIds.Length == 0 ? "(none)" : string.Join(" / ", tok.EosTokenIds.Select(Tok))));
        if (tok.BosTokenId is { } bos) special.Add($"bos {Tok(bos)}");
        if (tok.PadTokenId is { } pad) special.Add($"pad {Tok(pad)}");
        Line("special tokens", string.Join(", ", special) + (names.Count == 0 ? " (no tokenizer.json: ids only)" : ""));
        return sb.ToString();
    }

    static string Format(long n) => n >= 1_000_000_000 ? $"{n / 1e9:F3}B ({n:N0})" : n >= 1_000_000 ? $"{n / 1e6:F1}M ({n:N0})" : n.ToString("N0");

    /// <summary>id → content of tokenizer.json's added_tokens (empty when there is no tokenizer.json).</summary>
    static Dictionary<long, string> TokenNames(string dir)
    {
        var result = new Dictionary<long, string>();
        string path = Path.Combine(dir, "tokenizer.json");
        if (!File.Exists(path)) return result;
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException e) { throw new Infrastructure.InputException($"{path}: not valid JSON ({e.Message})"); }
        if (root?["added_tokens"] is JsonArray added)
            foreach (var a in added)
                if (a?["id"] is JsonValue id && id.TryGetValue<long>(out long i) && a["content"] is JsonValue c && c.TryGetValue<string>(out var s))
                    result[i] = s;
        return result;
    }
}
