// The built-in LMM-R1 rule reward as an IRewardModel. Samples are verified on a fixed set of worker threads (one
// per core by default) shared by all callers: each verification has a wall-clock budget, so running more of them
// at once than there are cores would spend the budgets waiting for a CPU.
using System.Collections.Concurrent;

namespace LmmR1.Rewards;

public sealed class RuleRewardModel : IRewardModel, IDisposable
{
    private readonly RewardOptions _options;
    private readonly VerificationPool _pool;
    private readonly bool _ownsPool;

    public RuleRewardModel(RewardOptions? options = null, VerificationPool? pool = null)
    {
        _options = options ?? new RewardOptions();
        _options.Validate();
        _ownsPool = pool == null;
        _pool = pool ?? new VerificationPool();
    }

    public RewardOptions Options => _options;

    public Task<IReadOnlyList<RewardResult>> ScoreAsync(IReadOnlyList<string> queries, IReadOnlyList<string> prompts,
                                                        IReadOnlyList<string> labels, CancellationToken ct = default)
    {
        if (queries.Count != prompts.Count || queries.Count != labels.Count)
            throw new ArgumentException($"length mismatch: {queries.Count} queries, {prompts.Count} prompts, {labels.Count} labels");
        return _pool.RunAsync(queries.Count, i => LmmR1Reward.Score(queries[i], labels[i], _options), ct);
    }

    public void Dispose() { if (_ownsPool) _pool.Dispose(); }
}

/// <summary>N dedicated threads running CPU-bound work items; RunAsync fans a batch out and completes when every
/// item is done (results in input order).</summary>
public sealed class VerificationPool : IDisposable
{
    private readonly BlockingCollection<Action> _queue = new();
    private readonly Thread[] _threads;

    public VerificationPool(int? threads = null)
    {
        int n = Math.Max(1, threads ?? Environment.ProcessorCount);
        _threads = new Thread[n];
        for (int i = 0; i < n; i++)
        {
            _threads[i] = new Thread(Work) { IsBackground = true, Name = $"verify-{i}" };
            _threads[i].Start();
        }
    }

    public int Threads => _threads.Length;

    private void Work()
    {
        foreach (var item in _queue.GetConsumingEnumerable()) item();
    }

    public Task<IReadOnlyList<T>> RunAsync<T>(int count, Func<int, T> work, CancellationToken ct = default)
    {
        if (count == 0) return Task.FromResult<IReadOnlyList<T>>([]);
        var results = new T[count];
        var tcs = new TaskCompletionSource<IReadOnlyList<T>>(TaskCreationOptions.RunContinuationsAsynchronously);
        int remaining = count;
        Exception? failure = null;
        for (int i = 0; i < count; i++)
        {
            int index = i;
            _queue.Add(() =>
            {
                try
                {
                    if (!ct.IsCancellationRequested && failure == null) results[index] = work(index);
                }
                catch (Exception e) { Interlocked.CompareExchange(ref failure, e, null); }
                if (Interlocked.Decrement(ref remaining) == 0)
                {
                    if (failure != null) tcs.TrySetException(failure);
                    else if (ct.IsCancellationRequested) tcs.TrySetCanceled(ct);
                    else tcs.TrySetResult(results);
                }
            }, CancellationToken.None);
        }
        return tcs.Task;
    }

    public void Dispose() => _queue.CompleteAdding();
}
