"""Kernel time by category from per-kernel tables, so that `lmmr1 bench train|generate --profile-kernels` and
transformers (hf_train_profile.py, torch.profiler) compare in one table. A table is either our TSV (one line per kernel
name: "name<TAB>launches<TAB>total ns", as lmmr1 and hf_train_profile.py write it) or `nsys stats -r cuda_gpu_kern_sum
--format csv`.
Usage: python3 summarize_kernels.py NAME=FILE [NAME=FILE ...] [--steps N]   (N: profiled steps, to print per step)
"""
import csv, json, sys

CATEGORIES = [  # first match wins; names lower-cased
    ("gemm", ["gemm", "cutlass", "xmma", "nvjet", "cublas", "matmul"]),
    ("attention", ["flash", "fmha", "attention", "efficient_attention", "mem_eff"]),
    ("softmax/lse", ["softmax", "logsumexp"]),
    ("reduce", ["reduce"]),
    ("index/copy/cat", ["index", "gather", "scatter", "copy", "cat", "memcpy", "memset"]),
    ("elementwise", ["elementwise", "vectorized", "unrolled", "pointwise"]),
    ("lmmr1 fused", ["lmmr1"]),
]


def category(name):
    n = name.lower()
    for k, pats in CATEGORIES:
        if any(p in n for p in pats): return k
    return "other"


def read_table(path):
    """[(name, launches, total ns)]"""
    if path.endswith(".tsv"):
        out = []
        for line in open(path, encoding="utf-8", errors="replace"):
            f = line.rstrip("\n").split("\t")
            if len(f) >= 3: out.append(("\t".join(f[:-2]), int(f[-2]), float(f[-1])))
        return out
    rows = list(csv.DictReader(open(path)))
    tk = [k for k in rows[0] if k.startswith("Total Time")][0]
    return [(r["Name"], int(r["Instances"]), float(r[tk])) for r in rows]


def write_table(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for name, n, ns in rows: f.write(f"{name.replace(chr(9), ' ')}\t{n}\t{int(ns)}\n")


def summarize(path):
    rows = read_table(path)
    by, tot, n = {}, 0.0, 0
    for name, c, t in rows:
        k = category(name)
        by[k] = by.get(k, 0.0) + t; tot += t; n += c
    top = sorted(rows, key=lambda r: -r[2])[:20]
    return tot / 1e9, n, {k: v / 1e9 for k, v in by.items()}, [(t / 1e9, c, name) for name, c, t in top]


if __name__ == "__main__":
    steps = 1
    args = [a for a in sys.argv[1:]]
    if "--steps" in args:
        i = args.index("--steps"); steps = int(args[i + 1]); del args[i:i + 2]
    for a in args:
        name, path = a.split("=", 1)
        try: tot, n, by, top = summarize(path)
        except Exception as e: print(f"== {name}: no summary ({e})"); continue
        print(json.dumps({"what": "kernel_summary", "name": name, "kernel_s": round(tot, 4), "launches": n,
                          "by_category_s": {k: round(v, 4) for k, v in sorted(by.items(), key=lambda x: -x[1])}}))
        print(f"== {name}: {tot:.3f} s kernel time, {n} launches (per profiled step: {tot / steps:.4f} s, {n // steps})")
        for k, v in sorted(by.items(), key=lambda x: -x[1]): print(f"   {k:16s} {v:8.4f} s {100 * v / tot:5.1f} %")
        for t, c, nm in top: print(f"   {t:8.4f} s {c:7d}x  {nm[:110]}")
