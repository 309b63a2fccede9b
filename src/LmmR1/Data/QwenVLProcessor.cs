// The whole Qwen2-VL processor as LMM-R1 uses it: chat template → prompt text; images fetched like
// qwen_vl_utils (optional) and run through the image processor; the text tokenised and each <|image_pad|>
// expanded to t·h·w/merge² copies; pixel_values [Σ patches, 1176] float32 and image_grid_thw [n, 3] int64.
// Expanding at the id level equals transformers' text-level expansion because <|image_pad|> is an atomic added token.
using LmmR1.Infrastructure;
using LmmR1.Text;
using LmmR1.Vision;
using TorchSharp;

namespace LmmR1.Data;

public sealed record QwenVLProcessorOptions
{
    public ImageProcessorOptions Image { get; init; } = new();
    /// <summary>
    /// Run images through qwen_vl_utils.fetch_image (Pillow resize to its smart_resize, per-part overrides) before
    /// the image processor, as LMM-R1 does. Off: images go to the image processor as decoded (transformers alone).
    /// </summary>
    public bool FetchLikeQwenVlUtils { get; init; } = true;
    public bool AddGenerationPrompt { get; init; } = true;
    public TimeSpan HttpTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>Model inputs for one prompt. Owns its tensors (made in the calling thread's dispose scope, if one is open).</summary>
public sealed class ProcessedPrompt : IDisposable
{
    /// <summary>The chat-template text (one &lt;|image_pad|&gt; per image, as vLLM receives it).</summary>
    public required string PromptText { get; init; }
    /// <summary>Token ids with every image placeholder expanded.</summary>
    public required long[] InputIds { get; init; }
    /// <summary>[Σ patches, 1176] float32 on the CPU, or null without images.</summary>
    public torch.Tensor? PixelValues { get; init; }
    /// <summary>[n_images, 3] int64 (t, h, w), or null without images.</summary>
    public torch.Tensor? ImageGridThw { get; init; }
    public required IReadOnlyList<ImageGrid> Grids { get; init; }

    public void Dispose()
    {
        PixelValues?.Dispose();
        ImageGridThw?.Dispose();
    }
}

public sealed class QwenVLProcessor
{
    public QwenTokenizer Tokenizer { get; }
    public ImageProcessor ImageProcessor { get; }
    public QwenVLProcessorOptions Options { get; }
    public int ImagePadId { get; }

    public QwenVLProcessor(QwenTokenizer tokenizer, QwenVLProcessorOptions? options = null)
    {
        Tokenizer = tokenizer;
        Options = options ?? new QwenVLProcessorOptions();
        ImageProcessor = new ImageProcessor(Options.Image);
        ImagePadId = tokenizer.TokenToId("<|image_pad|>");
    }

    /// <summary>Chat messages → model inputs. Relative image paths resolve against <paramref name="imageBaseDir"/>.</summary>
    public ProcessedPrompt Process(IReadOnlyList<ChatMessage> messages, string? imageBaseDir = null)
    {
        string prompt = ChatTemplate.Apply(messages, Options.AddGenerationPrompt);
        var parts = messages.SelectMany(m => m.Parts ?? []).ToList();
        if (parts.Any(p => p.Kind == ContentPartKind.Video)) throw new InputException("video inputs are not supported");
        var images = parts.Where(p => p.Kind == ContentPartKind.Image)
            .Select(p => LoadImage(p, ImageRef.Resolve(p.ImageSource ?? throw new InputException("an image part has no 'image' or 'image_url' source"), imageBaseDir)))
            .ToList();
        return Process(prompt, images);
    }

    /// <summary>A prompt sample of a dataset → model inputs (images decoded now, in order).</summary>
    public ProcessedPrompt Process(PromptSample sample) => Build(Prepare(sample));

    /// <summary>
    /// Several samples, decoded and tokenised on all cores; tensors are made afterwards on the calling thread (so they
    /// join its dispose scope, if any). Results are in input order.
    /// </summary>
    public IReadOnlyList<ProcessedPrompt> ProcessMany(IReadOnlyList<PromptSample> samples, int? maxDegreeOfParallelism = null)
    {
        var prepared = new Prepared[samples.Count];
        var opts = new ParallelOptions { MaxDegreeOfParallelism = maxDegreeOfParallelism ?? Environment.ProcessorCount };
        try { Parallel.For(0, samples.Count, opts, i => prepared[i] = Prepare(samples[i])); }
        catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is InputException) is { } first)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(first).Throw(); // the row's own message, not a wrapper
        }
        return prepared.Select(Build).ToList();
    }

    /// <summary>Token ids (placeholders expanded) and image patches, without tensors.</summary>
    sealed record Prepared(string PromptText, long[] InputIds, List<ImagePatches> Patches);

    Prepared Prepare(PromptSample sample)
    {
        if (sample.Messages == null) return Prepare(sample.PromptText(), []);
        string prompt = ChatTemplate.Apply(sample.Messages, Options.AddGenerationPrompt);
        try { return Prepare(prompt, sample.Images.Select(i => LoadImage(i.Part, i.Ref)).ToList()); }
        catch (InputException e) { throw InputException.At(sample.File, sample.Line, null, e.Message); }
    }

    /// <summary>Decodes one image part the way the configured pipeline does (qwen_vl_utils, or transformers' convert_to_rgb).</summary>
    public RgbImage LoadImage(ContentPart part, ImageRef source)
    {
        byte[] bytes = source.ReadBytes(Options.HttpTimeout);
        return Options.FetchLikeQwenVlUtils
            ? QwenVlUtils.FetchImage(bytes, source.Display, part, ImageProcessor.Options)
            : ImageDecoder.Decode(bytes, source.Display).ToRgbLikeTransformers();
    }

    /// <summary>The processor on prompt text and already-decoded images (transformers' processor(text=…, images=…)).</summary>
    public ProcessedPrompt Process(string promptText, IReadOnlyList<RgbImage> images) => Build(Prepare(promptText, images));

    Prepared Prepare(string promptText, IReadOnlyList<RgbImage> images)
    {
        int[] ids = Tokenizer.Encode(promptText);
        int pads = ids.Count(id => id == ImagePadId);
        if (pads != images.Count)
            throw new InputException($"the prompt has {pads} <|image_pad|> placeholder(s) but {images.Count} image(s) were given");
        var patches = images.Select(ImageProcessor.Process).ToList();
        int merge = ImageProcessor.Options.MergeSize;
        var expanded = new List<long>(ids.Length + patches.Sum(p => p.Grid.Tokens(merge)));
        int k = 0;
        foreach (int id in ids)
        {
            if (id != ImagePadId) { expanded.Add(id); continue; }
            int n = patches[k++].Grid.Tokens(merge);
            for (int j = 0; j < n; j++) expanded.Add(ImagePadId);
        }
        return new Prepared(promptText, expanded.ToArray(), patches);
    }

    ProcessedPrompt Build(Prepared p) => new()
    {
        PromptText = p.PromptText,
        InputIds = p.InputIds,
        PixelValues = p.Patches.Count == 0 ? null : ImagePatches.Concat(p.Patches, ImageProcessor.Options.PatchDim),
        ImageGridThw = p.Patches.Count == 0 ? null : ImagePatches.GridTensor(p.Patches),
        Grids = p.Patches.Select(x => x.Grid).ToList(),
    };
}
