// A cooperative deadline for one verification. Loops and recursions call Tick()/Enter(); when the time or the
// nesting depth is spent they throw BudgetExceededException, which MathVerifier turns into "not verified".
// Math-Verify uses signal.alarm instead; a cooperative check works in any thread and never kills one.
using System.Diagnostics;

namespace LmmR1.Rewards.Verification;

internal sealed class BudgetExceededException(string reason) : Exception(reason);

internal sealed class Budget
{
    private readonly long _deadline;
    private int _ticks;

    public Budget(TimeSpan limit, int maxDepth = 200)
    {
        var ticks = limit == Timeout.InfiniteTimeSpan ? long.MaxValue / 4 : (long)(limit.TotalSeconds * Stopwatch.Frequency);
        _deadline = Stopwatch.GetTimestamp() + ticks;
        MaxDepth = maxDepth;
    }

    /// <summary>A budget that never expires (tests of pure parsing).</summary>
    public static Budget Unlimited() => new(Timeout.InfiniteTimeSpan, 10_000);

    public int MaxDepth { get; }
    public bool Expired => Stopwatch.GetTimestamp() > _deadline;

    /// <summary>Cheap check for hot loops: reads the clock (~20 ns) every 16 calls.</summary>
    public void Tick()
    {
        if ((++_ticks & 15) == 0 && Stopwatch.GetTimestamp() > _deadline)
            throw new BudgetExceededException("time budget exceeded");
    }

    public void CheckNow()
    {
        if (Stopwatch.GetTimestamp() > _deadline) throw new BudgetExceededException("time budget exceeded");
    }

    public void CheckDepth(int depth)
    {
        if (depth > MaxDepth) throw new BudgetExceededException("expression nested too deeply");
        Tick();
    }
}
