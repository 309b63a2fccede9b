// Value-head init: σ = 1/(H + 1) exactly, and the drawn weights' sample mean/std within 5 standard errors
// (a statistical bound, not a float tolerance: N = 200 000 draws → SE(std)/σ ≈ 1/√(2N) = 0.16%).
using LmmR1.Algorithms;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class CriticHeadTests
{
    [Fact]
    public void InitStdIsOneOverHiddenPlusOne()
    {
        Assert.Equal(0.25, CriticHead.InitStd(3));
        Assert.Equal(1.0 / 2049, CriticHead.InitStd(2048));
    }

    [Fact]
    public void InitializeDrawsNormalWeightsWithThatStd()
    {
        const int h = 200_000;
        using var score = nn.Linear(h, 1, hasBias: false);
        using var gen = new Generator(1234);
        CriticHead.Initialize(score, gen);
        double sigma = 1.0 / (h + 1);
        var w = score.weight!.detach().to_type(ScalarType.Float64);
        Assert.Equal(0.0, w.mean().item<double>(), 5 * sigma / Math.Sqrt(h));
        Assert.Equal(sigma, w.std().item<double>(), 5 * sigma / Math.Sqrt(2.0 * h));
    }

    [Fact]
    public void BiasIsZeroedAndWrongShapesRejected()
    {
        using var withBias = nn.Linear(8, 1, hasBias: true);
        CriticHead.Initialize(withBias);
        Assert.Equal(0f, withBias.bias!.abs().sum().item<float>());
        using var wide = nn.Linear(8, 2);
        Assert.Throws<ArgumentException>(() => CriticHead.Initialize(wide));
    }
}
