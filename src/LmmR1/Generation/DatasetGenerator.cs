// Generation over a prompt dataset in chunks: the processor (chat template, images, tokenizer) prepares the next chunk on
// worker threads while the engine generates the current one; each prompt's random stream is keyed by its dataset index,
// so results do not depend on the chunk size. Texts follow OpenRLHF: the reward query is the detokenized prompt +
// response with special tokens kept (image pads expanded, no padding); the response text keeps special tokens except
// a final stop token, and is cut before a stop string (as vLLM's output text).
using LmmR1.Data;
using LmmR1.Text;

namespace LmmR1.Generation;

/// <summary>One prompt of the dataset with its samples.</summary>
public sealed record GeneratedPrompt(int Index, PromptSample Sample, int PromptTokens, IReadOnlyList<GenerationOutput> Outputs,
                                     IReadOnlyList<string> Responses, IReadOnlyList<string> Queries);

public sealed class DatasetGenerator(GenerationEngine engine, QwenVLProcessor processor, SamplingParams sampling, int chunkPrompts = 64)
{
    public QwenTokenizer Tokenizer => processor.Tokenizer;

    /// <summary>Stop tokens for Qwen chat models: the tokenizer's EOS ids, the model's generation_config eos ids, and
    /// &lt;|im_end|&gt; / &lt;|endoftext|&gt; when the tokenizer has them.</summary>
    public static IReadOnlyList<int> DefaultStopTokenIds(QwenTokenizer tok, Models.Qwen.QwenVLConfig config)
    {
        var ids = new List<int>(tok.EosTokenIds);
        ids.AddRange(config.Tokens.EosTokenIds.Select(i => (int)i));
        foreach (var t in new[] { "<|im_end|>", "<|endoftext|>" })
            if (tok.TryTokenToId(t, out int id)) ids.Add(id);
        return ids.Where(i => i >= 0 && i < config.Text.VocabSize).Distinct().ToList();
    }

    /// <summary>Yields the dataset's prompts with their samples, chunk by chunk, in dataset order.</summary>
    /// <param name="progress">Prompts done / total and tokens so far, over the whole dataset.</param>
    public IEnumerable<IReadOnlyList<GeneratedPrompt>> Run(IReadOnlyList<PromptSample> samples, Action<GenerationProgress>? progress = null,
                                                           CancellationToken cancel = default)
    {
        if (chunkPrompts < 1) throw new ArgumentException("chunkPrompts must be ≥ 1");
        int total = samples.Count;
        var counts = new GenerationProgress(0, total, 0, (long)total * sampling.N, 0);
        Task<IReadOnlyList<ProcessedPrompt>>? next = total == 0 ? null : Prepare(samples, 0);
        try
        {
            for (int start = 0; start < total; start += chunkPrompts)
            {
                cancel.ThrowIfCancellationRequested();
                var processed = next!.GetAwaiter().GetResult();
                next = start + chunkPrompts < total ? Prepare(samples, start + chunkPrompts) : null;
                try
                {
                    var chunk = GenerateChunk(samples, start, processed, counts, progress, cancel);
                    counts = counts with
                    {
                        PromptsDone = counts.PromptsDone + chunk.Count,
                        SamplesDone = counts.SamplesDone + chunk.Sum(c => (long)c.Outputs.Count),
                        TokensGenerated = counts.TokensGenerated + chunk.Sum(c => c.Outputs.Sum(o => (long)o.ResponseLength)),
                    };
                    yield return chunk;
                }
                finally
                {
                    foreach (var p in processed) p.Dispose();
                }
            }
        }
        finally
        {
            // Stopped early (an error, or the caller stopped enumerating): release the chunk prepared ahead.
            if (next is not null)
                try { foreach (var p in next.GetAwaiter().GetResult()) p.Dispose(); } catch (Exception) { }
        }
    }

    List<GeneratedPrompt> GenerateChunk(IReadOnlyList<PromptSample> samples, int start, IReadOnlyList<ProcessedPrompt> processed,
                                        GenerationProgress before, Action<GenerationProgress>? progress, CancellationToken cancel)
    {
        var prompts = processed.Select((p, j) => new GenerationPrompt(p.InputIds.Select(x => (int)x).ToArray(), p.PixelValues, p.ImageGridThw)
        {
            Key = start + j,
        }).ToList();
        var outs = engine.Generate(prompts, sampling, ids => processor.Tokenizer.Decode(ids),
            pr => progress?.Invoke(before with
            {
                PromptsDone = before.PromptsDone + pr.PromptsDone,
                SamplesDone = before.SamplesDone + pr.SamplesDone,
                TokensGenerated = before.TokensGenerated + pr.TokensGenerated,
            }), cancel);
        var chunk = new List<GeneratedPrompt>(prompts.Count);
        for (int j = 0; j < prompts.Count; j++)
        {
            var mine = outs.Skip(j * sampling.N).Take(sampling.N).ToList();
            var ids = prompts[j].TokenIds;
            chunk.Add(new GeneratedPrompt(start + j, samples[start + j], ids.Count, mine,
                mine.Select(ResponseText).ToList(),
                mine.Select(o => processor.Tokenizer.Decode(ids.Concat(o.TokenIds))).ToList()));
        }
        return chunk;
    }

    /// <summary>The response as text: special tokens kept, a final stop token dropped, cut before a stop string.</summary>
    public string ResponseText(GenerationOutput o)
    {
        var ids = o.StopTokenId is not null ? o.TokenIds.Take(o.TokenIds.Length - 1) : o.TokenIds;
        string text = processor.Tokenizer.Decode(ids);
        if (o.StopString is { } s && text.IndexOf(s, StringComparison.Ordinal) is int at && at >= 0) text = text[..at];
        return text;
    }

    Task<IReadOnlyList<ProcessedPrompt>> Prepare(IReadOnlyList<PromptSample> samples, int start)
    {
        var chunk = Enumerable.Range(start, Math.Min(chunkPrompts, samples.Count - start)).Select(i => samples[i]).ToList();
        return Task.Run(() => processor.ProcessMany(chunk));
    }
}
