// Math-Verify's parse(): every enabled pattern is pooled and tried by priority (lowest first); inside a priority
// the match ending furthest right is tried first, and the first one that parses wins (any_match keeps trying,
// first_match stops after one attempt). With fallback "first_match" the first matched text is also returned, so
// two answers that fail to parse can still agree as identical strings (that is how `12:00` ≡ `12:00`).
using LmmR1.Rewards.Verification.Latex;
using LmmR1.Rewards.Verification.Symbolic;

namespace LmmR1.Rewards.Verification.Extraction;

internal abstract class RawMatch(int start, int end)
{
    public int Start { get; } = start;
    public int End { get; } = end;
}

internal sealed class ChoiceMatch(int start, int end, string key) : RawMatch(start, end)
{
    public string Key { get; } = key;
}

/// <summary>One extracted answer: a parsed expression, or a plain string (fallback text or a choice letter).</summary>
internal sealed record Candidate(Node? Expr, string? Text)
{
    public override string ToString() => Expr != null ? Structure.Describe(Expr)
        : Text!.Length > 200 ? $"\"{Text[..200]}…\"" : $"\"{Text}\"";
}

internal static class AnswerExtractor
{
    private enum Target { Latex, Expr, Choice }

    public static List<Candidate> Extract(string text, ExtractionOptions o, Budget budget)
    {
        using var t = new TextIndex(text);
        var latex = new LatexMatcher(t, budget);
        var expr = new ExprMatcher(t, budget);
        var choices = new ChoiceMatcher(t, budget, o.Choices ?? []);
        var patterns = new List<(int Priority, Func<IEnumerable<RawMatch>> Find, Target Target)>();
        if (o.Latex)
        {
            patterns.Add((0, latex.FinalAnswerIHope, Target.Latex));
            patterns.Add((50, latex.FinalAnswerIs, Target.Latex));
            patterns.Add((100, () => latex.AnswerWord(colon: true), Target.Latex));
            patterns.Add((200, () => latex.AnswerWord(colon: false), Target.Latex));
            if (o.TryExtractWithoutAnchor) patterns.Add((300, () => latex.Plain(boxed: false), Target.Latex));
            if (o.BoxedMatchPriority >= 0)
            {
                patterns.Add((o.BoxedMatchPriority, () => latex.Plain(boxed: true), Target.Latex));
                patterns.Add((o.BoxedMatchPriority, latex.BareBoxed, Target.Latex));
            }
        }
        if (o.Expr)
        {
            patterns.Add((0, expr.FinalAnswerIHope, Target.Expr));
            patterns.Add((50, expr.FinalAnswerIs, Target.Expr));
            patterns.Add((100, () => expr.AnswerWord(colon: true), Target.Expr));
            patterns.Add((200, () => expr.AnswerWord(colon: false), Target.Expr));
            if (o.TryExtractWithoutAnchor)
            {
                patterns.Add((300, () => expr.Plain(numbers: false), Target.Expr));
                patterns.Add((300, () => expr.Plain(numbers: true), Target.Expr));
            }
        }
        if (o.Choices is { Count: > 0 })
        {
            patterns.Add((0, choices.FinalAnswerIHope, Target.Choice));
            patterns.Add((50, choices.FinalAnswerIs, Target.Choice));
            patterns.Add((100, () => choices.AnswerWord(colon: true), Target.Choice));
            patterns.Add((200, () => choices.AnswerWord(colon: false), Target.Choice));
            if (o.TryExtractWithoutAnchor)
            {
                patterns.Add((250, choices.LineStart, Target.Choice));
                patterns.Add((300, choices.Plain, Target.Choice));
            }
        }

        var results = new List<Candidate>();
        var fallbacks = new List<string>();
        bool matchFound = false;
        foreach (var group in patterns.OrderBy(p => p.Priority).GroupBy(p => p.Priority))
        {
            var matches = new List<(RawMatch Match, Target Target)>();
            foreach (var (_, find, target) in group)
                foreach (var m in find()) matches.Add((m, target));
            // Rightmost end first, then leftmost start (stable for ties, as Python's sort).
            foreach (var (m, target) in matches.OrderByDescending(x => x.Match.End).ThenBy(x => x.Match.Start))
            {
                budget.Tick();
                var (parsed, str) = ExtractMatch(t.S, m, target, o, budget);
                matchFound = true;
                if (str.Length > 0) fallbacks.Add(str);
                if (parsed != null) { results.Add(parsed); break; }
                if (o.Mode == ExtractionMode.FirstMatch) break;
            }
            if (results.Count > 0 || (matchFound && o.Mode == ExtractionMode.FirstMatch)) break;
        }
        if (o.FallbackToFirstMatch && fallbacks.Count > 0) results.Add(new Candidate(null, fallbacks[0]));
        return results;
    }

    private static (Candidate? Parsed, string Text) ExtractMatch(string s, RawMatch m, Target target, ExtractionOptions o, Budget budget)
    {
        switch (m)
        {
            case LatexMatch lm: return ExtractLatex(s, lm, o, budget);
            case ExprMatch em: return ExtractExpr(em, budget);
            case ChoiceMatch cm: return (new Candidate(null, o.LowercaseChoices ? cm.Key.ToLowerInvariant() : cm.Key), cm.Key);
            default: return (null, "");
        }
    }

    private static (Candidate?, string) ExtractLatex(string s, LatexMatch m, ExtractionOptions o, Budget budget)
    {
        var exprs = new List<Node?>();
        var strs = new List<string>();
        foreach (var env in m.Envs)
        {
            var config = env.BareBoxed ? o.Normalization with { Boxed = BoxedMode.Last } : o.Normalization;
            var normalized = LatexNormalizer.Normalize(s[env.ContentStart..env.ContentEnd], config, budget);
            strs.Add(normalized);
            var parsed = ParseLatex(normalized, budget);
            // convert_to_pct multiplies by 1/100; sympy refuses that for relations, sets, tuples and matrices.
            if (parsed != null && env.Percent)
                parsed = parsed is RelationNode or AndNode or SetNode or TupleNode or MatrixNode ? null : MulNode.Percent(parsed);
            exprs.Add(parsed);
        }
        if (exprs.Count == 0) return (null, "");
        if (exprs.Count > 1 && exprs.All(e => e != null))
        {
            // "1, 2 and 3": the environments' values (sets flattened) become one set.
            var all = new List<Node>();
            foreach (var e in exprs)
                if (e is FiniteSetNode fs) all.AddRange(fs.Items); else all.Add(e!);
            return (new Candidate(new FiniteSetNode([.. all]), null), string.Join(" and ", strs));
        }
        return (exprs[0] is { } first ? new Candidate(first, null) : null, strs[0]);
    }

    /// <summary>parse_latex_cached: the whole string, else (without , or ;) the part after the last `=` when
    /// there are at least two, so `1 = \zzz = x = 0` still yields 0.</summary>
    internal static Node? ParseLatex(string latex, Budget budget)
    {
        try { return LatexParser.Parse(latex, budget); }
        catch (LatexParseException) { }
        if (latex.Contains(',') || latex.Contains(';')) return null;
        var parts = SplitOnEquals(latex);
        if (parts.Count <= 2) return null;
        try { return LatexParser.Parse(parts[^1], budget); }
        catch (LatexParseException) { return null; }
    }

    // (?<!\\|\<|\!|\>)=
    private static List<string> SplitOnEquals(string s)
    {
        var parts = new List<string>();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '=') continue;
            if (i > 0 && s[i - 1] is '\\' or '<' or '!' or '>') continue;
            parts.Add(s[start..i]);
            start = i + 1;
        }
        parts.Add(s[start..]);
        return parts;
    }

    private static (Candidate?, string) ExtractExpr(ExprMatch m, Budget budget)
    {
        if (m.IsNumber)
        {
            var integer = m.Integer.Replace(",", "").Replace(" ", "").TrimStart('0');
            if (integer.Length == 0) integer = "0";
            var dec = m.Decimal.Replace(',', '.');
            var numberStr = integer + dec;
            var v = BigRational.ParseDecimal(numberStr);
            if (v is null) return (null, numberStr);
            Node n = new NumberNode(v.Value, dec.Length > 0);
            if (m.Percent) n = MulNode.Percent(n);
            return (new Candidate(n, null), numberStr);
        }
        if (!string.IsNullOrEmpty(m.Expr))
        {
            var parsed = PlainExprParser.TryParse(m.Expr, budget);
            return (parsed != null ? new Candidate(parsed, null) : null, m.Expr);
        }
        return (null, m.Expr ?? "");
    }
}
