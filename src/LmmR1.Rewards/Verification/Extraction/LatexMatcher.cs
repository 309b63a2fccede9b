// The LaTeX answer patterns of Math-Verify's parser.py (make_latex_env_pattern / lazy_latex_regex), matched by hand:
// $$…$$, \[…\] (multi-line), $…$, \(…\) (one line), ` […] `, a bare numeric \frac{n}{m}, an optional percent
// suffix, up to five more environments joined by and/or/`,`; the "boxed" variants require a \boxed{…} inside.
// Anchored forms: "final answer is … I hope" (0), "final answer … is" (50), "answer:" (100), "answer" (200), plain (300).
using System.Runtime.CompilerServices;

namespace LmmR1.Rewards.Verification.Extraction;

internal readonly record struct LatexEnv(int ContentStart, int ContentEnd, bool Percent, bool BareBoxed);

internal sealed class LatexMatch(int start, int end, List<LatexEnv> envs) : RawMatch(start, end)
{
    public List<LatexEnv> Envs { get; } = envs;
}

internal sealed class LatexMatcher(TextIndex t, Budget budget)
{
    private const int MaxChained = 5;

    private readonly record struct Env(int ContentStart, int ContentEnd, int End, bool Percent);

    // Memo of EnvAt per position: -2 not computed, -1 none, k = index into _envs.
    private int[]? _plainState, _boxedState;
    private readonly List<Env> _envs = [];
    private int[]? _nextPlainStart;

    /// <summary>EnvAt, memoized per position (the anchored patterns probe the same positions many times).</summary>
    private Env? EnvAt(int pos, bool boxed)
    {
        if (pos < 0 || pos >= t.Length) return null;
        ref var state = ref boxed ? ref _boxedState : ref _plainState;
        if (state == null)
        {
            state = t.RentInts(t.Length);
            Array.Fill(state, -2, 0, t.Length);
        }
        if (state[pos] == -2)
        {
            var e = ComputeEnvAt(pos, boxed);
            if (e == null) state[pos] = -1;
            else { state[pos] = _envs.Count; _envs.Add(e.Value); }
        }
        return state[pos] < 0 ? null : _envs[state[pos]];
    }

    /// <summary>Smallest j ≥ i where a plain environment starts, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int NextPlainStart(int i)
    {
        if (i >= t.Length) return -1;
        if (_nextPlainStart == null)
        {
            _nextPlainStart = t.RentInts(t.Length + 1);
            _nextPlainStart[t.Length] = -1;
            for (int j = t.Length - 1; j >= 0; j--)
            {
                if ((j & 1023) == 0) budget.Tick();
                _nextPlainStart[j] = EnvAt(j, false) != null ? j : _nextPlainStart[j + 1];
            }
        }
        return _nextPlainStart[i];
    }

    /// <summary>One environment starting exactly at <paramref name="pos"/> (regex alternation order).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private Env? ComputeEnvAt(int pos, bool boxed)
    {
        var s = t.S;
        if (pos < 0 || pos >= s.Length) return null;
        int cs = -1, ce = -1, end = -1;
        char c = s[pos];
        bool prevBackslash = pos > 0 && s[pos - 1] == '\\';
        if (c == '$' && pos + 1 < s.Length && s[pos + 1] == '$' && !prevBackslash)
        {
            // $$ content $$ — content cannot contain "$$"; the first "$$" closes it unless escaped.
            int j = t.NextDoubleDollar(pos + 2);
            if (j >= 0 && s[j - 1] != '\\' && (boxed ? t.RegionHasBoxed(pos + 2, j) : j >= pos + 3)) { cs = pos + 2; ce = j; end = j + 2; }
        }
        if (end < 0 && c == '\\' && pos + 1 < s.Length && s[pos + 1] == '[' && !prevBackslash)
        {
            int j = t.NextBackslashBracket(pos + 2);
            if (j >= 0 && s[j - 1] != '\\' && (boxed ? t.RegionHasBoxed(pos + 2, j) : j >= pos + 3)) { cs = pos + 2; ce = j; end = j + 2; }
        }
        if (end < 0 && c == '$' && !prevBackslash && !(pos > 0 && char.IsDigit(s[pos - 1])))
        {
            // $ content $ on one line; `\$` inside is an escaped dollar.
            int j = t.NextUnescapedDollar(pos + 1);
            int nl = t.NextNewline(pos + 1);
            if (j >= pos + 2 && (nl < 0 || nl > j) && (boxed ? t.RegionHasBoxed(pos + 1, j) : true)) { cs = pos + 1; ce = j; end = j + 1; }
        }
        if (end < 0 && c == '\\' && pos + 1 < s.Length && s[pos + 1] == '(' && !prevBackslash)
        {
            int j = t.NextBackslashParen(pos + 2);
            int nl = t.NextNewline(pos + 2);
            if (j >= 0 && (nl < 0 || nl > j) && s[j - 1] != '\\' && (boxed ? t.RegionHasBoxed(pos + 2, j) : j >= pos + 3)) { cs = pos + 2; ce = j; end = j + 2; }
        }
        if (end < 0 && char.IsWhiteSpace(c) && pos + 1 < s.Length && s[pos + 1] == '[')
        {
            int j = t.NextBracketStop(pos + 2);
            if (j >= pos + 3 && s[j] == ']' && j + 1 < s.Length && char.IsWhiteSpace(s[j + 1]) && (boxed ? t.RegionHasBoxed(pos + 2, j) : true))
            { cs = pos + 2; ce = j; end = j + 2; }
        }
        if (end < 0 && !boxed) (cs, ce, end) = FractionAt(pos);
        if (end < 0) return null;

        // \s*(\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct)?  — the whitespace stays in the match even without a percent.
        int w = t.WsEnd(end);
        bool percent = false;
        if (t.At(w, "\\%")) { percent = true; w += 2; }
        else if (t.At(w, "%")) { percent = true; w += 1; }
        else if (t.At(w, "percent") || t.At(w, "Percent")) { percent = true; w += 7; }
        else if (t.At(w, "pct") || t.At(w, "Pct")) { percent = true; w += 3; }
        return new Env(cs, ce, w, percent);
    }

    // -?\\frac{N}{N} with N = -?\d+(?:[.,]\d+)?
    private (int, int, int) FractionAt(int pos)
    {
        var s = t.S;
        int i = pos;
        if (i < s.Length && s[i] == '-') i++;
        if (!t.At(i, "\\frac{")) return (-1, -1, -1);
        int j = SimpleNumber(i + 6);
        if (j < 0 || !t.At(j, "}{")) return (-1, -1, -1);
        int k = SimpleNumber(j + 2);
        if (k < 0 || !t.At(k, "}")) return (-1, -1, -1);
        return (pos, k + 1, k + 1);
    }

    private int SimpleNumber(int i)
    {
        var s = t.S;
        if (i < s.Length && s[i] == '-') i++;
        int d = i;
        while (i < s.Length && char.IsDigit(s[i])) i++;
        if (i == d) return -1;
        if (i + 1 < s.Length && (s[i] == '.' || s[i] == ',') && char.IsDigit(s[i + 1]))
        {
            i++;
            while (i < s.Length && char.IsDigit(s[i])) i++;
        }
        return i;
    }

    /// <summary>`\s*ENV` after a greedy whitespace run: the env at the run's end, or an inline ` [` that needs
    /// the run's last whitespace char back.</summary>
    private Env? EnvAfterWhitespace(int from, bool boxed)
    {
        int w = t.WsEnd(from);
        var e = EnvAt(w, boxed);
        if (e == null && w > from) e = EnvAt(w - 1, boxed);
        return e;
    }

    /// <summary>ENV (sep ENV){0,5}: every chain length, longest last.</summary>
    private List<Env> Chain(Env first, bool boxed)
    {
        var chain = new List<Env> { first };
        while (chain.Count <= MaxChained)
        {
            budget.Tick();
            int e = chain[^1].End;
            int j = t.WsEnd(e);
            Env? next = null;
            foreach (var sep in new[] { ",and", "and", ",or", "or", "," })
            {
                if (!t.At(j, sep)) continue;
                next = EnvAfterWhitespace(j + sep.Length, boxed);
                if (next != null) break;
            }
            if (next == null) break;
            chain.Add(next.Value);
        }
        return chain;
    }

    private static LatexMatch ToMatch(int start, List<Env> chain, int count, bool bareBoxed = false)
    {
        var envs = chain.Take(count).Select(e => new LatexEnv(e.ContentStart, e.ContentEnd, e.Percent, bareBoxed)).ToList();
        return new LatexMatch(start, chain[count - 1].End, envs);
    }

    /// <summary>Plain ENVS anywhere (priority 300), or the boxed ENVS (boxed priority), finditer order.</summary>
    public IEnumerable<RawMatch> Plain(bool boxed)
    {
        int pos = 0;
        while (pos < t.Length)
        {
            budget.Tick();
            var env = EnvAt(pos, boxed);
            if (env == null) { pos++; continue; }
            var chain = Chain(env.Value, boxed);
            var m = ToMatch(pos, chain, chain.Count);
            yield return m;
            pos = Math.Max(m.End, pos + 1);
        }
    }

    /// <summary>(?P&lt;first_latexBoxed&gt;\\boxed{.+}): from the first \boxed{ to the last '}' of the text.</summary>
    public IEnumerable<RawMatch> BareBoxed()
    {
        int b = t.S.IndexOf("\\boxed{", StringComparison.Ordinal);
        int last = t.S.LastIndexOf('}');
        if (b >= 0 && last >= b + 8)
            yield return new LatexMatch(b, last + 1, [new LatexEnv(b, last + 1, false, true)]);
    }

    /// <summary>(?i:final answer is)\:?\s*ENVS\.?\s?I hope</summary>
    public IEnumerable<RawMatch> FinalAnswerIHope()
    {
        int from = 0;
        foreach (var p in t.Occurrences("final answer is"))
        {
            if (p < from) continue;
            budget.Tick();
            int q = p + 15;
            if (t.At(q, ":")) q++;
            var env = EnvAfterWhitespace(q, false);
            if (env == null) continue;
            var chain = Chain(env.Value, false);
            for (int k = chain.Count; k >= 1; k--)
            {
                int e = chain[k - 1].End;
                if (t.At(e, ".")) e++;
                if (e < t.Length && char.IsWhiteSpace(t.S[e])) e++;
                if (!t.At(e, "I hope")) continue;
                var m = ToMatch(p, chain, k);
                yield return new LatexMatch(p, e + 6, m.Envs);
                from = e + 6;
                break;
            }
        }
    }

    /// <summary>(?i:final answer.{0,100}?)\s+is\:?\s*ENVS</summary>
    public IEnumerable<RawMatch> FinalAnswerIs()
    {
        int from = 0;
        foreach (var p in t.Occurrences("final answer"))
        {
            if (p < from) continue;
            for (int k = 0; k <= 100 && p + 12 + k < t.Length; k++)
            {
                budget.Tick();
                int q = p + 12 + k;
                if (!char.IsWhiteSpace(t.S[q])) continue;
                int r = t.WsEnd(q);
                if (!t.At(r, "is")) continue;
                int a = r + 2;
                if (t.At(a, ":")) a++;
                var env = EnvAfterWhitespace(a, false);
                if (env == null) continue;
                var chain = Chain(env.Value, false);
                var m = ToMatch(p, chain, chain.Count);
                yield return m;
                from = m.End;
                break;
            }
        }
    }

    /// <summary>(?i:answer)(:)?.{0,50}?ENVS (priority 100 with the colon, 200 without).</summary>
    public IEnumerable<RawMatch> AnswerWord(bool colon)
    {
        int from = 0;
        foreach (var p in t.Occurrences("answer"))
        {
            if (p < from) continue;
            int q = t.AfterAnswerWord(p, colon);
            if (q < 0) continue;
            budget.Tick();
            int j = NextPlainStart(q); // `.{0,50}?` is lazy: the first environment within 50 chars
            if (j >= 0 && j <= q + 50)
            {
                var env = EnvAt(j, false)!.Value;
                var chain = Chain(env, false);
                var m = ToMatch(p, chain, chain.Count);
                yield return m;
                from = m.End;
            }
        }
    }
}
