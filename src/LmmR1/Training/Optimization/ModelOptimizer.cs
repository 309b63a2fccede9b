// One model's optimizer as OpenRLHF sets it up through DeepSpeed: AdamW over the trainable parameters split into a
// weight-decay group and a no-decay group (bias and norm weights, by OpenRLHF's name rule), the cosine_with_min_lr
// schedule stepped once per optimizer step, and global grad-norm clipping to --max_norm before each update.
// Departure: a step whose gradient norm is not finite is skipped (and reported) instead of poisoning the weights.
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LmmR1.Training.Optimization;

/// <summary>What one optimizer step did.</summary>
public readonly record struct StepResult(double GradNorm, double LearningRate, bool Skipped);

public sealed class ModelOptimizer : IDisposable
{
    // openrlhf/utils/deepspeed/deepspeed_utils.py get_optimizer_grouped_parameters (substring match).
    static readonly string[] NoDecayNames = ["bias", "layer_norm.weight", "layernorm.weight", "norm.weight", "ln_f.weight"];

    readonly AdamW decay;
    readonly AdamW noDecay;

    public LrSchedule Schedule { get; }
    public double MaxNorm { get; }
    /// <summary>Optimizer steps taken (skipped ones included: the schedule advances as DeepSpeed's would).</summary>
    public long Steps { get; private set; }
    public long SkippedSteps { get; private set; }

    /// <summary>The learning rate the next step uses (what the scheduler's get_last_lr reports).</summary>
    public double CurrentLearningRate => Schedule.At(Steps);

    /// <param name="parameters">Named parameters; those with requires_grad false get no state.</param>
    public ModelOptimizer(IEnumerable<(string Name, Parameter Param)> parameters, LrSchedule schedule, double beta1, double beta2,
                          double weightDecay, double maxNorm)
    {
        var trainable = parameters.Where(p => p.Param.requires_grad).ToList();
        bool NoDecay(string n) => NoDecayNames.Any(s => n.Contains(s, StringComparison.Ordinal));
        decay = new AdamW(trainable.Where(p => !NoDecay(p.Name)), new AdamWOptions(schedule.PeakLr, beta1, beta2, 1e-8, weightDecay));
        noDecay = new AdamW(trainable.Where(p => NoDecay(p.Name)), new AdamWOptions(schedule.PeakLr, beta1, beta2, 1e-8, 0.0));
        Schedule = schedule;
        MaxNorm = maxNorm;
    }

    /// <summary>Every parameter the optimizer updates (and holds state for).</summary>
    public IReadOnlyList<(string Name, Parameter Param)> Parameters => [.. decay.Parameters, .. noDecay.Parameters];

    public void ZeroGrad()
    {
        decay.ZeroGrad();
        noDecay.ZeroGrad();
    }

    /// <summary>Global L2 norm of the current gradients (fp32).</summary>
    public double GradNorm()
    {
        double a = decay.GradNorm(), b = noDecay.GradNorm();
        return Math.Sqrt(a * a + b * b);
    }

    /// <summary>Clip, update with the scheduled LR, advance the schedule, zero the gradients. A non-finite gradient
    /// norm, or <paramref name="skip"/> (the caller saw a non-finite loss), skips the update but still advances the
    /// schedule and zeroes the gradients.</summary>
    public StepResult Step(bool skip = false)
    {
        double lr = Schedule.At(Steps);
        double norm = skip ? double.NaN : GradNorm();
        skip |= !double.IsFinite(norm);
        if (!skip)
        {
            AdamW.ClipGradients(Parameters.Select(p => p.Param), norm, MaxNorm);
            decay.LearningRate = lr;
            noDecay.LearningRate = lr;
            decay.StepUpdate();
            noDecay.StepUpdate();
        }
        else SkippedSteps++;
        Steps++;
        ZeroGrad();
        return new StepResult(norm, lr, skip);
    }

    /// <summary>AdamW moments and master weights keyed by parameter name (both groups), for checkpoints.</summary>
    public Dictionary<string, Tensor> StateTensors()
    {
        var d = decay.StateTensors();
        foreach (var (k, v) in noDecay.StateTensors()) d[k] = v;
        return d;
    }

    /// <summary>Restores moments, masters and the step counter written by <see cref="StateTensors"/>.</summary>
    public void LoadState(long steps, long adamSteps, Func<string, Tensor?> read, string source, long skippedSteps = 0)
    {
        decay.LoadState(adamSteps, read, source);
        noDecay.LoadState(adamSteps, read, source);
        Steps = steps;
        SkippedSteps = skippedSteps;
    }

    /// <summary>AdamW's own step count (bias correction); differs from <see cref="Steps"/> by the skipped steps.</summary>
    public long AdamSteps => decay.Step;

    public void Dispose()
    {
        decay.Dispose();
        noDecay.Dispose();
    }
}
