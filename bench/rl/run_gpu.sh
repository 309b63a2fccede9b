#!/usr/bin/env bash
# Issue 13's GPU benchmarks in one call, from the repository root on the GPU machine: `lmmr1 native build`, then the
# parts named in PARTS (comma list, run in the order given):
#   train   lmmr1 bench train on TRAIN_CASES (default 4x1024,4x1024:ckpt,8x2048:ckpt), 3B shape, random weights in memory
#   train_noopt  the same without the optimizer (fwd+bwd only, NOOPT_CASES)
#   hftrain transformers fwd+bwd on 4x1024 and 8x2048+ckpt (hf_baseline.py train, same GPU)
#   rl_rb   lmmr1 bench rl-step: reinforce_baseline + reference (KL 0.001 in the reward)
#   rl_gn   lmmr1 bench rl-step: group_norm + reference (GRPO: --use_kl_loss, k3); the one train batch's old log-probs
#           come from the update's own forward (no "logprobs" phase: OldLogProbPlan)
#   rl_gn_recompute  rl_gn with --recompute_old_log_prob (the separate old-log-prob pass, the path before it)
#   r1v     the R1-V-style transformers loop (bench/rl/r1v_loop.py)
#   rl_rb_keep  rl_rb with --rollout_keep_cuda_graphs (memory with the graphs kept)
#   train_pack, rl_rb_pack, rl_gn_pack  train / rl_rb / rl_gn with --packing_samples (padding-free passes, flash varlen)
#   rl_rb_share, rl_gn_share  rl_rb_pack / rl_gn_pack plus --packing_share_prompts (each prompt once per micro-batch)
# Shapes: PROMPTS (64) x SAMPLES (8), one 448x448 random image per prompt, responses forced to log-normal lengths
# LENS (MEDIAN:SIGMA, 256:0.5; none = no forced stops, every response MAXNEW long) up to MAXNEW (512); train_batch_size = all samples, micro 8; bf16 + fp32 AdamW masters,
# gradient checkpointing, vision tower frozen; micro-batches MICRO_TRAIN (8) and MICRO_ROLLOUT (8) rows. STEPS (2) steps each. RL_EXTRA: more flags for every rl-step part (e.g.
# "--gradient_checkpointing_layers 28"). JSON lines go to $OUT/rl.jsonl; a table last.
# usage: OUT=... bash bench/rl/run_gpu.sh LMMR1_TARBALL TOKENIZER_DIR [BASELINE_DIR]
set -uo pipefail
TAR=$1; TOK=$2; BASE=${3:-$(cd "$(dirname "$0")" && pwd)}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$PWD/rl-out}; mkdir -p "$OUT"; RES=$OUT/rl.jsonl
PARTS=${PARTS:-train,hftrain,rl_rb,rl_gn,r1v}
PROMPTS=${PROMPTS:-64}; SAMPLES=${SAMPLES:-8}; MAXNEW=${MAXNEW:-512}; LENS=${LENS:-256:0.5}; STEPS=${STEPS:-2}
TRAIN_CASES=${TRAIN_CASES:-4x1024,4x1024:ckpt,8x2048:ckpt}
MODEL=${MODEL:-preset:qwen2.5-vl-3b}
T0=$(date +%s); el() { echo "[t=$(( $(date +%s)-T0 ))s] $*" >&2; }
has() { [[ ",$PARTS," == *",$1,"* ]]; }
mkdir -p /tmp/lmmr1-bin && tar -xJf "$TAR" -C /tmp/lmmr1-bin
L=$(find /tmp/lmmr1-bin -name lmmr1 -type f | head -1); chmod +x "$L"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt" >&2
echo "{\"what\":\"env\",\"gpu\":\"$(head -1 "$OUT/gpu.txt")\",\"date\":\"$(date -u +%FT%TZ)\"}" >> "$RES"
MEM_GB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
# SKIP_NATIVE=1: no native build (PARTS=r1v alone needs none).
[[ "${SKIP_NATIVE:-0}" == 1 ]] || { timeout 120 "$L" native build > "$OUT/native.log" 2>&1; el "native build: $(tail -1 "$OUT/native.log")"; }

rl() {  # rl NAME extra-flags...
  local name=$1; shift
  timeout ${RL_TIMEOUT:-400} "$L" bench rl-step --pretrain "$MODEL" --tokenizer "$TOK" --device cuda --bf16 --gradient_checkpointing \
    --freeze_prefix visual --rollout_batch_size "$PROMPTS" --n_samples_per_prompt "$SAMPLES" --train_batch_size $(( PROMPTS * SAMPLES )) \
    --micro_train_batch_size ${MICRO_TRAIN:-8} --micro_rollout_batch_size ${MICRO_ROLLOUT:-8} --generate_max_len "$MAXNEW" --prompt_max_len 8192 \
    $( [[ "$LENS" == none ]] || echo --synthetic_response_len "$LENS" ) --synthetic_reward --bench_steps "$STEPS" --actor_learning_rate 1e-6 --temperature 1.0 \
    --work_dir /tmp/rl-data --output "$RES" "$@" ${RL_EXTRA:-} > "$OUT/$name.log" 2>&1
  el "$name exit $?: $(grep -c lmmr1_rl_step "$OUT/$name.log") steps"; grep -v '^{' "$OUT/$name.log" | tail -4 >&2
}

part_train() {
  timeout ${TRAIN_TIMEOUT:-240} "$L" bench train --model "$MODEL" --cases "$TRAIN_CASES" --steps 4 --output "$RES" > "$OUT/train.log" 2>&1
  el "bench train exit $?"; grep -v '^{' "$OUT/train.log" | grep -v '^   at ' | tail -3 >&2
}
part_train_pack() {
  timeout ${TRAIN_TIMEOUT:-240} "$L" bench train --model "$MODEL" --cases "${PACK_CASES:-$TRAIN_CASES}" --steps 4 --packing_samples --output "$RES" > "$OUT/train_pack.log" 2>&1
  el "bench train --packing_samples exit $?"; grep -v '^{' "$OUT/train_pack.log" | grep -v '^   at ' | tail -3 >&2
}
part_train_noopt() {   # forward + backward only, no optimizer state held (what hf_baseline.py train measures)
  timeout ${TRAIN_TIMEOUT:-240} "$L" bench train --model "$MODEL" --cases "${NOOPT_CASES:-4x1024,8x2048:ckpt}" --steps 4 --no-optimizer --output "$RES" > "$OUT/train_noopt.log" 2>&1
  el "bench train --no-optimizer exit $?"; grep -v '^{' "$OUT/train_noopt.log" | grep -v '^   at ' | tail -3 >&2
}
part_hftrain() {
  timeout 240 python3 "$BASE/hf_baseline.py" train 2> "$OUT/hftrain.log" | tee -a "$RES" >/dev/null; el "hf train"; tail -2 "$OUT/hftrain.log" >&2
}
part_r1v() {
  local GP=${R1V_GEN_PROMPTS:-$(( MEM_GB > 100000 ? PROMPTS : PROMPTS / 2 ))}
  timeout ${R1V_TIMEOUT:-500} python3 "$HERE/r1v_loop.py" --prompts "${R1V_PROMPTS:-$PROMPTS}" --samples "$SAMPLES" --max-new "${R1V_MAXNEW:-$MAXNEW}" \
    --prompt-text "${R1V_TEXT:-90}" $( [[ "$LENS" == none ]] && echo --median 1e9 --sigma 0.01 || echo --median "${LENS%%:*}" --sigma "${LENS##*:}" ) --micro 8 --gen-prompts "$GP" --steps "${R1V_STEPS:-$STEPS}" \
    --budget-s "${R1V_BUDGET:-480}" 2> "$OUT/r1v.log" | tee -a "$RES" >/dev/null
  el "r1v"; tail -3 "$OUT/r1v.log" >&2
}
part_rl_rb() { rl rl_rb --advantage_estimator reinforce_baseline --init_kl_coef 0.001; }
part_rl_gn() { rl rl_gn --advantage_estimator group_norm --init_kl_coef 0.001 --use_kl_loss --kl_estimator k3; }
part_rl_gn_recompute() { rl rl_gn_recompute --advantage_estimator group_norm --init_kl_coef 0.001 --use_kl_loss --kl_estimator k3 --recompute_old_log_prob; }
part_rl_rb_pack() { rl rl_rb_pack --advantage_estimator reinforce_baseline --init_kl_coef 0.001 --packing_samples; }
part_rl_gn_pack() { rl rl_gn_pack --advantage_estimator group_norm --init_kl_coef 0.001 --use_kl_loss --kl_estimator k3 --packing_samples; }
part_rl_rb_share() { rl rl_rb_share --advantage_estimator reinforce_baseline --init_kl_coef 0.001 --packing_samples --packing_share_prompts; }
part_rl_gn_share() { rl rl_gn_share --advantage_estimator group_norm --init_kl_coef 0.001 --use_kl_loss --kl_estimator k3 --packing_samples --packing_share_prompts; }
part_rl_rb_keep() { STEPS=${KEEP_STEPS:-$STEPS} RL_TIMEOUT=${KEEP_TIMEOUT:-${RL_TIMEOUT:-400}} rl rl_rb_keep --advantage_estimator reinforce_baseline --init_kl_coef 0.001 --rollout_keep_cuda_graphs; }
# The parts run in the order PARTS names them.
for p in ${PARTS//,/ }; do "part_$p"; done

python3 - "$RES" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    try: d = json.loads(l)
    except Exception: continue
    w = d.get("what")
    if w in ("lmmr1_train_fwd_bwd", "hf_train_fwd_bwd"):
        print(f"{w:20s} {d['batch']}x{d['seq']} ckpt={d['grad_ckpt']!s:5s} pack={d.get('packed_kernel')} fwd+bwd {d['seconds']}s {d['tokens_per_s']} tok/s {d['tflops']} TF/s mfu {d.get('mfu', d.get('mfu_vs_989'))} "
              f"optim {d.get('optim_s')} peak {d.get('torch_peak_allocated_gib', d.get('peak_gib'))} GiB")
    elif w in ("lmmr1_rl_step", "r1v_rl_step"):
        ph = " ".join(f"{k}={v}" for k, v in d["phases_s"].items())
        print(f"{w:14s} {d.get('estimator', 'grpo-trl')} pack={d.get('packing_samples')} step {d['step']}: {d['step_s']}s tokens {d['tokens']} -> {d['tokens_per_s_per_gpu']} tok/s/gpu; "
              f"resp {d['mean_response_len']} trunc {d['truncated']}; old log-probs from the update {d.get('old_logprobs_from_update')}; {ph} other={d['other_s']}; peaks {d.get('torch_peak_allocated_gib_by_phase') or d.get('peak_allocated_gib_by_phase')}")
    elif w not in ("model",): print(d)
PY
el done
