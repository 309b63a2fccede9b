using LmmR1.Tests.Support;
using LmmR1.Training.Optimization;
using TorchSharp;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace LmmR1.Tests.Training;

public class OptimizationTests
{
    static (Parameter w, Tensor x, Tensor y) Problem(int seed)
    {
        var g = new Generator((ulong)seed);
        var w = new Parameter(randn(new long[] { 3, 4 }, generator: g));
        var x = randn(new long[] { 8, 4 }, generator: g);
        var y = randn(new long[] { 8, 3 }, generator: g);
        return (w, x, y);
    }

    static Tensor Loss(Tensor w, Tensor x, Tensor y) => (x.matmul(w.t()) - y).pow(2).mean();

    [Fact]
    public void MatchesTorchAdamWStepForStep()
    {
        // Independent truth: libtorch's own AdamW (through TorchSharp) on the same problem.
        var (w1, x, y) = Problem(7);
        var w2 = new Parameter(w1.detach().clone());
        var ours = new AdamW([("w", w1)], new AdamWOptions(1e-2, 0.9, 0.95, 1e-8, WeightDecay: 0.1));
        var theirs = optim.AdamW([w2], lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1);
        for (int i = 0; i < 5; i++)
        {
            ours.ZeroGrad(); theirs.zero_grad();
            Loss(w1, x, y).backward(); Loss(w2, x, y).backward();
            ours.StepUpdate(); theirs.step();
        }
        TensorAssert.Close(w2, w1, 1e-6, "weights after 5 steps");
    }

    [Fact]
    public void Bf16ParametersTrackAnFp32Master()
    {
        var (w, x, y) = Problem(3);
        var wb = new Parameter(w.detach().to(ScalarType.BFloat16));
        var w32 = new Parameter(wb.detach().to(ScalarType.Float32)); // same starting point
        var a = new AdamW([("w", wb)], new AdamWOptions(1e-3));
        var b = new AdamW([("w", w32)], new AdamWOptions(1e-3));
        for (int i = 0; i < 3; i++)
        {
            a.ZeroGrad(); b.ZeroGrad();
            // identical gradients for both (bf16-representable), so only the parameter storage differs
            var gw = (x.matmul(w32.detach().t()) - y).mul(2.0 / (8 * 3)).t().matmul(x);
            wb.grad = gw.to(ScalarType.BFloat16).detach(); w32.grad = gw.to(ScalarType.BFloat16).to(ScalarType.Float32).detach();
            a.StepUpdate(); b.StepUpdate();
        }
        // the master copy equals the fp32 run exactly; the bf16 parameter is its rounding
        TensorAssert.Equal(w32.detach(), a.StateTensors()["master.w"], "master");
        TensorAssert.Equal(w32.detach().to(ScalarType.BFloat16), wb.detach(), "bf16 param");
    }

    [Fact]
    public void StateRoundTripsAndContinuesIdentically()
    {
        var (w1, x, y) = Problem(11);
        var opt1 = new AdamW([("w", w1)], new AdamWOptions(5e-3));
        for (int i = 0; i < 2; i++) { opt1.ZeroGrad(); Loss(w1, x, y).backward(); opt1.StepUpdate(); }
        var saved = opt1.StateTensors().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var w2 = new Parameter(w1.detach().clone());
        var opt2 = new AdamW([("w", w2)], new AdamWOptions(5e-3));
        opt2.LoadState(opt1.Step, k => saved.GetValueOrDefault(k), "test");
        for (int i = 0; i < 2; i++)
        {
            opt1.ZeroGrad(); Loss(w1, x, y).backward(); opt1.StepUpdate();
            opt2.ZeroGrad(); Loss(w2, x, y).backward(); opt2.StepUpdate();
        }
        TensorAssert.Equal(w1.detach(), w2.detach(), "resumed weights");
        Assert.Throws<LmmR1.Infrastructure.InputException>(() => { opt2.LoadState(1, _ => null, "ckpt"); });
    }

    [Fact]
    public void GradNormAndClippingFollowTorch()
    {
        var p = new Parameter(zeros(2));
        var q = new Parameter(zeros(1));
        p.grad = tensor(new float[] { 3, 0 }); q.grad = tensor(new float[] { 4 });
        var opt = new AdamW([("p", p), ("q", q)], new AdamWOptions(1e-3));
        Assert.Equal(5.0, opt.GradNorm(), 6);                  // sqrt(9 + 16)
        opt.ClipGradients(5.0, maxNorm: 1.0);                    // coef = 1 / (5 + 1e-6)
        Assert.Equal(3 / (5 + 1e-6), p.grad!.data<float>()[0], 6);
        Assert.Equal(4 / (5 + 1e-6), q.grad!.data<float>()[0], 6);
        q.grad = tensor(new float[] { float.NaN });
        Assert.True(double.IsNaN(opt.GradNorm()));
    }

    [Fact]
    public void ScheduleWarmsUpLinearlyThenDecaysToTenPercent()
    {
        var s = LrSchedule.FromRatio(1e-6, totalSteps: 100, warmupRatio: 0.03); // ceil(3) warmup steps
        Assert.Equal(3, s.WarmupSteps);
        Assert.Equal(0.0, s.At(0));
        Assert.Equal(1e-6 / 3, s.At(1), 15);
        Assert.Equal(1e-6, s.At(3), 15);                                      // progress 0 → cos 1
        Assert.Equal(1e-6 * (0.5 * (1 + Math.Cos(Math.PI * 47 / 97.0)) * 0.9 + 0.1), s.At(50), 15); // progress (50-3)/97
        Assert.Equal(1e-7, s.At(100), 15);                                    // progress 1 → min lr
    }
}
