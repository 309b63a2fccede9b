// An 8-bit RGB image in row-major HWC order, the form every step after decoding works on.
namespace LmmR1.Vision;

public sealed class RgbImage
{
    public int Width { get; }
    public int Height { get; }
    /// <summary>Height × Width × 3 bytes, R G B per pixel, rows top to bottom.</summary>
    public byte[] Pixels { get; }

    public RgbImage(int width, int height, byte[] pixels)
    {
        if (width <= 0 || height <= 0) throw new ArgumentOutOfRangeException(nameof(width), $"image size {width}x{height} must be positive");
        if (pixels.Length != width * height * 3) throw new ArgumentException($"expected {width * height * 3} bytes for {width}x{height} RGB, got {pixels.Length}");
        Width = width;
        Height = height;
        Pixels = pixels;
    }

    public long PixelCount => (long)Width * Height;
}
