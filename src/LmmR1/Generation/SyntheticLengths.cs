// Bench-only: forced response lengths for models that never stop by themselves (random weights sample the EOS token
// with probability ~1/V per step). Each sample's length is drawn from a log-normal distribution — median Median,
// log-space spread Sigma, at least 1 — keyed by (seed, prompt key, sample) through CounterRng, so it does not depend
// on batching. When a sample reaches its length the engine replaces its newest token by StopTokenId and ends it as a
// stop (its log-prob stays the sampled token's: only the benchmarks use this). A length above max_new_tokens means the
// sample ends at the limit without a stop (truncated), as real ones do. Not in the paper or HF: a benchmark knob.
using LmmR1.Infrastructure;

namespace LmmR1.Generation;

public sealed record SyntheticLengths(double Median, double Sigma, int StopTokenId)
{
    // Steps far outside any real decode step, so these draws never coincide with a sampling uniform.
    const long DrawA = long.MaxValue - 11, DrawB = long.MaxValue - 12;

    /// <summary>The forced length of one sample (≥ 1; above max_new_tokens: the sample is truncated instead).</summary>
    public int LengthFor(ulong seed, long key, long sample)
    {
        // Box–Muller on two counter-based uniforms; u1 in (0, 1].
        double u1 = 1.0 - CounterRng.Uniform(seed, key, sample, DrawA);
        double u2 = CounterRng.Uniform(seed, key, sample, DrawB);
        double z = Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        double len = Math.Round(Median * Math.Exp(Sigma * z));
        return (int)Math.Clamp(len, 1, int.MaxValue);
    }

    /// <summary>Parses "MEDIAN:SIGMA" (e.g. 256:0.5).</summary>
    public static (double Median, double Sigma) Parse(string spec, string flag)
    {
        var parts = spec.Split(':');
        if (parts.Length != 2
            || !double.TryParse(parts[0], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double m)
            || !double.TryParse(parts[1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double s)
            || !(m >= 1) || double.IsInfinity(m) || !(s >= 0) || double.IsInfinity(s))
            throw InputException.At(null, null, flag, $"expected MEDIAN:SIGMA with MEDIAN ≥ 1 and SIGMA ≥ 0 (e.g. 256:0.5), got '{spec}'");
        return (m, s);
    }
}
