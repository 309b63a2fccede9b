// `lmmr1 data …`: `check` reads prompt data the way training does and prints counts, length statistics and every
// bad row; `example` writes the small example set. PromptDataFlags adds the OpenRLHF data flags (--prompt_data,
// --input_key, …) to any command and binds them to PromptDataOptions, for the train/generate/eval commands too.
using System.CommandLine;
using LmmR1.Data;
using LmmR1.Text;
using LmmR1.Vision;

namespace LmmR1.Cli.Commands;

/// <summary>The prompt-data flags, spelled as in OpenRLHF/LMM-R1, bound to <see cref="PromptDataOptions"/>.</summary>
public sealed class PromptDataFlags
{
    public Option<string> PromptData { get; } = new("--prompt_data") { Description = "Comma list of .jsonl/.json/.parquet files or folders" };
    public Option<string?> PromptDataProbs { get; } = new("--prompt_data_probs") { Description = "Comma list of sampling probabilities (interleave, all_exhausted)" };
    public Option<string?> EvalDataset { get; } = new("--eval_dataset") { Description = "Comma list of evaluation datasets" };
    public Option<string> InputKey { get; } = new("--input_key") { Description = "Row key of the prompt (LMM-R1: message)", DefaultValueFactory = _ => "input" };
    public Option<string?> LabelKey { get; } = new("--label_key") { Description = "Row key of the label (LMM-R1: answer)" };
    public Option<string?> InputTemplate { get; } = new("--input_template") { Description = "Template with one {} for plain-text prompts" };
    public Option<bool> ApplyChatTemplate { get; } = new("--apply_chat_template") { Description = "Render plain-text prompts with the chat template" };
    public Option<long> MaxSamples { get; } = new("--max_samples") { Description = "Max samples per dataset and in total", DefaultValueFactory = _ => 100_000_000 };
    public Option<int>? Seed { get; }
    public Option<bool> SkipBadRows { get; } = new("--skip_bad_rows") { Description = "Skip malformed rows (counted and reported) instead of failing" };

    PromptDataFlags(bool includeSeed)
    {
        if (includeSeed) Seed = new Option<int>("--seed") { Description = "Seed for interleaving and shuffling", DefaultValueFactory = _ => 42 };
    }

    /// <summary>Adds the flags to a command. Pass includeSeed: false when the command defines --seed itself.</summary>
    public static PromptDataFlags AddTo(Command cmd, bool promptDataRequired = true, bool includeSeed = true)
    {
        var f = new PromptDataFlags(includeSeed);
        f.PromptData.Required = promptDataRequired;
        foreach (var o in new Option?[] { f.PromptData, f.PromptDataProbs, f.EvalDataset, f.InputKey, f.LabelKey, f.InputTemplate,
                                          f.ApplyChatTemplate, f.MaxSamples, f.Seed, f.SkipBadRows })
            if (o != null) cmd.Options.Add(o);
        return f;
    }

    public PromptDataOptions Bind(ParseResult pr, int? seed = null) => new()
    {
        PromptData = pr.GetValue(PromptData),
        PromptDataProbs = pr.GetValue(PromptDataProbs),
        EvalDataset = pr.GetValue(EvalDataset),
        InputKey = pr.GetValue(InputKey)!,
        LabelKey = pr.GetValue(LabelKey),
        InputTemplate = pr.GetValue(InputTemplate),
        ApplyChatTemplate = pr.GetValue(ApplyChatTemplate),
        MaxSamples = pr.GetValue(MaxSamples),
        Seed = seed ?? (Seed != null ? pr.GetValue(Seed) : 42),
        SkipBadRows = pr.GetValue(SkipBadRows),
    };
}

public static class DataCommands
{
    public static Command Create()
    {
        var data = new Command("data", "Prompt datasets: check them, write the example set");
        data.Subcommands.Add(CreateCheck());
        data.Subcommands.Add(CreateExample());
        return data;
    }

    static Command CreateCheck()
    {
        var cmd = new Command("check", "Read prompt data as training does; print counts, token/image statistics and every bad row");
        var flags = PromptDataFlags.AddTo(cmd);
        var pretrain = new Option<string?>("--pretrain") { Description = "Model or tokenizer folder (tokenizer.json): enables prompt token statistics" };
        var processorKwargs = new Option<string?>("--processor_kwargs") { Description = "JSON, e.g. {\"min_pixels\": 3136, \"max_pixels\": 12845056}" };
        var promptMaxLen = new Option<int?>("--prompt_max_len") { Description = "Also count prompts longer than this many tokens" };
        cmd.Options.Add(pretrain);
        cmd.Options.Add(processorKwargs);
        cmd.Options.Add(promptMaxLen);
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            var options = flags.Bind(pr).Validate();
            var image = new ImageProcessorOptions().WithProcessorKwargs(pr.GetValue(processorKwargs));
            var tok = pr.GetValue(pretrain) is { } dir ? QwenTokenizer.Load(dir) : null;
            return RunCheck(options, tok, new QwenVLProcessorOptions { Image = image }, pr.GetValue(promptMaxLen), Console.Out);
        }));
        return cmd;
    }

    /// <summary>Checks --prompt_data (and --eval_dataset when set). Returns 1 if any bad row and no --skip_bad_rows.</summary>
    public static int RunCheck(PromptDataOptions options, QwenTokenizer? tok, QwenVLProcessorOptions processor, int? promptMaxLen, TextWriter output)
    {
        int badTotal = 0;
        var sets = new List<(string Name, string Specs, string? Probs)> { ("prompt_data", options.PromptData!, options.PromptDataProbs) };
        if (!string.IsNullOrWhiteSpace(options.EvalDataset)) sets.Add(("eval_dataset", options.EvalDataset!, null));
        foreach (var (name, specs, probs) in sets)
        {
            // Every bad row is listed below, also when no row is usable; DataCheck decodes the images itself.
            var ds = PromptDataset.Load(specs, probs, options, report: null, failOnBadRows: false, decodeImages: false, requireUsableRows: false);
            var r = DataCheck.Run(ds, tok, processor, promptMaxLen);
            output.WriteLine($"== {name}: {specs}");
            foreach (var p in r.Parts)
                output.WriteLine($"  {p.Spec}: {p.Files.Count} file(s), {p.Rows} good row(s), {p.BadRows} bad row(s)");
            output.WriteLine($"samples: {r.Samples}{(probs != null ? " (interleaved by --prompt_data_probs)" : "")}, usable {r.GoodSamples}, text-only {r.TextOnlyRows}");
            output.WriteLine($"datasources: {string.Join(", ", r.Datasources.Select(kv => $"{kv.Key}={kv.Value}"))}");
            output.WriteLine($"images: {r.Images} total; per sample {r.ImagesPerRow}");
            output.WriteLine($"image pixels (original): {r.OriginalPixels}");
            output.WriteLine($"image pixels (resized, min_pixels {processor.Image.MinPixels}, max_pixels {processor.Image.MaxPixels}): {r.ResizedPixels}");
            output.WriteLine($"image tokens per image: {r.ImageTokensPerImage}");
            output.WriteLine(r.PromptTokens is { } pt
                ? $"prompt tokens (chat template, image tokens expanded): {pt}" + (r.RowsOverPromptMaxLen is { } over ? $"; {over} over --prompt_max_len {promptMaxLen}" : "")
                : "prompt tokens: pass --pretrain (a folder with tokenizer.json) to count them");
            output.WriteLine($"bad rows: {r.BadRows.Count}");
            foreach (var b in r.BadRows) output.WriteLine($"  {b}");
            badTotal += r.BadRows.Count;
        }
        if (badTotal > 0 && !options.SkipBadRows) return CliErrors.Fail($"{badTotal} bad row(s); fix them or pass --skip_bad_rows");
        return 0;
    }

    static Command CreateExample()
    {
        var output = new Option<string>("--output") { Description = "Folder to write test_message.jsonl and images/ into", Required = true };
        var cmd = new Command("example", "Write the small example prompt set (LMM-R1's test_message.jsonl format)");
        cmd.Options.Add(output);
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            ExampleData.Write(pr.GetValue(output)!);
            Console.Out.WriteLine($"wrote {Path.Combine(pr.GetValue(output)!, "test_message.jsonl")}");
            return 0;
        }));
        return cmd;
    }
}
