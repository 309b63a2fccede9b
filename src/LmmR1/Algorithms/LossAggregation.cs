// How a per-token loss [B, A] becomes the scalar that is backpropagated, named as the peers name it
// (verl core_algos.agg_loss `loss_agg_mode`, OpenRLHF loss.py aggregate_loss, TRL `loss_type`).
// LMM-R1 (OpenRLHF 0.7.3 with token_level_loss = True) averages over the valid tokens of each micro-batch and then
// divides by the accumulation steps: `micro-token-mean`, our default. The global modes normalise by totals over all
// micro-batches of one optimizer step, which makes the gradient independent of how the step is split (verl/DAPO
// token-mean with global_batch_info): they return Σ(micro) / total × divisor, where divisor is what the trainer
// divides each micro-batch loss by, so that after that division the sum over the step is Σ(step) / total exactly.
// Dr. GRPO's sequence-sum over a constant: `seq-mean-token-sum-norm` = Σ over the step's tokens / (sequences × L),
// L = --generate_max_len as TRL's dr_grpo uses max_completion_length (verl's default is the padded width instead).
using LmmR1.Infrastructure;
using static TorchSharp.torch;

namespace LmmR1.Algorithms;

public enum LossAggregation
{
    /// <summary><c>micro-token-mean</c>: Σ over the micro-batch's valid tokens ÷ their count (LMM-R1's default).</summary>
    TokenMean,
    /// <summary><c>micro-seq-mean-token-mean</c>: per-sequence token mean, then the mean over the micro-batch's
    /// sequences with at least one valid token (OpenRLHF token_level_loss = False without global sizes).</summary>
    SequenceMean,
    /// <summary><c>token-mean</c>: Σ over the step's valid tokens ÷ the step's token count (verl, DAPO).</summary>
    GlobalTokenMean,
    /// <summary><c>seq-mean-token-mean</c>: Σ of per-sequence token means ÷ the step's non-empty sequences.</summary>
    GlobalSequenceMean,
    /// <summary><c>seq-mean-token-sum</c>: Σ of per-sequence token sums ÷ the step's non-empty sequences.</summary>
    GlobalSequenceSum,
    /// <summary><c>seq-mean-token-sum-norm</c>: Σ over the step's tokens ÷ (step's sequences × a constant length),
    /// Dr. GRPO's unbiased loss.</summary>
    SequenceSumNorm,
}

/// <summary>Totals over all micro-batches of one optimizer step, for the global modes. Divisor = what the trainer
/// divides each micro-batch loss by (its accumulation steps); NormLength = Dr. GRPO's constant length.</summary>
public sealed record StepTotals(double Tokens, double Sequences, double Divisor, double NormLength)
{
    /// <summary>Totals of the action masks ([B, A] each) of one optimizer step's micro-batches. Sequences counts the
    /// non-empty rows (verl excludes fully masked ones; for Dr. GRPO every row is non-empty in practice).</summary>
    public static StepTotals Of(IEnumerable<Tensor> actionMasks, double divisor, double normLength)
    {
        double tokens = 0, sequences = 0;
        foreach (var m in actionMasks)
        {
            using var scope = NewDisposeScope();
            var valid = m.dtype == ScalarType.Bool ? m : m.NeS(0);
            tokens += valid.sum().item<long>();
            sequences += valid.any(-1).sum().item<long>();
        }
        return new StepTotals(tokens, sequences, divisor, normLength);
    }
}

public static class LossAggregations
{
    static readonly (LossAggregation Mode, string Name)[] Names =
    [
        (LossAggregation.TokenMean, "micro-token-mean"),
        (LossAggregation.SequenceMean, "micro-seq-mean-token-mean"),
        (LossAggregation.GlobalTokenMean, "token-mean"),
        (LossAggregation.GlobalSequenceMean, "seq-mean-token-mean"),
        (LossAggregation.GlobalSequenceSum, "seq-mean-token-sum"),
        (LossAggregation.SequenceSumNorm, "seq-mean-token-sum-norm"),
    ];

    public static IReadOnlyList<string> AllNames { get; } = Names.Select(n => n.Name).ToArray();

    public static string Name(LossAggregation mode) => Names.First(n => n.Mode == mode).Name;

    /// <summary>The mode for a peer's name, or null when it is none of <see cref="AllNames"/>.</summary>
    public static LossAggregation? TryParse(string name)
    {
        foreach (var (mode, n) in Names) if (n == name) return mode;
        return null;
    }

    /// <summary>Whether the mode needs <see cref="StepTotals"/> (normalises over the whole optimizer step).</summary>
    public static bool IsGlobal(LossAggregation mode) => mode is not (LossAggregation.TokenMean or LossAggregation.SequenceMean);

    /// <summary>The sequence-level mode of the same scope (GSPO's loss is a mean over sequences, as verl forces).</summary>
    public static LossAggregation SequenceLevel(LossAggregation mode) => mode switch
    {
        LossAggregation.TokenMean => LossAggregation.SequenceMean,
        LossAggregation.GlobalTokenMean => LossAggregation.GlobalSequenceMean,
        _ => mode,
    };
}
