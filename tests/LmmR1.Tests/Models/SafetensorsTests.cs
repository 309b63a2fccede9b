using System.Text;
using LmmR1.Infrastructure;
using LmmR1.Models.Safetensors;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public class SafetensorsTests
{
    static string Temp(string name) => Path.Combine(TestPaths.NewTempDir("st"), name);

    static Dictionary<string, Tensor> AllDTypes()
    {
        return new Dictionary<string, Tensor>
        {
            ["f32"] = torch.tensor(new float[] { 1.5f, -2.25f, 3e-8f, float.MaxValue, 0f, -0f }).reshape(2, 3),
            ["f16"] = torch.tensor(new float[] { 1.5f, -2.25f, 65504f, 6.1e-5f }).to(ScalarType.Float16),
            ["bf16"] = torch.tensor(new float[] { 1.5f, -2.25f, 3.0e38f, 1e-30f, 7f, 8f }).to(ScalarType.BFloat16).reshape(3, 2, 1),
            ["f64"] = torch.tensor(new double[] { Math.PI, -Math.E }),
            ["i64"] = torch.tensor(new long[] { long.MinValue, -1, 0, long.MaxValue }),
            ["i32"] = torch.tensor(new int[] { int.MinValue, 7, int.MaxValue }),
            ["u8"] = torch.tensor(new byte[] { 0, 128, 255 }),
            ["bool"] = torch.tensor(new bool[] { true, false, true, true }).reshape(2, 2),
            ["scalar"] = torch.tensor(42L),
            ["empty"] = torch.zeros(0, 4),
        };
    }

    [Fact]
    public void RoundTripsEveryDType()
    {
        string path = Temp("all.safetensors");
        var src = AllDTypes();
        SafetensorsWriter.Write(path, src, new Dictionary<string, string> { ["format"] = "pt" });
        using var f = SafetensorsFile.Open(path);
        Assert.Equal("pt", f.Metadata["format"]);
        Assert.Equal(src.Keys.Order(), f.Entries.Keys.Order());
        foreach (var (name, t) in src)
        {
            using var back = f.Load(name);
            TensorAssert.Equal(t, back, name);
        }
    }

    [Fact]
    public void HeaderIsPaddedToEightBytesAndDataLittleEndian()
    {
        string path = Temp("le.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["x"] = torch.tensor(new int[] { 1, 256 }) });
        byte[] b = File.ReadAllBytes(path);
        long n = BitConverter.ToInt64(b, 0);
        Assert.Equal(0, n % 8);
        Assert.Equal(8 + n + 8, b.Length);
        Assert.Equal(new byte[] { 1, 0, 0, 0, 0, 1, 0, 0 }, b[(int)(8 + n)..]);
        Assert.StartsWith("{\"x\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", Encoding.UTF8.GetString(b, 8, (int)n));
    }

    [Fact]
    public void LoadConvertsDTypeOnTheWay()
    {
        string path = Temp("conv.safetensors");
        var bf = torch.tensor(new float[] { 1.5f, -2.25f, 1024f }).to(ScalarType.BFloat16);
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor> { ["w"] = bf });
        using var f = SafetensorsFile.Open(path);
        using var w = f.Load("w", ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, w.dtype);
        Assert.Equal(new float[] { 1.5f, -2.25f, 1024f }, w.data<float>().ToArray());
    }

    [Fact]
    public void ReadsTheFixtureWrittenByPythonSafetensors()
    {
        using var f = SafetensorsFile.Open(TestPaths.Fixture("qwen2vl-tiny", "reference.safetensors"));
        var ids = f.Entry("input_ids");
        Assert.Equal(SafetensorsDType.I64, ids.DType);
        Assert.Equal(2, ids.Shape.Length);
        using var logits = f.Load("logits");
        Assert.Equal(ScalarType.Float32, logits.dtype);
        Assert.Equal(new[] { ids.Shape[0], ids.Shape[1], 1024L }, logits.shape);
        Assert.True(torch.isfinite(logits).all().item<bool>());
    }

    [Fact]
    public void ShardedCheckpointRoundTripsThroughTheIndex()
    {
        string dir = TestPaths.NewTempDir("shards");
        var src = Enumerable.Range(0, 5).ToDictionary(i => $"layer.{i}.weight", i => torch.full(10, 10, i, ScalarType.Float32));
        SafetensorsWriter.WriteCheckpoint(dir, src, maxShardBytes: 900); // 400 bytes each → 2 per shard
        Assert.True(File.Exists(Path.Combine(dir, SafetensorsCheckpoint.IndexFileName)));
        Assert.Equal(3, Directory.GetFiles(dir, "model-*-of-00003.safetensors").Length);
        using var ck = SafetensorsCheckpoint.Open(dir);
        Assert.Equal(src.Keys.Order(), ck.Names.Order());
        foreach (var (n, t) in src) TensorAssert.Equal(t, ck.Load(n), n);
        // a later unsharded save replaces the shards instead of leaving them beside it
        SafetensorsWriter.WriteCheckpoint(dir, src);
        Assert.Equal(["model.safetensors"], Directory.GetFiles(dir, "model*").Select(Path.GetFileName));
    }

    // ---------- bad input: every error names the file and, where there is one, the tensor ----------

    static string Valid()
    {
        string path = Temp("ok.safetensors");
        SafetensorsWriter.Write(path, new Dictionary<string, Tensor>
        {
            ["a"] = torch.arange(6, dtype: ScalarType.Float32).reshape(2, 3),
            ["b"] = torch.arange(4, dtype: ScalarType.Int64),
        });
        return path;
    }

    static string WithHeader(string json, int dataBytes)
    {
        string path = Temp("bad.safetensors");
        byte[] h = Encoding.UTF8.GetBytes(json);
        using var fs = File.Create(path);
        fs.Write(BitConverter.GetBytes((ulong)h.Length));
        fs.Write(h);
        fs.Write(new byte[dataBytes]);
        return path;
    }

    static InputException Fails(string path) => Assert.Throws<InputException>(() => { using var _ = SafetensorsFile.Open(path); });

    [Fact]
    public void TruncatedDataIsReported()
    {
        string path = Valid();
        var b = File.ReadAllBytes(path);
        File.WriteAllBytes(path, b[..^5]);
        var e = Fails(path);
        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void FileShorterThanTheLengthFieldIsReported()
    {
        string path = Temp("tiny.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Contains("truncated", Fails(path).Message);
    }

    [Fact]
    public void HeaderLongerThanTheFileIsReported()
    {
        string path = Valid();
        var b = File.ReadAllBytes(path);
        File.WriteAllBytes(path, b[..40]);
        var e = Fails(path);
        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void CorruptHeaderJsonIsReported()
    {
        var e = Fails(WithHeader("{\"a\": {\"dtype\": \"F32\", \"sha", 0));
        Assert.Contains("not valid JSON", e.Message);
    }

    [Fact]
    public void AbsurdHeaderLengthIsReported()
    {
        string path = Temp("huge.safetensors");
        File.WriteAllBytes(path, [.. BitConverter.GetBytes(ulong.MaxValue / 2), .. new byte[16]]);
        Assert.Contains("header length", Fails(path).Message);
    }

    [Fact]
    public void OffsetsThatDisagreeWithShapeNameTheTensor()
    {
        var e = Fails(WithHeader("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12));
        Assert.Contains("tensor 'w'", e.Message);
        Assert.Contains("header/offset mismatch", e.Message);
    }

    [Fact]
    public void OverlappingTensorsAreReported()
    {
        var e = Fails(WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12));
        Assert.Contains("tensor 'b'", e.Message);
        Assert.Contains("overlap", e.Message);
    }

    [Fact]
    public void DataBeyondTheFileIsReported()
    {
        var e = Fails(WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8));
        Assert.Contains("tensor 'a'", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void TrailingBytesAreReported()
    {
        var e = Fails(WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12));
        Assert.Contains("trailing", e.Message);
    }

    [Fact]
    public void UnsupportedDTypeIsReported()
    {
        var e = Fails(WithHeader("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1));
        Assert.Contains("tensor 'a'", e.Message);
        Assert.Contains("F8_E4M3", e.Message);
    }

    [Fact]
    public void ShapeMismatchOnLoadNamesTheTensor()
    {
        string path = Valid();
        using var f = SafetensorsFile.Open(path);
        using var dest = torch.empty(3, 2);
        var e = Assert.Throws<InputException>(() => f.CopyInto("a", dest));
        Assert.Contains(path, e.Message);
        Assert.Contains("'a'", e.Message);
        Assert.Contains("[2,3]", e.Message);
        Assert.Contains("[3,2]", e.Message);
    }

    [Fact]
    public void MissingTensorIsReported()
    {
        using var f = SafetensorsFile.Open(Valid());
        var e = Assert.Throws<InputException>(() => f.Load("nope"));
        Assert.Contains("'nope'", e.Message);
    }

    static string ShardedDir()
    {
        string dir = TestPaths.NewTempDir("idx");
        var src = Enumerable.Range(0, 4).ToDictionary(i => $"t{i}", i => torch.full(8, 8, i, ScalarType.Float32));
        SafetensorsWriter.WriteCheckpoint(dir, src, maxShardBytes: 600);
        return dir;
    }

    [Fact]
    public void MissingShardIsReported()
    {
        string dir = ShardedDir();
        string shard = Directory.GetFiles(dir, "model-00002-*")[0];
        File.Delete(shard);
        var e = Assert.Throws<InputException>(() => SafetensorsCheckpoint.Open(dir));
        Assert.Contains(Path.GetFileName(shard), e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void TensorListedInIndexButAbsentIsReported()
    {
        string dir = ShardedDir();
        string index = Path.Combine(dir, SafetensorsCheckpoint.IndexFileName);
        var doc = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(index))!;
        doc["weight_map"]!["ghost"] = doc["weight_map"]!["t0"]!.GetValue<string>();
        File.WriteAllText(index, doc.ToJsonString());
        var e = Assert.Throws<InputException>(() => SafetensorsCheckpoint.Open(dir));
        Assert.Contains("'ghost'", e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void TensorMissingFromIndexIsReported()
    {
        string dir = ShardedDir();
        string index = Path.Combine(dir, SafetensorsCheckpoint.IndexFileName);
        var doc = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(index))!;
        doc["weight_map"]!.AsObject().Remove("t3");
        File.WriteAllText(index, doc.ToJsonString());
        var e = Assert.Throws<InputException>(() => SafetensorsCheckpoint.Open(dir));
        Assert.Contains("'t3'", e.Message);
        Assert.Contains("not listed", e.Message);
    }

    sealed class TwoLinear : nn.Module<Tensor, Tensor>
    {
        readonly nn.Module<Tensor, Tensor> fc1, fc2;
        public TwoLinear(int hidden) : base("m")
        {
            fc1 = nn.Linear(4, hidden); fc2 = nn.Linear(hidden, 2, hasBias: false);
            RegisterComponents();
        }
        public override Tensor forward(Tensor x) => fc2.call(fc1.call(x));
    }

    [Fact]
    public void StateDictLoaderFillsParametersAndChecksNames()
    {
        var a = new TwoLinear(3);
        string dir = TestPaths.NewTempDir("sd");
        SafetensorsWriter.WriteCheckpoint(dir, a.state_dict());
        var b = new TwoLinear(3);
        using (var ck = SafetensorsCheckpoint.Open(dir)) StateDictLoader.Load(b, ck);
        foreach (var (n, t) in a.state_dict()) TensorAssert.Equal(t, b.state_dict()[n], n);

        var wrongShape = new TwoLinear(5);
        using (var ck = SafetensorsCheckpoint.Open(dir))
        {
            var e = Assert.Throws<InputException>(() => StateDictLoader.Load(wrongShape, ck));
            Assert.Contains("fc1.weight", e.Message);
            Assert.Contains("shape mismatch", e.Message);
        }
        using (var ck = SafetensorsCheckpoint.Open(dir))
        {
            var e = Assert.Throws<InputException>(() => StateDictLoader.Load(b, ck, n => n == "fc2.weight" ? "fc2.renamed" : n));
            Assert.Contains("fc2.renamed", e.Message);
            Assert.Contains("missing", e.Message);
        }
        using (var ck = SafetensorsCheckpoint.Open(dir))
        {
            var e = Assert.Throws<InputException>(() => StateDictLoader.Load(b, ck, n => n == "fc2.weight" ? null : n));
            Assert.Contains("unexpected", e.Message);
            Assert.Contains("fc2.weight", e.Message);
        }
    }
}
