// config.json checked against the safetensors headers before a model is allocated: a layer count (distinct
// model.layers.{i} / visual.blocks.{j}) or a shape-defining size (vocab, hidden, intermediate, heads, vision width)
// larger than the stored tensors show, or a parameter count far above what the files hold, fails with `error:`
// naming config.json and the field, instead of allocating gigabytes or dying in a native allocation (num_hidden_layers
// 1e9, vocab_size 1e9). A config smaller than the weights allocates less than the files hold; the strict
// StateDictLoader then names the mismatching or unexpected tensor. Reads headers only (no tensor data).
using System.Globalization;
using System.Text.RegularExpressions;
using LmmR1.Infrastructure;
using LmmR1.Models.Safetensors;

namespace LmmR1.Models.Qwen;

public static partial class ConfigWeightsCheck
{
    /// <summary>Throws an InputException naming <paramref name="configPath"/> and the field that disagrees with the
    /// weights in <paramref name="ckpt"/>.</summary>
    public static void Check(QwenVLConfig cfg, SafetensorsCheckpoint ckpt, string configPath)
    {
        bool newLayout = ckpt.Names.Any(n => n.StartsWith("model.language_model.", StringComparison.Ordinal));
        string Key(string classic) => newLayout ? QwenVLModel.ToNewLayout(classic) : classic;
        long[]? Shape(string classic) => ckpt.Contains(Key(classic)) ? ckpt.Entry(Key(classic)).Shape : null;
        InputException Bad(string field, long configValue, string evidence) =>
            InputException.At(configPath, null, field, $"{configValue.ToString(CultureInfo.InvariantCulture)} disagrees with the weights in {ckpt.Source}: {evidence}");

        var t = cfg.Text;
        int layers = CountIndexed(ckpt.Names, newLayout ? TextLayerNew() : TextLayer());
        if (t.NumLayers > layers)
            throw Bad("num_hidden_layers", t.NumLayers, $"they hold {layers} decoder layer(s) (model.layers.N)");
        if (Shape("model.embed_tokens.weight") is [long vocab, long hidden])
        {
            if (t.VocabSize > vocab) throw Bad("vocab_size", t.VocabSize, $"model.embed_tokens.weight is [{vocab}, {hidden}]");
            if (t.HiddenSize > hidden) throw Bad("hidden_size", t.HiddenSize, $"model.embed_tokens.weight is [{vocab}, {hidden}]");
        }
        if (layers > 0)
        {
            if (Shape("model.layers.0.mlp.gate_proj.weight") is [long inter, _] && t.IntermediateSize > inter)
                throw Bad("intermediate_size", t.IntermediateSize, $"model.layers.0.mlp.gate_proj.weight has {inter} rows");
            if (Shape("model.layers.0.self_attn.q_proj.weight") is [long q, _] && (long)t.NumHeads * t.HeadDim > q)
                throw Bad("num_attention_heads", t.NumHeads, $"model.layers.0.self_attn.q_proj.weight has {q} rows, not num_attention_heads × head_dim = {(long)t.NumHeads * t.HeadDim}");
            if (Shape("model.layers.0.self_attn.k_proj.weight") is [long k, _] && (long)t.NumKvHeads * t.HeadDim > k)
                throw Bad("num_key_value_heads", t.NumKvHeads, $"model.layers.0.self_attn.k_proj.weight has {k} rows, not num_key_value_heads × head_dim = {(long)t.NumKvHeads * t.HeadDim}");
        }
        if (cfg.Vision is { } v)
        {
            int blocks = CountIndexed(ckpt.Names, newLayout ? VisionBlockNew() : VisionBlock());
            if (v.Depth > blocks) throw Bad("vision_config.depth", v.Depth, $"they hold {blocks} vision block(s) (visual.blocks.N)");
            string widthField = cfg.Family == QwenFamily.Qwen2VL ? "vision_config.embed_dim" : "vision_config.hidden_size";
            if (Shape("visual.patch_embed.proj.weight") is { Length: > 0 } pe && v.Width > pe[0])
                throw Bad(widthField, v.Width, $"visual.patch_embed.proj.weight is [{string.Join(", ", pe)}]");
        }

        // Whatever the named checks miss: the config must not describe far more parameters than the files store
        // (a little more, e.g. an lm_head missing from an untied checkpoint, is left to the loader's precise message).
        double stored = 0;
        foreach (var n in ckpt.Names) stored += ckpt.Entry(n).NumElements;
        double needed = ParameterCount(cfg);
        if (needed - stored > Math.Max(stored, 1e8))
            throw InputException.At(configPath, null, null,
                $"describes a model of {needed:G4} parameters but the weights in {ckpt.Source} hold {stored:G4} values: config.json and the weights disagree");
    }

    /// <summary>Parameters implied by the config, in double (no overflow for absurd values).</summary>
    public static double ParameterCount(QwenVLConfig c)
    {
        var t = c.Text;
        double h = t.HiddenSize, q = (double)t.NumHeads * t.HeadDim, kv = (double)t.NumKvHeads * t.HeadDim;
        double layer = h * q + q + 2 * (h * kv + kv) + q * h + 3 * h * t.IntermediateSize + 2 * h;
        double total = (double)t.VocabSize * h * (t.TieWordEmbeddings ? 1 : 2) + t.NumLayers * layer + h;
        if (c.Vision is { } v)
        {
            double w = v.Width, i = v.IntermediateSize;
            total += (double)v.PatchDim * w + v.Depth * (w * 3 * w + w * w + 2 * w * i);
        }
        return total;
    }

    static int CountIndexed(IEnumerable<string> names, Regex pattern)
    {
        var seen = new HashSet<long>();
        foreach (var n in names)
            if (pattern.Match(n) is { Success: true } m && long.TryParse(m.Groups[1].Value, CultureInfo.InvariantCulture, out long i)) seen.Add(i);
        return seen.Count;
    }

    [GeneratedRegex(@"^model\.layers\.(\d+)\.")] private static partial Regex TextLayer();
    [GeneratedRegex(@"^model\.language_model\.layers\.(\d+)\.")] private static partial Regex TextLayerNew();
    [GeneratedRegex(@"^visual\.blocks\.(\d+)\.")] private static partial Regex VisionBlock();
    [GeneratedRegex(@"^model\.visual\.blocks\.(\d+)\.")] private static partial Regex VisionBlockNew();
}
