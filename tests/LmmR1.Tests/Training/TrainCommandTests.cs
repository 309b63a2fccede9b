// `lmmr1 train` through CliApp.Run: every invalid flag combination fails at start with `error:` naming the flag;
// upstream's argument rules; --dry_run reads configs, tokenizer and data but no weights; a few real RL steps end to
// end (metrics.jsonl, evaluation, a checkpoint, resume from it, a final HF folder that QwenVLModel.Load reads).
using LmmR1.Algorithms;
using LmmR1.Cli;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using LmmR1.Training.Logging;
using LmmR1.Training.Ppo;
using TorchSharp;
using Xunit.Abstractions;

namespace LmmR1.Tests.Training;

[Collection("Console")]
public class TrainCommandTests(ITestOutputHelper output)
{
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        var (o, e) = (new StringWriter(), new StringWriter());
        Console.SetOut(o); Console.SetError(e);
        try { return (CliApp.Run(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }

    /// <summary>A valid dry run on the tiny model and the example data; <paramref name="extra"/> adds flags or replaces
    /// the value of a default one (System.CommandLine rejects a repeated single-value flag, unlike argparse).</summary>
    internal static string[] Valid(params string[] extra)
    {
        var defaults = new List<(string Flag, string[] Values)>
        {
            ("--pretrain", [TinyRl.Model]), ("--prompt_data", [TinyRl.ExampleData]), ("--input_key", ["message"]), ("--label_key", ["answer"]),
            ("--rollout_batch_size", ["2"]), ("--n_samples_per_prompt", ["2"]), ("--train_batch_size", ["4"]), ("--micro_train_batch_size", ["2"]),
            ("--save_path", [Path.Combine(TestPaths.NewTempDir("train-cli"), "out")]), ("--dry_run", []),
        };
        var given = new List<(string Flag, string[] Values)>();
        for (int i = 0; i < extra.Length;)
        {
            int j = i + 1;
            while (j < extra.Length && !extra[j].StartsWith("--", StringComparison.Ordinal)) j++;
            given.Add((extra[i], extra[(i + 1)..j]));
            i = j;
        }
        var merged = defaults.Where(d => given.All(g => g.Flag != d.Flag)).Concat(given);
        return ["train", .. merged.SelectMany(x => x.Values.Prepend(x.Flag))];
    }

    static string[] Without(string[] args, string flag)
    {
        int i = Array.IndexOf(args, flag);
        return [.. args[..i], .. args[(i + 2)..]];
    }

    [Fact]
    public void ValidFlagsPassTheDryRun()
    {
        var (code, stdout, stderr) = Run(Valid("--advantage_estimator", "reinforce_baseline"));
        Assert.True(code == 0, stderr);
        Assert.Contains("plan:", stdout);
    }

    [Fact]
    public void TheDryRunNamesTheRolloutWarmUpOnCudaOnly()
    {
        const string line = "rollout warm-up         before the first step: its prompts × 2, 8 new tokens, samples discarded (--no_rollout_warmup skips it)";
        var (code, stdout, stderr) = Run(Valid("--device", "cuda"));
        Assert.True(code == 0, stderr);
        Assert.Contains(line, stdout);
        (code, stdout, stderr) = Run(Valid("--device", "cuda", "--no_rollout_warmup"));
        Assert.True(code == 0, stderr);
        Assert.DoesNotContain("rollout warm-up", stdout);
        (code, stdout, stderr) = Run(Valid());
        Assert.True(code == 0, stderr);
        Assert.DoesNotContain("rollout warm-up", stdout);
    }

    [Theory]
    [InlineData("--advantage_estimator", new[] { "--advantage_estimator", "ppo" })]
    [InlineData("--n_samples_per_prompt", new[] { "--advantage_estimator", "rloo", "--n_samples_per_prompt", "1", "--train_batch_size", "2" })]
    [InlineData("--n_samples_per_prompt", new[] { "--advantage_estimator", "reinforce_baseline", "--n_samples_per_prompt", "1", "--train_batch_size", "2" })]
    [InlineData("--n_samples_per_prompt", new[] { "--advantage_estimator", "group_norm", "--n_samples_per_prompt", "1", "--train_batch_size", "2" })]
    [InlineData("--train_batch_size", new[] { "--train_batch_size", "4", "--micro_train_batch_size", "3" })]
    [InlineData("--rollout_batch_size", new[] { "--train_batch_size", "8", "--micro_train_batch_size", "2" })]
    [InlineData("--temperature", new[] { "--temperature", "0" })]
    [InlineData("--temperature", new[] { "--temperature", "-0.5" })]
    [InlineData("--top_p", new[] { "--top_p", "0" })]
    [InlineData("--kl_estimator", new[] { "--kl_estimator", "k4" })]
    [InlineData("--kl_target", new[] { "--kl_target", "-1" })]
    [InlineData("--init_kl_coef", new[] { "--init_kl_coef", "-0.1" })]
    [InlineData("--gamma", new[] { "--gamma", "1.5" })]
    [InlineData("--lambd", new[] { "--lambd", "-0.1" })]
    [InlineData("--eps_clip", new[] { "--eps_clip", "0" })]
    [InlineData("--adam_betas", new[] { "--adam_betas", "0.9", "1.5" })]
    [InlineData("--reward_clip_range", new[] { "--reward_clip_range", "5", "-5" })]
    [InlineData("--remote_rm_url", new[] { "--remote_rm_url", "reward_func.py" })]
    [InlineData("--remote_rm_url", new[] { "--remote_rm_url", "localhost:5000" })]
    [InlineData("--lora_rank", new[] { "--lora_rank", "-1" })]
    [InlineData("--reward_pretrain", new[] { "--reward_pretrain", "some/rm" })]
    [InlineData("--max_epochs", new[] { "--max_epochs", "0" })]
    [InlineData("--micro_rollout_batch_size", new[] { "--micro_rollout_batch_size", "0" })]
    [InlineData("--generate_max_len", new[] { "--generate_max_len", "0" })]
    [InlineData("--save_steps", new[] { "--save_steps", "0" })]
    [InlineData("--eval_steps", new[] { "--eval_steps", "-5" })]
    [InlineData("--max_norm", new[] { "--max_norm", "0" })]
    [InlineData("--lr_warmup_ratio", new[] { "--lr_warmup_ratio", "2" })]
    [InlineData("--max_global_steps", new[] { "--max_global_steps", "0" })]
    [InlineData("--processor_kwargs", new[] { "--processor_kwargs", "{\"min_pixels\": 10, \"max_pixels\": 5}" })]
    [InlineData("--rollout_batch_size", new[] { "--rollout_batch_size", "4", "--train_batch_size", "8" })]   // 4 > 3 prompts
    [InlineData("--pretrain", new[] { "--pretrain", "/nonexistent/model" })]
    [InlineData("--gradient_checkpointing_layers", new[] { "--gradient_checkpointing", "--gradient_checkpointing_layers", "-1" })]
    [InlineData("--gradient_checkpointing_layers", new[] { "--gradient_checkpointing_layers", "1" })]                    // without --gradient_checkpointing
    [InlineData("--gradient_checkpointing_layers", new[] { "--gradient_checkpointing", "--gradient_checkpointing_layers", "3" })]   // the model has 2
    [InlineData("--packing_share_prompts", new[] { "--packing_share_prompts" })]                                         // without --packing_samples
    public void InvalidFlagsFailAtStartNamingTheFlag(string flag, string[] args)
    {
        var (code, _, stderr) = Run(Valid(args));
        Assert.Equal(1, code);
        Assert.StartsWith("error:", stderr.Split('\n').Last(l => l.Length > 0));
        Assert.Contains(flag, stderr);
    }

    [Fact]
    public void MissingPretrainOrPromptDataIsNamed()
    {
        var (code, _, err) = Run(Without(Valid(), "--pretrain"));
        Assert.Equal(1, code);
        Assert.Contains("--pretrain", err);
        (code, _, err) = Run(Without(Valid(), "--prompt_data"));
        Assert.Equal(1, code);
        Assert.Contains("--prompt_data", err);
    }

    [Fact]
    public void GaeWithoutACriticAndBadFreezePrefixesAreRejected()
    {
        // The library path: a gae config whose critic was never resolved, and models without a critic.
        var cfg = TinyRl.Config(TestPaths.NewTempDir("gae-nocritic"), new AlgorithmSettings { Estimator = AdvantageEstimator.Gae });
        var e = Assert.Throws<LmmR1.Infrastructure.InputException>(() => cfg.Validate());
        Assert.Contains("--critic_pretrain", e.Message);
        var resolved = cfg.Resolve().Config.Validate();
        using var actor = QwenVLModel.Load(TinyRl.Model, torch.ScalarType.Float32, torch.CPU);
        e = Assert.Throws<LmmR1.Infrastructure.InputException>(() => PpoModels.Prepare(resolved, actor, null, null, true));
        Assert.Contains("--advantage_estimator", e.Message);
        var frozen = resolved with { Algorithm = resolved.Algorithm with { Estimator = AdvantageEstimator.Reinforce, InitKlCoef = 0 },
                                     Model = resolved.Model with { FreezePrefix = ["vision_tower"] } };
        e = Assert.Throws<LmmR1.Infrastructure.InputException>(() => PpoModels.Prepare(frozen, actor, null, null, true));
        Assert.Contains("--freeze_prefix", e.Message);
    }

    [Fact]
    public void UpstreamArgumentRulesAreApplied()
    {
        var baseCfg = TinyRl.Config(TestPaths.NewTempDir("rules"));
        // critic only for gae, defaulting to the policy
        var gae = (baseCfg with { Algorithm = new AlgorithmSettings { Estimator = AdvantageEstimator.Gae } }).Resolve().Config;
        Assert.Equal(baseCfg.Model.Pretrain, gae.Model.CriticPretrain);
        Assert.True(gae.UsesCritic);
        var (rb, notes) = (baseCfg with { Model = baseCfg.Model with { CriticPretrain = "/x" } }).Resolve();
        Assert.Null(rb.Model.CriticPretrain);
        Assert.Contains(notes, n => n.Contains("--critic_pretrain"));
        // reference model only with a KL term
        Assert.False((baseCfg with { Algorithm = baseCfg.Algorithm with { InitKlCoef = 0 } }).UsesReference);
        Assert.True((baseCfg with { Algorithm = baseCfg.Algorithm with { InitKlCoef = 0.001 } }).UsesReference);
        // γ forced to 1 for the group estimators (the pipeline's EffectiveGamma), with a note
        var g = baseCfg with { Algorithm = baseCfg.Algorithm with { Gamma = 0.9 } };
        Assert.Contains(g.Resolve().Notes, n => n.Contains("--gamma"));
        Assert.Equal(1.0, g.Advantage.EffectiveGamma);
    }

    [Fact]
    public void RayVllmAndDeepSpeedFlagsAreAcceptedWithANote()
    {
        var (code, stdout, stderr) = Run(Valid("--ref_num_nodes", "1", "--vllm_num_engines", "8", "--colocate_all_models", "--zero_stage", "3",
            "--flash_attn", "--vllm_gpu_memory_utilization", "0.5", "--enable_prefix_caching", "--use_wandb", "KEY", "--packing_samples"));
        Assert.True(code == 0, stderr);
        Assert.Contains("note: ignoring --vllm_num_engines", stderr);
        Assert.Contains("note: ignoring --zero_stage", stderr);
        Assert.Contains("note: ignoring --colocate_all_models", stderr);
        Assert.DoesNotContain("--bf16", stderr);
        // --packing_samples is a real flag now (padding-free passes), not an ignored one.
        Assert.DoesNotContain("ignoring --packing_samples", stderr);
        Assert.Contains("--packing_samples", stdout);
    }

    [Fact]
    public void DryRunReadsConfigsAndDataButNoWeights()
    {
        // A policy folder with config.json and the tokenizer but no safetensors: the dry run must not need them.
        string dir = TestPaths.NewTempDir("dry-model");
        foreach (var f in Directory.GetFiles(TinyRl.Model).Where(f => !f.EndsWith(".safetensors")))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        string save = Path.Combine(TestPaths.NewTempDir("dry-out"), "out");
        var (code, stdout, stderr) = Run("train", "--pretrain", dir, "--prompt_data", TinyRl.ExampleData, "--input_key", "message",
            "--label_key", "answer", "--advantage_estimator", "gae", "--rollout_batch_size", "3", "--n_samples_per_prompt", "4",
            "--train_batch_size", "6", "--micro_train_batch_size", "2", "--max_epochs", "2", "--num_episodes", "3", "--bf16",
            "--eval_dataset", TinyRl.ExampleData, "--save_path", save, "--dry_run");
        Assert.True(code == 0, stderr);
        output.WriteLine(stdout);
        Assert.Contains("12 samples per global step", stdout);
        Assert.Contains("1 per episode, 3 in total", stdout);                 // 3 prompts // 3, × 3 episodes
        Assert.Contains("4 optimizer step(s) each for actor and critic", stdout);   // 12 / 6 × 2 epochs
        // upstream max_steps = 3·4 // 6 · 2 · 3 = 12, warmup ceil(0.03·12) = 1
        Assert.Contains("LR schedule over 12 steps, 1 warmup", stdout);
        Assert.Contains("actor + reference + critic", stdout);
        Assert.Contains("memory estimate", stdout);
        Assert.Contains("generation KV cache", stdout);
        Assert.Contains("dry run:", stdout);
        Assert.False(Directory.Exists(save));
    }

    [Fact]
    public void AFewRealStepsEndToEndWithEvalCheckpointAndResume()
    {
        string root = TestPaths.NewTempDir("train-e2e");
        string save = Path.Combine(root, "final"), ckpt = Path.Combine(root, "ckpt");
        string[] Args(int steps, params string[] extra) =>
        [
            "train", "--pretrain", TinyRl.Model, "--prompt_data", TinyRl.ExampleData, "--input_key", "message", "--label_key", "answer",
            "--processor_kwargs", TinyRl.SmallImages, "--advantage_estimator", "gae", "--init_kl_coef", "0.01",
            "--rollout_batch_size", "2", "--n_samples_per_prompt", "2", "--micro_rollout_batch_size", "4", "--train_batch_size", "2",
            "--micro_train_batch_size", "1", "--generate_max_len", "6", "--actor_learning_rate", "1e-4", "--critic_learning_rate", "1e-4",
            "--max_global_steps", steps.ToString(), "--save_steps", "1", "--ckpt_path", ckpt, "--save_path", save,
            "--eval_dataset", TinyRl.ExampleData, "--eval_steps", "2", "--eval_n_samples_per_prompt", "2", "--eval_temperature", "0",
            "--save_value_network", .. extra,
        ];
        var (code, stdout, stderr) = Run(Args(2));
        output.WriteLine(stdout);
        Assert.True(code == 0, stderr);
        var rows = MetricsLog.Read(Path.Combine(save, MetricsLog.FileName));
        Assert.Equal([1.0, 2.0, 2.0], rows.Select(r => r["train/global_step"]));      // step 2 also has its eval row
        foreach (var key in new[] { "train/policy_loss", "train/critic_loss", "train/values", "train/kl", "train/reward", "train/return",
                                    "train/actor_lr", "train/critic_lr", "time/generate", "time/reward", "time/logprobs", "time/update" })
            Assert.True(double.IsFinite(rows[0][key]), key);
        foreach (var key in new[] { "eval/default_pass1", "eval/default_pass2", "eval/default_reward", "eval/default_format" })
            Assert.True(rows[2].ContainsKey(key), key);
        Assert.True(File.Exists(Path.Combine(save, "train_config.json")));
        Assert.True(Directory.Exists(Path.Combine(ckpt, "global_step2", "actor")));

        // The final folder is a loadable model with its tokenizer; the critic went to {save_path}_critic.
        using (var m = QwenVLModel.Load(save, torch.ScalarType.Float32, torch.CPU))
            Assert.Equal(274, m.Config.Text.VocabSize);
        Assert.True(File.Exists(Path.Combine(save, "tokenizer.json")));
        Assert.True(File.Exists(Path.Combine(save + "_critic", "model.safetensors")));

        // Resume: one more step from the newest checkpoint; metrics continue at step 3.
        (code, stdout, stderr) = Run(Args(3, "--load_checkpoint"));
        Assert.True(code == 0, stderr);
        Assert.Contains("resumed from", stdout);
        rows = MetricsLog.Read(Path.Combine(save, MetricsLog.FileName));
        Assert.Equal(3.0, rows[^1]["train/global_step"]);
        Assert.Equal(3, rows.Count(r => r.ContainsKey("train/reward")));
    }

    [Fact]
    public void ModelSizeFromConfigMatchesTheBuiltModels()
    {
        foreach (var fixture in new[] { "qwen2vl-tiny", "qwen25vl-tiny" })
        {
            using var m = QwenVLModel.Load(TestPaths.Fixture(fixture), torch.ScalarType.Float32, torch.CPU);
            var counted = m.CountParameters();
            var size = ModelSize.Of(m.Config);
            Assert.Equal(counted.Total, size.Total);
            Assert.Equal(counted.Vision + counted.Merger, size.Vision);
        }
        // The released Qwen2.5-VL-3B: 3,754,622,976 parameters (bench/README.md).
        Assert.Equal(3_754_622_976L, ModelSize.Of(QwenPresets.Get("qwen2.5-vl-3b")!).Total);
    }
}
