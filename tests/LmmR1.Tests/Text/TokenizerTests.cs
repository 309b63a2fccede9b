using System.Text.Json;
using LmmR1.Tests.Support;
using LmmR1.Text;

namespace LmmR1.Tests.Text;

public class TokenizerTests
{
    internal static readonly Lazy<QwenTokenizer> Qwen = new(() => QwenTokenizer.Load(TestPaths.Fixture("qwen-tokenizer")));

    public static IEnumerable<object[]> Cases() =>
        File.ReadLines(TestPaths.Fixture("tokenizer_cases.jsonl")).Where(l => l.Trim().Length > 0).Select((l, i) => new object[] { i, l });

    [Theory]
    [MemberData(nameof(Cases))]
    public void EncodesFixtureCasesExactly(int index, string line)
    {
        using var doc = JsonDocument.Parse(line);
        string text = doc.RootElement.GetProperty("text").GetString()!;
        int[] expected = doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] actual = Qwen.Value.Encode(text);
        Assert.True(expected.SequenceEqual(actual),
            $"case {index} {JsonSerializer.Serialize(text)}:\n expected [{string.Join(",", expected)}]\n actual   [{string.Join(",", actual)}]");
        Assert.Equal(text, Qwen.Value.Decode(actual));
    }

    [Fact]
    public void SpecialTokenIdsAndConfig()
    {
        var t = Qwen.Value;
        Assert.Equal(151645, t.TokenToId("<|im_end|>"));
        Assert.Equal(151655, t.TokenToId("<|image_pad|>"));
        Assert.Equal(151652, t.TokenToId("<|vision_start|>"));
        Assert.Equal(151668, t.TokenToId("</think>"));
        Assert.Equal(151645, t.EosTokenId);      // tokenizer_config eos_token <|im_end|>
        Assert.Equal(151643, t.PadTokenId);      // pad_token <|endoftext|>
        Assert.Equal(151669, t.VocabSize);
        Assert.True(t.IsSpecial(151645));
        Assert.False(t.IsSpecial(151667));       // <think> is added but not special
    }

    [Fact]
    public void DecodeSkipsSpecialTokensOnlyWhenAsked()
    {
        var t = Qwen.Value;
        int[] ids = t.Encode("<|im_start|>assistant\n<think>x</think>42<|im_end|>");
        Assert.Equal("<|im_start|>assistant\n<think>x</think>42<|im_end|>", t.Decode(ids));
        // <think> is a non-special added token: kept, as tokenizers does.
        Assert.Equal("assistant\n<think>x</think>42", t.Decode(ids, skipSpecialTokens: true));
    }

    [Fact]
    public void SplitTokenBytesDecodeToReplacementCharacter()
    {
        var t = Qwen.Value;
        int[] ids = t.Encode("𓂀"); // an Egyptian hieroglyph: no single token for it
        Assert.True(ids.Length >= 2, "the character should take several byte tokens");
        // Half of a UTF-8 sequence decodes to U+FFFD, as from_utf8_lossy does.
        Assert.Contains('\uFFFD', t.Decode(ids[..1]));
        Assert.Equal("𓂀", t.Decode(ids));
    }

    public static IEnumerable<object[]> TrickyStrings() => new[]
    {
        "", " ", "   ", "\t\t x", "a  b   c    ", "\n", "\r\n\r\n", " \n \n x", "x\u00A0y\u3000z", "\u2028line\u2029",
        "中文标点：，。！？「」", "日本語のテキストとカタカナ", "한국어 텍스트", "Ελληνικά και русский",
        "emoji 😀👍🏽👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵", "e\u0301 a\u0308 n\u0303 combining", "Å vs A\u030A", "ﬁ ligature ﬀ",
        "𠀀𠀁 ext-B and 𝑥𝑦 math letters 𝟙𝟚", "don't I'M we'LL 'S 'sound ſ'ſ", "$\\frac{1}{2}$ \\boxed{x^2}",
        "<|im_start|><|im_end|><|im_start", "<think>\n</think>\n\n<answer>1</answer>", "<|image_pad|><|image_pad|>text",
        "a<|endoftext|>b", "1234567890123", "   trailing\n\n\n   ", "\u200B\u200D zero width", "tab\tand\u000Bvt\u000Cff",
        "١٢٣ Arabic digits ٤", "Ⅷ roman Ⅻ", "½ ¾ fractions", "ok\r\nok\rok\nok", new string('x', 5000),
    }.Select(s => new object[] { s });

    [Theory]
    [MemberData(nameof(TrickyStrings))]
    public void DecodeOfEncodeIsIdentityOnNfcText(string s)
    {
        var t = Qwen.Value;
        // The normalizer is NFC, so the round trip gives the NFC form of s (s itself when already NFC).
        string expected = s.Normalize(System.Text.NormalizationForm.FormC);
        Assert.Equal(expected, t.Decode(t.Encode(s)));
    }

    [Fact]
    public void NfcIsAppliedOutsideAddedTokensOnly()
    {
        var t = Qwen.Value;
        Assert.Equal(t.Encode("\u00C5"), t.Encode("A\u030A"));
        // U+0338 after '>' would compose to '≯' if the whole text were normalised; the special token must survive.
        int[] ids = t.Encode("<|im_end|>\u0338");
        Assert.Equal(151645, ids[0]);
    }

    [Fact]
    public void BatchEncodeEqualsSequentialEncode()
    {
        var t = Qwen.Value;
        var texts = TrickyStrings().Select(o => (string)o[0]).Concat(Enumerable.Range(0, 200).Select(i => $"row {i}: 数学 {i * 37} 😀")).ToList();
        var batch = t.EncodeBatch(texts);
        for (int i = 0; i < texts.Count; i++) Assert.Equal(t.Encode(texts[i]), batch[i]);
    }

    [Fact]
    public void PreTokenizerMatchesHandCheckedSplits()
    {
        // Expected pieces worked out by hand from the regex alternatives (leftmost-first).
        Assert.Equal(["Hello", ",", " world", "!"], Qwen2PreTokenizer.SplitToStrings("Hello, world!"));
        Assert.Equal(["don", "'t", " I", "'M"], Qwen2PreTokenizer.SplitToStrings("don't I'M"));
        Assert.Equal(["1", "2", "3", " ", "4"], Qwen2PreTokenizer.SplitToStrings("123 4"));
        Assert.Equal(["a", " ", " b"], Qwen2PreTokenizer.SplitToStrings("a  b"));
        Assert.Equal(["x", "  \n\n", "y"], Qwen2PreTokenizer.SplitToStrings("x  \n\ny"));
        Assert.Equal(["x", "\n", " ", " y"], Qwen2PreTokenizer.SplitToStrings("x\n  y"));
        Assert.Equal(["x", "   "], Qwen2PreTokenizer.SplitToStrings("x   "));
        Assert.Equal([" $\\", "frac", "{", "1", "}"], Qwen2PreTokenizer.SplitToStrings(" $\\frac{1}"));
        Assert.Equal(["?\n\n", "A"], Qwen2PreTokenizer.SplitToStrings("?\n\nA"));
        // Letters and digits outside the BMP are letters and digits (one code point each for \p{N}).
        Assert.Equal(["𠀀𠀁", " 𝑥", "𝟙", "𝟚"], Qwen2PreTokenizer.SplitToStrings("𠀀𠀁 𝑥𝟙𝟚"));
    }
}
