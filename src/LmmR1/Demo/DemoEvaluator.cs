// Held-out accuracy the way `lmmr1 eval` measures it: the generation engine samples k responses per prompt
// (DatasetGenerator: chat template, images, per-prompt random streams keyed by the prompt's index), the LMM-R1 rule
// reward scores them, and a sample is correct when its accuracy reward is > 0. pass@1 = mean correctness over all
// samples at the training temperature (what RL optimises); greedy accuracy is reported beside it. The sampling seed is
// fixed per evaluator, so "before" and "after" draw the same random numbers and their difference is a paired one.
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;

namespace LmmR1.Demo;

/// <summary>Accuracy on one held-out set (or one datasource of it).</summary>
public sealed record HeldOutAccuracy
{
    public required int Prompts { get; init; }
    public required int SamplesPerPrompt { get; init; }
    /// <summary>Mean accuracy over every sample (pass@1 at the sampling temperature).</summary>
    public required double Pass1 { get; init; }
    /// <summary>Accuracy of the greedy response (NaN when not measured).</summary>
    public double Greedy { get; init; } = double.NaN;
    /// <summary>Share of samples with the exact &lt;think&gt;…&lt;/think&gt;&lt;answer&gt;…&lt;/answer&gt; format.</summary>
    public required double FormatRate { get; init; }
    public required double MeanReward { get; init; }
    /// <summary>Per prompt: the share of its samples that are correct (in data order), for paired comparisons.</summary>
    public required IReadOnlyList<double> PerPrompt { get; init; }
    /// <summary>Per datasource (task) of the set.</summary>
    public IReadOnlyDictionary<string, HeldOutAccuracy> ByDatasource { get; init; } = new Dictionary<string, HeldOutAccuracy>();

    public int Samples => Prompts * SamplesPerPrompt;

    /// <summary>Mean and standard error (over prompts) of the per-prompt accuracy gain from <paramref name="before"/> to this.</summary>
    public (double Gain, double StdErr) PairedGain(HeldOutAccuracy before)
    {
        if (before.PerPrompt.Count != PerPrompt.Count) throw new ArgumentException("different held-out sets");
        var d = PerPrompt.Zip(before.PerPrompt, (a, b) => a - b).ToList();
        double mean = d.Average();
        double var = d.Count > 1 ? d.Sum(x => (x - mean) * (x - mean)) / (d.Count - 1) : 0;
        return (mean, Math.Sqrt(var / d.Count));
    }
}

public sealed class DemoEvaluator(QwenVLProcessor processor, IRewardModel reward, int samplesPerPrompt, double temperature,
                                  int maxNewTokens, ulong seed, bool greedy)
{
    public int SamplesPerPrompt => samplesPerPrompt;
    public double Temperature => temperature;

    public HeldOutAccuracy Evaluate(QwenVLModel model, PromptDataset heldOut, CancellationToken ct = default)
    {
        var sampled = Score(model, heldOut, samplesPerPrompt, temperature, ct);
        var greedyCorrect = greedy ? Score(model, heldOut, 1, 0, ct) : null;
        HeldOutAccuracy Summarise(IReadOnlyList<int> rows) => new()
        {
            Prompts = rows.Count,
            SamplesPerPrompt = samplesPerPrompt,
            Pass1 = rows.Average(i => sampled[i].Correct.Average(c => c ? 1.0 : 0.0)),
            Greedy = greedyCorrect is null ? double.NaN : rows.Average(i => greedyCorrect[i].Correct[0] ? 1.0 : 0.0),
            FormatRate = rows.Average(i => sampled[i].Formatted.Average(c => c ? 1.0 : 0.0)),
            MeanReward = rows.Average(i => sampled[i].Rewards.Average()),
            PerPrompt = rows.Select(i => sampled[i].Correct.Average(c => c ? 1.0 : 0.0)).ToList(),
        };
        var all = Enumerable.Range(0, heldOut.Count).ToList();
        return Summarise(all) with
        {
            ByDatasource = all.GroupBy(i => heldOut[i].Datasource).OrderBy(g => g.Key, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => Summarise(g.ToList())),
        };
    }

    sealed record PromptScores(bool[] Correct, bool[] Formatted, double[] Rewards);

    PromptScores[] Score(QwenVLModel model, PromptDataset data, int n, double t, CancellationToken ct)
    {
        var engine = new GenerationEngine(model);
        var sampling = new SamplingParams
        {
            N = n, Temperature = t, MaxNewTokens = maxNewTokens, Seed = seed,
            StopTokenIds = DatasetGenerator.DefaultStopTokenIds(processor.Tokenizer, model.Config),
        };
        var generator = new DatasetGenerator(engine, processor, sampling, chunkPrompts: 256);
        var result = new PromptScores[data.Count];
        foreach (var chunk in generator.Run(data, cancel: ct))
        {
            var queries = chunk.SelectMany(c => c.Queries).ToList();
            var prompts = chunk.SelectMany(c => c.Queries.Select(_ => c.Sample.Prompt)).ToList();
            var labels = chunk.SelectMany(c => c.Queries.Select(_ => c.Sample.Label)).ToList();
            var rewards = reward.ScoreAsync(queries, prompts, labels, ct).GetAwaiter().GetResult();
            int r = 0;
            foreach (var c in chunk)
            {
                var mine = rewards.Skip(r).Take(n).ToList();
                r += n;
                result[c.Index] = new PromptScores(mine.Select(x => x.AccuracyReward > 0).ToArray(),
                    mine.Select(x => x.FormatReward > 0).ToArray(), mine.Select(x => x.Reward).ToArray());
            }
        }
        return result;
    }
}
