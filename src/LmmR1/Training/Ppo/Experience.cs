// Rollout data in the two forms OpenRLHF uses: ExperienceItem is one sample on the host (its BufferItem: prompt and
// response tokens, per-action arrays, scalar info), Experience is a collated micro-batch of tensors on the device
// (its Experience dataclass), grouped by RL role. Collation follows replay_buffer.make_experience_batch: every
// sequence and every per-action array is left-padded, so all responses end at the last column and the last A
// positions of a sequence are its action slots (A = longest response in the micro-batch).
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

/// <summary>A prompt's images, shared by its n samples. PixelValues [N, C·T·P·P] and ImageGridThw [nImages, 3] live on
/// the host; ImageEmbeds [Σ t·h·w/4, H] is the actor's (frozen) vision-tower output cached on the device for the
/// current rollout, when the actor's vision tower is frozen.</summary>
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

/// <summary>Per-sample scalars OpenRLHF keeps in experience.info (logged as train/*).</summary>
public sealed record SampleInfo
{
    public double Reward { get; set; }
    public double FormatReward { get; set; }
    public double AccuracyReward { get; set; }
    /// <summary>Masked mean of the per-token KL used in the reward (0 without a reference model).</summary>
    public double Kl { get; set; }
    /// <summary>Σ_t r_t of the shaped token rewards (upstream "return").</summary>
    public double Return { get; set; }
    public int ResponseLength { get; init; }
    public int TotalLength { get; init; }
}

/// <summary>One sample of a rollout on the host. Per-action arrays have the response's length R.</summary>
public sealed class ExperienceItem
{
    // ---- identity
    /// <summary>Index of the prompt within the rollout, and of the sample within its prompt's group.</summary>
    public required int PromptIndex { get; init; }
    public required int SampleIndex { get; init; }

    // ---- sequence: state s_0 = prompt, actions a_t = response tokens
    /// <summary>[P] prompt ids, image pads expanded.</summary>
    public required long[] PromptIds { get; init; }
    /// <summary>[R ≥ 1] response ids through the first stop token.</summary>
    public required long[] ResponseIds { get; init; }
    /// <summary>The prompt's images, or null for a text-only prompt.</summary>
    public VisionInput? Vision { get; init; }

    // ---- policy
    /// <summary>[R] log π_θold(a_t|s_t) from the engine while sampling (diagnostics only).</summary>
    public float[]? RolloutLogProbs { get; init; }
    /// <summary>[R] log π_θold(a_t|s_t) recomputed by a training-mode forward: what the PPO ratio compares against.</summary>
    public float[]? ActionLogProbs { get; set; }
    /// <summary>[R] log π_ref(a_t|s_t) (kept only with --use_kl_loss).</summary>
    public float[]? BaseActionLogProbs { get; set; }
    /// <summary>[R] per-token KL estimate for the reward (null: no KL term, or --use_kl_loss).</summary>
    public float[]? Kl { get; set; }

    // ---- critic
    /// <summary>[R] V_old(s_t) (gae only).</summary>
    public float[]? Values { get; set; }

    // ---- targets
    /// <summary>[R] advantages after shaping, GAE / return-to-go and whitening.</summary>
    public float[]? Advantages { get; set; }
    /// <summary>[R] returns (critic targets).</summary>
    public float[]? Returns { get; set; }

    // ---- info
    public required SampleInfo Info { get; init; }

    public int ResponseLength => ResponseIds.Length;
    public int TotalLength => PromptIds.Length + ResponseIds.Length;
}

/// <summary>A collated micro-batch on the device. Owns every tensor it holds.</summary>
public sealed class Experience : IDisposable
{
    // ---- sequence
    /// <summary>[B, S] int64: left padding, prompt, response (responses end at column S − 1).</summary>
    public required Tensor Sequences { get; init; }
    /// <summary>[B, S] int64: 1 on real tokens.</summary>
    public required Tensor AttentionMask { get; init; }
    /// <summary>[B, A] bool: the action slots of each row (right-aligned, A = longest response).</summary>
    public required Tensor ActionMask { get; init; }
    /// <summary>[N, C·T·P·P] patches of every row's images in row order (null when cached embeddings are used or no
    /// row has images).</summary>
    public Tensor? PixelValues { get; init; }
    /// <summary>[nImages, 3] grids of every row's images in row order.</summary>
    public Tensor? ImageGridThw { get; init; }
    /// <summary>[Σ tokens, H] cached vision-tower outputs of every row's images (instead of PixelValues).</summary>
    public Tensor? ImageEmbeds { get; init; }

    // ---- policy
    /// <summary>[B, A] fp32 log π_θold, 0 on padding.</summary>
    public Tensor? ActionLogProbs { get; init; }
    /// <summary>[B, A] fp32 log π_ref (--use_kl_loss only).</summary>
    public Tensor? BaseActionLogProbs { get; init; }

    // ---- critic
    /// <summary>[B, A] fp32 V_old.</summary>
    public Tensor? Values { get; init; }

    // ---- targets
    /// <summary>[B, A] fp32.</summary>
    public Tensor? Advantages { get; init; }
    /// <summary>[B, A] fp32.</summary>
    public Tensor? Returns { get; init; }

    /// <summary>The host samples this micro-batch was built from, in row order.</summary>
    public required IReadOnlyList<ExperienceItem> Items { get; init; }

    public long BatchSize => Sequences.shape[0];
    public long NumActions => ActionMask.shape[1];

    /// <summary>Builds the micro-batch. With <paramref name="useCachedVision"/>, rows whose images have cached embeddings
    /// pass those instead of pixels (all rows with images must have them then). Per-action arrays are included when
    /// every item has them.</summary>
    public static Experience Collate(IReadOnlyList<ExperienceItem> items, Device device, long padTokenId, bool useCachedVision = false)
    {
        if (items.Count == 0) throw new ArgumentException("cannot collate an empty micro-batch");
        int b = items.Count;
        int s = items.Max(i => i.TotalLength), a = items.Max(i => i.ResponseLength);
        var seq = new long[b * s];
        var att = new long[b * s];
        var act = new bool[b * a];
        Array.Fill(seq, padTokenId);
        for (int r = 0; r < b; r++)
        {
            var it = items[r];
            int off = s - it.TotalLength;
            Array.Copy(it.PromptIds, 0, seq, r * s + off, it.PromptIds.Length);
            Array.Copy(it.ResponseIds, 0, seq, r * s + off + it.PromptIds.Length, it.ResponseIds.Length);
            Array.Fill(att, 1L, r * s + off, it.TotalLength);
            Array.Fill(act, true, r * a + (a - it.ResponseLength), it.ResponseLength);
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
        var e = new Experience
        {
            Sequences = torch.tensor(seq, [b, s], device: device).MoveToOuterDisposeScope(),
            AttentionMask = torch.tensor(att, [b, s], device: device).MoveToOuterDisposeScope(),
            ActionMask = torch.tensor(act, [b, a], device: device).MoveToOuterDisposeScope(),
            PixelValues = pixels?.MoveToOuterDisposeScope(),
            ImageGridThw = grid?.MoveToOuterDisposeScope(),
            ImageEmbeds = embeds?.MoveToOuterDisposeScope(),
            ActionLogProbs = Actions(items, i => i.ActionLogProbs, a, device),
            BaseActionLogProbs = Actions(items, i => i.BaseActionLogProbs, a, device),
            Values = Actions(items, i => i.Values, a, device),
            Advantages = Actions(items, i => i.Advantages, a, device),
            Returns = Actions(items, i => i.Returns, a, device),
            Items = items,
        };
        return e;
    }

    /// <summary>[B, A] right-aligned per-action array, or null when any item lacks it.</summary>
    static Tensor? Actions(IReadOnlyList<ExperienceItem> items, Func<ExperienceItem, float[]?> get, int a, Device device)
    {
        if (items.Any(i => get(i) is null)) return null;
        var data = new float[items.Count * a];
        for (int r = 0; r < items.Count; r++)
        {
            var v = get(items[r])!;
            if (v.Length != items[r].ResponseLength)
                throw new InvalidOperationException($"per-action array of length {v.Length} for a response of {items[r].ResponseLength} tokens");
            Array.Copy(v, 0, data, r * a + (a - v.Length), v.Length);
        }
        return torch.tensor(data, [items.Count, a], device: device).DetachFromDisposeScope();
    }

    /// <summary>Row r's values at its own action slots (the last R columns) → float[R] (host copy).</summary>
    public static float[][] SplitActions(Tensor values, IReadOnlyList<ExperienceItem> items)
    {
        using var cpu = values.detach().to(ScalarType.Float32, torch.CPU).contiguous();
        var all = cpu.data<float>().ToArray();
        long a = values.shape[1];
        var result = new float[items.Count][];
        for (int r = 0; r < items.Count; r++)
        {
            int len = items[r].ResponseLength;
            result[r] = new float[len];
            Array.Copy(all, r * a + (a - len), result[r], 0, len);
        }
        return result;
    }

    public void Dispose()
    {
        Sequences.Dispose(); AttentionMask.Dispose(); ActionMask.Dispose();
        PixelValues?.Dispose(); ImageGridThw?.Dispose(); ImageEmbeds?.Dispose();
        ActionLogProbs?.Dispose(); BaseActionLogProbs?.Dispose(); Values?.Dispose();
        Advantages?.Dispose(); Returns?.Dispose();
    }
}
