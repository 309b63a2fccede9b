// Qwen2-VL's smart_resize: the (height, width) an image is resized to, both multiples of factor (28 = patch 14 ×
// merge 2), the aspect ratio kept as far as possible, pixels within [min_pixels, max_pixels]. Two flavours:
// transformers' (image processor) and qwen_vl_utils' (which also clamps the rounded sides to ≥ factor).
// Python's round() is half-to-even, as is Math.Round; the float operations are done in the same order.
using LmmR1.Infrastructure;

namespace LmmR1.Vision;

public static class SmartResize
{
    public const int MaxAspectRatio = 200;

    /// <summary>transformers' smart_resize (Qwen2VLImageProcessor). Throws InputException for an aspect ratio above 200.</summary>
    public static (int Height, int Width) Transformers(int height, int width, int factor, long minPixels, long maxPixels) =>
        Compute(height, width, factor, minPixels, maxPixels, clampRounded: false);

    /// <summary>qwen_vl_utils' smart_resize (fetch_image): as transformers' but the rounded sides are at least factor.</summary>
    public static (int Height, int Width) QwenVlUtils(int height, int width, int factor, long minPixels, long maxPixels) =>
        Compute(height, width, factor, minPixels, maxPixels, clampRounded: true);

    static (int, int) Compute(int height, int width, int factor, long minPixels, long maxPixels, bool clampRounded)
    {
        if (height <= 0 || width <= 0) throw new InputException($"image size {width}x{height} must be positive");
        double ratio = (double)Math.Max(height, width) / Math.Min(height, width);
        if (ratio > MaxAspectRatio)
            throw new InputException($"image of {width}x{height}: absolute aspect ratio must be smaller than {MaxAspectRatio}, got {ratio}");
        long hBar = (long)Math.Round((double)height / factor) * factor;
        long wBar = (long)Math.Round((double)width / factor) * factor;
        if (clampRounded) { hBar = Math.Max(factor, hBar); wBar = Math.Max(factor, wBar); }
        double hw = (double)height * width;
        if (hBar * wBar > maxPixels)
        {
            double beta = Math.Sqrt(hw / maxPixels);
            hBar = Math.Max(factor, (long)Math.Floor(height / beta / factor) * factor);
            wBar = Math.Max(factor, (long)Math.Floor(width / beta / factor) * factor);
        }
        else if (hBar * wBar < minPixels)
        {
            double beta = Math.Sqrt(minPixels / hw);
            hBar = (long)Math.Ceiling(height * beta / factor) * factor;
            wBar = (long)Math.Ceiling(width * beta / factor) * factor;
        }
        return (checked((int)hBar), checked((int)wBar));
    }
}
