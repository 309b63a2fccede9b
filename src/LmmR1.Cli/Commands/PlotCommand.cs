// `lmmr1 plot RUN_DIR`: redraws a run's PNG plots (RunPlots) from RUN_DIR/metrics.jsonl into RUN_DIR/plots (or --out),
// e.g. while a run is going or after copying its folder off the training machine.
using System.CommandLine;
using LmmR1.Infrastructure;
using LmmR1.Training.Logging;

namespace LmmR1.Cli.Commands;

public static class PlotCommand
{
    public static Command Create()
    {
        var runDir = new Argument<string>("RUN_DIR") { Description = "A run folder (--save_path) holding metrics.jsonl, or the metrics.jsonl file" };
        var outDir = new Option<string?>("--out") { Description = "Folder for the PNG files (default: RUN_DIR/plots)" };
        var cmd = new Command("plot", "Draw PNG plots of a run's curves from its metrics.jsonl") { runDir, outDir };
        cmd.SetAction(pr => InputsCli.Guard(() =>
        {
            string path = pr.GetValue(runDir)!;
            string metrics = File.Exists(path) ? path : Path.Combine(path, MetricsLog.FileName);
            if (!File.Exists(metrics)) throw InputException.At(metrics, null, "RUN_DIR", "no metrics.jsonl here (give a run's --save_path)");
            string output = pr.GetValue(outDir) ?? Path.Combine(Path.GetDirectoryName(Path.GetFullPath(metrics))!, RunPlots.FolderName);
            var written = RunPlots.Write(metrics, output);
            foreach (var f in written) Console.WriteLine(f);
            Console.WriteLine($"{written.Count} plot(s) in {Path.GetFullPath(output)}");
            return 0;
        }));
        return cmd;
    }
}
