"""Python baseline for bench/inputs (bench/README.md "Inputs"): the same two measurements as the C# benchmark, on the
same files, with Hugging Face `tokenizers` and transformers' Qwen2VLImageProcessor (PIL and torchvision variants).
Prints JSON lines.

Inputs: `lmmr1 bench inputs write --output DIR` writes DIR/corpus.jsonl and DIR/images/.
Usage:  python3 python_baseline.py --inputs DIR --tokenizer DIR/or/tokenizer.json [--threads N] [--repeats N]
--threads N limits tokenizers (RAYON_NUM_THREADS) and torch to N threads (use 2 to compare with the 2-core dev box).
"""
import argparse, json, os, platform, statistics, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--inputs", required=True)
ap.add_argument("--tokenizer", required=True)
ap.add_argument("--threads", type=int, default=None)
ap.add_argument("--repeats", type=int, default=3)
args = ap.parse_args()
if args.threads:
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)   # must be set before tokenizers starts its pool
    os.environ["OMP_NUM_THREADS"] = str(args.threads)

import torch  # noqa: E402
from PIL import Image  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402

if args.threads:
    torch.set_num_threads(args.threads)


def emit(**kw):
    print(json.dumps(kw), flush=True)


def measure(fn):
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


emit(what="machine", cores=os.cpu_count(), threads=args.threads, python=platform.python_version(), torch=torch.__version__,
     transformers=transformers.__version__, tokenizers=tokenizers.__version__, pillow=Image.__version__, cpu=platform.processor())

# ---------------- tokenizer ----------------
tok_file = args.tokenizer if args.tokenizer.endswith(".json") else os.path.join(args.tokenizer, "tokenizer.json")
t0 = time.perf_counter()
tk = tokenizers.Tokenizer.from_file(tok_file)
emit(what="tokenizer_load", seconds=round(time.perf_counter() - t0, 3))
texts = [json.loads(line)["text"] for line in open(os.path.join(args.inputs, "corpus.jsonl"), encoding="utf-8")]
nbytes = sum(len(t.encode("utf-8")) for t in texts)
ntok = sum(len(tk.encode(t, add_special_tokens=False).ids) for t in texts)  # warm-up
s = measure(lambda: [tk.encode(t, add_special_tokens=False) for t in texts])
emit(what="tokenizer_encode", mode="single_thread", docs=len(texts), mb=round(nbytes / 1e6, 3), tokens=ntok, seconds=round(s, 3),
     mb_per_s=round(nbytes / 1e6 / s, 3))
b = measure(lambda: tk.encode_batch(texts, add_special_tokens=False))
emit(what="tokenizer_encode", mode=f"batch_{os.environ.get('RAYON_NUM_THREADS', os.cpu_count())}_threads", docs=len(texts),
     mb=round(nbytes / 1e6, 3), tokens=ntok, seconds=round(b, 3), mb_per_s=round(nbytes / 1e6 / b, 3))

# ---------------- image processor ----------------
procs = {}
for name in ["Qwen2VLImageProcessor", "Qwen2VLImageProcessorFast", "Qwen2VLImageProcessorPil"]:
    cls = getattr(transformers, name, None)
    if cls is not None:
        procs[name] = cls(min_pixels=3136, max_pixels=12845056)  # LMM-R1's defaults, as in the C# benchmark
img_dir = os.path.join(args.inputs, "images")
files = sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir))


def load(f):
    im = Image.open(f)
    im.load()
    return im.convert("RGB")


decoded = [load(f) for f in files]
mean_mp = sum(im.size[0] * im.size[1] for im in decoded) / len(decoded) / 1e6
for name, p in procs.items():
    patches = sum(int(p(images=[im], return_tensors="pt")["pixel_values"].shape[0]) for im in decoded)  # warm-up
    only = measure(lambda: [p(images=[im], return_tensors="pt") for im in decoded])
    emit(what="image_preprocess", processor=name, mode="processor_only_sequential", images=len(decoded), mean_mp=round(mean_mp, 3),
         patches=patches, seconds=round(only, 3), images_per_s=round(len(decoded) / only, 3))
    full = measure(lambda: [p(images=[load(f)], return_tensors="pt") for f in files])
    emit(what="image_preprocess", processor=name, mode="decode_and_process_sequential", images=len(decoded), mean_mp=round(mean_mp, 3),
         seconds=round(full, 3), images_per_s=round(len(decoded) / full, 3))
if not procs:
    print("no Qwen2VLImageProcessor class found in transformers " + transformers.__version__, file=sys.stderr)
