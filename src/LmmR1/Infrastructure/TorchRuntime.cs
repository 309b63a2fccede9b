// Starting libtorch once per process: device parsing, CUDA initialisation against either the bundled
// libtorch-cpu or an installed PyTorch's libtorch (TorchBackend=system, see README "Running on GPU"),
// thread counts and determinism switches.
using System.Runtime.InteropServices;
using TorchSharp;

namespace LmmR1.Infrastructure;

public static class TorchRuntime
{
    static readonly object Gate = new();
    static bool cudaReady;

    /// <summary>Parses "cpu", "cuda" or "cuda:N" and makes sure that device type can be used.</summary>
    public static torch.Device Device(string name)
    {
        string n = name.Trim().ToLowerInvariant();
        if (n == "cpu") return torch.CPU;
        if (n == "cuda" || n.StartsWith("cuda:", StringComparison.Ordinal))
        {
            EnsureCuda();
            return new torch.Device(n);
        }
        throw new ArgumentException($"unknown device '{name}': expected cpu, cuda or cuda:N");
    }

    /// <summary>Loads libtorch's CUDA backend. With an installed PyTorch, its lib folder must be on LD_LIBRARY_PATH.</summary>
    public static void EnsureCuda()
    {
        lock (Gate)
        {
            if (cudaReady) return;
            // With TorchBackend=system TorchSharp finds libtorch_cuda.so through the loader path; loading it by name
            // first gives a clear message when that path is missing.
            if (!NativeLibrary.TryLoad("libtorch_cuda.so", out _) && !torch.cuda.is_available())
                throw new InvalidOperationException(
                    "CUDA requested but libtorch_cuda.so could not be loaded. Put an installed PyTorch's torch/lib and the " +
                    "nvidia/*/lib folders on LD_LIBRARY_PATH (README: Running on GPU), or build with -p:TorchBackend=cuda.");
            torch.InitializeDeviceType(DeviceType.CUDA);
            if (!torch.cuda.is_available())
                throw new InvalidOperationException("libtorch loaded but torch.cuda.is_available() is false: no usable GPU or driver.");
            cudaReady = true;
        }
    }
}
