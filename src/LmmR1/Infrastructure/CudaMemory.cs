// Device memory in use, read with cudaMemGetInfo from the CUDA runtime that an installed PyTorch ships
// (libcudart.so.13/.12 on LD_LIBRARY_PATH), since TorchSharp exposes no allocator statistics. The figure is the whole
// device's used memory (this process's caching allocator reserve + CUDA context + other processes), like nvidia-smi,
// not PyTorch's max_memory_allocated. A background sampler records the peak.
using System.Runtime.InteropServices;

namespace LmmR1.Infrastructure;

public static unsafe class CudaMemory
{
    static readonly object Gate = new();
    static bool resolved;
    static delegate* unmanaged<nuint*, nuint*, int> memGetInfo;

    /// <summary>(used, total) bytes of the current device, or null when no CUDA runtime library could be loaded.</summary>
    public static (long Used, long Total)? Query()
    {
        lock (Gate)
        {
            if (!resolved)
            {
                resolved = true;
                foreach (var name in new[] { "libcudart.so.13", "libcudart.so.12", "libcudart.so" })
                    if (NativeLibrary.TryLoad(name, out var h) && NativeLibrary.TryGetExport(h, "cudaMemGetInfo", out var f))
                    {
                        memGetInfo = (delegate* unmanaged<nuint*, nuint*, int>)f;
                        break;
                    }
            }
        }
        if (memGetInfo == null) return null;
        nuint free, total;
        if (memGetInfo(&free, &total) != 0) return null;
        return ((long)(total - free), (long)total);
    }

    /// <summary>Polls <see cref="Query"/> on a background thread and keeps the maximum.</summary>
    public sealed class PeakSampler : IDisposable
    {
        readonly Thread thread;
        volatile bool stop;
        long peak;

        public PeakSampler(int intervalMs = 5)
        {
            peak = Query()?.Used ?? -1;
            thread = new Thread(() =>
            {
                while (!stop)
                {
                    if (Query() is { } q) Interlocked.Exchange(ref peak, Math.Max(Interlocked.Read(ref peak), q.Used));
                    Thread.Sleep(intervalMs);
                }
            }) { IsBackground = true, Name = "cuda-mem-sampler" };
            thread.Start();
        }

        /// <summary>Peak used bytes so far (−1 when unavailable).</summary>
        public long Peak => Interlocked.Read(ref peak);

        /// <summary>Starts a new peak from the current value.</summary>
        public void Reset() => Interlocked.Exchange(ref peak, Query()?.Used ?? -1);

        public void Dispose()
        {
            stop = true;
            thread.Join();
        }
    }
}
