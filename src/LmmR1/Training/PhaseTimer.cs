// Wall-clock seconds per named phase of a training step (verl's marked_timer): `using (timer.Phase("generate")) …`.
// Phases end where the host already waits for the device (log-probs and losses are read back), so the CPU clock
// covers the device work without extra synchronisation.
using System.Diagnostics;

namespace LmmR1.Training;

public sealed class PhaseTimer
{
    readonly Dictionary<string, double> seconds = new(StringComparer.Ordinal);

    public IDisposable Phase(string name) => new Running(this, name);

    /// <summary>Seconds accumulated per phase since the last <see cref="Reset"/>.</summary>
    public IReadOnlyDictionary<string, double> Seconds => seconds;

    public void Reset() => seconds.Clear();

    sealed class Running(PhaseTimer owner, string name) : IDisposable
    {
        readonly Stopwatch sw = Stopwatch.StartNew();
        bool done;

        public void Dispose()
        {
            if (done) return;
            done = true;
            owner.seconds[name] = owner.seconds.GetValueOrDefault(name) + sw.Elapsed.TotalSeconds;
        }
    }
}
