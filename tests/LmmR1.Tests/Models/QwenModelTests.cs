// Behaviour of the model API beyond parity: M-RoPE positions computed by hand, KV cache row selection, explicit
// decode positions and masks, hidden-state/last-n outputs, gradient checkpointing, tensor lifetimes, input errors.
using LmmR1.Infrastructure;
using LmmR1.Models.Qwen;
using LmmR1.Tests.Support;
using TorchSharp;
using static TorchSharp.torch;

namespace LmmR1.Tests.Models;

public class QwenModelTests(QwenFixtures fx) : IClassFixture<QwenFixtures>
{
    static QwenVLConfig Config(string name) => QwenVLConfig.Load(TestPaths.Fixture(name));

    [Fact]
    public void RopeIndexOfTheSpecExample()
    {
        // Spec §4: a 476×644 image has grid (1, 34, 46) → 17×23 = 391 tokens; with k = 3 tokens before the first pad
        // (the last being <|vision_start|>) the image gets t = 3, h = 3..19, w = 3..25 and <|vision_end|> 26.
        var cfg = Config("qwen2vl-tiny");
        var t = cfg.Tokens;
        var ids = new List<long> { 5, 6, t.VisionStartTokenId };
        ids.AddRange(Enumerable.Repeat(t.ImageTokenId, 391));
        ids.Add(t.VisionEndTokenId);
        ids.Add(7);
        using var input = torch.tensor(ids.ToArray(), 1, ids.Count);
        using var grid = torch.tensor(new long[] { 1, 34, 46 }, 1, 3);
        var (pos, delta) = RopeIndex.Compute(input, null, grid, cfg);
        long[][] p = [.. Enumerable.Range(0, 3).Select(r => pos[r, 0].data<long>().ToArray())];
        Assert.Equal([0L, 1, 2], p[0][..3]);
        Assert.All(p[0][3..394], x => Assert.Equal(3, x));
        Assert.Equal(Enumerable.Range(3, 17).SelectMany(h => Enumerable.Repeat((long)h, 23)), p[1][3..394]);
        Assert.Equal(Enumerable.Range(0, 17).SelectMany(_ => Enumerable.Range(3, 23).Select(w => (long)w)), p[2][3..394]);
        Assert.Equal([26L, 27], p[0][394..]);
        Assert.Equal([26L, 27], p[2][394..]);
        Assert.Equal(28 - ids.Count, delta.item<long>()); // max + 1 − length
    }

    [Theory]
    [InlineData("qwen2vl-tiny", new long[] { 0, 1 })]
    [InlineData("qwen25vl-tiny", new long[] { 0, 2 })] // trunc(ti · 1.0 s · tokens_per_second 2)
    public void VideoTemporalPositions(string name, long[] temporal)
    {
        var cfg = Config(name);
        var t = cfg.Tokens;
        // Left-padded row: [pad, x, <vs>, 8 video pads (grid 2×4×4 → 2·2·2), <ve>].
        long[] row = [0, 9, t.VisionStartTokenId, .. Enumerable.Repeat(t.VideoTokenId, 8), t.VisionEndTokenId];
        using var ids = torch.tensor(row, 1, row.Length);
        long[] ones = [0, .. Enumerable.Repeat(1L, row.Length - 1)];
        using var mask = torch.tensor(ones, 1, row.Length);
        using var grid = torch.tensor(new long[] { 2, 4, 4 }, 1, 3);
        var (pos, delta) = RopeIndex.Compute(ids, mask, null, cfg, grid, [1.0]);
        var p0 = pos[0, 0].data<long>().ToArray();
        var p1 = pos[1, 0].data<long>().ToArray();
        Assert.Equal(0, p0[0]);                                  // padding (transformers 5 writes 0)
        Assert.Equal([0L, 1], p0[1..3]);
        Assert.Equal(new long[] { 2 + temporal[0], 2 + temporal[0], 2 + temporal[0], 2 + temporal[0],
                                  2 + temporal[1], 2 + temporal[1], 2 + temporal[1], 2 + temporal[1] }, p0[3..11]);
        Assert.Equal(new long[] { 2, 2, 3, 3, 2, 2, 3, 3 }, p1[3..11]);
        long end = 2 + Math.Max(temporal[1], 1) + 1;
        Assert.Equal(end, p0[11]);
        Assert.Equal(end + 1 - 11, delta.item<long>());         // 11 real tokens
    }

    [Fact]
    public void TextOnlyPositionsFollowTheMask()
    {
        var cfg = Config("qwen2vl-tiny");
        using var ids = torch.tensor(new long[] { 0, 0, 4, 5, 6, 7, 8, 9 }, 2, 4);
        using var mask = torch.tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1 }, 2, 4);
        var (pos, delta) = RopeIndex.Compute(ids, mask, null, cfg);
        Assert.Equal(new long[] { 1, 1, 0, 1, 0, 1, 2, 3 }, pos[2].data<long>().ToArray()); // padding → 1 (HF text path)
        Assert.Equal(new long[] { 0, 0 }, delta.data<long>().ToArray());
    }

    [Fact]
    public void CacheRowSelectionReplicatesAPrefilledPrompt()
    {
        // Prefill the 3-row batch once, keep row 1 twice and row 0 once, then decode: each copy must produce the
        // transformers tokens of its source row.
        var (r, model) = (fx.Qwen2VL, fx.Qwen2VLModel);
        model.Attention = AttentionImpl.Sdpa;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        int n = (int)r.Generated.shape[1];
        using var cache = model.CreateCache(3, (int)r.InputIds.shape[1] + n);
        using var pre = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw, cache: cache, logitsForLast: 1);
        var rows = torch.tensor(new long[] { 1, 1, 0 });
        cache.SelectRows(rows);
        var next = pre.Logits!.argmax(-1).index_select(0, rows);
        var tokens = new List<Tensor> { next };
        for (int s = 1; s < n; s++)
        {
            using var o = model.Forward(next, cache: cache, logitsForLast: 1);
            next = o.Logits!.argmax(-1);
            tokens.Add(next);
        }
        var source = new[] { 1, 1, 0 };
        var margins = QwenParityTests.TransformersMargins(r);
        var agree = TokenAssert.GreedyEqualExceptNearTies(TokenAssert.Rows(r.Generated.index_select(0, rows)), TokenAssert.Rows(torch.cat(tokens, 1)),
            (row, step) => margins(source[row], step), "tokens after SelectRows");
        Assert.True(agree.NearTies <= 1, $"{agree.NearTies} near-tie divergences from transformers");
    }

    [Fact]
    public void ExplicitDecodePositionsAndFullMaskEqualTheDefaults()
    {
        var (r, model) = (fx.Qwen25VL, fx.Qwen25VLModel);
        model.Attention = AttentionImpl.Sdpa;
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        long l = r.InputIds.shape[1];
        using var c1 = model.CreateCache(3, (int)l + 2);
        using var c2 = model.CreateCache(3, (int)l + 2);
        using var p1 = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw, cache: c1, logitsForLast: 1);
        using var p2 = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw, cache: c2, logitsForLast: 1);
        var next = p1.Logits!.argmax(-1);
        // Decode position = max prefill position + 1 = L + rope_delta − (padding of the row) … i.e. L + cache offset.
        var pos = (p1.RopeDeltas! + r.AttentionMask.sum(1)).view(1, 3, 1).expand(3, 3, 1);
        var fullMask = torch.cat([r.AttentionMask, torch.ones(3, 1, ScalarType.Int64)], 1);
        using var d1 = model.Forward(next, cache: c1, logitsForLast: 1);
        using var d2 = model.Forward(next, fullMask, positionIds: pos, cache: c2, logitsForLast: 1);
        TensorAssert.Equal(d1.PositionIds, d2.PositionIds, "decode positions");
        // An explicit all-ones mask takes the masked attention path: another computation, so the fp32 tolerance.
        TensorAssert.Close(d1.Logits!, d2.Logits!, Numerics.Fp32, "decode logits");
        Assert.Equal(l + 1, c2.Length);
    }

    [Fact]
    public void HiddenOnlyAndLastLogitsAgreeWithTheFullPass()
    {
        var (r, model) = (fx.Qwen2VL, fx.Qwen2VLModel);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var full = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw);
        using var hidden = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw, logitsForLast: 0);
        using var last3 = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw, logitsForLast: 3);
        Assert.Null(hidden.Logits);
        long l = r.InputIds.shape[1];
        // The same lm_head over the same hidden states: the same computation, bit for bit.
        TensorAssert.Equal(full.Logits!, model.LmHead(hidden.Hidden), "lm_head(hidden)");
        // lm_head over the last 3 positions only is a GEMM of another shape (other blocking of the fp32 sums).
        TensorAssert.Close(full.Logits!.narrow(1, l - 3, 3), last3.Logits!, Numerics.Fp32, "last 3 logits");
        // Precomputed image embeddings instead of pixel values: the same vision pass the full forward runs, then the
        // same decoder, bit for bit.
        using var feats = model.EncodeVision(r.PixelValues, r.ImageGridThw);
        using var viaEmbeds = model.Forward(r.InputIds, r.AttentionMask, imageGridThw: r.ImageGridThw, imageEmbeds: feats);
        TensorAssert.Equal(full.Logits!, viaEmbeds.Logits!, "logits from image embeddings");
    }

    [Theory]
    [InlineData(0)]      // every layer recomputed
    [InlineData(1)]      // --gradient_checkpointing_layers 1: the first of the fixture's two layers only
    public void GradientCheckpointingGivesTheSameGradients(int checkpointLayers)
    {
        using var r = new QwenReference("qwen25vl-tiny");
        using var model = r.Load();
        Assert.True(model.Config.Text.NumLayers > checkpointLayers);
        using var scope = torch.NewDisposeScope();
        Dictionary<string, Tensor> Grads(bool checkpoint)
        {
            model.GradientCheckpointing = checkpoint;
            model.CheckpointLayers = checkpointLayers;
            model.zero_grad();
            using (var o = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw))
            {
                var loss = torch.nn.functional.log_softmax(o.Logits!, -1).select(-1, 7).sum();
                loss.backward();
            }
            return model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        }
        var plain = Grads(false);
        var ckpt = Grads(true);
        model.GradientCheckpointing = false;
        Assert.Equal(plain.Keys.Order(), ckpt.Keys.Order());
        foreach (var (name, g) in plain)
            TensorAssert.Close(g, ckpt[name], 1e-6, name);
        Assert.True(plain["model.layers.0.self_attn.q_proj.weight"].abs().sum().item<float>() > 0);
        Assert.True(plain["visual.blocks.0.attn.qkv.weight"].abs().sum().item<float>() > 0);
    }

    [Fact]
    public void DecodeStepsLeaveNoTensorsBehind()
    {
        var (r, model) = (fx.Qwen2VL, fx.Qwen2VLModel);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        using var cache = model.CreateCache(3, (int)r.InputIds.shape[1] + 8);
        using (var pre = model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, r.ImageGridThw, cache: cache, logitsForLast: 1)) { }
        var next = torch.ones(3, 1, ScalarType.Int64);
        long Step()
        {
            using (var o = model.Forward(next, cache: cache, logitsForLast: 1)) { }
            return DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        }
        long after1 = Step();
        for (int i = 0; i < 5; i++) Assert.Equal(after1, Step());
    }

    [Fact]
    public void ImagePadCountMismatchIsAnInputError()
    {
        var (r, model) = (fx.Qwen2VL, fx.Qwen2VLModel);
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        // Drop the first image (its grid row and patches) but keep its pad tokens.
        var grid = r.ImageGridThw.narrow(0, 1, 2);
        long first = r.ImageGridThw[0].prod().item<long>();
        var pixels = r.PixelValues.narrow(0, first, r.PixelValues.shape[0] - first);
        var e = Assert.Throws<InputException>(() => model.Forward(r.InputIds, r.AttentionMask, pixels, grid));
        Assert.Contains("image_pad", e.Message);

        var badGrid = torch.tensor(new long[] { 1, 12, 16, 1, 6, 4, 1, 8, 12 }, 3, 3);
        Assert.Contains("pixel_values", Assert.Throws<InputException>(() => model.Forward(r.InputIds, r.AttentionMask, r.PixelValues, badGrid)).Message);
    }

    [Fact]
    public void RandomInitIsSeeded()
    {
        var cfg = Config("qwen25vl-tiny");
        using var a = QwenVLModel.Create(cfg, ScalarType.Float32, torch.CPU, seed: 7);
        using var b = QwenVLModel.Create(cfg, ScalarType.BFloat16, torch.CPU, seed: 7);
        using var c = QwenVLModel.Create(cfg, ScalarType.Float32, torch.CPU, seed: 8);
        var sa = a.state_dict(); var sb = b.state_dict(); var sc = c.state_dict();
        TensorAssert.Equal(sa["model.layers.0.mlp.up_proj.weight"].to(ScalarType.BFloat16), sb["model.layers.0.mlp.up_proj.weight"], "same seed");
        Assert.False(sa["model.layers.0.mlp.up_proj.weight"].Equals(sc["model.layers.0.mlp.up_proj.weight"]));
        Assert.Equal(1f, sa["model.norm.weight"].min().item<float>());
        var counts = a.CountParameters();
        Assert.True(counts.Tied);
        Assert.Equal(0, counts.LmHead);
        Assert.Equal(sa.Sum(kv => kv.Value.numel()), counts.Total);
    }
}
