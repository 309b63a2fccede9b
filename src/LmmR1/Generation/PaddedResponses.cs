// Samples as right-padded tensors for the trainer: response tokens, their rollout log-probs and OpenRLHF's action mask
// (true through the first stop token, that token included; false on padding).
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Generation;

public sealed class PaddedResponses : IDisposable
{
    /// <summary>[N, R] int64, pad after each response (R = longest response).</summary>
    public required Tensor Tokens { get; init; }
    /// <summary>[N, R] float32, 0 on padding.</summary>
    public required Tensor LogProbs { get; init; }
    /// <summary>[N, R] bool.</summary>
    public required Tensor ActionMask { get; init; }
    /// <summary>[N] int64 response lengths.</summary>
    public required Tensor Lengths { get; init; }

    public static PaddedResponses From(IReadOnlyList<GenerationOutput> outputs, long padTokenId, Device? device = null)
    {
        int n = outputs.Count, r = outputs.Count == 0 ? 0 : outputs.Max(o => o.ResponseLength);
        var tok = new long[n * r];
        var lp = new float[n * r];
        var mask = new bool[n * r];
        var len = new long[n];
        Array.Fill(tok, padTokenId);
        for (int i = 0; i < n; i++)
        {
            var o = outputs[i];
            len[i] = o.ResponseLength;
            for (int j = 0; j < o.ResponseLength; j++)
            {
                tok[i * r + j] = o.TokenIds[j];
                lp[i * r + j] = o.LogProbs[j];
                mask[i * r + j] = true;
            }
        }
        return new PaddedResponses
        {
            Tokens = torch.tensor(tok, [n, r], device: device),
            LogProbs = torch.tensor(lp, [n, r], device: device),
            ActionMask = torch.tensor(mask, [n, r], device: device),
            Lengths = torch.tensor(len, device: device),
        };
    }

    public void Dispose()
    {
        Tokens.Dispose(); LogProbs.Dispose(); ActionMask.Dispose(); Lengths.Dispose();
    }
}
