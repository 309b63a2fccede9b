// Padding-free packing (OpenRLHF's --packing_samples): the B rows of a micro-batch laid end to end as one sequence
// [1, Σ L_r] without padding, each row attending only to itself (causal within its segment) and keeping its own
// M-RoPE positions, so no FLOPs go to padding. Attention per segment: on CUDA with the native extension,
// flash-attention's variable-length kernel (at::_flash_attention_forward/backward over cu_seqlens, GQA without
// expanding K/V; bf16/fp16 only; if its first call fails, Auto says so once and attends per row from then on);
// elsewhere one causal attention call per segment (the padded path's maths for a row without padding). Departs from
// OpenRLHF: positions are M-RoPE's three rows per token, computed per row exactly as the padded path does (RopeIndex
// over the left-padded batch, then the real tokens kept). Our addition (--packing_share_prompts): rows that share a
// prompt (a prompt's n samples) hold it once — [prompt, response₁, …, responseₙ] — and each response attends to the
// whole prompt and causally to itself (flash varlen with more keys than queries, bottom-right causal; the prompt's
// K/V gathered per response for attention only), so the MLPs and projections run the prompt once per group instead
// of n times; the prompt's last position predicts every response's first token. Same maths as the unshared rows.
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

/// <summary>A row of a packed micro-batch: its real prompt and response lengths, and the group of rows that share one
/// copy of the prompt (rows of one group must have the same prompt tokens and images).</summary>
public readonly record struct PackedRow(int Group, int PromptLength, int ResponseLength)
{
    public int Length => PromptLength + ResponseLength;
}

/// <summary>Where each row lies in a packed sequence. Owns its device tensors.</summary>
public sealed class PackedSequences : IDisposable
{
    // Attention segments in layout order: queries [QStart, QStart + QLength) of the packed sequence attend causally to
    // their own keys, after the keys [PrefixStart, PrefixStart + PrefixLength) (a shared prompt; length 0 = none),
    // bottom-right aligned: query i of the segment sees the whole prefix and its own keys 0..i.
    readonly record struct Segment(long QStart, int QLength, long PrefixStart, int PrefixLength);

    readonly PackedRow[] rows;
    readonly Segment[] segments;
    readonly long[] promptStart;     // per row: packed index of its prompt's first token
    readonly long[] responseStart;   // per row: packed index of its response's first token (after the prompt when not shared)
    readonly int[] promptRows;       // per group in layout order: the row whose prompt the sequence holds
    readonly long total;
    readonly Dictionary<long, Tensor> gathers = [];
    Tensor? keyIndex;

    /// <summary>[segments + 1] int32 on the device: the query segments' bounds (flash's cu_seqlens_q; with no shared
    /// prompts one segment per row: 0, L_0, L_0 + L_1, …).</summary>
    public Tensor CuSeqLens { get; }
    /// <summary>[segments + 1] int32: the key segments' bounds (prefix + own keys), or <see cref="CuSeqLens"/> itself when
    /// no segment has a prefix.</summary>
    public Tensor CuSeqLensK { get; }
    public PackedKernel Kernel { get; }

    PackedSequences(PackedRow[] rows, Device device, PackedKernel kernel)
    {
        if (rows.Length == 0 || rows.Any(r => r.Length <= 0 || r.PromptLength < 0 || r.ResponseLength < 0))
            throw new ArgumentException("packed rows must have at least one token each");
        this.rows = rows;
        promptStart = new long[rows.Length];
        responseStart = new long[rows.Length];
        var segs = new List<Segment>();
        long at = 0;
        // Layout: a group's prompt once (where its first row comes), its rows' responses right after it; every row of a
        // group of one is prompt + response in one segment, as plain packing.
        var order = Enumerable.Range(0, rows.Length).GroupBy(r => rows[r].Group).ToList();   // groups in order of first row
        foreach (var g in order)
        {
            var members = g.ToList();
            if (members.Count == 1)
            {
                int r = members[0];
                promptStart[r] = at; responseStart[r] = at + rows[r].PromptLength;
                segs.Add(new Segment(at, rows[r].Length, 0, 0));
                at += rows[r].Length;
                continue;
            }
            int p = rows[members[0]].PromptLength;
            if (members.Any(r => rows[r].PromptLength != p))
                throw new ArgumentException($"rows of group {g.Key} share a prompt but give different prompt lengths");
            if (p == 0) throw new ArgumentException($"rows of group {g.Key} share an empty prompt");
            long pStart = at;
            segs.Add(new Segment(pStart, p, 0, 0));
            at += p;
            foreach (int r in members)
            {
                if (rows[r].ResponseLength == 0) throw new ArgumentException("a row that shares its prompt needs a response");
                promptStart[r] = pStart; responseStart[r] = at;
                segs.Add(new Segment(at, rows[r].ResponseLength, pStart, p));
                at += rows[r].ResponseLength;
            }
        }
        segments = [.. segs];
        promptRows = [.. order.Select(g => g.First())];
        total = at;
        SharesPrompts = segments.Any(s => s.PrefixLength > 0);
        var cuQ = new int[segments.Length + 1];
        var cuK = new int[segments.Length + 1];
        for (int i = 0; i < segments.Length; i++)
        {
            cuQ[i + 1] = cuQ[i] + segments[i].QLength;
            cuK[i + 1] = cuK[i] + segments[i].PrefixLength + segments[i].QLength;
        }
        MaxQueryLength = segments.Max(s => s.QLength);
        MaxKeyLength = segments.Max(s => s.PrefixLength + s.QLength);
        KeyTokens = cuK[^1];
        // Owned by this object (Dispose), not by the caller's dispose scope: Experience.Collate builds it inside one, and
        // a scope-owned CuSeqLens was freed at its end, so the first flash call failed and Auto fell back to per-row
        // attention for the whole process (seen on the GPU, 2026-12-07).
        CuSeqLens = torch.tensor(cuQ, device: device).DetachFromDisposeScope();
        CuSeqLensK = SharesPrompts ? torch.tensor(cuK, device: device).DetachFromDisposeScope() : CuSeqLens;
        Kernel = kernel;
    }

    /// <summary>Rows of the given real lengths (tokens, no padding), packed in order, each its own segment.</summary>
    public static PackedSequences FromLengths(IReadOnlyList<int> lengths, Device device, PackedKernel kernel = PackedKernel.Auto) =>
        new(lengths.Select((l, r) => new PackedRow(r, l, 0)).ToArray(), device, kernel);

    /// <summary>Rows packed with each group's prompt held once (--packing_share_prompts): the group's prompt, then its
    /// rows' responses, each response attending to that prompt and causally to itself. A group of one row is packed as
    /// <see cref="FromLengths"/> packs it.</summary>
    public static PackedSequences FromRows(IReadOnlyList<PackedRow> rows, Device device, PackedKernel kernel = PackedKernel.Auto) =>
        new(rows.ToArray(), device, kernel);

    public int Rows => rows.Length;
    /// <summary>Tokens of the packed sequence (each shared prompt counted once).</summary>
    public long TotalTokens => total;
    /// <summary>Key slots that attention reads (each response's prompt counted again): TotalTokens without sharing.</summary>
    public long KeyTokens { get; }
    public int MaxQueryLength { get; }
    public int MaxKeyLength { get; }
    /// <summary>Whether some rows share one copy of their prompt.</summary>
    public bool SharesPrompts { get; }
    /// <summary>Packed index of row r's token i (0-based over its prompt and response).</summary>
    public long PackedIndex(int r, int i) =>
        i < rows[r].PromptLength ? promptStart[r] + i : responseStart[r] + (i - rows[r].PromptLength);

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

    /// <summary>Causal self-attention within each segment, after the segment's shared prompt when it has one.
    /// q [1, H, T, D]; k, v [1, kvH, T, D] → [1, H, T, D].</summary>
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
            if (SharesPrompts)
            {
                // Each segment's keys laid out as [prefix; own] (the shared prompt's K/V gathered once per response).
                keyIndex ??= torch.tensor(KeyLayout(), device: q.device).DetachFromDisposeScope();
                kt = kt.index_select(0, keyIndex);
                vt = vt.index_select(0, keyIndex);
            }
            try
            {
                // Flash's causal mask is bottom-right aligned when a segment has more keys than queries.
                o = native.VarlenAttention(qt, kt, vt, CuSeqLens, CuSeqLensK, MaxQueryLength, MaxKeyLength, 1.0 / Math.Sqrt(q.shape[^1]), causal: true)
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

    /// <summary>One attention call per segment (in the caller's dispose scope): causal over its own keys, after the whole
    /// shared prompt when it has one (an explicit bottom-right causal mask then).</summary>
    Tensor PerSegment(Tensor q, Tensor k, Tensor v, AttentionImpl impl)
    {
        var parts = new List<Tensor>(segments.Length);
        foreach (var s in segments)
        {
            var qs = q.narrow(2, s.QStart, s.QLength);
            var ks = k.narrow(2, s.QStart, s.QLength);
            var vs = v.narrow(2, s.QStart, s.QLength);
            Tensor? mask = null;
            if (s.PrefixLength > 0)
            {
                ks = torch.cat([k.narrow(2, s.PrefixStart, s.PrefixLength), ks], 2);
                vs = torch.cat([v.narrow(2, s.PrefixStart, s.PrefixLength), vs], 2);
                mask = AttentionMath.CausalMask(torch.ones(1, ks.shape[2], ScalarType.Bool, q.device), s.QLength, s.PrefixLength, q.dtype);
            }
            parts.Add(AttentionMath.TextAttention(qs, ks, vs, mask, impl));
        }
        return parts.Count == 1 ? parts[0] : torch.cat(parts, 2);
    }

    // Packed token index of every key slot, segment by segment: [prefix; own].
    long[] KeyLayout()
    {
        var index = new long[KeyTokens];
        long n = 0;
        foreach (var s in segments)
        {
            for (int i = 0; i < s.PrefixLength; i++) index[n++] = s.PrefixStart + i;
            for (int i = 0; i < s.QLength; i++) index[n++] = s.QStart + i;
        }
        return index;
    }

    /// <summary>[B, S] left-padded rows → [1, T] the packed layout: the real tokens of each row end to end in row order,
    /// a shared prompt once (taken from its group's first row). Works for any [.., B, S] tensor whose last two dims are
    /// the padded batch (e.g. positions [3, B, S] → [3, 1, T]).</summary>
    public Tensor Pack(Tensor padded, Tensor attentionMask)
    {
        using var scope = torch.NewDisposeScope();
        long b = padded.shape[^2], s = padded.shape[^1];
        if (b != Rows || !attentionMask.shape.SequenceEqual(new[] { b, s }))
            throw new ArgumentException($"packing expects [.., {Rows}, S] with a [{Rows}, S] attention mask, got [{string.Join(",", padded.shape)}]");
        if (!gathers.TryGetValue(s, out var gather))
        {
            // Flat [B·S] index of every packed token; row r's real tokens are its last L_r columns.
            var index = new long[total];
            for (int r = 0; r < rows.Length; r++)
                for (int i = 0; i < rows[r].Length; i++)
                    index[PackedIndex(r, i)] = r * s + (s - rows[r].Length) + i;
            gather = torch.tensor(index, device: padded.device).DetachFromDisposeScope();
            gathers[s] = gather;
        }
        var lead = padded.shape[..^2];
        var packed = padded.reshape([.. lead, b * s]).index_select(-1, gather.to(padded.device)).view([.. lead, 1, total]);
        return packed.MoveToOuterDisposeScope();
    }

    /// <summary>Index [B·A] into the packed positions of the slots that predict each row's last A tokens (the padded
    /// path's positions S−1−A … S−2 of row r: a response's first token is predicted by its prompt's last); slots before
    /// a row's start (masked out by the action mask) point at the row's first token.</summary>
    public Tensor ActionSlotIndex(long numActions, Device device)
    {
        var index = new long[Rows * numActions];
        for (int r = 0; r < Rows; r++)
            for (long j = 0; j < numActions; j++)
                index[r * numActions + j] = PackedIndex(r, (int)Math.Max(0, rows[r].Length - 1 - numActions + j));
        return torch.tensor(index, device: device);
    }

    /// <summary>Per group (in layout order), the row whose prompt copy the packed sequence holds.</summary>
    public IReadOnlyList<int> PromptRows() => promptRows;

    public void Dispose()
    {
        CuSeqLens.Dispose();
        if (SharesPrompts) CuSeqLensK.Dispose();
        keyIndex?.Dispose();
        foreach (var g in gathers.Values) g.Dispose();
    }
}
