// Dense.Linear, the projection every q/k/v/MLP layer runs: for inputs of more than two dimensions with a bias it is one
// addmm over the flattened rows (at::linear's and so transformers' rule), bit for bit what the same addmm gives on the
// 2-D view; without a bias, or for a non-contiguous input, TorchSharp's functional linear as before. Against x·Wᵀ + b
// in float64 the fp32 result agrees to rounding (1e-5 on O(1) values).
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public class DenseLinearTests
{
    [Fact]
    public void ThreeDimensionalInputsWithABiasRunAsOneAddmmOfTheFlattenedRows()
    {
        using var scope = torch.NewDisposeScope();
        var gen = new torch.Generator(21);
        var x = torch.randn([3, 5, 16], generator: gen);
        var w = torch.randn([24, 16], generator: gen);
        var b = torch.randn([24], generator: gen);
        var y = Dense.Linear(x, w, b);
        Assert.Equal(new long[] { 3, 5, 24 }, y.shape);
        var addmm = torch.addmm(b, x.view(15, 16), w.t(), 1, 1).view(3, 5, 24);
        TensorAssert.Equal(addmm, y, "the 3-D path is the 2-D addmm");
        var exact = (x.to(ScalarType.Float64).matmul(w.to(ScalarType.Float64).t()) + b.to(ScalarType.Float64)).to(ScalarType.Float32);
        TensorAssert.Close(exact, y, 1e-5, "x·Wᵀ + b");
        // Without a bias and for a strided input: the functional linear, same values.
        TensorAssert.Equal(nn.functional.linear(x, w), Dense.Linear(x, w, null), "no bias");
        var strided = x.transpose(0, 1);
        Assert.False(strided.is_contiguous());
        TensorAssert.Equal(nn.functional.linear(strided, w, b), Dense.Linear(strided, w, b), "strided input");
        // Zero rows keep their shape.
        Assert.Equal(new long[] { 0, 5, 24 }, Dense.Linear(torch.zeros([0, 5, 16]), w, b).shape);
    }
}
