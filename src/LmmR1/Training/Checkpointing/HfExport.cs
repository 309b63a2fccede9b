// A Hugging Face model folder that transformers and `lmmr1` load unchanged (--save_path at the end, and
// {ckpt_path}/global_step{N}_hf with --save_hf_ckpt, as upstream): config.json in the released flat layout,
// generation_config.json, model.safetensors (shards + index above 5 GB), the tokenizer files of --pretrain,
// chat_template.json holding the Jinja template our ChatTemplate implements (as Qwen2-VL checkpoints ship it) and
// preprocessor_config.json for Qwen2VLImageProcessor with the run's min/max pixels. Written into a temporary sibling
// folder, fsynced and renamed, so a kill leaves the previous export or the new one, never a mix.
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Text;
using LmmR1.Vision;

namespace LmmR1.Training.Checkpointing;

public static class HfExport
{
    public const string ChatTemplateFile = "chat_template.json";
    public const string PreprocessorFile = "preprocessor_config.json";

    /// <summary>Tokenizer files copied from --pretrain when present (the chat template and the image processor
    /// settings are written from what the run used instead).</summary>
    public static readonly string[] TokenizerFiles =
        ["tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json"];

    /// <summary>Files every export holds (weights: model.safetensors or shards + model.safetensors.index.json).</summary>
    public static readonly string[] RequiredFiles =
        ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", ChatTemplateFile, PreprocessorFile];

    /// <summary>Writes the export into <paramref name="dir"/> (created; stale weight shards are removed).</summary>
    public static void WriteInto(QwenVLModel model, string dir, string tokenizerDir, ImageProcessorOptions image)
    {
        Directory.CreateDirectory(dir);
        model.SaveHf(dir);
        foreach (var name in TokenizerFiles)
        {
            string src = Path.Combine(tokenizerDir, name);
            if (File.Exists(src) && Path.GetFullPath(src) != Path.GetFullPath(Path.Combine(dir, name)))
                File.Copy(src, Path.Combine(dir, name), overwrite: true);
        }
        // A chat_template.jinja from --pretrain would take precedence over ours in transformers: drop it.
        string jinja = Path.Combine(dir, "chat_template.jinja");
        if (File.Exists(jinja)) File.Delete(jinja);
        AtomicFile.WriteAllText(Path.Combine(dir, ChatTemplateFile), ChatTemplateJson());
        AtomicFile.WriteAllText(Path.Combine(dir, PreprocessorFile), PreprocessorConfigJson(image, model.Config.Family));
        CompleteGenerationConfig(dir);
    }

    /// <summary>Fills the token ids generation_config.json lacks (a --pretrain folder without one, or one without
    /// eos_token_id) from the exported tokenizer as Qwen's files set them: eos [&lt;|im_end|&gt;, &lt;|endoftext|&gt;],
    /// bos and pad &lt;|endoftext|&gt;. Ids already there are kept; without those tokens nothing is added.</summary>
    public static void CompleteGenerationConfig(string dir)
    {
        string path = Path.Combine(dir, QwenVLConfig.GenerationFileName);
        var g = File.Exists(path) ? JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? [] : [];
        bool Missing(string key) => g[key] is null;
        if (!(Missing("eos_token_id") || Missing("bos_token_id") || Missing("pad_token_id")) || !File.Exists(Path.Combine(dir, "tokenizer.json"))) return;
        var tok = QwenTokenizer.Load(dir);
        bool changed = false;
        if (tok.TryTokenToId("<|endoftext|>", out int endOfText))
        {
            if (Missing("bos_token_id")) { g["bos_token_id"] = endOfText; changed = true; }
            if (Missing("pad_token_id")) { g["pad_token_id"] = endOfText; changed = true; }
        }
        if (Missing("eos_token_id"))
        {
            var eos = new[] { "<|im_end|>", "<|endoftext|>" }.Select(t => tok.TryTokenToId(t, out int id) ? id : -1).Where(id => id >= 0).ToArray();
            if (eos.Length > 0) { g["eos_token_id"] = new JsonArray(eos.Select(id => (JsonNode)id).ToArray()); changed = true; }
        }
        if (changed) AtomicFile.WriteAllText(path, g.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Writes the export as folder <paramref name="dir"/> atomically: a temporary sibling, fsync, rename (an
    /// existing folder is moved aside first and deleted after).</summary>
    public static void WriteAtomic(QwenVLModel model, string dir, string tokenizerDir, ImageProcessorOptions image, Action? beforeRename = null)
    {
        string full = Path.GetFullPath(dir);
        string parent = Path.GetDirectoryName(full)!;
        string name = Path.GetFileName(full);
        Directory.CreateDirectory(parent);
        PutBackMovedAside(parent, name);
        foreach (var stale in Directory.EnumerateDirectories(parent, $".{name}.tmp-*")) TryDelete(stale);
        string tmp = Path.Combine(parent, $".{name}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            WriteInto(model, tmp, tokenizerDir, image);
            CheckpointStore.SyncTree(tmp);
            beforeRename?.Invoke();
            AtomicFile.ReplaceDirectory(tmp, full);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    /// <summary>Whether <paramref name="dir"/> holds a whole export: every required file and the weights (the single
    /// file, or an index whose shards are all present).</summary>
    public static bool IsComplete(string dir)
    {
        if (!RequiredFiles.All(f => File.Exists(Path.Combine(dir, f)))) return false;
        if (File.Exists(Path.Combine(dir, Models.Safetensors.SafetensorsCheckpoint.SingleFileName))) return true;
        string index = Path.Combine(dir, Models.Safetensors.SafetensorsCheckpoint.IndexFileName);
        if (!File.Exists(index)) return false;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            return doc.RootElement.GetProperty("weight_map").EnumerateObject()
                .Select(p => p.Value.GetString()).Distinct().All(s => s is not null && File.Exists(Path.Combine(dir, s)));
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or IOException) { return false; }
    }

    /// <summary>A kill between ReplaceDirectory's two renames leaves no {name}, only the previous export moved aside
    /// (.{name}.tmp-old-*): a complete one is renamed back instead of being swept away with the debris.</summary>
    static void PutBackMovedAside(string parent, string name)
    {
        string final = Path.Combine(parent, name);
        foreach (var old in Directory.EnumerateDirectories(parent, $".{name}.tmp-old-*"))
        {
            if (Directory.Exists(final) || !IsComplete(old)) continue;
            Directory.Move(old, final);
            AtomicFile.SyncDirectory(parent);
        }
    }

    /// <summary>Writes the export into a folder that holds other files too (--save_path: metrics, plots, config): the
    /// files go to a temporary subfolder first, are fsynced, then renamed into place one by one (config.json last).</summary>
    public static void WriteIntoRunFolder(QwenVLModel model, string dir, string tokenizerDir, ImageProcessorOptions image) =>
        IntoRunFolder(dir, tmp => WriteInto(model, tmp, tokenizerDir, image));

    /// <summary>LoRA's final save: the PEFT adapter folder (adapter_config.json, adapter_model.safetensors) plus the
    /// tokenizer files, into the run folder the same way as <see cref="WriteIntoRunFolder"/>.</summary>
    public static void WriteAdapterIntoRunFolder(QwenVLModel model, string dir, string tokenizerDir, string baseModelNameOrPath) =>
        IntoRunFolder(dir, tmp =>
        {
            PeftAdapterFolder.Write(model, tmp, baseModelNameOrPath);
            foreach (var name in TokenizerFiles)
                if (File.Exists(Path.Combine(tokenizerDir, name))) File.Copy(Path.Combine(tokenizerDir, name), Path.Combine(tmp, name), overwrite: true);
            AtomicFile.WriteAllText(Path.Combine(tmp, ChatTemplateFile), ChatTemplateJson());
        });

    static void IntoRunFolder(string dir, Action<string> write)
    {
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".export.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(tmp);
            write(tmp);
            CheckpointStore.SyncTree(tmp);
            Runs.RunHooks.Reach("final-export-written", 0);
            var files = Directory.GetFiles(tmp).Select(Path.GetFileName).OrderBy(n => n == "config.json" ? 1 : 0).ToList();
            foreach (var stale in Directory.EnumerateFiles(dir, "model*.safetensors*"))
                if (!files.Contains(Path.GetFileName(stale))) File.Delete(stale);
            if (File.Exists(Path.Combine(dir, "chat_template.jinja"))) File.Delete(Path.Combine(dir, "chat_template.jinja"));
            foreach (var f in files) File.Move(Path.Combine(tmp, f!), Path.Combine(dir, f!), overwrite: true);
            AtomicFile.SyncDirectory(dir);
        }
        finally
        {
            TryDelete(tmp);
        }
    }

    /// <summary>{"chat_template": "…"} as Qwen2-VL / Qwen2.5-VL checkpoints ship it.</summary>
    public static string ChatTemplateJson() =>
        new JsonObject { ["chat_template"] = ChatTemplate.Jinja }.ToJsonString(new JsonSerializerOptions
        {
            WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });

    /// <summary>preprocessor_config.json of Qwen2VLImageProcessor with the run's settings. Both the released keys
    /// (min_pixels / max_pixels) and transformers' size {shortest_edge, longest_edge} are written, so old and new
    /// transformers read the same limits.</summary>
    public static string PreprocessorConfigJson(ImageProcessorOptions o, QwenFamily family)
    {
        // The released files' decimal constants (CLIP's mean/std) when the run used them, else the floats' shortest form.
        JsonArray Floats(float[] v, double[] released) => new((v.SequenceEqual(released.Select(x => (float)x))
            ? released : v.Select(x => double.Parse(x.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)).ToArray())
            .Select(x => (JsonNode)JsonValue.Create(x)).ToArray());
        var obj = new JsonObject
        {
            ["do_convert_rgb"] = true,
            ["do_normalize"] = true,
            ["do_rescale"] = true,
            ["do_resize"] = true,
            ["image_mean"] = Floats(o.ImageMean, [0.48145466, 0.4578275, 0.40821073]),
            ["image_std"] = Floats(o.ImageStd, [0.26862954, 0.26130258, 0.27577711]),
            ["image_processor_type"] = "Qwen2VLImageProcessor",
            ["max_pixels"] = o.MaxPixels,
            ["merge_size"] = o.MergeSize,
            ["min_pixels"] = o.MinPixels,
            ["patch_size"] = o.PatchSize,
            ["processor_class"] = family == QwenFamily.Qwen25VL ? "Qwen2_5_VLProcessor" : "Qwen2VLProcessor",
            ["resample"] = 3,
            ["rescale_factor"] = 1.0 / 255,
            ["size"] = new JsonObject { ["longest_edge"] = o.MaxPixels, ["shortest_edge"] = o.MinPixels },
            ["temporal_patch_size"] = o.TemporalPatchSize,
        };
        return obj.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    static void TryDelete(string dir) => AtomicFile.TryDeleteDirectory(dir);
}
