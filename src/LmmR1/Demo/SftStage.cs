// The demo's supervised warm-up, run by `lmmr1 sft`'s own trainer (Training/Sft/SftTrainer, OpenRLHF's SFT loop):
// an SftConfig in train_sft.py's flag terms built from the demo's settings, the demo's sft.jsonl read as chat
// messages (`message`) with the target in `response` (loss on the assistant turn), the model trained in place.
// As RlStage is for FRE and MGT; nothing here is a second SFT loop.
using LmmR1.Data;
using LmmR1.Models.Qwen;
using LmmR1.Training.Sft;

namespace LmmR1.Demo;

public static class SftStage
{
    /// <summary>The trainer configuration of the warm-up (the model is loaded by the caller from <paramref name="pretrain"/>).</summary>
    public static SftConfig Config(DemoConfig demo, string pretrain, string sftFile) => new()
    {
        Pretrain = pretrain,
        Data = new SftDataOptions { Dataset = sftFile, InputKey = "message", OutputKey = "response" },
        TrainBatchSize = demo.Sft.BatchSize,
        MicroTrainBatchSize = demo.Sft.MicroBatchSize,
        MaxEpochs = demo.Sft.Epochs,
        LearningRate = demo.Sft.LearningRate,
        LrWarmupRatio = demo.Sft.WarmupRatio,
        Seed = demo.Seed,
        Device = demo.Device,
    };

    /// <summary>Trains <paramref name="model"/> in place on <paramref name="sftFile"/>; returns the loss of every
    /// optimizer step.</summary>
    public static IReadOnlyList<double> Run(DemoConfig demo, QwenVLModel model, QwenVLProcessor processor, string pretrain, string sftFile,
                                            Action<string>? log = null, CancellationToken ct = default)
    {
        var config = Config(demo, pretrain, sftFile);   // validated by the trainer
        using var data = SftDataset.Load(config.Data, processor);
        using var trainer = new SftTrainer(config, model, data, processor.Tokenizer.PadTokenId, log: log);
        model.train();
        trainer.Fit(ct);
        return trainer.LossHistory.ToList();
    }
}
