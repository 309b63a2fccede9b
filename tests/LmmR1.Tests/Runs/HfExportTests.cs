// generation_config.json of an export: kept as --pretrain's when it has the token ids; otherwise the missing ids come
// from the tokenizer as Qwen's files set them (eos [<|im_end|>, <|endoftext|>], bos and pad <|endoftext|>).
using System.Text.Json.Nodes;
using LmmR1.Generation;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using LmmR1.Text;
using LmmR1.Training.Checkpointing;
using LmmR1.Vision;
using TorchSharp;

namespace LmmR1.Tests.Runs;

public class HfExportTests
{
    /// <summary>Exports --pretrain's model and returns the export's generation_config.json (checking lmmr1 reads its eos ids).</summary>
    static JsonObject ExportGenerationConfig(string pretrain)
    {
        string dir = Path.Combine(TestPaths.NewTempDir("export"), "hf");
        using (var m = QwenVLModel.Load(pretrain, torch.ScalarType.Float32, torch.CPU))
            HfExport.WriteAtomic(m, dir, pretrain, new ImageProcessorOptions());
        var g = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, QwenVLConfig.GenerationFileName)))!.AsObject();
        var eos = g["eos_token_id"] is JsonArray a ? a.Select(x => x!.GetValue<long>()).ToArray() : [g["eos_token_id"]!.GetValue<long>()];
        Assert.Equal(eos, QwenVLConfig.Load(dir).Tokens.EosTokenIds);
        return g;
    }

    static string TinyModelWithout(params string[] keys)
    {
        string dir = TestPaths.NewTempDir("no-gen-config");
        TinyDemoModel.Write(dir, QwenFamily.Qwen25VL);
        File.Delete(Path.Combine(dir, QwenVLConfig.GenerationFileName));
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, QwenVLConfig.FileName)))!.AsObject();
        foreach (var k in keys) cfg.Remove(k);
        File.WriteAllText(Path.Combine(dir, QwenVLConfig.FileName), cfg.ToJsonString());
        var tokens = QwenVLConfig.Load(dir).Tokens;
        if (keys.Contains("eos_token_id")) Assert.Empty(tokens.EosTokenIds);
        if (keys.Contains("bos_token_id")) Assert.Null(tokens.BosTokenId);
        if (keys.Contains("pad_token_id")) Assert.Null(tokens.PadTokenId);
        return dir;
    }

    [Fact]
    public void MissingTokenIdsComeFromTheTokenizerAsInQwensFiles()
    {
        string pretrain = TinyModelWithout("eos_token_id", "bos_token_id", "pad_token_id");
        var tok = QwenTokenizer.Load(pretrain);
        int imEnd = tok.TokenToId("<|im_end|>"), endOfText = tok.TokenToId("<|endoftext|>");
        Assert.NotEqual(imEnd, endOfText);
        var g = ExportGenerationConfig(pretrain);
        Assert.Equal([imEnd, endOfText], g["eos_token_id"]!.AsArray().Select(x => x!.GetValue<int>()));
        Assert.Equal(endOfText, g["bos_token_id"]!.GetValue<int>());
        Assert.Equal(endOfText, g["pad_token_id"]!.GetValue<int>());
    }

    [Fact]
    public void IdsThePretrainedFolderHasAreKept()
    {
        string pretrain = TinyModelWithout();
        File.WriteAllText(Path.Combine(pretrain, QwenVLConfig.GenerationFileName), """{"eos_token_id": 7, "temperature": 0.1}""");
        var g = ExportGenerationConfig(pretrain);
        Assert.Equal(7, g["eos_token_id"]!.GetValue<int>());
        Assert.Equal(0.1, g["temperature"]!.GetValue<double>());
        var tok = QwenTokenizer.Load(pretrain);
        Assert.Equal(tok.TokenToId("<|endoftext|>"), g["pad_token_id"]!.GetValue<int>());
    }
}
