// `lmmr1 generate` / `lmmr1 eval` end to end on examples/data/test_message.jsonl (two image prompts, one text prompt)
// with a tiny random model whose vocabulary is a tiny byte-level tokenizer: rows, reproducibility across chunking and
// micro-batching, the reward requests (query = prompt + response with special tokens, raw prompt, label) through a
// reward server, and a summary that matches the per-row rewards.
using System.Text.Json;
using LmmR1.Cli;
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Rewards;
using LmmR1.Rewards.Server;
using LmmR1.Tests.Support;
using LmmR1.Text;

namespace LmmR1.Tests.Generation;

/// <summary>A tiny demo model written once for the class.</summary>
public sealed class TinyModelFolder
{
    public string Dir { get; } = TestPaths.NewTempDir("tiny-model");
    public TinyModelFolder() => TinyDemoModel.Write(Dir, LmmR1.Models.Qwen.QwenFamily.Qwen25VL, seed: 3);
}

[Collection("Console")] // redirects Console.Out / Console.Error
public class GenerateCommandTests(TinyModelFolder model) : IClassFixture<TinyModelFolder>
{
    static readonly string Example = Path.Combine(TestPaths.RepoRoot, "examples", "data", "test_message.jsonl");

    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e);
        try { return (CliApp.Run(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }

    string[] Common(string output, params string[] extra) =>
    [
        "--pretrain", model.Dir, "--prompt_data", Example, "--input_key", "message", "--label_key", "answer",
        "--generate_max_len", "24", "--device", "cpu", "--output", output, .. extra,
    ];

    static List<JsonElement> Rows(string path) =>
        File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    [Fact]
    public void GenerateWritesOneRowPerSampleAndIgnoresChunking()
    {
        string dir = TestPaths.NewTempDir("gen");
        string a = Path.Combine(dir, "a.jsonl"), b = Path.Combine(dir, "b.jsonl");
        var (code, stdout, stderr) = Run(["generate", .. Common(a, "--n_samples_per_prompt", "3", "--temperature", "0.9", "--top_p", "0.95")]);
        Assert.True(code == 0, stderr);
        Assert.Contains("wrote 9 samples of 3 prompts", stdout);
        Assert.Contains("generate: prompts 3/3", stdout);                      // plain progress lines (stdout redirected)
        var rows = Rows(a);
        Assert.Equal(9, rows.Count);
        for (int i = 0; i < 9; i++)
        {
            var r = rows[i];
            Assert.Equal(i / 3, r.GetProperty("index").GetInt32());
            Assert.Equal($"test_message.jsonl:{i / 3 + 1}", r.GetProperty("prompt_id").GetString());
            Assert.Equal(i % 3, r.GetProperty("sample").GetInt32());
            Assert.Equal("default", r.GetProperty("datasource").GetString());
            Assert.StartsWith("$\\boxed{", r.GetProperty("label").GetString());
            int n = r.GetProperty("response_tokens").GetInt32();
            string finish = r.GetProperty("finish_reason").GetString()!;
            Assert.InRange(n, 1, 24);
            Assert.True(finish == "length" ? n == 24 : r.TryGetProperty("stop_token_id", out _), $"row {i}: {finish} after {n} tokens");
        }
        // Prompts 0 and 1 carry an image (its expanded pad tokens add to the count), prompt 2 is text only.
        Assert.True(rows[0].GetProperty("prompt_tokens").GetInt32() > rows[6].GetProperty("prompt_tokens").GetInt32());
        Assert.True(rows[3].GetProperty("prompt_tokens").GetInt32() > rows[6].GetProperty("prompt_tokens").GetInt32());

        // One prompt per chunk and per micro-batch, samples split over micro-batches: the same file.
        (code, _, stderr) = Run(["generate", .. Common(b, "--n_samples_per_prompt", "3", "--temperature", "0.9", "--top_p", "0.95",
                                  "--chunk_prompts", "1", "--micro_rollout_batch_size", "1", "--max_rows_per_batch", "2", "--check_every", "1")]);
        Assert.True(code == 0, stderr);
        Assert.Equal(File.ReadAllText(a), File.ReadAllText(b));
    }

    /// <summary>Records what the server receives; "correct" iff the query has an even length (any fixed rule will do).</summary>
    sealed class ScriptedReward : IRewardModel
    {
        public readonly List<(string Query, string Prompt, string Label)> Seen = [];
        public Task<IReadOnlyList<RewardResult>> ScoreAsync(IReadOnlyList<string> queries, IReadOnlyList<string> prompts,
                                                            IReadOnlyList<string> labels, CancellationToken ct = default)
        {
            lock (Seen) for (int i = 0; i < queries.Count; i++) Seen.Add((queries[i], prompts[i], labels[i]));
            return Task.FromResult<IReadOnlyList<RewardResult>>(queries.Select(q => q.Length % 2 == 0
                ? new RewardResult(1.0, 0.0, 1.0) : new RewardResult(0.25, 0.25, 0.0)).ToList());
        }
    }

    [Fact]
    public async Task EvalSendsLmmR1RequestsAndSummarisesThem()
    {
        var scripted = new ScriptedReward();
        await using var server = RewardServer.Create(new RewardServerOptions { Port = 0 }, scripted);
        await server.StartAsync();
        string dir = TestPaths.NewTempDir("eval");
        string output = Path.Combine(dir, "eval.jsonl");
        var (code, stdout, stderr) = Run(["eval", .. Common(output, "--n_samples_per_prompt", "4", "--remote_rm_url", server.Addresses.Single() + "/get_reward")]);
        Assert.True(code == 0, stderr);
        var rows = Rows(output);
        Assert.Equal(12, rows.Count);
        Assert.Equal(12, scripted.Seen.Count);

        // The requests: query = the processor's prompt ids + the response ids, decoded with special tokens; the raw
        // message field; the answer.
        var tok = QwenTokenizer.Load(model.Dir);
        var ds = PromptDataset.Load(new PromptDataOptions { PromptData = Example, InputKey = "message", LabelKey = "answer" });
        var processor = new QwenVLProcessor(tok);
        for (int i = 0; i < 12; i++)
        {
            var sample = ds[i / 4];
            using var processed = processor.Process(sample);
            var (query, prompt, label) = scripted.Seen[i];
            string expectedPrefix = tok.Decode(processed.InputIds.Select(x => (int)x));
            Assert.StartsWith("<|im_start|>system\n", expectedPrefix);
            if (sample.Images.Count > 0) Assert.Contains("<|vision_start|><|image_pad|><|image_pad|>", expectedPrefix);
            else Assert.DoesNotContain("<|image_pad|>", expectedPrefix);
            string stop = rows[i].TryGetProperty("stop_token_id", out var st) ? tok.Decode([st.GetInt32()]) : "";
            Assert.Equal(expectedPrefix + rows[i].GetProperty("response").GetString() + stop, query);
            Assert.Equal(sample.Prompt, prompt);
            Assert.Equal(sample.Label, label);
            Assert.Equal(query.Length % 2 == 0 ? 1.0 : 0.25, rows[i].GetProperty("reward").GetDouble());
        }

        // Summary: pass@1 = share of correct samples; pass@4 = share of prompts with any correct sample.
        var correct = scripted.Seen.Select(s => s.Query.Length % 2 == 0).ToList();
        using var summary = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "eval.summary.json")));
        var all = summary.RootElement.GetProperty("all");
        Assert.Equal(correct.Average(c => c ? 1.0 : 0.0), all.GetProperty("pass1").GetDouble(), 12);
        Assert.Equal(Enumerable.Range(0, 3).Average(p => correct.Skip(4 * p).Take(4).Any(c => c) ? 1.0 : 0.0), all.GetProperty("pass_k").GetDouble(), 12);
        Assert.Equal(rows.Average(r => r.GetProperty("reward").GetDouble()), all.GetProperty("mean_reward").GetDouble(), 12);
        Assert.Equal(rows.Average(r => r.GetProperty("response_tokens").GetDouble()), all.GetProperty("mean_response_tokens").GetDouble(), 12);
        Assert.Equal(4, summary.RootElement.GetProperty("datasources").GetProperty("default").GetProperty("k").GetInt32());
        Assert.Contains("pass@4", stdout);
    }

    [Fact]
    public void EvalWithTheBuiltInRewardWritesRewardsAndASummary()
    {
        string dir = TestPaths.NewTempDir("eval-rule");
        string output = Path.Combine(dir, "e.jsonl");
        string summaryPath = Path.Combine(dir, "s.json");
        var (code, stdout, stderr) = Run(["eval", .. Common(output, "--n_samples_per_prompt", "2", "--output_summary", summaryPath)]);
        Assert.True(code == 0, stderr);
        var rows = Rows(output);
        Assert.Equal(6, rows.Count);
        // Random bytes are neither well formatted nor correct: every reward part is 0.
        Assert.All(rows, r => Assert.Equal(0.0, r.GetProperty("reward").GetDouble()));
        using var summary = JsonDocument.Parse(File.ReadAllText(summaryPath));
        Assert.Equal(0.0, summary.RootElement.GetProperty("all").GetProperty("pass1").GetDouble());
        Assert.Equal(2, summary.RootElement.GetProperty("n_samples_per_prompt").GetInt32());
        Assert.Contains("default", stdout);
    }

    [Fact]
    public void BadInputsGiveErrors()
    {
        string dir = TestPaths.NewTempDir("gen-bad");
        var (code, _, stderr) = Run(["eval", "--pretrain", model.Dir, "--prompt_data", Example, "--input_key", "message", "--device", "cpu",
                                     "--output", Path.Combine(dir, "x.jsonl")]);
        Assert.Equal(1, code);
        Assert.Contains("error: --label_key", stderr);

        // The real Qwen tokenizer (151,665 ids) with a model of 1,024: refused before generating.
        string mismatched = TestPaths.NewTempDir("mismatch");
        foreach (var f in new[] { "config.json", "generation_config.json", "model.safetensors" })
            File.Copy(TestPaths.Fixture("qwen2vl-tiny", f), Path.Combine(mismatched, f));
        File.Copy(TestPaths.Fixture("qwen-tokenizer", "tokenizer.json"), Path.Combine(mismatched, "tokenizer.json"));
        (code, _, stderr) = Run(["generate", "--pretrain", mismatched, "--prompt_data", Example, "--input_key", "message", "--device", "cpu",
                                 "--output", Path.Combine(dir, "y.jsonl")]);
        Assert.Equal(1, code);
        Assert.Contains("vocabulary", stderr);

        (code, _, stderr) = Run(["generate", .. Common(Path.Combine(dir, "z.jsonl"), "--top_p", "0")]);
        Assert.Equal(1, code);
        Assert.Contains("top_p", stderr);
    }
}
