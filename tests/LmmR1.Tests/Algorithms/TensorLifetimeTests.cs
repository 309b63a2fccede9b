// The algorithms leave nothing alive but what they return: intermediates die in their own dispose scopes.
using LmmR1.Algorithms;
using TorchSharp;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class TensorLifetimeTests
{
    [Fact]
    public void OnlyReturnedTensorsSurvive()
    {
        using var scope = NewDisposeScope();
        var mask = M([1, 1, 0, 1, 1, 1], 2, 3);
        var values = F([0.5f, 0.2f, 0f, 0.1f, 0.3f, 0.4f], 2, 3).to_type(ScalarType.BFloat16);
        var kl = F([0.1f, 0.2f, 0f, 0f, 0.1f, 0.1f], 2, 3);
        var logits = F(Enumerable.Range(0, 2 * 4 * 5).Select(i => (float)Math.Sin(i)).ToArray(), 2, 4, 5);
        var seq = tensor(new long[] { 1, 2, 3, 4, 0, 1, 2, 3 }).reshape(2, 4);
        var rewards = F([1f, 0f], 2);
        using var head = nn.Linear(6, 1);
        var actionLogits = ActionSlots.Predicting(logits, 3);
        var actions = ActionSlots.Actions(seq, 3);
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;

        var batches = AdvantagePipeline.Compute([new RolloutRewards(rewards, kl, mask, values)],
            new AdvantageSettings { Estimator = AdvantageEstimator.Gae }, 0.05);
        var policy = PolicyLoss.Compute(LogProbs.ForActions(actionLogits, actions, mask), kl, batches[0].Advantages, mask, 0.2);
        var value = ValueLoss.Compute(values, values, batches[0].Returns, mask, 0.2);
        var entropy = Entropy.FromLogits(actionLogits);
        var klLoss = Kl.Loss(kl, zeros_like(kl), mask, KlEstimator.K3);
        CriticHead.Initialize(head);
        // survivors: 3 from the pipeline, 7 + the log-probs from the policy loss, 2 from the value loss, entropy,
        // the KL loss and the zeros_like made here
        long survivors = 3 + 8 + 2 + 1 + 1 + 1;
        Assert.Equal(before + survivors, DisposeScopeManager.Statistics.ThreadTotalLiveCount);

        foreach (var b in batches) b.Dispose();
        policy.Dispose();
        value.Dispose();
        entropy.Dispose();
        klLoss.Dispose();
    }
}
