// Recursive-descent parser for normalized LaTeX into Node trees, following latex2sympy2_extended's PS.g4 grammar
// and its conversions: `a,b` is a set, `(a,b)` an open interval (a tuple when b <= a), `x=1,2` assigns a set,
// `2\frac12` is a mixed number, `2 3` too (their postfix rule), `f(x)` is an undefined function but `f(x+1)` is
// f·(x+1), `x\approx 3` is 3. ANTLR's full-context prediction is approximated by trying alternatives in grammar
// order and checking the token that follows; results are memoized per (rule, position) so backtracking stays
// polynomial, and every step ticks the Budget. Not supported (parse fails): integrals, limits, \langle…\rangle.
using System.Numerics;
using LmmR1.Rewards.Verification.Symbolic;

namespace LmmR1.Rewards.Verification.Latex;

internal sealed class LatexParser
{
    private readonly List<LatexToken> _t;
    private readonly Budget _budget;
    private int _p;
    private int _depth;
    private int _absDepth;
    private readonly Dictionary<(int Rule, int Pos, int Abs), (Node? Node, int End)> _memo = [];

    private LatexParser(List<LatexToken> tokens, Budget budget) { _t = tokens; _budget = budget; }

    /// <summary>Parses normalized LaTeX; throws LatexParseException when it is not in the supported subset.</summary>
    public static Node Parse(string latex, Budget budget)
    {
        if (IsCommaNumber(latex)) return CommaNumber(latex);
        var tokens = LatexLexer.Tokenize(latex, budget);
        var p = new LatexParser(tokens, budget);
        return p.ParseMath() ?? throw new LatexParseException("could not parse");
    }

    // ^\s*-?\d{1,3}(,\d{3})+(\.\d+)?\s*$ : "1,234" is a number, not the set {1, 234}.
    internal static bool IsCommaNumber(string s)
    {
        var t = s.AsSpan().Trim(" \t\r\n\f\v");
        int i = 0;
        if (i < t.Length && t[i] == '-') i++;
        int d = 0;
        while (i < t.Length && char.IsAsciiDigit(t[i])) { i++; d++; }
        if (d < 1 || d > 3) return false;
        int groups = 0;
        while (i + 3 < t.Length + 0 && t[i] == ',' && i + 3 < t.Length + 1 && Digits3(t, i + 1)) { i += 4; groups++; }
        if (groups == 0) return false;
        if (i < t.Length && t[i] == '.')
        {
            i++;
            int f = 0;
            while (i < t.Length && char.IsAsciiDigit(t[i])) { i++; f++; }
            if (f == 0) return false;
        }
        return i == t.Length;

        static bool Digits3(ReadOnlySpan<char> t, int at) => at + 3 <= t.Length && char.IsAsciiDigit(t[at]) && char.IsAsciiDigit(t[at + 1]) && char.IsAsciiDigit(t[at + 2]);
    }

    private static Node CommaNumber(string s)
    {
        var t = s.Trim();
        if (t.Contains(',') && t.StartsWith('0')) t = t.Replace(',', '.');
        var cleaned = t.Replace(",", "").Replace(" ", "");
        bool neg = cleaned.StartsWith('-');
        var digits = (neg ? cleaned[1..] : cleaned).TrimStart('0');
        if (digits.Length == 0 || digits[0] == '.') digits = "0" + digits;
        var v = BigRational.ParseDecimal(digits) ?? throw new LatexParseException("bad number");
        return new NumberNode(neg ? -v : v, digits.Contains('.'));
    }

    private LatexToken Cur => _t[_p];
    private Tok Kind => _t[_p].Kind;
    private Tok PeekKind(int k) => _p + k < _t.Count ? _t[_p + k].Kind : Tok.Eof;
    private bool Accept(Tok k) { if (Kind == k) { _p++; return true; } return false; }

    private void Enter() { _depth++; _budget.CheckDepth(_depth); }
    private void Leave() => _depth--;

    // ---------------------------------------------------------------- top level: math
    private Node? ParseMath()
    {
        // set_elements_relation | set_elements | set_relation, each must reach EOF (lowest alternative wins).
        _p = 0;
        var n = SetElementsRelation();
        if (n != null && Kind == Tok.Eof) return n;
        _p = 0;
        var groups = SemicolonElements(noRelation: false, IsEof);
        if (groups != null && Kind == Tok.Eof) return ElementsToSetOrTuple(groups);
        _p = 0;
        n = SetRelation();
        if (n != null && Kind == Tok.Eof) return n;
        return null;
    }

    private static bool IsEof(Tok k) => k == Tok.Eof;

    private Node? SetElementsRelation()
    {
        int start = _p;
        var lhs = AtomExprList();
        if (lhs == null || !(Kind is Tok.In or Tok.Assign)) { _p = start; return null; }
        _p++;
        var groups = SemicolonElements(noRelation: true, IsEof);
        if (groups == null) { _p = start; return null; }
        return new RelationNode(RelOp.Eq, lhs, ElementsToSetOrTuple(groups));
    }

    private static Node ElementsToSetOrTuple(List<List<Node>> groups)
    {
        if (groups.Count == 1) return groups[0].Count == 1 ? groups[0][0] : new FiniteSetNode([.. groups[0]]);
        if (groups.All(g => g.Count == 1)) return new FiniteSetNode([.. groups.Select(g => g[0])]);
        return new FiniteSetNode([.. groups.Select(g => (Node)new TupleNode([.. g]))]);
    }

    private List<List<Node>>? SemicolonElements(bool noRelation, Func<Tok, bool> closer)
    {
        int start = _p;
        var groups = new List<List<Node>>();
        while (true)
        {
            var group = CommaElements(noRelation, closer);
            if (group == null) { _p = start; return null; }
            groups.Add(group);
            if (!Accept(Tok.Semicolon)) return groups;
        }
    }

    private List<Node>? CommaElements(bool noRelation, Func<Tok, bool> closer)
    {
        var items = new List<Node>();
        while (true)
        {
            _budget.Tick();
            var el = Element(noRelation, closer);
            if (el == null) return null;
            items.AddRange(el);
            if (!Accept(Tok.Comma)) return items;
        }
    }

    /// <summary>element: plus_minus_expr | set_atom | relation (expr when noRelation), choosing the first
    /// alternative whose end is followed by a separator or the enclosing closer.</summary>
    private List<Node>? Element(bool noRelation, Func<Tok, bool> closer)
    {
        int start = _p;
        bool Follows() => Kind is Tok.Comma or Tok.Semicolon || closer(Kind);

        var pm = PlusMinusExpr();
        if (pm != null && Follows()) return pm;
        _p = start;
        foreach (var alt in SetAtomAlternatives)
        {
            var n = alt(this);
            if (n != null && Follows()) return [n];
            _p = start;
        }
        var r = noRelation ? Expr() : Relation();
        if (r != null && Follows()) return [r];
        _p = start;
        return null;
    }

    private List<Node>? PlusMinusExpr()
    {
        int start = _p;
        if (Accept(Tok.PlusMinus))
        {
            var e = Expr();
            if (e == null) { _p = start; return null; }
            return [UnaryMinusAtom(e), e];
        }
        var l = Expr();
        if (l == null || !Accept(Tok.PlusMinus)) { _p = start; return null; }
        var r = Expr();
        if (r == null) { _p = start; return null; }
        return [AddFlat(l, r), AddFlat(l, UnaryMinusAtom(r))];
    }

    private static Node UnaryMinusAtom(Node e) => e switch
    {
        NumberNode num => new NumberNode(-num.Value, num.IsFloat),
        ConstantNode { Kind: ConstantKind.Infinity } => ConstantNode.NegInfinity,
        _ => new MulNode([NumberNode.Int(-1), e]),
    };

    // ---------------------------------------------------------------- set atoms
    private static readonly Func<LatexParser, Node?>[] SetAtomAlternatives =
        [p => p.Interval(), p => p.LiteralSet(), p => p.OrderedTuple(), p => p.FiniteSet()];

    private Node? SetAtom()
    {
        int start = _p;
        foreach (var alt in SetAtomAlternatives)
        {
            var n = alt(this);
            if (n != null) return n;
            _p = start;
        }
        return null;
    }

    private Node? Interval()
    {
        int start = _p;
        var open = Kind;
        if (!(open is Tok.LBracket or Tok.LParen or Tok.LParenVisual or Tok.LBrack or Tok.LGroup)) return null;
        _p++;
        var a = Expr();
        if (a == null || !Accept(Tok.Comma)) { _p = start; return null; }
        var b = Expr();
        var close = Kind;
        if (b == null || !(close is Tok.RBracket or Tok.RParen or Tok.RParenVisual or Tok.RBrack or Tok.RGroup)) { _p = start; return null; }
        _p++;
        bool leftOpen = open is Tok.LParen or Tok.LGroup or Tok.LParenVisual;
        bool rightOpen = close is Tok.RParen or Tok.RGroup or Tok.RParenVisual;
        return MakeInterval(a, b, leftOpen, rightOpen, _budget);
    }

    internal static Node MakeInterval(Node a, Node b, bool leftOpen, bool rightOpen, Budget budget)
    {
        // An "interval" that would be empty is read as an ordered pair, as latex2sympy2 does.
        var cmp = Evaluator.CompareReal(a, b, budget);
        if (cmp is { } c)
        {
            if (leftOpen && rightOpen && c >= 0) return new TupleNode([a, b]);
            if (!leftOpen && !rightOpen && c > 0) return new TupleNode([a, b]);
            if (c > 0 || (c == 0 && (leftOpen || rightOpen))) return new NamedSetNode(NamedSetKind.Empty);
            if (c == 0) return new FiniteSetNode([a]);
        }
        // sympy never includes an infinite endpoint.
        if (a is ConstantNode { Kind: ConstantKind.NegativeInfinity or ConstantKind.Infinity } || IsNegInfinity(a)) leftOpen = true;
        if (b is ConstantNode { Kind: ConstantKind.Infinity or ConstantKind.NegativeInfinity } || IsNegInfinity(b)) rightOpen = true;
        return new IntervalNode(a, b, leftOpen, rightOpen);
    }

    private static bool IsNegInfinity(Node n) =>
        n is MulNode { Factors.Length: 2 } m && m.Factors[0] is NumberNode { Value.Num.IsZero: false } k && k.Value == -BigRational.One
        && m.Factors[1] is ConstantNode { Kind: ConstantKind.Infinity };

    private Node? LiteralSet()
    {
        switch (Kind)
        {
            case Tok.SetNaturals: _p++; return new NamedSetNode(NamedSetKind.Naturals);
            case Tok.SetIntegers: _p++; return new NamedSetNode(NamedSetKind.Integers);
            case Tok.SetRationals: _p++; return new NamedSetNode(NamedSetKind.Rationals);
            case Tok.SetReals: _p++; return new NamedSetNode(NamedSetKind.Reals);
            case Tok.SetComplex: _p++; return new NamedSetNode(NamedSetKind.Complexes);
            case Tok.SetPrimes: _p++; return new NamedSetNode(NamedSetKind.Primes);
            case Tok.SetEmpty: _p++; return new NamedSetNode(NamedSetKind.Empty);
            case Tok.LBrace when PeekKind(1) == Tok.RBrace: _p += 2; return new NamedSetNode(NamedSetKind.Empty);
            default: return null;
        }
    }

    private Node? OrderedTuple()
    {
        int start = _p;
        Tok close = Kind switch { Tok.LParen => Tok.RParen, Tok.LParenVisual => Tok.RParenVisual, Tok.LBracket => Tok.RBracket, _ => Tok.Eof };
        if (close == Tok.Eof) return null;
        _p++;
        Enter();
        try
        {
            var groups = SemicolonElements(false, k => k == close);
            if (groups == null || !Accept(close)) { _p = start; return null; }
            if (groups.Count == 1 && groups[0].Count == 1) return groups[0][0];
            return new TupleNode([.. groups.SelectMany(g => g)]);
        }
        finally { Leave(); }
    }

    private Node? FiniteSet()
    {
        int start = _p;
        bool boxed = false;
        Tok close;
        if (Kind == Tok.LBrace) close = Tok.RBrace;
        else if (Kind == Tok.LBraceVisual) close = Tok.RBraceVisual;
        else if (Kind == Tok.Boxed && PeekKind(1) == Tok.LBrace) { boxed = true; close = Tok.RBrace; _p++; }
        else return null;
        _p++;
        Enter();
        try
        {
            var groups = SemicolonElements(false, k => k == close);
            if (groups == null || !Accept(close)) { _p = start; return null; }
            if (boxed) return ElementsToSetOrTuple(groups);
            return new FiniteSetNode([.. groups.SelectMany(g => g)]);
        }
        finally { Leave(); }
    }

    // ---------------------------------------------------------------- set relations
    private Node? SetRelation()
    {
        int start = _p;
        var left = AtomExprList();
        if (left != null && Kind is Tok.In or Tok.Assign)
        {
            _p++;
            var right = SetRelation();
            if (right != null) return new RelationNode(RelOp.Eq, left, right);
        }
        _p = start;
        return MinusExpr();
    }

    private Node? MinusExpr()
    {
        var l = UnionExpr();
        if (l == null) return null;
        while (Kind == Tok.SetMinus)
        {
            int save = _p++;
            var r = UnionExpr();
            if (r == null) { _p = save; break; }
            l = new SetOpNode(SetOpKind.Complement, l, r);
        }
        return l;
    }

    private Node? UnionExpr()
    {
        var l = IntersectionExpr();
        if (l == null) return null;
        while (Kind == Tok.Union)
        {
            int save = _p++;
            var r = IntersectionExpr();
            if (r == null) { _p = save; break; }
            l = new SetOpNode(SetOpKind.Union, TupleToSet(l), TupleToSet(r));
        }
        return l;
    }

    private Node? IntersectionExpr()
    {
        var l = SetGroup();
        if (l == null) return null;
        while (Kind == Tok.Intersection)
        {
            int save = _p++;
            var r = SetGroup();
            if (r == null) { _p = save; break; }
            l = new SetOpNode(SetOpKind.Intersection, TupleToSet(l), TupleToSet(r));
        }
        return l;
    }

    private static Node TupleToSet(Node n) => n is TupleNode t ? new FiniteSetNode(t.Items) : n;

    private Node? SetGroup()
    {
        Enter();
        try
        {
            int start = _p;
            if (Kind == Tok.LParen)
            {
                _p++;
                var inner = MinusExpr();
                if (inner != null && Accept(Tok.RParen)) return inner;
                _p = start;
            }
            return SetAtom();
        }
        finally { Leave(); }
    }

    private Node? AtomExprList()
    {
        int start = _p;
        if (Kind == Tok.LParen)
        {
            _p++;
            var items = new List<Node>();
            while (true)
            {
                var a = AtomExpr();
                if (a == null) { _p = start; return null; }
                items.Add(a);
                if (Accept(Tok.Comma)) continue;
                if (Accept(Tok.RParen)) break;
                _p = start;
                return null;
            }
            return items.Count == 1 ? items[0] : new TupleNode([.. items]);
        }
        return AtomExpr();
    }

    // ---------------------------------------------------------------- relations and expressions
    private Node? Relation()
    {
        int start = _p;
        var lh = Expr();
        if (lh == null) return null;
        List<Node>? chain = null; // a = b = c is And(a = b, b = c), kept in written order
        while (true)
        {
            var op = Kind;
            if (!(op is Tok.Assign or Tok.Equal or Tok.Approx or Tok.Lt or Tok.Le or Tok.Ge or Tok.Gt or Tok.Ne or Tok.In)) break;
            int save = _p++;
            var rh = Expr();
            if (rh == null) { _p = save; break; }
            if (op == Tok.In) { _p = start; return null; } // convert_relation raises for `x \in 5`
            if (op == Tok.Approx)
            {
                // x \approx 3 is 3; anything else keeps the exact left side.
                var current = chain != null ? new AndNode([.. chain]) : lh;
                if (Structure.IsExprOfOnlySymbols(current)) { chain = null; lh = rh; }
                continue;
            }
            var rel = op switch { Tok.Lt => RelOp.Lt, Tok.Le => RelOp.Le, Tok.Gt => RelOp.Gt, Tok.Ge => RelOp.Ge, Tok.Ne => RelOp.Ne, _ => RelOp.Eq };
            if (chain != null) chain.Add(new RelationNode(rel, ((RelationNode)chain[^1]).Rhs, rh));
            else if (lh is RelationNode r) chain = [r, new RelationNode(rel, r.Rhs, rh)];
            else lh = new RelationNode(rel, lh, rh);
        }
        return chain != null ? new AndNode([.. chain]) : lh;
    }

    private Node? Expr() => Memo(0, () => Additive());

    private Node? Memo(int rule, Func<Node?> parse)
    {
        var key = (rule, _p, _absDepth);
        if (_memo.TryGetValue(key, out var hit)) { if (hit.Node != null) _p = hit.End; return hit.Node; }
        int start = _p;
        Enter();
        Node? n;
        try { n = parse(); }
        finally { Leave(); }
        if (n == null) _p = start;
        _memo[key] = (n, _p);
        return n;
    }

    private Node? Additive()
    {
        var lh = Mp(false);
        if (lh == null) return null;
        // add_flat, accumulated in one list so long sums stay linear.
        List<Node>? terms = null;
        bool anyMatrix = IsMatrixLike(lh);
        while (Kind is Tok.Add or Tok.Sub)
        {
            var op = Kind;
            int save = _p++;
            var rh = Mp(false);
            if (rh == null) { _p = save; break; }
            if (anyMatrix || IsMatrixLike(rh))
            {
                anyMatrix = true;
                if (terms != null) { lh = new AddNode([.. terms]); terms = null; }
                lh = new AddNode([lh, op == Tok.Add ? rh : new MulNode([NumberNode.Int(-1), rh])]);
                continue;
            }
            if (op == Tok.Sub) rh = rh is NumberNode num ? new NumberNode(-num.Value, num.IsFloat) : Negate(rh);
            if (terms == null)
            {
                terms = [];
                if (lh is AddNode la) terms.AddRange(la.Terms); else terms.Add(lh);
            }
            if (rh is AddNode ra) terms.AddRange(ra.Terms); else terms.Add(rh);
        }
        return terms != null ? new AddNode([.. terms]) : lh;
    }

    private static Node Negate(Node n) => n switch
    {
        ConstantNode { Kind: ConstantKind.Infinity } => ConstantNode.NegInfinity,
        ConstantNode { Kind: ConstantKind.NegativeInfinity } => ConstantNode.Infinity,
        _ => MulFlat(NumberNode.Int(-1), n),
    };

    private Node? Mp(bool nofunc)
    {
        var lh = Unary(nofunc);
        if (lh == null) return null;
        List<Node>? factors = null; // mul_flat accumulated: products of many factors stay linear
        while (Kind is Tok.Mul or Tok.CmdTimes or Tok.CmdCdot or Tok.Div or Tok.CmdDiv or Tok.Colon or Tok.CmdMod)
        {
            var op = Kind;
            int save = _p++;
            var rh = Unary(nofunc);
            if (rh == null) { _p = save; break; }
            if (op is Tok.Mul or Tok.CmdTimes or Tok.CmdCdot && !IsMatrixLike(lh) && !IsMatrixLike(rh))
            {
                if (factors == null)
                {
                    factors = [];
                    if (lh is MulNode { IsPercent: false } ml) factors.AddRange(ml.Factors); else factors.Add(lh);
                }
                if (rh is MulNode { IsPercent: false } mr) factors.AddRange(mr.Factors); else factors.Add(rh);
                continue;
            }
            if (factors != null) { lh = new MulNode([.. factors]); factors = null; }
            lh = op switch
            {
                Tok.Mul or Tok.CmdTimes or Tok.CmdCdot => new MulNode([lh, rh]),
                Tok.CmdMod => new FuncNode("Mod", [lh, rh]),
                _ => Divide(lh, rh),
            };
        }
        return factors != null ? new MulNode([.. factors]) : lh;
    }

    internal static Node Divide(Node lh, Node rh)
    {
        if (lh is NumberNode { IsInteger: true } a && rh is NumberNode { IsInteger: true } b)
            return b.Value.IsZero ? (a.Value.IsZero ? ConstantNode.NaN : ConstantNode.ComplexInfinity) : NumberNode.Rational(a.Value / b.Value);
        return new MulNode([lh, new PowNode(rh, NumberNode.Int(-1))]);
    }

    private Node? Unary(bool nofunc)
    {
        if (Kind is Tok.Add or Tok.Sub)
        {
            bool neg = Kind == Tok.Sub;
            int save = _p++;
            Enter();
            Node? inner;
            try { inner = Unary(nofunc); }
            finally { Leave(); }
            if (inner == null) { _p = save; return null; }
            if (!neg) return inner;
            if (inner is NumberNode num) return new NumberNode(-num.Value, num.IsFloat);
            return Negate(inner);
        }
        // postfix+ (or postfix postfix_nofunc* for the nofunc variant): implicit multiplication.
        // unary_nofunc is `postfix postfix_nofunc*`: only the first factor may be a function.
        var list = new List<Node>();
        var first = Postfix(nofunc: false);
        if (first == null) return null;
        list.Add(first);
        while (CanStartPostfix(nofunc))
        {
            _budget.Tick();
            int save = _p;
            var next = Postfix(nofunc);
            if (next == null) { _p = save; break; }
            list.Add(next);
        }
        return PostfixProduct(list);
    }

    /// <summary>convert_postfix_list: the product of the implicit factors, built from the right. latex2sympy2's
    /// mixed-number rule applies: an integer followed by a positive rational is their sum (2\frac12 = 5/2).</summary>
    private static Node PostfixProduct(List<Node> items)
    {
        if (items.Count == 1) return items[0];
        if (items.Any(IsMatrixLike)) return new MulNode([.. items]);
        Node? single = items[^1];
        var reversed = new List<Node>(); // factors of the product so far, last first
        for (int i = items.Count - 2; i >= 0; i--)
        {
            var res = items[i];
            if (single != null && res is NumberNode { IsInteger: true } whole && single is NumberNode { IsFloat: false } frac && frac.Value.Sign > 0)
            {
                single = NumberNode.Rational(whole.Value.Sign < 0 ? whole.Value - frac.Value : whole.Value + frac.Value);
                continue;
            }
            if (single != null)
            {
                if (single is MulNode { IsPercent: false } sm) for (int k = sm.Factors.Length - 1; k >= 0; k--) reversed.Add(sm.Factors[k]);
                else reversed.Add(single);
                single = null;
            }
            if (res is MulNode { IsPercent: false } rm) for (int k = rm.Factors.Length - 1; k >= 0; k--) reversed.Add(rm.Factors[k]);
            else reversed.Add(res);
        }
        if (single != null) return single;
        reversed.Reverse();
        return new MulNode([.. reversed]);
    }

    private bool CanStartPostfix(bool nofunc)
    {
        if (nofunc && Kind is Tok.Func or Tok.MultiFunc or Tok.OperatorName or Tok.Sqrt or Tok.Sum or Tok.Prod or Tok.ExpE) return false;
        switch (Kind)
        {
            case Tok.LParen: case Tok.LBracket: case Tok.LBrace: case Tok.LBraceVisual: case Tok.LBraceCmd: case Tok.LBrack: case Tok.LGroup:
            case Tok.Phantom: case Tok.Boxed: case Tok.Norm: case Tok.LVert: case Tok.LFloor: case Tok.LCeil: case Tok.LlCorner: case Tok.UlCorner:
            case Tok.Func: case Tok.MultiFunc: case Tok.OperatorName: case Tok.Sqrt: case Tok.Sum: case Tok.Prod: case Tok.ExpE:
            case Tok.Letter: case Tok.Greek: case Tok.OtherSymbol: case Tok.Accent: case Tok.Infinity: case Tok.Number: case Tok.PercentNumber:
            case Tok.ENotation: case Tok.ENotationE: case Tok.Differential: case Tok.Frac: case Tok.Binom:
            case Tok.MatrixStart: case Tok.ArrayStart: case Tok.DetStart:
                return true;
            case Tok.Bar: case Tok.Vert:
                return _absDepth == 0;
            default:
                return false;
        }
    }

    private Node? Postfix(bool nofunc)
    {
        var e = Exp(nofunc);
        if (e == null) return null;
        while (true)
        {
            if (Kind == Tok.Bang) { _p++; e = new FuncNode("factorial", [e]); continue; }
            if (Kind == Tok.Degree) { _p++; continue; } // convert_degrees=False: 90^\circ is 90
            if (Kind == Tok.Transpose) { _p++; if (e is MatrixNode m) e = Transpose(m); continue; }
            break;
        }
        return e;
    }

    private static MatrixNode Transpose(MatrixNode m)
    {
        var items = new Node[m.Items.Length];
        for (int r = 0; r < m.Rows; r++) for (int c = 0; c < m.Cols; c++) items[c * m.Rows + r] = m[r, c];
        return new MatrixNode(m.Cols, m.Rows, items);
    }

    private Node? Exp(bool nofunc)
    {
        var b = Comp(nofunc);
        if (b == null) return null;
        while (Kind == Tok.Caret)
        {
            int save = _p++;
            Node? exponent;
            if (Kind == Tok.LBrace)
            {
                _p++;
                exponent = Expr();
                if (exponent == null || !Accept(Tok.RBrace)) { _p = save; break; }
            }
            else
            {
                exponent = Atom();
                if (exponent == null) { _p = save; break; }
            }
            if (Kind == Tok.Underscore) { if (SubexprText() == null) { _p = save; break; } }
            b = new PowNode(b, exponent);
        }
        return b;
    }

    private Node? Comp(bool nofunc)
    {
        Enter();
        try
        {
            int start = _p;
            switch (Kind)
            {
                case Tok.LParen: return Group(Tok.RParen) ?? Reset(start);
                case Tok.LBracket: return Group(Tok.RBracket) ?? Reset(start);
                case Tok.LBrace:
                {
                    var g = Group(Tok.RBrace);
                    if (g != null) return g;
                    _p = start;
                    return BraceBinom();
                }
                case Tok.LBraceVisual: return Group(Tok.RBraceVisual) ?? Reset(start);
                case Tok.LBraceCmd: return Group(Tok.RBraceCmd) ?? Reset(start);
                case Tok.LBrack: return Group(Tok.RBrack) ?? Reset(start);
                case Tok.LGroup: return Group(Tok.RGroup) ?? Reset(start);
                case Tok.Phantom:
                case Tok.Boxed:
                    _p++;
                    if (Kind != Tok.LBrace) return Reset(start);
                    return Group(Tok.RBrace) ?? Reset(start);
                case Tok.Norm: return Delimited(Tok.Norm, e => new FuncNode("Abs", [e])) ?? Reset(start);
                case Tok.Bar: return Delimited(Tok.Bar, e => new FuncNode("Abs", [e])) ?? Reset(start);
                case Tok.LVert: return Delimited(Tok.RVert, e => new FuncNode("Abs", [e])) ?? Reset(start);
                case Tok.Vert: return Delimited(Tok.Vert, e => new FuncNode("Abs", [e])) ?? Reset(start);
                case Tok.LFloor: return Delimited(Tok.RFloor, e => new FuncNode("floor", [e])) ?? Reset(start);
                case Tok.LlCorner: return Delimited(Tok.LrCorner, e => new FuncNode("floor", [e])) ?? Reset(start);
                case Tok.LCeil: return Delimited(Tok.RCeil, e => new FuncNode("ceiling", [e])) ?? Reset(start);
                case Tok.UlCorner: return Delimited(Tok.UrCorner, e => new FuncNode("ceiling", [e])) ?? Reset(start);
                case Tok.Frac: return Frac() ?? Reset(start);
                case Tok.Binom: return Binom() ?? Reset(start);
                case Tok.MatrixStart: case Tok.ArrayStart: return Matrix() ?? Reset(start);
                case Tok.DetStart:
                {
                    var m = Matrix();
                    return m == null ? Reset(start) : new FuncNode("det", [m]);
                }
            }
            if (!nofunc)
            {
                var f = Func();
                if (f != null) return f;
                _p = start;
            }
            return Atom();
        }
        finally { Leave(); }
    }

    private Node? Reset(int start) { _p = start; return null; }

    private Node? Group(Tok close)
    {
        int start = _p++;
        int savedAbs = _absDepth;
        _absDepth = 0;
        try
        {
            var e = Expr();
            if (e == null || !Accept(close)) { _p = start; return null; }
            return e;
        }
        finally { _absDepth = savedAbs; }
    }

    private Node? Delimited(Tok close, Func<Node, Node> wrap)
    {
        int start = _p++;
        _absDepth++;
        try
        {
            var e = Expr();
            if (e == null || !Accept(close)) { _p = start; return null; }
            return wrap(e);
        }
        finally { _absDepth--; }
    }

    private Node? BraceBinom()
    {
        int start = _p++;
        var n = Expr();
        if (n == null || !Accept(Tok.Choose)) { _p = start; return null; }
        var k = Expr();
        if (k == null || !Accept(Tok.RBrace)) { _p = start; return null; }
        return new FuncNode("binomial", [n, k]);
    }

    private Node? BracedExpr()
    {
        if (Kind != Tok.LBrace) return null;
        int start = _p;
        var g = Group(Tok.RBrace);
        if (g == null) _p = start;
        return g;
    }

    private Node? Frac()
    {
        _p++;
        var top = BracedExpr();
        if (top == null) return null;
        var bot = BracedExpr();
        if (bot == null) return null;
        if (IsMatrixLike(top) || IsMatrixLike(bot)) return new MulNode([top, new PowNode(bot, NumberNode.Int(-1))]);
        return Divide(top, bot);
    }

    private Node? Binom()
    {
        _p++;
        var n = BracedExpr();
        if (n == null) return null;
        var k = BracedExpr();
        if (k == null) return null;
        return new FuncNode("binomial", [n, k]);
    }

    private Node? Matrix()
    {
        var startKind = Kind;
        Tok endKind = startKind switch { Tok.MatrixStart => Tok.MatrixEnd, Tok.ArrayStart => Tok.ArrayEnd, _ => Tok.DetEnd };
        _p++;
        var rows = new List<List<Node>>();
        int savedAbs = _absDepth;
        _absDepth = 0;
        try
        {
            while (true)
            {
                var row = new List<Node>();
                while (true)
                {
                    var e = Expr();
                    if (e == null) return null;
                    row.Add(e);
                    if (!Accept(Tok.MatrixDelCol)) break;
                }
                rows.Add(row);
                if (Accept(Tok.MatrixDelRow))
                {
                    if (Accept(endKind)) break;
                    continue;
                }
                if (Accept(endKind)) break;
                return null;
            }
        }
        finally { _absDepth = savedAbs; }
        int cols = rows[0].Count;
        if (rows.Any(r => r.Count != cols)) return null;
        return new MatrixNode(rows.Count, cols, [.. rows.SelectMany(r => r)]);
    }

    // ---------------------------------------------------------------- functions
    private Node? Func()
    {
        int start = _p;
        switch (Kind)
        {
            case Tok.Func: return NormalFunc(_t[_p].Text[1..]) ?? Reset(start);
            case Tok.OperatorName:
            {
                _p++;
                if (!Accept(Tok.LBrace) || Kind != Tok.OpName) return Reset(start);
                var name = Cur.Text;
                _p++;
                if (!Accept(Tok.RBrace)) return Reset(start);
                if (name is "gcd" or "lcm" or "zeros" or "ones" or "diag" or "hstack" or "vstack" or "orth" or "ortho" or "orthogonal" or "orthogonalize")
                    return MultiArgFunc(name, start) ?? Reset(start);
                _p--; // NormalFunc expects to sit on the name token
                var n = NormalFunc(name);
                return n ?? Reset(start);
            }
            case Tok.MultiFunc: return MultiArgFunc(_t[_p].Text[1..], start, skipName: true) ?? Reset(start);
            case Tok.Sqrt:
            {
                _p++;
                Node? root = null;
                if (Kind == Tok.LBracket)
                {
                    _p++;
                    root = Expr();
                    if (root == null || !Accept(Tok.RBracket)) return Reset(start);
                }
                var b = BracedExpr();
                if (b == null) return Reset(start);
                if (root == null) return new PowNode(b, NumberNode.Rational(new BigRational(1, 2)));
                var inv = root is NumberNode { IsInteger: true } ri && !ri.Value.IsZero ? NumberNode.Rational(BigRational.One / ri.Value) : (Node)new PowNode(root, NumberNode.Int(-1));
                return new PowNode(b, inv);
            }
            case Tok.Sum: case Tok.Prod: return SumOrProd() ?? Reset(start);
            case Tok.ExpE:
            {
                _p++;
                if (Kind == Tok.Caret)
                {
                    var sup = SupExpr();
                    if (sup == null) return Reset(start);
                    return new PowNode(ConstantNode.E, sup);
                }
                return ConstantNode.E;
            }
            case Tok.Letter: case Tok.Greek: case Tok.OtherSymbol: case Tok.Accent:
                return UserFunc() ?? Reset(start);
        }
        return null;
    }

    private Node? ParenArg()
    {
        if (Kind != Tok.LParen) return null;
        int start = _p;
        var g = Group(Tok.RParen);
        if (g == null) _p = start;
        return g;
    }

    private Node? NormalFunc(string name)
    {
        int start = _p;
        _p++;
        Node? sub = null, sup = null;
        for (int k = 0; k < 2; k++)
        {
            if (Kind == Tok.Underscore && sub == null)
            {
                sub = SubExprNode();
                if (sub == null) return Reset(start);
            }
            else if (Kind == Tok.Caret && sup == null)
            {
                sup = SupExpr();
                if (sup == null) return Reset(start);
            }
        }
        Node? arg = null;
        if (Kind == Tok.LParen)
        {
            int save = _p;
            arg = ParenArg();
            if (arg == null) _p = save;
        }
        if (arg == null)
        {
            arg = Mp(nofunc: true);
            if (arg == null) return Reset(start);
        }
        Node expr;
        string fn = name switch
        {
            "arcsin" or "arccos" or "arctan" or "arccsc" or "arcsec" or "arccot" => "a" + name[3..],
            "arsinh" or "arcosh" or "artanh" => "a" + name[2..],
            "arcsinh" or "arccosh" or "arctanh" => "a" + name[3..],
            _ => name,
        };
        bool isMinusOne = sup is NumberNode { IsInteger: true } s1 && s1.Value == -BigRational.One;
        switch (fn)
        {
            case "log":
            case "ln":
                expr = new FuncNode("log", [arg, sub ?? (fn == "ln" ? ConstantNode.E : NumberNode.Int(10))]);
                break;
            case "exp": expr = new PowNode(ConstantNode.E, arg); break;
            case "floor": expr = new FuncNode("floor", [arg]); break;
            case "ceil": expr = new FuncNode("ceiling", [arg]); break;
            case "det": expr = new FuncNode("det", [arg]); break;
            case "sin" or "cos" or "tan" or "csc" or "sec" or "cot" or "sinh" or "cosh" or "tanh":
                if (isMinusOne) { fn = "a" + fn; sup = null; }
                expr = new FuncNode(fn, [arg]);
                break;
            default: expr = new FuncNode(fn, [arg]); break;
        }
        if (sup != null) expr = new PowNode(expr, sup);
        return expr;
    }

    private Node? MultiArgFunc(string name, int start, bool skipName = false)
    {
        if (skipName) _p++;
        Node? sup = null;
        for (int k = 0; k < 2; k++)
        {
            if (Kind == Tok.Underscore) { if (SubExprNode() == null) return null; }
            else if (Kind == Tok.Caret && sup == null) { sup = SupExpr(); if (sup == null) return null; }
        }
        List<Node> args;
        if (Kind == Tok.LParen)
        {
            int save = _p++;
            args = [];
            while (true)
            {
                var e = Expr();
                if (e == null) { _p = save; return null; }
                args.Add(e);
                if (Accept(Tok.Comma)) continue;
                if (Accept(Tok.RParen)) break;
                _p = save;
                return null;
            }
        }
        else
        {
            var a = Mp(nofunc: true);
            if (a == null) return null;
            args = [a];
        }
        Node f = name switch
        {
            "max" => new FuncNode("Max", [.. args]),
            "min" => new FuncNode("Min", [.. args]),
            "gcd" or "lcm" => new FuncNode(name, [.. args]),
            _ => new FuncNode(name, [.. args], undefined: true),
        };
        return sup != null ? new PowNode(f, sup) : f;
    }

    private Node? UserFunc()
    {
        int start = _p;
        // atom_expr_no_supexpr supexpr? ( '(' func_common_args ')' | '[' … ']' | '{(' … ')}' | '{[' … ']}' )
        if (!(PeekKind(1) is Tok.Underscore or Tok.Caret or Tok.LParen or Tok.LBracket or Tok.LBrace)) return null;
        _p++;
        if (Kind == Tok.Underscore && SubexprText() == null) return Reset(start);
        string name = LatexLexer.TextOf(_t, start, _p);
        Node? sup = null;
        if (Kind == Tok.Caret)
        {
            sup = SupExpr();
            if (sup == null) return Reset(start);
        }
        Tok open1 = Kind, close1;
        bool doubleWrap = false;
        if (open1 == Tok.LParen) close1 = Tok.RParen;
        else if (open1 == Tok.LBracket) close1 = Tok.RBracket;
        else if (open1 == Tok.LBrace && PeekKind(1) is Tok.LParen or Tok.LBracket)
        {
            doubleWrap = true;
            _p++;
            close1 = Kind == Tok.LParen ? Tok.RParen : Tok.RBracket;
        }
        else return Reset(start);
        _p++;
        var args = FuncCommonArgs(close1);
        if (args == null || !Accept(close1)) return Reset(start);
        if (doubleWrap && !Accept(Tok.RBrace)) return Reset(start);
        Node f = new FuncNode(name, [.. args], undefined: true);
        return sup != null ? new PowNode(f, sup) : f;
    }

    // func_common_args: atom | expr ',' | expr ',' args — a lone non-atom expression is not a call.
    private List<Node>? FuncCommonArgs(Tok close)
    {
        int start = _p;
        var atom = Atom();
        if (atom != null && Kind == close) return [atom];
        _p = start;
        var first = Expr();
        if (first == null || !Accept(Tok.Comma)) { _p = start; return null; }
        var args = new List<Node> { first };
        if (Kind == close) return args;
        while (true)
        {
            var e = Expr();
            if (e == null) { _p = start; return null; }
            args.Add(e);
            if (!Accept(Tok.Comma)) break;
        }
        return args;
    }

    private Node? SumOrProd()
    {
        bool isSum = Kind == Tok.Sum;
        _p++;
        Node? var = null, from = null, to = null;
        for (int k = 0; k < 2; k++)
        {
            if (Kind == Tok.Underscore)
            {
                _p++;
                if (!Accept(Tok.LBrace)) return null;
                var lhs = Expr();
                if (lhs == null || !(Kind is Tok.Assign or Tok.Equal)) return null;
                _p++;
                var rhs = Expr();
                if (rhs == null || !Accept(Tok.RBrace)) return null;
                if (lhs is not SymbolNode) return null; // sympy.Sum needs a symbol as its variable
                var = lhs; from = rhs;
            }
            else if (Kind == Tok.Caret)
            {
                to = SupExpr();
                if (to == null) return null;
            }
        }
        if (var == null || from == null || to == null) return null;
        var body = Mp(nofunc: false);
        if (body == null) return null;
        return new FuncNode(isSum ? "Sum" : "Product", [body, var, from, to]);
    }

    private Node? SupExpr() => ScriptExpr(Tok.Caret);

    /// <summary>subexpr as a Node (log bases).</summary>
    private Node? SubExprNode() => ScriptExpr(Tok.Underscore);

    /// <summary>`^` or `_` followed by `{expr}` or an atom; nothing consumed when it does not parse.</summary>
    private Node? ScriptExpr(Tok marker)
    {
        int start = _p;
        if (!Accept(marker)) return null;
        if (Kind == Tok.LBrace)
        {
            _p++;
            var e = Expr();
            if (e == null || !Accept(Tok.RBrace)) return Reset(start);
            return e;
        }
        return Atom() ?? Reset(start);
    }

    /// <summary>subexpr as text (symbol subscripts), via getText like the reference: `a_{37}` → "37".</summary>
    private string? SubexprText()
    {
        int start = _p;
        if (!Accept(Tok.Underscore)) return null;
        if (Kind == Tok.LBrace)
        {
            _p++;
            int from = _p;
            var e = Expr();
            if (e == null)
            {
                // args: expr (',' expr)*
                _p = from;
                while (true)
                {
                    var a = Expr();
                    if (a == null) { _p = start; return null; }
                    if (!Accept(Tok.Comma)) break;
                }
            }
            else if (Kind == Tok.Comma)
            {
                while (Accept(Tok.Comma)) { if (Expr() == null) { _p = start; return null; } }
            }
            int to = _p;
            if (!Accept(Tok.RBrace)) { _p = start; return null; }
            return LatexLexer.TextOf(_t, from, to);
        }
        int f = _p;
        if (Atom() == null) { _p = start; return null; }
        return LatexLexer.TextOf(_t, f, _p);
    }

    // ---------------------------------------------------------------- atoms
    private Node? Atom()
    {
        int start = _p;
        var tok = Cur;
        switch (tok.Kind)
        {
            case Tok.Letter: case Tok.Greek: case Tok.OtherSymbol: case Tok.Accent: return AtomExpr();
            case Tok.Infinity: _p++; return ConstantNode.Infinity;
            case Tok.Number:
            {
                _p++;
                if (Kind == Tok.Underscore && SubexprText() == null) return Reset(start);
                return ParseNumber(tok.Text);
            }
            case Tok.PercentNumber: _p++; return MulNode.Percent(ParseNumber(tok.Text));
            case Tok.ENotation:
            {
                _p++;
                var v = BigRational.ParseDecimal(tok.Text);
                return v is { } r ? new NumberNode(r, true) : null;
            }
            case Tok.ENotationE: _p++; return new SymbolNode("e");
            case Tok.Differential:
            {
                _p++;
                var varName = tok.Text[1..].TrimStart(' ', '\t', '\r', '\n').TrimStart('\\');
                return new SymbolNode("d" + varName);
            }
            default: return null;
        }
    }

    internal static NumberNode ParseNumber(string text)
    {
        text = text.Replace(",", "");
        bool isFloat = text.Contains('.');
        if (!isFloat) { text = text.TrimStart('0'); if (text.Length == 0) text = "0"; }
        var v = BigRational.ParseDecimal(text) ?? throw new LatexParseException("number too large");
        return new NumberNode(v, isFloat);
    }

    private Node? AtomExpr()
    {
        int start = _p;
        var tok = Cur;
        if (!(tok.Kind is Tok.Letter or Tok.Greek or Tok.OtherSymbol or Tok.Accent)) return null;
        _p++;
        string atomText = tok.Kind == Tok.Accent ? AccentText(tok.Text) : tok.Text;
        string subscript = "";
        Node? sup = null;
        for (int k = 0; k < 2; k++)
        {
            if (Kind == Tok.Underscore && subscript.Length == 0)
            {
                var txt = SubexprText();
                if (txt == null) return Reset(start);
                subscript = txt.Length > 1 ? "_{" + txt + "}" : "_" + txt;
            }
            else if (Kind == Tok.Caret && sup == null)
            {
                sup = SupExpr();
                if (sup == null) return Reset(start);
            }
        }
        if (tok.Kind == Tok.Letter && tok.Text == "I") return sup != null ? new PowNode(ConstantNode.I, sup) : ConstantNode.I;
        var sym = Symbols.Get(atomText.Trim() + subscript);
        return sup != null ? new PowNode(sym, sup) : sym;
    }

    /// <summary>convert_atom_expr for ACCENT tokens: \text{…} is its content (spaces and parentheses dropped),
    /// \bar{x} is "bar{x}", \mathcal{F} is "math{F}".</summary>
    private static string AccentText(string token)
    {
        int brace = token.IndexOf('{');
        var name = token[1..brace];
        var text = token[(brace + 1)..^1].Replace(" ", "");
        if (name is "bar" or "overline") name = "bar";
        else if (name is "vec" or "overrightarrow") name = "vec";
        else if (name is "tilde" or "widetilde") name = "tilde";
        else if (name.Contains("text") || name.Contains("mbox")) { name = ""; text = text.Replace("(", "").Replace(")", ""); }
        else if (name.Contains("math")) name = "math";
        return name.Length > 0 ? $"{name}{{{text}}}" : text;
    }

    // ---------------------------------------------------------------- helpers
    internal static bool IsMatrixLike(Node n) => n switch
    {
        MatrixNode => true,
        AddNode a => a.Terms.Any(IsMatrixLike),
        MulNode m => m.Factors.Any(IsMatrixLike),
        PowNode p => IsMatrixLike(p.Base),
        FuncNode { Name: "transpose" } => true,
        _ => false,
    };

    internal static Node AddFlat(Node lh, Node rh)
    {
        if (lh is AddNode || rh is AddNode)
        {
            var items = new List<Node>();
            if (lh is AddNode la) items.AddRange(la.Terms); else items.Add(lh);
            if (rh is AddNode ra) items.AddRange(ra.Terms); else items.Add(rh);
            return new AddNode([.. items]);
        }
        return new AddNode([lh, rh]);
    }

    internal static Node MulFlat(Node lh, Node rh)
    {
        if ((lh is MulNode { IsPercent: false }) || (rh is MulNode { IsPercent: false }))
        {
            var items = new List<Node>();
            if (lh is MulNode { IsPercent: false } la) items.AddRange(la.Factors); else items.Add(lh);
            if (rh is MulNode { IsPercent: false } ra) items.AddRange(ra.Factors); else items.Add(rh);
            return new MulNode([.. items]);
        }
        return new MulNode([lh, rh]);
    }
}

/// <summary>get_symbol (latex2sympy2_extended 1.10.2): Greek names, everything lowercased, π the only constant.</summary>
internal static class Symbols
{
    public static Node Get(string text)
    {
        var letter = text.Replace("\"", "");
        if (letter.StartsWith('\\')) letter = letter[1..];
        letter = letter.ToLowerInvariant();
        return letter == "pi" ? ConstantNode.Pi : new SymbolNode(letter);
    }
}
