"""Where transformers' fwd+bwd spends its time on the Qwen2.5-VL-3B shape (random bf16 weights, one GPU): the same
step as ../generation/hf_baseline.py's train() (log_softmax(fp32 logits) gathered at the ids, mean, backward), timed
with a sync between forward and backward (fwd_s, bwd_s, and the host's enqueue time of each), then one step under
torch.profiler with the CUDA kernels summed by category (GEMM, attention, elementwise, ...). Prints JSON lines; the
kernel table goes to stderr. The same categories are applied to `nsys stats` of `lmmr1 bench train` by
summarize_kernels.py, so the two columns compare.
Usage: python3 hf_train_profile.py [BATCH [SEQ [TABLE.tsv]]]      (default 4 1024; TABLE: the per-kernel table, in
summarize_kernels.py's TSV format)
"""
import json, sys, time, torch
from summarize_kernels import category, write_table

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 4
seq = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
from transformers import Qwen2_5_VLForConditionalGeneration
from qwen25vl_3b import config
torch.manual_seed(0)
cfg = config()
with torch.device("cuda"):
    model = Qwen2_5_VLForConditionalGeneration._from_config(cfg, torch_dtype=torch.bfloat16)
model.train()
ids = torch.randint(0, 150000, (batch, seq), device="cuda")


def step(split):
    t = time.perf_counter()
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
    logp = torch.log_softmax(out.logits.float(), -1).gather(-1, ids.unsqueeze(-1)).mean()
    fwd_host = time.perf_counter() - t
    if split: torch.cuda.synchronize()
    fwd = time.perf_counter() - t
    t1 = time.perf_counter()
    logp.backward()
    bwd_host = time.perf_counter() - t1
    torch.cuda.synchronize()
    total = time.perf_counter() - t
    model.zero_grad(set_to_none=True)
    del out, logp
    return dict(total=total, fwd=fwd, fwd_host=fwd_host, bwd_host=bwd_host)


runs = [step(True) for _ in range(4)]
best = min(runs[1:], key=lambda r: r["total"])
plain = min(step(False)["total"] for _ in range(3))
print(json.dumps({"what": "hf_train_split", "batch": batch, "seq": seq, "seconds_unsplit": round(plain, 4),
                  "seconds": round(best["total"], 4), "fwd_s": round(best["fwd"], 4), "bwd_s": round(best["total"] - best["fwd"], 4),
                  "fwd_host_s": round(best["fwd_host"], 4), "bwd_host_s": round(best["bwd_host"], 4),
                  "tokens_per_s": round(batch * seq / plain)}), flush=True)

from torch.profiler import profile, ProfilerActivity
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    step(False)
by, launches, total = {}, 0, 0.0
rows = []
for e in prof.key_averages():
    us = e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total
    if us <= 0 or e.count == 0: continue
    rows.append((us, e.count, e.key))
for us, n, name in rows:
    c = category(name)
    by[c] = by.get(c, 0.0) + us
    launches += n
    total += us
print(json.dumps({"what": "hf_train_kernels", "batch": batch, "seq": seq, "kernel_s": round(total / 1e6, 4), "launches": launches,
                  "by_category_s": {k: round(v / 1e6, 4) for k, v in sorted(by.items(), key=lambda x: -x[1])}}), flush=True)
if len(sys.argv) > 3: write_table(sys.argv[3], [(name, n, us * 1e3) for us, n, name in rows])
for us, n, name in sorted(rows, reverse=True)[:25]:
    print(f"{us / 1e3:9.2f} ms {n:6d}x  {name[:120]}", file=sys.stderr)
