// The model-layer CLI through CliApp.Run: `debug forward` reproduces the transformers references, `info` describes a
// folder, `debug synth-checkpoint` + `debug load-model` round-trip, and bad input gives `error:` with exit code 1.
using LmmR1.Cli;
using LmmR1.Cli.Commands;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

[Collection("Console")] // these tests redirect Console.Out / Console.Error
public class ModelCommandTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e);
        try { return (CliApp.Run(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void DebugForwardWritesTheReferenceOutputs(string name)
    {
        string dir = TestPaths.Fixture(name);
        string output = Path.Combine(TestPaths.NewTempDir("fwd"), "out.safetensors");
        var (code, stdout, stderr) = Run("debug", "forward", "--model", dir, "--inputs", Path.Combine(dir, "reference.safetensors"),
                                         "--output", output, "--max-new-tokens", "8");
        Assert.True(code == 0, stderr);
        Assert.Contains("wrote", stdout);
        using var scope = torch.NewDisposeScope();
        using var refs = SafetensorsFile.Open(Path.Combine(dir, "reference.safetensors"));
        using var outs = SafetensorsFile.Open(output);
        Assert.Equal(["full_logits", "generated", "logits", "position_ids", "rope_deltas"], outs.Entries.Keys.Order());
        foreach (var exact in new[] { "position_ids", "rope_deltas" })
            TensorAssert.Equal(refs.Load(exact), outs.Load(exact), exact);
        using (var r = new QwenReference(name))
        {
            var agree = TokenAssert.GreedyEqualExceptNearTies(TokenAssert.Rows(refs.Load("generated")), TokenAssert.Rows(outs.Load("generated")),
                QwenParityTests.TransformersMargins(r), "generated");
            Assert.True(agree.NearTies <= 1, $"{agree.NearTies} near-tie divergences from transformers");
        }
        var pad = refs.Load("attention_mask").eq(0).unsqueeze(-1); // parity at real tokens (see QwenReference.RealTokens)
        TensorAssert.Close(refs.Load("logits").masked_fill(pad, 0), outs.Load("logits").masked_fill(pad, 0), QwenParityTests.LogitTolerance, "logits");
        TensorAssert.Close(refs.Load("full_logits"), outs.Load("full_logits"), QwenParityTests.LogitTolerance, "full_logits");
    }

    [Fact]
    public void InfoDescribesTheFolderWithTokenNames()
    {
        string dir = TestPaths.NewTempDir("info");
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(TestPaths.Fixture("qwen25vl-tiny", f), Path.Combine(dir, f));
        File.Copy(TestPaths.Fixture("qwen-tokenizer", "tokenizer.json"), Path.Combine(dir, "tokenizer.json"));
        var (code, stdout, stderr) = Run("info", "--model", dir);
        Assert.True(code == 0, stderr);
        Assert.Contains("Qwen2_5_VLForConditionalGeneration", stdout);
        // 80,000 vision + 24,800 merger + 139,840 LM (= the fixture's tensor sizes summed by prefix), tied lm_head.
        Assert.Contains("total 244,640: vision 80,000, merger 24,800, language model 139,840, lm_head tied to embed_tokens", stdout);
        Assert.Contains("eos 151645 <|im_end|>", stdout);
        Assert.Contains("context length  4096", stdout);
    }

    [Fact]
    public void SynthCheckpointAndLoadModelRoundTrip()
    {
        string dir = TestPaths.NewTempDir("synth");
        var (code, stdout, stderr) = Run("debug", "synth-checkpoint", "--config", TestPaths.Fixture("qwen2vl-tiny"), "--dtype", "bfloat16", "--output", dir);
        Assert.True(code == 0, stderr);
        Assert.Contains("284,928 parameters", stdout);
        (code, stdout, stderr) = Run("debug", "load-model", "--model", dir, "--dtype", "bfloat16");
        Assert.True(code == 0, stderr);
        Assert.Contains("284,928 parameters", stdout);
        using var ck = SafetensorsCheckpoint.Open(dir);
        Assert.All(ck.Names, n => Assert.Equal(SafetensorsDType.BF16, ck.Entry(n).DType));
    }

    [Theory]
    [InlineData("--dtype", "float16", "--dtype")]
    [InlineData("--device", "tpu", "--device")]
    [InlineData("--model", "/nonexistent/model", "config.json")]
    public void BadInputPrintsErrorAndExitsWithOne(string option, string value, string expected)
    {
        string dir = TestPaths.Fixture("qwen2vl-tiny");
        var args = new Dictionary<string, string>
        {
            ["--model"] = dir, ["--inputs"] = Path.Combine(dir, "reference.safetensors"),
            ["--output"] = Path.Combine(TestPaths.NewTempDir("bad"), "o.safetensors"), [option] = value,
        };
        var (code, _, stderr) = Run(["debug", "forward", .. args.SelectMany(kv => new[] { kv.Key, kv.Value })]);
        Assert.Equal(1, code);
        Assert.StartsWith("error: ", stderr);
        Assert.Contains(expected, stderr);
        Assert.DoesNotContain("   at ", stderr); // no stack trace
    }
}
