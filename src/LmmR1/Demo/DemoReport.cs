// How the demo shows its results: a text sparkline of a reward curve (one block character per RL step, or per
// bucket of steps when there are many), the before → after table of the stages, and reward_curve.png (ScottPlot:
// the mean rollout reward per global step of FRE and MGT, and their accuracy parts).
using System.Globalization;
using System.Text;

namespace LmmR1.Demo;

public static class DemoReport
{
    const string Blocks = "▁▂▃▄▅▆▇█";

    /// <summary>The values as block characters scaled to [lo, hi], averaged into at most <paramref name="width"/> buckets.</summary>
    public static string Sparkline(IReadOnlyList<double> values, double lo, double hi, int width = 40)
    {
        if (values.Count == 0) return "";
        int buckets = Math.Min(width, values.Count);
        var sb = new StringBuilder(buckets);
        for (int b = 0; b < buckets; b++)
        {
            int from = b * values.Count / buckets, to = (b + 1) * values.Count / buckets;
            double v = values.Skip(from).Take(to - from).Average();
            int level = (int)Math.Round((Math.Clamp(v, lo, hi) - lo) / (hi - lo) * (Blocks.Length - 1));
            sb.Append(Blocks[level]);
        }
        return sb.ToString();
    }

    /// <summary>The stage table: held-out pass@1 before → after, the gain with its paired standard error, greedy
    /// accuracy, held-out size and training time.</summary>
    public static IEnumerable<string> Table(DemoSummary s)
    {
        yield return $"{"stage",-5}  {"task",-30}  {"held-out",-9}  {"pass@1 before → after",-22}  {"gain (± s.e.)",-16}  {"greedy",-16}  {"time",7}";
        foreach (var st in s.Stages)
        {
            int k = st.EvalPrompts == 0 ? 0 : st.EvalSamples / st.EvalPrompts;
            string greedy = st.GreedyBefore is { } gb && st.GreedyAfter is { } ga ? $"{DemoRunner.Pct(gb)} → {DemoRunner.Pct(ga)}" : "";
            yield return $"{st.Name,-5}  {st.Task,-30}  {$"{st.EvalPrompts}×{k}",-9}  " +
                         $"{$"{DemoRunner.Pct(st.AccuracyBefore)} → {DemoRunner.Pct(st.AccuracyAfter)}",-22}  " +
                         $"{$"{Points(st.Gain)} ± {(100 * st.GainStdErr).ToString("F1", CultureInfo.InvariantCulture)}",-16}  " +
                         $"{greedy,-16}  {st.Seconds.ToString("F1", CultureInfo.InvariantCulture),6}s";
        }
    }

    static string Points(double gain) => (gain >= 0 ? "+" : "") + (100 * gain).ToString("F1", CultureInfo.InvariantCulture) + " pts";

    /// <summary>reward_curve.png: reward and accuracy reward per RL step, FRE then MGT on one step axis.</summary>
    public static void WriteRewardCurve(string path, IReadOnlyList<RlStepPoint> fre, IReadOnlyList<RlStepPoint> mgt)
    {
        var plot = new ScottPlot.Plot();
        void Add(IReadOnlyList<RlStepPoint> pts, int offset, string name, ScottPlot.Color color)
        {
            if (pts.Count == 0) return;
            double[] xs = pts.Select(p => (double)(p.Step + offset)).ToArray();
            var r = plot.Add.Scatter(xs, pts.Select(p => p.Reward).ToArray(), color);
            r.LegendText = $"{name} reward";
            var a = plot.Add.Scatter(xs, pts.Select(p => p.AccuracyReward).ToArray(), color);
            a.LegendText = $"{name} accuracy reward";
            a.LinePattern = ScottPlot.LinePattern.Dashed;
            a.MarkerSize = 0;
        }
        Add(fre, 0, "FRE (text)", ScottPlot.Colors.SteelBlue);
        Add(mgt, fre.Count, "MGT (images)", ScottPlot.Colors.DarkOrange);
        if (fre.Count > 0 && mgt.Count > 0) plot.Add.VerticalLine(fre.Count + 0.5, 1, ScottPlot.Colors.Gray);
        plot.Title("lmmr1 demo: mean rollout reward per RL step (format 0.5 + accuracy 1.0)");
        plot.XLabel("global step (FRE, then MGT)");
        plot.YLabel("reward");
        plot.Axes.SetLimitsY(0, 1.55);
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        plot.SavePng(path, 900, 500);
    }
}
