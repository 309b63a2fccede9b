// Decodes PNG/JPEG/WebP/GIF (first frame)/BMP bytes with SkiaSharp into unpremultiplied RGBA without colour
// management or EXIF rotation (as PIL's Image.open does), then turns them into RGB the way the Python side does:
// qwen_vl_utils' to_rgb pastes mode-"RGBA" images on white with the alpha as mask and drops alpha otherwise;
// transformers' convert_to_rgb alpha-composites any image with transparency over white. Both with Pillow's
// integer rounding. Known gap: Skia may zero the colour of fully transparent GIF pixels, where PIL keeps the
// palette colour (only visible when alpha is dropped).
using System.Runtime.InteropServices;
using LmmR1.Infrastructure;
using SkiaSharp;

namespace LmmR1.Vision;

public sealed class DecodedImage
{
    public required int Width { get; init; }
    public required int Height { get; init; }
    /// <summary>Height × Width × 4 bytes, unpremultiplied R G B A.</summary>
    public required byte[] Rgba { get; init; }
    public required string Format { get; init; }
    /// <summary>Whether PIL would open the file in mode "RGBA" (PNG colour type 6, WebP or BMP with alpha).</summary>
    public required bool PilRgbaMode { get; init; }
    /// <summary>Whether any pixel is not fully opaque.</summary>
    public bool HasTransparency
    {
        get
        {
            for (int i = 3; i < Rgba.Length; i += 4) if (Rgba[i] != 255) return true;
            return false;
        }
    }

    /// <summary>qwen_vl_utils.to_rgb: RGBA-mode images pasted on white using alpha as the mask; other modes drop alpha.</summary>
    public RgbImage ToRgbLikeQwenVlUtils()
    {
        var rgb = new byte[Width * Height * 3];
        for (int i = 0, j = 0; i < Rgba.Length; i += 4, j += 3)
        {
            int a = PilRgbaMode ? Rgba[i + 3] : 255;
            for (int c = 0; c < 3; c++)
            {
                // Paste.c BLEND: DIV255(out * (255 - mask) + in * mask) with out = 255.
                int t = 255 * (255 - a) + Rgba[i + c] * a + 128;
                rgb[j + c] = (byte)(((t >> 8) + t) >> 8);
            }
        }
        return new RgbImage(Width, Height, rgb);
    }

    /// <summary>transformers' convert_to_rgb: Image.alpha_composite(white, image.convert("RGBA")).convert("RGB").</summary>
    public RgbImage ToRgbLikeTransformers()
    {
        var rgb = new byte[Width * Height * 3];
        for (int i = 0, j = 0; i < Rgba.Length; i += 4, j += 3)
        {
            int a = Rgba[i + 3];
            if (a == 0) { rgb[j] = rgb[j + 1] = rgb[j + 2] = 255; continue; }
            // AlphaComposite.c with an opaque white destination, PRECISION_BITS = 7.
            const int bits = 7;
            uint outa255 = (uint)(a * 255 + 255 * (255 - a));
            uint coef1 = (uint)a * 255u * 255u * (1u << bits) / outa255;
            uint coef2 = 255u * (1u << bits) - coef1;
            for (int c = 0; c < 3; c++)
            {
                uint t = Rgba[i + c] * coef1 + 255u * coef2 + (0x80u << bits);
                rgb[j + c] = (byte)((((t >> 8) + t) >> 8) >> bits);
            }
        }
        return new RgbImage(Width, Height, rgb);
    }
}

public static class ImageDecoder
{
    /// <summary>Decodes an encoded image. <paramref name="name"/> is used in error messages.</summary>
    public static DecodedImage Decode(byte[] bytes, string name)
    {
        if (bytes.Length == 0) throw new InputException($"{name}: not a decodable image: the file is empty (0 bytes)");
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data)
            ?? throw new InputException($"{name}: not a decodable image (expected PNG, JPEG, WebP, GIF or BMP)");
        var info = codec.Info;
        if (info.Width <= 0 || info.Height <= 0) throw new InputException($"{name}: image has size {info.Width}x{info.Height}");
        if ((long)info.Width * info.Height > 1L << 28) throw new InputException($"{name}: image of {info.Width}x{info.Height} is too large to decode");
        var dst = new SKImageInfo(info.Width, info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[info.Width * info.Height * 4];
        var handle = GCHandle.Alloc(rgba, GCHandleType.Pinned);
        SKCodecResult result;
        try { result = codec.GetPixels(dst, handle.AddrOfPinnedObject()); }
        finally { handle.Free(); }
        if (result is not (SKCodecResult.Success or SKCodecResult.IncompleteInput))
            throw new InputException($"{name}: image could not be decoded ({result})");
        if (result == SKCodecResult.IncompleteInput)
            throw new InputException($"{name}: image data is truncated");
        var format = codec.EncodedFormat;
        bool pilRgba = format switch
        {
            SKEncodedImageFormat.Png => PngColorType(bytes) == 6,
            SKEncodedImageFormat.Webp or SKEncodedImageFormat.Bmp => info.AlphaType != SKAlphaType.Opaque,
            _ => false,
        };
        return new DecodedImage { Width = info.Width, Height = info.Height, Rgba = rgba, Format = format.ToString(), PilRgbaMode = pilRgba };
    }

    /// <summary>Width and height from the header, without decoding pixels.</summary>
    public static (int Width, int Height) Size(byte[] bytes, string name)
    {
        if (bytes.Length == 0) throw new InputException($"{name}: not a decodable image: the file is empty (0 bytes)");
        using var data = SKData.CreateCopy(bytes);
        using var codec = SKCodec.Create(data) ?? throw new InputException($"{name}: not a decodable image (expected PNG, JPEG, WebP, GIF or BMP)");
        return (codec.Info.Width, codec.Info.Height);
    }

    static int PngColorType(byte[] b) => b.Length > 25 ? b[25] : -1; // IHDR: 8 signature + 8 chunk header + 4 w + 4 h + 1 depth
}
