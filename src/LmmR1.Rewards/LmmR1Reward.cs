// LMM-R1's rule reward (openrlhf/models/remote_rm/math_verifier.py at f917f18): the response is the text after the
// assistant tag with end tokens removed; format 0.5 iff it is exactly <think>…</think><answer>…</answer>; accuracy
// 1 iff Math-Verify accepts it against the $-wrapped label. Kept from the reference: the label is parsed with the
// default LatexExtractionConfig and an unparseable label scores accuracy 1 ("skip this example"); the response is
// parsed boxed-first with nits/malformed-operator fixes off and no anchor-less matches; verify() receives the
// response as its first ("gold") argument, exactly as LMM-R1 calls it. Departures: the LAST assistant tag is used
// (the reference takes the first), a spent time budget scores 0 instead of blocking, and an EMPTY response after the
// tag scores as empty: the reference's `get_response_from_query(q) or q` falls back to the whole query, so an empty
// answer was checked against the prompt (a question quoting its answer, or a system prompt with \boxed{}, then paid
// the model for saying nothing). RewardOptions.EmptyResponseScoresQuery restores the reference behaviour.
namespace LmmR1.Rewards;

public sealed record RewardOptions
{
    /// <summary>Give FormatWeight for a well-formed response (LMM-R1's --disable-format-reward turns it off).</summary>
    public bool FormatReward { get; init; } = true;
    public double FormatWeight { get; init; } = 0.5;
    public double AccuracyWeight { get; init; } = 1.0;
    /// <summary>Where the response starts (chatml). The last occurrence is used.</summary>
    public string ResponsePrefix { get; init; } = "<|im_start|>assistant\n";
    public IReadOnlyList<string> EndTokens { get; init; } = ["<|im_end|>", "<｜end▁of▁sentence｜>", "<|endoftext|>", "<end_of_turn>"];
    /// <summary>LMM-R1's fallback: an empty response after the tag is replaced by the whole query. Off by default
    /// (it rewards empty answers whenever the prompt itself verifies against the label).</summary>
    public bool EmptyResponseScoresQuery { get; init; }
    /// <summary>Wall-clock budget for verifying one sample.</summary>
    public TimeSpan TimeBudget { get; init; } = TimeSpan.FromMilliseconds(30);

    public void Validate()
    {
        if (!double.IsFinite(FormatWeight) || !double.IsFinite(AccuracyWeight)) throw new ArgumentException("reward weights must be finite numbers");
        if (string.IsNullOrEmpty(ResponsePrefix)) throw new ArgumentException("response prefix must not be empty");
        if (TimeBudget <= TimeSpan.Zero) throw new ArgumentException("time budget must be positive");
    }
}

public static class LmmR1Reward
{
    /// <summary>Label side: Math-Verify's default LatexExtractionConfig, first match only.</summary>
    public static ExtractionOptions LabelExtraction { get; } = new()
    {
        Latex = true, Expr = false, BoxedMatchPriority = 50, TryExtractWithoutAnchor = true,
        Normalization = NormalizationOptions.Default, Mode = ExtractionMode.FirstMatch,
    };

    /// <summary>Response side: boxed first, no anchor-less matches, no nits or malformed-operator repairs.</summary>
    public static ExtractionOptions ResponseExtraction { get; } = new()
    {
        Latex = true, Expr = false, BoxedMatchPriority = 0, TryExtractWithoutAnchor = false,
        Normalization = NormalizationOptions.Strict, Mode = ExtractionMode.FirstMatch,
    };

    public static RewardResult Score(string query, string label, RewardOptions? options = null)
    {
        options ??= new RewardOptions();
        var response = ExtractResponse(query, options);
        double format = options.FormatReward && IsWellFormatted(response) ? options.FormatWeight : 0.0;
        double accuracy = Accuracy(response, label, options.TimeBudget).Verified ? options.AccuracyWeight : 0.0;
        return new RewardResult(format + accuracy, format, accuracy);
    }

    /// <summary>The text after the last response prefix with end tokens removed, trimmed; the whole query when
    /// the prefix is absent (as LMM-R1's `get_response_from_query(q) or q`). An empty response stays empty unless
    /// <see cref="RewardOptions.EmptyResponseScoresQuery"/> asks for the reference's fallback to the query.</summary>
    public static string ExtractResponse(string query, RewardOptions? options = null)
    {
        options ??= new RewardOptions();
        query ??= "";
        int pos = query.LastIndexOf(options.ResponsePrefix, StringComparison.Ordinal);
        if (pos < 0) return query;
        var response = query[(pos + options.ResponsePrefix.Length)..];
        foreach (var end in options.EndTokens) response = response.Replace(end, "", StringComparison.Ordinal);
        response = response.Trim();
        return response.Length > 0 || !options.EmptyResponseScoresQuery ? response : query;
    }

    /// <summary>^&lt;think&gt;…&lt;/think&gt;&lt;answer&gt;…&lt;/answer&gt;\Z (DOTALL) with exactly one &lt;think&gt; and one &lt;answer&gt;.</summary>
    public static bool IsWellFormatted(string response)
    {
        const string think = "<think>", thinkEnd = "</think>", answer = "<answer>", answerEnd = "</answer>";
        if (Count(response, think) != 1 || Count(response, answer) != 1) return false;
        if (!response.StartsWith(think, StringComparison.Ordinal)) return false;
        int te = response.IndexOf(thinkEnd, think.Length, StringComparison.Ordinal);
        if (te < 0 || string.CompareOrdinal(response, te + thinkEnd.Length, answer, 0, answer.Length) != 0) return false;
        int body = te + thinkEnd.Length + answer.Length;
        int ae = response.IndexOf(answerEnd, body, StringComparison.Ordinal);
        return ae >= 0 && ae + answerEnd.Length == response.Length;

        static int Count(string s, string sub)
        {
            int n = 0, i = 0;
            while ((i = s.IndexOf(sub, i, StringComparison.Ordinal)) >= 0) { n++; i += sub.Length; }
            return n;
        }
    }

    /// <summary>LMM-R1's verify_math: 1 when the response's answer matches the $-wrapped label; an unparseable
    /// label counts as verified (reason "label not parseable").</summary>
    public static VerifyResult Accuracy(string response, string label, TimeSpan? timeBudget = null)
    {
        label = (label ?? "").Trim();
        if (!label.StartsWith('$')) label = "$" + label + "$";
        var options = new VerifyOptions { Gold = LabelExtraction, Prediction = ResponseExtraction, TimeBudget = timeBudget ?? TimeSpan.FromMilliseconds(30) };
        var budget = new Verification.Budget(options.TimeBudget);
        try
        {
            var golds = MathVerifier.Extract(label, options.Gold, options.MaxInputChars, budget);
            if (golds.Count == 0) return new VerifyResult(true, "label not parseable: scored 1 as in LMM-R1");
            var preds = MathVerifier.Extract(response ?? "", options.Prediction, options.MaxInputChars, budget);
            if (preds.Count == 0) return new VerifyResult(false, "no answer found in response");
            // LMM-R1 calls verify(answer_parsed, gold_parsed): the response takes the "gold" position.
            return MathVerifier.Compare(preds, golds, options, budget);
        }
        catch (Verification.BudgetExceededException e) { return new VerifyResult(false, e.Message); }
        catch (Exception e) when (e is not OutOfMemoryException) { return new VerifyResult(false, $"internal error: {e.GetType().Name}: {e.Message}"); }
    }
}
