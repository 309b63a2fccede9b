// Options of the verifier, named after Math-Verify's: what to extract from each side (LatexExtractionConfig /
// ExprExtractionConfig / StringExtractionConfig), and how to compare (float_rounding, numeric_precision, strict,
// allow_set_relation_comp). Plus what Math-Verify does with signals: a time budget and an input-length cap.


namespace LmmR1.Rewards;

public enum ExtractionMode { FirstMatch, AnyMatch }

/// <summary>How answers are found in one text. Defaults are Math-Verify's parse() defaults.</summary>
public sealed record ExtractionOptions
{
    /// <summary>LaTeX environments and \boxed{} (LatexExtractionConfig).</summary>
    public bool Latex { get; init; } = true;
    /// <summary>Plain numbers and arithmetic (ExprExtractionConfig).</summary>
    public bool Expr { get; init; } = true;
    /// <summary>Multiple-choice letters (StringExtractionConfig), e.g. ["A","B","C","D"]; null = off.</summary>
    public IReadOnlyList<string>? Choices { get; init; }
    public bool LowercaseChoices { get; init; } = true;
    /// <summary>Priority of \boxed{} matches: 0 = before everything, 50 = after "final answer is … I hope", -1 = off.</summary>
    public int BoxedMatchPriority { get; init; } = 50;
    /// <summary>Also accept answers without an anchor such as "answer" or "final answer is" (priority 300).</summary>
    public bool TryExtractWithoutAnchor { get; init; } = true;
    public NormalizationOptions Normalization { get; init; } = NormalizationOptions.Default;
    public ExtractionMode Mode { get; init; } = ExtractionMode.AnyMatch;
    /// <summary>Append the first matched text as a string candidate (fallback_mode="first_match").</summary>
    public bool FallbackToFirstMatch { get; init; } = true;

    /// <summary>Builds the extraction targets from a Math-Verify-style name: "latex", "expr" or "latex+expr".</summary>
    public static ExtractionOptions FromTargets(string targets, int boxedMatchPriority)
    {
        var parts = targets.Split('+', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        foreach (var p in parts)
            if (p is not ("latex" or "expr")) throw new ArgumentException($"unknown extraction target '{p}' (expected latex, expr or latex+expr)");
        return new ExtractionOptions { Latex = parts.Contains("latex"), Expr = parts.Contains("expr"), BoxedMatchPriority = boxedMatchPriority };
    }
}

public sealed record VerifyOptions
{
    public ExtractionOptions Gold { get; init; } = new();
    public ExtractionOptions Prediction { get; init; } = new();
    /// <summary>Decimal places both sides are rounded to when a float is involved.</summary>
    public int FloatRounding { get; init; } = 6;
    /// <summary>Significant digits for numeric comparison of non-atomic expressions.</summary>
    public int NumericPrecision { get; init; } = 15;
    /// <summary>Variables must match by name (false: pred's symbols are renamed to gold's).</summary>
    public bool Strict { get; init; } = true;
    /// <summary>Also turn a predicted relation into a set when the gold is a set.</summary>
    public bool AllowSetRelationComp { get; init; }
    /// <summary>Wall-clock budget of one Verify call; spent = "not verified" with a reason.</summary>
    public TimeSpan TimeBudget { get; init; } = TimeSpan.FromMilliseconds(30);
    /// <summary>Longer inputs keep only their last MaxInputChars characters (answers sit at the end).</summary>
    public int MaxInputChars { get; init; } = 32_768;

    /// <summary>The same extraction for both sides (Math-Verify's test helper compare_strings).</summary>
    public static VerifyOptions Symmetric(ExtractionOptions extraction) => new() { Gold = extraction, Prediction = extraction };

    /// <summary>Options from the keys of math_verify_cases.jsonl / `reward verify` configs; null keeps the default.
    /// extraction: "latex", "expr" or "latex+expr" (default latex+expr); latex_boxed_match_priority default 0.</summary>
    public static VerifyOptions FromConfig(string? extraction = null, int? boxedMatchPriority = null, int? floatRounding = null,
        int? numericPrecision = null, bool? strict = null, bool? allowSetRelationComp = null)
    {
        var ex = ExtractionOptions.FromTargets(extraction ?? "latex+expr", boxedMatchPriority ?? 0);
        var o = Symmetric(ex) with
        {
            FloatRounding = floatRounding ?? 6,
            NumericPrecision = numericPrecision ?? 15,
            Strict = strict ?? true,
            AllowSetRelationComp = allowSetRelationComp ?? false,
        };
        o.Validate();
        return o;
    }

    public void Validate()
    {
        if (FloatRounding is < 0 or > 30) throw new ArgumentException("float_rounding must be between 0 and 30");
        if (NumericPrecision is < 1 or > 100) throw new ArgumentException("numeric_precision must be between 1 and 100");
        if (TimeBudget <= TimeSpan.Zero) throw new ArgumentException("time budget must be positive");
        if (MaxInputChars < 16) throw new ArgumentException("max input chars must be at least 16");
        if (!Gold.Latex && !Gold.Expr && Gold.Choices is not { Count: > 0 }) throw new ArgumentException("gold extraction has no target");
        if (!Prediction.Latex && !Prediction.Expr && Prediction.Choices is not { Count: > 0 }) throw new ArgumentException("prediction extraction has no target");
    }
}

/// <summary>The verdict and why: "equivalent: …", "not equivalent: …", "no answer found in …", "time budget exceeded".</summary>
public sealed record VerifyResult(bool Verified, string Reason);
