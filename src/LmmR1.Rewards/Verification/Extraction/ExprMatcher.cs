// The plain-text answer patterns of Math-Verify's lazy_expr_regex, matched by hand: numbers with thousands
// separators (`1,234.5`, `1 000`), a decimal comma (`1,22`), a leading `.4`, an optional percent word, a currency
// sign before them; expressions of digits and + - * × / ^ ( ) ÷ that start with a digit and contain an operator.
// Each needs whitespace, `=` or the start before it. Not DOTALL: the anchored forms stop at newlines.
// Departure: after `answer … X` the reference backtracks into X when `(?!\s*=)` fails; here that start is skipped.
using System.Runtime.CompilerServices;

namespace LmmR1.Rewards.Verification.Extraction;

internal sealed class ExprMatch(int start, int end, string? expr, string integer, string @decimal, bool percent) : RawMatch(start, end)
{
    public string? Expr { get; } = expr;
    public string Integer { get; } = integer;
    public string Decimal { get; } = @decimal;
    public bool Percent { get; } = percent;
    public bool IsNumber => Integer.Length > 0 || Decimal.Length > 0;
}

internal sealed class ExprMatcher(TextIndex t, Budget budget)
{
    private const string Currency = "$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₩₪₫₭₮₯₰₱₲₳₴₵₶₷₸₹₺₻₼₽₾₿";
    private readonly Dictionary<int, int> _runValidEnd = [];
    private int[]? _runEnd, _prevOp;

    private static bool IsOp(char c) => c is '+' or '-' or '*' or '×' or '/' or '^' or '(' or ')' or '÷';
    private static bool IsExprChar(char c) => char.IsDigit(c) || c == '.' || char.IsWhiteSpace(c) || IsOp(c);

    private readonly record struct Hit(int End, string? Expr, string Integer, string Decimal, bool Percent);

    // ---------------------------------------------------------------- expr_re + suffix
    /// <summary>-?\(?-?\d[C]*[O][C]+\)? followed by (?:\*\*)?(?:\.|,|:|\s|\)|\$|$), starting at q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Hit? ExprAt(int q)
    {
        var s = t.S;
        int i = q;
        if (i < s.Length && s[i] == '-') i++;
        if (i < s.Length && s[i] == '(') i++;
        if (i < s.Length && s[i] == '-') i++;
        if (i >= s.Length || !char.IsDigit(s[i])) return null;
        int d = i;
        int runEnd = RunEnd(d + 1);
        int eStar = RunValidEnd(d + 1, runEnd);
        if (eStar < d + 2) return null;
        int op = PrevOp(eStar - 2);
        if (op < d + 1) return null;
        // Closing ')' taken when the suffix still matches after it (greedy `\)?`).
        int exprEnd = eStar;
        int suffixAt = eStar;
        if (eStar < s.Length && s[eStar] == ')' && SuffixLength(eStar + 1) >= 0) { exprEnd = eStar + 1; suffixAt = eStar + 1; }
        int sl = SuffixLength(suffixAt);
        return new Hit(suffixAt + sl, s[q..exprEnd], "", "", false);
    }

    /// <summary>Length of (?:\*\*)?(?:\.|,|:|\s|\)|\$|$) at i, or -1.</summary>
    private int SuffixLength(int i)
    {
        if (t.At(i, "**")) { int r = SuffixBase(i + 2); if (r >= 0) return r + 2; }
        return SuffixBase(i);
    }

    private int SuffixBase(int j)
    {
        if (j >= t.Length) return 0;
        char c = t.S[j];
        return c is '.' or ',' or ':' or ')' or '$' || char.IsWhiteSpace(c) ? 1 : -1;
    }

    private bool ValidEnd(int e) => (e < t.Length && t.S[e] == ')' && SuffixLength(e + 1) >= 0) || SuffixLength(e) >= 0;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int RunEnd(int i)
    {
        if (_runEnd == null)
        {
            var s = t.S;
            _runEnd = t.RentInts(s.Length + 1);
            _runEnd[s.Length] = s.Length;
            for (int k = s.Length - 1; k >= 0; k--) _runEnd[k] = IsExprChar(s[k]) ? _runEnd[k + 1] : k;
        }
        return i > t.Length ? t.Length : _runEnd[i];
    }

    /// <summary>Largest e in (run, runEnd] with a valid suffix, cached per run (it does not depend on the start).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int RunValidEnd(int from, int runEnd)
    {
        if (_runValidEnd.TryGetValue(runEnd, out var cached)) return cached >= from + 1 ? cached : -1;
        int best = -1;
        for (int e = runEnd; e >= 0 && e >= runEnd - 1_000_000; e--)
        {
            if ((e & 255) == 0) budget.Tick();
            if (e < runEnd && !IsExprChar(t.S[e])) break;
            if (ValidEnd(e)) { best = e; break; }
        }
        _runValidEnd[runEnd] = best;
        return best >= from + 1 ? best : -1;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int PrevOp(int i)
    {
        if (_prevOp == null)
        {
            var s = t.S;
            _prevOp = t.RentInts(s.Length);
            int last = -1;
            for (int k = 0; k < s.Length; k++) { if (IsOp(s[k])) last = k; _prevOp[k] = last; }
        }
        if (i < 0) return -1;
        return _prevOp[Math.Min(i, t.Length - 1)];
    }

    // ---------------------------------------------------------------- number_re
    /// <summary>(?&lt;!\d)(INT1 DEC1? | INT2 DEC2 | DEC3 | INT3) PERCENT? at q.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Hit? NumberAt(int q)
    {
        var s = t.S;
        if (q >= s.Length) return null;
        if (q > 0 && char.IsDigit(s[q - 1])) return null;
        string integer = "", dec = "";
        int end = -1;
        // INT1: -?[1-9]\d{0,2}(?:[ ,]\d{3})+ (\.\d+)?
        {
            int i = q;
            if (i < s.Length && s[i] == '-') i++;
            if (i < s.Length && s[i] >= '1' && s[i] <= '9')
            {
                int lead = i + 1;
                int maxExtra = 0;
                while (maxExtra < 2 && lead + maxExtra < s.Length && char.IsDigit(s[lead + maxExtra])) maxExtra++;
                for (int extra = maxExtra; extra >= 0 && end < 0; extra--)
                {
                    int j = lead + extra;
                    int groups = 0;
                    while (j < s.Length && (s[j] == ' ' || s[j] == ',') && Digits(j + 1, 3)) { j += 4; groups++; }
                    if (groups == 0) continue;
                    integer = s[q..j];
                    end = j;
                    if (j + 1 < s.Length && s[j] == '.' && char.IsDigit(s[j + 1]))
                    {
                        int k = j + 1;
                        while (k < s.Length && char.IsDigit(s[k])) k++;
                        dec = s[j..k];
                        end = k;
                    }
                }
            }
        }
        if (end < 0)
        {
            // INT2 DEC2: -?\d+[.,]\d+
            int i = q;
            if (i < s.Length && s[i] == '-') i++;
            int d = i;
            while (i < s.Length && char.IsDigit(s[i])) i++;
            if (i > d && i + 1 < s.Length && (s[i] == '.' || s[i] == ',') && char.IsDigit(s[i + 1]))
            {
                int k = i + 1;
                while (k < s.Length && char.IsDigit(s[k])) k++;
                integer = s[q..i]; dec = s[i..k]; end = k;
            }
        }
        if (end < 0 && s[q] == '.' && q + 1 < s.Length && char.IsDigit(s[q + 1]))
        {
            int k = q + 1;
            while (k < s.Length && char.IsDigit(s[k])) k++;
            dec = s[q..k]; end = k;
        }
        if (end < 0)
        {
            int i = q;
            if (i < s.Length && s[i] == '-') i++;
            int d = i;
            while (i < s.Length && char.IsDigit(s[i])) i++;
            if (i > d) { integer = s[q..i]; end = i; }
        }
        if (end < 0) return null;
        // (?P<percent>\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct))?
        int w = t.WsEnd(end);
        bool percent = false;
        if (t.At(w, "%")) { percent = true; end = w + 1; }
        else if (t.At(w, "percent") || t.At(w, "Percent")) { percent = true; end = w + 7; }
        else if (t.At(w, "pct") || t.At(w, "Pct")) { percent = true; end = w + 3; }
        return new Hit(end, null, integer, dec, percent);
    }

    private bool Digits(int i, int n)
    {
        if (i + n > t.Length) return false;
        for (int k = 0; k < n; k++) if (!char.IsDigit(t.S[i + k])) return false;
        return true;
    }

    // ---------------------------------------------------------------- anchored alternatives
    /// <summary>Positions where the expression itself may begin after the prefix (?:^|\s|=)(?:\*\*)? at p, in the
    /// regex's backtracking order; returns how many were written.</summary>
    private int AfterPrefix(int p, Span<int> buf)
    {
        var s = t.S;
        int n = 0;
        if (p == 0)
        {
            if (t.At(0, "**")) buf[n++] = 2;
            buf[n++] = 0;
        }
        if (p < s.Length && (char.IsWhiteSpace(s[p]) || s[p] == '='))
        {
            if (t.At(p + 1, "**")) buf[n++] = p + 3;
            buf[n++] = p + 1;
        }
        return n;
    }

    /// <summary>Cheap test: can a number or expression start at q (after an optional currency sign)?</summary>
    private bool CanStart(int q)
    {
        if (q >= t.Length) return false;
        char c = t.S[q];
        return char.IsDigit(c) || c is '-' or '(' or '.' || Currency.Contains(c);
    }

    private Hit? ExprWithAnchors(int p)
    {
        Span<int> buf = stackalloc int[4];
        int n = AfterPrefix(p, buf);
        for (int k = 0; k < n; k++)
        {
            if (!CanStart(buf[k])) continue;
            var h = ExprAt(buf[k]);
            if (h != null) return h;
        }
        return null;
    }

    private Hit? NumberWithAnchors(int p)
    {
        Span<int> buf = stackalloc int[4];
        int n = AfterPrefix(p, buf);
        for (int k = 0; k < n; k++)
        {
            int q = buf[k];
            if (!CanStart(q)) continue;
            if (Currency.Contains(t.S[q]))
            {
                var hc = NumberAt(q + 1);
                if (hc != null) return hc;
            }
            var h = NumberAt(q);
            if (h != null) return h;
        }
        return null;
    }

    /// <summary>expr_or_number = expr_with_anchors | number_with_anchors at p, first alternative accepted by
    /// <paramref name="accept"/>.</summary>
    private Hit? ExprOrNumber(int p, Func<Hit, bool>? accept = null)
    {
        if (p > 0 && (p >= t.Length || !(char.IsWhiteSpace(t.S[p]) || t.S[p] == '='))) return null;
        var e = ExprWithAnchors(p);
        if (e != null && (accept == null || accept(e.Value))) return e;
        var n = NumberWithAnchors(p);
        if (n != null && (accept == null || accept(n.Value))) return n;
        return null;
    }

    private static ExprMatch ToMatch(int start, Hit h) => new(start, h.End, h.Expr, h.Integer, h.Decimal, h.Percent);

    /// <summary>Priority 300: expr_with_anchors (numbers=false) or number_with_anchors (numbers=true), finditer order.</summary>
    public IEnumerable<RawMatch> Plain(bool numbers)
    {
        int pos = 0;
        while (pos < t.Length)
        {
            budget.Tick();
            if (pos > 0) { pos = NextCandidate(pos); if (pos < 0) yield break; }
            var h = numbers ? NumberWithAnchors(pos) : ExprWithAnchors(pos);
            if (h == null) { pos++; continue; }
            yield return ToMatch(pos, h.Value);
            pos = Math.Max(h.Value.End, pos + 1);
        }
    }

    /// <summary>(?i:final answer is)\:?\s*EXPR_OR_NUMBER\.?\s?I hope</summary>
    public IEnumerable<RawMatch> FinalAnswerIHope()
    {
        int from = 0;
        foreach (var p in t.Occurrences("final answer is"))
        {
            if (p < from) continue;
            budget.Tick();
            int q = p + 15;
            if (t.At(q, ":")) q++;
            int w = t.WsEnd(q);
            var prefixes = new List<int>();
            if (w < t.Length && t.S[w] == '=') prefixes.Add(w);
            if (w - 1 >= q) prefixes.Add(w - 1);
            foreach (var pre in prefixes)
            {
                var h = ExprOrNumber(pre, x => IHopeEnd(x.End) >= 0);
                if (h == null) continue;
                int e = IHopeEnd(h.Value.End);
                yield return ToMatch(p, h.Value with { End = e });
                from = e;
                break;
            }
        }
    }

    /// <summary>(?i:final answer.{0,100}?)\s+is\:?EXPR_OR_NUMBER</summary>
    public IEnumerable<RawMatch> FinalAnswerIs()
    {
        int from = 0;
        foreach (var p in t.Occurrences("final answer"))
        {
            if (p < from) continue;
            int nl = t.NextNewline(p + 12);
            for (int k = 0; k <= 100 && p + 12 + k < t.Length; k++)
            {
                budget.Tick();
                int q = p + 12 + k;
                if (nl >= 0 && nl < q) break; // `.` does not cross a newline
                if (!char.IsWhiteSpace(t.S[q])) continue;
                int r = t.WsEnd(q);
                if (!t.At(r, "is")) continue;
                int a = r + 2;
                if (t.At(a, ":")) a++;
                var found = ExprOrNumber(a);
                if (found == null) continue;
                yield return ToMatch(p, found.Value);
                from = found.Value.End;
                break;
            }
        }
    }

    /// <summary>(?i:answer)(:)?(?:.{0,100}=\s*|.{0,50}?)EXPR_OR_NUMBER(?!\s*=)</summary>
    public IEnumerable<RawMatch> AnswerWord(bool colon)
    {
        int from = 0;
        foreach (var p in t.Occurrences("answer"))
        {
            if (p < from) continue;
            int q = t.AfterAnswerWord(p, colon);
            if (q < 0) continue;
            int nl = t.NextNewline(q);
            int lineLimit = nl < 0 ? t.Length : nl;
            Hit? found = null;
            // Alternative 1: the last '=' within 100 chars (no newline before it), then whitespace.
            for (int m = PrevEquals(Math.Min(q + 100, lineLimit - 1)); m >= q && found == null; m = PrevEquals(m - 1))
            {
                budget.Tick();
                int w = t.WsEnd(m + 1);
                var pres = new List<int>();
                if (w < t.Length && t.S[w] == '=') pres.Add(w);
                if (w - 1 >= m + 1) pres.Add(w - 1);
                foreach (var pre in pres)
                {
                    found = ExprOrNumber(pre, h => NotFollowedByEquals(h.End));
                    if (found != null) break;
                }
            }
            // Alternative 2: lazily up to 50 chars; only positions that can start a number are probed.
            if (found == null && q == 0) found = ExprOrNumber(0, h => NotFollowedByEquals(h.End));
            for (int c = NextCandidate(q); found == null && c >= 0 && c <= q + 50 && c <= lineLimit; c = NextCandidate(c + 1))
            {
                budget.Tick();
                found = ExprOrNumber(c, h => NotFollowedByEquals(h.End));
            }
            if (found == null) continue;
            yield return ToMatch(p, found.Value);
            from = found.Value.End;
        }
    }

    private int[]? _prevEquals, _nextCandidate;

    /// <summary>Largest j ≤ i holding '=', or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int PrevEquals(int i)
    {
        if (i < 0) return -1;
        if (_prevEquals == null)
        {
            _prevEquals = t.RentInts(t.Length);
            int last = -1;
            for (int j = 0; j < t.Length; j++) { if (t.S[j] == '=') last = j; _prevEquals[j] = last; }
        }
        return _prevEquals[Math.Min(i, t.Length - 1)];
    }

    /// <summary>Smallest j ≥ i where a prefix char (whitespace or '=') is followed by something a number or an
    /// expression can start with; other positions cannot match expr_or_number.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int NextCandidate(int i)
    {
        if (i >= t.Length) return -1;
        if (_nextCandidate == null)
        {
            _nextCandidate = t.RentInts(t.Length + 1);
            _nextCandidate[t.Length] = -1;
            for (int j = t.Length - 1; j >= 0; j--)
            {
                char c = t.S[j];
                bool ok = (char.IsWhiteSpace(c) || c == '=') && (CanStart(j + 1) || t.At(j + 1, "**"));
                _nextCandidate[j] = ok ? j : _nextCandidate[j + 1];
            }
        }
        return _nextCandidate[i];
    }

    /// <summary>End of \.?\s?I hope after a match end, or -1.</summary>
    private int IHopeEnd(int e)
    {
        if (t.At(e, ".")) e++;
        if (e < t.Length && char.IsWhiteSpace(t.S[e])) e++;
        return t.At(e, "I hope") ? e + 6 : -1;
    }

    private bool NotFollowedByEquals(int end)
    {
        int w = t.WsEnd(end);
        return !(w < t.Length && t.S[w] == '=');
    }
}
