// `lmmr1 train`: LMM-R1's train_ppo_ray in one process — same flag names and defaults, bound once to PpoConfig. The
// Ray / vLLM / DeepSpeed placement and tuning flags LMM-R1's scripts pass are accepted and ignored with a one-line
// note each, so those scripts port line by line. --dry_run validates everything, reads the configs, tokenizer and
// data (not the weights) and prints the plan and a memory estimate. A run saves crash-safe checkpoints (and Hugging
// Face exports with --save_hf_ckpt), resumes exactly with --load_checkpoint, logs metrics.jsonl / samples.jsonl /
// TensorBoard, draws plots at each save and at the end, and stops cleanly on SIGINT/SIGTERM (a second one aborts).
using System.CommandLine;
using System.Diagnostics;
using System.Runtime.InteropServices;
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Rewards.Client;
using LmmR1.Text;
using LmmR1.Training.Checkpointing;
using LmmR1.Training.Logging;
using LmmR1.Training.Ppo;
using LmmR1.Training.RewardModels;
using LmmR1.Training.Runs;

namespace LmmR1.Cli.Commands;

public static class TrainCommand
{
    /// <summary>Flags upstream has that do not apply to one in-process trainer. Value = whether the flag takes values.</summary>
    static readonly (string Name, bool TakesValue, string Why)[] Ignored =
    [
        ("--ref_num_nodes", true, "placement"), ("--ref_num_gpus_per_node", true, "placement"),
        ("--actor_num_nodes", true, "placement"), ("--actor_num_gpus_per_node", true, "placement"),
        ("--critic_num_nodes", true, "placement"), ("--critic_num_gpus_per_node", true, "placement"),
        ("--reward_num_nodes", true, "placement"), ("--reward_num_gpus_per_node", true, "placement"),
        ("--colocate_actor_ref", false, "placement"), ("--colocate_critic_reward", false, "placement"),
        ("--colocate_all_models", false, "placement"),
        ("--vllm_num_engines", true, "vLLM"), ("--vllm_tensor_parallel_size", true, "vLLM"), ("--vllm_sync_backend", true, "vLLM"),
        ("--vllm_sync_with_ray", false, "vLLM"), ("--enable_prefix_caching", false, "vLLM"), ("--enforce_eager", false, "vLLM"),
        ("--vllm_enable_sleep", false, "vLLM"), ("--vllm_gpu_memory_utilization", true, "vLLM"), ("--limit_mm_per_prompt", true, "vLLM"),
        ("--zero_stage", true, "DeepSpeed"), ("--flash_attn", false, "attention backend is libtorch's SDPA"),
        ("--deepspeed_enable_sleep", false, "DeepSpeed"),
        ("--adam_offload", false, "DeepSpeed"), ("--overlap_comm", false, "DeepSpeed"), ("--zpg", true, "DeepSpeed"),
        ("--grad_accum_dtype", true, "DeepSpeed"), ("--deepcompile", false, "DeepSpeed"), ("--use_liger_kernel", false, "kernels"),
        ("--gradient_checkpointing_use_reentrant", false, "checkpointing is always non-reentrant"),
        ("--disable_fast_tokenizer", false, "one tokenizer"), ("--local_rank", true, "one process"),
        ("--ring_attn_size", true, "one process"), ("--ring_head_stride", true, "one process"),
        ("--actor_init_on_gpu", false, "--device decides"), ("--ref_reward_offload", false, "placement"),
        ("--full_determinism", false, "runs are seeded"), ("--max_len", true, "deprecated upstream"),
        ("--max_ckpt_mem", true, "--max_ckpt_num bounds checkpoints"), ("--use_ds_universal_ckpt", false, "DeepSpeed"),
        ("--disable_ds_ckpt", false, "DeepSpeed"), ("--perf", false, "unused upstream"), ("--use_ms", false, "ModelScope"),
        ("--prompt_split", true, "local files have no splits"), ("--eval_split", true, "local files have no splits"),
        ("--aux_loss_coef", true, "no MoE"), ("--ptx_coef", true, "unused upstream"),
        ("--use_wandb", true, "no wandb; use --use_tensorboard or metrics.jsonl"), ("--wandb_org", true, "no wandb"),
        ("--wandb_group", true, "no wandb"), ("--wandb_project", true, "no wandb"), ("--wandb_run_name", true, "no wandb"),
        ("--enable_ema", false, "no EMA model"), ("--ema_beta", true, "no EMA model"),
    ];

    public static Command Create()
    {
        var cmd = new Command("train", "RL-train a Qwen2-VL / Qwen2.5-VL policy with LMM-R1's rule reward (train_ppo_ray in one process)");
        var f = new Flags(cmd);
        cmd.SetAction(pr => InputsCli.Guard(() => Run(f, pr)));
        return cmd;
    }

    /// <summary>Every option of the command and its binding to PpoConfig.</summary>
    internal sealed class Flags
    {
        readonly Command cmd;
        // models
        public readonly Option<string?> Pretrain, CriticPretrain, ValueHeadPrefix, Device, RewardPretrain;
        public readonly Option<string[]> FreezePrefix;
        public readonly Option<bool> Bf16, GradientCheckpointing, PackingSamples, PackingSharePrompts, SaveValueNetwork;
        // data
        public readonly PromptDataFlags Data;
        public readonly Option<int> PromptMaxLen;
        public readonly Option<string?> ProcessorKwargs;
        // rollout
        public readonly Option<int> RolloutBatchSize, MicroRolloutBatchSize, NSamples, GenerateMaxLen, EvalN, MaxBatchRows;
        public readonly Option<long> MaxBatchTokens;
        public readonly Option<bool> KeepCudaGraphs;
        public readonly Option<bool> NoRolloutWarmup;
        public readonly Option<double> Temperature, TopP, EvalTemperature;
        // reward
        public readonly Option<string?> RemoteRmUrl, RewardWeights;
        public readonly Option<double[]> RewardClipRange;
        public readonly Option<int> RewardTimeBudgetMs;
        public readonly Option<bool> NormalizeReward;
        // algorithm
        public readonly Option<string> Estimator, KlEstimator;
        public readonly Option<double> Gamma, Lambd, EpsClip, ValueClip, InitKlCoef, EntropyLossCoef;
        public readonly Option<double?> KlTarget;
        public readonly Option<long> KlHorizon;
        public readonly Option<bool> UseKlLoss, NoAdvantageStdNorm;
        public readonly Option<int> FreezingActorSteps, GradientCheckpointingLayers;
        public readonly Option<string> PolicyLossType, LossAggMode;
        public readonly Option<double[]> EpsClipLowHigh, DynamicFilteringRange;
        public readonly Option<double?> DualClip;
        public readonly Option<bool> DynamicFiltering, MaskTruncatedCompletions;
        public readonly Option<int> DynamicFilteringMaxRounds;
        public readonly Option<int?> OverlongBufferLen;
        public readonly Option<double> OverlongPenaltyFactor;
        // optimisation
        public readonly Option<int> TrainBatchSize, MicroTrainBatchSize, MaxEpochs, NumEpisodes;
        public readonly Option<long?> MaxGlobalSteps;
        public readonly Option<double> ActorLr, CriticLr, WarmupRatio, L2, MaxNorm;
        public readonly Option<bool> RecomputeOldLogProb;
        public readonly Option<double[]> AdamBetas;
        // run
        public readonly Option<int> Seed, MaxCkptNum, MaxNonFiniteSteps, LogSamples;
        public readonly Option<long?> StopAfterStep;
        public readonly Option<string> SavePath, CkptPath;
        public readonly Option<long> SaveSteps, LoggingSteps, EvalSteps;
        public readonly Option<bool> LoadCheckpoint, SaveHfCkpt, DryRun;
        public readonly Option<string?> UseTensorboard;
        public readonly Option<int> LoraRank;
        public readonly Option<double> LoraAlpha, LoraDropout;
        public readonly Option<string[]> TargetModules, ExcludeModules;
        public readonly Option<bool> LoadIn4bit, LoraMerge;
        public readonly List<(Option Option, string Why)> IgnoredOptions = [];

        public Flags(Command cmd)
        {
            this.cmd = cmd;
            Pretrain = Add<string?>("--pretrain", "Policy checkpoint folder (config.json, *.safetensors, tokenizer.json)");
            CriticPretrain = Add<string?>("--critic_pretrain", "Critic backbone folder (gae only; default: --pretrain)");
            FreezePrefix = Add<string[]>("--freeze_prefix", "Freeze actor parameters whose names start with these prefixes (e.g. visual)");
            FreezePrefix.AllowMultipleArgumentsPerToken = true;
            FreezePrefix.Arity = ArgumentArity.OneOrMore;
            FreezePrefix.DefaultValueFactory = _ => [];
            Bf16 = Add<bool>("--bf16", "bf16 weights, fp32 master weights in AdamW");
            GradientCheckpointing = Add<bool>("--gradient_checkpointing", "Recompute decoder layers in backward");
            GradientCheckpointingLayers = Add("--gradient_checkpointing_layers", "With --gradient_checkpointing: recompute only the first N decoder layers (ours; 0 = all)", 0);
            PackingSamples = Add<bool>("--packing_samples", "Log-prob, reference, value and update passes without padding (rows packed into one sequence)");
            PackingSharePrompts = Add<bool>("--packing_share_prompts", "With --packing_samples: a prompt's samples hold the prompt once in the packed sequence; update micro-batches keep prompt groups together (ours)");
            ValueHeadPrefix = Add<string?>("--value_head_prefix", "Critic value head name", "score");
            Device = Add<string?>("--device", "cpu, cuda or cuda:N (one process holds every model)", "cpu");
            SaveValueNetwork = Add<bool>("--save_value_network", "Also save the critic to {save_path}_critic");
            RewardPretrain = Add<string?>("--reward_pretrain", "Comma list of reward-model folders (HF sequence-classification / OpenRLHF reward models: backbone + score head)");

            Data = PromptDataFlags.AddTo(cmd, promptDataRequired: false, includeSeed: false);
            PromptMaxLen = Add("--prompt_max_len", "Longest prompt in tokens (image pads expanded)", 1024);
            ProcessorKwargs = Add<string?>("--processor_kwargs", "JSON, e.g. {\"min_pixels\": 3136, \"max_pixels\": 12845056}");

            RolloutBatchSize = Add("--rollout_batch_size", "Prompts per rollout (one global step)", 1024);
            MicroRolloutBatchSize = Add("--micro_rollout_batch_size", "Samples per forward when computing log-probs/values", 8);
            NSamples = Add("--n_samples_per_prompt", "Responses sampled per prompt", 1);
            GenerateMaxLen = Add("--generate_max_len", "Max new tokens per response", 1024);
            Temperature = Add("--temperature", "Sampling temperature (also divides the training logits)", 1.0);
            TopP = Add("--top_p", "Nucleus sampling", 1.0);
            EvalTemperature = Add("--eval_temperature", "Evaluation temperature (0 = greedy)", 0.6);
            EvalN = Add("--eval_n_samples_per_prompt", "Evaluation samples per prompt", 4);
            MaxBatchRows = Add("--rollout_max_batch_rows", "Most samples decoded together (ours)", 512);
            MaxBatchTokens = Add("--rollout_max_batch_tokens", "KV-cache budget in positions, rows × (prompt + generate_max_len) (ours; 0 = no limit)", 1L << 19);
            KeepCudaGraphs = Add<bool>("--rollout_keep_cuda_graphs", "Keep the rollout's CUDA graphs and static KV caches allocated during the update (ours; default: freed before it, captured again next step)");
            NoRolloutWarmup = Add<bool>("--no_rollout_warmup", "On CUDA, skip the short warm-up rollout of the first step's prompts before that step (ours; default: run it, so that first-use costs of kernels, graph captures and code paths are paid at start, not in step 1)");

            RemoteRmUrl = Add<string?>("--remote_rm_url", "Comma list of reward servers (default: the built-in LMM-R1 rule reward)");
            RewardClipRange = Add<double[]>("--reward_clip_range", "MIN MAX reward clip (after group shaping)");
            RewardClipRange.Arity = new ArgumentArity(2, 2);
            RewardClipRange.AllowMultipleArgumentsPerToken = true;
            RewardClipRange.DefaultValueFactory = _ => [-10, 10];
            RewardTimeBudgetMs = Add("--reward_time_budget_ms", "Wall-clock budget of one rule-reward verification; spent = accuracy 0 (ours)", 30);
            NormalizeReward = Add<bool>("--normalize_reward", "Normalise each reward model's score with its config.json mean/std (no effect on rule/remote rewards, as upstream)");
            RewardWeights = Add<string?>("--reward_weights", "Comma list: one weight per --reward_pretrain model, then optionally the rule/remote reward's " +
                                                            "(default: 1 each, rule 0 — upstream's sum of the reward models) (ours)");

            Estimator = Add("--advantage_estimator", "gae, reinforce, reinforce_baseline, rloo, group_norm or dr_grpo", "gae");
            Gamma = Add("--gamma", "Discount", 1.0);
            Lambd = Add("--lambd", "GAE λ", 1.0);
            EpsClip = Add("--eps_clip", "PPO ratio clip", 0.2);
            ValueClip = Add("--value_clip", "Value clip", 0.2);
            InitKlCoef = Add("--init_kl_coef", "KL coefficient β (0: no reference model, no KL term)", 0.01);
            KlTarget = Add<double?>("--kl_target", "Adaptive KL target (unset: fixed β)");
            KlHorizon = Add("--kl_horizon", "Adaptive KL horizon", 10000L);
            KlEstimator = Add("--kl_estimator", "k1, k2 or k3", "k1");
            UseKlLoss = Add<bool>("--use_kl_loss", "KL as a loss term instead of in the reward");
            EntropyLossCoef = Add("--entropy_loss_coef", "Entropy bonus coefficient", 0.0);
            NoAdvantageStdNorm = Add<bool>("--no_advantage_std_norm", "Whiten advantages by the mean only");
            FreezingActorSteps = Add("--freezing_actor_steps", "Train only the critic for the first N global steps", -1);
            PolicyLossType = Add("--policy_loss_type", "ppo, gspo (sequence-level ratio) or cispo (clipped stop-gradient IS weights)", "ppo");
            EpsClipLowHigh = Add<double[]>("--eps_clip_low_high", "LOW HIGH: clip the ratio to [1 − LOW, 1 + HIGH] (DAPO clip-higher; default: --eps_clip on both sides)");
            EpsClipLowHigh.Arity = new ArgumentArity(2, 2);
            EpsClipLowHigh.AllowMultipleArgumentsPerToken = true;
            DualClip = Add<double?>("--dual_clip", "Dual-clip PPO bound c > 1 for negative advantages (unset: off)");
            LossAggMode = Add("--loss_agg_mode", string.Join(", ", LossAggregations.AllNames) + " (verl's names; micro-token-mean is LMM-R1's)",
                LossAggregations.Name(LossAggregation.TokenMean));
            DynamicFiltering = Add<bool>("--dynamic_filtering", "DAPO dynamic sampling: drop groups with equal scores (or a mean outside the range) and roll out more prompts");
            DynamicFilteringRange = Add<double[]>("--dynamic_filtering_reward_range", "LOW HIGH: keep groups with LOW < mean score < HIGH");
            DynamicFilteringRange.Arity = new ArgumentArity(2, 2);
            DynamicFilteringRange.AllowMultipleArgumentsPerToken = true;
            DynamicFilteringRange.DefaultValueFactory = _ => [0, 1];
            DynamicFilteringMaxRounds = Add("--dynamic_filtering_max_rounds", "Extra generation rounds per step before the batch is completed with dropped groups (ours)", 4);
            OverlongBufferLen = Add<int?>("--overlong_buffer_len", "DAPO soft overlong punishment over the last N tokens before --generate_max_len (unset: off)");
            OverlongPenaltyFactor = Add("--overlong_penalty_factor", "Largest overlong penalty", 1.0);
            MaskTruncatedCompletions = Add<bool>("--mask_truncated_completions", "Leave responses cut at --generate_max_len out of the loss (DAPO overlong filtering)");

            TrainBatchSize = Add("--train_batch_size", "Samples per optimizer step", 128);
            MicroTrainBatchSize = Add("--micro_train_batch_size", "Samples per forward/backward", 4);
            MaxEpochs = Add("--max_epochs", "Passes over each rollout", 1);
            NumEpisodes = Add("--num_episodes", "Passes over the prompt set", 1);
            MaxGlobalSteps = Add<long?>("--max_global_steps", "Stop after this many rollouts (overrides --num_episodes)");
            ActorLr = Add("--actor_learning_rate", "Actor peak LR", 1e-6);
            CriticLr = Add("--critic_learning_rate", "Critic peak LR", 9e-6);
            WarmupRatio = Add("--lr_warmup_ratio", "Warmup share of the schedule (cosine to 0.1·lr after)", 0.03);
            AdamBetas = Add<double[]>("--adam_betas", "BETA1 BETA2");
            AdamBetas.Arity = new ArgumentArity(2, 2);
            AdamBetas.AllowMultipleArgumentsPerToken = true;
            AdamBetas.DefaultValueFactory = _ => [0.9, 0.95];
            L2 = Add("--l2", "Weight decay", 0.0);
            MaxNorm = Add("--max_norm", "Gradient clipping norm", 1.0);
            RecomputeOldLogProb = Add<bool>("--recompute_old_log_prob", "Always compute the old log-probs in a separate actor forward before the update " +
                "(OpenRLHF's way), also where the update's own first optimizer step gives them exactly (ours; a verl fork's actor.recompute_old_log_prob)");

            Seed = Add("--seed", "Seed of everything random", 42);
            SavePath = Add("--save_path", "Final model folder (also metrics.jsonl and the resolved config)", "./ckpt");
            CkptPath = Add("--ckpt_path", "Checkpoint folder", "./ckpt/checkpoints_ppo_ray");
            SaveSteps = Add("--save_steps", "Checkpoint every N global steps (-1: never)", -1L);
            MaxCkptNum = Add("--max_ckpt_num", "Checkpoints kept", 3);
            LoadCheckpoint = Add<bool>("--load_checkpoint", "Resume from the newest checkpoint in --ckpt_path when there is one");
            SaveHfCkpt = Add<bool>("--save_hf_ckpt", "Also export a Hugging Face folder {ckpt_path}/global_step{N}_hf at each checkpoint");
            LoggingSteps = Add("--logging_steps", "Log every N global steps", 1L);
            UseTensorboard = Add<string?>("--use_tensorboard", "TensorBoard log folder");
            EvalSteps = Add("--eval_steps", "Evaluate every N global steps (-1: once per episode)", -1L);
            DryRun = Add<bool>("--dry_run", "Validate, read configs and data (not weights), print the plan and a memory estimate");
            LoraRank = Add("--lora_rank", "LoRA rank (0: full fine-tuning)", 0);
            LoraAlpha = Add("--lora_alpha", "LoRA α (scale α / r)", 16.0);
            LoraDropout = Add("--lora_dropout", "Dropout on the adapters' input (training forward only)", 0.0);
            TargetModules = Add<string[]>("--target_modules", "LoRA layers: all-linear (every language-model linear layer), q_proj … down_proj, or visual[.NAME] for the vision tower");
            TargetModules.AllowMultipleArgumentsPerToken = true;
            TargetModules.Arity = ArgumentArity.OneOrMore;
            TargetModules.DefaultValueFactory = _ => [LoraOptions.AllLinear];
            ExcludeModules = Add<string[]>("--exclude_modules", "Layers left out of --target_modules (name, dotted suffix or prefix such as model.layers.0)");
            ExcludeModules.AllowMultipleArgumentsPerToken = true;
            ExcludeModules.Arity = ArgumentArity.OneOrMore;
            ExcludeModules.DefaultValueFactory = _ => [];
            LoraMerge = Add<bool>("--lora_merge", "With --lora_rank: also write {save_path}_merged, a Hugging Face checkpoint with the adapters merged (ours)");
            LoadIn4bit = Add<bool>("--load_in_4bit", "QLoRA: not supported (TorchSharp has no 4-bit kernels)");
            MaxNonFiniteSteps = Add("--max_nonfinite_steps", "Stop after this many optimizer steps in a row skipped for a non-finite loss or gradient (ours)", 3);
            LogSamples = Add("--log_samples", "Generations per logging step written to samples.jsonl and TensorBoard text (ours)", 4);
            StopAfterStep = Add<long?>("--stop_after_step", "Stop cleanly after this global step (checkpoint saved; continue later with --load_checkpoint) (ours)");

            foreach (var (name, takesValue, why) in Ignored)
            {
                Option o = takesValue
                    ? new Option<string[]>(name) { Hidden = true, Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = true }
                    : new Option<bool>(name) { Hidden = true };
                cmd.Options.Add(o);
                IgnoredOptions.Add((o, why));
            }
        }

        Option<T> Add<T>(string name, string description)
        {
            var o = new Option<T>(name) { Description = description };
            cmd.Options.Add(o);
            return o;
        }

        Option<T> Add<T>(string name, string description, T defaultValue)
        {
            var o = new Option<T>(name) { Description = description, DefaultValueFactory = _ => defaultValue };
            cmd.Options.Add(o);
            return o;
        }

        /// <summary>The flags as given → config (not yet resolved or validated) and a note per ignored flag.</summary>
        public (PpoConfig Config, List<string> Notes) Bind(ParseResult pr)
        {
            var notes = new List<string>();
            foreach (var (o, why) in IgnoredOptions)
                if (pr.GetResult(o) is { Implicit: false }) notes.Add($"note: ignoring {o.Name} ({why}; one in-process trainer here)");
            var lora = LoraFlags.Bind(pr, LoraRank, LoraAlpha, LoraDropout, TargetModules, ExcludeModules, LoadIn4bit, LoraMerge, notes);

            string estimator = pr.GetValue(Estimator)!;
            AdvantageEstimator est;
            try { est = AdvantageEstimators.Parse(estimator); }
            catch (ArgumentException e) { throw InputException.At(null, null, "--advantage_estimator", e.Message); }
            KlEstimator klEst;
            try { klEst = Kl.ParseEstimator(pr.GetValue(KlEstimator)!); }
            catch (ArgumentException e) { throw InputException.At(null, null, "--kl_estimator", e.Message); }
            PolicyLossType policyLoss = pr.GetValue(PolicyLossType) switch
            {
                "ppo" => Algorithms.PolicyLossType.Ppo,
                "gspo" => Algorithms.PolicyLossType.Gspo,
                "cispo" => Algorithms.PolicyLossType.Cispo,
                var other => throw InputException.At(null, null, "--policy_loss_type", $"expected ppo, gspo or cispo, got '{other}'"),
            };
            string aggName = pr.GetValue(LossAggMode)!;
            var agg = LossAggregations.TryParse(aggName)
                      ?? throw InputException.At(null, null, "--loss_agg_mode", $"expected one of {string.Join(", ", LossAggregations.AllNames)}, got '{aggName}'");
            var clipLowHigh = pr.GetValue(EpsClipLowHigh);
            var filterRange = pr.GetValue(DynamicFilteringRange)!;
            var clip = pr.GetValue(RewardClipRange)!;
            var betas = pr.GetValue(AdamBetas)!;
            int seed = pr.GetValue(Seed);

            var config = new PpoConfig
            {
                Model = new PpoModelSettings
                {
                    Pretrain = pr.GetValue(Pretrain),
                    CriticPretrain = pr.GetValue(CriticPretrain),
                    FreezePrefix = pr.GetValue(FreezePrefix) ?? [],
                    Bf16 = pr.GetValue(Bf16),
                    GradientCheckpointing = pr.GetValue(GradientCheckpointing),
                    GradientCheckpointingLayers = pr.GetValue(GradientCheckpointingLayers),
                    PackingSamples = pr.GetValue(PackingSamples),
                    PackingSharePrompts = pr.GetValue(PackingSharePrompts),
                    ValueHeadPrefix = pr.GetValue(ValueHeadPrefix) ?? "score",
                    Device = pr.GetValue(Device) ?? "cpu",
                    SaveValueNetwork = pr.GetValue(SaveValueNetwork),
                    Lora = lora,
                },
                Data = new PpoDataSettings
                {
                    Prompts = Data.Bind(pr, seed),
                    PromptMaxLen = pr.GetValue(PromptMaxLen),
                    ProcessorKwargs = pr.GetValue(ProcessorKwargs),
                },
                Rollout = new RolloutSettings
                {
                    RolloutBatchSize = pr.GetValue(RolloutBatchSize),
                    MicroRolloutBatchSize = pr.GetValue(MicroRolloutBatchSize),
                    SamplesPerPrompt = pr.GetValue(NSamples),
                    GenerateMaxLen = pr.GetValue(GenerateMaxLen),
                    Temperature = pr.GetValue(Temperature),
                    TopP = pr.GetValue(TopP),
                    EvalTemperature = pr.GetValue(EvalTemperature),
                    EvalSamplesPerPrompt = pr.GetValue(EvalN),
                    MaxBatchRows = pr.GetValue(MaxBatchRows),
                    MaxBatchTokens = pr.GetValue(MaxBatchTokens),
                    KeepCudaGraphs = pr.GetValue(KeepCudaGraphs),
                    WarmUp = !pr.GetValue(NoRolloutWarmup),
                },
                Reward = new RewardSettings
                {
                    RemoteRmUrl = pr.GetValue(RemoteRmUrl),
                    ClipMin = clip[0],
                    ClipMax = clip[1],
                    NormalizeReward = pr.GetValue(NormalizeReward),
                    TimeBudgetMs = pr.GetValue(RewardTimeBudgetMs),
                    OverlongBufferLen = pr.GetValue(OverlongBufferLen),
                    OverlongPenaltyFactor = pr.GetValue(OverlongPenaltyFactor),
                    MaskTruncatedCompletions = pr.GetValue(MaskTruncatedCompletions),
                    RewardPretrain = pr.GetValue(RewardPretrain) is { } rms ? rms.Split(',', StringSplitOptions.TrimEntries) : [],
                    RewardWeights = pr.GetValue(RewardWeights) is { } rw ? ParseWeights(rw) : null,
                },
                Algorithm = new AlgorithmSettings
                {
                    Estimator = est,
                    Gamma = pr.GetValue(Gamma),
                    Lambda = pr.GetValue(Lambd),
                    EpsClip = pr.GetValue(EpsClip),
                    ValueClip = pr.GetValue(ValueClip),
                    InitKlCoef = pr.GetValue(InitKlCoef),
                    KlTarget = pr.GetValue(KlTarget),
                    KlHorizon = pr.GetValue(KlHorizon),
                    KlEstimator = klEst,
                    UseKlLoss = pr.GetValue(UseKlLoss),
                    EntropyLossCoef = pr.GetValue(EntropyLossCoef),
                    AdvantageStdNorm = !pr.GetValue(NoAdvantageStdNorm),
                    FreezingActorSteps = pr.GetValue(FreezingActorSteps),
                    PolicyLossType = policyLoss,
                    EpsClipLow = clipLowHigh is { Length: 2 } ? clipLowHigh[0] : null,
                    EpsClipHigh = clipLowHigh is { Length: 2 } ? clipLowHigh[1] : null,
                    DualClip = pr.GetValue(DualClip),
                    LossAggMode = agg,
                    DynamicFiltering = pr.GetValue(DynamicFiltering),
                    DynamicFilteringLow = filterRange[0],
                    DynamicFilteringHigh = filterRange[1],
                    DynamicFilteringMaxRounds = pr.GetValue(DynamicFilteringMaxRounds),
                },
                Optim = new OptimSettings
                {
                    TrainBatchSize = pr.GetValue(TrainBatchSize),
                    MicroTrainBatchSize = pr.GetValue(MicroTrainBatchSize),
                    MaxEpochs = pr.GetValue(MaxEpochs),
                    NumEpisodes = pr.GetValue(NumEpisodes),
                    MaxGlobalSteps = pr.GetValue(MaxGlobalSteps),
                    ActorLearningRate = pr.GetValue(ActorLr),
                    CriticLearningRate = pr.GetValue(CriticLr),
                    LrWarmupRatio = pr.GetValue(WarmupRatio),
                    Beta1 = betas[0],
                    Beta2 = betas[1],
                    L2 = pr.GetValue(L2),
                    MaxNorm = pr.GetValue(MaxNorm),
                    RecomputeOldLogProb = pr.GetValue(RecomputeOldLogProb),
                },
                Run = new RunSettings
                {
                    Seed = seed,
                    SavePath = pr.GetValue(SavePath)!,
                    CkptPath = pr.GetValue(CkptPath)!,
                    SaveSteps = pr.GetValue(SaveSteps),
                    MaxCkptNum = pr.GetValue(MaxCkptNum),
                    LoadCheckpoint = pr.GetValue(LoadCheckpoint),
                    SaveHfCkpt = pr.GetValue(SaveHfCkpt),
                    LoggingSteps = pr.GetValue(LoggingSteps),
                    UseTensorboard = pr.GetValue(UseTensorboard),
                    EvalSteps = pr.GetValue(EvalSteps),
                    MaxNonFiniteSteps = pr.GetValue(MaxNonFiniteSteps),
                    LogSamples = pr.GetValue(LogSamples),
                },
            };
            return (config, notes);
        }
    }

    static double[] ParseWeights(string list) =>
        [.. list.Split(',', StringSplitOptions.TrimEntries).Select(x =>
            double.TryParse(x, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v
            : throw InputException.At(null, null, "--reward_weights", $"expected a comma list of numbers, got '{x}' in '{list}'"))];

    static int Run(Flags f, ParseResult pr)
    {
        var (raw, notes) = f.Bind(pr);
        var (config, resolveNotes) = raw.Resolve();
        config.Validate();
        foreach (var n in notes.Concat(resolveNotes)) Console.Error.WriteLine(n);
        bool dry = pr.GetValue(f.DryRun);

        // Configs, tokenizer and data: read for the dry run and the real run alike.
        string pretrain = config.Model.Pretrain!;
        var actorConfig = LoadConfig(pretrain, "--pretrain");
        QwenVLConfig? criticConfig = config.UsesCritic ? LoadConfig(config.Model.CriticPretrain!, "--critic_pretrain") : null;
        config.Model.Lora?.Select(LoraLayout.LinearLayers(actorConfig).Select(l => l.Name).ToList());   // --target_modules against the config
        config.Model.CheckCheckpointLayers(actorConfig.Text.NumLayers);
        var tokenizer = LoadTokenizer(pretrain);
        if (tokenizer.VocabSize > actorConfig.Text.VocabSize)
            throw InputException.At(null, null, "--pretrain", $"the tokenizer has {tokenizer.VocabSize} ids but config.json's vocab_size is {actorConfig.Text.VocabSize}");
        // Output folders writable, room for a checkpoint and the final model: found now, not at the first save.
        var disk = DiskEstimate.Of(config, actorConfig, criticConfig);
        SaveSafety.CheckOutputs(config, disk, Console.Error.WriteLine);
        var processor = new QwenVLProcessor(tokenizer, new QwenVLProcessorOptions { Image = config.ImageOptions() });
        var train = PromptDataset.Load(config.Data.Prompts, Console.Error);
        var eval = string.IsNullOrWhiteSpace(config.Data.Prompts.EvalDataset) ? null : PromptDataset.LoadEval(config.Data.Prompts, Console.Error);
        var plan = PpoPlan.Create(config, train.Count);
        var rewardInfos = config.Reward.RewardPretrain.Select(d => RewardCheckpointInfo.Inspect(d, config.Model.ValueHeadPrefix)).ToList();
        foreach (var rm in rewardInfos)
        {
            RewardModelSet.CheckCompatible(rm, actorConfig, tokenizer.VocabSize, train.Any(s => s.Images.Count > 0) || (eval?.Any(s => s.Images.Count > 0) ?? false));
            string rmTokenizer = Path.Combine(rm.Dir, "tokenizer.json"), policyTokenizer = Path.Combine(pretrain, "tokenizer.json");
            if (File.Exists(rmTokenizer) && !File.ReadAllBytes(rmTokenizer).AsSpan().SequenceEqual(File.ReadAllBytes(policyTokenizer)))
                Console.Error.WriteLine($"note: {rmTokenizer} differs from the policy's: a reward model scores the policy's token ids (as upstream), " +
                                        "so its vocabulary must be the policy's");
            if (config.Reward.NormalizeReward && !rm.HasMeanStd)
                Console.Error.WriteLine($"note: --normalize_reward: {rm.Dir}'s config.json has no mean/std, so its scores stay as they are (mean 0, std 1, as upstream)");
        }

        Console.WriteLine($"lmmr1 train: {config.Algorithm.Estimator.CliName()} on {Path.GetFullPath(pretrain)} " +
                          $"({actorConfig.ModelType}, {ModelSize.Of(actorConfig).Total / 1e9:F2} B parameters, {(config.Model.Bf16 ? "bf16" : "fp32")})");
        Console.WriteLine($"data: {train.Count} prompts from {string.Join(", ", train.Parts.Select(p => $"{p.Spec} ({p.Rows})"))}" +
                          (eval is null ? "" : $"; eval: {eval.Count} prompts") +
                          $"; {train.Count(s => s.Images.Count > 0)} with images");
        Console.Write(plan.Describe(config));
        Console.Write(RewardModelSet.Describe(config.Reward));
        Console.Write(MemoryEstimate.Of(config, actorConfig, criticConfig).WithRewardModels(config, [.. rewardInfos.Select(i => i.Config)]).Describe(config.Model.Device));
        Console.WriteLine(disk.Describe());
        if (dry)
        {
            Console.WriteLine("dry run: configuration, checkpoints' config.json (against the weights' headers), tokenizer, data (every image " +
                              "decoded) and output folders (writable, with room) are valid; no weights loaded");
            return 0;
        }

        var device = ModelCommands.ParseDevice(config.Model.Device);
        long? stopAfter = pr.GetValue(f.StopAfterStep);
        if (stopAfter is < 1) throw InputException.At(null, null, "--stop_after_step", $"must be ≥ 1, got {stopAfter}");
        var store = new CheckpointStore(config.Run.CkptPath, config.Run.MaxCkptNum);
        var view = new TrainProgressView();
        void Log(string s) => view.Log(s);

        // Resume: the newest complete checkpoint, checked against this run's config and data before any weights load.
        string? resumeFrom = null;
        if (config.Run.LoadCheckpoint)
        {
            resumeFrom = store.FindLatest();
            if (resumeFrom is null) Log($"--load_checkpoint: no complete checkpoint in {store.Root}; starting a fresh run");
            else foreach (var n in PpoCheckpoint.CheckCompatible(resumeFrom, config, train)) Console.Error.WriteLine(n);
        }
        else if (store.FindLatest() is { } existing)
            Console.Error.WriteLine($"note: {store.Root} already holds checkpoints (newest: {Path.GetFileName(existing)}); this run starts fresh " +
                                    "and its saves go next to them (pass --load_checkpoint to resume instead)");

        TorchSharp.torch.manual_seed(config.Run.Seed);
        Directory.CreateDirectory(config.Run.SavePath);
        AtomicFile.SweepStaleTempFiles(config.Run.SavePath);   // temporary files of a killed earlier run
        AtomicFile.WriteAllText(Path.Combine(config.Run.SavePath, "train_config.json"), config.ToJson());

        using var models = PpoModels.Load(config, device, Log);
        using var rewardModels = RewardModelSet.Load(config, device, Log);
        IRewardModel reward = config.Reward.RemoteRmUrl is { } urls
            ? new RemoteRewardModel(RemoteRewardOptions.FromUrlList(urls))
            : new RuleRewardModel(new RewardOptions { TimeBudget = TimeSpan.FromMilliseconds(config.Reward.TimeBudgetMs) });
        try
        {
            using var trainer = new PpoTrainer(config, models, processor, train, eval, reward, null, Log, rewardModels);
            if (resumeFrom is not null)
            {
                trainer.Resume(resumeFrom);
                MetricsLog.RestoreFrom(resumeFrom, config.Run.SavePath);
            }
            using var metrics = new MetricsLog(config.Run.SavePath, config.Run.UseTensorboard, resumeFrom is null ? null : trainer.State.GlobalStep);
            trainer.AttachMetrics(metrics);

            // SIGINT / SIGTERM: finish the step, save, exit 0; a second signal aborts at once (the newest complete
            // checkpoint stays valid: saves are atomic).
            using var stop = new CancellationTokenSource();
            int signals = 0;
            void OnSignal(PosixSignalContext ctx)
            {
                ctx.Cancel = true;
                if (Interlocked.Increment(ref signals) == 1)
                {
                    stop.Cancel();
                    Console.Error.WriteLine($"received {ctx.Signal}: finishing global step {trainer.State.GlobalStep + 1}, saving a checkpoint and exiting " +
                                            "(send it again to abort without saving)");
                }
                else
                {
                    Console.Error.WriteLine($"received {ctx.Signal} again: aborting now; resume from the newest checkpoint with --load_checkpoint");
                    Environment.Exit(ctx.Signal == PosixSignal.SIGTERM ? 143 : 130);
                }
            }
            using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

            var result = view.Run(trainer, () => trainer.Fit(stop.Token, stopAfter));
            if (result.StoppedEarly is { } why)
                Log($"stopped after global step {trainer.State.GlobalStep} of {trainer.Plan.MaxGlobalSteps} ({why}); checkpoint {result.LastCheckpoint}; " +
                    "continue with the same command and --load_checkpoint");
        }
        finally
        {
            (reward as IDisposable)?.Dispose();
        }
        return 0;
    }

    static QwenVLConfig LoadConfig(string dir, string flag)
    {
        if (!Directory.Exists(dir)) throw InputException.At(null, null, flag, $"'{dir}' is not a folder");
        var cfg = QwenVLConfig.Load(dir);
        // The dry run reads no weights, but their headers are cheap: config.json must agree with them.
        if (Directory.EnumerateFiles(dir, "*.safetensors").Any())
        {
            using var ckpt = Models.Safetensors.SafetensorsCheckpoint.Open(dir);
            ConfigWeightsCheck.Check(cfg, ckpt, Path.Combine(dir, QwenVLConfig.FileName));
        }
        return cfg;
    }

    static QwenTokenizer LoadTokenizer(string dir)
    {
        if (!File.Exists(Path.Combine(dir, "tokenizer.json")))
            throw InputException.At(Path.Combine(dir, "tokenizer.json"), null, "--pretrain", "tokenizer.json not found: the policy folder must hold the tokenizer too");
        return QwenTokenizer.Load(dir);
    }
}
