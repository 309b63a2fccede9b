// One captured CUDA graph (libtorch's at::cuda::CUDAGraph through NativeExtension). Capture runs a body of ordinary
// TorchSharp ops on this thread with a side stream current: first `warmup` times eagerly (cuBLAS workspaces, lazy
// kernels), then once under capture. The graph replays fixed addresses: the body must read and write only tensors
// that outlive the graph (static buffers, parameters updated in place) and must not synchronise with the host or copy
// from host memory while capturing. Memory the body allocates comes from the graph's private pool, which can be
// shared with another graph that never runs at the same time.
using TorchSharp;

namespace LmmR1.Infrastructure;

public sealed class CudaGraph : IDisposable
{
    readonly NativeExtension native;
    nint handle;

    CudaGraph(NativeExtension native, nint handle) { this.native = native; this.handle = handle; }

    /// <summary>Warm-up runs and the capture of <paramref name="body"/> on a side stream of <paramref name="device"/>.</summary>
    public static unsafe CudaGraph Capture(NativeExtension native, int device, Action body, int warmup = 2, CudaGraph? sharePoolWith = null)
    {
        torch.cuda.synchronize(new torch.Device(DeviceType.CUDA, device));
        native.Check(native.SideEnter(device), "side stream");
        nint g = 0;
        try
        {
            for (int i = 0; i < warmup; i++) body();
            g = native.GraphCreate();
            if (g == 0) native.Check(-1, "graph create");
            native.Check(native.CaptureBegin(g, sharePoolWith?.handle ?? 0), "capture begin");
            try { body(); }
            finally { native.Check(native.CaptureEnd(g), "capture end"); }
        }
        catch
        {
            if (g != 0) native.GraphDestroy(g);
            native.SideExit();
            throw;
        }
        native.Check(native.SideExit(), "side stream exit");
        return new CudaGraph(native, g);
    }

    /// <summary>Launches the graph on the current (default) stream; returns at once.</summary>
    public unsafe void Replay(int times = 1)
    {
        ObjectDisposedException.ThrowIf(handle == 0, this);
        native.Check(times == 1 ? native.Replay(handle) : native.ReplayN(handle, times), "graph replay");
    }

    public unsafe void Dispose()
    {
        if (handle == 0) return;
        native.GraphDestroy(handle);
        handle = 0;
    }
}
