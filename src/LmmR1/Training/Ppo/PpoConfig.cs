// The configuration of `lmmr1 train` (LMM-R1's train_ppo_ray.py flags, same names and defaults) as immutable records
// nested by concern. Resolve() applies upstream's argument rules once (critic only for gae, critic defaults to the
// policy checkpoint, γ forced to 1 where upstream forces it, reference model only when init_kl_coef > 0) and
// Validate() rejects bad values and combinations with an InputException naming the flag. Nothing mutates it later.
using System.Text.Json;
using System.Text.Json.Serialization;
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Vision;

namespace LmmR1.Training.Ppo;

/// <summary>Which checkpoints, in which precision, on which device.</summary>
public sealed record PpoModelSettings
{
    /// <summary>--pretrain: the policy (and reference) checkpoint folder.</summary>
    public string? Pretrain { get; init; }
    /// <summary>--critic_pretrain: the critic's backbone (gae only; defaults to --pretrain).</summary>
    public string? CriticPretrain { get; init; }
    /// <summary>--freeze_prefix: parameter-name prefixes frozen in the actor (e.g. "visual").</summary>
    public IReadOnlyList<string> FreezePrefix { get; init; } = [];
    /// <summary>--bf16: bf16 weights with fp32 master weights in the optimizer (else fp32 throughout).</summary>
    public bool Bf16 { get; init; }
    /// <summary>--gradient_checkpointing: recompute decoder layers in backward.</summary>
    public bool GradientCheckpointing { get; init; }
    /// <summary>--gradient_checkpointing_layers N (ours): with --gradient_checkpointing, recompute only the first N decoder
    /// layers of the actor and critic and keep the activations of the others (0: all layers, OpenRLHF's behaviour).
    /// Each layer left out saves its recompute in backward and holds its activations instead.</summary>
    public int GradientCheckpointingLayers { get; init; }

    /// <summary>Throws when --gradient_checkpointing_layers names more layers than a model of <paramref name="layers"/>
    /// decoder layers has (checked once the model's config is read).</summary>
    public void CheckCheckpointLayers(int layers)
    {
        if (GradientCheckpointingLayers > layers)
            throw InputException.At(null, null, "--gradient_checkpointing_layers",
                $"{GradientCheckpointingLayers} exceeds the model's {layers} decoder layers (0 = all of them)");
    }
    /// <summary>--packing_samples: the log-prob, reference, value and update passes run each micro-batch's rows as one
    /// sequence without padding (per-row attention and M-RoPE positions; flash varlen on CUDA). Same numbers up to
    /// rounding; generation is unaffected.</summary>
    public bool PackingSamples { get; init; }
    /// <summary>--packing_share_prompts (ours; needs --packing_samples): the samples of one prompt in a micro-batch hold
    /// the prompt once in the packed sequence, each response attending to it (PackedSequences.FromRows), and the
    /// update's micro-batches are cut from a seeded shuffle of whole prompt groups instead of single samples, so that a
    /// micro-batch holds a group's samples together. Same maths per sample; fewer tokens through the layers.</summary>
    public bool PackingSharePrompts { get; init; }
    /// <summary>--value_head_prefix: name of the critic's value head ("score" → score.weight).</summary>
    public string ValueHeadPrefix { get; init; } = "score";
    /// <summary>--device: cpu, cuda or cuda:N (ours; one process holds actor, reference and critic).</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>--save_value_network: also save the critic to {save_path}_critic.</summary>
    public bool SaveValueNetwork { get; init; }
    /// <summary>--lora_rank &gt; 0 and the other LoRA flags: train adapters on the frozen actor (null = full fine-tuning).</summary>
    public Models.Qwen.LoraOptions? Lora { get; init; }
}

/// <summary>Prompt data beyond the shared prompt-data flags.</summary>
public sealed record PpoDataSettings
{
    /// <summary>--prompt_data, --prompt_data_probs, --eval_dataset, --input_key, --label_key, --apply_chat_template,
    /// --max_samples, --skip_bad_rows (the inputs branch's binder), with --seed.</summary>
    public PromptDataOptions Prompts { get; init; } = new();
    /// <summary>--prompt_max_len: longest prompt (tokens, image pads expanded) a rollout accepts.</summary>
    public int PromptMaxLen { get; init; } = 1024;
    /// <summary>--processor_kwargs: JSON with min_pixels / max_pixels.</summary>
    public string? ProcessorKwargs { get; init; }
}

/// <summary>How rollouts are sampled.</summary>
public sealed record RolloutSettings
{
    /// <summary>--rollout_batch_size: prompts per rollout (one global step).</summary>
    public int RolloutBatchSize { get; init; } = 1024;
    /// <summary>--micro_rollout_batch_size: samples per no-grad forward when computing log-probs and values.</summary>
    public int MicroRolloutBatchSize { get; init; } = 8;
    /// <summary>--n_samples_per_prompt.</summary>
    public int SamplesPerPrompt { get; init; } = 1;
    /// <summary>--generate_max_len: max new tokens per sample.</summary>
    public int GenerateMaxLen { get; init; } = 1024;
    public double Temperature { get; init; } = 1.0;
    public double TopP { get; init; } = 1.0;
    public double EvalTemperature { get; init; } = 0.6;
    public int EvalSamplesPerPrompt { get; init; } = 4;
    /// <summary>--rollout_max_batch_rows (ours): most samples the engine decodes together.</summary>
    public int MaxBatchRows { get; init; } = 512;
    /// <summary>--rollout_max_batch_tokens (ours): KV-cache budget in positions (rows × (prompt + generate_max_len)).</summary>
    public long MaxBatchTokens { get; init; } = 1L << 19;
    /// <summary>--rollout_keep_cuda_graphs (ours) unset: after each rollout the engine's captured decode graphs and their
    /// static KV caches are freed (≈ 17.6 GiB at 512 rows × 960 positions for the 3B shape) and captured again at the
    /// next rollout (~0.1 s per bucket); set: they stay allocated across the update. No effect on CPU.</summary>
    public bool KeepCudaGraphs { get; init; }
    /// <summary>--no_rollout_warmup (ours) unset: on CUDA, before a process's first step, one short rollout of that step's
    /// prompts (PpoTrainer.WarmUp: RolloutWarmUp.NewTokens new tokens, samples discarded) pays the first use of the
    /// vision tower's, prefill's and decode's kernels, the graph captures and the host code paths at start, where vLLM
    /// captures its graphs too, instead of inside step 1. No effect on CPU.</summary>
    public bool WarmUp { get; init; } = true;
}

/// <summary>Where rewards come from and how they are bounded.</summary>
public sealed record RewardSettings
{
    /// <summary>--remote_rm_url: comma list of reward servers; null = the built-in LMM-R1 rule reward.</summary>
    public string? RemoteRmUrl { get; init; }
    /// <summary>--reward_clip_range (applied after group shaping).</summary>
    public double ClipMin { get; init; } = -10;
    public double ClipMax { get; init; } = 10;
    /// <summary>--normalize_reward: each reward model's score becomes (r − mean) / std with the mean/std of its
    /// config.json (OpenRLHF's RewardModel); like upstream it changes nothing for rule or remote rewards.</summary>
    public bool NormalizeReward { get; init; }
    /// <summary>--reward_pretrain: reward-model checkpoint folders (comma list upstream), scored on every sample.</summary>
    public IReadOnlyList<string> RewardPretrain { get; init; } = [];
    /// <summary>--reward_weights (ours): one weight per reward model, optionally followed by the rule / remote reward's;
    /// null = upstream's plain sum of the reward models (RewardCombination).</summary>
    public IReadOnlyList<double>? RewardWeights { get; init; }

    /// <summary>w_k of each reward model (1 unless --reward_weights says otherwise).</summary>
    [JsonIgnore]
    public IReadOnlyList<double> ModelWeights => [.. RewardPretrain.Select((_, k) => RewardWeights is { } w && k < w.Count ? w[k] : 1.0)];

    /// <summary>The rule / remote reward's weight: 1 without reward models; with them the weight after the models'
    /// in --reward_weights, else 0 (upstream scores with the reward models alone).</summary>
    [JsonIgnore]
    public double RuleWeight => RewardPretrain.Count == 0 ? 1.0
        : RewardWeights is { } w && w.Count == RewardPretrain.Count + 1 ? w[^1] : 0.0;
    /// <summary>--reward_time_budget_ms (ours): wall-clock budget of one built-in rule-reward verification; a spent
    /// budget scores accuracy 0, so a slow verification on a loaded machine can change a reward (raise it for runs
    /// that must repeat exactly).</summary>
    public int TimeBudgetMs { get; init; } = 30;
    /// <summary>--overlong_buffer_len: DAPO's soft overlong punishment over the last this-many tokens before
    /// --generate_max_len (null = off); --overlong_penalty_factor is its largest penalty.</summary>
    public int? OverlongBufferLen { get; init; }
    public double OverlongPenaltyFactor { get; init; } = 1.0;
    /// <summary>--mask_truncated_completions (TRL's name; DAPO's overlong filtering): responses cut at
    /// --generate_max_len without a stop token are left out of the loss.</summary>
    public bool MaskTruncatedCompletions { get; init; }
}

/// <summary>The RL algorithm: advantages, clipping, KL.</summary>
public sealed record AlgorithmSettings
{
    public AdvantageEstimator Estimator { get; init; } = AdvantageEstimator.Gae;
    public double Gamma { get; init; } = 1.0;
    public double Lambda { get; init; } = 1.0;
    public double EpsClip { get; init; } = 0.2;
    public double ValueClip { get; init; } = 0.2;
    public double InitKlCoef { get; init; } = 0.01;
    /// <summary>--kl_target: null = fixed β, else adaptive.</summary>
    public double? KlTarget { get; init; }
    public long KlHorizon { get; init; } = 10000;
    public KlEstimator KlEstimator { get; init; } = KlEstimator.K1;
    public bool UseKlLoss { get; init; }
    public double EntropyLossCoef { get; init; }
    /// <summary>!--no_advantage_std_norm.</summary>
    public bool AdvantageStdNorm { get; init; } = true;
    /// <summary>--freezing_actor_steps: the actor is updated only at global steps above this (critic warm-up).</summary>
    public int FreezingActorSteps { get; init; } = -1;
    /// <summary>--policy_loss_type: ppo (LMM-R1's), gspo or cispo.</summary>
    public PolicyLossType PolicyLossType { get; init; } = PolicyLossType.Ppo;
    /// <summary>--eps_clip_low_high LOW HIGH: the ratio is clipped to [1 − LOW, 1 + HIGH] (DAPO's clip-higher);
    /// Resolve() sets both to --eps_clip when the flag is absent.</summary>
    public double? EpsClipLow { get; init; }
    public double? EpsClipHigh { get; init; }
    /// <summary>--dual_clip c &gt; 1: for negative advantages the PPO loss is at most −c·A (null = off).</summary>
    public double? DualClip { get; init; }
    /// <summary>--loss_agg_mode: how per-token losses become the backpropagated scalar (LossAggregation).</summary>
    [JsonConverter(typeof(LossAggregationJsonConverter))]
    public LossAggregation LossAggMode { get; init; } = LossAggregation.TokenMean;
    /// <summary>--dynamic_filtering: drop groups whose scores are all equal or whose mean lies outside
    /// --dynamic_filtering_reward_range, and roll out more prompts until the batch is full (DAPO).</summary>
    public bool DynamicFiltering { get; init; }
    public double DynamicFilteringLow { get; init; }
    public double DynamicFilteringHigh { get; init; } = 1;
    /// <summary>--dynamic_filtering_max_rounds (ours): extra generation rounds per global step before the batch is
    /// completed with dropped groups (logged).</summary>
    public int DynamicFilteringMaxRounds { get; init; } = 4;

    /// <summary>The policy loss's resolved settings.</summary>
    [JsonIgnore]
    public PolicyLossOptions PolicyLoss => new(PolicyLossType, EpsClipLow ?? EpsClip, EpsClipHigh ?? EpsClip, DualClip, LossAggMode);
}

/// <summary>Writes and reads a LossAggregation as the peers' name ("token-mean", …) in the dumped config.</summary>
public sealed class LossAggregationJsonConverter : JsonConverter<LossAggregation>
{
    public override LossAggregation Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        LossAggregations.TryParse(reader.GetString() ?? "") ?? throw new JsonException($"unknown loss_agg_mode '{reader.GetString()}'");

    public override void Write(Utf8JsonWriter writer, LossAggregation value, JsonSerializerOptions options) =>
        writer.WriteStringValue(LossAggregations.Name(value));
}

/// <summary>Batching, epochs and the optimizers.</summary>
public sealed record OptimSettings
{
    public int TrainBatchSize { get; init; } = 128;
    public int MicroTrainBatchSize { get; init; } = 4;
    public int MaxEpochs { get; init; } = 1;
    public int NumEpisodes { get; init; } = 1;
    /// <summary>--max_global_steps: overrides num_episodes when set.</summary>
    public long? MaxGlobalSteps { get; init; }
    public double ActorLearningRate { get; init; } = 1e-6;
    public double CriticLearningRate { get; init; } = 9e-6;
    public double LrWarmupRatio { get; init; } = 0.03;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    /// <summary>--l2: decoupled weight decay (not on biases and norm weights, as OpenRLHF groups them).</summary>
    public double L2 { get; init; }
    public double MaxNorm { get; init; } = 1.0;
    /// <summary>--recompute_old_log_prob (ours; a verl fork's actor.recompute_old_log_prob): always compute the old
    /// log-probs in a separate actor forward before the update, as OpenRLHF does, also for the samples whose old
    /// log-probs the update's own forward gives exactly (OldLogProbPlan). Same numbers up to rounding; for comparisons.</summary>
    public bool RecomputeOldLogProb { get; init; }
}

/// <summary>Seeds, outputs, logging, evaluation and checkpoint cadence.</summary>
public sealed record RunSettings
{
    public int Seed { get; init; } = 42;
    public string SavePath { get; init; } = "./ckpt";
    public string CkptPath { get; init; } = "./ckpt/checkpoints_ppo_ray";
    /// <summary>--save_steps: -1 = no intermediate checkpoints.</summary>
    public long SaveSteps { get; init; } = -1;
    public int MaxCkptNum { get; init; } = 3;
    public bool LoadCheckpoint { get; init; }
    public bool SaveHfCkpt { get; init; }
    public long LoggingSteps { get; init; } = 1;
    /// <summary>--use_tensorboard: TensorBoard log folder, or null.</summary>
    public string? UseTensorboard { get; init; }
    /// <summary>--eval_steps: -1 = once per episode (upstream).</summary>
    public long EvalSteps { get; init; } = -1;
    /// <summary>--max_nonfinite_steps (ours): stop after this many optimizer steps in a row skipped for a non-finite
    /// loss or gradient.</summary>
    public int MaxNonFiniteSteps { get; init; } = 3;
    /// <summary>--log_samples (ours): generations per logging step written to samples.jsonl and TensorBoard text.</summary>
    public int LogSamples { get; init; } = 4;
}

public sealed record PpoConfig
{
    public PpoModelSettings Model { get; init; } = new();
    public PpoDataSettings Data { get; init; } = new();
    public RolloutSettings Rollout { get; init; } = new();
    public RewardSettings Reward { get; init; } = new();
    public AlgorithmSettings Algorithm { get; init; } = new();
    public OptimSettings Optim { get; init; } = new();
    public RunSettings Run { get; init; } = new();

    /// <summary>Only gae trains a critic.</summary>
    public bool UsesCritic => Algorithm.Estimator.UsesCritic();

    /// <summary>Upstream builds the reference model only when init_kl_coef &gt; 0 (with --use_kl_loss and β = 0 its
    /// KL loss is zeros); without it the KL term is skipped entirely.</summary>
    public bool UsesReference => Algorithm.InitKlCoef > 0;

    /// <summary>The flags the advantage pipeline reads (derived; not part of the dumped config).</summary>
    [JsonIgnore]
    public AdvantageSettings Advantage => new()
    {
        Estimator = Algorithm.Estimator,
        SamplesPerPrompt = Rollout.SamplesPerPrompt,
        Gamma = Algorithm.Gamma,
        Lambda = Algorithm.Lambda,
        RewardClipRange = (Reward.ClipMin, Reward.ClipMax),
        AdvantageStdNorm = Algorithm.AdvantageStdNorm,
    };

    /// <summary>Applies upstream's argument rules (train_ppo_ray.py after parse_args): the critic exists only for gae
    /// and defaults to --pretrain. Returns the notes to print (one line each) alongside the resolved config.</summary>
    public (PpoConfig Config, IReadOnlyList<string> Notes) Resolve()
    {
        var notes = new List<string>();
        var model = Model;
        if (!UsesCritic)
        {
            if (model.CriticPretrain is not null)
                notes.Add($"note: --critic_pretrain is ignored: {Algorithm.Estimator.CliName()} trains no critic (only gae does)");
            model = model with { CriticPretrain = null };
        }
        else if (string.IsNullOrWhiteSpace(model.CriticPretrain))
        {
            model = model with { CriticPretrain = model.Pretrain };
        }
        if (Algorithm.Estimator.ForcesUnitGamma() && Algorithm.Gamma != 1.0)
            notes.Add($"note: --gamma {Algorithm.Gamma} is replaced by 1.0 for {Algorithm.Estimator.CliName()} (as upstream)");
        if (Algorithm.UseKlLoss && Algorithm.InitKlCoef <= 0)
            notes.Add("note: --use_kl_loss with --init_kl_coef 0: no reference model is loaded and the KL loss is 0 (as upstream)");
        if (Reward.NormalizeReward && Reward.RewardPretrain.Count == 0)
            notes.Add("note: --normalize_reward changes nothing for rule-based or remote rewards (as upstream)");
        var algorithm = Algorithm with
        {
            EpsClipLow = Algorithm.EpsClipLow ?? Algorithm.EpsClip,
            EpsClipHigh = Algorithm.EpsClipHigh ?? Algorithm.EpsClip,
        };
        if (Algorithm.PolicyLossType == PolicyLossType.Gspo && LossAggregations.SequenceLevel(Algorithm.LossAggMode) != Algorithm.LossAggMode)
        {
            var seq = LossAggregations.SequenceLevel(Algorithm.LossAggMode);
            notes.Add($"note: --policy_loss_type gspo averages over sequences: --loss_agg_mode {LossAggregations.Name(Algorithm.LossAggMode)} " +
                      $"becomes {LossAggregations.Name(seq)} (as verl)");
            algorithm = algorithm with { LossAggMode = seq };
        }
        return (this with { Model = model, Algorithm = algorithm }, notes);
    }

    /// <summary>Checks every value and combination; throws an InputException naming the flag.</summary>
    public PpoConfig Validate()
    {
        if (string.IsNullOrWhiteSpace(Model.Pretrain)) throw Flag("--pretrain", "required: the policy checkpoint folder (config.json, *.safetensors, tokenizer.json)");
        if (string.IsNullOrWhiteSpace(Data.Prompts.PromptData)) throw Flag("--prompt_data", "required: a comma list of .jsonl/.json/.parquet files or folders");
        Data.Prompts.Validate();
        if (UsesCritic && string.IsNullOrWhiteSpace(Model.CriticPretrain))
            throw Flag("--critic_pretrain", "gae needs a critic: give --critic_pretrain (the CLI defaults it to --pretrain)");
        if (string.IsNullOrWhiteSpace(Model.ValueHeadPrefix)) throw Flag("--value_head_prefix", "must not be empty");
        foreach (var p in Model.FreezePrefix)
            if (string.IsNullOrWhiteSpace(p)) throw Flag("--freeze_prefix", "prefixes must not be empty");
        if (Model.GradientCheckpointingLayers < 0)
            throw Flag("--gradient_checkpointing_layers", $"must be ≥ 0 (0 = every layer), got {Model.GradientCheckpointingLayers}");
        if (Model.GradientCheckpointingLayers > 0 && !Model.GradientCheckpointing)
            throw Flag("--gradient_checkpointing_layers", "chooses how many layers --gradient_checkpointing recomputes: add --gradient_checkpointing");
        if (Model.PackingSharePrompts && !Model.PackingSamples)
            throw Flag("--packing_share_prompts", "shares prompts inside the packed sequence: add --packing_samples");
        if (Model.Lora is { } lora)
        {
            lora.Validate();
            if (lora.Dropout > 0 && Model.GradientCheckpointing)
                throw Flag("--lora_dropout", $"{lora.Dropout} with --gradient_checkpointing is not supported (the recomputed layer would draw " +
                                             "another dropout mask); use 0 (OpenRLHF's default) or drop --gradient_checkpointing");
        }
        if (Data.PromptMaxLen < 1 || Data.PromptMaxLen > MaxSequenceTokens)
            throw Flag("--prompt_max_len", $"must be in 1..{MaxSequenceTokens}, got {Data.PromptMaxLen}");
        _ = ImageOptions();

        var r = Rollout;
        Positive("--rollout_batch_size", r.RolloutBatchSize);
        Positive("--micro_rollout_batch_size", r.MicroRolloutBatchSize);
        Positive("--n_samples_per_prompt", r.SamplesPerPrompt);
        Positive("--generate_max_len", r.GenerateMaxLen);
        if (r.GenerateMaxLen > MaxSequenceTokens) throw Flag("--generate_max_len", $"must be at most {MaxSequenceTokens} tokens, got {r.GenerateMaxLen}");
        Positive("--eval_n_samples_per_prompt", r.EvalSamplesPerPrompt);
        Positive("--rollout_max_batch_rows", r.MaxBatchRows);
        if (r.MaxBatchTokens < 0) throw Flag("--rollout_max_batch_tokens", $"must be ≥ 0 (0 = no limit), got {r.MaxBatchTokens}");
        if (!(r.Temperature > 0) || double.IsInfinity(r.Temperature))
            throw Flag("--temperature", $"must be a finite number > 0 (training samples need a proper distribution), got {r.Temperature}");
        if (!(r.TopP > 0 && r.TopP <= 1)) throw Flag("--top_p", $"must be in (0, 1], got {r.TopP}");
        if (!(r.EvalTemperature >= 0) || double.IsInfinity(r.EvalTemperature))
            throw Flag("--eval_temperature", $"must be ≥ 0 (0 = greedy), got {r.EvalTemperature}");

        if (Reward.TimeBudgetMs <= 0) throw Flag("--reward_time_budget_ms", $"must be > 0, got {Reward.TimeBudgetMs}");
        if (Reward.RemoteRmUrl is { } url)
        {
            var urls = url.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (urls.Length == 0) throw Flag("--remote_rm_url", "empty URL list");
            foreach (var u in urls)
            {
                if (u.EndsWith(".py", StringComparison.OrdinalIgnoreCase))
                    throw Flag("--remote_rm_url", $"'{u}': Python reward functions are not supported; run a reward server (lmmr1 reward serve) or omit the flag for the built-in LMM-R1 rule reward");
                if (!Uri.TryCreate(u, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
                    throw Flag("--remote_rm_url", $"'{u}' is not an absolute http(s) URL");
            }
        }
        foreach (var rm in Reward.RewardPretrain)
            if (string.IsNullOrWhiteSpace(rm)) throw Flag("--reward_pretrain", "empty entry: expected a comma list of reward-model folders");
        if (Reward.RewardWeights is { } weights)
        {
            int k = Reward.RewardPretrain.Count;
            if (k == 0) throw Flag("--reward_weights", "needs --reward_pretrain (one weight per reward model, then optionally the rule / remote reward's)");
            if (weights.Count != k && weights.Count != k + 1)
                throw Flag("--reward_weights", $"expected {k} weight(s), one per --reward_pretrain model, or {k + 1} (the last for the " +
                                               $"{(Reward.RemoteRmUrl is null ? "rule" : "--remote_rm_url")} reward), got {weights.Count}");
            foreach (var w in weights)
                if (!double.IsFinite(w)) throw Flag("--reward_weights", $"weights must be finite numbers, got {w}");
        }
        if (!double.IsFinite(Reward.ClipMin) || !double.IsFinite(Reward.ClipMax) || Reward.ClipMin > Reward.ClipMax)
            throw Flag("--reward_clip_range", $"expected two finite numbers MIN MAX with MIN ≤ MAX, got {Reward.ClipMin} {Reward.ClipMax}");

        var a = Algorithm;
        if (a.Estimator.RequiresGroups() && r.SamplesPerPrompt < 2)
            throw Flag("--n_samples_per_prompt", $"{a.Estimator.CliName()} requires n_samples_per_prompt > 1, got {r.SamplesPerPrompt}");
        Unit("--gamma", a.Gamma);
        Unit("--lambd", a.Lambda);
        if (!(a.EpsClip > 0) || !double.IsFinite(a.EpsClip)) throw Flag("--eps_clip", $"must be > 0, got {a.EpsClip}");
        if (!(a.ValueClip >= 0) || !double.IsFinite(a.ValueClip)) throw Flag("--value_clip", $"must be ≥ 0, got {a.ValueClip}");
        if (!(a.InitKlCoef >= 0) || !double.IsFinite(a.InitKlCoef)) throw Flag("--init_kl_coef", $"must be ≥ 0, got {a.InitKlCoef}");
        if (a.KlTarget is { } t && (!(t > 0) || !double.IsFinite(t))) throw Flag("--kl_target", $"must be > 0 when set, got {t}");
        if (a.KlHorizon < 1) throw Flag("--kl_horizon", $"must be ≥ 1, got {a.KlHorizon}");
        if (!(a.EntropyLossCoef >= 0) || !double.IsFinite(a.EntropyLossCoef)) throw Flag("--entropy_loss_coef", $"must be ≥ 0, got {a.EntropyLossCoef}");
        if (a.PolicyLoss.Problem() is { } policyProblem) throw Flag(policyProblem.Flag, policyProblem.Message);
        if (a.DynamicFiltering)
        {
            if (r.SamplesPerPrompt < 2)
                throw Flag("--dynamic_filtering", $"needs groups: --n_samples_per_prompt must be > 1, got {r.SamplesPerPrompt}");
            if (!double.IsFinite(a.DynamicFilteringLow) || !double.IsFinite(a.DynamicFilteringHigh) || !(a.DynamicFilteringLow < a.DynamicFilteringHigh))
                throw Flag("--dynamic_filtering_reward_range", $"expected two finite numbers LOW HIGH with LOW < HIGH, got {a.DynamicFilteringLow} {a.DynamicFilteringHigh}");
            if (a.DynamicFilteringMaxRounds is < 0 or > 1000)
                throw Flag("--dynamic_filtering_max_rounds", $"must be in 0..1000, got {a.DynamicFilteringMaxRounds}");
        }
        if (Reward.OverlongBufferLen is { } buffer && (buffer < 1 || buffer > r.GenerateMaxLen))
            throw Flag("--overlong_buffer_len", $"must be in 1..{r.GenerateMaxLen} (--generate_max_len), got {buffer}");
        if (!(Reward.OverlongPenaltyFactor >= 0) || !double.IsFinite(Reward.OverlongPenaltyFactor))
            throw Flag("--overlong_penalty_factor", $"must be a finite number ≥ 0, got {Reward.OverlongPenaltyFactor}");

        var o = Optim;
        Positive("--train_batch_size", o.TrainBatchSize);
        Positive("--micro_train_batch_size", o.MicroTrainBatchSize);
        Positive("--max_epochs", o.MaxEpochs);
        Positive("--num_episodes", o.NumEpisodes);
        if (o.MaxGlobalSteps is { } m && m < 1) throw Flag("--max_global_steps", $"must be ≥ 1 when set, got {m}");
        if (o.TrainBatchSize % o.MicroTrainBatchSize != 0)
            throw Flag("--train_batch_size", $"{o.TrainBatchSize} is not a multiple of --micro_train_batch_size {o.MicroTrainBatchSize} (gradient accumulation needs whole micro-batches)");
        long samples = (long)r.RolloutBatchSize * r.SamplesPerPrompt;
        if (samples % o.TrainBatchSize != 0)
            throw Flag("--rollout_batch_size", $"rollout_batch_size × n_samples_per_prompt = {r.RolloutBatchSize} × {r.SamplesPerPrompt} = {samples} is not a multiple of --train_batch_size {o.TrainBatchSize}");
        NonNegative("--actor_learning_rate", o.ActorLearningRate);
        NonNegative("--critic_learning_rate", o.CriticLearningRate);
        if (!(o.LrWarmupRatio >= 0 && o.LrWarmupRatio <= 1)) throw Flag("--lr_warmup_ratio", $"must be in [0, 1], got {o.LrWarmupRatio}");
        if (!(o.Beta1 >= 0 && o.Beta1 < 1) || !(o.Beta2 >= 0 && o.Beta2 < 1))
            throw Flag("--adam_betas", $"expected two numbers in [0, 1), got {o.Beta1} {o.Beta2}");
        NonNegative("--l2", o.L2);
        if (!(o.MaxNorm > 0) || !double.IsFinite(o.MaxNorm)) throw Flag("--max_norm", $"must be > 0, got {o.MaxNorm}");

        var run = Run;
        if (string.IsNullOrWhiteSpace(run.SavePath)) throw Flag("--save_path", "must not be empty");
        if (string.IsNullOrWhiteSpace(run.CkptPath)) throw Flag("--ckpt_path", "must not be empty");
        if (run.SaveSteps == 0 || run.SaveSteps < -1) throw Flag("--save_steps", $"must be -1 (off) or ≥ 1, got {run.SaveSteps}");
        if (run.EvalSteps == 0 || run.EvalSteps < -1) throw Flag("--eval_steps", $"must be -1 (once per episode) or ≥ 1, got {run.EvalSteps}");
        if (run.LoggingSteps < 1) throw Flag("--logging_steps", $"must be ≥ 1, got {run.LoggingSteps}");
        if (run.MaxCkptNum < 1) throw Flag("--max_ckpt_num", $"must be ≥ 1, got {run.MaxCkptNum}");
        if (run.MaxNonFiniteSteps < 1) throw Flag("--max_nonfinite_steps", $"must be ≥ 1, got {run.MaxNonFiniteSteps}");
        if (run.LogSamples < 0) throw Flag("--log_samples", $"must be ≥ 0, got {run.LogSamples}");
        return this;
    }

    /// <summary>The image processor settings (LMM-R1 defaults, overridden by --processor_kwargs).</summary>
    public ImageProcessorOptions ImageOptions()
    {
        try { return new ImageProcessorOptions().WithProcessorKwargs(Data.ProcessorKwargs); }
        catch (InputException e) when (!e.Message.Contains("--processor_kwargs", StringComparison.Ordinal))
        {
            throw Flag("--processor_kwargs", e.Message);
        }
    }

    /// <summary>The resolved configuration as indented JSON, flag names as keys (dumped per run).</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    static readonly JsonSerializerOptions JsonOptions = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>Upper bound of --prompt_max_len and --generate_max_len (2^20 tokens, 32× Qwen2-VL's context): larger
    /// values are typos, and bounding them keeps every length product far from overflow.</summary>
    public const int MaxSequenceTokens = 1 << 20;

    static InputException Flag(string flag, string message) => InputException.At(null, null, flag, message);

    static void Positive(string flag, long v)
    {
        if (v < 1) throw Flag(flag, $"must be ≥ 1, got {v}");
    }

    static void NonNegative(string flag, double v)
    {
        if (!(v >= 0) || !double.IsFinite(v)) throw Flag(flag, $"must be a finite number ≥ 0, got {v}");
    }

    static void Unit(string flag, double v)
    {
        if (!(v >= 0 && v <= 1)) throw Flag(flag, $"must be in [0, 1], got {v}");
    }
}
