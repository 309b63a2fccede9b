// Counter-based random numbers for sampling: the uniform for (seed, prompt key, sample index, step) is a pure hash
// (splitmix64 finalizer chained over the four counters), so a sample's draws do not depend on batch size, micro-batching
// or which rows were dropped. Departs from vLLM/HF, whose draws come from a stateful generator over the whole batch.
// UniformTensor computes the same numbers on the device (int64 wrap-around arithmetic, logical shifts by masking), so a
// CUDA graph can draw them without the host.
using LmmR1.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Generation;

public static class CounterRng
{
    /// <summary>The splitmix64 output function (Steele, Lea, Flood 2014) of z + golden gamma.</summary>
    public static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public static ulong Hash(ulong seed, long key, long sample, long step) =>
        Mix(Mix(Mix(Mix(seed) ^ (ulong)key) ^ (ulong)sample) ^ (ulong)step);

    /// <summary>A uniform k·2⁻²³ with k in [0, 2²³): exact in fp32 and at most 1 − 2⁻²³, so u·total (fp32) stays strictly
    /// below total and inverse-CDF sampling never runs past the last token with non-zero weight.</summary>
    public static float Uniform(ulong seed, long key, long sample, long step) =>
        (Hash(seed, key, sample, step) >> 41) * (1.0f / (1 << 23));

    /// <summary>Mix(Mix(Mix(seed) ^ key) ^ sample): the part of <see cref="Hash"/> fixed for a row, as int64 bits.</summary>
    public static long RowPrefix(ulong seed, long key, long sample) => unchecked((long)Mix(Mix(Mix(seed) ^ (ulong)key) ^ (ulong)sample));

    /// <summary><see cref="Uniform"/> on the device: rowPrefix [B] int64 (<see cref="RowPrefix"/>) and step [1] int64 →
    /// [B] float32, bit for bit the host's numbers.</summary>
    public static Tensor UniformTensor(Tensor rowPrefix, Tensor step)
    {
        using var scope = NewDisposeScope();
        var z = MixTensor(rowPrefix.bitwise_xor(step));
        return ShiftRightLogical(z, 41).to(ScalarType.Float32).mul_(UnitScale).MoveToOuterDisposeScope();
    }

    // The constants as the Scalars the number operands made (float 2⁻²³, int64 splitmix constants), rooted here for
    // every call (TorchScalars.cs says why); the shift and mask operands are 0-dim tensors as before, held by `using`.
    static readonly Scalar UnitScale = (1.0f / (1 << 23)).ToScalar();
    static readonly Scalar Gamma = unchecked((long)0x9E3779B97F4A7C15UL).ToScalar();
    static readonly Scalar Mul1 = unchecked((long)0xBF58476D1CE4E5B9UL).ToScalar();
    static readonly Scalar Mul2 = unchecked((long)0x94D049BB133111EBUL).ToScalar();

    static Tensor ShiftRightLogical(Tensor z, int n)
    {
        using var shift = torch.tensor(n);
        using var mask = torch.tensor((1L << (64 - n)) - 1);
        using var shifted = z.bitwise_right_shift(shift);
        return shifted.bitwise_and(mask);
    }

    static Tensor MixTensor(Tensor z)
    {
        z = z.add(Gamma, TorchScalars.One);
        z = z.bitwise_xor(ShiftRightLogical(z, 30)).mul(Mul1);
        z = z.bitwise_xor(ShiftRightLogical(z, 27)).mul(Mul2);
        return z.bitwise_xor(ShiftRightLogical(z, 31));
    }
}
