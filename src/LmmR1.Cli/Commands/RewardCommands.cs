// `lmmr1 reward …`: verify JSONL answer pairs, score one LMM-R1 response, or serve rewards over HTTP in LMM-R1's
// protocol (so OpenRLHF's --remote_rm_url can use it).
using System.CommandLine;
using System.Globalization;
using LmmR1.Infrastructure;
using LmmR1.Rewards;
using LmmR1.Rewards.Server;
using LmmR1.Text;
using LmmR1.Training.RewardModels;

namespace LmmR1.Cli.Commands;

public static class RewardCommands
{
    public const string ApiKeyEnvironmentVariable = "LMMR1_REWARD_API_KEY";

    public static Command Create()
    {
        var reward = new Command("reward", "Verifiable rewards: Math-Verify-style answer checking and the LMM-R1 rule reward");
        reward.Subcommands.Add(VerifyCommand());
        reward.Subcommands.Add(ScoreCommand());
        reward.Subcommands.Add(ServeCommand());
        return reward;
    }

    // ---------------------------------------------------------------- verify
    private static Command VerifyCommand()
    {
        var input = new Option<FileInfo?>("--input") { Description = "JSONL file to read instead of stdin" };
        var budget = new Option<int>("--time-budget-ms") { Description = "Time budget of one verification in ms", DefaultValueFactory = _ => 30 };
        var cmd = new Command("verify",
            "Read JSONL {\"gold\", \"pred\", \"config\"} lines (stdin or --input) and write {\"verified\", \"reason\", \"ms\"} lines. " +
            "config keys (all optional): extraction (latex|expr|latex+expr), latex_boxed_match_priority, float_rounding, " +
            "numeric_precision, strict, allow_set_relation_comp.");
        cmd.Options.Add(input);
        cmd.Options.Add(budget);
        cmd.SetAction(parse =>
        {
            var file = parse.GetValue(input);
            var budgetMs = parse.GetValue(budget);
            if (budgetMs <= 0) return Fail("--time-budget-ms must be positive");
            try
            {
                using var fileReader = file != null ? new StreamReader(file.FullName) : null;
                MathVerifier.WarmUp();
                try { return VerifyJsonl.Run(fileReader ?? Console.In, Console.Out, file?.FullName ?? "<stdin>", TimeSpan.FromMilliseconds(budgetMs)); }
                finally { Console.Out.Flush(); }
            }
            catch (RewardInputException e) { return Fail(e.Message); }
            catch (IOException e) { return Fail(e.Message); }
            catch (UnauthorizedAccessException e) { return Fail(e.Message); }
        });
        return cmd;
    }

    // ---------------------------------------------------------------- score
    private static Command ScoreCommand()
    {
        var label = new Option<string>("--label") { Description = "The label (answer), e.g. 60 or $\\frac{1}{2}$", Required = true };
        var response = new Option<string>("--response")
        {
            Description = "The model output: a full query with <|im_start|>assistant\\n, or just the response text", Required = true,
        };
        var (noFormat, formatWeight, accWeight, budget) = RewardOptionFlags();
        var cmd = new Command("score", "Score one response with the LMM-R1 rule reward and print reward, format_reward and acc_reward");
        cmd.Options.Add(label);
        cmd.Options.Add(response);
        cmd.Options.Add(noFormat);
        cmd.Options.Add(formatWeight);
        cmd.Options.Add(accWeight);
        cmd.Options.Add(budget);
        cmd.SetAction(parse =>
        {
            RewardOptions options;
            try { options = BuildRewardOptions(parse, noFormat, formatWeight, accWeight, budget); }
            catch (ArgumentException e) { return Fail(e.Message); }
            MathVerifier.WarmUp(1);
            var query = parse.GetValue(response)!;
            var lab = parse.GetValue(label)!;
            var result = LmmR1Reward.Score(query, lab, options);
            var text = LmmR1Reward.ExtractResponse(query, options);
            var why = LmmR1Reward.Accuracy(text, lab, options.TimeBudget);
            Console.WriteLine($"reward {Num(result.Reward)}");
            Console.WriteLine($"format_reward {Num(result.FormatReward)}");
            Console.WriteLine($"acc_reward {Num(result.AccuracyReward)}");
            Console.WriteLine($"accuracy: {why.Reason}");
            return 0;
        });
        return cmd;
    }

    private static string Num(double v) => v.ToString("0.0##", CultureInfo.InvariantCulture);

    private static (Option<bool>, Option<double>, Option<double>, Option<int>) RewardOptionFlags() =>
    (
        new Option<bool>("--disable-format-reward") { Description = "Give no format reward (LMM-R1's flag of the same name)" },
        new Option<double>("--format-weight") { Description = "Reward for <think>…</think><answer>…</answer>", DefaultValueFactory = _ => 0.5 },
        new Option<double>("--accuracy-weight") { Description = "Reward for a verified answer", DefaultValueFactory = _ => 1.0 },
        new Option<int>("--time-budget-ms") { Description = "Time budget of one verification in ms", DefaultValueFactory = _ => 30 }
    );

    private static RewardOptions BuildRewardOptions(ParseResult parse, Option<bool> noFormat, Option<double> formatWeight, Option<double> accWeight, Option<int> budget)
    {
        var ms = parse.GetValue(budget);
        if (ms <= 0) throw new ArgumentException("--time-budget-ms must be positive");
        var options = new RewardOptions
        {
            FormatReward = !parse.GetValue(noFormat),
            FormatWeight = parse.GetValue(formatWeight),
            AccuracyWeight = parse.GetValue(accWeight),
            TimeBudget = TimeSpan.FromMilliseconds(ms),
        };
        options.Validate();
        return options;
    }

    // ---------------------------------------------------------------- serve
    private static Command ServeCommand()
    {
        var host = new Option<string>("--host") { Description = "Address to bind (IP or localhost); 0.0.0.0 exposes it to the network", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port", DefaultValueFactory = _ => 5000 };
        var apiKey = new Option<string?>("--api_key") { Description = $"Require 'Authorization: Bearer <key>' (or set {ApiKeyEnvironmentVariable})" };
        var maxMb = new Option<int>("--max-request-mb") { Description = "Largest accepted request body in MiB (larger: 413)", DefaultValueFactory = _ => 64 };
        var threads = new Option<int?>("--threads") { Description = "Verification threads (default: one per core)" };
        var maxItems = new Option<int>("--max-items") { Description = "Most responses in one request (more: 413)", DefaultValueFactory = _ => new RewardServerOptions().MaxItems };
        var (noFormat, formatWeight, accWeight, budget) = RewardOptionFlags();
        // A reward model instead of the rule reward (OpenRLHF's serve_rm.py).
        var rewardPretrain = new Option<string?>("--reward_pretrain") { Description = "Serve this reward-model folder's scores instead of the rule reward (backbone + score head, tokenizer.json)" };
        var bf16 = new Option<bool>("--bf16") { Description = "Reward model in bf16 (default fp32)" };
        var device = new Option<string>("--device") { Description = "Reward model device: cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var normalize = new Option<bool>("--normalize_reward") { Description = "Normalise scores with the reward model's config.json mean/std" };
        var headPrefix = new Option<string>("--value_head_prefix") { Description = "Value head name (config.json's value_head_prefix wins, as upstream)", DefaultValueFactory = _ => "score" };
        var maxLen = new Option<int>("--max_len") { Description = "Tokens kept per query (truncated on the right, as serve_rm)", DefaultValueFactory = _ => 2048 };
        var batch = new Option<int>("--batch_size") { Description = "Queries per reward-model forward", DefaultValueFactory = _ => 8 };
        var cmd = new Command("serve", "Serve LMM-R1 rewards (or a reward model's with --reward_pretrain): POST /get_reward {\"query\",\"prompts\",\"labels\"} → {\"rewards\",\"format_rewards\",\"acc_rewards\"}");
        foreach (var o in new Option[] { host, port, apiKey, maxMb, maxItems, threads, noFormat, formatWeight, accWeight, budget,
                                         rewardPretrain, bf16, device, normalize, headPrefix, maxLen, batch }) cmd.Options.Add(o);
        cmd.SetAction(async (parse, ct) =>
        {
            // Idle thread-pool workers spin for work by default; on a 2-core box that spin takes CPU from the
            // verification threads (measured: ~0.68 → ~0.46 ms of CPU per sample). Read when the pool starts.
            AppContext.SetData("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", 0);
            RewardServerOptions options;
            try
            {
                var key = parse.GetValue(apiKey) ?? Environment.GetEnvironmentVariable(ApiKeyEnvironmentVariable);
                var mb = parse.GetValue(maxMb);
                if (mb <= 0) throw new ArgumentException("--max-request-mb must be positive");
                options = new RewardServerOptions
                {
                    Host = parse.GetValue(host)!,
                    Port = parse.GetValue(port),
                    ApiKey = string.IsNullOrEmpty(key) ? null : key,
                    MaxRequestBytes = mb * 1024L * 1024L,
                    MaxItems = parse.GetValue(maxItems),
                    Threads = parse.GetValue(threads),
                    Reward = BuildRewardOptions(parse, noFormat, formatWeight, accWeight, budget),
                };
                options.Validate();
            }
            catch (ArgumentException e) { return Fail(e.Message); }

            if (options.ExposureWarning() is { } warning) Console.Error.WriteLine(warning);
            using var rm = parse.GetValue(rewardPretrain) is { } rmDir ? LoadRewardModel(rmDir, parse, bf16, device, headPrefix) : null;
            if (rm is null && parse.GetValue(rewardPretrain) is not null) return CliErrors.Failure;
            if (rm is null) MathVerifier.WarmUp();
            IRewardModel? scorer = null;
            if (rm is not null)
            {
                try { scorer = new ModelRewardScorer(rm.Model, rm.Tokenizer, parse.GetValue(maxLen), parse.GetValue(batch), parse.GetValue(normalize)); }
                catch (ArgumentException e) { return Fail(e.Message.Replace("max length", "--max_len").Replace("batch size", "--batch_size")); }
                Console.Error.WriteLine($"reward model {rm.Model.Info.Dir}: {rm.Model.Info.Config.ModelType}, head '{rm.Model.Info.HeadName}'");
            }
            await using var server = RewardServer.Create(options, scorer);
            try { await server.StartAsync(ct); }
            catch (IOException e) { return Fail($"cannot listen on {options.Host}:{options.Port}: {e.Message}"); }
            Console.Error.WriteLine($"reward server listening on {string.Join(", ", server.Addresses)} (POST /get_reward){(options.ApiKey != null ? ", bearer token required" : "")}");
            try { await server.WaitForShutdownAsync(ct); }
            catch (OperationCanceledException) { }
            return 0;
        });
        return cmd;
    }

    private static int Fail(string message) => CliErrors.Fail(message);

    private sealed record LoadedRewardModel(SequenceRewardModel Model, QwenTokenizer Tokenizer) : IDisposable
    {
        public void Dispose() => Model.Dispose();
    }

    /// <summary>The reward model and its tokenizer, or null after printing `error:` for bad input.</summary>
    private static LoadedRewardModel? LoadRewardModel(string dir, ParseResult parse, Option<bool> bf16, Option<string> device, Option<string> headPrefix)
    {
        try
        {
            if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
                throw InputException.At(Path.Combine(dir, "tokenizer.json"), null, "--reward_pretrain", "not found: the reward-model folder must hold its tokenizer");
            var tokenizer = QwenTokenizer.Load(dir);
            var model = SequenceRewardModel.Load(dir, parse.GetValue(bf16) ? TorchSharp.torch.ScalarType.BFloat16 : TorchSharp.torch.ScalarType.Float32,
                ModelCommands.ParseDevice(parse.GetValue(device)!), parse.GetValue(headPrefix)!);
            return new LoadedRewardModel(model, tokenizer);
        }
        catch (InputException e) { Fail(e.Message); return null; }
    }
}
