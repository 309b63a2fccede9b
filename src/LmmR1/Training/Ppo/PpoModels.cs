// The models of one PPO run in one process: the actor (trained, and the rollout engine's weights), the frozen
// reference (only when the config has a KL term) and the critic (gae only). --freeze_prefix freezes actor parameters
// by name prefix (requires_grad false, so they get neither gradients nor optimizer state), as LMM-R1's ppo_actor.
// With --lora_rank the actor gets LoRA adapters on a frozen base and the reference is the actor itself with the
// adapters switched off (ExperienceMaker.ReferenceLogProbs), so no second copy of the weights is loaded. Departure
// from OpenRLHF: a gae critic is trained in full (OpenRLHF gives it adapters too).
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

public sealed class PpoModels : IDisposable
{
    public required QwenVLModel Actor { get; init; }
    public QwenVLModel? Reference { get; init; }
    public CriticModel? Critic { get; init; }
    /// <summary>True when the reference's vision tower has the actor's (frozen) vision weights, so the actor's cached
    /// image embeddings can be reused for the reference forward.</summary>
    public bool ReferenceSharesFrozenVision { get; init; }
    /// <summary>LoRA: the reference is <see cref="Actor"/> with its adapters off (the same object).</summary>
    public bool ReferenceIsActorWithoutAdapters => Reference is not null && ReferenceEquals(Reference, Actor);

    /// <summary>Loads what the config needs from its checkpoints: the reference only with a KL term, the critic only
    /// for gae (its head initialised when --critic_pretrain is --pretrain, as upstream).</summary>
    public static PpoModels Load(PpoConfig c, Device device, Action<string>? log = null)
    {
        var dtype = c.Model.Bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        string pretrain = c.Model.Pretrain!;
        var actor = QwenVLModel.Load(pretrain, dtype, device);
        QwenVLModel? reference = null;
        CriticModel? critic = null;
        try
        {
            if (c.Model.Lora is { } lora)
            {
                actor.AttachLora(lora.Select(actor.LinearLayerNames()), lora.Rank, lora.Alpha, lora.Dropout, c.Run.Seed);
                log?.Invoke($"LoRA r={lora.Rank} α={lora.Alpha} on {actor.Lora!.Layers.Count} linear layers: {actor.Lora.ParameterCount:N0} trainable " +
                            $"parameters, base frozen{(c.UsesReference ? "; reference = base with adapters off" : "")}");
                if (c.UsesReference) reference = actor;
            }
            else if (c.UsesReference) reference = QwenVLModel.Load(pretrain, dtype, device);
            if (c.UsesCritic)
            {
                string cp = c.Model.CriticPretrain!;
                bool same = Path.GetFullPath(cp) == Path.GetFullPath(pretrain);
                critic = CriticModel.Load(cp, dtype, device, c.Model.ValueHeadPrefix, initHead: same, seed: c.Run.Seed, log);
            }
        }
        catch
        {
            actor.Dispose(); if (!ReferenceEquals(reference, actor)) reference?.Dispose(); critic?.Dispose();
            throw;
        }
        return Prepare(c, actor, reference, critic, referenceFromSameCheckpoint: true, log);
    }

    /// <summary>Applies the config to already-built models (freezing, gradient checkpointing, reference frozen) —
    /// for callers that build models themselves (tests, the demo).</summary>
    public static PpoModels Prepare(PpoConfig c, QwenVLModel actor, QwenVLModel? reference, CriticModel? critic,
                                    bool referenceFromSameCheckpoint, Action<string>? log = null)
    {
        if (c.UsesCritic && critic is null)
            throw InputException.At(null, null, "--advantage_estimator", "gae needs a critic (--critic_pretrain), but none was given");
        if (c.UsesReference && reference is null)
            throw InputException.At(null, null, "--init_kl_coef", $"{c.Algorithm.InitKlCoef} > 0 needs a reference model, but none was given");
        int frozen = Freeze(actor, c.Model.FreezePrefix);
        if (c.Model.FreezePrefix.Count > 0)
            log?.Invoke($"froze {frozen} actor parameter tensor(s) with prefix(es) {string.Join(", ", c.Model.FreezePrefix)}");
        if (reference is not null && !ReferenceEquals(reference, actor))
            foreach (var p in reference.parameters()) p.requires_grad = false;
        c.Model.CheckCheckpointLayers(actor.Config.Text.NumLayers);
        actor.GradientCheckpointing = c.Model.GradientCheckpointing;
        actor.CheckpointLayers = c.Model.GradientCheckpointingLayers;
        if (critic is not null)
        {
            critic.GradientCheckpointing = c.Model.GradientCheckpointing;
            critic.Backbone.CheckpointLayers = c.Model.GradientCheckpointingLayers;
        }
        if (c.Model.GradientCheckpointing && actor.Lora is null && IsFrozen(actor, "model.embed_tokens.weight"))
            throw InputException.At(null, null, "--freeze_prefix",
                "freezing the token embeddings with --gradient_checkpointing leaves the checkpointed layers without gradients; drop one of them");
        return new PpoModels
        {
            Actor = actor, Reference = reference, Critic = critic,
            ReferenceSharesFrozenVision = referenceFromSameCheckpoint && VisionFrozen(actor),
        };
    }

    /// <summary>Sets requires_grad false on every parameter whose name starts with one of the prefixes; a prefix that
    /// matches nothing is an error (a typo would otherwise train what was meant to be frozen).</summary>
    public static int Freeze(QwenVLModel model, IReadOnlyList<string> prefixes)
    {
        int count = 0;
        var named = model.named_parameters().ToList();
        foreach (var prefix in prefixes)
        {
            var hits = named.Where(p => p.name.StartsWith(prefix, StringComparison.Ordinal)).ToList();
            if (hits.Count == 0)
                throw InputException.At(null, null, "--freeze_prefix",
                    $"'{prefix}' matches no parameter of the actor (names look like: {string.Join(", ", named.Take(3).Select(p => p.name))}, visual.blocks.0…)");
            foreach (var (_, p) in hits) { if (p.requires_grad) count++; p.requires_grad = false; }
        }
        return count;
    }

    /// <summary>Whether the model has a vision tower and every one of its parameters is frozen.</summary>
    public static bool VisionFrozen(QwenVLModel model)
    {
        var vis = model.named_parameters().Where(p => p.name.StartsWith("visual.", StringComparison.Ordinal)).ToList();
        return vis.Count > 0 && vis.All(p => !p.parameter.requires_grad);
    }

    static bool IsFrozen(QwenVLModel model, string name) =>
        model.named_parameters().Any(p => p.name == name && !p.parameter.requires_grad);

    public void Dispose()
    {
        Actor.Dispose();
        if (!ReferenceIsActorWithoutAdapters) Reference?.Dispose();
        Critic?.Dispose();
    }
}
