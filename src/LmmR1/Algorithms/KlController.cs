// The KL coefficient β (openrlhf/trainer/ppo_utils/kl_controller.py): fixed, or adaptive (Ziegler et al. 2019,
// arXiv:1909.08593) when --kl_target is set: β ← β·(1 + clip(kl/target − 1, −0.2, 0.2)·n_steps/horizon).
// The trainer calls Update once per rollout with n_steps = rollout_batch_size·n_samples_per_prompt.
namespace LmmR1.Algorithms;

/// <summary>What a checkpoint stores: the current β (target and horizon come from the run's flags).</summary>
public sealed record KlControllerState(double Value);

public interface IKlController
{
    /// <summary>The current β.</summary>
    double Value { get; }

    /// <summary>Feeds the mean KL measured on the last rollout and the number of samples it held.</summary>
    void Update(double currentKl, long nSteps);

    KlControllerState Save();

    void Restore(KlControllerState state);
}

public static class KlController
{
    /// <summary>As ppo_trainer: adaptive when <paramref name="klTarget"/> is set and nonzero (Python truthiness of
    /// <c>args.kl_target</c>), fixed otherwise.</summary>
    public static IKlController Create(double initKlCoef, double? klTarget, long klHorizon) =>
        klTarget is { } t && t != 0
            ? new AdaptiveKlController(initKlCoef, t, klHorizon)
            : new FixedKlController(initKlCoef);
}

public sealed class FixedKlController : IKlController
{
    public FixedKlController(double klCoef)
    {
        if (!double.IsFinite(klCoef)) throw new ArgumentException($"KL coefficient must be finite, got {klCoef}");
        Value = klCoef;
    }

    public double Value { get; private set; }

    public void Update(double currentKl, long nSteps) { }

    public KlControllerState Save() => new(Value);

    public void Restore(KlControllerState state) => Value = state.Value;
}

public sealed class AdaptiveKlController : IKlController
{
    public AdaptiveKlController(double initKlCoef, double target, long horizon)
    {
        if (!double.IsFinite(initKlCoef)) throw new ArgumentException($"KL coefficient must be finite, got {initKlCoef}");
        if (!(target > 0) || !double.IsFinite(target)) throw new ArgumentException($"kl_target must be > 0, got {target}");
        if (horizon <= 0) throw new ArgumentException($"kl_horizon must be > 0, got {horizon}");
        Value = initKlCoef;
        Target = target;
        Horizon = horizon;
    }

    public double Value { get; private set; }
    public double Target { get; }
    public long Horizon { get; }

    public void Update(double currentKl, long nSteps)
    {
        // Same double arithmetic and order as the Python: clip, then (err · n) / horizon.
        double proportionalError = Math.Clamp(currentKl / Target - 1, -0.2, 0.2);
        double mult = 1 + proportionalError * nSteps / Horizon;
        Value *= mult;
    }

    public KlControllerState Save() => new(Value);

    public void Restore(KlControllerState state) => Value = state.Value;
}
