using System.Text.Json;
using LmmR1.Data;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using LmmR1.Tests.Text;
using LmmR1.Tests.Vision;
using LmmR1.Text;
using LmmR1.Vision;
using Xunit.Abstractions;

namespace LmmR1.Tests.Data;

public class ProcessorFixtureTests(ITestOutputHelper output)
{
    public static IEnumerable<object[]> Cases()
    {
        int i = 0;
        foreach (var line in File.ReadLines(TestPaths.Fixture("processor", "cases.jsonl")).Where(l => l.Trim().Length > 0))
        {
            yield return [i, line, false];  // transformers' processor alone (how the fixture was made)
            yield return [i, line, true];   // LMM-R1's path: qwen_vl_utils.fetch_image first
            i++;
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesTransformersProcessor(int index, string line, bool qwenVlUtils)
    {
        using var doc = JsonDocument.Parse(line);
        var c = doc.RootElement;
        var proc = new QwenVLProcessor(TokenizerTests.Qwen.Value, new QwenVLProcessorOptions
        {
            Image = new ImageProcessorOptions { MinPixels = 3136, MaxPixels = 401408 },
            FetchLikeQwenVlUtils = qwenVlUtils,
        });
        using var got = proc.Process(ChatMessages.Parse(c.GetProperty("messages")), TestPaths.Fixture("processor"));

        Assert.Equal(c.GetProperty("prompt").GetString(), got.PromptText);
        var ids = c.GetProperty("input_ids").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        Assert.True(ids.SequenceEqual(got.InputIds), $"case {index}: input_ids differ");

        if (!c.TryGetProperty("image_grid_thw", out var gridEl))
        {
            Assert.Null(got.PixelValues);
            Assert.Null(got.ImageGridThw);
            return;
        }
        var grid = gridEl.EnumerateArray().SelectMany(r => r.EnumerateArray().Select(x => x.GetInt64())).ToArray();
        Assert.Equal(grid, got.ImageGridThw!.data<long>().ToArray());
        Assert.Equal([grid.Length / 3, 3], got.ImageGridThw.shape);

        using var st = SafetensorsFile.Open(TestPaths.Fixture("processor", $"case{index}_pixel_values.safetensors"));
        using var expected = st.Load("pixel_values");
        Assert.Equal(TorchSharp.torch.float32, got.PixelValues!.dtype);
        var (mean, max) = ImageProcessorFixtureTests.Diff(expected, got.PixelValues);
        output.WriteLine($"processor case{index} qwen_vl_utils={qwenVlUtils}: mean_abs={mean:G4} max_abs={max:G4}");
        Assert.True(mean <= ImageProcessorFixtureTests.MeanAbsBound, $"mean abs diff {mean}");
        Assert.True(max <= ImageProcessorFixtureTests.MaxAbsBound, $"max abs diff {max}");
    }
}
