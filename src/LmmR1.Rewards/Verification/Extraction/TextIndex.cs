// Precomputed "next occurrence" tables over one input string, so every pattern matcher answers "where does this
// delimiter close?" in O(1). Math-Verify uses backtracking regexes for the same questions; on hostile inputs
// (thousands of unclosed `\[`) those go quadratic, these tables never do. Tables are rented from the shared
// ArrayPool (a 32k-char input would otherwise put a dozen arrays on the large-object heap per call).
using System.Buffers;
using System.Runtime.CompilerServices;

namespace LmmR1.Rewards.Verification.Extraction;

internal sealed class TextIndex : IDisposable
{
    public string S { get; }
    public int Length => S.Length;
    private int[]? _wsEnd, _nextDoubleDollar, _nextBackslashBracket, _nextBackslashParen, _nextNewline, _nextUnescapedDollar,
        _nextBracketStop, _nextBoxed, _prevCloseBrace;
    private readonly List<int[]> _rented = [];

    public TextIndex(string s) { S = s; }

    /// <summary>An int array of at least <paramref name="length"/> from the pool, returned on Dispose (contents undefined).</summary>
    public int[] RentInts(int length)
    {
        var a = ArrayPool<int>.Shared.Rent(Math.Max(1, length));
        _rented.Add(a);
        return a;
    }

    public void Dispose()
    {
        foreach (var a in _rented) ArrayPool<int>.Shared.Return(a);
        _rented.Clear();
    }

    /// <summary>First index ≥ i that is not whitespace (Length if none).</summary>
    public int WsEnd(int i) => i >= S.Length ? S.Length : (_wsEnd ??= BuildWsEnd())[i];

    /// <summary>Smallest j ≥ i with "$$" at j, or -1.</summary>
    public int NextDoubleDollar(int i) => Next(ref _nextDoubleDollar, i, static (s, j) => s[j] == '$' && j + 1 < s.Length && s[j + 1] == '$');
    public int NextBackslashBracket(int i) => Next(ref _nextBackslashBracket, i, static (s, j) => s[j] == '\\' && j + 1 < s.Length && s[j + 1] == ']');
    public int NextBackslashParen(int i) => Next(ref _nextBackslashParen, i, static (s, j) => s[j] == '\\' && j + 1 < s.Length && s[j + 1] == ')');
    public int NextNewline(int i) => Next(ref _nextNewline, i, static (s, j) => s[j] == '\n');
    /// <summary>Smallest j ≥ i with a '$' not preceded by a backslash.</summary>
    public int NextUnescapedDollar(int i) => Next(ref _nextUnescapedDollar, i, static (s, j) => s[j] == '$' && (j == 0 || s[j - 1] != '\\'));
    /// <summary>Smallest j ≥ i holding '[', ']' or a newline (what ends an inline ` [ … ] ` span).</summary>
    public int NextBracketStop(int i) => Next(ref _nextBracketStop, i, static (s, j) => s[j] is '[' or ']' or '\n');
    /// <summary>Smallest j ≥ i where "\boxed{" starts.</summary>
    public int NextBoxed(int i) => Next(ref _nextBoxed, i, static (s, j) => s[j] == '\\' && string.CompareOrdinal(s, j, "\\boxed{", 0, 7) == 0);

    /// <summary>Largest j ≤ i holding '}', or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int PrevCloseBrace(int i)
    {
        if (i < 0) return -1;
        if (_prevCloseBrace == null)
        {
            _prevCloseBrace = RentInts(S.Length);
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

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int Next(ref int[]? table, int i, Func<string, int, bool> pred)
    {
        if (i >= S.Length || i < 0) return -1;
        if (table == null)
        {
            table = RentInts(S.Length + 1);
            table[S.Length] = -1;
            for (int j = S.Length - 1; j >= 0; j--) table[j] = pred(S, j) ? j : table[j + 1];
        }
        return table[i];
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private int[] BuildWsEnd()
    {
        var r = RentInts(S.Length + 1);
        r[S.Length] = S.Length;
        for (int i = S.Length - 1; i >= 0; i--) r[i] = char.IsWhiteSpace(S[i]) ? r[i + 1] : i;
        return r;
    }

    /// <summary>Where the text after the word "answer" at <paramref name="p"/> starts: past its colon when
    /// <paramref name="colon"/> (then -1 when there is none), else right after the word.</summary>
    public int AfterAnswerWord(int p, bool colon)
    {
        int q = p + "answer".Length;
        if (!colon) return q;
        return At(q, ":") ? q + 1 : -1;
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
