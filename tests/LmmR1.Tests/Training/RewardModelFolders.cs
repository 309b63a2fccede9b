// Reward-model folders for tests, written with our safetensors writer from a model folder: the weights minus lm_head
// plus a `score` head, in the classic (model.* / visual.*) or transformers ≥ 4.52 (model.language_model.* /
// model.visual.*) layout, with an optional config.json edit; and the independent score of one sequence (the causal
// model's final hidden state at the last token, dotted with the head in double precision).
using System.Text.Json.Nodes;
using LmmR1.Generation;
using LmmR1.Models.Qwen;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public static class RewardModelFolders
{
    /// <summary>A random [1, H] head drawn from N(0, 1) with <paramref name="seed"/>.</summary>
    public static Tensor RandomHead(int hidden, long seed)
    {
        using var gen = new torch.Generator((ulong)seed, torch.CPU);
        return torch.empty([1, hidden], ScalarType.Float32).normal_(0, 1, gen);
    }

    /// <summary>Copies <paramref name="baseDir"/>'s non-weight files and writes its weights without lm_head plus
    /// <paramref name="extra"/> (e.g. score.weight) into <paramref name="dir"/>.</summary>
    public static string Write(string baseDir, string dir, IReadOnlyDictionary<string, Tensor> extra, bool newLayout = false,
                               Action<JsonObject>? editConfig = null)
    {
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.EnumerateFiles(baseDir).Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal) &&
                                                                       !f.EndsWith(".safetensors.index.json", StringComparison.Ordinal)))
            File.Copy(f, Path.Combine(dir, Path.GetFileName(f)), overwrite: true);
        var tensors = new Dictionary<string, Tensor>();
        using (var ckpt = SafetensorsCheckpoint.Open(baseDir))
            foreach (var n in ckpt.Names.Where(n => n != "lm_head.weight"))
                tensors[newLayout ? QwenVLModel.ToNewLayout(n) : n] = ckpt.Load(n);
        foreach (var (k, v) in extra) tensors[k] = v;
        SafetensorsWriter.WriteCheckpoint(dir, tensors);
        foreach (var t in tensors.Values.Except(extra.Values)) t.Dispose();
        if (editConfig is not null)
        {
            string path = Path.Combine(dir, QwenVLConfig.FileName);
            var root = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            editConfig(root);
            File.WriteAllText(path, root.ToJsonString());
        }
        return dir;
    }

    /// <summary>A tiny Qwen2-VL reward model (the byte-level tiny demo model, <paramref name="seed"/>) with a random
    /// head; returns the reward folder, the causal base folder it came from and the head.</summary>
    public static (string Dir, string BaseDir, float[] Head) Tiny(string tag, long seed, Action<JsonObject>? editConfig = null)
    {
        string root = TestPaths.NewTempDir(tag);
        string baseDir = Path.Combine(root, "base");
        var cfg = TinyDemoModel.Write(baseDir, QwenFamily.Qwen2VL, seed);
        using var head = RandomHead(cfg.Text.HiddenSize, seed + 1000);
        var values = head.data<float>().ToArray();
        Write(baseDir, Path.Combine(root, "rm"), new Dictionary<string, Tensor> { ["score.weight"] = head }, editConfig: editConfig);
        return (Path.Combine(root, "rm"), baseDir, values);
    }

    /// <summary>Independent score of one unpadded sequence: the causal model's last hidden state · head, in double.</summary>
    public static double DirectScore(QwenVLModel causal, long[] ids, float[] head, Tensor? pixelValues = null, Tensor? gridThw = null)
    {
        using var noGrad = torch.no_grad();
        using var scope = torch.NewDisposeScope();
        var input = torch.tensor(ids, [1, ids.Length]);
        using var output = causal.Forward(input, null, pixelValues, gridThw, logitsForLast: 0);
        var hidden = output.Hidden[0, ids.Length - 1].to(ScalarType.Float32).data<float>().ToArray();
        double sum = 0;
        for (int i = 0; i < head.Length; i++) sum += (double)hidden[i] * head[i];
        return sum;
    }
}
