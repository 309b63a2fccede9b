// LMM-R1's prompt dataset (openrlhf/utils blending_datasets + datasets/prompts_dataset.py): every --prompt_data
// entry read and cut to --max_samples, concatenated or interleaved by --prompt_data_probs, cut to --max_samples
// again; each row becomes (datasource, prompt, label) plus parsed messages and image references. Every local image
// (file or data: URI; not http URLs) is decoded once here, in parallel, and dropped again, so an undecodable image
// (random bytes, 0 bytes, a truncated PNG) makes its row bad at load time, in --dry_run, `data check` and training
// alike, and --skip_bad_rows skips it before the run starts (and again identically on resume) instead of the run
// aborting at the step that draws it. Malformed rows are errors naming file:line, or with --skip_bad_rows skipped
// and listed in BadRows (and reported), never dropped silently.
using System.Text.Json;
using LmmR1.Infrastructure;
using LmmR1.Text;
using LmmR1.Vision;

namespace LmmR1.Data;

/// <summary>Rows read from one --prompt_data entry.</summary>
public sealed record DatasetPart(string Spec, IReadOnlyList<string> Files, int Rows, int BadRows);

public sealed class PromptDataset : IReadOnlyList<PromptSample>
{
    const int MaxListedBadRows = 20;

    readonly List<PromptSample> samples;
    readonly List<BadRow> badRows;

    public IReadOnlyList<BadRow> BadRows => badRows;
    public IReadOnlyList<DatasetPart> Parts { get; }
    public PromptDataOptions Options { get; }

    PromptDataset(List<PromptSample> samples, List<BadRow> badRows, List<DatasetPart> parts, PromptDataOptions options)
    {
        this.samples = samples;
        this.badRows = badRows;
        Parts = parts;
        Options = options;
    }

    public int Count => samples.Count;
    public PromptSample this[int index] => samples[index];
    public IEnumerator<PromptSample> GetEnumerator() => samples.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The training prompts (--prompt_data, --prompt_data_probs).</summary>
    public static PromptDataset Load(PromptDataOptions options, TextWriter? report = null) =>
        Load(options.Validate().PromptData!, options.PromptDataProbs, options, report, failOnBadRows: !options.SkipBadRows);

    /// <summary>The evaluation prompts (--eval_dataset, always concatenated).</summary>
    public static PromptDataset LoadEval(PromptDataOptions options, TextWriter? report = null)
    {
        if (string.IsNullOrWhiteSpace(options.EvalDataset)) throw InputException.At(null, null, "--eval_dataset", "not set");
        return Load(options.EvalDataset, null, options, report, failOnBadRows: !options.SkipBadRows);
    }

    /// <summary>
    /// Reads datasets from a comma list. With <paramref name="failOnBadRows"/>, any bad row throws an InputException
    /// listing them; otherwise they are kept in BadRows and a summary goes to <paramref name="report"/>.
    /// </summary>
    /// <param name="decodeImages">Decode every local image (an undecodable one makes a bad row); `data check` decodes
    /// them itself.</param>
    /// <param name="requireUsableRows">Throw when an entry has no usable row (listing its bad rows); `data check`
    /// reports instead.</param>
    public static PromptDataset Load(string specList, string? probs, PromptDataOptions options, TextWriter? report, bool failOnBadRows,
                                     bool decodeImages = true, bool requireUsableRows = true)
    {
        var specs = PromptDataOptions.Specs(specList);
        if (specs.Count == 0) throw InputException.At(null, null, "--prompt_data", "no datasets given");
        double[]? p = probs == null ? null : (options with { PromptDataProbs = probs }).Probabilities(specs.Count);

        var perSpec = new List<IReadOnlyList<PromptSample>>();
        var parts = new List<DatasetPart>();
        var bad = new List<BadRow>();
        foreach (string spec in specs)
        {
            var files = PromptFileReader.ListFiles(spec);
            var rows = new List<PromptSample>();
            int badBefore = bad.Count;
            foreach (string file in files)
                foreach (var raw in PromptFileReader.ReadRows(file))
                {
                    if (raw.Error != null) { bad.Add(new BadRow(raw.File, raw.Line, raw.Error)); continue; }
                    try { rows.Add(ToSample(raw, options)); }
                    catch (InputException e) { bad.Add(new BadRow(raw.File, raw.Line, StripWhere(e.Message, raw))); }
                }
            if (decodeImages) rows = DropUndecodable(rows, bad);
            parts.Add(new DatasetPart(spec, files, rows.Count, bad.Count - badBefore));
            if (rows.Count == 0 && bad.Count == badBefore) throw InputException.At(spec, null, null, "dataset is empty (no rows)");
            perSpec.Add(rows.Take((int)Math.Min(options.MaxSamples, int.MaxValue)).ToList());
        }

        if (bad.Count > 0 && failOnBadRows)
            throw new InputException(DescribeBadRows(bad) + "\n(fix them, or pass --skip_bad_rows to skip them)");
        if (requireUsableRows && perSpec.Any(r => r.Count == 0))
            throw InputException.At(specs[perSpec.FindIndex(r => r.Count == 0)], null, null, "dataset has no usable rows" +
                                    (bad.Count > 0 ? "; " + DescribeBadRows(bad) : ""));

        var all = p == null ? perSpec.SelectMany(r => r).ToList() : DatasetMixer.Interleave(perSpec, p, options.Seed);
        if (all.Count > options.MaxSamples) all = all.Take((int)options.MaxSamples).ToList();
        if (bad.Count > 0) report?.WriteLine($"warning: skipped {bad.Count} bad row(s) (--skip_bad_rows):\n{DescribeBadRows(bad)}");
        return new PromptDataset(all, bad, parts, options);
    }

    /// <summary>The order of one epoch: a permutation seeded by seed + epoch (as a DistributedSampler with shuffle).</summary>
    public int[] ShuffledOrder(int epoch) => DatasetMixer.Permutation(Count, unchecked(Options.Seed + epoch));

    public static string DescribeBadRows(IReadOnlyList<BadRow> bad)
    {
        var lines = bad.Take(MaxListedBadRows).Select(b => "  " + b).ToList();
        if (bad.Count > MaxListedBadRows) lines.Add($"  … and {bad.Count - MaxListedBadRows} more");
        return $"{bad.Count} bad row(s):\n" + string.Join("\n", lines);
    }

    /// <summary>Decodes every local image of <paramref name="rows"/> (in parallel, nothing kept); rows with an image
    /// that does not decode move to <paramref name="bad"/>. URL images are decoded when fetched.</summary>
    static List<PromptSample> DropUndecodable(List<PromptSample> rows, List<BadRow> bad)
    {
        var errors = new string?[rows.Count];
        Parallel.For(0, rows.Count, i =>
        {
            foreach (var img in rows[i].Images)
            {
                if (img.Ref.Kind == ImageSourceKind.Url) continue;
                try { _ = ImageDecoder.Decode(img.Ref.ReadBytes(), img.Ref.Display); }
                catch (InputException e) { errors[i] = e.Message; return; }
                catch (Exception e) when (IoErrors.IsIo(e)) { errors[i] = $"image '{img.Ref.Display}' cannot be read: {IoErrors.Reason(e)}"; return; }
            }
        });
        var good = new List<PromptSample>(rows.Count);
        for (int i = 0; i < rows.Count; i++)
            if (errors[i] is { } why) bad.Add(new BadRow(rows[i].File, rows[i].Line, why));
            else good.Add(rows[i]);
        return good;
    }

    // ---------------- one row ----------------

    static PromptSample ToSample(RawRow raw, PromptDataOptions o)
    {
        var row = raw.Row;
        string file = raw.File;
        long line = raw.Line;
        if (row.ValueKind != JsonValueKind.Object) throw InputException.At(file, line, null, $"expected a JSON object per row, got {row.ValueKind}");
        if (!row.TryGetProperty(o.InputKey, out var input))
            throw InputException.At(file, line, o.InputKey, $"missing input key '{o.InputKey}' (row has: {Keys(row)})");

        string label = "";
        if (o.LabelKey != null)
        {
            if (!row.TryGetProperty(o.LabelKey, out var l))
                throw InputException.At(file, line, o.LabelKey, $"missing label key '{o.LabelKey}' (row has: {Keys(row)})");
            label = l.ValueKind switch
            {
                JsonValueKind.String => l.GetString()!,
                JsonValueKind.Null => throw InputException.At(file, line, o.LabelKey, "label is null"),
                _ => l.GetRawText(),
            };
        }
        string datasource = row.TryGetProperty("datasource", out var ds) && ds.ValueKind != JsonValueKind.Null
            ? (ds.ValueKind == JsonValueKind.String ? ds.GetString()! : ds.GetRawText())
            : "default";

        List<ChatMessage>? messages;
        string prompt;
        switch (input.ValueKind)
        {
            case JsonValueKind.String:
                string s = input.GetString()!;
                if (s.AsSpan().TrimStart().StartsWith("["))
                {
                    messages = ChatMessages.Parse(s, file, line, o.InputKey);
                    prompt = o.ApplyChatTemplate ? ChatTemplate.Apply(messages) : s;
                }
                else if (o.ApplyChatTemplate)
                {
                    messages = [ChatMessage.FromText("user", s)];
                    prompt = ChatTemplate.Apply(messages);
                }
                else
                {
                    messages = null;
                    prompt = o.InputTemplate == null ? s : PromptDataOptions.PythonFormatOne(o.InputTemplate, s)!;
                }
                break;
            case JsonValueKind.Array:
                messages = ChatMessages.Parse(input, file, line, o.InputKey);
                prompt = o.ApplyChatTemplate ? ChatTemplate.Apply(messages) : input.GetRawText();
                break;
            default:
                throw InputException.At(file, line, o.InputKey, $"expected a string or a list of messages, got {input.ValueKind}");
        }

        var images = new List<SampleImage>();
        string dir = Path.GetDirectoryName(file) ?? ".";
        foreach (var part in messages?.SelectMany(m => m.ImageParts) ?? [])
        {
            if (part.ImageSource == null) throw InputException.At(file, line, o.InputKey, "an image part has no 'image' or 'image_url' source");
            ImageRef r;
            try { r = ImageRef.Resolve(part.ImageSource, dir); }
            catch (InputException e) { throw InputException.At(file, line, o.InputKey, e.Message); }
            if (r.Kind == ImageSourceKind.File && !File.Exists(r.Location))
                throw InputException.At(file, line, o.InputKey, $"image '{r.Original}' not found ({r.Location})");
            images.Add(new SampleImage(part, r));
        }
        if (messages != null && messages.Any(m => m.Parts?.Any(p => p.Kind == ContentPartKind.Video) == true))
            throw InputException.At(file, line, o.InputKey, "video parts are not supported");

        return new PromptSample
        {
            Id = $"{Path.GetFileName(file)}:{line}", File = file, Line = line, Prompt = prompt, Messages = messages,
            Label = label, Datasource = datasource, Images = images,
        };
    }

    static string Keys(JsonElement row) => string.Join(", ", row.EnumerateObject().Select(p => p.Name).Take(12));

    /// <summary>InputException messages start with "file:line: "; BadRow prints that itself.</summary>
    static string StripWhere(string message, RawRow raw)
    {
        string prefix = $"{raw.File}:{raw.Line}: ";
        return message.StartsWith(prefix, StringComparison.Ordinal) ? message[prefix.Length..] : message;
    }
}
