// The trainer's guards, through test hooks on the tiny model: a non-finite loss or gradient skips the optimizer step
// (weights and AdamW state bit-identical to before it) and --max_nonfinite_steps of them in a row stop the run with
// advice; a finite step resets the count; a CUDA out-of-memory error during generation halves the engine's rows per
// micro-batch and retries, giving the same samples and the same update as the run that never ran out.
using System.Runtime.InteropServices;
using LmmR1.Tests.Support;
using LmmR1.Tests.Training;
using LmmR1.Training.Ppo;
using LmmR1.Training.Runs;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Runs;

public class SafetyTests
{
    sealed class Setup : IDisposable
    {
        public required PpoTrainer Trainer;
        public required PpoModels Models;
        public required MemorySink Sink;
        public List<string> Log { get; } = [];
        public void Dispose() { Trainer.Dispose(); Models.Dispose(); }
    }

    static Setup Build(Func<PpoConfig, PpoConfig>? change = null)
    {
        var c = TinyRl.Config(TestPaths.NewTempDir("safety"));
        c = (change ?? (x => x))(c with { Optim = c.Optim with { MaxGlobalSteps = 4 } }).Resolve().Config.Validate();
        var models = PpoModels.Load(c, torch.CPU);
        var sink = new MemorySink();
        var log = new List<string>();
        var trainer = new PpoTrainer(c, models, TinyRl.Processor(c), TinyRl.Data(c), null, new CharacterReward(), sink, log.Add);
        var s = new Setup { Trainer = trainer, Models = models, Sink = sink };
        s.Log.AddRange(log);
        trainer.StepCompleted += _ => { s.Log.AddRange(log); log.Clear(); };
        return s;
    }

    static Dictionary<string, Tensor> Snapshot(IEnumerable<(string Name, Tensor T)> ts) => ts.ToDictionary(p => p.Name, p => p.T.detach().clone());

    static void AssertUnchanged(Dictionary<string, Tensor> before, IEnumerable<(string Name, Tensor T)> now)
    {
        foreach (var (name, t) in now)
        {
            Assert.True(t.isfinite().all().item<bool>(), $"{name} is not finite");
            Assert.True(before[name].eq(t).all().item<bool>(), $"{name} changed");
        }
    }

    static IEnumerable<(string, Tensor)> Weights(Setup s) => s.Models.Actor.named_parameters().Select(p => (p.name, (Tensor)p.parameter));
    static IEnumerable<(string, Tensor)> Adam(Setup s) => s.Trainer.ActorOptimizer.StateTensors().Select(kv => (kv.Key, kv.Value));

    [Fact]
    public void NonFiniteLossesAreSkippedAndKInARowStopTheRunWithAdvice()
    {
        using var s = Build(c => c with { Run = c.Run with { MaxNonFiniteSteps = 2 } });
        var t = s.Trainer;
        var data = TinyRl.Data(t.Config);
        t.TrainStep([data[0], data[1]]);                                     // one good step
        var weights = Snapshot(Weights(s));
        var adam = Snapshot(Adam(s));
        long adamSteps = t.ActorOptimizer.AdamSteps;

        t.TransformActorLoss = loss => loss * double.NaN;
        t.TrainStep([data[1], data[2]]);                                     // skipped, 1 in a row
        Assert.Equal(1, t.State.ActorNonFiniteInARow);
        var e = Assert.Throws<TrainingDivergedException>(() => t.TrainStep([data[2], data[0]]));   // 2 in a row: stop
        Assert.Contains("2 actor optimizer steps in a row", e.Message);
        Assert.Contains("--max_nonfinite_steps 2", e.Message);
        Assert.Contains("Try a lower --actor_learning_rate", e.Message);

        AssertUnchanged(weights, Weights(s));
        AssertUnchanged(adam, Adam(s));
        Assert.Equal(adamSteps, t.ActorOptimizer.AdamSteps);                // AdamW's bias correction did not advance
        Assert.Equal(2, t.ActorOptimizer.SkippedSteps);
        Assert.Equal(3, t.ActorOptimizer.Steps);                             // the LR schedule did (as DeepSpeed's would)
        Assert.Equal([0.0, 1.0, 1.0], s.Sink.Rows.Select(r => r.Metrics["train/skipped_steps"]));
        Assert.Contains(s.Log, l => l.Contains("actor loss is not finite; optimizer step skipped"));
    }

    [Fact]
    public void ANonFiniteGradientIsSkippedAndAFiniteStepResetsTheCount()
    {
        using var s = Build();
        var t = s.Trainer;
        var data = TinyRl.Data(t.Config);
        t.TrainStep([data[0], data[1]]);
        var weights = Snapshot(Weights(s));
        var (name, p) = s.Models.Actor.named_parameters().First(x => x.parameter.requires_grad);
        t.BeforeActorStep = () => { using (torch.no_grad()) p.grad![0] = float.NaN; };     // one NaN in one gradient
        t.TrainStep([data[1], data[2]]);
        Assert.Equal(1, t.State.ActorNonFiniteInARow);
        AssertUnchanged(weights, Weights(s));
        Assert.True(double.IsNaN(s.Sink.Rows[1].Metrics["train/grad_norm"]));
        Assert.Contains(s.Log, l => l.Contains("actor gradient norm is not finite"));

        t.BeforeActorStep = null;
        t.TrainStep([data[2], data[0]]);
        Assert.Equal(0, t.State.ActorNonFiniteInARow);
        Assert.False(weights[name].eq(p).all().item<bool>());                                // training goes on
    }

    [Fact]
    public void OutOfMemoryInGenerationHalvesTheMicroBatchAndChangesNothingElse()
    {
        PpoConfig Rows(PpoConfig c) => c with { Rollout = c.Rollout with { MaxBatchRows = 4 } };
        using var plain = Build(Rows);
        using var oom = Build(Rows);
        int attempts = 0;
        var seen = new List<int>();
        oom.Trainer.Maker.BeforeEngineGenerate = o =>
        {
            attempts++;
            seen.Add(o.MaxRowsPerBatch);
            if (o.MaxRowsPerBatch > 1)
                throw new ExternalException("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity)");
        };
        var data = TinyRl.Data(plain.Trainer.Config);
        var a = plain.Trainer.TrainStep([data[0], data[1]]);
        var b = oom.Trainer.TrainStep([data[0], data[1]]);

        Assert.Equal([4, 2, 1], seen);                                       // halved twice, then it fit
        Assert.Equal(1, oom.Trainer.Maker.Engine.Options.MaxRowsPerBatch);  // and stays halved
        Assert.Equal(2, oom.Log.Count(l => l.Contains("out of memory while generating")));
        Assert.Equal(a.Samples.Select(x => x.Response), b.Samples.Select(x => x.Response));
        Assert.Equal(a.FirstSample, b.FirstSample);
        var (ma, mb) = (a.Metrics.ToLog(), b.Metrics.ToLog());
        foreach (var (k, v) in ma.Where(kv => !kv.Key.StartsWith("time/", StringComparison.Ordinal)))
            if (k == "train/rollout_logprob_gap")
                Assert.True(Math.Abs(v - mb[k]) <= 1e-5, k);                 // engine log-probs: the engine's batching tolerance
            else
                Assert.True(v.Equals(mb[k]), $"{k}: {mb[k]:R} vs {v:R}");
        var wa = plain.Models.Actor.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        foreach (var (n, w) in oom.Models.Actor.named_parameters()) Assert.True(wa[n].eq(w).all().item<bool>(), n);

        // Anything else propagates; a one-row engine that still runs out gives up.
        oom.Trainer.Maker.BeforeEngineGenerate = _ => throw new ExternalException("CUDA error: device-side assert triggered");
        Assert.Throws<ExternalException>(() => oom.Trainer.TrainStep([data[0], data[1]]));
        oom.Trainer.Maker.BeforeEngineGenerate = _ => throw new ExternalException("CUDA out of memory. Tried to allocate 2.00 GiB.");
        var gaveUp = Assert.Throws<ExternalException>(() => oom.Trainer.TrainStep([data[0], data[1]]));
        // What the user reads names the phase it happened in.
        Assert.Equal("generate", LmmR1.Training.PhaseTimer.PhaseOf(gaveUp));
        Assert.Contains("Tried to allocate 2.00 GiB. (in the step's generate phase)", LmmR1.Cli.CliErrors.MessageOf(gaveUp));
        Assert.True(ExperienceMaker.IsOutOfMemory(new InvalidOperationException("wrapped", new ExternalException("CUDA out of memory."))));
    }
}
