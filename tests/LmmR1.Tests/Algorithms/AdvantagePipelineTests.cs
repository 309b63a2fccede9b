// compute_advantages_and_returns end to end on hand-computed rollouts: group shaping across micro-batches,
// token rewards, forced γ = 1, whitening or not per estimator. Tolerance 1e-6 absolute (values ≤ 1.5).
using LmmR1.Algorithms;
using LmmR1.Infrastructure;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class AdvantagePipelineTests
{
    const double Tol = 1e-6;

    [Fact]
    public void ReinforceBaselineRollout()
    {
        // 2 prompts × n = 2, one prompt per micro-batch; β = 0.1; --gamma 0.5 is overridden to 1 for this estimator
        var batches = new[]
        {
            new RolloutRewards(F([1f, 0f], 2), F([0.2f, 0.4f, 0f, 0f, 0f, 0f], 2, 3), M([1, 1, 0, 1, 1, 1], 2, 3), null),
            new RolloutRewards(F([0.5f, 1.5f], 2), null, M([1, 0, 0, 1, 1, 0], 2, 3), null),
        };
        var settings = new AdvantageSettings
        {
            Estimator = AdvantageEstimator.ReinforceBaseline, SamplesPerPrompt = 2, Gamma = 0.5,
        };
        var result = AdvantagePipeline.Compute(batches, settings, klCoef: 0.1);

        // shaped: prompt 0 mean 0.5 → [0.5, −0.5]; prompt 1 mean 1 → [−0.5, 0.5]
        // token rewards: b0r0 [−0.02, 0.5 − 0.04, 0] = [−0.02, 0.46, 0]; b0r1 [0, 0, −0.5]; b1r0 [−0.5, 0, 0]; b1r1 [0, 0.5, 0]
        // return-to-go (γ = 1): b0r0 [0.44, 0.46, 0]; b0r1 [−0.5, −0.5, −0.5]; b1r0 [−0.5, 0, 0]; b1r1 [0.5, 0.5, 0]
        TensorAssert.Close(F([0.44f, 0.46f, 0f, -0.5f, -0.5f, -0.5f], 2, 3), result[0].Returns, Tol);
        TensorAssert.Close(F([-0.5f, 0f, 0f, 0.5f, 0.5f, 0f], 2, 3), result[1].Returns, Tol);
        TensorAssert.Close(F([0.44f, -0.5f], 2), result[0].ReturnSum, Tol);
        TensorAssert.Close(F([-0.5f, 0.5f], 2), result[1].ReturnSum, Tol);

        // whitening over the 8 valid tokens 0.44, 0.46, −0.5 ×3, −0.5, 0.5 ×2: μ = −0.1/8 = −0.0125,
        // biased σ² = (0.4525² + 0.4725² + 4·0.4875² + 2·0.5125²)/8 = 1.90395/8
        double mu = -0.0125, rstd = 1 / Math.Sqrt(1.90395 / 8);
        float W(double a) => (float)((a - mu) * rstd);
        TensorAssert.Close(F([W(0.44), W(0.46), W(0), W(-0.5), W(-0.5), W(-0.5)], 2, 3), result[0].Advantages, Tol);
        TensorAssert.Close(F([W(-0.5), W(0), W(0), W(0.5), W(0.5), W(0)], 2, 3), result[1].Advantages, Tol);
    }

    [Fact]
    public void GaeRolloutIsWhitened()
    {
        // row 0: V = [0.5, 0.5], r = 1, mask [1, 1]: token rewards [0, 1]; δ = [0 + 0.5 − 0.5, 1 − 0.5] = [0, 0.5];
        //        A = [0.5, 0.5] (γ = λ = 1); R = A + V = [1, 1]
        // row 1: V = [0, 9 (masked)], r = 0, mask [1, 0]: A = [0, 0], R = [0, 0]
        // valid A: 0.5, 0.5, 0 → μ = 1/3, σ² = (1/36 + 1/36 + 4/36)/3 = 1/18 → (A − μ)·√18: √2/2, √2/2, −√2, and
        // the masked position (0 − 1/3)·√18 = −√2
        var batch = new RolloutRewards(F([1f, 0f], 2), null, M([1, 1, 1, 0], 2, 2), F([0.5f, 0.5f, 0f, 9f], 2, 2));
        var result = AdvantagePipeline.Compute([batch], new AdvantageSettings { Estimator = AdvantageEstimator.Gae }, 0.0);
        float h = (float)(Math.Sqrt(2) / 2), s2 = (float)Math.Sqrt(2);
        TensorAssert.Close(F([h, h, -s2, -s2], 2, 2), result[0].Advantages, Tol);
        TensorAssert.Close(F([1f, 1f, 0f, 0f], 2, 2), result[0].Returns, Tol);

        var meanOnly = AdvantagePipeline.Compute([batch],
            new AdvantageSettings { Estimator = AdvantageEstimator.Gae, AdvantageStdNorm = false }, 0.0);
        TensorAssert.Close(F([1f / 6, 1f / 6, -1f / 3, -1f / 3], 2, 2), meanOnly[0].Advantages, Tol);
    }

    [Fact]
    public void GroupNormIsNotWhitened()
    {
        // group [1, 0]: mean 0.5, unbiased std √0.5 → ±√0.5 = ±0.70710678; RTG with γ = 1 spreads the scalar over every
        // position up to the last action token; no whitening afterwards (the valid mean is not 0).
        var batch = new RolloutRewards(F([1f, 0f], 2), null, M([1, 1, 1, 0], 2, 2), null);
        var result = AdvantagePipeline.Compute([batch],
            new AdvantageSettings { Estimator = AdvantageEstimator.GroupNorm, SamplesPerPrompt = 2 }, 0.0);
        float z = (float)Math.Sqrt(0.5);
        TensorAssert.Close(F([z, z, -z, 0f], 2, 2), result[0].Advantages, Tol);
    }

    [Fact]
    public void GroupsMayStraddleUnequalMicroBatches()
    {
        // sizes 3 and 1, n = 2: groups (1, 0) and (0.5, 1.5) → dr_grpo shaping [0.5, −0.5, −0.5, 0.5], no whitening
        var batches = new[]
        {
            new RolloutRewards(F([1f, 0f, 0.5f], 3), null, M([1, 1, 1], 3, 1), null),
            new RolloutRewards(F([1.5f], 1), null, M([1], 1, 1), null),
        };
        var result = AdvantagePipeline.Compute(batches,
            new AdvantageSettings { Estimator = AdvantageEstimator.DrGrpo, SamplesPerPrompt = 2 }, 0.0);
        TensorAssert.Close(F([0.5f, -0.5f, -0.5f], 3, 1), result[0].Advantages, Tol);
        TensorAssert.Close(F([0.5f], 1, 1), result[1].Advantages, Tol);
    }

    [Fact]
    public void PlainReinforceKeepsItsGamma()
    {
        // reinforce, γ = 0.5, r = 2 at the last of 3 tokens → RTG [0.5, 1, 2]; one row → whitening over 3 tokens:
        // μ = 3.5/3, σ² = ((0.5 − μ)² + (1 − μ)² + (2 − μ)²)/3
        var batch = new RolloutRewards(F([2f], 1), null, M([1, 1, 1], 1, 3), null);
        var result = AdvantagePipeline.Compute([batch],
            new AdvantageSettings { Estimator = AdvantageEstimator.Reinforce, Gamma = 0.5 }, 0.0);
        TensorAssert.Close(F([0.5f, 1f, 2f], 1, 3), result[0].Returns, Tol);
        double mu = 3.5 / 3, var = (Math.Pow(0.5 - mu, 2) + Math.Pow(1 - mu, 2) + Math.Pow(2 - mu, 2)) / 3;
        var expected = new[] { 0.5, 1, 2 }.Select(a => (float)((a - mu) / Math.Sqrt(var))).ToArray();
        TensorAssert.Close(F(expected, 1, 3), result[0].Advantages, Tol);
    }

    [Fact]
    public void SettingsAreValidated()
    {
        var batch = new RolloutRewards(F([1f], 1), null, M([1], 1, 1), null);
        Assert.Throws<InputException>(() => new AdvantageSettings { Estimator = AdvantageEstimator.Rloo, SamplesPerPrompt = 1 }.Validate());
        Assert.Throws<InputException>(() => new AdvantageSettings { Lambda = 1.5 }.Validate());
        Assert.Throws<ArgumentException>(() => AdvantagePipeline.Compute([batch], new AdvantageSettings(), 0.0));  // gae without values
    }
}
