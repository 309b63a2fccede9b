"""R1-V-style RL step in plain transformers (what TRL 0.14's GRPOTrainer, R1-V's Qwen2VLGRPOTrainer, does per step),
the baseline `lmmr1 bench rl-step` is compared with on the same GPU in the same call. Prints one JSON line per step.

Per step: `model.generate(num_return_sequences=G)` on the prompts (each row gets its own copy of the prompt's image, as
num_return_sequences expands pixel_values), a reward per sample, GRPO group advantages, then per micro-batch of
--micro samples: the reference model's per-token log-probs (no grad) and the policy's forward + backward with TRL's
loss (exp(lp - lp.detach()) * A - beta * k3-KL, masked mean per sample), TRL's get_per_token_logps (full-sequence
logits, per-row log_softmax); one AdamW step with fp32 master weights (fused torch AdamW, as DeepSpeed's bf16
optimizer keeps masters) after all micro-batches (gradient accumulation over the whole rollout), vision tower frozen,
gradient checkpointing on the policy. Model: the Qwen2.5-VL-3B shape with random bf16 weights (qwen25vl_3b.py,
hf_baseline.py's config), sdpa attention.

Random weights never emit EOS, so response lengths are forced like `lmmr1 bench rl-step --synthetic_response_len`:
each sample's length is log-normal (median, sigma) and above --max-new it is truncated; generate runs --max-new
steps with min_new_tokens = max_new_tokens (it would anyway: with ~8 % of samples truncated at these settings, some
row of every generate call runs to the limit, and HF keeps decoding every row until then), then each completion is
cut at its length with EOS as its last token. Each micro-batch is trimmed to its longest completion (TRL pads to the
whole generation; trimming only makes this baseline faster). The image and video pad tokens are suppressed in generate
(a generated <|image_pad|> breaks the training forward's image-feature count; lmmr1's engine bans the same two ids).

usage: python3 r1v_loop.py [--prompts 64] [--samples 8] [--max-new 512] [--prompt-text 90] [--median 256]
       [--sigma 0.5] [--micro 8] [--gen-prompts 64] [--steps 2] [--budget-s 500]
"""
import argparse, json, math, time
import numpy as np
import torch
from transformers import Qwen2_5_VLForConditionalGeneration
from qwen25vl_3b import config

ap = argparse.ArgumentParser()
ap.add_argument("--prompts", type=int, default=64)
ap.add_argument("--samples", type=int, default=8)
ap.add_argument("--max-new", type=int, default=512)
ap.add_argument("--prompt-text", type=int, default=90, help="text tokens per prompt after the image block")
ap.add_argument("--median", type=float, default=256)
ap.add_argument("--sigma", type=float, default=0.5)
ap.add_argument("--micro", type=int, default=8)
ap.add_argument("--gen-prompts", type=int, default=0, help="prompts per generate call (default: all)")
ap.add_argument("--steps", type=int, default=2)
ap.add_argument("--beta", type=float, default=0.04)
ap.add_argument("--budget-s", type=float, default=1e9, help="stop before a step that would not fit (estimated from the last)")
args = ap.parse_args()
gen_prompts = args.gen_prompts or args.prompts

torch.manual_seed(0)
cfg = config()
T0 = time.time()
with torch.device("cuda"):
    policy = Qwen2_5_VLForConditionalGeneration._from_config(cfg, torch_dtype=torch.bfloat16)
    ref = Qwen2_5_VLForConditionalGeneration._from_config(cfg, torch_dtype=torch.bfloat16)
ref.load_state_dict(policy.state_dict())
ref.eval().requires_grad_(False)
for n, p in policy.named_parameters():
    if "visual" in n: p.requires_grad_(False)
policy.gradient_checkpointing_enable()
policy.config.use_cache = True
trainable = [p for p in policy.parameters() if p.requires_grad]
masters = [p.detach().float().clone() for p in trainable]
opt = torch.optim.AdamW(masters, lr=1e-6, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
EOS, PAD = 151645, 151643
VS, VE, IP, VIDEO_PAD = 151652, 151653, 151655, 151656
build_s = time.time() - T0
print(json.dumps({"what": "r1v_model", "build_s": round(build_s, 1), "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                  "trainable_params": sum(p.numel() for p in trainable)}), flush=True)

rng = np.random.default_rng(20261206)
P, G = args.prompts, args.samples
img_row = [VS] + [IP] * 256 + [VE]
prompt_ids = [torch.tensor(img_row + rng.integers(0, 150000, args.prompt_text).tolist(), device="cuda") for _ in range(P)]
pixels = [torch.randn(1024, 1176, device="cuda", dtype=torch.bfloat16) for _ in range(P)]
grid = torch.tensor([[1, 32, 32]], device="cuda")
L = prompt_ids[0].numel()


def sync():
    torch.cuda.synchronize()


def per_token_logps(model, ids, mask, pix, thw, mm):
    # TRL 0.14 get_per_token_logps: logits of the whole sequence, shifted, per-row log_softmax and gather.
    logits = model(input_ids=ids, attention_mask=mask, pixel_values=pix, image_grid_thw=thw, mm_token_type_ids=mm).logits
    logits = logits[:, :-1, :]
    ids = ids[:, 1:]
    out = []
    for lr, ir in zip(logits, ids):
        out.append(torch.gather(lr.log_softmax(-1), 1, ir.unsqueeze(1)).squeeze(1))
    return torch.stack(out)


def step(i):
    times, peaks = {}, {}
    t_step = time.time()

    def phase(name, t):
        sync()
        times[name] = round(times.get(name, 0) + time.time() - t, 3)
        peaks[name] = max(peaks.get(name, 0), round(torch.cuda.max_memory_allocated() / 2**30, 2))
        torch.cuda.reset_peak_memory_stats()

    torch.cuda.reset_peak_memory_stats()
    # ---- generate (num_return_sequences), in calls of gen_prompts prompts
    t = time.time()
    completions = []
    policy.eval()
    with torch.no_grad():
        for s in range(0, P, gen_prompts):
            idx = list(range(s, min(P, s + gen_prompts)))
            ids = torch.stack([prompt_ids[j] for j in idx])
            kw = dict(pixel_values=torch.cat([pixels[j] for j in idx]), image_grid_thw=grid.repeat(len(idx), 1),
                      mm_token_type_ids=(ids == IP).long())
            out = policy.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new,
                                  min_new_tokens=args.max_new, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                  num_return_sequences=G, eos_token_id=None, pad_token_id=PAD,
                                  suppress_tokens=[IP, VIDEO_PAD], **kw)
            completions.append(out[:, L:])
    comp = torch.cat(completions)                                  # [P*G, max_new], prompt-major
    phase("generate", t)
    # ---- forced lengths, reward, GRPO advantages
    t = time.time()
    z = rng.standard_normal(P * G)
    lens = np.maximum(1, np.round(args.median * np.exp(args.sigma * z))).astype(int)
    truncated = lens > args.max_new
    lens = np.minimum(lens, args.max_new)
    for r in range(P * G):
        if not truncated[r]: comp[r, lens[r] - 1] = EOS
        comp[r, lens[r]:] = PAD
    rewards = torch.tensor(rng.integers(0, 2, P * G), dtype=torch.float32, device="cuda")
    g = rewards.view(P, G)
    adv = ((g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)).view(-1)
    phase("reward", t)
    # ---- reference log-probs and policy forward/backward per micro-batch, one optimizer step
    policy.train()
    n_tokens = int(P * G * L + lens.sum())
    for s in range(0, P * G, args.micro):
        rows = list(range(s, min(P * G, s + args.micro)))
        w = int(lens[rows].max())
        ids = torch.cat([torch.stack([prompt_ids[r // G] for r in rows]), comp[rows, :w]], 1)
        cmask = (torch.arange(w, device="cuda")[None, :] < torch.tensor(lens[rows], device="cuda")[:, None]).float()
        amask = torch.cat([torch.ones(len(rows), L, device="cuda", dtype=torch.long), cmask.long()], 1)
        pix = torch.cat([pixels[r // G] for r in rows])
        thw = grid.repeat(len(rows), 1)
        mm = (ids == IP).long()
        t = time.time()
        with torch.no_grad():
            ref_lp = per_token_logps(ref, ids, amask, pix, thw, mm)[:, L - 1:]
        phase("reference", t)
        t = time.time()
        lp = per_token_logps(policy, ids, amask, pix, thw, mm)[:, L - 1:]
        kl = torch.exp(ref_lp - lp) - (ref_lp - lp) - 1
        a = adv[rows].unsqueeze(1)
        tok_loss = -(torch.exp(lp - lp.detach()) * a - args.beta * kl)
        loss = ((tok_loss * cmask).sum(1) / cmask.sum(1)).mean() * len(rows) / (P * G)
        loss.backward()
        del lp, kl, tok_loss, loss, ref_lp
        phase("update", t)
    t = time.time()
    for m, p in zip(masters, trainable):
        m.grad = p.grad.float()
        p.grad = None
    torch.nn.utils.clip_grad_norm_(masters, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        for m, p in zip(masters, trainable): p.copy_(m)
    phase("update", t)
    sync()
    dt = time.time() - t_step
    res = {"what": "r1v_rl_step", "step": i, "prompts": P, "samples_per_prompt": G, "samples": P * G, "max_new": args.max_new,
           "gen_prompts_per_call": gen_prompts, "micro": args.micro, "prompt_len": L, "mean_response_len": round(float(lens.mean()), 1),
           "truncated": int(truncated.sum()), "step_s": round(dt, 3), "phases_s": times, "other_s": round(dt - sum(times.values()), 3),
           "tokens": n_tokens, "tokens_per_s_per_gpu": round(n_tokens / dt), "gpus": 1,
           "generate_tokens_per_s": round(float(lens.sum()) / times["generate"]),
           "peak_allocated_gib_by_phase": peaks, "gpu": torch.cuda.get_device_name(0)}
    print(json.dumps(res), flush=True)
    return dt


last = 0.0
for i in range(1, args.steps + 1):
    if last > 0 and time.time() - T0 + last * 1.1 > args.budget_s:
        print(json.dumps({"what": "r1v_stopped", "reason": f"budget {args.budget_s} s", "steps_done": i - 1}), flush=True)
        break
    last = step(i)
