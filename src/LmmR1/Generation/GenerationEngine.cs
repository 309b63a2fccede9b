// Batched in-process sampling for Qwen VL models (the rollout engine; LMM-R1 uses vLLM). Per micro-batch: prefill each
// prompt once (vision tower included, unless the prompts bring their cached embeddings) into a preallocated KV cache, replicate its rows for the n samples
// (KvCache.SelectRows), then decode all rows together. The host sees tokens only every CheckEvery steps (one small
// device→host copy), detects finished samples there and drops them from the batch when enough have finished.
// On CUDA with the native extension the decode runs on captured steps (GraphDecodeStep) padded to row buckets; there,
// at a check, the live rows move into the step of a smaller bucket when they fit one (GraphDecodeStep.CompactTo).
// Departures from vLLM: no paged attention or continuous batching (a micro-batch runs until its rows finish; freed
// rows are not refilled with waiting prompts: a new prompt needs its own prefill and cache positions, while all rows of
// a static step share one cache index and one step counter, so refilling would need per-row positions and counters in
// the captured step), and the random draw of (seed, prompt key, sample, step) is fixed (CounterRng), so outputs do not
// depend on the batching.
using System.Diagnostics;
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Generation;

public sealed class GenerationEngine : IDisposable
{
    readonly QwenVLModel model;
    // Captured decode steps by (row bucket, capacity bucket, sampler); kept across Generate calls (rollouts).
    readonly Dictionary<GraphDecodeStep.Key, GraphDecodeStep> graphs = [];
    // Per capacity bucket: the KV cache that every step of that capacity views (sized for the largest row bucket so
    // far) and the graph whose memory pool their captures share.
    readonly Dictionary<int, (StaticKvCache Kv, GraphDecodeStep.GraphPool Pool)> arenas = [];

    public GenerationEngine(QwenVLModel model, GenerationEngineOptions? options = null)
    {
        this.model = model;
        Options = options ?? new GenerationEngineOptions();
        Options.Validate();
    }

    public GenerationEngineOptions Options { get; }
    public QwenVLModel Model => model;
    /// <summary>Decode steps captured so far (one per (row bucket, capacity bucket, sampler settings)).</summary>
    public int CapturedGraphs => graphs.Count;

    /// <summary>Frees the captured graphs and their static KV caches (the next CUDA Generate captures again).</summary>
    public void ReleaseGraphs()
    {
        foreach (var g in graphs.Values) g.Dispose();
        graphs.Clear();
        foreach (var a in arenas.Values) a.Kv.Dispose();
        arenas.Clear();
    }

    /// <summary>The step for <paramref name="key"/>, captured on first use. A row bucket larger than its capacity's arena
    /// replaces the arena (the steps on the old one are released and captured again when next used).</summary>
    GraphDecodeStep Step(NativeExtension? native, GraphDecodeStep.Key key, SamplingParams sp, (List<long> Early, List<long> Always) bans,
                         GraphDecodeStep? running)
    {
        if (graphs.TryGetValue(key, out var g)) return g;
        if (!arenas.TryGetValue(key.Capacity, out var arena) || arena.Kv.Rows < key.Rows)
        {
            if (running is not null) throw new InvalidOperationException("a running batch cannot grow its KV arena");
            foreach (var k in graphs.Keys.Where(k => k.Capacity == key.Capacity).ToList())
            {
                graphs[k].Dispose();
                graphs.Remove(k);
            }
            arena.Kv?.Dispose();
            arena = (new StaticKvCache(model.Config.Text, key.Rows, key.Capacity, model.DType, model.Device), new GraphDecodeStep.GraphPool());
        }
        // decode_attention reads the valid keys up to the position whatever the window: one graph per bucket then.
        g = new GraphDecodeStep(native, model, key, sp, bans.Early, bans.Always, arena.Kv, arena.Pool, model.UsesFusedAttention ? 0 : Options.AttentionWindow);
        arenas[key.Capacity] = arena;
        graphs[key] = g;
        return g;
    }

    public void Dispose() => ReleaseGraphs();

    /// <summary>Whether decode steps run as CUDA graphs: a CUDA model, the option on, and the native extension loaded.</summary>
    bool UseGraphs(out NativeExtension? native)
    {
        native = null;
        if (Options.StaticStepWithoutGraph) return true;
        if (!Options.CudaGraphs || model.Device.type != DeviceType.CUDA) return false;
        native = NativeExtension.TryGet();
        return native is not null;
    }
    /// <summary>Counters of the last <see cref="Generate"/> call.</summary>
    public GenerationStats LastStats { get; private set; } = new();

    /// <summary>A part of one prompt's samples that runs in a micro-batch.</summary>
    public readonly record struct WorkUnit(int Prompt, int FirstSample, int Count);

    /// <summary>
    /// Generates <c>sampling.N</c> samples for every prompt. Returns them prompt-major: index = prompt · N + sample.
    /// </summary>
    /// <param name="detokenize">Token ids → text; needed only for stop strings.</param>
    /// <param name="progress">Called after every check of finished samples.</param>
    public IReadOnlyList<GenerationOutput> Generate(IReadOnlyList<GenerationPrompt> prompts, SamplingParams sampling,
        Func<IReadOnlyList<int>, string>? detokenize = null, Action<GenerationProgress>? progress = null,
        CancellationToken cancel = default)
    {
        int vocab = model.Config.Text.VocabSize;
        sampling.Validate(vocab);
        if (sampling.StopStrings.Count > 0 && detokenize is null)
            throw new InputException("stop strings need a detokenizer");
        for (int i = 0; i < prompts.Count; i++) ValidatePrompt(prompts[i], i, vocab);

        var stats = new GenerationStats();
        LastStats = stats;
        var outputs = new GenerationOutput?[(long)prompts.Count * sampling.N];
        var plan = Plan(prompts.Select(p => p.TokenIds.Count).ToArray(), sampling.N, sampling.MaxNewTokens, Options);

        var run = new RunState(prompts.Count, sampling.N, progress);

        using var noGrad = torch.no_grad();
        // Tokens banned at every step, and at the steps before min_new_tokens (those plus the stop tokens).
        var always = sampling.BannedTokenIds.Select(t => (long)t).ToList();
        if (Options.BanVisionPadTokens)
            always.AddRange(new[] { model.Config.Tokens.ImageTokenId, model.Config.Tokens.VideoTokenId }.Where(t => t >= 0 && t < vocab));
        var early = sampling.MinNewTokens > 0 ? always.Concat(sampling.StopTokenIds.Select(t => (long)t)).ToList() : always;
        using var bannedAlways = BanTensor(always);
        using var bannedEarly = BanTensor(early);
        var bans = (Early: early.Distinct().Order().ToList(), Always: always.Distinct().Order().ToList());
        foreach (var batch in plan)
        {
            cancel.ThrowIfCancellationRequested();
            RunBatch(prompts, batch, sampling, bannedAlways, bannedEarly, bans, detokenize, outputs, stats, run, cancel);
        }
        return outputs.Select(o => o!).ToArray();
    }

    // Set only while WarmUp runs: the decode steps after which each micro-batch stops.
    int? warmUpSteps;

    /// <summary>
    /// A warm-up of <c>Generate(prompts, sampling)</c>: the same plan, prefills, row and capacity buckets, but each
    /// micro-batch stops after <paramref name="steps"/> decode steps (its rows end there, FinishReason.Length), and on
    /// the graph path its step first captures every attention window it would reach later, so that the first use of
    /// each window's kernel shapes happens here, not in the call it warms up. Returns the partial outputs; the graphs
    /// stay held like any call's (ReleaseGraphs frees them). Buckets a later compaction would move to are not warmed.
    /// </summary>
    public IReadOnlyList<GenerationOutput> WarmUp(IReadOnlyList<GenerationPrompt> prompts, SamplingParams sampling, int steps,
        Func<IReadOnlyList<int>, string>? detokenize = null, CancellationToken cancel = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        warmUpSteps = steps;
        try { return Generate(prompts, sampling, detokenize, null, cancel); }
        finally { warmUpSteps = null; }
    }

    /// <summary>Ends the unfinished rows of a micro-batch cut short by <see cref="WarmUp"/> (as at max_new_tokens).</summary>
    static void CutShort(List<Row> live, SamplingParams sp, GenerationOutput?[] outputs, GenerationStats stats, RunState run)
    {
        foreach (var row in live.Where(r => !r.Finished)) Finish(row, FinishReason.Length, null, null, sp, outputs, stats, run);
    }

    /// <summary>Marks <paramref name="row"/> finished and stores its output.</summary>
    static void Finish(Row row, FinishReason reason, int? stopToken, string? stopString, SamplingParams sp, GenerationOutput?[] outputs,
                       GenerationStats stats, RunState run)
    {
        row.Finished = true;
        outputs[(long)row.Prompt * sp.N + row.Sample] = new GenerationOutput
        {
            PromptIndex = row.Prompt, SampleIndex = row.Sample, PromptLength = row.PromptLength,
            TokenIds = [.. row.Tokens], LogProbs = [.. row.LogProbs], Finish = reason,
            StopTokenId = stopToken, StopString = stopString,
        };
        stats.OutputTokens += row.Tokens.Count;
        run.SampleDone(row.Prompt);
    }

    Tensor? BanTensor(List<long> ids) =>
        ids.Count == 0 ? null : torch.tensor(ids.Distinct().Order().ToArray(), device: model.Device).DetachFromDisposeScope();

    static void ValidatePrompt(GenerationPrompt p, int i, int vocab)
    {
        if (p.TokenIds.Count == 0) throw new InputException($"prompt {i} has no tokens");
        foreach (int t in p.TokenIds)
            if (t < 0 || t >= vocab) throw new InputException($"prompt {i}: token id {t} is outside the model's vocabulary (0..{vocab - 1})");
        if ((p.PixelValues is null) != (p.ImageGridThw is null))
            throw new InputException($"prompt {i}: pixel_values and image_grid_thw must be given together");
    }

    /// <summary>
    /// Splits the work into micro-batches in prompt order. A prompt's samples stay together unless they alone exceed an
    /// empty micro-batch; then they are split (each part prefills the prompt again). Budgets: rows, KV positions
    /// (rows × (longest prompt + maxNew)), prefill tokens (prompts × longest prompt) and prompts per batch.
    /// </summary>
    public static List<List<WorkUnit>> Plan(IReadOnlyList<int> promptLengths, int n, int maxNew, GenerationEngineOptions o)
    {
        var batches = new List<List<WorkUnit>>();
        var cur = new List<WorkUnit>();
        int rows = 0, longest = 0;

        // How many more rows of a prompt of length len fit into the current batch (−1: the prompt itself does not fit).
        int Room(int len)
        {
            int l = Math.Max(longest, len);
            if (o.MaxPromptsPerBatch > 0 && cur.Count >= o.MaxPromptsPerBatch) return -1;
            if (o.SharePrefix && o.MaxPrefillTokens > 0 && (long)(cur.Count + 1) * l > o.MaxPrefillTokens && cur.Count > 0) return -1;
            long room = o.MaxRowsPerBatch - rows;
            if (o.MaxTokensPerBatch > 0) room = Math.Min(room, o.MaxTokensPerBatch / (l + maxNew) - rows);
            // Without prefix sharing every row is prefilled (vision tower included), so the prefill budget bounds rows.
            if (!o.SharePrefix && o.MaxPrefillTokens > 0) room = Math.Min(room, o.MaxPrefillTokens / l - rows);
            return (int)Math.Max(room, cur.Count == 0 ? 1 : 0);  // an empty batch always takes one row
        }
        void Close()
        {
            if (cur.Count > 0) batches.Add(cur);
            cur = []; rows = 0; longest = 0;
        }

        for (int p = 0; p < promptLengths.Count; p++)
        {
            int len = promptLengths[p], done = 0;
            if (cur.Count > 0 && Room(len) < n) Close();               // keep a prompt's samples in one batch if they fit
            while (done < n)
            {
                int take = Math.Min(n - done, Room(len));
                if (take <= 0) { Close(); continue; }
                cur.Add(new WorkUnit(p, done, take));
                rows += take; longest = Math.Max(longest, len); done += take;
                if (done < n) Close();
            }
        }
        Close();
        return batches;
    }

    /// <summary>Per-call bookkeeping shared by the micro-batches (progress counts).</summary>
    sealed class RunState(int prompts, int n, Action<GenerationProgress>? progress)
    {
        readonly int[] samplesLeft = Enumerable.Repeat(n, prompts).ToArray();
        int promptsDone;
        long samplesDone, tokens;

        public void SampleDone(int prompt)
        {
            samplesDone++;
            if (--samplesLeft[prompt] == 0) promptsDone++;
        }
        public void Tokens(long count) => tokens += count;
        public void Report() => progress?.Invoke(new GenerationProgress(promptsDone, prompts, samplesDone, (long)prompts * n, tokens));
    }

    /// <summary>A sample being decoded: its place in the output and what it has produced so far.</summary>
    sealed class Row(int prompt, int sample, long key, int promptLength)
    {
        public readonly int Prompt = prompt, Sample = sample, PromptLength = promptLength;
        public readonly long Key = key;
        public readonly List<int> Tokens = [];
        public readonly List<float> LogProbs = [];
        public bool Finished;
    }

    void RunBatch(IReadOnlyList<GenerationPrompt> prompts, List<WorkUnit> units, SamplingParams sp, Tensor? bannedAlways, Tensor? bannedEarly,
                  (List<long> Early, List<long> Always) bans, Func<IReadOnlyList<int>, string>? detokenize, GenerationOutput?[] outputs, GenerationStats stats, RunState run,
                  CancellationToken cancel)
    {
        var dev = model.Device;
        var clock = Stopwatch.StartNew();
        if (!Options.SharePrefix)
            units = units.SelectMany(u => Enumerable.Range(u.FirstSample, u.Count).Select(s => new WorkUnit(u.Prompt, s, 1))).ToList();
        int p = units.Count;
        int maxLen = units.Max(u => prompts[u.Prompt].TokenIds.Count);
        int capacity = maxLen + sp.MaxNewTokens;
        var rows = new List<Row>();
        var rowUnit = new List<long>();
        for (int i = 0; i < p; i++)
        {
            var u = units[i];
            var prompt = prompts[u.Prompt];
            for (int s = u.FirstSample; s < u.FirstSample + u.Count; s++)
            {
                rows.Add(new Row(u.Prompt, s, prompt.Key ?? u.Prompt, prompt.TokenIds.Count));
                rowUnit.Add(i);
            }
        }
        stats.MicroBatches++;
        stats.MaxRows = Math.Max(stats.MaxRows, rows.Count);
        stats.MaxCapacity = Math.Max(stats.MaxCapacity, capacity);
        stats.PrefillTokens += units.Sum(u => (long)prompts[u.Prompt].TokenIds.Count);

        var checker = new StopChecker(sp, detokenize);
        bool graph = UseGraphs(out var native) && sp.MaxNewTokens > 1;
        using var cache = model.CreateCache(p, capacity);
        Tensor? sourceRows = null;
        Tensor? prev = null, logits = null, chunk = null;
        var pendTok = new List<Tensor>();
        var pendLp = new List<Tensor>();
        try
        {
            // ---- prefill (left-padded prompts, images in row order) and replication to one row per sample
            using (var scope = torch.NewDisposeScope())
            {
                var (ids, mask, pix, grid, embeds) = Collate(prompts, units, maxLen);
                using var o = model.Forward(ids, mask, embeds is null ? pix : null, grid, embeds, cache: cache, logitsForLast: 1);
                var last = o.Logits!.squeeze(1);                                                     // [P, V]
                if (rows.Count != p || rowUnit.Where((u, i) => u != i).Any())
                {
                    var rep = torch.tensor(rowUnit.ToArray(), device: dev);
                    if (!graph) cache.SelectRows(rep);                  // the graph path copies rows into its static cache
                    last = last.index_select(0, rep);                                                // [B, V]
                }
                if (graph) sourceRows = torch.tensor(rowUnit.ToArray(), device: dev).DetachFromDisposeScope();
                logits = last.DetachFromDisposeScope();
            }
            Synchronize(dev);
            stats.PrefillSeconds += clock.Elapsed.TotalSeconds;
            clock.Restart();

            if (graph)
            {
                DecodeGraph(native, rows, cache, sourceRows!, logits!, sp, sp.MinNewTokens > 0 ? bannedEarly : bannedAlways, bans, checker, outputs, stats, run, cancel);
                return;
            }

            // ---- decode
            var live = rows;                       // rows in the order of the running batch
            int s0 = 0, chunkLen = 0;
            for (int s = 0; s < sp.MaxNewTokens; s++)
            {
                if (s == s0)
                {
                    chunkLen = Math.Min(Options.CheckEvery, sp.MaxNewTokens - s0);
                    chunk?.Dispose();
                    chunk = Uniforms(live, sp, s0, chunkLen, dev);                                  // [chunkLen, B]
                }
                using (var scope = torch.NewDisposeScope())
                {
                    if (s > 0)
                    {
                        using var o = model.Forward(prev!, cache: cache, logitsForLast: 1);
                        logits = o.Logits!.squeeze(1).DetachFromDisposeScope();
                    }
                    var (tok, lp) = TokenSampler.Sample(logits!, chunk![s - s0], sp, s < sp.MinNewTokens ? bannedEarly : bannedAlways);
                    logits!.Dispose(); logits = null;
                    pendTok.Add(tok.DetachFromDisposeScope());
                    pendLp.Add(lp.DetachFromDisposeScope());
                    prev?.Dispose();
                    prev = tok.unsqueeze(1).DetachFromDisposeScope();                              // [B, 1] next input
                }
                stats.DecodeSteps++;
                stats.RowSteps += live.Count;
                if (s + 1 - s0 < chunkLen) continue;

                // ---- check: the only device→host transfer of the loop
                cancel.ThrowIfCancellationRequested();
                stats.Checks++;
                long[] toks; float[] lps;
                using (var scope = torch.NewDisposeScope())
                {
                    toks = torch.stack(pendTok, 1).cpu().data<long>().ToArray();                     // [B, chunkLen]
                    lps = torch.stack(pendLp, 1).cpu().data<float>().ToArray();
                }
                foreach (var t in pendTok) t.Dispose();
                foreach (var t in pendLp) t.Dispose();
                pendTok.Clear(); pendLp.Clear();

                int finishedInBatch = AddChunk(live, toks, lps, chunkLen, checker, sp, outputs, stats, run);
                s0 = s + 1;
                if (finishedInBatch == live.Count) break;
                if (warmUpSteps is int w && s0 >= w)
                {
                    CutShort(live, sp, outputs, stats, run);
                    break;
                }
                if (finishedInBatch > 0 && finishedInBatch >= Options.CompactFraction * live.Count)
                {
                    // Drop finished rows: one copy of the KV cache, after which every step costs only the live rows.
                    var keep = Enumerable.Range(0, live.Count).Where(r => !live[r].Finished).Select(r => (long)r).ToArray();
                    using var keepT = torch.tensor(keep, device: dev);
                    cache.SelectRows(keepT);
                    var np = prev!.index_select(0, keepT).DetachFromDisposeScope();
                    prev.Dispose(); prev = np;
                    live = keep.Select(r => live[(int)r]).ToList();
                    stats.Compactions++;
                }
            }
            if (live.Any(r => !r.Finished)) throw new InvalidOperationException("generation ended with unfinished rows");
        }
        finally
        {
            prev?.Dispose(); logits?.Dispose(); chunk?.Dispose(); sourceRows?.Dispose();
            foreach (var t in pendTok) t.Dispose();
            foreach (var t in pendLp) t.Dispose();
        }
        stats.DecodeSeconds += clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// The decode loop on a captured step (see GraphDecodeStep): step 0 is sampled eagerly from the prefill logits, then
    /// every step is one graph replay; every CheckEvery steps the host reads the new columns of the output buffers (the
    /// only sync) and finishes rows exactly as the eager loop does. Compaction: at a check, when the live rows fit a
    /// smaller row bucket by GraphDecodeStep.CompactTo (Options.CompactFraction), they move into that bucket's step
    /// (captured on first use, mid-batch, on the same KV arena); finished rows otherwise keep decoding (their extra
    /// tokens are discarded).
    /// </summary>
    void DecodeGraph(NativeExtension? native, List<Row> rows, KvCache cache, Tensor sourceRows, Tensor firstLogits, SamplingParams sp,
                     Tensor? bannedFirst, (List<long> Early, List<long> Always) bans, StopChecker checker, GenerationOutput?[] outputs,
                     GenerationStats stats, RunState run, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        var key = GraphDecodeStep.KeyFor(rows.Count, cache.Capacity, sp, bans.Early, bans.Always);
        var g = Step(native, key, sp, bans, null);
        stats.GraphRows = Math.Max(stats.GraphRows, key.Rows);
        using (var scope = torch.NewDisposeScope())
        {
            using var u = Uniforms(rows, sp, 0, 1, model.Device);
            var u0 = u[0];
            var (tok, lp) = TokenSampler.Sample(firstLogits, u0, sp, bannedFirst);
            g.Load(cache, sourceRows, tok, lp, rows.Select(r => CounterRng.RowPrefix(sp.Seed, r.Key, r.Sample)).ToArray());
        }
        Synchronize(model.Device);
        stats.PrefillSeconds += clock.Elapsed.TotalSeconds;   // capture (first use only) and the cache copy
        clock.Restart();

        var live = rows;                                       // row i of the step holds live[i]
        int s0 = 0;
        while (s0 < sp.MaxNewTokens)
        {
            int len = Math.Min(Options.CheckEvery, sp.MaxNewTokens - s0);
            for (int s = Math.Max(1, s0); s < s0 + len; s++) g.Run(s, stats);
            stats.DecodeSteps += len;
            stats.RowSteps += (long)len * g.Id.Rows;
            cancel.ThrowIfCancellationRequested();
            stats.Checks++;
            long[] toks; float[] lps;
            using (var scope = torch.NewDisposeScope())
            {
                toks = g.OutTokens.narrow(0, 0, live.Count).narrow(1, s0, len).contiguous().cpu().data<long>().ToArray();     // [B, len]
                lps = g.OutLogProbs.narrow(0, 0, live.Count).narrow(1, s0, len).contiguous().cpu().data<float>().ToArray();
            }
            int finished = AddChunk(live, toks, lps, len, checker, sp, outputs, stats, run);
            s0 += len;
            if (finished == live.Count) break;
            if (warmUpSteps is int w && s0 >= w)
            {
                g.CaptureRemainingWindows(stats);
                CutShort(live, sp, outputs, stats, run);
                break;
            }
            if (s0 < sp.MaxNewTokens
                && GraphDecodeStep.CompactTo(live.Count - finished, g.Id.Rows, Options.CompactFraction) is int to)
            {
                var keep = Enumerable.Range(0, live.Count).Where(r => !live[r].Finished).Select(r => (long)r).ToArray();
                var next = Step(native, g.Id with { Rows = to }, sp, bans, g);
                using (var keepT = torch.tensor(keep, device: model.Device)) next.LoadFrom(g, keepT);
                g = next;
                live = keep.Select(r => live[(int)r]).ToList();
                stats.Compactions++;
            }
        }
        if (rows.Any(r => !r.Finished)) throw new InvalidOperationException("generation ended with unfinished rows");
        stats.DecodeSeconds += clock.Elapsed.TotalSeconds;
    }

    /// <summary>Appends one chunk of tokens [B, len] (row-major) to the running rows, finishing rows at stops or the
    /// limit; returns how many rows are finished.</summary>
    static int AddChunk(List<Row> live, long[] toks, float[] lps, int chunkLen, StopChecker checker, SamplingParams sp,
                        GenerationOutput?[] outputs, GenerationStats stats, RunState run)
    {
        int finishedInBatch = 0;
        long added = 0;
        for (int r = 0; r < live.Count; r++)
        {
            var row = live[r];
            for (int j = 0; j < chunkLen && !row.Finished; j++)
            {
                row.Tokens.Add((int)toks[r * chunkLen + j]);
                row.LogProbs.Add(lps[r * chunkLen + j]);
                added++;
                // Bench only: a forced length ends the sample with the synthetic stop token in place of the sampled one.
                bool forced = sp.SyntheticLengths is { } sl && row.Tokens.Count == sl.LengthFor(sp.Seed, row.Key, row.Sample);
                FinishReason reason = FinishReason.Stop;
                int? stopToken = null;
                string? stopString = null;
                if (forced)
                {
                    row.Tokens[^1] = sp.SyntheticLengths!.StopTokenId;
                    stopToken = row.Tokens[^1];
                }
                if (forced || checker.Ended(row.Tokens, out reason, out stopToken, out stopString))
                    Finish(row, reason, stopToken, stopString, sp, outputs, stats, run);
            }
            if (row.Finished) finishedInBatch++;
        }
        run.Tokens(added);
        run.Report();
        return finishedInBatch;
    }

    /// <summary>The uniforms of steps s0 … s0+len−1 for the running rows: [len, B] float32, one host→device copy.</summary>
    static Tensor Uniforms(List<Row> live, SamplingParams sp, int s0, int len, Device dev)
    {
        var u = new float[len * live.Count];
        if (!sp.Greedy)
            for (int j = 0; j < len; j++)
                for (int r = 0; r < live.Count; r++)
                    u[j * live.Count + r] = CounterRng.Uniform(sp.Seed, live[r].Key, live[r].Sample, s0 + j);
        return torch.tensor(u, [len, live.Count], device: dev).DetachFromDisposeScope();
    }

    /// <summary>Left-padded input_ids / attention_mask [P, L] and the prompts' images concatenated in row order; their
    /// cached vision-tower outputs too when every prompt with images has them (else null: the prefill encodes).</summary>
    static (Tensor Ids, Tensor Mask, Tensor? Pixels, Tensor? Grid, Tensor? Embeds) Collate(IReadOnlyList<GenerationPrompt> prompts, List<WorkUnit> units, int maxLen)
    {
        int p = units.Count;
        var ids = new long[p * maxLen];
        var mask = new long[p * maxLen];
        var pix = new List<Tensor>();
        var grid = new List<Tensor>();
        var embeds = new List<Tensor>();
        bool allEmbedded = true;
        for (int i = 0; i < p; i++)
        {
            var pr = prompts[units[i].Prompt];
            int off = maxLen - pr.TokenIds.Count;
            for (int j = 0; j < pr.TokenIds.Count; j++)
            {
                ids[i * maxLen + off + j] = pr.TokenIds[j];
                mask[i * maxLen + off + j] = 1;
            }
            if (pr.PixelValues is not null)
            {
                pix.Add(pr.PixelValues); grid.Add(pr.ImageGridThw!);
                if (pr.ImageEmbeds is { } e) embeds.Add(e); else allEmbedded = false;
            }
        }
        var idsT = torch.tensor(ids, [p, maxLen]);
        var maskT = torch.tensor(mask, [p, maxLen]);
        if (pix.Count == 0) return (idsT, maskT, null, null, null);
        var gridT = torch.cat(grid.Select(g => g.to(ScalarType.Int64, torch.CPU)).ToList(), 0);
        if (allEmbedded) return (idsT, maskT, null, gridT, torch.cat(embeds, 0));
        // Concatenated where the first prompt's pixels live (the model moves them to its device once).
        var (dtype, dev) = (pix[0].dtype, pix[0].device);
        return (idsT, maskT, torch.cat(pix.Select(x => x.to(dtype, dev)).ToList(), 0), gridT, null);
    }

    static void Synchronize(Device dev)
    {
        if (dev.type == DeviceType.CUDA) torch.cuda.synchronize(dev);
    }
}
