// Token kinds of the LaTeX subset, after latex2sympy2_extended's PS.g4 lexer (names kept close to its rules).
namespace LmmR1.Rewards.Verification.Latex;

internal enum Tok
{
    Eof,
    Add, Sub, Mul, Div, CmdTimes, CmdCdot, CmdDiv, CmdMod, Colon, Semicolon, Comma, Period,
    LParen, RParen, LParenVisual, RParenVisual, LGroup, RGroup, LBrace, RBrace, LBraceVisual, RBraceVisual,
    LBraceCmd, RBraceCmd, LBracket, RBracket, LBrack, RBrack,
    Bar, LVert, RVert, Vert, Norm, LAngle, RAngle, LFloor, RFloor, LCeil, RCeil, LlCorner, LrCorner, UlCorner, UrCorner,
    Phantom, Boxed,
    Caret, Underscore, Bang, Transpose, Degree,
    Number, PercentNumber, ENotation, ENotationE, ExpE, Letter, Greek, OtherSymbol, Accent, Differential,
    Infinity, Partial,
    Func,          // \sin, \log, … (Text holds the name without backslash)
    OperatorName,  // \operatorname
    OpName,        // bare operator names lexed as one token (gcd, floor, tr, …)
    Sqrt, Frac, Binom, Choose, Sum, Prod, Int, Lim, LimApproach, MultiFunc, // MultiFunc: \gcd \lcm \max \min
    MatrixStart, MatrixEnd, ArrayStart, ArrayEnd, DetStart, DetEnd, MatrixDelCol, MatrixDelRow,
    In, NotIn, Assign, Equal, Approx, Lt, Le, Gt, Ge, Ne,
    Union, Intersection, SetMinus, PlusMinus, SetEmpty, Subset, Supset,
    SetNaturals, SetIntegers, SetRationals, SetReals, SetComplex, SetPrimes,
}

internal readonly record struct LatexToken(Tok Kind, string Text, int Pos);
