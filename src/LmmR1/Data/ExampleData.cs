// The small example prompt set in examples/data/ (LMM-R1's test_message.jsonl format: question, answer as
// "$\boxed{…}$", message = a JSON string of [system text, user [text, image]]), with images drawn pixel by pixel
// here (deterministic; SkiaSharp only encodes the PNGs) and referenced by paths relative to the jsonl file.
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using LmmR1.Vision;
using SkiaSharp;

namespace LmmR1.Data;

public static class ExampleData
{
    public const string SystemPrompt =
        "Answer the user's question. Think it through step by step first, then give the final answer in LaTeX " +
        "wrapped in $...$ with the value inside \\boxed{}. Put your reasoning between <think> and </think> and the " +
        "answer between <answer> and </answer>, for example: <think> 2+3 is 5. </think><answer> $\\boxed{5}$ </answer>.";

    public sealed record Row(string Question, string Answer, string? Image);

    public static IReadOnlyList<Row> Rows { get; } =
    [
        new("How many red circles are in the picture?", "$\\boxed{5}$", "images/circles.png"),
        new("The bar chart is drawn on a grid whose lines are one unit apart. What is the total height of all the bars?",
            "$\\boxed{10}$", "images/bars.png"),
        new("What is $7 \\times 8$?", "$\\boxed{56}$", null),
    ];

    /// <summary>Pixels of an example image, by its path in <see cref="Rows"/>.</summary>
    public static RgbImage Draw(string image) => image switch
    {
        "images/circles.png" => Circles(),
        "images/bars.png" => Bars(),
        _ => throw new ArgumentException($"no example image '{image}'"),
    };

    /// <summary>Writes dir/test_message.jsonl and dir/images/*.png.</summary>
    public static void Write(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var opts = new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
        var lines = new List<string>();
        foreach (var r in Rows)
        {
            var user = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = r.Question });
            if (r.Image != null)
            {
                user.Add(new JsonObject { ["type"] = "image", ["image"] = r.Image });
                File.WriteAllBytes(Path.Combine(dir, r.Image), EncodePng(Draw(r.Image)));
            }
            var message = new JsonArray(
                new JsonObject { ["role"] = "system", ["content"] = SystemPrompt },
                new JsonObject { ["role"] = "user", ["content"] = user });
            var row = new JsonObject { ["question"] = r.Question, ["answer"] = r.Answer, ["message"] = message.ToJsonString(opts) };
            lines.Add(row.ToJsonString(opts));
        }
        File.WriteAllText(Path.Combine(dir, "test_message.jsonl"), string.Join("\n", lines) + "\n");
    }

    public static byte[] EncodePng(RgbImage img)
    {
        using var bmp = new SKBitmap(new SKImageInfo(img.Width, img.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var rgba = new byte[img.Width * img.Height * 4];
        for (int i = 0, j = 0; j < img.Pixels.Length; i += 4, j += 3)
            (rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]) = (img.Pixels[j], img.Pixels[j + 1], img.Pixels[j + 2], 255);
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bmp.GetPixels(), rgba.Length);
        using var data = bmp.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    static RgbImage Canvas(int w, int h, out Action<int, int, byte, byte, byte> set)
    {
        var px = new byte[w * h * 3];
        Array.Fill(px, (byte)255);
        set = (x, y, r, g, b) =>
        {
            if ((uint)x >= (uint)w || (uint)y >= (uint)h) return;
            int i = (y * w + x) * 3;
            (px[i], px[i + 1], px[i + 2]) = (r, g, b);
        };
        return new RgbImage(w, h, px);
    }

    static RgbImage Circles()
    {
        var img = Canvas(168, 168, out var set);
        for (int y = 0; y < 168; y++) for (int x = 0; x < 168; x++) if (x % 28 == 0 || y % 28 == 0) set(x, y, 225, 225, 225);
        (int X, int Y, int R)[] disks = [(34, 36, 16), (104, 30, 13), (140, 92, 18), (54, 118, 20), (110, 140, 12)];
        foreach (var (cx, cy, r) in disks)
            for (int y = cy - r; y <= cy + r; y++)
                for (int x = cx - r; x <= cx + r; x++)
                    if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) set(x, y, 220, 30, 40);
        // Two blue squares as distractors.
        foreach (var (sx, sy) in new[] { (80, 70), (14, 70) })
            for (int y = sy; y < sy + 18; y++) for (int x = sx; x < sx + 18; x++) set(x, y, 40, 70, 200);
        return img;
    }

    static RgbImage Bars()
    {
        const int unit = 20, w = 196, h = 140, baseY = 120;
        var img = Canvas(w, h, out var set);
        for (int y = 0; y <= baseY; y++) for (int x = 0; x < w; x++) if ((baseY - y) % unit == 0) set(x, y, 200, 200, 200);
        int[] heights = [2, 5, 3];
        (byte R, byte G, byte B)[] colors = [(60, 140, 60), (230, 150, 30), (70, 90, 200)];
        for (int b = 0; b < heights.Length; b++)
        {
            int x0 = 24 + b * 56;
            for (int y = baseY - heights[b] * unit; y < baseY; y++)
                for (int x = x0; x < x0 + 36; x++) set(x, y, colors[b].R, colors[b].G, colors[b].B);
        }
        for (int x = 0; x < w; x++) set(x, baseY, 0, 0, 0);
        return img;
    }
}
