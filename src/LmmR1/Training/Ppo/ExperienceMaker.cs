// The rollout phases of one step, as OpenRLHF's RemoteExperienceMaker.make_experience_list, each a method returning
// its typed result (the trainer's step calls them in order): Generate samples n responses per prompt with the
// actor's own weights (GenerationEngine; vLLM upstream); Score runs the reward model on the detokenized
// prompt+response with special tokens; ActorLogProbs recomputes the old log-probs with a training-mode forward of
// the actor (the ratio's denominator must come from the same forward the update uses, not the sampler) for the
// samples whose old log-probs the update's own forward does not give (OldLogProbPlan);
// ReferenceLogProbs and Values run the reference and the critic — all without grad in micro-batches of
// --micro_rollout_batch_size, each returning a rollout-wide [N, A] tensor; Advantages turns rewards, KL and values
// into advantages and returns over the whole rollout (AdvantagePipeline). Departure: each prompt's images go through
// a vision tower once per model and phase, not once per sample (upstream and vLLM encode every sample's copy): the
// actor's embeddings are computed once per prompt before generation and reused by the engine's prefill and by the
// old log-probs (same weights) — and, with the tower frozen, by the reference (when it holds the same frozen tower)
// and the whole update; the reference's and the critic's own towers run once per prompt in their phases. Same numbers
// up to rounding, n× less vision work. A CUDA out-of-memory error during generation halves the engine's rows per
// micro-batch and retries the call; the samples do not change (the engine's draws are keyed by prompt, sample and
// step, not by batching).
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Text;
using LmmR1.Training.RewardModels;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

/// <summary>The generate phase's result: the samples of one rollout (prompt-major: prompt i's samples at i·n …
/// i·n+n−1), the prompts' images and the rollout's action mask, which it owns.</summary>
public sealed class Rollout : IDisposable
{
    public required IReadOnlyList<PromptSample> Prompts { get; init; }
    public required IReadOnlyList<ExperienceItem> Items { get; init; }
    public required IReadOnlyList<VisionInput?> Visions { get; init; }
    /// <summary>Detokenized prompt+response with special tokens (what the reward model sees).</summary>
    public required IReadOnlyList<string> Queries { get; init; }
    /// <summary>[N, A] bool on the actor's device: the action slots of every sample (right-aligned).</summary>
    public required Tensor ActionMask { get; init; }

    /// <summary>False for a rollout assembled from groups of other rollouts (dynamic filtering), which own the images.</summary>
    public bool OwnsVisions { get; init; } = true;

    public int Count => Items.Count;

    /// <summary>The groups (a rollout and one of its prompt indexes) as one prompt-major rollout that borrows their
    /// images; the picked samples keep their order and sample indexes. Also returns, per picked sample, the rollout
    /// it came from and its index there.</summary>
    public static (Rollout Rollout, IReadOnlyList<(Rollout From, int Item)> Source) Pick(IReadOnlyList<(Rollout From, int Prompt)> groups, Device device)
    {
        var prompts = new List<PromptSample>(groups.Count);
        var visions = new List<VisionInput?>(groups.Count);
        var items = new List<ExperienceItem>();
        var queries = new List<string>();
        var source = new List<(Rollout, int)>();
        for (int g = 0; g < groups.Count; g++)
        {
            var (from, p) = groups[g];
            prompts.Add(from.Prompts[p]);
            visions.Add(from.Visions[p]);
            for (int i = 0; i < from.Items.Count; i++)
            {
                var it = from.Items[i];
                if (it.PromptIndex != p) continue;
                items.Add(new ExperienceItem
                {
                    PromptIndex = g, SampleIndex = it.SampleIndex, PromptIds = it.PromptIds, ResponseIds = it.ResponseIds,
                    Vision = it.Vision, RolloutLogProbs = it.RolloutLogProbs,
                });
                queries.Add(from.Queries[i]);
                source.Add((from, i));
            }
        }
        var rollout = new Rollout
        {
            Prompts = prompts, Items = items, Visions = visions, Queries = queries,
            ActionMask = ActionTensors.Mask(items, device), OwnsVisions = false,
        };
        return (rollout, source);
    }

    public void Dispose()
    {
        if (OwnsVisions) foreach (var v in Visions) v?.Dispose();
        ActionMask.Dispose();
    }
}

/// <summary>Counters the tests and reports read: how often each model ran a forward pass; and where the generate
/// phase's time outside the engine goes (seconds, summed over rollouts; the vision time waits for the device).</summary>
public sealed class ExperienceStats
{
    public long ActorForwards { get; set; }
    public long ReferenceForwards { get; set; }
    public long CriticForwards { get; set; }
    public long VisionEncodes { get; set; }
    /// <summary>The processor: chat template, image resizing and patches, tokens.</summary>
    public double ProcessSeconds { get; set; }
    /// <summary>The actor's vision tower once per prompt, prompts together (CacheVision).</summary>
    public double VisionSeconds { get; set; }
    /// <summary>After the engine: the samples' token lists and query texts.</summary>
    public double CollectSeconds { get; set; }
}

public sealed class ExperienceMaker
{
    readonly PpoConfig config;
    readonly PpoModels models;
    readonly QwenTokenizer tokenizer;
    readonly QwenVLProcessor processor;
    readonly IRewardModel reward;
    readonly RewardModelSet? rewardModels;
    GenerationEngine engine;
    readonly AdvantageSettings advantage;
    readonly IReadOnlyList<int> stopTokens;

    /// <summary>The run's counters (the warm-up counts into its own, then puts these back).</summary>
    public ExperienceStats Stats { get; private set; } = new();

    /// <param name="rewardModels">--reward_pretrain's models, combined with <paramref name="reward"/> in Score; or null.</param>
    public ExperienceMaker(PpoConfig config, PpoModels models, QwenTokenizer tokenizer, QwenVLProcessor processor, IRewardModel reward,
                           RewardModelSet? rewardModels = null)
    {
        this.rewardModels = rewardModels;
        this.config = config;
        this.models = models;
        this.tokenizer = tokenizer;
        this.processor = processor;
        this.reward = reward;
        advantage = config.Advantage;
        engine = new GenerationEngine(models.Actor, new GenerationEngineOptions
        {
            MaxRowsPerBatch = config.Rollout.MaxBatchRows,
            MaxTokensPerBatch = config.Rollout.MaxBatchTokens,
        });
        stopTokens = tokenizer.EosTokenIds.Concat(models.Actor.Config.Tokens.EosTokenIds.Select(t => (int)t))
            .Where(t => t >= 0 && t < models.Actor.Config.Text.VocabSize).Distinct().ToList();
        if (stopTokens.Count == 0)
            throw new InputException($"{tokenizer.Source}: no EOS token (tokenizer_config.json eos_token / generation_config.json eos_token_id) to stop generation at");
    }

    public GenerationEngine Engine => engine;
    /// <summary>Test hook: called before every engine call with its options (a test throws a fake OOM here).</summary>
    internal Action<GenerationEngineOptions>? BeforeEngineGenerate { get; set; }
    /// <summary>Warnings for people (OOM retries).</summary>
    public Action<string>? Log { get; set; }
    public IReadOnlyList<int> StopTokens => stopTokens;
    /// <summary>Bench only (`lmmr1 bench rl-step`): forced response lengths for random-weight models; null = off.</summary>
    public SyntheticLengths? SyntheticLengths { get; set; }

    /// <summary>Frees the engine's captured CUDA graphs and their static KV caches (the trainer calls it before the
    /// update, which needs that memory; the next rollout captures again). Returns whether any were held. On CPU, or
    /// without captured graphs, it does nothing.</summary>
    public bool ReleaseRolloutGraphs()
    {
        if (engine.CapturedGraphs == 0) return false;
        engine.ReleaseGraphs();
        // The freed blocks go back to the device, not only to the caching allocator (when the native extension is there).
        if (Device.type == DeviceType.CUDA) NativeExtension.TryGet()?.EmptyCache();
        return true;
    }
    Device Device => models.Actor.Device;
    long Pad => tokenizer.PadTokenId;
    bool ActorVisionFrozen => PpoModels.VisionFrozen(models.Actor);

    // ---------------------------------------------------------------- generate

    /// <summary>Processes the prompts (template, images, tokens) and samples n responses each. Used by evaluation too.
    /// <paramref name="warmUpSteps"/>: the engine's warm-up of this rollout instead (GenerationEngine.WarmUp; responses
    /// cut after that many tokens).</summary>
    public Rollout Generate(IReadOnlyList<PromptSample> prompts, int n, double temperature, ulong seed, CancellationToken ct = default,
                            Action<GenerationProgress>? progress = null, int? warmUpSteps = null)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var processed = processor.ProcessMany(prompts);
        Stats.ProcessSeconds += clock.Elapsed.TotalSeconds;
        var visions = new VisionInput?[prompts.Count];
        var genPrompts = new List<GenerationPrompt>(prompts.Count);
        try
        {
            for (int i = 0; i < prompts.Count; i++)
            {
                var p = processed[i];
                var s = prompts[i];
                if (p.InputIds.Length > config.Data.PromptMaxLen)
                    throw InputException.At(s.File, s.Line, "--prompt_max_len",
                        $"the prompt has {p.InputIds.Length} tokens (image pads expanded), more than --prompt_max_len {config.Data.PromptMaxLen} " +
                        "(raise the flag, lower --processor_kwargs max_pixels, or drop the row; `lmmr1 data check --prompt_max_len` finds them all)");
                // The rollout owns the prompt's image tensors from here on (not whatever dispose scope is open).
                if (p.PixelValues is not null)
                    visions[i] = new VisionInput { PixelValues = p.PixelValues.DetachFromDisposeScope(), ImageGridThw = p.ImageGridThw!.DetachFromDisposeScope() };
            }
            // The actor's vision tower once per prompt: the engine's prefill and the old log-probs reuse it.
            if (models.Actor.Config.Vision is not null)
            {
                clock.Restart();
                CacheVision(visions);
                if (Device.type == DeviceType.CUDA) torch.cuda.synchronize(Device);
                Stats.VisionSeconds += clock.Elapsed.TotalSeconds;
            }
            for (int i = 0; i < prompts.Count; i++)
                genPrompts.Add(new GenerationPrompt(processed[i].InputIds.Select(t => (int)t).ToArray(), processed[i].PixelValues, processed[i].ImageGridThw)
                {
                    ImageEmbeds = visions[i]?.ImageEmbeds,
                });
        }
        catch
        {
            foreach (var p in processed) p.Dispose();
            foreach (var v in visions) v?.ForgetEmbeds();
            throw;
        }

        var sampling = new SamplingParams
        {
            N = n,
            Temperature = temperature,
            TopP = config.Rollout.TopP,
            MaxNewTokens = config.Rollout.GenerateMaxLen,
            MinNewTokens = 1,
            StopTokenIds = stopTokens,
            Seed = seed,
            SyntheticLengths = SyntheticLengths,
        };
        IReadOnlyList<GenerationOutput> outputs;
        try { outputs = GenerateHalvingOnOom(genPrompts, sampling, progress, ct, warmUpSteps); }
        catch
        {
            foreach (var v in visions) v?.Dispose();
            throw;
        }

        clock.Restart();
        var items = new List<ExperienceItem>(outputs.Count);
        // The query texts the reward reads (prompt + response, special tokens kept): decoded on all cores.
        var queries = new string[outputs.Count];
        Parallel.For(0, outputs.Count, i => queries[i] = tokenizer.Decode(
            processed[outputs[i].PromptIndex].InputIds.Select(t => (int)t).Concat(outputs[i].TokenIds), skipSpecialTokens: false));
        foreach (var o in outputs)
        {
            var promptIds = processed[o.PromptIndex].InputIds;
            var resp = o.TokenIds.Select(t => (long)t).ToArray();
            items.Add(new ExperienceItem
            {
                PromptIndex = o.PromptIndex,
                SampleIndex = o.SampleIndex,
                PromptIds = promptIds,
                ResponseIds = resp,
                Vision = visions[o.PromptIndex],
                RolloutLogProbs = o.LogProbs,
            });
        }
        var rollout = new Rollout { Prompts = prompts, Items = items, Visions = visions, Queries = queries, ActionMask = ActionTensors.Mask(items, Device) };
        Stats.CollectSeconds += clock.Elapsed.TotalSeconds;
        return rollout;
    }

    /// <summary>The warm-up rollout (RolloutWarmUp): <paramref name="prompts"/> × n samples through the whole generate
    /// phase at the rollout's own shapes (capacity for --generate_max_len), cut after <paramref name="newTokens"/> tokens
    /// (GenerationEngine.WarmUp, which also captures every attention window), samples discarded, graphs released
    /// (unless --rollout_keep_cuda_graphs), the stats put back as they were.</summary>
    public RolloutWarmUp WarmUp(IReadOnlyList<PromptSample> prompts, int n, double temperature, ulong seed, int newTokens)
    {
        var saved = Stats;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        try
        {
            Stats = new ExperienceStats();
            using (Generate(prompts, n, temperature, seed, warmUpSteps: newTokens)) { }
            if (Device.type == DeviceType.CUDA) torch.cuda.synchronize(Device);
            // Kept with --rollout_keep_cuda_graphs, as every rollout's are (step 1 then replays them).
            if (!config.Rollout.KeepCudaGraphs) ReleaseRolloutGraphs();
            var e = engine.LastStats;
            return new RolloutWarmUp(clock.Elapsed.TotalSeconds, Stats.ProcessSeconds, Stats.VisionSeconds, e.PrefillSeconds + e.DecodeSeconds,
                                     Stats.CollectSeconds, e.GraphCaptures);
        }
        finally { Stats = saved; }
    }

    /// <summary>engine.Generate; on CUDA out-of-memory the rows per micro-batch are halved (and stay halved for the
    /// rest of the run) and the call is retried, down to one row.</summary>
    IReadOnlyList<GenerationOutput> GenerateHalvingOnOom(List<GenerationPrompt> prompts, SamplingParams sampling,
                                                         Action<GenerationProgress>? progress, CancellationToken ct, int? warmUpSteps)
    {
        while (true)
        {
            try
            {
                BeforeEngineGenerate?.Invoke(engine.Options);
                return warmUpSteps is int w
                    ? engine.WarmUp(prompts, sampling, w, cancel: ct)
                    : engine.Generate(prompts, sampling, progress: progress, cancel: ct);
            }
            catch (Exception e) when (IsOutOfMemory(e) && engine.Options.MaxRowsPerBatch > 1)
            {
                int rows = engine.Options.MaxRowsPerBatch;
                // The largest micro-batch actually planned may be below the limit: halve what ran, not the limit.
                int ran = Math.Max(1, engine.LastStats.MaxRows > 0 ? Math.Min(rows, (int)engine.LastStats.MaxRows) : rows);
                int half = Math.Max(1, ran / 2);
                engine = new GenerationEngine(models.Actor, engine.Options with { MaxRowsPerBatch = half });
                GC.Collect();
                GC.WaitForPendingFinalizers();
                Log?.Invoke($"warning: out of memory while generating with up to {rows} rows per micro-batch; retrying with {half} " +
                            "(lower --rollout_max_batch_rows or --rollout_max_batch_tokens to start there)");
            }
        }
    }

    /// <summary>Whether an exception (or one it wraps) is libtorch's CUDA out-of-memory error.</summary>
    public static bool IsOutOfMemory(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x.Message.Contains("CUDA out of memory", StringComparison.OrdinalIgnoreCase) ||
                x.Message.Contains("CUDA error: out of memory", StringComparison.OrdinalIgnoreCase)) return true;
        return false;
    }

    // ---------------------------------------------------------------- reward

    /// <summary>One reward-model call for the rollout: reward, format and accuracy parts per sample, in sample order;
    /// with --reward_pretrain the reward is the weighted sum of the reward models' scores and the rule reward's
    /// (RewardCombination), the format and accuracy parts stay the rule reward's.</summary>
    public IReadOnlyList<RewardResult> Score(Rollout rollout, CancellationToken ct = default)
    {
        var items = rollout.Items;
        var prompts = items.Select(i => rollout.Prompts[i.PromptIndex].Prompt).ToList();
        var labels = items.Select(i => rollout.Prompts[i.PromptIndex].Label).ToList();
        var results = reward.ScoreAsync(rollout.Queries, prompts, labels, ct).GetAwaiter().GetResult();
        if (results.Count != items.Count)
            throw new InvalidOperationException($"the reward model returned {results.Count} rewards for {items.Count} samples");
        if (rewardModels is not null)
            results = rewardModels.Combine(results, rewardModels.RawScores(items, config.Rollout.MicroRolloutBatchSize, Pad));
        for (int i = 0; i < results.Count; i++)
            if (!double.IsFinite(results[i].Reward)) throw new InvalidOperationException($"the reward model returned {results[i].Reward} for sample {i}");
        return results;
    }

    // ---------------------------------------------------------------- log-probs, reference, values

    /// <summary>Old log-probs [N, A]: the actor's training-mode forward without grad, what the PPO ratio compares
    /// against. Reuses the actor's image embeddings cached at generation (no update has run since). With
    /// <paramref name="rows"/> only those rows are computed (the rest, 0, come from the update's forward: OldLogProbPlan).</summary>
    public Tensor ActorLogProbs(Rollout rollout, IReadOnlyList<int>? rows = null)
    {
        CacheVision(rollout.Visions);
        Tensor Forward(Experience e)
        {
            Stats.ActorForwards++;
            return PolicyForward.ActionLogProbs(models.Actor, e, config.Rollout.Temperature);
        }
        if (rows is null) return PerMicroBatch(rollout, v => v.ImageEmbeds, Forward);
        using var scope = torch.NewDisposeScope();
        var full = torch.zeros(rollout.ActionMask.shape, ScalarType.Float32, Device);
        if (rows.Count > 0)
        {
            var part = PerMicroBatch(rows.Select(i => rollout.Items[i]).ToList(), rollout.ActionMask.shape[1], v => v.ImageEmbeds, Forward);
            full.index_copy_(0, torch.tensor(rows.Select(i => (long)i).ToArray(), device: Device), part);
        }
        return full.MoveToOuterDisposeScope();
    }

    /// <summary>Reference log-probs [N, A] (the frozen initial policy): the actor's cached image embeddings when its
    /// vision tower holds the same frozen weights, else the reference's own tower once per prompt.</summary>
    public Tensor ReferenceLogProbs(QwenVLModel reference, Rollout rollout)
    {
        using var adaptersOff = ReferenceEquals(reference, models.Actor) ? reference.Lora?.Off() : null;   // LoRA: the base policy
        if (ActorVisionFrozen && models.ReferenceSharesFrozenVision)
        {
            CacheVision(rollout.Visions);
            return PerMicroBatch(rollout, v => v.ImageEmbeds, e =>
            {
                Stats.ReferenceForwards++;
                return PolicyForward.ActionLogProbs(reference, e, config.Rollout.Temperature);
            });
        }
        using var own = EncodeOnce(reference, rollout.Visions);
        return PerMicroBatch(rollout, own.Get, e =>
        {
            Stats.ReferenceForwards++;
            return PolicyForward.ActionLogProbs(reference, e, config.Rollout.Temperature);
        });
    }

    /// <summary>Critic values V_old [N, A] (gae); the critic's vision tower runs once per prompt.</summary>
    public Tensor Values(CriticModel critic, Rollout rollout)
    {
        using var own = EncodeOnce(critic.Backbone, rollout.Visions);
        return PerMicroBatch(rollout, own.Get, e =>
        {
            Stats.CriticForwards++;
            return critic.Values(e);
        });
    }

    /// <summary>A no-grad forward over the rollout in micro-batches of --micro_rollout_batch_size → [N, A] right-aligned.</summary>
    Tensor PerMicroBatch(Rollout rollout, Func<VisionInput, Tensor?> embeds, Func<Experience, Tensor> forward) =>
        PerMicroBatch(rollout.Items, rollout.ActionMask.shape[1], embeds, forward);

    /// <summary>The same over <paramref name="items"/> → [items, width] right-aligned.</summary>
    Tensor PerMicroBatch(IReadOnlyList<ExperienceItem> items, long width, Func<VisionInput, Tensor?> embeds, Func<Experience, Tensor> forward)
    {
        using var noGrad = torch.no_grad();
        int micro = config.Rollout.MicroRolloutBatchSize;
        var parts = new List<Tensor>();
        using var outer = torch.NewDisposeScope();
        for (int start = 0; start < items.Count; start += micro)
        {
            using var scope = torch.NewDisposeScope();
            using var e = Experience.Collate(items.Skip(start).Take(micro).ToList(), Device, Pad, embeds, config.Model.PackingSamples, config.Model.PackingSharePrompts);
            parts.Add(ActionTensors.Align(forward(e), e.ActionMask, width).MoveToOuterDisposeScope());
        }
        return torch.cat(parts, 0).MoveToOuterDisposeScope();
    }

    /// <summary>Runs the actor's vision tower (no grad) once for each prompt that has no cached embeddings yet and keeps
    /// them on the device in <see cref="VisionInput.ImageEmbeds"/>.</summary>
    public void CacheVision(IReadOnlyList<VisionInput?> visions)
    {
        var todo = Distinct(visions, v => v.ImageEmbeds is null);
        EncodeBatched(models.Actor, todo, (v, e) => v.ImageEmbeds = e);
    }

    /// <summary><paramref name="model"/>'s vision tower (no grad) once per prompt, for one phase.</summary>
    PhaseEmbeds EncodeOnce(QwenVLModel model, IReadOnlyList<VisionInput?> visions)
    {
        var result = new PhaseEmbeds();
        if (model.Config.Vision is null) return result;
        EncodeBatched(model, Distinct(visions, _ => true), (v, e) => result.Map[v] = e);
        return result;
    }

    static List<VisionInput> Distinct(IReadOnlyList<VisionInput?> visions, Func<VisionInput, bool> needed)
    {
        var seen = new HashSet<VisionInput>(ReferenceEqualityComparer.Instance);
        return [.. visions.Where(v => v is not null && needed(v) && seen.Add(v)).Select(v => v!)];
    }

    /// <summary>Patches per vision-tower call when prompts are encoded together: 64 images of 448² (1,024 patches each);
    /// a larger prompt goes alone.</summary>
    internal const long VisionPatchesPerCall = 1L << 16;

    /// <summary>The vision tower of <paramref name="model"/> (no grad) over the prompts' images, several prompts per call
    /// (up to <see cref="VisionPatchesPerCall"/> patches): one pass of a few hundred ops for all of them instead of one
    /// per prompt, which on the GPU is bound by the host's op calls, not by the device. Each prompt's merged tokens are a
    /// row range of the call's output (attention stays within each image: the tower's segments). Prompts in the same
    /// order, so the same calls and bits, for the actor's cache and for the reference's and critic's passes.</summary>
    void EncodeBatched(QwenVLModel model, List<VisionInput> todo, Action<VisionInput, Tensor> store)
    {
        using var noGrad = torch.no_grad();
        long unit = model.Config.Vision!.MergeUnit;
        foreach (var (start, count) in VisionChunks(todo.Select(v => v.PixelValues.shape[0]).ToList(), VisionPatchesPerCall))
        {
            using var scope = torch.NewDisposeScope();   // EncodeVision leaves temporaries in the caller's scope
            var chunk = todo.GetRange(start, count);
            var features = VisionInput.EncodeTogether(model, chunk);                                      // [Σ tokens, H]
            long offset = 0;
            foreach (var v in chunk)
            {
                long tokens = v.MergedTokens(unit);
                store(v, features.narrow(0, offset, tokens).DetachFromDisposeScope());
                offset += tokens;
                Stats.VisionEncodes++;
            }
            if (offset != features.shape[0]) throw new InvalidOperationException($"the vision tower gave {features.shape[0]} tokens for {offset} expected");
        }
    }

    /// <summary>Consecutive runs of prompts (start, count) whose patches sum to at most <paramref name="budget"/>; a prompt
    /// over the budget forms a run alone.</summary>
    internal static List<(int Start, int Count)> VisionChunks(IReadOnlyList<long> patches, long budget)
    {
        var runs = new List<(int, int)>();
        for (int i = 0; i < patches.Count;)
        {
            int j = i + 1;
            long sum = patches[i];
            while (j < patches.Count && sum + patches[j] <= budget) sum += patches[j++];
            runs.Add((i, j - i));
            i = j;
        }
        return runs;
    }

    /// <summary>One phase's vision-tower outputs of a model other than the actor, by prompt; owns them.</summary>
    sealed class PhaseEmbeds : IDisposable
    {
        public readonly Dictionary<VisionInput, Tensor> Map = new(ReferenceEqualityComparer.Instance);
        public Tensor? Get(VisionInput v) => Map.GetValueOrDefault(v);
        public void Dispose()
        {
            foreach (var t in Map.Values) t.Dispose();
            Map.Clear();
        }
    }

    // ---------------------------------------------------------------- advantages

    /// <summary>Per-token KL for the reward (k-estimator of old vs reference log-probs; zeros without a reference or
    /// with --use_kl_loss) → group shaping → token rewards (clip, −β·KL) → GAE or return-to-go → whitening, over the
    /// whole rollout as one [N, A] batch. <paramref name="oldLogProbs"/> is read only for the KL in the reward (null:
    /// they come from the update's forward, which is not allowed then: OldLogProbPlan).</summary>
    public RolloutAdvantages Advantages(Rollout rollout, IReadOnlyList<RewardResult> scores, Tensor? oldLogProbs, Tensor? referenceLogProbs,
                                        Tensor? values, double klCoef)
    {
        using var scope = torch.NewDisposeScope();
        var mask = rollout.ActionMask;
        var rewards = torch.tensor(scores.Select(s => (float)s.Reward).ToArray(), device: Device);                    // [N]
        var kl = referenceLogProbs is not null && !config.Algorithm.UseKlLoss
            ? Kl.Approx(oldLogProbs ?? throw new InvalidOperationException("the KL in the reward needs the old log-probs before the update"),
                        referenceLogProbs, config.Algorithm.KlEstimator, mask)                                           // [N, A]
            : torch.zeros(mask.shape, ScalarType.Float32, mask.device);
        var result = AdvantagePipeline.Compute([new RolloutRewards(rewards, kl, mask, values)], advantage, klCoef)[0];
        return new RolloutAdvantages(kl.MoveToOuterDisposeScope(), result.Advantages.MoveToOuterDisposeScope(),
            result.Returns.MoveToOuterDisposeScope(), result.ReturnSum.MoveToOuterDisposeScope());
    }
}

/// <summary>The advantage phase's result, rollout-wide: Kl [N, A] the per-token KL the reward used (zeros when none),
/// Advantages and Returns [N, A] fp32, ReturnSum [N] = Σ_t r_t of the shaped token rewards (upstream "return").</summary>
public sealed record RolloutAdvantages(Tensor Kl, Tensor Advantages, Tensor Returns, Tensor ReturnSum) : IDisposable
{
    public void Dispose()
    {
        Kl.Dispose(); Advantages.Dispose(); Returns.Dispose(); ReturnSum.Dispose();
    }
}
