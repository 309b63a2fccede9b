// One prompt of a dataset as LMM-R1's PromptDataset yields it (datasource, prompt, label), plus what our pipeline
// needs: the parsed messages and the image references (resolved, not decoded).
using LmmR1.Text;
using LmmR1.Vision;

namespace LmmR1.Data;

/// <summary>An image of a sample: the message part (with its per-image options) and where its bytes are.</summary>
public sealed record SampleImage(ContentPart Part, ImageRef Ref);

public sealed record PromptSample
{
    /// <summary>"file name:line" of the row (for parquet: row number), stable across runs.</summary>
    public required string Id { get; init; }
    /// <summary>Full path of the data file.</summary>
    public required string File { get; init; }
    public required long Line { get; init; }
    /// <summary>
    /// The prompt as OpenRLHF's preprocess_data returns it and LMM-R1 sends it to the reward server: the input
    /// field verbatim (LMM-R1's stringified message list; a real JSON list as its JSON text; plain text after
    /// --input_template), or the chat-template text with --apply_chat_template on a plain-text prompt.
    /// </summary>
    public required string Prompt { get; init; }
    /// <summary>The chat messages; null for a plain-text prompt without --apply_chat_template (fed to the model as is).</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; init; }
    /// <summary>The label_key value ("" without --label_key); non-string JSON values as their JSON text.</summary>
    public required string Label { get; init; }
    /// <summary>The row's "datasource", else "default" (as LMM-R1's PromptDataset).</summary>
    public required string Datasource { get; init; }
    public IReadOnlyList<SampleImage> Images { get; init; } = [];

    /// <summary>The text the model is prompted with (chat template applied when there are messages).</summary>
    public string PromptText(bool addGenerationPrompt = true) =>
        Messages == null ? Prompt : ChatTemplate.Apply(Messages, addGenerationPrompt);
}

/// <summary>A row that could not be used: where and why.</summary>
public sealed record BadRow(string File, long Line, string Reason)
{
    public override string ToString() => $"{File}:{Line}: {Reason}";
}
