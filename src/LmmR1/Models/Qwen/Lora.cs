// LoRA (Hu et al. 2021) as PEFT's LoraLayer computes it, applied inside Dense.forward:
//   y = x·Wᵀ + b + (α / r) · (dropout(x)·Aᵀ)·Bᵀ,   A [r, in] kaiming-uniform (a = √5, PEFT's init), B [out, r] zeros,
// so a fresh adapter leaves every output bit-identical. Generation (eager and CUDA-graph decode), the rollout log-probs
// and the training forward all run this one forward, and optimizer steps update A and B in place, so captured graphs
// stay valid. The reference policy is the same model with the adapters switched off (no second copy of the weights).
// Departures: dropout is applied only while autograd records (the training forward), never in no-grad passes (rollout
// log-probs, generation), like PEFT in eval mode; the vision tower is adapted only when a target names it (EasyR1's
// choice; PEFT's "all-linear" would include it). Adapters live in the base dtype (bf16 with fp32 masters in AdamW).
using System.Text.RegularExpressions;
using LmmR1.Infrastructure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

/// <summary>--lora_rank / --lora_alpha / --lora_dropout / --target_modules / --exclude_modules (OpenRLHF's flags and
/// defaults) and --lora_merge (ours: also write a merged Hugging Face checkpoint at the end).</summary>
public sealed record LoraOptions
{
    public const string AllLinear = "all-linear";

    public int Rank { get; init; }
    public double Alpha { get; init; } = 16;
    public double Dropout { get; init; }
    /// <summary>Layer names (q_proj … down_proj, or a dotted suffix such as self_attn.q_proj), "all-linear" (every linear
    /// layer of the language model), or vision-tower layers prefixed "visual" (visual = all of them, visual.qkv, …).</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = [AllLinear];
    /// <summary>Layers left out of the targets: a layer name, dotted suffix or name prefix (e.g. model.layers.0).</summary>
    public IReadOnlyList<string> ExcludeModules { get; init; } = [];
    /// <summary>--lora_merge: at the end also write {save_path}_merged, a Hugging Face checkpoint with W + (α/r)·B·A.</summary>
    public bool SaveMerged { get; init; }

    /// <summary>PEFT's scaling without rsLoRA: α / r.</summary>
    public double Scale => Alpha / Rank;

    /// <summary>Checks the values (not the module names: see <see cref="Select"/>); throws naming the flag.</summary>
    public LoraOptions Validate()
    {
        if (Rank < 1 || Rank > 65536) throw Flag("--lora_rank", $"must be ≥ 1 (or 0 for full fine-tuning), got {Rank}");
        if (!(Alpha > 0) || !double.IsFinite(Alpha)) throw Flag("--lora_alpha", $"must be a finite number > 0, got {Alpha}");
        if (!(Dropout >= 0 && Dropout < 1)) throw Flag("--lora_dropout", $"must be in [0, 1), got {Dropout}");
        if (TargetModules.Count == 0) throw Flag("--target_modules", "needs at least one layer name (default: all-linear)");
        foreach (var t in TargetModules)
            if (string.IsNullOrWhiteSpace(t)) throw Flag("--target_modules", "names must not be empty");
        foreach (var e in ExcludeModules)
            if (string.IsNullOrWhiteSpace(e)) throw Flag("--exclude_modules", "names must not be empty");
        return this;
    }

    /// <summary>The linear layers (classic names, e.g. model.layers.0.self_attn.q_proj) the targets select among
    /// <paramref name="linear"/> (every linear layer of the model); a target or exclusion that matches nothing, or an
    /// empty selection, is an error naming the flag.</summary>
    public IReadOnlyList<string> Select(IReadOnlyList<string> linear)
    {
        var lm = linear.Where(LoraLayout.IsLanguageModel).ToList();
        var vision = linear.Where(n => n.StartsWith("visual.", StringComparison.Ordinal)).ToList();
        var chosen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in TargetModules)
        {
            List<string> hits;
            if (t == AllLinear) hits = lm;
            else if (t == "visual") hits = vision;
            else if (t.StartsWith("visual.", StringComparison.Ordinal))
            {
                string s = t["visual.".Length..];
                hits = vision.Where(n => n == t || n.EndsWith("." + s, StringComparison.Ordinal)).ToList();
            }
            else hits = lm.Where(n => n == t || n.EndsWith("." + t, StringComparison.Ordinal)).ToList();
            if (hits.Count == 0)
                throw Flag("--target_modules", $"'{t}' matches no linear layer of the {(t.StartsWith("visual", StringComparison.Ordinal) ? "vision tower" : "language model")} " +
                           $"(language model: {string.Join(", ", LastNames(lm))}; vision tower, named with a visual. prefix: " +
                           $"{(vision.Count == 0 ? "none in this model" : string.Join(", ", LastNames(vision).Select(n => "visual." + n)))}; or {AllLinear})");
            chosen.UnionWith(hits);
        }
        foreach (var e in ExcludeModules)
        {
            var hits = chosen.Where(n => n == e || n.EndsWith("." + e, StringComparison.Ordinal) || n.StartsWith(e + ".", StringComparison.Ordinal)).ToList();
            if (hits.Count == 0)
                throw Flag("--exclude_modules", $"'{e}' matches none of the layers --target_modules selects (names look like {chosen.Order(StringComparer.Ordinal).First()})");
            chosen.ExceptWith(hits);
        }
        if (chosen.Count == 0) throw Flag("--exclude_modules", "excludes every layer --target_modules selects: nothing would be trained");
        return linear.Where(chosen.Contains).ToList();   // model order
    }

    static IEnumerable<string> LastNames(IEnumerable<string> names) => names.Select(n => n[(n.LastIndexOf('.') + 1)..]).Distinct();

    static InputException Flag(string flag, string message) => InputException.At(null, null, flag, message);
}

/// <summary>The linear layers of a Qwen VL model by name and shape, from its config alone (no weights): for the dry
/// run's target check and memory estimate, and to name PEFT's target_modules.</summary>
public static class LoraLayout
{
    public static bool IsLanguageModel(string name) => name.StartsWith("model.layers.", StringComparison.Ordinal);

    /// <summary>(classic name, in features, out features) of every linear layer: decoder layers, then the vision tower
    /// (blocks, merger), then an untied lm_head.</summary>
    public static IReadOnlyList<(string Name, long In, long Out)> LinearLayers(QwenVLConfig c)
    {
        var list = new List<(string, long, long)>();
        var t = c.Text;
        long h = t.HiddenSize, q = (long)t.NumHeads * t.HeadDim, kv = (long)t.NumKvHeads * t.HeadDim, i = t.IntermediateSize;
        for (int l = 0; l < t.NumLayers; l++)
        {
            string p = $"model.layers.{l}.";
            list.Add((p + "self_attn.q_proj", h, q));
            list.Add((p + "self_attn.k_proj", h, kv));
            list.Add((p + "self_attn.v_proj", h, kv));
            list.Add((p + "self_attn.o_proj", q, h));
            list.Add((p + "mlp.gate_proj", h, i));
            list.Add((p + "mlp.up_proj", h, i));
            list.Add((p + "mlp.down_proj", i, h));
        }
        if (c.Vision is { } v)
        {
            long w = v.Width, vi = v.IntermediateSize, merged = w * v.MergeUnit;
            for (int b = 0; b < v.Depth; b++)
            {
                string p = $"visual.blocks.{b}.";
                list.Add((p + "attn.qkv", w, 3 * w));
                list.Add((p + "attn.proj", w, w));
                if (c.Family == QwenFamily.Qwen2VL)
                {
                    list.Add((p + "mlp.fc1", w, vi));
                    list.Add((p + "mlp.fc2", vi, w));
                }
                else
                {
                    list.Add((p + "mlp.gate_proj", w, vi));
                    list.Add((p + "mlp.up_proj", w, vi));
                    list.Add((p + "mlp.down_proj", vi, w));
                }
            }
            list.Add(("visual.merger.mlp.0", merged, merged));
            list.Add(("visual.merger.mlp.2", merged, v.OutHiddenSize));
        }
        if (!t.TieWordEmbeddings) list.Add(("lm_head", h, t.VocabSize));
        return list;
    }

    /// <summary>Adapter parameters r·(in + out) over the selected layers.</summary>
    public static long AdapterParameters(QwenVLConfig c, LoraOptions o)
    {
        var layers = LinearLayers(c);
        var chosen = o.Select(layers.Select(l => l.Name).ToList()).ToHashSet(StringComparer.Ordinal);
        return layers.Where(l => chosen.Contains(l.Name)).Sum(l => o.Rank * (l.In + l.Out));
    }

    /// <summary>PEFT's target_modules for exactly these layers: a list of layer names when PEFT's list rule (a module
    /// whose name is, or ends with ".", an entry) selects exactly them among <paramref name="modules"/> (every module
    /// name, linear or not: peft refuses a matched module it cannot adapt, and numeric names such as the merger's
    /// mlp.0 would also match layers.0), else a regex (PEFT full-matches a string against module names) accepting
    /// both the classic and the transformers ≥ 4.52 names.</summary>
    public static object PeftTargetModules(IReadOnlyList<string> adapted, IReadOnlyList<string> linear, IReadOnlyList<string> modules)
    {
        var last = adapted.Select(n => n[(n.LastIndexOf('.') + 1)..]).Distinct().Order(StringComparer.Ordinal).ToList();
        var byList = modules.Where(n => last.Contains(n[(n.LastIndexOf('.') + 1)..])).ToHashSet(StringComparer.Ordinal);
        if (byList.SetEquals(adapted) && !last.Any(n => n.All(char.IsAsciiDigit))) return last;

        // Group by the name with layer/block numbers generalised; keep a group generalised when it covers every layer.
        var set = adapted.ToHashSet(StringComparer.Ordinal);
        var patterns = new List<string>();
        foreach (var group in adapted.GroupBy(Generalise))
        {
            var all = linear.Where(n => Generalise(n) == group.Key).ToList();
            if (all.All(set.Contains)) patterns.Add(group.Key);
            else patterns.AddRange(group.Select(n => Prefix(Regex.Escape(n))));
        }
        return patterns.Count == 1 ? patterns[0] : "(?:" + string.Join("|", patterns) + ")";

        static string Generalise(string n) => Prefix(Regex.Replace(Regex.Escape(n), @"(layers|blocks)\\\.\d+\\\.", @"$1\.\d+\."));
        static string Prefix(string escaped) =>
            escaped.StartsWith(@"model\.", StringComparison.Ordinal) ? @"model\.(?:language_model\.)?" + escaped[@"model\.".Length..]
            : escaped.StartsWith(@"visual\.", StringComparison.Ordinal) ? @"(?:model\.)?visual\." + escaped[@"visual\.".Length..]
            : escaped;
    }
}

/// <summary>State shared by every adapted layer of one model.</summary>
internal sealed class LoraState
{
    public bool Enabled = true;
    public required double Scale;
    public required double Dropout;
}

/// <summary>One adapter matrix as a module holding "weight", so its parameter is named {layer}.lora_A.weight as PEFT's.</summary>
internal sealed class LoraWeight : nn.Module
{
    [TorchSharp.Utils.ComponentName(Name = "weight")] readonly Parameter weight;

    public LoraWeight(Tensor init) : base(nameof(LoraWeight))
    {
        weight = new Parameter(init, requires_grad: true);
        RegisterComponents();
    }

    public Parameter Weight => weight;
}

/// <summary>The adapters attached to a model: which layers, rank, α, dropout; switching them off (the reference
/// policy); the merged weights W + (α/r)·B·A for exports.</summary>
public sealed class LoraAdapters
{
    readonly Dictionary<string, Dense> layers;
    internal LoraState State { get; }

    internal LoraAdapters(Dictionary<string, Dense> layers, int rank, double alpha, double dropout)
    {
        this.layers = layers;
        Rank = rank; Alpha = alpha; Dropout = dropout;
        State = new LoraState { Scale = alpha / rank, Dropout = dropout };
    }

    public int Rank { get; }
    public double Alpha { get; }
    public double Dropout { get; }
    public double Scale => State.Scale;
    /// <summary>Adapted layers (classic names) in model order.</summary>
    public IReadOnlyList<string> Layers => [.. layers.Keys];
    public bool Enabled => State.Enabled;

    /// <summary>(name, A, B) per adapted layer, names "{layer}.lora_A.weight" / "{layer}.lora_B.weight".</summary>
    public IEnumerable<(string Layer, Parameter A, Parameter B)> Adapters =>
        layers.Select(kv => (kv.Key, kv.Value.LoraA!.Weight, kv.Value.LoraB!.Weight));

    public long ParameterCount => Adapters.Sum(a => a.A.numel() + a.B.numel());

    /// <summary>Switches the adapters off until disposed (the model then computes the base policy). Not for use while
    /// another thread runs the model.</summary>
    public IDisposable Off()
    {
        bool was = State.Enabled;
        State.Enabled = false;
        return new Restore(() => State.Enabled = was);
    }

    /// <summary>W + (α/r)·B·A of one adapted layer, computed in fp32 and cast to W's dtype (a new tensor).</summary>
    public Tensor MergedWeight(string layer)
    {
        var d = layers[layer];
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var w = d.Weight.to(ScalarType.Float32);
        var delta = torch.matmul(d.LoraB!.Weight.to(ScalarType.Float32), d.LoraA!.Weight.to(ScalarType.Float32));
        return w.Plus(delta.MulS(Scale)).to(d.Weight.dtype).MoveToOuterDisposeScope();
    }

    public static bool IsAdapterName(string name) =>
        name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal);

    sealed class Restore(Action undo) : IDisposable
    {
        bool done;
        public void Dispose()
        {
            if (done) return;
            done = true;
            undo();
        }
    }
}
