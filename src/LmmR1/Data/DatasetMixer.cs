// Mixing several prompt datasets like Hugging Face's interleave_datasets(probabilities, seed,
// stopping_strategy="all_exhausted"): draw a source with the given probabilities, take its next row (wrapping
// around when it runs out), stop once every source has been exhausted at least once. The draws come from
// System.Random(seed), not numpy's PCG64, so the order differs from Python's while the algorithm is the same.
// A source with probability 0 is never drawn and counts as exhausted from the start (so the loop ends).
namespace LmmR1.Data;

public static class DatasetMixer
{
    public static List<T> Interleave<T>(IReadOnlyList<IReadOnlyList<T>> sources, IReadOnlyList<double> probabilities, int seed)
    {
        if (sources.Count != probabilities.Count) throw new ArgumentException("one probability per source");
        if (sources.Any(s => s.Count == 0)) throw new ArgumentException("every source needs at least one row");
        var cdf = new double[probabilities.Count];
        double acc = 0;
        for (int i = 0; i < cdf.Length; i++) cdf[i] = acc += probabilities[i];
        var exhausted = probabilities.Select(p => p <= 0).ToArray();
        var next = new int[sources.Count];
        var rng = new Random(seed);
        var result = new List<T>();
        while (!exhausted.All(e => e))
        {
            double u = rng.NextDouble() * acc;
            int s = 0;
            while (s < cdf.Length - 1 && (u >= cdf[s] || probabilities[s] <= 0)) s++;
            result.Add(sources[s][next[s]]);
            if (++next[s] >= sources[s].Count) { exhausted[s] = true; next[s] = 0; }
        }
        return result;
    }

    /// <summary>A seeded permutation of 0..n-1 (Fisher–Yates), e.g. the visiting order of one epoch.</summary>
    public static int[] Permutation(int n, int seed)
    {
        var order = Enumerable.Range(0, n).ToArray();
        var rng = new Random(seed);
        for (int i = n - 1; i > 0; i--)
        {
            int j = rng.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }
}
