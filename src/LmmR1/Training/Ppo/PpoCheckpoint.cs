// What a PPO checkpoint folder (written through CheckpointStore, so crash-safe) holds, and restoring it exactly:
//   actor/                     the actor as a Hugging Face folder (HfExport: weights, config, tokenizer, chat template,
//                              preprocessor config); with LoRA its adapters only, as a PEFT folder (the base is --pretrain)
//   actor_optim.safetensors    AdamW moments and fp32 masters, keyed by parameter name
//   critic/, critic_optim.safetensors   (gae)
//   rng_state.safetensors      libtorch's default CPU generator (nothing in training draws from it, saved anyway)
//   trainer_state.json         loop state (global step, consumed prompts/samples, episode and position in its data
//                              order, the order itself, data and model fingerprints), optimizer and LR-schedule
//                              positions, KL controller, the seeds the random streams derive from, non-finite counters
//   train_config.json          the resolved config; resuming refuses a config that would not continue the same run
//   metrics.jsonl, samples.jsonl   the logs so far (a resumed run continues from exactly these lines)
// Every random stream is a pure function of --seed and these counters (prompt order: seed + episode; sampling:
// seed + global step via the engine's counter-based RNG; PPO-epoch shuffles: seed, step, epoch), so a run of 2N
// steps and N steps + resume for N steps are bit-identical on the CPU.
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Training.Checkpointing;
using LmmR1.Training.Logging;
using LmmR1.Training.Optimization;
using LmmR1.Training.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

public static class PpoCheckpoint
{
    public const string StateFile = "trainer_state.json";
    public const string ConfigFile = "train_config.json";
    public const string RngFile = "rng_state.safetensors";
    public const int FormatVersion = 2;

    /// <summary>Tokenizer / processor files copied next to a saved model so the folder loads on its own.</summary>
    public static readonly string[] TokenizerFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json",
        "chat_template.json", "chat_template.jinja", "preprocessor_config.json", "video_preprocessor_config.json",
    ];

    public static void CopyTokenizerFiles(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var name in TokenizerFiles)
        {
            string src = Path.Combine(from, name);
            if (File.Exists(src) && Path.GetFullPath(src) != Path.GetFullPath(Path.Combine(to, name)))
                File.Copy(src, Path.Combine(to, name), overwrite: true);
        }
    }

    // ------------------------------------------------------------------ trainer_state.json

    public sealed record OptimizerState(long Steps, long AdamSteps, long SkippedSteps, double PeakLr, long ScheduleSteps, long WarmupSteps);

    public sealed record DataState(int Prompts, string Fingerprint, int Episode, long RolloutInEpisode, int[] Order);

    public sealed record RngState(int Seed, string Sampling, string PpoShuffles, string PromptOrder, string Torch);

    public sealed record SavedState
    {
        public int Format { get; init; } = FormatVersion;
        public required PpoTrainState State { get; init; }
        public required DataState Data { get; init; }
        public required OptimizerState Actor { get; init; }
        public OptimizerState? Critic { get; init; }
        public required double KlCoef { get; init; }
        public required RngState Rng { get; init; }
        public required string PretrainFingerprint { get; init; }
        public string? CriticPretrainFingerprint { get; init; }
        /// <summary>ModelFingerprint of each --reward_pretrain folder, in order (null in checkpoints written before reward
        /// models existed: nothing to compare).</summary>
        public IReadOnlyList<string>? RewardPretrainFingerprints { get; init; }
    }

    static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    /// <summary>What a checkpoint holds, handed over explicitly (the trainer builds it from its state).</summary>
    public sealed record Contents(PpoConfig Config, PpoTrainState State, QwenVLModel Actor, ModelOptimizer ActorOptimizer,
                                  (CriticModel Model, ModelOptimizer Optimizer)? Critic, double KlCoef, PromptDataset TrainData,
                                  int[] DataOrder);

    /// <summary>Writes everything a run needs to continue into <paramref name="dir"/> (a CheckpointStore temp folder).
    /// <paramref name="tokenizerDir"/>: where the tokenizer files come from; <paramref name="metrics"/>: the run's
    /// logs, copied in.</summary>
    public static void Write(string dir, Contents c, string tokenizerDir, MetricsLog? metrics = null)
    {
        var s = c.State;
        long step = s.GlobalStep;
        RunHooks.Reach("save-begin", step);
        var config = c.Config;
        if (c.Actor.Lora is not null) PeftAdapterFolder.Write(c.Actor, Path.Combine(dir, "actor"), Path.GetFullPath(config.Model.Pretrain!));
        else HfExport.WriteInto(c.Actor, Path.Combine(dir, "actor"), tokenizerDir, config.ImageOptions());
        RunHooks.Reach("save-actor-written", step);
        SafetensorsWriter.Write(Path.Combine(dir, "actor_optim.safetensors"), c.ActorOptimizer.StateTensors());
        if (c.Critic is { } pair)
        {
            var (critic, co) = pair;
            critic.Save(Path.Combine(dir, "critic"));
            SafetensorsWriter.Write(Path.Combine(dir, "critic_optim.safetensors"), co.StateTensors());
        }
        using (var rng = torch.random.get_rng_state())
            SafetensorsWriter.Write(Path.Combine(dir, RngFile), new Dictionary<string, Tensor> { ["torch_cpu"] = rng });

        var saved = new SavedState
        {
            State = s with { },
            Data = new DataState(c.TrainData.Count, DataFingerprint(c.TrainData), s.Episode, s.RolloutInEpisode, c.DataOrder),
            Actor = Describe(c.ActorOptimizer),
            Critic = c.Critic is { } withCritic ? Describe(withCritic.Optimizer) : null,
            KlCoef = c.KlCoef,
            Rng = new RngState(config.Run.Seed,
                Sampling: $"{PpoSeeds.SamplingRule} (seed {config.Run.Seed}; next: {PpoSeeds.Sampling(config.Run.Seed, s.GlobalStep + 1)})",
                PpoShuffles: PpoSeeds.EpochShuffleRule + (config.Model.PackingSharePrompts ? ", over prompt groups (--packing_share_prompts)" : ", over samples"),
                PromptOrder: $"{PpoSeeds.PromptOrderRule} (episode {s.Episode}, next rollout {s.RolloutInEpisode})",
                Torch: RngFile),
            PretrainFingerprint = ModelFingerprint(config.Model.Pretrain!),
            CriticPretrainFingerprint = config.UsesCritic ? ModelFingerprint(config.Model.CriticPretrain!) : null,
            RewardPretrainFingerprints = [.. config.Reward.RewardPretrain.Select(ModelFingerprint)],
        };
        File.WriteAllText(Path.Combine(dir, StateFile), JsonSerializer.Serialize(saved, Json));
        File.WriteAllText(Path.Combine(dir, ConfigFile), config.ToJson());
        metrics?.CopyTo(dir);
    }

    static OptimizerState Describe(ModelOptimizer o) =>
        new(o.Steps, o.AdamSteps, o.SkippedSteps, o.Schedule.PeakLr, o.Schedule.TotalSteps, o.Schedule.WarmupSteps);

    public static SavedState ReadState(string dir)
    {
        string statePath = Path.Combine(dir, StateFile);
        if (!File.Exists(statePath)) throw InputException.At(statePath, null, "--load_checkpoint", "not a PPO checkpoint (trainer_state.json missing)");
        SavedState? saved;
        try { saved = JsonSerializer.Deserialize<SavedState>(File.ReadAllText(statePath), Json); }
        catch (JsonException e) { throw InputException.At(statePath, null, "--load_checkpoint", $"unreadable trainer state ({e.Message})"); }
        if (saved is null || saved.Format != FormatVersion)
            throw InputException.At(statePath, null, "--load_checkpoint",
                $"checkpoint format {saved?.Format} is not {FormatVersion} (written by another version of lmmr1); start a fresh run with a new --ckpt_path");
        return saved;
    }

    // ------------------------------------------------------------------ compatibility

    /// <summary>Refuses to resume from <paramref name="dir"/> when this run's config or data differ in a way that
    /// would not continue the checkpoint's run (model, data, batch sizes, estimator, precision, freezing): an
    /// InputException naming the flag. Returns notes on allowed differences (e.g. a longer run → longer LR schedule).</summary>
    public static IReadOnlyList<string> CheckCompatible(string dir, PpoConfig config, PromptDataset train)
    {
        var saved = ReadState(dir);
        string configPath = Path.Combine(dir, ConfigFile);
        var old = JsonNode.Parse(File.ReadAllText(configPath))!.AsObject();
        var now = JsonNode.Parse(config.ToJson())!.AsObject();
        // A field's JSON text ("null" when null); a path missing from the current config is a bug here, not bad input.
        string Get(JsonObject o, string path)
        {
            JsonNode? n = o;
            foreach (var part in path.Split('.'))
                if (n is not JsonObject obj || !obj.TryGetPropertyValue(part, out n))
                    return ReferenceEquals(o, now) ? throw new InvalidOperationException($"config has no field '{path}'") : "(missing)";
            return n?.ToJsonString() ?? "null";
        }
        InputException Refuse(string flag, string what) => InputException.At(null, null, flag,
            $"{what}, so resuming from {dir} would not continue that run; use the checkpoint's setting, or start a fresh run " +
            "with another --ckpt_path (or without --load_checkpoint)");

        // Absent: what a field a checkpoint lacks means (it was written before the field existed); null = "(missing)".
        (string Path, string Flag, string? Absent)[] mustMatch =
        [
            ("model.bf16", "--bf16", null), ("model.freeze_prefix", "--freeze_prefix", null), ("model.value_head_prefix", "--value_head_prefix", null),
            ("algorithm.estimator", "--advantage_estimator", null),
            ("data.prompts.prompt_data_probs", "--prompt_data_probs", null), ("data.prompts.input_key", "--input_key", null),
            ("data.prompts.label_key", "--label_key", null), ("data.prompts.input_template", "--input_template", null),
            ("data.prompts.apply_chat_template", "--apply_chat_template", null), ("data.prompts.max_samples", "--max_samples", null),
            ("run.seed", "--seed", null),
            ("rollout.rollout_batch_size", "--rollout_batch_size", null), ("rollout.samples_per_prompt", "--n_samples_per_prompt", null),
            ("optim.train_batch_size", "--train_batch_size", null), ("optim.micro_train_batch_size", "--micro_train_batch_size", null),
            ("optim.max_epochs", "--max_epochs", null),
            ("model.packing_share_prompts", "--packing_share_prompts", "false"),   // the update's shuffle is by groups with it
        ];
        foreach (var (path, flag, absent) in mustMatch)
        {
            string a = Get(old, path), b = Get(now, path);
            if (a == "(missing)" && absent is not null) a = absent;
            if (a != b) throw Refuse(flag, $"the checkpoint was written with {flag} {a} and this run has {b}");
        }
        // LoRA: the adapters' shape and scale must match (--lora_merge only changes what the end writes).
        string Lora(JsonObject o)
        {
            if (Get(o, "model.lora") == "null" || Get(o, "model.lora") == "(missing)") return "off (full fine-tuning)";
            var l = (JsonObject)o["model"]!["lora"]!.DeepClone();
            l.Remove("save_merged");
            return l.ToJsonString();
        }
        if (Lora(old) != Lora(now)) throw Refuse("--lora_rank", $"the checkpoint's LoRA settings are {Lora(old)} and this run's {Lora(now)}");
        if (ModelFingerprint(config.Model.Pretrain!) != saved.PretrainFingerprint)
            throw Refuse("--pretrain", $"'{config.Model.Pretrain}' is not the model the checkpoint's run started from (its config.json or weight files differ)");
        if (config.UsesCritic && saved.CriticPretrainFingerprint is { } cf && ModelFingerprint(config.Model.CriticPretrain!) != cf)
            throw Refuse("--critic_pretrain", $"'{config.Model.CriticPretrain}' is not the critic the checkpoint's run started from");
        if (saved.RewardPretrainFingerprints is { } rf)
        {
            var rms = config.Reward.RewardPretrain;
            if (rms.Count != rf.Count)
                throw Refuse("--reward_pretrain", $"the checkpoint's run scored with {rf.Count} reward model(s) and this run names {rms.Count}");
            for (int k = 0; k < rms.Count; k++)
                if (ModelFingerprint(rms[k]) != rf[k])
                    throw Refuse("--reward_pretrain", $"'{rms[k]}' (reward model {k + 1}) is not the reward model the checkpoint's run scored with (its config.json or weight files differ)");
        }
        if (train.Count != saved.Data.Prompts || DataFingerprint(train) != saved.Data.Fingerprint)
            throw Refuse("--prompt_data", $"the prompts differ from the checkpoint's ({train.Count} prompts now, {saved.Data.Prompts} then; " +
                                          "same files and keys are needed for the same order)");

        var notes = new List<string>();
        var plan = PpoPlan.Create(config, train.Count);
        if (plan.SchedulerSteps != saved.Actor.ScheduleSteps)
            notes.Add($"note: the LR schedule now spans {plan.SchedulerSteps} optimizer steps (the checkpoint's run planned {saved.Actor.ScheduleSteps}): " +
                      "--max_global_steps / --num_episodes changed, so the learning rate continues on the new schedule");
        foreach (var (path, flag) in new[] { ("optim.actor_learning_rate", "--actor_learning_rate"), ("optim.critic_learning_rate", "--critic_learning_rate"),
                                              ("algorithm.init_kl_coef", "--init_kl_coef"), ("reward.reward_weights", "--reward_weights"),
                                              ("reward.normalize_reward", "--normalize_reward") })
            if (Get(old, path) is var was && was != "(missing)" && was != Get(now, path))
                notes.Add($"note: {flag} changed from {Get(old, path)} to {Get(now, path)} since the checkpoint" +
                          (flag == "--init_kl_coef" ? " (β continues from the checkpoint's value)" : ""));
        return notes;
    }

    /// <summary>SHA-256 over every prompt's text, label, datasource and image references, in dataset order.</summary>
    public static string DataFingerprint(PromptDataset data)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var p in data)
        {
            sha.AppendData(Encoding.UTF8.GetBytes(p.Prompt));
            sha.AppendData([0]);
            sha.AppendData(Encoding.UTF8.GetBytes(p.Label));
            sha.AppendData([0]);
            sha.AppendData(Encoding.UTF8.GetBytes(p.Datasource));
            sha.AppendData([0]);
            foreach (var im in p.Images) sha.AppendData(Encoding.UTF8.GetBytes(im.Ref.Original + "\n"));
            sha.AppendData([1]);
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    /// <summary>A model folder's identity without reading all its weights: SHA-256 of config.json plus, per safetensors
    /// file, its name, size and first and last MiB (header and some weights), so moving the folder keeps the identity
    /// and replacing the weights (even by a same-shaped re-initialisation) does not.</summary>
    public static string ModelFingerprint(string dir)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        string cfg = Path.Combine(dir, "config.json");
        if (File.Exists(cfg)) sha.AppendData(File.ReadAllBytes(cfg));
        if (!Directory.Exists(dir)) return Convert.ToHexStringLower(sha.GetHashAndReset());
        const int Chunk = 1 << 20;
        var buffer = new byte[Chunk];
        foreach (var f in Directory.GetFiles(dir, "*.safetensors").Order(StringComparer.Ordinal))
        {
            using var fs = File.OpenRead(f);
            sha.AppendData(Encoding.UTF8.GetBytes($"{Path.GetFileName(f)}:{fs.Length}\n"));
            sha.AppendData(buffer, 0, fs.ReadAtLeast(buffer, Chunk, throwOnEndOfStream: false));
            if (fs.Length > Chunk)
            {
                fs.Seek(-Math.Min(Chunk, fs.Length - Chunk), SeekOrigin.End);
                sha.AppendData(buffer, 0, fs.ReadAtLeast(buffer, Chunk, throwOnEndOfStream: false));
            }
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset());
    }

    // ------------------------------------------------------------------ restore

    /// <summary>Loads the weights, optimizer and schedule state and the torch RNG of a checkpoint folder into
    /// <paramref name="into"/>'s models and optimizers (check compatibility first with <see cref="CheckCompatible"/>)
    /// and returns the saved loop state, which the trainer takes over.</summary>
    public static SavedState Restore(string dir, Contents into)
    {
        var saved = ReadState(dir);
        if (into.Actor.Lora is not null) PeftAdapterFolder.LoadInto(into.Actor, Path.Combine(dir, "actor"));
        else
        {
            using var ckpt = SafetensorsCheckpoint.Open(Path.Combine(dir, "actor"));
            using var noGrad = torch.no_grad();
            into.Actor.LoadWeights(ckpt);
        }
        LoadOptimizer(into.ActorOptimizer, Path.Combine(dir, "actor_optim.safetensors"), saved.Actor);
        if (into.Critic is { } pair)
        {
            var (critic, co) = pair;
            if (saved.Critic is null) throw InputException.At(Path.Combine(dir, StateFile), null, "--advantage_estimator", "the checkpoint has no critic");
            string key = critic.HeadPrefix + ".weight";
            using (var ckpt = SafetensorsCheckpoint.Open(Path.Combine(dir, "critic")))
            using (torch.no_grad())
            {
                critic.Backbone.LoadWeights(ckpt, n => n == key);
                ckpt.CopyInto(key, critic.Score.weight!);
            }
            LoadOptimizer(co, Path.Combine(dir, "critic_optim.safetensors"), saved.Critic);
        }
        string rngPath = Path.Combine(dir, RngFile);
        if (File.Exists(rngPath))
        {
            using var f = SafetensorsFile.Open(rngPath);
            using var state = f.Load("torch_cpu");
            torch.random.set_rng_state(state);
        }
        return saved;
    }

    static void LoadOptimizer(ModelOptimizer opt, string path, OptimizerState saved)
    {
        using var f = SafetensorsFile.Open(path);
        using var scope = torch.NewDisposeScope();
        opt.LoadState(saved.Steps, saved.AdamSteps, name => f.Entries.ContainsKey(name) ? f.Load(name) : null, path, saved.SkippedSteps);
    }
}
