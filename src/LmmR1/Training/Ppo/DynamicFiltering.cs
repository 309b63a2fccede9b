// DAPO's dynamic sampling in the trainer (arXiv 2503.14476 §3.2; OpenRLHF --dynamic_filtering, verl filter_groups):
// after the step's rollout is generated and scored, each prompt's group of n samples is judged on its accuracy
// scores (GroupFilter: dropped when all equal, or when the mean lies outside --dynamic_filtering_reward_range);
// while fewer than rollout_batch_size groups are kept, the next rollout_batch_size prompts of the episode's order are
// rolled out (a fresh sampling seed per round), at most --dynamic_filtering_max_rounds times. The step trains on the
// first rollout_batch_size kept groups in rollout order (the surplus is dropped, as verl does); if the rounds run
// out, the batch is completed with the latest dropped groups and the step logs how many (DynamicSampling.Select).
// Log-probs, reference, values and advantages are computed only for the chosen batch. The extra prompts are
// consumed from the episode (PpoTrainState.ExtraPromptsInEpisode), so the data order stays one permutation per
// episode and a resumed run continues exactly.
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Rewards;
using static TorchSharp.torch;

namespace LmmR1.Training.Ppo;

/// <summary>One step's filtering counts (logged as train/filter_*; totals are kept in PpoTrainState).</summary>
public sealed record FilterMetrics(int GroupsKept, int GroupsAllEqual, int GroupsOutOfRange, int GroupsFilled, int GroupsSurplus,
                                   int ExtraRounds, int ExtraPrompts)
{
    /// <summary>Kept groups ÷ judged groups (OpenRLHF's dynamic_filtering_pass_rate).</summary>
    public double PassRate
    {
        get
        {
            int judged = GroupsKept + GroupsSurplus + GroupsAllEqual + GroupsOutOfRange;
            return judged == 0 ? 0 : (double)(GroupsKept + GroupsSurplus) / judged;
        }
    }
}

/// <summary>The step's scored batch: with dynamic filtering the chosen groups (borrowing the rounds' images, which it
/// owns) and the filtering counts; without, the one rollout (<see cref="Unfiltered"/>, Metrics null).</summary>
public sealed class FilteredRollout : IDisposable
{
    readonly List<Rollout> rounds;

    /// <summary>One rollout as the step's batch, no filtering.</summary>
    public static FilteredRollout Unfiltered((Rollout Rollout, IReadOnlyList<RewardResult> Scores) scored) =>
        new(scored.Rollout, scored.Scores, null, []);

    internal FilteredRollout(Rollout batch, IReadOnlyList<RewardResult> scores, FilterMetrics? metrics, List<Rollout> rounds)
    {
        Batch = batch;
        Scores = scores;
        Metrics = metrics;
        this.rounds = rounds;
    }

    public Rollout Batch { get; }
    public IReadOnlyList<RewardResult> Scores { get; }
    /// <summary>Null when dynamic filtering is off.</summary>
    public FilterMetrics? Metrics { get; }

    public void Dispose()
    {
        Batch.Dispose();
        foreach (var r in rounds) r.Dispose();
    }
}

public static class DynamicFiltering
{
    /// <summary>Rolls out <paramref name="prompts"/> and, while too few groups are kept, further chunks of
    /// <paramref name="reserve"/> (the episode's next prompts) of the same size. <paramref name="roll"/> generates and
    /// scores one round (its argument: the prompts and the round, 0 for the first).</summary>
    public static FilteredRollout Run(IReadOnlyList<PromptSample> prompts, IReadOnlyList<PromptSample> reserve, int maxRounds,
        (double Low, double High) range, Func<IReadOnlyList<PromptSample>, int, (Rollout Rollout, IReadOnlyList<RewardResult> Scores)> roll,
        Device device)
    {
        int needed = prompts.Count;
        var rounds = new List<Rollout>();
        var roundScores = new List<IReadOnlyList<RewardResult>>();
        var judged = new List<IReadOnlyList<IReadOnlyList<double>>>();
        try
        {
            GroupSelection selection;
            int extraPrompts = 0;
            var next = prompts;
            while (true)
            {
                var (rollout, scores) = roll(next, rounds.Count);
                rounds.Add(rollout);
                roundScores.Add(scores);
                judged.Add(GroupScores(rollout, scores));
                selection = DynamicSampling.Select(judged, needed, range);
                if (selection.Full || rounds.Count > maxRounds || extraPrompts + needed > reserve.Count) break;
                next = reserve.Skip(extraPrompts).Take(needed).ToList();
                extraPrompts += needed;
            }
            var (batch, source) = Rollout.Pick(selection.Groups.Select(g => (rounds[g.Round], g.Group)).ToList(), device);
            var scoreOf = rounds.Select((r, i) => (r, i)).ToDictionary(x => x.r, x => roundScores[x.i]);
            var batchScores = source.Select(s => scoreOf[s.From][s.Item]).ToList();
            var metrics = new FilterMetrics(selection.Kept, selection.AllEqual, selection.OutOfRange, selection.Filled, selection.Surplus,
                rounds.Count - 1, extraPrompts);
            return new FilteredRollout(batch, batchScores, metrics, rounds);
        }
        catch
        {
            foreach (var r in rounds) r.Dispose();
            throw;
        }
    }

    // Per prompt of the rollout: the accuracy scores of its samples, in sample order.
    static IReadOnlyList<IReadOnlyList<double>> GroupScores(Rollout rollout, IReadOnlyList<RewardResult> scores)
    {
        var groups = Enumerable.Range(0, rollout.Prompts.Count).Select(_ => new List<double>()).ToArray();
        for (int i = 0; i < rollout.Items.Count; i++) groups[rollout.Items[i].PromptIndex].Add(scores[i].AccuracyReward);
        return groups;
    }
}
