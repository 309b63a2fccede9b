// TensorBoard event files (events.out.tfevents.*) written directly: TFRecord framing (length, masked CRC32C of the
// length, payload, masked CRC32C of the payload) around hand-encoded tensorboard Event protos — scalars as
// simple_value, text as a DT_STRING tensor with the "text" plugin's metadata. Ours rather than TorchSharp's
// SummaryWriter because a resumed run must first write a SessionLog START at the resumed step: TensorBoard then
// drops the points a killed run wrote after its last checkpoint instead of drawing them twice.
using System.Buffers.Binary;
using System.Numerics;
using System.Text;

namespace LmmR1.Training.Logging;

public sealed class TensorBoardWriter : IDisposable
{
    readonly FileStream file;

    public string FilePath { get; }

    /// <param name="logDir">The folder TensorBoard is pointed at.</param>
    /// <param name="resumeAtStep">When resuming: the first step this run writes; a START event there tells TensorBoard
    /// to discard the older files' points at that step and later.</param>
    public TensorBoardWriter(string logDir, long? resumeAtStep = null)
    {
        Directory.CreateDirectory(logDir);
        long now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        // TensorBoard reads a folder's event files in name order: the zero-padded time, then a per-process counter.
        string name;
        int n = 0;
        do name = $"events.out.tfevents.{now:D10}.{Environment.MachineName}.{Environment.ProcessId}.{n++}";
        while (File.Exists(Path.Combine(logDir, name)));
        FilePath = Path.Combine(logDir, name);
        file = new FileStream(FilePath, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
        var ev = new ProtoWriter();
        ev.Double(1, WallTime());
        ev.String(3, "brain.Event:2");
        Write(ev.ToArray());
        if (resumeAtStep is { } s)
        {
            var log = new ProtoWriter();
            log.Varint(1, 1);                                                    // SessionLog.status = START
            var start = new ProtoWriter();
            start.Double(1, WallTime());
            start.Varint(2, (ulong)s);
            start.Message(6, log);                                               // Event.session_log
            Write(start.ToArray());
        }
        file.Flush(flushToDisk: false);
    }

    /// <summary>One event holding every finite scalar of a step.</summary>
    public void Scalars(long step, IEnumerable<KeyValuePair<string, double>> values)
    {
        var summary = new ProtoWriter();
        int count = 0;
        foreach (var (tag, v) in values)
        {
            if (!double.IsFinite(v)) continue;
            var value = new ProtoWriter();
            value.String(1, tag);
            value.Float(2, (float)v);                                            // Summary.Value.simple_value
            summary.Message(1, value);
            count++;
        }
        if (count > 0) WriteSummary(step, summary);
    }

    /// <summary>A text summary (markdown), shown in TensorBoard's Text tab.</summary>
    public void Text(long step, string tag, string text)
    {
        var plugin = new ProtoWriter();
        plugin.String(1, "text");                                                // PluginData.plugin_name
        var meta = new ProtoWriter();
        meta.Message(1, plugin);                                                 // SummaryMetadata.plugin_data
        var tensor = new ProtoWriter();
        tensor.Varint(1, 7);                                                     // dtype = DT_STRING
        tensor.Message(2, new ProtoWriter());                                    // tensor_shape: scalar
        tensor.Bytes(8, Encoding.UTF8.GetBytes(text));                           // string_val
        var value = new ProtoWriter();
        value.String(1, tag);
        value.Message(8, tensor);                                                // Summary.Value.tensor
        value.Message(9, meta);                                                  // Summary.Value.metadata
        var summary = new ProtoWriter();
        summary.Message(1, value);
        WriteSummary(step, summary);
    }

    void WriteSummary(long step, ProtoWriter summary)
    {
        var ev = new ProtoWriter();
        ev.Double(1, WallTime());
        ev.Varint(2, (ulong)step);
        ev.Message(5, summary);                                                  // Event.summary
        Write(ev.ToArray());
        file.Flush(flushToDisk: false);
    }

    static double WallTime() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() / 1000.0;

    void Write(byte[] payload)
    {
        Span<byte> header = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64LittleEndian(header, (ulong)payload.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], MaskedCrc(header[..8]));
        Span<byte> footer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(footer, MaskedCrc(payload));
        file.Write(header);
        file.Write(payload);
        file.Write(footer);
    }

    /// <summary>TFRecord's masked CRC32C: rotate right by 15 and add a constant.</summary>
    public static uint MaskedCrc(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data) crc = BitOperations.Crc32C(crc, b);
        crc = ~crc;
        return unchecked(((crc >> 15) | (crc << 17)) + 0xa282ead8u);
    }

    public void Dispose() => file.Dispose();

    /// <summary>The few protobuf wire types the Event protos need.</summary>
    sealed class ProtoWriter
    {
        readonly MemoryStream ms = new();

        void Tag(int field, int wire) => Raw((ulong)((field << 3) | wire));

        void Raw(ulong v)
        {
            while (v >= 0x80) { ms.WriteByte((byte)(v | 0x80)); v >>= 7; }
            ms.WriteByte((byte)v);
        }

        public void Varint(int field, ulong v) { Tag(field, 0); Raw(v); }

        public void Double(int field, double v)
        {
            Tag(field, 1);
            Span<byte> b = stackalloc byte[8];
            BinaryPrimitives.WriteDoubleLittleEndian(b, v);
            ms.Write(b);
        }

        public void Float(int field, float v)
        {
            Tag(field, 5);
            Span<byte> b = stackalloc byte[4];
            BinaryPrimitives.WriteSingleLittleEndian(b, v);
            ms.Write(b);
        }

        public void Bytes(int field, ReadOnlySpan<byte> data)
        {
            Tag(field, 2);
            Raw((ulong)data.Length);
            ms.Write(data);
        }

        public void String(int field, string s) => Bytes(field, Encoding.UTF8.GetBytes(s));

        public void Message(int field, ProtoWriter m) => Bytes(field, m.ToArray());

        public byte[] ToArray() => ms.ToArray();
    }
}
