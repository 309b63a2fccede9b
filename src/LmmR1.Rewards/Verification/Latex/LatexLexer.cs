// Lexer for the LaTeX subset, following latex2sympy2_extended's ANTLR lexer: longest match wins, so `\sinx`
// is `\sin` + `x`, `dx` is one differential token and `\left.` (not removed by normalization) is `\le` + `ft`.
// Unknown commands and stray characters are errors, exactly as the reference lexer rejects them (that is how
// `1 = \zzz = x = 0` falls back to its last `=` part). Departure: `∞` and a bare `°` are accepted.
using System.Text;
using System.Runtime.CompilerServices;

namespace LmmR1.Rewards.Verification.Latex;

internal sealed class LatexParseException(string message) : Exception(message);

internal static class LatexLexer
{
    private static readonly Dictionary<string, Tok> Commands = new(StringComparer.Ordinal)
    {
        ["times"] = Tok.CmdTimes, ["cdot"] = Tok.CmdCdot, ["div"] = Tok.CmdDiv, ["mod"] = Tok.CmdMod, ["over"] = Tok.Div,
        ["lgroup"] = Tok.LGroup, ["rgroup"] = Tok.RGroup, ["lbrace"] = Tok.LBraceCmd, ["rbrace"] = Tok.RBraceCmd,
        ["lbrack"] = Tok.LBrack, ["rbrack"] = Tok.RBrack, ["phantom"] = Tok.Phantom, ["boxed"] = Tok.Boxed,
        ["lvert"] = Tok.LVert, ["rvert"] = Tok.RVert, ["vert"] = Tok.Vert, ["langle"] = Tok.LAngle, ["rangle"] = Tok.RAngle,
        ["lfloor"] = Tok.LFloor, ["rfloor"] = Tok.RFloor, ["llcorner"] = Tok.LlCorner, ["lrcorner"] = Tok.LrCorner,
        ["lceil"] = Tok.LCeil, ["rceil"] = Tok.RCeil, ["ulcorner"] = Tok.UlCorner, ["urcorner"] = Tok.UrCorner,
        ["lim"] = Tok.Lim, ["to"] = Tok.LimApproach, ["rightarrow"] = Tok.LimApproach, ["Rightarrow"] = Tok.LimApproach,
        ["longrightarrow"] = Tok.LimApproach, ["Longrightarrow"] = Tok.LimApproach,
        ["int"] = Tok.Int, ["sum"] = Tok.Sum, ["prod"] = Tok.Prod, ["sqrt"] = Tok.Sqrt,
        ["frac"] = Tok.Frac, ["dfrac"] = Tok.Frac, ["tfrac"] = Tok.Frac, ["cfrac"] = Tok.Frac,
        ["binom"] = Tok.Binom, ["tbinom"] = Tok.Binom, ["dbinom"] = Tok.Binom, ["choose"] = Tok.Choose,
        ["operatorname"] = Tok.OperatorName,
        ["gcd"] = Tok.MultiFunc, ["lcm"] = Tok.MultiFunc, ["max"] = Tok.MultiFunc, ["min"] = Tok.MultiFunc,
        ["in"] = Tok.In, ["notin"] = Tok.NotIn, ["equiv"] = Tok.Equal, ["approx"] = Tok.Approx,
        ["lt"] = Tok.Lt, ["le"] = Tok.Le, ["leq"] = Tok.Le, ["leqslant"] = Tok.Le,
        ["gt"] = Tok.Gt, ["ge"] = Tok.Ge, ["geq"] = Tok.Ge, ["geqslant"] = Tok.Ge, ["ne"] = Tok.Ne, ["neq"] = Tok.Ne,
        ["cup"] = Tok.Union, ["cap"] = Tok.Intersection, ["setminus"] = Tok.SetMinus, ["pm"] = Tok.PlusMinus, ["mp"] = Tok.PlusMinus,
        ["emptyset"] = Tok.SetEmpty, ["subseteq"] = Tok.Subset, ["supseteq"] = Tok.Supset,
        ["infty"] = Tok.Infinity, ["partial"] = Tok.Partial,
        ["exponentialE"] = Tok.ExpE,
    };

    private static readonly HashSet<string> Functions = new(StringComparer.Ordinal)
    {
        "log", "ln", "exp", "sin", "cos", "tan", "csc", "sec", "cot", "arcsin", "arccos", "arctan", "arccsc", "arcsec", "arccot",
        "sinh", "cosh", "tanh", "arsinh", "arcosh", "artanh", "arcsinh", "arccosh", "arctanh", "floor", "ceil", "det",
    };

    private static readonly HashSet<string> Skipped = new(StringComparer.Ordinal)
    {
        "thinspace", "medspace", "thickspace", "quad", "qquad", "negthinspace", "negmedspace", "negthickspace",
        "vrule", "vcenter", "vbox", "vskip", "vspace", "hfil",
    };

    private static readonly HashSet<string> Accents = new(StringComparer.Ordinal)
    {
        "acute", "bar", "overline", "breve", "check", "widecheck", "dot", "ddot", "grave", "hat", "tilde", "widetilde", "vec",
        "overrightarrow", "bm", "boldsymbol", "text", "textit", "textbf", "textnormal", "mathbb", "mathbin", "mathbf", "mathcal",
        "mathclap", "mathclose", "mathellipsis", "mathfrak", "mathinner", "mathit", "mathnormal", "mathop", "mathopen", "mathord",
        "mathpunct", "mathrel", "mathring", "mathrlap", "mathrm", "mathscr", "mathsf", "mathsterling", "mathtt", "mbox",
    };

    internal static readonly HashSet<string> GreekNames = new(StringComparer.Ordinal)
    {
        "alpha", "beta", "gamma", "Gamma", "delta", "Delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "Theta", "vartheta", "iota",
        "kappa", "lambda", "Lambda", "mu", "nu", "xi", "Xi", "omicron", "pi", "Pi", "varpi", "rho", "varrho", "sigma", "Sigma",
        "varsigma", "tau", "upsilon", "Upsilon", "phi", "Phi", "varphi", "chi", "psi", "Psi", "omega", "Omega",
    };

    private static readonly Dictionary<char, string> GreekChars = new()
    {
        ['α'] = "alpha", ['β'] = "beta", ['γ'] = "gamma", ['Γ'] = "Gamma", ['δ'] = "delta", ['Δ'] = "Delta", ['ε'] = "epsilon",
        ['ϵ'] = "varepsilon", ['ζ'] = "zeta", ['η'] = "eta", ['θ'] = "theta", ['Θ'] = "Theta", ['ϑ'] = "vartheta", ['ι'] = "iota",
        ['κ'] = "kappa", ['λ'] = "lambda", ['Λ'] = "Lambda", ['μ'] = "mu", ['ν'] = "nu", ['ξ'] = "xi", ['Ξ'] = "Xi", ['ο'] = "omicron",
        ['π'] = "pi", ['Π'] = "Pi", ['ϖ'] = "varpi", ['ρ'] = "rho", ['ϱ'] = "varrho", ['σ'] = "sigma", ['Σ'] = "Sigma", ['ς'] = "varsigma",
        ['τ'] = "tau", ['υ'] = "upsilon", ['Υ'] = "Upsilon", ['φ'] = "phi", ['Φ'] = "Phi", ['ϕ'] = "varphi", ['χ'] = "chi", ['ψ'] = "psi",
        ['Ψ'] = "Psi", ['ω'] = "omega", ['Ω'] = "Omega",
    };

    private static readonly HashSet<string> OtherSymbols = new(StringComparer.Ordinal)
    {
        "Bbbk", "wp", "nabla", "bigstar", "angle", "nexists", "diagdown", "measuredangle", "eth", "diagup", "sphericalangle",
        "clubsuit", "varnothing", "Diamond", "complement", "diamondsuit", "imath", "Finv", "triangledown", "heartsuit", "jmath",
        "Game", "triangle", "spadesuit", "ell", "hbar", "vartriangle", "hslash", "blacklozenge", "lozenge", "blacksquare", "mho",
        "blacktriangle", "sharp", "prime", "Im", "flat", "square", "backprime", "Re", "natural", "surd", "circledS",
    };

    // Bare words the reference lexer turns into one token (they only make sense after \operatorname).
    private static readonly string[] OpNames =
    [
        "arsinh", "arcsinh", "arcosh", "arccosh", "artanh", "arctanh", "gcd", "lcm", "floor", "ceil", "eye", "zeros", "ones",
        "cols", "rows", "diag", "norm", "rank", "trace", "tr", "rref", "hstack", "vstack", "orth", "ortho", "orthogonal",
        "orthogonalize", "nullspace", "eig", "eigen", "diagonalize", "eigenvals", "eigenvalues", "eigenvects", "eigenvectors", "svd", "SVD",
    ];

    private static readonly HashSet<char> OpNameStarts = [.. OpNames.Select(n => n[0])];

    private static readonly (string Text, Tok Kind)[] CaretLiterals =
    [
        ("^{\\circle}", Tok.Degree), ("^{\\degree}", Tok.Degree), ("^{\\circ}", Tok.Degree), ("^\\circle", Tok.Degree),
        ("^\\degree", Tok.Degree), ("^\\circ", Tok.Degree), ("^{°}", Tok.Degree), ("^°", Tok.Degree), ("^{T}", Tok.Transpose), ("^T", Tok.Transpose),
    ];

    private static readonly string[] MatrixTypes = ["matrix", "pmatrix", "bmatrix"];

    /// <summary>An answer longer than this is not parsed (no real answer comes near it; a hostile one would only
    /// fill the heap with tokens and tree nodes).</summary>
    public const int MaxTokens = 20_000;

    // One-character token texts without a fresh string each.
    private static readonly string[] OneChar = [.. Enumerable.Range(0, 128).Select(c => ((char)c).ToString())];

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static List<LatexToken> Tokenize(string s, Budget budget)
    {
        var tokens = new List<LatexToken>(Math.Min(s.Length / 2 + 4, 1024));
        int i = 0;
        while (i < s.Length)
        {
            budget.Tick();
            if (tokens.Count >= MaxTokens) throw new LatexParseException($"more than {MaxTokens} tokens");
            char c = s[i];
            if (c is ' ' or '\t' or '\r' or '\n') { i++; continue; }
            int start = i;
            if (c == '\\') { i = LexBackslash(s, i, tokens); continue; }
            if (IsAsciiDigit(c) || (c == '.' && i + 1 < s.Length && IsAsciiDigit(s[i + 1]))) { i = LexNumber(s, i, tokens); continue; }
            if (IsAsciiLetter(c)) { i = LexLetters(s, i, tokens); continue; }
            if (GreekChars.TryGetValue(c, out var greek)) { tokens.Add(new(Tok.Greek, "\\" + greek, start)); i++; continue; }
            switch (c)
            {
                case '+': case '∔': case '⊕': case '⊞': Add(Tok.Add, 1); break;
                case '-': case '−': case '∸': Add(Tok.Sub, 1); break;
                case '*': case '×': case '⋅': case '⋄': case '⊡': case '∗': case '⋆': case '∘': case '∙': case '⊗': case '⊠': Add(Tok.Mul, 1); break;
                case '/': case '÷': case '∕': Add(Tok.Div, 1); break;
                case '(': Add(Tok.LParen, 1); break;
                case ')': Add(Tok.RParen, 1); break;
                case '{': Add(Tok.LBrace, 1); break;
                case '}': Add(Tok.RBrace, 1); break;
                case '[': Add(Tok.LBracket, 1); break;
                case ']': Add(Tok.RBracket, 1); break;
                case '|': Add(Tok.Bar, 1); break;
                case '&': Add(Tok.MatrixDelCol, 1); break;
                case '_': Add(Tok.Underscore, 1); break;
                case ':': Add(Tok.Colon, 1); break;
                case ';': Add(Tok.Semicolon, 1); break;
                case ',': Add(Tok.Comma, 1); break;
                case '.': Add(Tok.Period, 1); break;
                case '\'': Add(Tok.Transpose, 1); break;
                case '°': Add(Tok.Degree, 1); break;
                case '∞': Add(Tok.Infinity, 1); break;
                case '^':
                {
                    bool matched = false;
                    foreach (var (text, kind) in CaretLiterals)
                        if (string.CompareOrdinal(s, i, text, 0, text.Length) == 0) { Add(kind, text.Length); matched = true; break; }
                    if (!matched) Add(Tok.Caret, 1);
                    break;
                }
                case '!':
                    if (At(s, i, "!==")) Add(Tok.Ne, 3);
                    else if (At(s, i, "!=")) Add(Tok.Ne, 2);
                    else Add(Tok.Bang, 1);
                    break;
                case '<':
                    if (At(s, i, "<=>") || At(s, i, "<->")) throw new LatexParseException("unsupported <=>");
                    if (At(s, i, "<=")) Add(Tok.Le, 2); else Add(Tok.Lt, 1);
                    break;
                case '>':
                    if (At(s, i, ">=")) Add(Tok.Ge, 2); else Add(Tok.Gt, 1);
                    break;
                case '=':
                    if (At(s, i, "==")) Add(Tok.Equal, 2); else Add(Tok.Assign, 1);
                    break;
                case '~':
                    if (At(s, i, "~=")) Add(Tok.Approx, 2); else throw new LatexParseException("unexpected '~'");
                    break;
                case '≤': case '≦': case '≲': case '≾': Add(Tok.Le, 1); break;
                case '≥': case '≧': case '≳': case '≿': Add(Tok.Ge, 1); break;
                case '≠': case '≁': case '≄': case '≇': case '≉': case '≢': Add(Tok.Ne, 1); break;
                case '≈': case '≊': case '≋': case '≃': case '≅': Add(Tok.Approx, 1); break;
                case '≪': case '≺': case '⋖': Add(Tok.Lt, 1); break;
                case '≫': case '≻': case '⋗': Add(Tok.Gt, 1); break;
                case '≡': case '≣': case '≟': case '≎': case '≏': case '≐': case '≑': case '≒': case '≓': case '≔': case '≕': case '≖': case '≗':
                    Add(c == '≡' ? Tok.Assign : Tok.Assign, 1); break;
                case '±': case '∓': Add(Tok.PlusMinus, 1); break;
                case '∪': Add(Tok.Union, 1); break;
                case '∩': Add(Tok.Intersection, 1); break;
                case '∖': Add(Tok.SetMinus, 1); break;
                case '∅': Add(Tok.SetEmpty, 1); break;
                case '⊆': Add(Tok.Subset, 1); break;
                case '⊇': Add(Tok.Supset, 1); break;
                case '∉': Add(Tok.NotIn, 1); break;
                case 'ℕ': Add(Tok.SetNaturals, 1); break;
                case 'ℤ': Add(Tok.SetIntegers, 1); break;
                case 'ℚ': Add(Tok.SetRationals, 1); break;
                case 'ℝ': Add(Tok.SetReals, 1); break;
                case 'ℂ': Add(Tok.SetComplex, 1); break;
                case 'ℙ': Add(Tok.SetPrimes, 1); break;
                default: throw new LatexParseException($"unexpected character '{c}'");
            }
            continue;

            void Add(Tok kind, int len) { tokens.Add(new(kind, len == 1 && s[i] < 128 ? OneChar[s[i]] : s.Substring(i, len), i)); i += len; }
        }
        tokens.Add(new(Tok.Eof, "", s.Length));
        return tokens;
    }

    private static bool At(string s, int i, string lit) => string.CompareOrdinal(s, i, lit, 0, lit.Length) == 0;
    internal static bool IsAsciiDigit(char c) => c is >= '0' and <= '9';
    internal static bool IsAsciiLetter(char c) => c is >= 'a' and <= 'z' or >= 'A' and <= 'Z';

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int LexNumber(string s, int i, List<LatexToken> tokens)
    {
        int start = i;
        while (i < s.Length && IsAsciiDigit(s[i])) i++;
        if (i + 1 < s.Length && s[i] == '.' && IsAsciiDigit(s[i + 1]))
        {
            i++;
            while (i < s.Length && IsAsciiDigit(s[i])) i++;
        }
        // E_NOTATION: NUMBER 'E' [+-]? DIGIT+
        if (i < s.Length && s[i] == 'E')
        {
            int j = i + 1;
            if (j < s.Length && (s[j] == '+' || s[j] == '-')) j++;
            int d = j;
            while (j < s.Length && IsAsciiDigit(s[j])) j++;
            if (j > d) { tokens.Add(new(Tok.ENotation, s[start..j], start)); return j; }
        }
        // PERCENT_NUMBER: NUMBER WS_CHAR? ('\%' | '%')
        int k = i;
        if (k < s.Length && s[k] is ' ' or '\t' or '\r' or '\n') k++;
        if (k < s.Length && s[k] == '%') { tokens.Add(new(Tok.PercentNumber, s[start..i], start)); return k + 1; }
        if (k + 1 < s.Length && s[k] == '\\' && s[k + 1] == '%') { tokens.Add(new(Tok.PercentNumber, s[start..i], start)); return k + 2; }
        tokens.Add(new(Tok.Number, s[start..i], start));
        return i;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int LexLetters(string s, int i, List<LatexToken> tokens)
    {
        int start = i;
        // Longest of: an operator name, a differential, a single letter.
        int best = 1;
        Tok kind = s[i] == 'e' ? Tok.ExpE : s[i] == 'E' ? Tok.ENotationE : Tok.Letter;
        if (OpNameStarts.Contains(s[i]))
            foreach (var name in OpNames)
                if (name.Length > best && string.CompareOrdinal(s, i, name, 0, name.Length) == 0) { best = name.Length; kind = Tok.OpName; }
        if (s[i] == 'd')
        {
            int j = i + 1;
            while (j < s.Length && s[j] is ' ' or '\t' or '\r' or '\n') j++;
            int end = -1;
            if (j < s.Length && IsAsciiLetter(s[j])) end = j + 1;
            else if (j + 1 < s.Length && s[j] == '\\' && IsAsciiLetter(s[j + 1]))
            {
                end = j + 1;
                while (end < s.Length && IsAsciiLetter(s[end])) end++;
            }
            if (end - i > best) { best = end - i; kind = Tok.Differential; }
        }
        tokens.Add(new(kind, best == 1 ? OneChar[s[start]] : s.Substring(start, best), start));
        return start + best;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int LexBackslash(string s, int i, List<LatexToken> tokens)
    {
        int start = i;
        if (i + 1 >= s.Length) throw new LatexParseException("dangling backslash");
        char n = s[i + 1];
        if (!IsAsciiLetter(n))
        {
            switch (n)
            {
                case '\\': tokens.Add(new(Tok.MatrixDelRow, "\\\\", start)); return i + 2;
                case '{':
                    if (At(s, i, "\\{\\}")) { tokens.Add(new(Tok.SetEmpty, "\\{\\}", start)); return i + 4; }
                    tokens.Add(new(Tok.LBraceVisual, "\\{", start)); return i + 2;
                case '}': tokens.Add(new(Tok.RBraceVisual, "\\}", start)); return i + 2;
                case '|': tokens.Add(new(Tok.Norm, "\\|", start)); return i + 2;
                case '(': tokens.Add(new(Tok.LParenVisual, "\\(", start)); return i + 2;
                case ')': tokens.Add(new(Tok.RParenVisual, "\\)", start)); return i + 2;
                case ',': case ':': case ';': case '!': return i + 2;
                case '$':
                    if (At(s, i, "\\$\\infty")) { tokens.Add(new(Tok.Infinity, "\\infty", start)); return i + 8; }
                    return i + 2;
                default: throw new LatexParseException($"unknown command '\\{n}'");
            }
        }
        int j = i + 1;
        while (j < s.Length && IsAsciiLetter(s[j])) j++;
        string run = s.Substring(i + 1, j - i - 1);

        // Multi-part literal tokens first.
        if (run == "begin" || run == "end") return LexEnvironment(s, i, run == "begin", tokens);
        if (run.StartsWith("mathbb", StringComparison.Ordinal) && At(s, i + 7, "{") && i + 10 <= s.Length && s[i + 9] == '}')
        {
            Tok? set = s[i + 8] switch { 'N' => Tok.SetNaturals, 'Z' => Tok.SetIntegers, 'Q' => Tok.SetRationals, 'R' => Tok.SetReals, 'C' => Tok.SetComplex, 'P' => Tok.SetPrimes, _ => null };
            if (set is { } st) { tokens.Add(new(st, s.Substring(i, 10), start)); return i + 10; }
        }
        if (run == "not" && At(s, j, "\\equiv")) { tokens.Add(new(Tok.Ne, "\\not\\equiv", start)); return j + 6; }

        // Longest known command that is a prefix of the letter run (ANTLR matches `\sinx` as `\sin` + `x`).
        for (int len = run.Length; len >= 1; len--)
        {
            var name = run[..len];
            int after = i + 1 + len;
            if (Accents.Contains(name))
            {
                int k = after;
                if (k < s.Length && s[k] is ' ' or '\t' or '\r' or '\n') k++;
                if (k < s.Length && s[k] == '{')
                {
                    int close = s.IndexOf('}', k + 1);
                    if (close < 0) throw new LatexParseException("unterminated accent");
                    tokens.Add(new(Tok.Accent, s.Substring(i, close + 1 - i), start));
                    return close + 1;
                }
                if (name == "mathit") continue; // CMD_MATHIT alone is a token no rule accepts
            }
            if (name == "infty")
            {
                int end = after;
                if (At(s, end, "\\%")) end += 2; else if (At(s, end, "%")) end += 1;
                tokens.Add(new(Tok.Infinity, "\\infty", start));
                return end;
            }
            if (Skipped.Contains(name)) return after;
            if (Commands.TryGetValue(name, out var kind)) { tokens.Add(new(kind, "\\" + name, start)); return after; }
            if (Functions.Contains(name)) { tokens.Add(new(Tok.Func, "\\" + name, start)); return after; }
            if (GreekNames.Contains(name)) { tokens.Add(new(Tok.Greek, "\\" + name, start)); return after; }
            if (OtherSymbols.Contains(name)) { tokens.Add(new(Tok.OtherSymbol, "\\" + name, start)); return after; }
        }
        throw new LatexParseException($"unknown command '\\{run}'");
    }

    private static int LexEnvironment(string s, int i, bool begin, List<LatexToken> tokens)
    {
        int start = i;
        int k = i + (begin ? 6 : 4);
        foreach (var t in MatrixTypes)
        {
            var lit = "{" + t + "}";
            if (At(s, k, lit)) { tokens.Add(new(begin ? Tok.MatrixStart : Tok.MatrixEnd, t, start)); return k + lit.Length; }
        }
        if (At(s, k, "{vmatrix}")) { tokens.Add(new(begin ? Tok.DetStart : Tok.DetEnd, "vmatrix", start)); return k + 9; }
        if (At(s, k, "{array}"))
        {
            k += 7;
            if (!begin) { tokens.Add(new(Tok.ArrayEnd, "array", start)); return k; }
            if (k < s.Length && s[k] == '{')
            {
                int m = k + 1;
                while (m < s.Length && s[m] is 'c' or 'l' or 'r') m++;
                if (m < s.Length && s[m] == '}') { tokens.Add(new(Tok.ArrayStart, "array", start)); return m + 1; }
            }
        }
        throw new LatexParseException("unsupported environment");
    }

    /// <summary>Concatenated token texts of a range, like ANTLR's getText() (whitespace dropped).</summary>
    public static string TextOf(List<LatexToken> tokens, int from, int to)
    {
        var sb = new StringBuilder();
        for (int i = from; i < to; i++) sb.Append(tokens[i].Text);
        return sb.ToString();
    }
}
