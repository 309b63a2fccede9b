// Entropy and token log-probs from logits: hand-computed distributions, temperature, chunking, action alignment,
// masking, gradients and dtype handling. Tolerance 1e-6 absolute (values ≤ ~2; fp32 logsumexp error ~1e-7).
using LmmR1.Algorithms;
using LmmR1.Tests.Support;
using static LmmR1.Tests.Algorithms.AlgoTensors;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class EntropyAndLogProbsTests
{
    const double Tol = 1e-6;

    [Fact]
    public void EntropyOfHandComputedDistributions()
    {
        // uniform over 5 → ln 5; logits [0, ln 3, −1e9-ish] → p = [0.25, 0.75, 0] → −(0.25 ln 0.25 + 0.75 ln 0.75)
        // = 0.56233514; a near one-hot row → 0 without NaN
        var logits = F([0f, 0f, 0f, 0f, 0f,
                        0f, (float)Math.Log(3), -1000f, -1000f, -1000f,
                        50f, -1000f, -1000f, -1000f, -1000f], 3, 5);
        double h2 = -(0.25 * Math.Log(0.25) + 0.75 * Math.Log(0.75));
        TensorAssert.Close(F([(float)Math.Log(5), (float)h2, 0f], 3), Entropy.FromLogits(logits), Tol);
    }

    [Fact]
    public void EntropyChunkingAndStridesDoNotChangeTheResult()
    {
        var logits = D(Uniform(3 * 7 * 11, seed: 8, lo: -4, hi: 4), 3, 7, 11).to_type(ScalarType.Float32);
        var full = Entropy.FromLogits(logits, chunkRows: 1000);
        Assert.Equal(new long[] { 3, 7 }, full.shape);
        foreach (long c in new long[] { 1, 2, 3, 7 })
            TensorAssert.Close(full, Entropy.FromLogits(logits, c), Tol);
        // a strided view ([:, :-1]) and bf16 input are read as they are
        TensorAssert.Close(full.narrow(1, 0, 6), Entropy.FromLogits(logits.narrow(1, 0, 6), 4), Tol);
        Assert.Equal(ScalarType.Float32, Entropy.FromLogits(logits.to_type(ScalarType.BFloat16)).dtype);
    }

    [Fact]
    public void EntropyForActionsAlignsWithUpstreamSlicing()
    {
        // upstream: entropy[:, :-1][:, -A:] → positions S−1−A … S−2; S = 6, A = 3 → positions 2, 3, 4
        var logits = D(Uniform(2 * 6 * 5, seed: 9, lo: -3, hi: 3), 2, 6, 5).to_type(ScalarType.Float32);
        TensorAssert.Close(Entropy.FromLogits(logits).narrow(1, 2, 3), Entropy.FromLogits(ActionSlots.Predicting(logits, 3)), Tol);
        // the loss term: mean over valid action tokens
        var h = F([1f, 2f, 3f, 4f], 2, 2);
        Assert.Equal((1 + 2 + 4) / 3.0, Item(Entropy.MaskedMean(h, M([1, 1, 0, 1], 2, 2))), Tol);
    }

    [Fact]
    public void LogProbsOfHandComputedDistributions()
    {
        // row [1, 2, 3]: log p(2) = 3 − ln(e + e² + e³) = −0.40760596; log p(0) = 1 − ln(...) = −2.40760596
        // row [0, ln 3, 0]: log p(1) = ln(3/5)
        var logits = F([1f, 2f, 3f, 1f, 2f, 3f, 0f, (float)Math.Log(3), 0f], 1, 3, 3);
        var labels = tensor(new long[] { 2, 0, 1 }).reshape(1, 3);
        double lse = Math.Log(Math.E + Math.Exp(2) + Math.Exp(3));
        var expected = F([(float)(3 - lse), (float)(1 - lse), (float)Math.Log(0.6)], 1, 3);
        TensorAssert.Close(expected, LogProbs.FromLogits(logits, labels), Tol);
    }

    [Fact]
    public void TemperatureDividesTheLogitsWithoutTouchingThem()
    {
        // T = 2: [0, ln 3] → [0, ln 3 / 2] = [0, ln √3] → p(1) = √3/(1 + √3)
        var logits = F([0f, (float)Math.Log(3)], 1, 1, 2);
        var before = logits.clone();
        var lp = LogProbs.FromLogits(logits, tensor(new long[] { 1 }).reshape(1, 1), temperature: 2.0);
        Assert.Equal(Math.Log(Math.Sqrt(3) / (1 + Math.Sqrt(3))), Item(lp), Tol);
        TensorAssert.Equal(before, logits);   // upstream divides in place; we must not
    }

    [Fact]
    public void LogProbsChunkingAndDtype()
    {
        var logits = D(Uniform(2 * 9 * 13, seed: 10, lo: -5, hi: 5), 2, 9, 13).to_type(ScalarType.Float32);
        var labels = tensor(Enumerable.Range(0, 18).Select(i => (long)(i * 7 % 13)).ToArray()).reshape(2, 9);
        var reference = logits.log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1);   // [2, 9]
        foreach (long c in new long[] { 1, 4, 9, 100 })
            TensorAssert.Close(reference, LogProbs.FromLogits(logits, labels, 1.0, c), Tol);
        // bf16 logits: cast to fp32 before the softmax, so the result is log_softmax of the bf16-rounded logits
        var lb = logits.to_type(ScalarType.BFloat16);
        var refB = lb.to_type(ScalarType.Float32).log_softmax(-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1);
        var got = LogProbs.FromLogits(lb, labels);
        Assert.Equal(ScalarType.Float32, got.dtype);
        TensorAssert.Close(refB, got, Tol);
    }

    [Fact]
    public void ForActionsTakesTheLastAPredictionsAndMasks()
    {
        // S = 5, A = 3: logits at positions 1, 2, 3 predict tokens 2, 3, 4; mask [1, 1, 0] zeroes the last
        var logits = D(Uniform(1 * 5 * 6, seed: 14, lo: -2, hi: 2), 1, 5, 6).to_type(ScalarType.Float32);
        var seq = tensor(new long[] { 4, 1, 5, 0, 3 }).reshape(1, 5);
        var ls = logits.log_softmax(-1);
        var expected = F([ls[0, 1, 5].item<float>(), ls[0, 2, 0].item<float>(), 0f], 1, 3);
        TensorAssert.Close(expected, LogProbs.ForActions(ActionSlots.Predicting(logits, 3), ActionSlots.Actions(seq, 3), M([1, 1, 0], 1, 3)), Tol);
    }

    [Fact]
    public void LogProbGradientIsOneHotMinusSoftmax()
    {
        // logits [0, ln 3], label 1: ∂ log p(1)/∂x = e_1 − p = [−0.25, 0.25]
        var logits = F([0f, (float)Math.Log(3)], 1, 1, 2).requires_grad_(true);
        LogProbs.FromLogits(logits, tensor(new long[] { 1 }).reshape(1, 1)).sum().backward();
        TensorAssert.Close(F([-0.25f, 0.25f], 1, 1, 2), logits.grad!, Tol);
    }
}
