// What a run leaves for people and other tools: Hugging Face exports (final and per checkpoint) that lmmr1 loads and
// that hold the files transformers needs, with the chat template and image-processor settings the run used; metric
// names as OpenRLHF's; samples.jsonl; TensorBoard event files that parse (framing, CRCs) and carry every scalar and
// the samples as text; PNG plots that are valid files and that `lmmr1 plot` redraws byte for byte.
using System.Text.Json;
using System.Text.RegularExpressions;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using LmmR1.Text;
using LmmR1.Training.Checkpointing;
using LmmR1.Training.Logging;
using TorchSharp;
using static LmmR1.Tests.Runs.RunSupport;

namespace LmmR1.Tests.Runs;

[Collection("Console")]
public class OutputTests
{
    /// <summary>QWEN_TEMPLATE as make_fixtures.py defines it (the string literals joined, escapes applied).</summary>
    static string FixtureTemplate()
    {
        string py = File.ReadAllText(TestPaths.Fixture("make_fixtures.py"));
        int start = py.IndexOf("QWEN_TEMPLATE = (", StringComparison.Ordinal);
        int end = py.IndexOf("\n)", start, StringComparison.Ordinal);
        var literals = Regex.Matches(py[start..end], "\"((?:[^\"\\\\]|\\\\.)*)\"").Select(m => m.Groups[1].Value);
        return string.Concat(literals).Replace("\\n", "\n").Replace("\\'", "'");
    }

    [Fact]
    public void ExportsLoadAndHoldTheFilesTransformersNeeds()
    {
        string run = Reference;
        string final = Path.Combine(run, "final"), hf = Path.Combine(run, "ckpt", "global_step4_hf");
        foreach (var dir in new[] { final, hf })
        {
            foreach (var f in HfExport.RequiredFiles.Append("model.safetensors"))
                Assert.True(File.Exists(Path.Combine(dir, f)), $"{dir}: {f}");
            using (var m = QwenVLModel.Load(dir, torch.ScalarType.Float32, torch.CPU))
                Assert.Equal(QwenFamily.Qwen25VL, m.Config.Family);
            Assert.Equal(274, QwenTokenizer.Load(dir).VocabSize);

            using var tmpl = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "chat_template.json")));
            Assert.Equal(FixtureTemplate(), tmpl.RootElement.GetProperty("chat_template").GetString());

            using var pre = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "preprocessor_config.json")));
            var p = pre.RootElement;
            Assert.Equal("Qwen2VLImageProcessor", p.GetProperty("image_processor_type").GetString());
            Assert.Equal("Qwen2_5_VLProcessor", p.GetProperty("processor_class").GetString());
            Assert.Equal(3136, p.GetProperty("min_pixels").GetInt64());          // the run's --processor_kwargs
            Assert.Equal(12544, p.GetProperty("max_pixels").GetInt64());
            Assert.Equal(3136, p.GetProperty("size").GetProperty("shortest_edge").GetInt64());
            Assert.Equal(12544, p.GetProperty("size").GetProperty("longest_edge").GetInt64());
            Assert.Equal(14, p.GetProperty("patch_size").GetInt32());
            Assert.Equal(2, p.GetProperty("merge_size").GetInt32());
            Assert.Equal(2, p.GetProperty("temporal_patch_size").GetInt32());
            Assert.Equal([0.48145466, 0.4578275, 0.40821073], p.GetProperty("image_mean").EnumerateArray().Select(x => x.GetDouble()));
            Assert.Equal([0.26862954, 0.26130258, 0.27577711], p.GetProperty("image_std").EnumerateArray().Select(x => x.GetDouble()));

            using var cfg = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "config.json")));
            Assert.Equal("qwen2_5_vl", cfg.RootElement.GetProperty("model_type").GetString());
            Assert.True(cfg.RootElement.TryGetProperty("vision_config", out _));
            Assert.Equal(File.ReadAllText(Path.Combine(Training.TinyRl.Model, "generation_config.json")),     // --pretrain's, kept
                         File.ReadAllText(Path.Combine(dir, "generation_config.json")));
            Assert.Empty(Directory.GetDirectories(Path.GetDirectoryName(dir)!, $".{Path.GetFileName(dir)}.tmp-*"));
        }
        // The final model is the last checkpoint's actor; the per-checkpoint export is that checkpoint's.
        AssertSameWeights(Path.Combine(run, "ckpt", "global_step4", "actor"), final);
        AssertSameWeights(Path.Combine(run, "ckpt", "global_step4", "actor"), hf);
        // --max_ckpt_num 2 keeps the newest two checkpoints and their exports.
        Assert.Equal(["global_step3", "global_step3_hf", "global_step4", "global_step4_hf"],
            Directory.GetDirectories(Path.Combine(run, "ckpt")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void MetricsUseOpenRlhfNamesAndSamplesAreSaved()
    {
        var rows = MetricsLog.Read(Path.Combine(Reference, "final", MetricsLog.FileName));
        var train = rows.Where(r => r.ContainsKey("train/reward")).ToList();
        Assert.Equal([1.0, 2.0, 3.0, 4.0], train.Select(r => r["train/global_step"]));
        foreach (var r in train)
            foreach (var key in new[] { "train/reward", "train/format_reward", "train/acc_reward", "train/policy_loss", "train/kl", "train/kl_coef",
                                        "train/response_length", "train/total_length", "train/return", "train/entropy", "train/clip_frac",
                                        "train/approx_kl", "train/grad_norm", "train/actor_lr", "train/critic_loss", "train/values",
                                        "train/critic_lr", "train/critic_grad_norm", "train/skipped_steps", "time/generate", "time/reward",
                                        "time/logprobs", "time/advantages", "time/update", "time/step" })
                Assert.True(r.ContainsKey(key) && double.IsFinite(r[key]), $"step {r["train/global_step"]}: {key}");
        var evals = rows.Where(r => r.ContainsKey("eval/default_pass1")).ToList();
        Assert.Equal([2.0, 4.0], evals.Select(r => r["train/global_step"]));

        var samples = File.ReadAllLines(Path.Combine(Reference, "final", MetricsLog.SamplesFileName)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal([1L, 1, 2, 2, 3, 3, 4, 4], samples.Select(s => s.GetProperty("step").GetInt64()));   // --log_samples 2
        var questions = File.ReadAllLines(Training.TinyRl.ExampleData).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("question").GetString()!).ToList();
        foreach (var s in samples)
        {
            foreach (var key in new[] { "prompt", "response", "label" }) Assert.Equal(JsonValueKind.String, s.GetProperty(key).ValueKind);
            string prompt = s.GetProperty("prompt").GetString()!;
            Assert.EndsWith("assistant\n", prompt);
            Assert.Contains(questions, q => prompt.Contains(q, StringComparison.Ordinal));
            Assert.True(s.GetProperty("response_length").GetInt32() is > 0 and <= 6);
            foreach (var key in new[] { "reward", "format_reward", "acc_reward" }) Assert.True(double.IsFinite(s.GetProperty(key).GetDouble()));
        }
    }

    [Fact]
    public void TheReadersCrc32CMatchesPublishedCheckValues()
    {
        Assert.Equal(0xE3069283u, Crc32C("123456789"u8));                          // the CRC catalogue's check value
        Assert.Equal(0x8A9136AAu, Crc32C(new byte[32]));                           // RFC 3720 B.4: 32 bytes of zeros
        Assert.Equal(0x62A8AB43u, Crc32C(Enumerable.Repeat((byte)0xFF, 32).ToArray()));   // 32 bytes of 0xFF
        Assert.Equal(0x46DD794Eu, Crc32C(Enumerable.Range(0, 32).Select(i => (byte)i).ToArray()));   // 0, 1, …, 31
        // The writer's (hardware CRC) framing agrees with it on arbitrary data.
        var data = Enumerable.Range(0, 1000).Select(i => (byte)(i * 31 + 7)).ToArray();
        Assert.Equal(MaskedCrc32C(data), TensorBoardWriter.MaskedCrc(data));
    }

    [Fact]
    public void TensorBoardEventFilesParseAndCarryEveryScalarAndTheSamples()
    {
        var files = Directory.GetFiles(Path.Combine(Reference, "tb"));
        Assert.Single(files);
        Assert.Matches(@"^events\.out\.tfevents\.\d{10}\.", Path.GetFileName(files[0]));
        var events = ReadEvents(files[0]);
        Assert.Equal("brain.Event:2", events[0].FileVersion);
        Assert.DoesNotContain(events, e => e.SessionStart);

        var rows = MetricsLog.Read(Path.Combine(Reference, "final", MetricsLog.FileName));
        var shown = VisibleScalars(Path.Combine(Reference, "tb"));
        foreach (var row in rows)
            foreach (var (key, v) in row.Where(kv => kv.Key != "train/global_step"))
                Assert.Equal((float)v, shown[key][(long)row["train/global_step"]]);
        Assert.Equal(4, shown["train/reward"].Count);
        Assert.Equal(2, shown["eval/default_pass1"].Count);
        var texts = events.Where(e => e.Texts.ContainsKey("train/generated_samples")).ToList();
        Assert.Equal([1L, 2, 3, 4], texts.Select(e => e.Step));
        Assert.Contains("| # | prompt | response |", texts[0].Texts["train/generated_samples"]);
    }

    [Fact]
    public void PlotsAreValidPngsAndLmmr1PlotRedrawsThemIdentically()
    {
        string plots = Path.Combine(Reference, "final", RunPlots.FolderName);
        var names = Directory.GetFiles(plots).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["clip_frac.png", "critic.png", "entropy.png", "eval_pass1.png", "grad_norm.png", "kl.png", "lr.png", "policy_loss.png",
                      "response_length.png", "reward.png", "time.png"], names);
        foreach (var n in names) Assert.Equal((900, 500), CheckPng(Path.Combine(plots, n!)));

        string again = TestPaths.NewTempDir("replot");
        var (code, stdout, stderr) = RunInProcess("plot", Path.Combine(Reference, "final"), "--out", again);
        Assert.True(code == 0, stderr);
        Assert.Contains("11 plot(s)", stdout);
        foreach (var n in names)
            Assert.True(File.ReadAllBytes(Path.Combine(plots, n!)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(again, n!))), n);

        (code, _, stderr) = RunInProcess("plot", again);
        Assert.Equal(1, code);
        Assert.Contains("no metrics.jsonl", stderr);
    }
}
