// Entry point of the verifier: extract answers from gold and prediction, then compare every pair (Math-Verify's
// verify(parse(gold), parse(pred))). Never throws: bad input, unsupported notation, a spent time budget or an
// internal error all come back as Verified=false with a reason.
using LmmR1.Rewards.Verification;
using LmmR1.Rewards.Verification.Extraction;
using LmmR1.Rewards.Verification.Symbolic;

namespace LmmR1.Rewards;

public static class MathVerifier
{
    public static VerifyResult Verify(string gold, string pred, VerifyOptions? options = null)
    {
        options ??= new VerifyOptions();
        var budget = new Budget(options.TimeBudget);
        try
        {
            var golds = Extract(gold, options.Gold, options.MaxInputChars, budget);
            if (golds.Count == 0) return new VerifyResult(false, "no answer found in gold");
            var preds = Extract(pred, options.Prediction, options.MaxInputChars, budget);
            if (preds.Count == 0) return new VerifyResult(false, "no answer found in prediction");
            return Compare(golds, preds, options, budget);
        }
        catch (BudgetExceededException e) { return new VerifyResult(false, e.Message); }
        catch (Exception e) when (e is not OutOfMemoryException) { return new VerifyResult(false, $"internal error: {e.GetType().Name}: {e.Message}"); }
    }

    /// <summary>What would be extracted from a text (for debugging and the CLI): parsed values and strings.</summary>
    public static IReadOnlyList<string> DescribeExtraction(string text, ExtractionOptions options, int maxInputChars = 32_768)
    {
        var budget = new Budget(TimeSpan.FromMilliseconds(200));
        try { return [.. Extract(text, options, maxInputChars, budget).Select(c => c.ToString())]; }
        catch (Exception e) when (e is not OutOfMemoryException) { return [$"error: {e.Message}"]; }
    }

    internal static List<Candidate> Extract(string text, ExtractionOptions options, int maxInputChars, Budget budget)
    {
        text ??= "";
        if (text.Length > maxInputChars) text = text[^maxInputChars..];
        return AnswerExtractor.Extract(text, options, budget);
    }

    internal static VerifyResult Compare(List<Candidate> golds, List<Candidate> preds, VerifyOptions options, Budget budget)
    {
        var comparer = new Comparer(new CompareOptions(options.FloatRounding, options.NumericPrecision, options.Strict, options.AllowSetRelationComp), budget);
        foreach (var g in golds)
            foreach (var p in preds)
            {
                budget.CheckNow();
                if (Equivalent(comparer, g, p)) return new VerifyResult(true, $"equivalent: {g} ≡ {p}");
            }
        return new VerifyResult(false, $"not equivalent: gold [{string.Join(", ", golds)}] vs prediction [{string.Join(", ", preds)}]");
    }

    private static bool Equivalent(Comparer comparer, Candidate g, Candidate p)
    {
        if (g.Expr != null && p.Expr != null)
        {
            try { return comparer.ExprEq(g.Expr, p.Expr); }
            catch (ComparisonException) { return false; }
            catch (OverflowException) { return false; }
            catch (ArithmeticException) { return false; }
        }
        if (g.Text != null && p.Text != null)
        {
            var a = g.Text.Trim();
            var b = p.Text.Trim();
            return a.Length > 0 && a == b;
        }
        return false;
    }

    private static readonly (string Gold, string Pred)[] WarmUpPairs =
    [
        ("$\\frac{1}{2}$", "The answer is $\\boxed{0.5}$."), ("$x \\in [-2,7]$", "$-2 \\le x \\le 7$"),
        ("$\\{1,2\\}$", "\\boxed{2} and \\boxed{1}"), ("$2\\sqrt{3}$", "$\\sqrt{12}$"), ("$28\\%$", "28 percent"),
        ("$\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}$", "$\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}$"), ("$x^2+2x+1$", "$(x+1)^2$"),
        ("$y = 2x+1$", "$2x - y + 1 = 0$"), ("$(1, \\infty)$", "$(1,\\infty)$"), ("1,000", "Final Answer: The final answer is 1000. I hope it is correct."),
        ("$\\sin^2 x + \\cos^2 x$", "$1$"), ("$\\text{Evelyn}$", "$\\boxed{\\text{Evelyn}}$"), ("$12:00$", "$12:00$"),
    ];

    /// <summary>Runs a few representative verifications so the JIT has compiled the hot paths before the first
    /// budgeted request (a cold first call can spend its whole budget compiling).</summary>
    public static void WarmUp(int rounds = 3)
    {
        var options = VerifyOptions.FromConfig() with { TimeBudget = TimeSpan.FromSeconds(5) };
        for (int r = 0; r < rounds; r++)
            foreach (var (g, p) in WarmUpPairs)
            {
                Verify(g, p, options);
                LmmR1Reward.Score("<|im_start|>assistant\n<think>t</think><answer>" + p + "</answer><|im_end|>", g,
                    new RewardOptions { TimeBudget = TimeSpan.FromSeconds(5) });
            }
    }
}
