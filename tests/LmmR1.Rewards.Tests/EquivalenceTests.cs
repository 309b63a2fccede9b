// Equivalence rules (issue item 3): exact rationals, float_rounding, symbolic equality at random points, sets,
// tuples, intervals, matrices, relations with strict and allow_set_relation_comp.
using LmmR1.Rewards.Tests.Support;

namespace LmmR1.Rewards.Tests;

public sealed class EquivalenceTests
{
    [Theory]
    // 2/6 reduces to 1/3 exactly.
    [InlineData(@"$\frac{1}{3}$", @"$\frac{2}{6}$", 6, true)]
    // A float against a rational: both rounded to 6 decimals, 0.333333 = 0.333333.
    [InlineData(@"$\frac{1}{3}$", "$0.333333$", 6, true)]
    // 0.33 is not 1/3 at 6 decimals…
    [InlineData(@"$\frac{1}{3}$", "$0.33$", 6, false)]
    // …but is at 2.
    [InlineData(@"$\frac{1}{3}$", "$0.33$", 2, true)]
    // 0.3333 at 4 decimals (Math-Verify's test_precision); 0.333 is not.
    [InlineData(@"$\frac{1}{3}$", "$0.3333$", 4, true)]
    [InlineData(@"$\frac{1}{3}$", "$0.333$", 4, false)]
    // Irrational against a float: sqrt(17) = 4.12311 at 5 decimals.
    [InlineData("$4.123105625617661$", @"$\sqrt{17}$", 5, true)]
    // Integers beyond double precision stay exact: 2^100 and its digits…
    [InlineData("$2^{100}$", "$1267650600228229401496703205376$", 6, true)]
    // …and are told apart from their neighbour.
    [InlineData("$2^{100}$", "$1267650600228229401496703205377$", 6, false)]
    // sqrt(2)·sqrt(2) is 2 (numeric evaluation).
    [InlineData("$2$", @"$\sqrt{2}\sqrt{2}$", 6, true)]
    public void Numbers(string gold, string pred, int rounding, bool expected) =>
        Assert.Equal(expected, V.Verify(gold, pred, floatRounding: rounding));

    [Theory]
    // A square expanded.
    [InlineData("$(x+1)^2$", "$x^2+2x+1$", true)]
    // Not expanded correctly.
    [InlineData("$(x+1)^2$", "$x^2+1$", false)]
    // Cancellation (equal except at x = 1, like sympy's simplify).
    [InlineData(@"$\frac{x^2-1}{x-1}$", "$x+1$", true)]
    // Two variables.
    [InlineData(@"$\frac{x+2}{7}$", @"$\frac{x}{7}+\frac{2}{7}$", true)]
    // A trig identity with a symbol.
    [InlineData(@"$\tan^2(y)+1$", @"$\sec^2(y)$", true)]
    // Different variables are different in strict mode.
    [InlineData("$x+1$", "$y+1$", false)]
    public void Symbolic(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred));

    [Fact]
    public void StrictDecidesWhetherVariableNamesMatter()
    {
        // f(x) and f(y) are different functions of different variables when strict…
        Assert.False(V.Verify("$f(x)$", "$f(y)$", strict: true));
        // …and the same up to renaming when not.
        Assert.True(V.Verify("$f(x)$", "$f(y)$", strict: false));
    }

    [Fact]
    public void SetRelationComparisonIsAsymmetric()
    {
        // A gold inequality equals the interval it describes…
        Assert.True(V.Verify(@"$-2 \le x \le 7$", "$[-2,7]$", extraction: "latex"));
        // …but a predicted inequality against a gold interval needs allow_set_relation_comp.
        Assert.False(V.Verify("$[-2,7]$", @"$-2 \le x \le 7$", extraction: "latex"));
        Assert.True(V.Verify("$[-2,7]$", @"$-2 \le x \le 7$", extraction: "latex", allowSetRelation: true));
    }

    [Theory]
    // Absolute values become a union of intervals.
    [InlineData(@"$1 \le |z| \le \frac{3}{2}$", @"$z \in [-\frac{3}{2}, -1] \cup [1, \frac{3}{2}]$", true)]
    // A quadratic inequality: x^2 < 4 is (-2, 2).
    [InlineData("$x^2 < 4$", "$(-2,2)$", true)]
    // Wrong endpoint.
    [InlineData("$x^2 < 4$", "$(-2,3)$", false)]
    public void RelationsAsSets(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred));

    [Theory]
    // Equations are equal when one is a nonzero multiple of the other.
    [InlineData("$2x+4y-3=0$", @"$y=-\frac{1}{2}x+\frac{3}{4}$", true)]
    // Negated sides of the same plane.
    [InlineData("$34x+45y-20z+100=0$", "$-34x-45y+20z-100=0$", true)]
    // A different line.
    [InlineData("$2x+4y-3=0$", "$y=x$", false)]
    // An assignment chain collapses to its last value.
    [InlineData("$x = 11$", "$x = 5+5+1 = 11$", true)]
    // Only a symbol on the left makes an assignment: 2x + z = 1 is not "1".
    [InlineData("$2x + z = 1$", "$1$", false)]
    public void Equations(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred, extraction: "latex"));

    [Theory]
    // Sets: order does not matter, duplicates do not count.
    [InlineData(@"$\{1, 2, 2, 3\}$", @"$\{3, 2, 1\}$", true)]
    // Elements compared with rounding inside sets.
    [InlineData(@"$\{\frac{1}{3}, \frac{1}{2}\}$", @"$\{0.5, 0.333333\}$", true)]
    // A tuple against a set keeps the tuple's order: (3,1) is not {1,3}.
    [InlineData("$(3,1)$", "${1,3}$", false)]
    // An open interval against a 2-element set is read as a pair.
    [InlineData("$(1,3)$", "${1,3}$", true)]
    // Interval endpoints with rounding.
    [InlineData(@"$(\frac{3}{5},\frac{8}{3}]$", "$(0.6,2.666667]$", true)]
    public void Collections(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred));

    [Theory]
    // A sum of matrices is evaluated element-wise.
    [InlineData(@"$\begin{pmatrix}6 & 8 \\ 10 & 12\end{pmatrix}$", @"$\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix} + \begin{pmatrix}5 & 6 \\ 7 & 8\end{pmatrix}$", true)]
    // A product.
    [InlineData(@"$\begin{pmatrix}2 & 0 \\ 0 & 2\end{pmatrix}$", @"$2\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}$", true)]
    // Different shapes.
    [InlineData(@"$\begin{pmatrix}1 & 2\end{pmatrix}$", @"$\begin{pmatrix}1 \\ 2\end{pmatrix}$", false)]
    public void Matrices(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred));

    [Fact]
    public void SymbolicComparisonIsDeterministic()
    {
        // The random points come from a fixed seed: the same question always gets the same verdict and reason.
        var a = MathVerifier.Verify(@"$\sin(x)^2$", @"$1-\cos(x)^2$", V.Options());
        var b = MathVerifier.Verify(@"$\sin(x)^2$", @"$1-\cos(x)^2$", V.Options());
        Assert.True(a.Verified);
        Assert.Equal(a, b);
    }
}
