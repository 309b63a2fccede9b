// Progress reports and counters of a generation call (for the CLI progress bar and the benchmark).
namespace LmmR1.Generation;

/// <summary>Reported after each batch-wide check of finished samples.</summary>
public readonly record struct GenerationProgress(int PromptsDone, int PromptsTotal, long SamplesDone, long SamplesTotal, long TokensGenerated);

/// <summary>Counters of the last Generate call (timings in seconds; prefill includes the vision tower).</summary>
public sealed class GenerationStats
{
    public int MicroBatches { get; set; }
    public double PrefillSeconds { get; set; }
    public double DecodeSeconds { get; set; }
    public long PrefillTokens { get; set; }
    /// <summary>Decode forward passes (one per step per micro-batch).</summary>
    public long DecodeSteps { get; set; }
    /// <summary>Σ over decode steps of the rows in the running batch (finished rows not yet dropped included; on the
    /// CUDA-graph path the row bucket, padding included).</summary>
    public long RowSteps { get; set; }
    /// <summary>Tokens returned (through the first stop).</summary>
    public long OutputTokens { get; set; }
    public int Checks { get; set; }
    /// <summary>Times finished rows were dropped (eager loop) or the live rows moved into a smaller row bucket (graphs).</summary>
    public int Compactions { get; set; }
    /// <summary>Largest number of rows decoded together and the KV capacity (positions) of that batch.</summary>
    public int MaxRows { get; set; }
    public int MaxCapacity { get; set; }
    /// <summary>CUDA-graph decoding: steps captured in this call (0 when all were reused; one per row bucket used, the
    /// smaller buckets of compactions included), their capture time (warm-up runs included) and the largest row bucket
    /// replayed.</summary>
    public int GraphCaptures { get; set; }
    public double GraphCaptureSeconds { get; set; }
    public int GraphRows { get; set; }
}
