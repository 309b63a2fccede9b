// q_proj, k_proj and v_proj are views of one fused [q; k; v] weight and bias (QwenAttention), so that generation on
// CUDA runs one GEMM for the three while the parameters keep Hugging Face's names and checkpoint layout. On the CPU
// fixtures: loading fills the fused tensors row for row from the three checkpoint tensors, an in-place change of a
// parameter (what an optimizer step or a LoRA merge does) is seen in the fused tensor and the other way round, the
// one GEMM over the fused weight gives q, k and v as the three projections do (to rounding: other GEMM shapes), and
// an attached adapter takes the fused path away. gate_proj and up_proj likewise share one [gate; up] weight (QwenMlp).
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public class FusedProjectionTests
{
    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void TheThreeProjectionsAreViewsOfTheFusedWeightFromLoadThroughInPlaceUpdates(string fixture)
    {
        using var scope = torch.NewDisposeScope();
        using var model = QwenVLModel.Load(TestPaths.Fixture(fixture), ScalarType.Float32, torch.CPU);
        var t = model.Config.Text;
        long qd = (long)t.NumHeads * t.HeadDim, kd = (long)t.NumKvHeads * t.HeadDim;
        var ps = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var ckpt = LmmR1.Models.Safetensors.SafetensorsCheckpoint.Open(TestPaths.Fixture(fixture));
        for (int layer = 0; layer < t.NumLayers; layer++)
        {
            var (w, b) = model.SelfAttention(layer).FusedQkv()!.Value;
            string p = $"model.layers.{layer}.self_attn.";
            // The fused rows hold exactly the three parameters, which hold exactly the checkpoint's tensors.
            TensorAssert.Equal(ps[p + "q_proj.weight"], w.narrow(0, 0, qd), "q rows");
            TensorAssert.Equal(ps[p + "k_proj.weight"], w.narrow(0, qd, kd), "k rows");
            TensorAssert.Equal(ps[p + "v_proj.weight"], w.narrow(0, qd + kd, kd), "v rows");
            TensorAssert.Equal(ps[p + "v_proj.bias"], b.narrow(0, qd + kd, kd), "v bias rows");
            TensorAssert.Equal(ckpt.Load(p + "k_proj.weight", ScalarType.Float32), w.narrow(0, qd, kd), "k rows = checkpoint");
        }
        var attn = model.SelfAttention(0);
        var (fw, fb) = attn.FusedQkv()!.Value;
        using (torch.no_grad())
        {
            ps["model.layers.0.self_attn.k_proj.weight"].AddS_(1.0);                                    // an optimizer step
            Assert.Equal(ps["model.layers.0.self_attn.k_proj.weight"][0, 0].item<float>(), fw[qd, 0].item<float>());
            fb.narrow(0, 0, qd).FillAllS_(0.25);                                                         // and the other way
            Assert.Equal(0.25f, ps["model.layers.0.self_attn.q_proj.bias"][3].item<float>());
        }
        // One GEMM over the fused weight = the three projections (to rounding).
        var x = torch.randn([2, 3, t.HiddenSize], generator: new torch.Generator(5));
        var qkv = Dense.Linear(x, fw, fb);
        var q = nn.functional.linear(x, ps["model.layers.0.self_attn.q_proj.weight"], ps["model.layers.0.self_attn.q_proj.bias"]);
        var v = nn.functional.linear(x, ps["model.layers.0.self_attn.v_proj.weight"], ps["model.layers.0.self_attn.v_proj.bias"]);
        TensorAssert.Close(q, qkv.narrow(-1, 0, qd), 1e-5, "q");
        TensorAssert.Close(v, qkv.narrow(-1, qd + kd, kd), 1e-5, "v");
    }

    [Theory]
    [InlineData("qwen2vl-tiny")]
    [InlineData("qwen25vl-tiny")]
    public void GateAndUpAreViewsOfTheFusedWeightFromLoadThroughInPlaceUpdates(string fixture)
    {
        using var scope = torch.NewDisposeScope();
        using var model = QwenVLModel.Load(TestPaths.Fixture(fixture), ScalarType.Float32, torch.CPU);
        var t = model.Config.Text;
        long inter = t.IntermediateSize;
        var ps = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var ckpt = LmmR1.Models.Safetensors.SafetensorsCheckpoint.Open(TestPaths.Fixture(fixture));
        for (int layer = 0; layer < t.NumLayers; layer++)
        {
            var w = model.Mlp(layer).FusedGateUp()!;
            string p = $"model.layers.{layer}.mlp.";
            Assert.Equal([2 * inter, t.HiddenSize], w.shape);
            TensorAssert.Equal(ps[p + "gate_proj.weight"], w.narrow(0, 0, inter), "gate rows");
            TensorAssert.Equal(ps[p + "up_proj.weight"], w.narrow(0, inter, inter), "up rows");
            TensorAssert.Equal(ckpt.Load(p + "up_proj.weight", ScalarType.Float32), w.narrow(0, inter, inter), "up rows = checkpoint");
        }
        Assert.DoesNotContain(model.named_buffers(), b => b.name.Contains("mlp"));                 // the fused tensor is no buffer
        var fw = model.Mlp(0).FusedGateUp()!;
        using (torch.no_grad())
        {
            ps["model.layers.0.mlp.up_proj.weight"].AddS_(1.0);                                         // an optimizer step
            Assert.Equal(ps["model.layers.0.mlp.up_proj.weight"][0, 0].item<float>(), fw[inter, 0].item<float>());
            fw.narrow(0, 0, inter).FillAllS_(0.25);                                                      // and the other way
            Assert.Equal(0.25f, ps["model.layers.0.mlp.gate_proj.weight"][3, 1].item<float>());
        }
        // One GEMM over the fused weight = the two projections (to rounding); on the CPU the MLP keeps two GEMMs.
        var x = torch.randn([2, 3, t.HiddenSize], generator: new torch.Generator(5));
        var gu = nn.functional.linear(x, fw);
        var up = nn.functional.linear(x, ps["model.layers.0.mlp.up_proj.weight"]);
        TensorAssert.Close(up, gu.narrow(-1, inter, inter), 1e-5, "up");
        using (torch.no_grad()) Assert.False(model.Mlp(0).Fuses(x, generating: true));
    }

    [Fact]
    public void AnAttachedAdapterTakesTheFusedPathAway()
    {
        using var model = QwenVLModel.Load(TestPaths.Fixture("qwen25vl-tiny"), ScalarType.Float32, torch.CPU);
        Assert.NotNull(model.SelfAttention(0).FusedQkv());
        Assert.NotNull(model.Mlp(0).FusedGateUp());
        model.AttachLora(["model.layers.0.self_attn.k_proj", "model.layers.0.mlp.up_proj"], rank: 2, alpha: 4, dropout: 0, seed: 1);
        Assert.Null(model.SelfAttention(0).FusedQkv());
        Assert.Null(model.Mlp(0).FusedGateUp());
        Assert.NotNull(model.Mlp(1).FusedGateUp());
    }
}
