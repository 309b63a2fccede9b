// Config loading in both layouts (transformers-5 nested, released flat), the flat-layout writer, both weight-key
// layouts, plain Qwen2, and the errors for bad configs and bad weights.
using System.Text.Json.Nodes;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public class QwenConfigTests
{
    static string Fixture(string name) => TestPaths.Fixture(name);

    /// <summary>A copy of a fixture folder (config.json, generation_config.json, weights) to modify.</summary>
    static string CopyFixture(string name)
    {
        string dir = TestPaths.NewTempDir(name);
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(Path.Combine(Fixture(name), f), Path.Combine(dir, f));
        return dir;
    }

    static JsonObject ConfigJson(string dir) => (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!;

    static void WriteConfig(string dir, JsonObject o) => File.WriteAllText(Path.Combine(dir, "config.json"), o.ToJsonString());

    /// <summary>Logits of the reference batch (fp32, CPU).</summary>
    static Tensor Logits(string dir, QwenReference r)
    {
        using var m = QwenVLModel.Load(dir, ScalarType.Float32, torch.CPU);
        using var noGrad = torch.no_grad();
        using var o = m.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw);
        return o.Logits!.clone();
    }

    [Fact]
    public void ReadsTransformers5LayoutOfTheFixtures()
    {
        var c2 = QwenVLConfig.Load(Fixture("qwen2vl-tiny"));
        Assert.Equal(QwenFamily.Qwen2VL, c2.Family);
        Assert.Equal((1024, 64, 128, 2, 4, 2, 16), (c2.Text.VocabSize, c2.Text.HiddenSize, c2.Text.IntermediateSize, c2.Text.NumLayers, c2.Text.NumHeads, c2.Text.NumKvHeads, c2.Text.HeadDim));
        Assert.Equal([2, 3, 3], c2.Text.MropeSection);
        Assert.Equal((1e6, 1e-6, 4096, false), (c2.Text.RopeTheta, c2.Text.RmsNormEps, c2.Text.MaxPositionEmbeddings, c2.Text.TieWordEmbeddings));
        var v2 = c2.Vision!;
        // Qwen2-VL: embed_dim is the ViT width, hidden_size the merger output, MLP = embed_dim × mlp_ratio.
        Assert.Equal((2, 32, 4, 64, 64, "quick_gelu"), (v2.Depth, v2.Width, v2.NumHeads, v2.IntermediateSize, v2.OutHiddenSize, v2.HiddenAct));
        Assert.Equal((1000L, 1001L, 998L, 999L), (c2.Tokens.ImageTokenId, c2.Tokens.VideoTokenId, c2.Tokens.VisionStartTokenId, c2.Tokens.VisionEndTokenId));
        Assert.Equal([151645L], c2.Tokens.EosTokenIds);

        var c25 = QwenVLConfig.Load(Fixture("qwen25vl-tiny"));
        Assert.Equal(QwenFamily.Qwen25VL, c25.Family);
        Assert.True(c25.Text.TieWordEmbeddings);
        var v25 = c25.Vision!;
        // Qwen2.5-VL: hidden_size is the ViT width, out_hidden_size the merger output.
        Assert.Equal((4, 32, 64, 64, "silu", 56, 2.0), (v25.Depth, v25.Width, v25.IntermediateSize, v25.OutHiddenSize, v25.HiddenAct, v25.WindowSize, v25.TokensPerSecond));
        Assert.Equal([1, 3], v25.FullAttBlockIndexes);
    }

    [Fact]
    public void ReadsReleasedFlatLayout()
    {
        // Qwen2.5-VL-3B-Instruct's config.json as released (spec §1).
        const string json = """
        {"architectures":["Qwen2_5_VLForConditionalGeneration"],"attention_dropout":0.0,"bos_token_id":151643,"eos_token_id":151645,
         "vision_start_token_id":151652,"vision_end_token_id":151653,"vision_token_id":151654,"image_token_id":151655,"video_token_id":151656,
         "hidden_act":"silu","hidden_size":2048,"initializer_range":0.02,"intermediate_size":11008,"max_position_embeddings":128000,
         "max_window_layers":70,"model_type":"qwen2_5_vl","num_attention_heads":16,"num_hidden_layers":36,"num_key_value_heads":2,
         "rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":32768,"tie_word_embeddings":true,"torch_dtype":"bfloat16",
         "transformers_version":"4.41.2","use_cache":true,"use_sliding_window":false,
         "vision_config":{"depth":32,"hidden_act":"silu","hidden_size":1280,"intermediate_size":3420,"num_heads":16,"in_chans":3,
           "out_hidden_size":2048,"patch_size":14,"spatial_merge_size":2,"spatial_patch_size":14,"window_size":112,
           "fullatt_block_indexes":[7,15,23,31],"tokens_per_second":2,"temporal_patch_size":2},
         "rope_scaling":{"type":"mrope","mrope_section":[16,24,24]},"vocab_size":151936}
        """;
        var c = QwenVLConfig.Parse(json, "config.json", """{"eos_token_id":[151645,151643],"pad_token_id":151643}""");
        Assert.Equal(QwenFamily.Qwen25VL, c.Family);
        Assert.Equal((151936, 2048, 11008, 36, 16, 2, 128), (c.Text.VocabSize, c.Text.HiddenSize, c.Text.IntermediateSize, c.Text.NumLayers, c.Text.NumHeads, c.Text.NumKvHeads, c.Text.HeadDim));
        Assert.Equal([16, 24, 24], c.Text.MropeSection);
        Assert.Equal((1e6, 128000, true), (c.Text.RopeTheta, c.Text.MaxPositionEmbeddings, c.Text.TieWordEmbeddings));
        Assert.Equal((1280, 2048, 3420, 3, 112, 2.0), (c.Vision!.Width, c.Vision.OutHiddenSize, c.Vision.IntermediateSize, c.Vision.InChannels, c.Vision.WindowSize, c.Vision.TokensPerSecond));
        Assert.Equal([151645L, 151643L], c.Tokens.EosTokenIds);
        Assert.Equal(151643L, c.Tokens.PadTokenId);
        Assert.Equal("bfloat16", c.StoredDType);
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void FlatLayoutWriterRoundTripsAndGivesIdenticalLogits(string name)
    {
        var original = QwenVLConfig.Load(Fixture(name));
        string dir = CopyFixture(name);
        File.WriteAllText(Path.Combine(dir, "config.json"), original.ToHfJson("float32"));
        var flat = ConfigJson(dir);
        Assert.Null(flat["text_config"]);                                   // released layout: text fields on top
        Assert.Equal(64, (int)flat["hidden_size"]!);
        Assert.Equal("mrope", (string)flat["rope_scaling"]!["type"]!);
        // The naming trap: the ViT width is embed_dim in Qwen2-VL and hidden_size in Qwen2.5-VL.
        Assert.Equal(32, (int)flat["vision_config"]![original.Family == QwenFamily.Qwen2VL ? "embed_dim" : "hidden_size"]!);
        Assert.Equal(64, (int)flat["vision_config"]![original.Family == QwenFamily.Qwen2VL ? "hidden_size" : "out_hidden_size"]!);

        var reread = QwenVLConfig.Load(dir);
        Assert.Equivalent(original with { StoredDType = "float32" }, reread, strict: true);
        using var r = new QwenReference(name);
        using var a = Logits(Fixture(name), r);
        using var b = Logits(dir, r);
        TensorAssert.Equal(a, b, "logits with the flat config");
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void LoadsTheLanguageModelKeyLayout(string name)
    {
        string dir = CopyFixture(name);
        using (var ck = SafetensorsCheckpoint.Open(Fixture(name)))
        {
            var renamed = ck.Names.Order(StringComparer.Ordinal).Select(n => KeyValuePair.Create(QwenVLModel.ToNewLayout(n), ck.Load(n))).ToList();
            Assert.Contains(renamed, kv => kv.Key == "model.language_model.layers.0.self_attn.q_proj.weight");
            Assert.Contains(renamed, kv => kv.Key == "model.visual.patch_embed.proj.weight");
            SafetensorsWriter.WriteCheckpoint(dir, renamed);
            foreach (var (_, t) in renamed) t.Dispose();
        }
        using var r = new QwenReference(name);
        using var a = Logits(Fixture(name), r);
        using var b = Logits(dir, r);
        TensorAssert.Equal(a, b, "logits with model.language_model.* keys");
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void SaveHfRoundTrips(string name)
    {
        string dir = TestPaths.NewTempDir("save");
        using var r = new QwenReference(name);
        using (var m = r.Load()) m.SaveHf(dir);
        using (var ck = SafetensorsCheckpoint.Open(dir))
        {
            Assert.Equal(!QwenVLConfig.Load(Fixture(name)).Text.TieWordEmbeddings, ck.Contains("lm_head.weight"));
            Assert.Contains("visual.blocks.0.attn.qkv.weight", ck.Names);
        }
        Assert.Null(ConfigJson(dir)["text_config"]);
        Assert.True(File.Exists(Path.Combine(dir, "generation_config.json")));
        using var a = Logits(Fixture(name), r);
        using var b = Logits(dir, r);
        TensorAssert.Equal(a, b, "logits after SaveHf");
    }

    [Fact]
    public void PlainQwen2EqualsTheVlDecoderOnText()
    {
        // The Qwen2-VL fixture's language model saved as a model_type qwen2 checkpoint (1D RoPE).
        string dir = TestPaths.NewTempDir("qwen2");
        var vl = QwenVLConfig.Load(Fixture("qwen2vl-tiny"));
        var text = vl with { Family = QwenFamily.Qwen2, Vision = null, Text = vl.Text with { MropeSection = [8, 0, 0] }, GenerationConfigJson = null };
        text.Save(dir, "float32");
        Assert.Equal("qwen2", (string)ConfigJson(dir)["model_type"]!);
        using (var ck = SafetensorsCheckpoint.Open(Fixture("qwen2vl-tiny")))
        {
            var lm = ck.Names.Where(n => !n.StartsWith("visual.")).Order(StringComparer.Ordinal).Select(n => KeyValuePair.Create(n, ck.Load(n))).ToList();
            SafetensorsWriter.WriteCheckpoint(dir, lm);
            foreach (var (_, t) in lm) t.Dispose();
        }
        var cfg = QwenVLConfig.Load(dir);
        Assert.Equal(QwenFamily.Qwen2, cfg.Family);
        Assert.Null(cfg.Vision);

        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var ids = torch.tensor(new long[] { 0, 0, 5, 17, 300, 9, 1, 2, 3, 4, 5, 6 }, 2, 6);
        var mask = torch.tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, 2, 6);
        using var plain = QwenVLModel.Load(dir, ScalarType.Float32, torch.CPU);
        using var full = QwenVLModel.Load(Fixture("qwen2vl-tiny"), ScalarType.Float32, torch.CPU);
        using var a = plain.Forward(ids, mask);
        using var b = full.Forward(ids, mask);
        TensorAssert.Equal(b.PositionIds, a.PositionIds, "position_ids");
        var real = mask.to(ScalarType.Bool).unsqueeze(-1);
        TensorAssert.Close(b.Logits!.masked_fill(real.logical_not(), 0), a.Logits!.masked_fill(real.logical_not(), 0), 1e-6, "logits");
        Assert.Equal(plain.CountParameters().LanguageModel + plain.CountParameters().LmHead, full.CountParameters().LanguageModel + full.CountParameters().LmHead);
    }

    // ------------------------------------------------------------------ errors

    [Fact]
    public void UnknownModelTypeNamesFileAndField()
    {
        string dir = CopyFixture("qwen2vl-tiny");
        var o = ConfigJson(dir); o["model_type"] = "llava"; WriteConfig(dir, o);
        var e = Assert.Throws<InputException>(() => QwenVLConfig.Load(dir));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("model_type", e.Message);
        Assert.Contains("llava", e.Message);
    }

    [Fact]
    public void MissingRequiredFieldNamesIt()
    {
        string dir = CopyFixture("qwen2vl-tiny");
        var o = ConfigJson(dir); ((JsonObject)o["text_config"]!).Remove("hidden_size"); WriteConfig(dir, o);
        var e = Assert.Throws<InputException>(() => QwenVLConfig.Load(dir));
        Assert.Contains("config.json", e.Message);
        Assert.Contains("hidden_size", e.Message);

        var v = ConfigJson(CopyFixture("qwen25vl-tiny")); ((JsonObject)v["vision_config"]!).Remove("out_hidden_size");
        var e2 = Assert.Throws<InputException>(() => QwenVLConfig.Parse(v.ToJsonString()));
        Assert.Contains("vision_config.out_hidden_size", e2.Message);

        var m = ConfigJson(CopyFixture("qwen25vl-tiny")); ((JsonObject)m["text_config"]!["rope_parameters"]!).Remove("mrope_section");
        Assert.Contains("mrope_section", Assert.Throws<InputException>(() => QwenVLConfig.Parse(m.ToJsonString())).Message);
    }

    [Fact]
    public void InvalidValuesAreRejected()
    {
        var o = ConfigJson(Fixture("qwen2vl-tiny"));
        ((JsonObject)o["text_config"]!)["num_key_value_heads"] = 3;
        Assert.Contains("num_key_value_heads", Assert.Throws<InputException>(() => QwenVLConfig.Parse(o.ToJsonString())).Message);
        o = ConfigJson(Fixture("qwen2vl-tiny"));
        ((JsonObject)o["text_config"]!)["rope_parameters"]!["mrope_section"] = new JsonArray(2, 3, 4);
        Assert.Contains("head_dim/2", Assert.Throws<InputException>(() => QwenVLConfig.Parse(o.ToJsonString())).Message);
        o = ConfigJson(Fixture("qwen2vl-tiny"));
        ((JsonObject)o["text_config"]!)["hidden_size"] = "64";
        Assert.Contains("hidden_size", Assert.Throws<InputException>(() => QwenVLConfig.Parse(o.ToJsonString())).Message);
    }

    [Fact]
    public void TruncatedWeightsAreReported()
    {
        string dir = CopyFixture("qwen2vl-tiny");
        string w = Path.Combine(dir, "model.safetensors");
        using (var fs = new FileStream(w, FileMode.Open)) fs.SetLength(fs.Length - 100);
        var e = Assert.Throws<InputException>(() => QwenVLModel.Load(dir, ScalarType.Float32, torch.CPU));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    static void RewriteWeights(string dir, Func<List<KeyValuePair<string, Tensor>>, List<KeyValuePair<string, Tensor>>> edit)
    {
        List<KeyValuePair<string, Tensor>> all;
        using (var ck = SafetensorsCheckpoint.Open(dir))
            all = ck.Names.Order(StringComparer.Ordinal).Select(n => KeyValuePair.Create(n, ck.Load(n))).ToList();
        SafetensorsWriter.WriteCheckpoint(dir, edit(all));
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        string dir = CopyFixture("qwen2vl-tiny");
        RewriteWeights(dir, all => all.Where(kv => kv.Key != "model.layers.1.mlp.up_proj.weight").ToList());
        var e = Assert.Throws<InputException>(() => QwenVLModel.Load(dir, ScalarType.Float32, torch.CPU));
        Assert.Contains("missing", e.Message);
        Assert.Contains("model.layers.1.mlp.up_proj.weight", e.Message);
    }

    [Fact]
    public void UntiedModelWithoutLmHeadIsAnError()
    {
        string dir = CopyFixture("qwen2vl-tiny");
        RewriteWeights(dir, all => all.Where(kv => kv.Key != "lm_head.weight").ToList());
        Assert.Contains("lm_head.weight", Assert.Throws<InputException>(() => QwenVLModel.Load(dir, ScalarType.Float32, torch.CPU)).Message);
    }

    [Fact]
    public void UnexpectedTensorIsNamed()
    {
        string dir = CopyFixture("qwen2vl-tiny");
        RewriteWeights(dir, all => [.. all, KeyValuePair.Create("model.layers.2.input_layernorm.weight", torch.ones(64))]);
        var e = Assert.Throws<InputException>(() => QwenVLModel.Load(dir, ScalarType.Float32, torch.CPU));
        Assert.Contains("unexpected", e.Message);
        Assert.Contains("model.layers.2.input_layernorm.weight", e.Message);
    }

    [Fact]
    public void ShapeMismatchBetweenConfigAndWeightsIsNamed()
    {
        // config.json says hidden 32 (4 heads of 8, mrope 1+2+1 = 8/2) but the weights are 64 wide.
        string dir = CopyFixture("qwen2vl-tiny");
        var o = ConfigJson(dir);
        var t = (JsonObject)o["text_config"]!;
        t["hidden_size"] = 32;
        t["rope_parameters"]!["mrope_section"] = new JsonArray(1, 2, 1);
        o["vision_config"]!["hidden_size"] = 32;
        WriteConfig(dir, o);
        var e = Assert.Throws<InputException>(() => QwenVLModel.Load(dir, ScalarType.Float32, torch.CPU));
        Assert.Contains("shape mismatch", e.Message);
        Assert.Contains("[1024,64]", e.Message);
        Assert.Contains("[1024,32]", e.Message);
    }

    [Fact]
    public void TiedCheckpointMayCarryAnLmHeadCopy()
    {
        // Tied: lm_head.weight, if present, is ignored in favour of embed_tokens (HF ties them).
        string dir = CopyFixture("qwen25vl-tiny");
        RewriteWeights(dir, all => [.. all, KeyValuePair.Create("lm_head.weight", torch.zeros(1024, 64))]);
        using var r = new QwenReference("qwen25vl-tiny");
        using var a = Logits(Fixture("qwen25vl-tiny"), r);
        using var b = Logits(dir, r);
        TensorAssert.Equal(a, b, "logits");
    }
}
