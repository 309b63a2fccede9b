// AdamW with decoupled weight decay, exactly torch.optim.AdamW's update (amsgrad off), over named parameters.
// Departs from TorchSharp's optim.AdamW in two ways we need: bf16 parameters get fp32 master weights and fp32
// moments (as DeepSpeed's bf16 optimizer keeps them), and the state is keyed by parameter *name* so checkpoints
// are plain safetensors that survive rebuilding the model (TorchSharp keys state by native handle).
using LmmR1.Infrastructure;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Training.Optimization;

public sealed record AdamWOptions(double LearningRate, double Beta1 = 0.9, double Beta2 = 0.95, double Eps = 1e-8, double WeightDecay = 0.0);

public sealed class AdamW : IDisposable
{
    sealed class Slot
    {
        public required string Name;
        public required Parameter Param;
        public Tensor? Master;          // fp32 copy when the parameter is not fp32
        public required Tensor ExpAvg;  // fp32
        public required Tensor ExpAvgSq;
    }

    readonly List<Slot> slots = [];
    public AdamWOptions Options { get; }
    public long Step { get; private set; }
    public double LearningRate { get; set; }
    public IReadOnlyList<(string Name, Parameter Param)> Parameters => slots.Select(s => (s.Name, s.Param)).ToList();

    public AdamW(IEnumerable<(string Name, Parameter Param)> parameters, AdamWOptions options)
    {
        Options = options;
        LearningRate = options.LearningRate;
        using var noGrad = no_grad();
        foreach (var (name, p) in parameters)
        {
            if (!p.requires_grad) continue;
            Tensor? master = null;
            if (p.dtype != ScalarType.Float32)
                using (NewDisposeScope())   // holds the detach() wrapper until .to() returned, then frees it
                    master = p.detach().to(ScalarType.Float32).DetachFromDisposeScope();
            slots.Add(new Slot
            {
                Name = name, Param = p, Master = master,
                ExpAvg = zeros(p.shape, ScalarType.Float32, p.device).DetachFromDisposeScope(),
                ExpAvgSq = zeros(p.shape, ScalarType.Float32, p.device).DetachFromDisposeScope(),
            });
        }
    }

    public void ZeroGrad()
    {
        foreach (var s in slots) s.Param.grad = null;
    }

    /// <summary>One update with the current <see cref="LearningRate"/>; parameters without a gradient are skipped.</summary>
    public void StepUpdate()
    {
        Step++;
        double b1 = Options.Beta1, b2 = Options.Beta2, lr = LearningRate;
        double bc1 = 1 - Math.Pow(b1, Step), bc2 = 1 - Math.Pow(b2, Step);
        double stepSize = lr / bc1, bc2Sqrt = Math.Sqrt(bc2);
        using var noGrad = no_grad();
        // The step's numbers as Scalars referenced until the last update returned (a temporary one can be finalized
        // while libtorch reads it: Infrastructure/TorchScalars). Same values and types as the implicit conversions.
        using Scalar decayS = (1 - lr * Options.WeightDecay).ToScalar(), b1S = b1.ToScalar(), oneMinusB1 = (1 - b1).ToScalar(),
            b2S = b2.ToScalar(), oneMinusB2 = (1 - b2).ToScalar(), bc2SqrtS = bc2Sqrt.ToScalar(), epsS = Options.Eps.ToScalar(),
            minusStepSize = (-stepSize).ToScalar();
        foreach (var s in slots)
        {
            using var scope = NewDisposeScope();
            var g0 = s.Param.grad;
            if (g0 is null) continue;
            var g = g0.dtype == ScalarType.Float32 ? g0 : g0.to(ScalarType.Float32);
            var w = s.Master ?? s.Param;
            if (Options.WeightDecay != 0) w.mul_(decayS);
            s.ExpAvg.mul_(b1S).add_(g, alpha: oneMinusB1);
            s.ExpAvgSq.mul_(b2S).addcmul_(g, g, value: oneMinusB2);
            var denom = s.ExpAvgSq.sqrt().div_(bc2SqrtS).add_(epsS, TorchScalars.One);
            w.addcdiv_(s.ExpAvg, denom, value: minusStepSize);
            if (s.Master is not null) s.Param.copy_(s.Master);
        }
    }

    /// <summary>Global L2 norm of all gradients (fp32). Non-finite when any gradient is.</summary>
    public double GradNorm()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor? total = null;
        foreach (var s in slots)
        {
            using var g = s.Param.grad;
            if (g is null) continue;
            // One parameter's fp32 temporaries at a time (a scope over the whole loop kept an fp32 copy and its square
            // of every gradient alive until the end: 2 × 4 bytes per trainable parameter, 24.7 GB for the 3B shape).
            using var inner = NewDisposeScope();
            var sq = g.to(ScalarType.Float32).Square().sum();
            total = (total is null ? sq : total.Plus(sq)).MoveToOuterDisposeScope();
        }
        return total is null ? 0.0 : total.sqrt().item<float>();
    }

    /// <summary>Scales gradients so their global norm is at most <paramref name="maxNorm"/> (torch's clip_grad_norm_ rule).</summary>
    public static void ClipGradients(IEnumerable<Parameter> ps, double norm, double maxNorm)
    {
        double coef = maxNorm / (norm + 1e-6);
        if (coef >= 1 || !double.IsFinite(coef)) return;
        using var noGrad = no_grad();
        using var c = coef.ToScalar();
        foreach (var p in ps)
        {
            using var g = p.grad;       // a fresh wrapper, referenced until mul_ returned
            g?.mul_(c);
        }
    }

    public void ClipGradients(double norm, double maxNorm) => ClipGradients(slots.Select(s => s.Param), norm, maxNorm);

    /// <summary>Moments (and master weights) keyed "exp_avg.{name}", "exp_avg_sq.{name}", "master.{name}".</summary>
    public Dictionary<string, Tensor> StateTensors()
    {
        var d = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var s in slots)
        {
            d["exp_avg." + s.Name] = s.ExpAvg;
            d["exp_avg_sq." + s.Name] = s.ExpAvgSq;
            if (s.Master is not null) d["master." + s.Name] = s.Master;
        }
        return d;
    }

    public void LoadState(long step, Func<string, Tensor?> read, string source)
    {
        using var noGrad = no_grad();
        foreach (var s in slots)
        {
            Copy(s.ExpAvg, "exp_avg." + s.Name);
            Copy(s.ExpAvgSq, "exp_avg_sq." + s.Name);
            if (s.Master is not null) Copy(s.Master, "master." + s.Name);
        }
        Step = step;

        void Copy(Tensor dest, string key)
        {
            var t = read(key) ?? throw new InputException($"{source}: optimizer state '{key}' is missing");
            if (!t.shape.SequenceEqual(dest.shape))
                throw new InputException($"{source}: optimizer state '{key}' has shape [{string.Join(",", t.shape)}], expected [{string.Join(",", dest.shape)}]");
            dest.copy_(t);
        }
    }

    public void Dispose()
    {
        foreach (var s in slots) { s.Master?.Dispose(); s.ExpAvg.Dispose(); s.ExpAvgSq.Dispose(); }
    }
}
