// Finds an installed PyTorch (the torch package folder: lib/libtorch_cuda.so, include/, version.py) for builds that
// bundle no libtorch (TorchBackend=system): $LMMR1_TORCH_DIR, else `python3` ($LMMR1_PYTHON) asked where the torch
// package lives (importlib.util.find_spec: torch is not imported, so this takes milliseconds). It also gives the
// loader path those libraries need (torch/lib plus the pip nvidia/*/lib folders), used to re-run the process with it.
using System.Diagnostics;

namespace LmmR1.Infrastructure;

public static class TorchLocator
{
    /// <summary>Set in the environment of a process that <see cref="EnsureLoaderPath"/> re-ran (prevents loops).</summary>
    public const string ReexecMarker = "LMMR1_LOADER_PATH_SET";

    static readonly object Gate = new();
    static bool searched;
    static (string TorchDir, string? NvidiaDir)? found;

    /// <summary>The torch package folder and the pip "nvidia" folder next to it (if any), or null when none was found.</summary>
    public static (string TorchDir, string? NvidiaDir)? Find()
    {
        lock (Gate)
        {
            if (searched) return found;
            searched = true;
            string? env = Environment.GetEnvironmentVariable("LMMR1_TORCH_DIR");
            if (!string.IsNullOrWhiteSpace(env))
            {
                // Accept the torch folder or its lib/ folder.
                string dir = Path.GetFullPath(env);
                if (Path.GetFileName(dir) == "lib" && File.Exists(Path.Combine(dir, "libtorch.so"))) dir = Path.GetDirectoryName(dir)!;
                if (File.Exists(Path.Combine(dir, "lib", "libtorch.so")))
                    found = (dir, NvidiaNextTo(dir));
                return found;
            }
            string python = Environment.GetEnvironmentVariable("LMMR1_PYTHON") is { Length: > 0 } p ? p : "python3";
            var lines = RunPython(python,
                "import importlib.util as u, os\n" +
                "s = u.find_spec('torch')\n" +
                "print(os.path.dirname(s.origin) if s and s.origin else '')\n" +
                "n = u.find_spec('nvidia')\n" +
                "print(list(n.submodule_search_locations)[0] if n and n.submodule_search_locations else '')\n");
            if (lines is { Length: >= 1 } && lines[0].Length > 0 && File.Exists(Path.Combine(lines[0], "lib", "libtorch.so")))
                found = (lines[0], lines.Length > 1 && lines[1].Length > 0 ? lines[1] : NvidiaNextTo(lines[0]));
            return found;
        }
    }

    static string? NvidiaNextTo(string torchDir)
    {
        string n = Path.Combine(Path.GetDirectoryName(torchDir)!, "nvidia");
        return Directory.Exists(n) ? n : null;
    }

    static string[]? RunPython(string python, string code)
    {
        try
        {
            var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add(code);
            using var proc = Process.Start(psi);
            if (proc is null) return null;
            string output = proc.StandardOutput.ReadToEnd();
            proc.StandardError.ReadToEnd();
            if (!proc.WaitForExit(30_000)) { proc.Kill(); return null; }
            return proc.ExitCode == 0 ? output.Split('\n').Select(l => l.Trim()).ToArray() : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }   // no python3
    }

    /// <summary>torch.__version__ read from torch/version.py (e.g. "2.11.0+cu130"), or "unknown".</summary>
    public static string Version(string torchDir)
    {
        string f = Path.Combine(torchDir, "version.py");
        if (File.Exists(f))
            foreach (var line in File.ReadLines(f))
                if (line.StartsWith("__version__", StringComparison.Ordinal))
                    return line[(line.IndexOf('=') + 1)..].Trim().Trim('\'', '"');
        return "unknown";
    }

    /// <summary>torch/lib then every nvidia/*/lib folder: what the dynamic loader needs to open PyTorch's libtorch_cuda.so
    /// from a process that was not started by Python.</summary>
    public static List<string> LibraryDirs((string TorchDir, string? NvidiaDir) t)
    {
        var dirs = new List<string> { Path.Combine(t.TorchDir, "lib") };
        if (t.NvidiaDir is not null && Directory.Exists(t.NvidiaDir))
            dirs.AddRange(Directory.GetDirectories(t.NvidiaDir).Select(d => Path.Combine(d, "lib")).Where(Directory.Exists).Order(StringComparer.Ordinal));
        return dirs;
    }

    /// <summary>
    /// For builds without a bundled libtorch: when PyTorch's libraries are not on LD_LIBRARY_PATH yet, runs this same
    /// program again with them prepended (the loader reads LD_LIBRARY_PATH only at process start) and returns its exit
    /// code; returns null when the current process can go on (path already set, or no PyTorch found: TorchSharp then
    /// reports the missing libtorch itself). Call first thing in Main, before any TorchSharp type is touched.
    /// </summary>
    public static int? EnsureLoaderPath(string[] args)
    {
        if (Environment.GetEnvironmentVariable(ReexecMarker) == "1") return null;
        if (Find() is not { } t) return null;
        var dirs = LibraryDirs(t);
        string current = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "";
        var parts = current.Split(':', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Contains(dirs[0])) return null;
        string? self = Environment.ProcessPath;
        if (self is null) return null;
        var psi = new ProcessStartInfo(self) { UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["LD_LIBRARY_PATH"] = string.Join(':', dirs.Concat(parts));
        psi.Environment[ReexecMarker] = "1";
        psi.Environment["LMMR1_TORCH_DIR"] = t.TorchDir;
        // Ctrl-C reaches both processes (same process group); the child decides, this one waits for it.
        Console.CancelKeyPress += (_, e) => e.Cancel = true;
        using var child = Process.Start(psi) ?? throw new InvalidOperationException($"could not re-run {self}");
        child.WaitForExit();
        return child.ExitCode;
    }
}
