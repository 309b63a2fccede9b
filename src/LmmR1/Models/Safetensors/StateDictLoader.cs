// Loads a checkpoint into a module's parameters and buffers by name, strictly: every model tensor must be found
// (after the caller's key mapping), every checkpoint tensor must be used or explicitly ignored, and shapes must
// match exactly (TorchSharp's own load_state_dict broadcasts mismatched shapes silently and names no keys).
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Safetensors;

public static class StateDictLoader
{
    /// <param name="module">The model; its state_dict names are the canonical names.</param>
    /// <param name="checkpoint">Where to read from.</param>
    /// <param name="toCheckpointName">Maps a model name to the checkpoint name to read (or null: the model tensor is
    /// filled some other way, e.g. a tied weight). Defaults to identity.</param>
    /// <param name="ignoreUnused">Checkpoint names that may stay unused (e.g. a tied lm_head.weight).</param>
    public static void Load(nn.Module module, SafetensorsCheckpoint checkpoint,
                            Func<string, string?>? toCheckpointName = null, Func<string, bool>? ignoreUnused = null)
    {
        var state = module.state_dict();
        var used = new HashSet<string>(StringComparer.Ordinal);
        var missing = new List<string>();
        var plan = new List<(string ckptName, Tensor dest)>();
        foreach (var (name, tensor) in state)
        {
            string? src = toCheckpointName is null ? name : toCheckpointName(name);
            if (src is null) continue;
            if (!checkpoint.Contains(src)) { missing.Add(src == name ? name : $"{src} (for {name})"); continue; }
            var entry = checkpoint.Entry(src);
            if (!entry.Shape.SequenceEqual(tensor.shape))
                throw new InputException($"{checkpoint.FileOf(src).Path}: tensor '{src}': shape mismatch: checkpoint has [{string.Join(",", entry.Shape)}], " +
                                         $"the model built from config.json expects [{string.Join(",", tensor.shape)}]");
            used.Add(src);
            plan.Add((src, tensor));
        }
        if (missing.Count > 0)
            throw new InputException($"{checkpoint.Source}: {missing.Count} tensor(s) the model needs are missing from the checkpoint: " +
                                     string.Join(", ", missing.Take(10)) + (missing.Count > 10 ? ", …" : ""));
        var unexpected = checkpoint.Names.Where(n => !used.Contains(n) && !(ignoreUnused?.Invoke(n) ?? false)).Order(StringComparer.Ordinal).ToList();
        if (unexpected.Count > 0)
            throw new InputException($"{checkpoint.Source}: {unexpected.Count} unexpected tensor(s) in the checkpoint (config.json and weights disagree?): " +
                                     string.Join(", ", unexpected.Take(10)) + (unexpected.Count > 10 ? ", …" : ""));
        foreach (var (src, dest) in plan) checkpoint.CopyInto(src, dest);
    }
}
