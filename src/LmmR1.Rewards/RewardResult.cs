// What a reward model returns per sample, and the interface the trainer scores through (built-in rule reward or
// a remote LMM-R1/OpenRLHF-style server).
namespace LmmR1.Rewards;

/// <summary>Total reward and its two LMM-R1 parts (format and accuracy), already weighted.</summary>
public sealed record RewardResult(double Reward, double FormatReward, double AccuracyReward);

public interface IRewardModel
{
    /// <param name="queries">Detokenized prompt + response, special tokens kept (what OpenRLHF sends).</param>
    /// <param name="prompts">The raw prompt / message strings.</param>
    /// <param name="labels">The label (answer) strings.</param>
    Task<IReadOnlyList<RewardResult>> ScoreAsync(IReadOnlyList<string> queries, IReadOnlyList<string> prompts,
                                                 IReadOnlyList<string> labels, CancellationToken ct = default);
}
