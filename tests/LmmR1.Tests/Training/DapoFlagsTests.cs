// The DAPO / GSPO / CISPO flags of `lmmr1 train`: their dry-run plan lines, the resolved config they dump, and every
// invalid value or combination rejected at start with `error:` naming the flag.
using System.Text.Json;
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using LmmR1.Training.Ppo;

namespace LmmR1.Tests.Training;

[Collection("Console")]
public class DapoFlagsTests
{
    static string[] Args(params string[] extra) =>
    [
        "train", "--pretrain", TinyRl.Model, "--prompt_data", TinyRl.ExampleData, "--input_key", "message", "--label_key", "answer",
        "--rollout_batch_size", "2", "--n_samples_per_prompt", "2", "--train_batch_size", "4", "--micro_train_batch_size", "2",
        "--advantage_estimator", "group_norm", "--generate_max_len", "64",
        "--save_path", Path.Combine(TestPaths.NewTempDir("dapo-cli"), "out"), "--dry_run", .. extra,
    ];

    [Fact]
    public void DryRunShowsEveryNewSetting()
    {
        var (code, stdout, stderr) = TrainCommandTests.Run(Args("--eps_clip_low_high", "0.2", "0.28", "--dual_clip", "3",
            "--loss_agg_mode", "seq-mean-token-sum-norm", "--dynamic_filtering", "--dynamic_filtering_reward_range", "0.1", "0.9",
            "--dynamic_filtering_max_rounds", "2", "--overlong_buffer_len", "16", "--overlong_penalty_factor", "0.5",
            "--mask_truncated_completions"));
        Assert.True(code == 0, stderr);
        Assert.Contains("policy loss             ppo, ratio clip [0.8, 1.28], dual clip 3, --loss_agg_mode seq-mean-token-sum-norm", stdout);
        Assert.Contains("dynamic filtering       keep groups with 0.1 < mean score < 0.9 and unequal scores; up to 2 extra round(s) of 2 prompts per step (their prompts are consumed", stdout);
        Assert.Contains("overlong shaping        penalty 0 → −0.5 over tokens 48..64", stdout);
        Assert.Contains("truncated responses     left out of the loss", stdout);
    }

    [Fact]
    public void ResolvedConfigCarriesTheSettingsUnderThePeersNames()
    {
        var cfg = TinyRl.Config(TestPaths.NewTempDir("dapo-json"));
        var a = cfg.Algorithm with { PolicyLossType = PolicyLossType.Cispo, EpsClipHigh = 0.28, LossAggMode = LossAggregation.GlobalTokenMean };
        var (resolved, _) = (cfg with { Algorithm = a }).Resolve();
        Assert.Equal(a.EpsClip, resolved.Algorithm.EpsClipLow);    // the absent side defaults to --eps_clip
        Assert.Equal(0.28, resolved.Algorithm.EpsClipHigh);
        using var doc = JsonDocument.Parse(resolved.ToJson());
        var alg = doc.RootElement.GetProperty("algorithm");
        Assert.Equal("cispo", alg.GetProperty("policy_loss_type").GetString());
        Assert.Equal("token-mean", alg.GetProperty("loss_agg_mode").GetString());
        Assert.Equal(0.28, alg.GetProperty("eps_clip_high").GetDouble());
    }

    [Fact]
    public void GspoTurnsATokenMeanIntoASequenceMeanWithANote()
    {
        var (code, stdout, stderr) = TrainCommandTests.Run(Args("--policy_loss_type", "gspo", "--eps_clip_low_high", "0.0003", "0.0004",
            "--loss_agg_mode", "token-mean"));
        Assert.True(code == 0, stderr);
        Assert.Contains("note: --policy_loss_type gspo averages over sequences: --loss_agg_mode token-mean becomes seq-mean-token-mean", stderr);
        Assert.Contains("policy loss             gspo, ratio clip [0.9997, 1.0004], --loss_agg_mode seq-mean-token-mean", stdout);
    }

    [Theory]
    [InlineData("--policy_loss_type", new[] { "--policy_loss_type", "grpo" })]
    [InlineData("--loss_agg_mode", new[] { "--loss_agg_mode", "token_mean" })]
    [InlineData("--eps_clip_low_high", new[] { "--eps_clip_low_high", "-0.1", "0.2" })]
    [InlineData("--eps_clip_low_high", new[] { "--eps_clip_low_high", "1.0", "0.2" })]
    [InlineData("--dual_clip", new[] { "--dual_clip", "0.5" })]
    [InlineData("--dual_clip", new[] { "--dual_clip", "3", "--policy_loss_type", "cispo" })]
    [InlineData("--dynamic_filtering_reward_range", new[] { "--dynamic_filtering", "--dynamic_filtering_reward_range", "1", "0" })]
    [InlineData("--dynamic_filtering_max_rounds", new[] { "--dynamic_filtering", "--dynamic_filtering_max_rounds", "-1" })]
    [InlineData("--overlong_buffer_len", new[] { "--overlong_buffer_len", "65" })]
    [InlineData("--overlong_buffer_len", new[] { "--overlong_buffer_len", "0" })]
    [InlineData("--overlong_penalty_factor", new[] { "--overlong_buffer_len", "8", "--overlong_penalty_factor", "-1" })]
    public void InvalidSettingsAreRejectedNamingTheFlag(string flag, string[] extra)
    {
        var (code, _, stderr) = TrainCommandTests.Run(Args(extra));
        Assert.Equal(1, code);
        Assert.StartsWith("error:", stderr.Split('\n').Last(l => l.Length > 0));
        Assert.Contains(flag, stderr);
    }

    [Fact]
    public void DynamicFilteringNeedsGroups()
    {
        // one sample per prompt (with a non-group estimator): the filter has no groups to judge
        var args = Replace(Replace(Replace(Args("--dynamic_filtering"), "--n_samples_per_prompt", "1"),
            "--advantage_estimator", "reinforce"), "--train_batch_size", "2");
        var (code, _, stderr) = TrainCommandTests.Run(args);
        Assert.Equal(1, code);
        Assert.Contains("--dynamic_filtering", stderr);
        Assert.Contains("--n_samples_per_prompt must be > 1", stderr);
    }

    [Fact]
    public void DemoRejectsAnUnknownAlgo()
    {
        var (code, _, stderr) = TrainCommandTests.Run("demo", "--quick", "--algo", "grpo");
        Assert.Equal(1, code);
        Assert.Contains("--algo", stderr);
        Assert.Contains("expected lmm-r1 or dapo", stderr);
    }

    static string[] Replace(string[] args, string flag, string value)
    {
        int i = Array.IndexOf(args, flag);
        var copy = args.ToArray();
        copy[i + 1] = value;
        return copy;
    }
}
