// Solution sets of relations in one real variable (sympy's Relational.as_set()), so that `-2 \le x \le 7`
// equals `[-2, 7]` and `1 \le |z| \le 3/2` equals `[-3/2,-1] ∪ [1,3/2]`. Each side is reduced to a rational
// function of x with rational coefficients (absolute values split into sign cases); its roots and poles are the
// breakpoints (exact for degree ≤ 2 and for rational roots, floating point otherwise), and the relation is tested
// on every breakpoint and between them. Anything else (several variables, trig, logs) is "unsupported" → null,
// as sympy raises there.
using System.Numerics;

namespace LmmR1.Rewards.Verification.Symbolic;

internal static class RelationSets
{
    private const int MaxDegree = 8;
    private const int MaxAbs = 3;

    public static Node? AsSet(Node relation, Budget budget)
    {
        var rels = relation switch
        {
            RelationNode r => [r],
            AndNode a when a.Items.All(x => x is RelationNode) => a.Items.Cast<RelationNode>().ToArray(),
            _ => null,
        };
        if (rels == null) return null;
        var symbols = new HashSet<string>();
        foreach (var r in rels) { Evaluator.CollectSymbols(r.Lhs, symbols); Evaluator.CollectSymbols(r.Rhs, symbols); }
        if (symbols.Count != 1) return null;
        var x = symbols.First();

        var breakpoints = new List<(Node Node, double Value)>();
        foreach (var r in rels)
        {
            var f = Structure.Difference(r.Lhs, r.Rhs);
            var absArgs = new List<Node>();
            CollectAbs(f, absArgs);
            if (absArgs.Count > MaxAbs) return null;
            foreach (var u in absArgs)
            {
                var pu = ToRational(u, x, [], budget);
                if (pu == null) return null;
                AddRoots(pu.Value.Num, breakpoints, budget);
            }
            for (int mask = 0; mask < 1 << absArgs.Count; mask++)
            {
                var signs = new Dictionary<Node, int>(ReferenceEqualityComparer.Instance);
                for (int k = 0; k < absArgs.Count; k++) signs[absArgs[k]] = (mask >> k & 1) == 1 ? -1 : 1;
                var rf = ToRational(f, x, signs, budget);
                if (rf == null) return null;
                AddRoots(rf.Value.Num, breakpoints, budget);
                AddRoots(rf.Value.Den, breakpoints, budget);
            }
        }
        breakpoints.Sort((a, b) => a.Value.CompareTo(b.Value));
        var bps = new List<(Node Node, double Value)>();
        foreach (var bp in breakpoints)
            if (bps.Count == 0 || Math.Abs(bps[^1].Value - bp.Value) > 1e-9 * Math.Max(1, Math.Abs(bp.Value))) bps.Add(bp);

        bool Holds(double at)
        {
            var env = new Dictionary<string, Complex> { [x] = at };
            foreach (var r in rels)
            {
                var l = Evaluator.Numeric(r.Lhs, env, budget);
                var rr = Evaluator.Numeric(r.Rhs, env, budget);
                if (!Evaluator.IsFinite(l) || !Evaluator.IsFinite(rr) || Math.Abs(l.Imaginary) > 1e-9 || Math.Abs(rr.Imaginary) > 1e-9) return false;
                var d = l.Real - rr.Real;
                var tol = 1e-9 * Math.Max(1, Math.Max(Math.Abs(l.Real), Math.Abs(rr.Real)));
                bool zero = Math.Abs(d) <= tol;
                bool ok = r.Op switch
                {
                    RelOp.Eq => zero, RelOp.Ne => !zero, RelOp.Lt => d < 0 && !zero, RelOp.Le => d < 0 || zero,
                    RelOp.Gt => d > 0 && !zero, _ => d > 0 || zero,
                };
                if (!ok) return false;
            }
            return true;
        }

        // Regions: (-oo,b0) {b0} (b0,b1) … {bn} (bn,oo).
        var pieces = new List<SetPiece>();
        if (bps.Count == 0)
        {
            if (Holds(0)) pieces.Add(SetPiece.All);
        }
        else
        {
            if (Holds(bps[0].Value - Math.Max(1, Math.Abs(bps[0].Value)))) pieces.Add(new SetPiece(ConstantNode.NegInfinity, double.NegativeInfinity, false, bps[0].Node, bps[0].Value, false));
            for (int i = 0; i < bps.Count; i++)
            {
                budget.Tick();
                if (Holds(bps[i].Value)) pieces.Add(SetPiece.Point(bps[i].Node, bps[i].Value));
                double hi = i + 1 < bps.Count ? bps[i + 1].Value : bps[i].Value + Math.Max(1, Math.Abs(bps[i].Value));
                double mid = i + 1 < bps.Count ? (bps[i].Value + hi) / 2 : hi;
                if (Holds(mid))
                {
                    var (endNode, endVal) = i + 1 < bps.Count ? bps[i + 1] : ((Node)ConstantNode.Infinity, double.PositiveInfinity);
                    pieces.Add(new SetPiece(bps[i].Node, bps[i].Value, false, endNode, endVal, false));
                }
            }
        }
        return SetPiece.ToNode(SetPiece.Merge(pieces));
    }

    private static void CollectAbs(Node n, List<Node> into)
    {
        if (n is FuncNode { Name: "Abs" } f) { CollectAbs(f.Args[0], into); into.Add(f.Args[0]); return; }
        foreach (var c in n.Children) CollectAbs(c, into);
    }

    private readonly record struct RatFunc(Poly Num, Poly Den);

    private static RatFunc? ToRational(Node n, string x, Dictionary<Node, int> absSigns, Budget budget)
    {
        budget.Tick();
        switch (n)
        {
            case NumberNode num: return new RatFunc(Poly.Const(num.Value), Poly.Const(BigRational.One));
            case SymbolNode s when s.Name == x: return new RatFunc(Poly.X, Poly.Const(BigRational.One));
            case MulNode { IsPercent: true } pct:
            {
                var inner = ToRational(pct.Factors[0], x, absSigns, budget);
                return inner is { } r ? new RatFunc(r.Num.Scale(BigRational.Hundredth), r.Den) : null;
            }
            case AddNode add:
            {
                RatFunc acc = new(Poly.Const(BigRational.Zero), Poly.Const(BigRational.One));
                foreach (var t in add.Terms)
                {
                    var r = ToRational(t, x, absSigns, budget);
                    if (r == null) return null;
                    var left = acc.Num * r.Value.Den;
                    var right = r.Value.Num * acc.Den;
                    var num = left == null || right == null ? null : left + right;
                    var den = acc.Den * r.Value.Den;
                    if (num == null || den == null) return null;
                    acc = new RatFunc(num, den);
                }
                return acc;
            }
            case MulNode mul:
            {
                RatFunc acc = new(Poly.Const(BigRational.One), Poly.Const(BigRational.One));
                foreach (var f in mul.Factors)
                {
                    var r = ToRational(f, x, absSigns, budget);
                    if (r == null) return null;
                    var num = acc.Num * r.Value.Num;
                    var den = acc.Den * r.Value.Den;
                    if (num == null || den == null) return null;
                    acc = new RatFunc(num, den);
                }
                return acc;
            }
            case PowNode pow when pow.Exponent is NumberNode { IsInteger: true } e && BigInteger.Abs(e.Value.Num) <= MaxDegree:
            {
                var b = ToRational(pow.Base, x, absSigns, budget);
                if (b == null) return null;
                int k = (int)e.Value.Num;
                Poly? num = Poly.Const(BigRational.One), den = Poly.Const(BigRational.One);
                for (int i = 0; i < Math.Abs(k); i++) { num = num * b.Value.Num; den = den * b.Value.Den; if (num == null || den == null) return null; }
                return k >= 0 ? new RatFunc(num!, den!) : new RatFunc(den!, num!);
            }
            case FuncNode { Name: "Abs" } abs when absSigns.TryGetValue(abs.Args[0], out var sign):
            {
                var inner = ToRational(abs.Args[0], x, absSigns, budget);
                return inner is { } r ? new RatFunc(sign < 0 ? r.Num.Scale(-BigRational.One) : r.Num, r.Den) : null;
            }
            default:
                // A constant subexpression (e.g. \sqrt{2}) is fine only when it is rational.
                if (!Evaluator.HasFreeSymbols(n) && Evaluator.Exact(n, budget) is { } c) return new RatFunc(Poly.Const(c), Poly.Const(BigRational.One));
                return null;
        }
    }

    /// <summary>Real roots of p: exact for degree ≤ 2 and rational roots, floating point otherwise.</summary>
    private static void AddRoots(Poly p, List<(Node, double)> into, Budget budget)
    {
        p = p.Trim();
        if (p.Degree <= 0) return;
        // Peel off rational roots (rational root theorem on the integer-scaled polynomial).
        foreach (var r in p.RationalRoots(budget))
        {
            into.Add((NumberNode.Rational(r), r.ToDouble()));
            p = p.DivideByRoot(r);
        }
        if (p.Degree == 1)
        {
            var r = -p.Coef[0] / p.Coef[1];
            into.Add((NumberNode.Rational(r), r.ToDouble()));
        }
        else if (p.Degree == 2)
        {
            var a = p.Coef[2]; var b = p.Coef[1]; var c = p.Coef[0];
            var disc = b * b - new BigRational(4) * a * c;
            if (disc.Sign < 0) return;
            var sq = disc.ExactRoot(2);
            var twoA = new BigRational(2) * a;
            if (sq is { } s)
            {
                foreach (var r in new[] { (-b + s) / twoA, (-b - s) / twoA }) into.Add((NumberNode.Rational(r), r.ToDouble()));
                return;
            }
            var center = -b / twoA;
            var coef = BigRational.One / twoA;
            foreach (var sgn in new[] { 1, -1 })
            {
                Node root = new AddNode([NumberNode.Rational(center), new MulNode([NumberNode.Rational(coef * new BigRational(sgn)), new PowNode(NumberNode.Rational(disc), NumberNode.Rational(new BigRational(1, 2)))])]);
                into.Add((root, center.ToDouble() + sgn * coef.ToDouble() * Math.Sqrt(disc.ToDouble())));
            }
        }
        else if (p.Degree > 2)
        {
            foreach (var r in p.NumericRealRoots()) into.Add((new NumberNode(BigRationalFromDouble(r), true), r));
        }
    }

    internal static BigRational BigRationalFromDouble(double d)
    {
        if (d == 0 || !double.IsFinite(d)) return BigRational.Zero;
        long bits = BitConverter.DoubleToInt64Bits(d);
        bool neg = bits < 0;
        int exp = (int)((bits >> 52) & 0x7FF);
        long mant = bits & 0xFFFFFFFFFFFFFL;
        if (exp == 0) exp++; else mant |= 1L << 52;
        exp -= 1075;
        BigRational r = exp >= 0 ? new BigRational(new BigInteger(mant) << exp) : new BigRational(new BigInteger(mant), BigInteger.One << -exp);
        return neg ? -r : r;
    }
}

/// <summary>Dense polynomial over BigRational, degree-capped; null results mean "too big".</summary>
internal sealed class Poly(BigRational[] coef)
{
    public BigRational[] Coef { get; } = coef;
    public int Degree => Coef.Length - 1;
    public static readonly Poly X = new([BigRational.Zero, BigRational.One]);
    public static Poly Const(BigRational c) => new([c]);

    public Poly Trim()
    {
        int n = Coef.Length;
        while (n > 1 && Coef[n - 1].IsZero) n--;
        return n == Coef.Length ? this : new Poly(Coef[..n]);
    }

    public Poly Scale(BigRational k) => new([.. Coef.Select(c => c * k)]);

    public static Poly? operator +(Poly a, Poly b)
    {
        var r = new BigRational[Math.Max(a.Coef.Length, b.Coef.Length)];
        for (int i = 0; i < r.Length; i++) r[i] = (i < a.Coef.Length ? a.Coef[i] : BigRational.Zero) + (i < b.Coef.Length ? b.Coef[i] : BigRational.Zero);
        return new Poly(r).Trim();
    }

    public static Poly? operator *(Poly a, Poly b)
    {
        if (a.Degree + b.Degree > 16) return null;
        var r = Enumerable.Repeat(BigRational.Zero, a.Coef.Length + b.Coef.Length - 1).ToArray();
        for (int i = 0; i < a.Coef.Length; i++)
            for (int j = 0; j < b.Coef.Length; j++)
            {
                r[i + j] += a.Coef[i] * b.Coef[j];
                if (r[i + j].IsTooLarge) return null;
            }
        return new Poly(r).Trim();
    }

    public BigRational Eval(BigRational x)
    {
        var acc = BigRational.Zero;
        for (int i = Coef.Length - 1; i >= 0; i--) acc = acc * x + Coef[i];
        return acc;
    }

    public Poly DivideByRoot(BigRational r)
    {
        // Synthetic division by (x - r).
        var q = new BigRational[Coef.Length - 1];
        var carry = BigRational.Zero;
        for (int i = Coef.Length - 1; i >= 1; i--) { carry = carry * r + Coef[i]; q[i - 1] = carry; }
        return new Poly(q).Trim();
    }

    public List<BigRational> RationalRoots(Budget budget)
    {
        var roots = new List<BigRational>();
        var p = Trim();
        if (p.Degree < 1) return roots;
        while (p.Degree >= 1 && p.Coef[0].IsZero) { roots.Add(BigRational.Zero); p = new Poly(p.Coef[1..]); }
        if (p.Degree < 3) return roots; // degree ≤ 2 is solved in closed form by the caller
        BigInteger lcm = BigInteger.One;
        foreach (var c in p.Coef) lcm = lcm / BigInteger.GreatestCommonDivisor(lcm, c.Den) * c.Den;
        var ints = p.Coef.Select(c => (c * new BigRational(lcm)).Num).ToArray();
        var a0 = BigInteger.Abs(ints[0]); var an = BigInteger.Abs(ints[^1]);
        if (a0 > 1_000_000 || an > 1_000_000) return roots;
        foreach (var num in Divisors(a0))
            foreach (var den in Divisors(an))
                foreach (var sgn in new[] { 1, -1 })
                {
                    budget.Tick();
                    var cand = new BigRational(sgn * num, den);
                    if (p.Degree >= 1 && p.Eval(cand).IsZero && !roots.Contains(cand)) { roots.Add(cand); p = p.DivideByRoot(cand); }
                }
        return roots;
    }

    private static IEnumerable<BigInteger> Divisors(BigInteger n)
    {
        if (n.IsZero) yield break;
        for (BigInteger d = 1; d * d <= n; d++)
            if ((n % d).IsZero) { yield return d; if (d * d != n) yield return n / d; }
    }

    /// <summary>Real roots by sign changes on a wide grid plus bisection (used only for degree ≥ 3 leftovers).</summary>
    public List<double> NumericRealRoots()
    {
        var c = Coef.Select(x => x.ToDouble()).ToArray();
        double F(double x) { double acc = 0; for (int i = c.Length - 1; i >= 0; i--) acc = acc * x + c[i]; return acc; }
        double bound = 1 + c.Take(c.Length - 1).Select(Math.Abs).Max() / Math.Abs(c[^1]);
        var roots = new List<double>();
        const int steps = 4000;
        double prevX = -bound, prevF = F(prevX);
        for (int i = 1; i <= steps; i++)
        {
            double x = -bound + 2 * bound * i / steps, fx = F(x);
            if (fx == 0) roots.Add(x);
            else if (Math.Sign(fx) != Math.Sign(prevF) && prevF != 0)
            {
                double lo = prevX, hi = x;
                for (int k = 0; k < 100; k++) { double mid = (lo + hi) / 2; if (Math.Sign(F(mid)) == Math.Sign(F(lo))) lo = mid; else hi = mid; }
                roots.Add((lo + hi) / 2);
            }
            prevX = x; prevF = fx;
        }
        return roots;
    }
}

/// <summary>One connected piece of a subset of ℝ: an interval or a single point, with exact nodes for the ends.</summary>
internal readonly record struct SetPiece(Node Lo, double LoValue, bool LoClosed, Node Hi, double HiValue, bool HiClosed)
{
    public static readonly SetPiece All = new(ConstantNode.NegInfinity, double.NegativeInfinity, false, ConstantNode.Infinity, double.PositiveInfinity, false);
    public static SetPiece Point(Node n, double v) => new(n, v, true, n, v, true);
    public bool IsPoint => LoValue == HiValue && LoClosed && HiClosed;

    /// <summary>Sorts and joins touching pieces ((a,b) ∪ {b} ∪ (b,c) → (a,c)).</summary>
    public static List<SetPiece> Merge(List<SetPiece> pieces)
    {
        var sorted = pieces.OrderBy(p => p.LoValue).ThenBy(p => p.LoClosed ? 0 : 1).ToList();
        var result = new List<SetPiece>();
        foreach (var p in sorted)
        {
            if (result.Count > 0)
            {
                var last = result[^1];
                bool touches = last.HiValue > p.LoValue || (last.HiValue == p.LoValue && (last.HiClosed || p.LoClosed));
                if (touches)
                {
                    if (p.HiValue > last.HiValue || (p.HiValue == last.HiValue && p.HiClosed && !last.HiClosed))
                        result[^1] = last with { Hi = p.Hi, HiValue = p.HiValue, HiClosed = p.HiClosed };
                    continue;
                }
            }
            result.Add(p);
        }
        return result;
    }

    public static Node ToNode(List<SetPiece> pieces)
    {
        if (pieces.Count == 0) return new NamedSetNode(NamedSetKind.Empty);
        var nodes = new List<Node>();
        var points = new List<Node>();
        foreach (var p in pieces)
        {
            if (p.IsPoint) points.Add(p.Lo);
            else if (double.IsNegativeInfinity(p.LoValue) && double.IsPositiveInfinity(p.HiValue)) nodes.Add(new NamedSetNode(NamedSetKind.Reals));
            else nodes.Add(new IntervalNode(p.Lo, p.Hi, !p.LoClosed, !p.HiClosed));
        }
        if (points.Count > 0) nodes.Add(new FiniteSetNode([.. points]));
        var acc = nodes[0];
        for (int i = 1; i < nodes.Count; i++) acc = new SetOpNode(SetOpKind.Union, acc, nodes[i]);
        return acc;
    }
}
