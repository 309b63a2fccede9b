// Qwen2-VL / Qwen2.5-VL (and plain Qwen2) for causal LM: vision tower → image/video features scattered into the pad
// token positions → text decoder with M-RoPE → lm_head (tied to embed_tokens when configured). One forward serves full
// passes over left-padded batches, cache prefill, decode steps, hidden-state-only passes (for chunked log-softmax or a
// critic head) and last-n logits. Departs from HF: no generate() here (see GreedyDecoder), KV cache is preallocated.
using LmmR1.Infrastructure;
using LmmR1.Models.Safetensors;
using TorchSharp;
using TorchSharp.Utils;
using static TorchSharp.torch;

namespace LmmR1.Models.Qwen;

/// <summary>Outputs of one forward pass. Disposing it disposes every tensor in it.</summary>
public sealed class QwenOutput : IDisposable
{
    /// <summary>[B, T, H] final hidden states after the last RMSNorm, before lm_head.</summary>
    public required Tensor Hidden { get; init; }
    /// <summary>[B, K, V] in the model dtype: all T positions, the last n, or null when no logits were asked for.</summary>
    public Tensor? Logits { get; init; }
    /// <summary>[3, B, T] M-RoPE positions used.</summary>
    public required Tensor PositionIds { get; init; }
    /// <summary>[B] HF rope_deltas (max position + 1 − unpadded length) when this pass computed positions from
    /// input_ids (a prefill), else null.</summary>
    public Tensor? RopeDeltas { get; init; }

    public void Dispose()
    {
        Hidden.Dispose(); Logits?.Dispose(); PositionIds.Dispose(); RopeDeltas?.Dispose();
    }
}

/// <summary>Videos for a forward pass: patches like images, one grid row per video, and for Qwen2.5-VL the seconds per
/// temporal grid step (temporal_patch_size / fps, default 1.0).</summary>
public sealed record VideoInputs(Tensor PixelValues, Tensor GridThw, double[]? SecondPerGridTs = null);

public sealed class QwenVLModel : nn.Module
{
    [ComponentName(Name = "model")] readonly QwenTextModel model;
    [ComponentName(Name = "visual")] readonly VisionTower? visual;
    [ComponentName(Name = "lm_head")] readonly Dense? lmHead;

    public QwenVLConfig Config { get; }
    public ScalarType DType { get; }
    public Device Device { get; }
    /// <summary>Eager (HF reference maths) or Sdpa (fused kernels). Both give the same results up to rounding.</summary>
    public AttentionImpl Attention { get; set; } = AttentionImpl.Sdpa;
    /// <summary>Recompute each decoder layer in backward instead of keeping its activations (training only; ignored
    /// without grad mode or with a KV cache).</summary>
    public bool GradientCheckpointing { get; set; }
    /// <summary>With <see cref="GradientCheckpointing"/>: recompute only the first N decoder layers in backward and keep
    /// the others' activations (0: every layer). Trades memory for the recompute's time where memory is left over.</summary>
    public int CheckpointLayers { get; set; }

    /// <summary>Whether decoder layer <paramref name="i"/> is recomputed in backward (checkpointing on for this pass).</summary>
    bool Checkpointed(bool checkpoint, int i) => checkpoint && (CheckpointLayers <= 0 || i < CheckpointLayers);
    /// <summary>The LoRA adapters attached by <see cref="AttachLora"/>, or null (Lora.cs).</summary>
    public LoraAdapters? Lora { get; private set; }
    /// <summary>DecodeStatic uses the fused decode kernels where they can run (FusedDecodeOps: CUDA, float32/bf16, the
    /// native extension built with nvcc, LMMR1_FUSED_DECODE not 0). False: the unfused TorchSharp ops (A/B checks).</summary>
    public bool FusedDecode { get; set; } = true;
    /// <summary>With <see cref="FusedDecode"/>: attention through the decode_attention kernel (FusedDecodeOps.TakesAttention:
    /// only the valid keys up to the cache position) instead of SDPA over the window under a mask. Equal up to rounding,
    /// not bit for bit. Off unless LMMR1_FUSED_ATTENTION=1: on the H100 it took 0.34 ms a layer against cuDNN's 0.18 at
    /// 512 rows × 501 keys (bench kernel-check; bench/README.md), so it stays an opt-in for A/B work.</summary>
    public bool FusedAttention { get; set; } = Environment.GetEnvironmentVariable("LMMR1_FUSED_ATTENTION") == "1";
    readonly Lazy<FusedDecodeOps?> fusedOps;
    /// <summary>Whether DecodeStatic would run fused now.</summary>
    public bool UsesFusedDecode => FusedDecode && fusedOps.Value is not null;
    /// <summary>Whether DecodeStatic would attend through decode_attention now (it then reads the valid keys up to the
    /// cache position whatever the cache's Window, so attention windows gain nothing).</summary>
    public bool UsesFusedAttention => UsesFusedDecode && AttendsFused;
    /// <summary>FusedAttention is on and decode_attention takes this model's shape (DecodeStatic's fused step then attends
    /// through it).</summary>
    bool AttendsFused => FusedAttention && FusedDecodeOps.TakesAttention(Config.Text);
    /// <summary>HeadLogProbs runs each chunk's log-softmax and gradient through the native extension's head kernels
    /// where they can run (CUDA, float32/bf16, the extension built with nvcc); false, or LMMR1_FUSED_HEAD=0: the
    /// TorchSharp ops (the log-sum-exp then differs in the order of its sum; the gradient is the same chain).</summary>
    public bool FusedHead { get; set; } = Environment.GetEnvironmentVariable("LMMR1_FUSED_HEAD") != "0";
    NativeExtension? HeadKernels => FusedHead && Device.type == DeviceType.CUDA && DType is ScalarType.Float32 or ScalarType.BFloat16
                                     && NativeExtension.TryGet() is { HasFusedKernels: true } n ? n : null;

    /// <summary>Builds the module with uninitialised (torch.empty) parameters; use Load or Create.</summary>
    QwenVLModel(QwenVLConfig config, ScalarType dtype, Device device, bool withLmHead = true) : base(nameof(QwenVLModel))
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new ArgumentException($"unsupported model dtype {dtype}");
        Config = config; DType = dtype; Device = device;
        fusedOps = new Lazy<FusedDecodeOps?>(() => FusedDecodeOps.For(device, dtype));
        model = new QwenTextModel(config.Text, dtype, device);
        visual = config.Vision is null ? null : new VisionTower(config.Vision, config.Family, dtype, device);
        HasLmHead = withLmHead || config.Text.TieWordEmbeddings;
        lmHead = config.Text.TieWordEmbeddings || !withLmHead ? null : new Dense(config.Text.HiddenSize, config.Text.VocabSize, false, dtype, device);
        RegisterComponents();
    }

    /// <summary>A model with random weights (normal(0, 0.02) matrices, unit norms, zero biases) drawn on the CPU from
    /// <paramref name="seed"/>, so the same seed gives the same weights for every dtype and device. With
    /// <paramref name="initOnDevice"/> on a CUDA device they are drawn there instead (benchmarks: seconds instead of
    /// ~30 s for 3B; other numbers than the CPU draw, the same for the same seed on one machine).</summary>
    public static QwenVLModel Create(QwenVLConfig config, ScalarType dtype, Device device, long seed = 0, bool initOnDevice = false)
    {
        config.Validate("config");
        var m = new QwenVLModel(config, dtype, device);
        m.InitializeRandom(seed, initOnDevice);
        return m;
    }

    /// <summary>Loads config.json (+ generation_config.json) and the safetensors weights of a Hugging Face folder.
    /// Parameters are allocated once in <paramref name="dtype"/> on <paramref name="device"/> and filled straight from
    /// the memory-mapped files.</summary>
    /// <param name="ignoreUnused">Checkpoint tensors that may stay unused (e.g. a critic's value head, read separately).</param>
    public static QwenVLModel Load(string dir, ScalarType dtype, Device device, Func<string, bool>? ignoreUnused = null)
    {
        var cfg = QwenVLConfig.Load(dir);
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        ConfigWeightsCheck.Check(cfg, ckpt, Path.Combine(dir, QwenVLConfig.FileName));   // before anything is allocated
        var m = new QwenVLModel(cfg, dtype, device);
        try { m.LoadWeights(ckpt, ignoreUnused); }
        catch { m.Dispose(); throw; }
        return m;
    }

    /// <summary>Loads the decoder (and vision tower) of a Hugging Face folder without the lm_head: the backbone of a
    /// sequence-classification / reward checkpoint, which stores no lm_head (an lm_head.weight that is there is
    /// ignored). Forwards must ask for no logits (logitsForLast: 0).</summary>
    public static QwenVLModel LoadBackbone(string dir, ScalarType dtype, Device device, Func<string, bool>? ignoreUnused = null)
    {
        var cfg = QwenVLConfig.Load(dir);
        using var ckpt = SafetensorsCheckpoint.Open(dir);
        ConfigWeightsCheck.Check(cfg, ckpt, Path.Combine(dir, QwenVLConfig.FileName));
        var m = new QwenVLModel(cfg, dtype, device, withLmHead: false);
        try { m.LoadWeights(ckpt, n => n == "lm_head.weight" || (ignoreUnused?.Invoke(n) ?? false)); }
        catch { m.Dispose(); throw; }
        return m;
    }

    /// <summary>Fills every parameter from <paramref name="ckpt"/>, accepting the classic keys (model.layers.*, visual.*)
    /// and the transformers ≥ 4.52 keys (model.language_model.*, model.visual.*); a tied lm_head.weight is ignored.</summary>
    public void LoadWeights(SafetensorsCheckpoint ckpt, Func<string, bool>? ignoreUnused = null)
    {
        bool newLayout = ckpt.Names.Any(n => n.StartsWith("model.language_model.", StringComparison.Ordinal));
        bool tied = Config.Text.TieWordEmbeddings;
        StateDictLoader.Load(this, ckpt, name => LoraAdapters.IsAdapterName(name) ? null : newLayout ? ToNewLayout(name) : name,
            n => (tied && n == "lm_head.weight") || (ignoreUnused?.Invoke(n) ?? false));
    }

    /// <summary>Names of every linear layer (classic names, module order): the layers LoRA can adapt.</summary>
    public IReadOnlyList<string> LinearLayerNames() =>
        named_modules().Where(m => m.module is Dense).Select(m => m.name).ToList();

    /// <summary>Attaches LoRA adapters of rank <paramref name="rank"/> to <paramref name="layers"/> (A drawn on the CPU
    /// from <paramref name="seed"/> in layer order, B zero) and freezes every base parameter in its dtype.</summary>
    public LoraAdapters AttachLora(IReadOnlyList<string> layers, int rank, double alpha, double dropout, long seed)
    {
        if (Lora is not null) throw new InvalidOperationException("LoRA adapters are already attached");
        var dense = named_modules().Where(m => m.module is Dense).ToDictionary(m => m.name, m => (Dense)m.module, StringComparer.Ordinal);
        var chosen = new Dictionary<string, Dense>(StringComparer.Ordinal);
        foreach (var name in layers)
            chosen[name] = dense.TryGetValue(name, out var d) ? d : throw new InputException($"the model has no linear layer '{name}'");
        foreach (var p in parameters()) p.requires_grad = false;
        var adapters = new LoraAdapters(chosen, rank, alpha, dropout);
        using var gen = new torch.Generator((ulong)seed, torch.CPU);
        using var noGrad = torch.no_grad();
        foreach (var (_, d) in chosen)
        {
            long fanIn = d.Weight.shape[1];
            double bound = 1.0 / Math.Sqrt(fanIn);   // kaiming_uniform_(a=√5): gain √(2/6) · √(3/fan_in)
            using var a = torch.empty([rank, fanIn], ScalarType.Float32).uniform_(-bound, bound, gen);
            d.AttachLora(a, adapters.State);
        }
        Lora = adapters;
        return adapters;
    }

    /// <summary>Classic key → transformers ≥ 4.52 key (HF's two ordered rename rules, inverted).</summary>
    public static string ToNewLayout(string classic) =>
        classic.StartsWith("visual.", StringComparison.Ordinal) ? "model." + classic
        : classic.StartsWith("model.", StringComparison.Ordinal) ? "model.language_model." + classic["model.".Length..]
        : classic;

    /// <summary>Writes a Hugging Face folder: weights with the classic key names (no lm_head when tied), config.json in
    /// the released flat layout and generation_config.json. With LoRA adapters the adapted weights are written merged.</summary>
    public void SaveHf(string dir, long maxShardBytes = SafetensorsWriter.DefaultShardBytes)
    {
        var sd = state_dict().Where(kv => !LoraAdapters.IsAdapterName(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        using var scope = torch.NewDisposeScope();
        if (Lora is { } lora)
            foreach (var layer in lora.Layers) sd[layer + ".weight"] = lora.MergedWeight(layer);   // merged: W + (α/r)·B·A
        SafetensorsWriter.WriteCheckpoint(dir, sd, maxShardBytes);
        Config.Save(dir, DType switch
        {
            ScalarType.BFloat16 => "bfloat16", ScalarType.Float16 => "float16", ScalarType.Float64 => "float64", _ => "float32",
        });
    }

    void InitializeRandom(long seed, bool onDevice)
    {
        using var noGrad = torch.no_grad();
        if (onDevice && Device.type == DeviceType.CUDA)
        {
            torch.cuda.manual_seed_all(seed);
            foreach (var (name, p) in named_parameters())
            {
                if (p.dim() >= 2) p.normal_(0, 0.02);
                else if (name.EndsWith(".weight", StringComparison.Ordinal)) p.FillAllS_(1.0);
                else p.zero_();
            }
            return;
        }
        using var gen = new torch.Generator((ulong)seed, torch.CPU);
        foreach (var (name, p) in named_parameters())
        {
            using var cpu = torch.empty(p.shape, ScalarType.Float32);
            if (p.dim() >= 2) cpu.normal_(0, 0.02, gen);
            else if (name.EndsWith(".weight", StringComparison.Ordinal)) cpu.FillAllS_(1.0); // norms
            else cpu.zero_();                                                            // biases
            p.copy_(cpu);
        }
    }

    // ---------------------------------------------------------------- pieces

    /// <summary>[V, H] weight of lm_head (the embedding table when tied), for chunked log-softmax over the vocabulary.</summary>
    public Tensor LmHeadWeight => lmHead?.Weight
        ?? (HasLmHead ? model.Embed.Weight : throw new InvalidOperationException("this backbone was loaded without its lm_head: it gives hidden states only"));

    /// <summary>hidden [.., H] → logits [.., V] in the model dtype.</summary>
    public Tensor LmHead(Tensor hidden) => nn.functional.linear(hidden, LmHeadWeight);

    /// <summary>log_softmax(LmHead(hidden) / T)[labels] in fp32 without holding the logits (HeadLogProbFunction: forward
    /// in chunks of <paramref name="chunkRows"/> positions, backward in chunks of <paramref name="chunkColumns"/>
    /// vocabulary columns, by default as many as fit 256 MiB of fp32 logits; differentiable when grad mode is on).
    /// hidden [.., H], labels [..] int64 → [..]. With <paramref name="entropy"/> also the raw logits' entropy per
    /// position (no grad), else null.</summary>
    public (Tensor LogProbs, Tensor? Entropy) HeadLogProbs(Tensor hidden, Tensor labels, double temperature, bool entropy = false, long chunkRows = 0,
                                                           long chunkColumns = 0)
    {
        if (!(temperature > 0)) throw new ArgumentException($"temperature must be > 0, got {temperature}");
        long[] outer = hidden.shape[..^1];
        if (!labels.shape.SequenceEqual(outer))
            throw new ArgumentException($"labels [{string.Join(",", labels.shape)}] do not match hidden [{string.Join(",", hidden.shape)}]");
        long rows = chunkRows > 0 ? chunkRows : Math.Max(1, (256L << 20) / 4 / Config.Text.VocabSize);
        using var scope = torch.NewDisposeScope();
        var head = new HeadLogProbFunction.Head(LmHeadWeight, temperature, rows, chunkColumns, entropy, HeadKernels);
        var flatLabels = labels.reshape(-1).to_type(ScalarType.Int64).to(hidden.device).contiguous();
        var lp = HeadLogProbFunction.apply(hidden.reshape(-1, hidden.shape[^1]), flatLabels, head).reshape(outer);
        var ent = head.Entropy?.reshape(outer).MoveToOuterDisposeScope();
        head.Entropy?.Dispose();
        return (lp.MoveToOuterDisposeScope(), ent);
    }

    /// <summary>input_ids [B, T] → embeddings [B, T, H].</summary>
    public Tensor EmbedTokens(Tensor inputIds) => model.Embed.forward(inputIds);

    /// <summary>pixel_values [N, C·T·P·P] + grid [n, 3] → merged vision tokens [Σ t·h·w/4, H] in item order.</summary>
    public Tensor EncodeVision(Tensor pixelValues, Tensor gridThw, string what = "image")
    {
        if (visual is null) throw new InputException($"{Config.ModelType} has no vision tower, but pixel values were given");
        var grid = visual.HostGrid(pixelValues, gridThw, what);
        VisionTowerCalls++;
        VisionTowerItems += grid.Length;
        // The moved pixels are a temporary: the scope keeps it alive through the tower (TorchScalars.cs says why).
        using var scope = torch.NewDisposeScope();
        return visual.Forward(pixelValues.to(Device), grid, Attention).MoveToOuterDisposeScope();
    }

    /// <summary>How often the vision tower ran (<see cref="EncodeVision"/> calls) and how many images / videos it
    /// encoded in all, since the model was built: what tests and reports read to check that an image is not encoded
    /// once per sample.</summary>
    public long VisionTowerCalls { get; private set; }
    /// <inheritdoc cref="VisionTowerCalls"/>
    public long VisionTowerItems { get; private set; }

    public KvCache CreateCache(long batchSize, int capacity) => KvCache.Create(Config.Text, batchSize, capacity, DType, Device);

    /// <summary>False for a backbone loaded without its (untied) lm_head (<see cref="LoadBackbone"/>): it gives hidden
    /// states only.</summary>
    public bool HasLmHead { get; }

    /// <summary>Replaces the rows of <paramref name="embeds"/> at token <paramref name="tokenId"/> by <paramref name="features"/>
    /// (row-major over batch and position); the counts must agree.</summary>
    public static Tensor ScatterFeatures(Tensor embeds, Tensor inputIds, Tensor features, long tokenId, string what)
    {
        using var scope = torch.NewDisposeScope();
        var isPad = inputIds.EqS(tokenId);
        long n = isPad.sum().item<long>();
        if (n != features.shape[0])
            throw new InputException($"input_ids hold {n} <|{what}_pad|> tokens (id {tokenId}) but the {what} inputs give {features.shape[0]} " +
                                     $"features (Σ t·h·w/{(features.shape[0] == 0 ? "4" : "merge²")} over {what}_grid_thw)");
        var mask = isPad.unsqueeze(-1).expand_as(embeds);
        return embeds.masked_scatter(mask, features.to(embeds.dtype)).MoveToOuterDisposeScope();
    }

    // ---------------------------------------------------------------- forward

    /// <summary>
    /// Forward from token ids. Prefill/full pass: positions come from <see cref="RopeIndex"/> (left padding allowed) unless
    /// given; with a cache, where positions continue is stored there. Decode (cache holding tokens): positions default to
    /// cache index + cache.PositionOffsets.
    /// </summary>
    /// <param name="inputIds">[B, T] int64</param>
    /// <param name="attentionMask">[B, T], or [B, past+T] covering the cache too; 1 = token, 0 = padding; null = all tokens.</param>
    /// <param name="pixelValues">[N, 1176] image patches (needs imageGridThw), or null.</param>
    /// <param name="imageGridThw">[nImages, 3]; also needed with imageEmbeds, for the positions.</param>
    /// <param name="imageEmbeds">Precomputed <see cref="EncodeVision"/> output instead of pixelValues.</param>
    /// <param name="positionIds">[3, B, T] explicit positions, or null.</param>
    /// <param name="cache">KV cache to read and append to, or null.</param>
    /// <param name="logitsForLast">null: logits at every position; n &gt; 0: only the last n; 0: no logits (Hidden only).</param>
    public QwenOutput Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? pixelValues = null, Tensor? imageGridThw = null,
                              Tensor? imageEmbeds = null, Tensor? positionIds = null, KvCache? cache = null, int? logitsForLast = null,
                              VideoInputs? videos = null)
    {
        using var scope = torch.NewDisposeScope();
        if (inputIds.dim() != 2) throw new InputException($"input_ids must be [B, T], got [{string.Join(",", inputIds.shape)}]");
        inputIds = inputIds.to(ScalarType.Int64, Device);
        attentionMask = attentionMask?.to(Device);
        long t = inputIds.shape[1];
        var embeds = EmbedTokens(inputIds);
        if (pixelValues is not null || imageEmbeds is not null)
        {
            if (imageEmbeds is null && imageGridThw is null) throw new InputException("pixel_values given without image_grid_thw");
            var feats = imageEmbeds?.to(Device) ?? EncodeVision(pixelValues!, imageGridThw!);
            embeds = ScatterFeatures(embeds, inputIds, feats, Config.Tokens.ImageTokenId, "image");
        }
        if (videos is not null)
        {
            var feats = EncodeVision(videos.PixelValues, videos.GridThw, "video");
            embeds = ScatterFeatures(embeds, inputIds, feats, Config.Tokens.VideoTokenId, "video");
        }

        Tensor? deltas = null;
        bool decoding = cache is { Length: > 0 };
        if (positionIds is null && !decoding)
        {
            var prefillMask = attentionMask is not null && attentionMask.shape[1] == t ? attentionMask : null;
            (positionIds, deltas) = RopeIndex.Compute(inputIds, prefillMask, imageGridThw, Config, videos?.GridThw, videos?.SecondPerGridTs);
        }
        var output = ForwardEmbeds(embeds, positionIds, attentionMask, cache, logitsForLast);
        var result = new QwenOutput
        {
            Hidden = output.Hidden.MoveToOuterDisposeScope(),
            Logits = output.Logits?.MoveToOuterDisposeScope(),
            PositionIds = output.PositionIds.MoveToOuterDisposeScope(),
            RopeDeltas = deltas?.MoveToOuterDisposeScope(),
        };
        return result;
    }

    /// <summary>
    /// The decoder on given embeddings (e.g. from <see cref="EmbedTokens"/> with features scattered in).
    /// </summary>
    /// <param name="inputsEmbeds">[B, T, H]</param>
    /// <param name="positionIds">[3, B, T]; may be null only when decoding with a cache after a prefill.</param>
    /// <param name="attentionMask">[B, T] or [B, past+T] (1 = token), or null = all tokens.</param>
    public QwenOutput ForwardEmbeds(Tensor inputsEmbeds, Tensor? positionIds, Tensor? attentionMask = null, KvCache? cache = null,
                                   int? logitsForLast = null)
    {
        using var scope = torch.NewDisposeScope();
        long b = inputsEmbeds.shape[0], t = inputsEmbeds.shape[1];
        int past = cache?.Length ?? 0;
        if (cache is not null && cache.BatchSize != b)
            throw new InputException($"the KV cache holds {cache.BatchSize} rows but the input has {b}");

        // Which keys are real tokens: [B, past+T].
        Tensor newValid, keyValid;
        if (attentionMask is null) newValid = torch.ones(b, t, ScalarType.Bool, Device);
        else if (attentionMask.shape[0] == b && attentionMask.shape[1] == past + t) newValid = attentionMask.to(Device).narrow(1, past, t).ne(TorchScalars.Zero);
        else if (attentionMask.shape[0] == b && attentionMask.shape[1] == t) newValid = attentionMask.to(Device).ne(TorchScalars.Zero);
        else throw new InputException($"attention_mask [{string.Join(",", attentionMask.shape)}] must be [{b}, {t}] or [{b}, {past + t}] (cache + new tokens)");
        keyValid = cache is null ? newValid : cache.AppendValid(newValid);
        if (attentionMask is not null && attentionMask.shape[1] == past + t && past > 0) keyValid = attentionMask.to(Device).ne(TorchScalars.Zero);

        if (positionIds is null)
        {
            if (cache?.PositionOffsets is null || past == 0)
                throw new InputException("position_ids are required unless decoding with a KV cache after a prefill");
            positionIds = RopeIndex.DecodePositions(cache.PositionOffsets, past, t);
        }
        positionIds = positionIds.to(Device);
        if (positionIds.dim() != 3 || positionIds.shape[0] != 3 || positionIds.shape[1] != b || positionIds.shape[2] != t)
            throw new InputException($"position_ids must be [3, {b}, {t}], got [{string.Join(",", positionIds.shape)}]");
        // A prefill records where decoding continues, whatever way its positions were made.
        if (cache is not null && past == 0) cache.SetPositionOffsets(RopeIndex.NextPositionOffsets(positionIds, keyValid));

        // Plain causal attention (no mask tensor) when nothing is padded and nothing is cached: SDPA can use flash.
        bool plainCausal = past == 0 && t > 1 && keyValid.all().item<bool>();
        Tensor? mask = plainCausal ? null : AttentionMath.CausalMask(keyValid, t, past, DType);
        var (cos, sin) = MRope.CosSin(positionIds, Config.Text, DType);

        var h = inputsEmbeds.to(DType);
        bool checkpoint = GradientCheckpointing && cache is null && torch.is_grad_enabled();
        // LoRA freezes the embeddings: a checkpointed layer whose input needs no grad would give its adapters none
        // (PEFT's enable_input_require_grads does the same).
        if (checkpoint && Lora is not null && !h.requires_grad) h = h.detach().requires_grad_(true);
        var layers = model.Layers;
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            if (Checkpointed(checkpoint, i))
            {
                int li = i;
                Func<Tensor, IReadOnlyList<Tensor>, Tensor> fn = (x, aux) =>
                    layer.Forward(x, aux[0], aux[1], aux.Count > 2 ? aux[2] : null, null, li, Attention);
                h = mask is null ? CheckpointFunction.apply(h, fn, cos, sin) : CheckpointFunction.apply(h, fn, cos, sin, mask);
            }
            else h = layer.Forward(h, cos, sin, mask, cache, i, Attention);
        }
        cache?.Commit((int)t);
        h = model.Norm.forward(h);

        Tensor? logits = logitsForLast switch
        {
            null => LmHead(h),
            0 => null,
            int n when n > 0 && n <= t => LmHead(h.narrow(1, t - n, n)),
            int n => throw new ArgumentException($"logitsForLast = {n} must be null or in 0..{t}"),
        };
        return new QwenOutput
        {
            Hidden = h.MoveToOuterDisposeScope(),
            Logits = logits?.MoveToOuterDisposeScope(),
            PositionIds = positionIds.MoveToOuterDisposeScope(),
        };
    }

    /// <summary>
    /// Padding-free forward of a left-padded batch (<see cref="PackedSequences"/>): the rows' real tokens end to end as
    /// one sequence, each row attending only to itself with the M-RoPE positions the padded forward gives it. Returns
    /// the final hidden states [1, T, H] (T = Σ real lengths, row order); no KV cache, no logits.
    /// </summary>
    /// <param name="inputIds">[B, S] left-padded ids.</param>
    /// <param name="attentionMask">[B, S], 1 on real tokens; its row sums must equal <paramref name="packed"/>'s lengths.</param>
    /// <param name="imageGridThw">[nImages, 3] in row order, or null.</param>
    /// <param name="imageEmbeds">Vision features of every row's images in row order (see <see cref="EncodeVision"/>), or null.</param>
    public Tensor ForwardPacked(Tensor inputIds, Tensor attentionMask, PackedSequences packed, Tensor? imageGridThw = null, Tensor? imageEmbeds = null)
    {
        using var scope = torch.NewDisposeScope();
        if (inputIds.dim() != 2 || !attentionMask.shape.SequenceEqual(inputIds.shape) || inputIds.shape[0] != packed.Rows)
            throw new InputException($"packed forward: input_ids [{string.Join(",", inputIds.shape)}] and attention_mask " +
                                     $"[{string.Join(",", attentionMask.shape)}] must both be [{packed.Rows}, S]");
        inputIds = inputIds.to(ScalarType.Int64, Device);
        attentionMask = attentionMask.to(Device);
        var (positions, _) = RopeIndex.Compute(inputIds, attentionMask, imageGridThw, Config);         // [3, B, S]
        var ids = packed.Pack(inputIds, attentionMask);                                               // [1, T]
        var pos = packed.Pack(positions.to(Device), attentionMask);                                   // [3, 1, T]
        var embeds = EmbedTokens(ids);
        if (imageEmbeds is not null)
            embeds = ScatterFeatures(embeds, ids, imageEmbeds.to(Device), Config.Tokens.ImageTokenId, "image");
        var (cos, sin) = MRope.CosSin(pos, Config.Text, DType);
        var h = embeds.to(DType);
        bool checkpoint = GradientCheckpointing && torch.is_grad_enabled();
        var layers = model.Layers;
        for (int i = 0; i < layers.Count; i++)
        {
            var layer = layers[i];
            if (Checkpointed(checkpoint, i))
            {
                int li = i;
                Func<Tensor, IReadOnlyList<Tensor>, Tensor> fn = (x, aux) => layer.Forward(x, aux[0], aux[1], null, null, li, Attention, packed);
                h = CheckpointFunction.apply(h, fn, cos, sin);
            }
            else h = layer.Forward(h, cos, sin, null, null, i, Attention, packed);
        }
        return model.Norm.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One decode step on a <see cref="StaticKvCache"/> with no host-side values (capturable in a CUDA graph): the
    /// tokens in cache.InputTokens are embedded, marked valid and written at cache.Position; their M-RoPE positions are
    /// Position + PositionOffsets on all three rows (text tokens after the prompt, as <see cref="RopeIndex.DecodePositions"/>);
    /// attention covers the cache's first Window positions (the whole capacity by default) under the KeyValid mask (the
    /// same additive finfo.min mask as the eager path).
    /// Does not advance Position. Returns logits [B, V] in the model dtype. Without grad and where they can run, the
    /// norms, RoPE + cache write and SwiGLU go through the fused kernels (<see cref="FusedDecode"/>).
    /// </summary>
    static readonly Scalar True = true.ToScalar();

    public Tensor DecodeStatic(StaticKvCache cache)
    {
        using var scope = torch.NewDisposeScope();
        long b = cache.Rows;
        var embeds = EmbedTokens(cache.InputTokens);                                              // [B, 1, H]
        cache.KeyValid.index_fill_(1, cache.Position, True);
        var positions = cache.PositionOffsets.Plus(cache.Position).view(1, b, 1).expand(3, b, 1); // [3, B, 1]
        var (cos, sin) = MRope.CosSin(positions, Config.Text, DType);
        var h = embeds.to(DType);
        var layers = model.Layers;
        var fused = FusedDecode && !torch.is_grad_enabled() ? fusedOps.Value : null;
        long w = cache.Window;
        var mask = fused is not null && AttendsFused
            ? null
            : torch.zeros([b, 1, 1, w], DType, Device).FillS(cache.KeyValid.narrow(1, 0, w).logical_not().view(b, 1, 1, w), torch.finfo(DType).min);
        if (fused is null)
        {
            for (int i = 0; i < layers.Count; i++) h = layers[i].ForwardStatic(h, cos, sin, mask!, cache, i, Attention);
            h = model.Norm.forward(h);
        }
        else
        {
            cos = cos.contiguous(); sin = sin.contiguous();
            Tensor? pending = null;
            for (int i = 0; i < layers.Count; i++) (h, pending) = layers[i].ForwardStaticFused(h, pending, cos, sin, mask, cache, i, Attention, fused);
            h = fused.AddRmsNorm(h, pending!, model.Norm).Normed;
        }
        return LmHead(h).squeeze(1).MoveToOuterDisposeScope();
    }

    /// <summary>Decoder layer <paramref name="i"/>'s self-attention (tests).</summary>
    internal QwenAttention SelfAttention(int i) => model.Layers[i].SelfAttention;
    internal QwenMlp Mlp(int i) => model.Layers[i].Mlp;

    /// <summary>Frees handles that activation checkpointing and the chunked head hand to libtorch during backward (call
    /// after each backward() through the model; a no-op otherwise).</summary>
    public static void ReleaseBackwardHandles() => ReturnedGradients.Release();

    // ---------------------------------------------------------------- bookkeeping

    /// <summary>Parameter counts by part (lm_head is 0 when tied to embed_tokens).</summary>
    public ParameterCounts CountParameters() =>
        ParameterCounts.FromNames(named_parameters().Where(p => !LoraAdapters.IsAdapterName(p.name)).Select(p => (p.name, p.parameter.numel())),
                                  Config.Text.TieWordEmbeddings);
}

/// <summary>Parameter counts of the parts of a Qwen VL checkpoint.</summary>
public sealed record ParameterCounts(long Vision, long Merger, long LanguageModel, long LmHead, bool Tied)
{
    public long Total => Vision + Merger + LanguageModel + LmHead;

    /// <summary>From (name, element count) pairs in either key layout.</summary>
    public static ParameterCounts FromNames(IEnumerable<(string Name, long Count)> tensors, bool tied)
    {
        long vision = 0, merger = 0, lm = 0, head = 0;
        foreach (var (name, count) in tensors)
        {
            string n = name.StartsWith("model.visual.", StringComparison.Ordinal) ? name["model.".Length..] : name;
            if (n.StartsWith("visual.merger.", StringComparison.Ordinal)) merger += count;
            else if (n.StartsWith("visual.", StringComparison.Ordinal)) vision += count;
            else if (n.StartsWith("lm_head.", StringComparison.Ordinal)) { if (!tied) head += count; }
            else lm += count;
        }
        return new ParameterCounts(vision, merger, lm, head, tied);
    }
}
