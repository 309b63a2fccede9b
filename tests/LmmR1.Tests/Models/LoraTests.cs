// LoRA on the transformers-made tiny fixtures: a fresh adapter (B = 0) leaves every output bit-identical; adapters
// switched off give the base again; the merged checkpoint (W + α/r·B·A, a different computation) agrees with the
// adapted forward to the fp32 tolerance; the config-only layer list matches the built model; target selection and
// its errors; the PEFT folder's tensor names, shapes and adapter_config.json, and reading it back; generation with
// adapters gives the log-probs of a separate forward pass.
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Generation;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public class LoraTests
{
    static readonly string[] LmNames = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    static QwenVLModel Load(string name) => QwenVLModel.Load(TestPaths.Fixture(name), ScalarType.Float32, torch.CPU);

    static Tensor Logits(QwenVLModel m, QwenReference r)
    {
        using var noGrad = torch.no_grad();
        using var o = m.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw);
        return r.RealTokens(o.Logits!).detach().clone();
    }

    static LoraAdapters Attach(QwenVLModel m, params string[] targets) =>
        m.AttachLora(new LoraOptions { Rank = 4, TargetModules = targets.Length == 0 ? [LoraOptions.AllLinear] : targets }.Select(m.LinearLayerNames()),
                     4, 16, 0, seed: 3);

    static void RandomiseB(LoraAdapters lora, double std = 0.05)
    {
        using var gen = new torch.Generator(7, torch.CPU);
        using var noGrad = torch.no_grad();
        foreach (var (_, _, b) in lora.Adapters)
        {
            using var x = torch.empty(b.shape, ScalarType.Float32).normal_(0, std, gen);
            b.copy_(x);
        }
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static double MaxAbs(Tensor a, Tensor b) => (a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).abs().max().item<double>();

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void ZeroInitialisedBGivesExactlyTheBaseOutputsAndOffGivesTheBaseAgain(string name)
    {
        using var r = new QwenReference(name);
        using var m = Load(name);
        using var baseLogits = Logits(m, r);
        var lora = Attach(m, LoraOptions.AllLinear, "visual");
        Assert.All(lora.Adapters, a =>
        {
            Assert.True(a.A.abs().max().item<float>() > 0, $"{a.Layer}: A must be random (kaiming-uniform)");
            Assert.Equal(0f, a.B.abs().max().item<float>());
        });
        using (var fresh = Logits(m, r))
            Assert.True(Same(fresh, baseLogits), "a fresh adapter must not change any logit");

        RandomiseB(lora);
        using (var adapted = Logits(m, r))
            Assert.True(MaxAbs(adapted, baseLogits) > 1e-2, "a non-zero B must move the logits (else the next check is vacuous)");
        using (lora.Off())
        using (var off = Logits(m, r))
            Assert.True(Same(off, baseLogits), "adapters off must give the base model exactly");
        Assert.True(lora.Enabled);
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void MergedCheckpointAgreesWithTheAdaptedForwardAndHasNoAdapterKeys(string name)
    {
        using var r = new QwenReference(name);
        using var m = Load(name);
        var lora = Attach(m, LoraOptions.AllLinear, "visual.qkv");
        RandomiseB(lora);
        using var adapted = Logits(m, r);
        string dir = TestPaths.NewTempDir("lora-merged");
        m.SaveHf(dir);
        using (var ckpt = SafetensorsCheckpoint.Open(dir))
        {
            Assert.DoesNotContain(ckpt.Names, n => n.Contains("lora", StringComparison.Ordinal));
            using var baseCkpt = SafetensorsCheckpoint.Open(TestPaths.Fixture(name));
            Assert.Equal(baseCkpt.Names.Select(QwenVLModel.ToNewLayout).Order(StringComparer.Ordinal),
                         ckpt.Names.Select(QwenVLModel.ToNewLayout).Order(StringComparer.Ordinal));
        }
        using var merged = QwenVLModel.Load(dir, ScalarType.Float32, torch.CPU);
        Assert.Null(merged.Lora);
        using var mergedLogits = Logits(merged, r);
        double d = MaxAbs(mergedLogits, adapted);
        Assert.True(d <= Numerics.Fp32, $"merged vs adapted: max |Δ logit| = {d:G3}");
        using var baseLogits = Logits(Load(name), r);
        Assert.True(MaxAbs(mergedLogits, baseLogits) > 1e-2);
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void TheLayerListFromTheConfigIsTheModelsLinearLayers(string name)
    {
        using var m = Load(name);
        var modules = m.named_modules().Where(x => x.module is Dense).ToDictionary(x => x.name, x => ((Dense)x.module).Weight.shape);
        var layout = LoraLayout.LinearLayers(m.Config);
        Assert.Equal(modules.Keys.Order(StringComparer.Ordinal), layout.Select(l => l.Name).Order(StringComparer.Ordinal));
        foreach (var (n, i, o) in layout) Assert.Equal([o, i], modules[n]);
        var lora = Attach(m, LoraOptions.AllLinear);
        Assert.Equal(LoraLayout.AdapterParameters(m.Config, new LoraOptions { Rank = 4 }), lora.ParameterCount);
    }

    [Fact]
    public void TargetsSelectLanguageModelLayersUnlessTheVisionTowerIsNamed()
    {
        var cfg = QwenVLConfig.Load(TestPaths.Fixture("qwen25vl-tiny"));
        var names = LoraLayout.LinearLayers(cfg).Select(l => l.Name).ToList();
        int layers = cfg.Text.NumLayers, blocks = cfg.Vision!.Depth;
        var all = new LoraOptions { Rank = 8 }.Select(names);
        Assert.Equal(7 * layers, all.Count);
        Assert.All(all, n => Assert.StartsWith("model.layers.", n));
        // Qwen2.5-VL's vision MLP is also gate/up/down_proj: named plainly, only the language model's are taken.
        Assert.Equal(layers, new LoraOptions { Rank = 8, TargetModules = ["gate_proj"] }.Select(names).Count);
        Assert.Equal(layers + blocks, new LoraOptions { Rank = 8, TargetModules = ["gate_proj", "visual.gate_proj"] }.Select(names).Count);
        Assert.Equal(7 * layers + 5 * blocks + 2, new LoraOptions { Rank = 8, TargetModules = ["all-linear", "visual"] }.Select(names).Count);
        var ex = new LoraOptions { Rank = 8, TargetModules = ["q_proj", "v_proj"], ExcludeModules = ["model.layers.0"] }.Select(names);
        Assert.Equal(2 * (layers - 1), ex.Count);
        Assert.DoesNotContain(ex, n => n.StartsWith("model.layers.0.", StringComparison.Ordinal));

        void Fails(string flag, LoraOptions o)
        {
            var e = Assert.Throws<InputException>(() => o.Validate().Select(names));
            Assert.Contains(flag, e.Message);
        }
        Fails("--target_modules", new LoraOptions { Rank = 8, TargetModules = ["qkv_proj"] });
        Fails("--target_modules", new LoraOptions { Rank = 8, TargetModules = ["visual.fc1"] });   // Qwen2-VL's name, not 2.5's
        Fails("--target_modules", new LoraOptions { Rank = 8, TargetModules = ["lm_head"] });      // tied: no such layer
        Fails("--exclude_modules", new LoraOptions { Rank = 8, ExcludeModules = ["visual"] });
        Fails("--exclude_modules", new LoraOptions { Rank = 8, TargetModules = ["q_proj"], ExcludeModules = ["q_proj"] });
        Fails("--lora_rank", new LoraOptions { Rank = -1 });
        Fails("--lora_alpha", new LoraOptions { Rank = 8, Alpha = 0 });
        Fails("--lora_dropout", new LoraOptions { Rank = 8, Dropout = 1 });
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void ThePeftFolderHasPeftsNamesAndConfigAndReadsBack(string name)
    {
        using var r = new QwenReference(name);
        using var m = Load(name);
        var lora = Attach(m, LoraOptions.AllLinear);
        RandomiseB(lora);
        using var adapted = Logits(m, r);
        string dir = TestPaths.NewTempDir("lora-peft");
        PeftAdapterFolder.Write(m, dir, "/models/base");

        // Tensor names as peft's get_peft_model_state_dict gives them for transformers ≥ 4.52's Qwen VL models.
        int layers = m.Config.Text.NumLayers;
        var expected = new Dictionary<string, long[]>();
        var t = m.Config.Text;
        long h = t.HiddenSize, q = t.NumHeads * t.HeadDim, kv = t.NumKvHeads * t.HeadDim, im = t.IntermediateSize;
        var shapes = new Dictionary<string, (long In, long Out)>
        {
            ["self_attn.q_proj"] = (h, q), ["self_attn.k_proj"] = (h, kv), ["self_attn.v_proj"] = (h, kv), ["self_attn.o_proj"] = (q, h),
            ["mlp.gate_proj"] = (h, im), ["mlp.up_proj"] = (h, im), ["mlp.down_proj"] = (im, h),
        };
        for (int l = 0; l < layers; l++)
            foreach (var (mod, (i, o)) in shapes)
            {
                expected[$"base_model.model.model.language_model.layers.{l}.{mod}.lora_A.weight"] = [4, i];
                expected[$"base_model.model.model.language_model.layers.{l}.{mod}.lora_B.weight"] = [o, 4];
            }
        using (var f = SafetensorsFile.Open(Path.Combine(dir, PeftAdapterFolder.WeightsFile)))
        {
            Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), f.Entries.Keys.Order(StringComparer.Ordinal));
            foreach (var (k, shape) in expected) Assert.Equal(shape, f.Entries[k].Shape);
        }

        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, PeftAdapterFolder.ConfigFile)))!.AsObject();
        Assert.Equal("LORA", cfg["peft_type"]!.GetValue<string>());
        Assert.Equal("CAUSAL_LM", cfg["task_type"]!.GetValue<string>());
        Assert.Equal(4, cfg["r"]!.GetValue<int>());
        Assert.Equal(16.0, cfg["lora_alpha"]!.GetValue<double>());
        Assert.Equal(0.0, cfg["lora_dropout"]!.GetValue<double>());
        Assert.Equal("none", cfg["bias"]!.GetValue<string>());
        Assert.Equal("/models/base", cfg["base_model_name_or_path"]!.GetValue<string>());
        Assert.False(cfg["use_rslora"]!.GetValue<bool>());
        Assert.False(cfg["fan_in_fan_out"]!.GetValue<bool>());

        // target_modules must make peft adapt exactly these layers in the transformers model (module names in both
        // layouts, every module: peft refuses a matched module it cannot adapt, e.g. a decoder layer named layers.0).
        var linear = m.named_modules().Select(x => x.name).Where(n => n.Length > 0).ToList();
        var adaptedSet = lora.Layers.ToHashSet();
        bool Peft(string module)
        {
            var tm = cfg["target_modules"]!;
            if (tm is JsonArray list) return list.Any(x => module == x!.GetValue<string>() || module.EndsWith("." + x!.GetValue<string>(), StringComparison.Ordinal));
            return Regex.IsMatch(module, "^(?:" + tm.GetValue<string>() + ")$");
        }
        foreach (var n in linear)
        {
            Assert.Equal(adaptedSet.Contains(n), Peft(n));
            Assert.Equal(adaptedSet.Contains(n), Peft(QwenVLModel.ToNewLayout(n)));
        }
        if (name == "qwen2vl-tiny")   // no overlap with the vision tower's names: the plain list
            Assert.Equal(LmNames.Order(StringComparer.Ordinal), cfg["target_modules"]!.AsArray().Select(x => x!.GetValue<string>()));
        else                          // Qwen2.5-VL's vision gate/up/down_proj: a regex
            Assert.IsAssignableFrom<JsonValue>(cfg["target_modules"]);

        // Read back onto a fresh base: the same logits, bit for bit (the same computation).
        using var fresh = Load(name);
        var back = PeftAdapterFolder.Attach(fresh, dir);
        Assert.Equal(lora.Layers, back.Layers);
        Assert.Equal(4, back.Rank);
        using var again = Logits(fresh, r);
        Assert.True(Same(again, adapted));
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void PeftTargetModulesSelectExactlyTheAdaptedLayersWithTheVisionTowerToo(string name)
    {
        foreach (var targets in new[] { new[] { "all-linear", "visual" }, ["q_proj", "visual.qkv"], ["gate_proj", "up_proj", "visual.merger.mlp.0"] })
        {
            using var m = Load(name);
            var lora = Attach(m, targets);
            string dir = TestPaths.NewTempDir("lora-peft-targets");
            PeftAdapterFolder.Write(m, dir, "base");
            var tm = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, PeftAdapterFolder.ConfigFile)))!["target_modules"]!;
            bool Peft(string module) => tm is JsonArray list
                ? list.Any(x => module == x!.GetValue<string>() || module.EndsWith("." + x!.GetValue<string>(), StringComparison.Ordinal))
                : Regex.IsMatch(module, "^(?:" + tm.GetValue<string>() + ")$");
            var adaptedSet = lora.Layers.ToHashSet();
            foreach (var n in m.named_modules().Select(x => x.name).Where(n => n.Length > 0))
            {
                Assert.True(adaptedSet.Contains(n) == Peft(n), $"{string.Join(" ", targets)}: {n} ({tm.ToJsonString()})");
                Assert.True(adaptedSet.Contains(n) == Peft(QwenVLModel.ToNewLayout(n)), $"{string.Join(" ", targets)}: {QwenVLModel.ToNewLayout(n)}");
            }
        }
    }

    [Fact]
    public void TheGraphPathsStaticStepRunsTheAdaptersAndSeesInPlaceUpdates()
    {
        // The CUDA-graph decode step (DecodeStatic on a StaticKvCache) run eagerly on the CPU: with adapters it gives the
        // eager loop's tokens (log-probs within 2·1e-4: logits within 1e-4, log_softmax moves at most twice that);
        // after an in-place update of the adapters (what an optimizer step does) the reused step follows them.
        using var r = new QwenReference("qwen25vl-tiny");
        using var m = Load("qwen25vl-tiny");
        var lora = Attach(m, LoraOptions.AllLinear);
        RandomiseB(lora);
        var prompts = GenerationFixture.Prompts(r);
        var sp = new SamplingParams { N = 2, Temperature = 0, MaxNewTokens = 10, Seed = 11 };
        using var engine = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = 3, StaticStepWithoutGraph = true });
        foreach (var phase in new[] { "initial", "after update" })
        {
            if (phase == "after update") RandomiseB(lora, 0.08);
            var eager = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = 3 }).Generate(prompts, sp);
            var stat = engine.Generate(prompts, sp);
            Assert.Equal(phase == "initial" ? 1 : 0, engine.LastStats.GraphCaptures);
            for (int i = 0; i < eager.Count; i++)
            {
                Assert.Equal(eager[i].TokenIds, stat[i].TokenIds);
                for (int j = 0; j < eager[i].LogProbs.Length; j++)
                    Assert.True(Math.Abs(eager[i].LogProbs[j] - stat[i].LogProbs[j]) <= 2 * Numerics.Fp32, $"{phase} {i}/{j}");
            }
        }
    }

    [Fact]
    public void GenerationWithAdaptersGivesTheLogProbsOfASeparateForward()
    {
        using var r = new QwenReference("qwen2vl-tiny");
        using var m = Load("qwen2vl-tiny");
        RandomiseB(Attach(m, LoraOptions.AllLinear));
        var prompts = GenerationFixture.Prompts(r);
        var p = new SamplingParams { N = 2, MaxNewTokens = 12, Temperature = 1.0, Seed = 5 };
        var outs = new GenerationEngine(m, new GenerationEngineOptions { CheckEvery = 2 }).Generate(prompts, p);
        var recomputed = GenerationFixture.RecomputeLogProbs(m, prompts, outs, 1.0);
        for (int i = 0; i < outs.Count; i++)
            for (int j = 0; j < outs[i].ResponseLength; j++)
                Assert.True(Math.Abs(outs[i].LogProbs[j] - recomputed[i][j]) <= Numerics.Fp32,
                    $"sample {i} token {j}: {outs[i].LogProbs[j]} vs {recomputed[i][j]}");
    }
}
