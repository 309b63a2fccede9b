// --reward_pretrain / --reward_weights through `lmmr1 train --dry_run` (the plan's reward line, the memory estimate's
// reward-model parts, `error:` naming the flag for bad values and checkpoints) and a reward model behind the
// /get_reward protocol (`lmmr1 reward serve --reward_pretrain`): the served rewards are the direct forward's.
using System.Net;
using System.Text;
using System.Text.Json;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Rewards.Server;
using LmmR1.Tests.Support;
using LmmR1.Text;
using LmmR1.Training.RewardModels;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

[Collection("Console")]
public class RewardModelCliTests
{
    static string[] DryRun(params string[] extra) =>
    [
        "train", "--pretrain", TinyRl.Model, "--prompt_data", TinyRl.ExampleData, "--input_key", "message", "--label_key", "answer",
        "--rollout_batch_size", "2", "--n_samples_per_prompt", "2", "--train_batch_size", "4", "--micro_train_batch_size", "2",
        "--advantage_estimator", "reinforce_baseline",
        "--save_path", Path.Combine(TestPaths.NewTempDir("rm-cli"), "out"), "--dry_run", .. extra,
    ];

    static readonly Lazy<(string Dir, string BaseDir, float[] Head)> Rm = new(() => RewardModelFolders.Tiny("rm-cli-model", 21));

    static double TotalGb(string stdout) =>
        double.Parse(stdout.Split('\n').Single(l => l.TrimStart().StartsWith("total", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1],
            System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void DryRunShowsTheWeightedSumAndCountsTheRewardModelsInMemory()
    {
        var withMean = RewardModelFolders.Tiny("rm-cli-mean", 22, cfg => { cfg["mean"] = 1.0; cfg["std"] = 2.0; });
        var (code, stdout, stderr) = TrainCommandTests.Run(DryRun("--reward_pretrain", $"{Rm.Value.Dir},{withMean.Dir}", "--reward_weights", "1,0.5,2", "--normalize_reward"));
        Assert.True(code == 0, stderr);
        Assert.Contains($"  reward                  1·RM({Rm.Value.Dir}) + 0.5·RM({withMean.Dir}) + 2·rule reward; reward-model scores normalised", stdout);
        Assert.Contains("reward model weights (2, frozen, no lm_head)", stdout);
        Assert.Contains("reward model forward (no grad, micro-batch 8", stdout);
        // Only the model without mean/std in its config.json gets the note.
        Assert.Contains($"note: --normalize_reward: {Rm.Value.Dir}'s config.json has no mean/std", stderr);
        Assert.DoesNotContain($"{withMean.Dir}'s config.json has no mean/std", stderr);
        Assert.DoesNotContain("changes nothing for rule-based", stderr);
        Assert.DoesNotContain("differs from the policy's", stderr);   // the same byte-level tokenizer

        // Another tokenizer.json in the reward model's folder: a note (its ids are the policy's).
        var other = RewardModelFolders.Tiny("rm-cli-tok", 23);
        File.AppendAllText(Path.Combine(other.Dir, "tokenizer.json"), "\n");
        var (codeT, _, errT) = TrainCommandTests.Run(DryRun("--reward_pretrain", other.Dir));
        Assert.True(codeT == 0, errT);
        Assert.Contains($"note: {Path.Combine(other.Dir, "tokenizer.json")} differs from the policy's", errT);

        var (code0, without, err0) = TrainCommandTests.Run(DryRun());
        Assert.True(code0 == 0, err0);
        Assert.DoesNotContain("reward model", without);
        // Two fp32 copies of a 64-wide, 2-layer model add weight bytes: the total grows.
        Assert.True(TotalGb(stdout) > TotalGb(without));
    }

    [Fact]
    public void BadRewardFlagsAndCheckpointsFailNamingTheFlag()
    {
        string rm = Rm.Value.Dir;
        // A transformers-made reward model whose image token differs from the policy's (the prompts have images).
        string fixture = TestPaths.Fixture("qwen2vl-tiny");
        using var head = RewardModelFolders.RandomHead(64, 3);
        string otherTokens = RewardModelFolders.Write(fixture, TestPaths.NewTempDir("rm-cli-tokens"), new Dictionary<string, Tensor> { ["score.weight"] = head });
        (string[] Args, string Flag, string Says)[] cases =
        [
            (["--reward_weights", "1"], "--reward_weights", "needs --reward_pretrain"),
            (["--reward_pretrain", rm, "--reward_weights", "1,2,3"], "--reward_weights", "expected 1 weight(s), one per --reward_pretrain model, or 2"),
            (["--reward_pretrain", rm, "--reward_weights", "1,x"], "--reward_weights", "expected a comma list of numbers, got 'x'"),
            (["--reward_pretrain", rm + ","], "--reward_pretrain", "empty entry"),
            (["--reward_pretrain", "/nonexistent/rm"], "--reward_pretrain", "is not a folder"),
            (["--reward_pretrain", Rm.Value.BaseDir], "--reward_pretrain", "no 'score.weight' tensor: not a reward model"),
            (["--reward_pretrain", otherTokens], "--reward_pretrain", "image_token_id 1000 differs from the policy's"),
        ];
        foreach (var (args, flag, says) in cases)
        {
            var (code, _, stderr) = TrainCommandTests.Run(DryRun(args));
            var last = stderr.Split('\n').Last(l => l.Length > 0);
            Assert.True(code == 1, $"{string.Join(' ', args)}: exit {code}, {stderr}");
            Assert.StartsWith("error:", last);
            Assert.Contains(flag, last);
            Assert.Contains(says, last);
            Assert.DoesNotContain("   at ", stderr);   // no stack trace
        }
    }

    [Fact]
    public void ResumeRefusesAnotherRewardModel()
    {
        string root = TestPaths.NewTempDir("rm-resume");
        string ckpt = Path.Combine(root, "ckpt");
        var other = RewardModelFolders.Tiny("rm-resume-other", 24);
        string[] Args(int steps, string rms, params string[] extra) =>
        [
            "train", "--pretrain", TinyRl.Model, "--prompt_data", TinyRl.ExampleData, "--input_key", "message", "--label_key", "answer",
            "--processor_kwargs", TinyRl.SmallImages, "--advantage_estimator", "reinforce_baseline",
            "--rollout_batch_size", "2", "--n_samples_per_prompt", "2", "--micro_rollout_batch_size", "4", "--train_batch_size", "4",
            "--micro_train_batch_size", "2", "--generate_max_len", "4", "--max_global_steps", steps.ToString(), "--save_steps", "1",
            "--ckpt_path", ckpt, "--save_path", Path.Combine(root, "final"), "--reward_pretrain", rms, .. extra,
        ];
        var (code, _, stderr) = TrainCommandTests.Run(Args(1, Rm.Value.Dir));
        Assert.True(code == 0, stderr);

        // Another reward model, or one more: refused before anything runs, naming the flag and the folder.
        (code, _, stderr) = TrainCommandTests.Run(Args(2, other.Dir, "--load_checkpoint"));
        Assert.Equal(1, code);
        Assert.Contains("error: field '--reward_pretrain'", stderr);
        Assert.Contains($"'{other.Dir}' (reward model 1) is not the reward model the checkpoint's run scored with", stderr);
        Assert.DoesNotContain("   at ", stderr);
        (code, _, stderr) = TrainCommandTests.Run(Args(2, $"{Rm.Value.Dir},{other.Dir}", "--load_checkpoint"));
        Assert.Equal(1, code);
        Assert.Contains("scored with 1 reward model(s) and this run names 2", stderr);

        // The same reward model resumes; changed weights only get a note.
        (code, var stdout, stderr) = TrainCommandTests.Run(Args(2, Rm.Value.Dir, "--load_checkpoint", "--reward_weights", "2"));
        Assert.True(code == 0, stderr);
        Assert.Contains("resumed from", stdout);
        Assert.Contains("note: --reward_weights changed from null to [2]", stderr);
    }

    [Fact]
    public async Task TheServerServesTheModelsScores()
    {
        var (dir, baseDir, head) = Rm.Value;
        using var rm = SequenceRewardModel.Load(dir, ScalarType.Float32, torch.CPU);
        var tokenizer = QwenTokenizer.Load(dir);
        string[] queries =
        [
            "<|im_start|>user\nhow many?<|im_end|>\n<|im_start|>assistant\n<think>two</think><answer>2</answer><|im_end|>",
            "abc",
            "<|im_start|>assistant\nA longer answer, to pad the others on the left.<|im_end|>",
        ];
        await using var server = RewardServer.Create(new RewardServerOptions { Port = 0 }, new ModelRewardScorer(rm, tokenizer, maxLen: 2048, batchSize: 2));
        await server.StartAsync();
        using var http = new HttpClient();
        var body = JsonSerializer.Serialize(new Dictionary<string, string[]> { ["query"] = queries, ["prompts"] = ["p", "p", "p"], ["labels"] = ["", "", ""] });
        var resp = await http.PostAsync(server.Addresses.Single() + "/get_reward", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, resp.StatusCode);
        using var doc = JsonDocument.Parse(await resp.Content.ReadAsStringAsync());
        var rewards = doc.RootElement.GetProperty("rewards").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        Assert.All(doc.RootElement.GetProperty("acc_rewards").EnumerateArray(), e => Assert.Equal(0.0, e.GetDouble()));

        using var causal = QwenVLModel.Load(baseDir, ScalarType.Float32, torch.CPU);
        for (int i = 0; i < queries.Length; i++)
        {
            long[] ids = [.. tokenizer.Encode(queries[i]).Select(t => (long)t)];
            double expected = RewardModelFolders.DirectScore(causal, ids, head);
            Assert.True(Math.Abs(rewards[i] - expected) <= Numerics.Fp32, $"query {i}: served {rewards[i]}, direct {expected}");
        }

        // --max_len keeps the first tokens (serve_rm truncates on the right).
        var truncating = new ModelRewardScorer(rm, tokenizer, maxLen: 3);
        var cut = (await truncating.ScoreAsync([queries[0]], ["p"], [""])).Single().Reward;
        long[] first3 = [.. tokenizer.Encode(queries[0]).Take(3).Select(t => (long)t)];
        Assert.True(Math.Abs(cut - RewardModelFolders.DirectScore(causal, first3, head)) <= Numerics.Fp32);
    }

    [Fact]
    public void ServingACheckpointWithoutAHeadFailsBeforeListening()
    {
        var (code, _, stderr) = TrainCommandTests.Run(["reward", "serve", "--port", "0", "--reward_pretrain", Rm.Value.BaseDir]);
        Assert.Equal(1, code);
        Assert.StartsWith("error:", stderr.Trim());
        Assert.Contains("no 'score.weight' tensor", stderr);
        Assert.DoesNotContain("listening", stderr);
    }
}
