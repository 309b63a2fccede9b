using LmmR1.Infrastructure;
using LmmR1.Text;
using LmmR1.Vision;
using SkiaSharp;
using TorchSharp;

namespace LmmR1.Tests.Vision;

public class SmartResizeTests
{
    [Theory]
    // QWEN2VL_SPEC §7 examples (max_pixels 12845056 unless given).
    [InlineData(480, 640, 12845056, 476, 644)]
    [InlineData(1080, 1920, 12845056, 1092, 1932)]
    [InlineData(1080, 1920, 1003520, 728, 1316)]
    [InlineData(4000, 6000, 12845056, 2912, 4368)]
    // Fixture grids ×14: 37×100 → 28×112 (round), 29×31 → 56×84 (raised to min_pixels 3136).
    [InlineData(37, 100, 125440, 28, 112)]
    [InlineData(29, 31, 125440, 56, 84)]
    public void MatchesKnownSizes(int h, int w, long maxPixels, int eh, int ew) =>
        Assert.Equal((eh, ew), SmartResize.Transformers(h, w, 28, 3136, maxPixels));

    [Fact]
    public void TinyImagesGrowToMinPixelsAndExtremeRatiosAreErrors()
    {
        Assert.Equal((56, 56), SmartResize.Transformers(1, 1, 28, 3136, 12845056));
        Assert.Equal((28, 4004), SmartResize.Transformers(20, 4000, 28, 3136, 12845056));  // ratio exactly 200 is allowed
        var e = Assert.Throws<InputException>(() => SmartResize.Transformers(10, 2010, 28, 3136, 12845056));
        Assert.Contains("aspect ratio", e.Message);
        // qwen_vl_utils clamps rounded sides to ≥ 28 before the pixel bounds: 10×500 rounds to 0×504 in transformers.
        Assert.Equal((28, 504), SmartResize.QwenVlUtils(10, 500, 28, 3136, 12845056));
        // transformers: 0×504 is below min_pixels, so both sides scale up: ceil(10·0.792/28)·28 = 28, ceil(500·0.792/28)·28 = 420.
        Assert.Equal((28, 420), SmartResize.Transformers(10, 500, 28, 3136, 12845056));
    }
}

public class ResamplerTests
{
    static RgbImage Random(int w, int h, int seed)
    {
        var px = new byte[w * h * 3];
        new Random(seed).NextBytes(px);
        return new RgbImage(w, h, px);
    }

    [Theory]
    [InlineData(ResampleKernel.Torchvision)]
    [InlineData(ResampleKernel.Pil)]
    public void ConstantImagesStayConstantAndSameSizeIsIdentity(ResampleKernel k)
    {
        var px = new byte[50 * 30 * 3];
        for (int i = 0; i < px.Length; i += 3) (px[i], px[i + 1], px[i + 2]) = (17, 200, 255);
        var img = new RgbImage(50, 30, px);
        foreach (var (w, h) in new[] { (13, 7), (112, 84), (50, 90), (3, 30) })
        {
            var r = BicubicResampler.Resize(img, w, h, k);
            for (int i = 0; i < r.Pixels.Length; i += 3) Assert.Equal((17, 200, 255), (r.Pixels[i], r.Pixels[i + 1], r.Pixels[i + 2]));
        }
        Assert.Same(img, BicubicResampler.Resize(img, 50, 30, k));
    }

    [Theory]
    [InlineData(ResampleKernel.Torchvision)]
    [InlineData(ResampleKernel.Pil)]
    public void TransposeCommutesWithResize(ResampleKernel k)
    {
        // The vertical pass applies the same 1-D weights as the horizontal one: resizing one axis of the transposed
        // image gives exactly the transposed result.
        var img = Random(41, 23, 3);
        var a = BicubicResampler.Resize(img, 28, 23, k);
        var b = Transpose(BicubicResampler.Resize(Transpose(img), 23, 28, k));
        Assert.Equal(a.Pixels, b.Pixels);
        var c = BicubicResampler.Resize(img, 41, 9, k);
        var d = Transpose(BicubicResampler.Resize(Transpose(img), 9, 41, k));
        Assert.Equal(c.Pixels, d.Pixels);
    }

    [Theory]
    [InlineData(ResampleKernel.Torchvision, 23, 17)]
    [InlineData(ResampleKernel.Pil, 23, 17)]
    [InlineData(ResampleKernel.Torchvision, 90, 140)]
    [InlineData(ResampleKernel.Pil, 90, 140)]
    public void AgreesWithAFloatingPointAntialiasedBicubicWithinTwoLevels(ResampleKernel k, int w, int h)
    {
        // Independent reference: the textbook separable filter (Keys a = -0.5, support scaled by the downscale factor,
        // normalised weights) in double precision with one rounding per pass.
        var img = Random(61, 47, 5);
        var got = BicubicResampler.Resize(img, w, h, k);
        var refImg = RefPass(RefPass(img, w, horizontal: true), h, horizontal: false);
        int worst = got.Pixels.Zip(refImg.Pixels).Max(p => Math.Abs(p.First - p.Second));
        Assert.True(worst <= 2, $"max difference {worst} levels");
    }

    static RgbImage RefPass(RgbImage src, int outSize, bool horizontal)
    {
        int inSize = horizontal ? src.Width : src.Height;
        if (inSize == outSize) return src;
        int w = horizontal ? outSize : src.Width, h = horizontal ? src.Height : outSize;
        var dst = new byte[w * h * 3];
        double scale = (double)inSize / outSize, fs = Math.Max(1, scale), support = 2 * fs;
        static double Cubic(double x) { x = Math.Abs(x); return x < 1 ? 1.5 * x * x * x - 2.5 * x * x + 1 : x < 2 ? -0.5 * x * x * x + 2.5 * x * x - 4 * x + 2 : 0; }
        for (int o = 0; o < outSize; o++)
        {
            double center = (o + 0.5) * scale;
            int lo = Math.Max(0, (int)Math.Floor(center - support)), hi = Math.Min(inSize - 1, (int)Math.Ceiling(center + support));
            var taps = Enumerable.Range(lo, hi - lo + 1).Select(i => (i, wt: Cubic((i + 0.5 - center) / fs))).ToList();
            double total = taps.Sum(t => t.wt);
            int other = horizontal ? h : w;
            for (int q = 0; q < other; q++)
                for (int c = 0; c < 3; c++)
                {
                    double acc = 0;
                    foreach (var (i, wt) in taps)
                        acc += wt / total * src.Pixels[((horizontal ? q * src.Width + i : i * src.Width + q) * 3) + c];
                    int x = horizontal ? o : q, y = horizontal ? q : o;
                    dst[(y * w + x) * 3 + c] = (byte)Math.Clamp(Math.Round(acc), 0, 255);
                }
        }
        return new RgbImage(w, h, dst);
    }

    static RgbImage Transpose(RgbImage img)
    {
        var px = new byte[img.Pixels.Length];
        for (int y = 0; y < img.Height; y++)
            for (int x = 0; x < img.Width; x++)
                for (int c = 0; c < 3; c++) px[(x * img.Height + y) * 3 + c] = img.Pixels[(y * img.Width + x) * 3 + c];
        return new RgbImage(img.Height, img.Width, px);
    }
}

public class ImageProcessorLayoutTests
{
    [Fact]
    public void PatchOrderEqualsTheSpecReshapeAndPermute()
    {
        // 56×84 is already a multiple of 28 inside the pixel bounds: no resize, so only normalisation and layout act.
        int h = 56, w = 84;
        var px = new byte[h * w * 3];
        new Random(11).NextBytes(px);
        var proc = new ImageProcessor(new ImageProcessorOptions { MinPixels = 3136, MaxPixels = 1 << 20 });
        var got = proc.Process(new RgbImage(w, h, px));
        Assert.Equal(new ImageGrid(1, 4, 6), got.Grid);

        // Spec §7 with torch ops: normalise, [T=2, C, H, W], reshape [1,2,C,2,2,14,3,2,14], permute (0,3,6,4,7,2,1,5,8).
        using var scope = torch.NewDisposeScope();
        var img = torch.tensor(px.Select(b => (float)b).ToArray(), [h, w, 3]).permute(2, 0, 1);               // [C, H, W]
        var mean = torch.tensor(new[] { 0.48145466f, 0.4578275f, 0.40821073f }).mul(255f).view(3, 1, 1);
        var std = torch.tensor(new[] { 0.26862954f, 0.26130258f, 0.27577711f }).mul(255f).view(3, 1, 1);
        var norm = (img - mean) / std;
        var frames = torch.stack([norm, norm]);                                                                // [2, C, H, W]
        var expected = frames.reshape(1, 2, 3, 2, 2, 14, 3, 2, 14).permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(24, 1176);
        using var actual = got.ToTensor();
        Assert.True(expected.Equals(actual), "patch layout differs from the spec's reshape/permute");
    }

    [Fact]
    public void ProcessorKwargsOverrideBoundsAndRejectTypos()
    {
        var o = new ImageProcessorOptions().WithProcessorKwargs("{\"min_pixels\": 3136, \"max_pixels\": 401408}");
        Assert.Equal((3136L, 401408L), (o.MinPixels, o.MaxPixels));
        Assert.Throws<InputException>(() => new ImageProcessorOptions().WithProcessorKwargs("{\"max_pixel\": 5}"));
        Assert.Throws<InputException>(() => new ImageProcessorOptions().WithProcessorKwargs("{\"min_pixels\": 10, \"max_pixels\": 5}"));
    }
}

public class ImageDecoderTests
{
    static byte[] Encode(int w, int h, Func<int, int, (byte R, byte G, byte B, byte A)> f, SKEncodedImageFormat fmt, int quality = 100)
    {
        using var bmp = new SKBitmap(new SKImageInfo(w, h, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) { var (r, g, b, a) = f(x, y); bmp.SetPixel(x, y, new SKColor(r, g, b, a)); }
        using var data = bmp.Encode(fmt, quality);
        return data.ToArray();
    }

    [Fact]
    public void RgbaPngIsPastedOnWhiteWithPillowRounding()
    {
        // Expected values: round((c·a + 255·(255 − a)) / 255), computed by hand.
        (byte, byte)[] cases = [(200, 128), (0, 1), (10, 254), (255, 0), (0, 0), (37, 77), (100, 255)];
        byte[] expect = [227, 254, 11, 255, 255, 189, 100];
        var png = Encode(cases.Length, 1, (x, _) => (cases[x].Item1, cases[x].Item1, cases[x].Item1, cases[x].Item2), SKEncodedImageFormat.Png);
        var d = ImageDecoder.Decode(png, "rgba.png");
        Assert.True(d.PilRgbaMode);
        var q = d.ToRgbLikeQwenVlUtils();
        var t = d.ToRgbLikeTransformers();
        for (int i = 0; i < cases.Length; i++)
        {
            Assert.Equal(expect[i], q.Pixels[3 * i]);
            Assert.Equal(expect[i], t.Pixels[3 * i]);
        }
    }

    [Fact]
    public void DecodesJpegWebpGifAndBmp()
    {
        (byte, byte, byte, byte) F(int x, int y) => ((byte)(x * 40), (byte)(y * 60), 90, 255);
        var jpeg = ImageDecoder.Decode(Encode(6, 4, F, SKEncodedImageFormat.Jpeg), "a.jpg");
        Assert.Equal(("Jpeg", 6, 4, false), (jpeg.Format, jpeg.Width, jpeg.Height, jpeg.PilRgbaMode));
        var rgbJ = jpeg.ToRgbLikeQwenVlUtils();
        Assert.True(Math.Abs(rgbJ.Pixels[(3 * 6 + 5) * 3] - 200) <= 12, "JPEG at quality 100 keeps colours close");

        var webp = ImageDecoder.Decode(Encode(6, 4, F, SKEncodedImageFormat.Webp, 100), "a.webp");
        Assert.Equal((6, 4), (webp.Width, webp.Height));
        Assert.Equal(F(5, 3).Item1, webp.ToRgbLikeQwenVlUtils().Pixels[(3 * 6 + 5) * 3]); // quality 100 is lossless

        // A 1×1 GIF whose only pixel is palette entry 0 = (5, 4, 4).
        var gif = ImageDecoder.Decode(Convert.FromBase64String("R0lGODlhAQABAIAAAAUEBAAAACwAAAAAAQABAAACAkQBADs="), "a.gif");
        Assert.Equal([5, 4, 4], gif.ToRgbLikeQwenVlUtils().Pixels);

        // A 2×2 24-bit BMP written by hand: rows bottom-up, BGR, padded to 4 bytes.
        byte[] bmp =
        [
            0x42, 0x4D, 70, 0, 0, 0, 0, 0, 0, 0, 54, 0, 0, 0, 40, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 24, 0, 0, 0, 0, 0,
            16, 0, 0, 0, 0x13, 0x0B, 0, 0, 0x13, 0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 255, 0, 255, 0, 0, 0,      // bottom row: red, green
            255, 0, 0, 10, 20, 30, 0, 0,     // top row: blue, (30, 20, 10)
        ];
        var b = ImageDecoder.Decode(bmp, "a.bmp").ToRgbLikeQwenVlUtils();
        Assert.Equal(new byte[] { 0, 0, 255, 30, 20, 10, 255, 0, 0, 0, 255, 0 }, b.Pixels);
    }

    [Fact]
    public void GarbageAndTruncatedFilesAreInputErrors()
    {
        Assert.Throws<InputException>(() => ImageDecoder.Decode("not an image"u8.ToArray(), "x.png"));
        var png = Encode(64, 64, (x, y) => ((byte)(x * 3), (byte)(y * 3), (byte)(x ^ y), 255), SKEncodedImageFormat.Png);
        var e = Assert.Throws<InputException>(() => ImageDecoder.Decode(png[..(png.Length / 2)], "half.png"));
        Assert.Contains("half.png", e.Message);
    }

    [Fact]
    public void ImageSourcesResolveLikeQwenVlUtils()
    {
        string dir = Support.TestPaths.NewTempDir("imgsrc");
        var png = Encode(2, 2, (_, _) => (1, 2, 3, 255), SKEncodedImageFormat.Png);
        File.WriteAllBytes(Path.Combine(dir, "a.png"), png);
        Assert.Equal(png, ImageRef.Resolve("a.png", dir).ReadBytes());
        Assert.Equal(png, ImageRef.Resolve("file://a.png", dir).ReadBytes());
        Assert.Equal(png, ImageRef.Resolve("file://" + Path.Combine(dir, "a.png"), "/elsewhere").ReadBytes());
        Assert.Equal(png, ImageRef.Resolve("data:image/png;base64," + Convert.ToBase64String(png), dir).ReadBytes());
        Assert.Throws<InputException>(() => ImageRef.Resolve("data:image/png,rawbytes", dir));
        Assert.Throws<InputException>(() => ImageRef.Resolve("data:image/png;base64,@@@", dir).ReadBytes());
        Assert.Throws<InputException>(() => ImageRef.Resolve("missing.png", dir).ReadBytes());
        Assert.Equal(ImageSourceKind.Url, ImageRef.Resolve("https://example.invalid/x.png", dir).Kind);
        // No network here (or an unresolvable host): a clear error, not a hang.
        var e = Assert.Throws<InputException>(() => ImageRef.Resolve("http://nonexistent.invalid/x.png", dir).ReadBytes(TimeSpan.FromSeconds(5)));
        Assert.Contains("nonexistent.invalid", e.Message);
    }

    [Fact]
    public void QwenVlUtilsPerImageOverrides()
    {
        var proc = new ImageProcessorOptions { MinPixels = 3136, MaxPixels = 50176 };
        // "type": "image" parts take the processor's bounds (LMM-R1's _add_pixel_bounds) ...
        Assert.Equal((168, 252), QwenVlUtils.TargetSize(480, 640, ContentPart.FromImage("x"), proc));
        // ... their own min/max_pixels win ...
        Assert.Equal((476, 644), QwenVlUtils.TargetSize(480, 640, ContentPart.FromImage("x", new ImagePartOptions(MaxPixels: 12845056)), proc));
        // ... resized_height/width are snapped with factor 28 and qwen_vl_utils' own bounds.
        Assert.Equal((280, 420), QwenVlUtils.TargetSize(480, 640, ContentPart.FromImage("x", new ImagePartOptions(ResizedHeight: 290, ResizedWidth: 410)), proc));
        // A part recognised only by its "image" key (no "type") falls back to qwen_vl_utils' defaults.
        var untyped = new ContentPart { Kind = ContentPartKind.Image, ImageSource = "x" };
        Assert.Equal((476, 644), QwenVlUtils.TargetSize(480, 640, untyped, proc));
    }
}
