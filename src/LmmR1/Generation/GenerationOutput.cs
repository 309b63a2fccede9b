// One generated sample: tokens through the first stop, their rollout log-probs and why it ended.
namespace LmmR1.Generation;

public enum FinishReason
{
    /// <summary>A stop token was sampled or a stop string appeared.</summary>
    Stop,
    /// <summary>max_new_tokens were generated.</summary>
    Length,
}

/// <summary>One sample. Tokens run through the first stop (the stop token itself, or the token that completed a stop
/// string, is the last one kept) — exactly the positions of OpenRLHF's action mask — and nothing after it.</summary>
public sealed record GenerationOutput
{
    public required int PromptIndex { get; init; }
    public required int SampleIndex { get; init; }
    public required int PromptLength { get; init; }
    public required int[] TokenIds { get; init; }
    /// <summary>log_softmax(logits / T)[token] in fp32 per generated token: the unfiltered temperature-scaled
    /// distribution, as OpenRLHF's actor recomputes it (top-k/top-p/min-p and the min_new_tokens ban are not applied).
    /// Greedy (T = 0) uses T = 1.</summary>
    public required float[] LogProbs { get; init; }
    public required FinishReason Finish { get; init; }
    /// <summary>The stop token that ended the sample (its last token), if any.</summary>
    public int? StopTokenId { get; init; }
    /// <summary>The stop string that ended the sample, if any.</summary>
    public string? StopString { get; init; }

    public int ResponseLength => TokenIds.Length;
}
