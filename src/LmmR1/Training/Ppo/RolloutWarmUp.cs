// What the warm-up rollout before a process's first RL step cost (PpoTrainer.WarmUp, --no_rollout_warmup): one rollout
// of that step's own prompts and samples at its own KV capacity, cut after NewTokens new tokens (GenerationEngine.WarmUp),
// whose samples are discarded. Its point is the first use of everything at the step's shapes: the processor's and the
// collect phase's code paths (JIT), the vision tower's and the prefill's kernels (cuBLAS/cuDNN handles, workspaces,
// kernel choices), the decode graph of the first row bucket with every attention window it will reach, and their
// first kernels. Not warmed: the smaller row buckets a compaction moves to, and the update's backward. vLLM does the
// same at engine start (a profiling run, then graph capture); OpenRLHF/LMM-R1 have no such step, their first rollout
// pays it. It draws nothing from any RNG the run uses (the engine's draws are counter-based), changes no weights and
// leaves no counters behind (and no graphs, unless --rollout_keep_cuda_graphs keeps them as it keeps every rollout's),
// so the steps that follow are bit for bit those of a run without it (bench/rl/warmup_check.sh checks it on the GPU).
namespace LmmR1.Training.Ppo;

/// <param name="Seconds">Wall time of the whole warm-up (waits for the device).</param>
/// <param name="ProcessSeconds">The processor (chat template, images, tokens).</param>
/// <param name="VisionSeconds">The actor's vision tower over the prompts' images.</param>
/// <param name="EngineSeconds">The generation engine: prefill, graph captures, NewTokens decode steps.</param>
/// <param name="CollectSeconds">Turning the engine's outputs into samples and query texts.</param>
/// <param name="GraphCaptures">Decode graphs captured (attention windows included; released before the first step
/// unless --rollout_keep_cuda_graphs).</param>
public sealed record RolloutWarmUp(double Seconds, double ProcessSeconds, double VisionSeconds, double EngineSeconds, double CollectSeconds,
                                   long GraphCaptures)
{
    /// <summary>New tokens per sample in the warm-up: enough for the capture (two warm-up replays) and a few host checks.</summary>
    public const int NewTokens = 8;

    /// <summary>The tokens a warm-up generates per sample under --generate_max_len <paramref name="generateMaxLen"/>.</summary>
    public static int TokensFor(int generateMaxLen) => Math.Min(NewTokens, generateMaxLen);

    public override string ToString() =>
        $"{Seconds:F2} s (processor {ProcessSeconds:F2}, vision tower {VisionSeconds:F2}, engine {EngineSeconds:F2}, collect {CollectSeconds:F2}; " +
        $"{GraphCaptures} graph capture(s))";
}
