// Tensor assertions with useful failure messages. Note: TorchSharp's Tensor.equal() is elementwise (eq);
// whole-tensor equality is Tensor.Equals(Tensor).
using static TorchSharp.torch;

namespace LmmR1.Tests.Support;

public static class TensorAssert
{
    /// <summary>Same dtype, same shape, every element equal.</summary>
    public static void Equal(Tensor expected, Tensor actual, string? what = null)
    {
        Assert.True(expected.dtype == actual.dtype, $"{what}: dtype {actual.dtype}, expected {expected.dtype}");
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}], expected [{string.Join(",", expected.shape)}]");
        using var e = expected.cpu(); using var a = actual.cpu();
        if (!e.Equals(a))
        {
            using var diff = e.ne(a);
            long n = diff.sum().item<long>();
            Assert.Fail($"{what}: {n} of {e.numel()} elements differ");
        }
    }

    /// <summary>Same shape and max |expected − actual| ≤ atol (compared in float64). Returns the max abs difference.</summary>
    public static double Close(Tensor expected, Tensor actual, double atol, string? what = null)
    {
        Assert.True(expected.shape.SequenceEqual(actual.shape),
            $"{what}: shape [{string.Join(",", actual.shape)}], expected [{string.Join(",", expected.shape)}]");
        double maxAbs = MaxAbsDiff(expected, actual);
        Assert.True(maxAbs <= atol, $"{what}: max abs difference {maxAbs:G6} exceeds {atol:G3}");
        return maxAbs;
    }

    public static double MaxAbsDiff(Tensor expected, Tensor actual)
    {
        using var e = expected.cpu().to(ScalarType.Float64);
        using var a = actual.cpu().to(ScalarType.Float64);
        if (e.numel() == 0) return 0;
        using var d = (e - a).abs().max();
        return d.item<double>();
    }
}
