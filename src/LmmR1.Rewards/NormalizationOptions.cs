// latex2sympy2_extended's NormalizationConfig: which groups of LaTeX clean-up run before parsing.
namespace LmmR1.Rewards;

public enum BoxedMode { None, All, Last }

/// <summary>Which normalization groups run (latex2sympy2's NormalizationConfig).</summary>
public sealed record NormalizationOptions
{
    public bool BasicLatex { get; init; } = true;
    public bool Units { get; init; } = true;
    public bool MalformedOperators { get; init; } = true;
    public bool Nits { get; init; } = true;
    public BoxedMode Boxed { get; init; } = BoxedMode.All;

    /// <summary>Math-Verify's LatexExtractionConfig default: everything on.</summary>
    public static NormalizationOptions Default { get; } = new();

    /// <summary>What LMM-R1 and Math-Verify's README use for predictions: no nits, no malformed-operator fixes.</summary>
    public static NormalizationOptions Strict { get; } = new() { MalformedOperators = false, Nits = false };
}

