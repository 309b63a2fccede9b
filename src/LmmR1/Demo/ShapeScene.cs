// The demo's images: a 56×56 white canvas cut into a 2×2 grid of 28×28 cells (one cell = one merged Qwen2.5-VL
// vision token: 2×2 patches of 14 px), each cell empty or holding one coloured circle, square or triangle of random
// size and position. Drawn with SkiaSharp with anti-aliasing off, so the pixels are exact integer scan conversion
// and identical on every CPU (Skia's anti-aliased coverage can differ between its SIMD code paths).
using SkiaSharp;

namespace LmmR1.Demo;

public enum ShapeKind { Circle, Square, Triangle }

public enum ShapeColor { Red, Blue, Green, Yellow }

/// <summary>One shape in a cell: its kind, colour, bounding-box side in pixels and offset inside the cell.</summary>
public sealed record Shape(ShapeKind Kind, ShapeColor Color, int Size, int X, int Y);

/// <summary>A 2×2 grid of cells in reading order (top-left, top-right, bottom-left, bottom-right); null = empty.</summary>
public sealed record ShapeScene(IReadOnlyList<Shape?> Cells)
{
    public const int CellPixels = 28;
    public const int GridSide = 2;
    public const int ImagePixels = CellPixels * GridSide;
    public const int MinSize = 12;
    public const int MaxSize = 22;

    public int Count => Cells.Count(c => c is not null);
    public int CountOf(ShapeColor color) => Cells.Count(c => c?.Color == color);

    /// <summary>The discrete content of the scene (which cell holds which kind and colour; sizes and offsets left out):
    /// two scenes with the same signature look alike to the task, so a held-out scene's signature never occurs in
    /// training.</summary>
    public string Signature => string.Join("|", Cells.Select(c => c is null ? "." : $"{c.Color}-{c.Kind}"));

    /// <summary>A random scene with shapes in <paramref name="occupied"/> cells, colours from <paramref name="colors"/>
    /// (one per occupied cell, in cell order).</summary>
    public static ShapeScene Random(Random rng, IReadOnlyList<bool> occupied, IReadOnlyList<ShapeColor> colors)
    {
        var cells = new Shape?[GridSide * GridSide];
        int k = 0;
        for (int i = 0; i < cells.Length; i++)
        {
            if (!occupied[i]) continue;
            int size = rng.Next(MinSize, MaxSize + 1);
            int x = rng.Next(1, CellPixels - size), y = rng.Next(1, CellPixels - size);   // a 1 px margin to the cell edge
            cells[i] = new Shape((ShapeKind)rng.Next(3), colors[k++], size, x, y);
        }
        return new ShapeScene(cells);
    }

    public static SKColor Rgb(ShapeColor c) => c switch
    {
        ShapeColor.Red => new SKColor(220, 40, 40),
        ShapeColor.Blue => new SKColor(40, 80, 220),
        ShapeColor.Green => new SKColor(40, 170, 60),
        _ => new SKColor(230, 190, 30),
    };

    public static string Name(ShapeColor c) => c.ToString().ToLowerInvariant();

    /// <summary>The scene as a PNG file's bytes.</summary>
    public byte[] RenderPng()
    {
        using var bmp = new SKBitmap(new SKImageInfo(ImagePixels, ImagePixels, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(bmp))
        {
            canvas.Clear(SKColors.White);
            for (int i = 0; i < Cells.Count; i++)
            {
                if (Cells[i] is not { } s) continue;
                float x0 = (i % GridSide) * CellPixels + s.X, y0 = (i / GridSide) * CellPixels + s.Y, d = s.Size;
                using var paint = new SKPaint { Color = Rgb(s.Color), IsAntialias = false, Style = SKPaintStyle.Fill };
                switch (s.Kind)
                {
                    case ShapeKind.Circle:
                        canvas.DrawOval(new SKRect(x0, y0, x0 + d, y0 + d), paint);
                        break;
                    case ShapeKind.Square:
                        canvas.DrawRect(new SKRect(x0, y0, x0 + d, y0 + d), paint);
                        break;
                    default:
                        using (var path = new SKPath())
                        {
                            path.MoveTo(x0 + d / 2, y0);
                            path.LineTo(x0 + d, y0 + d);
                            path.LineTo(x0, y0 + d);
                            path.Close();
                            canvas.DrawPath(path, paint);
                        }
                        break;
                }
            }
        }
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
