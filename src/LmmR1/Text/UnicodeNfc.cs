// Unicode NFC (UAX #15) in managed code, on tables generated from the Unicode 15.0 Character Database
// (UnicodeNfcData.g.cs). Written by hand because string.Normalize needs ICU and the lmmr1 binary runs with
// InvariantGlobalization, where .NET treats every string as already normalised. Canonical decomposition (Hangul
// algorithmically), canonical ordering, then canonical composition, with a quick path for text in which no
// character can change. Checked against ICU's NFC over every code point and random mark sequences.
namespace LmmR1.Text;

public static class UnicodeNfc
{
    const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    static readonly Dictionary<int, int> CccOf = new();
    static readonly Dictionary<int, (int Start, int Length)> DecompOf = new();
    static readonly Dictionary<long, int> Composite = new();
    static readonly ulong[] BmpUnsafe = new ulong[1024];   // one bit per BMP code point
    static readonly int[] AstralUnsafe;                    // inclusive ranges above U+FFFF

    static UnicodeNfc()
    {
        var d = UnicodeNfcData.Ccc;
        for (int i = 0; i < d.Length; i += 2) CccOf[d[i]] = d[i + 1];
        for (int i = 0; i < UnicodeNfcData.DecompKeys.Length; i++)
            DecompOf[UnicodeNfcData.DecompKeys[i]] = (UnicodeNfcData.DecompStart[i], UnicodeNfcData.DecompStart[i + 1] - UnicodeNfcData.DecompStart[i]);
        var c = UnicodeNfcData.Compositions;
        for (int i = 0; i < c.Length; i += 3) Composite[Key(c[i], c[i + 1])] = c[i + 2];
        var astral = new List<int>();
        var u = UnicodeNfcData.UnsafeRanges;
        for (int i = 0; i < u.Length; i += 2)
        {
            for (int cp = u[i]; cp <= Math.Min(u[i + 1], 0xFFFF); cp++) BmpUnsafe[cp >> 6] |= 1UL << (cp & 63);
            if (u[i + 1] > 0xFFFF) { astral.Add(Math.Max(u[i], 0x10000)); astral.Add(u[i + 1]); }
        }
        AstralUnsafe = astral.ToArray();
    }

    static long Key(int a, int b) => ((long)a << 21) | (uint)b;

    static int Ccc(int cp) => cp < 0x300 ? 0 : CccOf.GetValueOrDefault(cp);

    static bool Unsafe(int cp)
    {
        if (cp <= 0xFFFF) return (BmpUnsafe[cp >> 6] & (1UL << (cp & 63))) != 0;
        for (int i = 0; i < AstralUnsafe.Length; i += 2)
            if (cp >= AstralUnsafe[i] && cp <= AstralUnsafe[i + 1]) return true;
        return false;
    }

    /// <summary>Whether no character of s can change under NFC (then s is in NFC).</summary>
    public static bool IsQuickNormalized(ReadOnlySpan<char> s)
    {
        for (int i = 0; i < s.Length; i++)
        {
            char ch = s[i];
            if (ch < 0x300) continue;
            int cp = ch;
            if (char.IsHighSurrogate(ch) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) cp = char.ConvertToUtf32(ch, s[++i]);
            if (Unsafe(cp)) return false;
        }
        return true;
    }

    /// <summary>The NFC form of s (s itself when nothing changes). Lone surrogates pass through unchanged.</summary>
    public static string Normalize(string s)
    {
        if (IsQuickNormalized(s)) return s;
        var buf = new List<int>(s.Length + 8);
        for (int i = 0; i < s.Length; i++)
        {
            int cp = s[i];
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) cp = char.ConvertToUtf32(s[i], s[++i]);
            Decompose(cp, buf);
        }
        Reorder(buf);
        int n = Compose(buf);
        var sb = new System.Text.StringBuilder(n + 4);
        for (int i = 0; i < n; i++)
        {
            int cp = buf[i];
            if (cp <= 0xFFFF) sb.Append((char)cp);   // also lone surrogates, which ConvertFromUtf32 would reject
            else sb.Append(char.ConvertFromUtf32(cp));
        }
        return sb.ToString();
    }

    static void Decompose(int cp, List<int> into)
    {
        int s = cp - SBase;
        if ((uint)s < SCount)
        {
            into.Add(LBase + s / NCount);
            into.Add(VBase + s % NCount / TCount);
            if (s % TCount != 0) into.Add(TBase + s % TCount);
            return;
        }
        if (cp >= 0xC0 && DecompOf.TryGetValue(cp, out var d))
        {
            for (int k = 0; k < d.Length; k++) Decompose(UnicodeNfcData.DecompMap[d.Start + k], into);
            return;
        }
        into.Add(cp);
    }

    /// <summary>Canonical ordering: a stable sort of each run of non-starters by combining class.</summary>
    static void Reorder(List<int> b)
    {
        for (int i = 1; i < b.Count; i++)
        {
            int c = Ccc(b[i]);
            if (c == 0) continue;
            for (int j = i; j > 0; j--)
            {
                int prev = Ccc(b[j - 1]);
                if (prev <= c) break;
                (b[j - 1], b[j]) = (b[j], b[j - 1]);
            }
        }
    }

    /// <summary>Canonical composition in place; returns the new length.</summary>
    static int Compose(List<int> b)
    {
        if (b.Count == 0) return 0;
        int starterPos = 0, starter = b[0];
        int lastClass = Ccc(starter) == 0 ? 0 : 256; // a leading non-starter blocks everything after it
        int outPos = 1;
        for (int i = 1; i < b.Count; i++)
        {
            int ch = b[i], cls = Ccc(ch);
            int comp = lastClass == 256 ? -1 : Pair(starter, ch);
            if (comp >= 0 && (lastClass < cls || lastClass == 0))
            {
                b[starterPos] = comp;
                starter = comp;
                continue;
            }
            if (cls == 0) { starterPos = outPos; starter = ch; }
            lastClass = cls;
            b[outPos++] = ch;
        }
        return outPos;
    }

    static int Pair(int a, int b)
    {
        int l = a - LBase, v = b - VBase;
        if ((uint)l < LCount && (uint)v < VCount) return SBase + (l * VCount + v) * TCount;
        int s = a - SBase, t = b - TBase;
        if ((uint)s < SCount && s % TCount == 0 && t > 0 && t < TCount) return a + t;
        return Composite.TryGetValue(Key(a, b), out int c) ? c : -1;
    }
}
