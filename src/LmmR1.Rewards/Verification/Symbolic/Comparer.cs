// Equivalence of two parsed answers, following Math-Verify's grader.sympy_expr_eq step by step: assignment and
// equation unwrapping (x=5 vs 5), relation-to-set conversion, sympy `==`, relations (same, flipped, or proportional
// — where the reference calls sympy.solve), sets/tuples/intervals, symbols, then numbers (float_rounding when a
// Float is involved, exact otherwise) and finally symbolic equality, which here is evaluation at seeded random
// points instead of sympy.simplify. Departures: finite sets are matched order-insensitively (the reference sorts and
// "hopes"), and equal-by-value unions of intervals are recognised without sympy's set algebra.
using System.Numerics;

namespace LmmR1.Rewards.Verification.Symbolic;

/// <summary>Raised where the reference raises inside the comparison (nan/zoo on the gold side, length
/// mismatches in zip(strict=True)); the pair then counts as not equal.</summary>
internal sealed class ComparisonException(string message) : Exception(message);

internal sealed record CompareOptions(int FloatRounding = 6, int NumericPrecision = 15, bool Strict = true, bool AllowSetRelationComp = false);

internal sealed class Comparer(CompareOptions options, Budget budget)
{
    private const int RandomPoints = 6;
    private const ulong Seed = 0x5EED_2025_0001UL;

    public bool ExprEq(Node gold, Node pred) => ExprEq(gold, pred, options.AllowSetRelationComp, options.Strict, 0);

    private bool ExprEq(Node gold, Node pred, bool allowSetRel, bool strict, int depth)
    {
        budget.CheckDepth(depth);
        if (!strict)
        {
            var gs = new HashSet<string>(); Evaluator.CollectSymbols(gold, gs);
            var ps = new HashSet<string>(); Evaluator.CollectSymbols(pred, ps);
            if (gs.Count == ps.Count && gs.Count > 0)
            {
                var map = ps.Order(StringComparer.Ordinal).Zip(gs.Order(StringComparer.Ordinal)).ToDictionary(t => t.First, t => t.Second);
                pred = Structure.RenameSymbols(pred, map);
            }
        }

        bool goldAssign = Structure.IsAssignment(gold), predAssign = Structure.IsAssignment(pred);
        bool goldEq = Structure.IsEquation(gold), predEq = Structure.IsEquation(pred);
        if (goldAssign) gold = new RelationNode(RelOp.Eq, Structure.TakeFirst(gold).Lhs, Structure.TakeLast(gold).Rhs);
        if (predAssign) pred = new RelationNode(RelOp.Eq, Structure.TakeFirst(pred).Lhs, Structure.TakeLast(pred).Rhs);

        // The gold's shape decides: `x = 11` (pred) against `11` (gold) compares 11 with 11.
        if (predEq && !goldEq) pred = Structure.TakeLast(pred).Rhs;
        else if (goldAssign && !predEq) gold = Structure.TakeLast(gold).Rhs;

        if (Structure.IsRelation(gold) && pred is SetNode)
            gold = RelationSets.AsSet(Structure.UnwrapFunctions(gold), budget) ?? gold;
        if (allowSetRel && Structure.IsRelation(pred) && gold is SetNode)
            pred = RelationSets.AsSet(Structure.UnwrapFunctions(pred), budget) ?? pred;

        if (gold is ConstantNode { Kind: ConstantKind.NaN or ConstantKind.ComplexInfinity })
            throw new ComparisonException("can't evaluate nan or zoo");
        if (Structure.StructEq(gold, pred, budget)) return true;

        if (Structure.IsRelation(gold) && Structure.IsRelation(pred)) return CompareRelational(gold, pred, depth);
        if (gold is SetNode or TupleNode || pred is SetNode or TupleNode) return CompareSets(gold, pred, depth);
        if (gold is SymbolNode || pred is SymbolNode) return CompareSymbols(gold, pred);
        if (IsValueLike(gold) && IsValueLike(pred))
        {
            if (NumericEq(gold, pred)) return true;
            if (SymbolicEq(gold, pred)) return true;
        }
        return false;
    }

    private static bool IsValueLike(Node n) => n is not (RelationNode or AndNode or SetNode or TupleNode);

    // ---------------------------------------------------------------- relations
    private bool CompareRelational(Node gold, Node pred, int depth)
    {
        if (gold is AndNode ga && pred is AndNode pa)
        {
            if (ga.Items.Length != pa.Items.Length) throw new ComparisonException("relation chains differ in length");
            for (int i = 0; i < ga.Items.Length; i++)
                if (!CompareRelational(ga.Items[i], pa.Items[i], depth + 1)) return false;
            return true;
        }
        if (gold is not RelationNode g || pred is not RelationNode p) return false;
        var gd = Structure.Difference(g.Lhs, g.Rhs);
        if (g.Op == p.Op && SafeExprEq(gd, Structure.Difference(p.Lhs, p.Rhs), depth)) return true;
        if (g.Op != RelOp.Ne && RelationNode.Inverse(g.Op) == p.Op && SafeExprEq(gd, Structure.Difference(p.Rhs, p.Lhs), depth)) return true;
        return SolveAndCompare(g, p, depth);
    }

    private bool SafeExprEq(Node a, Node b, int depth)
    {
        try { return ExprEq(a, b, false, true, depth + 1); }
        catch (ComparisonException) { return false; }
    }

    /// <summary>Stands in for comparing sympy.solve results: same variables and (for one variable) the same
    /// solution set, or sides that are a constant multiple of each other (positive when the direction is kept).</summary>
    private bool SolveAndCompare(RelationNode g, RelationNode p, int depth)
    {
        var gs = new HashSet<string>(); Evaluator.CollectSymbols(g, gs);
        var ps = new HashSet<string>(); Evaluator.CollectSymbols(p, ps);
        if (gs.Count == 0 || !gs.SetEquals(ps)) return false;
        if (gs.Count == 1 && g.Op != RelOp.Eq && p.Op != RelOp.Eq)
        {
            var a = RelationSets.AsSet(g, budget);
            var b = RelationSets.AsSet(p, budget);
            if (a != null && b != null) return SetsEqualByValue(a, b, depth) ?? false;
        }
        var ratio = ConstantRatio(Structure.Difference(g.Lhs, g.Rhs), Structure.Difference(p.Lhs, p.Rhs), gs);
        if (ratio is not { } k) return false;
        return (g.Op, p.Op) switch
        {
            (RelOp.Eq, RelOp.Eq) or (RelOp.Ne, RelOp.Ne) => true,
            _ when g.Op == p.Op => k > 0,
            _ when RelationNode.Inverse(g.Op) == p.Op => k < 0,
            _ => false,
        };
    }

    /// <summary>k when a(x) = k·b(x) at every sample point for a nonzero real constant k.</summary>
    private double? ConstantRatio(Node a, Node b, HashSet<string> symbols)
    {
        double? k = null;
        int valid = 0;
        var rng = new SplitMix(Seed);
        for (int attempt = 0; attempt < RandomPoints * 2 && valid < RandomPoints; attempt++)
        {
            budget.Tick();
            var env = SamplePoint(symbols, rng);
            var va = Evaluator.Numeric(a, env, budget);
            var vb = Evaluator.Numeric(b, env, budget);
            if (!Evaluator.IsFinite(va) || !Evaluator.IsFinite(vb)) continue;
            if (Complex.Abs(vb) < 1e-12)
            {
                if (Complex.Abs(va) < 1e-12) continue;
                return null;
            }
            var r = va / vb;
            if (Math.Abs(r.Imaginary) > 1e-9 * Math.Max(1, Complex.Abs(r))) return null;
            if (k is { } kk && Math.Abs(kk - r.Real) > 1e-9 * Math.Max(1, Math.Abs(kk))) return null;
            k ??= r.Real;
            valid++;
        }
        return valid >= 3 && k is { } res && Math.Abs(res) > 1e-12 ? res : null;
    }

    // ---------------------------------------------------------------- sets
    private bool CompareSets(Node gold, Node pred, int depth)
    {
        Node a = gold is SetNode or TupleNode ? gold : new FiniteSetNode([gold]);
        Node b = pred is SetNode or TupleNode ? pred : new FiniteSetNode([pred]);
        if (a is IntervalNode ia && b is IntervalNode ib) return CompareIntervals(ia, ib, depth);
        if (Structure.StructEq(a, b, budget)) return true;
        if (a is SetNode && b is SetNode && SetsEqualByValue(a, b, depth) == true) return true;
        if (a is FiniteSetNode or TupleNode && b is FiniteSetNode or TupleNode) return DeepCompare(a, b, depth);
        // (1,2) is read as an open interval; against a 2-element set or tuple it is compared as a pair.
        if (a is IntervalNode { LeftOpen: true, RightOpen: true } oa && b is FiniteSetNode or TupleNode && Length(b) == 2)
            return DeepCompare(new TupleNode([oa.Start, oa.End]), b, depth);
        if (b is IntervalNode { LeftOpen: true, RightOpen: true } ob && a is FiniteSetNode or TupleNode && Length(a) == 2)
            return DeepCompare(a, new TupleNode([ob.Start, ob.End]), depth);
        return false;
    }

    private int Length(Node n) => n is FiniteSetNode fs ? Structure.Unique(fs.Items, budget).Count : ((TupleNode)n).Items.Length;

    private bool CompareIntervals(IntervalNode a, IntervalNode b, int depth) =>
        a.LeftOpen == b.LeftOpen && a.RightOpen == b.RightOpen
        && ExprEq(a.Start, b.Start, false, true, depth + 1) && ExprEq(a.End, b.End, false, true, depth + 1);

    private bool DeepCompare(Node gold, Node pred, int depth)
    {
        var gUnique = gold is FiniteSetNode gf ? Structure.Unique(gf.Items, budget) : null;
        var pUnique = pred is FiniteSetNode pf ? Structure.Unique(pf.Items, budget) : null;
        int gl = gUnique?.Count ?? ((TupleNode)gold).Items.Length;
        int pl = pUnique?.Count ?? ((TupleNode)pred).Items.Length;
        if (gl != pl) return false;

        if (gold is FiniteSetNode)
        {
            // Order-insensitive: sorted by value first, then a matching if sorting pairs them badly.
            var gItems = gUnique!;
            var pItems = pUnique ?? [.. ((TupleNode)pred).Items];
            var gs = SortByValue(gItems);
            var ps = SortByValue(pItems);
            if (AllPairs(gs, ps, depth)) return true;
            return gItems.Count <= 64 && Matching(gItems, pItems, depth);
        }
        var gArgs = ((TupleNode)gold).Items;
        Node[] pArgs = pred is FiniteSetNode pfs ? pfs.Items : ((TupleNode)pred).Items;
        if (gArgs.Length != pArgs.Length) throw new ComparisonException("tuple and set differ in length");
        return AllPairs(gArgs, pArgs, depth);
    }

    private bool AllPairs(IReadOnlyList<Node> a, IReadOnlyList<Node> b, int depth)
    {
        for (int i = 0; i < a.Count; i++)
        {
            budget.Tick();
            if (!ExprEq(a[i], b[i], false, true, depth + 1)) return false;
        }
        return true;
    }

    private bool Matching(List<Node> gold, List<Node> pred, int depth)
    {
        var used = new bool[pred.Count];
        foreach (var g in gold)
        {
            bool found = false;
            for (int j = 0; j < pred.Count && !found; j++)
            {
                if (used[j]) continue;
                bool eq;
                try { eq = ExprEq(g, pred[j], false, true, depth + 1); }
                catch (ComparisonException) { eq = false; }
                if (eq) { used[j] = true; found = true; }
            }
            if (!found) return false;
        }
        return true;
    }

    private List<Node> SortByValue(IEnumerable<Node> items) =>
        [.. items.Select(x => (Node: x, Key: SortKey(Structure.UnwrapEq(x)))).OrderBy(t => t.Key, SortKeyComparer.Instance).Select(t => t.Node)];

    private double[] SortKey(Node n)
    {
        switch (n)
        {
            case TupleNode t: return [.. t.Items.SelectMany(x => SortKey(Structure.UnwrapEq(x)))];
            case IntervalNode i: return [.. SortKey(i.Start), .. SortKey(i.End)];
            default:
                var v = Evaluator.HasFreeSymbols(n) ? Complex.NaN : Evaluator.Numeric(n, null, budget);
                return [double.IsNaN(v.Real) ? double.MaxValue : v.Real, double.IsNaN(v.Imaginary) ? 0 : v.Imaginary];
        }
    }

    private sealed class SortKeyComparer : IComparer<double[]>
    {
        public static readonly SortKeyComparer Instance = new();
        public int Compare(double[]? x, double[]? y)
        {
            for (int i = 0; i < Math.Min(x!.Length, y!.Length); i++) { int c = x[i].CompareTo(y[i]); if (c != 0) return c; }
            return x.Length.CompareTo(y.Length);
        }
    }

    /// <summary>sympy's symmetric_difference(...).is_empty for subsets of ℝ built from intervals, finite sets of
    /// numbers, unions and intersections; null when either side is not of that kind.</summary>
    private bool? SetsEqualByValue(Node a, Node b, int depth)
    {
        var pa = SetPieces(a);
        var pb = SetPieces(b);
        if (pa == null || pb == null) return null;
        if (pa.Count != pb.Count) return false;
        for (int i = 0; i < pa.Count; i++)
        {
            var x = pa[i]; var y = pb[i];
            if (x.LoClosed != y.LoClosed || x.HiClosed != y.HiClosed) return false;
            if (!EndpointEq(x.Lo, x.LoValue, y.Lo, y.LoValue, depth) || !EndpointEq(x.Hi, x.HiValue, y.Hi, y.HiValue, depth)) return false;
        }
        return true;
    }

    private bool EndpointEq(Node a, double av, Node b, double bv, int depth)
    {
        if (double.IsInfinity(av) || double.IsInfinity(bv)) return av == bv;
        try { return ExprEq(a, b, false, true, depth + 1); }
        catch (ComparisonException) { return false; }
    }

    private List<SetPiece>? SetPieces(Node n)
    {
        budget.Tick();
        switch (n)
        {
            case NamedSetNode { Kind: NamedSetKind.Empty }: return [];
            case NamedSetNode { Kind: NamedSetKind.Reals }: return [SetPiece.All];
            case IntervalNode i:
            {
                var lo = RealValue(i.Start); var hi = RealValue(i.End);
                if (lo is not { } l || hi is not { } h || l > h) return null;
                return [new SetPiece(i.Start, l, !i.LeftOpen && double.IsFinite(l), i.End, h, !i.RightOpen && double.IsFinite(h))];
            }
            case FiniteSetNode fs:
            {
                var pieces = new List<SetPiece>();
                foreach (var x in fs.Items)
                {
                    var v = RealValue(x);
                    if (v is not { } d || !double.IsFinite(d)) return null;
                    pieces.Add(SetPiece.Point(x, d));
                }
                return SetPiece.Merge(pieces);
            }
            case SetOpNode { Op: SetOpKind.Union } u:
            {
                var l = SetPieces(u.Left); var r = SetPieces(u.Right);
                if (l == null || r == null) return null;
                return SetPiece.Merge([.. l, .. r]);
            }
            default: return null;
        }
    }

    private double? RealValue(Node n)
    {
        if (n is ConstantNode { Kind: ConstantKind.Infinity }) return double.PositiveInfinity;
        if (n is ConstantNode { Kind: ConstantKind.NegativeInfinity }) return double.NegativeInfinity;
        if (Evaluator.HasFreeSymbols(n)) return null;
        var v = Evaluator.Numeric(n, null, budget);
        if (double.IsNaN(v.Real) || Math.Abs(v.Imaginary) > 1e-12) return null;
        return v.Real;
    }

    // ---------------------------------------------------------------- symbols
    private static bool CompareSymbols(Node gold, Node pred)
    {
        if ((gold is SymbolNode gs0 && gs0.Name.Equals("e", StringComparison.OrdinalIgnoreCase) && pred is ConstantNode { Kind: ConstantKind.E })
            || (pred is SymbolNode ps0 && ps0.Name.Equals("e", StringComparison.OrdinalIgnoreCase) && gold is ConstantNode { Kind: ConstantKind.E }))
            return true;
        if (gold is SymbolNode g1 && pred is MulNode pm && pm.Factors.All(IsSymbolOrE))
            return string.Equals(g1.Name, Concat(pm), StringComparison.OrdinalIgnoreCase);
        if (pred is SymbolNode p1 && gold is MulNode gm && gm.Factors.All(IsSymbolOrE))
            return string.Equals(p1.Name, Concat(gm), StringComparison.OrdinalIgnoreCase);
        if (gold is SymbolNode g2 && pred is SymbolNode p2)
        {
            var gn = g2.Name.Length > 1 ? g2.Name.ToLowerInvariant() : g2.Name;
            var pn = p2.Name.Length > 1 ? p2.Name.ToLowerInvariant() : p2.Name;
            return gn == pn;
        }
        return gold.ToString() == pred.ToString();

        static bool IsSymbolOrE(Node n) => n is SymbolNode or ConstantNode { Kind: ConstantKind.E };
        static string Concat(MulNode m) => string.Concat(m.Factors.Select(f => f is SymbolNode s ? s.Name : "e"));
    }

    // ---------------------------------------------------------------- numbers
    private static bool IsAtomicNumber(Node n) => n is NumberNode || n is ConstantNode { Kind: ConstantKind.Infinity or ConstantKind.NegativeInfinity }
        || (n is MulNode { IsPercent: true } p && p.Factors[0] is NumberNode);
    private static bool IsAtomicFloat(Node n) => n is NumberNode { IsFloat: true } || (n is MulNode { IsPercent: true } p && p.Factors[0] is NumberNode { IsFloat: true });

    private bool NumericEq(Node a, Node b)
    {
        if (LatexMatrices.IsMatrixExpr(a) && LatexMatrices.IsMatrixExpr(b))
        {
            var ma = LatexMatrices.Evaluate(a, budget);
            var mb = LatexMatrices.Evaluate(b, budget);
            if (ma == null || mb == null || ma.Rows != mb.Rows || ma.Cols != mb.Cols) return false;
            for (int i = 0; i < ma.Items.Length; i++)
                if (!NumericEq(ma.Items[i], mb.Items[i])) return false;
            return true;
        }
        if (LatexMatrices.IsMatrixExpr(a) || LatexMatrices.IsMatrixExpr(b)) return false;
        if (IsAtomicNumber(a) || IsAtomicNumber(b))
        {
            if (IsAtomicFloat(a) || IsAtomicFloat(b))
            {
                var ra = Rounded(a); var rb = Rounded(b);
                return ra is { } x && rb is { } y && x == y;
            }
            return ValueEq(a, b);
        }
        if (Evaluator.HasFreeSymbols(a) || Evaluator.HasFreeSymbols(b)) return false;
        return ConstantsEqual(a, b, PrecisionTolerance());
    }

    /// <summary>Two constant expressions: exactly when both are rational (2^100 ≠ 2^100 + 1), else by value.</summary>
    private bool ConstantsEqual(Node a, Node b, double relTol)
    {
        var ea = Evaluator.Exact(a, budget);
        var eb = Evaluator.Exact(b, budget);
        if (ea is { } x && eb is { } y) return x == y;
        var va = Evaluator.Numeric(a, null, budget);
        var vb = Evaluator.Numeric(b, null, budget);
        return Close(va, vb, relTol);
    }

    private double PrecisionTolerance() => Math.Pow(10, -Math.Clamp(options.NumericPrecision - 3, 6, 13));

    /// <summary>sympy `doit(a) == doit(b)` for numbers: exact when both are rational, else by value.</summary>
    private bool ValueEq(Node a, Node b)
    {
        if (Evaluator.HasFreeSymbols(a) || Evaluator.HasFreeSymbols(b)) return false;
        var ea = Evaluator.Exact(a, budget);
        var eb = Evaluator.Exact(b, budget);
        if (ea is { } x && eb is { } y) return x == y;
        var va = Evaluator.Numeric(a, null, budget);
        var vb = Evaluator.Numeric(b, null, budget);
        if (double.IsInfinity(va.Real) || double.IsInfinity(vb.Real)) return va == vb;
        return Close(va, vb, 1e-12);
    }

    /// <summary>expr.round(float_rounding): the value rounded to that many decimals (ties to even), as (re, im).</summary>
    private (BigRational, BigRational)? Rounded(Node n)
    {
        if (Evaluator.HasFreeSymbols(n)) return null;
        if (Evaluator.Exact(n, budget) is { } exact) return (exact.RoundDecimals(options.FloatRounding), BigRational.Zero);
        var v = Evaluator.Numeric(n, null, budget);
        if (!Evaluator.IsFinite(v)) return null;
        return (RelationSets.BigRationalFromDouble(v.Real).RoundDecimals(options.FloatRounding),
                RelationSets.BigRationalFromDouble(v.Imaginary).RoundDecimals(options.FloatRounding));
    }

    private static bool Close(Complex a, Complex b, double relTol)
    {
        if (!Evaluator.IsFinite(a) || !Evaluator.IsFinite(b)) return false;
        var scale = Math.Max(1, Math.Max(Complex.Abs(a), Complex.Abs(b)));
        return Complex.Abs(a - b) <= relTol * scale;
    }

    /// <summary>In place of simplify(a - b) == 0: equal values at seeded random points for the free symbols.</summary>
    private bool SymbolicEq(Node a, Node b)
    {
        if (LatexMatrices.IsMatrixExpr(a) || LatexMatrices.IsMatrixExpr(b))
        {
            var ma = LatexMatrices.Evaluate(a, budget);
            var mb = LatexMatrices.Evaluate(b, budget);
            if (ma == null || mb == null || ma.Rows != mb.Rows || ma.Cols != mb.Cols) return false;
            for (int i = 0; i < ma.Items.Length; i++)
                if (!SymbolicEq(ma.Items[i], mb.Items[i])) return false;
            return true;
        }
        var symbols = new HashSet<string>();
        Evaluator.CollectSymbols(a, symbols);
        Evaluator.CollectSymbols(b, symbols);
        if (symbols.Count == 0) return ConstantsEqual(a, b, 1e-10);
        var rng = new SplitMix(Seed);
        int valid = 0;
        for (int attempt = 0; attempt < RandomPoints * 2 && valid < RandomPoints; attempt++)
        {
            budget.Tick();
            var env = SamplePoint(symbols, rng);
            var va = Evaluator.Numeric(a, env, budget);
            var vb = Evaluator.Numeric(b, env, budget);
            bool fa = Evaluator.IsFinite(va), fb = Evaluator.IsFinite(vb);
            if (!fa && !fb) continue;
            if (fa != fb) return false;
            if (!Close(va, vb, 1e-9)) return false;
            valid++;
        }
        return valid >= 3;
    }

    private static Dictionary<string, Complex> SamplePoint(HashSet<string> symbols, SplitMix rng)
    {
        var env = new Dictionary<string, Complex>();
        // Sorted so the same symbol gets the same value whatever the hash order.
        foreach (var s in symbols.Order(StringComparer.Ordinal)) env[s] = 0.3 + 2.2 * rng.NextDouble();
        return env;
    }

    private sealed class SplitMix(ulong seed)
    {
        private ulong _state = seed;
        public double NextDouble()
        {
            ulong z = _state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            return (z >> 11) * (1.0 / (1UL << 53));
        }
    }
}
