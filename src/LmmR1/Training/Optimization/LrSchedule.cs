// OpenRLHF's scheduler, "cosine_with_min_lr" from transformers: linear warmup from 0 over
// ceil(lr_warmup_ratio · total) steps, then a half cosine from the peak down to min_lr = 0.1 · lr at the last step.
namespace LmmR1.Training.Optimization;

public sealed record LrSchedule(double PeakLr, long TotalSteps, long WarmupSteps, double MinLrRatio = 0.1)
{
    public static LrSchedule FromRatio(double peakLr, long totalSteps, double warmupRatio) =>
        new(peakLr, totalSteps, (long)Math.Ceiling(warmupRatio * totalSteps));

    /// <summary>Learning rate for scheduler step <paramref name="step"/> (0-based: the rate used by the first update is At(0)).</summary>
    public double At(long step)
    {
        if (step < WarmupSteps) return PeakLr * step / Math.Max(1, WarmupSteps);
        double progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * progress));
        return PeakLr * (cosine * (1 - MinLrRatio) + MinLrRatio);
    }
}
