// TorchScalars: numbers for TorchSharp ops that stay alive for the whole native call that reads them.
//
// TorchSharp 0.107 turns every number passed to an op into a fresh `Scalar` (a native c10::Scalar freed by a
// finalizer), and even `Tensor + Tensor` is `add(other, alpha: 1)` with such a temporary (Tensor.Math.cs:
// `add(target) => add(target, 1)`). Nothing keeps the temporary referenced once its handle has been read, so when
// another thread starts a GC while the op runs natively, the finalizer thread may free the c10::Scalar while libtorch
// still reads it: a use-after-free that aborted about one demo process in five under load (exit 134 in RmsNorm's
// `pow(2)`, the causal mask's masked_fill, RoPE, the sampler). Upstream would need a GC.KeepAlive in each wrapper.
//
// Hot paths therefore never hand TorchSharp a temporary Scalar: they use the cached constants below (rooted by this
// static class for the process lifetime) or the helpers, which dispose their Scalar only after the call returned.
// `a.Plus(b)` is `a + b`, `a.AddS(eps)` is `a + eps`, and so on: same kernels, same dtype promotion, same results.
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Infrastructure;

public static class TorchScalars
{
    /// <summary>Integer constants: the exact Scalars TorchSharp's implicit int conversion would have made.</summary>
    public static readonly Scalar Zero = 0.ToScalar(), One = 1.ToScalar(), Two = 2.ToScalar(), MinusOne = (-1).ToScalar();

    /// <summary>−∞ as a float Scalar, as `masked_fill(mask, float.NegativeInfinity)` made it.</summary>
    public static readonly Scalar NegInfF = float.NegativeInfinity.ToScalar();

    /// <summary>−∞ as a double Scalar, as `masked_fill(mask, double.NegativeInfinity)` made it.</summary>
    public static readonly Scalar NegInf = double.NegativeInfinity.ToScalar();

    // Tensor ∘ Tensor where TorchSharp would add a temporary alpha.
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);
    public static Tensor Plus_(this Tensor a, Tensor b) => a.add_(b, One);
    /// <summary>a + alpha·b (`a.add(b, alpha)` with a double alpha).</summary>
    public static Tensor PlusScaled(this Tensor a, Tensor b, double alpha) { using var s = alpha.ToScalar(); return a.add(b, s); }
    public static Tensor PlusScaled_(this Tensor a, Tensor b, double alpha) { using var s = alpha.ToScalar(); return a.add_(b, s); }

    // Tensor ∘ number: each keeps its Scalar referenced until the op returned (the `using` disposes it after).
    // `add(Scalar)` is `add(scalar, 1)` with a temporary alpha too (Tensor.Math.cs): these pass the rooted One.
    public static Tensor AddS(this Tensor a, double v) { using var s = v.ToScalar(); return a.add(s, One); }
    public static Tensor AddS(this Tensor a, long v) { using var s = v.ToScalar(); return a.add(s, One); }
    public static Tensor AddS_(this Tensor a, double v) { using var s = v.ToScalar(); return a.add_(s, One); }
    public static Tensor SubS(this Tensor a, double v) { using var s = v.ToScalar(); return a.sub(s); }
    public static Tensor SubS(this Tensor a, long v) { using var s = v.ToScalar(); return a.sub(s); }
    /// <summary>v − a, computed as TorchSharp's `v - a` does: (−a) + v.</summary>
    public static Tensor RSubS(this Tensor a, double v) { using var s = v.ToScalar(); using var n = a.negative(); return n.add(s, One); }
    public static Tensor RSubS(this Tensor a, long v) { using var s = v.ToScalar(); using var n = a.negative(); return n.add(s, One); }
    public static Tensor MulS(this Tensor a, double v) { using var s = v.ToScalar(); return a.mul(s); }
    public static Tensor MulS(this Tensor a, long v) { using var s = v.ToScalar(); return a.mul(s); }
    public static Tensor MulS_(this Tensor a, double v) { using var s = v.ToScalar(); return a.mul_(s); }
    public static Tensor DivS(this Tensor a, double v) { using var s = v.ToScalar(); return a.div(s); }
    public static Tensor DivS(this Tensor a, long v) { using var s = v.ToScalar(); return a.div(s); }
    public static Tensor DivS_(this Tensor a, double v) { using var s = v.ToScalar(); return a.div_(s); }
    public static Tensor PowS(this Tensor a, double v) { using var s = v.ToScalar(); return a.pow(s); }
    public static Tensor PowS(this Tensor a, long v) { using var s = v.ToScalar(); return a.pow(s); }
    /// <summary>x², TorchSharp's `square()`, which is `pow(2)` with a temporary Scalar (Tensor.Math.cs).</summary>
    public static Tensor Square(this Tensor a) => a.pow(Two);
    public static Tensor FillS(this Tensor a, Tensor mask, double v) { using var s = v.ToScalar(); return a.masked_fill(mask, s); }
    public static Tensor FillS(this Tensor a, Tensor mask, long v) { using var s = v.ToScalar(); return a.masked_fill(mask, s); }
    public static Tensor FillS_(this Tensor a, Tensor mask, double v) { using var s = v.ToScalar(); return a.masked_fill_(mask, s); }
    public static Tensor FillS_(this Tensor a, Tensor mask, long v) { using var s = v.ToScalar(); return a.masked_fill_(mask, s); }
    public static Tensor FillAllS_(this Tensor a, double v) { using var s = v.ToScalar(); return a.fill_(s); }
    public static Tensor FillAllS_(this Tensor a, long v) { using var s = v.ToScalar(); return a.fill_(s); }
    public static Tensor IndexFillS_(this Tensor a, long dim, Tensor index, double v) { using var s = v.ToScalar(); return a.index_fill_(dim, index, s); }
    public static Tensor IndexFillS_(this Tensor a, long dim, Tensor index, bool v) { using var s = v.ToScalar(); return a.index_fill_(dim, index, s); }
    // Bounds keep their type: an integer bound stays an int Scalar, so clamping an int64 index keeps it int64.
    public static Tensor ClampS(this Tensor a, double min, double max) { using var lo = min.ToScalar(); using var hi = max.ToScalar(); return a.clamp(lo, hi); }
    public static Tensor ClampMinS(this Tensor a, double min) { using var s = min.ToScalar(); return a.clamp_min(s); }
    public static Tensor ClampMinS(this Tensor a, long min) { using var s = min.ToScalar(); return a.clamp_min(s); }
    public static Tensor ClampMaxS(this Tensor a, double max) { using var s = max.ToScalar(); return a.clamp_max(s); }
    public static Tensor ClampMaxS(this Tensor a, long max) { using var s = max.ToScalar(); return a.clamp_max(s); }
    public static Tensor EqS(this Tensor a, long v) { using var s = v.ToScalar(); return a.eq(s); }
    public static Tensor NeS(this Tensor a, long v) { using var s = v.ToScalar(); return a.ne(s); }
    public static Tensor LtS(this Tensor a, double v) { using var s = v.ToScalar(); return a.lt(s); }
    public static Tensor LeS(this Tensor a, double v) { using var s = v.ToScalar(); return a.le(s); }
    public static Tensor GtS(this Tensor a, double v) { using var s = v.ToScalar(); return a.gt(s); }
    public static Tensor GeS(this Tensor a, double v) { using var s = v.ToScalar(); return a.ge(s); }
    public static Tensor LtS(this Tensor a, long v) { using var s = v.ToScalar(); return a.lt(s); }
    public static Tensor LeS(this Tensor a, long v) { using var s = v.ToScalar(); return a.le(s); }
    public static Tensor GtS(this Tensor a, long v) { using var s = v.ToScalar(); return a.gt(s); }
    public static Tensor GeS(this Tensor a, long v) { using var s = v.ToScalar(); return a.ge(s); }

    // Factories that take numbers.
    public static Tensor Arange(long start, long stop, long step, ScalarType dtype, Device device)
    {
        using var a = start.ToScalar(); using var b = stop.ToScalar(); using var c = step.ToScalar();
        return torch.arange(a, b, c, dtype: dtype, device: device);
    }

    public static Tensor Arange(long start, long stop, ScalarType dtype, Device device) => Arange(start, stop, 1, dtype, device);
    public static Tensor Arange(long stop, ScalarType dtype, Device device) => Arange(0, stop, 1, dtype, device);

    public static Tensor Full(long[] shape, double v, ScalarType dtype, Device device)
    {
        using var s = v.ToScalar();
        return torch.full(shape, s, dtype: dtype, device: device);
    }

    public static Tensor Full(long[] shape, long v, ScalarType dtype, Device device)
    {
        using var s = v.ToScalar();
        return torch.full(shape, s, dtype: dtype, device: device);
    }
}
