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
