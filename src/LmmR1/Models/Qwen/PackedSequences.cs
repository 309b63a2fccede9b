// Padding-free packing (OpenRLHF's --packing_samples): the B rows of a micro-batch laid end to end as one sequence
// [1, Σ L_r] without padding, each row attending only to itself (causal within its segment) and keeping its own
// M-RoPE positions, so no FLOPs go to padding. Attention per segment: on CUDA with the native extension,
// flash-attention's variable-length kernel (at::_flash_attention_forward/backward over cu_seqlens, GQA without
// expanding K/V; bf16/fp16 only; if its first call fails, Auto says so once and attends per row from then on);
// elsewhere one causal attention call per segment (the padded path's maths for a row without padding). Departs from
// OpenRLHF: positions are M-RoPE's three rows per token, computed per row exactly as the padded path does (RopeIndex
// over the left-padded batch, then the real tokens kept).
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public enum PackedKernel
{
    /// <summary>Flash varlen where it can run (CUDA, bf16/fp16, the native extension loaded), else per segment.</summary>
    Auto,
    /// <summary>One causal attention call per segment (any device and dtype).</summary>
    PerSegment,
    /// <summary>Flash varlen or an error.</summary>
    Flash,
}

/// <summary>Where each row lies in a packed sequence. Owns its device tensor.</summary>
public sealed class PackedSequences : IDisposable
{
    readonly int[] lengths;
    readonly long[] offsets;
    /// <summary>[B + 1] int32 on the device: 0, L_0, L_0 + L_1, … (flash's cu_seqlens).</summary>
    public Tensor CuSeqLens { get; }
    public PackedKernel Kernel { get; }

    PackedSequences(int[] lengths, Device device, PackedKernel kernel)
    {
        if (lengths.Length == 0 || lengths.Any(l => l <= 0)) throw new ArgumentException("packed rows must have at least one token each");
        this.lengths = lengths;
        offsets = new long[lengths.Length + 1];
        for (int r = 0; r < lengths.Length; r++) offsets[r + 1] = offsets[r] + lengths[r];
        // Owned by this object (Dispose), not by the caller's dispose scope: Experience.Collate builds it inside one, and
        // a scope-owned CuSeqLens was freed at its end, so the first flash call failed and Auto fell back to per-row
        // attention for the whole process (seen on the GPU, 2026-12-07).
        CuSeqLens = torch.tensor(offsets.Select(o => (int)o).ToArray(), device: device).DetachFromDisposeScope();
        Kernel = kernel;
    }

    /// <summary>Rows of the given real lengths (tokens, no padding), packed in order.</summary>
    public static PackedSequences FromLengths(IReadOnlyList<int> lengths, Device device, PackedKernel kernel = PackedKernel.Auto) =>
        new(lengths.ToArray(), device, kernel);

    public int Rows => lengths.Length;
    public long TotalTokens => offsets[^1];
    public int MaxLength => lengths.Max();
    public IReadOnlyList<int> Lengths => lengths;
    /// <summary>Start of row r in the packed sequence.</summary>
    public long Offset(int r) => offsets[r];

    /// <summary>Why Auto stopped using flash in this process (its first call failed), or null.</summary>
    public static string? FlashDisabledReason { get; private set; }

    /// <summary>Whether <see cref="Attend"/> would use the flash varlen kernel for q of this dtype and device.</summary>
    public bool UsesFlash(Tensor q) => Kernel switch
    {
        PackedKernel.PerSegment => false,
        PackedKernel.Flash => true,
        _ => FlashRuns(q.device, q.dtype, q.shape[^1]),
    };

    /// <summary>Whether Auto attends with flash varlen for queries on <paramref name="device"/> of this dtype and head size
    /// (CUDA, bf16/fp16, head ≤ 256, the extension loaded, no earlier flash failure in this process).</summary>
    public static bool FlashRuns(Device device, ScalarType dtype, long headDim) =>
        FlashDisabledReason is null && device.type == DeviceType.CUDA && dtype is ScalarType.BFloat16 or ScalarType.Float16 &&
        headDim <= 256 && NativeExtension.TryGet() is { HasVarlenAttention: true };

    /// <summary>Causal self-attention within each segment. q [1, H, T, D]; k, v [1, kvH, T, D] → [1, H, T, D].</summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        if (q.shape[0] != 1 || q.shape[2] != TotalTokens)
            throw new ArgumentException($"packed attention expects [1, H, {TotalTokens}, D], got [{string.Join(",", q.shape)}]");
        Tensor o;
        if (UsesFlash(q))
        {
            var native = NativeExtension.TryGet() ?? throw new InvalidOperationException(
                $"packed flash attention needs the native extension: {NativeExtension.UnavailableReason}");
            // [1, H, T, D] → [T, H, D] (the projections' own layout, so usually no copy).
            var qt = q.squeeze(0).transpose(0, 1);
            var kt = k.squeeze(0).transpose(0, 1);
            var vt = v.squeeze(0).transpose(0, 1);
            int max = MaxLength;
            try
            {
                o = native.VarlenAttention(qt, kt, vt, CuSeqLens, CuSeqLens, max, max, 1.0 / Math.Sqrt(q.shape[^1]), causal: true)
                          .transpose(0, 1).unsqueeze(0);                                             // [1, H, T, D]
            }
            catch (InvalidOperationException e) when (Kernel == PackedKernel.Auto)
            {
                // Auto falls back for the rest of the process, saying so once; --kernel flash (checks) keeps the error.
                FlashDisabledReason = e.Message;
                Console.Error.WriteLine($"lmmr1: flash varlen attention failed, packed passes attend per row instead ({e.Message})");
                o = PerSegment(q, k, v, impl);
            }
        }
        else o = PerSegment(q, k, v, impl);
        return o.MoveToOuterDisposeScope();
    }

    /// <summary>One causal attention call per row (in the caller's dispose scope).</summary>
    Tensor PerSegment(Tensor q, Tensor k, Tensor v, AttentionImpl impl)
    {
        var parts = new List<Tensor>(Rows);
        for (int r = 0; r < Rows; r++)
        {
            long off = offsets[r], len = lengths[r];
            parts.Add(AttentionMath.TextAttention(q.narrow(2, off, len), k.narrow(2, off, len), v.narrow(2, off, len), null, impl));
        }
        return parts.Count == 1 ? parts[0] : torch.cat(parts, 2);
    }

    /// <summary>[B, S] left-padded rows → [1, T] their real tokens end to end (row order). Works for any [.., B, S]
    /// tensor whose last two dims are the padded batch (e.g. positions [3, B, S] → [3, 1, T]).</summary>
    public Tensor Pack(Tensor padded, Tensor attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        var valid = attentionMask.ne(TorchScalars.Zero);
        var lead = padded.shape[..^2];
        var m = valid.expand(padded.shape);
        var packed = padded.masked_select(m).view([.. lead, 1, TotalTokens]);
        return packed.MoveToOuterDisposeScope();
    }

    /// <summary>Index [B·A] into the packed positions of the slots that predict each row's last A tokens (the padded
    /// path's positions S−1−A … S−2 of row r); slots before a row's start (masked out by the action mask) point at
    /// the row's first token.</summary>
    public Tensor ActionSlotIndex(long numActions, Device device)
    {
        var index = new long[Rows * numActions];
        for (int r = 0; r < Rows; r++)
            for (long j = 0; j < numActions; j++)
                index[r * numActions + j] = offsets[r] + Math.Max(0, lengths[r] - 1 - numActions + j);
        return torch.tensor(index, device: device);
    }

    public void Dispose() => CuSeqLens.Dispose();
}
