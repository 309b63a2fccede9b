// A model's weights as Hugging Face stores them: one model.safetensors, or shards listed by
// model.safetensors.index.json. Resolves tensor names to shards and checks that index and shards agree
// (a shard missing, a tensor listed but absent, a tensor present but unlisted, a name in two shards).
using System.Text.Json;
using LmmR1.Infrastructure;
using TorchSharp;

namespace LmmR1.Models.Safetensors;

public sealed class SafetensorsCheckpoint : IDisposable
{
    public const string IndexFileName = "model.safetensors.index.json";
    public const string SingleFileName = "model.safetensors";

    readonly Dictionary<string, SafetensorsFile> byTensor;
    readonly List<SafetensorsFile> files;

    public string Source { get; }
    public IReadOnlyCollection<string> Names => byTensor.Keys;
    public IReadOnlyList<SafetensorsFile> Files => files;

    SafetensorsCheckpoint(string source, List<SafetensorsFile> files, Dictionary<string, SafetensorsFile> byTensor)
    {
        Source = source; this.files = files; this.byTensor = byTensor;
    }

    /// <summary>Opens a folder (index, model.safetensors, or all *.safetensors) or a single .safetensors file.</summary>
    public static SafetensorsCheckpoint Open(string path)
    {
        if (File.Exists(path)) return FromFiles(path, [path]);
        if (!Directory.Exists(path)) throw new InputException($"{path}: no such checkpoint file or folder");
        string index = Path.Combine(path, IndexFileName);
        if (File.Exists(index)) return FromIndex(index);
        string single = Path.Combine(path, SingleFileName);
        if (File.Exists(single)) return FromFiles(path, [single]);
        var all = Directory.GetFiles(path, "*.safetensors").Order(StringComparer.Ordinal).ToArray();
        if (all.Length == 0)
            throw new InputException($"{path}: no {SingleFileName}, {IndexFileName} or *.safetensors weights in this folder");
        return FromFiles(path, all);
    }

    static SafetensorsCheckpoint FromFiles(string source, string[] paths)
    {
        var files = new List<SafetensorsFile>();
        var byTensor = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            foreach (var p in paths)
            {
                var f = SafetensorsFile.Open(p);
                files.Add(f);
                foreach (var name in f.Entries.Keys)
                    if (!byTensor.TryAdd(name, f))
                        throw new InputException($"{p}: tensor '{name}' also appears in {byTensor[name].Path}");
            }
        }
        catch { files.ForEach(f => f.Dispose()); throw; }
        return new SafetensorsCheckpoint(source, files, byTensor);
    }

    static SafetensorsCheckpoint FromIndex(string index)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(index))!;
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(index));
            if (!doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw new InputException($"{index}: missing 'weight_map' object");
            weightMap = wm.EnumerateObject().ToDictionary(p => p.Name,
                p => p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()!
                    : throw new InputException($"{index}: weight_map['{p.Name}'] must be a file name"), StringComparer.Ordinal);
        }
        catch (JsonException e) { throw new InputException($"{index}: not valid JSON ({e.Message})"); }

        var shardNames = weightMap.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToArray();
        foreach (var s in shardNames)
            if (!File.Exists(Path.Combine(dir, s)))
            {
                string example = weightMap.First(kv => kv.Value == s).Key;
                throw new InputException($"{index}: shard '{s}' (holding e.g. '{example}') is missing from {dir}");
            }
        var ckpt = FromFiles(dir, shardNames.Select(s => Path.Combine(dir, s)).ToArray());
        try
        {
            foreach (var (name, shard) in weightMap)
            {
                if (!ckpt.byTensor.TryGetValue(name, out var f))
                    throw new InputException($"{index}: tensor '{name}' is listed in shard '{shard}' but missing from it");
                if (Path.GetFileName(f.Path) != shard)
                    throw new InputException($"{index}: tensor '{name}' is listed in shard '{shard}' but stored in '{Path.GetFileName(f.Path)}'");
            }
            foreach (var name in ckpt.byTensor.Keys)
                if (!weightMap.ContainsKey(name))
                    throw new InputException($"{ckpt.byTensor[name].Path}: tensor '{name}' is not listed in {index}");
        }
        catch { ckpt.Dispose(); throw; }
        return ckpt;
    }

    public bool Contains(string name) => byTensor.ContainsKey(name);

    public SafetensorsEntry Entry(string name) => FileOf(name).Entry(name);

    public SafetensorsFile FileOf(string name) =>
        byTensor.TryGetValue(name, out var f) ? f : throw new InputException($"{Source}: tensor '{name}' not found in the checkpoint");

    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null) =>
        FileOf(name).Load(name, dtype, device);

    public void CopyInto(string name, torch.Tensor destination) => FileOf(name).CopyInto(name, destination);

    public void Dispose() { foreach (var f in files) f.Dispose(); }
}
