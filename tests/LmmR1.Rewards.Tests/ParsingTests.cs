// LaTeX and expression parsing (issue item 2), checked through verification against hand-computed values.
using LmmR1.Rewards.Tests.Support;

namespace LmmR1.Rewards.Tests;

public sealed class ParsingTests
{
    [Theory]
    // Integer with {,} thousands separators.
    [InlineData("$14916$", @"$14{,}916$")]
    // Thousands separators with a negative space \!.
    [InlineData("$12000003$", @"$12,\!000,\!003$")]
    // A decimal is a float: equal to the integer after rounding.
    [InlineData("$1000$", "$1000.0$")]
    // \frac.
    [InlineData("$0.75$", @"$\frac{3}{4}$")]
    // \dfrac and \tfrac are \frac.
    [InlineData(@"$\frac{1}{3}$", @"$\dfrac{2}{6}$")]
    [InlineData(@"$\frac{1}{3}$", @"$\tfrac{1}{3}$")]
    // a/b.
    [InlineData(@"$\frac{10}{9}$", "$10/9$")]
    // A mixed number 2 1/2 = 5/2.
    [InlineData(@"$\frac{5}{2}$", @"$2\frac{1}{2}$")]
    // \frac12 is repaired to \frac{1}{2} (malformed_operators).
    [InlineData("$0.5$", @"$\frac12$")]
    // n-th roots: cube root of 8.
    [InlineData("$2$", @"$\sqrt[3]{8}$")]
    // sqrt(12) = 2 sqrt(3).
    [InlineData(@"$2\sqrt{3}$", @"$\sqrt{12}$")]
    // Powers with braces.
    [InlineData("$1024$", "$2^{10}$")]
    // pi: pi/2 to 6 decimals.
    [InlineData(@"$\frac{\pi}{2}$", "$1.570796$")]
    // e as Euler's number: e^2 = exp(2).
    [InlineData("$e^{2}$", @"$\exp(2)$")]
    // Trig identity: sin^2 x + cos^2 x = 1 for every x.
    [InlineData("$1$", @"$\sin^2 x + \cos^2 x$")]
    // log base 2.
    [InlineData("$3$", @"$\log_2 8$")]
    // ln e = 1.
    [InlineData("$1$", @"$\ln e$")]
    // Implicit multiplication in any order.
    [InlineData(@"$2\pi r$", @"$2r\pi$")]
    // Percent: 50\% is one half.
    [InlineData(@"$\frac{1}{2}$", @"$50\%$")]
    // Degrees are dropped (convert_degrees=False): 90^\circ is 90.
    [InlineData("$90$", @"$90^\circ$")]
    // The degree sign as a character.
    [InlineData("$90$", "$90°$")]
    // A trailing \text{} unit is stripped.
    [InlineData("$5$", @"$5\text{ cm}$")]
    // A unit with a superscript.
    [InlineData("$15$", @"$15\mbox{ cm}^2$")]
    // A unit word.
    [InlineData("$3$", "$3 kg$")]
    // \left( … \right).
    [InlineData(@"$\frac{1}{3}$", @"$\left( \frac{1}{3} \right)$")]
    // \infty in an interval.
    [InlineData(@"$(1, \infty)$", @"$(1,+\infty)$")]
    // \pm gives both signs.
    [InlineData(@"$\{-2, 2\}$", @"$\pm 2$")]
    // Simple variables, any order.
    [InlineData("$a+b$", "$b+a$")]
    // Absolute value.
    [InlineData("$3$", "$|-3|$")]
    // Factorial and binomial.
    [InlineData("$120$", "$5!$")]
    [InlineData("$10$", @"$\binom{5}{2}$")]
    public void ParsesToTheSameValue(string gold, string pred) => Assert.True(V.Verify(gold, pred), $"{gold} vs {pred}");

    [Theory]
    // A wrong fraction.
    [InlineData(@"$\frac{1}{2}$", @"$\frac{1}{3}$")]
    // Degrees are not radians.
    [InlineData(@"$\frac{\pi}{2}$", @"$90^\circ$")]
    // 4 is not 4 sqrt 2.
    [InlineData("$4$", @"$4\sqrt{2}$")]
    // x + 1 is not x + 2n + 1.
    [InlineData("$x+2n+1$", "$x+1$")]
    public void ParsesToDifferentValues(string gold, string pred) => Assert.False(V.Verify(gold, pred), $"{gold} vs {pred}");

    [Theory]
    // Sets are unordered.
    [InlineData(@"$\{1,2,3\}$", @"$\{3,1,2\}$", true)]
    // A bare list is a set too.
    [InlineData("$1, 2, 3$", @"$\{3,2,1\}$", true)]
    // Intervals keep their closedness.
    [InlineData("$[0,1)$", "$[0,1)$", true)]
    [InlineData("$[0,1)$", "$(0,1)$", false)]
    // Tuples are ordered.
    [InlineData("$(1,2,3)$", "$(1,2,3)$", true)]
    [InlineData("$(1,2,3)$", "$(3,2,1)$", false)]
    // Unions of intervals.
    [InlineData(@"$(-\infty,-3] \cup [2,\infty)$", @"$(-\infty, -3] \cup [2, \infty)$", true)]
    // pmatrix and bmatrix hold the same matrix.
    [InlineData(@"$\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}$", @"$\begin{bmatrix}1 & 2 \\ 3 & 4\end{bmatrix}$", true)]
    // Matrices compare element by element.
    [InlineData(@"$\begin{pmatrix}1 & 2 \\ 3 & 4\end{pmatrix}$", @"$\begin{pmatrix}1 & 2 \\ 3 & 5\end{pmatrix}$", false)]
    // An equation's value: x = 5 against 5.
    [InlineData("$5$", "$x = 5$", true)]
    // Inequalities: the same relation written from the other side.
    [InlineData(@"$x \ge 2$", @"$2 \le x$", true)]
    [InlineData(@"$x \ge 2$", @"$x \le 2$", false)]
    public void StructuredAnswers(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred));

    [Fact]
    public void UnsupportedNotationIsNotVerifiedAndSaysWhy()
    {
        // \langle … \rangle is not in the supported subset: both sides fail to parse and differ as strings.
        var r = MathVerifier.Verify(@"$\langle 1, 2 \rangle$", @"$\langle 2, 1 \rangle$", V.Options());
        Assert.False(r.Verified);
        Assert.StartsWith("not equivalent", r.Reason);
        // Identical unparseable answers still agree as strings (Math-Verify's fallback).
        Assert.True(V.Verify(@"$\langle 1, 2 \rangle$", @"$\langle 1, 2 \rangle$"));
    }
}
