// The Split pre-tokenizer of Qwen2/2.5/3 tokenizer.json files, written by hand as a scanner over code points.
// Hugging Face runs the pattern below with Oniguruma over UTF-8; .NET's Regex sees UTF-16 code units, so a
// letter or digit outside the BMP (e.g. U+20000, U+1D465) would stop being \p{L}/\p{N}. The scanner applies
// the alternatives in order (leftmost-first, backtracking semantics) on whole code points instead.
using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LmmR1.Text;

public sealed class Qwen2PreTokenizer : PreTokenizer
{
    /// <summary>The Split regex of Qwen2 tokenizer.json (as stored in the JSON, after unescaping).</summary>
    public const string Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    public static Qwen2PreTokenizer Instance { get; } = new();

    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text) => Split(text.AsSpan());

    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text) => Split(text);

    /// <summary>Pieces of <paramref name="text"/> as (offset, length) in UTF-16 units; they tile the text.</summary>
    public static List<(int Offset, int Length)> Split(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int, int)>();
        int i = 0;
        while (i < text.Length)
        {
            int end = MatchAt(text, i);
            pieces.Add((i, end - i));
            i = end;
        }
        return pieces;
    }

    /// <summary>End of the match that starts at <paramref name="i"/> (every position matches one alternative).</summary>
    static int MatchAt(ReadOnlySpan<char> s, int i)
    {
        int c = CodePoint(s, i, out int n);

        // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if (c == '\'' && i + 1 < s.Length)
        {
            int e = Contraction(s, i + 1);
            if (e > 0) return e;
        }

        // 2. [^\r\n\p{L}\p{N}]?\p{L}+  (the optional prefix is tried first, as a greedy ? does)
        if (IsLetter(c)) return LetterRun(s, i + n);
        if (c != '\r' && c != '\n' && !IsNumber(c) && i + n < s.Length && IsLetter(CodePoint(s, i + n, out _)))
            return LetterRun(s, i + n);

        // 3. \p{N}
        if (IsNumber(c)) return i + n;

        // 4. ' ?[^\s\p{L}\p{N}]+[\r\n]*'
        int j = i;
        if (c == ' ' && i + 1 < s.Length && IsOther(CodePoint(s, i + 1, out _))) j = i + 1;
        if (IsOther(CodePoint(s, j, out _)))
        {
            while (j < s.Length)
            {
                int d = CodePoint(s, j, out int m);
                if (!IsOther(d)) break;
                j += m;
            }
            while (j < s.Length && (s[j] == '\r' || s[j] == '\n')) j++;
            return j;
        }

        // Only whitespace is left. Its maximal run is [i, w).
        int w = i;
        int lastNewline = -1;
        while (w < s.Length)
        {
            int d = CodePoint(s, w, out int m);
            if (!IsWhiteSpace(d)) break;
            if (d == '\r' || d == '\n') lastNewline = w;
            w += m;
        }

        // 5. \s*[\r\n]+ : \s* backs off to the last newline of the run; [\r\n]+ then takes just that one.
        if (lastNewline >= 0) return lastNewline + 1;

        // 6. \s+(?!\S) : the whole run at the end of the text, else the run minus its last character.
        if (w == s.Length) return w;
        int lastStart = PreviousStart(s, w);
        if (lastStart > i) return lastStart;

        // 7. \s+
        return w;
    }

    static int Contraction(ReadOnlySpan<char> s, int k)
    {
        static bool Is(ReadOnlySpan<char> s, int k, char lower) =>
            k < s.Length && (char.ToLowerInvariant(s[k]) == lower || (lower == 's' && s[k] == '\u017F'));
        // Same order as the pattern; none of the alternatives is a prefix of another except via case, so order only
        // matters for 're'/'ve'/'ll' vs nothing.
        if (Is(s, k, 's') || Is(s, k, 't') || Is(s, k, 'm') || Is(s, k, 'd')) return k + 1;
        if ((Is(s, k, 'r') && Is(s, k + 1, 'e')) || (Is(s, k, 'v') && Is(s, k + 1, 'e')) || (Is(s, k, 'l') && Is(s, k + 1, 'l')))
            return k + 2;
        return -1;
    }

    static int LetterRun(ReadOnlySpan<char> s, int j)
    {
        while (j < s.Length)
        {
            int d = CodePoint(s, j, out int m);
            if (!IsLetter(d)) break;
            j += m;
        }
        return j;
    }

    static int PreviousStart(ReadOnlySpan<char> s, int w) =>
        w >= 2 && char.IsLowSurrogate(s[w - 1]) && char.IsHighSurrogate(s[w - 2]) ? w - 2 : w - 1;

    /// <summary>The code point at i; a lone surrogate is returned as itself (category Cs, i.e. "other").</summary>
    static int CodePoint(ReadOnlySpan<char> s, int i, out int units)
    {
        char ch = s[i];
        if (char.IsHighSurrogate(ch) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
        {
            units = 2;
            return char.ConvertToUtf32(ch, s[i + 1]);
        }
        units = 1;
        return ch;
    }

    static bool IsLetter(int c)
    {
        if (c < 128) return (uint)((c | 0x20) - 'a') <= 'z' - 'a';
        var cat = CharUnicodeInfo.GetUnicodeCategory(c);
        return cat <= UnicodeCategory.OtherLetter; // Lu, Ll, Lt, Lm, Lo are the first five
    }

    static bool IsNumber(int c)
    {
        if (c < 128) return (uint)(c - '0') <= 9;
        var cat = CharUnicodeInfo.GetUnicodeCategory(c);
        return cat is UnicodeCategory.DecimalDigitNumber or UnicodeCategory.LetterNumber or UnicodeCategory.OtherNumber;
    }

    /// <summary>Unicode White_Space, which is what \s means in Oniguruma's Unicode mode (and in .NET).</summary>
    static bool IsWhiteSpace(int c) => c switch
    {
        >= 0x09 and <= 0x0D => true,
        0x20 or 0x85 or 0xA0 or 0x1680 => true,
        >= 0x2000 and <= 0x200A => true,
        0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000 => true,
        _ => false,
    };

    /// <summary>[^\s\p{L}\p{N}]</summary>
    static bool IsOther(int c) => !IsWhiteSpace(c) && !IsLetter(c) && !IsNumber(c);

    /// <summary>The pieces as strings (for tests and debugging).</summary>
    public static IReadOnlyList<string> SplitToStrings(string text) =>
        Split(text.AsSpan()).Select(p => text.Substring(p.Offset, p.Length)).ToList();

    internal static string Describe(string text)
    {
        var sb = new StringBuilder();
        foreach (var p in SplitToStrings(text)) sb.Append('[').Append(p).Append(']');
        return sb.ToString();
    }
}
