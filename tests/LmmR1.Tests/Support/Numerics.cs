// The tolerances a test uses when it compares two *different* computations of the same quantity (other kernels or
// CPU capability, other batch shapes, other op order: a cached vs an uncached decode, last-position vs full-pass
// logits, sampled vs recomputed log-probs, micro-batched vs not), and the one rule for tokens chosen by an argmax over
// such logits. Bit-for-bit equality is kept only for the same computation repeated on one machine (determinism,
// resume equivalence); every other comparison must hold on any x86-64 CPU and any ATEN_CPU_CAPABILITY.
using static TorchSharp.torch;

namespace LmmR1.Tests.Support;

public static class Numerics
{
    /// <summary>fp32 logits and log-probs of two different computations (the spec's tolerance: 1e-4 absolute).</summary>
    public const double Fp32 = 1e-4;

    /// <summary>Two argmaxes over logits that each lie within <see cref="Fp32"/> of the same true values can disagree
    /// only where the two largest true logits are within 2·Fp32 of each other: below this top-2 margin a greedy token
    /// may differ (a near-tie); above it it may not.</summary>
    public const double NearTieMargin = 2 * Fp32;

    /// <summary>The same for a sampled token (inverse-CDF with a given uniform u): logits within Fp32 move every
    /// normalised probability by a factor within e^±2·Fp32, so every normalised CDF value by at most 2·Fp32; a sampled
    /// token may differ only where u lies that close to an edge of the token's CDF interval.</summary>
    public const double SampledNearTieMargin = 2 * Fp32;

    /// <summary>Largest minus second-largest entry of each row of <paramref name="logits"/> ([..., V]) → [...] float64.</summary>
    public static double[] Top2Margins(Tensor logits)
    {
        using var scope = NewDisposeScope();
        var top = logits.to(ScalarType.Float64).topk(2, -1).values;
        return (top.select(-1, 0) - top.select(-1, 1)).reshape(-1).cpu().data<double>().ToArray();
    }
}

public static class TokenAssert
{
    /// <summary>Greedy continuations compared row by row: each row of <paramref name="actual"/> equals
    /// <paramref name="expected"/>'s, or equals it up to a first difference at a step whose reference top-2 margin
    /// (<paramref name="margin"/>(row, step)) is below <see cref="Numerics.NearTieMargin"/>; after a near-tie the two
    /// continuations condition on different tokens and are not compared further. Each near-tie is reported through
    /// <paramref name="log"/>; the caller bounds their number (<see cref="GreedyAgreement.NearTies"/>).</summary>
    public static GreedyAgreement GreedyEqualExceptNearTies(IReadOnlyList<IReadOnlyList<long>> expected, IReadOnlyList<IReadOnlyList<long>> actual,
                                                            Func<int, int, double> margin, string what, Action<string>? log = null)
    {
        Assert.Equal(expected.Count, actual.Count);
        var agreed = new int[expected.Count];
        for (int row = 0; row < expected.Count; row++)
        {
            var (e, a) = (expected[row], actual[row]);
            Assert.True(e.Count == a.Count, $"{what}: row {row} has {a.Count} tokens, expected {e.Count}");
            agreed[row] = e.Count;
            for (int j = 0; j < e.Count; j++)
            {
                if (e[j] == a[j]) continue;
                double m = margin(row, j);
                Assert.True(m < Numerics.NearTieMargin,
                    $"{what}: row {row} step {j}: token {a[j]}, expected {e[j]}, where the reference's top-2 logit margin is {m:G3} " +
                    $"(≥ {Numerics.NearTieMargin:G3}: not a near-tie)");
                log?.Invoke($"{what}: row {row} diverges at step {j} at a near-tie (top-2 margin {m:G3}): {a[j]} vs {e[j]}");
                agreed[row] = j;
                break;
            }
        }
        return new GreedyAgreement(agreed, expected.Count == 0 ? 0 : expected[0].Count);
    }

    /// <summary>[B, n] int64 tensor → rows.</summary>
    public static IReadOnlyList<IReadOnlyList<long>> Rows(Tensor tokens)
    {
        long b = tokens.shape[0], n = tokens.shape[1];
        var flat = tokens.cpu().to(ScalarType.Int64).data<long>().ToArray();
        return Enumerable.Range(0, (int)b).Select(i => (IReadOnlyList<long>)flat.Skip(i * (int)n).Take((int)n).ToArray()).ToList();
    }
}

/// <summary>Per row, how many leading tokens agree (the full length unless the row diverged at a near-tie).</summary>
public sealed record GreedyAgreement(int[] Agreed, int Length)
{
    public int NearTies => Agreed.Count(a => a < Length);
}
