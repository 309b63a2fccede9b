// The IL scan of TorchTemporariesTests (TemporaryScalarScan) over the training side of LmmR1.Core: the algorithms, the
// trainers (optimizer, losses' callers, experience maker, reward models), the demo and the infrastructure. A call there
// that hands TorchSharp a temporary Scalar (or a number-made Tensor) fails the test with its method and target.
namespace LmmR1.Tests.Diagnostics;

public class TrainingTemporariesTests
{
    static readonly string[] TrainingNamespaces = ["LmmR1.Algorithms", "LmmR1.Training", "LmmR1.Demo", "LmmR1.Infrastructure"];

    [Fact]
    public void AlgorithmsTrainingDemoAndInfrastructureMakeNoTemporaryScalars()
    {
        var sites = TemporaryScalarScan.Sites(typeof(LmmR1.Algorithms.PolicyLoss).Assembly.Location, TrainingNamespaces);
        Assert.True(sites.Count == 0, $"{sites.Count} call(s) make a temporary TorchSharp Scalar (use TorchScalars' helpers):\n" + string.Join('\n', sites));
    }
}
