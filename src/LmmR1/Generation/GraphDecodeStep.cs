// The decode step of the generation engine as CUDA graphs (CUDA only, with the native extension): for one (row
// bucket, capacity bucket, sampler settings) it owns a StaticKvCache and output buffers and captures, once, the whole
// step: model.DecodeStatic (embedding, M-RoPE from device positions, masked attention over the cache) → TokenSampler
// with the counter-based uniform of (row, step) computed on the device (CounterRng.UniformTensor) → the token and its
// log-prob stored at the step's column → the next input token, the cache position and the step counter advanced in
// place. One decode step is then one graph replay and nothing on the host. Two graphs share one memory pool: with the
// "early" banned set (stop tokens, before min_new_tokens) and with the "always" set. The graphs read the parameters
// by address, so they stay valid while the trainer updates weights in place (optimizer steps, copy_ from masters).
// Row compaction (LoadFrom): at a host check the engine moves the live rows of a running step into the step of a
// smaller row bucket of the same capacity and sampler: KV rows up to the filled position, validity, M-RoPE offsets,
// next input token, the cache position, the step counter and each row's RNG prefix, so every row keeps its own random
// stream and the same tokens. Memory: the steps of one capacity bucket do not own their keys/values; they view the
// first rows of one shared StaticKvCache sized for the largest row bucket used at that capacity (the engine's arena),
// so a whole chain of buckets 512 → 384 → … → 1 costs one 512-row KV cache plus, per bucket R, R × capacity × 13 bytes
// (validity, output tokens and log-probs) and the graphs' temporaries, which all steps of a capacity take from one
// shared graph memory pool (they never run at the same time and keep nothing in it between replays). Capture runs
// warm-up steps that write; on a shared arena they are pointed at the running batch's next cache index (written
// before it is read), never at filled positions. Freed rows are not refilled with waiting prompts: a new prompt needs
// a prefill of its own and a cache layout starting at its own index, while every row of a step shares one cache
// position and one step counter (left padding aligns them), and a prompt joining at index p would have only
// capacity − p positions left; refilling needs per-row positions, step counters and RNG steps inside the captured
// step (not done). Departs from the eager loop: rows are padded to the bucket (finished rows decode on until the next
// compaction or the batch's end), and attention reads the whole capacity bucket under a mask rather than only the
// filled prefix.
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
    readonly SamplingParams sp;
    readonly Tensor? bannedEarly, bannedAlways;
    readonly Tensor rowPrefix;      // [R] int64: CounterRng.RowPrefix per row
    readonly Tensor step;           // [1] int64: index of the token the next replay samples
    readonly CudaGraph? early, late;

    /// <summary>Warm-up runs before each capture (and, without graphs, at construction: the same writes).</summary>
    public const int Warmups = 2;

    public StaticKvCache Cache { get; }
    /// <summary>Host copy of Cache.Position: cache indices 0 … Filled−1 hold the running batch's tokens.</summary>
    public long Filled { get; private set; }
    /// <summary>A graph whose memory pool later captures may share (null without graphs).</summary>
    public CudaGraph? Pool => late;
    /// <summary>[R, Capacity] int64 / float32: token and log-prob of step s in column s.</summary>
    public Tensor OutTokens { get; }
    public Tensor OutLogProbs { get; }
    public Key Id { get; }
    public double CaptureSeconds { get; }

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
    /// <param name="sharePool">A graph of another step on the same arena whose memory pool the captures join.</param>
    /// <param name="warmupPosition">Cache index the warm-up steps write (and the next one): the running batch's next
    /// index when a step is created mid-batch on a shared arena, so no filled position is touched.</param>
    public GraphDecodeStep(NativeExtension? native, QwenVLModel model, Key key, SamplingParams sp, IReadOnlyList<long> earlyIds, IReadOnlyList<long> alwaysIds,
                           StaticKvCache storage, CudaGraph? sharePool = null, long warmupPosition = 0)
    {
        this.model = model;
        this.sp = sp;
        Id = key;
        var dev = model.Device;
        int rows = key.Rows, cap = key.Capacity;
        var clock = Stopwatch.StartNew();
        if (storage.Capacity != cap || storage.Rows < rows)
            throw new ArgumentException($"KV arena {storage.Rows}×{storage.Capacity} cannot hold bucket {rows}×{cap}");
        if (warmupPosition < 0 || warmupPosition + Warmups > cap)
            throw new ArgumentException($"warm-up position {warmupPosition} leaves no room for {Warmups} warm-up steps in capacity {cap}");
        Cache = new StaticKvCache(storage, rows);
        OutTokens = torch.zeros([rows, cap], ScalarType.Int64, dev).DetachFromDisposeScope();
        OutLogProbs = torch.zeros([rows, cap], ScalarType.Float32, dev).DetachFromDisposeScope();
        rowPrefix = torch.zeros([rows], ScalarType.Int64, dev).DetachFromDisposeScope();
        step = torch.zeros([1], ScalarType.Int64, dev).DetachFromDisposeScope();
        bannedEarly = Ban(earlyIds, dev);
        bannedAlways = Ban(alwaysIds, dev);
        int device = dev.index < 0 ? 0 : dev.index;
        using (torch.no_grad())
        {
            Cache.Position.FillAllS_(warmupPosition);
            if (native is not null)
            {
                late = CudaGraph.Capture(native, device, () => Body(bannedAlways), Warmups, sharePoolWith: sharePool);
                Cache.Position.FillAllS_(warmupPosition);
                if (key.TwoPhases) early = CudaGraph.Capture(native, device, () => Body(bannedEarly), Warmups, sharePoolWith: late);
                torch.cuda.synchronize(dev);
            }
            else
            {
                // Without graphs: the warm-ups' writes all the same, so CPU tests see what a capture does to a shared arena.
                for (int i = 0; i < Warmups; i++) Body(bannedAlways);
                Cache.Position.FillAllS_(warmupPosition);
                if (key.TwoPhases) for (int i = 0; i < Warmups; i++) Body(bannedEarly);
            }
        }
        CaptureSeconds = clock.Elapsed.TotalSeconds;
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

    /// <summary>Queues decode step s (≥ 1): one graph launch.</summary>
    public void Run(int s)
    {
        bool isEarly = s < sp.MinNewTokens && Id.TwoPhases;
        if (late is null)
        {
            using var noGrad = torch.no_grad();
            Body(isEarly ? bannedEarly : bannedAlways);
        }
        else (isEarly ? early! : late).Replay();
        Filled++;
    }

    public void Dispose()
    {
        early?.Dispose();
        late?.Dispose();
        Cache.Dispose(); OutTokens.Dispose(); OutLogProbs.Dispose(); rowPrefix.Dispose(); step.Dispose();
        bannedEarly?.Dispose(); bannedAlways?.Dispose();
    }
}
