// Replays the cases of UpstreamGoldens (LMM-R1's own Python functions on fixed inputs, gen_openrlhf_goldens.py)
// through our algorithms on a given device and reports the largest difference per output. No xunit here, so the
// same code also runs as a CUDA check outside the test project.
using System.Text.Json;
using LmmR1.Algorithms;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

internal static class UpstreamParity
{
    /// <summary>One compared output: its case, name, max |ours − upstream| and the tolerance it must meet.</summary>
    public sealed record Result(string Case, string Output, double MaxAbsDiff, double Tolerance)
    {
        public bool Ok => MaxAbsDiff <= Tolerance;
        public override string ToString() => $"{Case}/{Output}: {MaxAbsDiff:G3} (tol {Tolerance:G3}){(Ok ? "" : "  FAIL")}";
    }

    // Tolerances (absolute, fp32; the largest value of any output is ~20, where 1 ulp ≈ 1.9e-6): 2e-6 for elementwise
    // math, 4e-6 for KL (exp of log-ratios up to ~2.5, CUDA's exp may differ by an ulp or two), 5e-6 where sums are
    // reordered (scan vs upstream's loop, whitening statistics) or computed by softmax/logsumexp.
    const double Elementwise = 2e-6, KlTol = 4e-6, Reordered = 5e-6, Softmax = 5e-6;

    public static List<Result> Run(string json, Device device)
    {
        using var doc = JsonDocument.Parse(json);
        var results = new List<Result>();
        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            using var scope = NewDisposeScope();
            string name = c.GetProperty("name").GetString()!;
            var a = c.GetProperty("args");
            var inp = c.GetProperty("in");
            var exp = c.GetProperty("out");
            Tensor In(string key) => ReadTensor(inp.GetProperty(key), key).to(device);
            Tensor Out(string key) => ReadTensor(exp.GetProperty(key), key);
            void Cmp(string output, Tensor ours, double tol)
            {
                using var expected = Out(output);
                results.Add(new Result(name, output, Diff(expected, ours), tol));
            }

            switch (c.GetProperty("op").GetString())
            {
                case "kl":
                {
                    var est = Kl.ParseEstimator(a.GetProperty("estimator").GetString()!);
                    // Upstream's inputs are pre-masked: with or without our mask the result must match.
                    Cmp("kl", Kl.Approx(In("logp"), In("ref"), est), KlTol);
                    Cmp("kl", Kl.Approx(In("logp"), In("ref"), est, In("mask")), KlTol);
                    Cmp("kl_loss", Kl.Loss(In("logp"), In("ref"), In("mask"), est), KlTol);
                    break;
                }
                case "masked_mean":
                    Cmp("all", Masked.Mean(In("x"), In("mask")), Elementwise);
                    Cmp("rows", Masked.Mean(In("x"), In("mask"), -1), Elementwise);
                    break;
                case "compute_reward":
                {
                    var clip = a.GetProperty("clip");
                    (double, double)? range = clip.ValueKind == JsonValueKind.Null
                        ? null : (clip[0].GetDouble(), clip[1].GetDouble());
                    Cmp("reward", TokenRewards.Compute(In("r"), a.GetProperty("kl_coef").GetDouble(), In("kl"), In("mask"), range),
                        Elementwise);
                    break;
                }
                case "gae":
                {
                    var (adv, ret) = Returns.Gae(In("values"), In("rewards"), In("mask"),
                        a.GetProperty("gamma").GetDouble(), a.GetProperty("lambd").GetDouble());
                    Cmp("advantages", adv, Reordered);
                    Cmp("returns", ret, Reordered);
                    break;
                }
                case "rtg":
                    Cmp("returns", Returns.ReturnToGo(In("rewards"), In("mask"), a.GetProperty("gamma").GetDouble()), Reordered);
                    break;
                case "pipeline":
                {
                    var clip = a.GetProperty("clip");
                    var settings = new AdvantageSettings
                    {
                        Estimator = AdvantageEstimators.Parse(a.GetProperty("estimator").GetString()!),
                        SamplesPerPrompt = a.GetProperty("n").GetInt32(),
                        Gamma = a.GetProperty("gamma").GetDouble(),
                        Lambda = a.GetProperty("lambd").GetDouble(),
                        RewardClipRange = (clip[0].GetDouble(), clip[1].GetDouble()),
                        AdvantageStdNorm = !a.GetProperty("no_std").GetBoolean(),
                    };
                    int micro = inp.EnumerateObject().Count(p => p.Name.StartsWith("mask", StringComparison.Ordinal));
                    var batches = Enumerable.Range(0, micro)
                        .Select(i => new RolloutRewards(In($"rewards{i}"), In($"kl{i}"), In($"mask{i}"), In($"values{i}")))
                        .ToArray();
                    var outs = AdvantagePipeline.Compute(batches, settings, a.GetProperty("kl_coef").GetDouble());
                    for (int i = 0; i < micro; i++)
                    {
                        Cmp($"advantages{i}", outs[i].Advantages, Reordered);
                        Cmp($"returns{i}", outs[i].Returns, Reordered);
                        Cmp($"return{i}", outs[i].ReturnSum, Reordered);
                    }
                    break;
                }
                case "policy_loss":
                {
                    var lp = In("logp").requires_grad_(true);
                    var agg = a.GetProperty("token_level").GetBoolean() ? LossAggregation.TokenMean : LossAggregation.SequenceMean;
                    using var r = PolicyLoss.Compute(lp, In("old"), In("adv"), In("mask"), a.GetProperty("eps").GetDouble(), agg);
                    r.Loss.backward();
                    Cmp("loss", r.Loss, Elementwise);
                    Cmp("grad", lp.grad!, Elementwise);
                    break;
                }
                case "value_loss":
                {
                    var v = In("values").requires_grad_(true);
                    var clip = a.GetProperty("clip");
                    double? eps = clip.ValueKind == JsonValueKind.Null ? null : clip.GetDouble();
                    var agg = a.GetProperty("token_level").GetBoolean() ? LossAggregation.TokenMean : LossAggregation.SequenceMean;
                    using var r = ValueLoss.Compute(v, In("old"), In("returns"), In("mask"), eps, agg);
                    r.Loss.backward();
                    Cmp("loss", r.Loss, Elementwise);
                    Cmp("grad", v.grad!, Elementwise);
                    break;
                }
                case "actor":
                {
                    var logits = In("logits");
                    var mask = In("mask");
                    double temp = a.GetProperty("temperature").GetDouble();
                    Cmp("entropy", Entropy.FromLogits(logits, chunkRows: 3), Softmax);
                    // The actor's own path: the action slots (ActionSlots), then log-probs / entropy on those logits only.
                    long numActions = mask.shape[1];
                    var actionLogits = ActionSlots.Predicting(logits, numActions);
                    Cmp("action_log_probs", LogProbs.ForActions(actionLogits, ActionSlots.Actions(In("sequences"), numActions), mask, temp, chunkRows: 2), Softmax);
                    Cmp("action_entropy", Entropy.FromLogits(actionLogits), Softmax);
                    break;
                }
                case "kl_controller":
                {
                    var ctl = new AdaptiveKlController(a.GetProperty("init").GetDouble(), a.GetProperty("target").GetDouble(),
                        a.GetProperty("horizon").GetInt64());
                    var expected = exp.GetProperty("values").EnumerateArray().Select(e => e.GetDouble()).ToArray();
                    var steps = a.GetProperty("steps").EnumerateArray().ToArray();
                    double worst = 0;
                    for (int i = 0; i < steps.Length; i++)
                    {
                        ctl.Update(steps[i][0].GetDouble(), steps[i][1].GetInt64());
                        worst = Math.Max(worst, Math.Abs(ctl.Value - expected[i]));
                    }
                    results.Add(new Result(name, "values", worst, 1e-16));
                    break;
                }
                default:
                    throw new InvalidOperationException($"unknown golden op in case {name}");
            }
        }
        return results;
    }

    internal static Tensor ReadTensor(JsonElement e, string key)
    {
        long[] shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray();
        var data = e.GetProperty("data");
        if (key.StartsWith("mask", StringComparison.Ordinal))
            return tensor(data.EnumerateArray().Select(x => x.GetInt32() != 0).ToArray()).reshape(shape);
        if (key == "sequences")
            return tensor(data.EnumerateArray().Select(x => x.GetInt64()).ToArray()).reshape(shape);
        return tensor(data.EnumerateArray().Select(x => (float)x.GetDouble()).ToArray()).reshape(shape);
    }

    internal static double Diff(Tensor expected, Tensor ours)
    {
        using var o = ours.detach().cpu().to_type(ScalarType.Float64);
        using var e = expected.to_type(ScalarType.Float64);
        if (!o.shape.SequenceEqual(e.shape)) return double.PositiveInfinity;
        if (e.numel() == 0) return 0;
        using var d = (o - e).abs().max();
        return d.item<double>();
    }
}
