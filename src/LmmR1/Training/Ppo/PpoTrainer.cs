// The PPO / REINFORCE++ / GRPO-family trainer of LMM-R1 in one process (ppo_trainer.PPOTrainer.fit + ppo_actor /
// ppo_critic .ppo_train). One global step = one rollout of rollout_batch_size prompts × n samples, read top to bottom
// in TrainStep (as verl's RayPPOTrainer.fit): generate → reward → old log-probs → reference → values → advantages →
// update (critic, then actor unless frozen) → KL control → log → eval → save, each phase timed and each returning a
// typed result the next phases take. The old log-probs of the samples of the update's first optimizer step come from
// that step's own forward when nothing needs them earlier (OldLogProbPlan): the separate pass covers only the others.
// The update (one routine for actor and critic) makes max_epochs shuffled passes
// over the rollout in micro-batches of micro_train_batch_size, accumulating gradients (loss / accumulation steps, as
// DeepSpeed scales them) over train_batch_size samples per optimizer step; the LR schedule advances per optimizer
// step. An optimizer step whose loss or gradient is not finite is skipped (weights and AdamW state untouched) and
// --max_nonfinite_steps of them in a row stop the run with advice. The trainer writes its checkpoints
// (--save_steps, and on a stop) and the final model; Fit stops early one way: the stop token (SIGINT/SIGTERM in the
// CLI) or --stop_after_step finishes the current step, saves it and returns. All loop state lives in PpoTrainState.
using System.Diagnostics;
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Text;
using LmmR1.Training.Checkpointing;
using LmmR1.Training.Logging;
using LmmR1.Training.Optimization;
using LmmR1.Training.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

/// <summary>What the actor's loss reads, rollout-wide [N, A]: old log-probs, advantages and, with --use_kl_loss and
/// a reference model, the reference log-probs (null: no KL loss term, or a zero one for --use_kl_loss with β = 0).</summary>
public sealed record ActorTargets(Tensor OldLogProbs, Tensor Advantages, Tensor? ReferenceLogProbs)
{
    /// <summary>Per sample: left out of the actor's loss (--mask_truncated_completions: truncated samples); null: none.</summary>
    public IReadOnlyList<bool>? Excluded { get; init; }
    /// <summary>Per sample: its old log-probs come from the update's own forward in the first optimizer step of epoch 0
    /// (OldLogProbPlan), which writes them into <see cref="OldLogProbs"/>'s rows (not read before); null: none.</summary>
    public IReadOnlyList<bool>? FromUpdate { get; init; }
}

/// <summary>What the critic's loss reads, rollout-wide [N, A]: the values at rollout time and the returns.</summary>
public sealed record CriticTargets(Tensor OldValues, Tensor Returns);

public sealed class PpoTrainer : IDisposable
{
    readonly PpoConfig config;
    readonly PpoModels models;
    readonly QwenTokenizer tokenizer;
    readonly PromptDataset train;
    readonly PromptDataset? eval;
    IMetricsSink? metrics;
    readonly Action<string> log;
    readonly IKlController kl;
    readonly ExperienceMaker maker;
    readonly CheckpointStore store;
    string? lastCheckpoint;
    long lastSavedStep = -1;

    public PpoConfig Config => config;
    public PpoPlan Plan { get; }
    public PpoTrainState State { get; private set; } = new();
    public ModelOptimizer ActorOptimizer { get; }
    public ModelOptimizer? CriticOptimizer { get; }
    public ExperienceMaker Maker => maker;
    public PpoModels Models => models;
    public IKlController KlController => kl;

    /// <summary>Raised after every global step (after logging, evaluation and checkpointing).</summary>
    public event Action<PpoStepReport>? StepCompleted;
    /// <summary>Phase progress within a step (generate: samples and tokens; update: micro-batches; save), for live views.</summary>
    public event Action<TrainProgress>? Progress;
    /// <summary>Called at the end of every timed phase of a step with the phase's name (benchmarks read memory peaks here).</summary>
    public Action<string>? PhaseEnded { get; set; }
    /// <summary>Test hook: called before every actor optimizer step with the accumulated gradients in place.</summary>
    internal Action? BeforeActorStep { get; set; }
    /// <summary>Test hook: replaces each actor micro-batch loss before backward (e.g. to inject a NaN).</summary>
    internal Func<Tensor, Tensor>? TransformActorLoss { get; set; }

    /// <param name="config">A resolved configuration, validated once by the caller (PpoConfig.Validate).</param>
    /// <param name="models">Models prepared for this config (PpoModels.Load or Prepare, which check the critic and
    /// reference the config needs).</param>
    /// <param name="processor">The Qwen2-VL processor (tokenizer + image processor with --processor_kwargs).</param>
    /// <param name="train">Training prompts.</param>
    /// <param name="eval">Evaluation prompts, or null.</param>
    /// <param name="reward">The reward model (built-in rule reward or a remote client).</param>
    /// <param name="metrics">Where metrics go (a MetricsLog is also copied into checkpoints and drawn as plots), or null.</param>
    /// <param name="log">Human-readable progress lines.</param>
    /// <param name="rewardModels">--reward_pretrain's models (owned by the caller), or null.</param>
    public PpoTrainer(PpoConfig config, PpoModels models, QwenVLProcessor processor, PromptDataset train, PromptDataset? eval,
                      IRewardModel reward, IMetricsSink? metrics = null, Action<string>? log = null, RewardModels.RewardModelSet? rewardModels = null)
    {
        this.config = config;
        this.models = models;
        tokenizer = processor.Tokenizer;
        this.train = train;
        this.eval = eval;
        this.metrics = metrics;
        this.log = log ?? (_ => { });
        if (tokenizer.VocabSize > models.Actor.Config.Text.VocabSize)
            throw new InputException($"{tokenizer.Source}: the tokenizer has {tokenizer.VocabSize} ids but the model's vocabulary holds {models.Actor.Config.Text.VocabSize}");

        Plan = PpoPlan.Create(config, train.Count);
        var o = config.Optim;
        ActorOptimizer = new ModelOptimizer(models.Actor.named_parameters().Select(p => (p.name, p.parameter)),
            new LrSchedule(o.ActorLearningRate, Plan.SchedulerSteps, Plan.WarmupSteps), o.Beta1, o.Beta2, o.L2, o.MaxNorm);
        if (models.Critic is { } critic)
            CriticOptimizer = new ModelOptimizer(critic.NamedParameters(),
                new LrSchedule(o.CriticLearningRate, Plan.SchedulerSteps, Plan.WarmupSteps), o.Beta1, o.Beta2, o.L2, o.MaxNorm);
        kl = LmmR1.Algorithms.KlController.Create(config.Algorithm.InitKlCoef, config.Algorithm.KlTarget, config.Algorithm.KlHorizon);
        State.KlCoef = kl.Value;
        if (config.Reward.RewardPretrain.Count != (rewardModels?.Models.Count ?? 0))
            throw new ArgumentException($"the config names {config.Reward.RewardPretrain.Count} reward model(s) but {rewardModels?.Models.Count ?? 0} were given");
        maker = new ExperienceMaker(config, models, tokenizer, processor, reward, rewardModels) { Log = this.log };
        store = new CheckpointStore(config.Run.CkptPath, config.Run.MaxCkptNum);
    }

    /// <summary>Sets (or replaces) where metrics go, e.g. once a resumed run knows its step.</summary>
    public void AttachMetrics(IMetricsSink? sink) => metrics = sink;

    /// <summary>The prompt order of an episode (what a checkpoint records as the data order).</summary>
    public int[] DataOrder(int episode) => train.ShuffledOrder(episode);

    // ================================================================ fit

    /// <summary>Runs global steps until --max_global_steps / num_episodes are done (ppo_trainer.fit), then saves the
    /// final model. <paramref name="stop"/> (or reaching <paramref name="stopAfterStep"/>) ends the run early: the
    /// current step finishes and is saved as a checkpoint.</summary>
    public PpoFitResult Fit(CancellationToken stop = default, long? stopAfterStep = null)
    {
        int rb = config.Rollout.RolloutBatchSize;
        (int Episode, int[] Prompts) order = (-1, []);
        while (State.GlobalStep < Plan.MaxGlobalSteps)
        {
            // Dynamic filtering's extra rounds consume prompts too: an episode also ends when a full rollout no longer fits.
            long start = State.RolloutInEpisode * rb + State.ExtraPromptsInEpisode;
            if (State.RolloutInEpisode >= Plan.RolloutsPerEpisode || start + rb > train.Count)
            {
                if (config.Optim.MaxGlobalSteps is null && State.Episode + 1 >= config.Optim.NumEpisodes)
                {
                    log($"the prompts of {config.Optim.NumEpisodes} episode(s) are used up after global step {State.GlobalStep} of " +
                        $"{Plan.MaxGlobalSteps} (dynamic filtering consumed {State.ExtraPromptsInEpisode} extra prompts this episode)");
                    break;
                }
                State.Episode++;
                State.RolloutInEpisode = 0;
                State.ExtraPromptsInEpisode = 0;
                start = 0;
            }
            if (order.Episode != State.Episode) order = (State.Episode, DataOrder(State.Episode));
            var prompts = order.Prompts.Skip((int)start).Take(rb).Select(i => train[i]).ToList();
            IReadOnlyList<PromptSample> reserve = config.Algorithm.DynamicFiltering
                ? order.Prompts.Skip((int)start + rb).Take(rb * config.Algorithm.DynamicFilteringMaxRounds).Select(i => train[i]).ToList()
                : [];
            if (!warmedUp && config.Rollout.WarmUp && models.Actor.Device.type == DeviceType.CUDA)
                log($"rollout warm-up before step {State.GlobalStep + 1} ({prompts.Count} prompts × {config.Rollout.SamplesPerPrompt}, " +
                    $"{RolloutWarmUp.TokensFor(config.Rollout.GenerateMaxLen)} new tokens; --no_rollout_warmup skips it): {WarmUp(prompts)}");
            warmedUp = true;
            TrainStep(prompts, reserve);
            string? why = stop.IsCancellationRequested ? "a stop was requested"
                : stopAfterStep is { } last && State.GlobalStep >= last ? $"--stop_after_step {last}" : null;
            if (why is not null && State.GlobalStep < Plan.MaxGlobalSteps)
            {
                if (lastSavedStep != State.GlobalStep) SaveCheckpoint(new PhaseTimer(models.Actor.Device));
                return new PpoFitResult(why, lastCheckpoint);
            }
        }
        SaveFinal();
        return new PpoFitResult(null, lastCheckpoint);
    }

    bool warmedUp;

    /// <summary>The warm-up rollout (RolloutWarmUp) of <paramref name="prompts"/>, the next step's own: Fit runs it once
    /// before a process's first step on CUDA (unless --no_rollout_warmup); `bench rl-step` calls it directly. The state,
    /// the RNGs and the weights are untouched, so the next step is the step a run without it takes.</summary>
    public RolloutWarmUp WarmUp(IReadOnlyList<PromptSample> prompts) =>
        maker.WarmUp(prompts, config.Rollout.SamplesPerPrompt, config.Rollout.Temperature,
            PpoSeeds.Sampling(config.Run.Seed, State.GlobalStep + 1), RolloutWarmUp.NewTokens);

    /// <summary>One global step on the given prompts; with --dynamic_filtering, <paramref name="reserve"/> holds the
    /// episode's next prompts, which extra rounds may consume.</summary>
    public PpoStepReport TrainStep(IReadOnlyList<PromptSample> prompts, IReadOnlyList<PromptSample>? reserve = null)
    {
        var timer = new PhaseTimer(models.Actor.Device) { Ended = PhaseEnded };
        var clock = Stopwatch.StartNew();
        long step = State.GlobalStep + 1;    // upstream's `steps` (1-based)
        RunHooks.Reach("step-start", step);

        (Rollout, IReadOnlyList<RewardResult>) GenerateAndScore(IReadOnlyList<PromptSample> batch, int round)
        {
            var r = timer.Time("generate", () => maker.Generate(batch, config.Rollout.SamplesPerPrompt, config.Rollout.Temperature,
                round == 0 ? PpoSeeds.Sampling(config.Run.Seed, step) : PpoSeeds.FilterRound(config.Run.Seed, step, round),
                progress: g => Progress?.Invoke(new TrainProgress(step, "generate", g.SamplesDone, g.SamplesTotal, g.TokensGenerated))));
            try { return (r, timer.Time("reward", () => maker.Score(r))); }
            catch { r.Dispose(); throw; }
        }
        using var filtered = config.Algorithm.DynamicFiltering
            ? DynamicFiltering.Run(prompts, reserve ?? [], config.Algorithm.DynamicFilteringMaxRounds,
                (config.Algorithm.DynamicFilteringLow, config.Algorithm.DynamicFilteringHigh), GenerateAndScore, models.Actor.Device)
            : FilteredRollout.Unfiltered(GenerateAndScore(prompts, 0));
        var rollout = filtered.Batch;
        RunHooks.Reach("after-generate", step);
        // Log-probs, reference and update need the memory the rollout's CUDA graphs hold (their static KV caches, ~16 GiB
        // at 512 rows for the 3B shape); the next rollout captures them again (~0.1 s per bucket).
        if (!config.Rollout.KeepCudaGraphs && maker.Engine.CapturedGraphs > 0)
            timer.Time("release_graphs", maker.ReleaseRolloutGraphs);
        var truncated = Truncated(rollout);
        var (scores, overlong) = OverlongShaped(rollout, filtered.Scores);
        bool trainActor = step > config.Algorithm.FreezingActorSteps;
        // Old log-probs: the separate no-grad pass for the samples the update's first optimizer step does not provide.
        var oldPlan = OldLogProbPlan.Create(config, trainActor, rollout.Count, OptimizerSteps(rollout.Items, step, 0).FirstOrDefault() ?? []);
        LogOldLogProbPlan(oldPlan);
        bool someFromUpdate = oldPlan.FromUpdateCount > 0;
        using var oldLogProbs = oldPlan.SkipsSeparatePass
            ? torch.zeros(rollout.ActionMask.shape, ScalarType.Float32, rollout.ActionMask.device)
            : timer.Time("logprobs", () => maker.ActorLogProbs(rollout, someFromUpdate ? oldPlan.SeparateRows : null));
        using var referenceLogProbs = models.Reference is { } reference ? timer.Time("reference", () => maker.ReferenceLogProbs(reference, rollout)) : null;
        using var values = models.Critic is { } critic ? timer.Time("values", () => maker.Values(critic, rollout)) : null;
        using var advantages = timer.Time("advantages", () => maker.Advantages(rollout, scores, someFromUpdate ? null : oldLogProbs, referenceLogProbs, values, kl.Value));

        CriticMetrics? criticMetrics = null;
        ActorMetrics? actorMetrics = null;
        timer.Time("update", () =>
        {
            var progress = new UpdateProgress(this, step, UpdateMicroBatches(rollout.Count) * ((values is null ? 0 : 1) + (trainActor ? 1 : 0)));
            if (models.Critic is { } c && values is not null)
                criticMetrics = UpdateCritic(c, rollout, new CriticTargets(values, advantages.Returns), step, progress);
            if (trainActor)
                actorMetrics = UpdateActor(rollout, new ActorTargets(oldLogProbs, advantages.Advantages,
                    config.Algorithm.UseKlLoss ? referenceLogProbs : null)
                    { Excluded = config.Reward.MaskTruncatedCompletions ? truncated : null, FromUpdate = someFromUpdate ? oldPlan.FromUpdate : null },
                    step, progress);
        });
        RunHooks.Reach("after-update", step);
        var rolloutMetrics = RolloutMetrics.Of(rollout, scores, oldLogProbs, advantages);
        // ppo_trainer.fit: `if "kl" in status: kl_ctl.update(status["kl"], rollout_batch_size · n)` (only when the actor trained).
        using (timer.Phase("kl_control"))
            if (actorMetrics is not null) kl.Update(actorMetrics.KlLoss ?? rolloutMetrics.Kl, (long)config.Rollout.RolloutBatchSize * config.Rollout.SamplesPerPrompt);

        Advance(prompts.Count, rollout.Count, filtered.Metrics);
        var stepMetrics = new PpoStepMetrics(rolloutMetrics, actorMetrics, criticMetrics, kl.Value, timer.Seconds.ToDictionary(), clock.Elapsed.TotalSeconds)
        {
            Filter = filtered.Metrics, Overlong = overlong, Truncated = truncated.Count(t => t), OldLogProbsFromUpdate = oldPlan.FromUpdateCount,
        };
        var samples = LoggedSamples(rollout, scores);
        LogStep(step, stepMetrics, samples, timer);

        if (eval is { Count: > 0 } && step % Plan.EvalEvery == 0)
        {
            var evalMetrics = timer.Time("eval", Evaluate);
            evalMetrics["time/eval"] = timer["eval"];
            metrics?.Log(step, evalMetrics);
        }
        ThrowIfDiverged(step);
        if (config.Run.SaveSteps > 0 && step % config.Run.SaveSteps == 0)
            SaveCheckpoint(timer);

        var first = rollout.Items[0];
        var report = new PpoStepReport(step, stepMetrics,
            tokenizer.Decode(first.PromptIds.Concat(first.ResponseIds).Select(t => (int)t), skipSpecialTokens: true), scores[0].Reward) { Samples = samples };
        StepCompleted?.Invoke(report);
        return report;
    }

    string? loggedOldLogProbPlan;

    /// <summary>Logs which way the old log-probs are computed: at the first step and whenever it changes.</summary>
    void LogOldLogProbPlan(OldLogProbPlan plan)
    {
        string line = plan.Describe();
        if (line == loggedOldLogProbPlan) return;
        loggedOldLogProbPlan = line;
        log(line);
    }

    void Advance(int prompts, int samples, FilterMetrics? filter)
    {
        State.GlobalStep++;
        State.ConsumedPrompts += prompts + (filter?.ExtraPrompts ?? 0);
        State.ConsumedSamples += samples + (long)(filter?.ExtraPrompts ?? 0) * config.Rollout.SamplesPerPrompt;
        State.RolloutInEpisode++;
        if (filter is not null)
        {
            State.ExtraPromptsInEpisode += filter.ExtraPrompts;
            State.FilterGroupsKept += filter.GroupsKept;
            State.FilterGroupsDropped += filter.GroupsAllEqual + filter.GroupsOutOfRange;
            State.FilterGroupsFilled += filter.GroupsFilled;
            State.FilterExtraRounds += filter.ExtraRounds;
        }
        State.ActorOptimizerSteps = ActorOptimizer.Steps;
        State.CriticOptimizerSteps = CriticOptimizer?.Steps ?? 0;
        State.KlCoef = kl.Value;
    }

    /// <summary>Per sample: cut at --generate_max_len without ending in a stop token (training and evaluation alike).</summary>
    bool[] Truncated(Rollout rollout)
    {
        var stops = maker.StopTokens.ToHashSet();
        return rollout.Items.Select(it => it.ResponseLength >= config.Rollout.GenerateMaxLen && !stops.Contains((int)it.ResponseIds[^1])).ToArray();
    }

    /// <summary>DAPO's soft overlong punishment added to each sample's reward (--overlong_buffer_len; the format and
    /// accuracy parts are unchanged, so filtering and eval metrics still read the rule's verdicts).</summary>
    (IReadOnlyList<RewardResult> Scores, (double, int)? Overlong) OverlongShaped(Rollout rollout, IReadOnlyList<RewardResult> scores)
    {
        if (config.Reward.OverlongBufferLen is not { } buffer) return (scores, null);
        var penalties = OverlongShaping.Penalties(rollout.Items.Select(i => i.ResponseLength).ToList(), config.Rollout.GenerateMaxLen, buffer,
            config.Reward.OverlongPenaltyFactor);
        var shaped = scores.Select((r, i) => r with { Reward = r.Reward + penalties[i] }).ToList();
        return (shaped, (penalties.Average(), penalties.Count(p => p < 0)));
    }

    List<GeneratedSample> LoggedSamples(Rollout rollout, IReadOnlyList<RewardResult> scores) =>
        rollout.Items.Take(config.Run.LogSamples).Select((it, i) => new GeneratedSample(i,
            tokenizer.Decode(it.PromptIds.Select(t => (int)t), skipSpecialTokens: true),
            tokenizer.Decode(it.ResponseIds.Select(t => (int)t), skipSpecialTokens: true),
            rollout.Prompts[it.PromptIndex].Label, scores[i].Reward, scores[i].FormatReward, scores[i].AccuracyReward, it.ResponseLength)).ToList();

    void LogStep(long step, PpoStepMetrics m, IReadOnlyList<GeneratedSample> samples, PhaseTimer timer)
    {
        if (step % config.Run.LoggingSteps == 0)
        {
            metrics?.Log(step, m.ToLog());
            metrics?.LogSamples(step, samples);
        }
        log($"step {step}/{Plan.MaxGlobalSteps}: reward {m.Rollout.Reward:F4}, response length {m.Rollout.ResponseLength:F1}" +
            (m.Actor is { } a ? $", policy loss {a.PolicyLoss:G4}" : "") +
            (m.Critic is { } c ? $", critic loss {c.CriticLoss:G4}" : "") +
            $", kl {m.Kl:G4}, {m.StepSeconds:F1} s " +
            $"(generate {timer["generate"]:F1}, reward {timer["reward"]:F1}, logprobs {timer["logprobs"] + timer["reference"] + timer["values"]:F1}, update {timer["update"]:F1})");
    }

    void ThrowIfDiverged(long step)
    {
        int limit = config.Run.MaxNonFiniteSteps;
        if (State.ActorNonFiniteInARow < limit && State.CriticNonFiniteInARow < limit) return;
        string which = State.ActorNonFiniteInARow >= limit ? "actor" : "critic";
        throw new TrainingDivergedException(
            $"training stopped at global step {step}: {Math.Max(State.ActorNonFiniteInARow, State.CriticNonFiniteInARow)} {which} optimizer steps " +
            $"in a row had a non-finite loss or gradient (--max_nonfinite_steps {limit}); those steps were skipped, so the weights are still finite. " +
            "Try a lower --actor_learning_rate / --critic_learning_rate, a smaller --max_norm, fp32 instead of --bf16, a tighter " +
            "--reward_clip_range or --eps_clip, or resume from an earlier checkpoint (--load_checkpoint) with a different --seed.");
    }

    // ================================================================ update

    /// <summary>Counts the update's micro-batches for <see cref="Progress"/>.</summary>
    internal sealed class UpdateProgress(PpoTrainer owner, long step, long total)
    {
        long done;
        public void MicroBatchDone() => owner.Progress?.Invoke(new TrainProgress(step, "update", ++done, total, 0));
    }

    long UpdateMicroBatches(int samples) => (long)config.Optim.MaxEpochs * (samples / config.Optim.MicroTrainBatchSize);

    /// <summary>One micro-batch of the update: the model inputs, its rows of the rollout and, for the step-wide loss
    /// aggregation modes, the totals of the optimizer step it belongs to.</summary>
    sealed class MicroBatch(Experience inputs, Tensor rows, long[] rowIndexes)
    {
        public Experience Inputs => inputs;
        /// <summary>This micro-batch's rows in the rollout.</summary>
        public long[] RowIndexes => rowIndexes;
        /// <summary>In the first optimizer step of epoch 0: no optimizer step has run since the rollout.</summary>
        public bool BeforeAnyStep { get; init; }
        /// <summary>Totals over the optimizer step this micro-batch belongs to (the global loss aggregation modes).</summary>
        public StepTotals? Totals { get; init; }
        public Tensor ActionMask => inputs.ActionMask;
        /// <summary>This micro-batch's rows of a rollout-wide [N, A] tensor, cut to its own action slots.</summary>
        public Tensor Take(Tensor rolloutWide) => ActionTensors.Rows(rolloutWide, rows, inputs.ActionMask);
        /// <summary>Writes <paramref name="values"/> [B, a] (detached, 0 outside the action slots) into this
        /// micro-batch's rows of a rollout-wide [N, A] tensor.</summary>
        public void Put(Tensor rolloutWide, Tensor values)
        {
            using var scope = torch.NewDisposeScope();
            using var noGrad = torch.no_grad();
            rolloutWide.index_copy_(0, rows, ActionTensors.Align(values, inputs.ActionMask, rolloutWide.shape[1]));
        }
    }

    /// <summary>A micro-batch's loss (0-d, differentiable) and its logged diagnostics (1-d, detached fp32).</summary>
    sealed record MicroBatchLoss(Tensor Loss, Tensor Logged);

    /// <summary>Means over the micro-batches of the logged diagnostics and the learning rate, mean gradient norm over
    /// the optimizer steps taken (NaN if none), skipped steps, and the non-finite-in-a-row count after the update.</summary>
    sealed record UpdateResult(double[] Logged, double LearningRate, double GradNorm, int Skipped, int NonFiniteInARow);

    /// <summary>The optimizer steps of one epoch over a rollout, each a list of accumulation-steps micro-batches of
    /// sample rows: a seeded shuffle, cut into micro-batches, the last partial one dropped (DataLoader(shuffle=True,
    /// drop_last=True)). With --packing_share_prompts the shuffle permutes whole prompt groups (runs of one
    /// PromptIndex) and keeps each group's rows together, so a micro-batch shares its prompts.</summary>
    internal List<List<long[]>> OptimizerSteps(IReadOnlyList<ExperienceItem> items, long step, int epoch)
    {
        if (!config.Model.PackingSharePrompts) return OptimizerSteps(items.Count, step, epoch);
        var groups = new List<List<long>>();
        for (int i = 0; i < items.Count; i++)
        {
            if (i == 0 || items[i].PromptIndex != items[i - 1].PromptIndex) groups.Add([]);
            groups[^1].Add(i);
        }
        var perm = DatasetMixer.Permutation(groups.Count, PpoSeeds.EpochShuffle(config.Run.Seed, step, epoch));
        return MicroBatches(perm.SelectMany(g => groups[g]).ToArray());
    }

    /// <summary>The same over <paramref name="samples"/> rows shuffled one by one.</summary>
    internal List<List<long[]>> OptimizerSteps(int samples, long step, int epoch) =>
        MicroBatches(DatasetMixer.Permutation(samples, PpoSeeds.EpochShuffle(config.Run.Seed, step, epoch)).Select(i => (long)i).ToArray());

    List<List<long[]>> MicroBatches(long[] order)
    {
        int micro = config.Optim.MicroTrainBatchSize, accum = (int)Plan.AccumulationSteps;
        var micros = new List<long[]>();
        for (int s = 0; s + micro <= order.Length; s += micro)
            micros.Add(order.Skip(s).Take(micro).ToArray());
        return micros.Chunk(accum).Select(g => g.ToList()).ToList();
    }

    /// <summary>ppo_actor.ppo_train / ppo_critic.ppo_train: max_epochs passes; per micro-batch the model's loss scaled
    /// by 1/accumulation and backward (skipped for a non-finite loss, whose optimizer step is then skipped); an
    /// optimizer step every accumulation micro-batches. One host read per micro-batch (the loss); the diagnostics are
    /// read once at the end.</summary>
    UpdateResult Update(string role, ModelOptimizer optimizer, Rollout rollout, Func<VisionInput, Tensor?>? cachedEmbeds, Func<MicroBatch, MicroBatchLoss> lossOf,
                        int nonFiniteInARow, long step, UpdateProgress progress, Action? beforeStep = null, Tensor? totalsMask = null)
    {
        int accum = (int)Plan.AccumulationSteps;
        var logged = new List<Tensor>();
        double lrSum = 0, gradNormSum = 0;
        int count = 0, pending = 0, steps = 0, skipped = 0;
        bool poisoned = false;
        void OptimizerStep()
        {
            beforeStep?.Invoke();
            var r = optimizer.Step(skip: poisoned);
            if (r.Skipped)
            {
                log($"warning: global step {step}: {role} {(poisoned ? "loss" : "gradient norm")} is not finite" +
                    $"{(poisoned ? "" : $" ({r.GradNorm})")}; optimizer step skipped (weights unchanged)");
                skipped++;
                nonFiniteInARow++;
            }
            else { gradNormSum += r.GradNorm; steps++; nonFiniteInARow = 0; }
            pending = 0;
            poisoned = false;
        }
        try
        {
            var device = models.Actor.Device;
            for (int epoch = 0; epoch < config.Optim.MaxEpochs; epoch++)
                foreach (var (group, index) in OptimizerSteps(rollout.Items, step, epoch).Select((g, i) => (g, i)))
                {
                    // Step-wide totals (token and sequence counts) for the global loss aggregation modes.
                    StepTotals? totals = null;
                    if (totalsMask is not null)
                        using (torch.NewDisposeScope())   // keeps the index and mask temporaries alive until read, then frees them
                            totals = StepTotals.Of(
                                group.Select(rows => totalsMask.index_select(0, torch.tensor(rows, device: totalsMask.device))).ToList(),
                                accum, config.Rollout.GenerateMaxLen);
                    foreach (var rows in group)
                    {
                        using var scope = torch.NewDisposeScope();
                        using var inputs = Experience.Collate(rows.Select(i => rollout.Items[(int)i]).ToList(), device, tokenizer.PadTokenId, cachedEmbeds,
                                                             config.Model.PackingSamples, config.Model.PackingSharePrompts);
                        var (loss, stats) = lossOf(new MicroBatch(inputs, torch.tensor(rows, device: device), rows)
                        {
                            Totals = totals, BeforeAnyStep = epoch == 0 && index == 0,
                        });
                        // A non-finite loss poisons the accumulated gradients: its optimizer step is skipped (no backward needed).
                        if (!float.IsFinite(loss.item<float>())) poisoned = true;
                        else loss.DivS((long)accum).backward();
                        QwenVLModel.ReleaseBackwardHandles();
                        pending++;
                        logged.Add(stats.detach().MoveToOuterDisposeScope());
                        count++;
                        if (pending == accum) OptimizerStep();
                        lrSum += optimizer.CurrentLearningRate;   // get_last_lr after this micro-step
                        progress.MicroBatchDone();
                    }
                }
            if (pending > 0) OptimizerStep();   // only when a rollout is not a whole number of train batches
            var means = new double[logged.Count == 0 ? 0 : logged[0].shape[0]];
            if (logged.Count > 0)
            {
                using var scope = torch.NewDisposeScope();
                var data = torch.stack(logged).to(ScalarType.Float32, torch.CPU).contiguous().data<float>().ToArray();   // [micro-batches, k]
                for (int j = 0; j < means.Length; j++)
                {
                    double sum = 0;
                    for (int i = 0; i < logged.Count; i++) sum += data[i * means.Length + j];
                    means[j] = sum / count;
                }
            }
            return new UpdateResult(means, lrSum / Math.Max(1, count), steps == 0 ? double.NaN : gradNormSum / steps, skipped, nonFiniteInARow);
        }
        finally
        {
            foreach (var t in logged) t.Dispose();
        }
    }

    /// <summary>The actor's update: the PPO clipped loss (+ β·KL loss with --use_kl_loss, − entropy_loss_coef·entropy).</summary>
    internal ActorMetrics UpdateActor(Rollout rollout, ActorTargets targets, long step, UpdateProgress? progress = null)
    {
        var a = config.Algorithm;
        // Frozen tower: the embeddings cached at generation serve every micro-batch. Trainable: they go stale with the
        // first optimizer step, so each micro-batch runs the tower once per distinct prompt, with grad (Experience.ImageFeatures).
        bool frozen = PpoModels.VisionFrozen(models.Actor);
        if (frozen) maker.CacheVision(rollout.Visions);
        else foreach (var v in rollout.Visions) v?.ForgetEmbeds();
        bool entropyLoss = a.EntropyLossCoef > 1e-8;
        var lossOptions = a.PolicyLoss;
        bool global = LossAggregations.IsGlobal(lossOptions.Aggregation);
        var excluded = targets.Excluded;
        // [N, A] bool: the action slots the loss counts (the rollout's, without excluded samples' rows).
        using var lossMask = excluded is null ? null : KeptSlots(rollout.ActionMask, excluded);
        var fromUpdate = targets.FromUpdate;
        int taken = 0;
        var r = Update("actor", ActorOptimizer, rollout, frozen ? v => v.ImageEmbeds : null, mb =>
        {
            var (lp, entropy) = PolicyForward.ActionLogProbsAndEntropy(models.Actor, mb.Inputs, config.Rollout.Temperature, entropyGrad: entropyLoss);
            // On-policy (OldLogProbPlan): before any optimizer step this forward is the old policy's, so its log-probs,
            // detached, are the old log-probs; later steps and epochs read them from the rollout-wide tensor.
            Tensor old;
            if (fromUpdate is not null && mb.BeforeAnyStep)
            {
                if (!mb.RowIndexes.All(i => fromUpdate[(int)i]))
                    throw new InvalidOperationException("old log-probs from the update: the planned rows must be the first optimizer step's");
                old = lp.detach();
                mb.Put(targets.OldLogProbs, old);
                taken += mb.RowIndexes.Length;
            }
            else old = mb.Take(targets.OldLogProbs);
            var zero = torch.zeros([], ScalarType.Float32, lp.device);
            // A micro-batch of excluded samples only contributes nothing (a zero loss that still reaches the graph).
            if (excluded is not null && mb.RowIndexes.All(i => excluded[(int)i]))
                return new MicroBatchLoss(lp.sum().MulS(0.0), torch.stack([zero, zero, zero, zero, zero, zero]));
            var mask = lossMask is null ? mb.ActionMask : mb.Take(lossMask).logical_and(mb.ActionMask);
            var policy = PolicyLoss.Compute(lp, old, mb.Take(targets.Advantages), mask, lossOptions, mb.Totals);
            Tensor? klLoss = !a.UseKlLoss ? null
                : targets.ReferenceLogProbs is { } reference ? Kl.Loss(lp, mb.Take(reference), mask, a.KlEstimator)
                : zero;
            var entropyMean = Entropy.MaskedMean(entropy, mask);
            var loss = ActorLoss.Combine(policy.Loss, klLoss, kl.Value, entropyLoss ? entropyMean : null, a.EntropyLossCoef);
            if (TransformActorLoss is { } transform) loss = transform(loss);
            return new MicroBatchLoss(loss, torch.stack([policy.Loss.detach(), policy.ClipFraction, policy.ApproxKl, entropyMean.detach(), klLoss?.detach() ?? zero,
                policy.ClipFractionLower]));
        }, State.ActorNonFiniteInARow, step, progress ?? new UpdateProgress(this, step, 0), BeforeActorStep,
            totalsMask: global ? lossMask ?? rollout.ActionMask : null);
        State.ActorNonFiniteInARow = r.NonFiniteInARow;
        if (fromUpdate is not null && taken != fromUpdate.Count(x => x))
            throw new InvalidOperationException($"old log-probs from the update: {taken} rows written, {fromUpdate.Count(x => x)} planned");
        return new ActorMetrics(PolicyLoss: r.Logged[0], ClipFrac: r.Logged[1], ApproxKl: r.Logged[2],
            KlLoss: a.UseKlLoss ? r.Logged[4] : null, EntropyLoss: entropyLoss ? r.Logged[3] : null, Entropy: r.Logged[3],
            ActorLr: r.LearningRate, GradNorm: r.GradNorm, SkippedSteps: r.Skipped) { ClipFracLower = lossOptions.DualClip is null ? null : r.Logged[5] };
    }

    /// <summary>The action mask without the excluded samples' rows (its temporaries in a scope of their own).</summary>
    static Tensor KeptSlots(Tensor actionMask, IReadOnlyList<bool> excluded)
    {
        using var scope = torch.NewDisposeScope();
        var kept = torch.tensor(excluded.Select(x => !x).ToArray(), device: actionMask.device).unsqueeze(1);   // [N, 1]
        return actionMask.logical_and(kept).MoveToOuterDisposeScope();
    }

    /// <summary>The critic's update: the clipped value loss with the same batching.</summary>
    internal CriticMetrics UpdateCritic(CriticModel critic, Rollout rollout, CriticTargets targets, long step, UpdateProgress? progress = null)
    {
        var optimizer = CriticOptimizer ?? throw new InvalidOperationException("the trainer was built without a critic");
        var r = Update("critic", optimizer, rollout, cachedEmbeds: null, mb =>
        {
            var values = critic.Values(mb.Inputs);                                                            // [B, A]
            var vl = ValueLoss.Compute(values, mb.Take(targets.OldValues), mb.Take(targets.Returns), mb.ActionMask, config.Algorithm.ValueClip);
            Tensor meanValue;
            using (torch.no_grad()) meanValue = Masked.Mean(values.detach(), mb.ActionMask);
            return new MicroBatchLoss(vl.Loss, torch.stack([vl.Loss.detach(), meanValue, vl.ClipFraction]));
        }, State.CriticNonFiniteInARow, step, progress ?? new UpdateProgress(this, step, 0));
        State.CriticNonFiniteInARow = r.NonFiniteInARow;
        return new CriticMetrics(CriticLoss: r.Logged[0], Values: r.Logged[1], CriticClipFrac: r.Logged[2], CriticLr: r.LearningRate,
            CriticGradNorm: r.GradNorm, CriticSkippedSteps: r.Skipped);
    }

    // ================================================================ evaluation

    /// <summary>ppo_trainer.evaluate: every eval prompt sampled eval_n_samples_per_prompt times at eval_temperature and
    /// scored, summarised per datasource with the generation branch's EvalSummary (as `lmmr1 eval`):
    /// "eval/{datasource}_pass1" = share of correct samples (accuracy reward &gt; 0), "_pass{n}" = unbiased pass@n,
    /// "_reward" = mean reward (what upstream logs as pass1: format + accuracy), "_format", "_response_length".</summary>
    public Dictionary<string, double> Evaluate()
    {
        if (eval is null || eval.Count == 0) return [];
        int n = config.Rollout.EvalSamplesPerPrompt;
        var byPrompt = new ScoredSample[eval.Count][];
        int chunk = Math.Max(1, config.Rollout.RolloutBatchSize);
        for (int start = 0; start < eval.Count; start += chunk)
        {
            var prompts = eval.Skip(start).Take(chunk).ToList();
            using var rollout = maker.Generate(prompts, n, config.Rollout.EvalTemperature, PpoSeeds.Sampling(config.Run.Seed, -1 - start));
            var scores = maker.Score(rollout);
            var truncated = Truncated(rollout);
            for (int i = 0; i < rollout.Count; i++)
            {
                var it = rollout.Items[i];
                (byPrompt[start + it.PromptIndex] ??= new ScoredSample[n])[it.SampleIndex] =
                    new ScoredSample(scores[i].AccuracyReward > 0, scores[i].FormatReward > 0, scores[i].Reward, it.ResponseLength, truncated[i]);
            }
        }
        var result = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var group in Enumerable.Range(0, eval.Count).GroupBy(i => eval[i].Datasource))
        {
            var m = EvalSummary.Compute(group.Select(i => (IReadOnlyList<ScoredSample>)byPrompt[i]).ToList());
            string p = $"eval/{group.Key}_";
            result[p + "pass1"] = m.Pass1;
            if (n > 1) result[p + $"pass{n}"] = m.PassK;
            result[p + "reward"] = m.MeanReward;
            result[p + "format"] = m.FormatRate;
            result[p + "response_length"] = m.MeanResponseTokens;
        }
        log("eval: " + string.Join(", ", result.Where(kv => kv.Key.StartsWith("eval/", StringComparison.Ordinal)).Select(kv => $"{kv.Key} {kv.Value:F4}")));
        return result;
    }

    // ================================================================ checkpoints and the final model

    PpoCheckpoint.Contents CheckpointContents() => new(config, State with { }, models.Actor, ActorOptimizer,
        models.Critic is { } c && CriticOptimizer is { } co ? (c, co) : null, kl.Value, train, DataOrder(State.Episode));

    /// <summary>Estimated sizes of a checkpoint and of the final model (free-space checks before each save).</summary>
    DiskEstimate Disk => DiskEstimate.Of(config, models.Actor.Config, models.Critic?.Backbone.Config);

    /// <summary>Writes a crash-safe checkpoint of the current step (and its Hugging Face export with --save_hf_ckpt),
    /// copies the logs into it and redraws the plots (best effort), as the phase "save" of <paramref name="timer"/>.
    /// Free space is checked first; a failed save says what failed and which complete checkpoint is still usable
    /// (SaveSafety). Returns the folder.</summary>
    string SaveCheckpoint(PhaseTimer timer)
    {
        long step = State.GlobalStep;
        Progress?.Invoke(new TrainProgress(step, "save", 0, 1, 0));
        string pretrain = config.Model.Pretrain!, hf = "", dir;
        using (timer.Phase("save"))
        {
            var contents = CheckpointContents();
            dir = SaveSafety.SaveCheckpoint(store, step, Disk, config.Run.SaveHfCkpt, () =>
            {
                string saved = store.Save(step, d => PpoCheckpoint.Write(d, contents, pretrain, metrics as MetricsLog));
                if (config.Run.SaveHfCkpt)
                {
                    HfExport.WriteAtomic(models.Actor, store.HfFolder(step), pretrain, config.ImageOptions(), () => RunHooks.Reach("hf-export-written", step));
                    hf = $", Hugging Face export {store.HfFolder(step)}";
                }
                return saved;
            });
            lastCheckpoint = dir;
            lastSavedStep = step;
            SaveSafety.BestEffort("the plots", () => DrawPlots(), log);
        }
        log($"checkpoint: {dir}{hf} ({timer["save"]:F1} s)");
        return dir;
    }

    /// <summary>The end of a run: the actor as a Hugging Face folder in --save_path (with the tokenizer), the critic
    /// in {save_path}_critic with --save_value_network, and the plots (best effort). When the export fails, the
    /// weights are kept in a checkpoint and the error says how to write the export again (FinalExport).</summary>
    void SaveFinal()
    {
        string pretrain = config.Model.Pretrain!;
        FinalExport.Write(store, State.GlobalStep, config.Run.SavePath, Disk, () =>
        {
            if (models.Actor.Lora is null)
            {
                HfExport.WriteIntoRunFolder(models.Actor, config.Run.SavePath, pretrain, config.ImageOptions());
                log($"saved the final model to {Path.GetFullPath(config.Run.SavePath)}");
            }
            else
            {
                HfExport.WriteAdapterIntoRunFolder(models.Actor, config.Run.SavePath, pretrain, Path.GetFullPath(pretrain));
                log($"saved the LoRA adapter (PEFT folder) to {Path.GetFullPath(config.Run.SavePath)}");
                if (config.Model.Lora is { SaveMerged: true })
                {
                    string merged = config.Run.SavePath.TrimEnd('/') + "_merged";
                    HfExport.WriteAtomic(models.Actor, merged, pretrain, config.ImageOptions());
                    log($"saved the merged model to {Path.GetFullPath(merged)}");
                }
            }
            if (config.Model.SaveValueNetwork && models.Critic is { } critic)
            {
                string dir = config.Run.SavePath.TrimEnd('/') + "_critic";
                critic.Save(dir);
                log($"saved the critic to {Path.GetFullPath(dir)}");
            }
        }, () => SaveCheckpoint(new PhaseTimer(models.Actor.Device)));
        SaveSafety.BestEffort("the plots", () =>
        {
            if (DrawPlots() is { } drawn)
                log($"plots: {drawn.Count} PNG file(s) in {Path.GetFullPath(Path.Combine(config.Run.SavePath, RunPlots.FolderName))}");
        }, log);
    }

    IReadOnlyList<string>? DrawPlots() =>
        metrics is MetricsLog m ? RunPlots.Write(m.Path, Path.Combine(config.Run.SavePath, RunPlots.FolderName)) : null;

    /// <summary>Continues the run saved in <paramref name="dir"/> (check it first with PpoCheckpoint.CheckCompatible):
    /// weights, optimizer and schedule state, loop state, β and the torch RNG; writes the checkpoint's Hugging Face
    /// export if a kill during it left none.</summary>
    public void Resume(string dir)
    {
        var saved = PpoCheckpoint.Restore(dir, CheckpointContents());
        // The whole saved record, so a counter added to PpoTrainState is restored without being listed here.
        var s = saved.State;
        State = s with { KlCoef = saved.KlCoef };
        kl.Restore(new KlControllerState(saved.KlCoef));
        // The order is recomputed from the seed; the saved copy proves it is the same one.
        if (!DataOrder(s.Episode).SequenceEqual(saved.Data.Order))
            throw InputException.At(Path.Combine(dir, PpoCheckpoint.StateFile), null, "--seed", "this run's prompt order differs from the checkpoint's");
        lastCheckpoint = dir;
        lastSavedStep = State.GlobalStep;
        log($"resumed from {dir} at global step {State.GlobalStep} ({State.ConsumedPrompts} prompts consumed, " +
            $"episode {State.Episode + 1}, β {kl.Value:G4})");
        long at = State.GlobalStep;
        if (config.Run.SaveHfCkpt && !Directory.Exists(store.HfFolder(at)))
        {
            HfExport.WriteAtomic(models.Actor, store.HfFolder(at), config.Model.Pretrain!, config.ImageOptions());
            log($"wrote the missing Hugging Face export {store.HfFolder(at)}");
        }
    }

    public void Dispose()
    {
        ActorOptimizer.Dispose();
        CriticOptimizer?.Dispose();
    }
}
