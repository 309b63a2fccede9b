// A reward model behind the /get_reward protocol (`lmmr1 reward serve --reward_pretrain DIR`), as OpenRLHF's
// serve_rm.py: each query (prompt + response text, special tokens written out) is tokenized with the reward model's
// own tokenizer (added tokens matched, nothing prepended), cut to its first --max_len tokens (upstream truncates
// on the right), left-padded into batches of --batch_size and scored at the last token. Text only: image pads in a
// query are ordinary tokens here (upstream's server sends no pixels either). format_rewards / acc_rewards are 0.
using LmmR1.Rewards;
using LmmR1.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.RewardModels;

public sealed class ModelRewardScorer : IRewardModel
{
    readonly SequenceRewardModel model;
    readonly QwenTokenizer tokenizer;
    readonly int maxLen, batchSize;
    readonly bool normalize;
    readonly SemaphoreSlim gate = new(1, 1);   // one forward at a time: bounded memory, libtorch threads not oversubscribed

    public ModelRewardScorer(SequenceRewardModel model, QwenTokenizer tokenizer, int maxLen = 2048, int batchSize = 8, bool normalize = false)
    {
        if (maxLen < 1) throw new ArgumentException($"max length must be ≥ 1, got {maxLen}");
        if (batchSize < 1) throw new ArgumentException($"batch size must be ≥ 1, got {batchSize}");
        this.model = model; this.tokenizer = tokenizer; this.maxLen = maxLen; this.batchSize = batchSize; this.normalize = normalize;
    }

    /// <summary>Token ids the model scores for one query (tokenized, truncated to max length; at least one token).</summary>
    public long[] Tokens(string query)
    {
        var ids = tokenizer.Encode(query);
        if (ids.Length == 0) ids = [tokenizer.PadTokenId];
        return [.. ids.Take(maxLen).Select(t => (long)t)];
    }

    public async Task<IReadOnlyList<RewardResult>> ScoreAsync(IReadOnlyList<string> queries, IReadOnlyList<string> prompts,
                                                              IReadOnlyList<string> labels, CancellationToken ct = default)
    {
        var tokens = queries.Select(Tokens).ToList();
        await gate.WaitAsync(ct);
        try
        {
            return await Task.Run(() => Score(tokens), ct);
        }
        finally { gate.Release(); }
    }

    IReadOnlyList<RewardResult> Score(IReadOnlyList<long[]> tokens)
    {
        var results = new List<RewardResult>(tokens.Count);
        long pad = tokenizer.PadTokenId;
        for (int start = 0; start < tokens.Count; start += batchSize)
        {
            using var scope = torch.NewDisposeScope();
            var batch = tokens.Skip(start).Take(batchSize).ToList();
            int b = batch.Count, s = batch.Max(t => t.Length);
            var seq = new long[b * s];
            var att = new long[b * s];
            Array.Fill(seq, pad);
            for (int r = 0; r < b; r++)
            {
                int off = s - batch[r].Length;   // left padding, as serve_rm's tokenizer (padding_side "left")
                Array.Copy(batch[r], 0, seq, r * s + off, batch[r].Length);
                Array.Fill(att, 1L, r * s + off, batch[r].Length);
            }
            var rewards = model.Rewards(torch.tensor(seq, [b, s]), torch.tensor(att, [b, s])).cpu().data<float>().ToArray();
            foreach (var v in rewards) results.Add(new RewardResult(normalize ? model.Normalize(v) : v, 0, 0));
        }
        return results;
    }
}
