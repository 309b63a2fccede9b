// The step arithmetic of a run (ppo_trainer.prepare_datasets / fit) and a rough per-device memory estimate, for
// `lmmr1 train --dry_run` and for the trainer itself. Upstream's scheduler length counts every prompt
// (len(dataset)·n // train_batch_size · max_epochs · num_episodes) although the prompt loader drops the last partial
// rollout, so the cosine may not reach its floor; we keep that formula for parity.
using System.Globalization;
using System.Text;
using LmmR1.Algorithms;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;

namespace LmmR1.Training.Ppo;

public sealed record PpoPlan
{
    /// <summary>Prompts in --prompt_data after --max_samples.</summary>
    public required int Prompts { get; init; }
    /// <summary>len(dataset) // rollout_batch_size (the prompt loader drops the last partial batch).</summary>
    public required long RolloutsPerEpisode { get; init; }
    /// <summary>Global steps (rollouts) the run makes: --max_global_steps, else rollouts per episode × num_episodes.</summary>
    public required long MaxGlobalSteps { get; init; }
    /// <summary>rollout_batch_size · n_samples_per_prompt.</summary>
    public required long SamplesPerRollout { get; init; }
    /// <summary>train_batch_size / micro_train_batch_size.</summary>
    public required long AccumulationSteps { get; init; }
    /// <summary>Micro-batches per epoch over one rollout's buffer (drop_last).</summary>
    public required long MicroBatchesPerEpoch { get; init; }
    /// <summary>samples / train_batch_size · max_epochs optimizer steps per rollout, for the actor and the critic each.</summary>
    public required long OptimizerStepsPerRollout { get; init; }
    /// <summary>Length of the LR schedule (upstream's max_steps).</summary>
    public required long SchedulerSteps { get; init; }
    /// <summary>ceil(lr_warmup_ratio · scheduler steps).</summary>
    public required long WarmupSteps { get; init; }
    /// <summary>Evaluation cadence in global steps (−1 → once per episode).</summary>
    public required long EvalEvery { get; init; }

    public static PpoPlan Create(PpoConfig c, int prompts)
    {
        var r = c.Rollout;
        var o = c.Optim;
        long perEpisode = prompts / r.RolloutBatchSize;
        if (perEpisode < 1)
            throw InputException.At(null, null, "--rollout_batch_size",
                $"{r.RolloutBatchSize} prompts per rollout, but --prompt_data holds only {prompts} (after --max_samples)");
        long samples = (long)r.RolloutBatchSize * r.SamplesPerPrompt;
        long maxGlobal = o.MaxGlobalSteps ?? perEpisode * o.NumEpisodes;
        long schedulerSteps = o.MaxGlobalSteps is { } m
            ? m * samples / o.TrainBatchSize * o.MaxEpochs
            : (long)prompts * r.SamplesPerPrompt / o.TrainBatchSize * o.MaxEpochs * o.NumEpisodes;
        return new PpoPlan
        {
            Prompts = prompts,
            RolloutsPerEpisode = perEpisode,
            MaxGlobalSteps = maxGlobal,
            SamplesPerRollout = samples,
            AccumulationSteps = o.TrainBatchSize / o.MicroTrainBatchSize,
            MicroBatchesPerEpoch = samples / o.MicroTrainBatchSize,
            OptimizerStepsPerRollout = samples / o.TrainBatchSize * o.MaxEpochs,
            SchedulerSteps = Math.Max(1, schedulerSteps),
            WarmupSteps = (long)Math.Ceiling(Math.Max(1, schedulerSteps) * o.LrWarmupRatio),
            EvalEvery = c.Run.EvalSteps == -1 ? perEpisode : c.Run.EvalSteps,
        };
    }

    public string Describe(PpoConfig c)
    {
        var sb = new StringBuilder();
        var r = c.Rollout;
        var o = c.Optim;
        sb.AppendLine("plan:");
        sb.AppendLine($"  prompts                 {Prompts}");
        sb.AppendLine($"  rollout                 {r.RolloutBatchSize} prompts × {r.SamplesPerPrompt} samples = {SamplesPerRollout} samples per global step");
        sb.AppendLine($"  global steps            {RolloutsPerEpisode} per episode, {MaxGlobalSteps} in total" +
                      (o.MaxGlobalSteps is null ? $" ({o.NumEpisodes} episode(s))" : " (--max_global_steps)"));
        sb.AppendLine($"  samples generated       {SamplesPerRollout * MaxGlobalSteps}");
        if (r.WarmUp && c.Model.Device.StartsWith("cuda", StringComparison.OrdinalIgnoreCase))
            sb.AppendLine($"  rollout warm-up         before the first step: its prompts × {r.SamplesPerPrompt}, {RolloutWarmUp.TokensFor(r.GenerateMaxLen)} new tokens, " +
                          "samples discarded (--no_rollout_warmup skips it)");
        sb.AppendLine($"  training per step       {o.MaxEpochs} epoch(s) × {MicroBatchesPerEpoch} micro-batches of {o.MicroTrainBatchSize}, " +
                      $"{AccumulationSteps} per optimizer step → {OptimizerStepsPerRollout} optimizer step(s)" + (c.UsesCritic ? " each for actor and critic" : ""));
        sb.AppendLine($"  old log-probs           {OldLogProbPlan.DescribeConfig(c)}");
        if (c.Model.PackingSamples)
            sb.AppendLine("  packing                 log-prob, reference, value and update passes without padding (--packing_samples)" +
                          (c.Model.PackingSharePrompts ? "; a prompt once per micro-batch for its samples, update micro-batches by prompt group (--packing_share_prompts)" : ""));
        sb.AppendLine($"  optimizer steps         {OptimizerStepsPerRollout * MaxGlobalSteps} in total; LR schedule over {SchedulerSteps} steps, {WarmupSteps} warmup, " +
                      $"cosine to 0.1·lr (actor {Fmt(o.ActorLearningRate)}" + (c.UsesCritic ? $", critic {Fmt(o.CriticLearningRate)}" : "") + ")");
        sb.AppendLine($"  models                  actor{(c.UsesReference ? " + reference" : "")}{(c.UsesCritic ? " + critic" : "")}" +
                      $" ({(c.UsesReference ? $"KL β={Fmt(c.Algorithm.InitKlCoef)} {(c.Algorithm.UseKlLoss ? "as a loss" : "in the reward")}" : "no KL term")})");
        if (c.Model.Lora is { } lora)
            sb.AppendLine($"  LoRA                    r={lora.Rank}, α={Fmt(lora.Alpha)} (scale {Fmt(lora.Scale)}), dropout {Fmt(lora.Dropout)}, " +
                          $"targets {string.Join(" ", lora.TargetModules)}" + (lora.ExcludeModules.Count > 0 ? $" except {string.Join(" ", lora.ExcludeModules)}" : "") +
                          $"; base frozen; saves a PEFT adapter{(lora.SaveMerged ? " and a merged model ({save_path}_merged)" : "")}");
        var a = c.Algorithm;
        var pl = a.PolicyLoss;
        sb.AppendLine($"  policy loss             {pl.Type.ToString().ToLowerInvariant()}, ratio clip [{(1 - pl.ClipLow).ToString("G6", CultureInfo.InvariantCulture)}, {(1 + pl.ClipHigh).ToString("G6", CultureInfo.InvariantCulture)}]" +
                      (pl.DualClip is { } dc ? $", dual clip {Fmt(dc)}" : "") + $", --loss_agg_mode {LossAggregations.Name(pl.Aggregation)}");
        if (a.DynamicFiltering)
            sb.AppendLine($"  dynamic filtering       keep groups with {Fmt(a.DynamicFilteringLow)} < mean score < {Fmt(a.DynamicFilteringHigh)} and unequal scores; " +
                          $"up to {a.DynamicFilteringMaxRounds} extra round(s) of {r.RolloutBatchSize} prompts per step" +
                          " (their prompts are consumed: an episode may end in fewer steps)");
        if (c.Reward.OverlongBufferLen is { } buf)
            sb.AppendLine($"  overlong shaping        penalty 0 → −{Fmt(c.Reward.OverlongPenaltyFactor)} over tokens {r.GenerateMaxLen - buf}..{r.GenerateMaxLen}");
        if (c.Reward.MaskTruncatedCompletions)
            sb.AppendLine("  truncated responses     left out of the loss (--mask_truncated_completions)");
        if (!string.IsNullOrWhiteSpace(c.Data.Prompts.EvalDataset))
            sb.AppendLine($"  evaluation              every {EvalEvery} step(s), T={Fmt(r.EvalTemperature)}, {r.EvalSamplesPerPrompt} sample(s) per prompt");
        sb.AppendLine($"  checkpoints             {(c.Run.SaveSteps > 0 ? $"every {c.Run.SaveSteps} step(s) to {c.Run.CkptPath} (keep {c.Run.MaxCkptNum})" : "none (--save_steps -1)")}; final model → {c.Run.SavePath}");
        return sb.ToString();
    }

    static string Fmt(double v) => v.ToString("G4", CultureInfo.InvariantCulture);
}

/// <summary>Parameter counts computed from a config (no weights needed), by part.</summary>
public sealed record ModelSize(long Text, long LmHead, long Vision)
{
    public long Total => Text + LmHead + Vision;

    public static ModelSize Of(QwenVLConfig c)
    {
        var t = c.Text;
        long h = t.HiddenSize, kv = (long)t.NumKvHeads * t.HeadDim, q = (long)t.NumHeads * t.HeadDim;
        long layer = (h * q + q) + 2 * (h * kv + kv) + q * h + 3 * h * t.IntermediateSize + 2 * h;
        long text = (long)t.VocabSize * h + t.NumLayers * layer + h;
        long head = t.TieWordEmbeddings ? 0 : (long)t.VocabSize * h;
        long vision = 0;
        if (c.Vision is { } v)
        {
            long w = v.Width, i = v.IntermediateSize;
            long norm = c.Family == QwenFamily.Qwen2VL ? 2 * w : w;
            long mlp = c.Family == QwenFamily.Qwen2VL ? (w * i + i) + (i * w + w) : 2 * (w * i + i) + (i * w + w);
            long block = 2 * norm + (w * 3 * w + 3 * w) + (w * w + w) + mlp;
            long merged = w * v.MergeUnit;
            long merger = norm + (merged * merged + merged) + (merged * v.OutHiddenSize + v.OutHiddenSize);
            vision = (long)v.PatchDim * w + v.Depth * block + merger;
        }
        return new ModelSize(text, head, vision);
    }
}

/// <summary>Rough bytes per device for one process holding every model (weights, grads, AdamW state, generation
/// KV cache, training activations). Activations use simple per-token formulas; treat them as an order of magnitude.</summary>
public sealed record MemoryEstimate(IReadOnlyList<(string Part, double Bytes)> Parts)
{
    public double Total => Parts.Sum(p => p.Bytes);
    /// <summary>Lines printed under the table (LoRA: what it saves against full fine-tuning).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    public static MemoryEstimate Of(PpoConfig c, QwenVLConfig actor, QwenVLConfig? critic)
    {
        int w = c.Model.Bf16 ? 2 : 4;
        int optimBytes = c.Model.Bf16 ? 12 : 8;   // fp32 moments (+ fp32 master for bf16)
        var size = ModelSize.Of(actor);
        bool visualFrozen = c.Model.FreezePrefix.Any(p => "visual.".StartsWith(p, StringComparison.Ordinal));   // other prefixes: not counted
        long trainable = size.Total - (visualFrozen ? size.Vision : 0);
        var notes = new List<string>();
        long adapters = c.Model.Lora is { } lora ? LoraLayout.AdapterParameters(actor, lora) : 0;
        var parts = new List<(string, double)>
        {
            ("actor weights", (double)size.Total * w),
        };
        if (c.Model.Lora is { } lo)
        {
            // LoRA: gradients and AdamW state for the adapters only, the reference is the base with adapters off.
            parts.Add(($"LoRA adapters (r={lo.Rank}, {adapters / 1e6:F1} M parameters)", (double)adapters * w));
            parts.Add(("LoRA adapter gradients", (double)adapters * w));
            parts.Add(("LoRA adapter AdamW state", (double)adapters * optimBytes));
            double full = (double)trainable * (w + optimBytes) + (c.UsesReference ? (double)size.Total * w : 0);
            double mine = (double)adapters * (2 * w + optimBytes);
            notes.Add($"LoRA saves {Gb(full - mine)} against full fine-tuning of this model (gradients + AdamW state of {trainable / 1e9:F2} B " +
                      $"parameters{(c.UsesReference ? " + the reference copy" : "")}: {Gb(full)}; adapters with gradients and state: {Gb(mine)})");
        }
        else
        {
            parts.Add(("actor gradients", (double)trainable * w));
            parts.Add(("actor AdamW state", (double)trainable * optimBytes));
        }
        if (c.UsesReference) parts.Add(c.Model.Lora is null ? ("reference weights", (double)size.Total * w) : ("reference weights (LoRA: the base with adapters off)", 0));
        if (c.UsesCritic && critic is not null)
        {
            var cs = ModelSize.Of(critic);
            long cp = cs.Text + cs.Vision + critic.Text.HiddenSize;   // the LM head is not used by the critic
            parts.Add(("critic weights", (double)(cp + cs.LmHead) * w));
            parts.Add(("critic gradients", (double)cp * w));
            parts.Add(("critic AdamW state", (double)cp * optimBytes));
        }

        var t = actor.Text;
        long seq = (long)c.Data.PromptMaxLen + c.Rollout.GenerateMaxLen;   // long: two int flags near int.MaxValue must not wrap
        long rows = Math.Min((long)c.Rollout.RolloutBatchSize * c.Rollout.SamplesPerPrompt, c.Rollout.MaxBatchRows);
        if (c.Rollout.MaxBatchTokens > 0) rows = Math.Max(1, Math.Min(rows, c.Rollout.MaxBatchTokens / seq));
        double kvPerPos = 2.0 * t.NumLayers * t.NumKvHeads * t.HeadDim * w;
        parts.Add(($"generation KV cache ({rows} rows × {seq} positions)", rows * seq * kvPerPos));
        parts.Add(("generation logits (fp32 sampling)", rows * (double)t.VocabSize * 4 * 2));

        long b = c.Optim.MicroTrainBatchSize;
        double perLayer = (double)b * seq * (8.0 * t.HiddenSize + 4.0 * t.IntermediateSize) * w;
        double layerInputs = (double)b * seq * t.HiddenSize * w;
        // Checkpointed layers keep their inputs (plus one layer's activations while it is recomputed); the others keep all.
        int recomputed = !c.Model.GradientCheckpointing ? 0 : c.Model.GradientCheckpointingLayers is > 0 and var n ? Math.Min(n, t.NumLayers) : t.NumLayers;
        double acts = recomputed * layerInputs + (t.NumLayers - recomputed) * perLayer + (recomputed > 0 ? perLayer : 0);
        double logits = (double)b * c.Rollout.GenerateMaxLen * t.VocabSize * (w + 8);
        string ckpt = recomputed == 0 ? "no checkpointing" : recomputed == t.NumLayers ? "checkpointed" : $"{recomputed} of {t.NumLayers} layers checkpointed";
        parts.Add(($"actor activations (micro-batch {b} × {seq}, {ckpt})", acts));
        parts.Add(("actor action logits + fp32 log-softmax", logits));
        if (c.UsesCritic) parts.Add(("critic activations", acts));
        return new MemoryEstimate(parts) { Notes = notes };
    }

    /// <summary>Adds the frozen reward models (--reward_pretrain): their weights in the run's dtype (no lm_head, plus the
    /// value head) and one no-grad forward's activations (one layer live at a time, micro-batch of
    /// --micro_rollout_batch_size), inserted before the generation parts.</summary>
    public MemoryEstimate WithRewardModels(PpoConfig c, IReadOnlyList<QwenVLConfig> rewardModels)
    {
        if (rewardModels.Count == 0) return this;
        int w = c.Model.Bf16 ? 2 : 4;
        double weights = rewardModels.Sum(rm => { var s = ModelSize.Of(rm); return (double)(s.Text + s.Vision + rm.Text.HiddenSize) * w; });
        long seq = (long)c.Data.PromptMaxLen + c.Rollout.GenerateMaxLen;
        double acts = rewardModels.Max(rm => (double)c.Rollout.MicroRolloutBatchSize * seq * (4.0 * rm.Text.HiddenSize + 2.0 * rm.Text.IntermediateSize) * w);
        var parts = Parts.ToList();
        int at = parts.FindIndex(p => p.Part.StartsWith("generation", StringComparison.Ordinal));
        if (at < 0) at = parts.Count;
        parts.Insert(at, ($"reward model weights ({rewardModels.Count}, frozen, no lm_head)", weights));
        parts.Insert(at + 1, ($"reward model forward (no grad, micro-batch {c.Rollout.MicroRolloutBatchSize} × {seq})", acts));
        return new MemoryEstimate(parts);
    }

    public string Describe(string device)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"memory estimate on {device} (rough; one process holds every model):");
        foreach (var (part, bytes) in Parts) sb.AppendLine($"  {part,-62} {Gb(bytes),10}");
        sb.AppendLine($"  {"total",-62} {Gb(Total),10}");
        foreach (var n in Notes) sb.AppendLine("  " + n);
        return sb.ToString();
    }

    public static string Gb(double bytes) => (bytes / 1e9).ToString(bytes < 1e7 ? "0.0000" : "0.00", CultureInfo.InvariantCulture) + " GB";
}
