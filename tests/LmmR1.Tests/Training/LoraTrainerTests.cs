// LoRA through the PPO trainer and `lmmr1 train` on the tiny RL setup: after steps only the adapters changed (every
// base weight bit-identical) and only they have optimizer state; the reference is the actor with adapters off (no
// second model; KL exactly 0 while B is still 0); the flags, the dry run's memory estimate and their errors; a run
// writes a PEFT folder and, with --lora_merge, a merged checkpoint equal to the adapted model; N steps + resume for N
// equal 2N steps bit for bit (adapters, optimizer state, metrics).
using LmmR1.Algorithms;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using LmmR1.Training.Ppo;
using TorchSharp;
using TorchSharp.Modules;
using Xunit.Abstractions;
using static LmmR1.Tests.Runs.RunSupport;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

[Collection("Console")]
public class LoraTrainerTests(ITestOutputHelper output)
{
    static PpoConfig LoraConfig(string dir, double kl, int steps = 2)
    {
        var c = TinyRl.Config(dir, new AlgorithmSettings { Estimator = AdvantageEstimator.ReinforceBaseline, InitKlCoef = kl });
        return c with
        {
            Model = c.Model with { Lora = new LoraOptions { Rank = 4, Alpha = 8, TargetModules = [LoraOptions.AllLinear, "visual.qkv"] } },
            Optim = c.Optim with { MaxGlobalSteps = steps },
        };
    }

    [Fact]
    public void OnlyTheAdaptersChangeAndHaveOptimizerStateAndTheReferenceIsTheActorWithAdaptersOff()
    {
        var (c, _) = LoraConfig(TestPaths.NewTempDir("lora-ppo"), kl: 0.01).Resolve();
        c.Validate();
        using var models = PpoModels.Load(c, torch.CPU);
        Assert.True(models.ReferenceIsActorWithoutAdapters);
        var sink = new MemorySink();
        using var trainer = new PpoTrainer(c, models, TinyRl.Processor(c), TinyRl.Data(c), null, new CharacterReward(), sink);
        var named = models.Actor.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        var before = named.ToDictionary(p => p.name, p => p.parameter.detach().clone());
        trainer.Fit();

        var state = trainer.ActorOptimizer.StateTensors().Keys.ToHashSet();
        int adapters = 0, frozen = 0;
        foreach (var (name, p) in named)
        {
            double diff = (p.detach() - before[name]).abs().max().item<float>();
            if (LoraAdapters.IsAdapterName(name))
            {
                adapters++;
                Assert.True(p.requires_grad, name);
                Assert.True(diff > 0, $"{name} did not change");
                Assert.Contains("exp_avg." + name, state);
            }
            else
            {
                frozen++;
                Assert.False(p.requires_grad, name);
                Assert.Equal(0.0, diff);   // bit-identical
                Assert.DoesNotContain("exp_avg." + name, state);
            }
        }
        int layers = models.Actor.Config.Text.NumLayers * 7 + models.Actor.Config.Vision!.Depth;
        Assert.Equal(2 * layers, adapters);
        Assert.Equal(2 * 2 * layers, state.Count);                      // exp_avg + exp_avg_sq per adapter matrix (fp32: no masters)
        Assert.True(frozen > adapters);
        Assert.Equal(2, trainer.ActorOptimizer.Steps);
        Assert.True(trainer.Maker.Stats.ReferenceForwards > 0);
        Assert.True(models.Actor.Lora!.Enabled);                        // switched back on after the reference pass
        // Step 1 rolls out with B = 0: the actor is the base, so the KL to the reference is exactly 0; after one update it is not.
        Assert.Equal(0.0, sink.Rows[0].Metrics["train/kl"]);
        Assert.NotEqual(0.0, sink.Rows[1].Metrics["train/kl"]);
    }

    [Fact]
    public void Bf16LoraKeepsTheBaseBitIdenticalAndGivesTheAdaptersFp32Masters()
    {
        var c0 = LoraConfig(TestPaths.NewTempDir("lora-bf16"), kl: 0.01);
        var (c, _) = (c0 with { Model = c0.Model with { Bf16 = true, GradientCheckpointing = true } }).Resolve();
        c.Validate();
        using var models = PpoModels.Load(c, torch.CPU);
        using var trainer = new PpoTrainer(c, models, TinyRl.Processor(c), TinyRl.Data(c), null, new CharacterReward(), new MemorySink());
        var named = models.Actor.named_parameters().Select(p => (p.name, p.parameter)).ToList();
        var before = named.ToDictionary(p => p.name, p => p.parameter.detach().clone());
        trainer.Fit();
        var state = trainer.ActorOptimizer.StateTensors();
        foreach (var (name, p) in named)
        {
            Assert.Equal(ScalarType.BFloat16, p.dtype);
            bool same = p.detach().eq(before[name]).all().item<bool>();
            if (LoraAdapters.IsAdapterName(name))
            {
                Assert.False(same, $"{name} did not change");
                Assert.Equal(ScalarType.Float32, state["master." + name].dtype);
            }
            else
            {
                Assert.True(same, $"{name} changed");
                Assert.False(state.ContainsKey("master." + name), name);
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]     // --packing_samples: the padding-free forward also hands the checkpointed layers an input that needs grad
    public void GradientCheckpointingGivesTheAdaptersTheSameGradients(bool packing)
    {
        var c0 = LoraConfig(TestPaths.NewTempDir("lora-gc"), kl: 0, steps: 1);
        double Norm(bool checkpointing)
        {
            var (c, _) = (c0 with { Model = c0.Model with { GradientCheckpointing = checkpointing, PackingSamples = packing } }).Resolve();
            c.Validate();
            using var models = PpoModels.Load(c, torch.CPU);
            var sink = new MemorySink();
            using var trainer = new PpoTrainer(c, models, TinyRl.Processor(c), TinyRl.Data(c), null, new CharacterReward(), sink);
            trainer.Fit();
            return sink.Rows[0].Metrics["train/grad_norm"];
        }
        double plain = Norm(false), checkpointed = Norm(true);
        output.WriteLine($"grad norm {plain:R} vs checkpointed {checkpointed:R}");
        Assert.True(plain > 0);
        Assert.True(Math.Abs(plain - checkpointed) <= 1e-4 * plain, $"{plain} vs {checkpointed}");
    }

    // ------------------------------------------------------------------ CLI

    [Fact]
    public void TheDryRunAcceptsTheFlagsAndSaysWhatLoraSaves()
    {
        var (code, stdout, stderr) = TrainCommandTests.Run(TrainCommandTests.Valid("--lora_rank", "8", "--lora_alpha", "32", "--target_modules", "q_proj", "v_proj",
            "--exclude_modules", "model.layers.0", "--init_kl_coef", "0.01"));
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        Assert.Contains("LoRA                    r=8, α=32 (scale 4)", stdout);
        Assert.Contains("LoRA saves", stdout);
        Assert.Contains("reference weights (LoRA: the base with adapters off)", stdout);
        Assert.DoesNotContain("actor AdamW state", stdout);
    }

    [Fact]
    public void TheMemoryEstimateOfThe3BShapeCountsAdaptersOnly()
    {
        var shape = QwenPresets.Get("qwen2.5-vl-3b")!;
        var c = TinyRl.Config(TestPaths.NewTempDir("lora-mem")) with { };
        c = c with { Model = c.Model with { Bf16 = true }, Algorithm = c.Algorithm with { InitKlCoef = 0.01 } };
        var full = MemoryEstimate.Of(c, shape, null);
        var lora = MemoryEstimate.Of(c with { Model = c.Model with { Lora = new LoraOptions { Rank = 16 } } }, shape, null);
        // Adapters by hand: per layer r·(in + out) over q, k, v, o, gate, up, down of the 3B text model.
        var t = shape.Text;
        long h = t.HiddenSize, q = t.NumHeads * t.HeadDim, kv = t.NumKvHeads * t.HeadDim, i = t.IntermediateSize;
        long perLayer = 16 * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h));
        long adapters = perLayer * t.NumLayers;
        Assert.Equal(adapters, LoraLayout.AdapterParameters(shape, new LoraOptions { Rank = 16 }));
        double Part(MemoryEstimate m, string prefix) => m.Parts.Where(p => p.Part.StartsWith(prefix, StringComparison.Ordinal)).Sum(p => p.Bytes);
        Assert.Equal(adapters * 12.0, Part(lora, "LoRA adapter AdamW state"));          // bf16: fp32 moments + master
        Assert.Equal(0, Part(lora, "actor AdamW state"));
        Assert.Equal(0, Part(lora, "reference weights"));
        double saved = full.Total - lora.Total;
        long total = ModelSize.Of(shape).Total;
        // full: grads 2 + AdamW 12 bytes per trainable parameter + a 2-byte reference copy; LoRA: adapters at 2 + 2 + 12.
        Assert.Equal(total * 14.0 + total * 2.0 - adapters * 16.0, saved, 1);
        output.WriteLine(lora.Describe("cuda"));
    }

    [Theory]
    [InlineData("--lora_rank", new[] { "--lora_rank", "-2" })]
    [InlineData("--lora_alpha", new[] { "--lora_rank", "8", "--lora_alpha", "0" })]
    [InlineData("--lora_dropout", new[] { "--lora_rank", "8", "--lora_dropout", "1.5" })]
    [InlineData("--lora_dropout", new[] { "--lora_rank", "8", "--lora_dropout", "0.1", "--gradient_checkpointing" })]
    [InlineData("--target_modules", new[] { "--lora_rank", "8", "--target_modules", "c_attn" })]
    [InlineData("--target_modules", new[] { "--lora_rank", "8", "--target_modules", "visual.fc1" })]   // a Qwen2-VL name; the tiny model is 2.5
    [InlineData("--exclude_modules", new[] { "--lora_rank", "8", "--exclude_modules", "model.layers.99" })]
    [InlineData("--load_in_4bit", new[] { "--lora_rank", "8", "--load_in_4bit" })]
    [InlineData("--lora_merge", new[] { "--lora_merge" })]
    public void BadLoraFlagsFailNamingTheFlag(string flag, string[] args)
    {
        var (code, _, stderr) = TrainCommandTests.Run(TrainCommandTests.Valid(args));
        Assert.Equal(1, code);
        string last = stderr.Split('\n').Last(l => l.Length > 0);
        Assert.StartsWith("error:", last);
        Assert.Contains(flag, last);
        if (flag == "--load_in_4bit") Assert.Contains("4-bit", last);
    }

    [Fact]
    public void SftWithLoraSavesAnAdapterThatOnTheBaseGivesTheMergedModel()
    {
        string data = Path.Combine(TestPaths.NewTempDir("lora-sft-data"), "sft.jsonl");
        File.WriteAllLines(data, [
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"<answer> hello </answer>\"}]}",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"<answer> 4 </answer>\"}]}"]);
        string save = Path.Combine(TestPaths.NewTempDir("lora-sft"), "out");
        var (code, stdout, stderr) = TrainCommandTests.Run("sft", "--pretrain", TinyRl.Model, "--dataset", data, "--input_key", "messages",
            "--train_batch_size", "2", "--micro_train_batch_size", "1", "--max_epochs", "2", "--learning_rate", "1e-2", "--save_path", save,
            "--lora_rank", "4", "--lora_merge", "--gradient_checkpointing");
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr + stdout);
        Assert.True(File.Exists(Path.Combine(save, PeftAdapterFolder.ConfigFile)));
        Assert.False(File.Exists(Path.Combine(save, "model.safetensors")));
        using var merged = QwenVLModel.Load(save + "_merged", ScalarType.Float32, torch.CPU);
        using var adapted = QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU);
        using var plain = QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU);
        PeftAdapterFolder.Attach(adapted, save);
        using var noGrad = torch.no_grad();
        using var ids = torch.arange(3, 40, dtype: ScalarType.Int64).view(1, -1);
        using var a = merged.Forward(ids);
        using var b = adapted.Forward(ids);
        using var c = plain.Forward(ids);
        Assert.True((a.Logits! - b.Logits!).abs().max().item<float>() <= Numerics.Fp32);
        Assert.True((a.Logits! - c.Logits!).abs().max().item<float>() > 1e-3, "the adapter did not train");

        (code, _, stderr) = TrainCommandTests.Run("sft", "--pretrain", TinyRl.Model, "--dataset", data, "--input_key", "messages",
            "--train_batch_size", "2", "--micro_train_batch_size", "1", "--save_path", save, "--lora_rank", "4", "--target_modules", "nope");
        Assert.Equal(1, code);
        Assert.Contains("--target_modules", stderr);
    }

    // ------------------------------------------------------------------ runs

    static string[] LoraArgs(string root, params string[] extra) =>
        Args(root, Steps, [.. extra, "--lora_rank", "4", "--lora_alpha", "8", "--target_modules", "all-linear", "visual.proj", "--lora_merge"]);

    static void AssertSameFile(string a, string b)
    {
        using var x = SafetensorsFile.Open(a);
        using var y = SafetensorsFile.Open(b);
        Assert.Equal(x.Entries.Keys.Order(StringComparer.Ordinal), y.Entries.Keys.Order(StringComparer.Ordinal));
        foreach (var n in x.Entries.Keys)
        {
            using var scope = torch.NewDisposeScope();
            Assert.True(x.Load(n).eq(y.Load(n)).all().item<bool>(), $"{n} differs");
        }
    }

    [Fact]
    public void ALoraRunSavesAPeftFolderAndAMergedModelAndResumesExactly()
    {
        string reference = TestPaths.NewTempDir("lora-run-ref");
        var (code, stdout, stderr) = RunInProcess(LoraArgs(reference));
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        string final = Path.Combine(reference, "final");
        Assert.True(File.Exists(Path.Combine(final, "adapter_config.json")));
        Assert.True(File.Exists(Path.Combine(final, "adapter_model.safetensors")));
        Assert.False(File.Exists(Path.Combine(final, "model.safetensors")));
        Assert.False(File.Exists(Path.Combine(reference, "ckpt", "global_step4", "actor", "model.safetensors")));   // checkpoints hold adapters only
        Assert.True(File.Exists(Path.Combine(reference, "ckpt", "global_step4", "actor", "adapter_model.safetensors")));

        // The merged checkpoint and base + adapter give the same policy (a different computation: fp32 tolerance).
        using (var merged = QwenVLModel.Load(final + "_merged", ScalarType.Float32, torch.CPU))
        using (var adapted = QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU))
        {
            PeftAdapterFolder.Attach(adapted, final);
            Assert.Contains(adapted.Lora!.Adapters, a => a.B.abs().max().item<float>() > 0);
            using var noGrad = torch.no_grad();
            using var ids = torch.arange(3, 40, dtype: ScalarType.Int64).view(1, -1);
            using var a = merged.Forward(ids);
            using var b = adapted.Forward(ids);
            double d = (a.Logits! - b.Logits!).abs().max().item<float>();
            Assert.True(d <= Numerics.Fp32, $"merged vs adapter: {d:G3}");
        }

        string root = TestPaths.NewTempDir("lora-run-resume");
        (code, stdout, stderr) = RunInProcess(LoraArgs(root, "--stop_after_step", "2"));
        Assert.True(code == 0, stderr);
        (code, stdout, stderr) = RunInProcess(LoraArgs(root, "--load_checkpoint"));
        output.WriteLine(stdout + stderr);
        Assert.True(code == 0, stderr);
        Assert.Contains("at global step 2", stdout);
        AssertSameRows(Rows(final), Rows(Path.Combine(root, "final")));
        AssertSameFile(Path.Combine(final, "adapter_model.safetensors"), Path.Combine(root, "final", "adapter_model.safetensors"));
        AssertSameFile(Path.Combine(reference, "ckpt", "global_step4", "actor_optim.safetensors"), Path.Combine(root, "ckpt", "global_step4", "actor_optim.safetensors"));
        AssertSameWeights(final + "_merged", Path.Combine(root, "final") + "_merged");
        AssertSameWeights(Path.Combine(final + "_critic"), Path.Combine(root, "final") + "_critic");

        // Resuming with other LoRA settings is refused naming the flag.
        (code, _, stderr) = RunInProcess(Set(LoraArgs(root, "--load_checkpoint"), "--lora_rank", "8"));
        Assert.Equal(1, code);
        Assert.Contains("--lora_rank", stderr);
    }
}
