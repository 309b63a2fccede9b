// Matrix expressions (sympy MatAdd/MatMul/doit): sums, products, scalar multiples and small integer powers of
// matrices are multiplied out into one matrix of element trees, which the comparer then checks element-wise.
namespace LmmR1.Rewards.Verification.Symbolic;

internal static class LatexMatrices
{
    private const int MaxElements = 400;

    public static bool IsMatrixExpr(Node n) => Latex.LatexParser.IsMatrixLike(n);

    public static MatrixNode? Evaluate(Node n, Budget budget, int depth = 0)
    {
        budget.CheckDepth(depth);
        switch (n)
        {
            case MatrixNode m: return m;
            case AddNode add:
            {
                MatrixNode? acc = null;
                foreach (var t in add.Terms)
                {
                    var m = Evaluate(t, budget, depth + 1);
                    if (m == null) return null;
                    if (acc == null) { acc = m; continue; }
                    if (acc.Rows != m.Rows || acc.Cols != m.Cols) return null;
                    acc = new MatrixNode(m.Rows, m.Cols, [.. acc.Items.Zip(m.Items, (x, y) => (Node)new AddNode([x, y]))]);
                }
                return acc;
            }
            case MulNode mul:
            {
                Node scalar = NumberNode.Int(1);
                MatrixNode? acc = null;
                foreach (var f in mul.Factors)
                {
                    if (!IsMatrixExpr(f)) { scalar = new MulNode([scalar, f]); continue; }
                    var m = Evaluate(f, budget, depth + 1);
                    if (m == null) return null;
                    acc = acc == null ? m : Multiply(acc, m, budget);
                    if (acc == null) return null;
                }
                if (acc == null) return null;
                return new MatrixNode(acc.Rows, acc.Cols, [.. acc.Items.Select(x => (Node)new MulNode([scalar, x]))]);
            }
            case PowNode { Exponent: NumberNode { IsInteger: true } e } pow when e.Value.Sign > 0 && e.Value.Num <= 8:
            {
                var m = Evaluate(pow.Base, budget, depth + 1);
                if (m == null || m.Rows != m.Cols) return null;
                var acc = m;
                for (int k = 1; k < (int)e.Value.Num; k++) { acc = Multiply(acc, m, budget); if (acc == null) return null; }
                return acc;
            }
            default: return null;
        }
    }

    private static MatrixNode? Multiply(MatrixNode a, MatrixNode b, Budget budget)
    {
        if (a.Cols != b.Rows || a.Rows * b.Cols > MaxElements) return null;
        var items = new Node[a.Rows * b.Cols];
        for (int r = 0; r < a.Rows; r++)
            for (int c = 0; c < b.Cols; c++)
            {
                budget.Tick();
                var terms = new Node[a.Cols];
                for (int k = 0; k < a.Cols; k++) terms[k] = new MulNode([a[r, k], b[k, c]]);
                items[r * b.Cols + c] = new AddNode(terms);
            }
        return new MatrixNode(a.Rows, b.Cols, items);
    }
}
