// Key/value cache for incremental decoding: per layer one preallocated [B, kvH, capacity, D] tensor for the rotated
// keys and one for the values, written in place with narrow().copy_() (never a per-token cat), plus which cached
// positions are real tokens ([B, capacity] bool) and the per-row position offsets from the prefill. For no-grad inference
// only: writes are detached. Rows can be selected/reordered (drop finished rows, replicate one prompt n times).
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public sealed class KvCache : IDisposable
{
    Tensor[] keys, values;
    Tensor keyValid;
    Tensor? positionOffsets;

    public int Capacity { get; }
    /// <summary>Positions written so far (the same for every row; left padding counts).</summary>
    public int Length { get; private set; }
    public long BatchSize => keyValid.shape[0];
    public int NumLayers => keys.Length;
    /// <summary>[B, Capacity] bool: true where a cached position holds a real token (false for padding).</summary>
    public Tensor KeyValid => keyValid;
    /// <summary>[B] int64, set by the prefill: the token at cache index i (i ≥ prefill length) has M-RoPE position
    /// i + offset on all three rows (offset = max prefill position + 1 − padded prefill length).</summary>
    public Tensor? PositionOffsets => positionOffsets;

    KvCache(Tensor[] keys, Tensor[] values, Tensor keyValid, int capacity)
    {
        this.keys = keys; this.values = values; this.keyValid = keyValid; Capacity = capacity;
    }

    public static KvCache Create(QwenTextConfig cfg, long batchSize, int capacity, ScalarType dtype, Device device)
    {
        if (batchSize <= 0 || capacity <= 0) throw new ArgumentException($"KvCache needs a positive batch size and capacity (got {batchSize}, {capacity})");
        var k = new Tensor[cfg.NumLayers];
        var v = new Tensor[cfg.NumLayers];
        for (int i = 0; i < cfg.NumLayers; i++)
        {
            k[i] = torch.empty([batchSize, cfg.NumKvHeads, capacity, cfg.HeadDim], dtype, device).DetachFromDisposeScope();
            v[i] = torch.empty([batchSize, cfg.NumKvHeads, capacity, cfg.HeadDim], dtype, device).DetachFromDisposeScope();
        }
        var valid = torch.zeros([batchSize, capacity], ScalarType.Bool, device).DetachFromDisposeScope();
        return new KvCache(k, v, valid, capacity);
    }

    /// <summary>Bytes held by the key/value tensors.</summary>
    public long Bytes => keys.Sum(k => k.numel() * k.ElementSize) * 2;

    /// <summary>Writes the new rotated keys/values [B, kvH, T, D] of one layer at Length and returns views of the
    /// whole filled part [B, kvH, Length+T, D]. Length advances in <see cref="Commit"/> after all layers wrote.</summary>
    internal (Tensor Keys, Tensor Values) Write(int layer, Tensor k, Tensor v)
    {
        long t = k.shape[2];
        EnsureRoom(t);
        using (torch.no_grad())
        {
            using var ks = keys[layer].narrow(2, Length, t);
            using var vs = values[layer].narrow(2, Length, t);
            ks.copy_(k);
            vs.copy_(v);
        }
        return (keys[layer].narrow(2, 0, Length + t), values[layer].narrow(2, 0, Length + t));
    }

    /// <summary>Records which of the next T positions are real tokens; returns keyValid [B, Length+T] for attention.</summary>
    internal Tensor AppendValid(Tensor newValid)
    {
        long t = newValid.shape[1];
        EnsureRoom(t);
        using (torch.no_grad())
        {
            using var slot = keyValid.narrow(1, Length, t);
            slot.copy_(newValid);
        }
        return keyValid.narrow(1, 0, Length + t);
    }

    internal void Commit(int t) => Length += t;

    /// <summary>The whole [B, kvH, Capacity, D] key and value tensors of one layer (for copying into a StaticKvCache).</summary>
    internal (Tensor Keys, Tensor Values) LayerTensors(int layer) => (keys[layer], values[layer]);

    internal void SetPositionOffsets(Tensor offsets)
    {
        positionOffsets?.Dispose();
        using var detached = offsets.detach();
        positionOffsets = detached.clone().DetachFromDisposeScope();
    }

    void EnsureRoom(long t)
    {
        if (Length + t > Capacity)
            throw new InputException($"KV cache overflow: {Length} cached + {t} new positions exceed the capacity {Capacity} it was created with");
    }

    /// <summary>Keeps rows <paramref name="rows"/> (int64 [B'] on any device) in that order: drop finished rows,
    /// reorder, or replicate a prefilled prompt (e.g. [0,0,0,0] for 4 samples). The capacity and Length stay.</summary>
    public void SelectRows(Tensor rows)
    {
        using var idx = rows.to(ScalarType.Int64, keyValid.device);
        for (int i = 0; i < keys.Length; i++)
        {
            var nk = keys[i].index_select(0, idx).DetachFromDisposeScope();
            var nv = values[i].index_select(0, idx).DetachFromDisposeScope();
            keys[i].Dispose(); values[i].Dispose();
            keys[i] = nk; values[i] = nv;
        }
        var nvalid = keyValid.index_select(0, idx).DetachFromDisposeScope();
        keyValid.Dispose(); keyValid = nvalid;
        if (positionOffsets is not null)
        {
            var nd = positionOffsets.index_select(0, idx).DetachFromDisposeScope();
            positionOffsets.Dispose(); positionOffsets = nd;
        }
    }

    /// <summary>Forgets the contents (the memory stays allocated) so the cache can take a new prefill.</summary>
    public void Reset()
    {
        Length = 0;
        using (torch.no_grad()) keyValid.zero_();
        positionOffsets?.Dispose();
        positionOffsets = null;
    }

    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
        keyValid.Dispose();
        positionOffsets?.Dispose();
    }
}
