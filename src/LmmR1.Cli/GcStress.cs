// GcStress: the LMMR1_GC_STRESS=1 diagnostics switch. A background thread allocates garbage and forces full
// collections plus finalizer runs in a tight loop while the command runs, so any TorchSharp temporary (a Scalar or a
// Tensor) that nothing keeps alive across its native call is freed by the finalizer thread while libtorch still reads
// it: the TorchSharp 0.107 use-after-free that aborted about one demo in five under load, made to show in seconds.
// Not a feature: it slows every command several times over. Read once at startup (Program.cs).
namespace LmmR1.Cli;

public static class GcStress
{
    public const string Variable = "LMMR1_GC_STRESS";

    /// <summary>Starts the stress thread when <see cref="Variable"/> is 1 (anything else: nothing). The thread is a
    /// background thread, so it never keeps the process alive.</summary>
    public static void StartIfRequested()
    {
        if (Environment.GetEnvironmentVariable(Variable) != "1") return;
        Console.Error.WriteLine($"{Variable}=1: forcing GC + finalizers in a loop on a background thread (diagnostics; slow)");
        new Thread(Loop) { IsBackground = true, Name = "lmmr1-gc-stress", Priority = ThreadPriority.AboveNormal }.Start();
    }

    static void Loop()
    {
        var keep = new object[64];
        for (long i = 0; ; i++)
        {
            // Some short-lived garbage of mixed sizes, so each collection has work and the finalizer queue turns over.
            for (int j = 0; j < 64; j++) keep[j] = new byte[(j & 7) * 512 + 16];
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }
}
