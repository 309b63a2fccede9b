// The decode step of the generation engine as CUDA graphs (CUDA only, with the native extension): for one (row
// bucket, capacity bucket, sampler settings) it owns a StaticKvCache and output buffers and captures, once, the whole
// step: model.DecodeStatic (embedding, M-RoPE from device positions, masked attention over the cache) → TokenSampler
// with the counter-based uniform of (row, step) computed on the device (CounterRng.UniformTensor) → the token and its
// log-prob stored at the step's column → the next input token, the cache position and the step counter advanced in
// place. One decode step is then one graph replay and nothing on the host. Two graphs share one memory pool: with the
// "early" banned set (stop tokens, before min_new_tokens) and with the "always" set. The graphs read the parameters
// by address, so they stay valid while the trainer updates weights in place (optimizer steps, copy_ from masters).
// Departs from the eager loop: rows are padded to the bucket and never compacted (finished rows decode on until the
// batch ends), and attention reads the whole capacity bucket under a mask rather than only the filled prefix.
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

    public StaticKvCache Cache { get; }
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

    /// <param name="native">The extension to capture with, or null: the step then runs eagerly on every call (same maths).</param>
    public GraphDecodeStep(NativeExtension? native, QwenVLModel model, Key key, SamplingParams sp, IReadOnlyList<long> earlyIds, IReadOnlyList<long> alwaysIds)
    {
        this.model = model;
        this.sp = sp;
        Id = key;
        var dev = model.Device;
        int rows = key.Rows, cap = key.Capacity;
        var clock = Stopwatch.StartNew();
        Cache = new StaticKvCache(model.Config.Text, rows, cap, model.DType, dev);
        OutTokens = torch.zeros([rows, cap], ScalarType.Int64, dev).DetachFromDisposeScope();
        OutLogProbs = torch.zeros([rows, cap], ScalarType.Float32, dev).DetachFromDisposeScope();
        rowPrefix = torch.zeros([rows], ScalarType.Int64, dev).DetachFromDisposeScope();
        step = torch.zeros([1], ScalarType.Int64, dev).DetachFromDisposeScope();
        bannedEarly = Ban(earlyIds, dev);
        bannedAlways = Ban(alwaysIds, dev);
        int device = dev.index < 0 ? 0 : dev.index;
        if (native is not null)
        {
            using var noGrad = torch.no_grad();
            late = CudaGraph.Capture(native, device, () => Body(bannedAlways));
            if (key.TwoPhases) early = CudaGraph.Capture(native, device, () => Body(bannedEarly), sharePoolWith: late);
            torch.cuda.synchronize(dev);
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
    }

    public void Dispose()
    {
        early?.Dispose();
        late?.Dispose();
        Cache.Dispose(); OutTokens.Dispose(); OutLogProbs.Dispose(); rowPrefix.Dispose(); step.Dispose();
        bannedEarly?.Dispose(); bannedAlways?.Dispose();
    }
}
