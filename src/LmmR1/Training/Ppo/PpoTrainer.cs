// The PPO / REINFORCE++ / GRPO-family trainer of LMM-R1 in one process (ppo_trainer.PPOTrainer.fit + ppo_actor /
// ppo_critic .ppo_train). One global step = one rollout of rollout_batch_size prompts × n samples:
//   Generate → Score → LogProbs (old / ref / values) → Advantages → Update (critic, then actor unless frozen)
// each in a timed phase. The update makes max_epochs shuffled passes over the rollout in micro-batches of
// micro_train_batch_size, accumulating gradients (loss / accumulation steps, as DeepSpeed scales them) over
// train_batch_size samples per optimizer step; the LR schedule advances per optimizer step. The KL controller is
// updated once per rollout from the actor's mean KL. All loop state lives in PpoTrainState.
// Runs stop cleanly: RequestStop (SIGINT/SIGTERM in the CLI) or StopAfterStep finishes the current step and raises
// SaveRequested for it; an optimizer step whose loss or gradient is not finite is skipped (weights and AdamW state
// untouched) and --max_nonfinite_steps of them in a row stop the run with advice.
using System.Diagnostics;
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Text;
using LmmR1.Training.Logging;
using LmmR1.Training.Optimization;
using LmmR1.Training.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

public sealed class PpoTrainer : IDisposable
{
    readonly PpoConfig config;
    readonly PpoModels models;
    readonly QwenTokenizer tokenizer;
    readonly PromptDataset train;
    readonly PromptDataset? eval;
    IMetricsSink? metrics;
    readonly Action<string> log;
    readonly PhaseTimer timer = new();
    readonly IKlController kl;

    public PpoConfig Config => config;
    public PpoPlan Plan { get; }
    public PpoTrainState State { get; } = new();
    public ModelOptimizer ActorOptimizer { get; }
    public ModelOptimizer? CriticOptimizer { get; }
    public ExperienceMaker Maker { get; }
    public PpoModels Models => models;
    public IKlController KlController => kl;

    /// <summary>Raised after every global step (after logging, evaluation and checkpointing).</summary>
    public event Action<PpoStepReport>? StepCompleted;
    /// <summary>Raised when a checkpoint should be written (global_step % save_steps == 0); the argument is the step.</summary>
    public event Action<long>? SaveRequested;
    /// <summary>Phase progress within a step (generate: samples and tokens; update: micro-batches), for live views.</summary>
    public event Action<TrainProgress>? Progress;
    /// <summary>Test hook: called before every actor optimizer step with the accumulated gradients in place.</summary>
    internal Action? BeforeActorStep { get; set; }
    /// <summary>Test hook: replaces each actor micro-batch loss before backward (e.g. to inject a NaN).</summary>
    internal Func<Tensor, Tensor>? TransformActorLoss { get; set; }

    volatile bool stopRequested;
    /// <summary>Finish the current step, save it and return from Fit (thread-safe; the CLI's signal handler calls it).</summary>
    public void RequestStop() => stopRequested = true;
    public bool StopRequested => stopRequested;
    /// <summary>Fit returns after this global step (saved), as if a stop had been requested then (--stop_after_step).</summary>
    public long? StopAfterStep { get; set; }
    /// <summary>Why the last Fit returned before the plan's end (null: it ran to the end).</summary>
    public string? StoppedEarly { get; private set; }
    /// <summary>The last step SaveRequested was raised for.</summary>
    public long LastSaveRequest { get; private set; } = -1;
    /// <summary>The prompt set, and its order in an episode (what a checkpoint records as the data order).</summary>
    public PromptDataset TrainData => train;
    public int[] DataOrder(int episode) => train.ShuffledOrder(episode);

    /// <param name="config">A resolved, validated configuration.</param>
    /// <param name="models">Loaded models (PpoModels.Load or Prepare).</param>
    /// <param name="processor">The Qwen2-VL processor (tokenizer + image processor with --processor_kwargs).</param>
    /// <param name="train">Training prompts.</param>
    /// <param name="eval">Evaluation prompts, or null.</param>
    /// <param name="reward">The reward model (built-in rule reward or a remote client).</param>
    /// <param name="metrics">Where metrics go (MetricsLog), or null.</param>
    /// <param name="log">Human-readable progress lines.</param>
    public PpoTrainer(PpoConfig config, PpoModels models, QwenVLProcessor processor, PromptDataset train, PromptDataset? eval,
                      IRewardModel reward, IMetricsSink? metrics = null, Action<string>? log = null)
    {
        config.Validate();
        this.config = config;
        this.models = models;
        tokenizer = processor.Tokenizer;
        this.train = train;
        this.eval = eval;
        this.metrics = metrics;
        this.log = log ?? (_ => { });
        if (config.UsesCritic && models.Critic is null)
            throw InputException.At(null, null, "--advantage_estimator", "gae needs a critic (--critic_pretrain)");
        if (config.UsesReference && models.Reference is null)
            throw InputException.At(null, null, "--init_kl_coef", "a KL term needs the reference model");
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
        Maker = new ExperienceMaker(config, models, tokenizer, processor, reward, timer) { Log = this.log };
    }

    /// <summary>Sets (or replaces) where metrics go, e.g. once a resumed run knows its step.</summary>
    public void AttachMetrics(IMetricsSink? sink) => metrics = sink;

    // ================================================================ fit

    /// <summary>Runs global steps until --max_global_steps / num_episodes are done (ppo_trainer.fit).</summary>
    public void Fit(CancellationToken ct = default)
    {
        int rb = config.Rollout.RolloutBatchSize;
        StoppedEarly = null;
        while (State.GlobalStep < Plan.MaxGlobalSteps)
        {
            var order = DataOrder(State.Episode);
            while (State.RolloutInEpisode < Plan.RolloutsPerEpisode && State.GlobalStep < Plan.MaxGlobalSteps)
            {
                ct.ThrowIfCancellationRequested();
                var prompts = order.Skip((int)(State.RolloutInEpisode * rb)).Take(rb).Select(i => train[i]).ToList();
                TrainStep(prompts, ct);
                string? why = stopRequested ? "a stop was requested"
                    : StopAfterStep is { } last && State.GlobalStep >= last ? $"--stop_after_step {last}" : null;
                if (why is not null && State.GlobalStep < Plan.MaxGlobalSteps)
                {
                    if (LastSaveRequest != State.GlobalStep) RequestSave(State.GlobalStep);
                    StoppedEarly = why;
                    return;
                }
            }
            if (State.RolloutInEpisode >= Plan.RolloutsPerEpisode)
            {
                State.Episode++;
                State.RolloutInEpisode = 0;
            }
        }
    }

    /// <summary>One global step on the given prompts: rollout, update, KL controller, logs, evaluation, checkpoint.</summary>
    public PpoStepReport TrainStep(IReadOnlyList<PromptSample> prompts, CancellationToken ct = default)
    {
        timer.Reset();
        var stepClock = Stopwatch.StartNew();
        long step = State.GlobalStep + 1;    // upstream's `steps` (1-based)
        RunHooks.Reach("step-start", step);
        var status = new Dictionary<string, double>(StringComparer.Ordinal);
        string firstSample;
        double firstReward;
        List<GeneratedSample> samples;
        long samplesTotal = (long)prompts.Count * config.Rollout.SamplesPerPrompt;
        using (var rollout = Maker.Make(prompts, step, kl.Value, ct,
                   g => Progress?.Invoke(new TrainProgress(step, "generate", g.SamplesDone, g.SamplesTotal, g.TokensGenerated))))
        {
            var items = rollout.Items;
            RunHooks.Reach("after-generate", step);
            firstSample = tokenizer.Decode(items[0].PromptIds.Concat(items[0].ResponseIds).Select(t => (int)t), skipSpecialTokens: true);
            firstReward = items[0].Info.Reward;
            samples = items.Take(config.Run.LogSamples).Select((it, i) => new GeneratedSample(i,
                tokenizer.Decode(it.PromptIds.Select(t => (int)t), skipSpecialTokens: true),
                tokenizer.Decode(it.ResponseIds.Select(t => (int)t), skipSpecialTokens: true),
                rollout.Prompts[it.PromptIndex].Label, it.Info.Reward, it.Info.FormatReward, it.Info.AccuracyReward, it.ResponseLength)).ToList();
            AddRolloutInfo(status, items, rollout.RolloutLogProbGap);
            using (timer.Phase("update"))
            {
                bool actor = step > config.Algorithm.FreezingActorSteps;
                long perModel = (long)config.Optim.MaxEpochs * (items.Count / config.Optim.MicroTrainBatchSize);
                var update = new UpdateProgress(this, step, perModel * ((models.Critic is null ? 0 : 1) + (actor ? 1 : 0)));
                if (models.Critic is not null) foreach (var (k, v) in TrainCritic(items, step, update)) status[k] = v;
                if (actor)
                {
                    var actorStatus = TrainActor(items, step, update);
                    foreach (var (k, v) in actorStatus) status[k] = v;
                    // ppo_trainer.fit: `if "kl" in status: kl_ctl.update(status["kl"], rollout_batch_size · n)`.
                    kl.Update(status["kl"], (long)config.Rollout.RolloutBatchSize * config.Rollout.SamplesPerPrompt);
                }
            }
            RunHooks.Reach("after-update", step);
        }
        State.GlobalStep = step;
        State.ConsumedPrompts += prompts.Count;
        State.ConsumedSamples += samplesTotal;
        State.RolloutInEpisode++;
        State.ActorOptimizerSteps = ActorOptimizer.Steps;
        State.CriticOptimizerSteps = CriticOptimizer?.Steps ?? 0;
        State.KlCoef = kl.Value;

        var logged = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var (k, v) in status) logged["train/" + k] = v;
        logged["train/kl_coef"] = kl.Value;
        foreach (var (k, v) in timer.Seconds) logged["time/" + k] = v;
        logged["time/step"] = stepClock.Elapsed.TotalSeconds;
        if (step % config.Run.LoggingSteps == 0)
        {
            metrics?.Log(step, logged);
            metrics?.LogSamples(step, samples);
        }
        log($"step {step}/{Plan.MaxGlobalSteps}: reward {status["reward"]:F4}, response length {status["response_length"]:F1}" +
            (status.TryGetValue("policy_loss", out var pl) ? $", policy loss {pl:G4}" : "") +
            (status.TryGetValue("critic_loss", out var cl) ? $", critic loss {cl:G4}" : "") +
            $", kl {status.GetValueOrDefault("kl"):G4}, {stepClock.Elapsed.TotalSeconds:F1} s " +
            $"(generate {timer.Seconds.GetValueOrDefault("generate"):F1}, reward {timer.Seconds.GetValueOrDefault("reward"):F1}, " +
            $"logprobs {timer.Seconds.GetValueOrDefault("logprobs"):F1}, update {timer.Seconds.GetValueOrDefault("update"):F1})");

        if (eval is { Count: > 0 } && step % Plan.EvalEvery == 0)
        {
            var ev = Evaluate(ct);
            metrics?.Log(step, ev);
            foreach (var (k, v) in ev) logged[k] = v;
        }
        int limit = config.Run.MaxNonFiniteSteps;
        if (State.ActorNonFiniteInARow >= limit || State.CriticNonFiniteInARow >= limit)
        {
            string which = State.ActorNonFiniteInARow >= limit ? "actor" : "critic";
            throw new TrainingDivergedException(
                $"training stopped at global step {step}: {Math.Max(State.ActorNonFiniteInARow, State.CriticNonFiniteInARow)} {which} optimizer steps " +
                $"in a row had a non-finite loss or gradient (--max_nonfinite_steps {limit}); those steps were skipped, so the weights are still finite. " +
                "Try a lower --actor_learning_rate / --critic_learning_rate, a smaller --max_norm, fp32 instead of --bf16, a tighter " +
                "--reward_clip_range or --eps_clip, or resume from an earlier checkpoint (--load_checkpoint) with a different --seed.");
        }
        if (config.Run.SaveSteps > 0 && step % config.Run.SaveSteps == 0) RequestSave(step);
        var report = new PpoStepReport(step, logged, firstSample, firstReward) { Samples = samples };
        StepCompleted?.Invoke(report);
        return report;
    }

    void RequestSave(long step)
    {
        LastSaveRequest = step;
        Progress?.Invoke(new TrainProgress(step, "save", 0, 1, 0));
        SaveRequested?.Invoke(step);
    }

    /// <summary>Counts the update's micro-batches for <see cref="Progress"/>.</summary>
    internal sealed class UpdateProgress(PpoTrainer owner, long step, long total)
    {
        long done;
        public void MicroBatchDone() => owner.Progress?.Invoke(new TrainProgress(step, "update", ++done, total, 0));
    }

    /// <summary>Rollout-wide means of the per-sample info (upstream averages per-micro-batch means of the same values
    /// over equal-sized micro-batches, which is the same number).</summary>
    static void AddRolloutInfo(Dictionary<string, double> status, IReadOnlyList<ExperienceItem> items, double logProbGap)
    {
        status["reward"] = items.Average(i => i.Info.Reward);
        status["format_reward"] = items.Average(i => i.Info.FormatReward);
        status["acc_reward"] = items.Average(i => i.Info.AccuracyReward);
        status["return"] = items.Average(i => i.Info.Return);
        status["kl"] = items.Average(i => i.Info.Kl);
        status["response_length"] = items.Average(i => (double)i.Info.ResponseLength);
        status["total_length"] = items.Average(i => (double)i.Info.TotalLength);
        status["rollout_logprob_gap"] = logProbGap;
    }

    // ================================================================ update

    /// <summary>The micro-batches of one epoch over a rollout: a seeded shuffle, cut into micro-batches, the last
    /// partial one dropped (DataLoader(shuffle=True, drop_last=True)).</summary>
    internal List<List<ExperienceItem>> MicroBatches(IReadOnlyList<ExperienceItem> items, long step, int epoch)
    {
        int micro = config.Optim.MicroTrainBatchSize;
        int seed = unchecked(config.Run.Seed * 7919 + (int)step * 104729 + epoch);
        var perm = DatasetMixer.Permutation(items.Count, seed);
        var result = new List<List<ExperienceItem>>();
        for (int s = 0; s + micro <= perm.Length; s += micro)
            result.Add(perm.Skip(s).Take(micro).Select(i => items[i]).ToList());
        return result;
    }

    /// <summary>ppo_actor.ppo_train: max_epochs passes; per micro-batch the PPO loss (+ KL loss, − entropy bonus) scaled
    /// by 1/accumulation; an optimizer step every accumulation micro-batches. Returns the mean status.</summary>
    internal Dictionary<string, double> TrainActor(IReadOnlyList<ExperienceItem> items, long step, UpdateProgress? progress = null)
    {
        var a = config.Algorithm;
        int accum = (int)Plan.AccumulationSteps;
        bool cached = PpoModels.VisionFrozen(models.Actor) && items.Any(i => i.Vision is not null);
        if (cached) Maker.CacheVision(items.Select(i => i.Vision).Distinct().ToList());
        var sums = new Dictionary<string, double>(StringComparer.Ordinal);
        int count = 0, pending = 0, steps = 0, skipped = 0;
        bool poisoned = false;
        double gradNormSum = 0;
        void Step()
        {
            BeforeActorStep?.Invoke();
            var r = ActorOptimizer.Step(skip: poisoned);
            if (r.Skipped)
            {
                log($"warning: global step {step}: actor {(poisoned ? "loss" : $"gradient norm")} is not finite" +
                    $"{(poisoned ? "" : $" ({r.GradNorm})")}; optimizer step skipped (weights unchanged)");
                skipped++;
                State.ActorNonFiniteInARow++;
            }
            else { gradNormSum += r.GradNorm; steps++; State.ActorNonFiniteInARow = 0; }
            pending = 0;
            poisoned = false;
        }
        for (int epoch = 0; epoch < config.Optim.MaxEpochs; epoch++)
            foreach (var batch in MicroBatches(items, step, epoch))
            {
                using var scope = torch.NewDisposeScope();
                using var e = Experience.Collate(batch, models.Actor.Device, tokenizer.PadTokenId, useCachedVision: cached);
                bool entropyLoss = a.EntropyLossCoef > 1e-8;
                var (lp, entropy) = PolicyForward.ActionLogProbs(models.Actor, e, config.Rollout.Temperature, withEntropy: true, entropyGrad: entropyLoss);
                using var pl = PolicyLoss.Compute(lp, e.ActionLogProbs!, e.Advantages!, e.ActionMask, a.EpsClip);
                Tensor? klLoss = null;
                if (a.UseKlLoss)
                    klLoss = a.InitKlCoef > 0
                        ? Kl.Loss(lp, e.BaseActionLogProbs!, e.ActionMask, a.KlEstimator)
                        : torch.zeros([], ScalarType.Float32, lp.device);
                var entropyMean = Entropy.MaskedMean(entropy!, e.ActionMask);
                var loss = ActorLoss.Combine(pl.Loss, klLoss, kl.Value, entropyLoss ? entropyMean : null, a.EntropyLossCoef);
                if (TransformActorLoss is { } transform) loss = transform(loss);
                // A non-finite loss poisons the accumulated gradients: its optimizer step is skipped (no backward needed).
                if (!double.IsFinite(loss.item<float>())) poisoned = true;
                else (loss / accum).backward();
                QwenVLModel.ReleaseBackwardHandles();
                pending++;

                Add(sums, "policy_loss", pl.Loss.item<float>());
                Add(sums, "clip_frac", pl.ClipFraction.item<float>());
                Add(sums, "approx_kl", pl.ApproxKl.item<float>());
                if (klLoss is not null) Add(sums, "kl", klLoss.item<float>());
                float entropyValue = entropyMean.item<float>();
                if (entropyLoss) Add(sums, "entropy_loss", entropyValue);
                Add(sums, "entropy", entropyValue);
                count++;
                if (pending == accum) Step();
                Add(sums, "actor_lr", ActorOptimizer.CurrentLearningRate);   // get_last_lr after this micro-step
                progress?.MicroBatchDone();
            }
        if (pending > 0) Step();   // only when a rollout is not a whole number of train batches
        var status = sums.ToDictionary(kv => kv.Key, kv => kv.Value / Math.Max(1, count), StringComparer.Ordinal);
        if (!a.UseKlLoss) status["kl"] = items.Average(i => i.Info.Kl);
        status["grad_norm"] = steps == 0 ? double.NaN : gradNormSum / steps;
        status["skipped_steps"] = skipped;
        return status;
    }

    /// <summary>ppo_critic.ppo_train: the clipped value loss with the same batching; returns critic_loss, values, critic_lr.</summary>
    internal Dictionary<string, double> TrainCritic(IReadOnlyList<ExperienceItem> items, long step, UpdateProgress? progress = null)
    {
        var critic = models.Critic!;
        var opt = CriticOptimizer!;
        int accum = (int)Plan.AccumulationSteps;
        var sums = new Dictionary<string, double>(StringComparer.Ordinal);
        int count = 0, pending = 0, steps = 0, skipped = 0;
        bool poisoned = false;
        double gradNormSum = 0;
        void Step()
        {
            var r = opt.Step(skip: poisoned);
            if (r.Skipped)
            {
                log($"warning: global step {step}: critic {(poisoned ? "loss" : "gradient norm")} is not finite; optimizer step skipped (weights unchanged)");
                skipped++;
                State.CriticNonFiniteInARow++;
            }
            else { gradNormSum += r.GradNorm; steps++; State.CriticNonFiniteInARow = 0; }
            pending = 0;
            poisoned = false;
        }
        for (int epoch = 0; epoch < config.Optim.MaxEpochs; epoch++)
            foreach (var batch in MicroBatches(items, step, epoch))
            {
                using var scope = torch.NewDisposeScope();
                using var e = Experience.Collate(batch, critic.Backbone.Device, tokenizer.PadTokenId);
                var values = critic.Values(e);                                                               // [B, A]
                using var vl = ValueLoss.Compute(values, e.Values!, e.Returns!, e.ActionMask, config.Algorithm.ValueClip);
                float lossValue = vl.Loss.item<float>();
                if (!float.IsFinite(lossValue)) poisoned = true;
                else (vl.Loss / accum).backward();
                QwenVLModel.ReleaseBackwardHandles();
                pending++;
                Add(sums, "critic_loss", lossValue);
                using (torch.no_grad()) Add(sums, "values", Masked.Mean(values.detach(), e.ActionMask).item<float>());
                Add(sums, "critic_clip_frac", vl.ClipFraction.item<float>());
                count++;
                if (pending == accum) Step();
                Add(sums, "critic_lr", opt.CurrentLearningRate);
                progress?.MicroBatchDone();
            }
        if (pending > 0) Step();
        var status = sums.ToDictionary(kv => kv.Key, kv => kv.Value / Math.Max(1, count), StringComparer.Ordinal);
        status["critic_grad_norm"] = steps == 0 ? double.NaN : gradNormSum / steps;
        status["critic_skipped_steps"] = skipped;
        return status;
    }

    static void Add(Dictionary<string, double> d, string key, double v) => d[key] = d.GetValueOrDefault(key) + v;

    // ================================================================ evaluation

    /// <summary>ppo_trainer.evaluate: every eval prompt sampled eval_n_samples_per_prompt times at eval_temperature and
    /// scored, summarised per datasource with the generation branch's EvalSummary (as `lmmr1 eval`):
    /// "eval/{datasource}_pass1" = share of correct samples (accuracy reward &gt; 0), "_pass{n}" = unbiased pass@n,
    /// "_reward" = mean reward (what upstream logs as pass1: format + accuracy), "_format", "_response_length".</summary>
    public Dictionary<string, double> Evaluate(CancellationToken ct = default)
    {
        if (eval is null || eval.Count == 0) return [];
        var sw = Stopwatch.StartNew();
        int n = config.Rollout.EvalSamplesPerPrompt;
        var byPrompt = new ScoredSample[eval.Count][];
        int chunk = Math.Max(1, config.Rollout.RolloutBatchSize);
        var stops = Maker.StopTokens.ToHashSet();
        for (int start = 0; start < eval.Count; start += chunk)
        {
            var prompts = eval.Skip(start).Take(chunk).ToList();
            using var rollout = Maker.Generate(prompts, n, config.Rollout.EvalTemperature, Maker.SeedFor(-1 - start), ct);
            Maker.Score(rollout, ct);
            foreach (var it in rollout.Items)
            {
                bool truncated = it.ResponseLength >= config.Rollout.GenerateMaxLen && !stops.Contains((int)it.ResponseIds[^1]);
                (byPrompt[start + it.PromptIndex] ??= new ScoredSample[n])[it.SampleIndex] =
                    new ScoredSample(it.Info.AccuracyReward > 0, it.Info.FormatReward > 0, it.Info.Reward, it.ResponseLength, truncated);
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
        result["time/eval"] = sw.Elapsed.TotalSeconds;
        log("eval: " + string.Join(", ", result.Where(kv => kv.Key.StartsWith("eval/", StringComparison.Ordinal)).Select(kv => $"{kv.Key} {kv.Value:F4}")));
        return result;
    }

    public void Dispose()
    {
        ActorOptimizer.Dispose();
        CriticOptimizer?.Dispose();
    }
}
