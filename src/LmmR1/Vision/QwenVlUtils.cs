// qwen_vl_utils.fetch_image as LMM-R1 runs it before the Hugging Face processor: decode, to_rgb (RGBA pasted on
// white), then a Pillow BICUBIC resize to smart_resize(…, factor 28) of either the part's resized_height/width
// (bounded by qwen_vl_utils' own 3136…12845056) or the image size bounded by the part's min/max_pixels. LMM-R1's
// _add_pixel_bounds fills those from --processor_kwargs only for parts with "type": "image"; other image parts
// fall back to qwen_vl_utils' module defaults.
using LmmR1.Text;

namespace LmmR1.Vision;

public static class QwenVlUtils
{
    public const long MinPixels = 4 * 28 * 28;
    public const long MaxPixels = 16384 * 28 * 28;
    public const int Factor = 28;

    /// <summary>The (height, width) fetch_image resizes an image of the given size to.</summary>
    public static (int Height, int Width) TargetSize(int height, int width, ContentPart part, ImageProcessorOptions processor)
    {
        var o = part.ImageOptions;
        if (o.ResizedHeight is { } rh && o.ResizedWidth is { } rw)
            return SmartResize.QwenVlUtils(checked((int)rh), checked((int)rw), Factor, MinPixels, MaxPixels);
        bool typed = part.Type == "image";
        long min = o.MinPixels ?? (typed ? processor.MinPixels : MinPixels);
        long max = o.MaxPixels ?? (typed ? processor.MaxPixels : MaxPixels);
        return SmartResize.QwenVlUtils(height, width, Factor, min, max);
    }

    /// <summary>fetch_image on already-read bytes.</summary>
    public static RgbImage FetchImage(byte[] bytes, string name, ContentPart part, ImageProcessorOptions processor)
    {
        var rgb = ImageDecoder.Decode(bytes, name).ToRgbLikeQwenVlUtils();
        var (h, w) = TargetSize(rgb.Height, rgb.Width, part, processor);
        return BicubicResampler.Resize(rgb, w, h, ResampleKernel.Pil);
    }
}
