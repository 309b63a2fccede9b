// `lmmr1 data check`: reads a dataset the way training does, decodes every image (in parallel, one at a time
// per core, nothing kept), and gathers counts and length statistics: prompt tokens including the expanded image
// tokens (when a tokenizer is given), images per row, pixels before and after resizing. Rows whose images fail
// to decode join the dataset's bad rows.
using System.Collections.Concurrent;
using LmmR1.Infrastructure;
using LmmR1.Text;
using LmmR1.Vision;

namespace LmmR1.Data;

public sealed record Stats(long Count, double Min, double Mean, double Max)
{
    public static Stats Of(IReadOnlyCollection<double> xs) =>
        xs.Count == 0 ? new Stats(0, 0, 0, 0) : new Stats(xs.Count, xs.Min(), xs.Average(), xs.Max());

    public override string ToString() => Count == 0 ? "n/a" : $"min {Min:0.##}  mean {Mean:0.##}  max {Max:0.##}";
}

public sealed record DataCheckReport
{
    public required int Samples { get; init; }
    public required int GoodSamples { get; init; }
    public required IReadOnlyList<BadRow> BadRows { get; init; }
    public required IReadOnlyList<DatasetPart> Parts { get; init; }
    public required IReadOnlyDictionary<string, int> Datasources { get; init; }
    public required int TextOnlyRows { get; init; }
    public required long Images { get; init; }
    public required Stats ImagesPerRow { get; init; }
    public required Stats OriginalPixels { get; init; }
    public required Stats ResizedPixels { get; init; }
    public required Stats ImageTokensPerImage { get; init; }
    /// <summary>Prompt tokens with image placeholders expanded; null without a tokenizer.</summary>
    public Stats? PromptTokens { get; init; }
    /// <summary>Rows whose prompt is longer than --prompt_max_len, when one was given.</summary>
    public int? RowsOverPromptMaxLen { get; init; }
}

public static class DataCheck
{
    public static DataCheckReport Run(PromptDataset data, QwenTokenizer? tokenizer, QwenVLProcessorOptions processor,
                                      int? promptMaxLen = null, int? maxDegreeOfParallelism = null)
    {
        var imageProc = new ImageProcessor(processor.Image);
        int merge = processor.Image.MergeSize;
        var bad = new ConcurrentBag<BadRow>();
        var perRow = new (bool Ok, int Images, long[] Orig, long[] Resized, int[] ImgTokens, int Tokens)[data.Count];
        var opts = new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism ?? Environment.ProcessorCount };
        Parallel.For(0, data.Count, opts, i =>
        {
            var s = data[i];
            int n = s.Images.Count;
            var orig = new long[n];
            var resized = new long[n];
            var tokens = new int[n];
            try
            {
                for (int k = 0; k < n; k++)
                {
                    var (part, r) = (s.Images[k].Part, s.Images[k].Ref);
                    byte[] bytes = r.ReadBytes(processor.HttpTimeout);
                    var rgb = ImageDecoder.Decode(bytes, r.Display).ToRgbLikeQwenVlUtils(); // full decode: catches truncated files
                    orig[k] = rgb.PixelCount;
                    var (h, w) = processor.FetchLikeQwenVlUtils ? QwenVlUtils.TargetSize(rgb.Height, rgb.Width, part, processor.Image) : (rgb.Height, rgb.Width);
                    var grid = imageProc.GridFor(h, w);
                    var (fh, fw) = imageProc.TargetSize(h, w);
                    resized[k] = (long)fh * fw;
                    tokens[k] = grid.Tokens(merge);
                }
                int promptTokens = 0;
                if (tokenizer != null)
                {
                    int[] ids = tokenizer.Encode(s.PromptText());
                    promptTokens = ids.Length - n + tokens.Sum();
                }
                perRow[i] = (true, n, orig, resized, tokens, promptTokens);
            }
            catch (InputException e)
            {
                bad.Add(new BadRow(s.File, s.Line, e.Message));
            }
        });

        var good = Enumerable.Range(0, data.Count).Where(i => perRow[i].Ok).ToList();
        var allBad = data.BadRows.Concat(bad.OrderBy(b => b.File, StringComparer.Ordinal).ThenBy(b => b.Line)).ToList();
        return new DataCheckReport
        {
            Samples = data.Count,
            GoodSamples = good.Count,
            BadRows = allBad,
            Parts = data.Parts,
            Datasources = good.GroupBy(i => data[i].Datasource).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Count()),
            TextOnlyRows = good.Count(i => perRow[i].Images == 0),
            Images = good.Sum(i => (long)perRow[i].Images),
            ImagesPerRow = Stats.Of(good.Select(i => (double)perRow[i].Images).ToList()),
            OriginalPixels = Stats.Of(good.SelectMany(i => perRow[i].Orig).Select(x => (double)x).ToList()),
            ResizedPixels = Stats.Of(good.SelectMany(i => perRow[i].Resized).Select(x => (double)x).ToList()),
            ImageTokensPerImage = Stats.Of(good.SelectMany(i => perRow[i].ImgTokens).Select(x => (double)x).ToList()),
            PromptTokens = tokenizer == null ? null : Stats.Of(good.Select(i => (double)perRow[i].Tokens).ToList()),
            RowsOverPromptMaxLen = tokenizer == null || promptMaxLen == null ? null : good.Count(i => perRow[i].Tokens > promptMaxLen),
        };
    }
}
