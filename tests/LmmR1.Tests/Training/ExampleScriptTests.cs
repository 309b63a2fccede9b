// The five LMM-R1 recipes in examples/lmm_r1/ (and our DAPO variant of MGT-Geo) run with --dry_run against the tiny model and a 256-prompt copy of the
// example data (the recipes' rollout batch is 256 prompts), through the built `lmmr1` binary (LMMR1 variable): each
// exits 0 and prints the plan its upstream hyperparameters imply.
using System.Diagnostics;
using LmmR1.Tests.Support;
using Xunit.Abstractions;

namespace LmmR1.Tests.Training;

public class ExampleScriptTests(ITestOutputHelper output)
{
    static readonly Lazy<string> data = new(() =>
    {
        string dir = TestPaths.NewTempDir("recipe-data");
        string src = Path.GetDirectoryName(TinyRl.ExampleData)!;
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        foreach (var f in Directory.GetFiles(Path.Combine(src, "images"))) File.Copy(f, Path.Combine(dir, "images", Path.GetFileName(f)));
        var rows = File.ReadAllLines(TinyRl.ExampleData).Where(l => l.Trim().Length > 0).ToArray();
        string path = Path.Combine(dir, "prompts.jsonl");
        File.WriteAllLines(path, Enumerable.Range(0, 258).Select(i => rows[i % rows.Length]));
        return path;
    });

    [Theory]
    [InlineData("train_fre_text.sh", "reinforce_baseline", "actor 4E-07", false)]
    [InlineData("train_fre_multi.sh", "reinforce_baseline", "actor 1E-06", false)]
    [InlineData("train_mgt_geo.sh", "gae", "actor 1E-06, critic 9E-06", true)]
    [InlineData("train_mgt_percereas.sh", "reinforce_baseline", "actor 4E-07", false)]
    [InlineData("train_direct_rl_geo.sh", "gae", "actor 1E-06, critic 9E-06", true)]
    public async Task RecipeDryRunPrintsItsPlan(string script, string estimator, string lrs, bool critic)
    {
        var (o, err, save) = await DryRun(script);
        Assert.Contains($"lmmr1 train: {estimator} on", o);
        Assert.Contains("256 prompts × 16 samples = 4096 samples per global step", o);
        Assert.Contains("global steps            1 per episode, 2 in total (2 episode(s))", o);    // 258 prompts // 256, 2 episodes
        Assert.Contains("→ 16 optimizer step(s)", o);                                                  // 4096 / 256, 1 epoch
        Assert.Contains(lrs, o);
        Assert.Contains(critic ? "actor + reference + critic" : "actor + reference (KL β=0.001 in the reward)", o);
        Assert.Contains("policy loss             ppo, ratio clip [0.8, 1.2], --loss_agg_mode micro-token-mean", o);
        Assert.Contains("dry run:", o);
        Assert.Contains("note: --normalize_reward", err);
        Assert.Empty(Directory.GetFileSystemEntries(save));                                           // nothing written
    }

    [Fact]
    public async Task DapoRecipeDryRunPrintsDaposSettings()
    {
        var (o, _, save) = await DryRun("train_dapo_geo.sh");
        Assert.Contains("lmmr1 train: group_norm on", o);
        Assert.Contains("256 prompts × 16 samples = 4096 samples per global step", o);
        Assert.Contains("models                  actor (no KL term)", o);
        Assert.Contains("policy loss             ppo, ratio clip [0.8, 1.28], --loss_agg_mode token-mean", o);
        Assert.Contains("dynamic filtering       keep groups with 0 < mean score < 1 and unequal scores; up to 4 extra round(s) of 256 prompts per step (their prompts are consumed", o);
        Assert.Contains("overlong shaping        penalty 0 → −1 over tokens 3072..4096", o);
        Assert.Contains("dry run:", o);
        Assert.Empty(Directory.GetFileSystemEntries(save));
    }

    async Task<(string Out, string Err, string Save)> DryRun(string script)
    {
        string save = TestPaths.NewTempDir("recipe-out");
        string dll = Path.Combine(AppContext.BaseDirectory, "lmmr1.dll");
        var psi = new ProcessStartInfo("bash", [Path.Combine(TestPaths.RepoRoot, "examples", "lmm_r1", script), "--dry_run"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.Environment["MODEL_PATH"] = TinyRl.Model;
        psi.Environment["DATA_PATH"] = data.Value;
        psi.Environment["SAVE_PATH"] = save;
        psi.Environment["LMMR1"] = $"{Environment.ProcessPath} {dll}";
        using var p = Process.Start(psi)!;
        var readOut = p.StandardOutput.ReadToEndAsync();
        var readErr = p.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await p.WaitForExitAsync(timeout.Token);
        string o = await readOut, err = await readErr;
        output.WriteLine(o + err);
        Assert.True(p.ExitCode == 0, err);
        return (o, err, save);
    }
}
