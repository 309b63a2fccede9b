// Hostile inputs (issue item 4): huge strings, deep nesting, towers of powers, huge factorials, regex-backtracking
// bait. Each call must return (never throw, never hang) with the right verdict. Elapsed time is only reported;
// bench/rewards measures the worst case on a quiet machine.
using System.Diagnostics;
using LmmR1.Rewards.Tests.Support;
using Xunit.Abstractions;

namespace LmmR1.Rewards.Tests;

public sealed class HostileInputTests
{
    private readonly ITestOutputHelper _output;

    public HostileInputTests(ITestOutputHelper output)
    {
        _output = output;
        MathVerifier.WarmUp(1);
    }

    private static string R(string s, int n) => string.Concat(Enumerable.Repeat(s, n));

    /// <summary>Inputs whose honest verdict is "not verified"; the production budget (30 ms) applies.</summary>
    public static TheoryData<string, string, string> NotVerified => new()
    {
        { "a million digits", "$1$", R("1", 1_000_000) },
        { "a million letters in $…$", "$1$", "$" + R("a", 1_000_000) + "$" },
        { "100k nested \\boxed{", "$1$", R("\\boxed{", 100_000) + "1" + R("}", 100_000) },
        { "5000 nested braces", "$1$", "$" + R("{", 5000) + "1" + R("}", 5000) + "$" },
        { "5000 nested parentheses", "$1$", "$" + R("(", 5000) + "1" + R(")", 5000) + "$" },
        { "10^{10^{10}} against 1", "$1$", "$10^{10^{10}}$" },
        { "(10^100)! against 5", "$5$", "$(10^{100})!$" },
        { "200k dollar signs", "$1$", R("$", 200_000) },
        { "200k unclosed \\[", "$1$", R("\\[", 200_000) },
        { "200k unclosed \\(", "$1$", R("\\(", 200_000) },
        { "50k 'final answer is'", "$1$", R("final answer is ", 50_000) },
        { "100k 'answer:'", "$1$", R("answer: ", 100_000) },
        { "a million spaces", "$1$", R(" ", 1_000_000) },
        { "300k '1 ' (expression run)", "$2$", R("1 ", 300_000) },
        { "30k implicit product", "$1$", "$" + R("x", 30_000) + "$" },
        { "30k unary minus", "$1$", "$" + R("-", 30_000) + "1$" },
        { "3000 nested \\frac", "$1$", "$" + R("\\frac{1}{", 3000) + "2" + R("}", 3000) + "$" },
        { "5000 nested \\sqrt", "$1$", "$" + R("\\sqrt{", 5000) + "2" + R("}", 5000) + "$" },
        { "20k \\frac{ bait", @"\frac{1}{2}", R("\\frac{", 20_000) },
        { "50k ^( bait", "$1$", R("^(", 50_000) },
        { "20k bars", "$1$", "$" + R("|", 20_000) + "$" },
        { "10k relation chain", "$1$", "$" + R("x<", 10_000) + "x$" },
        { "matrix to the millionth power", "$1$", @"$\begin{pmatrix}1&1\\1&0\end{pmatrix}^{1000000}$" },
        { "sum to 10^8", "$1$", @"$\sum_{k=1}^{100000000} k$" },
        { "100k random symbols", "$1$", new string([.. Enumerable.Range(0, 100_000).Select(i => (char)(0x2000 + i * 7919 % 0x3000))]) },
        { "unpaired surrogates", "$1$", new string('\uD800', 1000) + "$1" },
    };

    [Theory]
    [MemberData(nameof(NotVerified))]
    public void HostileInputReturnsNotVerified(string name, string gold, string pred)
    {
        var options = V.Options() with { TimeBudget = new VerifyOptions().TimeBudget };
        var sw = Stopwatch.StartNew();
        var r = MathVerifier.Verify(gold, pred, options);
        _output.WriteLine($"{name}: {sw.Elapsed.TotalMilliseconds:F1} ms, {r.Reason[..Math.Min(120, r.Reason.Length)]}");
        Assert.False(r.Verified);
        Assert.False(string.IsNullOrEmpty(r.Reason));
    }

    /// <summary>Large but legitimate answers that are equal; a roomy budget so a busy test machine cannot flip them.</summary>
    public static TheoryData<string, string, string> Verified => new()
    {
        { "10^{10^{10}} against itself", "$10^{10^{10}}$", "$10^{10^{10}}$" },
        { "1000000! against itself", "$1000000!$", "$1000000!$" },
        { "power tower", "$2^{2^{2^{2^{2^{2}}}}}$", "$2^{2^{2^{2^{2^{2}}}}}$" },
        { "sum to 1000", @"$\sum_{k=1}^{1000} k$", "$500500$" },
        { "4000-term sum", "$4000$", "$" + R("1+", 3_999) + "1$" },
        { "5000-element set, reversed", "$" + string.Join(",", Enumerable.Range(0, 5000)) + "$", "$" + string.Join(",", Enumerable.Range(0, 5000).Reverse()) + "$" },
    };

    [Theory]
    [MemberData(nameof(Verified))]
    public void LargeEqualAnswersAreVerified(string name, string gold, string pred)
    {
        var sw = Stopwatch.StartNew();
        var r = MathVerifier.Verify(gold, pred, V.Options() with { TimeBudget = TimeSpan.FromSeconds(5) });
        _output.WriteLine($"{name}: {sw.Elapsed.TotalMilliseconds:F1} ms, {r.Reason[..Math.Min(120, r.Reason.Length)]}");
        Assert.True(r.Verified, r.Reason);
    }

    [Fact]
    public void SpentBudgetIsReportedNotThrown()
    {
        // A 5000-element comparison cannot finish in 1 ms: the cooperative deadline stops it.
        var gold = "$" + string.Join(",", Enumerable.Range(0, 5000)) + "$";
        var r = MathVerifier.Verify(gold, gold.Replace("4999", "5000"), V.Options() with { TimeBudget = TimeSpan.FromMilliseconds(1) });
        Assert.False(r.Verified);
        Assert.Equal("time budget exceeded", r.Reason);
    }

    [Fact]
    public void OverlongAnswersAreNotParsed()
    {
        // 30k tokens in one $…$: more than any answer, refused before building a 30k-node tree.
        var r = MathVerifier.Verify("$30000$", "$" + R("1+", 14_999) + "1 + 15000$", V.Options() with { TimeBudget = TimeSpan.FromSeconds(5) });
        Assert.False(r.Verified);
    }

    [Fact]
    public void DeepNestingIsRefusedByDepthNotByStackOverflow()
    {
        var r = MathVerifier.Verify("$1$", "$" + R("(", 5000) + "1" + R(")", 5000) + "$", V.Options());
        Assert.False(r.Verified);
        Assert.Equal("expression nested too deeply", r.Reason);
    }

    [Fact]
    public void NullInputsAreHandled()
    {
        Assert.False(MathVerifier.Verify(null!, "1").Verified);
        Assert.False(MathVerifier.Verify("1", null!).Verified);
    }
}
