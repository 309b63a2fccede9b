// The fixtures' left-padded reference batch as engine prompts (padding removed, each row's own images split off the
// batch's pixel_values by t·h·w), and a recomputation of response log-probs with one plain forward pass.
using LmmR1.Generation;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Generation;

public static class GenerationFixture
{
    /// <summary>Row i of the reference batch as a prompt: its real tokens and its images (row 0: one, row 1: two, row 2: none).</summary>
    public static List<GenerationPrompt> Prompts(QwenReference r)
    {
        var ids = r.InputIds.data<long>().ToArray();
        var mask = r.AttentionMask.data<long>().ToArray();
        long b = r.InputIds.shape[0], l = r.InputIds.shape[1];
        var grid = r.ImageGridThw.data<long>().ToArray();
        var cfg = QwenVLConfig.Load(r.Dir);
        long imageToken = cfg.Tokens.ImageTokenId, visionStart = cfg.Tokens.VisionStartTokenId;
        int image = 0;
        long patch = 0;
        var prompts = new List<GenerationPrompt>();
        for (int i = 0; i < b; i++)
        {
            var tokens = new List<int>();
            int images = 0;
            for (int j = 0; j < l; j++)
                if (mask[i * l + j] != 0)
                {
                    tokens.Add((int)ids[i * l + j]);
                    if (j + 1 < l && ids[i * l + j] == visionStart && ids[i * l + j + 1] == imageToken) images++;
                }
            if (images == 0) { prompts.Add(new GenerationPrompt(tokens)); continue; }
            long rows = 0;
            for (int k = image; k < image + images; k++) rows += grid[3 * k] * grid[3 * k + 1] * grid[3 * k + 2];
            var pix = r.PixelValues.narrow(0, patch, rows).clone().DetachFromDisposeScope();
            var g = r.ImageGridThw.narrow(0, image, images).clone().DetachFromDisposeScope();
            prompts.Add(new GenerationPrompt(tokens, pix, g));
            image += images; patch += rows;
        }
        Assert.Equal(r.ImageGridThw.shape[0], image);
        Assert.Equal(r.PixelValues.shape[0], patch);
        return prompts;
    }

    /// <summary>log_softmax(logits/T)[token] at every response position, from one forward pass over the left-padded
    /// prompts followed by the right-padded responses (attention mask 1 on real tokens only). T = 0 counts as 1.</summary>
    public static List<float[]> RecomputeLogProbs(QwenVLModel model, IReadOnlyList<GenerationPrompt> prompts,
                                                  IReadOnlyList<GenerationOutput> outputs, double temperature)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        int n = outputs.Count;
        int lp = outputs.Max(o => o.PromptLength), lr = outputs.Max(o => o.ResponseLength), w = lp + lr;
        var ids = new long[n * w];
        var mask = new long[n * w];
        var pix = new List<Tensor>();
        var grid = new List<Tensor>();
        for (int i = 0; i < n; i++)
        {
            var o = outputs[i];
            var pr = prompts[o.PromptIndex];
            int off = lp - pr.TokenIds.Count;
            for (int j = 0; j < pr.TokenIds.Count; j++) { ids[i * w + off + j] = pr.TokenIds[j]; mask[i * w + off + j] = 1; }
            for (int j = 0; j < o.ResponseLength; j++) { ids[i * w + lp + j] = o.TokenIds[j]; mask[i * w + lp + j] = 1; }
            if (pr.PixelValues is not null) { pix.Add(pr.PixelValues); grid.Add(pr.ImageGridThw!); }
        }
        using var output = model.Forward(torch.tensor(ids, [n, w]), torch.tensor(mask, [n, w]),
            pix.Count > 0 ? torch.cat(pix, 0) : null, grid.Count > 0 ? torch.cat(grid, 0) : null);
        // Position lp − 1 + j predicts response token j.
        var x = output.Logits!.narrow(1, lp - 1, lr).to(ScalarType.Float32);
        if (temperature > 0 && temperature != 1.0) x = x / temperature;
        var logp = x.log_softmax(-1);                                                               // [n, lr, V]
        var result = new List<float[]>();
        for (int i = 0; i < n; i++)
        {
            var o = outputs[i];
            var idx = torch.tensor(o.TokenIds.Select(t => (long)t).ToArray()).view(-1, 1);
            var row = logp[i].narrow(0, 0, o.ResponseLength).gather(1, idx).view(-1);
            result.Add(row.data<float>().ToArray());
        }
        return result;
    }
}
