// The LMM-R1 rule reward (issue item 5): response extraction, the format reward, the accuracy reward with
// LMM-R1's extraction settings, weights and switches. Expected values follow math_verifier.py at f917f18.
namespace LmmR1.Rewards.Tests;

public sealed class LmmR1RewardTests
{
    private const string Prompt = "<|im_start|>system\nThink, then answer.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n";
    private static string Query(string response) => Prompt + "<|im_start|>assistant\n" + response + "<|im_end|>";
    private static readonly RewardOptions Roomy = new() { TimeBudget = TimeSpan.FromSeconds(5) };

    [Theory]
    // Exactly one think block followed directly by one answer block.
    [InlineData("<think>2+2=4</think><answer>$4$</answer>", true)]
    // Newlines inside the blocks are fine (DOTALL).
    [InlineData("<think>\nstep 1\nstep 2\n</think><answer>\n$4$\n</answer>", true)]
    // Anything between </think> and <answer> breaks it.
    [InlineData("<think>x</think>\n<answer>$4$</answer>", false)]
    // Text after </answer>.
    [InlineData("<think>x</think><answer>$4$</answer> done", false)]
    // Text before <think>.
    [InlineData("ok <think>x</think><answer>$4$</answer>", false)]
    // Two think blocks.
    [InlineData("<think>a</think><think>b</think><answer>4</answer>", false)]
    // A nested <answer> inside the answer.
    [InlineData("<think>a</think><answer><answer>4</answer>", false)]
    // No answer block.
    [InlineData("<think>a</think>", false)]
    // Empty blocks still match the pattern.
    [InlineData("<think></think><answer></answer>", true)]
    public void FormatReward(string response, bool wellFormatted)
    {
        Assert.Equal(wellFormatted, LmmR1Reward.IsWellFormatted(response));
        var r = LmmR1Reward.Score(Query(response), "4", Roomy);
        Assert.Equal(wellFormatted ? 0.5 : 0.0, r.FormatReward);
    }

    [Fact]
    public void ResponseIsTheTextAfterTheLastAssistantTagWithoutEndTokens()
    {
        var q = Prompt + "<|im_start|>assistant\nold<|im_end|>\n<|im_start|>assistant\n  <think>t</think><answer>$4$</answer><|im_end|><|endoftext|>";
        Assert.Equal("<think>t</think><answer>$4$</answer>", LmmR1Reward.ExtractResponse(q));
        // Without the tag the whole query is the response (LMM-R1: get_response_from_query(q) or q).
        Assert.Equal("just text", LmmR1Reward.ExtractResponse("just text"));
    }

    [Fact]
    public void AnEmptyResponseScoresNothingEvenWhenThePromptHoldsTheAnswer()
    {
        // The question quotes its own answer; the model answered nothing.
        var q = "<|im_start|>user\nIs $\\boxed{4}$ equal to 2+2?<|im_end|>\n<|im_start|>assistant\n<|im_end|>";
        Assert.Equal("", LmmR1Reward.ExtractResponse(q));
        var r = LmmR1Reward.Score(q, "4", Roomy);
        Assert.Equal((0.0, 0.0, 0.0), (r.Reward, r.FormatReward, r.AccuracyReward));
        // LMM-R1's own fallback (`… or q`) scores the whole query instead, and so pays for the empty answer.
        var reference = Roomy with { EmptyResponseScoresQuery = true };
        Assert.Equal(q, LmmR1Reward.ExtractResponse(q, reference));
        Assert.Equal(1.0, LmmR1Reward.Score(q, "4", reference).AccuracyReward);
    }

    [Theory]
    // Boxed answer inside the answer block: format 0.5 + accuracy 1.
    [InlineData("<think>2+2</think><answer>$\\boxed{4}$</answer>", "4", 1.5, 0.5, 1.0)]
    // Correct but badly formatted: accuracy only.
    [InlineData("The answer is $\\boxed{4}$.", "4", 1.0, 0.0, 1.0)]
    // Well formatted but wrong.
    [InlineData("<think>2+2</think><answer>$5$</answer>", "4", 0.5, 0.5, 0.0)]
    // A bare number without LaTeX is not extracted from responses (no anchor-less matches, LaTeX only).
    [InlineData("<think>2+2</think><answer>4</answer>", "4", 0.5, 0.5, 0.0)]
    // The label may already carry $…$ and \boxed.
    [InlineData("<think>t</think><answer>$\\frac{1}{2}$</answer>", "$\\boxed{\\frac{1}{2}}$", 1.5, 0.5, 1.0)]
    // A float answer against a fraction label, rounded to 6 decimals.
    [InlineData("<think>t</think><answer>$0.5$</answer>", "\\frac{1}{2}", 1.5, 0.5, 1.0)]
    // An equation in the response against a number label.
    [InlineData("<think>t</think><answer>$x = 60$</answer>", "60", 1.5, 0.5, 1.0)]
    // Degrees in the response.
    [InlineData("<think>t</think><answer>$\\boxed{60^\\circ}$</answer>", "60", 1.5, 0.5, 1.0)]
    public void Rewards(string response, string label, double reward, double format, double accuracy)
    {
        var r = LmmR1Reward.Score(Query(response), label, Roomy);
        Assert.Equal(new RewardResult(reward, format, accuracy), r);
    }

    [Fact]
    public void UnparseableLabelScoresAccuracyOneAsInLmmR1()
    {
        // A label with a newline cannot match `$…$` (one line) nor any other pattern: Math-Verify extracts nothing,
        // and LMM-R1 rewards 1 to skip the example.
        var r = LmmR1Reward.Accuracy("<answer>$4$</answer>", "4\n5");
        Assert.True(r.Verified);
        Assert.Contains("label not parseable", r.Reason);
    }

    [Fact]
    public void FormatRewardCanBeSwitchedOffAndWeightsChanged()
    {
        var q = Query("<think>t</think><answer>$\\boxed{4}$</answer>");
        Assert.Equal(new RewardResult(1.0, 0.0, 1.0), LmmR1Reward.Score(q, "4", Roomy with { FormatReward = false }));
        Assert.Equal(new RewardResult(2.25, 0.25, 2.0), LmmR1Reward.Score(q, "4", Roomy with { FormatWeight = 0.25, AccuracyWeight = 2.0 }));
    }

    [Fact]
    public async Task RuleRewardModelScoresBatchesInOrder()
    {
        using var model = new RuleRewardModel(Roomy);
        var queries = Enumerable.Range(0, 50).Select(i => Query($"<think>t</think><answer>$\\boxed{{{i}}}$</answer>")).ToArray();
        var labels = Enumerable.Range(0, 50).Select(i => i % 2 == 0 ? $"{i}" : $"{i + 1}").ToArray();
        var results = await model.ScoreAsync(queries, [.. queries.Select(_ => "p")], labels);
        Assert.Equal(50, results.Count);
        for (int i = 0; i < 50; i++) Assert.Equal(i % 2 == 0 ? 1.5 : 0.5, results[i].Reward);
        await Assert.ThrowsAsync<ArgumentException>(() => model.ScoreAsync(queries, ["p"], labels));
    }
}
