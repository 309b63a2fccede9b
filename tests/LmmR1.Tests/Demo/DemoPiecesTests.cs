// The demo's pieces against independent truth: the byte-level tokenizer round-trips any text and keeps the chat,
// vision and reasoning tags whole; every generated example's answer is the arithmetic / the scene's content, its
// demonstration earns the full LMM-R1 reward (format + accuracy) and a sloppy one only the format part; held-out
// prompts never occur in training; shape images have the promised size, colours and empty cells.
using LmmR1.Demo;
using LmmR1.Rewards;
using LmmR1.Tests.Support;
using LmmR1.Text;
using SkiaSharp;

namespace LmmR1.Tests.Demo;

public class DemoPiecesTests
{
    static readonly Lazy<QwenTokenizer> Tok = new(() =>
    {
        string dir = TestPaths.NewTempDir("demo-tok");
        DemoModel.Write(dir, seed: 1);
        return QwenTokenizer.Load(dir);
    });

    [Theory]
    [InlineData("What is 3 plus 4 plus 0 plus 2?")]
    [InlineData("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>How many shapes are there?<|im_end|>")]
    [InlineData("<think>1+0+1+1=3</think><answer>\\boxed{3}</answer>")]
    [InlineData("ünïcödé ✓ and bytes \t\r\n  spaces")]          // anything the model could emit decodes back
    public void TokenizerRoundTrips(string text)
    {
        var ids = Tok.Value.Encode(text);
        Assert.Equal(text, Tok.Value.Decode(ids));
    }

    [Theory]
    [InlineData("<|im_start|>")]
    [InlineData("<|im_end|>")]
    [InlineData("<|vision_start|>")]
    [InlineData("<|image_pad|>")]
    [InlineData("<think>")]
    [InlineData("</think>")]
    [InlineData("<answer>")]
    [InlineData("</answer>")]
    [InlineData("\\boxed{")]
    [InlineData(" shapes")]                                        // a merged word (with its leading space)
    public void TagsAndWordsAreSingleTokens(string text) => Assert.Single(Tok.Value.Encode(text));

    [Fact]
    public void TokenizerAgreesWithTheEmbeddedConfig()
    {
        var c = DemoModel.Config;
        Assert.Equal(c.Text.VocabSize, Tok.Value.VocabSize);
        Assert.Equal(c.Tokens.ImageTokenId, Tok.Value.TokenToId("<|image_pad|>"));
        Assert.Equal(Tok.Value.TokenToId("<|im_end|>"), c.Tokens.EosTokenIds[0]);
        Assert.Equal(4, Tok.Value.Encode("1234").Length);         // digits stay single bytes, as in Qwen's tokenizer
    }

    [Fact]
    public void ArithmeticAnswersAreTheSumsAndHeldOutSequencesAreNeverTrainedOn()
    {
        var split = DemoTasks.Arithmetic(heldOutSets: 0, heldOutPrompts: 64, new Random(3));
        Assert.Equal(64, split.HeldOut.Count);
        Assert.Equal((625 - 64) * 3, split.Train.Count);               // every other sequence in all three phrasings
        static string Digits(DemoExample e) => new(e.Question.Where(char.IsDigit).ToArray());
        var trained = split.Train.Select(Digits).ToHashSet();
        foreach (var e in split.HeldOut.Concat(split.Train))
        {
            string d = Digits(e);
            Assert.Equal(4, d.Length);
            Assert.Equal(d.Sum(ch => ch - '0').ToString(System.Globalization.CultureInfo.InvariantCulture), e.Answer);
        }
        Assert.DoesNotContain(split.HeldOut, e => trained.Contains(Digits(e)));
    }

    [Fact]
    public void HeldOutMultisetsAreNeverTrainedOnInAnyOrder()
    {
        var split = DemoTasks.Arithmetic(heldOutSets: 20, heldOutPrompts: 64, new Random(3));
        static string Sorted(DemoExample e) => new(e.Question.Where(char.IsDigit).Order().ToArray());
        var trained = split.Train.Select(Sorted).ToHashSet();
        Assert.DoesNotContain(split.HeldOut, e => trained.Contains(Sorted(e)));
        Assert.Equal(50, trained.Count);                                 // 70 multisets of four digits 0–4, 20 held out
    }

    [Fact]
    public void ImageAnswersMatchTheScenesAndHeldOutLayoutsAreNeverTrainedOn()
    {
        var split = DemoTasks.Images(trainPerTask: 200, heldOutPerTask: 40, new Random(5));
        var heldOutSignatures = split.HeldOut.Select(e => e.Scene!.Signature).ToHashSet();
        Assert.DoesNotContain(split.Train, e => heldOutSignatures.Contains(e.Scene!.Signature));
        foreach (var e in split.Train.Concat(split.HeldOut))
        {
            var s = e.Scene!;
            if (e.Task == DemoTask.Count)
            {
                Assert.InRange(s.Count, 1, 4);
                Assert.Equal(s.Count.ToString(System.Globalization.CultureInfo.InvariantCulture), e.Answer);
            }
            else
            {
                int red = s.CountOf(ShapeColor.Red), blue = s.CountOf(ShapeColor.Blue);
                Assert.NotEqual(red, blue);
                Assert.Equal(s.Count, red + blue);
                Assert.Equal(red > blue ? "red" : "blue", e.Answer);
            }
        }
        // Both compare answers occur, all four counts occur.
        Assert.Equal(2, split.Train.Where(e => e.Task == DemoTask.Compare).Select(e => e.Answer).Distinct().Count());
        Assert.Equal(4, split.Train.Where(e => e.Task == DemoTask.Count).Select(e => e.Answer).Distinct().Count());
    }

    [Fact]
    public void DemonstrationsEarnTheFullRewardAndSloppyOnesOnlyTheFormat()
    {
        var rng = new Random(9);
        var examples = DemoTasks.Arithmetic(0, 16, rng).HeldOut.Concat(DemoTasks.Images(8, 8, rng).HeldOut).ToList();
        static RewardResult Score(string response, string label) =>
            LmmR1Reward.Score("<|im_start|>assistant\n" + response + "<|im_end|>", label,
                new RewardOptions { TimeBudget = TimeSpan.FromSeconds(10) });   // the demo's budget (cold first calls)
        Assert.Empty(examples.Where(e => Score(e.Response, e.Label) != new RewardResult(1.5, 0.5, 1.0))
            .Select(e => $"{e.Id}: {Score(e.Response, e.Label)}"));
        foreach (var e in examples)
        {
            var wrong = DemoTasks.WithWrongAnswer(e, rng);
            Assert.StartsWith(e.Response[..e.Response.IndexOf("<answer>", StringComparison.Ordinal)], wrong.Response);
            Assert.Equal(new RewardResult(0.5, 0.5, 0.0), Score(wrong.Response, e.Label));
        }
    }

    [Fact]
    public void SftRowsTrainExactlyTheDemonstrationAndItsEndOfTurn()
    {
        // The demo's sft.jsonl read by `lmmr1 sft`'s dataset with the demo's SftConfig: the loss covers exactly the
        // demonstration followed by <|im_end|> (what the RL stages generate and stop on), for text and image rows.
        var rng = new Random(5);
        var examples = DemoTasks.Arithmetic(0, 4, rng).HeldOut.Take(3).Concat(DemoTasks.Images(4, 4, rng).HeldOut.Take(3)).ToList();
        string dir = TestPaths.NewTempDir("demo-sft-rows");
        string file = DemoData.Write(dir, "sft.jsonl", examples, withResponse: true);
        var processor = new LmmR1.Data.QwenVLProcessor(Tok.Value);
        var config = SftStage.Config(DemoConfig.For(quick: true), "unused-model-dir", file).Validate();
        using var data = LmmR1.Training.Sft.SftDataset.Load(config.Data, processor);
        Assert.Equal(examples.Count, data.Count);
        for (int i = 0; i < data.Count; i++)
        {
            var row = data[i];
            var target = row.InputIds[row.PromptLength..].Select(t => (int)t).ToArray();
            Assert.Equal(examples[i].Response + "<|im_end|>", Tok.Value.Decode(target));
            Assert.Equal(examples[i].Scene is not null, row.PixelValues is not null);
        }
    }

    [Fact]
    public void TheConfigsAttentionKernelsReachEveryLoadedModel()
    {
        // demo_config.json carries the setting ("attention": "eager" read back), and the demo's loader applies it.
        string dir = TestPaths.NewTempDir("demo-attention");
        var c = DemoConfig.For(quick: true) with { Attention = LmmR1.Models.Qwen.AttentionImpl.Eager };
        string file = Path.Combine(dir, "demo_config.json");
        File.WriteAllText(file, c.ToJson());
        Assert.Contains("\"attention\": \"eager\"", File.ReadAllText(file));
        var back = DemoConfig.FromJsonFile(file);
        Assert.Equal(LmmR1.Models.Qwen.AttentionImpl.Eager, back.Attention);
        Assert.Equal(LmmR1.Models.Qwen.AttentionImpl.Sdpa, DemoConfig.For(quick: true).Attention);
        DemoModel.Write(dir, seed: 1);
        foreach (var impl in new[] { LmmR1.Models.Qwen.AttentionImpl.Eager, LmmR1.Models.Qwen.AttentionImpl.Sdpa })
        {
            using var model = DemoRunner.LoadModel(c with { Attention = impl }, dir, TorchSharp.torch.CPU);
            Assert.Equal(impl, model.Attention);
        }
    }

    [Fact]
    public void ShapeImagesHaveTheirColoursInTheirCellsAndWhiteElsewhere()
    {
        var scene = new ShapeScene([
            new Shape(ShapeKind.Square, ShapeColor.Red, 20, 4, 4),
            null,
            new Shape(ShapeKind.Circle, ShapeColor.Blue, 20, 4, 4),
            new Shape(ShapeKind.Triangle, ShapeColor.Green, 20, 4, 4),
        ]);
        using var bmp = SKBitmap.Decode(scene.RenderPng());
        Assert.Equal((56, 56), (bmp.Width, bmp.Height));
        // Cell centres (14 + 28·column, 14 + 28·row) lie inside every shape drawn there (box 4..24 within the cell).
        Assert.Equal(ShapeScene.Rgb(ShapeColor.Red), bmp.GetPixel(14, 14));
        Assert.Equal(ShapeScene.Rgb(ShapeColor.Blue), bmp.GetPixel(14, 42));
        Assert.Equal(ShapeScene.Rgb(ShapeColor.Green), bmp.GetPixel(42, 42));
        for (int y = 0; y < 28; y++)
            for (int x = 28; x < 56; x++)
                Assert.Equal(SKColors.White, bmp.GetPixel(x, y));             // the empty top-right cell
        Assert.Equal(SKColors.White, bmp.GetPixel(33, 34));                    // inside the triangle's box, left of its edge
        Assert.Equal(scene.RenderPng(), scene.RenderPng());                    // no anti-aliasing noise: the same bytes
    }
}
