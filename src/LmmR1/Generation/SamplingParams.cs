// Sampling parameters of one generation call (vLLM SamplingParams subset used by LMM-R1 / OpenRLHF). Departures:
// top_k ≤ 0 means "off" (vLLM uses −1, HF 0; both accepted); temperature 0 means greedy; min_new_tokens defaults
// to 1 like LMM-R1's vLLM call (stop tokens are banned from the first token).
using LmmR1.Infrastructure;

namespace LmmR1.Generation;

public sealed record SamplingParams
{
    /// <summary>Samples per prompt.</summary>
    public int N { get; init; } = 1;
    /// <summary>0 = greedy (argmax); otherwise logits are divided by it before softmax.</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>Nucleus: keep the smallest prefix of tokens (by probability) whose mass reaches top_p; 1 = off.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Keep the k most probable tokens; ≤ 0 = off.</summary>
    public int TopK { get; init; } = -1;
    /// <summary>Drop tokens whose probability is below min_p × the largest probability; 0 = off.</summary>
    public double MinP { get; init; }
    public int MaxNewTokens { get; init; } = 1024;
    /// <summary>Stop tokens cannot be sampled before this many tokens were generated (vLLM min_tokens).</summary>
    public int MinNewTokens { get; init; } = 1;
    /// <summary>Token ids that end a sample (kept as its last token). Empty = never stop on a token.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];
    /// <summary>Strings that end a sample once the detokenized response contains one (the token completing it is kept);
    /// needs a detokenizer.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>Token ids that are never sampled (their log-probs are still reported unfiltered).</summary>
    public IReadOnlyList<int> BannedTokenIds { get; init; } = [];
    public ulong Seed { get; init; } = 42;
    /// <summary>Bench only: forced per-sample lengths (random-weight models never stop); null = off.</summary>
    public SyntheticLengths? SyntheticLengths { get; init; }

    public bool Greedy => Temperature == 0;
    public bool UsesTopK => TopK > 0;
    public bool UsesTopP => TopP < 1.0;
    public bool UsesMinP => MinP > 0;

    public const int MaxNewTokensLimit = 1 << 20;

    public void Validate(int vocabSize)
    {
        if (N < 1) throw new InputException($"n_samples_per_prompt must be ≥ 1, got {N}");
        if (!(Temperature >= 0) || double.IsInfinity(Temperature)) throw new InputException($"temperature must be a finite number ≥ 0, got {Temperature}");
        if (!(TopP > 0 && TopP <= 1)) throw new InputException($"top_p must be in (0, 1], got {TopP}");
        if (!(MinP >= 0 && MinP <= 1)) throw new InputException($"min_p must be in [0, 1], got {MinP}");
        if (MaxNewTokens < 1) throw new InputException($"max_new_tokens must be ≥ 1, got {MaxNewTokens}");
        // Bounded like train's --generate_max_len, so prompt + max_new_tokens and every KV-cache product stay far from overflow.
        if (MaxNewTokens > MaxNewTokensLimit)
            throw new InputException($"max_new_tokens (--generate_max_len) must be at most {MaxNewTokensLimit}, got {MaxNewTokens}");
        if (MinNewTokens < 0 || MinNewTokens > MaxNewTokens)
            throw new InputException($"min_new_tokens must be in 0..max_new_tokens ({MaxNewTokens}), got {MinNewTokens}");
        foreach (int t in StopTokenIds)
            if (t < 0 || t >= vocabSize) throw new InputException($"stop token id {t} is outside the model's vocabulary (0..{vocabSize - 1})");
        foreach (int t in BannedTokenIds)
            if (t < 0 || t >= vocabSize) throw new InputException($"banned token id {t} is outside the model's vocabulary (0..{vocabSize - 1})");
        foreach (var s in StopStrings)
            if (string.IsNullOrEmpty(s)) throw new InputException("stop strings must not be empty");
        if (SyntheticLengths is { } sl && (sl.StopTokenId < 0 || sl.StopTokenId >= vocabSize))
            throw new InputException($"synthetic lengths: stop token id {sl.StopTokenId} is outside the model's vocabulary (0..{vocabSize - 1})");
    }
}
