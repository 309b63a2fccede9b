// Writes tensors as safetensors, the format transformers loads: an 8-byte little-endian header length, a JSON
// header padded with spaces to 8 bytes, then the raw little-endian data. Files are written to a temporary
// name, fsynced and renamed, so a crash never leaves a half-written file under the final name. Checkpoints
// above the shard size are split into model-0000i-of-0000n.safetensors plus model.safetensors.index.json.
using System.Text;
using System.Text.Json;
using LmmR1.Infrastructure;
using TorchSharp;

namespace LmmR1.Models.Safetensors;

public static class SafetensorsWriter
{
    /// <summary>Hugging Face's default max_shard_size ("5GB").</summary>
    public const long DefaultShardBytes = 5_000_000_000;

    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
                             IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, _) in list)
            if (!seen.Add(name)) throw new ArgumentException($"duplicate tensor name '{name}'");

        var entries = new List<SafetensorsEntry>(list.Count);
        long offset = 0;
        foreach (var (name, t) in list)
        {
            var dtype = SafetensorsDTypes.FromScalarType(t.dtype);
            long bytes = t.numel() * dtype.ElementSize();
            entries.Add(new SafetensorsEntry(name, dtype, t.shape, offset, offset + bytes));
            offset += bytes;
        }
        byte[] header = Encoding.UTF8.GetBytes(SafetensorsFile.HeaderJson(entries, metadata));
        int padded = (header.Length + 7) / 8 * 8;

        AtomicFile.Write(path, fs =>
        {
            fs.Write(BitConverter.GetBytes((ulong)padded));
            fs.Write(header);
            for (int i = header.Length; i < padded; i++) fs.WriteByte((byte)' ');
            foreach (var (_, t) in list) WriteData(fs, t);
        });
    }

    static unsafe void WriteData(Stream fs, torch.Tensor t)
    {
        if (t.numel() == 0) return;
        using var scope = torch.NewDisposeScope();
        var cpu = t.detach().cpu().contiguous();
        long bytes = cpu.numel() * cpu.ElementSize;
        byte* p = (byte*)NativeTensors.DataPointer(cpu);
        for (long done = 0; done < bytes;)
        {
            int n = (int)Math.Min(bytes - done, 1 << 26);
            fs.Write(new ReadOnlySpan<byte>(p + done, n));
            done += n;
        }
    }

    /// <summary>
    /// Writes a Hugging Face model folder's weights: one model.safetensors, or shards plus an index when the total
    /// exceeds <paramref name="maxShardBytes"/>. Stale weight files from an earlier save in the folder are removed.
    /// </summary>
    public static void WriteCheckpoint(string dir, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors,
                                       long maxShardBytes = DefaultShardBytes)
    {
        Directory.CreateDirectory(dir);
        var list = tensors.ToList();
        long Size(torch.Tensor t) => t.numel() * t.ElementSize;
        long total = list.Sum(kv => Size(kv.Value));
        var meta = new Dictionary<string, string> { ["format"] = "pt" };
        var shards = new List<List<KeyValuePair<string, torch.Tensor>>>();
        if (total <= maxShardBytes) shards.Add(list);
        else
        {
            var cur = new List<KeyValuePair<string, torch.Tensor>>(); long curBytes = 0;
            foreach (var kv in list)
            {
                if (cur.Count > 0 && curBytes + Size(kv.Value) > maxShardBytes) { shards.Add(cur); cur = []; curBytes = 0; }
                cur.Add(kv); curBytes += Size(kv.Value);
            }
            if (cur.Count > 0) shards.Add(cur);
        }
        foreach (var stale in Directory.EnumerateFiles(dir, "model*.safetensors*")) File.Delete(stale);
        if (shards.Count == 1) { Write(Path.Combine(dir, "model.safetensors"), list, meta); return; }

        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < shards.Count; i++)
        {
            string file = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            Write(Path.Combine(dir, file), shards[i], meta);
            foreach (var (name, _) in shards[i]) weightMap[name] = file;
        }
        var index = new { metadata = new { total_size = total }, weight_map = weightMap };
        AtomicFile.WriteAllText(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName),
            JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
    }
}
