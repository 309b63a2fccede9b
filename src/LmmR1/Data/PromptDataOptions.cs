// The prompt-data flags of LMM-R1/OpenRLHF's train_ppo_ray.py (same names and defaults), as one record that the
// train/generate/eval/data commands bind their options to.
using System.Globalization;
using LmmR1.Infrastructure;

namespace LmmR1.Data;

public sealed record PromptDataOptions
{
    /// <summary>--prompt_data: comma list of .jsonl/.json/.parquet files or folders of them.</summary>
    public string? PromptData { get; init; }
    /// <summary>--prompt_data_probs: comma list of sampling probabilities, one per --prompt_data entry (interleaving).</summary>
    public string? PromptDataProbs { get; init; }
    /// <summary>--eval_dataset: like --prompt_data, always concatenated.</summary>
    public string? EvalDataset { get; init; }
    /// <summary>--input_key (OpenRLHF default "input"; LMM-R1 uses "message").</summary>
    public string InputKey { get; init; } = "input";
    /// <summary>--label_key; null gives empty labels.</summary>
    public string? LabelKey { get; init; }
    /// <summary>--input_template: Python-format string with one {} for plain-text prompts (without --apply_chat_template).</summary>
    public string? InputTemplate { get; init; }
    /// <summary>--apply_chat_template: render plain-text prompts as one user message of the chat template.</summary>
    public bool ApplyChatTemplate { get; init; }
    /// <summary>--max_samples: per dataset and in total, as OpenRLHF applies it.</summary>
    public long MaxSamples { get; init; } = 100_000_000;
    /// <summary>--seed: interleaving and shuffling.</summary>
    public int Seed { get; init; } = 42;
    /// <summary>--skip_bad_rows: skip malformed rows (counted and reported) instead of failing.</summary>
    public bool SkipBadRows { get; init; }

    public PromptDataOptions Validate()
    {
        if (string.IsNullOrWhiteSpace(PromptData)) throw InputException.At(null, null, "--prompt_data", "required: a comma list of .jsonl/.json/.parquet files or folders");
        if (string.IsNullOrWhiteSpace(InputKey)) throw InputException.At(null, null, "--input_key", "must not be empty");
        if (MaxSamples <= 0) throw InputException.At(null, null, "--max_samples", $"must be positive, got {MaxSamples}");
        if (InputTemplate != null && PythonFormatOne(InputTemplate, "x") == null)
            throw InputException.At(null, null, "--input_template", "expected a template with exactly one {} (braces doubled as {{ }})");
        if (PromptDataProbs != null) _ = Probabilities(Specs(PromptData).Count);
        return this;
    }

    /// <summary>The entries of a comma list of datasets.</summary>
    public static IReadOnlyList<string> Specs(string? list) =>
        (list ?? "").Split(',').Select(s => s.Trim()).Where(s => s.Length > 0).ToList();

    /// <summary>--prompt_data_probs parsed and checked against the dataset count (non-negative, summing to 1).</summary>
    public double[] Probabilities(int datasets)
    {
        var parts = (PromptDataProbs ?? "").Split(',').Select(s => s.Trim()).ToArray();
        var p = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out p[i]) || !(p[i] >= 0) || double.IsInfinity(p[i]))
                throw InputException.At(null, null, "--prompt_data_probs", $"'{parts[i]}' is not a non-negative number");
        if (p.Length != datasets)
            throw InputException.At(null, null, "--prompt_data_probs", $"{p.Length} probabilities for {datasets} datasets in --prompt_data");
        double sum = p.Sum();
        if (Math.Abs(sum - 1) > 1e-6) throw InputException.At(null, null, "--prompt_data_probs", $"probabilities sum to {sum}, expected 1");
        return p;
    }

    /// <summary>Python str.format with one positional {} (and {{ }} escapes); null when the template has another shape.</summary>
    public static string? PythonFormatOne(string template, string value)
    {
        var sb = new System.Text.StringBuilder();
        int fields = 0;
        for (int i = 0; i < template.Length; i++)
        {
            char c = template[i];
            if (c == '{' && i + 1 < template.Length && template[i + 1] == '{') { sb.Append('{'); i++; }
            else if (c == '}' && i + 1 < template.Length && template[i + 1] == '}') { sb.Append('}'); i++; }
            else if (c == '{' && i + 1 < template.Length && template[i + 1] == '}') { sb.Append(value); i++; fields++; }
            else if (c is '{' or '}') return null;
            else sb.Append(c);
        }
        return fields == 1 ? sb.ToString() : null;
    }
}
