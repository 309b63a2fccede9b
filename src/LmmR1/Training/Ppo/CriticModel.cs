// The PPO critic (openrlhf/models/model.py _get_critic_model): the Qwen backbone (its own copy, from
// --critic_pretrain) plus a value head `score` = Linear(H, 1, no bias) on the final hidden state; the value of action
// slot t is read at the position that predicts action t, like the actor's log-probs. The head is initialised
// N(0, 1/(H+1)) when the critic starts from the policy checkpoint or the checkpoint has no head. The backbone's
// lm_head (when not tied) is never used and is frozen, so it gets neither gradients nor optimizer state.
using LmmR1.Algorithms;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

public sealed class CriticModel : IDisposable
{
    public QwenVLModel Backbone { get; }
    /// <summary>Linear(H, 1, no bias) in the backbone's dtype.</summary>
    public Linear Score { get; }
    /// <summary>--value_head_prefix (the head's weight is saved as "{prefix}.weight").</summary>
    public string HeadPrefix { get; }

    public CriticModel(QwenVLModel backbone, Linear score, string headPrefix = "score")
    {
        Backbone = backbone;
        Score = score;
        HeadPrefix = headPrefix;
        if (!backbone.Config.Text.TieWordEmbeddings)
            foreach (var (name, p) in backbone.named_parameters())
                if (name.StartsWith("lm_head.", StringComparison.Ordinal)) p.requires_grad = false;
    }

    /// <summary>A new head for <paramref name="backbone"/>, drawn from N(0, 1/(H+1)) with <paramref name="seed"/>.</summary>
    public static CriticModel WithNewHead(QwenVLModel backbone, long seed, string headPrefix = "score")
    {
        var score = nn.Linear(backbone.Config.Text.HiddenSize, 1, hasBias: false, device: backbone.Device, dtype: backbone.DType);
        using var gen = new torch.Generator((ulong)seed, torch.CPU);
        CriticHead.Initialize(score, gen);
        return new CriticModel(backbone, score, headPrefix);
    }

    /// <summary>Loads the backbone from <paramref name="dir"/>; the head comes from its "{prefix}.weight" when present
    /// and <paramref name="initHead"/> is false (a trained critic), else it is initialised as upstream does.</summary>
    public static CriticModel Load(string dir, ScalarType dtype, Device device, string headPrefix, bool initHead, long seed,
                                   Action<string>? log = null)
    {
        string key = headPrefix + ".weight";
        var backbone = QwenVLModel.Load(dir, dtype, device, n => n == key);
        bool hasHead;
        using (var ckpt = SafetensorsCheckpoint.Open(dir)) hasHead = ckpt.Contains(key);
        if (initHead || !hasHead)
        {
            if (!initHead) log?.Invoke($"note: {dir} has no '{key}': the critic's value head starts from N(0, 1/(H+1))");
            return WithNewHead(backbone, seed, headPrefix);
        }
        var critic = WithNewHead(backbone, seed, headPrefix);
        using var c = SafetensorsCheckpoint.Open(dir);
        var entry = c.Entry(key);
        if (!entry.Shape.SequenceEqual(critic.Score.weight!.shape))
            throw new InputException($"{dir}: '{key}' has shape [{string.Join(",", entry.Shape)}], expected [1, {backbone.Config.Text.HiddenSize}]");
        using (torch.no_grad()) c.CopyInto(key, critic.Score.weight!);
        return critic;
    }

    /// <summary>Named parameters for the optimizer (the frozen lm_head is included but has requires_grad false).</summary>
    public IEnumerable<(string Name, Parameter Param)> NamedParameters() =>
        Backbone.named_parameters().Select(p => (p.name, p.parameter)).Append((HeadPrefix + ".weight", Score.weight!));

    public bool GradientCheckpointing
    {
        get => Backbone.GradientCheckpointing;
        set => Backbone.GradientCheckpointing = value;
    }

    /// <summary>Values [B, A] fp32 at the action slots of a collated micro-batch (differentiable in grad mode).</summary>
    public Tensor Values(Experience e)
    {
        using var scope = torch.NewDisposeScope();
        var hidden = PolicyForward.ActionHidden(Backbone, e);                                          // [B, A, H]
        var values = Score.forward(hidden).squeeze(-1).to(ScalarType.Float32);                         // [B, A]
        return values.MoveToOuterDisposeScope();
    }

    /// <summary>Writes an HF folder: the backbone's tensors plus "{prefix}.weight", and config.json.</summary>
    public void Save(string dir)
    {
        var sd = Backbone.state_dict();
        sd[HeadPrefix + ".weight"] = Score.weight!;
        SafetensorsWriter.WriteCheckpoint(dir, sd);
        Backbone.Config.Save(dir, Backbone.DType == ScalarType.BFloat16 ? "bfloat16" : "float32");
    }

    public void Dispose()
    {
        Backbone.Dispose();
        Score.Dispose();
    }
}
