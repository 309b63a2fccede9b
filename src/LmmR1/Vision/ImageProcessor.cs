// Qwen2VLImageProcessor for one RGB image (QWEN2VL_SPEC §7): smart_resize, bicubic resize with antialias on
// uint8, rescale 1/255 + CLIP mean/std (fused as in transformers 5, or the slow processor's order for the Pil
// backend), the image repeated to temporal_patch_size frames, and patches laid out as
// [t, h/2, w/2, 2, 2 | C, T, 14, 14] → [t·h·w, 1176] with image_grid_thw = (1, h/14, w/14).
using TorchSharp;

namespace LmmR1.Vision;

/// <summary>image_grid_thw of one image, in patches.</summary>
public readonly record struct ImageGrid(int T, int H, int W)
{
    public int Patches => T * H * W;
    /// <summary>Placeholder tokens in the prompt: t·h·w / merge².</summary>
    public int Tokens(int mergeSize = 2) => Patches / (mergeSize * mergeSize);
}

/// <summary>One image's pixel_values rows ([Grid.Patches, PatchDim] float32, row-major) and its grid.</summary>
public sealed class ImagePatches
{
    public required ImageGrid Grid { get; init; }
    public required int PatchDim { get; init; }
    public required float[] Values { get; init; }
    /// <summary>Size the image was resized to before patching.</summary>
    public required int ResizedHeight { get; init; }
    public required int ResizedWidth { get; init; }

    /// <summary>A new float32 CPU tensor [patches, PatchDim].</summary>
    public torch.Tensor ToTensor() => torch.tensor(Values, [Grid.Patches, PatchDim], torch.float32);

    /// <summary>pixel_values of several images: the rows concatenated in order ([Σ patches, PatchDim]).</summary>
    public static torch.Tensor Concat(IReadOnlyList<ImagePatches> images, int patchDim)
    {
        long rows = images.Sum(i => (long)i.Grid.Patches);
        var all = new float[checked(rows * patchDim)];
        long at = 0;
        foreach (var i in images) { Array.Copy(i.Values, 0, all, at, i.Values.Length); at += i.Values.Length; }
        return torch.tensor(all, [rows, patchDim], torch.float32);
    }

    /// <summary>image_grid_thw of several images: int64 [n, 3].</summary>
    public static torch.Tensor GridTensor(IReadOnlyList<ImagePatches> images)
    {
        var g = new long[images.Count * 3];
        for (int i = 0; i < images.Count; i++) (g[3 * i], g[3 * i + 1], g[3 * i + 2]) = (images[i].Grid.T, images[i].Grid.H, images[i].Grid.W);
        return torch.tensor(g, [images.Count, 3], torch.int64);
    }
}

public sealed class ImageProcessor
{
    readonly float[][] lut; // per channel: normalised value of each uint8 level

    public ImageProcessorOptions Options { get; }

    public ImageProcessor(ImageProcessorOptions? options = null)
    {
        Options = (options ?? new ImageProcessorOptions()).Validate();
        lut = new float[3][];
        for (int c = 0; c < 3; c++)
        {
            lut[c] = new float[256];
            float mean = Options.ImageMean[c], std = Options.ImageStd[c];
            float mean255 = mean * 255f, std255 = std * 255f; // transformers 5 fuses rescale into mean/std (float32)
            for (int v = 0; v < 256; v++)
                lut[c][v] = Options.Backend == ResampleKernel.Torchvision
                    ? ((float)v - mean255) / std255
                    : ((float)(v * (1.0 / 255.0)) - mean) / std; // slow processor: float64 rescale → float32, then normalise
        }
    }

    /// <summary>The (height, width) transformers' smart_resize gives for this processor's pixel bounds.</summary>
    public (int Height, int Width) TargetSize(int height, int width) =>
        SmartResize.Transformers(height, width, Options.Factor, Options.MinPixels, Options.MaxPixels);

    /// <summary>Grid of an image of this size, without touching pixels (for statistics).</summary>
    public ImageGrid GridFor(int height, int width)
    {
        var (h, w) = TargetSize(height, width);
        return new ImageGrid(1, h / Options.PatchSize, w / Options.PatchSize);
    }

    public ImagePatches Process(RgbImage image)
    {
        var o = Options;
        var (h, w) = TargetSize(image.Height, image.Width);
        var img = BicubicResampler.Resize(image, w, h, o.Backend);
        int p = o.PatchSize, m = o.MergeSize, T = o.TemporalPatchSize;
        int gh = h / p, gw = w / p, dim = o.PatchDim;
        var values = new float[(long)gh * gw * dim];
        byte[] px = img.Pixels;
        int bw = gw / m;
        Parallel.For(0, gh / m, bh =>
        {
            for (int bx = 0; bx < bw; bx++)
                for (int mh = 0; mh < m; mh++)
                    for (int mw = 0; mw < m; mw++)
                    {
                        int row = ((bh * bw + bx) * m + mh) * m + mw;  // [h/2, w/2, 2, 2] order
                        int r = bh * m + mh, c = bx * m + mw;           // patch row / column
                        int baseOut = row * dim;
                        for (int ch = 0; ch < 3; ch++)
                        {
                            float[] l = lut[ch];
                            for (int py = 0; py < p; py++)
                            {
                                int src = ((r * p + py) * w + c * p) * 3 + ch;
                                int dst0 = baseOut + (ch * T * p + py) * p; // frame 0 of [C, T, 14, 14]
                                for (int pxi = 0; pxi < p; pxi++) values[dst0 + pxi] = l[px[src + 3 * pxi]];
                                for (int t = 1; t < T; t++)                 // the image repeated over the temporal patch
                                    Array.Copy(values, dst0, values, dst0 + t * p * p, p);
                            }
                        }
                    }
        });
        return new ImagePatches { Grid = new ImageGrid(1, gh, gw), PatchDim = dim, Values = values, ResizedHeight = h, ResizedWidth = w };
    }
}
