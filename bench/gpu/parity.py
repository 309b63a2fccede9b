"""Compares `lmmr1 debug forward` output with a fixture's reference.safetensors (transformers 5.17, CPU fp32).
Prints one JSON line: max |Δ| of logits at real tokens (attention_mask == 1; padded rows are not compared because
our pad queries attend to their own key, see QwenVLModel), of full_logits, and exactness of position_ids at real
tokens, rope_deltas and greedy tokens.
usage: python3 parity.py REF.safetensors OURS.safetensors LABEL
"""
import json, sys
from safetensors.torch import load_file

ref, ours, label = load_file(sys.argv[1]), load_file(sys.argv[2]), sys.argv[3]
mask = ref["attention_mask"].bool()                                   # [B, L]
d = (ref["logits"].double() - ours["logits"].double()).abs()          # [B, L, V]
res = {"what": "parity", "case": label, "max_abs_logits_real_tokens": d[mask].max().item()}
pos_ok = bool((ref["position_ids"][:, mask] == ours["position_ids"][:, mask]).all())
res["position_ids_equal_real_tokens"] = pos_ok
res["rope_deltas_equal"] = bool((ref["rope_deltas"].reshape(-1) == ours["rope_deltas"].reshape(-1)).all())
if "generated" in ours:
    g_ref, g = ref["generated"], ours["generated"]
    res["greedy_rows_equal"] = [bool((g_ref[i] == g[i]).all()) for i in range(g.shape[0])]
    res["greedy_first_divergence"] = [next((j for j in range(g.shape[1]) if g_ref[i, j] != g[i, j]), None) for i in range(g.shape[0])]
    if "full_logits" in ours:
        res["max_abs_full_logits"] = (ref["full_logits"].double() - ours["full_logits"].double()).abs().max().item()
print(json.dumps(res), flush=True)
