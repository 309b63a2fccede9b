// Parity with the peers' own loss code (PeerGoldens, written by gen_peer_goldens.py from verl core_algos and
// OpenRLHF loss.py / length_penalty.py): PPO with clip-higher and dual clip, GSPO, CISPO (loss, gradient w.r.t. the
// log-probs, clip fraction, approx KL), verl's agg_loss modes over a two-micro-batch step, and the overlong penalty.
// Tolerance 4e-6 absolute (fp32; values ≤ ~3, where an ulp is 2.4e-7: exp of log-ratios and reordered sums differ
// by a few ulps; the same bound UpstreamParity uses for KL).
using System.Text.Json;
using LmmR1.Algorithms;
using static TorchSharp.torch;

namespace LmmR1.Tests.Algorithms;

public class PeerParityTests
{
    const double Tol = 4e-6;

    [Fact]
    public void EveryPeerGoldenMatches()
    {
        using var doc = JsonDocument.Parse(PeerGoldens.Json);
        var failures = new List<string>();
        int compared = 0;
        void Cmp(string name, string output, JsonElement expected, Tensor ours)
        {
            using var e = UpstreamParity.ReadTensor(expected, output);
            double d = UpstreamParity.Diff(e, ours);
            compared++;
            if (!(d <= Tol)) failures.Add($"{name}/{output}: {d:G3}");
        }

        foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
        {
            using var scope = NewDisposeScope();
            string name = c.GetProperty("name").GetString()!;
            var a = c.GetProperty("args");
            var inp = c.GetProperty("in");
            var outp = c.GetProperty("out");
            Tensor In(string key) => UpstreamParity.ReadTensor(inp.GetProperty(key), key);
            switch (c.GetProperty("op").GetString())
            {
                case "ppo" or "gspo" or "cispo":
                {
                    var type = c.GetProperty("op").GetString() switch
                    {
                        "ppo" => PolicyLossType.Ppo, "gspo" => PolicyLossType.Gspo, _ => PolicyLossType.Cispo,
                    };
                    double? dual = a.TryGetProperty("dual", out var dv) && dv.ValueKind == JsonValueKind.Number ? dv.GetDouble() : null;
                    var options = new PolicyLossOptions(type, a.GetProperty("low").GetDouble(), a.GetProperty("high").GetDouble(), dual,
                        LossAggregations.TryParse(a.GetProperty("agg").GetString()!)!.Value);
                    var lp = In("logp").requires_grad_(true);
                    using var r = PolicyLoss.Compute(lp, In("old"), In("adv"), In("mask"), options);
                    r.Loss.backward();
                    Cmp(name, "loss", outp.GetProperty("loss"), r.Loss);
                    Cmp(name, "grad", outp.GetProperty("grad"), lp.grad!);
                    Cmp(name, "clipfrac", outp.GetProperty("clipfrac"), r.ClipFraction);
                    Cmp(name, "ppo_kl", outp.GetProperty("ppo_kl"), r.ApproxKl);
                    if (outp.TryGetProperty("clipfrac_lower", out var lower)) Cmp(name, "clipfrac_lower", lower, r.ClipFractionLower);
                    break;
                }
                case "agg":
                {
                    // The golden is verl's value on the whole step; ours is the sum over its two micro-batches of
                    // Aggregate(micro, totals) ÷ divisor, which is what the trainer's gradient accumulation adds up.
                    var mode = LossAggregations.TryParse(a.GetProperty("mode").GetString()!)!.Value;
                    var loss = In("loss");
                    var mask = In("mask");
                    var micro = new[] { (loss[..4], mask[..4]), (loss[4..], mask[4..]) };
                    const double divisor = 2;
                    var totals = StepTotals.Of(micro.Select(m => m.Item2), divisor, a.GetProperty("norm_len").GetDouble());
                    var sum = micro.Select(m => Masked.Aggregate(m.Item1, m.Item2, mode, totals) / divisor).Aggregate((x, y) => x + y);
                    Cmp(name, "value", outp.GetProperty("value"), sum);
                    break;
                }
                case "overlong":
                {
                    var lengths = a.GetProperty("lengths").EnumerateArray().Select(l => l.GetInt32()).ToArray();
                    var ours = OverlongShaping.Penalties(lengths, a.GetProperty("max_new").GetInt32(), a.GetProperty("buffer").GetInt32(),
                        a.GetProperty("factor").GetDouble());
                    Cmp(name, "penalty", outp.GetProperty("penalty"), tensor(ours.Select(x => (float)x).ToArray()));
                    break;
                }
                default: throw new InvalidOperationException($"unknown golden op in {name}");
            }
        }
        // 4 verl ppo × 5 + 3 gspo × 4 + 3 cispo × 4 + 5 OpenRLHF × 4 + 4 agg + 2 overlong: a changed generator must
        // update this on purpose.
        Assert.Equal(4 * 5 + 3 * 4 + 3 * 4 + 5 * 4 + 4 + 2, compared);
        Assert.True(failures.Count == 0, "outside tolerance:\n" + string.Join("\n", failures));
    }
}
