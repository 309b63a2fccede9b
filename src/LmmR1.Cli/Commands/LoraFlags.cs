// OpenRLHF's LoRA flags (--lora_rank, --lora_alpha, --lora_dropout, --target_modules, --exclude_modules) plus our
// --lora_merge, bound to LoraOptions (null when --lora_rank is 0). --load_in_4bit (QLoRA) is refused: it needs 4-bit
// NF4 weights and matmul kernels (bitsandbytes) that TorchSharp does not have.
using System.CommandLine;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;

namespace LmmR1.Cli.Commands;

internal static class LoraFlags
{
    public static LoraOptions? Bind(ParseResult pr, Option<int> rank, Option<double> alpha, Option<double> dropout, Option<string[]> targets,
                                    Option<string[]> excludes, Option<bool> loadIn4bit, Option<bool> merge, List<string> notes)
    {
        if (pr.GetValue(loadIn4bit))
            throw InputException.At(null, null, "--load_in_4bit",
                "QLoRA is not supported: it needs 4-bit (NF4) quantised weights and matmul kernels (bitsandbytes), which TorchSharp does not have; " +
                "use --lora_rank on bf16 weights (--bf16) instead");
        int r = pr.GetValue(rank);
        if (r == 0)
        {
            if (pr.GetValue(merge)) throw InputException.At(null, null, "--lora_merge", "needs --lora_rank > 0 (without LoRA the saved model is already a full checkpoint)");
            foreach (Option o in new Option[] { alpha, dropout, targets, excludes })
                if (pr.GetResult(o) is { Implicit: false }) notes.Add($"note: ignoring {o.Name} (LoRA is off: --lora_rank 0)");
            return null;
        }
        return new LoraOptions
        {
            Rank = r,
            Alpha = pr.GetValue(alpha),
            Dropout = pr.GetValue(dropout),
            TargetModules = pr.GetValue(targets) ?? [LoraOptions.AllLinear],
            ExcludeModules = pr.GetValue(excludes) ?? [],
            SaveMerged = pr.GetValue(merge),
        };
    }
}
