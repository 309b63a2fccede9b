// `lmmr1 bench kernel-check`: the native extension's lm_head, decode-attention and SwiGLU kernels (native/lmmr1_kernels.cu)
// against the TorchSharp ops they replace, on the GPU (CUDA only; the CPU never runs them). Random inputs of the 3B
// shape by default (vocabulary 151,936, hidden 2,048; 16 query heads over 2 kv heads of 128). One JSON line per check
// and PASS/FAIL:
//  head_logsoftmax  vs LogProbs.Rows + Entropy.FromLogits over random logits [rows, V] (T = 1 and 0.7): max |Δ| of the
//                   log-prob, the log-sum-exp and the entropy ≤ 1e-4. Both are fp32 sums of the same V terms in
//                   another order, whose error grows like √V·u (u = 2⁻²⁴): ~2e-5 at V = 151,936 for values of ~12.
//  head_dlogits     vs the chain of HeadLogProbFunction.backward: the same ops with the same roundings, so bit-equal.
//  head_autograd    HeadLogProbs through autograd (a random [V, H] head, a weighted sum of the log-probs as the loss)
//                   with the kernels vs without: log-probs within 1e-4, the gradients of the hidden states and of the
//                   weight within ‖Δ‖/‖g‖ ≤ 1e-3 (bf16: the only difference is the log-sum-exp's last bits, which move a
//                   bf16 rounding of the logits' gradient now and then) or 1e-5 (fp32).
//  decode_attention vs SDPA over the window under the additive mask, both against fp32 eager maths of the same inputs
//                   (left padding, invalid holes, keys beyond the position unwritten): PASS when the kernel's max
//                   error ≤ SDPA's + one bf16 half-ulp of the output's scale (bf16), or ≤ 1e-5 (fp32).
//  silu_mul         vs silu(g) · u, on contiguous gate/up tensors and on the row-strided views of one fused gate/up
//                   GEMM's output ([rows, 1, 2I] split in two, as the decode step has them): the same roundings, so
//                   bit-equal.
// Each line also gives one warm timing of both sides (mean of 20 runs, synchronised; not a benchmark).
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Cli.Commands;

public static class BenchKernelCheckCommand
{
    public static Command Create()
    {
        var dtype = ModelCommands.DTypeOption("bfloat16");
        var vocab = new Option<int>("--vocab") { Description = "Vocabulary of the head checks", DefaultValueFactory = _ => 151936 };
        var hidden = new Option<int>("--hidden") { Description = "Hidden size of the head_autograd check", DefaultValueFactory = _ => 2048 };
        var rows = new Option<int>("--rows") { Description = "Positions of the head checks", DefaultValueFactory = _ => 1024 };
        var attn = new Option<string>("--attention") { Description = "ROWSxCAPACITY:POSITION of the decode_attention check", DefaultValueFactory = _ => "512x640:500" };
        var output = new Option<string?>("--output") { Description = "Also append the JSON lines to this file" };
        var cmd = new Command("kernel-check", "Compare the native head, decode-attention and SwiGLU kernels with the ops they replace (CUDA; prints JSON, PASS/FAIL)")
        {
            dtype, vocab, hidden, rows, attn, output,
        };
        cmd.SetAction(pr => Run(pr.GetValue(dtype)!, pr.GetValue(vocab), pr.GetValue(hidden), pr.GetValue(rows), pr.GetValue(attn)!, pr.GetValue(output)));
        return cmd;
    }

    static int Run(string dtypeName, int vocab, int hidden, int rows, string attnSpec, string? output)
    {
        var dtype = ModelCommands.ParseDType(dtypeName);
        if (dtype is not (ScalarType.BFloat16 or ScalarType.Float32)) throw new InputException($"--dtype: the kernels take bfloat16 or float32, not {dtypeName}");
        if (vocab < 2 || hidden < 8 || rows < 1) throw new InputException("--vocab ≥ 2, --hidden ≥ 8 and --rows ≥ 1 are needed");
        var (aRows, aCap, aPos) = ParseAttention(attnSpec);
        if (!cuda.is_available()) throw new InputException("kernel-check needs a CUDA device (the kernels run only there)");
        var native = NativeExtension.TryGet();
        if (native is not { HasFusedKernels: true })
            throw new InputException($"kernel-check needs the native extension with its CUDA kernels: {NativeExtension.UnavailableReason ?? "built without nvcc"}");
        var dev = new Device(DeviceType.CUDA, 0);
        bool allPass = true;
        void Emit(Dictionary<string, object?> d)
        {
            d["dtype"] = dtypeName;
            bool pass = (bool)d["pass"]!;
            allPass &= pass;
            d["result"] = pass ? "PASS" : "FAIL";
            string line = JsonSerializer.Serialize(d);
            Console.WriteLine(line);
            if (output is not null) File.AppendAllText(output, line + "\n");
        }
        torch.manual_seed(1234);
        using var noGrad = torch.no_grad();
        foreach (double t in new[] { 1.0, 0.7 })
        {
            Emit(CheckLogSoftmax(native, dev, dtype, rows, vocab, t));
            Emit(CheckDLogits(native, dev, dtype, rows, Math.Min(vocab, 16384), t));
        }
        using (torch.enable_grad()) Emit(CheckAutograd(native, dev, dtype, rows, vocab, hidden, 0.7));
        Emit(CheckAttention(native, dev, dtype, aRows, aCap, aPos));
        foreach (bool strided in new[] { false, true }) Emit(CheckSiluMul(native, dev, dtype, aRows, 11008, strided));
        Console.Error.WriteLine(allPass ? "PASS: every kernel check" : "FAIL: see the JSON lines");
        return allPass ? 0 : 1;
    }

    static (int Rows, int Capacity, int Position) ParseAttention(string spec)
    {
        var parts = spec.Split(':');
        var rc = parts[0].Split('x');
        if (parts.Length != 2 || rc.Length != 2 || !int.TryParse(rc[0], out int r) || !int.TryParse(rc[1], out int c) || !int.TryParse(parts[1], out int p)
            || r < 1 || c < 2 || p < 1 || p >= c)
            throw new InputException($"--attention '{spec}': expected ROWSxCAPACITY:POSITION with 1 ≤ POSITION < CAPACITY, e.g. 512x640:500");
        return (r, c, p);
    }

    static double Timed(Action f)
    {
        f();
        cuda.synchronize();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < 20; i++)
        {
            using var scope = torch.NewDisposeScope();
            f();
        }
        cuda.synchronize();
        return Math.Round(sw.Elapsed.TotalMilliseconds / 20, 4);
    }

    static double MaxAbs(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        return a.to_type(ScalarType.Float64).sub(b.to_type(ScalarType.Float64)).abs().max().item<double>();
    }

    static double RelNorm(Tensor a, Tensor b)
    {
        using var scope = torch.NewDisposeScope();
        var a64 = a.to_type(ScalarType.Float64);
        return a64.sub(b.to_type(ScalarType.Float64)).norm().item<double>() / Math.Max(a64.norm().item<double>(), 1e-30);
    }

    static Dictionary<string, object?> CheckLogSoftmax(NativeExtension native, Device dev, ScalarType dtype, int rows, int vocab, double t)
    {
        using var scope = torch.NewDisposeScope();
        var logits = torch.randn([rows, vocab], ScalarType.Float32, dev).MulS_(3.0).to_type(dtype);
        var labels = torch.randint(0, vocab, [rows], ScalarType.Int64, dev);
        var (lp, lse, ent) = native.HeadLogSoftmax(logits, labels, t, entropy: true);
        var (lpRef, lseRef) = Algorithms.LogProbs.Rows(logits, labels, t);
        var entRef = Algorithms.Entropy.FromLogits(logits);
        double dLp = MaxAbs(lp, lpRef), dLse = MaxAbs(lse, lseRef), dEnt = MaxAbs(ent!, entRef);
        double msKernel = Timed(() => native.HeadLogSoftmax(logits, labels, t, entropy: false));
        double msOps = Timed(() => Algorithms.LogProbs.Rows(logits, labels, t));
        const double tol = 1e-4;
        return new()
        {
            ["what"] = "kernel_check", ["check"] = "head_logsoftmax", ["rows"] = rows, ["vocab"] = vocab, ["temperature"] = t,
            ["max_abs_diff_logprob"] = dLp, ["max_abs_diff_lse"] = dLse, ["max_abs_diff_entropy"] = dEnt, ["tolerance"] = tol,
            ["kernel_ms"] = msKernel, ["ops_ms"] = msOps, ["pass"] = dLp <= tol && dLse <= tol && dEnt <= tol,
        };
    }

    // The chain HeadLogProbFunction.backward runs without the kernels, on one chunk of columns [v0, v0 + c).
    static Tensor DLogitsOps(Tensor logits, Tensor lse, Tensor g, Tensor labels, long v0, double t)
    {
        var gc = g.unsqueeze(1);
        return HeadLogProbFunction.LogitGradient(logits, lse.neg().unsqueeze(1), gc, gc.neg(), labels, v0, t);
    }

    static Dictionary<string, object?> CheckDLogits(NativeExtension native, Device dev, ScalarType dtype, int rows, int cols, double t)
    {
        using var scope = torch.NewDisposeScope();
        long v0 = cols / 3;                                      // labels fall inside and outside the chunk
        var logits = torch.randn([rows, cols], ScalarType.Float32, dev).MulS_(3.0).to_type(dtype);
        var labels = torch.randint(0, 3L * cols, [rows], ScalarType.Int64, dev);
        var lse = torch.randn([rows], ScalarType.Float32, dev).AddS(8.0);
        var g = torch.randn([rows], ScalarType.Float32, dev);
        var mine = logits.clone();
        native.HeadDLogits(mine, lse, g, labels, v0, t);
        var reference = DLogitsOps(logits.clone(), lse, g, labels, v0, t);   // fp32: to_type is the same tensor, changed in place
        long unequal = mine.ne(reference).sum().item<long>();
        double msKernel = Timed(() => native.HeadDLogits(logits.clone(), lse, g, labels, v0, t));
        double msOps = Timed(() => DLogitsOps(logits.clone(), lse, g, labels, v0, t));
        return new()
        {
            ["what"] = "kernel_check", ["check"] = "head_dlogits", ["rows"] = rows, ["columns"] = cols, ["temperature"] = t,
            ["elements"] = (long)rows * cols, ["unequal_elements"] = unequal, ["max_abs_diff"] = MaxAbs(mine, reference),
            ["kernel_ms_with_clone"] = msKernel, ["ops_ms_with_clone"] = msOps, ["pass"] = unequal == 0,
        };
    }

    static Dictionary<string, object?> CheckAutograd(NativeExtension native, Device dev, ScalarType dtype, int rows, int vocab, int hidden, double t)
    {
        using var scope = torch.NewDisposeScope();
        var w = torch.randn([vocab, hidden], ScalarType.Float32, dev).MulS_(0.02).to_type(dtype).requires_grad_();
        var h0 = torch.randn([rows, hidden], ScalarType.Float32, dev).to_type(dtype);
        var labels = torch.randint(0, vocab, [rows], ScalarType.Int64, dev);
        var coef = torch.randn([rows], ScalarType.Float32, dev);
        (Tensor Lp, Tensor DH, Tensor DW, double Ms) Once(NativeExtension? kernels)
        {
            var h = h0.detach().requires_grad_();
            w.grad = null;
            var sw = Stopwatch.StartNew();
            var head = new HeadLogProbFunction.Head(w, t, 441, 0, false, kernels);
            var lp = HeadLogProbFunction.apply(h, labels, head);
            lp.mul(coef).sum().backward();
            cuda.synchronize();
            double ms = sw.Elapsed.TotalMilliseconds;
            QwenVLModel.ReleaseBackwardHandles();
            return (lp.detach(), h.grad!.detach().clone(), w.grad!.detach().clone(), ms);
        }
        Once(native); Once(null);                                // warm-up
        var k = Once(native);
        var o = Once(null);
        double dLp = MaxAbs(k.Lp, o.Lp), rH = RelNorm(o.DH, k.DH), rW = RelNorm(o.DW, k.DW);
        double gradTol = dtype == ScalarType.Float32 ? 1e-5 : 1e-3;
        return new()
        {
            ["what"] = "kernel_check", ["check"] = "head_autograd", ["rows"] = rows, ["vocab"] = vocab, ["hidden"] = hidden, ["temperature"] = t,
            ["max_abs_diff_logprob"] = dLp, ["rel_diff_grad_hidden"] = rH, ["rel_diff_grad_weight"] = rW, ["grad_tolerance"] = gradTol,
            ["kernels_fwd_bwd_ms"] = Math.Round(k.Ms, 3), ["ops_fwd_bwd_ms"] = Math.Round(o.Ms, 3),
            ["pass"] = dLp <= 1e-4 && rH <= gradTol && rW <= gradTol,
        };
    }

    static Dictionary<string, object?> CheckSiluMul(NativeExtension native, Device dev, ScalarType dtype, int rows, int width, bool strided)
    {
        using var scope = torch.NewDisposeScope();
        Tensor g, u;
        if (strided)
        {
            var y = torch.randn([rows, 1, 2L * width], ScalarType.Float32, dev).MulS_(3.0).to_type(dtype);
            g = y.narrow(-1, 0, width);
            u = y.narrow(-1, width, width);
        }
        else
        {
            g = torch.randn([rows, 1, width], ScalarType.Float32, dev).MulS_(3.0).to_type(dtype);
            u = torch.randn([rows, 1, width], ScalarType.Float32, dev).to_type(dtype);
        }
        var mine = native.SiluMul(g, u);
        var reference = nn.functional.silu(g).mul(u);
        long unequal = mine.ne(reference).sum().item<long>();
        return new()
        {
            ["what"] = "kernel_check", ["check"] = strided ? "silu_mul_row_strided" : "silu_mul", ["rows"] = rows, ["width"] = width,
            ["elements"] = mine.numel(), ["unequal_elements"] = unequal, ["max_abs_diff"] = MaxAbs(mine, reference),
            ["contiguous_output"] = mine.is_contiguous(),
            ["kernel_ms"] = Timed(() => native.SiluMul(g, u)), ["ops_ms"] = Timed(() => nn.functional.silu(g).mul(u)),
            ["pass"] = unequal == 0 && mine.is_contiguous(),
        };
    }

    static Dictionary<string, object?> CheckAttention(NativeExtension native, Device dev, ScalarType dtype, int rows, int cap, int pos)
    {
        using var scope = torch.NewDisposeScope();
        const int heads = 16, kvh = 2, dim = 128;
        var q = torch.randn([rows, heads, 1, dim], ScalarType.Float32, dev).to_type(dtype);
        var keys = torch.randn([rows, kvh, cap, dim], ScalarType.Float32, dev).to_type(dtype);
        var values = torch.randn([rows, kvh, cap, dim], ScalarType.Float32, dev).to_type(dtype);
        // Left padding of 0 … 63 positions per row, a few invalid holes, the position itself valid; beyond it unwritten
        // (garbage that must not be read: a large value makes any leak visible).
        var idx = TorchScalars.Arange(cap, ScalarType.Int64, dev).unsqueeze(0);
        var pad = torch.randint(0, 64, [rows, 1], ScalarType.Int64, dev);
        var holes = torch.rand([rows, cap], ScalarType.Float32, dev).LtS(0.05);
        var valid = idx.ge(pad).logical_and(holes.logical_not()).logical_and(idx.LeS((long)pos));
        valid.IndexFillS_(1, torch.tensor(new long[] { pos }, device: dev), true);
        using (torch.no_grad())
        {
            keys.narrow(2, pos + 1, cap - pos - 1).FillAllS_(30.0);
            values.narrow(2, pos + 1, cap - pos - 1).FillAllS_(30.0);
        }
        var position = torch.tensor(new long[] { pos }, device: dev);
        int window = pos + 1;
        var kw = keys.narrow(2, 0, window);
        var vw = values.narrow(2, 0, window);
        var vwin = valid.narrow(1, 0, window);
        var mask = torch.zeros([rows, 1, 1, window], dtype, dev).FillS(vwin.logical_not().view(rows, 1, 1, window), torch.finfo(dtype).min);
        var maskF = torch.zeros([rows, 1, 1, window], ScalarType.Float32, dev).FillS(vwin.logical_not().view(rows, 1, 1, window), torch.finfo(ScalarType.Float32).min);
        var truth = AttentionMath.TextAttention(q.to_type(ScalarType.Float32), kw.to_type(ScalarType.Float32), vw.to_type(ScalarType.Float32), maskF, AttentionImpl.Eager);
        var mine = native.DecodeAttention(q, keys, values, valid, position);
        var sdpa = AttentionMath.TextAttention(q, kw, vw, mask, AttentionImpl.Sdpa);
        double eKernel = MaxAbs(mine, truth), eSdpa = MaxAbs(sdpa, truth);
        double scale = truth.abs().max().to_type(ScalarType.Float64).item<double>();
        double tol = dtype == ScalarType.Float32 ? 1e-5 : eSdpa + scale * Math.Pow(2, -9);
        double msKernel = Timed(() => native.DecodeAttention(q, keys, values, valid, position));
        double msSdpa = Timed(() => AttentionMath.TextAttention(q, kw, vw, mask, AttentionImpl.Sdpa));
        return new()
        {
            ["what"] = "kernel_check", ["check"] = "decode_attention", ["rows"] = rows, ["capacity"] = cap, ["position"] = pos,
            ["heads"] = heads, ["kv_heads"] = kvh, ["head_dim"] = dim,
            ["max_abs_err_kernel"] = eKernel, ["max_abs_err_sdpa"] = eSdpa, ["output_scale"] = scale, ["tolerance"] = tol,
            ["kernel_ms"] = msKernel, ["sdpa_ms"] = msSdpa, ["pass"] = eKernel <= tol,
        };
    }
}
