// `lmmr1 bench inputs`: benchmarks of the inputs path (bench/README.md "Inputs"), printing JSON lines.
//   lmmr1 bench inputs write --output DIR       deterministic corpus.jsonl (~2.3 MB mixed text) and ~1 MP images, shared
//                                               with bench/inputs/python_baseline.py
//   lmmr1 bench inputs run --inputs DIR --tokenizer DIR [--repeats N]
//     tokenizer encode MB/s single-threaded and batched over all cores; image preprocessing images/s at default
//     max_pixels (decode + Qwen2-VL image processor, and the processor alone on decoded RGB). In the CLI (not a
//     separate program) so the GPU machine, which has no .NET SDK, runs it from the same self-contained publish.
using System.CommandLine;
using System.Diagnostics;
using System.Text;
using System.Text.Json;
using LmmR1.Data;
using LmmR1.Text;
using LmmR1.Vision;
using SkiaSharp;

namespace LmmR1.Cli.Commands;

internal static class BenchInputsCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--output") { Description = "Folder to write the inputs to", Required = true };
        var write = new Command("write", "Write the deterministic benchmark inputs (corpus.jsonl, images/)") { output };
        write.SetAction(pr => { InputsBenchData.Write(pr.GetValue(output)!); return 0; });

        var inputs = new Option<string>("--inputs") { Description = "Folder written by `bench inputs write`", Required = true };
        var tokenizer = new Option<string>("--tokenizer") { Description = "Folder with tokenizer.json", Required = true };
        var repeats = new Option<int>("--repeats") { Description = "Timed repeats (the median is reported)", DefaultValueFactory = _ => 3 };
        var run = new Command("run", "Tokenizer encode MB/s and image preprocessing images/s (JSON lines)") { inputs, tokenizer, repeats };
        run.SetAction(pr => { InputsBench.Run(pr.GetValue(inputs)!, pr.GetValue(tokenizer)!, pr.GetValue(repeats)); return 0; });

        return new Command("inputs", "Benchmarks of the tokenizer and image preprocessing") { write, run };
    }
}

internal static class InputsBench
{
    static void Emit(object o) => Console.WriteLine(JsonSerializer.Serialize(o));

    public static void Run(string dir, string tokenizerDir, int repeats)
    {
        Emit(new { what = "machine", cores = Environment.ProcessorCount, dotnet = Environment.Version.ToString(), os = System.Runtime.InteropServices.RuntimeInformation.OSDescription });

        var texts = File.ReadLines(Path.Combine(dir, "corpus.jsonl")).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("text").GetString()!).ToList();
        long bytes = texts.Sum(t => (long)Encoding.UTF8.GetByteCount(t));
        var sw = Stopwatch.StartNew();
        var tok = QwenTokenizer.Load(tokenizerDir);
        Emit(new { what = "tokenizer_load", seconds = Round(sw.Elapsed.TotalSeconds) });

        long tokens = texts.Sum(t => (long)tok.Encode(t).Length); // warm-up (and the word cache, as in a long run)
        var single = Measure(repeats, () => { foreach (var t in texts) tok.Encode(t); });
        Emit(new { what = "tokenizer_encode", mode = "single_thread", docs = texts.Count, mb = Round(bytes / 1e6), tokens, seconds = Round(single), mb_per_s = Round(bytes / 1e6 / single) });
        var batch = Measure(repeats, () => tok.EncodeBatch(texts));
        Emit(new { what = "tokenizer_encode", mode = $"batch_{Environment.ProcessorCount}_threads", docs = texts.Count, mb = Round(bytes / 1e6), tokens, seconds = Round(batch), mb_per_s = Round(bytes / 1e6 / batch) });

        var files = Directory.GetFiles(Path.Combine(dir, "images")).OrderBy(f => f, StringComparer.Ordinal).ToList();
        var encoded = files.Select(File.ReadAllBytes).ToList();
        var proc = new ImageProcessor(new ImageProcessorOptions()); // default min/max pixels (LMM-R1's 3136 … 12845056)
        var rgbs = encoded.Select((b, i) => ImageDecoder.Decode(b, files[i]).ToRgbLikeTransformers()).ToList();
        long patches = rgbs.Sum(r => (long)proc.Process(r).Grid.Patches); // warm-up
        double mp = rgbs.Average(r => r.PixelCount) / 1e6;

        var onlyProc = Measure(repeats, () => { foreach (var r in rgbs) proc.Process(r); });
        Emit(new { what = "image_preprocess", mode = "processor_only_sequential", images = rgbs.Count, mean_mp = Round(mp), patches, seconds = Round(onlyProc), images_per_s = Round(rgbs.Count / onlyProc) });
        var full = Measure(repeats, () => { for (int i = 0; i < encoded.Count; i++) proc.Process(ImageDecoder.Decode(encoded[i], files[i]).ToRgbLikeTransformers()); });
        Emit(new { what = "image_preprocess", mode = "decode_and_process_sequential", images = rgbs.Count, mean_mp = Round(mp), seconds = Round(full), images_per_s = Round(rgbs.Count / full) });
        var fetchProc = new QwenVLProcessorOptions();
        var lmm = Measure(repeats, () =>
        {
            for (int i = 0; i < encoded.Count; i++)
                proc.Process(QwenVlUtils.FetchImage(encoded[i], files[i], ContentPart.FromImage(files[i]), fetchProc.Image));
        });
        Emit(new { what = "image_preprocess", mode = "lmm_r1_path_sequential (decode, qwen_vl_utils fetch, processor)", images = rgbs.Count, mean_mp = Round(mp), seconds = Round(lmm), images_per_s = Round(rgbs.Count / lmm) });
        var par = Measure(repeats, () => Parallel.For(0, encoded.Count, i => proc.Process(ImageDecoder.Decode(encoded[i], files[i]).ToRgbLikeTransformers())));
        Emit(new { what = "image_preprocess", mode = $"decode_and_process_parallel_{Environment.ProcessorCount}", images = rgbs.Count, mean_mp = Round(mp), seconds = Round(par), images_per_s = Round(rgbs.Count / par) });
    }

    /// <summary>Median wall time of <paramref name="repeats"/> runs.</summary>
    static double Measure(int repeats, Action body)
    {
        var times = new List<double>();
        for (int r = 0; r < repeats; r++)
        {
            GC.Collect();
            var sw = Stopwatch.StartNew();
            body();
            times.Add(sw.Elapsed.TotalSeconds);
        }
        times.Sort();
        return times[times.Count / 2];
    }

    static double Round(double x) => Math.Round(x, 3);
}

/// <summary>Deterministic benchmark inputs: a mixed text corpus and synthetic ~1 MP images.</summary>
internal static class InputsBenchData
{
    static readonly string[] Words = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an they you " +
        "were her she there been one all we their has would when if so no will more can out up into do any your what some time than " +
        "then its only two may these first also new because number area triangle angle circle radius equal value answer therefore " +
        "solve equation function point line side length total each sum product ratio probability graph shown figure image picture " +
        "count find compute let assume given since hence thus step check result correct options choice question bar chart height width").Split(' ');
    static readonly string Hanzi = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质";
    static readonly string[] Code =
    [
        "def solve(a, b):\n    return (a + b) // 2\n", "for i in range(10):\n    total += values[i] * weights[i]\n",
        "if x > 0 and y < 0:\n    print(f\"quadrant {q}\")\n", "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n",
        "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)\n",
    ];

    public static void Write(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        var rng = new Random(1234);
        var sb = new StringBuilder();
        using (var w = new StreamWriter(Path.Combine(dir, "corpus.jsonl"), false, new UTF8Encoding(false)))
            for (int d = 0; d < 2000; d++)
            {
                sb.Clear();
                double kind = rng.NextDouble();
                if (kind < 0.35) sb.Append("<|im_start|>user\n");
                while (sb.Length < 600 + rng.Next(1800))
                {
                    double r = rng.NextDouble();
                    if (r < 0.5) English(sb, rng);
                    else if (r < 0.7) MathText(sb, rng);
                    else if (r < 0.85) Chinese(sb, rng);
                    else if (r < 0.95) sb.Append(Code[rng.Next(Code.Length)]);
                    else sb.Append(" 😀👍 café naïve ").Append(rng.Next(100000)).Append(' ');
                }
                if (kind < 0.35) sb.Append("<|im_end|>\n<|im_start|>assistant\n<think>").Append("Let me think step by step. ").Append("</think><answer>$\\boxed{").Append(rng.Next(1000)).Append("}$</answer>");
                w.WriteLine(JsonSerializer.Serialize(new { text = sb.ToString() }));
            }

        (int W, int H)[] sizes = [(1024, 1024), (1280, 800), (1152, 864), (1000, 1000), (1200, 900), (800, 1280), (1366, 768), (1024, 960)];
        for (int i = 0; i < sizes.Length; i++)
        {
            var (wd, ht) = sizes[i];
            var img = Synth(wd, ht, 100 + i);
            var fmt = i % 2 == 0 ? SKEncodedImageFormat.Jpeg : SKEncodedImageFormat.Png;
            File.WriteAllBytes(Path.Combine(dir, "images", $"img{i}_{wd}x{ht}.{(fmt == SKEncodedImageFormat.Jpeg ? "jpg" : "png")}"), Encode(img, fmt));
        }
        Console.WriteLine($"wrote {dir}/corpus.jsonl and {sizes.Length} images");
    }

    static void English(StringBuilder sb, Random rng)
    {
        int n = 6 + rng.Next(14);
        for (int k = 0; k < n; k++)
        {
            string wd = Words[rng.Next(Words.Length)];
            sb.Append(k == 0 ? char.ToUpperInvariant(wd[0]) + wd[1..] : wd);
            if (rng.NextDouble() < 0.08) sb.Append(',');
            sb.Append(k == n - 1 ? (rng.NextDouble() < 0.2 ? "?" : ".") : " ");
        }
        sb.Append(rng.NextDouble() < 0.2 ? "\n\n" : " ");
    }

    static void MathText(StringBuilder sb, Random rng)
    {
        int a = rng.Next(100), b = rng.Next(1, 50), c = rng.Next(1000);
        sb.Append(rng.Next(4) switch
        {
            0 => $"$\\frac{{{a}}}{{{b}}} + {c} = x$. ",
            1 => $"Since $x^2 - {a}x + {b} = 0$, we get $x = \\frac{{{a} \\pm \\sqrt{{{a * a - 4 * b}}}}}{{2}}$. ",
            2 => $"The area is ${a}\\pi$ cm$^2$, i.e. about {a * 3.14159:0.##} cm². ",
            _ => $"Therefore the answer is $\\boxed{{{c}}}$.\n",
        });
    }

    static void Chinese(StringBuilder sb, Random rng)
    {
        int n = 10 + rng.Next(30);
        for (int k = 0; k < n; k++) sb.Append(Hanzi[rng.Next(Hanzi.Length)]);
        sb.Append(rng.NextDouble() < 0.5 ? "。" : "，").Append(rng.Next(100)).Append("个");
    }

    static RgbImage Synth(int w, int h, int seed)
    {
        var rng = new Random(seed);
        var px = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                int i = (y * w + x) * 3;
                px[i] = (byte)Math.Clamp(x * 255 / (w - 1) + rng.Next(16), 0, 255);
                px[i + 1] = (byte)Math.Clamp(y * 255 / (h - 1) + rng.Next(16), 0, 255);
                px[i + 2] = (byte)(((x + y) * 7 + rng.Next(16)) & 255);
            }
        for (int k = 0; k < 6; k++)
        {
            int x0 = rng.Next(w * 3 / 4), y0 = rng.Next(h * 3 / 4), rw = w / 8 + rng.Next(w / 6), rh = h / 8 + rng.Next(h / 6);
            byte r = (byte)rng.Next(256), g = (byte)rng.Next(256), b = (byte)rng.Next(256);
            for (int y = y0; y < Math.Min(h, y0 + rh); y++)
                for (int x = x0; x < Math.Min(w, x0 + rw); x++) { int i = (y * w + x) * 3; (px[i], px[i + 1], px[i + 2]) = (r, g, b); }
        }
        return new RgbImage(w, h, px);
    }

    static byte[] Encode(RgbImage img, SKEncodedImageFormat fmt)
    {
        if (fmt == SKEncodedImageFormat.Png) return ExampleData.EncodePng(img);
        using var bmp = new SKBitmap(new SKImageInfo(img.Width, img.Height, SKColorType.Rgba8888, SKAlphaType.Opaque));
        var rgba = new byte[img.Width * img.Height * 4];
        for (int i = 0, j = 0; j < img.Pixels.Length; i += 4, j += 3) (rgba[i], rgba[i + 1], rgba[i + 2], rgba[i + 3]) = (img.Pixels[j], img.Pixels[j + 1], img.Pixels[j + 2], 255);
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bmp.GetPixels(), rgba.Length);
        using var data = bmp.Encode(fmt, 90);
        return data.ToArray();
    }
}
