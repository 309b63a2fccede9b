// A KV cache for CUDA-graph decoding: fixed [B, kvH, C, D] tensors per layer, written at a device-side cache index
// (Position, [1] int64) instead of the host-side Length of KvCache, plus which positions hold real tokens
// ([B, C] bool), the per-row M-RoPE offsets ([B] int64) and the next input token ([B, 1]). Nothing here changes shape or
// address after creation, so a decode step reading and writing only these tensors can be captured once and replayed.
// Departs from KvCache: attention reads the first Window positions (the whole capacity unless the graph step narrows
// it to a bucket of the filled prefix) under a mask (padding and not-yet-written positions are masked), not exactly
// the filled prefix. A cache can view the first rows of another one's keys/values (the row buckets of
// one capacity share one allocation, see GraphDecodeStep) while keeping its own validity, offsets, position and tokens.
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public sealed class StaticKvCache : IDisposable
{
    readonly Tensor[] keys, values;

    public int Rows { get; }
    public int Capacity { get; }
    /// <summary>[B, C] bool: true where a cached position holds a real token.</summary>
    public Tensor KeyValid { get; }
    /// <summary>[1] int64: the cache index the next decode step writes (the same for every row: left padding).</summary>
    public Tensor Position { get; }
    /// <summary>[B] int64: M-RoPE position of cache index i is i + offset (see KvCache.PositionOffsets).</summary>
    public Tensor PositionOffsets { get; }
    /// <summary>[B, 1] int64: the token each row feeds into the next step.</summary>
    public Tensor InputTokens { get; }

    public StaticKvCache(QwenTextConfig cfg, int rows, int capacity, ScalarType dtype, Device device)
    {
        if (rows <= 0 || capacity <= 0) throw new ArgumentException($"StaticKvCache needs positive rows and capacity (got {rows}, {capacity})");
        Rows = rows; Capacity = capacity; window = capacity;
        keys = new Tensor[cfg.NumLayers];
        values = new Tensor[cfg.NumLayers];
        // Zeros, not empty: rows beyond the live ones are decoded too and must hold finite numbers.
        for (int i = 0; i < cfg.NumLayers; i++)
        {
            keys[i] = torch.zeros([rows, cfg.NumKvHeads, capacity, cfg.HeadDim], dtype, device).DetachFromDisposeScope();
            values[i] = torch.zeros([rows, cfg.NumKvHeads, capacity, cfg.HeadDim], dtype, device).DetachFromDisposeScope();
        }
        KeyValid = torch.zeros([rows, capacity], ScalarType.Bool, device).DetachFromDisposeScope();
        Position = torch.zeros([1], ScalarType.Int64, device).DetachFromDisposeScope();
        PositionOffsets = torch.zeros([rows], ScalarType.Int64, device).DetachFromDisposeScope();
        InputTokens = torch.zeros([rows, 1], ScalarType.Int64, device).DetachFromDisposeScope();
    }

    /// <summary>A cache of <paramref name="rows"/> rows whose keys/values are the first rows of <paramref name="storage"/>'s
    /// (views: same memory, no copy); validity, offsets, position and input tokens are its own (zeros).</summary>
    public StaticKvCache(StaticKvCache storage, int rows)
    {
        if (rows <= 0 || rows > storage.Rows) throw new ArgumentException($"a view needs 1..{storage.Rows} rows (got {rows})");
        Rows = rows; Capacity = storage.Capacity; window = Capacity;
        SharesStorage = true;
        keys = storage.keys.Select(k => k.narrow(0, 0, rows).DetachFromDisposeScope()).ToArray();
        values = storage.values.Select(v => v.narrow(0, 0, rows).DetachFromDisposeScope()).ToArray();
        var dev = storage.KeyValid.device;
        KeyValid = torch.zeros([rows, Capacity], ScalarType.Bool, dev).DetachFromDisposeScope();
        Position = torch.zeros([1], ScalarType.Int64, dev).DetachFromDisposeScope();
        PositionOffsets = torch.zeros([rows], ScalarType.Int64, dev).DetachFromDisposeScope();
        InputTokens = torch.zeros([rows, 1], ScalarType.Int64, dev).DetachFromDisposeScope();
    }

    /// <summary>Whether the keys/values are views of another cache's (see the second constructor).</summary>
    public bool SharesStorage { get; }

    int window;

    /// <summary>How many cache positions (from index 0) attention reads: 1 … Capacity, Capacity when created. A host-side
    /// setting read when a step is recorded: a graph captured with one window keeps it. The positions beyond it must
    /// be invalid (not yet written) for the step to equal one over the whole capacity.</summary>
    public int Window
    {
        get => window;
        set
        {
            if (value < 1 || value > Capacity) throw new ArgumentOutOfRangeException(nameof(value), $"a window of {value} positions is outside 1..{Capacity}");
            window = value;
        }
    }

    /// <summary>The first Window positions of a layer's keys/values [B, kvH, Window, D]: what attention reads (views in
    /// the caller's dispose scope, or the cache's own tensors when Window = Capacity).</summary>
    internal (Tensor Keys, Tensor Values) Attended(int layer) => window == Capacity
        ? (keys[layer], values[layer])
        : (keys[layer].narrow(2, 0, window), values[layer].narrow(2, 0, window));

    /// <summary>Bytes of the keys/values this cache addresses (for a view: memory it shares, not its own).</summary>
    public long Bytes => keys.Sum(k => k.numel() * k.ElementSize) * 2;

    /// <summary>The whole layer cache [B, kvH, C, D] (FusedDecodeOps writes into it in place).</summary>
    internal (Tensor Keys, Tensor Values) LayerTensors(int layer) => (keys[layer], values[layer]);

    /// <summary>Writes one token's rotated keys/values [B, kvH, 1, D] at Position; returns what attention reads
    /// (<see cref="Attended"/>).</summary>
    internal (Tensor Keys, Tensor Values) Write(int layer, Tensor k, Tensor v)
    {
        keys[layer].index_copy_(2, Position, k);
        values[layer].index_copy_(2, Position, v);
        return Attended(layer);
    }

    /// <summary>
    /// Loads a prefilled <see cref="KvCache"/>: live row r takes source row rows[r] (replicating a prompt for its samples),
    /// its filled positions, validity and offsets; Position = the source Length. Rows beyond rows.Length become empty
    /// (nothing valid). Copies once per layer, without holding a second full cache.
    /// </summary>
    public void Load(KvCache src, Tensor rows)
    {
        using var scope = torch.NewDisposeScope();
        long live = rows.shape[0], len = src.Length;
        if (live > Rows) throw new ArgumentException($"{live} rows do not fit the static cache's {Rows}");
        if (len >= Capacity) throw new ArgumentException($"{len} cached positions leave no room in capacity {Capacity}");
        var idx = rows.to(ScalarType.Int64, KeyValid.device);
        using (torch.no_grad())
        {
            for (int i = 0; i < keys.Length; i++)
            {
                var (sk, sv) = src.LayerTensors(i);
                keys[i].narrow(0, 0, live).narrow(2, 0, len).copy_(sk.narrow(2, 0, len).index_select(0, idx));
                values[i].narrow(0, 0, live).narrow(2, 0, len).copy_(sv.narrow(2, 0, len).index_select(0, idx));
            }
            KeyValid.zero_();
            KeyValid.narrow(0, 0, live).narrow(1, 0, len).copy_(src.KeyValid.narrow(1, 0, len).index_select(0, idx));
            PositionOffsets.zero_();
            if (src.PositionOffsets is not null) PositionOffsets.narrow(0, 0, live).copy_(src.PositionOffsets.index_select(0, idx));
            Position.FillAllS_(len);
        }
    }

    /// <summary>
    /// Takes row keep[r] of <paramref name="src"/> (same capacity) as row r: its keys/values at cache indices 0 … filled−1,
    /// validity, offsets and input token, and src's Position. Rows beyond keep.Length become empty. Safe when both views
    /// share one storage (each layer's rows are gathered into a temporary before they are written).
    /// </summary>
    public void LoadRows(StaticKvCache src, Tensor keep, long filled)
    {
        using var scope = torch.NewDisposeScope();
        long live = keep.shape[0];
        if (src.Capacity != Capacity) throw new ArgumentException($"capacities differ ({src.Capacity} vs {Capacity})");
        if (live > Rows) throw new ArgumentException($"{live} rows do not fit the static cache's {Rows}");
        if (filled < 0 || filled > Capacity) throw new ArgumentException($"{filled} filled positions exceed capacity {Capacity}");
        var idx = keep.to(ScalarType.Int64, KeyValid.device);
        using (torch.no_grad())
        {
            if (filled > 0)
                for (int i = 0; i < keys.Length; i++)
                {
                    var k = src.keys[i].narrow(2, 0, filled).index_select(0, idx);
                    keys[i].narrow(0, 0, live).narrow(2, 0, filled).copy_(k);
                    k.Dispose();
                    var v = src.values[i].narrow(2, 0, filled).index_select(0, idx);
                    values[i].narrow(0, 0, live).narrow(2, 0, filled).copy_(v);
                    v.Dispose();
                }
            KeyValid.zero_();
            KeyValid.narrow(0, 0, live).copy_(src.KeyValid.index_select(0, idx));
            PositionOffsets.zero_();
            PositionOffsets.narrow(0, 0, live).copy_(src.PositionOffsets.index_select(0, idx));
            InputTokens.zero_();
            InputTokens.narrow(0, 0, live).copy_(src.InputTokens.index_select(0, idx));
            Position.copy_(src.Position);
        }
    }

    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
        KeyValid.Dispose(); Position.Dispose(); PositionOffsets.Dispose(); InputTokens.Dispose();
    }
}
