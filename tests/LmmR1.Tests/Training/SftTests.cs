// SFT: the loss mask covers exactly the response tokens (hand-counted on the byte-level tokenizer: one token per
// byte, one per special token), the trainer's loss equals a plain full-sequence computation over a left-padded batch,
// a tiny model memorises a few answers, and `lmmr1 sft` writes a loadable model and metrics.
using LmmR1.Data;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using LmmR1.Text;
using LmmR1.Training.Logging;
using LmmR1.Training.Sft;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

[Collection("Console")]
public class SftTests(ITestOutputHelper output)
{
    static QwenVLProcessor Processor() => new(QwenTokenizer.Load(TinyRl.Model));

    static string WriteRows(params string[] jsonLines)
    {
        string f = Path.Combine(TestPaths.NewTempDir("sft-data"), "data.jsonl");
        File.WriteAllLines(f, jsonLines);
        return f;
    }

    static SftSample One(SftDataOptions o, string row)
    {
        using var d = SftDataset.Load(o with { Dataset = WriteRows(row) }, Processor());
        var s = d[0];
        return new SftSample { Id = s.Id, InputIds = s.InputIds, PromptLength = s.PromptLength };
    }

    [Fact]
    public void LossMaskCoversExactlyTheAssistantTokens()
    {
        var tok = QwenTokenizer.Load(TinyRl.Model);
        int imEnd = tok.TokenToId("<|im_end|>");
        // <|im_start|> system\n(7) "You are a helpful assistant."(28) <|im_end|> \n <|im_start|> user\n(5) hi(2) <|im_end|> \n
        // <|im_start|> assistant\n(10): 1+7+28+1+1 + 1+5+2+1+1 + 1+10 = 59 prompt tokens, then o, k, <|im_end|>.
        var chat = One(new SftDataOptions { InputKey = "messages" },
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"ok\"}]}");
        Assert.Equal(59, chat.PromptLength);
        Assert.Equal(62, chat.Length);
        Assert.Equal(new long[] { 'o', 'k', imEnd }, chat.InputIds[59..]);
        var mask = chat.LossMask();                        // position t predicts token t + 1
        Assert.Equal(61, mask.Length);
        Assert.Equal(Enumerable.Range(0, 61).Select(t => t is >= 58 and <= 60), mask);

        // The same pair as input/output keys with --apply_chat_template gives the same tokens and mask.
        var pair = One(new SftDataOptions { InputKey = "q", OutputKey = "a", ApplyChatTemplate = true }, "{\"q\": \"hi\", \"a\": \"ok\"}");
        Assert.Equal(chat.InputIds, pair.InputIds);
        Assert.Equal(chat.PromptLength, pair.PromptLength);

        // Without the template: "User: hi\nAssistant: " (20 bytes) + "ok" + " " + eos (OpenRLHF appends " " + eos).
        var plain = One(new SftDataOptions { InputKey = "q", OutputKey = "a" }, "{\"q\": \"hi\", \"a\": \"ok\"}");
        Assert.Equal(20, plain.PromptLength);
        Assert.Equal(new long[] { 'o', 'k', ' ', imEnd }, plain.InputIds[20..]);
        Assert.Equal(Enumerable.Range(0, 23).Select(t => t >= 19), plain.LossMask());
    }

    [Fact]
    public void BadRowsNameTheFileLineAndField()
    {
        var e = Assert.Throws<InputException>(() => One(new SftDataOptions { InputKey = "messages" },
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}"));
        Assert.Contains("data.jsonl:1", e.Message);
        Assert.Contains("assistant", e.Message);
        e = Assert.Throws<InputException>(() => One(new SftDataOptions { InputKey = "q" }, "{\"q\": \"hi\"}"));
        Assert.Contains("--output_key", e.Message);
        e = Assert.Throws<InputException>(() => One(new SftDataOptions { InputKey = "q", OutputKey = "a" }, "{\"q\": \"hi\"}"));
        Assert.Contains("'a'", e.Message);
    }

    [Fact]
    public void TrainerLossIsTheMaskedTokenMeanOverALeftPaddedBatch()
    {
        var o = new SftDataOptions { InputKey = "q", OutputKey = "a" };
        using var data = SftDataset.Load(o with { Dataset = WriteRows("{\"q\": \"hi\", \"a\": \"ok\"}", "{\"q\": \"what is two plus two\", \"a\": \"four\"}") }, Processor());
        using var model = QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU);
        var config = new SftConfig { Pretrain = TinyRl.Model, Data = o with { Dataset = "x" }, TrainBatchSize = 2, MicroTrainBatchSize = 2, MaxEpochs = 1 };
        using var trainer = new SftTrainer(config, model, data, QwenTokenizer.Load(TinyRl.Model).PadTokenId);
        using var noGrad = torch.no_grad();
        double loss = trainer.Loss([data[0], data[1]]).item<float>();

        // Each sample alone, unpadded, with logits at every position: Σ −log p over masked positions / their count.
        double sum = 0;
        int count = 0;
        foreach (var s in new[] { data[0], data[1] })
        {
            using var scope = torch.NewDisposeScope();
            using var outp = model.Forward(torch.tensor(s.InputIds, [1, s.Length]));
            var logp = outp.Logits!.to(ScalarType.Float32).log_softmax(-1)[0];                          // [L, V]
            var m = s.LossMask();
            for (int t = 0; t < m.Length; t++)
                if (m[t]) { sum -= logp[t, s.InputIds[t + 1]].item<float>(); count++; }
        }
        Assert.Equal(data[0].Length - data[0].PromptLength + data[1].Length - data[1].PromptLength, count);
        Assert.Equal(sum / count, loss, 4);
    }

    [Fact]
    public void TinyModelMemorisesAnswers()
    {
        var rows = new[] { ("2+3", "5"), ("capital of France", "Paris"), ("color of the sky", "blue"), ("7*8", "56") }
            .Select(p => $"{{\"messages\": [{{\"role\": \"user\", \"content\": \"{p.Item1}\"}}, {{\"role\": \"assistant\", \"content\": \"{p.Item2}\"}}]}}")
            .ToArray();
        var o = new SftDataOptions { Dataset = WriteRows(rows), InputKey = "messages" };
        using var data = SftDataset.Load(o, Processor());
        using var model = QwenVLModel.Load(TinyRl.Model, ScalarType.Float32, torch.CPU);
        var sink = new MemorySink();
        var config = new SftConfig
        {
            Pretrain = TinyRl.Model, Data = o, TrainBatchSize = 4, MicroTrainBatchSize = 2, MaxEpochs = 40, LearningRate = 1e-2, LrWarmupRatio = 0,
        };
        using var trainer = new SftTrainer(config, model, data, QwenTokenizer.Load(TinyRl.Model).PadTokenId, sink);
        trainer.Fit();
        var h = trainer.LossHistory;
        output.WriteLine(string.Join(" ", h.Select(x => x.ToString("F3"))));
        Assert.Equal(40, h.Count);
        Assert.Equal(40, sink.Rows.Count);
        Assert.True(h[^1] < 0.1 * h[0], $"loss {h[0]:F3} → {h[^1]:F3}");
        Assert.True(h.TakeLast(5).Average() < h.Take(5).Average());
    }

    [Fact]
    public void SftCommandWritesALoadableModelAndMetrics()
    {
        string data = WriteRows(
            "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"<think> greet </think><answer> hello </answer>\"}]}",
            "{\"messages\": [{\"role\": \"user\", \"content\": \"2+2?\"}, {\"role\": \"assistant\", \"content\": \"<think> add </think><answer> $\\\\boxed{4}$ </answer>\"}]}");
        string save = Path.Combine(TestPaths.NewTempDir("sft-cli"), "out");
        var (code, stdout, stderr) = TrainCommandTests.Run("sft", "--pretrain", TinyRl.Model, "--dataset", data, "--input_key", "messages",
            "--train_batch_size", "2", "--micro_train_batch_size", "1", "--max_epochs", "2", "--learning_rate", "1e-3", "--save_path", save,
            "--zero_stage", "2", "--flash_attn");
        Assert.True(code == 0, stderr + stdout);
        Assert.Contains("1 step(s) per epoch, 2 in total", stdout);
        Assert.Equal(2, MetricsLog.Read(Path.Combine(save, MetricsLog.FileName)).Count);
        using var m = QwenVLModel.Load(save, ScalarType.Float32, torch.CPU);
        Assert.True(File.Exists(Path.Combine(save, "tokenizer.json")));

        (code, _, stderr) = TrainCommandTests.Run("sft", "--pretrain", TinyRl.Model, "--dataset", data, "--input_key", "messages",
            "--train_batch_size", "3", "--micro_train_batch_size", "2", "--save_path", save);
        Assert.Equal(1, code);
        Assert.Contains("--train_batch_size", stderr);

        // An existing file as --save_path is found before loading or training (issue 11 item 3b).
        string file = Path.Combine(TestPaths.NewTempDir("sft-file"), "afile");
        File.WriteAllText(file, "x");
        (code, stdout, stderr) = TrainCommandTests.Run("sft", "--pretrain", TinyRl.Model, "--dataset", data, "--input_key", "messages",
            "--train_batch_size", "2", "--micro_train_batch_size", "1", "--save_path", file);
        Assert.Equal(1, code);
        Assert.Contains("error: field '--save_path'", stderr);
        Assert.Contains("existing file", stderr);
        Assert.DoesNotContain("step(s) per epoch", stdout);
    }
}
