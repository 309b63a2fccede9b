"""Baseline numbers for the performance compass: Hugging Face transformers on a Qwen2.5-VL-3B-shaped model
(random bf16 weights) on one GPU. Prints JSON lines.
Usage: python3 hf_baseline.py [gen|images|rollout|gen+rollout|images+rollout|issue12|text512|image512|train|all]
"text512": only the warm-up and 512 rows x 512 new tokens of text (the cheapest baseline of issue 12's 6x target).
"image512": only the warm-up and 512 rows x 512 new tokens with one 448x448 image each (issue 12's image case).
"issue12": the three cases of issue 12 (512 rows text, 64 rows text, 512 rows with one 448x448 image each), 512 new tokens.
Copied from /work/shared/bench/hf_baseline.py; added "rollout": 512 rows (= 64 prompts x 8 samples, each row with its
own copy of the prompt and image, which is what HF generate does with num_return_sequences) x 512 new tokens with one
448x448 image per row, the shape of `lmmr1 bench generate --cases 64x8:512:image448`; and "images": only the
warm-up and gen's image case (64 rows, 256 new tokens), to save GPU time when the text cases were measured already.
"""
import json, sys, time, torch
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

what = sys.argv[1] if len(sys.argv) > 1 else "all"
torch.manual_seed(0)
text = dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
            num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=128000, tie_word_embeddings=True,
            rope_scaling={"type": "mrope", "rope_type": "default", "mrope_section": [16, 24, 24]}, rope_theta=1e6)
vision = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
              temporal_patch_size=2, spatial_merge_size=2, in_channels=3, hidden_act="silu", window_size=112,
              fullatt_block_indexes=[7, 15, 23, 31], tokens_per_second=2)
cfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                       image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653)
cfg._attn_implementation = "sdpa"
t0 = time.time()
with torch.device("cuda"):
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, torch_dtype=torch.bfloat16)
model.eval()
n_params = sum(p.numel() for p in model.parameters())
n_lm = sum(p.numel() for n, p in model.named_parameters() if "visual" not in n)
print(json.dumps({"what": "model", "params": n_params, "params_lm": n_lm, "build_s": round(time.time() - t0, 1),
                  "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}), flush=True)

def gen(batch, prompt_len, new_tokens, images=False):
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    ids = torch.randint(0, 150000, (batch, prompt_len), device="cuda")
    kw = {}
    if images:
        n_img_tok = 256  # 448x448 -> grid 32x32 -> 256 merged tokens
        vs, ve, ip = 151652, 151653, 151655
        row = [vs] + [ip] * n_img_tok + [ve]
        ids = torch.cat([torch.tensor(row, device="cuda").repeat(batch, 1), ids], 1)
        kw["pixel_values"] = torch.randn(batch * 1024, 1176, device="cuda", dtype=torch.bfloat16)
        kw["image_grid_thw"] = torch.tensor([[1, 32, 32]] * batch, device="cuda")
        kw["mm_token_type_ids"] = (ids == ip).long()
    mask = torch.ones_like(ids)
    with torch.no_grad():
        t = time.time()
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=True, temperature=1.0, top_p=1.0, top_k=0, eos_token_id=None, pad_token_id=0, **kw)
        torch.cuda.synchronize(); dt = time.time() - t
    made = (out.shape[1] - ids.shape[1]) * batch
    print(json.dumps({"what": "hf_generate", "batch": batch, "prompt_len": ids.shape[1], "new_tokens": new_tokens,
                      "images": images, "seconds": round(dt, 2), "tokens_per_s": round(made / dt),
                      "ms_per_step": round(1000 * dt / new_tokens, 2),
                      "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)}), flush=True)

def train(batch, seq, ckpt):
    model.train()
    if ckpt: model.gradient_checkpointing_enable()
    else: model.gradient_checkpointing_disable()
    ids = torch.randint(0, 150000, (batch, seq), device="cuda")
    torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(4):
        t = time.time()
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
        logp = torch.log_softmax(out.logits.float(), -1).gather(-1, ids.unsqueeze(-1)).mean()
        logp.backward()
        torch.cuda.synchronize(); times.append(time.time() - t)
        model.zero_grad(set_to_none=True)
        del out, logp
    dt = min(times[1:])
    toks = batch * seq
    flops = 6 * n_lm * toks + 12 * 36 * 2048 * seq * toks / 2  # dense + causal attention
    print(json.dumps({"what": "hf_train_fwd_bwd", "batch": batch, "seq": seq, "grad_ckpt": ckpt, "seconds": round(dt, 3),
                      "tokens_per_s": round(toks / dt), "tflops": round(flops / dt / 1e12), "mfu_vs_989": round(flops / dt / 989e12, 3),
                      "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)}), flush=True)
    model.eval()

if what in ("gen", "images", "rollout", "gen+rollout", "images+rollout", "issue12", "text512", "image512", "all"):
    gen(8, 128, 128)  # warm-up
if what == "text512":
    gen(512, 128, 512)
if what in ("gen", "gen+rollout", "issue12", "all"):
    gen(512, 128, 512)
    gen(64, 128, 512)
if what in ("gen", "gen+rollout", "all"):
    gen(64, 128, 256, images=True)
if what in ("images", "images+rollout"):
    gen(64, 128, 256, images=True)
if what in ("rollout", "gen+rollout", "images+rollout", "issue12", "image512"):
    gen(512, 128, 512, images=True)
if what in ("train", "all"):
    train(4, 1024, False)
    train(8, 2048, True)
