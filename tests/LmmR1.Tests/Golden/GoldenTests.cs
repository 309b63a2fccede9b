using System.Text.Json;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using LmmR1.Tests.Vision;
using LmmR1.Vision;
using Xunit.Abstractions;

namespace LmmR1.Tests.Golden;

/// <summary>
/// Goldens made by make_image_goldens_1.py / _2.py (this folder) with Pillow 12.3, torchvision 0.26 (torch 2.11) and
/// transformers 5.17 on the GPU machine: resizes of both kernels (bit-exact), RGBA handling, what PIL decodes from
/// JPEG/WebP/GIF/BMP/grey/palette/LA files, and transformers' PIL image processor (Qwen2VLImageProcessorPil).
/// </summary>
public class GoldenTests(ITestOutputHelper output)
{
    static readonly string Dir = Path.Combine(TestPaths.RepoRoot, "tests", "LmmR1.Tests", "Golden", "data");
    static readonly Lazy<JsonElement> Manifest = new(() => JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "manifest.json"))).RootElement);

    static RgbImage Png(string name) => ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(Dir, name)), name).ToRgbLikeQwenVlUtils();

    static IEnumerable<object[]> Entries(string key) =>
        Manifest.Value.GetProperty(key).EnumerateArray().Select(e => new object[] { e.GetRawText() });

    public static IEnumerable<object[]> Resizes() => Entries("resize");
    public static IEnumerable<object[]> Decodes() => Entries("decode");
    public static IEnumerable<object[]> PilProcessor() => Entries("processor_pil");

    [Theory]
    [MemberData(nameof(Resizes))]
    public void ResizeIsBitExact(string json)
    {
        var e = JsonDocument.Parse(json).RootElement;
        var kernel = e.GetProperty("kernel").GetString() == "pil" ? ResampleKernel.Pil : ResampleKernel.Torchvision;
        var got = BicubicResampler.Resize(Png(e.GetProperty("input").GetString()!), e.GetProperty("width").GetInt32(), e.GetProperty("height").GetInt32(), kernel);
        var want = Png(e.GetProperty("output").GetString()!);
        int diff = got.Pixels.Zip(want.Pixels).Count(p => p.First != p.Second);
        Assert.True(diff == 0, $"{e.GetProperty("output").GetString()}: {diff} of {want.Pixels.Length} values differ");
    }

    [Fact]
    public void RgbaToRgbMatchesPillow()
    {
        foreach (var e in Manifest.Value.GetProperty("to_rgb").EnumerateArray())
        {
            var d = ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(Dir, e.GetProperty("input").GetString()!)), "rgba");
            Assert.Equal(Png(e.GetProperty("qwen_vl_utils").GetString()!).Pixels, d.ToRgbLikeQwenVlUtils().Pixels);
            Assert.Equal(Png(e.GetProperty("transformers").GetString()!).Pixels, d.ToRgbLikeTransformers().Pixels);
        }
    }

    [Theory]
    [MemberData(nameof(Decodes))]
    public void DecodingMatchesPillow(string json)
    {
        var e = JsonDocument.Parse(json).RootElement;
        string name = e.GetProperty("input").GetString()!;
        var got = ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(Dir, name)), name).ToRgbLikeQwenVlUtils();
        var want = Png(e.GetProperty("rgb").GetString()!);
        Assert.Equal((want.Width, want.Height), (got.Width, got.Height));
        int max = got.Pixels.Zip(want.Pixels).Max(p => Math.Abs(p.First - p.Second));
        double mean = got.Pixels.Zip(want.Pixels).Average(p => Math.Abs(p.First - p.Second));
        output.WriteLine($"{name} (PIL mode {e.GetProperty("pil_mode").GetString()}): max {max} levels, mean {mean:G3}");
        // Measured: every format, JPEG and lossy WebP included, decodes to exactly PIL's pixels (Skia's libjpeg-turbo
        // and libwebp round as Pillow 12.3's do).
        Assert.True(max == 0, $"{name}: max {max}, mean {mean}");
    }

    [Theory]
    [MemberData(nameof(PilProcessor))]
    public void PilBackendMatchesTransformersPilProcessor(string json)
    {
        var e = JsonDocument.Parse(json).RootElement;
        string image = e.GetProperty("image").GetString()!;
        var proc = new ImageProcessor(new ImageProcessorOptions
        {
            MinPixels = e.GetProperty("min_pixels").GetInt64(), MaxPixels = e.GetProperty("max_pixels").GetInt64(), Backend = ResampleKernel.Pil,
        });
        var rgb = ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(Dir, image)), image).ToRgbLikeTransformers();
        var got = proc.Process(rgb);
        using var st = SafetensorsFile.Open(Path.Combine(Dir, e.GetProperty("tensors").GetString()!));
        using var want = st.Load("pixel_values");
        using var actual = got.ToTensor();
        var (mean, max) = ImageProcessorFixtureTests.Diff(want, actual);
        output.WriteLine($"{image} PIL backend vs transformers' PIL processor: mean {mean:G3} max {max:G3}");
        Assert.Equal(0.0, max);
    }
}
