// Issue 11 item 3 (d, f, g, h): undecodable images (random bytes, 0 bytes, a truncated PNG) are bad rows at load
// time — in --dry_run, `data check` and training, where --skip_bad_rows skips them before the first step and again
// on resume; `data check` lists every bad row with its reason also when none is usable; bytes that are not UTF-8 make
// their line a bad row naming the byte offset (not a label decoded to U+FFFD); a symlink loop inside a --prompt_data
// folder reads each real file once.
using System.Text;
using System.Text.Json;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Tests.Runs;
using LmmR1.Tests.Support;
using LmmR1.Tests.Training;
using static LmmR1.Tests.Probe.ModelInputProbeTests;

namespace LmmR1.Tests.Probe;

[Collection("Console")]
public class DataProbeTests
{
    static readonly string Example = TinyRl.ExampleData;

    static PromptDataOptions Opts(string data, bool skip = false) =>
        new() { PromptData = data, InputKey = "message", LabelKey = "answer", SkipBadRows = skip };

    /// <summary>A folder with the example images, three undecodable ones and d.jsonl: the three example rows, then one
    /// row per undecodable image (lines 4, 5, 6; with <paramref name="onlyBad"/> only the latter, as lines 1, 2, 3).</summary>
    static string WithBadImages(bool onlyBad = false)
    {
        string dir = TestPaths.NewTempDir("probe-images");
        CopyImages(dir);
        var rng = new Random(7);
        var noise = new byte[4096];
        rng.NextBytes(noise);
        File.WriteAllBytes(Path.Combine(dir, "images", "noise.png"), noise);
        File.WriteAllBytes(Path.Combine(dir, "images", "empty.png"), []);
        byte[] png = File.ReadAllBytes(Path.Combine(dir, "images", "circles.png"));
        File.WriteAllBytes(Path.Combine(dir, "images", "truncated.png"), png[..(png.Length / 2)]);
        string first = File.ReadLines(Example).First();
        List<string> lines = onlyBad ? [] : File.ReadLines(Example).Where(l => l.Trim().Length > 0).ToList();
        foreach (var name in new[] { "noise", "empty", "truncated" }) lines.Add(first.Replace("images/circles.png", $"images/{name}.png"));
        File.WriteAllLines(Path.Combine(dir, "d.jsonl"), lines);
        return Path.Combine(dir, "d.jsonl");
    }

    [Fact]
    public void UndecodableImagesAreBadRowsAtLoadTime()
    {
        string file = WithBadImages();
        var e = Assert.Throws<InputException>(() => PromptDataset.Load(Opts(file)));
        Assert.Contains("3 bad row(s)", e.Message);
        Assert.Contains($"{file}:4:", e.Message);
        Assert.Contains("noise.png: not a decodable image", e.Message);
        Assert.Contains($"{file}:5:", e.Message);
        Assert.Contains("empty.png: not a decodable image: the file is empty (0 bytes)", e.Message);
        Assert.Contains($"{file}:6:", e.Message);
        Assert.Contains("truncated.png", e.Message);

        var ds = PromptDataset.Load(Opts(file, skip: true));
        Assert.Equal(3, ds.Count);
        Assert.Equal([4L, 5L, 6L], ds.BadRows.Select(b => b.Line));
        Assert.DoesNotContain(ds, s => s.Images.Any(i => i.Ref.Location.Contains("noise") || i.Ref.Location.Contains("empty") || i.Ref.Location.Contains("truncated")));
    }

    [Fact]
    public void TheDryRunAndDataCheckDecodeEveryImage()
    {
        string file = WithBadImages();
        var (code, stdout, err) = TrainCommandTests.Run(Set(DryRun(TinyRl.Model), "--prompt_data", file));
        AssertError(code, err, "3 bad row(s)", $"{file}:4:", $"{file}:5:", $"{file}:6:", "--skip_bad_rows");
        Assert.DoesNotContain("are valid", stdout);
        (code, stdout, err) = TrainCommandTests.Run([.. Set(DryRun(TinyRl.Model), "--prompt_data", file), "--skip_bad_rows"]);
        Assert.True(code == 0, err);
        Assert.Contains("skipped 3 bad row(s)", err);
        Assert.Contains("data: 3 prompts", stdout);

        (code, stdout, err) = TrainCommandTests.Run("data", "check", "--prompt_data", file, "--input_key", "message", "--label_key", "answer");
        Assert.Equal(1, code);
        Assert.Contains("bad rows: 3", stdout);
        Assert.Contains("samples: 6, usable 3", stdout);   // data check reads every row and decodes the images itself
    }

    [Fact]
    public void SkipBadRowsTrainsPastUndecodableImagesAlsoAfterAResume()
    {
        string file = WithBadImages();
        string root = TestPaths.NewTempDir("probe-img-run");
        // rollout 1 prompt per step, 3 steps: every usable row is drawn once; a bad one would abort the step.
        string[] args =
        [
            "train", "--pretrain", TinyRl.Model, "--prompt_data", file, "--input_key", "message", "--label_key", "answer", "--skip_bad_rows",
            "--processor_kwargs", TinyRl.SmallImages, "--advantage_estimator", "reinforce_baseline", "--init_kl_coef", "0",
            "--rollout_batch_size", "1", "--n_samples_per_prompt", "2", "--train_batch_size", "2", "--micro_train_batch_size", "1",
            "--generate_max_len", "4", "--max_global_steps", "3", "--save_steps", "1", "--reward_time_budget_ms", "60000",
            "--ckpt_path", Path.Combine(root, "ckpt"), "--save_path", Path.Combine(root, "final"),
        ];
        var (code, stdout, err) = RunSupport.RunInProcess([.. args, "--stop_after_step", "1"]);
        Assert.True(code == 0, err);
        Assert.Contains("skipped 3 bad row(s)", err);
        (code, stdout, err) = RunSupport.RunInProcess([.. args, "--load_checkpoint"]);
        Assert.True(code == 0, err);
        Assert.Contains("resumed from", stdout);
        Assert.Contains("step 3/3", stdout);
        Assert.True(File.Exists(Path.Combine(root, "final", "model.safetensors")));
    }

    [Fact]
    public void DataCheckListsEveryBadRowWhenNoneIsUsable()
    {
        string file = WithBadImages(onlyBad: true);
        var (code, stdout, err) = TrainCommandTests.Run("data", "check", "--prompt_data", file, "--input_key", "message", "--label_key", "answer");
        Assert.Equal(1, code);
        Assert.Contains("bad rows: 3", stdout);
        Assert.Contains($"{file}:1: ", stdout);                                   // the rows are lines 1-3 here
        Assert.Contains($"{file}:2: ", stdout);
        Assert.Contains($"{file}:3: ", stdout);
        Assert.Contains("noise.png: not a decodable image", stdout);
        Assert.Contains("samples: 3, usable 0", stdout);
        Assert.StartsWith("error:", err.Trim());
        Assert.DoesNotContain("   at ", err);

        // train --dry_run --skip_bad_rows: no usable row is an error that lists them too.
        (code, _, err) = TrainCommandTests.Run([.. Set(DryRun(TinyRl.Model), "--prompt_data", file), "--skip_bad_rows"]);
        AssertError(code, err, "no usable rows", $"{file}:1: ", $"{file}:3: ");
    }

    [Fact]
    public void BytesThatAreNotUtf8MakeTheirLineABadRowNamingTheOffset()
    {
        string dir = TestPaths.NewTempDir("probe-utf8-data");
        CopyImages(dir);
        var example = File.ReadLines(Example).Where(l => l.Trim().Length > 0).ToList();
        byte[] line1 = Encoding.UTF8.GetBytes(example[1] + "\n");
        byte[] line2 = Encoding.UTF8.GetBytes(example[0].Replace("\\\\boxed{5}", "\\\\boxed{5@6}") + "\n");
        int at = Array.IndexOf(line2, (byte)'@');
        Assert.True(at > 0);
        line2[at] = 0xFF;
        string file = Path.Combine(dir, "d.jsonl");
        File.WriteAllBytes(file, [.. line1, .. line2]);

        var e = Assert.Throws<InputException>(() => PromptDataset.Load(Opts(file)));
        Assert.Contains($"{file}:2: not valid UTF-8: byte 0xFF at byte offset {line1.Length + at} of the file (column {at + 1} of the line)", e.Message);
        var ds = PromptDataset.Load(Opts(file, skip: true));
        Assert.Single(ds);
        Assert.DoesNotContain(ds, s => s.Label.Contains('\uFFFD'));

        // The same in a .json list: the element holding the byte is the bad row (at its line).
        string json = Path.Combine(dir, "d.json");
        byte[] list = [.. "[\n"u8.ToArray(), .. line1[..^1], .. ",\n"u8.ToArray(), .. line2[..^1], .. "\n]\n"u8.ToArray()];
        File.WriteAllBytes(json, list);
        e = Assert.Throws<InputException>(() => PromptDataset.Load(Opts(json)));
        Assert.Contains($"{json}:3: not valid UTF-8: byte 0xFF at byte offset {2 + line1.Length + 1 + at}", e.Message);
        Assert.Single(PromptDataset.Load(Opts(json, skip: true)));

        // A UTF-8 byte-order mark and CRLF line ends are still fine.
        string crlf = Path.Combine(dir, "crlf.jsonl");
        File.WriteAllBytes(crlf, [0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(string.Join("\r\n", example) + "\r\n")]);
        Assert.Equal(3, PromptDataset.Load(Opts(crlf)).Count);
    }

    [Fact]
    public void ASymlinkLoopInAPromptDataFolderReadsEachRealFileOnce()
    {
        string dir = TestPaths.NewTempDir("probe-loop-data");
        CopyImages(dir);
        File.Copy(Example, Path.Combine(dir, "a.jsonl"));
        Directory.CreateDirectory(Path.Combine(dir, "sub"));
        Directory.CreateSymbolicLink(Path.Combine(dir, "sub", "loop"), dir);         // sub/loop → the folder itself
        File.CreateSymbolicLink(Path.Combine(dir, "sub", "again.jsonl"), Path.Combine(dir, "a.jsonl"));
        var ds = PromptDataset.Load(Opts(dir));
        Assert.Equal(3, ds.Count);                                                   // 3 rows from the one real file
        Assert.Single(ds.Parts.Single().Files);
        Assert.Equal(Path.Combine(dir, "a.jsonl"), ds.Parts.Single().Files[0]);

        // A link that resolves to nothing is named, not a stack trace.
        File.CreateSymbolicLink(Path.Combine(dir, "self.jsonl"), Path.Combine(dir, "self.jsonl"));
        var e = Assert.Throws<InputException>(() => PromptDataset.Load(Opts(dir)));
        Assert.Contains("self.jsonl", e.Message);
    }

    static void CopyImages(string dir)
    {
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        foreach (var f in Directory.GetFiles(Path.Combine(Path.GetDirectoryName(Example)!, "images")))
            File.Copy(f, Path.Combine(dir, "images", Path.GetFileName(f)));
    }

    static string[] Set(string[] args, string flag, string value) => RunSupport.Set(args, flag, value);
}
