// Everything `lmmr1 demo` does, as one immutable record: data sizes, the SFT warm-up budget, the two RL stages
// (FRE on text, MGT on images) in the trainer's own terms, and how held-out accuracy is measured. Quick and full
// differ only in budgets (steps, prompts, held-out size); the whole run is a function of this record and the seed.
using LmmR1.Algorithms;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;

namespace LmmR1.Demo;

/// <summary>The supervised warm-up, run by `lmmr1 sft`'s trainer (Training/Sft/SftTrainer): a fixed, deliberately short
/// budget so RL has headroom.</summary>
public sealed record DemoSftSettings
{
    /// <summary>--max_epochs over the SFT set: Epochs · (SftExamples // BatchSize) optimizer steps. The vision path is
    /// learnt late and at a seed-dependent step: at 12 epochs seed 3 left SFT with the images at chance on both AVX
    /// paths (35.9 % on avx512, where MGT then lost 2.5 points), at 14 epochs still 39.6 %; at 16 epochs every seed 1–5
    /// on every kernel path reads them after SFT (56–69 %; counting is learnt in all 15 quick runs, the red-vs-blue
    /// comparison stays near chance in 4; bench/demo).</summary>
    public int Epochs { get; init; } = 16;
    /// <summary>--train_batch_size.</summary>
    public int BatchSize { get; init; } = 32;
    /// <summary>--micro_train_batch_size.</summary>
    public int MicroBatchSize { get; init; } = 32;
    public double LearningRate { get; init; } = 6e-3;
    public double WarmupRatio { get; init; } = 0.05;
    /// <summary>Share of image examples in the SFT set (the rest is text). At 0.5 the vision path of seed 1 stays at
    /// chance after SFT (images 36 %, and MGT then gains nothing in 60 steps); at 0.7 (and 12 epochs) seeds 1, 2, 4, 5
    /// read the images after SFT (52–65 %), seed 3 does not (see <see cref="Epochs"/>); 0.8 or 0.9 at 12 epochs lift
    /// seed 3's images (43 %, 50 %) at the cost of its text (43 %, 27 % after SFT).</summary>
    public double ImageFraction { get; init; } = 0.7;
    /// <summary>Share of SFT demonstrations whose final answer disagrees with their own (correct) worked steps: sloppy
    /// demonstrations that the verifiable reward of the RL stages can correct.</summary>
    public double AnswerNoise { get; init; } = 0.3;
}

/// <summary>One RL stage, in LMM-R1's flags.</summary>
public sealed record DemoRlSettings
{
    public AdvantageEstimator Estimator { get; init; } = AdvantageEstimator.ReinforceBaseline;
    /// <summary>--max_global_steps: rollouts.</summary>
    public int Steps { get; init; } = 40;
    /// <summary>--rollout_batch_size.</summary>
    public int PromptsPerStep { get; init; } = 16;
    /// <summary>--n_samples_per_prompt.</summary>
    public int SamplesPerPrompt { get; init; } = 8;
    /// <summary>--train_batch_size (samples per optimizer step).</summary>
    public int TrainBatchSize { get; init; } = 128;
    public int MicroTrainBatchSize { get; init; } = 64;
    /// <summary>--actor_learning_rate: 1e-3 and above first damages the policy (train reward falls for ~10 steps) on
    /// this model; 3e-4–5e-4 gain steadily (and alike: seed 1, 40 FRE steps: +9.6 at 3e-4, +9.1 at 5e-4).</summary>
    public double LearningRate { get; init; } = 4e-4;
    /// <summary>--lr_warmup_ratio: a fresh AdamW's first steps move every weight by about the learning rate whatever
    /// the gradient, which a noisy policy gradient turns into damage; a short warmup avoids that.</summary>
    public double WarmupRatio { get; init; } = 0.2;
    public double InitKlCoef { get; init; }
    /// <summary>DAPO's settings on top (demo --algo dapo): clip-higher [0.8, 1.28], token-mean over the optimizer
    /// step, dynamic filtering of all-right / all-wrong groups with up to 2 extra rounds.</summary>
    public bool Dapo { get; init; }
    /// <summary>--freeze_prefix.</summary>
    public IReadOnlyList<string> FreezePrefix { get; init; } = [];
    /// <summary>--recompute_old_log_prob: the separate old-log-prob forward before each update, although the stage's one
    /// train batch per rollout gets them from the update's own forward (OldLogProbPlan); for timing comparisons.</summary>
    public bool RecomputeOldLogProb { get; init; }
}

public sealed record DemoConfig
{
    public int Seed { get; init; } = 42;
    public bool Quick { get; init; }
    /// <summary>cpu, cuda or cuda:N.</summary>
    public string Device { get; init; } = "cpu";
    /// <summary>Torch intra-op threads. One: the model is too small to gain from more, one thread makes a CPU run
    /// reproduce its numbers exactly, and two spinning OpenMP threads slowed SFT ~5× on a busy 2-core machine.</summary>
    public int Threads { get; init; } = 1;
    /// <summary>Attention kernels of every model the demo loads (SFT, RL actor and reference, evaluation): sdpa or eager.
    /// SDPA: eager was slower on the CPU (seed 1, scalar `default` kernels: SFT and RL steps ~10–25 % longer; bench/demo).</summary>
    public AttentionImpl Attention { get; init; } = AttentionImpl.Sdpa;

    // ---- data
    /// <summary>Multisets of four digits 0–4 held out of the 70 (no order of them is trained on); 0 = hold out digit
    /// sequences instead (other orders of the same digits are trained on).</summary>
    public int TextHeldOutSets { get; init; }
    /// <summary>Held-out text prompts (orders of the held-out multisets). 128: the paired standard error of a gain is
    /// ~1.7 points (64 prompts: ~2.5).</summary>
    public int TextHeldOut { get; init; } = 128;
    /// <summary>Training scenes per image task (count, compare).</summary>
    public int ImageTrainPerTask { get; init; } = 384;
    /// <summary>Held-out scenes per image task.</summary>
    public int ImageHeldOutPerTask { get; init; } = 64;
    /// <summary>Examples in the SFT set (text and images, see <see cref="DemoSftSettings.ImageFraction"/>).</summary>
    public int SftExamples { get; init; } = 1024;

    // ---- evaluation
    /// <summary>Samples per held-out prompt; pass@1 = mean accuracy over them.</summary>
    public int EvalSamplesPerPrompt { get; init; } = 8;
    /// <summary>Sampling temperature of rollouts and of the pass@1 evaluation.</summary>
    public double Temperature { get; init; } = 1.0;
    public int GenerateMaxLen { get; init; } = 32;
    /// <summary>Also report greedy accuracy (one more, cheap, generation per evaluation).</summary>
    public bool GreedyEval { get; init; } = true;

    // ---- stages
    public DemoSftSettings Sft { get; init; } = new();
    public DemoRlSettings Fre { get; init; } = new();
    public DemoRlSettings Mgt { get; init; } = new();

    /// <summary>The demo's settings: <paramref name="quick"/> for the test suite (under 2 minutes on 2 cores), else
    /// the README's run (under 10).</summary>
    public static DemoConfig For(bool quick, int seed = 42) => quick
        // FRE gets more steps than MGT: text pass@1 at T=1 rises slowly (seeds 1, 2: +9 after 60 steps), images fast
        // once SFT has taught the vision path (in the 12-epoch sweep, each of the 14 runs whose SFT had learnt the
        // images had made at least 65 % of MGT's 80-step rise in train accuracy by step 60). 65 / 45 steps (from
        // 100 / 60) bring the scalar `default` kernel path under 2 minutes on 2 cores with room to spare: in the
        // 100 / 60 sweep's train-accuracy curves FRE had made ~75 % of its 100-step rise by step 65 and MGT ~80 % of
        // its 60-step rise by step 45 (the slowest MGT runs are flat from step 40). Gains and timings: bench/demo.
        ? new DemoConfig { Seed = seed, Quick = true, Fre = new DemoRlSettings { Steps = 65 }, Mgt = new DemoRlSettings { Steps = 45 } }
        : new DemoConfig
        {
            Seed = seed,
            Fre = new DemoRlSettings { Steps = 200 },
            Mgt = new DemoRlSettings { Steps = 150 },
        };

    static readonly System.Text.Json.JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(System.Text.Json.JsonNamingPolicy.SnakeCaseLower) },
        WriteIndented = true,
    };

    /// <summary>The resolved settings as JSON (written as demo_config.json beside the summary).</summary>
    public string ToJson() => System.Text.Json.JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Settings from a JSON file in <see cref="ToJson"/>'s form (fields left out keep their defaults).</summary>
    public static DemoConfig FromJsonFile(string path)
    {
        if (!File.Exists(path)) throw InputException.At(path, null, "--config", "no such file");
        try
        {
            return System.Text.Json.JsonSerializer.Deserialize<DemoConfig>(File.ReadAllText(path), JsonOptions)
                   ?? throw InputException.At(path, null, "--config", "expected a JSON object");
        }
        catch (System.Text.Json.JsonException e)
        {
            throw InputException.At(path, e.LineNumber + 1, "--config", e.Message);
        }
    }

    public DemoConfig Validate()
    {
        if (Threads < 1) throw Bad("threads", $"must be ≥ 1, got {Threads}");
        if (TextHeldOutSets < 0 || TextHeldOutSets > 60) throw Bad("text_held_out_sets", $"must be in 0..60 (0: hold out digit sequences, not multisets), got {TextHeldOutSets}");
        if (TextHeldOut < 1) throw Bad("text_held_out", $"must be ≥ 1, got {TextHeldOut}");
        if (ImageTrainPerTask < 1 || ImageHeldOutPerTask < 1) throw Bad("image_per_task", "must be ≥ 1");
        if (SftExamples < 1 || Sft.Epochs < 1 || Sft.BatchSize < 1 || Sft.MicroBatchSize < 1) throw Bad("sft", "sizes must be positive");
        if (Sft.BatchSize % Sft.MicroBatchSize != 0) throw Bad("sft.batch_size", $"{Sft.BatchSize} is not a multiple of sft.micro_batch_size {Sft.MicroBatchSize}");
        if (SftExamples < Sft.BatchSize) throw Bad("sft_examples", $"{SftExamples} examples, fewer than one SFT batch of {Sft.BatchSize}");
        if (!(Sft.ImageFraction >= 0 && Sft.ImageFraction <= 1)) throw Bad("sft.image_fraction", $"must be in [0, 1], got {Sft.ImageFraction}");
        if (EvalSamplesPerPrompt < 1) throw Bad("eval_samples_per_prompt", $"must be ≥ 1, got {EvalSamplesPerPrompt}");
        if (!(Temperature > 0)) throw Bad("temperature", $"must be > 0, got {Temperature}");
        return this;
    }

    static InputException Bad(string field, string message) => InputException.At(null, null, field, message);
}
