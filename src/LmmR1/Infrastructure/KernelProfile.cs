// A kernel-by-kernel profile of one piece of GPU work, for the benchmarks' --profile-kernels: the native extension's
// Kineto profiler (libtorch's, as torch.profiler; kernels inside CUDA graph replays too) records while the work runs and
// writes one line per kernel name, "name<TAB>launches<TAB>total ns"; bench/rl/summarize_kernels.py groups such tables
// (and transformers' torch.profiler tables) into the same categories. The work is synchronised before the profiler
// stops, so every kernel it launched is in the table.
using TorchSharp;

namespace LmmR1.Infrastructure;

public static class KernelProfile
{
    /// <summary>The extension with a profiler, or an input error naming <paramref name="flag"/> and why not.</summary>
    public static NativeExtension Require(torch.Device device, string flag)
    {
        if (device.type != DeviceType.CUDA) throw InputException.At(null, null, flag, "profiles CUDA kernels; it needs --device cuda");
        var native = NativeExtension.TryGet()
                     ?? throw InputException.At(null, null, flag, $"needs the native extension, which is unavailable ({NativeExtension.UnavailableReason})");
        if (!native.HasProfiler)
            throw InputException.At(null, null, flag, $"{native.Path} was built without the kernel profiler (its compile log is beside it; `lmmr1 native build --force` retries)");
        return native;
    }

    /// <summary>Runs <paramref name="work"/> with the profiler on and writes its table to <paramref name="path"/>;
    /// returns the summed kernel time and the launches.</summary>
    public static (double KernelSeconds, long Launches) Record(NativeExtension native, torch.Device device, string path, Action work)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(path)) is { } dir) Directory.CreateDirectory(dir);
        native.StartProfiler();
        try
        {
            work();
            torch.cuda.synchronize(device);
        }
        finally
        {
            native.StopProfiler(path);
        }
        return Totals(File.ReadLines(path));
    }

    /// <summary>(Σ total ns / 1e9, Σ launches) of a table's lines.</summary>
    public static (double KernelSeconds, long Launches) Totals(IEnumerable<string> lines)
    {
        long ns = 0, launches = 0;
        foreach (var line in lines)
        {
            var f = line.Split('\t');
            if (f.Length < 3 || !long.TryParse(f[^2], out long n) || !long.TryParse(f[^1], out long t)) continue;
            launches += n;
            ns += t;
        }
        return (ns / 1e9, launches);
    }
}
