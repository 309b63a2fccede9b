// `lmmr1 generate` (batch inference over a prompt dataset → JSONL) and `lmmr1 eval` (the same plus the reward of each
// response and pass@1 / pass@k / format rate / length per datasource). Flags are spelled as OpenRLHF/LMM-R1's
// (--pretrain, --prompt_data, --input_key, --n_samples_per_prompt, --generate_max_len, …). Stop tokens: the tokenizer's
// and generation_config's EOS ids plus <|im_end|> and <|endoftext|>. The reward query is the detokenized prompt +
// response with special tokens, the prompt the raw input field, the label the --label_key value (as LMM-R1).
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Rewards.Client;
using LmmR1.Text;
using LmmR1.Vision;
using Spectre.Console;
using TorchSharp;

namespace LmmR1.Cli.Commands;

public static class GenerateCommand
{
    /// <summary>The options generate and eval share.</summary>
    sealed class Flags
    {
        public Option<string> Pretrain { get; } = new("--pretrain") { Description = "Model folder (config.json, *.safetensors, tokenizer.json)", Required = true };
        public Option<string> Output { get; } = new("--output") { Description = "JSONL file to write (one row per sample)", Required = true };
        public Option<int> N { get; }
        public Option<int> MaxLen { get; } = new("--generate_max_len") { Description = "Max new tokens per sample", DefaultValueFactory = _ => 1024 };
        public Option<double> Temperature { get; }
        public Option<double> TopP { get; } = new("--top_p") { Description = "Nucleus sampling mass (1 = off)", DefaultValueFactory = _ => 1.0 };
        public Option<int> TopK { get; } = new("--top_k") { Description = "Keep the k most likely tokens (-1 = off)", DefaultValueFactory = _ => -1 };
        public Option<double> MinP { get; } = new("--min_p") { Description = "Drop tokens below min_p × the top probability (0 = off)", DefaultValueFactory = _ => 0.0 };
        public Option<int> MinNew { get; } = new("--min_new_tokens") { Description = "Stop tokens banned before this many tokens (LMM-R1/vLLM: 1)", DefaultValueFactory = _ => 1 };
        public Option<string[]> Stop { get; } = new("--stop") { Description = "Stop string (repeatable)", AllowMultipleArgumentsPerToken = false };
        public Option<string?> ProcessorKwargs { get; } = new("--processor_kwargs") { Description = "JSON, e.g. {\"min_pixels\": 3136, \"max_pixels\": 401408}" };
        public Option<long?> MinPixels { get; } = new("--min_pixels") { Description = "Image min_pixels (overrides --processor_kwargs)" };
        public Option<long?> MaxPixels { get; } = new("--max_pixels") { Description = "Image max_pixels (overrides --processor_kwargs)" };
        public Option<string> Device { get; } = new("--device") { Description = "cpu, cuda, cuda:N or auto (cuda when available)", DefaultValueFactory = _ => "auto" };
        public Option<bool> Bf16 { get; } = new("--bf16") { Description = "Run the model in bfloat16 (else float32)" };
        public Option<int> MicroBatch { get; } = new("--micro_rollout_batch_size") { Description = "Prompts per micro-batch (0 = as many as the token budget allows)", DefaultValueFactory = _ => 0 };
        public Option<long> TokenBudget { get; } = new("--max_tokens_per_batch") { Description = "KV-cache budget per micro-batch: rows × (longest prompt + generate_max_len)", DefaultValueFactory = _ => 1L << 19 };
        public Option<int> MaxRows { get; } = new("--max_rows_per_batch") { Description = "Samples decoded together at most", DefaultValueFactory = _ => 512 };
        public Option<int> Chunk { get; } = new("--chunk_prompts") { Description = "Prompts preprocessed and generated per chunk (bounds host memory)", DefaultValueFactory = _ => 256 };
        public Option<int> CheckEvery { get; } = new("--check_every") { Description = "Decode steps between host checks for finished samples", DefaultValueFactory = _ => 4 };
        public PromptDataFlags Data { get; }

        public Flags(Command cmd, bool eval)
        {
            N = new Option<int>("--n_samples_per_prompt") { Description = "Samples per prompt", DefaultValueFactory = _ => eval ? 4 : 1 };
            Temperature = new Option<double>("--temperature") { Description = "Sampling temperature (0 = greedy)", DefaultValueFactory = _ => eval ? 0.6 : 1.0 };
            foreach (var o in new Option[] { Pretrain, Output, N, MaxLen, Temperature, TopP, TopK, MinP, MinNew, Stop, ProcessorKwargs, MinPixels,
                                             MaxPixels, Device, Bf16, MicroBatch, TokenBudget, MaxRows, Chunk, CheckEvery })
                cmd.Options.Add(o);
            Data = PromptDataFlags.AddTo(cmd, promptDataRequired: !eval);
        }
    }

    public static Command CreateGenerate()
    {
        var cmd = new Command("generate", "Sample responses for a prompt dataset (JSONL: prompt id, sample index, response, tokens, finish reason)");
        var f = new Flags(cmd, eval: false);
        cmd.SetAction(pr => InputsCli.Guard(() => Run(pr, f, null)));
        return cmd;
    }

    public static Command CreateEval()
    {
        var cmd = new Command("eval", "Generate, score with the LMM-R1 rule reward (or --remote_rm_url) and summarise per datasource (pass@1, pass@k, format rate, length)");
        var f = new Flags(cmd, eval: true);
        var remote = new Option<string?>("--remote_rm_url") { Description = "Comma list of reward server URLs (LMM-R1 protocol) instead of the built-in rule reward" };
        var summary = new Option<string?>("--output_summary") { Description = "Summary JSON (default: the --output path with .summary.json)" };
        var noFormat = new Option<bool>("--disable_format_reward") { Description = "Built-in reward without the 0.5 format part" };
        cmd.Options.Add(remote); cmd.Options.Add(summary); cmd.Options.Add(noFormat);
        cmd.SetAction(pr => InputsCli.Guard(() => Run(pr, f, new EvalFlags(pr.GetValue(remote), pr.GetValue(summary), pr.GetValue(noFormat)))));
        return cmd;
    }

    sealed record EvalFlags(string? RemoteUrls, string? SummaryPath, bool DisableFormat);

    static int Run(ParseResult pr, Flags f, EvalFlags? eval)
    {
        string dir = pr.GetValue(f.Pretrain)!;
        string output = pr.GetValue(f.Output)!;
        var data = f.Data.Bind(pr);
        if (eval is not null)
        {
            if (string.IsNullOrWhiteSpace(data.PromptData) && string.IsNullOrWhiteSpace(data.EvalDataset))
                throw new InputException("--prompt_data or --eval_dataset: required");
            if (string.IsNullOrWhiteSpace(data.LabelKey)) throw new InputException("--label_key: required for eval (the answers to score against)");
        }
        var dtype = pr.GetValue(f.Bf16) ? torch.ScalarType.BFloat16 : torch.ScalarType.Float32;
        string devName = pr.GetValue(f.Device)!;
        var device = devName == "auto" ? (torch.cuda.is_available() ? new torch.Device("cuda") : torch.CPU) : ModelCommands.ParseDevice(devName);

        var image = new ImageProcessorOptions().WithProcessorKwargs(pr.GetValue(f.ProcessorKwargs));
        if (pr.GetValue(f.MinPixels) is long minP) image = image with { MinPixels = minP };
        if (pr.GetValue(f.MaxPixels) is long maxP) image = image with { MaxPixels = maxP };
        image = image.Validate();

        var dataset = eval is not null && !string.IsNullOrWhiteSpace(data.EvalDataset)
            ? PromptDataset.LoadEval(data, Console.Error)
            : PromptDataset.Load(data, Console.Error);
        if (dataset.Count == 0) throw new InputException("the dataset has no usable rows");
        var tokenizer = QwenTokenizer.Load(dir);
        var clock = Stopwatch.StartNew();
        using var model = QwenVLModel.Load(dir, dtype, device);
        if (tokenizer.VocabSize > model.Config.Text.VocabSize)
            throw new InputException($"{dir}: the tokenizer has {tokenizer.VocabSize} ids but the model's vocabulary only {model.Config.Text.VocabSize}");
        Console.WriteLine($"{model.Config.Architecture} from {dir} on {device} ({ModelCommands.DTypeName(dtype)}), loaded in {clock.Elapsed.TotalSeconds:F1} s; " +
                          $"{dataset.Count} prompts");

        var sampling = new SamplingParams
        {
            N = pr.GetValue(f.N), Temperature = pr.GetValue(f.Temperature), TopP = pr.GetValue(f.TopP), TopK = pr.GetValue(f.TopK),
            MinP = pr.GetValue(f.MinP), MaxNewTokens = pr.GetValue(f.MaxLen), MinNewTokens = pr.GetValue(f.MinNew),
            StopTokenIds = DatasetGenerator.DefaultStopTokenIds(tokenizer, model.Config),
            StopStrings = pr.GetValue(f.Stop) ?? [], Seed = (ulong)data.Seed,
        };
        sampling.Validate(model.Config.Text.VocabSize);
        var engineOptions = new GenerationEngineOptions
        {
            MaxPromptsPerBatch = pr.GetValue(f.MicroBatch), MaxTokensPerBatch = pr.GetValue(f.TokenBudget),
            MaxRowsPerBatch = pr.GetValue(f.MaxRows), CheckEvery = pr.GetValue(f.CheckEvery),
        };
        var engine = new GenerationEngine(model, engineOptions);
        var processor = new QwenVLProcessor(tokenizer, new QwenVLProcessorOptions { Image = image });
        var generator = new DatasetGenerator(engine, processor, sampling, pr.GetValue(f.Chunk));

        IRewardModel? reward = null;
        if (eval is not null)
            reward = eval.RemoteUrls is { Length: > 0 } urls
                ? new RemoteRewardModel(RemoteRewardOptions.FromUrlList(urls, Environment.GetEnvironmentVariable(RewardCommands.ApiKeyEnvironmentVariable)))
                : new RuleRewardModel(new RewardOptions { FormatReward = !eval.DisableFormat });
        try
        {
            var scored = new List<(string Datasource, List<ScoredSample> Samples)>();
            long tokens = 0;
            clock.Restart();
            string? outDir = Path.GetDirectoryName(Path.GetFullPath(output));
            if (outDir is not null) Directory.CreateDirectory(outDir);
            using (var writer = new StreamWriter(output, append: false, new System.Text.UTF8Encoding(false)))
                GenerationProgressView.Run(eval is null ? "generate" : "eval", dataset.Count, Console.Out, report =>
                {
                    foreach (var chunk in generator.Run(dataset, report))
                    {
                        IReadOnlyList<RewardResult>? rewards = null;
                        if (reward is not null)
                        {
                            var flat = chunk.SelectMany(c => c.Queries.Select(q => (Query: q, c.Sample))).ToList();
                            rewards = reward.ScoreAsync(flat.Select(x => x.Query).ToList(), flat.Select(x => x.Sample.Prompt).ToList(),
                                                        flat.Select(x => x.Sample.Label).ToList()).GetAwaiter().GetResult();
                        }
                        int r = 0;
                        foreach (var c in chunk)
                        {
                            var samples = new List<ScoredSample>();
                            for (int k = 0; k < c.Outputs.Count; k++, r++)
                            {
                                var o = c.Outputs[k];
                                tokens += o.ResponseLength;
                                var rw = rewards?[r];
                                WriteRow(writer, c, k, data.LabelKey is not null, rw);
                                if (rw is not null)
                                    samples.Add(new ScoredSample(rw.AccuracyReward > 0, LmmR1Reward.IsWellFormatted(LmmR1Reward.ExtractResponse(c.Queries[k])),
                                                                 rw.Reward, o.ResponseLength, o.Finish == FinishReason.Length));
                            }
                            if (reward is not null) scored.Add((c.Sample.Datasource, samples));
                        }
                        writer.Flush();
                    }
                });
            double seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine($"wrote {(long)dataset.Count * sampling.N} samples of {dataset.Count} prompts to {output}: {tokens:N0} tokens in " +
                              $"{seconds:F1} s ({tokens / Math.Max(seconds, 1e-9):F0} tokens/s)");
            if (eval is not null) Summarise(scored, eval.SummaryPath ?? Path.ChangeExtension(output, null) + ".summary.json", dir, dataset, sampling);
        }
        finally { (reward as IDisposable)?.Dispose(); }
        return 0;
    }

    static void WriteRow(StreamWriter writer, GeneratedPrompt c, int k, bool hasLabel, RewardResult? reward)
    {
        var o = c.Outputs[k];
        InputsCli.WriteLine(writer, w =>
        {
            w.WriteNumber("index", c.Index);
            w.WriteString("prompt_id", c.Sample.Id);
            w.WriteNumber("sample", k);
            w.WriteString("datasource", c.Sample.Datasource);
            if (hasLabel) w.WriteString("label", c.Sample.Label);
            w.WriteString("response", c.Responses[k]);
            w.WriteNumber("response_tokens", o.ResponseLength);
            w.WriteNumber("prompt_tokens", c.PromptTokens);
            w.WriteString("finish_reason", o.Finish == FinishReason.Stop ? "stop" : "length");
            if (o.StopString is { } s) w.WriteString("stop", s);
            else if (o.StopTokenId is int t) w.WriteNumber("stop_token_id", t);
            if (reward is not null)
            {
                w.WriteNumber("reward", reward.Reward);
                w.WriteNumber("format_reward", reward.FormatReward);
                w.WriteNumber("accuracy_reward", reward.AccuracyReward);
            }
        });
    }

    static void Summarise(List<(string Datasource, List<ScoredSample> Samples)> scored, string path, string modelDir, PromptDataset ds, SamplingParams sp)
    {
        var groups = scored.GroupBy(s => s.Datasource).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => (Name: g.Key, Metrics: EvalSummary.Compute(g.Select(x => (IReadOnlyList<ScoredSample>)x.Samples).ToList())))
            .ToList();
        var overall = EvalSummary.Compute(scored.Select(x => (IReadOnlyList<ScoredSample>)x.Samples).ToList());

        // reward = mean reward, tokens = mean response length, cut = share of samples that hit generate_max_len.
        var table = new Table().Title($"eval: n = {sp.N}, temperature {sp.Temperature}, top_p {sp.TopP}, max {sp.MaxNewTokens} tokens");
        table.AddColumn(new TableColumn("datasource").NoWrap());
        foreach (var h in new[] { "prompts", "samples", "pass@1", $"pass@{sp.N}", "format", "reward", "tokens", "cut" })
            table.AddColumn(new TableColumn(h).RightAligned().NoWrap());
        void Row(string name, EvalMetrics m) => table.AddRow(Markup.Escape(name), m.Prompts.ToString(), m.Samples.ToString(), $"{m.Pass1:P1}", $"{m.PassK:P1}",
            $"{m.FormatRate:P1}", $"{m.MeanReward:F3}", $"{m.MeanResponseTokens:F1}", $"{m.TruncatedRate:P1}");
        foreach (var (name, m) in groups) Row(name, m);
        if (groups.Count > 1) Row("all", overall);
        // A console on the current stdout (tests swap it); wide when redirected so that columns are not squeezed.
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Out) });
        if (Console.IsOutputRedirected) console.Profile.Width = 160;
        console.Write(table);

        var json = new Dictionary<string, object?>
        {
            ["model"] = modelDir,
            ["prompts"] = ds.Count,
            ["n_samples_per_prompt"] = sp.N,
            ["k"] = sp.N,
            ["temperature"] = sp.Temperature, ["top_p"] = sp.TopP, ["top_k"] = sp.TopK, ["generate_max_len"] = sp.MaxNewTokens, ["seed"] = sp.Seed,
            ["datasources"] = groups.ToDictionary(g => g.Name, g => (object)g.Metrics),
            ["all"] = overall,
        };
        File.WriteAllText(path, JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
        Console.WriteLine($"summary: {path}");
    }
}
