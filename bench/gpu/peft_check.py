"""Checks that a LoRA adapter saved by `lmmr1 train --lora_rank R --save_path DIR` (a PEFT folder: adapter_config.json +
adapter_model.safetensors) loads onto the transformers model of its base checkpoint and gives our logits. Three steps
around `lmmr1 debug forward --adapter`:
  1. python3 peft_check.py --base BASE --adapter DIR --write-inputs IN.safetensors [--device cuda] [--mode auto|peft|manual]
                            [--processor FOLDER | --inputs-from REF.safetensors]
     renders a two-prompt batch (one with an image) with the processor and chat template of --processor (default BASE;
     a run's {save_path}_merged export has them) or takes input_ids / attention_mask / pixel_values / image_grid_thw
     from --inputs-from (a fixture's reference.safetensors, for checkpoints without a tokenizer), runs
     AutoModelForImageTextToText (fp32, eager) without the adapter (base_logits), then with it (logits), and writes
     the inputs and both logits to IN. The adapter is applied by
       peft    PeftModel.from_pretrained(model, DIR); the adapter state peft holds afterwards
               (get_peft_model_state_dict) must equal the file tensor for tensor, so a key peft silently failed to
               match (it would leave that lora_B at zero) fails the check;
       manual  (when peft is not installed) a forward hook on each adapted nn.Linear named in the file:
               y = x·Wᵀ + b + (lora_alpha / r)·(x·Aᵀ)·Bᵀ, A = …lora_A.weight [r, in], B = …lora_B.weight [out, r]
               (PEFT's LoRA forward without dropout, use_rslora false), module names tried in both key layouts
               (model.language_model.layers.N… and model.layers.N…).
  2. lmmr1 debug forward --model BASE --adapter DIR --inputs IN.safetensors --output OURS.safetensors --dtype float32 [--device cuda]
  3. python3 peft_check.py --inputs IN.safetensors --ours-output OURS.safetensors [--ours-base-output BASE.safetensors] [--tol 1e-3]
     prints max |Δ| of the logits at real tokens (ours vs transformers + adapter), the argmax agreement, and max |Δ|
     between transformers with and without the adapter (the check means something only when that is well above the
     tolerance); exits 1 above --tol.
bench/gpu/run_lora_checks.sh runs all three on a trained tiny model and on the 3B shape.
"""
import argparse, json, os, sys
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False

PREFIX = "base_model.model."


def batch(base):
    from transformers import AutoProcessor
    proc = AutoProcessor.from_pretrained(base)
    convs = [
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "How many squares are in the picture?"}]}],
        [{"role": "system", "content": "You are a careful math tutor."}, {"role": "user", "content": [{"type": "text", "text": "Solve 2x+3=11."}]}],
    ]
    texts = [proc.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    y, x = np.mgrid[0:168, 0:224]
    img = Image.fromarray(np.stack([(x * 255 // 223), (y * 255 // 167), ((x + y) % 256)], -1).astype(np.uint8))
    proc.tokenizer.padding_side = "left"
    return proc(text=texts, images=[img], padding=True, return_tensors="pt")


def alternates(name):
    """The module name in the other transformers key layout (≥ 4.52 model.language_model.* ↔ classic model.*)."""
    out = [name]
    if name.startswith("model.language_model."):
        out.append("model." + name[len("model.language_model."):])
    elif name.startswith("model.visual."):
        out.append(name[len("model."):])
    elif name.startswith("visual."):
        out.append("model." + name)
    elif name.startswith("model."):
        out.append("model.language_model." + name[len("model."):])
    return out


def apply_manual(model, adapter_dir, device):
    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    if cfg.get("use_rslora") or cfg.get("use_dora") or cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise SystemExit("manual mode covers plain LoRA only (no rsLoRA, DoRA or per-layer patterns)")
    tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    scale = cfg["lora_alpha"] / cfg["r"]
    hooks, names = [], []
    for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
        mod_name = key[len(PREFIX):-len(".lora_A.weight")]
        a = tensors[key].float().to(device)
        b = tensors[key.replace(".lora_A.", ".lora_B.")].float().to(device)
        module = None
        for n in alternates(mod_name):
            try:
                module = model.get_submodule(n)
                break
            except AttributeError:
                pass
        if module is None or not isinstance(module, torch.nn.Linear):
            raise SystemExit(f"no nn.Linear named {mod_name} (or {alternates(mod_name)[1:]}) in {type(model).__name__}")
        if a.shape != (cfg["r"], module.in_features) or b.shape != (module.out_features, cfg["r"]):
            raise SystemExit(f"{key}: A {tuple(a.shape)} / B {tuple(b.shape)} do not fit {mod_name} [{module.out_features}, {module.in_features}]")
        def hook(mod, inp, out, a=a, b=b):
            return out + scale * torch.nn.functional.linear(torch.nn.functional.linear(inp[0].to(a.dtype), a), b).to(out.dtype)
        hooks.append(module.register_forward_hook(hook))
        names.append(mod_name)
    return model, {"adapted_modules": len(names), "scale": scale}


def apply_peft(model, adapter_dir):
    import peft
    from peft import PeftModel, get_peft_model_state_dict
    pm = PeftModel.from_pretrained(model, adapter_dir)
    pm.eval()
    file = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    held = get_peft_model_state_dict(pm)
    held_keys, file_keys = set(held), set(file)
    mism = [k for k in file_keys & held_keys if not torch.equal(held[k].float().cpu(), file[k].float())]
    adapted = sum(1 for _, m in pm.named_modules() if hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {}))
    info = {"peft": peft.__version__, "adapted_modules": adapted, "file_layers": sum(k.endswith(".lora_A.weight") for k in file_keys),
            "keys_only_in_file": sorted(file_keys - held_keys)[:5], "keys_only_in_peft": sorted(held_keys - file_keys)[:5],
            "tensors_differing": mism[:5]}
    info["peft_state_matches_file"] = not (file_keys - held_keys or held_keys - file_keys or mism)
    if not info["peft_state_matches_file"]:
        print(json.dumps({"what": "peft_check", "step": "inputs", "error": "peft's adapter state differs from the file", **info}), flush=True)
        sys.exit(1)
    return pm, info


def write_inputs(a):
    from transformers import AutoModelForImageTextToText
    import transformers
    res = {"what": "peft_check", "step": "inputs", "base": a.base, "adapter": a.adapter, "transformers": transformers.__version__}
    ref = None
    if a.inputs_from:
        ref = load_file(a.inputs_from)
        enc = {k: ref[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    else:
        enc = dict(batch(a.processor or a.base))
    model = AutoModelForImageTextToText.from_pretrained(a.base, dtype=torch.float32, attn_implementation="eager").to(a.device).eval()
    res["architecture"] = type(model).__name__
    if "mm_token_type_ids" not in enc:
        # transformers ≥ 5.x computes M-RoPE from the processor's mm_token_type_ids (0 text, 1 image, 2 video) and
        # refuses (Qwen2-VL) or ignores the image (Qwen2.5-VL) without it; a fixture's reference inputs predate it.
        ids = enc["input_ids"]
        enc["mm_token_type_ids"] = (ids == model.config.image_token_id).long() + 2 * (ids == model.config.video_token_id).long()
    inputs = {k: v.to(a.device) for k, v in enc.items()}
    with torch.no_grad():
        base_logits = model(**inputs).logits.float().cpu()
    if ref is not None and "logits" in ref and ref["logits"].shape == base_logits.shape:
        # This transformers' base forward vs the logits the fixture was made with: the inputs reach it as intended.
        m = enc["attention_mask"].bool()
        res["base_vs_fixture_logits_max_abs"] = (base_logits[m].double() - ref["logits"][m].double()).abs().max().item()
    mode = a.mode
    if mode == "auto":
        try:
            import peft  # noqa: F401
            mode = "peft"
        except ImportError:
            mode = "manual"
    res["mode"] = mode
    model, info = apply_peft(model, a.adapter) if mode == "peft" else apply_manual(model, a.adapter, a.device)
    res.update(info)
    with torch.no_grad():
        logits = model(**inputs).logits.float().cpu()
    save_file({"input_ids": enc["input_ids"].long().contiguous(), "attention_mask": enc["attention_mask"].long().contiguous(),
               "pixel_values": enc["pixel_values"].float().contiguous(), "image_grid_thw": enc["image_grid_thw"].long().contiguous(),
               "logits": logits.contiguous(), "base_logits": base_logits.contiguous()}, a.write_inputs)
    res["input_ids_shape"] = list(enc["input_ids"].shape)
    print(json.dumps(res), flush=True)


def compare(a):
    ref, ours = load_file(a.inputs), load_file(a.ours_output)
    mask = ref["attention_mask"].bool()
    r, o, b = ref["logits"].double()[mask], ours["logits"].double()[mask], ref["base_logits"].double()[mask]
    d = (r - o).abs().max().item()
    per_row = ((ref["logits"].double() - ours["logits"].double()).abs().amax(-1) * mask).amax(-1)
    res = {"what": "peft_check", "step": "compare", "max_abs_logits_real_tokens": d,
           "max_abs_per_row": [round(x, 7) for x in per_row.tolist()],
           "argmax_agreement": (r.argmax(-1) == o.argmax(-1)).float().mean().item(),
           "adapter_effect_max_abs": (r - b).abs().max().item(), "tol": a.tol}
    ok = d <= a.tol
    if a.ours_base_output:
        # Without the adapter, ours vs transformers: separates a base-model (or inputs) mismatch from an adapter one.
        ob = load_file(a.ours_base_output)["logits"].double()[mask]
        res["base_max_abs_logits_real_tokens"] = (b - ob).abs().max().item()
        ok = ok and res["base_max_abs_logits_real_tokens"] <= a.tol
    res["ok"] = ok
    print(json.dumps(res), flush=True)
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", help="step 1: the base checkpoint folder (--pretrain of the run)")
    ap.add_argument("--adapter", help="step 1: the PEFT folder (--save_path of the run)")
    ap.add_argument("--write-inputs", help="step 1: write inputs + transformers' logits here")
    ap.add_argument("--processor", help="step 1: folder with the processor files (default: --base)")
    ap.add_argument("--inputs-from", help="step 1: take the inputs from this safetensors file instead of rendering prompts")
    ap.add_argument("--mode", default="auto", choices=["auto", "peft", "manual"], help="auto: peft when installed, else manual")
    ap.add_argument("--inputs", help="step 3: the file step 1 wrote")
    ap.add_argument("--ours-output", help="step 3: `lmmr1 debug forward --adapter` output on the same inputs")
    ap.add_argument("--ours-base-output", help="step 3 (optional): `lmmr1 debug forward` without the adapter, vs transformers' base logits")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tol", type=float, default=1e-3, help="max |Δ| of fp32 logits")
    a = ap.parse_args()
    if a.write_inputs:
        if not (a.base and a.adapter):
            ap.error("step 1 needs --base and --adapter")
        write_inputs(a)
    elif a.inputs and a.ours_output:
        compare(a)
    else:
        ap.error("give --write-inputs (with --base, --adapter), or --inputs and --ours-output")
