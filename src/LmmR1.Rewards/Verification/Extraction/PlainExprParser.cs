// Parser for the plain-text expressions the expr pattern extracts (`(1/2) * (4/3)`, `2^10 - 1`): the Python
// arithmetic grammar sympy.parse_expr(evaluate=False) accepts, with ^ read as **. As in Python, leading zeros
// (`004`), adjacent numbers (`1 000`), implicit products (`2(3)`) and the signs × ÷ are syntax errors.
using LmmR1.Rewards.Verification.Symbolic;

namespace LmmR1.Rewards.Verification.Extraction;

internal sealed class PlainExprParser
{
    private readonly List<(char Kind, string Text)> _tokens = [];
    private readonly Budget _budget;
    private int _p;
    private int _depth;

    private PlainExprParser(Budget budget) { _budget = budget; }

    public static Node? TryParse(string text, Budget budget)
    {
        var p = new PlainExprParser(budget);
        if (!p.Tokenize(text.Replace('\n', ' ').Replace("^", "**").Trim())) return null;
        var e = p.Expr();
        return e != null && p._p == p._tokens.Count ? e : null;
    }

    private bool Tokenize(string s)
    {
        int i = 0;
        while (i < s.Length)
        {
            char c = s[i];
            if (c is ' ' or '\t' or '\r' or '\f') { i++; continue; }
            if (char.IsAsciiDigit(c) || (c == '.' && i + 1 < s.Length && char.IsAsciiDigit(s[i + 1])))
            {
                int start = i;
                while (i < s.Length && char.IsAsciiDigit(s[i])) i++;
                if (i < s.Length && s[i] == '.') { i++; while (i < s.Length && char.IsAsciiDigit(s[i])) i++; }
                var lit = s[start..i];
                // Python rejects "007" (but accepts "0", "00").
                if (!lit.Contains('.') && lit.Length > 1 && lit[0] == '0' && lit.Any(ch => ch != '0')) return false;
                if (_tokens.Count > 0 && _tokens[^1].Kind == 'n') return false; // two literals in a row
                _tokens.Add(('n', lit));
                continue;
            }
            if (c == '*' && i + 1 < s.Length && s[i + 1] == '*') { _tokens.Add(('^', "**")); i += 2; continue; }
            if (c == '/' && i + 1 < s.Length && s[i + 1] == '/') { _tokens.Add(('f', "//")); i += 2; continue; }
            if (c is '+' or '-' or '*' or '/' or '(' or ')') { _tokens.Add((c, c.ToString())); i++; continue; }
            return false;
        }
        return _tokens.Count > 0;
    }

    private char Peek => _p < _tokens.Count ? _tokens[_p].Kind : '\0';

    // sympy's evaluate=False transformer flattens chains: 1+2+3 is one Add (and keeps trees shallow).
    private Node? Expr()
    {
        var l = Term();
        if (l == null || !(Peek == '+' || Peek == '-')) return l;
        var terms = new List<Node> { l };
        while (Peek == '+' || Peek == '-')
        {
            var op = _tokens[_p++].Kind;
            var r = Term();
            if (r == null) return null;
            terms.Add(op == '+' ? r : new MulNode([NumberNode.Int(-1), r]));
        }
        return new AddNode([.. terms]);
    }

    private Node? Term()
    {
        var l = Factor();
        if (l == null || !(Peek == '*' || Peek == '/' || Peek == 'f')) return l;
        var factors = new List<Node> { l };
        while (Peek == '*' || Peek == '/' || Peek == 'f')
        {
            var op = _tokens[_p++].Kind;
            var r = Factor();
            if (r == null) return null;
            if (op == '*') factors.Add(r);
            else if (op == '/') factors.Add(new PowNode(r, NumberNode.Int(-1)));
            else
            {
                var q = new FuncNode("floor", [new MulNode([.. factors, new PowNode(r, NumberNode.Int(-1))])]);
                factors.Clear();
                factors.Add(q);
            }
        }
        return factors.Count == 1 ? factors[0] : new MulNode([.. factors]);
    }

    private Node? Factor()
    {
        if (++_depth > 200) return null;
        _budget.Tick();
        try
        {
            if (Peek == '+') { _p++; return Factor(); }
            if (Peek == '-')
            {
                _p++;
                var f = Factor();
                if (f == null) return null;
                return f is NumberNode n ? new NumberNode(-n.Value, n.IsFloat) : new MulNode([NumberNode.Int(-1), f]);
            }
            var a = Atom();
            if (a == null) return null;
            if (Peek == '^')
            {
                _p++;
                var e = Factor();
                return e == null ? null : new PowNode(a, e);
            }
            return a;
        }
        finally { _depth--; }
    }

    private Node? Atom()
    {
        if (Peek == 'n')
        {
            var lit = _tokens[_p++].Text;
            bool isFloat = lit.Contains('.');
            var v = BigRational.ParseDecimal(isFloat ? lit : (lit.TrimStart('0') is { Length: > 0 } t ? t : "0"));
            return v is { } r ? new NumberNode(r, isFloat) : null;
        }
        if (Peek == '(')
        {
            _p++;
            var e = Expr();
            if (e == null || Peek != ')') return null;
            _p++;
            return e;
        }
        return null;
    }
}
