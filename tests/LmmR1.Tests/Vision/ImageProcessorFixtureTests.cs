using System.Text.Json;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using LmmR1.Vision;
using Xunit.Abstractions;

namespace LmmR1.Tests.Vision;

public class ImageProcessorFixtureTests(ITestOutputHelper output)
{
    // The target from fixtures/README.md, asserted on every case.
    internal const double MeanAbsBound = 0.01, MaxAbsBound = 0.1;

    public static IEnumerable<object[]> Cases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(TestPaths.Fixture("image-processor", "cases.json")));
        int i = 0;
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
            foreach (var backend in new[] { ResampleKernel.Torchvision, ResampleKernel.Pil })
                yield return [i, c.GetRawText(), backend];
        i++;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void MatchesTransformersOnFixtureImages(int _, string caseJson, ResampleKernel backend)
    {
        using var doc = JsonDocument.Parse(caseJson);
        var c = doc.RootElement;
        string image = c.GetProperty("image").GetString()!;
        var s = c.GetProperty("settings");
        var proc = new ImageProcessor(new ImageProcessorOptions
        {
            MinPixels = s.GetProperty("min_pixels").GetInt64(), MaxPixels = s.GetProperty("max_pixels").GetInt64(), Backend = backend,
        });
        var rgb = ImageDecoder.Decode(File.ReadAllBytes(TestPaths.Fixture("image-processor", image)), image).ToRgbLikeTransformers();

        if (c.TryGetProperty("error", out var err))
        {
            // transformers raised for this image and setting: so must we.
            Assert.ThrowsAny<Exception>(() => proc.Process(rgb));
            output.WriteLine($"{image} expected error {err.GetString()}");
            return;
        }
        var got = proc.Process(rgb);
        var grid = c.GetProperty("grid")[0].EnumerateArray().Select(x => x.GetInt32()).ToArray();
        Assert.Equal(grid, new[] { got.Grid.T, got.Grid.H, got.Grid.W });

        using var st = SafetensorsFile.Open(TestPaths.Fixture("image-processor", c.GetProperty("tensors").GetString()!));
        using var expected = st.Load("pixel_values");
        using var expectedGrid = st.Load("image_grid_thw");
        Assert.Equal(grid.Select(x => (long)x).ToArray(), expectedGrid.data<long>().ToArray());
        using var actual = got.ToTensor();
        var (mean, max) = Diff(expected, actual);
        output.WriteLine($"{c.GetProperty("tensors").GetString()} {image} min={s.GetProperty("min_pixels")} max={s.GetProperty("max_pixels")} backend={backend}: mean_abs={mean:G4} max_abs={max:G4}");
        Assert.True(mean <= MeanAbsBound, $"mean abs diff {mean} > {MeanAbsBound}");
        Assert.True(max <= MaxAbsBound, $"max abs diff {max} > {MaxAbsBound}");
    }

    internal static (double Mean, double Max) Diff(TorchSharp.torch.Tensor expected, TorchSharp.torch.Tensor actual)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var d = (expected.to(TorchSharp.torch.float64) - actual.to(TorchSharp.torch.float64)).abs();
        return (d.mean().item<double>(), d.max().item<double>());
    }
}
