using System.Text;
using LmmR1.Infrastructure;
using LmmR1.Tests.Support;
using LmmR1.Text;

namespace LmmR1.Tests.Text;

/// <summary>The tiny byte-level tokenizer a demo model uses: 256 byte tokens, a few merges, Qwen's special tokens.</summary>
public class TinyTokenizerTests
{
    // Written by hand (not by ByteLevelTokenizerWriter) so the loader is checked against an independent file.
    // Bytes 0x20 ' ' and 0x0A '\n' are 'Ġ' (U+0120) and 'Ċ' (U+010A) in the byte-level alphabet.
    static string HandWrittenJson()
    {
        var vocab = new StringBuilder("{");
        for (int b = 0; b < 256; b++)
        {
            char c = ByteLevelChar(b);
            vocab.Append(b == 0 ? "" : ",").Append(System.Text.Json.JsonSerializer.Serialize(c.ToString())).Append(':').Append(b);
        }
        vocab.Append(",\"Ġt\":256,\"he\":257,\"Ġthe\":258}");
        return $$$"""
        {"version":"1.0","truncation":null,"padding":null,
         "added_tokens":[
          {"id":259,"content":"<|endoftext|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
          {"id":260,"content":"<|im_start|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
          {"id":261,"content":"<|im_end|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
          {"id":262,"content":"<|vision_start|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
          {"id":263,"content":"<|vision_end|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
          {"id":264,"content":"<|image_pad|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
         "normalizer":{"type":"NFC"},
         "pre_tokenizer":{"type":"Sequence","pretokenizers":[
           {"type":"Split","pattern":{"Regex":{{{System.Text.Json.JsonSerializer.Serialize(Qwen2PreTokenizer.Pattern)}}}},"behavior":"Isolated","invert":false},
           {"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false}]},
         "post_processor":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
         "decoder":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":false,"use_regex":false},
         "model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":"","end_of_word_suffix":"",
                  "fuse_unk":false,"byte_fallback":false,"ignore_merges":false,
                  "vocab":{{{vocab}}},
                  "merges":[["Ġ","t"],["h","e"],["Ġt","he"]]}}
        """;
    }

    // GPT-2 bytes_to_unicode, spelled out independently of LmmR1.Text.ByteLevel.
    static char ByteLevelChar(int b)
    {
        bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable) return (char)b;
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        return (char)(256 + n);
    }

    [Fact]
    public void LoadsHandWrittenTinyTokenizerAndRoundTrips()
    {
        string dir = TestPaths.NewTempDir("tinytok");
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), HandWrittenJson());
        var t = QwenTokenizer.Load(dir);

        Assert.Equal(265, t.VocabSize);
        // " the" merges to one token; "the" at the start has no leading space: t + he.
        Assert.Equal([(int)'t', 257, 258, 256, (int)'o', (int)'p'], t.Encode("the the top"));
        Assert.Equal([260, (int)'h', (int)'i', 261], t.Encode("<|im_start|>hi<|im_end|>"));
        Assert.Equal(261, t.EosTokenId);   // no tokenizer_config.json: <|im_end|>
        Assert.Equal(259, t.PadTokenId);   // and <|endoftext|> as pad
        foreach (var s in new[] { "", "the theme", "数学 😀 é\n\n  x", "<|vision_start|><|image_pad|><|vision_end|>What?" })
            Assert.Equal(s, t.Decode(t.Encode(s)));
        // Every non-special token of plain ASCII text is a byte or one of the three merges.
        Assert.All(t.Encode("The theory of the thing"), id => Assert.InRange(id, 0, 258));
    }

    [Fact]
    public void WriterProducesALoadableTokenizerWithQwenSpecialTokens()
    {
        string dir = TestPaths.NewTempDir("tinytok-writer");
        ByteLevelTokenizerWriter.Write(dir, merges: [("Ġ", "t"), ("h", "e"), ("Ġt", "he")], extraTokens: ["<think>", "</think>"]);
        var t = QwenTokenizer.Load(dir);
        Assert.Equal(256 + 3 + 14 + 2, t.VocabSize);
        Assert.Equal(258, t.Encode(" the").Single());
        Assert.Equal(256 + 3 + 12, t.TokenToId("<|image_pad|>"));
        Assert.Equal(t.TokenToId("<|im_end|>"), t.EosTokenId);
        Assert.Equal(t.TokenToId("<|endoftext|>"), t.PadTokenId);
        string s = "<|im_start|>user\n<think>1+1</think> the 数学<|im_end|>";
        Assert.Equal(s, t.Decode(t.Encode(s)));
        Assert.Equal("user\n<think>1+1</think> the 数学", t.Decode(t.Encode(s), skipSpecialTokens: true));
    }

    [Fact]
    public void RejectsUnsupportedTokenizerKindsWithTheField()
    {
        string dir = TestPaths.NewTempDir("tinytok-bad");
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), HandWrittenJson().Replace("\"type\":\"BPE\"", "\"type\":\"WordPiece\""));
        var e = Assert.Throws<InputException>(() => QwenTokenizer.Load(dir));
        Assert.Contains("model.type", e.Message);
        Assert.Throws<InputException>(() => QwenTokenizer.Load(Path.Combine(dir, "missing")));
    }
}
