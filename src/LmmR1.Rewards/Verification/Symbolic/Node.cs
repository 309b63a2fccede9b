// The immutable expression tree the parsers produce and the comparer reads. It mirrors the shapes sympy builds
// with evaluate=False in latex2sympy2 (unevaluated Add/Mul/Pow, FiniteSet keeping its written order, relations,
// And-chains, intervals, matrices) so the comparison rules of Math-Verify's grader can be followed one by one.
using System.Globalization;
using System.Text;

namespace LmmR1.Rewards.Verification.Symbolic;

internal abstract class Node
{
    /// <summary>Descriptions stop growing past this many characters (reasons of huge answers stay small).</summary>
    internal const int MaxDescription = 2000;

    // Structural hash, computed once (nodes are immutable); see Structure.Hash.
    internal int HashCache;
    internal bool HashReady;

    public abstract void Write(StringBuilder sb);
    public override string ToString() { var sb = new StringBuilder(); Write(sb); return sb.ToString(); }
    public virtual IReadOnlyList<Node> Children => [];
}

/// <summary>A number literal. IsFloat marks decimals (sympy Float); integers and fractions are exact Rationals.</summary>
internal sealed class NumberNode(BigRational value, bool isFloat) : Node
{
    public BigRational Value { get; } = value;
    public bool IsFloat { get; } = isFloat;
    public bool IsInteger => !IsFloat && Value.IsInteger;
    public static NumberNode Int(long v) => new(new BigRational(v), false);
    public static NumberNode Rational(BigRational v) => new(v, false);
    public override void Write(StringBuilder sb)
    {
        if (IsFloat) sb.Append(Value.ToDouble().ToString("R", CultureInfo.InvariantCulture));
        else sb.Append(Value.ToString());
    }
}

internal sealed class SymbolNode(string name) : Node
{
    public string Name { get; } = name;
    public override void Write(StringBuilder sb) => sb.Append(Name);
}

internal enum ConstantKind { Pi, E, I, Infinity, NegativeInfinity, ComplexInfinity, NaN, EulerGamma }

internal sealed class ConstantNode(ConstantKind kind) : Node
{
    public ConstantKind Kind { get; } = kind;
    public static readonly ConstantNode Pi = new(ConstantKind.Pi), E = new(ConstantKind.E), I = new(ConstantKind.I),
        Infinity = new(ConstantKind.Infinity), NegInfinity = new(ConstantKind.NegativeInfinity),
        ComplexInfinity = new(ConstantKind.ComplexInfinity), NaN = new(ConstantKind.NaN), EulerGamma = new(ConstantKind.EulerGamma);
    public override void Write(StringBuilder sb) => sb.Append(Kind switch
    {
        ConstantKind.Pi => "pi", ConstantKind.E => "E", ConstantKind.I => "I", ConstantKind.Infinity => "oo",
        ConstantKind.NegativeInfinity => "-oo", ConstantKind.ComplexInfinity => "zoo", ConstantKind.NaN => "nan",
        _ => "EulerGamma",
    });
}

internal sealed class AddNode(Node[] terms) : Node
{
    public Node[] Terms { get; } = terms;
    public override IReadOnlyList<Node> Children => Terms;
    public override void Write(StringBuilder sb)
    {
        sb.Append('(');
        for (int i = 0; i < Terms.Length; i++) { if (sb.Length > MaxDescription) { sb.Append("…"); break; } if (i > 0) sb.Append(" + "); Terms[i].Write(sb); }
        sb.Append(')');
    }
}

/// <summary>A product. IsPercent marks `n%` (latex2sympy's Mul(n, 1/100)), which the grader treats like a number.</summary>
internal sealed class MulNode(Node[] factors, bool isPercent = false) : Node
{
    public Node[] Factors { get; } = factors;
    public bool IsPercent { get; } = isPercent;
    public override IReadOnlyList<Node> Children => Factors;
    public static MulNode Percent(Node n) => new([n, NumberNode.Rational(BigRational.Hundredth)], true);
    public override void Write(StringBuilder sb)
    {
        sb.Append('(');
        for (int i = 0; i < Factors.Length; i++) { if (sb.Length > MaxDescription) { sb.Append("…"); break; } if (i > 0) sb.Append('*'); Factors[i].Write(sb); }
        sb.Append(')');
    }
}

internal sealed class PowNode(Node @base, Node exponent) : Node
{
    public Node Base { get; } = @base;
    public Node Exponent { get; } = exponent;
    public override IReadOnlyList<Node> Children => [Base, Exponent];
    public override void Write(StringBuilder sb) { sb.Append('('); Base.Write(sb); sb.Append(")**("); Exponent.Write(sb); sb.Append(')'); }
}

/// <summary>A function application. Known names (sin, log, factorial, …) are evaluated; others are undefined
/// functions like f(x), which the numeric evaluator models as fixed pseudo-random smooth functions.</summary>
internal sealed class FuncNode(string name, Node[] args, bool undefined = false) : Node
{
    public string Name { get; } = name;
    public Node[] Args { get; } = args;
    public bool Undefined { get; } = undefined;
    public override IReadOnlyList<Node> Children => Args;
    public override void Write(StringBuilder sb)
    {
        sb.Append(Name).Append('(');
        for (int i = 0; i < Args.Length; i++) { if (sb.Length > MaxDescription) { sb.Append("…"); break; } if (i > 0) sb.Append(", "); Args[i].Write(sb); }
        sb.Append(')');
    }
}

internal enum RelOp { Eq, Ne, Lt, Le, Gt, Ge }

internal sealed class RelationNode(RelOp op, Node lhs, Node rhs) : Node
{
    public RelOp Op { get; } = op;
    public Node Lhs { get; } = lhs;
    public Node Rhs { get; } = rhs;
    public override IReadOnlyList<Node> Children => [Lhs, Rhs];
    public static RelOp Inverse(RelOp op) => op switch { RelOp.Lt => RelOp.Gt, RelOp.Gt => RelOp.Lt, RelOp.Le => RelOp.Ge, RelOp.Ge => RelOp.Le, _ => op };
    public override void Write(StringBuilder sb)
    {
        Lhs.Write(sb);
        sb.Append(Op switch { RelOp.Eq => " = ", RelOp.Ne => " != ", RelOp.Lt => " < ", RelOp.Le => " <= ", RelOp.Gt => " > ", _ => " >= " });
        Rhs.Write(sb);
    }
}

/// <summary>A chain like a &lt; b &lt; c, kept in written order (latex2sympy2's patched And).</summary>
internal sealed class AndNode(Node[] items) : Node
{
    public Node[] Items { get; } = items;
    public override IReadOnlyList<Node> Children => Items;
    public override void Write(StringBuilder sb)
    {
        for (int i = 0; i < Items.Length; i++) { if (sb.Length > MaxDescription) { sb.Append("…"); break; } if (i > 0) sb.Append(" & "); Items[i].Write(sb); }
    }
}

internal abstract class SetNode : Node;

/// <summary>A finite set; Items keeps the written order and duplicates (sympy's _unsorted_args).</summary>
internal sealed class FiniteSetNode(Node[] items) : SetNode
{
    public Node[] Items { get; } = items;
    public override IReadOnlyList<Node> Children => Items;
    public override void Write(StringBuilder sb)
    {
        sb.Append('{');
        for (int i = 0; i < Items.Length; i++) { if (sb.Length > MaxDescription) { sb.Append("…"); break; } if (i > 0) sb.Append(", "); Items[i].Write(sb); }
        sb.Append('}');
    }
}

internal sealed class IntervalNode(Node start, Node end, bool leftOpen, bool rightOpen) : SetNode
{
    public Node Start { get; } = start;
    public Node End { get; } = end;
    public bool LeftOpen { get; } = leftOpen;
    public bool RightOpen { get; } = rightOpen;
    public override IReadOnlyList<Node> Children => [Start, End];
    public override void Write(StringBuilder sb)
    {
        sb.Append(LeftOpen ? '(' : '['); Start.Write(sb); sb.Append(", "); End.Write(sb); sb.Append(RightOpen ? ')' : ']');
    }
}

internal enum SetOpKind { Union, Intersection, Complement }

internal sealed class SetOpNode(SetOpKind op, Node left, Node right) : SetNode
{
    public SetOpKind Op { get; } = op;
    public Node Left { get; } = left;
    public Node Right { get; } = right;
    public override IReadOnlyList<Node> Children => [Left, Right];
    public override void Write(StringBuilder sb)
    {
        sb.Append('('); Left.Write(sb); sb.Append(Op switch { SetOpKind.Union => " U ", SetOpKind.Intersection => " n ", _ => " \\ " }); Right.Write(sb); sb.Append(')');
    }
}

internal enum NamedSetKind { Empty, Naturals, Integers, Rationals, Reals, Complexes, Primes }

internal sealed class NamedSetNode(NamedSetKind kind) : SetNode
{
    public NamedSetKind Kind { get; } = kind;
    public override void Write(StringBuilder sb) => sb.Append(Kind.ToString());
}

internal sealed class TupleNode(Node[] items) : Node
{
    public Node[] Items { get; } = items;
    public override IReadOnlyList<Node> Children => Items;
    public override void Write(StringBuilder sb)
    {
        sb.Append('(');
        for (int i = 0; i < Items.Length; i++) { if (sb.Length > MaxDescription) { sb.Append("…"); break; } if (i > 0) sb.Append(", "); Items[i].Write(sb); }
        sb.Append(')');
    }
}

internal sealed class MatrixNode(int rows, int cols, Node[] items) : Node
{
    public int Rows { get; } = rows;
    public int Cols { get; } = cols;
    public Node[] Items { get; } = items;
    public Node this[int r, int c] => Items[r * Cols + c];
    public override IReadOnlyList<Node> Children => Items;
    public override void Write(StringBuilder sb)
    {
        sb.Append("Matrix([");
        for (int r = 0; r < Rows; r++)
        {
            if (sb.Length > MaxDescription) { sb.Append("…"); break; }
            if (r > 0) sb.Append(", ");
            sb.Append('[');
            for (int c = 0; c < Cols; c++) { if (c > 0) sb.Append(", "); this[r, c].Write(sb); }
            sb.Append(']');
        }
        sb.Append("])");
    }
}
