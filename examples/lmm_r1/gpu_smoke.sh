#!/usr/bin/env bash
# GPU smoke test of the trainer on a Qwen2.5-VL-3B-shaped model with random bf16 weights (lmmr1 debug synth-checkpoint)
# and the Qwen2.5-VL tokenizer: a few real RL steps of the FRE recipe's algorithm (reinforce_baseline, KL 0.001 with
# the reference model, bf16 + fp32 masters, gradient checkpointing, frozen vision tower) on examples/data, with an
# evaluation and the final HF save (reloaded with `lmmr1 debug load-model`); then PPO-GAE (critic: a second 3B copy)
# and SFT. Logs and per-step metrics (time/generate, time/logprobs, time/update …) go to $OUT; model outputs go to
# $WORK and are deleted at the end; GPU memory is sampled every 0.5 s into $OUT/mem.csv.
#
# usage: bash examples/lmm_r1/gpu_smoke.sh [LMMR1_DIR]    (default out/gpu: the output of
#   dotnet publish src/LmmR1.Cli -c Release -r linux-x64 --self-contained -p:TorchBackend=system -o out/gpu)
# Env: OUT (./smoke-out), WORK (/tmp/lmmr1-smoke), CKPT (/tmp/qwen25vl-3b-random), TOKENIZER (a folder with the Qwen2.5-VL tokenizer.json),
#   STEPS (3), GEN (512), DEVICE (cuda; cpu with a tiny CKPT checks the script itself), SKIP_GAE=1 (GAE needs ~120 GB: actor, reference and critic with their AdamW state), SKIP_SFT=1.
set -euo pipefail
BIN=${1:-out/gpu}
LMMR1=$BIN/lmmr1
OUT=${OUT:-$PWD/smoke-out}
WORK=${WORK:-/tmp/lmmr1-smoke}
CKPT=${CKPT:-/tmp/qwen25vl-3b-random}
STEPS=${STEPS:-3}
GEN=${GEN:-512}
DEVICE=${DEVICE:-cuda}
DATA=examples/data/test_message.jsonl
mkdir -p "$OUT" "$WORK"
chmod +x "$LMMR1"

if [[ "$DEVICE" == cuda* ]]; then
  # PyTorch's libtorch + CUDA libraries for TorchSharp (shared/docs/GPU.md).
  TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
  NV=$(python3 -c 'import nvidia,os;print(os.path.dirname(nvidia.__path__[0]))')/nvidia
  export LD_LIBRARY_PATH=$TL:$(ls -d "$NV"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 500 > "$OUT/mem.csv" &
  MEM_PID=$!
  trap 'kill $MEM_PID 2>/dev/null || true' EXIT
fi

if [[ -z "${TOKENIZER:-}" ]]; then
  for d in shared/fixtures/qwen-tokenizer ../shared/fixtures/qwen-tokenizer; do [[ -f $d/tokenizer.json ]] && TOKENIZER=$d && break; done
fi
[[ -f "${TOKENIZER:-}/tokenizer.json" ]] || { echo "set TOKENIZER to a folder with the Qwen2.5-VL tokenizer.json" >&2; exit 1; }
if [[ ! -f "$CKPT/config.json" ]]; then
  "$LMMR1" debug synth-checkpoint --config qwen2.5-vl-3b --dtype bfloat16 --output "$CKPT" 2>&1 | tee "$OUT/synth.log"
fi
[[ "$(cd "$TOKENIZER" && pwd)" == "$(cd "$CKPT" && pwd)" ]] || cp "$TOKENIZER"/tokenizer.json "$TOKENIZER"/tokenizer_config.json "$CKPT/"

common=(--pretrain "$CKPT" --prompt_data "$DATA" --input_key message --label_key answer --device "$DEVICE" --bf16
        --gradient_checkpointing --rollout_batch_size 2 --n_samples_per_prompt 8 --micro_rollout_batch_size 4
        --train_batch_size 16 --micro_train_batch_size 2 --generate_max_len "$GEN" --prompt_max_len 4096
        --max_global_steps "$STEPS" --init_kl_coef 0.001 --temperature 1.0)

echo "== reinforce_baseline (FRE recipe algorithm), frozen vision" >&2
# Random weights earn no reward, so the entropy bonus is what gives the actor a gradient here (and step 2 a nonzero KL).
"$LMMR1" train "${common[@]}" --advantage_estimator reinforce_baseline --actor_learning_rate 1e-6 --freeze_prefix visual \
  --entropy_loss_coef 0.01 \
  --eval_dataset "$DATA" --eval_steps "$STEPS" --eval_n_samples_per_prompt 2 --save_path "$WORK/rb-final" 2>&1 | tee "$OUT/rb.log"
cp "$WORK/rb-final/metrics.jsonl" "$OUT/rb-metrics.jsonl"
"$LMMR1" debug load-model --model "$WORK/rb-final" --dtype bfloat16 --device "$DEVICE" 2>&1 | tee "$OUT/rb-reload.log"
rm -rf "$WORK/rb-final"

if [[ "${SKIP_GAE:-0}" != 1 ]]; then
  echo "== gae (critic = a second copy of the checkpoint)" >&2
  "$LMMR1" train "${common[@]}" --advantage_estimator gae --actor_learning_rate 1e-6 --critic_learning_rate 9e-6 \
    --freeze_prefix visual --save_path "$WORK/gae-final" 2>&1 | tee "$OUT/gae.log" || echo "gae run failed (exit $?)" | tee -a "$OUT/gae.log"
  cp "$WORK/gae-final/metrics.jsonl" "$OUT/gae-metrics.jsonl" 2>/dev/null || true
  rm -rf "$WORK/gae-final"
fi

if [[ "${SKIP_SFT:-0}" != 1 ]]; then
  echo "== sft" >&2
  python3 - "$OUT/sft.jsonl" <<'EOF'
import json, sys
rows = [("What is 2+3?", "<think> 2 plus 3 is 5. </think><answer> $\\boxed{5}$ </answer>"),
        ("What is 7*8?", "<think> 7 times 8 is 56. </think><answer> $\\boxed{56}$ </answer>")] * 4
with open(sys.argv[1], "w") as f:
    for q, a in rows:
        f.write(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n")
EOF
  "$LMMR1" sft --pretrain "$CKPT" --dataset "$OUT/sft.jsonl" --input_key messages --train_batch_size 4 --micro_train_batch_size 2 \
    --max_epochs 1 --learning_rate 1e-5 --bf16 --gradient_checkpointing --device "$DEVICE" --save_path "$WORK/sft-final" 2>&1 | tee "$OUT/sft.log"
  cp "$WORK/sft-final/metrics.jsonl" "$OUT/sft-metrics.jsonl"
  rm -rf "$WORK/sft-final"
fi

if [[ -n "${MEM_PID:-}" ]]; then
  kill $MEM_PID 2>/dev/null || true
  echo "peak GPU memory used: $(cut -d, -f2 "$OUT/mem.csv" | tr -dc '0-9\n' | sort -n | tail -1) MiB" | tee "$OUT/summary.txt"
fi
echo "done: $OUT"
