// Shorthands for hand-written verifier cases: Math-Verify's test configuration (latex+expr, \boxed first),
// with a generous time budget because these tests are about verdicts, not speed.
namespace LmmR1.Rewards.Tests.Support;

internal static class V
{
    public static VerifyOptions Options(string extraction = "latex+expr", int boxedPriority = 0, int floatRounding = 6, bool strict = true, bool allowSetRelation = false) =>
        VerifyOptions.FromConfig(extraction, boxedPriority, floatRounding, 15, strict, allowSetRelation) with { TimeBudget = TimeSpan.FromSeconds(10) };

    public static bool Verify(string gold, string pred, string extraction = "latex+expr", int boxedPriority = 0, int floatRounding = 6,
        bool strict = true, bool allowSetRelation = false) =>
        MathVerifier.Verify(gold, pred, Options(extraction, boxedPriority, floatRounding, strict, allowSetRelation)).Verified;
}
