// `lmmr1 debug prompt --tokenizer DIR --image-root DIR --min-pixels N --max-pixels N`: stdin JSON lines
// {"messages": […]} → stdout {"prompt": …, "input_ids": […], "image_grid_thw": [[t,h,w], …]} through the whole
// Qwen2-VL processor (chat template, image-pad expansion). Relative image paths resolve against --image-root.
using System.CommandLine;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Text;
using LmmR1.Vision;

namespace LmmR1.Cli.Commands;

public static class DebugPromptCommand
{
    public static Command Create()
    {
        var tokenizer = new Option<string>("--tokenizer") { Description = "Folder with tokenizer.json", Required = true };
        var imageRoot = new Option<string>("--image-root") { Description = "Folder relative image paths resolve against", DefaultValueFactory = _ => "." };
        var minPixels = new Option<long>("--min-pixels") { Description = "Processor min_pixels", DefaultValueFactory = _ => new ImageProcessorOptions().MinPixels };
        var maxPixels = new Option<long>("--max-pixels") { Description = "Processor max_pixels", DefaultValueFactory = _ => new ImageProcessorOptions().MaxPixels };
        var transformersOnly = new Option<bool>("--transformers-only")
        {
            Description = "Skip qwen_vl_utils.fetch_image: decoded images go straight to the image processor (how the fixtures were made)",
        };
        var cmd = new Command("prompt", "Render chat messages (JSON lines {\"messages\": […]}) to prompt text, input_ids and image grids");
        foreach (var o in new Option[] { tokenizer, imageRoot, minPixels, maxPixels, transformersOnly }) cmd.Options.Add(o);
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            var proc = new QwenVLProcessor(QwenTokenizer.Load(pr.GetValue(tokenizer)!), new QwenVLProcessorOptions
            {
                Image = new ImageProcessorOptions { MinPixels = pr.GetValue(minPixels), MaxPixels = pr.GetValue(maxPixels) }.Validate(),
                FetchLikeQwenVlUtils = !pr.GetValue(transformersOnly),
            });
            return Run(proc, pr.GetValue(imageRoot)!, Console.In, Console.Out);
        }));
        return cmd;
    }

    public static int Run(QwenVLProcessor proc, string imageRoot, TextReader input, TextWriter output)
    {
        foreach (var (line, doc) in InputsCli.ReadJsonLines(input))
            using (doc)
            {
                if (!doc.RootElement.TryGetProperty("messages", out var m)) throw InputException.At("stdin", line, "messages", "missing");
                ProcessedPrompt p;
                try { p = proc.Process(ChatMessages.Parse(m, "stdin", line, "messages"), imageRoot); }
                catch (InputException e) when (!e.Message.StartsWith("stdin:", StringComparison.Ordinal))
                {
                    throw InputException.At("stdin", line, null, e.Message);
                }
                using (p)
                    InputsCli.WriteLine(output, w =>
                    {
                        w.WriteString("prompt", p.PromptText);
                        w.WriteStartArray("input_ids");
                        foreach (long id in p.InputIds) w.WriteNumberValue(id);
                        w.WriteEndArray();
                        w.WriteStartArray("image_grid_thw");
                        foreach (var g in p.Grids)
                        {
                            w.WriteStartArray(); w.WriteNumberValue(g.T); w.WriteNumberValue(g.H); w.WriteNumberValue(g.W); w.WriteEndArray();
                        }
                        w.WriteEndArray();
                    });
            }
        return 0;
    }
}
