// A processed prompt for the generation engine: token ids with <|image_pad|> already expanded, and that prompt's own
// pixel_values / image_grid_thw.
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
}
