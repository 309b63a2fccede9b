// DAPO's overlong reward shaping (arXiv 2503.14476 §3.4; verl DAPORewardManager, OpenRLHF length_penalty.py,
// TRL's soft overlong punishment): with L_max = --generate_max_len and a buffer L_cache = --overlong_buffer_len, a
// response of |y| tokens gets min(0, −(|y| − (L_max − L_cache)) / L_cache) · --overlong_penalty_factor added to its
// reward (0 up to L_max − L_cache, falling linearly to −factor at L_max), and, as an option
// (--overlong_filtering, DAPO's "overlong filtering", TRL's mask_truncated_completions), truncated responses (no
// stop token before the limit) are masked out of the loss. Pure functions over lengths; the trainer applies them.
namespace LmmR1.Algorithms;

public static class OverlongShaping
{
    /// <summary>The penalty (≤ 0) for a response of <paramref name="length"/> tokens. Lengths past the limit count
    /// as the limit (OpenRLHF caps the excess at the buffer).</summary>
    public static double Penalty(int length, int maxNewTokens, int bufferLength, double factor)
    {
        if (bufferLength <= 0 || bufferLength > maxNewTokens)
            throw new ArgumentOutOfRangeException(nameof(bufferLength),
                $"overlong buffer must be in 1..{maxNewTokens} (--generate_max_len), got {bufferLength}");
        int expected = maxNewTokens - bufferLength;
        int exceed = Math.Min(length - expected, bufferLength);
        return exceed > 0 ? -(double)exceed / bufferLength * factor : 0.0;
    }

    /// <summary>Penalties for each response length.</summary>
    public static double[] Penalties(IReadOnlyList<int> lengths, int maxNewTokens, int bufferLength, double factor) =>
        lengths.Select(l => Penalty(l, maxNewTokens, bufferLength, factor)).ToArray();
}
