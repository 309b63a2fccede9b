// The micro-batch planner: every (prompt, sample) exactly once in order, budgets respected, a prompt's samples split
// only when they alone exceed an empty micro-batch.
using LmmR1.Generation;

namespace LmmR1.Tests.Generation;

public class MicroBatchPlanTests
{
    static void CheckCoverage(List<List<GenerationEngine.WorkUnit>> plan, int prompts, int n)
    {
        var seen = plan.SelectMany(b => b).SelectMany(u => Enumerable.Range(u.FirstSample, u.Count).Select(s => (u.Prompt, s))).ToList();
        var all = Enumerable.Range(0, prompts).SelectMany(p => Enumerable.Range(0, n).Select(s => (p, s))).ToList();
        Assert.Equal(all, seen);
    }

    [Fact]
    public void BudgetsAreRespected()
    {
        int[] lens = [10, 50, 20, 20, 80, 5, 5, 5];
        const int n = 4, maxNew = 30;
        var o = new GenerationEngineOptions { MaxRowsPerBatch = 12, MaxTokensPerBatch = 12 * 60, MaxPrefillTokens = 150, MaxPromptsPerBatch = 3 };
        var plan = GenerationEngine.Plan(lens, n, maxNew, o);
        CheckCoverage(plan, lens.Length, n);
        foreach (var b in plan)
        {
            int rows = b.Sum(u => u.Count), longest = b.Max(u => lens[u.Prompt]);
            Assert.True(rows <= 12);
            Assert.True(b.Count <= 3);
            Assert.True(b.Count == 1 || (long)rows * (longest + maxNew) <= 12 * 60, $"KV budget: {rows} × {longest + maxNew}");
            Assert.True(b.Count == 1 || b.Count * longest <= 150);
            Assert.All(b, u => Assert.Equal(n, u.Count));                     // nothing needed splitting
        }
        // Prompt 4 (80 + 30 = 110 positions) allows 720/110 = 6 rows: alone in its batch.
        Assert.Contains(plan, b => b.Count == 1 && b[0].Prompt == 4);
    }

    [Fact]
    public void WithoutPrefixSharingThePrefillBudgetCountsEveryRow()
    {
        // Each row is prefilled (vision tower included), so rows × longest prompt must fit the prefill budget.
        int[] lens = [10, 50, 20, 20, 80, 5, 5, 5];
        const int n = 4;
        var o = new GenerationEngineOptions { SharePrefix = false, MaxPrefillTokens = 200, MaxTokensPerBatch = 0 };
        var plan = GenerationEngine.Plan(lens, n, 30, o);
        CheckCoverage(plan, lens.Length, n);
        foreach (var b in plan)
        {
            int rows = b.Sum(u => u.Count), longest = b.Max(u => lens[u.Prompt]);
            Assert.True(rows == 1 || (long)rows * longest <= 200, $"{rows} rows × {longest} tokens exceed the prefill budget");
        }
        Assert.True(plan.Count > 1);
    }

    [Fact]
    public void SamplesAreSplitOnlyWhenAPromptAloneIsTooBig()
    {
        var plan = GenerationEngine.Plan([10, 10, 10], 8, 10, new GenerationEngineOptions { MaxRowsPerBatch = 3 });
        CheckCoverage(plan, 3, 8);
        Assert.All(plan, b => Assert.True(b.Sum(u => u.Count) <= 3));
        Assert.Equal(9, plan.Count);                                           // 3 + 3 + 2 per prompt

        var whole = GenerationEngine.Plan([10, 10, 10], 4, 10, new GenerationEngineOptions { MaxRowsPerBatch = 10 });
        CheckCoverage(whole, 3, 4);
        Assert.Equal([2, 1], whole.Select(b => b.Count));                      // the third prompt does not fit: new batch
        Assert.All(whole.SelectMany(b => b), u => Assert.Equal(4, u.Count));
    }

    [Fact]
    public void AnOversizedRowStillRunsAlone()
    {
        var plan = GenerationEngine.Plan([1000], 2, 100, new GenerationEngineOptions { MaxTokensPerBatch = 500 });
        CheckCoverage(plan, 1, 2);
        Assert.Equal(2, plan.Count);
    }
}
