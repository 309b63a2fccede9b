// Rollout data in the forms the step passes between its phases. ExperienceItem is one generated sample on the host
// (prompt and response tokens, the engine's log-probs): immutable, written once by generation. Every per-token
// quantity the later phases compute (old / reference log-probs, values, KL, advantages, returns) is a rollout-wide
// [N, A] fp32 tensor on the device, right-aligned like OpenRLHF's left-padded batches (row r's actions are its last
// R_r columns, A = longest response, 0 elsewhere) and stays one until logging. Experience is the model input of one
// micro-batch (replay_buffer.make_experience_batch: sequences left-padded, so the last A positions are the action
// slots); a micro-batch's slice of a rollout-wide tensor is taken explicitly with ActionTensors.Rows.
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

/// <summary>A prompt's images, shared by its n samples. PixelValues [N, C·T·P·P] and ImageGridThw [nImages, 3] live on
/// the host; ImageEmbeds [Σ t·h·w/4, H] is the actor's (frozen) vision-tower output cached on the device for the
/// current rollout, when the actor's vision tower is frozen (a cache: set once, same numbers as recomputing).</summary>
public sealed class VisionInput : IDisposable
{
    public required Tensor PixelValues { get; init; }
    public required Tensor ImageGridThw { get; init; }
    public Tensor? ImageEmbeds { get; set; }

    public void Dispose()
    {
        PixelValues.Dispose();
        ImageGridThw.Dispose();
        ImageEmbeds?.Dispose();
    }
}

/// <summary>One generated sample on the host (immutable).</summary>
public sealed class ExperienceItem
{
    /// <summary>Index of the prompt within the rollout, and of the sample within its prompt's group.</summary>
    public required int PromptIndex { get; init; }
    public required int SampleIndex { get; init; }
    /// <summary>[P] prompt ids, image pads expanded (state s_0).</summary>
    public required long[] PromptIds { get; init; }
    /// <summary>[R ≥ 1] response ids through the first stop token (actions a_t).</summary>
    public required long[] ResponseIds { get; init; }
    /// <summary>The prompt's images, or null for a text-only prompt.</summary>
    public VisionInput? Vision { get; init; }
    /// <summary>[R] log π_θold(a_t|s_t) from the engine while sampling (diagnostics only; empty when the sample did not
    /// come from the engine).</summary>
    public float[] RolloutLogProbs { get; init; } = [];

    public int ResponseLength => ResponseIds.Length;
    public int TotalLength => PromptIds.Length + ResponseIds.Length;
}

/// <summary>The model inputs of one collated micro-batch on the device. Owns every tensor it holds.</summary>
public sealed class Experience : IDisposable
{
    /// <summary>[B, S] int64: left padding, prompt, response (responses end at column S − 1).</summary>
    public required Tensor Sequences { get; init; }
    /// <summary>[B, S] int64: 1 on real tokens.</summary>
    public required Tensor AttentionMask { get; init; }
    /// <summary>[B, A] bool: the action slots of each row (right-aligned, A = longest response).</summary>
    public required Tensor ActionMask { get; init; }
    /// <summary>[N, C·T·P·P] patches of every row's images in row order (null when cached embeddings are used or no
    /// row has images).</summary>
    public Tensor? PixelValues { get; init; }
    /// <summary>[nImages, 3] grids of every row's images in row order (null when no row has images).</summary>
    public Tensor? ImageGridThw { get; init; }
    /// <summary>[Σ tokens, H] cached vision-tower outputs of every row's images (instead of PixelValues).</summary>
    public Tensor? ImageEmbeds { get; init; }
    /// <summary>The host samples this micro-batch was built from, in row order.</summary>
    public required IReadOnlyList<ExperienceItem> Items { get; init; }

    public long BatchSize => Sequences.shape[0];
    public long NumActions => ActionMask.shape[1];

    /// <summary>Builds the micro-batch. With <paramref name="useCachedVision"/>, rows whose images have cached embeddings
    /// pass those instead of pixels (all rows with images must have them then).</summary>
    public static Experience Collate(IReadOnlyList<ExperienceItem> items, Device device, long padTokenId, bool useCachedVision = false)
    {
        if (items.Count == 0) throw new ArgumentException("cannot collate an empty micro-batch");
        int b = items.Count;
        int s = items.Max(i => i.TotalLength);
        var seq = new long[b * s];
        var att = new long[b * s];
        Array.Fill(seq, padTokenId);
        for (int r = 0; r < b; r++)
        {
            var it = items[r];
            int off = s - it.TotalLength;
            Array.Copy(it.PromptIds, 0, seq, r * s + off, it.PromptIds.Length);
            Array.Copy(it.ResponseIds, 0, seq, r * s + off + it.PromptIds.Length, it.ResponseIds.Length);
            Array.Fill(att, 1L, r * s + off, it.TotalLength);
        }

        using var scope = torch.NewDisposeScope();
        var withImages = items.Where(i => i.Vision is not null).Select(i => i.Vision!).ToList();
        Tensor? pixels = null, grid = null, embeds = null;
        if (withImages.Count > 0)
        {
            grid = torch.cat(withImages.Select(v => v.ImageGridThw).ToArray(), 0).to(device);
            if (useCachedVision)
            {
                if (withImages.Any(v => v.ImageEmbeds is null)) throw new InvalidOperationException("vision embeddings were not cached for every prompt");
                embeds = torch.cat(withImages.Select(v => v.ImageEmbeds!).ToArray(), 0);
            }
            else pixels = torch.cat(withImages.Select(v => v.PixelValues).ToArray(), 0).to(device);
        }
        return new Experience
        {
            Sequences = torch.tensor(seq, [b, s], device: device).MoveToOuterDisposeScope(),
            AttentionMask = torch.tensor(att, [b, s], device: device).MoveToOuterDisposeScope(),
            ActionMask = ActionTensors.Mask(items, device).MoveToOuterDisposeScope(),
            PixelValues = pixels?.MoveToOuterDisposeScope(),
            ImageGridThw = grid?.MoveToOuterDisposeScope(),
            ImageEmbeds = embeds?.MoveToOuterDisposeScope(),
            Items = items,
        };
    }

    public void Dispose()
    {
        Sequences.Dispose(); AttentionMask.Dispose(); ActionMask.Dispose();
        PixelValues?.Dispose(); ImageGridThw?.Dispose(); ImageEmbeds?.Dispose();
    }
}

/// <summary>Right-aligned per-action tensors: building the mask, assembling micro-batch results into a rollout-wide
/// tensor and slicing a micro-batch back out. Every slot outside a row's actions is exactly 0.</summary>
public static class ActionTensors
{
    /// <summary>[N, A] bool, true on the last R_r columns of row r (A = longest response).</summary>
    public static Tensor Mask(IReadOnlyList<ExperienceItem> items, Device device)
    {
        int n = items.Count, a = items.Count == 0 ? 0 : items.Max(i => i.ResponseLength);
        var mask = new bool[n * a];
        for (int r = 0; r < n; r++) Array.Fill(mask, true, r * a + (a - items[r].ResponseLength), items[r].ResponseLength);
        return torch.tensor(mask, [n, a], device: device);
    }

    /// <summary>A micro-batch result [B, a] with its action mask → [B, width] fp32, right-aligned, 0 outside the mask
    /// (width ≥ a: the rollout's longest response).</summary>
    public static Tensor Align(Tensor values, Tensor mask, long width)
    {
        using var scope = torch.NewDisposeScope();
        var v = values.detach().to(ScalarType.Float32).masked_fill(mask.logical_not(), 0.0);
        long pad = width - v.shape[1];
        if (pad > 0) v = torch.cat([torch.zeros([v.shape[0], pad], ScalarType.Float32, v.device), v], 1);
        return v.MoveToOuterDisposeScope();
    }

    /// <summary>Rows <paramref name="rows"/> of a rollout-wide [N, W] tensor, cut to the micro-batch's A = mask.shape[1]
    /// last columns and 0 outside <paramref name="mask"/> [B, A].</summary>
    public static Tensor Rows(Tensor x, Tensor rows, Tensor mask)
    {
        using var scope = torch.NewDisposeScope();
        long a = mask.shape[1];
        var picked = x.index_select(0, rows);
        var cut = picked.narrow(1, picked.shape[1] - a, a);
        return cut.masked_fill(mask.logical_not(), 0.0).MoveToOuterDisposeScope();
    }

    /// <summary>Row r's values at its own action slots → float[R_r] per row (a host copy, for logging).</summary>
    public static float[][] PerRow(Tensor x, IReadOnlyList<ExperienceItem> items)
    {
        using var scope = torch.NewDisposeScope();
        var all = x.detach().to(ScalarType.Float32, torch.CPU).contiguous().data<float>().ToArray();
        long a = x.shape[1];
        var result = new float[items.Count][];
        for (int r = 0; r < items.Count; r++)
        {
            int len = items[r].ResponseLength;
            result[r] = new float[len];
            Array.Copy(all, r * a + (a - len), result[r], 0, len);
        }
        return result;
    }
}
