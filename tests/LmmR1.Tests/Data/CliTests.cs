using System.Text.Json;
using LmmR1.Cli;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;

namespace LmmR1.Tests.Data;

[CollectionDefinition("Console", DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>The inputs commands run through CliApp.Run with Console redirected (so this collection runs alone).</summary>
[Collection("Console")]
public class CliTests
{
    static readonly string Tok = TestPaths.Fixture("qwen-tokenizer");
    static readonly string Example = Path.Combine(TestPaths.RepoRoot, "examples", "data", "test_message.jsonl");

    static (int Code, string Out, string Err) Run(string stdin, params string[] args)
    {
        var (oldIn, oldOut, oldErr) = (Console.In, Console.Out, Console.Error);
        var output = new StringWriter();
        var error = new StringWriter();
        try
        {
            Console.SetIn(new StringReader(stdin));
            Console.SetOut(output);
            Console.SetError(error);
            int code = CliApp.Run(args);
            return (code, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetIn(oldIn);
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    [Fact]
    public void DebugTokenizeReproducesTheFixtureIds()
    {
        var lines = File.ReadLines(TestPaths.Fixture("tokenizer_cases.jsonl")).Where(l => l.Trim().Length > 0).ToList();
        string stdin = string.Join("\n", lines.Select(l => JsonSerializer.Serialize(new { text = JsonDocument.Parse(l).RootElement.GetProperty("text").GetString() })));
        var (code, output, _) = Run(stdin, "debug", "tokenize", "--tokenizer", Tok);
        Assert.Equal(0, code);
        var got = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(lines.Count, got.Length);
        for (int i = 0; i < lines.Count; i++)
        {
            using var e = JsonDocument.Parse(lines[i]);
            using var g = JsonDocument.Parse(got[i]);
            Assert.Equal(e.RootElement.GetProperty("text").GetString(), g.RootElement.GetProperty("text").GetString());
            Assert.Equal(e.RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()),
                         g.RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()));
        }
    }

    [Fact]
    public void DebugImageWritesTheFixtureTensors()
    {
        string outFile = Path.Combine(TestPaths.NewTempDir("cli-image"), "pv.safetensors");
        var (code, output, err) = Run("", "debug", "image", "--image", TestPaths.Fixture("image-processor", "img6_333x777.png"),
                                      "--min-pixels", "3136", "--max-pixels", "50176", "--output", outFile);
        Assert.True(code == 0, err);
        Assert.Contains("\"image_grid_thw\":[[1,24,10]]", output);
        using var got = SafetensorsFile.Open(outFile);
        using var want = SafetensorsFile.Open(TestPaths.Fixture("image-processor", "case6_1.safetensors"));
        TensorAssert.Equal(want.Load("image_grid_thw"), got.Load("image_grid_thw"), "image_grid_thw");
        TensorAssert.Equal(want.Load("pixel_values"), got.Load("pixel_values"), "pixel_values"); // torchvision backend: bit-exact
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DebugPromptReproducesTheProcessorFixture(bool transformersOnly)
    {
        var cases = File.ReadLines(TestPaths.Fixture("processor", "cases.jsonl")).Where(l => l.Trim().Length > 0).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        string stdin = string.Join("\n", cases.Select(c => "{\"messages\":" + c.GetProperty("messages").GetRawText() + "}"));
        string[] args = ["debug", "prompt", "--tokenizer", Tok, "--image-root", TestPaths.Fixture("processor"), "--min-pixels", "3136", "--max-pixels", "401408"];
        var (code, output, err) = Run(stdin, transformersOnly ? [.. args, "--transformers-only"] : args);
        Assert.True(code == 0, err);
        var got = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(cases.Count, got.Count);
        for (int i = 0; i < cases.Count; i++)
        {
            Assert.Equal(cases[i].GetProperty("prompt").GetString(), got[i].GetProperty("prompt").GetString());
            Assert.Equal(cases[i].GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt64()),
                         got[i].GetProperty("input_ids").EnumerateArray().Select(x => x.GetInt64()));
            string grid = cases[i].TryGetProperty("image_grid_thw", out var g) ? g.GetRawText() : "[]";
            Assert.Equal(grid.Replace(" ", ""), got[i].GetProperty("image_grid_thw").GetRawText());
        }
    }

    [Fact]
    public void DataCheckPrintsStatisticsOfTheExampleSet()
    {
        var (code, output, err) = Run("", "data", "check", "--prompt_data", Example, "--input_key", "message", "--label_key", "answer", "--pretrain", Tok);
        Assert.True(code == 0, err);
        Assert.Contains("samples: 3, usable 3, text-only 1", output);
        Assert.Contains("images: 2 total; per sample min 0  mean 0.67  max 1", output);
        Assert.Contains("image tokens per image: min 35  mean 35.5  max 36", output);
        Assert.Contains("prompt tokens (chat template, image tokens expanded): min", output);
        Assert.Contains("bad rows: 0", output);
    }

    [Fact]
    public void DataCheckListsBadRowsAndFailsWithoutSkipBadRows()
    {
        string dir = TestPaths.NewTempDir("cli-check");
        File.WriteAllLines(Path.Combine(dir, "d.jsonl"),
        [
            File.ReadLines(Example).First().Replace("images/circles.png", "gone.png"),
            "{oops",
            File.ReadLines(Example).Last(),
        ]);
        string[] args = ["data", "check", "--prompt_data", Path.Combine(dir, "d.jsonl"), "--input_key", "message", "--label_key", "answer"];
        var (code, output, err) = Run("", args);
        Assert.Equal(1, code);
        Assert.Contains("d.jsonl:1: field 'message': image 'gone.png' not found", output);
        Assert.Contains("d.jsonl:2: invalid JSON", output);
        Assert.Contains("bad rows: 2", output);
        Assert.Contains("error: 2 bad row(s)", err);

        (code, output, _) = Run("", [.. args, "--skip_bad_rows"]);
        Assert.Equal(0, code);
        Assert.Contains("samples: 1, usable 1", output);
    }

    [Fact]
    public void InputErrorsPrintOneLineWithoutAStackTrace()
    {
        var (code, _, err) = Run("{\"text\": 5}\n", "debug", "tokenize", "--tokenizer", Tok);
        Assert.Equal(1, code);
        Assert.Equal("error: stdin:1: field 'text': missing or not a string", err.Trim());

        (code, _, err) = Run("", "data", "check", "--prompt_data", "x.csv", "--input_key", "message");
        Assert.Equal(1, code);
        Assert.StartsWith("error: x.csv: unknown data file extension", err.Trim());
        Assert.DoesNotContain(" at ", err);
    }
}
