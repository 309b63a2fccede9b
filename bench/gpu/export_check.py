"""Checks that a Hugging Face export of `lmmr1 train` (--save_path, or {ckpt_path}/global_step{N}_hf) loads unchanged in
transformers and gives our logits. Two steps around `lmmr1 debug forward`:
  1. python3 export_check.py --ours DIR --write-inputs IN.safetensors
     loads AutoProcessor (tokenizer, chat_template.json, preprocessor_config.json) and GenerationConfig, renders a
     two-prompt batch (one with an image) with apply_chat_template, runs AutoModelForImageTextToText (fp32, eager) and
     writes input_ids, attention_mask, pixel_values, image_grid_thw and transformers' logits to IN;
  2. lmmr1 debug forward --model DIR --inputs IN.safetensors --output OURS.safetensors [--device cuda]
  3. python3 export_check.py --ours DIR --inputs IN.safetensors --ours-output OURS.safetensors [--tol 1e-3]
     prints max |Δ| of the logits at real tokens and the argmax agreement; exits 1 above --tol.
"""
import argparse, json, sys
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

# True fp32 on the GPU: cuDNN convolutions (the Conv3d patch embedding) default to TF32, which alone moves fp32 logits
# by ~1e-2 on image rows; `lmmr1 debug forward` computes in true fp32.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False


def write_inputs(a):
    from transformers import AutoProcessor, GenerationConfig
    res = {"what": "export_check", "step": "inputs", "model": a.ours}
    proc = AutoProcessor.from_pretrained(a.ours)
    res["processor"] = type(proc).__name__
    res["image_processor"] = type(proc.image_processor).__name__
    res["min_max_pixels"] = [getattr(proc.image_processor, "min_pixels", None), getattr(proc.image_processor, "max_pixels", None)]
    if not proc.chat_template:
        raise SystemExit("the processor has no chat template (chat_template.json not picked up)")
    gen = GenerationConfig.from_pretrained(a.ours)
    res["generation_config"] = {k: getattr(gen, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    if gen.eos_token_id is None:
        raise SystemExit("generation_config.json has no eos_token_id")

    convs = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many squares are in the picture?"}]}],
        [{"role": "system", "content": "You are a careful math tutor."}, {"role": "user", "content": [{"type": "text", "text": "Solve 2x+3=11."}]}],
    ]
    texts = [proc.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    for t in texts:
        if not t.endswith("<|im_start|>assistant\n"):
            raise SystemExit(f"unexpected rendering: {t!r}")
    res["prompts"] = texts
    y, x = np.mgrid[0:168, 0:224]
    img = Image.fromarray(np.stack([(x * 255 // 223), (y * 255 // 167), ((x + y) % 256)], -1).astype(np.uint8))
    proc.tokenizer.padding_side = "left"                                # as the fixtures (ours ignores pad positions)
    enc = proc(text=texts, images=[img], padding=True, return_tensors="pt")

    from transformers import AutoModelForImageTextToText
    model = AutoModelForImageTextToText.from_pretrained(a.ours, dtype=torch.float32, attn_implementation="eager").to(a.device).eval()
    res["architecture"] = type(model).__name__
    with torch.no_grad():
        logits = model(**{k: v.to(a.device) for k, v in enc.items()}).logits.float().cpu()
    save_file({"input_ids": enc["input_ids"].long().contiguous(), "attention_mask": enc["attention_mask"].long().contiguous(),
               "pixel_values": enc["pixel_values"].float().contiguous(), "image_grid_thw": enc["image_grid_thw"].long().contiguous(),
               "logits": logits.contiguous()}, a.write_inputs)
    res["input_ids_shape"] = list(enc["input_ids"].shape)
    res["image_grid_thw"] = enc["image_grid_thw"].tolist()
    print(json.dumps(res), flush=True)


def compare(a):
    ref, ours = load_file(a.inputs), load_file(a.ours_output)
    mask = ref["attention_mask"].bool()                               # [B, L]
    r, o = ref["logits"].double()[mask], ours["logits"].double()[mask]  # [N, V] real tokens only
    d = (r - o).abs().max().item()
    agree = (r.argmax(-1) == o.argmax(-1)).float().mean().item()
    res = {"what": "export_check", "step": "compare", "model": a.ours, "max_abs_logits_real_tokens": d,
           "argmax_agreement": agree, "tol": a.tol, "ok": d <= a.tol}
    print(json.dumps(res), flush=True)
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True, help="the exported folder")
    ap.add_argument("--write-inputs", help="step 1: write inputs + transformers' logits here")
    ap.add_argument("--inputs", help="step 3: the file step 1 wrote")
    ap.add_argument("--ours-output", help="step 3: `lmmr1 debug forward --output` of the same folder and inputs")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tol", type=float, default=1e-3, help="max |Δ| of fp32 logits")
    a = ap.parse_args()
    if a.write_inputs:
        write_inputs(a)
    elif a.inputs and a.ours_output:
        compare(a)
    else:
        ap.error("give --write-inputs, or --inputs and --ours-output")
