// A processed prompt for the generation engine: token ids with <|image_pad|> already expanded, and that prompt's own
// pixel_values / image_grid_thw, optionally with that model's vision-tower output for them (so a caller that encodes
// each image once per step — the trainer — spares the engine's prefill the tower).
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Generation;

/// <summary>One processed prompt. PixelValues [N, C·T·P·P] and ImageGridThw [nImages, 3] hold this prompt's images
/// only (in the order their pad runs appear), or are both null.</summary>
public sealed record GenerationPrompt(IReadOnlyList<int> TokenIds, Tensor? PixelValues = null, Tensor? ImageGridThw = null)
{
    /// <summary>Identity of the prompt for the random stream (with the seed, sample index and step). Null = its index
    /// in the list given to Generate. Set it (e.g. to the dataset row) when a dataset is generated over several calls.</summary>
    public long? Key { get; init; }

    /// <summary>[Σ t·h·w/merge², H] the generating model's own vision-tower output for PixelValues at its current
    /// weights (a cache), or null. When every prompt with images in a micro-batch has it, the prefill scatters these
    /// instead of running the vision tower.</summary>
    public Tensor? ImageEmbeds { get; init; }
}
