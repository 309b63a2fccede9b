// Parity with LMM-R1's own Python: every output of every golden case (KL, compute_reward, masked_mean, GAE,
// return-to-go, compute_advantages_and_returns for all six estimators with and without std norm, PolicyLoss and
// ValueLoss with gradients, actor log-probs/entropy, the adaptive KL controller) within the tolerances stated in
// UpstreamParity. The same replay passed on an H100 (CUDA) when the goldens were generated.
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class UpstreamParityTests
{
    [Fact]
    public void AllGoldenOutputsMatchOnCpu()
    {
        var results = UpstreamParity.Run(UpstreamGoldens.Json, CPU);
        Assert.Equal(138, results.Count);   // 27 cases; a changed generator must update this on purpose
        var failing = results.Where(r => !r.Ok).ToList();
        Assert.True(failing.Count == 0, "outside tolerance:\n" + string.Join("\n", failing));
    }
}
