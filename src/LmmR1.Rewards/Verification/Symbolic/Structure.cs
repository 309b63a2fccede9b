// Structural predicates and rewrites the grader needs: sympy-style `==` on trees (commutative sums, products and
// sets compared as multisets), "only symbols" (what makes `x=5` an assignment), relation/equation tests, unwrapping
// of undefined functions to symbols, renaming of free symbols, and the `a - b` difference node.
using System.Text;
using System.Runtime.CompilerServices;

namespace LmmR1.Rewards.Verification.Symbolic;

internal static class Structure
{
    /// <summary>sympy's `a == b` on unevaluated trees, lenient on the order of commutative arguments.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool StructEq(Node a, Node b, Budget budget, int depth = 0)
    {
        budget.CheckDepth(depth);
        if (ReferenceEquals(a, b)) return true;
        if (Hash(a) != Hash(b)) return false;
        switch (a)
        {
            case NumberNode na: return b is NumberNode nb && na.Value == nb.Value;
            case SymbolNode sa: return b is SymbolNode sb && sa.Name == sb.Name;
            case ConstantNode ca: return b is ConstantNode cb && ca.Kind == cb.Kind;
            case AddNode aa: return b is AddNode ab && MultisetEq(aa.Terms, ab.Terms, budget, depth);
            case MulNode ma: return b is MulNode mb && MultisetEq(ma.Factors, mb.Factors, budget, depth);
            case PowNode pa: return b is PowNode pb && StructEq(pa.Base, pb.Base, budget, depth + 1) && StructEq(pa.Exponent, pb.Exponent, budget, depth + 1);
            case FuncNode fa: return b is FuncNode fb && fa.Name == fb.Name && fa.Undefined == fb.Undefined && SeqEq(fa.Args, fb.Args, budget, depth);
            case RelationNode ra: return b is RelationNode rb && ra.Op == rb.Op && StructEq(ra.Lhs, rb.Lhs, budget, depth + 1) && StructEq(ra.Rhs, rb.Rhs, budget, depth + 1);
            case AndNode xa: return b is AndNode xb && MultisetEq(xa.Items, xb.Items, budget, depth);
            case FiniteSetNode fsa: return b is FiniteSetNode fsb && SetEq(fsa.Items, fsb.Items, budget, depth);
            case IntervalNode ia:
                return b is IntervalNode ib && ia.LeftOpen == ib.LeftOpen && ia.RightOpen == ib.RightOpen
                    && StructEq(ia.Start, ib.Start, budget, depth + 1) && StructEq(ia.End, ib.End, budget, depth + 1);
            case SetOpNode oa:
                if (b is not SetOpNode ob || oa.Op != ob.Op) return false;
                if (oa.Op == SetOpKind.Complement) return StructEq(oa.Left, ob.Left, budget, depth + 1) && StructEq(oa.Right, ob.Right, budget, depth + 1);
                return MultisetEq(FlattenSetOp(oa), FlattenSetOp(ob), budget, depth);
            case NamedSetNode na2: return b is NamedSetNode nb2 && na2.Kind == nb2.Kind;
            case TupleNode ta: return b is TupleNode tb && SeqEq(ta.Items, tb.Items, budget, depth);
            case MatrixNode xa2: return b is MatrixNode xb2 && xa2.Rows == xb2.Rows && xa2.Cols == xb2.Cols && SeqEq(xa2.Items, xb2.Items, budget, depth);
            default: return false;
        }
    }

    public static Node[] FlattenSetOp(SetOpNode n)
    {
        var list = new List<Node>();
        void Walk(Node x)
        {
            if (x is SetOpNode s && s.Op == n.Op) { Walk(s.Left); Walk(s.Right); }
            else list.Add(x);
        }
        Walk(n);
        return [.. list];
    }

    private static bool SeqEq(Node[] a, Node[] b, Budget budget, int depth)
    {
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++) if (!StructEq(a[i], b[i], budget, depth + 1)) return false;
        return true;
    }

    private static bool MultisetEq(Node[] a, Node[] b, Budget budget, int depth)
    {
        if (a.Length != b.Length) return false;
        if (SeqEq(a, b, budget, depth)) return true;
        var buckets = new Dictionary<int, List<Node>>();
        foreach (var y in b)
        {
            var h = Hash(y);
            if (!buckets.TryGetValue(h, out var list)) buckets[h] = list = [];
            list.Add(y);
        }
        foreach (var x in a)
        {
            if (!buckets.TryGetValue(Hash(x), out var list)) return false;
            int k = list.FindIndex(y => StructEq(x, y, budget, depth + 1));
            if (k < 0) return false;
            list.RemoveAt(k);
        }
        return true;
    }

    private static bool SetEq(Node[] a, Node[] b, Budget budget, int depth)
    {
        var ua = Unique(a, budget);
        var ub = Unique(b, budget);
        if (ua.Count != ub.Count) return false;
        var buckets = ub.GroupBy(Hash).ToDictionary(g => g.Key, g => g.ToList());
        foreach (var x in ua)
            if (!buckets.TryGetValue(Hash(x), out var list) || !list.Any(y => StructEq(x, y, budget, depth + 1))) return false;
        return true;
    }

    /// <summary>Distinct items (sympy FiniteSet semantics), first occurrence kept; hashed, so linear.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static List<Node> Unique(IEnumerable<Node> items, Budget budget)
    {
        var list = new List<Node>();
        var buckets = new Dictionary<int, List<Node>>();
        foreach (var x in items)
        {
            budget.Tick();
            var h = Hash(x);
            if (!buckets.TryGetValue(h, out var bucket)) buckets[h] = bucket = [];
            if (bucket.Any(y => StructEq(x, y, budget))) continue;
            bucket.Add(x);
            list.Add(x);
        }
        return list;
    }

    /// <summary>A hash consistent with StructEq: order-insensitive where StructEq is (sums, products, chains,
    /// set elements), cached on the node.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static int Hash(Node n)
    {
        if (n.HashReady) return n.HashCache;
        int h = n switch
        {
            NumberNode num => HashCode.Combine(1, num.Value),
            SymbolNode s => HashCode.Combine(2, s.Name),
            ConstantNode c => HashCode.Combine(3, c.Kind),
            AddNode a => HashCode.Combine(4, SumHash(a.Terms)),
            MulNode m => HashCode.Combine(5, SumHash(m.Factors)),
            PowNode p => HashCode.Combine(6, Hash(p.Base), Hash(p.Exponent)),
            FuncNode f => HashCode.Combine(7, f.Name, f.Undefined, SeqHash(f.Args)),
            RelationNode r => HashCode.Combine(8, r.Op, Hash(r.Lhs), Hash(r.Rhs)),
            AndNode x => HashCode.Combine(9, SumHash(x.Items)),
            FiniteSetNode fs => HashCode.Combine(10, DistinctHash(fs.Items)),
            IntervalNode i => HashCode.Combine(11, i.LeftOpen, i.RightOpen, Hash(i.Start), Hash(i.End)),
            SetOpNode so => so.Op == SetOpKind.Complement
                ? HashCode.Combine(12, Hash(so.Left), Hash(so.Right))
                : HashCode.Combine(13, so.Op, SumHash(FlattenSetOp(so))),
            NamedSetNode ns => HashCode.Combine(14, ns.Kind),
            TupleNode t => HashCode.Combine(15, SeqHash(t.Items)),
            MatrixNode mx => HashCode.Combine(16, mx.Rows, mx.Cols, SeqHash(mx.Items)),
            _ => 0,
        };
        n.HashCache = h;
        n.HashReady = true;
        return h;

        static int SumHash(Node[] xs) { int acc = 0; foreach (var x in xs) acc = unchecked(acc + Hash(x) * 31 + 7); return acc; }
        static int SeqHash(Node[] xs) { var hc = new HashCode(); foreach (var x in xs) hc.Add(Hash(x)); return hc.ToHashCode(); }
        static int DistinctHash(Node[] xs)
        {
            var set = new SortedSet<int>();
            foreach (var x in xs) set.Add(Hash(x));
            var hc = new HashCode();
            foreach (var v in set) hc.Add(v);
            return hc.ToHashCode();
        }
    }

    /// <summary>latex2sympy2's is_expr_of_only_symbols: x, x·y, A/S, f(x), |AB|, (p,q) — no numbers.</summary>
    public static bool IsExprOfOnlySymbols(Node n)
    {
        if (n is SymbolNode) return true;
        if (n is PowNode { Exponent: NumberNode { IsFloat: false } e } p && e.Value == -BigRational.One
            && (p.Base is SymbolNode || (p.Base.Children.Count > 0 && p.Base.Children.All(IsExprOfOnlySymbols))))
            return true;
        var children = n.Children;
        if (n is RelationNode or AndNode) return children.Count > 0 && children.All(IsExprOfOnlySymbols);
        return children.Count > 0 && children.All(IsExprOfOnlySymbols);
    }

    public static bool IsRelation(Node n) => n is RelationNode || (n is AndNode a && a.Items.Length > 0 && a.Items.All(x => x is RelationNode));
    public static bool IsEquation(Node n) => n is RelationNode { Op: RelOp.Eq } || (n is AndNode a && a.Items.Length > 0 && a.Items.All(x => x is RelationNode { Op: RelOp.Eq }));

    public static bool IsAssignment(Node n) => n switch
    {
        RelationNode { Op: RelOp.Eq } r => IsExprOfOnlySymbols(r.Lhs),
        AndNode a => a.Items.Length > 0 && a.Items.All(x => x is RelationNode { Op: RelOp.Eq }) && IsExprOfOnlySymbols(((RelationNode)a.Items[0]).Lhs),
        _ => false,
    };

    public static RelationNode TakeLast(Node n) => n is AndNode a ? TakeLast(a.Items[^1]) : (RelationNode)n;
    public static RelationNode TakeFirst(Node n) => n is AndNode a ? (RelationNode)a.Items[0] : (RelationNode)n;

    /// <summary>unwrap_eq: an assignment stands for its right-hand side (used for ordering set elements).</summary>
    public static Node UnwrapEq(Node n) => IsAssignment(n) ? TakeLast(n).Rhs : n;

    public static Node Difference(Node a, Node b) => new AddNode([a, new MulNode([NumberNode.Int(-1), b])]);

    /// <summary>unwrap_fcs: f(x) becomes the symbol "f_x" so a relation in f(x) can be solved as in one variable.</summary>
    public static Node UnwrapFunctions(Node n) => Map(n, x => x is FuncNode { Undefined: true } f
        ? new SymbolNode(f.Name + "_" + string.Join("_", f.Args.Select(a => UnwrapFunctions(a).ToString()))) : null);

    public static Node RenameSymbols(Node n, IReadOnlyDictionary<string, string> map) =>
        Map(n, x => x is SymbolNode s && map.TryGetValue(s.Name, out var to) ? new SymbolNode(to) : null);

    /// <summary>Rebuilds the tree bottom-up, letting <paramref name="replace"/> substitute any node.</summary>
    public static Node Map(Node n, Func<Node, Node?> replace)
    {
        var r = replace(n);
        if (r != null) return r;
        Node[] M(Node[] xs) => [.. xs.Select(x => Map(x, replace))];
        return n switch
        {
            AddNode a => new AddNode(M(a.Terms)),
            MulNode m => new MulNode(M(m.Factors), m.IsPercent),
            PowNode p => new PowNode(Map(p.Base, replace), Map(p.Exponent, replace)),
            FuncNode f => new FuncNode(f.Name, M(f.Args), f.Undefined),
            RelationNode rel => new RelationNode(rel.Op, Map(rel.Lhs, replace), Map(rel.Rhs, replace)),
            AndNode and => new AndNode(M(and.Items)),
            FiniteSetNode fs => new FiniteSetNode(M(fs.Items)),
            IntervalNode i => new IntervalNode(Map(i.Start, replace), Map(i.End, replace), i.LeftOpen, i.RightOpen),
            SetOpNode so => new SetOpNode(so.Op, Map(so.Left, replace), Map(so.Right, replace)),
            TupleNode t => new TupleNode(M(t.Items)),
            MatrixNode mx => new MatrixNode(mx.Rows, mx.Cols, M(mx.Items)),
            _ => n,
        };
    }

    public static string Describe(Node n)
    {
        var sb = new StringBuilder();
        n.Write(sb);
        return sb.Length > 200 ? sb.ToString(0, 200) + "…" : sb.ToString();
    }
}
