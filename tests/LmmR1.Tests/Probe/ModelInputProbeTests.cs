// Issue 11 item 3 (a, e): a config.json that disagrees with the weights or is absurd, a safetensors header with bytes
// that are not UTF-8, self-referencing symlinks as config.json / model.safetensors, and an overflowing
// --generate_max_len all end in `error:` naming the file, field or flag (exit 1), before any model is allocated.
using System.Text;
using System.Text.Json.Nodes;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using LmmR1.Tests.Training;
using LmmR1.Training.Ppo;
using TorchSharp;

namespace LmmR1.Tests.Probe;

[Collection("Console")]
public class ModelInputProbeTests
{
    /// <summary>The tiny model folder with <paramref name="field"/> of config.json set to <paramref name="value"/>
    /// (inside text_config when the file has one, as the loader reads it).</summary>
    internal static string TinyWith(string field, JsonNode? value)
    {
        string dir = TinyRl.WriteModel(TestPaths.NewTempDir("probe-model"));
        string path = Path.Combine(dir, QwenVLConfig.FileName);
        var cfg = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        var target = cfg["text_config"] is JsonObject t && t.ContainsKey(field) ? t : cfg;
        target[field] = value;
        File.WriteAllText(path, cfg.ToJsonString());
        return dir;
    }

    internal static string[] DryRun(string pretrain, params string[] extra) =>
    [
        "train", "--pretrain", pretrain, "--prompt_data", TinyRl.ExampleData, "--input_key", "message", "--label_key", "answer",
        "--rollout_batch_size", "2", "--n_samples_per_prompt", "2", "--train_batch_size", "4", "--micro_train_batch_size", "2",
        "--dry_run", .. extra.Contains("--save_path") ? [] : new[] { "--save_path", Path.Combine(TestPaths.NewTempDir("probe-out"), "out") }, .. extra,
    ];

    internal static void AssertError(int code, string stderr, params string[] mentions)
    {
        Assert.True(code == 1, $"exit {code}\n{stderr}");
        var last = stderr.Split('\n').Where(l => l.Trim().Length > 0).ToList();
        Assert.Contains(last, l => l.StartsWith("error:", StringComparison.Ordinal));
        Assert.DoesNotContain("   at ", stderr);               // no .NET stack trace
        foreach (var m in mentions) Assert.Contains(m, stderr);
    }

    [Theory]
    [InlineData("num_hidden_layers")]
    [InlineData("vocab_size")]
    public void AnAbsurdConfigFieldIsAnErrorNamingConfigJsonAndTheField(string field)
    {
        string dir = TinyWith(field, JsonValue.Create(1e9));
        long before = Environment.WorkingSet;
        var (code, _, err) = TrainCommandTests.Run(DryRun(dir));
        AssertError(code, err, "config.json", field);
        Assert.True(Environment.WorkingSet - before < 1L << 30, "a GB was allocated");
        var e = Assert.Throws<InputException>(() => QwenVLModel.Load(dir, torch.ScalarType.Float32, torch.CPU));
        Assert.Contains(field, e.Message);
    }

    [Theory]
    [InlineData("num_hidden_layers", 3, "2 decoder layer(s)")]
    [InlineData("vocab_size", 300, "model.embed_tokens.weight is [274")]
    [InlineData("intermediate_size", 256, "gate_proj.weight has 128 rows")]
    public void AConfigThatDisagreesWithTheWeightsFailsBeforeTheModelIsBuilt(string field, int value, string evidence)
    {
        string dir = TinyWith(field, JsonValue.Create(value));
        var e = Assert.Throws<InputException>(() => QwenVLModel.Load(dir, torch.ScalarType.Float32, torch.CPU));
        Assert.Contains(Path.Combine(dir, "config.json"), e.Message);
        Assert.Contains(field, e.Message);
        Assert.Contains(evidence, e.Message);
        // The dry run reads the headers too (no weights), so it reports the same.
        var (code, _, err) = TrainCommandTests.Run(DryRun(dir));
        AssertError(code, err, field, evidence);
    }

    [Fact]
    public void ASafetensorsHeaderWithBytesThatAreNotUtf8IsAnError()
    {
        string dir = TinyRl.WriteModel(TestPaths.NewTempDir("probe-utf8"));
        string file = Path.Combine(dir, SafetensorsCheckpoint.SingleFileName);
        byte[] bytes = File.ReadAllBytes(file);
        long n = BitConverter.ToInt64(bytes, 0);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        int at = header.IndexOf("model.norm.weight", StringComparison.Ordinal);
        Assert.True(at > 0);
        bytes[8 + Encoding.UTF8.GetByteCount(header[..at]) + 2] = 0xFF;   // "mo\xFFel.norm.weight": same length
        File.WriteAllBytes(file, bytes);

        var e = Assert.Throws<InputException>(() => SafetensorsFile.Open(file));
        Assert.Contains("not valid UTF-8", e.Message);
        Assert.Contains("0xFF", e.Message);
        Assert.Contains($"byte offset {8 + Encoding.UTF8.GetByteCount(header[..at]) + 2}", e.Message);
        var (code, _, err) = TrainCommandTests.Run(DryRun(dir));
        AssertError(code, err, file, "not valid UTF-8");
    }

    [Theory]
    [InlineData("config.json")]
    [InlineData("model.safetensors")]
    public void ASelfReferencingSymlinkIsAnErrorNamingIt(string name)
    {
        string dir = TinyRl.WriteModel(TestPaths.NewTempDir("probe-loop"));
        string path = Path.Combine(dir, name);
        File.Delete(path);
        File.CreateSymbolicLink(path, path);
        var (code, _, err) = TrainCommandTests.Run(DryRun(dir));
        AssertError(code, err, name);
        var e = Assert.ThrowsAny<InputException>(() => QwenVLModel.Load(dir, torch.ScalarType.Float32, torch.CPU));
        Assert.Contains(name, e.Message);
    }

    [Fact]
    public void AHugeGenerateMaxLenIsBoundedAndTheEstimateCannotOverflow()
    {
        var (code, _, err) = TrainCommandTests.Run(DryRun(TinyRl.Model, "--generate_max_len", "2147483647"));
        AssertError(code, err, "--generate_max_len", PpoConfig.MaxSequenceTokens.ToString());
        (code, _, err) = TrainCommandTests.Run(DryRun(TinyRl.Model, "--prompt_max_len", "2147483647"));
        AssertError(code, err, "--prompt_max_len");

        // At the bounds the estimate is the sum of positive parts: the KV cache grows with prompt + generate length.
        var c = TinyRl.Config(TestPaths.NewTempDir("probe-est"));
        var cfg = QwenVLConfig.Load(TinyRl.Model);
        var small = MemoryEstimate.Of(c, cfg, null);
        var big = MemoryEstimate.Of(c with
        {
            Data = c.Data with { PromptMaxLen = PpoConfig.MaxSequenceTokens },
            Rollout = c.Rollout with { GenerateMaxLen = PpoConfig.MaxSequenceTokens },
        }, cfg, null);
        Assert.All(big.Parts, p => Assert.True(p.Bytes >= 0 && double.IsFinite(p.Bytes), p.Part));
        Assert.True(big.Total > small.Total);

        // generate / eval bound the same flag.
        var e = Assert.Throws<InputException>(() => new LmmR1.Generation.SamplingParams { MaxNewTokens = int.MaxValue }.Validate(274));
        Assert.Contains("--generate_max_len", e.Message);
    }
}
