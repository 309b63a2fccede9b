// The optional native extension (native/lmmr1_native.cpp): CUDA graphs, side streams, allocator statistics and
// flash-attention's variable-length kernels (forward + backward, for padding-free packing) from the libtorch of the
// installed PyTorch, which TorchSharp 0.107 does not expose. Located, in order: $LMMR1_NATIVE_LIB;
// liblmmr1_native.so next to the program when its .torch-version file names the running torch; the per-user cache
// (~/.cache/lmmr1/native/<torch version>/, or $LMMR1_NATIVE_CACHE). When missing it is compiled there once with g++
// from the source embedded in this assembly (a few seconds), with one message on stderr; without a compiler, headers
// or PyTorch, one message says why and callers use the eager engine. The decode step's fused elementwise kernels
// (native/lmmr1_kernels.cu) are compiled by nvcc ($CUDA_HOME/bin, /usr/local/cuda/bin or PATH) and linked in; without
// nvcc, or when it fails, the library is built without them (one message; HasFusedKernels false) and the decode step
// stays unfused. The kernel profiler (native/lmmr1_profiler.cpp, libtorch's Kineto API) is compiled the same way, as
// its own object linked in only when it compiles (HasProfiler). Only CUDA runs ever load it, so the CPU build and CI
// need none of it. LMMR1_CUDA_GRAPHS=0 turns it off.
using System.Diagnostics;
using System.Runtime.InteropServices;
using TorchSharp;

namespace LmmR1.Infrastructure;

public sealed unsafe class NativeExtension
{
    public const int AbiVersion = 6;
    const string LibName = "liblmmr1_native.so";

    static readonly object Gate = new();
    static bool tried;
    static NativeExtension? instance;
    static string? unavailable;

    readonly delegate* unmanaged<sbyte*> lastError;
    internal readonly delegate* unmanaged<int, int> SideEnter;
    internal readonly delegate* unmanaged<int> SideExit;
    internal readonly delegate* unmanaged<nint> GraphCreate;
    internal readonly delegate* unmanaged<nint, nint, int> CaptureBegin;
    internal readonly delegate* unmanaged<nint, int> CaptureEnd;
    internal readonly delegate* unmanaged<nint, int> Replay;
    internal readonly delegate* unmanaged<nint, int, int> ReplayN;
    internal readonly delegate* unmanaged<nint, int> GraphDestroy;
    readonly delegate* unmanaged<int, long*, long*, long*, long*, int> memoryStats;
    readonly delegate* unmanaged<int, int> resetPeak;
    readonly delegate* unmanaged<int> emptyCache;
    readonly delegate* unmanaged<nint, nint, nint, nint, nint, long, long, double, int, nint*, int> varlen;
    readonly delegate* unmanaged<nint, nint, nint*, nint*, int> addSquare;
    readonly delegate* unmanaged<nint, nint, nint, double, nint*, int> rmsApply;
    readonly delegate* unmanaged<nint, nint, nint*, int> siluMul;
    readonly delegate* unmanaged<nint, nint, nint, nint, nint, nint, nint, nint, int, nint*, int> ropeDecode;
    readonly delegate* unmanaged<nint, nint, double, int, nint*, nint*, nint*, int> headLogSoftmax;
    readonly delegate* unmanaged<nint, nint, nint, nint, long, double, int> headDLogits;
    readonly delegate* unmanaged<nint, nint, nint, nint, nint, nint*, int> decodeAttention;
    readonly delegate* unmanaged<nint, long> dataPtr;
    readonly delegate* unmanaged<int> profilerStart;
    readonly delegate* unmanaged<sbyte*, sbyte*, int> profilerStop;
    readonly delegate* unmanaged<sbyte*> profilerError;

    public string Path { get; }

    NativeExtension(nint h, string path)
    {
        Path = path;
        nint F(string name) => NativeLibrary.GetExport(h, name);
        var abi = (delegate* unmanaged<int>)F("lmmr1_abi_version");
        if (abi() != AbiVersion) throw new InvalidOperationException($"{path} has ABI {abi()}, expected {AbiVersion}");
        lastError = (delegate* unmanaged<sbyte*>)F("lmmr1_last_error");
        SideEnter = (delegate* unmanaged<int, int>)F("lmmr1_side_stream_enter");
        SideExit = (delegate* unmanaged<int>)F("lmmr1_side_stream_exit");
        GraphCreate = (delegate* unmanaged<nint>)F("lmmr1_graph_create");
        CaptureBegin = (delegate* unmanaged<nint, nint, int>)F("lmmr1_graph_capture_begin");
        CaptureEnd = (delegate* unmanaged<nint, int>)F("lmmr1_graph_capture_end");
        Replay = (delegate* unmanaged<nint, int>)F("lmmr1_graph_replay");
        ReplayN = (delegate* unmanaged<nint, int, int>)F("lmmr1_graph_replay_n");
        GraphDestroy = (delegate* unmanaged<nint, int>)F("lmmr1_graph_destroy");
        memoryStats = (delegate* unmanaged<int, long*, long*, long*, long*, int>)F("lmmr1_memory_stats");
        resetPeak = (delegate* unmanaged<int, int>)F("lmmr1_reset_peak_memory");
        emptyCache = (delegate* unmanaged<int>)F("lmmr1_empty_cache");
        varlen = (delegate* unmanaged<nint, nint, nint, nint, nint, long, long, double, int, nint*, int>)F("lmmr1_varlen_attention");
        HasFusedKernels = ((delegate* unmanaged<int>)F("lmmr1_has_fused_kernels"))() == 1;
        addSquare = (delegate* unmanaged<nint, nint, nint*, nint*, int>)F("lmmr1_fused_add_square");
        rmsApply = (delegate* unmanaged<nint, nint, nint, double, nint*, int>)F("lmmr1_fused_rms_apply");
        siluMul = (delegate* unmanaged<nint, nint, nint*, int>)F("lmmr1_fused_silu_mul");
        ropeDecode = (delegate* unmanaged<nint, nint, nint, nint, nint, nint, nint, nint, int, nint*, int>)F("lmmr1_fused_rope_decode");
        headLogSoftmax = (delegate* unmanaged<nint, nint, double, int, nint*, nint*, nint*, int>)F("lmmr1_fused_head_logsoftmax");
        headDLogits = (delegate* unmanaged<nint, nint, nint, nint, long, double, int>)F("lmmr1_fused_head_dlogits");
        decodeAttention = (delegate* unmanaged<nint, nint, nint, nint, nint, nint*, int>)F("lmmr1_fused_decode_attention");
        dataPtr = (delegate* unmanaged<nint, long>)F("lmmr1_data_ptr");
        // Optional (absent when lmmr1_profiler.cpp did not compile against this torch's headers).
        if (NativeLibrary.TryGetExport(h, "lmmr1_profiler_start", out nint ps) && NativeLibrary.TryGetExport(h, "lmmr1_profiler_stop", out nint pe)
            && NativeLibrary.TryGetExport(h, "lmmr1_profiler_error", out nint perr))
        {
            profilerStart = (delegate* unmanaged<int>)ps;
            profilerStop = (delegate* unmanaged<sbyte*, sbyte*, int>)pe;
            profilerError = (delegate* unmanaged<sbyte*>)perr;
        }
    }

    // ---------------------------------------------------------------- kernel profiler (libtorch's Kineto)

    /// <summary>Whether the library was built with the kernel profiler (lmmr1_profiler.cpp compiled).</summary>
    public bool HasProfiler => profilerStart != null;

    /// <summary>Starts recording the GPU's kernels (all threads of the process) until <see cref="StopProfiler"/>.</summary>
    public void StartProfiler()
    {
        if (!HasProfiler) throw new InvalidOperationException($"{Path} was built without the kernel profiler (see the build log of `lmmr1 native build --force`)");
        if (profilerStart() != 0) throw new InvalidOperationException($"kernel profiler start: {Marshal.PtrToStringUTF8((nint)profilerError())}");
    }

    /// <summary>Stops recording and writes one line per kernel name, "name\tlaunches\ttotal ns", to
    /// <paramref name="tablePath"/> (and the Chrome trace to <paramref name="tracePath"/> when given).</summary>
    public void StopProfiler(string tablePath, string? tracePath = null)
    {
        if (!HasProfiler) throw new InvalidOperationException($"{Path} was built without the kernel profiler");
        var table = System.Text.Encoding.UTF8.GetBytes(tablePath + "\0");
        var trace = tracePath is null ? null : System.Text.Encoding.UTF8.GetBytes(tracePath + "\0");
        int rc;
        fixed (byte* t = table)
        fixed (byte* tr = trace)
            rc = profilerStop((sbyte*)t, trace is null ? null : (sbyte*)tr);
        if (rc != 0) throw new InvalidOperationException($"kernel profiler stop: {Marshal.PtrToStringUTF8((nint)profilerError())}");
    }

    /// <summary>Whether the library was built with the fused decode kernels (nvcc was found and compiled them).</summary>
    public bool HasFusedKernels { get; }

    // ---------------------------------------------------------------- fused decode kernels (no autograd; see FusedDecodeOps)

    /// <summary>(x + r rounded to x's dtype, or null without r; float32(h)²). Contiguous CUDA float32/bf16 tensors.</summary>
    public (torch.Tensor? Sum, torch.Tensor Square) AddSquare(torch.Tensor x, torch.Tensor? r)
    {
        nint h, sq;
        Check(addSquare(x.Handle, r?.Handle ?? 0, &h, &sq), "fused add_square");
        GC.KeepAlive(x); GC.KeepAlive(r);
        return (h == 0 ? null : torch.Tensor.UnsafeCreateTensor(h), torch.Tensor.UnsafeCreateTensor(sq));
    }

    /// <summary>w · round(h · rsqrt(variance + eps)) (Qwen2RMSNorm after its variance [.., 1] float32).</summary>
    public torch.Tensor RmsApply(torch.Tensor h, torch.Tensor variance, torch.Tensor weight, double eps)
    {
        nint o;
        Check(rmsApply(h.Handle, variance.Handle, weight.Handle, eps, &o), "fused rms_apply");
        GC.KeepAlive(h); GC.KeepAlive(variance); GC.KeepAlive(weight);
        return torch.Tensor.UnsafeCreateTensor(o);
    }

    /// <summary>round(silu(g)) · u.</summary>
    public torch.Tensor SiluMul(torch.Tensor g, torch.Tensor u)
    {
        nint o;
        Check(siluMul(g.Handle, u.Handle, &o), "fused silu_mul");
        GC.KeepAlive(g); GC.KeepAlive(u);
        return torch.Tensor.UnsafeCreateTensor(o);
    }

    /// <summary>Rotates one decode token's q/k by (cos, sin), writes k and v into the layer cache at index *position;
    /// returns rotated q [B, H, 1, D].</summary>
    public torch.Tensor RopeDecode(torch.Tensor q, torch.Tensor k, torch.Tensor v, torch.Tensor cos, torch.Tensor sin,
                                   torch.Tensor keys, torch.Tensor values, torch.Tensor position, int heads)
    {
        nint o;
        Check(ropeDecode(q.Handle, k.Handle, v.Handle, cos.Handle, sin.Handle, keys.Handle, values.Handle, position.Handle, heads, &o), "fused rope_decode");
        GC.KeepAlive(q); GC.KeepAlive(k); GC.KeepAlive(v); GC.KeepAlive(cos); GC.KeepAlive(sin);
        GC.KeepAlive(keys); GC.KeepAlive(values); GC.KeepAlive(position);
        return torch.Tensor.UnsafeCreateTensor(o);
    }

    /// <summary>(log_softmax(x)[label], logsumexp(x)) per row and, with <paramref name="entropy"/>, the raw logits'
    /// entropy, x = fp32(logits)/T: logits [rows, V] float32/bf16 on CUDA (rows contiguous), labels int64 [rows] → float32
    /// [rows] each (one kernel; LogProbs.Rows and Entropy.FromLogits are the op-by-op versions).</summary>
    public (torch.Tensor LogProbs, torch.Tensor LogSumExp, torch.Tensor? Entropy) HeadLogSoftmax(torch.Tensor logits, torch.Tensor labels, double temperature, bool entropy)
    {
        nint lp, lse, ent;
        Check(headLogSoftmax(logits.Handle, labels.Handle, temperature, entropy ? 1 : 0, &lp, &lse, &ent), "fused head_logsoftmax");
        GC.KeepAlive(logits); GC.KeepAlive(labels);
        return (torch.Tensor.UnsafeCreateTensor(lp), torch.Tensor.UnsafeCreateTensor(lse), ent == 0 ? null : torch.Tensor.UnsafeCreateTensor(ent));
    }

    /// <summary>In place: the logits [rows, c] of vocabulary columns v0 … v0+c−1 become d(Σ g·log_softmax(x)[label])/d logits,
    /// x = fp32(logits)/T, rounded to their dtype (lse, g float32 [rows]; labels int64 [rows]).</summary>
    public void HeadDLogits(torch.Tensor logits, torch.Tensor logSumExp, torch.Tensor grad, torch.Tensor labels, long v0, double temperature)
    {
        Check(headDLogits(logits.Handle, logSumExp.Handle, grad.Handle, labels.Handle, v0, temperature), "fused head_dlogits");
        GC.KeepAlive(logits); GC.KeepAlive(logSumExp); GC.KeepAlive(grad); GC.KeepAlive(labels);
    }

    /// <summary>Single-token decode attention over a layer's static cache: q [B, H, 1, D], keys/values [B, KH, C, D],
    /// valid bool [B, C], position int64 [1] → softmax(q·kᵀ/√D)·v over the valid keys 0 … *position, [B, H, 1, D].</summary>
    public torch.Tensor DecodeAttention(torch.Tensor q, torch.Tensor keys, torch.Tensor values, torch.Tensor valid, torch.Tensor position)
    {
        nint o;
        Check(decodeAttention(q.Handle, keys.Handle, values.Handle, valid.Handle, position.Handle, &o), "fused decode_attention");
        GC.KeepAlive(q); GC.KeepAlive(keys); GC.KeepAlive(values); GC.KeepAlive(valid); GC.KeepAlive(position);
        return torch.Tensor.UnsafeCreateTensor(o);
    }

    /// <summary>The address of the tensor's first element (TorchSharp 0.107 exposes none).</summary>
    public long DataPtr(torch.Tensor t)
    {
        long p = dataPtr(t.Handle);
        GC.KeepAlive(t);
        return p;
    }

    /// <summary>Whether the loaded library has the flash varlen entry point (every ABI-2 build does).</summary>
    public bool HasVarlenAttention => varlen != null;

    /// <summary>Flash-attention over packed sequences: q [Tq, H, D], k/v [Tk, kvH, D] (GQA: H a multiple of kvH) in
    /// bf16/fp16 on CUDA, cuQ/cuK int32 [B + 1] cumulative lengths → [Tq, H, D]. Differentiable: the result's grad_fn is
    /// libtorch's flash backward.</summary>
    public torch.Tensor VarlenAttention(torch.Tensor q, torch.Tensor k, torch.Tensor v, torch.Tensor cuQ, torch.Tensor cuK,
                                        long maxQ, long maxK, double scale, bool causal)
    {
        nint o;
        Check(varlen(q.Handle, k.Handle, v.Handle, cuQ.Handle, cuK.Handle, maxQ, maxK, scale, causal ? 1 : 0, &o), "flash varlen attention");
        GC.KeepAlive(q); GC.KeepAlive(k); GC.KeepAlive(v); GC.KeepAlive(cuQ); GC.KeepAlive(cuK);   // no finalizer frees a handle mid-call
        return torch.Tensor.UnsafeCreateTensor(o);
    }

    /// <summary>Throws with the native side's message when <paramref name="rc"/> is not 0.</summary>
    internal void Check(int rc, string what)
    {
        if (rc != 0) throw new InvalidOperationException($"{what}: {Marshal.PtrToStringUTF8((nint)lastError())}");
    }

    /// <summary>The extension, loading (and if needed building) it on first use; null when unavailable
    /// (<see cref="UnavailableReason"/> says why; the message was printed once).</summary>
    public static NativeExtension? TryGet(TextWriter? log = null)
    {
        lock (Gate)
        {
            if (tried) return instance;
            tried = true;
            log ??= Console.Error;
            if (Environment.GetEnvironmentVariable("LMMR1_CUDA_GRAPHS") == "0")
            {
                unavailable = "LMMR1_CUDA_GRAPHS=0";
                return null;
            }
            try
            {
                string path = Locate(log, force: false);
                instance = new NativeExtension(NativeLibrary.Load(path), path);
            }
            catch (Exception e) when (e is InvalidOperationException or DllNotFoundException or EntryPointNotFoundException or IOException)
            {
                unavailable = e.Message;
                log.WriteLine($"lmmr1: CUDA graphs off, using the eager decode loop ({e.Message})");
            }
            return instance;
        }
    }

    public static string? UnavailableReason => unavailable;

    /// <summary>`lmmr1 native build`: compiles into the cache folder (again, when force) and returns the library path.</summary>
    public static string Build(TextWriter log, bool force) => Locate(log, force);

    static string Locate(TextWriter log, bool force)
    {
        if (!force && Environment.GetEnvironmentVariable("LMMR1_NATIVE_LIB") is { Length: > 0 } explicitPath)
            return File.Exists(explicitPath) ? explicitPath : throw new InvalidOperationException($"LMMR1_NATIVE_LIB={explicitPath} does not exist");
        var torch = TorchLocator.Find() ?? throw new InvalidOperationException(
            "no installed PyTorch found (set LMMR1_TORCH_DIR to the torch package folder, or put python3 with torch on PATH)");
        string version = TorchLocator.Version(torch.TorchDir);
        string besideApp = System.IO.Path.Combine(AppContext.BaseDirectory, LibName);
        string stamp = besideApp + ".torch-version";
        if (!force && File.Exists(besideApp) && File.Exists(stamp) && File.ReadAllText(stamp).Trim() == $"{version} abi{AbiVersion}")
            return besideApp;
        string cacheRoot = Environment.GetEnvironmentVariable("LMMR1_NATIVE_CACHE") is { Length: > 0 } c ? c
            : System.IO.Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x
                : System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "lmmr1", "native");
        string dir = System.IO.Path.Combine(cacheRoot, $"{Sanitize(version)}-abi{AbiVersion}");
        string lib = System.IO.Path.Combine(dir, LibName);
        if (!force && File.Exists(lib)) return lib;
        Compile(torch.TorchDir, torch.NvidiaDir, version, dir, lib, log);
        return lib;
    }

    static string Sanitize(string s) => new(s.Select(ch => char.IsLetterOrDigit(ch) || ch is '.' or '-' or '_' ? ch : '_').ToArray());

    /// <summary>The C++ source shipped inside this assembly.</summary>
    public static string Source()
    {
        using var s = typeof(NativeExtension).Assembly.GetManifestResourceStream("lmmr1_native.cpp")
                      ?? throw new InvalidOperationException("lmmr1_native.cpp is not embedded in this build");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>The CUDA kernels' source shipped inside this assembly.</summary>
    public static string KernelSource()
    {
        using var s = typeof(NativeExtension).Assembly.GetManifestResourceStream("lmmr1_kernels.cu")
                      ?? throw new InvalidOperationException("lmmr1_kernels.cu is not embedded in this build");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    static string? FindNvcc()
    {
        if (Environment.GetEnvironmentVariable("NVCC") is { Length: > 0 } n) return n;
        var dirs = new List<string>();
        if (Environment.GetEnvironmentVariable("CUDA_HOME") is { Length: > 0 } h) dirs.Add(System.IO.Path.Combine(h, "bin"));
        dirs.Add("/usr/local/cuda/bin");
        dirs.AddRange((Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries));
        return dirs.Select(d => System.IO.Path.Combine(d, "nvcc")).FirstOrDefault(File.Exists);
    }

    /// <summary>nvcc -c of the kernels into <paramref name="obj"/>; null when done, else why not (the caller builds without them).</summary>
    static string? CompileKernels(string dir, string obj)
    {
        if (Environment.GetEnvironmentVariable("LMMR1_FUSED_KERNELS") == "0") return "LMMR1_FUSED_KERNELS=0";
        string? nvcc = FindNvcc();
        if (nvcc is null) return "no nvcc found (set CUDA_HOME or NVCC)";
        string cu = System.IO.Path.Combine(dir, "lmmr1_kernels.cu");
        File.WriteAllText(cu, KernelSource());
        // sm_80 and sm_90 machine code plus compute_90 PTX for newer GPUs; no fast-math (the kernels round as ATen does).
        var args = new List<string>
        {
            "-O3", "-std=c++17", "-Xcompiler", "-fPIC", "-c", cu, "-o", obj,
            "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_90,code=compute_90",
        };
        if (RunTool(nvcc, args) is not { } ran) return $"cannot start {nvcc}";
        var (rc, err) = ran;
        if (rc == 0) return null;
        File.WriteAllText(System.IO.Path.Combine(dir, "nvcc.log"), $"{nvcc} {string.Join(' ', args)}\n{err}");
        return $"nvcc failed (exit {rc}; log {System.IO.Path.Combine(dir, "nvcc.log")}): " + string.Join(" | ", err.Split('\n').Where(l => l.Contains("error", StringComparison.OrdinalIgnoreCase)).Take(3));
    }

    /// <summary>g++ -c of the kernel profiler into <paramref name="obj"/>; null when done, else why not (built without it).</summary>
    static string? CompileProfiler(string cxx, string torchDir, string cudaInclude, string dir, string obj)
    {
        string cpp = System.IO.Path.Combine(dir, "lmmr1_profiler.cpp");
        File.WriteAllText(cpp, ProfilerSource());
        var args = new List<string>
        {
            "-O2", "-fPIC", "-std=c++17", "-D_GLIBCXX_USE_CXX11_ABI=1", "-w", "-c", cpp, "-o", obj,
            "-I" + System.IO.Path.Combine(torchDir, "include"),
            "-I" + System.IO.Path.Combine(torchDir, "include", "torch", "csrc", "api", "include"), "-I" + cudaInclude,
        };
        if (RunTool(cxx, args) is not { } ran) return $"cannot start {cxx}";
        var (rc, err) = ran;
        if (rc == 0) return null;
        string logPath = System.IO.Path.Combine(dir, "profiler-build.log");
        File.WriteAllText(logPath, $"{cxx} {string.Join(' ', args)}\n{err}");
        return $"{cxx} failed (exit {rc}; log {logPath}): " + string.Join(" | ", err.Split('\n').Where(l => l.Contains("error", StringComparison.OrdinalIgnoreCase)).Take(2));
    }

    /// <summary>The kernel profiler's source shipped inside this assembly.</summary>
    public static string ProfilerSource()
    {
        using var s = typeof(NativeExtension).Assembly.GetManifestResourceStream("lmmr1_profiler.cpp")
                      ?? throw new InvalidOperationException("lmmr1_profiler.cpp is not embedded in this build");
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }

    /// <summary>Runs a build tool to its end: (exit code, stderr + stdout), or null when it cannot be started.</summary>
    static (int ExitCode, string Output)? RunTool(string exe, IReadOnlyList<string> args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        Process? proc;
        try { proc = Process.Start(psi); }
        catch (System.ComponentModel.Win32Exception) { return null; }
        using (proc)
        {
            if (proc is null) return null;
            var err = proc.StandardError.ReadToEndAsync();
            var outp = proc.StandardOutput.ReadToEndAsync();
            proc.WaitForExit();
            return (proc.ExitCode, err.Result + outp.Result);
        }
    }

    static void Compile(string torchDir, string? nvidiaDir, string version, string dir, string lib, TextWriter log)
    {
        string cxx = Environment.GetEnvironmentVariable("CXX") is { Length: > 0 } e ? e : "g++";
        string? cudaInclude = CudaIncludeDir(nvidiaDir)
            ?? throw new InvalidOperationException("no CUDA runtime headers (cuda_runtime_api.h) found in $CUDA_HOME/include, /usr/local/cuda/include or PyTorch's nvidia packages");
        string? cudart = CudartLibrary(torchDir, nvidiaDir);
        Directory.CreateDirectory(dir);
        string src = System.IO.Path.Combine(dir, "lmmr1_native.cpp");
        File.WriteAllText(src, Source());
        string tmp = lib + $".{Environment.ProcessId}.tmp";
        string tl = System.IO.Path.Combine(torchDir, "lib");
        string kobj = System.IO.Path.Combine(dir, $"lmmr1_kernels.{Environment.ProcessId}.o");
        var kclock = Stopwatch.StartNew();
        string? noKernels = CompileKernels(dir, kobj);
        if (noKernels is null) log.WriteLine($"lmmr1: compiled the fused decode kernels with nvcc in {kclock.Elapsed.TotalSeconds:F1} s");
        else log.WriteLine($"lmmr1: building without the fused decode kernels ({noKernels}); the decode step stays unfused");
        string pobj = System.IO.Path.Combine(dir, $"lmmr1_profiler.{Environment.ProcessId}.o");
        string? noProfiler = CompileProfiler(cxx, torchDir, cudaInclude, dir, pobj);
        if (noProfiler is not null) log.WriteLine($"lmmr1: building without the kernel profiler ({noProfiler}); --profile-kernels will be unavailable");
        var args = new List<string>
        {
            "-O2", "-shared", "-fPIC", "-std=c++17", "-D_GLIBCXX_USE_CXX11_ABI=1", "-w",
            "-I" + System.IO.Path.Combine(torchDir, "include"),
            "-I" + System.IO.Path.Combine(torchDir, "include", "torch", "csrc", "api", "include"),
            "-I" + cudaInclude, src, "-o", tmp, "-L" + tl, "-ltorch", "-ltorch_cpu", "-ltorch_cuda", "-lc10", "-lc10_cuda",
            "-Wl,-rpath," + tl,
        };
        if (cudart is not null) { args.Add(cudart); args.Add("-Wl,-rpath," + System.IO.Path.GetDirectoryName(cudart)); }
        if (noKernels is null) args.Insert(args.IndexOf(src) + 1, kobj);
        else args.Add("-DLMMR1_NO_KERNELS");
        if (noProfiler is null) args.Insert(args.IndexOf(src) + 1, pobj);
        log.WriteLine($"lmmr1: building the CUDA-graph extension for torch {version} into {dir} (once per torch version) ...");
        var clock = Stopwatch.StartNew();
        var built = RunTool(cxx, args);
        if (File.Exists(kobj)) File.Delete(kobj);   // linked in or not, the objects are not needed any more
        if (File.Exists(pobj)) File.Delete(pobj);
        if (built is null) throw new InvalidOperationException($"no C++ compiler '{cxx}' on PATH (set CXX)");
        var (exit, msg) = built.Value;
        if (exit != 0)
        {
            File.WriteAllText(System.IO.Path.Combine(dir, "build.log"), $"{cxx} {string.Join(' ', args)}\n{msg}");
            throw new InvalidOperationException($"{cxx} failed (exit {exit}; log {System.IO.Path.Combine(dir, "build.log")}): " +
                                                string.Join(" | ", msg.Split('\n').Where(l => l.Contains("error", StringComparison.OrdinalIgnoreCase)).Take(3)));
        }
        File.Move(tmp, lib, overwrite: true);
        log.WriteLine($"lmmr1: built {lib} in {clock.Elapsed.TotalSeconds:F1} s");
    }

    static string? CudaIncludeDir(string? nvidiaDir)
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable("CUDA_HOME") is { Length: > 0 } h) candidates.Add(System.IO.Path.Combine(h, "include"));
        candidates.Add("/usr/local/cuda/include");
        if (nvidiaDir is not null && Directory.Exists(nvidiaDir))
            candidates.AddRange(Directory.GetDirectories(nvidiaDir).Select(d => System.IO.Path.Combine(d, "include")));
        return candidates.FirstOrDefault(d => File.Exists(System.IO.Path.Combine(d, "cuda_runtime_api.h")));
    }

    /// <summary>The libcudart.so.N that PyTorch's own libraries use (so the extension links against the same one).</summary>
    static string? CudartLibrary(string torchDir, string? nvidiaDir)
    {
        var dirs = new List<string> { System.IO.Path.Combine(torchDir, "lib") };
        if (nvidiaDir is not null && Directory.Exists(nvidiaDir))
            dirs.AddRange(Directory.GetDirectories(nvidiaDir).Select(d => System.IO.Path.Combine(d, "lib")));
        dirs.Add("/usr/local/cuda/lib64");
        foreach (var d in dirs.Where(Directory.Exists))
        {
            var f = Directory.GetFiles(d, "libcudart.so.*").Order(StringComparer.Ordinal).FirstOrDefault();
            if (f is not null) return f;
        }
        return null;
    }

    // ---------------------------------------------------------------- allocator statistics

    /// <summary>PyTorch caching-allocator counters of a device in bytes (max_memory_allocated etc.).</summary>
    public (long Allocated, long PeakAllocated, long Reserved, long PeakReserved) MemoryStats(int device)
    {
        long a, pa, r, pr;
        Check(memoryStats(device, &a, &pa, &r, &pr), "memory stats");
        return (a, pa, r, pr);
    }

    public void ResetPeakMemory(int device) => Check(resetPeak(device), "reset peak memory");
    public void EmptyCache() => Check(emptyCache(), "empty cache");
}
