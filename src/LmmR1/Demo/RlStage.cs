// One RL stage of the demo (FRE or MGT) run by the product's trainer: a PpoConfig in LMM-R1's flag terms (as
// `lmmr1 train` would build it from the command line), the model loaded from the previous stage's folder, the
// built-in LMM-R1 rule reward, metrics.jsonl through MetricsLog, and the final model saved as a Hugging Face folder
// with its tokenizer (by the trainer), for the next stage to load.
using LmmR1.Algorithms;
using LmmR1.Data;
using LmmR1.Models.Qwen;
using LmmR1.Rewards;
using LmmR1.Training.Logging;
using LmmR1.Training.Ppo;
using static TorchSharp.torch;

namespace LmmR1.Demo;

/// <summary>Per global step: the rollout's mean reward and its accuracy part.</summary>
public sealed record RlStepPoint(long Step, double Reward, double AccuracyReward, double FormatReward, double Seconds);

public static class RlStage
{
    /// <summary>The trainer configuration of a stage.</summary>
    public static PpoConfig Config(DemoConfig demo, DemoRlSettings s, string pretrain, string promptData, string saveDir) => new()
    {
        Model = new PpoModelSettings { Pretrain = pretrain, Device = demo.Device, FreezePrefix = s.FreezePrefix },
        Data = new PpoDataSettings
        {
            Prompts = new PromptDataOptions { PromptData = promptData, InputKey = "message", LabelKey = "answer", Seed = demo.Seed },
            PromptMaxLen = 512,
        },
        Rollout = new RolloutSettings
        {
            RolloutBatchSize = s.PromptsPerStep,
            MicroRolloutBatchSize = s.PromptsPerStep * s.SamplesPerPrompt,
            SamplesPerPrompt = s.SamplesPerPrompt,
            GenerateMaxLen = demo.GenerateMaxLen,
            Temperature = demo.Temperature,
        },
        Algorithm = s.Dapo
            ? new AlgorithmSettings
            {
                Estimator = s.Estimator, InitKlCoef = s.InitKlCoef, EpsClipLow = 0.2, EpsClipHigh = 0.28,
                LossAggMode = LossAggregation.GlobalTokenMean, DynamicFiltering = true, DynamicFilteringMaxRounds = 2,
            }
            : new AlgorithmSettings { Estimator = s.Estimator, InitKlCoef = s.InitKlCoef },
        Optim = new OptimSettings
        {
            TrainBatchSize = s.TrainBatchSize,
            MicroTrainBatchSize = s.MicroTrainBatchSize,
            ActorLearningRate = s.LearningRate,
            LrWarmupRatio = s.WarmupRatio,
            MaxGlobalSteps = s.Steps,
            RecomputeOldLogProb = s.RecomputeOldLogProb,
        },
        Run = new RunSettings { Seed = demo.Seed, SavePath = saveDir, CkptPath = Path.Combine(saveDir, "checkpoints") },
    };

    /// <summary>Trains from <paramref name="pretrain"/> on <paramref name="promptData"/> and saves to <paramref name="saveDir"/>.
    /// Returns the reward curve.</summary>
    public static IReadOnlyList<RlStepPoint> Run(DemoConfig demo, DemoRlSettings s, string pretrain, string promptData, string saveDir,
                                                 QwenVLProcessor processor, IRewardModel reward, Device device,
                                                 Action<RlStepPoint>? onStep = null, Action<string>? log = null, CancellationToken ct = default)
    {
        var (config, _) = Config(demo, s, pretrain, promptData, saveDir).Resolve();
        config.Validate();
        var train = PromptDataset.Load(config.Data.Prompts);
        var actor = DemoRunner.LoadModel(demo, pretrain, device);
        var reference = config.UsesReference ? DemoRunner.LoadModel(demo, pretrain, device) : null;
        using var models = PpoModels.Prepare(config, actor, reference, null, referenceFromSameCheckpoint: true, log);
        using var metrics = new MetricsLog(saveDir);
        using var trainer = new PpoTrainer(config, models, processor, train, null, reward, metrics, log);
        var curve = new List<RlStepPoint>();
        trainer.StepCompleted += r =>
        {
            var p = new RlStepPoint(r.GlobalStep, r.Metrics.Rollout.Reward, r.Metrics.Rollout.AccReward,
                r.Metrics.Rollout.FormatReward, r.Metrics.StepSeconds);
            curve.Add(p);
            onStep?.Invoke(p);
        };
        trainer.Fit(ct);                    // saves the final model (with its tokenizer) to saveDir
        ct.ThrowIfCancellationRequested();
        return curve;
    }
}
