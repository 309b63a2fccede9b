#!/usr/bin/env bash
# The warm-up rollout on the GPU (issue 12, "first RL step no slower than the second"): the same `lmmr1 bench rl-step`
# run twice in one call, with the warm-up (the default, as `lmmr1 train` runs it) and with --no_rollout_warmup.
# Checks that the warm-up changes nothing the run computes — every step's reward, policy loss and KL equal between the
# two runs, to the last digit printed by the JSON (same seeds, counter-based sampling) — and prints step 1 / step 2 and
# the warm-up's own time. Exit 1 when a step differs.
# Shape (env): PROMPTS (64) x SAMPLES (8), MAXNEW (256), LENS (none = the model's own stops, or MEDIAN:SIGMA forced
# lengths), MICRO_TRAIN (16), STEPS (3 with the warm-up; the run without it does 2), EXTRA (more flags, e.g.
# "--gradient_checkpointing_layers 28"); group_norm + KL loss, packed + shared prompts, bf16, checkpointing, one 448²
# random image per prompt, random weights (preset:qwen2.5-vl-3b).
# usage: OUT=... bash bench/rl/warmup_check.sh LMMR1 TOKENIZER_DIR      (LMMR1: a GPU build's `lmmr1`)
set -uo pipefail
L=$1; TOK=$2; OUT=${OUT:-$PWD/warmup-out}; mkdir -p "$OUT"
PROMPTS=${PROMPTS:-64}; SAMPLES=${SAMPLES:-8}; MAXNEW=${MAXNEW:-256}; LENS=${LENS:-none}; STEPS=${STEPS:-3}
run() {  # name steps extra...
  local name=$1 steps=$2; shift 2
  timeout ${RUN_TIMEOUT:-200} "$L" bench rl-step --pretrain preset:qwen2.5-vl-3b --tokenizer "$TOK" --device cuda --bf16 --gradient_checkpointing \
    --freeze_prefix visual --rollout_batch_size "$PROMPTS" --n_samples_per_prompt "$SAMPLES" --train_batch_size $(( PROMPTS * SAMPLES )) \
    --micro_train_batch_size ${MICRO_TRAIN:-16} --micro_rollout_batch_size 8 --generate_max_len "$MAXNEW" --prompt_max_len 8192 \
    $( [[ "$LENS" == none ]] || echo --synthetic_response_len "$LENS" ) --synthetic_reward --bench_steps "$steps" --actor_learning_rate 1e-6 \
    --advantage_estimator group_norm --init_kl_coef 0.001 --use_kl_loss --kl_estimator k3 --packing_samples --packing_share_prompts \
    --work_dir "/tmp/warmup-data-$PROMPTS" --output "$OUT/$name.jsonl" ${EXTRA:-} "$@" > "$OUT/$name.log" 2>&1
  echo "$name exit $?" >&2
}
run warm "$STEPS"
run cold 2 --no_rollout_warmup
python3 - "$OUT/warm.jsonl" "$OUT/cold.jsonl" <<'PY'
import json, sys
def steps(p):
    try: return [d for d in map(json.loads, open(p)) if d.get("what") == "lmmr1_rl_step"]
    except FileNotFoundError: return []
warm, cold = steps(sys.argv[1]), steps(sys.argv[2])
ok = bool(warm) and bool(cold)
for name, run in (("warm-up", warm), ("no warm-up", cold)):
    if len(run) >= 2:
        w = run[0].get("warmup")
        print(f"{name:10s} " + " ".join(f"step {d['step']} {d['step_s']:.2f} s (generate {d['phases_s']['generate']:.2f}, captures {d['engine']['graph_captures']} in {d['engine']['capture_s']:.2f} s)" for d in run)
              + f"; step 1 / step 2 = {run[0]['step_s'] / run[1]['step_s']:.3f}" + (f"; warm-up {w['seconds']:.2f} s, {w['graph_captures']} captures" if w else ""))
for a, b in zip(warm, cold):
    same = all(a[k] == b[k] for k in ("reward", "policy_loss", "kl", "mean_response_len"))
    ok &= same
    print(f"step {a['step']}: reward {a['reward']} / {b['reward']}, policy loss {a['policy_loss']} / {b['policy_loss']}, kl {a['kl']} / {b['kl']}: {'SAME' if same else 'DIFFERENT'}")
print("PASS" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY
