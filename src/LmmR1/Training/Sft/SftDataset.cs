// OpenRLHF's SFTDataset (datasets/sft_dataset.py) for chat models: each row becomes prompt + response text, the loss
// covers exactly the response tokens (for a chat row: the assistant turn's content and its <|im_end|>). Rows are
//   • a list of chat messages (a JSON list, or a JSON string of one) whose last message is the assistant's: the
//     prompt is the template of the earlier messages with the generation prompt (upstream needs
//     --apply_chat_template for this; message lists always use the template here);
//   • --input_key / --output_key strings: with --apply_chat_template one user and one assistant message, without it
//     the prompt through --input_template and the raw response.
// As upstream: text = (prompt + response).rstrip("\n"), plus " " + eos when it does not end with eos; truncated to
// --max_len with the last token forced to eos; rows whose prompt takes max_len − 2 tokens or more are dropped (and
// reported). Images in user messages go through the Qwen2-VL processor (pads expanded; prompt images only).
using System.Text.Json;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Text;
using LmmR1.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training.Sft;

/// <summary>One tokenized example. Loss positions: targets InputIds[PromptLength..] (position t predicts t + 1).</summary>
public sealed class SftSample : IDisposable
{
    public required string Id { get; init; }
    /// <summary>[L] prompt + response ids, image pads expanded, ending with eos.</summary>
    public required long[] InputIds { get; init; }
    /// <summary>Tokens of the prompt; the loss covers tokens PromptLength … L−1.</summary>
    public required int PromptLength { get; init; }
    /// <summary>[N, C·T·P·P] and [nImages, 3] of the prompt's images, or null.</summary>
    public Tensor? PixelValues { get; init; }
    public Tensor? ImageGridThw { get; init; }

    public int Length => InputIds.Length;

    /// <summary>The loss mask over prediction positions 0 … L−2 (upstream's loss_mask[:, :-1]): 1 where the predicted
    /// token is a response token.</summary>
    public bool[] LossMask()
    {
        var m = new bool[Math.Max(0, Length - 1)];
        for (int t = PromptLength - 1; t < Length - 1; t++) if (t >= 0) m[t] = true;
        return m;
    }

    public void Dispose()
    {
        PixelValues?.Dispose();
        ImageGridThw?.Dispose();
    }
}

public sealed record SftDataOptions
{
    /// <summary>--dataset: comma list of .jsonl/.json/.parquet files or folders.</summary>
    public string? Dataset { get; init; }
    public string InputKey { get; init; } = "input";
    public string? OutputKey { get; init; }
    public bool ApplyChatTemplate { get; init; }
    /// <summary>--input_template (OpenRLHF's SFT default); used for string prompts without the chat template.</summary>
    public string? InputTemplate { get; init; } = "User: {}\nAssistant: ";
    public int MaxLen { get; init; } = 2048;
    public long MaxSamples { get; init; } = 1_000_000;
}

public sealed class SftDataset : IReadOnlyList<SftSample>, IDisposable
{
    readonly List<SftSample> samples;

    SftDataset(List<SftSample> samples, int dropped)
    {
        this.samples = samples;
        DroppedTooLong = dropped;
    }

    /// <summary>Rows dropped because their prompt alone reaches max_len − 2 tokens (upstream filters them too).</summary>
    public int DroppedTooLong { get; }

    public int Count => samples.Count;
    public SftSample this[int index] => samples[index];
    public IEnumerator<SftSample> GetEnumerator() => samples.GetEnumerator();
    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    public static SftDataset Load(SftDataOptions o, QwenVLProcessor processor, TextWriter? report = null)
    {
        if (string.IsNullOrWhiteSpace(o.Dataset)) throw InputException.At(null, null, "--dataset", "required: a comma list of .jsonl/.json/.parquet files or folders");
        if (o.MaxLen < 4) throw InputException.At(null, null, "--max_len", $"must be ≥ 4, got {o.MaxLen}");
        if (o.InputTemplate != null && PromptDataOptions.PythonFormatOne(o.InputTemplate, "x") == null)
            throw InputException.At(null, null, "--input_template", "expected a template with exactly one {} (braces doubled as {{ }})");
        var list = new List<SftSample>();
        int dropped = 0;
        foreach (var spec in PromptDataOptions.Specs(o.Dataset))
        {
            int fromSpec = 0;
            foreach (var file in PromptFileReader.ListFiles(spec))
                foreach (var raw in PromptFileReader.ReadRows(file))
                {
                    if (fromSpec >= o.MaxSamples) break;
                    if (raw.Error != null) throw InputException.At(raw.File, raw.Line, null, raw.Error);
                    var s = Build(raw, o, processor);
                    fromSpec++;
                    if (s is null) { dropped++; continue; }
                    list.Add(s);
                }
        }
        if (list.Count > o.MaxSamples) { foreach (var s in list.Skip((int)o.MaxSamples)) s.Dispose(); list = list.Take((int)o.MaxSamples).ToList(); }
        if (dropped > 0) report?.WriteLine($"warning: dropped {dropped} row(s) whose prompt takes ≥ --max_len − 2 = {o.MaxLen - 2} tokens (as OpenRLHF)");
        if (list.Count == 0) throw InputException.At(o.Dataset, null, "--dataset", "no usable rows");
        return new SftDataset(list, dropped);
    }

    /// <summary>(prompt, response, images) of a row, as preprocess_data; null response = not an SFT row.</summary>
    static SftSample? Build(RawRow raw, SftDataOptions o, QwenVLProcessor processor)
    {
        var row = raw.Row;
        string file = raw.File;
        long line = raw.Line;
        if (row.ValueKind != JsonValueKind.Object) throw InputException.At(file, line, null, $"expected a JSON object per row, got {row.ValueKind}");
        if (!row.TryGetProperty(o.InputKey, out var input))
            throw InputException.At(file, line, o.InputKey, $"missing input key '{o.InputKey}'");

        List<ChatMessage>? messages = input.ValueKind switch
        {
            JsonValueKind.Array => ChatMessages.Parse(input, file, line, o.InputKey),
            JsonValueKind.String when input.GetString()!.AsSpan().TrimStart().StartsWith("[") => ChatMessages.Parse(input.GetString()!, file, line, o.InputKey),
            JsonValueKind.String => null,
            _ => throw InputException.At(file, line, o.InputKey, $"expected a string or a list of messages, got {input.ValueKind}"),
        };
        string prompt, full;
        List<ChatMessage>? promptMessages = null;
        if (o.OutputKey is { } outKey)
        {
            if (!row.TryGetProperty(outKey, out var output)) throw InputException.At(file, line, outKey, $"missing output key '{outKey}'");
            if (messages is not null || o.ApplyChatTemplate)
            {
                promptMessages = messages ?? [ChatMessage.FromText("user", input.GetString()!)];
                var responseMessages = output.ValueKind switch
                {
                    JsonValueKind.String when !output.GetString()!.AsSpan().TrimStart().StartsWith("[") => [ChatMessage.FromText("assistant", output.GetString()!)],
                    JsonValueKind.String => ChatMessages.Parse(output.GetString()!, file, line, outKey),
                    JsonValueKind.Array => ChatMessages.Parse(output, file, line, outKey),
                    _ => throw InputException.At(file, line, outKey, $"expected a string or a list of messages, got {output.ValueKind}"),
                };
                prompt = ChatTemplate.Apply(promptMessages, addGenerationPrompt: true);
                full = ChatTemplate.Apply([.. promptMessages, .. responseMessages], addGenerationPrompt: false);
            }
            else
            {
                if (output.ValueKind != JsonValueKind.String) throw InputException.At(file, line, outKey, "expected a string response");
                prompt = o.InputTemplate is null ? input.GetString()! : PromptDataOptions.PythonFormatOne(o.InputTemplate, input.GetString()!)!;
                full = prompt + output.GetString()!;
            }
        }
        else
        {
            if (messages is null)
                throw InputException.At(file, line, o.InputKey, "a string input needs --output_key (prompt/response pairs) or a list of chat messages ending with the assistant's");
            if (messages.Count < 2 || messages[^1].Role != "assistant")
                throw InputException.At(file, line, o.InputKey, "the message list must end with an assistant message (the SFT target)");
            promptMessages = messages[..^1];
            prompt = ChatTemplate.Apply(promptMessages, addGenerationPrompt: true);
            full = ChatTemplate.Apply(messages, addGenerationPrompt: false);
        }
        if (!full.StartsWith(prompt, StringComparison.Ordinal))
            throw InputException.At(file, line, o.InputKey, "the rendered prompt is not a prefix of the rendered conversation");
        if (full.Length == prompt.Length) throw InputException.At(file, line, o.OutputKey ?? o.InputKey, "empty response");

        // text = (prompt + response).rstrip("\n"), + " " + eos unless it ends with eos.
        string eos = processor.Tokenizer.IdToToken(processor.Tokenizer.EosTokenId)!;
        string text = full.TrimEnd('\n');
        if (!text.EndsWith(eos, StringComparison.Ordinal)) text += " " + eos;

        var images = new List<RgbImage>();
        string dir = Path.GetDirectoryName(file) ?? ".";
        foreach (var part in promptMessages?.SelectMany(m => m.ImageParts) ?? [])
        {
            if (part.ImageSource == null) throw InputException.At(file, line, o.InputKey, "an image part has no 'image' or 'image_url' source");
            try { images.Add(processor.LoadImage(part, ImageRef.Resolve(part.ImageSource, dir))); }
            catch (InputException e) { throw InputException.At(file, line, o.InputKey, e.Message); }
        }
        using var scope = torch.NewDisposeScope();
        ProcessedPrompt p, f;
        try
        {
            p = processor.Process(prompt, images);
            f = processor.Process(text, images);
        }
        catch (InputException e) { throw InputException.At(file, line, o.InputKey, e.Message); }
        int promptLen = p.InputIds.Length;
        if (promptLen >= o.MaxLen - 2) return null;
        var ids = f.InputIds.Length > o.MaxLen ? f.InputIds[..o.MaxLen] : f.InputIds;
        ids[^1] = processor.Tokenizer.EosTokenId;       // keep eos when truncating (upstream)
        return new SftSample
        {
            Id = $"{Path.GetFileName(file)}:{line}",
            InputIds = ids,
            PromptLength = promptLen,
            PixelValues = f.PixelValues?.MoveToOuterDisposeScope().DetachFromDisposeScope(),
            ImageGridThw = f.ImageGridThw?.MoveToOuterDisposeScope().DetachFromDisposeScope(),
        };
    }

    public void Dispose()
    {
        foreach (var s in samples) s.Dispose();
    }
}
