// Small builders for the hand-computed tensors of the algorithm tests.
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

internal static class AlgoTensors
{
    /// <summary>fp32 tensor of the given shape (row-major).</summary>
    public static Tensor F(float[] data, params long[] shape) => tensor(data).reshape(shape);

    /// <summary>fp64 tensor of the given shape.</summary>
    public static Tensor D(double[] data, params long[] shape) => tensor(data).reshape(shape);

    /// <summary>bool mask from 0/1 ints.</summary>
    public static Tensor M(int[] data, params long[] shape) => tensor(data.Select(x => x != 0).ToArray()).reshape(shape);

    public static float Item(Tensor t) => t.to_type(ScalarType.Float32).item<float>();

    /// <summary>Row-major copy as float64.</summary>
    public static double[] Values(Tensor t) => t.detach().cpu().to_type(ScalarType.Float64).contiguous().data<double>().ToArray();

    /// <summary>x with the positions where mask is 0 replaced by large junk, to prove they are ignored.</summary>
    public static Tensor Junk(Tensor x, Tensor mask, double junk = 1234.5) => x.masked_fill(mask.logical_not(), junk);

    /// <summary>Reproducible pseudo-random values in [lo, hi) (seeded System.Random).</summary>
    public static double[] Uniform(int n, int seed, double lo = -1, double hi = 1)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => lo + (hi - lo) * rng.NextDouble()).ToArray();
    }

    public static int[] RandomMask(int rows, int cols, int seed, double pValid = 0.7)
    {
        var rng = new Random(seed);
        var m = new int[rows * cols];
        for (int i = 0; i < m.Length; i++) m[i] = rng.NextDouble() < pValid ? 1 : 0;
        for (int r = 0; r < rows; r++) m[r * cols] = 1;   // every row has a valid token, as upstream forces
        return m;
    }
}
