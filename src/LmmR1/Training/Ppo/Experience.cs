// Rollout data in the forms the step passes between its phases. ExperienceItem is one generated sample on the host
// (prompt and response tokens, the engine's log-probs): immutable, written once by generation. Every per-token
// quantity the later phases compute (old / reference log-probs, values, KL, advantages, returns) is a rollout-wide
// [N, A] fp32 tensor on the device, right-aligned like OpenRLHF's left-padded batches (row r's actions are its last
// R_r columns, A = longest response, 0 elsewhere) and stays one until logging. Experience is the model input of one
// micro-batch (replay_buffer.make_experience_batch: sequences left-padded, so the last A positions are the action
// slots); a micro-batch's slice of a rollout-wide tensor is taken explicitly with ActionTensors.Rows.
using LmmR1.Models.Qwen;
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

/// <summary>A prompt's images, shared by its n samples. PixelValues [N, C·T·P·P] and ImageGridThw [nImages, 3] live on
/// the host; ImageEmbeds [Σ t·h·w/4, H] is the actor's vision-tower output for them at the actor's current weights,
/// cached on the device (set once per rollout before generation; dropped by the update when the tower trains, since its
/// weights then change).</summary>
public sealed class VisionInput : IDisposable
{
    public required Tensor PixelValues { get; init; }
    public required Tensor ImageGridThw { get; init; }
    public Tensor? ImageEmbeds { get; set; }

    /// <summary>The vision tower's merged tokens for these images: Σ t·h·w / merge² over the rows of ImageGridThw.</summary>
    public long MergedTokens(long mergeUnit)
    {
        using var g = ImageGridThw.to(ScalarType.Int64, torch.CPU).contiguous();
        var thw = g.data<long>().ToArray();
        long sum = 0;
        for (int i = 0; i + 2 < thw.Length; i += 3) sum += thw[i] * thw[i + 1] * thw[i + 2];
        return sum / mergeUnit;
    }

    /// <summary>[Σ tokens, H] <paramref name="model"/>'s vision tower over the images of <paramref name="visions"/> in one
    /// call, in their order (attention stays within each image), in the caller's dispose scope and grad mode.</summary>
    public static Tensor EncodeTogether(QwenVLModel model, IReadOnlyList<VisionInput> visions)
    {
        if (visions.Count == 1) return model.EncodeVision(visions[0].PixelValues, visions[0].ImageGridThw);
        var pixels = torch.cat(visions.Select(v => v.PixelValues.to(model.Device)).ToArray(), 0);
        var grid = torch.cat(visions.Select(v => v.ImageGridThw).ToArray(), 0);
        return model.EncodeVision(pixels, grid);
    }

    /// <summary>Drops the cached embeddings (the actor's vision weights changed).</summary>
    public void ForgetEmbeds()
    {
        ImageEmbeds?.Dispose();
        ImageEmbeds = null;
    }

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

/// <summary>The model inputs of one collated micro-batch on the device. Owns every tensor it holds. A prompt's images
/// are held once however many of its samples the micro-batch has (<see cref="Visions"/>), and
/// <see cref="ImageFeatures"/> encodes each once.</summary>
public sealed class Experience : IDisposable
{
    /// <summary>[B, S] int64: left padding, prompt, response (responses end at column S − 1).</summary>
    public required Tensor Sequences { get; init; }
    /// <summary>[B, S] int64: 1 on real tokens.</summary>
    public required Tensor AttentionMask { get; init; }
    /// <summary>[B, A] bool: the action slots of each row (right-aligned, A = longest response).</summary>
    public required Tensor ActionMask { get; init; }
    /// <summary>[nImages, 3] grids of every row's images in row order (null when no row has images).</summary>
    public Tensor? ImageGridThw { get; init; }
    /// <summary>[Σ tokens, H] precomputed vision-tower outputs of every row's images in row order (a cache given to
    /// Collate), or null: <see cref="ImageFeatures"/> encodes <see cref="Visions"/>.</summary>
    public Tensor? ImageEmbeds { get; init; }
    /// <summary>The distinct prompts' images of this micro-batch, in order of first appearance (not owned).</summary>
    public IReadOnlyList<VisionInput> Visions { get; init; } = [];
    /// <summary>Per row with images (in row order), its index in <see cref="Visions"/>.</summary>
    public IReadOnlyList<int> RowVisions { get; init; } = [];
    /// <summary>The host samples this micro-batch was built from, in row order.</summary>
    public required IReadOnlyList<ExperienceItem> Items { get; init; }
    /// <summary>With --packing_samples: where each row lies when the rows run as one sequence without padding
    /// (PolicyForward.ActionHidden); null: the padded forward.</summary>
    public PackedSequences? Packing { get; init; }

    public long BatchSize => Sequences.shape[0];
    public long NumActions => ActionMask.shape[1];

    /// <summary>Builds the micro-batch. With <paramref name="cachedEmbeds"/> (a prompt's images → that model's cached
    /// vision-tower output), rows with images take those (every prompt with images must have one then).</summary>
    /// <param name="pack">Also lay the rows out for the padding-free forward (--packing_samples).</param>
    /// <param name="sharePrompts">With <paramref name="pack"/>: rows with the same prompt (tokens and images) hold it once
    /// in the packed sequence (--packing_share_prompts).</param>
    public static Experience Collate(IReadOnlyList<ExperienceItem> items, Device device, long padTokenId,
                                     Func<VisionInput, Tensor?>? cachedEmbeds = null, bool pack = false, bool sharePrompts = false)
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
        var distinct = new List<VisionInput>();
        var rowVisions = new List<int>(withImages.Count);
        var seen = new Dictionary<VisionInput, int>(ReferenceEqualityComparer.Instance);
        foreach (var v in withImages)
        {
            if (!seen.TryGetValue(v, out int k)) { k = distinct.Count; seen[v] = k; distinct.Add(v); }
            rowVisions.Add(k);
        }
        Tensor? grid = null, embeds = null;
        if (withImages.Count > 0)
        {
            grid = torch.cat(withImages.Select(v => v.ImageGridThw).ToArray(), 0).to(device);
            if (cachedEmbeds is not null)
            {
                var cached = withImages.Select(cachedEmbeds).ToList();
                if (cached.Any(e => e is null)) throw new InvalidOperationException("vision embeddings were not cached for every prompt");
                embeds = torch.cat(cached.Select(e => e!).ToArray(), 0);
            }
        }
        return new Experience
        {
            Sequences = torch.tensor(seq, [b, s], device: device).MoveToOuterDisposeScope(),
            AttentionMask = torch.tensor(att, [b, s], device: device).MoveToOuterDisposeScope(),
            ActionMask = ActionTensors.Mask(items, device).MoveToOuterDisposeScope(),
            ImageGridThw = grid?.MoveToOuterDisposeScope(),
            ImageEmbeds = embeds?.MoveToOuterDisposeScope(),
            Visions = distinct,
            RowVisions = rowVisions,
            Items = items,
            Packing = !pack ? null
                : sharePrompts ? PackedSequences.FromRows(PromptGroups(items), device)
                : PackedSequences.FromLengths(items.Select(i => i.TotalLength).ToList(), device),
        };
    }

    /// <summary>Rows grouped by identical prompts: the same images (the same <see cref="VisionInput"/>, or none) and the same
    /// prompt tokens.</summary>
    public static List<PackedRow> PromptGroups(IReadOnlyList<ExperienceItem> items)
    {
        var groups = new List<(ExperienceItem First, int Id)>();
        var rows = new List<PackedRow>(items.Count);
        foreach (var it in items)
        {
            int id = -1;
            foreach (var (first, gid) in groups)
                if (ReferenceEquals(first.Vision, it.Vision) && (ReferenceEquals(first.PromptIds, it.PromptIds) || first.PromptIds.AsSpan().SequenceEqual(it.PromptIds)))
                { id = gid; break; }
            if (id < 0) { id = groups.Count; groups.Add((it, id)); }
            rows.Add(new PackedRow(id, it.PromptIds.Length, it.ResponseLength));
        }
        return rows;
    }

    /// <summary>[Σ tokens, H] the vision features of every row's images in row order, in the caller's dispose scope:
    /// the cached embeddings when Collate had them, else one vision-tower pass of <paramref name="model"/> over the
    /// distinct prompts' images (each encoded once, however many of its samples are here), copied to the rows by
    /// index_select, so in grad mode every row's gradient flows back into that one pass. Null without images.</summary>
    public Tensor? ImageFeatures(QwenVLModel model) => ImageFeatures(model, null);

    /// <summary>The features the forward of this micro-batch consumes: those of the rows whose prompt the packed sequence
    /// holds when it shares prompts (one copy per group), else every row's (<see cref="ImageFeatures(QwenVLModel)"/>).</summary>
    public Tensor? ForwardImageFeatures(QwenVLModel model) =>
        Packing is { SharesPrompts: true } p ? ImageFeatures(model, p.PromptRows()) : ImageFeatures(model, null);

    // The features of the images of rows (null = every row) in that order.
    Tensor? ImageFeatures(QwenVLModel model, IReadOnlyList<int>? rows)
    {
        if (Visions.Count == 0) return null;
        // Position of each row with images among those rows (RowVisions and a cached ImageEmbeds are in that order).
        var imageRow = new Dictionary<int, int>();
        for (int r = 0; r < Items.Count; r++) if (Items[r].Vision is not null) imageRow[r] = imageRow.Count;
        var wanted = rows?.Where(imageRow.ContainsKey).Select(r => imageRow[r]).ToList();
        bool everyRow = wanted is null || wanted.SequenceEqual(Enumerable.Range(0, imageRow.Count));
        if (ImageEmbeds is not null && everyRow) return ImageEmbeds.alias();
        using var scope = torch.NewDisposeScope();
        long unit = model.Config.Vision!.MergeUnit;
        var distinctCounts = Visions.Select(v => v.MergedTokens(unit)).ToArray();   // merged tokens per distinct prompt
        Tensor source;
        long[] counts;
        int[] unitOf;   // per wanted image row, its unit (row with images, or distinct prompt) in source
        if (ImageEmbeds is not null)
        {
            source = ImageEmbeds;                                                                      // per image row
            counts = RowVisions.Select(k => distinctCounts[k]).ToArray();
            unitOf = [.. wanted!];
        }
        else
        {
            source = VisionInput.EncodeTogether(model, Visions);                                      // [Σ_distinct, H]
            counts = distinctCounts;
            unitOf = (wanted ?? Enumerable.Range(0, imageRow.Count).ToList()).Select(k => RowVisions[k]).ToArray();
            if (unitOf.SequenceEqual(Enumerable.Range(0, Visions.Count))) return source.MoveToOuterDisposeScope();   // each prompt once, in order
        }
        var offsets = new long[counts.Length];
        for (int i = 1; i < counts.Length; i++) offsets[i] = offsets[i - 1] + counts[i - 1];
        var index = unitOf.SelectMany(k => Enumerable.Range(0, (int)counts[k]).Select(j => offsets[k] + j)).ToArray();
        return source.index_select(0, torch.tensor(index, device: source.device)).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        Sequences.Dispose(); AttentionMask.Dispose(); ActionMask.Dispose();
        ImageGridThw?.Dispose(); ImageEmbeds?.Dispose(); Packing?.Dispose();
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
        var v = values.detach().to(ScalarType.Float32).FillS(mask.logical_not(), 0.0);
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
        return cut.FillS(mask.logical_not(), 0.0).MoveToOuterDisposeScope();
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
