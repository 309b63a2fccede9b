// A tiny RL setup on the CPU: the generation branch's tiny random Qwen2.5-VL (byte-level tokenizer, matching special
// ids), the example prompt set, and a reward that gives varied rewards to a random policy (the LMM-R1 rule reward
// scores random bytes 0, which leaves no gradient).
using LmmR1.Data;
using LmmR1.Generation;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Tests.Support;
using LmmR1.Text;
using LmmR1.Training.Ppo;
using LmmR1.Vision;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public static class TinyRl
{
    /// <summary>A model folder (config.json, model.safetensors, tokenizer.json …) with random weights from <paramref name="seed"/>:
    /// the generation branch's tiny Qwen2.5-VL demo model (vocabulary = the byte-level tokenizer's 274 ids).</summary>
    public static string WriteModel(string dir, long seed = 0)
    {
        TinyDemoModel.Write(dir, QwenFamily.Qwen25VL, seed);
        return dir;
    }

    /// <summary>The shared model folder (written once per test run).</summary>
    public static string Model => model.Value;
    static readonly Lazy<string> model = new(() => WriteModel(TestPaths.NewTempDir("tiny-rl-model")));

    public static string ExampleData => Path.Combine(TestPaths.RepoRoot, "examples", "data", "test_message.jsonl");

    /// <summary>Small images: at most 16 merged tokens each.</summary>
    public const string SmallImages = "{\"min_pixels\": 3136, \"max_pixels\": 12544}";

    /// <summary>A config for the tiny model on the example data; adjust with `with`.</summary>
    public static PpoConfig Config(string saveDir, AlgorithmSettings? algorithm = null) => new()
    {
        Model = new PpoModelSettings { Pretrain = Model },
        Data = new PpoDataSettings
        {
            Prompts = new PromptDataOptions { PromptData = ExampleData, InputKey = "message", LabelKey = "answer" },
            PromptMaxLen = 2048,
            ProcessorKwargs = SmallImages,
        },
        Rollout = new RolloutSettings { RolloutBatchSize = 2, MicroRolloutBatchSize = 2, SamplesPerPrompt = 2, GenerateMaxLen = 8 },
        Algorithm = algorithm ?? new AlgorithmSettings { Estimator = LmmR1.Algorithms.AdvantageEstimator.ReinforceBaseline, InitKlCoef = 0 },
        Optim = new OptimSettings { TrainBatchSize = 4, MicroTrainBatchSize = 2, ActorLearningRate = 1e-3, CriticLearningRate = 1e-3, LrWarmupRatio = 0, MaxGlobalSteps = 2 },
        Run = new RunSettings { SavePath = Path.Combine(saveDir, "model"), CkptPath = Path.Combine(saveDir, "ckpt") },
    };

    public static QwenVLProcessor Processor(PpoConfig c) =>
        new(QwenTokenizer.Load(c.Model.Pretrain!), new QwenVLProcessorOptions { Image = c.ImageOptions() });

    public static PromptDataset Data(PpoConfig c) => PromptDataset.Load(c.Data.Prompts);
}

/// <summary>A deterministic reward with spread for a random policy: the share of response characters in the first half
/// of the byte range, plus 0.5 when the response is at least 5 characters long. Reports it as the accuracy part.</summary>
public sealed class CharacterReward : IRewardModel
{
    public int Calls { get; private set; }

    public Task<IReadOnlyList<RewardResult>> ScoreAsync(IReadOnlyList<string> queries, IReadOnlyList<string> prompts,
                                                        IReadOnlyList<string> labels, CancellationToken ct = default)
    {
        Calls++;
        var result = queries.Select(q =>
        {
            string resp = LmmR1Reward.ExtractResponse(q);
            double low = resp.Length == 0 ? 0 : resp.Count(ch => ch < 'a') / (double)resp.Length;
            double fmt = resp.Length >= 5 ? 0.5 : 0;
            return new RewardResult(low + fmt, fmt, low);
        }).ToList();
        return Task.FromResult<IReadOnlyList<RewardResult>>(result);
    }
}
