using System.Text;
using LmmR1.Text;

namespace LmmR1.Tests.Text;

/// <summary>The managed NFC against ICU's (string.Normalize in this test process, which runs with ICU 72 = Unicode 15.0).</summary>
public class UnicodeNfcTests
{
    /// <summary>ICU's NFC, or null where .NET refuses the string (it rejects some code points, e.g. noncharacters).</summary>
    static string? Icu(string s)
    {
        try { return s.Normalize(NormalizationForm.FormC); }
        catch (ArgumentException) { return null; }
    }

    [Fact]
    public void IcuIsActiveInTheTestProcess()
    {
        // Without ICU (invariant globalization) string.Normalize does nothing and the comparisons below would be empty.
        Assert.Equal("\u00C5", "A\u030A".Normalize(NormalizationForm.FormC));
        Assert.Equal("\u00C5", UnicodeNfc.Normalize("A\u030A"));
    }

    [Fact]
    public void EveryCodePointAloneAndBeforeAMark()
    {
        var bad = new List<string>();
        int compared = 0, refused = 0;
        for (int cp = 0; cp <= 0x10FFFF; cp++)
        {
            if (cp is >= 0xD800 and <= 0xDFFF) continue;
            string s = char.ConvertFromUtf32(cp);
            foreach (var t in new[] { s, s + "\u0301", s + "\u0327\u0301", "a" + s })
            {
                string? want = Icu(t);
                if (want == null) { refused++; continue; }
                compared++;
                // Where ICU refuses, ours passes the character through (as the Rust normaliser of tokenizers does).
                if (UnicodeNfc.Normalize(t) != want) { bad.Add($"U+{cp:X4} in {Hex(t)}"); break; }
            }
            if (bad.Count > 10) break;
        }
        Assert.True(bad.Count == 0, string.Join("; ", bad));
        Assert.True(compared > 1_000_000, $"only {compared} strings compared ({refused} refused by ICU)");
    }

    [Fact]
    public void RandomMarkSequencesHangulAndSingletons()
    {
        int[] pool =
        [
            'a', 'e', 'o', 'u', 'A', 'C', 'S', 'i', ' ', 0xC5, 0xE9, 0x1E69, 0x212B, 0x2126, 0xF900, 0x0958, 0x0344,
            0x0300, 0x0301, 0x0302, 0x0303, 0x0308, 0x030A, 0x0323, 0x0327, 0x031B, 0x0345, 0x05B0, 0x05BC, 0x0651, 0x0670,
            0x093C, 0x0915, 0x0B47, 0x0B3E, 0x0BC6, 0x0BBE, 0x0E38, 0x0E48, 0x1DC0, 0x20D0, 0x302A, 0x3099, 0x304B, 0x30AB,
            0x1100, 0x1112, 0x1161, 0x1175, 0x11A8, 0x11C2, 0xAC00, 0xD7A3, 0xAC01, 0x110A, 0x0B95, 0x0BD7,
            0x1D15E, 0x1D165, 0x1D16E, 0x11099, 0x110BA, 0x1133E, 0x11347, 0x114B9, 0x115B8, 0x115AF, 0x1F600, 0x20000,
        ];
        var rng = new Random(5);
        var bad = new List<string>();
        for (int n = 0; n < 30000 && bad.Count < 10; n++)
        {
            var sb = new StringBuilder();
            int len = 1 + rng.Next(10);
            for (int k = 0; k < len; k++) sb.Append(char.ConvertFromUtf32(pool[rng.Next(pool.Length)]));
            string s = sb.ToString();
            if (UnicodeNfc.Normalize(s) != (Icu(s) ?? throw new InvalidOperationException(Hex(s)))) bad.Add(Hex(s));
        }
        Assert.True(bad.Count == 0, string.Join("; ", bad));
    }

    [Fact]
    public void QuickPathReturnsTheSameString()
    {
        const string s = "Plain ASCII, Latin-1 café, 中文文本 and 😀 need no work.";
        Assert.True(UnicodeNfc.IsQuickNormalized(s));
        Assert.Same(s, UnicodeNfc.Normalize(s));
        Assert.False(UnicodeNfc.IsQuickNormalized("e\u0301"));
        Assert.False(UnicodeNfc.IsQuickNormalized("\uF900"));     // CJK compatibility ideograph → U+8C48
        Assert.Equal("\u8C48", UnicodeNfc.Normalize("\uF900"));
        Assert.Equal("x\uD800y", UnicodeNfc.Normalize("x\uD800y")); // a lone surrogate passes through
    }

    static string Hex(string s) => string.Join(" ", s.EnumerateRunes().Select(r => $"{r.Value:X4}"));
}
