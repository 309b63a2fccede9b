// Batching knobs of the generation engine: how many rows and KV positions a micro-batch may hold, how often the host
// looks for finished samples, and when finished rows are dropped from the running batch.
using LmmR1.Infrastructure;

namespace LmmR1.Generation;

public sealed record GenerationEngineOptions
{
    /// <summary>Most samples decoded together.</summary>
    public int MaxRowsPerBatch { get; init; } = 512;
    /// <summary>KV-cache budget in positions: rows × (longest prompt + max_new_tokens) ≤ this (0 = no limit). Memory per
    /// position = layers × 2 × kv_heads × head_dim × dtype size (36 KiB for Qwen2.5-VL-3B in bf16).</summary>
    public long MaxTokensPerBatch { get; init; } = 1L << 19;
    /// <summary>Prefill budget: prompts × longest prompt ≤ this (0 = no limit).</summary>
    public long MaxPrefillTokens { get; init; } = 1L << 16;
    /// <summary>Most distinct prompts per micro-batch (OpenRLHF micro_rollout_batch_size; 0 = no limit).</summary>
    public int MaxPromptsPerBatch { get; init; }
    /// <summary>Decode steps between host checks for finished samples (each check is one small device→host copy,
    /// i.e. one sync). Finished rows keep decoding until the next check; their extra tokens are discarded.</summary>
    public int CheckEvery { get; init; } = 4;
    /// <summary>At a check, drop finished rows (copying the KV cache once) when they are at least this fraction of the
    /// running batch. 0 = whenever any row finished; above 1 = never. CUDA-graph path (rows padded to buckets): move the
    /// live rows into a smaller row bucket when they fit one that saves at least this fraction of the step's rows
    /// (GraphDecodeStep.CompactTo; every smaller bucket saves ≥ 1/4, so 0 and 0.25 behave alike there).</summary>
    public double CompactFraction { get; init; } = 0.25;
    /// <summary>CUDA-graph path: attention reads the cache's first positions in multiples of this many (the filled
    /// prefix rounded up; one graph per such window, captured when a batch first reaches it) instead of the whole
    /// capacity bucket. 0 = the whole bucket in one graph. Same tokens either way (the positions beyond are masked).</summary>
    public int AttentionWindow { get; init; } = 128;
    /// <summary>Prefill each prompt once and copy its KV rows to its samples (true), or prefill one copy of the prompt per
    /// sample (false: the plain way, for comparisons).</summary>
    public bool SharePrefix { get; init; } = true;
    /// <summary>Never sample the model's &lt;|image_pad|&gt; / &lt;|video_pad|&gt; tokens: one in a response would not match the
    /// prompt's pixel inputs when the trainer re-runs prompt + response (vLLM has no such guard).</summary>
    public bool BanVisionPadTokens { get; init; } = true;
    /// <summary>On CUDA, decode with captured CUDA graphs (GraphDecodeStep) when the native extension is available;
    /// false, CPU, or no extension: the eager loop.</summary>
    public bool CudaGraphs { get; init; } = true;
    /// <summary>Run the graph path's static decode step (StaticKvCache, device-side positions and RNG) eagerly instead of
    /// capturing it, on any device: the same computation as the replayed graph, for checking a capture against it.</summary>
    public bool StaticStepWithoutGraph { get; init; }

    public void Validate()
    {
        if (MaxRowsPerBatch < 1) throw new InputException($"max rows per batch must be ≥ 1, got {MaxRowsPerBatch}");
        if (MaxTokensPerBatch < 0) throw new InputException($"token budget must be ≥ 0, got {MaxTokensPerBatch}");
        if (MaxPrefillTokens < 0) throw new InputException($"prefill token budget must be ≥ 0, got {MaxPrefillTokens}");
        if (MaxPromptsPerBatch < 0) throw new InputException($"prompts per batch must be ≥ 0, got {MaxPromptsPerBatch}");
        if (CheckEvery < 1) throw new InputException($"check interval must be ≥ 1, got {CheckEvery}");
        if (!(CompactFraction >= 0)) throw new InputException($"compaction fraction must be ≥ 0, got {CompactFraction}");
        if (AttentionWindow < 0) throw new InputException($"attention window must be ≥ 0 (0 = the whole capacity), got {AttentionWindow}");
    }
}
