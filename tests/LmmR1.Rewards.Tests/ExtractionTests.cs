// Answer extraction (issue item 1): \boxed/\fbox, <answer> tags, "final answer is", LaTeX spans, plain numbers and
// expressions, multiple-choice letters, and the priority rules. Expected verdicts follow Math-Verify's documented
// behaviour (docs/MATH_VERIFY.md §1).
using LmmR1.Rewards.Tests.Support;

namespace LmmR1.Rewards.Tests;

public sealed class ExtractionTests
{
    [Theory]
    // The last \boxed{} of a long solution is the answer.
    [InlineData("$7$", @"First $x = 3$, then $y = 4$, so the sum is $\boxed{7}$.", true)]
    // Nested braces inside \boxed are matched by depth.
    [InlineData(@"$\frac{1}{2}$", @"Hence \boxed{\frac{1}{2}} is the probability.", true)]
    // \fbox is read like \boxed inside a LaTeX span…
    [InlineData("$3$", @"The answer is $\fbox{3}$.", true)]
    // …but, as in Math-Verify, a bare \fbox outside one is not an answer pattern.
    [InlineData("$3$", @"The answer is \fbox{3}.", false)]
    // A box inside a box: the innermost content.
    [InlineData("$7$", @"\boxed{\boxed{7}}", true)]
    // An unclosed \boxed{ with no `}` anywhere matches no pattern.
    [InlineData("$12$", @"so we get \boxed{12", false)]
    // Two boxes close together are both taken (a set), which is not a single number.
    [InlineData("$1$", @"\boxed{1}, \boxed{2}", false)]
    // …and they match the set of both.
    [InlineData(@"$\{1,2\}$", @"\boxed{1}, \boxed{2}", true)]
    // Boxes far apart without a separator: only the last counts.
    [InlineData("$2$", @"\boxed{1} we check it again then get \boxed{2}", true)]
    // Within 70 characters and separated by "and", both count…
    [InlineData(@"$\{1,2\}$", @"\boxed{1} we check it again and get \boxed{2}", true)]
    // …and (latex2sympy2_extended 1.10.2) "or" inside a word such as "more" is a separator too.
    [InlineData(@"$\{1,2\}$", @"\boxed{1} we try once more then get \boxed{2}", true)]
    public void Boxed(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred));

    [Theory]
    // <answer>…</answer> as LMM-R1 asks for it: the "answer" anchor picks the LaTeX span right after the tag.
    [InlineData("$5$", "<think>2+3</think><answer>$5$</answer>", true)]
    // A plain number inside the tag is found by the expression extractor when whitespace precedes it…
    [InlineData("$5$", "<think>2+3=5? no, 6</think><answer> 5 </answer>", true)]
    // …but `>5<` has no allowed prefix, so the last number with one (" 6") is taken, as in Math-Verify.
    [InlineData("$5$", "<think>2+3=5? no, 6</think><answer>5</answer>", false)]
    // "The final answer is X. I hope it is correct." (Minerva style) beats an earlier \boxed{} at priority 50.
    [InlineData("$4$", @"We got \boxed{3} first. Final Answer: The final answer is $4$. I hope it is correct.", true, 50)]
    // With \boxed first (priority 0) the box wins over later plain LaTeX.
    [InlineData("$3$", @"We got \boxed{3} first. Then we wrote $4$.", true, 0)]
    // "final answer … is X" with up to 100 characters in between.
    [InlineData("$120$", "Final Answer: The volume of the prism is 120. I hope it is correct.", true)]
    // "Answer:" within 50 characters takes precedence over a later plain number.
    [InlineData("$9$", "Answer: $9$ because 10 - 1 = 9 and not 11", true)]
    public void AnchorsAndPriorities(string gold, string pred, bool expected, int boxedPriority = 0) =>
        Assert.Equal(expected, V.Verify(gold, pred, boxedPriority: boxedPriority));

    [Theory]
    // $…$ span.
    [InlineData("$9$", "Answer $ 9 $", true)]
    // \( … \) span.
    [InlineData("$9$", @"Answer \( 9 \)", true)]
    // \[ … \] spans may cross lines…
    [InlineData("$9$", "Answer \\[ \n 9 \n \\]", true)]
    // …$…$ spans may not.
    [InlineData("$9$", "Answer $ \n 9 \n $", false)]
    // $$ … $$ display math.
    [InlineData("$9$", "Answer $$ 9 $$", true)]
    // Of several plain spans the rightmost is tried first.
    [InlineData("$2$", "first $1$ then $2$", true)]
    // Spans joined by "and" form one set.
    [InlineData(@"$\{1,2,3\}$", "$1$, $2$ and $3$", true)]
    public void LatexSpans(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred, extraction: "latex"));

    [Theory]
    // Thousands separators with commas.
    [InlineData("7425000", "7,425,000", true)]
    // Thousands separators with spaces.
    [InlineData("1000", "1 000", true)]
    // A decimal comma.
    [InlineData("1.22", "1,22", true)]
    // A leading decimal point.
    [InlineData("0.4", ".4", true)]
    // Leading zeros are dropped.
    [InlineData("4", "004", true)]
    // A currency sign before the number.
    [InlineData("1000.99", "$1,000.99", true)]
    // A percent word makes it a hundredth.
    [InlineData("0.28", "28 percent", true)]
    // An expression needs an operator and is evaluated.
    [InlineData("1024", "it is 2^10", true)]
    // Digits glued to letters are not a number.
    [InlineData("2", "AZYUK2A", false)]
    public void PlainNumbersAndExpressions(string gold, string pred, bool expected) => Assert.Equal(expected, V.Verify(gold, pred, extraction: "expr"));

    [Fact]
    public void ExtractionTargetDecidesWhatIsSeen()
    {
        // The expression extractor alone does not read LaTeX.
        Assert.False(V.Verify("0.5", @"$\frac{1}{2}$", extraction: "expr"));
        // With both extractors the LaTeX answer is found.
        Assert.True(V.Verify("0.5", @"$\frac{1}{2}$", extraction: "latex+expr"));
    }

    [Fact]
    public void BoxedMatchingCanBeTurnedOff()
    {
        // boxed_match_priority = -1: a bare \boxed{} outside $…$ is not an answer any more…
        var off = V.Options(extraction: "latex", boxedPriority: -1);
        Assert.False(MathVerifier.Verify("$7$", @"so \boxed{7}", off).Verified);
        // …while the default finds it.
        Assert.True(V.Verify("$7$", @"so \boxed{7}", extraction: "latex"));
    }

    [Theory]
    // "The answer is B." → b (lowercased).
    [InlineData("B", "The answer is B.", true)]
    // A letter at the very start.
    [InlineData("A", "A. Because B is not valid", true)]
    // "Final answer is C".
    [InlineData("C", "Final answer is C", true)]
    // A different letter.
    [InlineData("D", "The answer is B.", false)]
    public void MultipleChoiceLetters(string gold, string pred, bool expected)
    {
        var choices = new ExtractionOptions { Latex = false, Expr = false, Choices = ["A", "B", "C", "D"] };
        var options = new VerifyOptions { Gold = choices, Prediction = choices, TimeBudget = TimeSpan.FromSeconds(10) };
        Assert.Equal(expected, MathVerifier.Verify(gold, pred, options).Verified);
    }

    [Fact]
    public void NothingToExtractIsReported()
    {
        var r = MathVerifier.Verify("$1$", "no numbers here", V.Options());
        Assert.False(r.Verified);
        Assert.Equal("no answer found in prediction", r.Reason);
    }
}
