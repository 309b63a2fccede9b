// Evaluation of Node trees: exactly over BigRational where the value is rational (sympy's doit() on numbers),
// and numerically in double-precision complex arithmetic otherwise (evalf, and the random-point test that stands
// in for sympy's simplify). Undefined functions such as f(x) are modelled as fixed smooth pseudo-random functions
// of their name, so f(x) ≡ f(x) but f(x) ≢ f(y). Every recursion checks the Budget.
using System.Numerics;
using System.Runtime.CompilerServices;

namespace LmmR1.Rewards.Verification.Symbolic;

internal static class Evaluator
{
    private const int MaxFactorial = 1000;
    private const int MaxSumTerms = 2000;

    // ---------------------------------------------------------------- exact
    /// <summary>The exact rational value, or null when it is irrational, symbolic, too large or undefined.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static BigRational? Exact(Node n, Budget budget, int depth = 0)
    {
        budget.CheckDepth(depth);
        switch (n)
        {
            case NumberNode num: return num.Value;
            case MulNode { IsPercent: true } pct:
            {
                var v = Exact(pct.Factors[0], budget, depth + 1);
                return v is { } x ? x * BigRational.Hundredth : null;
            }
            case AddNode add:
            {
                var sum = BigRational.Zero;
                foreach (var t in add.Terms)
                {
                    var v = Exact(t, budget, depth + 1);
                    if (v is null) return null;
                    sum += v.Value;
                    if (sum.IsTooLarge) return null;
                }
                return sum;
            }
            case MulNode mul:
            {
                var prod = BigRational.One;
                foreach (var f in mul.Factors)
                {
                    var v = Exact(f, budget, depth + 1);
                    if (v is null) return null;
                    prod *= v.Value;
                    if (prod.IsTooLarge) return null;
                }
                return prod;
            }
            case PowNode pow:
            {
                var b = Exact(pow.Base, budget, depth + 1);
                var e = Exact(pow.Exponent, budget, depth + 1);
                if (b is null || e is null) return null;
                var bv = b.Value;
                var ev = e.Value;
                if (ev.IsInteger) return bv.IsZero && ev.Sign < 0 ? null : bv.Pow(ev.Num);
                if (ev.Den > 64 || bv.Sign < 0) return null;
                var root = bv.ExactRoot((int)ev.Den);
                if (root is null) return null;
                return root.Value.IsZero && ev.Sign < 0 ? null : root.Value.Pow(ev.Num);
            }
            case FuncNode f: return ExactFunc(f, budget, depth);
            default: return null;
        }
    }

    private static BigRational? ExactFunc(FuncNode f, Budget budget, int depth)
    {
        if (f.Undefined) return null;
        var args = new BigRational[f.Args.Length];
        for (int i = 0; i < args.Length; i++)
        {
            var v = Exact(f.Args[i], budget, depth + 1);
            if (v is null) return null;
            args[i] = v.Value;
        }
        switch (f.Name)
        {
            case "Abs" when args.Length == 1: return args[0].Abs();
            case "floor" when args.Length == 1: return new BigRational(FloorDiv(args[0].Num, args[0].Den));
            case "ceiling" when args.Length == 1: return new BigRational(-FloorDiv(-args[0].Num, args[0].Den));
            case "factorial" when args.Length == 1:
            {
                if (!args[0].IsInteger || args[0].Sign < 0 || args[0].Num > MaxFactorial) return null;
                BigInteger r = BigInteger.One;
                for (int k = 2; k <= (int)args[0].Num; k++) { r *= k; if ((k & 31) == 0) budget.Tick(); }
                return new BigRational(r);
            }
            case "binomial" when args.Length == 2:
            {
                if (!args[0].IsInteger || !args[1].IsInteger || args[0].Num > 100_000 || args[1].Sign < 0) return null;
                var nn = args[0].Num; var k = args[1].Num;
                if (nn.Sign < 0) return null;
                if (k > nn) return BigRational.Zero;
                if (k > nn - k) k = nn - k;
                if (k > MaxFactorial) return null;
                BigInteger r = BigInteger.One;
                for (int i = 1; i <= (int)k; i++) { r = r * (nn - k + i) / i; budget.Tick(); }
                return new BigRational(r);
            }
            case "gcd" or "lcm" when args.All(a => a.IsInteger):
            {
                var acc = args[0].Num;
                for (int i = 1; i < args.Length; i++)
                {
                    var g = BigInteger.GreatestCommonDivisor(acc, args[i].Num);
                    acc = f.Name == "gcd" ? g : (g.IsZero ? BigInteger.Zero : BigInteger.Abs(acc * args[i].Num) / g);
                }
                return new BigRational(BigInteger.Abs(acc));
            }
            case "Max": return args.Max();
            case "Min": return args.Min();
            case "Mod" when args.Length == 2 && !args[1].IsZero:
            {
                var q = args[0] / args[1];
                return args[0] - args[1] * new BigRational(FloorDiv(q.Num, q.Den));
            }
            default: return null;
        }
    }

    private static BigInteger FloorDiv(BigInteger a, BigInteger b)
    {
        var q = BigInteger.DivRem(a, b, out var r);
        if (!r.IsZero && (r.Sign < 0) != (b.Sign < 0)) q -= 1;
        return q;
    }

    // ---------------------------------------------------------------- numeric
    /// <summary>Complex value with the given symbol values; NaN components when undefined.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static Complex Numeric(Node n, IReadOnlyDictionary<string, Complex>? env, Budget budget, int depth = 0)
    {
        budget.CheckDepth(depth);
        switch (n)
        {
            case NumberNode num: return new Complex(num.Value.ToDouble(), 0);
            case SymbolNode s: return env != null && env.TryGetValue(s.Name, out var v) ? v : Complex.NaN;
            case ConstantNode c:
                return c.Kind switch
                {
                    ConstantKind.Pi => Math.PI, ConstantKind.E => Math.E, ConstantKind.I => Complex.ImaginaryOne,
                    ConstantKind.Infinity => double.PositiveInfinity, ConstantKind.NegativeInfinity => double.NegativeInfinity,
                    ConstantKind.EulerGamma => 0.57721566490153286, _ => Complex.NaN,
                };
            case AddNode add:
            {
                Complex sum = 0;
                foreach (var t in add.Terms) sum += Numeric(t, env, budget, depth + 1);
                return sum;
            }
            case MulNode mul:
            {
                Complex prod = 1;
                foreach (var f in mul.Factors)
                {
                    var x = Numeric(f, env, budget, depth + 1);
                    prod = RealSafeMul(prod, x);
                }
                return prod;
            }
            case PowNode pow: return PowValue(pow, env, budget, depth);
            case FuncNode f: return FuncValue(f, env, budget, depth);
            default: return Complex.NaN;
        }
    }

    private static Complex RealSafeMul(Complex a, Complex b)
    {
        // Keeps ±inf * real finite from turning into NaN through the imaginary parts.
        if (a.Imaginary == 0 && b.Imaginary == 0) return new Complex(a.Real * b.Real, 0);
        return a * b;
    }

    private static Complex PowValue(PowNode pow, IReadOnlyDictionary<string, Complex>? env, Budget budget, int depth)
    {
        var b = Numeric(pow.Base, env, budget, depth + 1);
        // Integer exponents: repeated squaring keeps negative bases real.
        var exact = pow.Exponent is NumberNode en && !en.IsFloat ? en.Value : (BigRational?)null;
        if (exact is { IsInteger: true } ei && BigInteger.Abs(ei.Num) < 1_000_000)
        {
            int k = (int)ei.Num;
            if (b.Imaginary == 0) return new Complex(Math.Pow(b.Real, k), 0);
            return Complex.Pow(b, k);
        }
        var e = Numeric(pow.Exponent, env, budget, depth + 1);
        if (b.Imaginary == 0 && e.Imaginary == 0)
        {
            if (b.Real >= 0 || double.IsInfinity(b.Real)) return new Complex(Math.Pow(b.Real, e.Real), 0);
            if (Math.Abs(e.Real - Math.Round(e.Real)) < 1e-15) return new Complex(Math.Pow(b.Real, Math.Round(e.Real)), 0);
        }
        if (b == Complex.Zero) return e.Real > 0 ? Complex.Zero : Complex.NaN;
        return Complex.Pow(b, e); // principal branch, as sympy
    }

    private static Complex FuncValue(FuncNode f, IReadOnlyDictionary<string, Complex>? env, Budget budget, int depth)
    {
        if (f.Name is "Sum" or "Product") return SumValue(f, env, budget, depth);
        if (f.Name == "det") return DetValue(f.Args[0], env, budget, depth);
        var a = new Complex[f.Args.Length];
        for (int i = 0; i < a.Length; i++) a[i] = Numeric(f.Args[i], env, budget, depth + 1);
        if (f.Undefined) return UndefinedFunction(f.Name, a);
        var x = a.Length > 0 ? a[0] : Complex.NaN;
        switch (f.Name)
        {
            case "sin": return Complex.Sin(x);
            case "cos": return Complex.Cos(x);
            case "tan": return Complex.Tan(x);
            case "csc": return 1 / Complex.Sin(x);
            case "sec": return 1 / Complex.Cos(x);
            case "cot": return Complex.Cos(x) / Complex.Sin(x);
            case "asin": return x.Imaginary == 0 && Math.Abs(x.Real) <= 1 ? Math.Asin(x.Real) : Complex.Asin(x);
            case "acos": return x.Imaginary == 0 && Math.Abs(x.Real) <= 1 ? Math.Acos(x.Real) : Complex.Acos(x);
            case "atan": return x.Imaginary == 0 ? Math.Atan(x.Real) : Complex.Atan(x);
            case "acsc": return Complex.Asin(1 / x);
            case "asec": return Complex.Acos(1 / x);
            case "acot": return x.Imaginary == 0 ? Math.Atan(1 / x.Real) : Complex.Atan(1 / x);
            case "sinh": return Complex.Sinh(x);
            case "cosh": return Complex.Cosh(x);
            case "tanh": return Complex.Tanh(x);
            case "asinh": return Complex.Log(x + Complex.Sqrt(x * x + 1));
            case "acosh": return Complex.Log(x + Complex.Sqrt(x + 1) * Complex.Sqrt(x - 1));
            case "atanh": return 0.5 * Complex.Log((1 + x) / (1 - x));
            case "log":
            {
                var num = x.Imaginary == 0 && x.Real > 0 ? Math.Log(x.Real) : Complex.Log(x);
                if (a.Length < 2) return num;
                var bse = a[1];
                var den = bse.Imaginary == 0 && bse.Real > 0 ? Math.Log(bse.Real) : Complex.Log(bse);
                return num / den;
            }
            case "Abs": return Complex.Abs(x);
            case "floor": return x.Imaginary == 0 ? Math.Floor(x.Real) : Complex.NaN;
            case "ceiling": return x.Imaginary == 0 ? Math.Ceiling(x.Real) : Complex.NaN;
            case "factorial": return x.Imaginary == 0 ? Gamma(x.Real + 1) : Complex.NaN;
            case "gamma": return x.Imaginary == 0 ? Gamma(x.Real) : Complex.NaN;
            case "binomial":
                if (a.Length == 2 && x.Imaginary == 0 && a[1].Imaginary == 0)
                    return Gamma(x.Real + 1) / (Gamma(a[1].Real + 1) * Gamma(x.Real - a[1].Real + 1));
                return Complex.NaN;
            case "Max": return a.All(v => v.Imaginary == 0) ? a.Max(v => v.Real) : Complex.NaN;
            case "Min": return a.All(v => v.Imaginary == 0) ? a.Min(v => v.Real) : Complex.NaN;
            case "Mod":
                if (a.Length == 2 && x.Imaginary == 0 && a[1].Imaginary == 0 && a[1].Real != 0)
                    return x.Real - a[1].Real * Math.Floor(x.Real / a[1].Real);
                return Complex.NaN;
            case "gcd" or "lcm":
            {
                var ex = Exact(f, budget, depth);
                return ex is { } r ? r.ToDouble() : Complex.NaN;
            }
            default: return Complex.NaN;
        }
    }

    private static Complex SumValue(FuncNode f, IReadOnlyDictionary<string, Complex>? env, Budget budget, int depth)
    {
        if (f.Args[1] is not SymbolNode v) return Complex.NaN;
        var from = Numeric(f.Args[2], env, budget, depth + 1);
        var to = Numeric(f.Args[3], env, budget, depth + 1);
        if (from.Imaginary != 0 || to.Imaginary != 0 || !double.IsFinite(from.Real) || !double.IsFinite(to.Real)) return Complex.NaN;
        if (from.Real != Math.Round(from.Real) || to.Real != Math.Round(to.Real)) return Complex.NaN;
        if (to.Real - from.Real > MaxSumTerms) return Complex.NaN;
        bool isSum = f.Name == "Sum";
        Complex acc = isSum ? 0 : 1;
        var inner = env == null ? new Dictionary<string, Complex>() : new Dictionary<string, Complex>(env);
        for (double k = from.Real; k <= to.Real; k++)
        {
            inner[v.Name] = k;
            var term = Numeric(f.Args[0], inner, budget, depth + 1);
            acc = isSum ? acc + term : acc * term;
        }
        return acc;
    }

    private static Complex DetValue(Node m, IReadOnlyDictionary<string, Complex>? env, Budget budget, int depth)
    {
        if (m is not MatrixNode mat || mat.Rows != mat.Cols) return Complex.NaN;
        int n = mat.Rows;
        var a = new Complex[n, n];
        for (int r = 0; r < n; r++) for (int c = 0; c < n; c++) a[r, c] = Numeric(mat[r, c], env, budget, depth + 1);
        Complex det = 1;
        for (int col = 0; col < n; col++)
        {
            int pivot = col;
            for (int r = col + 1; r < n; r++) if (Complex.Abs(a[r, col]) > Complex.Abs(a[pivot, col])) pivot = r;
            if (a[pivot, col] == Complex.Zero) return 0;
            if (pivot != col) { for (int c = 0; c < n; c++) (a[col, c], a[pivot, c]) = (a[pivot, c], a[col, c]); det = -det; }
            det *= a[col, col];
            for (int r = col + 1; r < n; r++)
            {
                var factor = a[r, col] / a[col, col];
                for (int c = col; c < n; c++) a[r, c] -= factor * a[col, c];
            }
        }
        return det;
    }

    /// <summary>A fixed smooth function per name: f(x) = Σ c_j sin(w_j·x + p_j) + x/7, deterministic across runs.</summary>
    private static Complex UndefinedFunction(string name, Complex[] args)
    {
        ulong h = 1469598103934665603UL;
        foreach (var ch in name) { h ^= ch; h *= 1099511628211UL; }
        Complex acc = 0;
        for (int j = 0; j < 3; j++)
        {
            h ^= h >> 29; h *= 0xBF58476D1CE4E5B9UL; h ^= h >> 32;
            double w = 0.5 + (h % 1000) / 700.0, p = (h >> 20) % 628 / 100.0, c = 0.3 + (h >> 40) % 100 / 90.0;
            Complex x = 0;
            for (int i = 0; i < args.Length; i++) x += args[i] * (1 + i * 0.37 * (j + 1));
            acc += c * Complex.Sin(w * x + p);
        }
        foreach (var a in args) acc += a / 7;
        return acc;
    }

    /// <summary>Lanczos approximation of Γ(x) for real x.</summary>
    public static double Gamma(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        if (x <= 0 && x == Math.Floor(x)) return double.NaN;
        if (x < 0.5) return Math.PI / (Math.Sin(Math.PI * x) * Gamma(1 - x));
        if (x > 171.6) return double.PositiveInfinity;
        if (x == Math.Floor(x) && x < 30)
        {
            double r = 1;
            for (int k = 2; k < (int)x; k++) r *= k;
            return r;
        }
        ReadOnlySpan<double> g = [0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
            -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7];
        x -= 1;
        double a = g[0];
        double t = x + 7.5;
        for (int i = 1; i < 9; i++) a += g[i] / (x + i);
        return Math.Sqrt(2 * Math.PI) * Math.Pow(t, x + 0.5) * Math.Exp(-t) * a;
    }

    // ---------------------------------------------------------------- helpers
    /// <summary>Sign of a − b for two real constants, or null when either is symbolic, complex or undefined.</summary>
    public static int? CompareReal(Node a, Node b, Budget budget)
    {
        try
        {
            if (HasFreeSymbols(a) || HasFreeSymbols(b)) return null;
            var ea = Exact(a, budget);
            var eb = Exact(b, budget);
            if (ea is { } x && eb is { } y) return x.CompareTo(y);
            var na = Numeric(a, null, budget);
            var nb = Numeric(b, null, budget);
            if (double.IsNaN(na.Real) || double.IsNaN(nb.Real) || Math.Abs(na.Imaginary) > 1e-12 || Math.Abs(nb.Imaginary) > 1e-12) return null;
            return na.Real.CompareTo(nb.Real);
        }
        catch (OverflowException) { return null; }
    }

    public static bool HasFreeSymbols(Node n)
    {
        if (n is SymbolNode) return true;
        if (n is FuncNode { Name: "Sum" or "Product" } f)
        {
            var bound = (f.Args[1] as SymbolNode)?.Name;
            var inner = new HashSet<string>();
            CollectSymbols(f.Args[0], inner);
            if (bound != null) inner.Remove(bound);
            return inner.Count > 0 || HasFreeSymbols(f.Args[2]) || HasFreeSymbols(f.Args[3]);
        }
        foreach (var c in n.Children) if (HasFreeSymbols(c)) return true;
        return false;
    }

    public static void CollectSymbols(Node n, HashSet<string> into)
    {
        if (n is SymbolNode s) { into.Add(s.Name); return; }
        if (n is FuncNode { Name: "Sum" or "Product" } f)
        {
            var inner = new HashSet<string>();
            CollectSymbols(f.Args[0], inner);
            if (f.Args[1] is SymbolNode b) inner.Remove(b.Name);
            into.UnionWith(inner);
            CollectSymbols(f.Args[2], into);
            CollectSymbols(f.Args[3], into);
            return;
        }
        foreach (var c in n.Children) CollectSymbols(c, into);
    }

    public static bool IsFinite(Complex c) => double.IsFinite(c.Real) && double.IsFinite(c.Imaginary);
}
