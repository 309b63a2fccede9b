// DAPO's dynamic sampling (arXiv 2503.14476 §3.2; OpenRLHF --dynamic_filtering, verl algorithm.filter_groups): a
// group of samples of one prompt whose scores are all equal carries no group-relative signal (its advantages are 0),
// so it is dropped and more prompts are rolled out until the batch is full. OpenRLHF keeps a group iff
// low < mean score < high (--dynamic_filtering_reward_range, open interval: with rewards in [0, 1] this drops the
// all-wrong and all-right groups); verl drops groups whose score std is 0. We drop a group when either holds, so a
// range wider than the scores still drops constant groups. Which score is judged is the caller's choice (the
// trainer passes the accuracy part of the rule reward when it has one, else the reward).
namespace LmmR1.Algorithms;

public enum GroupVerdict { Kept, AllEqual, MeanOutOfRange }

public static class GroupFilter
{
    /// <summary>The verdict for one group's scores; range = (low, high), open interval.</summary>
    public static GroupVerdict Judge(IReadOnlyList<double> scores, (double Low, double High) range)
    {
        if (scores.Count == 0) throw new ArgumentException("a group needs at least one score");
        if (scores.All(s => s == scores[0])) return GroupVerdict.AllEqual;
        double mean = scores.Average();
        return mean > range.Low && mean < range.High ? GroupVerdict.Kept : GroupVerdict.MeanOutOfRange;
    }
}

/// <summary>Which groups of the rounds rolled out so far make one step's batch: the kept groups in rollout order
/// (round by round, group by group), the first <c>needed</c> of them (verl drops the surplus too). When the rounds
/// are exhausted with too few kept groups, the batch is completed with the dropped groups of the latest rounds
/// (counted in <see cref="Filled"/>), so the step keeps its size; those groups carry no group-relative signal.</summary>
public sealed record GroupSelection(
    IReadOnlyList<(int Round, int Group)> Groups, int Kept, int AllEqual, int OutOfRange, int Filled, int Surplus)
{
    /// <summary>Whether enough groups were kept without filling.</summary>
    public bool Full => Filled == 0;
}

public static class DynamicSampling
{
    /// <summary>Verdicts for the groups of every round so far (scores[round][group] = that group's scores) and the
    /// selection of <paramref name="needed"/> groups. Call after each round; roll out another round while
    /// <see cref="GroupSelection.Full"/> is false and the bound allows.</summary>
    public static GroupSelection Select(IReadOnlyList<IReadOnlyList<IReadOnlyList<double>>> scores, int needed, (double Low, double High) range)
    {
        if (needed < 1) throw new ArgumentOutOfRangeException(nameof(needed), needed, "a batch needs at least one group");
        var kept = new List<(int, int)>();
        var dropped = new List<(int, int)>();
        int allEqual = 0, outOfRange = 0;
        for (int r = 0; r < scores.Count; r++)
            for (int g = 0; g < scores[r].Count; g++)
                switch (GroupFilter.Judge(scores[r][g], range))
                {
                    case GroupVerdict.Kept: kept.Add((r, g)); break;
                    case GroupVerdict.AllEqual: allEqual++; dropped.Add((r, g)); break;
                    default: outOfRange++; dropped.Add((r, g)); break;
                }
        int surplus = Math.Max(0, kept.Count - needed);
        var chosen = kept.Take(needed).ToList();
        int filled = 0;
        if (chosen.Count < needed)
        {
            // The latest dropped groups first (the freshest policy), then restored to rollout order.
            var fill = dropped.AsEnumerable().Reverse().Take(needed - chosen.Count).ToList();
            filled = fill.Count;
            chosen = chosen.Concat(fill).OrderBy(x => x.Item1).ThenBy(x => x.Item2).ToList();
        }
        return new GroupSelection(chosen, Math.Min(kept.Count, needed), allEqual, outOfRange, filled, surplus);
    }
}
