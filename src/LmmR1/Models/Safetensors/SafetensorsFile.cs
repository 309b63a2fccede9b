// One .safetensors file, opened memory-mapped: the header is parsed and validated up front (dtypes, shapes,
// offsets inside the file, no overlaps or holes), tensors are read lazily straight from the mapping into a
// tensor of the caller's dtype/device, one mapped window at a time (no second full copy in RAM).
using System.IO.MemoryMappedFiles;
using System.Text;
using System.Text.Json;
using LmmR1.Infrastructure;
using TorchSharp;

namespace LmmR1.Models.Safetensors;

/// <summary>Where one tensor lives: byte offsets are relative to the start of the data section.</summary>
public sealed record SafetensorsEntry(string Name, SafetensorsDType DType, long[] Shape, long Begin, long End)
{
    public long NumElements => Shape.Aggregate(1L, (a, b) => a * b);
    public long ByteLength => End - Begin;
}

public sealed class SafetensorsFile : IDisposable
{
    const long MaxHeaderBytes = 100L << 20; // the reference implementation's limit

    readonly MemoryMappedFile? map;
    readonly long dataStart;

    public string Path { get; }
    public IReadOnlyDictionary<string, SafetensorsEntry> Entries { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    SafetensorsFile(string path, MemoryMappedFile? map, long dataStart,
                    Dictionary<string, SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        Path = path; this.map = map; this.dataStart = dataStart; Entries = entries; Metadata = metadata;
    }

    public static SafetensorsFile Open(string path)
    {
        if (!File.Exists(path)) throw new InputException($"{path}: safetensors file not found");
        try { return OpenChecked(path); }
        catch (Exception e) when (IoErrors.IsIo(e)) { throw new InputException($"{path}: cannot read the safetensors file: {IoErrors.Reason(e)}", e); }
    }

    static SafetensorsFile OpenChecked(string path)
    {
        long fileLength = new FileInfo(path).Length;
        if (fileLength < 8) throw new InputException($"{path}: truncated safetensors file ({fileLength} bytes, the 8-byte header length is missing)");
        byte[] header;
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            Span<byte> len = stackalloc byte[8];
            fs.ReadExactly(len);
            ulong n = BitConverter.ToUInt64(len);
            if (n > (ulong)MaxHeaderBytes)
                throw new InputException($"{path}: corrupt safetensors header: declared header length {n} exceeds {MaxHeaderBytes} bytes");
            if (8 + (long)n > fileLength)
                throw new InputException($"{path}: truncated safetensors file: header declares {n} bytes but the file has {fileLength - 8} after the length field");
            header = new byte[n];
            fs.ReadExactly(header);
        }
        long dataStart = 8 + header.Length, dataLength = fileLength - dataStart;
        var (entries, metadata) = ParseHeader(path, header, dataLength);
        var map = dataLength > 0
            ? MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read)
            : null;
        return new SafetensorsFile(path, map, dataStart, entries, metadata);
    }

    static (Dictionary<string, SafetensorsEntry>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        // JsonDocument does not validate the UTF-8 inside strings; reading a tensor name would then throw.
        if (StrictUtf8.FirstInvalidByte(header) is var bad and >= 0)
            throw new InputException($"{path}: corrupt safetensors header: {StrictUtf8.DescribeInvalid(header, bad, 8)}");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header.AsMemory().TrimEnd((byte)' ')); }
        catch (JsonException e) { throw new InputException($"{path}: corrupt safetensors header: not valid JSON ({e.Message})"); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object)
            throw new InputException($"{path}: corrupt safetensors header: expected a JSON object");
        var entries = new Dictionary<string, SafetensorsEntry>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__")
            {
                if (p.Value.ValueKind != JsonValueKind.Object)
                    throw new InputException($"{path}: __metadata__ must be an object of strings");
                foreach (var m in p.Value.EnumerateObject())
                    metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()!
                        : throw new InputException($"{path}: __metadata__.{m.Name} must be a string");
                continue;
            }
            entries[p.Name] = ParseEntry(path, p.Name, p.Value, dataLength);
        }
        // The data section must be covered exactly: sorted by offset, each tensor starts where the previous ended.
        long cursor = 0;
        foreach (var e in entries.Values.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin < cursor)
                throw new InputException($"{path}: tensor '{e.Name}': header/offset mismatch: bytes [{e.Begin},{e.End}) overlap the previous tensor (ends at {cursor})");
            if (e.Begin > cursor)
                throw new InputException($"{path}: tensor '{e.Name}': header/offset mismatch: a hole of {e.Begin - cursor} bytes before it");
            cursor = e.End;
        }
        if (cursor != dataLength)
            throw new InputException(cursor < dataLength
                ? $"{path}: header/offset mismatch: tensors cover {cursor} bytes but the data section has {dataLength} (trailing bytes)"
                : $"{path}: truncated safetensors file: tensors need {cursor} data bytes but only {dataLength} are present");
        return (entries, metadata);
    }

    static SafetensorsEntry ParseEntry(string path, string name, JsonElement v, long dataLength)
    {
        string where = $"{path}: tensor '{name}'";
        if (v.ValueKind != JsonValueKind.Object) throw new InputException($"{where}: header entry must be an object");
        if (!v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw new InputException($"{where}: missing 'dtype'");
        if (!SafetensorsDTypes.TryParse(dt.GetString()!, out var dtype))
            throw new InputException($"{where}: unsupported dtype '{dt.GetString()}' (supported: {string.Join(", ", Enum.GetNames<SafetensorsDType>())})");
        if (!v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw new InputException($"{where}: missing 'shape'");
        var shape = new long[sh.GetArrayLength()];
        int i = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long x) || x < 0)
                throw new InputException($"{where}: shape must hold non-negative integers");
            shape[i++] = x;
        }
        if (!v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw new InputException($"{where}: 'data_offsets' must be [begin, end]");
        long begin = off[0].TryGetInt64(out long b0) ? b0 : -1, end = off[1].TryGetInt64(out long e0) ? e0 : -1;
        if (begin < 0 || end < begin)
            throw new InputException($"{where}: header/offset mismatch: invalid data_offsets [{off[0]}, {off[1]}]");
        long numel;
        try { numel = shape.Aggregate(1L, (a, b) => checked(a * b)); }
        catch (OverflowException) { throw new InputException($"{where}: shape [{string.Join(",", shape)}] is too large"); }
        long expected = numel * dtype.ElementSize();
        if (end - begin != expected)
            throw new InputException($"{where}: header/offset mismatch: {dtype}[{string.Join(",", shape)}] needs {expected} bytes but data_offsets span {end - begin}");
        if (end > dataLength)
            throw new InputException($"{where}: truncated safetensors file: data ends at byte {end} of a {dataLength}-byte data section");
        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    public SafetensorsEntry Entry(string name) =>
        Entries.TryGetValue(name, out var e) ? e : throw new InputException($"{Path}: tensor '{name}' not found");

    /// <summary>Reads a tensor into a new tensor of <paramref name="dtype"/> (default: the stored dtype) on <paramref name="device"/>.</summary>
    public torch.Tensor Load(string name, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        var e = Entry(name);
        var result = torch.empty(e.Shape, dtype ?? e.DType.ToScalarType(), device ?? torch.CPU);
        try { CopyInto(name, result); }
        catch { result.Dispose(); throw; }
        return result;
    }

    /// <summary>Copies a stored tensor into <paramref name="destination"/> (any dtype/device); shapes must match exactly.</summary>
    public void CopyInto(string name, torch.Tensor destination)
    {
        var e = Entry(name);
        if (!destination.shape.SequenceEqual(e.Shape))
            throw new InputException($"{Path}: tensor '{name}': shape mismatch: checkpoint has [{string.Join(",", e.Shape)}], model expects [{string.Join(",", destination.shape)}]");
        if (e.ByteLength == 0) return;
        using var view = map!.CreateViewAccessor(dataStart + e.Begin, e.ByteLength, MemoryMappedFileAccess.Read);
        var handle = view.SafeMemoryMappedViewHandle;
        unsafe
        {
            byte* p = null;
            handle.AcquirePointer(ref p);
            try
            {
                using var src = NativeTensors.View((IntPtr)(p + view.PointerOffset), e.Shape, e.DType.ToScalarType());
                using var noGrad = torch.no_grad();
                destination.copy_(src);
            }
            finally { handle.ReleasePointer(); }
        }
    }

    public void Dispose() => map?.Dispose();

    internal static string HeaderJson(IEnumerable<SafetensorsEntry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            foreach (var e in entries)
            {
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.DType.ToString());
                w.WriteStartArray("shape"); foreach (var d in e.Shape) w.WriteNumberValue(d); w.WriteEndArray();
                w.WriteStartArray("data_offsets"); w.WriteNumberValue(e.Begin); w.WriteNumberValue(e.End); w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }
}
