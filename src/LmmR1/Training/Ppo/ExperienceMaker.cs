// One rollout, as OpenRLHF's RemoteExperienceMaker.make_experience_list: sample n responses per prompt with the
// actor's own weights (GenerationEngine; vLLM upstream), score them (IRewardModel on the detokenized prompt+response
// with special tokens), recompute old log-probs with a training-mode forward of the actor (the ratio's denominator
// must come from the same forward the update uses, not the sampler), reference log-probs → per-token KL, critic
// values — all without grad in micro-batches of --micro_rollout_batch_size — then advantages and returns over the
// whole rollout (AdvantagePipeline). Departure: with the actor's vision tower frozen its image embeddings are
// computed once per prompt and reused by every forward of the rollout (same numbers, n× less vision work).
// A CUDA out-of-memory error during generation halves the engine's rows per micro-batch and retries the call; the
// samples do not change (the engine's draws are keyed by prompt, sample and step, not by batching).
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Infrastructure;
using LmmR1.Rewards;
using LmmR1.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

/// <summary>The samples of one rollout (prompt-major: prompt i's samples at i·n … i·n+n−1) and the prompts' images,
/// which it owns.</summary>
public sealed class Rollout : IDisposable
{
    public required IReadOnlyList<PromptSample> Prompts { get; init; }
    public required IReadOnlyList<ExperienceItem> Items { get; init; }
    public required IReadOnlyList<VisionInput?> Visions { get; init; }
    /// <summary>Detokenized prompt+response with special tokens (what the reward model saw).</summary>
    public required IReadOnlyList<string> Queries { get; init; }
    /// <summary>Mean |engine log-prob − recomputed log-prob| over all action tokens (0 when not computed).</summary>
    public double RolloutLogProbGap { get; set; }

    public void Dispose()
    {
        foreach (var v in Visions) v?.Dispose();
    }
}

/// <summary>Counters the tests and reports read: how often each model ran a forward pass.</summary>
public sealed class ExperienceStats
{
    public long ActorForwards { get; set; }
    public long ReferenceForwards { get; set; }
    public long CriticForwards { get; set; }
    public long VisionEncodes { get; set; }
}

public sealed class ExperienceMaker
{
    readonly PpoConfig config;
    readonly PpoModels models;
    readonly QwenTokenizer tokenizer;
    readonly QwenVLProcessor processor;
    readonly IRewardModel reward;
    GenerationEngine engine;
    readonly PhaseTimer timer;
    readonly IReadOnlyList<int> stopTokens;

    public ExperienceStats Stats { get; } = new();

    public ExperienceMaker(PpoConfig config, PpoModels models, QwenTokenizer tokenizer, QwenVLProcessor processor, IRewardModel reward,
                           PhaseTimer timer)
    {
        this.config = config;
        this.models = models;
        this.tokenizer = tokenizer;
        this.processor = processor;
        this.reward = reward;
        this.timer = timer;
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
    Device Device => models.Actor.Device;
    long Pad => tokenizer.PadTokenId;
    bool ActorVisionFrozen => PpoModels.VisionFrozen(models.Actor);

    /// <summary>Generate → Score → LogProbs (old/ref/values) → Advantages for one batch of prompts.</summary>
    public Rollout Make(IReadOnlyList<PromptSample> prompts, long globalStep, double klCoef, CancellationToken ct = default,
                        Action<GenerationProgress>? progress = null)
    {
        Rollout rollout;
        using (timer.Phase("generate"))
            rollout = Generate(prompts, config.Rollout.SamplesPerPrompt, config.Rollout.Temperature, SeedFor(globalStep), ct, progress);
        try
        {
            using (timer.Phase("reward")) Score(rollout, ct);
            using (timer.Phase("logprobs")) ForwardPasses(rollout);
            using (timer.Phase("advantages")) Advantages(rollout.Items, klCoef);
            return rollout;
        }
        catch
        {
            rollout.Dispose();
            throw;
        }
    }

    /// <summary>The sampling seed of a global step: the run's --seed mixed with the step, so every rollout draws fresh
    /// randomness yet a rerun draws the same.</summary>
    public ulong SeedFor(long globalStep) => unchecked((ulong)config.Run.Seed * 1_000_003UL + (ulong)globalStep);

    // ---------------------------------------------------------------- generate

    /// <summary>Processes the prompts (template, images, tokens), samples n responses each and returns the items
    /// (no scores yet). Used by evaluation too.</summary>
    public Rollout Generate(IReadOnlyList<PromptSample> prompts, int n, double temperature, ulong seed, CancellationToken ct = default,
                            Action<GenerationProgress>? progress = null)
    {
        var processed = processor.ProcessMany(prompts);
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
                genPrompts.Add(new GenerationPrompt(p.InputIds.Select(t => (int)t).ToArray(), p.PixelValues, p.ImageGridThw));
            }
        }
        catch
        {
            foreach (var p in processed) p.Dispose();
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
        };
        IReadOnlyList<GenerationOutput> outputs;
        try { outputs = GenerateHalvingOnOom(genPrompts, sampling, progress, ct); }
        catch
        {
            foreach (var v in visions) v?.Dispose();
            throw;
        }

        var items = new List<ExperienceItem>(outputs.Count);
        var queries = new List<string>(outputs.Count);
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
                Info = new SampleInfo { ResponseLength = resp.Length, TotalLength = promptIds.Length + resp.Length },
            });
            queries.Add(tokenizer.Decode(promptIds.Select(t => (int)t).Concat(o.TokenIds), skipSpecialTokens: false));
        }
        return new Rollout { Prompts = prompts, Items = items, Visions = visions, Queries = queries };
    }

    /// <summary>engine.Generate; on CUDA out-of-memory the rows per micro-batch are halved (and stay halved for the
    /// rest of the run) and the call is retried, down to one row.</summary>
    IReadOnlyList<GenerationOutput> GenerateHalvingOnOom(List<GenerationPrompt> prompts, SamplingParams sampling,
                                                         Action<GenerationProgress>? progress, CancellationToken ct)
    {
        while (true)
        {
            try
            {
                BeforeEngineGenerate?.Invoke(engine.Options);
                return engine.Generate(prompts, sampling, progress: progress, cancel: ct);
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

    // ---------------------------------------------------------------- score

    /// <summary>Fills Reward / FormatReward / AccuracyReward of every item (one reward-model call for the rollout).</summary>
    public void Score(Rollout rollout, CancellationToken ct = default)
    {
        var items = rollout.Items;
        var prompts = items.Select(i => rollout.Prompts[i.PromptIndex].Prompt).ToList();
        var labels = items.Select(i => rollout.Prompts[i.PromptIndex].Label).ToList();
        var results = reward.ScoreAsync(rollout.Queries, prompts, labels, ct).GetAwaiter().GetResult();
        if (results.Count != items.Count)
            throw new InvalidOperationException($"the reward model returned {results.Count} rewards for {items.Count} samples");
        for (int i = 0; i < items.Count; i++)
        {
            var r = results[i];
            if (!double.IsFinite(r.Reward)) throw new InvalidOperationException($"the reward model returned {r.Reward} for sample {i}");
            items[i].Info.Reward = r.Reward;
            items[i].Info.FormatReward = r.FormatReward;
            items[i].Info.AccuracyReward = r.AccuracyReward;
        }
    }

    // ---------------------------------------------------------------- log-probs, KL, values

    /// <summary>Old log-probs (actor, training-mode forward without grad), reference log-probs → KL, critic values.</summary>
    public void ForwardPasses(Rollout rollout)
    {
        using var noGrad = torch.no_grad();
        bool cached = ActorVisionFrozen && rollout.Visions.Any(v => v is not null);
        if (cached) CacheVision(rollout.Visions);
        bool refCached = cached && models.ReferenceSharesFrozenVision;
        int micro = config.Rollout.MicroRolloutBatchSize;
        var items = rollout.Items;
        double gapSum = 0;
        long gapCount = 0;
        for (int start = 0; start < items.Count; start += micro)
        {
            var batch = items.Skip(start).Take(micro).ToList();
            using var scope = torch.NewDisposeScope();
            using var withPixels = !cached || (models.Reference is not null && !refCached) || models.Critic is not null
                ? Experience.Collate(batch, Device, Pad, useCachedVision: false) : null;
            using var withEmbeds = cached ? Experience.Collate(batch, Device, Pad, useCachedVision: true) : null;
            var actorBatch = withEmbeds ?? withPixels!;

            var (lp, _) = PolicyForward.ActionLogProbs(models.Actor, actorBatch, config.Rollout.Temperature);   // [B, A]
            Stats.ActorForwards++;
            var lpRows = Experience.SplitActions(lp, batch);
            for (int r = 0; r < batch.Count; r++)
            {
                batch[r].ActionLogProbs = lpRows[r];
                if (batch[r].RolloutLogProbs is { } eng)
                    for (int t = 0; t < eng.Length; t++) { gapSum += Math.Abs(eng[t] - lpRows[r][t]); gapCount++; }
            }

            if (models.Reference is { } reference)
            {
                var refBatch = refCached ? withEmbeds! : withPixels!;
                var (refLp, _) = PolicyForward.ActionLogProbs(reference, refBatch, config.Rollout.Temperature);
                Stats.ReferenceForwards++;
                if (config.Algorithm.UseKlLoss)
                {
                    var refRows = Experience.SplitActions(refLp, batch);
                    for (int r = 0; r < batch.Count; r++) batch[r].BaseActionLogProbs = refRows[r];
                }
                else
                {
                    var kl = Kl.Approx(lp, refLp, config.Algorithm.KlEstimator, actorBatch.ActionMask);            // [B, A]
                    var klRows = Experience.SplitActions(kl, batch);
                    for (int r = 0; r < batch.Count; r++)
                    {
                        batch[r].Kl = klRows[r];
                        batch[r].Info.Kl = klRows[r].Length == 0 ? 0 : klRows[r].Average(x => (double)x);
                    }
                }
            }

            if (models.Critic is { } critic)
            {
                var v = critic.Values(withPixels!);                                                             // [B, A]
                Stats.CriticForwards++;
                var vRows = Experience.SplitActions(v, batch);
                for (int r = 0; r < batch.Count; r++) batch[r].Values = vRows[r];
            }
        }
        rollout.RolloutLogProbGap = gapCount == 0 ? 0 : gapSum / gapCount;
    }

    /// <summary>Runs the actor's frozen vision tower once per prompt and keeps the embeddings on the device.</summary>
    public void CacheVision(IReadOnlyList<VisionInput?> visions)
    {
        using var noGrad = torch.no_grad();
        foreach (var v in visions)
        {
            if (v is null || v.ImageEmbeds is not null) continue;
            using var scope = torch.NewDisposeScope();   // EncodeVision leaves temporaries in the caller's scope
            v.ImageEmbeds = models.Actor.EncodeVision(v.PixelValues, v.ImageGridThw).DetachFromDisposeScope();
            Stats.VisionEncodes++;
        }
    }

    // ---------------------------------------------------------------- advantages

    /// <summary>Group shaping → token rewards (clip, −β·KL) → GAE or return-to-go → whitening, over the whole rollout
    /// as one [N, A] batch (responses right-aligned), written back per item.</summary>
    public void Advantages(IReadOnlyList<ExperienceItem> items, double klCoef)
    {
        using var scope = torch.NewDisposeScope();
        int n = items.Count, a = items.Max(i => i.ResponseLength);
        var mask = new bool[n * a];
        for (int r = 0; r < n; r++) Array.Fill(mask, true, r * a + (a - items[r].ResponseLength), items[r].ResponseLength);
        var maskT = torch.tensor(mask, [n, a], device: Device);
        var rewards = torch.tensor(items.Select(i => (float)i.Info.Reward).ToArray(), device: Device);                  // [N]
        var kl = items.All(i => i.Kl is not null) ? RightAligned(items, i => i.Kl!, a) : null;                         // [N, A]
        var values = config.UsesCritic ? RightAligned(items, i => i.Values ?? throw new InvalidOperationException("critic values missing"), a) : null;
        var result = AdvantagePipeline.Compute([new RolloutRewards(rewards, kl, maskT, values)], config.Advantage, klCoef)[0];
        var adv = Experience.SplitActions(result.Advantages, items);
        var ret = Experience.SplitActions(result.Returns, items);
        using var sums = result.ReturnSum.to(ScalarType.Float32, torch.CPU);
        var sumArr = sums.data<float>().ToArray();
        for (int r = 0; r < n; r++)
        {
            items[r].Advantages = adv[r];
            items[r].Returns = ret[r];
            items[r].Info.Return = sumArr[r];
        }
        result.Dispose();
    }

    Tensor RightAligned(IReadOnlyList<ExperienceItem> items, Func<ExperienceItem, float[]> get, int a)
    {
        var data = new float[items.Count * a];
        for (int r = 0; r < items.Count; r++)
        {
            var v = get(items[r]);
            Array.Copy(v, 0, data, r * a + (a - v.Length), v.Length);
        }
        return torch.tensor(data, [items.Count, a], device: Device);
    }
}
