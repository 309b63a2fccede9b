// The Qwen2-VL / Qwen2.5-VL vision tower (spec §5): patch embedding as one matmul (equal to the Conv3d whose kernel is
// the whole patch), 2D rotary in fp32, pre-norm blocks (Qwen2-VL: LayerNorm + fc1/QuickGELU/fc2; Qwen2.5-VL: RMSNorm +
// gated MLP with biases and window attention outside fullatt_block_indexes), then the 2×2 patch merger with exact GELU.
// Attention is block-diagonal over per-frame (or per-window) segments: segments of equal length are batched into one
// attention call instead of a dense N×N mask or a per-segment loop. Keys: visual.patch_embed / blocks.{j} / merger.
using LmmR1.Infrastructure;
using TorchSharp;
using TorchSharp.Utils;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

internal sealed class PatchEmbedProj : nn.Module
{
    [ComponentName(Name = "weight")] readonly Parameter weight;

    public PatchEmbedProj(QwenVisionConfig c, ScalarType dtype, Device device) : base(nameof(PatchEmbedProj))
    {
        weight = Params.Empty(dtype, device, c.Width, c.InChannels, c.TemporalPatchSize, c.PatchSize, c.PatchSize);
        RegisterComponents();
    }

    /// <summary>[N, C·T·P·P] → [N, width]: the stride-equals-kernel Conv3d as x·W.reshape(width, −1)ᵀ.</summary>
    public Tensor Forward(Tensor pixels)
    {
        using var w = weight.view(weight.shape[0], -1);
        using var x = pixels.to(weight.dtype);
        return nn.functional.linear(x, w);
    }
}

internal sealed class PatchEmbed : nn.Module
{
    [ComponentName(Name = "proj")] readonly PatchEmbedProj proj;

    public PatchEmbed(QwenVisionConfig c, ScalarType dtype, Device device) : base(nameof(PatchEmbed))
    {
        proj = new PatchEmbedProj(c, dtype, device);
        RegisterComponents();
    }

    public Tensor Forward(Tensor pixels) => proj.Forward(pixels);
}

internal sealed class VisionAttention : nn.Module
{
    [ComponentName(Name = "qkv")] readonly Dense qkv;
    [ComponentName(Name = "proj")] readonly Dense proj;
    readonly int heads, headDim;

    public VisionAttention(QwenVisionConfig c, ScalarType dtype, Device device) : base(nameof(VisionAttention))
    {
        heads = c.NumHeads; headDim = c.HeadDim;
        qkv = new Dense(c.Width, 3L * c.Width, true, dtype, device);
        proj = new Dense(c.Width, c.Width, true, dtype, device);
        RegisterComponents();
    }

    /// <param name="x">[N, W]</param>
    /// <param name="cos">[N, 1, headDim] fp32 (sin likewise)</param>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Segments segments, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        long n = x.shape[0];
        var parts = qkv.forward(x).reshape(n, 3, heads, headDim).permute(1, 0, 2, 3).unbind(0); // 3 × [N, heads, hd]
        // The rotation runs in fp32 and is cast back (apply_rotary_pos_emb_vision).
        var q = AttentionMath.ApplyRope(parts[0].to(ScalarType.Float32), cos, sin).to(x.dtype);
        var k = AttentionMath.ApplyRope(parts[1].to(ScalarType.Float32), cos, sin).to(x.dtype);
        var o = segments.Attend(q, k, parts[2], impl).reshape(n, heads * headDim);
        return proj.forward(o).MoveToOuterDisposeScope();
    }
}

/// <summary>Qwen2-VL: fc2(act(fc1 x)).</summary>
internal sealed class VisionMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "fc1")] readonly Dense fc1;
    [ComponentName(Name = "fc2")] readonly Dense fc2;
    readonly string act;

    public VisionMlp(QwenVisionConfig c, ScalarType dtype, Device device) : base(nameof(VisionMlp))
    {
        fc1 = new Dense(c.Width, c.IntermediateSize, true, dtype, device);
        fc2 = new Dense(c.IntermediateSize, c.Width, true, dtype, device);
        act = c.HiddenAct;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return fc2.forward(Activations.Apply(act, fc1.forward(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>Qwen2.5-VL: down(act(gate x) · up x), all with biases.</summary>
internal sealed class VisionGatedMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "gate_proj")] readonly Dense gate;
    [ComponentName(Name = "up_proj")] readonly Dense up;
    [ComponentName(Name = "down_proj")] readonly Dense down;
    readonly string act;

    public VisionGatedMlp(QwenVisionConfig c, ScalarType dtype, Device device) : base(nameof(VisionGatedMlp))
    {
        gate = new Dense(c.Width, c.IntermediateSize, true, dtype, device);
        up = new Dense(c.Width, c.IntermediateSize, true, dtype, device);
        down = new Dense(c.IntermediateSize, c.Width, true, dtype, device);
        act = c.HiddenAct;
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return down.forward(Activations.Apply(act, gate.forward(x)) * up.forward(x)).MoveToOuterDisposeScope();
    }
}

internal sealed class VisionBlock : nn.Module
{
    [ComponentName(Name = "norm1")] readonly nn.Module<Tensor, Tensor> norm1;
    [ComponentName(Name = "norm2")] readonly nn.Module<Tensor, Tensor> norm2;
    [ComponentName(Name = "attn")] readonly VisionAttention attn;
    [ComponentName(Name = "mlp")] readonly nn.Module<Tensor, Tensor> mlp;

    public VisionBlock(QwenVisionConfig c, QwenFamily family, ScalarType dtype, Device device) : base(nameof(VisionBlock))
    {
        norm1 = VisionTower.Norm(c, family, dtype, device);
        norm2 = VisionTower.Norm(c, family, dtype, device);
        attn = new VisionAttention(c, dtype, device);
        mlp = family == QwenFamily.Qwen2VL ? new VisionMlp(c, dtype, device) : new VisionGatedMlp(c, dtype, device);
        RegisterComponents();
    }

    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Segments segments, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        var h = x.Plus(attn.Forward(norm1.forward(x), cos, sin, segments, impl));
        h = h.Plus(mlp.forward(norm2.forward(h)));
        return h.MoveToOuterDisposeScope();
    }
}

/// <summary>mlp.0 → exact GELU → mlp.2 (HF's nn.Sequential indices).</summary>
internal sealed class MergerMlp : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "0")] readonly Dense fc0;
    [ComponentName(Name = "2")] readonly Dense fc2;

    public MergerMlp(long inDim, long outDim, ScalarType dtype, Device device) : base(nameof(MergerMlp))
    {
        fc0 = new Dense(inDim, inDim, true, dtype, device);
        fc2 = new Dense(inDim, outDim, true, dtype, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return fc2.forward(nn.functional.gelu(fc0.forward(x))).MoveToOuterDisposeScope();
    }
}

internal sealed class PatchMerger : nn.Module<Tensor, Tensor>
{
    [ComponentName(Name = "ln_q")] readonly nn.Module<Tensor, Tensor> lnQ;
    [ComponentName(Name = "mlp")] readonly MergerMlp mlp;
    readonly long merged;

    public PatchMerger(QwenVisionConfig c, QwenFamily family, ScalarType dtype, Device device) : base(nameof(PatchMerger))
    {
        merged = (long)c.Width * c.MergeUnit;
        lnQ = VisionTower.Norm(c, family, dtype, device);
        mlp = new MergerMlp(merged, c.OutHiddenSize, dtype, device);
        RegisterComponents();
    }

    /// <summary>[N, W] → [N/4, out]: 4 consecutive patches (one 2×2 block) are concatenated.</summary>
    public override Tensor forward(Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        return mlp.forward(lnQ.forward(x).view(-1, merged)).MoveToOuterDisposeScope();
    }
}

/// <summary>Block-diagonal attention structure: contiguous segments [start, start+len) of the patch sequence.</summary>
internal sealed class Segments
{
    readonly List<(int Length, long[] Rows)> groups = [];
    readonly long[]? inverse;
    readonly int total;

    public Segments(IReadOnlyList<int> lengths)
    {
        var byLength = new SortedDictionary<int, List<int>>();
        int start = 0;
        foreach (var len in lengths)
        {
            if (len == 0) continue;
            if (!byLength.TryGetValue(len, out var starts)) byLength[len] = starts = [];
            starts.Add(start);
            start += len;
        }
        total = start;
        var order = new List<long>(total);
        foreach (var (len, starts) in byLength)
        {
            var rows = new long[starts.Count * len];
            for (int s = 0, i = 0; s < starts.Count; s++)
                for (int j = 0; j < len; j++) rows[i++] = starts[s] + j;
            groups.Add((len, rows));
            order.AddRange(rows);
        }
        bool identity = true;
        for (int i = 0; i < order.Count && identity; i++) identity = order[i] == i;
        if (!identity)
        {
            inverse = new long[total];
            for (int i = 0; i < order.Count; i++) inverse[order[i]] = i;
        }
    }

    public int Count => groups.Sum(g => g.Rows.Length / g.Length);

    /// <summary>q, k, v [N, heads, hd] → [N, heads, hd], each row attending to its own segment only.</summary>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        long n = q.shape[0], heads = q.shape[1], hd = q.shape[2];
        if (n != total) throw new InvalidOperationException($"segments cover {total} rows, got {n}");
        var outs = new List<Tensor>();
        foreach (var (len, rows) in groups)
        {
            long count = rows.Length / len;
            Tensor Pick(Tensor x)
            {
                var sel = groups.Count == 1 ? x : x.index_select(0, torch.tensor(rows, device: x.device));
                return sel.view(count, len, heads, hd).transpose(1, 2);                       // [count, heads, len, hd]
            }
            var (qs, ks, vs) = (Pick(q), Pick(k), Pick(v));
            var o = impl == AttentionImpl.Eager
                ? AttentionMath.Eager(qs, ks, vs, null)
                : nn.functional.scaled_dot_product_attention(qs, ks, vs, null, 0.0, false);
            outs.Add(o.transpose(1, 2).reshape(count * len, heads, hd));
        }
        var all = outs.Count == 1 ? outs[0] : torch.cat(outs, 0);
        if (inverse is not null) all = all.index_select(0, torch.tensor(inverse, device: q.device));
        return all.MoveToOuterDisposeScope();
    }
}

/// <summary>visual.* : the whole vision tower, pixel patches → merged tokens in the LLM's hidden size.</summary>
internal sealed class VisionTower : nn.Module
{
    [ComponentName(Name = "patch_embed")] readonly PatchEmbed patchEmbed;
    [ComponentName(Name = "blocks")] readonly ModuleList<VisionBlock> blocks;
    [ComponentName(Name = "merger")] readonly PatchMerger merger;
    readonly QwenVisionConfig cfg;
    readonly QwenFamily family;

    public VisionTower(QwenVisionConfig c, QwenFamily family, ScalarType dtype, Device device) : base(nameof(VisionTower))
    {
        cfg = c; this.family = family;
        patchEmbed = new PatchEmbed(c, dtype, device);
        blocks = new ModuleList<VisionBlock>(Enumerable.Range(0, c.Depth).Select(_ => new VisionBlock(c, family, dtype, device)).ToArray());
        merger = new PatchMerger(c, family, dtype, device);
        RegisterComponents();
    }

    internal static nn.Module<Tensor, Tensor> Norm(QwenVisionConfig c, QwenFamily family, ScalarType dtype, Device device) =>
        family == QwenFamily.Qwen2VL ? new LayerNormWithBias(c.Width, 1e-6, dtype, device) : new RmsNorm(c.Width, 1e-6, dtype, device);

    /// <summary>Checks a grid list against the pixel rows and returns it as host (t, h, w) triples.</summary>
    public (long T, long H, long W)[] HostGrid(Tensor pixelValues, Tensor gridThw, string what = "image")
    {
        if (gridThw.dim() != 2 || gridThw.shape[1] != 3)
            throw new InputException($"{what}_grid_thw must be [n, 3], got [{string.Join(",", gridThw.shape)}]");
        long[] flat;
        using (torch.NewDisposeScope()) flat = gridThw.detach().to(ScalarType.Int64, torch.CPU).contiguous().data<long>().ToArray();
        var grid = new (long, long, long)[flat.Length / 3];
        long rows = 0;
        for (int i = 0; i < grid.Length; i++)
        {
            long t = flat[3 * i], h = flat[3 * i + 1], w = flat[3 * i + 2];
            if (t <= 0 || h <= 0 || w <= 0 || h % cfg.SpatialMergeSize != 0 || w % cfg.SpatialMergeSize != 0)
                throw new InputException($"{what}_grid_thw row {i} = ({t}, {h}, {w}): each must be positive and h, w multiples of spatial_merge_size {cfg.SpatialMergeSize}");
            grid[i] = (t, h, w);
            rows += t * h * w;
        }
        if (pixelValues.dim() != 2 || pixelValues.shape[0] != rows || pixelValues.shape[1] != cfg.PatchDim)
            throw new InputException($"pixel_values [{string.Join(",", pixelValues.shape)}] must be [{rows}, {cfg.PatchDim}] " +
                                     $"(Σ t·h·w over {what}_grid_thw × channels·temporal_patch·patch²)");
        return grid;
    }

    /// <summary>pixelValues [N, C·T·P·P] with grid (t, h, w) per item → [N/4, out] merged tokens in item order.</summary>
    public Tensor Forward(Tensor pixelValues, (long T, long H, long W)[] grid, AttentionImpl impl)
    {
        using var scope = torch.NewDisposeScope();
        var dev = pixelValues.device;
        int unit = cfg.MergeUnit;
        var x = patchEmbed.Forward(pixelValues);                                  // [N, W]
        long n = x.shape[0];
        var rot = RotaryAngles(grid, dev);                                        // [N, hd/2] fp32
        var frames = new List<int>();
        foreach (var (t, h, w) in grid) for (long i = 0; i < t; i++) frames.Add((int)(h * w));
        var full = new Segments(frames);
        Segments? windows = null;
        long[]? restore = null;
        if (family == QwenFamily.Qwen25VL)
        {
            var (index, lengths) = WindowIndex(grid);
            windows = new Segments(lengths);
            var idx = torch.tensor(index, device: dev);
            x = x.view(n / unit, unit, -1).index_select(0, idx).view(n, -1);
            rot = rot.view(n / unit, unit, -1).index_select(0, idx).view(n, -1);
            restore = new long[index.Length];
            for (int i = 0; i < index.Length; i++) restore[index[i]] = i;
        }
        var emb = torch.cat([rot, rot], -1).unsqueeze(1);                         // [N, 1, hd]
        var (cos, sin) = (emb.cos(), emb.sin());
        for (int j = 0; j < blocks.Count; j++)
        {
            var seg = windows is null || cfg.FullAttBlockIndexes.Contains(j) ? full : windows;
            x = blocks[j].Forward(x, cos, sin, seg, impl);
        }
        var y = merger.forward(x);                                                // [N/4, out]
        if (restore is not null) y = y.index_select(0, torch.tensor(restore, device: dev));
        return y.MoveToOuterDisposeScope();
    }

    /// <summary>Per patch, the 2D rotary angles: [N, hd/2] = hd/4 height frequencies then hd/4 width frequencies.</summary>
    Tensor RotaryAngles((long T, long H, long W)[] grid, Device dev)
    {
        using var scope = torch.NewDisposeScope();
        int m = cfg.SpatialMergeSize;
        var hpos = new List<long>();
        var wpos = new List<long>();
        long maxHw = 1;
        foreach (var (t, h, w) in grid)
        {
            maxHw = Math.Max(maxHw, Math.Max(h, w));
            // Order of rows in pixel_values: merged-block row, merged-block column, then the m×m patches inside.
            for (long ti = 0; ti < t; ti++)
                for (long br = 0; br < h / m; br++)
                    for (long bc = 0; bc < w / m; bc++)
                        for (long ir = 0; ir < m; ir++)
                            for (long ic = 0; ic < m; ic++) { hpos.Add(br * m + ir); wpos.Add(bc * m + ic); }
        }
        var invFreq = MRope.InverseFrequencies(cfg.HeadDim / 2, cfg.RopeTheta, dev);               // [hd/4]
        var table = torch.outer(TorchScalars.Arange(maxHw, ScalarType.Float32, dev), invFreq);          // [maxHW, hd/4]
        var hRot = table.index_select(0, torch.tensor(hpos.ToArray(), device: dev));
        var wRot = table.index_select(0, torch.tensor(wpos.ToArray(), device: dev));
        return torch.cat([hRot, wRot], -1).MoveToOuterDisposeScope();
    }

    /// <summary>Qwen2.5-VL window order of the merged tokens and the window lengths in patches (empty windows dropped).</summary>
    internal (long[] Index, List<int> Lengths) WindowIndex((long T, long H, long W)[] grid)
    {
        int m = cfg.SpatialMergeSize;
        int win = cfg.WindowSize / m / cfg.PatchSize; // window side in merged tokens
        var index = new List<long>();
        var lengths = new List<int>();
        long offset = 0;
        foreach (var (t, h, w) in grid)
        {
            long lh = h / m, lw = w / m;
            // Pad each side up to the next multiple of win (a full extra window when it already divides, as HF).
            long nh = (lh + win - lh % win) / win, nw = (lw + win - lw % win) / win;
            for (long ti = 0; ti < t; ti++)
                for (long wr = 0; wr < nh; wr++)
                    for (long wc = 0; wc < nw; wc++)
                    {
                        int count = 0;
                        for (long r = wr * win; r < (wr + 1) * win; r++)
                            for (long c = wc * win; c < (wc + 1) * win; c++)
                                if (r < lh && c < lw) { index.Add(offset + (ti * lh + r) * lw + c); count++; }
                        if (count > 0) lengths.Add(count * cfg.MergeUnit);
                    }
            offset += t * lh * lw;
        }
        return (index.ToArray(), lengths);
    }
}
