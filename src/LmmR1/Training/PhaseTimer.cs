// Wall-clock seconds per named phase of a training step (verl's marked_timer):
// `var r = timer.Time("generate", () => …)` or `using (timer.Phase("update")) …` (only Time names the phase in an
// exception that escapes it). On a CUDA device a phase ends with
// a device synchronisation, so its seconds cover its own kernels (the phases keep their results on the device).
using System.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Training;

public sealed class PhaseTimer(Device? device = null)
{
    readonly Dictionary<string, double> seconds = new(StringComparer.Ordinal);
    readonly Device? device = device;

    public IDisposable Phase(string name) => new Running(this, name);

    /// <summary>Runs <paramref name="phase"/> as the phase <paramref name="name"/> and returns its result. An exception
    /// escaping it carries the innermost phase's name (<see cref="PhaseOf"/>: what an out-of-memory error reports).</summary>
    public T Time<T>(string name, Func<T> phase)
    {
        try
        {
            using (Phase(name)) return phase();
        }
        catch (Exception e) when (Tag(e, name)) { throw; }   // never caught: the filter only tags
    }

    /// <summary>Runs <paramref name="phase"/> as the phase <paramref name="name"/> (see the other overload).</summary>
    public void Time(string name, Action phase) => Time(name, () => { phase(); return 0; });

    const string PhaseKey = "lmmr1.phase";

    // Exception filters run before any stack unwinds, innermost first: the first tag is the phase that was running.
    static bool Tag(Exception e, string name)
    {
        if (!e.Data.Contains(PhaseKey)) e.Data[PhaseKey] = name;
        return false;
    }

    /// <summary>The phase an exception (or one it wraps) escaped from, or null.</summary>
    public static string? PhaseOf(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
            if (x.Data[PhaseKey] is string name) return name;
        return null;
    }

    /// <summary>Seconds accumulated per phase, in the order the phases first ran.</summary>
    public IReadOnlyDictionary<string, double> Seconds => seconds;

    public double this[string name] => seconds.GetValueOrDefault(name);

    /// <summary>Called when a phase ends (after its device synchronisation) with its name, e.g. to read memory peaks.</summary>
    public Action<string>? Ended { get; init; }

    sealed class Running(PhaseTimer owner, string name) : IDisposable
    {
        readonly Stopwatch sw = Stopwatch.StartNew();
        bool done;

        public void Dispose()
        {
            if (done) return;
            done = true;
            if (owner.device is { type: DeviceType.CUDA } d) torch.cuda.synchronize(d);
            owner.seconds[name] = owner.seconds.GetValueOrDefault(name) + sw.Elapsed.TotalSeconds;
            owner.Ended?.Invoke(name);
        }
    }
}
