// `lmmr1 debug image --image FILE --min-pixels N --max-pixels N --output OUT.safetensors`: the Qwen2-VL image
// processor on one image; writes pixel_values [P, 1176] float32 and image_grid_thw [1, 3] int64, prints a summary.
using System.CommandLine;
using LmmR1.Infrastructure;
using LmmR1.Models.Safetensors;
using LmmR1.Text;
using LmmR1.Vision;
using TorchSharp;

namespace LmmR1.Cli.Commands;

public static class DebugImageCommand
{
    public static Command Create()
    {
        var image = new Option<string>("--image") { Description = "Image file (PNG, JPEG, WebP, GIF, BMP)", Required = true };
        var minPixels = new Option<long>("--min-pixels") { Description = "Processor min_pixels", DefaultValueFactory = _ => new ImageProcessorOptions().MinPixels };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Processor max_pixels", DefaultValueFactory = _ => new ImageProcessorOptions().MaxPixels };
        var output = new Option<string>("--output") { Description = "Output .safetensors file", Required = true };
        var backend = new Option<string>("--backend")
        {
            Description = "Which transformers image processor to reproduce: torchvision (transformers 5 default) or pil (4.x slow)",
            DefaultValueFactory = _ => "torchvision",
        };
        backend.AcceptOnlyFromAmong("torchvision", "pil");
        var qwenVlUtils = new Option<bool>("--qwen-vl-utils") { Description = "Run qwen_vl_utils.fetch_image (Pillow resize, RGBA pasted on white) first, as LMM-R1 does" };
        var cmd = new Command("image", "Run the Qwen2-VL image processor on one image and save pixel_values / image_grid_thw");
        foreach (var o in new Option[] { image, minPixels, maxPixels, output, backend, qwenVlUtils }) cmd.Options.Add(o);
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            var opts = new ImageProcessorOptions
            {
                MinPixels = pr.GetValue(minPixels), MaxPixels = pr.GetValue(maxPixels),
                Backend = pr.GetValue(backend) == "pil" ? ResampleKernel.Pil : ResampleKernel.Torchvision,
            }.Validate();
            return Run(pr.GetValue(image)!, opts, pr.GetValue(qwenVlUtils), pr.GetValue(output)!, Console.Out);
        }));
        return cmd;
    }

    public static int Run(string imagePath, ImageProcessorOptions options, bool qwenVlUtils, string outputPath, TextWriter output)
    {
        var src = ImageRef.Resolve(imagePath, null);
        byte[] bytes = src.ReadBytes();
        var decoded = ImageDecoder.Decode(bytes, imagePath);
        var rgb = qwenVlUtils
            ? QwenVlUtils.FetchImage(bytes, imagePath, ContentPart.FromImage(imagePath), options)
            : decoded.ToRgbLikeTransformers();
        var proc = new ImageProcessor(options);
        var patches = proc.Process(rgb);
        using (var pv = patches.ToTensor())
        using (var grid = ImagePatches.GridTensor([patches]))
        {
            try { SafetensorsWriter.Write(outputPath, [new("pixel_values", pv), new("image_grid_thw", grid)]); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw InputException.At(outputPath, null, null, $"could not write ({e.Message})");
            }
        }
        InputsCli.WriteLine(output, w =>
        {
            w.WriteString("image", imagePath);
            w.WriteString("format", decoded.Format);
            w.WriteStartArray("size_hw"); w.WriteNumberValue(decoded.Height); w.WriteNumberValue(decoded.Width); w.WriteEndArray();
            w.WriteStartArray("resized_hw"); w.WriteNumberValue(patches.ResizedHeight); w.WriteNumberValue(patches.ResizedWidth); w.WriteEndArray();
            w.WriteStartArray("image_grid_thw");
            w.WriteStartArray(); w.WriteNumberValue(patches.Grid.T); w.WriteNumberValue(patches.Grid.H); w.WriteNumberValue(patches.Grid.W); w.WriteEndArray();
            w.WriteEndArray();
            w.WriteNumber("patches", patches.Grid.Patches);
            w.WriteNumber("image_tokens", patches.Grid.Tokens(options.MergeSize));
            w.WriteString("output", outputPath);
        });
        return 0;
    }
}
