// The demo's three synthetic tasks, all answered as <think>…</think><answer>\boxed{…}</answer> so the LMM-R1 rule
// reward scores them unchanged: text arithmetic "a+b+c+d" on digits (FRE's text task), and on images of coloured
// shapes, counting the shapes and comparing how many are red vs blue (MGT's image tasks). The think part is a short
// worked step (a+b+c+d=s; the cells summed as 1+0+1+1=3; the two colour counts). Held-out prompts are defined per
// task: arithmetic holds out multisets of digits (no order of them occurs in SFT or RL), images hold out scene
// signatures (which cell holds which colour and kind of shape; no training image has a held-out signature).
namespace LmmR1.Demo;

public enum DemoTask { Arithmetic, Count, Compare }

/// <summary>One prompt with its answer and the SFT target response.</summary>
public sealed record DemoExample
{
    public required string Id { get; init; }
    public required DemoTask Task { get; init; }
    public required string Question { get; init; }
    /// <summary>The bare answer ("12", "3", "red").</summary>
    public required string Answer { get; init; }
    /// <summary>The target response (without the end-of-turn token).</summary>
    public required string Response { get; init; }
    /// <summary>The image, for the image tasks.</summary>
    public ShapeScene? Scene { get; init; }

    /// <summary>The label as LMM-R1's data stores it.</summary>
    public string Label => $"$\\boxed{{{Answer}}}$";
    public string Datasource => DemoTasks.Name(Task);
}

/// <summary>A task's examples: a training pool and the held-out prompts.</summary>
public sealed record DemoSplit(IReadOnlyList<DemoExample> Train, IReadOnlyList<DemoExample> HeldOut);

public static class DemoTasks
{
    public const string SystemPrompt = "Think, then answer with \\boxed{}.";

    public static string Name(DemoTask t) => t switch
    {
        DemoTask.Arithmetic => "arithmetic",
        DemoTask.Count => "count",
        _ => "compare",
    };

    static readonly string[] ArithmeticPhrasings = ["{0}+{1}+{2}+{3}=?", "What is {0} plus {1} plus {2} plus {3}?", "Add {0}, {1}, {2} and {3}."];
    static readonly string[] CountPhrasings = ["How many shapes are there?", "Count the shapes."];
    static readonly string[] ComparePhrasings = ["Are there more red or blue shapes?", "Which colour is more common, red or blue?"];

    public const int Terms = 4;
    public const int MaxDigit = 4;

    public static string Response(string think, string answer) => $"<think>{think}</think><answer>\\boxed{{{answer}}}</answer>";

    /// <summary>Sums of four digits 0–4, worked as "a+b+c+d=s" (the image count task's worked step is the same sum of
    /// 0s and 1s). The 70 multisets of digits are split: <paramref name="heldOutSets"/> are held out, and
    /// <paramref name="heldOutPrompts"/> of their orders (random phrasing) are the held-out prompts; the training pool
    /// is every order and phrasing of the other multisets, so no held-out prompt's digits occur in training in any order.</summary>
    public static DemoSplit Arithmetic(int heldOutSets, int heldOutPrompts, Random rng)
    {
        var sets = new List<int[]>();
        void Build(List<int> cur, int min)
        {
            if (cur.Count == Terms) { sets.Add([.. cur]); return; }
            for (int d = min; d <= MaxDigit; d++) { cur.Add(d); Build(cur, d); cur.RemoveAt(cur.Count - 1); }
        }
        Build([], 0);
        if (heldOutSets == 0) return ArithmeticByOrder(sets.SelectMany(Orders).ToList(), heldOutPrompts, rng);
        if (heldOutSets < 1 || heldOutSets >= sets.Count)
            throw new ArgumentOutOfRangeException(nameof(heldOutSets), $"must be in 1..{sets.Count - 1}, got {heldOutSets}");
        Shuffle(sets, rng);
        var heldOrders = sets.Take(heldOutSets).SelectMany(Orders).ToList();
        if (heldOutPrompts < 1 || heldOutPrompts > heldOrders.Count)
            throw new ArgumentOutOfRangeException(nameof(heldOutPrompts), $"must be in 1..{heldOrders.Count} for {heldOutSets} held-out digit sets, got {heldOutPrompts}");
        Shuffle(heldOrders, rng);
        var heldOut = heldOrders.Take(heldOutPrompts)
            .Select(o => ArithmeticExample($"arith-heldout-{string.Concat(o)}", o, rng.Next(ArithmeticPhrasings.Length))).ToList();
        var train = new List<DemoExample>();
        foreach (var order in sets.Skip(heldOutSets).SelectMany(Orders))
            for (int p = 0; p < ArithmeticPhrasings.Length; p++)
                train.Add(ArithmeticExample($"arith-{string.Concat(order)}-{p}", order, p));
        Shuffle(train, rng);
        return new DemoSplit(train, heldOut);
    }

    /// <summary>The i.i.d. split: <paramref name="heldOutPrompts"/> digit sequences are held out (one random phrasing
    /// each), and no phrasing of them is in the training pool; other orders of the same digits are.</summary>
    static DemoSplit ArithmeticByOrder(List<int[]> sequences, int heldOutPrompts, Random rng)
    {
        if (heldOutPrompts < 1 || heldOutPrompts >= sequences.Count)
            throw new ArgumentOutOfRangeException(nameof(heldOutPrompts), $"must be in 1..{sequences.Count - 1}, got {heldOutPrompts}");
        Shuffle(sequences, rng);
        var heldOut = sequences.Take(heldOutPrompts)
            .Select(o => ArithmeticExample($"arith-heldout-{string.Concat(o)}", o, rng.Next(ArithmeticPhrasings.Length))).ToList();
        var train = new List<DemoExample>();
        foreach (var order in sequences.Skip(heldOutPrompts))
            for (int p = 0; p < ArithmeticPhrasings.Length; p++)
                train.Add(ArithmeticExample($"arith-{string.Concat(order)}-{p}", order, p));
        Shuffle(train, rng);
        return new DemoSplit(train, heldOut);
    }

    /// <summary>The distinct orders of a multiset (lexicographic).</summary>
    static List<int[]> Orders(int[] set)
    {
        var result = new List<int[]>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        void Permute(int[] a, int k)
        {
            if (k == a.Length) { if (seen.Add(string.Concat(a))) result.Add([.. a]); return; }
            for (int i = k; i < a.Length; i++)
            {
                (a[k], a[i]) = (a[i], a[k]);
                Permute(a, k + 1);
                (a[k], a[i]) = (a[i], a[k]);
            }
        }
        Permute([.. set], 0);
        return result.OrderBy(o => string.Concat(o), StringComparer.Ordinal).ToList();
    }

    static DemoExample ArithmeticExample(string id, int[] terms, int phrasing)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        string sum = terms.Sum().ToString(inv);
        return new DemoExample
        {
            Id = id,
            Task = DemoTask.Arithmetic,
            Question = string.Format(inv, ArithmeticPhrasings[phrasing], terms.Select(t => (object)t).ToArray()),
            Answer = sum,
            Response = Response(string.Join("+", terms) + "=" + sum, sum),
        };
    }

    /// <summary>Count (1–4 shapes, each count equally likely, any of four colours) and compare (red vs blue, 1–4 shapes,
    /// never tied; red and blue win equally often) scenes. Held-out scenes come first from the stream; a training scene
    /// whose signature is held out is drawn again.</summary>
    public static DemoSplit Images(int trainPerTask, int heldOutPerTask, Random rng)
    {
        var heldOut = new List<DemoExample>();
        var signatures = new HashSet<string>(StringComparer.Ordinal);
        foreach (var task in new[] { DemoTask.Count, DemoTask.Compare })
            for (int i = 0; i < heldOutPerTask; i++)
            {
                var ex = ImageExample(task, $"{Name(task)}-heldout-{i}", rng);
                signatures.Add(ex.Scene!.Signature);
                heldOut.Add(ex);
            }
        var train = new List<DemoExample>();
        foreach (var task in new[] { DemoTask.Count, DemoTask.Compare })
            for (int i = 0; i < trainPerTask; i++)
            {
                DemoExample ex;
                do ex = ImageExample(task, $"{Name(task)}-{i}", rng);
                while (signatures.Contains(ex.Scene!.Signature));
                train.Add(ex);
            }
        Shuffle(train, rng);
        return new DemoSplit(train, heldOut);
    }

    // Untied (red, blue) counts with 1–4 shapes; symmetric, so "red" and "blue" are equally likely answers.
    static readonly (int Red, int Blue)[] CompareCounts =
        [(1, 0), (0, 1), (2, 0), (0, 2), (2, 1), (1, 2), (3, 0), (0, 3), (3, 1), (1, 3), (4, 0), (0, 4)];

    static DemoExample ImageExample(DemoTask task, string id, Random rng)
    {
        if (task == DemoTask.Count)
        {
            int k = rng.Next(1, ShapeScene.GridSide * ShapeScene.GridSide + 1);
            var occupied = Occupied(k, rng);
            var colors = Enumerable.Range(0, k).Select(_ => (ShapeColor)rng.Next(4)).ToList();
            var scene = ShapeScene.Random(rng, occupied, colors);
            string sum = string.Join("+", occupied.Select(o => o ? "1" : "0"));
            return new DemoExample
            {
                Id = id, Task = task, Scene = scene, Answer = k.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Question = CountPhrasings[rng.Next(CountPhrasings.Length)],
                Response = Response($"{sum}={k}", k.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            };
        }
        else
        {
            var (red, blue) = CompareCounts[rng.Next(CompareCounts.Length)];
            var occupied = Occupied(red + blue, rng);
            var colors = Enumerable.Repeat(ShapeColor.Red, red).Concat(Enumerable.Repeat(ShapeColor.Blue, blue)).ToList();
            Shuffle(colors, rng);
            var scene = ShapeScene.Random(rng, occupied, colors);
            string answer = red > blue ? "red" : "blue";
            return new DemoExample
            {
                Id = id, Task = task, Scene = scene, Answer = answer,
                Question = ComparePhrasings[rng.Next(ComparePhrasings.Length)],
                Response = Response($"red {red}, blue {blue}", answer),
            };
        }
    }

    /// <summary>The example with a wrong final answer after its (correct) worked steps: a number off by one, or the
    /// other colour. Used for a share of the SFT demonstrations (sloppy demonstrations, see DemoSftSettings.AnswerNoise).</summary>
    public static DemoExample WithWrongAnswer(DemoExample ex, Random rng)
    {
        string wrong;
        if (ex.Task == DemoTask.Compare) wrong = ex.Answer == "red" ? "blue" : "red";
        else
        {
            int v = int.Parse(ex.Answer, System.Globalization.CultureInfo.InvariantCulture);
            int w = v == 0 || (ex.Task == DemoTask.Count && v == 1) ? v + 1 : rng.Next(2) == 0 ? v - 1 : v + 1;
            wrong = w.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        string think = ex.Response[..ex.Response.IndexOf("<answer>", StringComparison.Ordinal)];
        return ex with { Response = think + $"<answer>\\boxed{{{wrong}}}</answer>" };
    }

    static bool[] Occupied(int k, Random rng)
    {
        var cells = Enumerable.Range(0, ShapeScene.GridSide * ShapeScene.GridSide).ToList();
        Shuffle(cells, rng);
        var occupied = new bool[cells.Count];
        foreach (int c in cells.Take(k)) occupied[c] = true;
        return occupied;
    }

    public static void Shuffle<T>(IList<T> list, Random rng)
    {
        for (int i = list.Count - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (list[i], list[j]) = (list[j], list[i]);
        }
    }
}
