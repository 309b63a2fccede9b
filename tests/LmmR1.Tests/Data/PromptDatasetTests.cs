using System.Text.Json;
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Tests.Support;
using LmmR1.Tests.Text;
using LmmR1.Text;
using LmmR1.Vision;
using Parquet.Schema;
using Parquet.Serialization;

namespace LmmR1.Tests.Data;

public class PromptDatasetTests
{
    static readonly string ExampleFile = Path.Combine(TestPaths.RepoRoot, "examples", "data", "test_message.jsonl");

    static PromptDataOptions Opts(string data, string? probs = null, bool skip = false, long max = 100_000_000, string labelKey = "answer") =>
        new() { PromptData = data, PromptDataProbs = probs, InputKey = "message", LabelKey = labelKey, SkipBadRows = skip, MaxSamples = max };

    /// <summary>A temp folder with a copy of the example images and the given jsonl lines in data.jsonl.</summary>
    static string DataDir(string tag, params string[] lines)
    {
        string dir = TestPaths.NewTempDir(tag);
        Directory.CreateDirectory(Path.Combine(dir, "images"));
        foreach (var f in Directory.GetFiles(Path.Combine(TestPaths.RepoRoot, "examples", "data", "images")))
            File.Copy(f, Path.Combine(dir, "images", Path.GetFileName(f)));
        if (lines.Length > 0) File.WriteAllLines(Path.Combine(dir, "data.jsonl"), lines);
        return dir;
    }

    static string Row(string question, string answer, string? image = "images/circles.png", string? extra = null)
    {
        var user = new List<object> { new { type = "text", text = question } };
        if (image != null) user.Add(new { type = "image", image });
        string message = JsonSerializer.Serialize(new object[] { new { role = "system", content = "Think." }, new { role = "user", content = user } });
        return "{" + $"\"question\":{JsonSerializer.Serialize(question)},\"answer\":{JsonSerializer.Serialize(answer)},\"message\":{JsonSerializer.Serialize(message)}" +
               (extra == null ? "" : "," + extra) + "}";
    }

    [Fact]
    public void LoadsTheExampleSetLikeLmmR1()
    {
        var ds = PromptDataset.Load(Opts(ExampleFile));
        Assert.Equal(3, ds.Count);
        Assert.Empty(ds.BadRows);
        var s = ds[0];
        Assert.Equal("test_message.jsonl:1", s.Id);
        Assert.Equal("$\\boxed{5}$", s.Label);
        Assert.Equal("default", s.Datasource);
        // The prompt is the stringified message list, verbatim (what LMM-R1 sends to the reward server).
        using var doc = JsonDocument.Parse(File.ReadLines(ExampleFile).First());
        Assert.Equal(doc.RootElement.GetProperty("message").GetString(), s.Prompt);
        Assert.Equal(["system", "user"], s.Messages!.Select(m => m.Role));
        var img = Assert.Single(s.Images);
        Assert.Equal(Path.Combine(TestPaths.RepoRoot, "examples", "data", "images", "circles.png"), img.Ref.Location);
        Assert.Empty(ds[2].Images);
        Assert.StartsWith("<|im_start|>system\nAnswer the user's question.", ds[2].PromptText());
    }

    [Fact]
    public void CommittedExampleFilesAreWhatTheGeneratorWrites()
    {
        string dir = TestPaths.NewTempDir("example");
        ExampleData.Write(dir);
        Assert.Equal(File.ReadAllText(Path.Combine(dir, "test_message.jsonl")), File.ReadAllText(ExampleFile));
        foreach (var r in ExampleData.Rows.Where(r => r.Image != null))
        {
            var committed = ImageDecoder.Decode(File.ReadAllBytes(Path.Combine(TestPaths.RepoRoot, "examples", "data", r.Image!)), r.Image!).ToRgbLikeQwenVlUtils();
            Assert.Equal(ExampleData.Draw(r.Image!).Pixels, committed.Pixels);
        }
        long bytes = Directory.EnumerateFiles(Path.GetDirectoryName(ExampleFile)!, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        Assert.True(bytes < 100_000, $"examples/data holds {bytes} bytes");
    }

    [Fact]
    public void ProcessesSamplesIntoModelInputs()
    {
        var ds = PromptDataset.Load(Opts(ExampleFile));
        var proc = new QwenVLProcessor(TokenizerTests.Qwen.Value);
        using var p = proc.Process(ds[0]);
        // 168×168 → 6×6 merged tokens: 36 image pads between vision start and end.
        Assert.Equal(new ImageGrid(1, 12, 12), Assert.Single(p.Grids));
        Assert.Equal(36, p.InputIds.Count(id => id == proc.ImagePadId));
        Assert.Equal([144, 1176], p.PixelValues!.shape);
        Assert.Equal(ds[0].PromptText(), p.PromptText);
        using var t = proc.Process(ds[2]);
        Assert.Null(t.PixelValues);
        Assert.Equal(TokenizerTests.Qwen.Value.Encode(ds[2].PromptText()).Select(i => (long)i), t.InputIds);

        // The parallel batch path gives the same inputs, in order.
        var many = proc.ProcessMany(ds);
        try
        {
            Assert.Equal(p.InputIds, many[0].InputIds);
            Assert.True(p.PixelValues.Equals(many[0].PixelValues!));
            Assert.Equal(new ImageGrid(1, 10, 14), Assert.Single(many[1].Grids)); // 196×140 bars
            Assert.Equal(t.InputIds, many[2].InputIds);
        }
        finally { foreach (var m in many) m.Dispose(); }
    }

    [Fact]
    public void DatasourceJsonListInputAndTextPrompts()
    {
        string dir = DataDir("kinds",
            Row("q1", "1", extra: "\"datasource\":\"geo\""),
            "{\"message\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"image\":\"file://images/bars.png\"},{\"type\":\"text\",\"text\":\"q2\"}]}],\"answer\":2}",
            "{\"message\":\"What is 1+1?\",\"answer\":\"$2$\"}");
        string file = Path.Combine(dir, "data.jsonl");
        var ds = PromptDataset.Load(Opts(file));
        Assert.Equal("geo", ds[0].Datasource);
        Assert.Equal("2", ds[1].Label);                                  // a number label as its JSON text
        Assert.StartsWith("[{\"role\":\"user\"", ds[1].Prompt);          // a real JSON list: its JSON text
        Assert.Equal(Path.Combine(dir, "images", "bars.png"), ds[1].Images[0].Ref.Location);
        Assert.Null(ds[2].Messages);                                     // plain text, no chat template: fed as is
        Assert.Equal("What is 1+1?", ds[2].PromptText());

        var templ = PromptDataset.Load(Opts(file) with { InputTemplate = "Q: {} A: {{x}}" });
        Assert.Equal("Q: What is 1+1? A: {x}", templ[2].Prompt);
        var chat = PromptDataset.Load(Opts(file) with { ApplyChatTemplate = true });
        Assert.Equal(ChatTemplate.ApplyToText("What is 1+1?"), chat[2].Prompt);
        Assert.Equal(chat[2].Prompt, chat[2].PromptText());
    }

    // ---------------- bad input ----------------

    static InputException LoadFails(PromptDataOptions o) => Assert.Throws<InputException>(() => PromptDataset.Load(o));

    [Fact]
    public void BadJsonLineNamesFileAndLine()
    {
        string dir = DataDir("badjson", Row("q", "a"), "{\"message\": \"[unterminated", Row("q", "b"));
        var e = LoadFails(Opts(Path.Combine(dir, "data.jsonl")));
        Assert.Contains("data.jsonl:2: invalid JSON", e.Message);
        Assert.Contains("--skip_bad_rows", e.Message);
    }

    [Fact]
    public void MissingInputKeyAndMissingLabelKey()
    {
        string dir = DataDir("keys", Row("q", "a"), "{\"question\":\"q\",\"answer\":\"a\"}", "{\"message\":\"[{\\\"role\\\":\\\"user\\\",\\\"content\\\":\\\"x\\\"}]\"}");
        var e = LoadFails(Opts(Path.Combine(dir, "data.jsonl")));
        Assert.Contains("data.jsonl:2: field 'message': missing input key 'message'", e.Message);
        Assert.Contains("data.jsonl:3: field 'answer': missing label key 'answer'", e.Message);
    }

    [Fact]
    public void MalformedMessageStringIsABadRow()
    {
        string dir = DataDir("msg", "{\"message\":\"[{\\\"role\\\": \\\"user\\\"\",\"answer\":\"a\"}", "{\"message\":\"[{\\\"content\\\":\\\"x\\\"}]\",\"answer\":\"a\"}");
        var e = LoadFails(Opts(Path.Combine(dir, "data.jsonl")));
        Assert.Contains("data.jsonl:1: field 'message': not valid JSON", e.Message);
        Assert.Contains("data.jsonl:2: field 'message[0].role'", e.Message);
    }

    [Fact]
    public void MissingAndUnreadableImages()
    {
        string dir = DataDir("img", Row("q", "a", image: "images/nope.png"), Row("q", "b", image: "images/broken.png"), Row("q", "c", image: "images/bars.png"));
        File.WriteAllText(Path.Combine(dir, "images", "broken.png"), "this is not a png");
        var o = Opts(Path.Combine(dir, "data.jsonl"));
        var e = LoadFails(o);
        Assert.Contains("data.jsonl:1: field 'message': image 'images/nope.png' not found", e.Message);
        // Existing files are decoded at load time (issue 11 item 3d): an undecodable one is a bad row at once ...
        Assert.Contains("data.jsonl:2: ", e.Message);
        Assert.Contains("broken.png: not a decodable image", e.Message);

        var ds = PromptDataset.Load(o with { SkipBadRows = true }, TextWriter.Null);
        var sample = Assert.Single(ds);
        Assert.Equal(3, sample.Line);
        Assert.Equal([1L, 2L], ds.BadRows.Select(b => b.Line));
        // ... and an image that breaks after loading fails, naming the row, when decoded by the processor or by `data check`.
        File.WriteAllText(Path.Combine(dir, "images", "bars.png"), "not a png any more");
        var pe = Assert.Throws<InputException>(() => new QwenVLProcessor(TokenizerTests.Qwen.Value).Process(sample));
        Assert.Contains("data.jsonl:3", pe.Message);
        Assert.Contains("bars.png", pe.Message);
        var me = Assert.Throws<InputException>(() => new QwenVLProcessor(TokenizerTests.Qwen.Value).ProcessMany(ds));
        Assert.Equal(pe.Message, me.Message);
        var report = DataCheck.Run(ds, null, new QwenVLProcessorOptions());
        Assert.Equal(3, report.BadRows.Count);
        Assert.Contains(report.BadRows, b => b.Line == 3 && b.Reason.Contains("not a decodable image"));
    }

    [Fact]
    public void BadDataUris()
    {
        string dir = DataDir("datauri", Row("q", "a", image: "data:image/png,notbase64"), Row("q", "b", image: "data:image/png;base64,%%%%"), Row("q", "c"));
        var ds = PromptDataset.Load(Opts(Path.Combine(dir, "data.jsonl"), skip: true), TextWriter.Null);
        Assert.Contains(ds.BadRows, b => b.Line == 1 && b.Reason.Contains("bad data: URI"));
        Assert.Contains(ds.BadRows, b => b.Line == 2 && b.Reason.Contains("base64 payload is invalid"));   // decoded at load time
        var report = DataCheck.Run(ds, null, new QwenVLProcessorOptions());
        Assert.Contains(report.BadRows, b => b.Line == 2 && b.Reason.Contains("base64 payload is invalid"));
    }

    [Fact]
    public void UnknownExtensionEmptyDatasetAndMissingFile()
    {
        string dir = TestPaths.NewTempDir("ext");
        File.WriteAllText(Path.Combine(dir, "data.csv"), "message,answer\n");
        Assert.Contains("unknown data file extension '.csv'", LoadFails(Opts(Path.Combine(dir, "data.csv"))).Message);
        File.WriteAllText(Path.Combine(dir, "empty.jsonl"), "\n\n");
        Assert.Contains("empty.jsonl: dataset is empty", LoadFails(Opts(Path.Combine(dir, "empty.jsonl"))).Message);
        Assert.Contains("data file not found", LoadFails(Opts(Path.Combine(dir, "none.jsonl"))).Message);
        Directory.CreateDirectory(Path.Combine(dir, "nodata"));
        Assert.Contains("no .jsonl, .json or .parquet files", LoadFails(Opts(Path.Combine(dir, "nodata"))).Message);
    }

    [Fact]
    public void ProbabilitiesMustMatchDatasetsAndSumToOne()
    {
        string a = ExampleFile;
        Assert.Contains("2 probabilities for 1 datasets", LoadFails(Opts(a, probs: "0.5,0.5")).Message);
        Assert.Contains("sum to 0.9", LoadFails(Opts($"{a},{a}", probs: "0.5,0.4")).Message);
        Assert.Contains("not a non-negative number", LoadFails(Opts($"{a},{a}", probs: "0.5,x")).Message);
        Assert.Contains("not a non-negative number", LoadFails(Opts($"{a},{a}", probs: "1.5,-0.5")).Message);
    }

    [Fact]
    public void SkipBadRowsCountsAndReportsThem()
    {
        string dir = DataDir("skip", Row("q1", "a"), "not json", Row("q3", "c"), "{\"question\":\"q\"}", Row("q5", "e", image: "missing.png"));
        var report = new StringWriter();
        var ds = PromptDataset.Load(Opts(Path.Combine(dir, "data.jsonl"), skip: true), report);
        Assert.Equal(2, ds.Count);
        Assert.Equal([2L, 4L, 5L], ds.BadRows.Select(b => b.Line));
        Assert.Contains("skipped 3 bad row(s)", report.ToString());
        Assert.Contains("data.jsonl:4: field 'message': missing input key", report.ToString());
        var part = Assert.Single(ds.Parts);
        Assert.Equal((2, 3), (part.Rows, part.BadRows));
        // All rows bad: nothing usable is an error even with --skip_bad_rows.
        string all = DataDir("allbad", "x", "y");
        Assert.Contains("no usable rows", LoadFails(Opts(Path.Combine(all, "data.jsonl"), skip: true)).Message);
    }

    [Fact]
    public async Task JsonArraysParquetAndFoldersReadTheSameRows()
    {
        string dir = DataDir("formats");
        string[] rows = [Row("q1", "a1"), Row("q2", "a2", image: null), Row("q3", "a3", image: "images/bars.png")];
        File.WriteAllText(Path.Combine(dir, "a.json"), "[\n" + string.Join(",\n", rows) + "\n]\n");
        var parquetRows = rows.Select(r => JsonDocument.Parse(r).RootElement)
            .Select(e => (IDictionary<string, object?>)new Dictionary<string, object?>
            {
                ["question"] = e.GetProperty("question").GetString()!, ["answer"] = e.GetProperty("answer").GetString()!,
                ["message"] = e.GetProperty("message").GetString()!,
            }).ToList();
        var schema = new ParquetSchema(new DataField<string>("question"), new DataField<string>("answer"), new DataField<string>("message"));
        using (var fs = File.Create(Path.Combine(dir, "b.parquet")))
            await ParquetSerializer.SerializeUntypedAsync(parquetRows, schema, fs);
        File.WriteAllLines(Path.Combine(dir, "c.jsonl"), rows);

        var fromJson = PromptDataset.Load(Opts(Path.Combine(dir, "a.json")));
        Assert.Equal([2L, 3L, 4L], fromJson.Select(s => s.Line));     // lines of the list elements
        var fromParquet = PromptDataset.Load(Opts(Path.Combine(dir, "b.parquet")));
        var fromFolder = PromptDataset.Load(Opts(dir));                  // a.json, b.parquet, c.jsonl; images ignored
        Assert.Equal(9, fromFolder.Count);
        foreach (var ds in new[] { fromJson, fromParquet })
            Assert.Equal(fromFolder.Take(3).Select(s => (s.Prompt, s.Label, s.Images.Count)), ds.Select(s => (s.Prompt, s.Label, s.Images.Count)));
        Assert.Equal(["a.json:2", "b.parquet:1", "c.jsonl:1"], new[] { fromFolder[0].Id, fromFolder[3].Id, fromFolder[6].Id });

        File.WriteAllText(Path.Combine(dir, "a.json"), "[\n" + rows[0] + ",\n{broken\n]");
        var e = LoadFails(Opts(Path.Combine(dir, "a.json")));
        Assert.Contains("a.json:3: invalid JSON", e.Message);
    }

    [Fact]
    public void MaxSamplesAppliesPerDatasetAndInTotal()
    {
        string dir = DataDir("max", Enumerable.Range(0, 10).Select(i => Row($"q{i}", $"{i}", image: null)).ToArray());
        string f = Path.Combine(dir, "data.jsonl");
        Assert.Equal(4, PromptDataset.Load(Opts(f, max: 4)).Count);
        var two = PromptDataset.Load(Opts($"{f},{f}", max: 3));
        Assert.Equal(["0", "1", "2"], two.Select(s => s.Label)); // 3 + 3 concatenated, then cut to 3
    }

    [Fact]
    public void InterleavingVisitsEveryRowAndFollowsTheProbabilities()
    {
        var a = Enumerable.Range(0, 10).Select(i => $"a{i}").ToList();
        var b = Enumerable.Range(0, 100).Select(i => $"b{i}").ToList();
        var mixed = DatasetMixer.Interleave([a, b], [0.5, 0.5], seed: 42);
        // all_exhausted: stops once both sources were used up at least once; the small one is oversampled.
        Assert.True(a.All(mixed.Contains) && b.All(mixed.Contains));
        Assert.Equal(b[^1], mixed.Last(x => x.StartsWith('b')));
        Assert.Equal(100, mixed.Count(x => x.StartsWith('b')));
        double share = mixed.Count(x => x.StartsWith('a')) / (double)mixed.Count;
        Assert.InRange(share, 0.4, 0.6);
        Assert.Equal(mixed, DatasetMixer.Interleave([a, b], [0.5, 0.5], seed: 42));
        Assert.NotEqual(mixed, DatasetMixer.Interleave([a, b], [0.5, 0.5], seed: 7));
        // Rows keep their order within a source.
        Assert.Equal(b, mixed.Where(x => x.StartsWith('b')));
        // A zero-probability source is never drawn (and does not keep the loop running).
        Assert.DoesNotContain(DatasetMixer.Interleave([a, b], [0.0, 1.0], 1), x => x.StartsWith('a'));

        var ds = PromptDataset.Load(Opts($"{ExampleFile},{ExampleFile}", probs: "0.3,0.7"));
        Assert.True(ds.Count >= 6);
    }

    [Fact]
    public void ShuffledOrderIsASeededPermutation()
    {
        string dir = DataDir("shuffle", Enumerable.Range(0, 50).Select(i => Row($"q{i}", $"{i}", image: null)).ToArray());
        var ds = PromptDataset.Load(Opts(Path.Combine(dir, "data.jsonl")));
        var e0 = ds.ShuffledOrder(0);
        Assert.Equal(Enumerable.Range(0, 50), e0.Order());
        Assert.Equal(e0, ds.ShuffledOrder(0));
        Assert.NotEqual(e0, ds.ShuffledOrder(1));
        Assert.NotEqual(Enumerable.Range(0, 50), e0);
    }

    [Fact]
    public void EvalDatasetLoadsSeparately()
    {
        var o = Opts(ExampleFile) with { EvalDataset = ExampleFile };
        Assert.Equal(3, PromptDataset.LoadEval(o).Count);
        Assert.Throws<InputException>(() => PromptDataset.LoadEval(Opts(ExampleFile)));
        Assert.Throws<InputException>(() => PromptDataset.Load(new PromptDataOptions { PromptData = " " }));
    }
}
