// A reward model checkpoint (--reward_pretrain): a Qwen2 / Qwen2.5 / Qwen2-VL / Qwen2.5-VL backbone plus a value head
// `score` = Linear(H, 1, no bias), as OpenRLHF's _get_reward_model and transformers' *ForSequenceClassification save
// it (keys model.* / visual.* or model.language_model.* / model.visual.*, head "{value_head_prefix}.weight"; the
// prefix comes from config.json's value_head_prefix when present, as upstream). The reward of a row is the head's
// output at the last position whose attention mask is 1 (upstream's eos_indices), no grad, in the model dtype; with
// --normalize_reward it is (r − mean) / std with config.json's mean/std (OpenRLHF's buffers: 0 and 1 when absent).
using System.Text.Json.Nodes;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Training.RewardModels;

/// <summary>What a reward checkpoint's config.json and safetensors headers say (no weights read): checked once, for
/// --dry_run and before loading.</summary>
public sealed record RewardCheckpointInfo(string Dir, QwenVLConfig Config, string HeadPrefix, double Mean, double Std, bool HasMeanStd)
{
    public string HeadName => HeadPrefix + ".weight";

    /// <summary>Reads DIR/config.json and the weights' headers; throws an InputException naming the file and the
    /// field or tensor when the folder is not a reward model with one score output.</summary>
    public static RewardCheckpointInfo Inspect(string dir, string defaultHeadPrefix = "score", string flag = "--reward_pretrain")
    {
        if (!Directory.Exists(dir)) throw InputException.At(null, null, flag, $"'{dir}' is not a folder");
        var cfg = QwenVLConfig.Load(dir);
        string configPath = Path.Combine(dir, QwenVLConfig.FileName);
        var root = JsonNode.Parse(IoErrors.ReadAllText(configPath, QwenVLConfig.FileName))!.AsObject();

        string prefix = defaultHeadPrefix;
        if (root["value_head_prefix"] is { } vp)
        {
            if (vp.GetValueKind() != System.Text.Json.JsonValueKind.String || string.IsNullOrWhiteSpace(vp.GetValue<string>()))
                throw InputException.At(configPath, null, "value_head_prefix", $"expected a non-empty string, got {vp.ToJsonString()}");
            prefix = vp.GetValue<string>();
        }
        double? labels = root["num_labels"] is { } nl && nl.GetValueKind() == System.Text.Json.JsonValueKind.Number ? nl.GetValue<double>()
                       : root["id2label"] is JsonObject id2 ? id2.Count : null;
        if (labels is { } n && n != 1)
            throw InputException.At(configPath, null, root.ContainsKey("num_labels") ? "num_labels" : "id2label",
                $"a reward model has one output (num_labels = 1), this checkpoint has {n} labels (a classifier, not a reward model)");
        double mean = ReadNumber(root, "mean", configPath) ?? 0, std = ReadNumber(root, "std", configPath) ?? 1;
        if (!(std > 0)) throw InputException.At(configPath, null, "std", $"the reward std must be > 0, got {std}");

        if (!Directory.EnumerateFiles(dir, "*.safetensors").Any())
            throw InputException.At(null, null, flag, $"'{dir}' holds no *.safetensors weights");
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        ConfigWeightsCheck.Check(cfg, ckpt, configPath);
        string head = prefix + ".weight";
        if (!ckpt.Contains(head))
            throw InputException.At(null, null, flag,
                $"{ckpt.Source}: no '{head}' tensor: not a reward model (OpenRLHF reward models and transformers' *ForSequenceClassification " +
                $"save the value head as '{head}'; a policy or base checkpoint has none){(prefix == defaultHeadPrefix ? "" : $" (value_head_prefix '{prefix}' from config.json)")}");
        long h = cfg.Text.HiddenSize;
        var shape = ckpt.Entry(head).Shape;
        if (shape is not [1, var hh] || hh != h)
            throw new InputException($"{ckpt.FileOf(head).Path}: tensor '{head}' has shape [{string.Join(", ", shape)}], expected [1, {h}] " +
                                     $"(Linear(hidden_size {h}, 1): one reward per sequence)");
        if (ckpt.Contains(prefix + ".bias"))
            throw new InputException($"{ckpt.FileOf(prefix + ".bias").Path}: tensor '{prefix}.bias': the value head must have no bias " +
                                     "(OpenRLHF and transformers build it as Linear(H, 1, bias=False))");
        return new RewardCheckpointInfo(dir, cfg, prefix, mean, std, root.ContainsKey("mean") || root.ContainsKey("std"));
    }

    static double? ReadNumber(JsonObject root, string key, string where)
    {
        if (root[key] is not { } v || v.GetValueKind() == System.Text.Json.JsonValueKind.Null) return null;
        if (v.GetValueKind() != System.Text.Json.JsonValueKind.Number || !double.IsFinite(v.GetValue<double>()))
            throw InputException.At(where, null, key, $"expected a finite number, got {v.ToJsonString()}");
        return v.GetValue<double>();
    }
}

public sealed class SequenceRewardModel : IDisposable
{
    public RewardCheckpointInfo Info { get; }
    /// <summary>Decoder and vision tower, without an lm_head.</summary>
    public QwenVLModel Backbone { get; }
    /// <summary>Linear(H, 1, no bias) in the backbone's dtype.</summary>
    public Linear Score { get; }

    SequenceRewardModel(RewardCheckpointInfo info, QwenVLModel backbone, Linear score)
    {
        Info = info; Backbone = backbone; Score = score;
        foreach (var p in backbone.parameters()) p.requires_grad = false;
        score.weight!.requires_grad = false;
    }

    /// <summary>Loads DIR in <paramref name="dtype"/> on <paramref name="device"/> (checked by Inspect first).</summary>
    public static SequenceRewardModel Load(string dir, ScalarType dtype, Device device, string defaultHeadPrefix = "score", string flag = "--reward_pretrain")
    {
        var info = RewardCheckpointInfo.Inspect(dir, defaultHeadPrefix, flag);
        var backbone = QwenVLModel.LoadBackbone(dir, dtype, device, n => n == info.HeadName);
        try
        {
            var score = nn.Linear(info.Config.Text.HiddenSize, 1, hasBias: false, device: device, dtype: dtype);
            using var ckpt = SafetensorsCheckpoint.Open(dir);
            using (torch.no_grad()) ckpt.CopyInto(info.HeadName, score.weight!);
            return new SequenceRewardModel(info, backbone, score);
        }
        catch
        {
            backbone.Dispose();
            throw;
        }
    }

    /// <summary>Raw rewards [B] fp32 of a batch: the head at each row's last attended position.</summary>
    /// <param name="sequences">[B, S] token ids (any padding layout).</param>
    /// <param name="attentionMask">[B, S] 1 on real tokens.</param>
    /// <param name="imageEmbeds">Precomputed vision features (each prompt's images encoded once), instead of pixels.</param>
    public Tensor Rewards(Tensor sequences, Tensor attentionMask, Tensor? pixelValues = null, Tensor? imageGridThw = null,
                          Tensor? imageEmbeds = null)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var mask = attentionMask.to(ScalarType.Int64, Backbone.Device);
        long s = mask.shape[1];
        // Upstream: eos_indices = S − 1 − argmax(fliplr(mask)), the last 1 of each row.
        var last = mask.fliplr().argmax(1, keepdim: true).RSubS(s - 1);                                 // [B, 1]
        var output = Backbone.Forward(sequences, mask, pixelValues, imageGridThw, imageEmbeds: imageEmbeds, logitsForLast: 0);
        var hidden = output.Hidden.gather(1, last.unsqueeze(-1).expand(-1, -1, output.Hidden.shape[2])); // [B, 1, H]
        var reward = Score.forward(hidden).reshape(-1).to(ScalarType.Float32);                          // [B]
        return reward.MoveToOuterDisposeScope();
    }

    /// <summary>(raw − mean) / std with config.json's mean/std (what --normalize_reward applies).</summary>
    public double Normalize(double raw) => (raw - Info.Mean) / Info.Std;

    public void Dispose()
    {
        Backbone.Dispose();
        Score.Dispose();
    }
}
