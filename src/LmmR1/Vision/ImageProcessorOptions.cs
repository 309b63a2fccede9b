// Settings of the Qwen2-VL image processor (preprocessor_config.json / LMM-R1's --processor_kwargs).
// Defaults are LMM-R1's: min_pixels 4·28·28, max_pixels 16384·28·28 (the released checkpoints' values too; the
// transformers class itself defaults to max 1280·28·28).
using LmmR1.Infrastructure;

namespace LmmR1.Vision;

public sealed record ImageProcessorOptions
{
    public long MinPixels { get; init; } = 4 * 28 * 28;
    public long MaxPixels { get; init; } = 16384 * 28 * 28;
    public int PatchSize { get; init; } = 14;
    public int TemporalPatchSize { get; init; } = 2;
    public int MergeSize { get; init; } = 2;
    public float[] ImageMean { get; init; } = [0.48145466f, 0.4578275f, 0.40821073f];
    public float[] ImageStd { get; init; } = [0.26862954f, 0.26130258f, 0.27577711f];
    /// <summary>Which transformers implementation to reproduce for resizing and normalising (see BicubicResampler).</summary>
    public ResampleKernel Backend { get; init; } = ResampleKernel.Torchvision;

    /// <summary>Side length the resized image is a multiple of (28).</summary>
    public int Factor => PatchSize * MergeSize;
    /// <summary>Values per patch row: 3 · temporal · patch² (1176).</summary>
    public int PatchDim => 3 * TemporalPatchSize * PatchSize * PatchSize;

    /// <summary>
    /// LMM-R1's --processor_kwargs JSON (e.g. {"min_pixels": 3136, "max_pixels": 401408}) applied over these options.
    /// Unknown keys are an error, so a typo does not silently leave the defaults in place.
    /// </summary>
    public ImageProcessorOptions WithProcessorKwargs(string? json)
    {
        if (string.IsNullOrWhiteSpace(json)) return this;
        System.Text.Json.JsonDocument doc;
        try { doc = System.Text.Json.JsonDocument.Parse(json); }
        catch (System.Text.Json.JsonException e) { throw InputException.At(null, null, "--processor_kwargs", $"not valid JSON ({e.Message})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object)
                throw InputException.At(null, null, "--processor_kwargs", "expected a JSON object");
            var o = this;
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (!p.Value.TryGetInt64(out long v))
                    throw InputException.At(null, null, "--processor_kwargs", $"'{p.Name}' must be an integer, got {p.Value.GetRawText()}");
                o = p.Name switch
                {
                    "min_pixels" => o with { MinPixels = v },
                    "max_pixels" => o with { MaxPixels = v },
                    _ => throw InputException.At(null, null, "--processor_kwargs", $"unknown key '{p.Name}': expected min_pixels, max_pixels"),
                };
            }
            return o.Validate();
        }
    }

    public ImageProcessorOptions Validate()
    {
        if (MinPixels <= 0) throw InputException.At(null, null, "min_pixels", $"must be positive, got {MinPixels}");
        if (MaxPixels < MinPixels) throw InputException.At(null, null, "max_pixels", $"must be ≥ min_pixels ({MinPixels}), got {MaxPixels}");
        if (PatchSize <= 0 || TemporalPatchSize <= 0 || MergeSize <= 0)
            throw InputException.At(null, null, "patch_size", "patch_size, temporal_patch_size and merge_size must be positive");
        if (ImageMean.Length != 3 || ImageStd.Length != 3 || ImageStd.Any(s => s <= 0))
            throw InputException.At(null, null, "image_mean", "image_mean and image_std need 3 values, std positive");
        return this;
    }
}
