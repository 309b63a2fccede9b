// Host-side end-of-sample detection, applied to each new token in order: a stop token ends the sample with that token
// kept; otherwise a stop string ends it once the detokenized tail of the response contains it (the token that
// completed it kept, as vLLM keeps it in token_ids); otherwise reaching max_new_tokens ends it with reason Length.
namespace LmmR1.Generation;

internal sealed class StopChecker
{
    readonly HashSet<int> stopIds;
    readonly IReadOnlyList<string> stopStrings;
    readonly Func<IReadOnlyList<int>, string>? detokenize;
    readonly int window;
    readonly int maxNew;

    public StopChecker(SamplingParams p, Func<IReadOnlyList<int>, string>? detokenize)
    {
        stopIds = [.. p.StopTokenIds];
        stopStrings = p.StopStrings;
        if (stopStrings.Count > 0 && detokenize is null)
            throw new ArgumentException("stop strings need a detokenizer");
        this.detokenize = detokenize;
        // A byte-level token holds at least one byte, so a stop string spans at most its UTF-8 length in tokens; two
        // more cover a character split across the window's first token.
        window = stopStrings.Count == 0 ? 0 : stopStrings.Max(s => System.Text.Encoding.UTF8.GetByteCount(s)) + 2;
        maxNew = p.MaxNewTokens;
    }

    /// <summary>Called after <paramref name="tokens"/> got its newest token; returns whether the sample ended.</summary>
    public bool Ended(List<int> tokens, out FinishReason reason, out int? stopToken, out string? stopString)
    {
        int last = tokens[^1];
        stopToken = null; stopString = null; reason = FinishReason.Length;
        if (stopIds.Contains(last)) { reason = FinishReason.Stop; stopToken = last; return true; }
        if (window > 0)
        {
            int start = Math.Max(0, tokens.Count - window);
            string tail = detokenize!(tokens.GetRange(start, tokens.Count - start));
            foreach (var s in stopStrings)
                if (tail.Contains(s, StringComparison.Ordinal)) { reason = FinishReason.Stop; stopString = s; return true; }
        }
        return tokens.Count >= maxNew;
    }
}
