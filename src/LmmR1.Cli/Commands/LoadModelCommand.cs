// `lmmr1 debug load-model`: times loading a checkpoint (config, allocation, copy from the memory-mapped safetensors)
// and reports the process's peak RSS, for bench/README.md "Model loading".
using System.CommandLine;
using System.Diagnostics;
using LmmR1.Models.Qwen;
using TorchSharp;

namespace LmmR1.Cli.Commands;

public static class LoadModelCommand
{
    public static Command Create()
    {
        var model = ModelCommands.ModelOption();
        var dtype = ModelCommands.DTypeOption("bfloat16");
        var device = ModelCommands.DeviceOption();
        var cmd = new Command("load-model", "Load a checkpoint, report load time and peak memory") { model, dtype, device };
        cmd.SetAction(pr =>
        {
            var dt = ModelCommands.ParseDType(pr.GetValue(dtype)!);
            var dev = ModelCommands.ParseDevice(pr.GetValue(device)!);
            _ = torch.zeros(1); // libtorch start-up is not load time
            var sw = Stopwatch.StartNew();
            using var m = QwenVLModel.Load(pr.GetValue(model)!, dt, dev);
            if (dev.type == DeviceType.CUDA) torch.cuda.synchronize(dev);
            double s = sw.Elapsed.TotalSeconds;
            var counts = m.CountParameters();
            long bytes = m.parameters().Sum(p => p.numel() * p.ElementSize);
            Console.WriteLine($"loaded {m.Config.Architecture}: {counts.Total:N0} parameters ({bytes / 1e9:F2} GB {ModelCommands.DTypeName(dt)}) " +
                              $"on {dev} in {s:F2} s; peak RSS {PeakRssGb():F2} GB");
            return 0;
        });
        return cmd;
    }

    /// <summary>VmHWM from /proc/self/status (Linux), in GB; NaN elsewhere.</summary>
    static double PeakRssGb()
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) return double.NaN;
        foreach (var line in File.ReadLines(path))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024 / 1e9;
        return double.NaN;
    }
}
