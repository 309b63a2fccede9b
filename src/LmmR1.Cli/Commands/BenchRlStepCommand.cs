// `lmmr1 bench rl-step`: whole RL steps of the real trainer (PpoTrainer.TrainStep: generate → reward → log-probs →
// reference → advantages → release graphs → update → …) on synthetic data, every phase timed, one JSON line per step.
// Takes every `lmmr1 train` flag (same names and defaults) plus bench knobs: without --prompt_data it writes
// --synthetic_prompts prompts, each with its own random-noise --synthetic_image² PNG and a question of
// --synthetic_words random words, as LMM-R1 jsonl rows; --synthetic_response_len MEDIAN:SIGMA forces log-normal
// response lengths (random weights never emit EOS: SyntheticLengths); --synthetic_reward gives each sample a
// pseudo-random 0/1 accuracy from a hash of its text (so group advantages are not all zero) instead of the rule
// reward. --pretrain preset:NAME builds the actor (and the reference, from the same seed) with random weights in
// memory; the tokenizer then comes from --tokenizer. Tokens per GPU per second as EasyR1 counts them: the step's
// prompt + response tokens ÷ step seconds ÷ GPUs (one here).
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Text;
using LmmR1.Training.Ppo;
using SkiaSharp;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Cli.Commands;

public static class BenchRlStepCommand
{
    public static Command Create()
    {
        var cmd = new Command("rl-step", "Time whole RL steps of the trainer on synthetic data, per phase (prints JSON; takes the train flags)");
        var f = new TrainCommand.Flags(cmd);
        var steps = Add(cmd, new Option<int>("--bench_steps") { Description = "Global steps to run and time", DefaultValueFactory = _ => 2 });
        var prompts = Add(cmd, new Option<int>("--synthetic_prompts") { Description = "Synthetic prompts to write when --prompt_data is not given (default: --rollout_batch_size)", DefaultValueFactory = _ => 0 });
        var image = Add(cmd, new Option<int>("--synthetic_image") { Description = "Side in pixels of each synthetic prompt's random image (0 = text only)", DefaultValueFactory = _ => 448 });
        var words = Add(cmd, new Option<int>("--synthetic_words") { Description = "Random words in each synthetic question", DefaultValueFactory = _ => 40 });
        var lengths = Add(cmd, new Option<string?>("--synthetic_response_len") { Description = "MEDIAN:SIGMA of forced log-normal response lengths (e.g. 256:0.5); unset: the model's own stops" });
        var reward = Add(cmd, new Option<bool>("--synthetic_reward") { Description = "Pseudo-random 0/1 rewards from a hash of each sample instead of the rule reward" });
        var tokenizer = Add(cmd, new Option<string?>("--tokenizer") { Description = "Tokenizer folder (needed with --pretrain preset:NAME)" });
        var workDir = Add(cmd, new Option<string?>("--work_dir") { Description = "Where synthetic data goes (default: a new temporary folder)" });
        var output = Add(cmd, new Option<string?>("--output") { Description = "Also append the JSON lines to this file" });
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            var b = new BenchSettings(pr.GetValue(steps), pr.GetValue(prompts), pr.GetValue(image), pr.GetValue(words), pr.GetValue(lengths),
                pr.GetValue(reward), pr.GetValue(tokenizer), pr.GetValue(workDir), pr.GetValue(output));
            return Run(f, pr, b, Console.WriteLine);
        }));
        return cmd;
    }

    static Option<T> Add<T>(Command cmd, Option<T> o)
    {
        cmd.Options.Add(o);
        return o;
    }

    public sealed record BenchSettings(int Steps, int Prompts, int ImageSide, int Words, string? ResponseLengths, bool SyntheticReward,
                                       string? Tokenizer, string? WorkDir, string? Output);

    static int Run(TrainCommand.Flags f, ParseResult pr, BenchSettings b, Action<string> emit)
    {
        if (b.Steps < 1) throw InputException.At(null, null, "--bench_steps", $"must be ≥ 1, got {b.Steps}");
        if (b.Prompts < 0) throw InputException.At(null, null, "--synthetic_prompts", $"must be ≥ 0, got {b.Prompts}");
        if (b.ImageSide < 0 || b.ImageSide % 28 != 0) throw InputException.At(null, null, "--synthetic_image", $"must be 0 or a multiple of 28, got {b.ImageSide}");
        if (b.Words < 1) throw InputException.At(null, null, "--synthetic_words", $"must be ≥ 1, got {b.Words}");
        var forced = b.ResponseLengths is { } spec ? SyntheticLengths.Parse(spec, "--synthetic_response_len") : ((double, double)?)null;
        var (raw, notes) = f.Bind(pr);
        foreach (var n in notes) Console.Error.WriteLine(n);
        string pretrain = raw.Model.Pretrain ?? throw InputException.At(null, null, "--pretrain", "required: a model folder or preset:NAME");
        bool preset = pretrain.StartsWith("preset:", StringComparison.Ordinal);
        string tokDir = b.Tokenizer ?? (preset ? throw InputException.At(null, null, "--tokenizer", "required with --pretrain preset:NAME (a folder with tokenizer.json)") : pretrain);
        if (!File.Exists(Path.Combine(tokDir, "tokenizer.json")))
            throw InputException.At(Path.Combine(tokDir, "tokenizer.json"), null, b.Tokenizer is null ? "--pretrain" : "--tokenizer", "tokenizer.json not found");
        QwenVLConfig actorConfig = preset
            ? QwenPresets.Get(pretrain["preset:".Length..]) ?? throw InputException.At(null, null, "--pretrain", $"unknown preset '{pretrain}' ({string.Join(", ", QwenPresets.Names)})")
            : QwenVLConfig.Load(pretrain);

        int rb = raw.Rollout.RolloutBatchSize;
        if (string.IsNullOrWhiteSpace(raw.Data.Prompts.PromptData))
        {
            int count = b.Prompts > 0 ? b.Prompts : rb;
            if (b.ImageSide > 0 && actorConfig.Vision is null) throw InputException.At(null, null, "--synthetic_image", $"{actorConfig.ModelType} has no vision tower: pass 0");
            string dir = b.WorkDir ?? Path.Combine(Path.GetTempPath(), $"lmmr1-rlstep-{Environment.ProcessId}");
            string file = WriteSyntheticData(dir, count, b.ImageSide, b.Words);
            raw = raw with
            {
                Data = raw.Data with
                {
                    Prompts = raw.Data.Prompts with { PromptData = file, InputKey = "message", LabelKey = "answer" },
                    PromptMaxLen = Math.Max(raw.Data.PromptMaxLen, 8192),
                },
            };
        }
        var (config, resolveNotes) = raw.Resolve();
        config.Validate();
        foreach (var n in resolveNotes) Console.Error.WriteLine(n);

        var tok = QwenTokenizer.Load(tokDir);
        var processor = new QwenVLProcessor(tok, new QwenVLProcessorOptions { Image = config.ImageOptions() });
        var train = PromptDataset.Load(config.Data.Prompts, Console.Error);
        if (train.Count < rb) throw InputException.At(null, null, "--rollout_batch_size", $"{rb} prompts per step but the data has {train.Count}");
        var device = ModelCommands.ParseDevice(config.Model.Device);
        bool cuda = device.type == DeviceType.CUDA;
        var native = cuda ? NativeExtension.TryGet() : null;
        int devIndex = device.index < 0 ? 0 : device.index;
        using var mem = cuda ? new CudaMemory.PeakSampler() : null;

        var clock = Stopwatch.StartNew();
        torch.manual_seed(config.Run.Seed);
        PpoModels models;
        if (preset)
        {
            var dtype = config.Model.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
            var actor = QwenVLModel.Create(actorConfig, dtype, device, config.Run.Seed, initOnDevice: true);
            var reference = config.UsesReference ? QwenVLModel.Create(actorConfig, dtype, device, config.Run.Seed, initOnDevice: true) : null;
            if (config.UsesCritic) throw InputException.At(null, null, "--advantage_estimator", "gae needs a critic checkpoint: use a model folder with --pretrain");
            models = PpoModels.Prepare(config, actor, reference, null, referenceFromSameCheckpoint: true, Console.Error.WriteLine);
        }
        else models = PpoModels.Load(config, device, Console.Error.WriteLine);
        double loadS = clock.Elapsed.TotalSeconds;
        using var _models = models;
        IRewardModel rewardModel = b.SyntheticReward
            ? new HashRewardModel()
            : new RuleRewardModel(new RewardOptions { TimeBudget = TimeSpan.FromMilliseconds(config.Reward.TimeBudgetMs) });
        using var trainer = new PpoTrainer(config, models, processor, train, null, rewardModel, null, Console.Error.WriteLine);
        if (forced is { } fl) trainer.Maker.SyntheticLengths = new SyntheticLengths(fl.Item1, fl.Item2, trainer.Maker.StopTokens[0]);

        // Peak memory per phase: the torch allocator's peak since the previous phase ended.
        var phasePeaks = new Dictionary<string, double>();
        trainer.PhaseEnded = name =>
        {
            if (native is null) return;
            var st = native.MemoryStats(devIndex);
            phasePeaks[name] = Math.Max(phasePeaks.GetValueOrDefault(name), Math.Round(st.PeakAllocated / 1073741824.0, 2));
            native.ResetPeakMemory(devIndex);
        };
        var batch = Enumerable.Range(0, rb).Select(i => train[i]).ToList();
        // As `lmmr1 train` does before its first step (--no_rollout_warmup: not).
        RolloutWarmUp? warmUp = cuda && config.Rollout.WarmUp ? trainer.WarmUp(batch) : null;
        for (int s = 0; s < b.Steps; s++)
        {
            phasePeaks.Clear();
            mem?.Reset();
            native?.ResetPeakMemory(devIndex);
            var before = (trainer.Maker.Stats.ProcessSeconds, trainer.Maker.Stats.VisionSeconds, trainer.Maker.Stats.CollectSeconds);
            var report = trainer.TrainStep(batch);
            var m = report.Metrics;
            var gen = trainer.Maker.Engine.LastStats;
            double tokens = m.Rollout.TotalLength * m.Rollout.Samples, responseTokens = m.Rollout.ResponseLength * m.Rollout.Samples;
            double phaseSum = m.Seconds.Values.Sum();
            var result = new Dictionary<string, object?>
            {
                ["what"] = "lmmr1_rl_step", ["step"] = report.GlobalStep, ["estimator"] = config.Algorithm.Estimator.CliName(),
                ["reference"] = models.Reference is not null, ["kl_coef"] = config.Algorithm.InitKlCoef,
                ["device"] = config.Model.Device, ["bf16"] = config.Model.Bf16, ["gradient_checkpointing"] = config.Model.GradientCheckpointing, ["gradient_checkpointing_layers"] = config.Model.GradientCheckpointingLayers,
                ["model"] = actorConfig.ModelType, ["pretrain"] = pretrain, ["load_s"] = Math.Round(loadS, 2),
                ["prompts"] = rb, ["samples_per_prompt"] = config.Rollout.SamplesPerPrompt, ["samples"] = m.Rollout.Samples,
                ["generate_max_len"] = config.Rollout.GenerateMaxLen, ["synthetic_response_len"] = b.ResponseLengths,
                ["train_batch_size"] = config.Optim.TrainBatchSize, ["micro_train_batch_size"] = config.Optim.MicroTrainBatchSize,
                ["micro_rollout_batch_size"] = config.Rollout.MicroRolloutBatchSize,
                // OldLogProbPlan: samples whose old log-probs came from the update's forward (the "logprobs" phase ran
                // for the rest; none with --recompute_old_log_prob).
                ["old_logprobs_from_update"] = m.OldLogProbsFromUpdate, ["recompute_old_log_prob"] = config.Optim.RecomputeOldLogProb,
                ["packing_samples"] = config.Model.PackingSamples,
                ["packing_share_prompts"] = config.Model.PackingSharePrompts,
                ["step_s"] = Math.Round(m.StepSeconds, 3),
                ["phases_s"] = m.Seconds.ToDictionary(kv => kv.Key, kv => Math.Round(kv.Value, 3)),
                ["other_s"] = Math.Round(m.StepSeconds - phaseSum, 3),
                ["tokens"] = Math.Round(tokens), ["response_tokens"] = Math.Round(responseTokens),
                ["mean_prompt_len"] = Math.Round(m.Rollout.TotalLength - m.Rollout.ResponseLength, 1),
                ["mean_response_len"] = Math.Round(m.Rollout.ResponseLength, 1), ["truncated"] = m.Truncated,
                ["tokens_per_s_per_gpu"] = Math.Round(tokens / m.StepSeconds), ["gpus"] = 1,
                ["update_tokens_per_s"] = m.Seconds.TryGetValue("update", out var up) ? Math.Round(tokens / up) : null,
                ["generate_tokens_per_s"] = m.Seconds.TryGetValue("generate", out var g) ? Math.Round(responseTokens / g) : null,
                ["engine"] = new Dictionary<string, object?>
                {
                    ["micro_batches"] = gen.MicroBatches, ["max_rows"] = gen.MaxRows, ["graph_rows"] = gen.GraphRows, ["decode_steps"] = gen.DecodeSteps,
                    ["prefill_s"] = Math.Round(gen.PrefillSeconds, 3), ["decode_s"] = Math.Round(gen.DecodeSeconds, 3),
                    ["graph_captures"] = gen.GraphCaptures, ["capture_s"] = Math.Round(gen.GraphCaptureSeconds, 3),
                },
                // The generate phase outside the engine: processor, vision tower (once per prompt), collecting the samples.
                ["rollout_outside_engine_s"] = new Dictionary<string, double>
                {
                    ["process"] = Math.Round(trainer.Maker.Stats.ProcessSeconds - before.ProcessSeconds, 3),
                    ["vision"] = Math.Round(trainer.Maker.Stats.VisionSeconds - before.VisionSeconds, 3),
                    ["collect"] = Math.Round(trainer.Maker.Stats.CollectSeconds - before.CollectSeconds, 3),
                },
                ["reward"] = Math.Round(m.Rollout.Reward, 4), ["policy_loss"] = m.Actor?.PolicyLoss, ["kl"] = m.Kl,
                ["keep_cuda_graphs"] = config.Rollout.KeepCudaGraphs,
                // The warm-up rollout before step 1 (reported with step 1 only; null: none ran).
                ["warmup"] = s > 0 || warmUp is null ? null : new Dictionary<string, object>
                {
                    ["seconds"] = Math.Round(warmUp.Seconds, 3), ["process"] = Math.Round(warmUp.ProcessSeconds, 3),
                    ["vision"] = Math.Round(warmUp.VisionSeconds, 3), ["engine"] = Math.Round(warmUp.EngineSeconds, 3),
                    ["collect"] = Math.Round(warmUp.CollectSeconds, 3), ["graph_captures"] = warmUp.GraphCaptures,
                    ["new_tokens"] = RolloutWarmUp.TokensFor(config.Rollout.GenerateMaxLen),
                },
                ["torch_peak_allocated_gib_by_phase"] = native is null ? null : new Dictionary<string, double>(phasePeaks),
                ["peak_device_used_gib"] = mem is null || mem.Peak < 0 ? null : Math.Round(mem.Peak / 1073741824.0, 2),
                ["native_unavailable"] = cuda ? NativeExtension.UnavailableReason : null,
            };
            string json = JsonSerializer.Serialize(result);
            if (b.Output is { } path) File.AppendAllText(path, json + Environment.NewLine);
            emit(json);
        }
        return 0;
    }

    /// <summary>count LMM-R1 rows (message = [system, user [image?, question]], answer) in dir/synthetic.jsonl, each
    /// with its own random-noise PNG under dir/images; returns the file.</summary>
    public static string WriteSyntheticData(string dir, int count, int imageSide, int words)
    {
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var rng = new Random(20261206);
        string[] vocab = ["red", "circle", "square", "count", "how", "many", "left", "right", "above", "below", "triangle", "blue", "green",
                          "area", "angle", "length", "total", "shape", "picture", "number", "what", "is", "the", "of", "in", "and"];
        var lines = new List<string>();
        for (int i = 0; i < count; i++)
        {
            var user = new JsonArray();
            if (imageSide > 0)
            {
                string rel = $"images/noise{i}.png";
                File.WriteAllBytes(Path.Combine(dir, rel), NoisePng(imageSide, rng));
                user.Add(new JsonObject { ["type"] = "image", ["image"] = rel });
            }
            string q = string.Join(' ', Enumerable.Range(0, words).Select(_ => vocab[rng.Next(vocab.Length)])) + "?";
            user.Add(new JsonObject { ["type"] = "text", ["text"] = q });
            var message = new JsonArray(
                new JsonObject { ["role"] = "system", ["content"] = "Think step by step, then give the final answer as \\boxed{}." },
                new JsonObject { ["role"] = "user", ["content"] = user });
            lines.Add(new JsonObject { ["message"] = message.ToJsonString(), ["answer"] = $"$\\boxed{{{rng.Next(10)}}}$" }.ToJsonString());
        }
        string file = Path.Combine(dir, "synthetic.jsonl");
        File.WriteAllText(file, string.Join("\n", lines) + "\n");
        return file;
    }

    static byte[] NoisePng(int side, Random rng)
    {
        using var bmp = new SKBitmap(side, side, SKColorType.Rgba8888, SKAlphaType.Opaque);
        var px = new SKColor[side * side];
        for (int i = 0; i < px.Length; i++) px[i] = new SKColor((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256));
        bmp.Pixels = px;
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Bench reward: accuracy 0 or 1 from an FNV-1a hash of the query (the same text gets the same reward).</summary>
    sealed class HashRewardModel : IRewardModel
    {
        public Task<IReadOnlyList<RewardResult>> ScoreAsync(IReadOnlyList<string> queries, IReadOnlyList<string> prompts,
                                                            IReadOnlyList<string> labels, CancellationToken ct = default)
        {
            IReadOnlyList<RewardResult> r = queries.Select(q =>
            {
                ulong h = 14695981039346656037UL;
                foreach (char c in q) h = (h ^ c) * 1099511628211UL;
                double acc = (h >> 63) == 1 ? 1.0 : 0.0;
                return new RewardResult(acc, 0.0, acc);
            }).ToList();
            return Task.FromResult(r);
        }
    }
}
