// The decode step of the generation engine as CUDA graphs (CUDA only, with the native extension): for one (row
// bucket, capacity bucket, sampler settings) it owns a StaticKvCache and output buffers and captures, once, the whole
// step: model.DecodeStatic (embedding, M-RoPE from device positions, masked attention over the cache) → TokenSampler
// with the counter-based uniform of (row, step) computed on the device (CounterRng.UniformTensor) → the token and its
// log-prob stored at the step's column → the next input token, the cache position and the step counter advanced in
// place. One decode step is then one graph replay and nothing on the host. Attention windows: attention reads the
// cache's first W positions, W the filled prefix rounded up to a multiple of the window step (128 by default), so a
// step owns one graph per window it reaches, captured when the batch first needs it (mid-batch: the capture's warm-up
// writes are undone, below); the tokens are the same as over the whole capacity, the positions beyond W being masked
// anyway. Per window two graphs: with the "early" banned set (stop tokens, before min_new_tokens) and with the
// "always" set. All graphs of a capacity share one memory pool. The graphs read the parameters by address, so they
// stay valid while the trainer updates weights in place (optimizer steps, copy_ from masters).
// Row compaction (LoadFrom): at a host check the engine moves the live rows of a running step into the step of a
// smaller row bucket of the same capacity and sampler: KV rows up to the filled position, validity, M-RoPE offsets,
// next input token, the cache position, the step counter and each row's RNG prefix, so every row keeps its own random
// stream and the same tokens. Memory: the steps of one capacity bucket do not own their keys/values; they view the
// first rows of one shared StaticKvCache sized for the largest row bucket used at that capacity (the engine's arena),
// so a whole chain of buckets 512 → 384 → … → 1 costs one 512-row KV cache plus, per bucket R, R × capacity × 13 bytes
// (validity, output tokens and log-probs) and the graphs' temporaries, which all steps of a capacity take from one
// shared graph memory pool (they never run at the same time and keep nothing in it between replays). Capture runs
// warm-up steps that write: they run at the batch's next cache index (moved back to stay inside the capacity), and
// what they change — validity, tokens, outputs, counters and the keys/values at the indices they wrote — is put back
// before the first replay, so a capture never disturbs the running batch. Freed rows are not refilled with waiting
// prompts: a new prompt needs a prefill of its own and a cache layout starting at its own index, while every row of a
// step shares one cache position and one step counter (left padding aligns them), and a prompt joining at index p
// would have only capacity − p positions left; refilling needs per-row positions, step counters and RNG steps inside
// the captured step (not done). Departs from the eager loop: rows are padded to the bucket (finished rows decode on until the next
// compaction or the batch's end), and attention reads the window under a mask rather than exactly the filled prefix.
using System.Diagnostics;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Generation;

internal sealed class GraphDecodeStep : IDisposable
{
    /// <summary>What a captured step depends on besides the model: bucket shape and sampler constants.</summary>
    public readonly record struct Key(int Rows, int Capacity, double Temperature, double TopP, int TopK, double MinP,
                                      string BannedEarly, string BannedAlways, bool TwoPhases);

    readonly QwenVLModel model;
    readonly NativeExtension? native;
    readonly SamplingParams sp;
    readonly Tensor? bannedEarly, bannedAlways;
    readonly Tensor rowPrefix;      // [R] int64: CounterRng.RowPrefix per row
    readonly Tensor step;           // [1] int64: index of the token the next replay samples
    readonly int windowStep;
    readonly GraphPool pool;
    // Per attention window: the graphs with the "always" and (TwoPhases) the "early" banned set; without the native
    // extension the window is only recorded (the step then runs eagerly on every call, same maths).
    readonly Dictionary<int, (CudaGraph? Late, CudaGraph? Early)> windows = [];

    /// <summary>Warm-up runs before each capture (without graphs, the same runs on a window's first use).</summary>
    public const int Warmups = 2;

    public StaticKvCache Cache { get; }
    /// <summary>Host copy of Cache.Position: cache indices 0 … Filled−1 hold the running batch's tokens.</summary>
    public long Filled { get; private set; }
    /// <summary>[R, Capacity] int64 / float32: token and log-prob of step s in column s.</summary>
    public Tensor OutTokens { get; }
    public Tensor OutLogProbs { get; }
    public Key Id { get; }

    /// <summary>The memory pool the graphs of one capacity share: the first graph captured on it lends its pool.</summary>
    internal sealed class GraphPool
    {
        public CudaGraph? First { get; set; }
    }

    /// <summary>The attention window for a step writing cache index <paramref name="filled"/>: filled + 1 positions
    /// rounded up to a multiple of <paramref name="windowStep"/>, at most the capacity (0: the capacity).</summary>
    public static int WindowFor(long filled, int capacity, int windowStep) =>
        windowStep <= 0 ? capacity : (int)Math.Min(capacity, (filled + windowStep) / windowStep * windowStep);

    public static int RowBucket(int rows)
    {
        // 1, 2, 4, 8, then steps of ×1.5 / ×4/3 alternately: 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, ...
        if (rows <= 8) return (int)Math.Max(1, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)rows));
        int p = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)rows);
        return rows <= p / 4 * 3 ? p / 4 * 3 : p;
    }

    /// <summary>Capacities in multiples of 64 positions (masked attention reads the whole bucket).</summary>
    public static int CapacityBucket(int capacity) => (capacity + 63) / 64 * 64;

    public static Key KeyFor(int rows, int capacity, SamplingParams sp, IReadOnlyList<long> early, IReadOnlyList<long> always) =>
        new(RowBucket(rows), CapacityBucket(capacity), sp.Temperature, sp.TopP, sp.TopK, sp.MinP,
            string.Join(',', early.Distinct().Order()), string.Join(',', always.Distinct().Order()), sp.MinNewTokens > 1);

    /// <summary>
    /// The compaction rule: at a check with <paramref name="live"/> unfinished rows in a step of <paramref name="bucket"/>
    /// rows, move them to the bucket RowBucket(live) when that is smaller and saves at least <paramref name="fraction"/>
    /// of the step's rows (1 − new/old ≥ fraction; every smaller bucket saves ≥ 1/4, so the default 0.25 compacts
    /// whenever the live rows fit a smaller bucket, and a fraction above 1 never does). Returns the new bucket or null.
    /// </summary>
    public static int? CompactTo(int live, int bucket, double fraction)
    {
        if (live <= 0) return null;
        int to = RowBucket(live);
        return to < bucket && 1.0 - (double)to / bucket >= fraction ? to : null;
    }

    /// <param name="native">The extension to capture with, or null: the step then runs eagerly on every call (same maths).</param>
    /// <param name="storage">The KV arena of this capacity (≥ key.Rows rows); the step's cache views its first rows.</param>
    /// <param name="pool">The graph memory pool of the arena, shared by every step on it.</param>
    /// <param name="windowStep">Attention windows in multiples of this many positions; 0 = the whole capacity.</param>
    public GraphDecodeStep(NativeExtension? native, QwenVLModel model, Key key, SamplingParams sp, IReadOnlyList<long> earlyIds, IReadOnlyList<long> alwaysIds,
                           StaticKvCache storage, GraphPool pool, int windowStep)
    {
        this.model = model;
        this.native = native;
        this.sp = sp;
        this.pool = pool;
        this.windowStep = windowStep;
        Id = key;
        var dev = model.Device;
        int rows = key.Rows, cap = key.Capacity;
        if (storage.Capacity != cap || storage.Rows < rows)
            throw new ArgumentException($"KV arena {storage.Rows}×{storage.Capacity} cannot hold bucket {rows}×{cap}");
        if (cap < Warmups) throw new ArgumentException($"capacity {cap} leaves no room for {Warmups} warm-up steps");
        Cache = new StaticKvCache(storage, rows);
        OutTokens = torch.zeros([rows, cap], ScalarType.Int64, dev).DetachFromDisposeScope();
        OutLogProbs = torch.zeros([rows, cap], ScalarType.Float32, dev).DetachFromDisposeScope();
        rowPrefix = torch.zeros([rows], ScalarType.Int64, dev).DetachFromDisposeScope();
        step = torch.zeros([1], ScalarType.Int64, dev).DetachFromDisposeScope();
        bannedEarly = Ban(earlyIds, dev);
        bannedAlways = Ban(alwaysIds, dev);
    }

    /// <summary>Makes the graphs of attention window <paramref name="window"/> (warm-ups, then capture) at the running
    /// batch's state and puts back everything the warm-ups changed. Returns the seconds it took.</summary>
    double CaptureWindow(int window)
    {
        var clock = Stopwatch.StartNew();
        var dev = model.Device;
        int device = dev.index < 0 ? 0 : dev.index;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        // The warm-ups write cache indices p and p + 1 (and set them valid), sample into columns step, step + 1 and move
        // the input tokens, position and counter: all of it is saved here and restored after.
        long p = Math.Min(Filled, Id.Capacity - Warmups);
        var state = new[] { Cache.KeyValid, Cache.Position, Cache.InputTokens, step, OutTokens, OutLogProbs };
        var saved = state.Select(t => t.clone()).ToArray();
        var kv = Enumerable.Range(0, model.Config.Text.NumLayers).Select(i =>
        {
            var (k, v) = Cache.LayerTensors(i);
            return (k.narrow(2, p, Warmups).clone(), v.narrow(2, p, Warmups).clone());
        }).ToArray();
        Cache.Window = window;
        CudaGraph? late = null, early = null;
        try
        {
            Cache.Position.FillAllS_(p);
            if (native is not null)
            {
                late = CudaGraph.Capture(native, device, () => Body(bannedAlways), Warmups, sharePoolWith: pool.First);
                pool.First ??= late;
                Cache.Position.FillAllS_(p);
                if (Id.TwoPhases) early = CudaGraph.Capture(native, device, () => Body(bannedEarly), Warmups, sharePoolWith: pool.First);
                torch.cuda.synchronize(dev);
            }
            else
            {
                // Without graphs: the warm-ups' writes all the same, so CPU tests check that they are undone.
                for (int i = 0; i < Warmups; i++) Body(bannedAlways);
                Cache.Position.FillAllS_(p);
                if (Id.TwoPhases) for (int i = 0; i < Warmups; i++) Body(bannedEarly);
            }
        }
        catch
        {
            late?.Dispose(); early?.Dispose();
            throw;
        }
        finally
        {
            for (int i = 0; i < state.Length; i++) state[i].copy_(saved[i]);
            for (int i = 0; i < kv.Length; i++)
            {
                var (k, v) = Cache.LayerTensors(i);
                k.narrow(2, p, Warmups).copy_(kv[i].Item1);
                v.narrow(2, p, Warmups).copy_(kv[i].Item2);
            }
        }
        windows[window] = (late, early);
        return clock.Elapsed.TotalSeconds;
    }

    static Tensor? Ban(IReadOnlyList<long> ids, Device dev) =>
        ids.Count == 0 ? null : torch.tensor(ids.Distinct().Order().ToArray(), device: dev).DetachFromDisposeScope();

    /// <summary>The captured work. Reads and writes only the static tensors above and the model's parameters.</summary>
    void Body(Tensor? banned)
    {
        using var scope = torch.NewDisposeScope();
        var logits = model.DecodeStatic(Cache);                                        // [R, V]
        var u = CounterRng.UniformTensor(rowPrefix, step);                             // [R]
        var (tok, lp) = TokenSampler.Sample(logits, u, sp, banned);
        OutTokens.index_copy_(1, step, tok.unsqueeze(1));
        OutLogProbs.index_copy_(1, step, lp.unsqueeze(1));
        Cache.InputTokens.copy_(tok.unsqueeze(1));
        Cache.Position.add_(TorchScalars.One, TorchScalars.One);   // add_(1): the int 1 and TorchSharp's alpha 1, rooted
        step.add_(TorchScalars.One, TorchScalars.One);
    }

    /// <summary>Loads a micro-batch: the prefilled cache (source rows per live row), the tokens of step 0 (sampled
    /// eagerly from the prefill logits) and the rows' random-stream prefixes. Step 1 is next.</summary>
    public void Load(KvCache prefilled, Tensor sourceRows, Tensor firstTokens, Tensor firstLogProbs, long[] prefixes)
    {
        using var scope = torch.NewDisposeScope();
        int live = prefixes.Length;
        Cache.Load(prefilled, sourceRows);
        using (torch.no_grad())
        {
            Cache.InputTokens.zero_();
            Cache.InputTokens.narrow(0, 0, live).copy_(firstTokens.view(live, 1));
            OutTokens.narrow(0, 0, live).narrow(1, 0, 1).copy_(firstTokens.view(live, 1));
            OutLogProbs.narrow(0, 0, live).narrow(1, 0, 1).copy_(firstLogProbs.view(live, 1));
            var pre = new long[Id.Rows];
            Array.Copy(prefixes, pre, live);
            rowPrefix.copy_(torch.tensor(pre, device: model.Device));
            step.fill_(TorchScalars.One);
        }
        Filled = prefilled.Length;
    }

    /// <summary>Compaction: takes the rows <paramref name="keep"/> ([L] int64, ascending) of the running step
    /// <paramref name="src"/> (same capacity and sampler, larger bucket) as rows 0 … L−1, with their cache, next tokens,
    /// RNG prefixes and the step counter, so the next Run continues every row exactly where src left it.</summary>
    public void LoadFrom(GraphDecodeStep src, Tensor keep)
    {
        using var scope = torch.NewDisposeScope();
        long live = keep.shape[0];
        if (src.Id with { Rows = Id.Rows } != Id) throw new ArgumentException("compaction needs steps of the same capacity and sampler");
        Cache.LoadRows(src.Cache, keep, src.Filled);
        using (torch.no_grad())
        {
            var idx = keep.to(ScalarType.Int64, rowPrefix.device);
            rowPrefix.zero_();
            rowPrefix.narrow(0, 0, live).copy_(src.rowPrefix.index_select(0, idx));
            step.copy_(src.step);
        }
        Filled = src.Filled;
    }

    /// <summary>Captures every attention window from the running batch's up to the capacity that this step has not yet
    /// (GenerationEngine.WarmUp: each window's first capture paid before the call that reaches it).</summary>
    public void CaptureRemainingWindows(GenerationStats stats)
    {
        for (int w = WindowFor(Filled, Id.Capacity, windowStep); ; w = WindowFor(w, Id.Capacity, windowStep))
        {
            if (!windows.ContainsKey(w))
            {
                stats.GraphCaptureSeconds += CaptureWindow(w);
                stats.GraphCaptures++;
            }
            if (w >= Id.Capacity) break;
        }
    }

    /// <summary>Queues decode step s (≥ 1): one graph launch (after capturing its attention window's graphs when this is
    /// the first step that needs them; <paramref name="stats"/> counts the capture).</summary>
    public void Run(int s, GenerationStats stats)
    {
        bool isEarly = s < sp.MinNewTokens && Id.TwoPhases;
        int window = WindowFor(Filled, Id.Capacity, windowStep);
        if (!windows.ContainsKey(window))
        {
            stats.GraphCaptureSeconds += CaptureWindow(window);
            stats.GraphCaptures++;
        }
        var (late, early) = windows[window];
        if (late is null)
        {
            using var noGrad = torch.no_grad();
            Cache.Window = window;
            Body(isEarly ? bannedEarly : bannedAlways);
        }
        else (isEarly ? early! : late).Replay();
        Filled++;
    }

    public void Dispose()
    {
        foreach (var (late, early) in windows.Values) { early?.Dispose(); late?.Dispose(); }
        windows.Clear();
        Cache.Dispose(); OutTokens.Dispose(); OutLogProbs.Dispose(); rowPrefix.Dispose(); step.Dispose();
        bannedEarly?.Dispose(); bannedAlways?.Dispose();
    }
}
