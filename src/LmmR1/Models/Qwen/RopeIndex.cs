// M-RoPE position ids for a prefill (HF get_rope_index, spec §4): per row, over the unpadded tokens, text runs count
// up on all three rows and each image/video gets (t, h, w) grid positions after the text before it. Conventions follow
// transformers 5 (which made the fixtures), not the 4.5x code the spec describes: padded slots hold 0 (1 on the
// text-only path) and rope_delta = max + 1 − (unpadded length). The positions of all real tokens, and so every
// decode position, are the same in both. Runs on the host (prefill only, once per sequence).
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

public static class RopeIndex
{
    /// <param name="inputIds">[B, L] int64</param>
    /// <param name="attentionMask">[B, L] (1 = token, 0 = padding) or null (no padding)</param>
    /// <param name="imageGridThw">[nImages, 3] in batch order, or null</param>
    /// <param name="videoGridThw">[nVideos, 3] in batch order, or null</param>
    /// <param name="secondPerGridTs">Qwen2.5-VL video seconds per temporal grid step, one per video (default 1.0)</param>
    /// <returns>positionIds [3, B, L] int64 and ropeDeltas [B] int64 (max position + 1 − number of real tokens), on
    /// inputIds' device.</returns>
    public static (Tensor PositionIds, Tensor RopeDeltas) Compute(Tensor inputIds, Tensor? attentionMask, Tensor? imageGridThw,
        QwenVLConfig config, Tensor? videoGridThw = null, double[]? secondPerGridTs = null)
    {
        if (inputIds.dim() != 2) throw new InputException($"input_ids must be [B, L], got [{string.Join(",", inputIds.shape)}]");
        int b = (int)inputIds.shape[0], l = (int)inputIds.shape[1];
        if (attentionMask is not null && !attentionMask.shape.SequenceEqual(inputIds.shape))
            throw new InputException($"attention_mask [{string.Join(",", attentionMask.shape)}] must have the shape of input_ids [{b},{l}]");
        var dev = inputIds.device;
        long[] ids = HostLongs(inputIds);
        long[]? mask = attentionMask is null ? null : HostLongs(attentionMask);
        var pos = new long[3 * b * l];
        var deltas = new long[b];

        bool vision = config.Vision is not null && (imageGridThw is not null || videoGridThw is not null);
        if (!vision)
        {
            // Text only: cumsum(mask) − 1 with padding set to 1; the delta's max includes those 1s (as HF).
            for (int r = 0; r < b; r++)
            {
                long max = long.MinValue, c = 0, valid = 0;
                for (int j = 0; j < l; j++)
                {
                    long p;
                    if (mask is null) p = j;
                    else { c += mask[r * l + j]; p = mask[r * l + j] == 0 ? 1 : c - 1; }
                    if (mask is null || mask[r * l + j] != 0) valid++;
                    for (int row = 0; row < 3; row++) pos[(row * b + r) * l + j] = p;
                    max = Math.Max(max, p);
                }
                deltas[r] = max + 1 - valid;
            }
            return Result(pos, deltas, b, l, dev);
        }

        var v = config.Vision!;
        long[] imageGrid = imageGridThw is null ? [] : HostLongs(imageGridThw);
        long[] videoGrid = videoGridThw is null ? [] : HostLongs(videoGridThw);
        int imageIndex = 0, videoIndex = 0;
        var tok = config.Tokens;
        for (int r = 0; r < b; r++)
        {
            var cols = new List<int>();
            for (int j = 0; j < l; j++) if (mask is null || mask[r * l + j] == 1) cols.Add(j);
            var t = cols.Select(j => ids[r * l + j]).ToArray();
            int images = 0, videos = 0;
            for (int j = 0; j + 1 < t.Length; j++)
                if (t[j] == tok.VisionStartTokenId)
                {
                    if (t[j + 1] == tok.ImageTokenId) images++;
                    else if (t[j + 1] == tok.VideoTokenId) videos++;
                }
            var p3 = new long[3][];
            for (int row = 0; row < 3; row++) p3[row] = new long[t.Length];
            int n = 0, st = 0;
            long next = 0; // max position so far + 1
            void Text(int count)
            {
                for (int k = 0; k < count; k++, n++) p3[0][n] = p3[1][n] = p3[2][n] = next + k;
                next += count;
            }
            for (int item = 0, items = images + videos; item < items; item++)
            {
                int edImage = images > 0 ? IndexOf(t, tok.ImageTokenId, st) : -1;
                int edVideo = videos > 0 ? IndexOf(t, tok.VideoTokenId, st) : -1;
                bool isImage = edImage >= 0 && (edVideo < 0 || edImage < edVideo);
                int ed = isImage ? edImage : edVideo;
                long[] grid = isImage ? imageGrid : videoGrid;
                int gi = isImage ? imageIndex++ : videoIndex++;
                if (isImage) images--; else videos--;
                if (ed < 0 || 3 * gi + 2 >= grid.Length)
                    throw new InputException($"row {r}: input_ids have more {(isImage ? "images" : "videos")} (<|vision_start|> followed by a pad token) " +
                                             $"than {(isImage ? "image_grid_thw" : "video_grid_thw")} has rows ({grid.Length / 3})");
                long gt = grid[3 * gi], gh = grid[3 * gi + 1] / v.SpatialMergeSize, gw = grid[3 * gi + 2] / v.SpatialMergeSize;
                double secondsPerGrid = isImage ? 0 : secondPerGridTs is { } s && gi < s.Length ? s[gi] : 1.0;
                Text(ed - st);
                long baseP = next;
                long max = next - 1;
                long count = gt * gh * gw;
                if (ed + count > t.Length)
                    throw new InputException($"row {r}: the {(isImage ? "image" : "video")} at token {cols[ed]} needs {count} pad tokens but the row ends first");
                for (long ti = 0; ti < gt; ti++)
                {
                    long tp = config.Family == QwenFamily.Qwen25VL ? (long)(ti * secondsPerGrid * v.TokensPerSecond) : ti;
                    for (long hi = 0; hi < gh; hi++)
                        for (long wi = 0; wi < gw; wi++, n++)
                        {
                            p3[0][n] = baseP + tp; p3[1][n] = baseP + hi; p3[2][n] = baseP + wi;
                            max = Math.Max(max, Math.Max(p3[0][n], Math.Max(p3[1][n], p3[2][n])));
                        }
                }
                next = max + 1;
                st = ed + (int)count;
            }
            if (st < t.Length) Text(t.Length - st);
            long rowMax = t.Length == 0 ? long.MinValue : Enumerable.Range(0, 3).Max(row => p3[row].Max());
            for (int k = 0; k < t.Length; k++)
                for (int row = 0; row < 3; row++) pos[(row * b + r) * l + cols[k]] = p3[row][k];
            deltas[r] = t.Length == 0 ? 0 : rowMax + 1 - t.Length;
        }
        return Result(pos, deltas, b, l, dev);
    }

    /// <summary>Per row, the offset from a cache index to its position for the tokens that follow a prefill:
    /// max position over the real tokens + 1 − L (L = padded prefill length), so that token L + k sits at L + k + offset.</summary>
    /// <param name="positionIds">[3, B, L]</param>
    /// <param name="valid">[B, L] bool, true for real tokens</param>
    public static Tensor NextPositionOffsets(Tensor positionIds, Tensor valid)
    {
        using var scope = torch.NewDisposeScope();
        long l = positionIds.shape[2];
        var rowMax = positionIds.amax([0]).masked_fill(valid.logical_not(), TorchScalars.MinusOne).amax([1]); // [B]; −1 for empty rows
        return rowMax.AddS(1 - l).MoveToOuterDisposeScope();
    }

    /// <summary>Decode positions for T new tokens after <paramref name="past"/> cached ones: past + k + offset on all
    /// three rows → [3, B, T] (offsets from <see cref="NextPositionOffsets"/>).</summary>
    public static Tensor DecodePositions(Tensor offsets, long past, long newTokens)
    {
        using var scope = torch.NewDisposeScope();
        long b = offsets.shape[0];
        var p = TorchScalars.Arange(past, past + newTokens, ScalarType.Int64, offsets.device).unsqueeze(0).Plus(offsets.view(b, 1));
        return p.unsqueeze(0).expand(3, b, newTokens).contiguous().MoveToOuterDisposeScope();
    }

    static int IndexOf(long[] t, long id, int from)
    {
        for (int i = from; i < t.Length; i++) if (t[i] == id) return i;
        return -1;
    }

    // Scoped: the detach/to/tensor intermediates stay alive through the native calls that read them (TorchScalars.cs).
    static long[] HostLongs(Tensor t)
    {
        using var scope = torch.NewDisposeScope();
        return t.detach().to(ScalarType.Int64, torch.CPU).contiguous().data<long>().ToArray();
    }

    static (Tensor, Tensor) Result(long[] pos, long[] deltas, int b, int l, Device dev)
    {
        using var scope = torch.NewDisposeScope();
        var p = torch.tensor(pos, [3, b, l], ScalarType.Int64).to(dev);
        var d = torch.tensor(deltas, ScalarType.Int64).to(dev);
        return (p.MoveToOuterDisposeScope(), d.MoveToOuterDisposeScope());
    }
}
