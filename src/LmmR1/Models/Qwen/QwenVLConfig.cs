// The model configuration of Qwen2 / Qwen2-VL / Qwen2.5-VL checkpoints as immutable records, read from a Hugging Face
// config.json in either the released flat layout (text fields at the top, rope_scaling.mrope_section) or the
// transformers-5 layout (text_config, rope_parameters), plus generation_config.json for the eos ids. Departs from HF:
// shape-defining fields are required (HF silently falls back to 72B-sized class defaults); unsupported options
// (sliding window, rope scaling other than M-RoPE/default) are rejected instead of ignored.
using System.Text.Json.Nodes;
using LmmR1.Infrastructure;

namespace LmmR1.Models.Qwen;

public enum QwenFamily { Qwen2, Qwen2VL, Qwen25VL }

/// <summary>The language model (Qwen2 / Qwen2.5 decoder). Plain Qwen2 uses M-RoPE with three equal rows.</summary>
public sealed record QwenTextConfig
{
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumLayers { get; init; }
    public required int NumHeads { get; init; }
    public required int NumKvHeads { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 1e6;
    /// <summary>Rotary frequency pairs given to the temporal, height and width rows; sums to HeadDim/2.</summary>
    public required int[] MropeSection { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 32768;
    public bool TieWordEmbeddings { get; init; }

    public int HeadDim => HiddenSize / NumHeads;
    public int KvGroups => NumHeads / NumKvHeads;

    public void Validate(string where)
    {
        Positive(where, "vocab_size", VocabSize, MaxVocab); Positive(where, "hidden_size", HiddenSize, MaxWidth);
        Positive(where, "intermediate_size", IntermediateSize, MaxIntermediate); Positive(where, "num_hidden_layers", NumLayers, MaxLayers);
        Positive(where, "num_attention_heads", NumHeads, MaxHeads); Positive(where, "num_key_value_heads", NumKvHeads, MaxHeads);
        if (HiddenSize % NumHeads != 0 || HeadDim % 2 != 0)
            throw InputException.At(where, null, "hidden_size", $"{HiddenSize} must be a multiple of num_attention_heads ({NumHeads}) with an even head_dim");
        if (NumHeads % NumKvHeads != 0)
            throw InputException.At(where, null, "num_key_value_heads", $"{NumKvHeads} must divide num_attention_heads ({NumHeads})");
        if (!(RmsNormEps > 0)) throw InputException.At(where, null, "rms_norm_eps", $"must be > 0, got {RmsNormEps}");
        if (!(RopeTheta > 0)) throw InputException.At(where, null, "rope_theta", $"must be > 0, got {RopeTheta}");
        if (MropeSection.Length != 3 || MropeSection.Any(s => s < 0) || MropeSection.Sum() != HeadDim / 2)
            throw InputException.At(where, null, "mrope_section",
                $"[{string.Join(",", MropeSection)}] must be three non-negative sizes summing to head_dim/2 = {HeadDim / 2}");
        Positive(where, "max_position_embeddings", MaxPositionEmbeddings);
    }

    // Upper bounds far above every released model (Qwen2-VL-72B: 80 layers, width 8192, vocab 152064), so a corrupt or
    // hostile config.json fails here instead of allocating terabytes.
    internal const int MaxVocab = 1 << 24, MaxWidth = 1 << 17, MaxIntermediate = 1 << 20, MaxLayers = 4096, MaxHeads = 4096;

    internal static void Positive(string where, string field, int v, int max = int.MaxValue)
    {
        if (v <= 0) throw InputException.At(where, null, field, $"must be a positive integer, got {v}");
        if (v > max) throw InputException.At(where, null, field, $"{v} is implausibly large (at most {max} is accepted)");
    }
}

/// <summary>The vision tower. Width = ViT hidden size (Qwen2-VL `embed_dim`, Qwen2.5-VL `hidden_size`);
/// OutHiddenSize = merger output (Qwen2-VL `hidden_size`, Qwen2.5-VL `out_hidden_size`).</summary>
public sealed record QwenVisionConfig
{
    public required int Depth { get; init; }
    public required int Width { get; init; }
    public required int NumHeads { get; init; }
    /// <summary>MLP hidden size (Qwen2-VL: embed_dim × mlp_ratio; Qwen2.5-VL: intermediate_size).</summary>
    public required int IntermediateSize { get; init; }
    public required int OutHiddenSize { get; init; }
    public int PatchSize { get; init; } = 14;
    public int TemporalPatchSize { get; init; } = 2;
    public int SpatialMergeSize { get; init; } = 2;
    public int InChannels { get; init; } = 3;
    /// <summary>quick_gelu (Qwen2-VL fc1/fc2 MLP) or silu (Qwen2.5-VL gated MLP); gelu is accepted too.</summary>
    public required string HiddenAct { get; init; }
    public double RopeTheta { get; init; } = 10000.0;
    /// <summary>Qwen2.5-VL only: window size in pixels (0 = no window attention) and the blocks with full attention.</summary>
    public int WindowSize { get; init; }
    public int[] FullAttBlockIndexes { get; init; } = [];
    /// <summary>Qwen2.5-VL only: temporal position step per second of video.</summary>
    public double TokensPerSecond { get; init; } = 4;

    public int HeadDim => Width / NumHeads;
    public int PatchDim => InChannels * TemporalPatchSize * PatchSize * PatchSize;
    public int MergeUnit => SpatialMergeSize * SpatialMergeSize;

    public void Validate(string where, QwenFamily family)
    {
        string w = where + ": vision_config";
        QwenTextConfig.Positive(w, "depth", Depth, QwenTextConfig.MaxLayers); QwenTextConfig.Positive(w, "width", Width, QwenTextConfig.MaxWidth);
        QwenTextConfig.Positive(w, "num_heads", NumHeads, QwenTextConfig.MaxHeads); QwenTextConfig.Positive(w, "intermediate_size", IntermediateSize, QwenTextConfig.MaxIntermediate);
        QwenTextConfig.Positive(w, "out_hidden_size", OutHiddenSize, QwenTextConfig.MaxWidth); QwenTextConfig.Positive(w, "patch_size", PatchSize, 1024);
        QwenTextConfig.Positive(w, "temporal_patch_size", TemporalPatchSize, 64); QwenTextConfig.Positive(w, "spatial_merge_size", SpatialMergeSize, 64);
        QwenTextConfig.Positive(w, "in_channels", InChannels, 64);
        if (Width % NumHeads != 0 || HeadDim % 4 != 0)
            throw InputException.At(w, null, "num_heads", $"width {Width} / num_heads {NumHeads} must give a head_dim divisible by 4 (2D rotary)");
        if (HiddenAct is not ("quick_gelu" or "silu" or "gelu"))
            throw InputException.At(w, null, "hidden_act", $"'{HiddenAct}' is not supported (expected quick_gelu, silu or gelu)");
        if (family == QwenFamily.Qwen25VL)
        {
            int unit = SpatialMergeSize * PatchSize;
            if (WindowSize <= 0 || WindowSize % unit != 0)
                throw InputException.At(w, null, "window_size", $"{WindowSize} must be a positive multiple of spatial_merge_size×patch_size = {unit}");
            foreach (var i in FullAttBlockIndexes)
                if (i < 0 || i >= Depth) throw InputException.At(w, null, "fullatt_block_indexes", $"index {i} is outside 0..{Depth - 1}");
        }
    }
}

/// <summary>Token ids the model itself needs (defaults are the Qwen2-VL config defaults) and the stop ids.</summary>
public sealed record QwenTokenIds
{
    public long ImageTokenId { get; init; } = 151655;
    public long VideoTokenId { get; init; } = 151656;
    public long VisionStartTokenId { get; init; } = 151652;
    public long VisionEndTokenId { get; init; } = 151653;
    public long? BosTokenId { get; init; }
    public long? PadTokenId { get; init; }
    /// <summary>From generation_config.json when present, else config.json.</summary>
    public long[] EosTokenIds { get; init; } = [];
}

public sealed record QwenVLConfig
{
    public const string FileName = "config.json";
    public const string GenerationFileName = "generation_config.json";

    public required QwenFamily Family { get; init; }
    public required QwenTextConfig Text { get; init; }
    /// <summary>Null for plain Qwen2 language models.</summary>
    public QwenVisionConfig? Vision { get; init; }
    public QwenTokenIds Tokens { get; init; } = new();
    /// <summary>`torch_dtype` / `dtype` as written in config.json (informational).</summary>
    public string? StoredDType { get; init; }
    /// <summary>generation_config.json verbatim when loaded from a folder; SaveHf writes it back unchanged.</summary>
    public string? GenerationConfigJson { get; init; }

    public string ModelType => Family switch
    {
        QwenFamily.Qwen2 => "qwen2", QwenFamily.Qwen2VL => "qwen2_vl", _ => "qwen2_5_vl",
    };

    public string Architecture => Family switch
    {
        QwenFamily.Qwen2 => "Qwen2ForCausalLM", QwenFamily.Qwen2VL => "Qwen2VLForConditionalGeneration",
        _ => "Qwen2_5_VLForConditionalGeneration",
    };

    public void Validate(string where)
    {
        Text.Validate(where);
        if (Family == QwenFamily.Qwen2)
        {
            if (Vision != null) throw InputException.At(where, null, "vision_config", "a plain qwen2 model has no vision tower");
            return;
        }
        if (Vision == null) throw InputException.At(where, null, "vision_config", "required for " + ModelType);
        Vision.Validate(where, Family);
        if (Vision.OutHiddenSize != Text.HiddenSize)
            throw InputException.At(where, null, Family == QwenFamily.Qwen2VL ? "vision_config.hidden_size" : "vision_config.out_hidden_size",
                $"the merger output {Vision.OutHiddenSize} must equal the language model's hidden_size {Text.HiddenSize}");
    }

    /// <summary>Reads DIR/config.json and, when present, DIR/generation_config.json.</summary>
    public static QwenVLConfig Load(string dir)
    {
        string path = Path.Combine(dir, FileName);
        if (!File.Exists(path)) throw new InputException($"{path}: config.json not found (expected a Hugging Face model folder)");
        string gen = Path.Combine(dir, GenerationFileName);
        return Parse(IoErrors.ReadAllText(path, FileName), path, File.Exists(gen) ? IoErrors.ReadAllText(gen, GenerationFileName) : null, gen);
    }

    public static QwenVLConfig Parse(string json, string where = FileName, string? generationJson = null, string generationWhere = GenerationFileName)
    {
        JsonObject root;
        try { root = JsonNode.Parse(json) as JsonObject ?? throw new InputException($"{where}: expected a JSON object"); }
        catch (System.Text.Json.JsonException e) { throw new InputException($"{where}: not valid JSON ({e.Message})"); }
        var r = new ConfigReader(where, root);
        string modelType = r.RequiredString(root, "model_type");
        var family = modelType switch
        {
            "qwen2" => QwenFamily.Qwen2,
            "qwen2_vl" => QwenFamily.Qwen2VL,
            "qwen2_5_vl" => QwenFamily.Qwen25VL,
            _ => throw InputException.At(where, null, "model_type",
                $"'{modelType}' is not supported (expected qwen2, qwen2_vl or qwen2_5_vl)"),
        };
        // Loader rule (spec §1): text_config.X if it exists, else the top-level X.
        var textObj = root["text_config"] as JsonObject;
        JsonNode? T(string key) => textObj != null && textObj.ContainsKey(key) ? textObj[key] : root[key];
        string TName(string key) => textObj != null && textObj.ContainsKey(key) ? "text_config." + key : key;

        int heads = r.Int(T("num_attention_heads"), TName("num_attention_heads"));
        int hidden = r.Int(T("hidden_size"), TName("hidden_size"));
        if (T("head_dim") is { } hd && hd.GetValueKind() != System.Text.Json.JsonValueKind.Null && heads > 0 && r.Int(hd, TName("head_dim")) != hidden / heads)
            throw InputException.At(where, null, TName("head_dim"), $"{r.Int(hd, "head_dim")} differs from hidden_size/num_attention_heads = {hidden / heads}, which this model family requires");
        if (T("use_sliding_window") is { } sw && sw.GetValueKind() == System.Text.Json.JsonValueKind.True)
            throw InputException.At(where, null, TName("use_sliding_window"), "sliding-window attention is not supported");
        string act = T("hidden_act") is { } a ? r.String(a, TName("hidden_act")) : "silu";
        if (act != "silu") throw InputException.At(where, null, TName("hidden_act"), $"'{act}' is not supported (expected silu)");

        // Rope: rope_parameters (v5) or rope_scaling (released), in text_config or at the top level.
        var (ropeNode, ropeName) = T("rope_parameters") is JsonObject rp ? (rp, TName("rope_parameters"))
                                 : T("rope_scaling") is JsonObject rs ? (rs, TName("rope_scaling")) : ((JsonObject?)null, "");
        double theta = ropeNode?["rope_theta"] is { } rt ? r.Double(rt, ropeName + ".rope_theta")
                     : T("rope_theta") is { } t0 && t0.GetValueKind() != System.Text.Json.JsonValueKind.Null ? r.Double(t0, TName("rope_theta"))
                     : family == QwenFamily.Qwen2 ? 10000.0 : 1e6;
        if (ropeNode != null)
        {
            foreach (var key in new[] { "rope_type", "type" })
                if (ropeNode[key] is { } tv && r.String(tv, ropeName + "." + key) is var tname && tname is not ("default" or "mrope"))
                    throw InputException.At(where, null, ropeName + "." + key, $"rope scaling '{tname}' is not supported (expected default or mrope)");
        }
        int headDim = heads > 0 ? hidden / heads : 0;
        int[] section;
        if (family == QwenFamily.Qwen2)
            section = [headDim / 2, 0, 0]; // 1D RoPE: all three position rows are equal, so the split is irrelevant
        else
        {
            if (ropeNode?["mrope_section"] is not { } ms)
                throw InputException.At(where, null, "rope_scaling.mrope_section", "required for " + modelType + " (in rope_scaling or rope_parameters)");
            section = r.IntArray(ms, ropeName + ".mrope_section");
        }

        bool tie = root["tie_word_embeddings"] is { } tw ? r.Bool(tw, "tie_word_embeddings")
                 : T("tie_word_embeddings") is { } tw2 && r.Bool(tw2, TName("tie_word_embeddings"));
        int kvHeads = T("num_key_value_heads") is { } kv && kv.GetValueKind() != System.Text.Json.JsonValueKind.Null
            ? r.Int(kv, TName("num_key_value_heads")) : heads;
        var text = new QwenTextConfig
        {
            VocabSize = r.Int(T("vocab_size"), TName("vocab_size")),
            HiddenSize = hidden,
            IntermediateSize = r.Int(T("intermediate_size"), TName("intermediate_size")),
            NumLayers = r.Int(T("num_hidden_layers"), TName("num_hidden_layers")),
            NumHeads = heads,
            NumKvHeads = kvHeads,
            RmsNormEps = T("rms_norm_eps") is { } eps ? r.Double(eps, TName("rms_norm_eps")) : 1e-6,
            RopeTheta = theta,
            MropeSection = section,
            MaxPositionEmbeddings = T("max_position_embeddings") is { } mp ? r.Int(mp, TName("max_position_embeddings")) : 32768,
            TieWordEmbeddings = tie,
        };

        QwenVisionConfig? vision = null;
        if (family != QwenFamily.Qwen2)
        {
            if (root["vision_config"] is not JsonObject v)
                throw InputException.At(where, null, "vision_config", "required for " + modelType);
            vision = ReadVision(r, v, family);
        }

        var tokens = new QwenTokenIds
        {
            ImageTokenId = root["image_token_id"] is { } it ? r.Long(it, "image_token_id") : 151655,
            VideoTokenId = root["video_token_id"] is { } vt ? r.Long(vt, "video_token_id") : 151656,
            VisionStartTokenId = root["vision_start_token_id"] is { } vs ? r.Long(vs, "vision_start_token_id") : 151652,
            VisionEndTokenId = root["vision_end_token_id"] is { } ve ? r.Long(ve, "vision_end_token_id") : 151653,
            BosTokenId = r.OptionalLong(T("bos_token_id"), TName("bos_token_id")),
            PadTokenId = r.OptionalLong(T("pad_token_id"), TName("pad_token_id")),
            EosTokenIds = r.LongList(T("eos_token_id"), TName("eos_token_id")),
        };
        if (generationJson != null)
        {
            JsonObject g;
            try { g = JsonNode.Parse(generationJson) as JsonObject ?? throw new InputException($"{generationWhere}: expected a JSON object"); }
            catch (System.Text.Json.JsonException e) { throw new InputException($"{generationWhere}: not valid JSON ({e.Message})"); }
            var gr = new ConfigReader(generationWhere, g);
            if (g["eos_token_id"] is { } ge && ge.GetValueKind() != System.Text.Json.JsonValueKind.Null)
                tokens = tokens with { EosTokenIds = gr.LongList(ge, "eos_token_id") };
            if (g["pad_token_id"] is { } gp && gp.GetValueKind() != System.Text.Json.JsonValueKind.Null)
                tokens = tokens with { PadTokenId = gr.Long(gp, "pad_token_id") };
            if (g["bos_token_id"] is { } gb && gb.GetValueKind() != System.Text.Json.JsonValueKind.Null)
                tokens = tokens with { BosTokenId = gr.Long(gb, "bos_token_id") };
        }

        string? dtype = (root["torch_dtype"] ?? root["dtype"] ?? T("torch_dtype") ?? T("dtype")) is { } dn && dn.GetValueKind() == System.Text.Json.JsonValueKind.String
            ? dn.GetValue<string>() : null;
        var cfg = new QwenVLConfig
        {
            Family = family, Text = text, Vision = vision, Tokens = tokens, StoredDType = dtype, GenerationConfigJson = generationJson,
        };
        cfg.Validate(where);
        return cfg;
    }

    static QwenVisionConfig ReadVision(ConfigReader r, JsonObject v, QwenFamily family)
    {
        const string P = "vision_config.";
        JsonNode? Opt(string k) => v[k] is { } n && n.GetValueKind() != System.Text.Json.JsonValueKind.Null ? n : null;
        int Req(string k) => r.Int(v[k], P + k);
        int OptInt(string k, int d) => Opt(k) is { } n ? r.Int(n, P + k) : d;
        // Released checkpoints write in_chans, which HF ignores in favour of in_channels (default 3).
        int inCh = OptInt("in_channels", 3);
        double ropeTheta = v["rope_parameters"] is JsonObject rp && rp["rope_theta"] is { } rt ? r.Double(rt, P + "rope_parameters.rope_theta") : 10000.0;
        if (family == QwenFamily.Qwen2VL)
        {
            int width = Req("embed_dim");
            double ratio = Opt("mlp_ratio") is { } mr ? r.Double(mr, P + "mlp_ratio") : 4.0;
            return new QwenVisionConfig
            {
                Depth = Req("depth"), Width = width, NumHeads = Req("num_heads"),
                IntermediateSize = (int)(width * ratio), OutHiddenSize = Req("hidden_size"),
                PatchSize = OptInt("patch_size", 14), TemporalPatchSize = OptInt("temporal_patch_size", 2),
                SpatialMergeSize = OptInt("spatial_merge_size", 2), InChannels = inCh,
                HiddenAct = Opt("hidden_act") is { } a ? r.String(a, P + "hidden_act") : "quick_gelu",
                RopeTheta = ropeTheta,
            };
        }
        return new QwenVisionConfig
        {
            Depth = Req("depth"), Width = Req("hidden_size"), NumHeads = Req("num_heads"),
            IntermediateSize = Req("intermediate_size"), OutHiddenSize = Req("out_hidden_size"),
            PatchSize = OptInt("patch_size", 14), TemporalPatchSize = OptInt("temporal_patch_size", 2),
            SpatialMergeSize = OptInt("spatial_merge_size", 2), InChannels = inCh,
            HiddenAct = Opt("hidden_act") is { } a2 ? r.String(a2, P + "hidden_act") : "silu",
            RopeTheta = ropeTheta,
            WindowSize = OptInt("window_size", 112),
            FullAttBlockIndexes = Opt("fullatt_block_indexes") is { } fb ? r.IntArray(fb, P + "fullatt_block_indexes") : [7, 15, 23, 31],
            TokensPerSecond = Opt("tokens_per_second") is { } tps ? r.Double(tps, P + "tokens_per_second") : 4,
        };
    }

    /// <summary>config.json in the released flat layout (text fields at the top level, rope_scaling with
    /// mrope_section, vision_config with the family's own key names), which every transformers version loads.</summary>
    public string ToHfJson(string? torchDType = null)
    {
        var t = Text;
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(Architecture),
            ["model_type"] = ModelType,
            ["torch_dtype"] = torchDType ?? StoredDType ?? "bfloat16",
            ["vocab_size"] = t.VocabSize,
            ["hidden_size"] = t.HiddenSize,
            ["intermediate_size"] = t.IntermediateSize,
            ["num_hidden_layers"] = t.NumLayers,
            ["num_attention_heads"] = t.NumHeads,
            ["num_key_value_heads"] = t.NumKvHeads,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = t.MaxPositionEmbeddings,
            ["rms_norm_eps"] = t.RmsNormEps,
            ["rope_theta"] = t.RopeTheta,
            ["tie_word_embeddings"] = t.TieWordEmbeddings,
            ["use_sliding_window"] = false,
            ["sliding_window"] = t.MaxPositionEmbeddings,
            ["max_window_layers"] = t.NumLayers,
            ["attention_dropout"] = 0.0,
            ["initializer_range"] = 0.02,
            ["use_cache"] = true,
        };
        if (Tokens.BosTokenId is { } bos) o["bos_token_id"] = bos;
        if (Tokens.EosTokenIds.Length > 0) o["eos_token_id"] = Tokens.EosTokenIds[0];
        if (Family == QwenFamily.Qwen2)
        {
            o["rope_scaling"] = null;
            return o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
        }
        o["image_token_id"] = Tokens.ImageTokenId;
        o["video_token_id"] = Tokens.VideoTokenId;
        o["vision_start_token_id"] = Tokens.VisionStartTokenId;
        o["vision_end_token_id"] = Tokens.VisionEndTokenId;
        o["rope_scaling"] = new JsonObject { ["type"] = "mrope", ["mrope_section"] = new JsonArray(t.MropeSection.Select(s => (JsonNode)s).ToArray()) };
        var v = Vision!;
        var vo = new JsonObject { ["depth"] = v.Depth, ["num_heads"] = v.NumHeads };
        if (Family == QwenFamily.Qwen2VL)
        {
            vo["embed_dim"] = v.Width;
            vo["hidden_size"] = v.OutHiddenSize;
            vo["mlp_ratio"] = v.IntermediateSize % v.Width == 0 ? v.IntermediateSize / v.Width : (double)v.IntermediateSize / v.Width;
        }
        else
        {
            vo["hidden_size"] = v.Width;
            vo["intermediate_size"] = v.IntermediateSize;
            vo["out_hidden_size"] = v.OutHiddenSize;
            vo["window_size"] = v.WindowSize;
            vo["fullatt_block_indexes"] = new JsonArray(v.FullAttBlockIndexes.Select(i => (JsonNode)i).ToArray());
            vo["tokens_per_second"] = v.TokensPerSecond % 1 == 0 ? (int)v.TokensPerSecond : v.TokensPerSecond;
        }
        vo["hidden_act"] = v.HiddenAct;
        vo["in_chans"] = v.InChannels;
        vo["in_channels"] = v.InChannels;
        vo["patch_size"] = v.PatchSize;
        vo["spatial_patch_size"] = v.PatchSize;
        vo["spatial_merge_size"] = v.SpatialMergeSize;
        vo["temporal_patch_size"] = v.TemporalPatchSize;
        o["vision_config"] = vo;
        return o.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>generation_config.json: the original text when there is one, else bos/eos/pad from Tokens.</summary>
    public string ToGenerationJson()
    {
        if (GenerationConfigJson != null) return GenerationConfigJson;
        var g = new JsonObject();
        if (Tokens.BosTokenId is { } bos) g["bos_token_id"] = bos;
        if (Tokens.EosTokenIds.Length == 1) g["eos_token_id"] = Tokens.EosTokenIds[0];
        else if (Tokens.EosTokenIds.Length > 1) g["eos_token_id"] = new JsonArray(Tokens.EosTokenIds.Select(e => (JsonNode)e).ToArray());
        if (Tokens.PadTokenId is { } pad) g["pad_token_id"] = pad;
        return g.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Writes config.json (flat layout) and generation_config.json into DIR, atomically.</summary>
    public void Save(string dir, string? torchDType = null)
    {
        Directory.CreateDirectory(dir);
        AtomicFile.WriteAllText(Path.Combine(dir, FileName), ToHfJson(torchDType));
        AtomicFile.WriteAllText(Path.Combine(dir, GenerationFileName), ToGenerationJson());
    }
}

/// <summary>Typed access to config.json values with errors that name the file and the field.</summary>
internal sealed class ConfigReader(string where, JsonObject root)
{
    public JsonObject Root => root;

    InputException Bad(string field, string expected, JsonNode? got) =>
        InputException.At(where, null, field, $"expected {expected}, got {(got == null ? "nothing (missing)" : got.ToJsonString())}");

    public string RequiredString(JsonObject o, string key) =>
        o[key] is { } n && n.GetValueKind() == System.Text.Json.JsonValueKind.String ? n.GetValue<string>()
        : o.ContainsKey(key) ? throw Bad(key, "a string", o[key]) : throw InputException.At(where, null, key, "required field is missing");

    public string String(JsonNode n, string field) =>
        n.GetValueKind() == System.Text.Json.JsonValueKind.String ? n.GetValue<string>() : throw Bad(field, "a string", n);

    public int Int(JsonNode? n, string field)
    {
        if (n == null) throw InputException.At(where, null, field, "required field is missing");
        long v = Long(n, field);
        return v is >= int.MinValue and <= int.MaxValue ? (int)v : throw Bad(field, "a 32-bit integer", n);
    }

    public long Long(JsonNode n, string field)
    {
        if (n.GetValueKind() == System.Text.Json.JsonValueKind.Number && n is JsonValue jv)
        {
            if (jv.TryGetValue<long>(out long l)) return l;
            if (jv.TryGetValue<double>(out double d) && d == Math.Floor(d) && Math.Abs(d) < 1e15) return (long)d;
        }
        throw Bad(field, "an integer", n);
    }

    public long? OptionalLong(JsonNode? n, string field) =>
        n == null || n.GetValueKind() == System.Text.Json.JsonValueKind.Null ? null
        : n is JsonArray a ? (a.Count > 0 ? Long(a[0]!, field + "[0]") : null) : Long(n, field);

    public double Double(JsonNode n, string field) =>
        n.GetValueKind() == System.Text.Json.JsonValueKind.Number ? n.GetValue<double>() : throw Bad(field, "a number", n);

    public bool Bool(JsonNode n, string field) => n.GetValueKind() switch
    {
        System.Text.Json.JsonValueKind.True => true,
        System.Text.Json.JsonValueKind.False => false,
        _ => throw Bad(field, "true or false", n),
    };

    public int[] IntArray(JsonNode n, string field) =>
        n is JsonArray a ? a.Select((x, i) => Int(x ?? throw Bad($"{field}[{i}]", "an integer", null), $"{field}[{i}]")).ToArray()
        : throw Bad(field, "an array of integers", n);

    /// <summary>An id or a list of ids (eos_token_id); null/missing gives an empty list.</summary>
    public long[] LongList(JsonNode? n, string field) => n switch
    {
        null => [],
        JsonArray a => a.Select((x, i) => Long(x ?? throw Bad($"{field}[{i}]", "an integer", null), $"{field}[{i}]")).ToArray(),
        _ when n.GetValueKind() == System.Text.Json.JsonValueKind.Null => [],
        _ => [Long(n, field)],
    };
}
