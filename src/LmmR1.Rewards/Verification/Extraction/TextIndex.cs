// Precomputed "next occurrence" tables over one input string, so every pattern matcher answers "where does this
// delimiter close?" in O(1). Math-Verify uses backtracking regexes for the same questions; on hostile inputs
// (thousands of unclosed `\[`) those go quadratic, these tables never do.
namespace LmmR1.Rewards.Verification.Extraction;

internal sealed class TextIndex
{
    public string S { get; }
    public int Length => S.Length;
    private int[]? _wsEnd, _nextDoubleDollar, _nextBackslashBracket, _nextBackslashParen, _nextNewline, _nextUnescapedDollar,
        _nextBracketStop, _nextBoxed, _prevCloseBrace;

    public TextIndex(string s) { S = s; }

    /// <summary>First index ≥ i that is not whitespace (Length if none).</summary>
    public int WsEnd(int i) => i >= S.Length ? S.Length : (_wsEnd ??= BuildWsEnd())[i];

    /// <summary>Smallest j ≥ i with "$$" at j, or -1.</summary>
    public int NextDoubleDollar(int i) => Next(ref _nextDoubleDollar, i, j => S[j] == '$' && j + 1 < S.Length && S[j + 1] == '$');
    public int NextBackslashBracket(int i) => Next(ref _nextBackslashBracket, i, j => S[j] == '\\' && j + 1 < S.Length && S[j + 1] == ']');
    public int NextBackslashParen(int i) => Next(ref _nextBackslashParen, i, j => S[j] == '\\' && j + 1 < S.Length && S[j + 1] == ')');
    public int NextNewline(int i) => Next(ref _nextNewline, i, j => S[j] == '\n');
    /// <summary>Smallest j ≥ i with a '$' not preceded by a backslash.</summary>
    public int NextUnescapedDollar(int i) => Next(ref _nextUnescapedDollar, i, j => S[j] == '$' && (j == 0 || S[j - 1] != '\\'));
    /// <summary>Smallest j ≥ i holding '[', ']' or a newline (what ends an inline ` [ … ] ` span).</summary>
    public int NextBracketStop(int i) => Next(ref _nextBracketStop, i, j => S[j] is '[' or ']' or '\n');
    /// <summary>Smallest j ≥ i where "\boxed{" starts.</summary>
    public int NextBoxed(int i) => Next(ref _nextBoxed, i, j => string.CompareOrdinal(S, j, "\\boxed{", 0, 7) == 0);

    /// <summary>Largest j ≤ i holding '}', or -1.</summary>
    public int PrevCloseBrace(int i)
    {
        if (i < 0) return -1;
        if (_prevCloseBrace == null)
        {
            _prevCloseBrace = new int[S.Length];
            int last = -1;
            for (int j = 0; j < S.Length; j++) { if (S[j] == '}') last = j; _prevCloseBrace[j] = last; }
        }
        return _prevCloseBrace[Math.Min(i, S.Length - 1)];
    }

    /// <summary>True when [from, to) contains "\boxed{" followed (inside the range) by at least one char and a '}'.</summary>
    public bool RegionHasBoxed(int from, int to)
    {
        if (from >= to) return false;
        int b = NextBoxed(from);
        if (b < 0 || b + 8 >= to) return false;
        return PrevCloseBrace(to - 1) >= b + 8;
    }

    private int Next(ref int[]? table, int i, Func<int, bool> pred)
    {
        if (i >= S.Length || i < 0) return -1;
        if (table == null)
        {
            table = new int[S.Length + 1];
            table[S.Length] = -1;
            for (int j = S.Length - 1; j >= 0; j--) table[j] = pred(j) ? j : table[j + 1];
        }
        return table[i];
    }

    private int[] BuildWsEnd()
    {
        var r = new int[S.Length + 1];
        r[S.Length] = S.Length;
        for (int i = S.Length - 1; i >= 0; i--) r[i] = char.IsWhiteSpace(S[i]) ? r[i + 1] : i;
        return r;
    }

    public bool At(int i, string lit) => i >= 0 && i + lit.Length <= S.Length && string.CompareOrdinal(S, i, lit, 0, lit.Length) == 0;

    public bool AtIgnoreCase(int i, string lit) =>
        i >= 0 && i + lit.Length <= S.Length && string.Compare(S, i, lit, 0, lit.Length, StringComparison.OrdinalIgnoreCase) == 0;

    /// <summary>Case-insensitive occurrences of an ASCII word, left to right.</summary>
    public IEnumerable<int> Occurrences(string word, int from = 0)
    {
        int i = from;
        while (i <= S.Length - word.Length)
        {
            int j = S.IndexOf(word, i, StringComparison.OrdinalIgnoreCase);
            if (j < 0) yield break;
            yield return j;
            i = j + 1;
        }
    }
}
