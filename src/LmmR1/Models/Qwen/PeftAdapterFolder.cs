// A PEFT LoRA adapter folder, as peft's save_pretrained writes it and PeftModel.from_pretrained reads it:
//   adapter_config.json        LoraConfig fields (peft_type LORA, task_type CAUSAL_LM, r, lora_alpha, lora_dropout,
//                              target_modules, base_model_name_or_path, bias none, …)
//   adapter_model.safetensors  base_model.model.{module}.lora_A.weight [r, in] and .lora_B.weight [out, r], in the
//                              adapters' dtype, {module} named as the transformers model names it: for the VL
//                              families the ≥ 4.52 layout (model.language_model.layers.N…, model.visual.blocks.N…),
//                              for plain Qwen2 model.layers.N….
// Reading accepts both layouts (and the adapter-name infix ".default." peft uses in memory) and takes the adapted
// layers from the tensor names, so an adapter written by peft for these models loads too (rank from lora_A's shape,
// scale lora_alpha / r; use_rslora, DoRA and per-layer rank/alpha patterns are refused).
using System.Text.Json;
using System.Text.Json.Nodes;
using LmmR1.Infrastructure;
using LmmR1.Models.Safetensors;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public static class PeftAdapterFolder
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";
    public const string Prefix = "base_model.model.";

    /// <summary>The PEFT tensor name of an adapter parameter with our (classic) name.</summary>
    public static string PeftName(QwenVLModel model, string classic) =>
        Prefix + (model.Config.Vision is null ? classic : QwenVLModel.ToNewLayout(classic));

    /// <summary>Our classic name of a PEFT tensor name (either layout).</summary>
    public static string ClassicName(string peft)
    {
        string n = peft.StartsWith(Prefix, StringComparison.Ordinal) ? peft[Prefix.Length..] : peft;
        n = n.Replace(".lora_A.default.", ".lora_A.", StringComparison.Ordinal).Replace(".lora_B.default.", ".lora_B.", StringComparison.Ordinal);
        if (n.StartsWith("model.language_model.", StringComparison.Ordinal)) return "model." + n["model.language_model.".Length..];
        if (n.StartsWith("model.visual.", StringComparison.Ordinal)) return n["model.".Length..];
        return n;
    }

    /// <summary>Writes adapter_config.json and adapter_model.safetensors into <paramref name="dir"/> (created).</summary>
    public static void Write(QwenVLModel model, string dir, string baseModelNameOrPath)
    {
        var lora = model.Lora ?? throw new InvalidOperationException("the model has no LoRA adapters");
        Directory.CreateDirectory(dir);
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (layer, a, b) in lora.Adapters)
        {
            tensors.Add(new(PeftName(model, layer + ".lora_A.weight"), a));
            tensors.Add(new(PeftName(model, layer + ".lora_B.weight"), b));
        }
        SafetensorsWriter.Write(Path.Combine(dir, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.WriteAllText(Path.Combine(dir, ConfigFile), ConfigJson(model, baseModelNameOrPath));
    }

    /// <summary>adapter_config.json for the model's adapters (the fields peft's LoraConfig has had since 0.10).</summary>
    public static string ConfigJson(QwenVLModel model, string baseModelNameOrPath)
    {
        var lora = model.Lora ?? throw new InvalidOperationException("the model has no LoRA adapters");
        var targets = LoraLayout.PeftTargetModules(lora.Layers, model.LinearLayerNames(),
            model.named_modules().Select(m => m.name).Where(n => n.Length > 0).ToList());
        var obj = new JsonObject
        {
            ["alpha_pattern"] = new JsonObject(),
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = baseModelNameOrPath,
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["init_lora_weights"] = true,
            ["layers_pattern"] = null,
            ["layers_to_transform"] = null,
            ["lora_alpha"] = JsonValue.Create(lora.Alpha),
            ["lora_dropout"] = JsonValue.Create(lora.Dropout),
            ["modules_to_save"] = null,
            ["peft_type"] = "LORA",
            ["r"] = lora.Rank,
            ["rank_pattern"] = new JsonObject(),
            ["revision"] = null,
            ["target_modules"] = targets is string regex ? JsonValue.Create(regex) : new JsonArray(((List<string>)targets).Select(t => (JsonNode)t).ToArray()),
            ["task_type"] = "CAUSAL_LM",
            ["use_dora"] = false,
            ["use_rslora"] = false,
        };
        return obj.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });
    }

    /// <summary>Attaches the adapters of a PEFT folder to a model without adapters (the layers from the tensor names)
    /// and fills them. Returns the adapters.</summary>
    public static LoraAdapters Attach(QwenVLModel model, string dir)
    {
        var (alpha, dropout) = ReadConfig(dir);
        string path = Path.Combine(dir, WeightsFile);
        if (!File.Exists(path)) throw InputException.At(path, null, "--adapter", "adapter_model.safetensors not found");
        using var f = SafetensorsFile.Open(path);
        var layers = new List<string>();
        int rank = -1;
        foreach (var name in f.Entries.Keys)
        {
            string classic = ClassicName(name);
            if (!classic.EndsWith(".lora_A.weight", StringComparison.Ordinal)) continue;
            layers.Add(classic[..^".lora_A.weight".Length]);
            int r = (int)f.Entries[name].Shape[0];
            if (rank >= 0 && r != rank) throw InputException.At(path, null, "--adapter", $"'{name}' has rank {r}, others {rank} (per-layer ranks are not supported)");
            rank = r;
        }
        if (layers.Count == 0) throw InputException.At(path, null, "--adapter", "no lora_A tensors in the file");
        var known = model.LinearLayerNames().ToHashSet(StringComparer.Ordinal);
        var order = model.LinearLayerNames().Where(layers.Contains).ToList();
        foreach (var l in layers)
            if (!known.Contains(l)) throw InputException.At(path, null, "--adapter", $"adapter for '{l}', which is not a linear layer of this model");
        var adapters = model.AttachLora(order, rank, alpha, dropout, seed: 0);
        Fill(model, dir, f);
        return adapters;
    }

    /// <summary>Copies a PEFT folder's tensors into the model's existing adapters: the same layers and shapes are
    /// required (resume).</summary>
    public static void LoadInto(QwenVLModel model, string dir)
    {
        var lora = model.Lora ?? throw new InvalidOperationException("the model has no LoRA adapters");
        var (alpha, _) = ReadConfig(dir);
        if (alpha != lora.Alpha)
            throw InputException.At(Path.Combine(dir, ConfigFile), null, "--lora_alpha", $"the adapter has lora_alpha {alpha}, this run {lora.Alpha}");
        using var f = SafetensorsFile.Open(Path.Combine(dir, WeightsFile));
        Fill(model, dir, f);
    }

    static void Fill(QwenVLModel model, string dir, SafetensorsFile f)
    {
        var lora = model.Lora!;
        var byClassic = f.Entries.Keys.ToDictionary(ClassicName, n => n, StringComparer.Ordinal);
        int expected = 0;
        using var noGrad = torch.no_grad();
        foreach (var (layer, a, b) in lora.Adapters)
            foreach (var (suffix, p) in new[] { (".lora_A.weight", a), (".lora_B.weight", b) })
            {
                expected++;
                if (!byClassic.TryGetValue(layer + suffix, out var name))
                    throw InputException.At(Path.Combine(dir, WeightsFile), null, "--lora_rank", $"'{PeftName(model, layer + suffix)}' is missing (the adapter adapts other layers)");
                var e = f.Entries[name];
                if (!e.Shape.SequenceEqual(p.shape))
                    throw InputException.At(Path.Combine(dir, WeightsFile), null, "--lora_rank",
                        $"'{name}' has shape [{string.Join(",", e.Shape)}], this run's adapter [{string.Join(",", p.shape)}]");
                f.CopyInto(name, p);
            }
        if (byClassic.Count != expected)
            throw InputException.At(Path.Combine(dir, WeightsFile), null, "--target_modules",
                $"the file holds {byClassic.Count} tensors, this run's adapters {expected} (other --target_modules?)");
    }

    static (double Alpha, double Dropout) ReadConfig(string dir)
    {
        string path = Path.Combine(dir, ConfigFile);
        if (!File.Exists(path)) throw InputException.At(path, null, "--adapter", "adapter_config.json not found (not a PEFT adapter folder)");
        JsonObject cfg;
        try { cfg = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new JsonException("not an object"); }
        catch (JsonException e) { throw InputException.At(path, null, "--adapter", $"unreadable JSON ({e.Message})"); }
        string? type = cfg["peft_type"]?.GetValue<string>();
        if (type != "LORA") throw InputException.At(path, null, "peft_type", $"expected LORA, got {type ?? "nothing"}");
        foreach (var flag in new[] { "use_rslora", "use_dora" })
            if (cfg[flag]?.GetValue<bool>() == true) throw InputException.At(path, null, flag, "is not supported");
        foreach (var pattern in new[] { "rank_pattern", "alpha_pattern" })
            if (cfg[pattern] is JsonObject o && o.Count > 0) throw InputException.At(path, null, pattern, "per-layer ranks / alphas are not supported");
        if (cfg["bias"]?.GetValue<string>() is { } bias && bias != "none") throw InputException.At(path, null, "bias", $"only 'none' is supported, got '{bias}'");
        double alpha = cfg["lora_alpha"]?.GetValue<double>() ?? throw InputException.At(path, null, "lora_alpha", "missing");
        double dropout = cfg["lora_dropout"]?.GetValue<double>() ?? 0;
        return (alpha, dropout);
    }
}
