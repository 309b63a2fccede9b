#!/usr/bin/env bash
# One GPU-machine call for issue 7's checks on a Qwen2.5-VL-3B-shaped model (random bf16 weights, the real tokenizer):
#   1. `lmmr1 train` on CUDA (reinforce_baseline + KL, bf16 + fp32 masters, gradient checkpointing, frozen vision
#      tower) for 2 steps with TensorBoard and the final HF export; checkpoints + resume on CUDA with a tiny model;
#   2. TensorBoard's own reader on the event files (tensorboard_check.py);
#   3. the final HF export loaded unchanged by transformers (AutoProcessor + AutoModelForImageTextToText) and its
#      logits compared with `lmmr1 debug forward` on the same inputs (export_check.py), both fp32 on the GPU.
# usage: OUT=... bash bench/gpu/run_train_checks.sh out/gpu.tar.xz .carry/inputs.tar.xz
# Env: GEN (new tokens per sample, 128), CKPT (/tmp/qwen25vl-3b-random).
set -uo pipefail
TARBALL=$1; DATA=$2
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
GEN=${GEN:-128}
CKPT=${CKPT:-/tmp/qwen25vl-3b-random}
W=/tmp/lmmr1-train-checks; rm -rf "$W"; mkdir -p "$W" /tmp/lmmr1-bin /tmp/lmmr1-data
tar -xJf "$TARBALL" -C /tmp/lmmr1-bin && tar -xJf "$DATA" -C /tmp/lmmr1-data
BIN=$(dirname "$(find /tmp/lmmr1-bin -name lmmr1 -type f | head -1)"); chmod +x "$BIN/lmmr1"; L=$BIN/lmmr1
TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
NV=$(python3 -c 'import nvidia,os;print(os.path.dirname(nvidia.__path__[0]))')/nvidia
export LD_LIBRARY_PATH=$TL:$(ls -d "$NV"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import tensorboard; print("tensorboard", tensorboard.__version__)' 2>&1 | tee -a "$OUT/gpu.txt"

if [[ ! -f "$CKPT/config.json" ]]; then
  "$L" debug synth-checkpoint --config qwen2.5-vl-3b --dtype bfloat16 --output "$CKPT" > "$OUT/synth.log" 2>&1
fi
cp /tmp/lmmr1-data/qwen-tokenizer/tokenizer.json /tmp/lmmr1-data/qwen-tokenizer/tokenizer_config.json "$CKPT/"

# A. The 3B shape: 2 RL steps with TensorBoard and the final HF export (no checkpoints: one with the fp32 AdamW state
#    is ~45 GB and the machine's disk is 64 GB).
common=(--prompt_data examples/data/test_message.jsonl --input_key message --label_key answer
      --device cuda --gradient_checkpointing --freeze_prefix visual --advantage_estimator reinforce_baseline
      --rollout_batch_size 2 --n_samples_per_prompt 8 --micro_rollout_batch_size 4 --train_batch_size 16
      --micro_train_batch_size 2 --generate_max_len "$GEN" --prompt_max_len 4096 --init_kl_coef 0.001
      --actor_learning_rate 1e-6 --entropy_loss_coef 0.01 --temperature 1.0 --seed 7)
echo "== 3B: train 2 steps" | tee -a "$OUT/train.log"
"$L" train "${common[@]}" --pretrain "$CKPT" --bf16 --max_global_steps 2 --use_tensorboard "$W/tb" --save_path "$W/final" >> "$OUT/train.log" 2>&1
echo "exit $?" | tee -a "$OUT/train.log"
cp "$W/final/metrics.jsonl" "$OUT/metrics.jsonl" 2>/dev/null
# B. Checkpoints and resume on CUDA with a tiny Qwen2.5-VL (lmmr1 debug tiny-model): 2 steps saving a checkpoint and an
#    HF export at each, then --load_checkpoint continues to step 3.
"$L" debug tiny-model --family qwen2_5_vl --output "$W/tiny" >> "$OUT/train.log" 2>&1
targs=("${common[@]}" --pretrain "$W/tiny" --ckpt_path "$W/tckpt" --save_steps 1 --save_hf_ckpt --save_path "$W/tfinal" --use_tensorboard "$W/ttb")
echo "== tiny: train 2 steps with checkpoints" | tee -a "$OUT/train.log"
"$L" train "${targs[@]}" --max_global_steps 2 >> "$OUT/train.log" 2>&1; echo "exit $?" | tee -a "$OUT/train.log"
echo "== tiny: resume to step 3" | tee -a "$OUT/train.log"
"$L" train "${targs[@]}" --max_global_steps 3 --load_checkpoint >> "$OUT/train.log" 2>&1; echo "exit $?" | tee -a "$OUT/train.log"
ls -la "$W/tckpt" "$W/tfinal" >> "$OUT/train.log" 2>&1
cp "$W/tfinal/metrics.jsonl" "$OUT/tiny-metrics.jsonl" 2>/dev/null
python3 "$HERE/tensorboard_check.py" "$W/ttb" 2>>"$OUT/checks.log" | tee -a "$OUT/results.jsonl"

echo "== tensorboard" | tee -a "$OUT/results.jsonl"
python3 "$HERE/tensorboard_check.py" "$W/tb" 2>>"$OUT/checks.log" | tee -a "$OUT/results.jsonl"

echo "== export" | tee -a "$OUT/results.jsonl"
python3 "$HERE/export_check.py" --ours "$W/final" --write-inputs "$W/in.safetensors" --device cuda 2>>"$OUT/checks.log" | tee -a "$OUT/results.jsonl"
"$L" debug forward --model "$W/final" --inputs "$W/in.safetensors" --output "$W/ours.safetensors" --dtype float32 --device cuda >> "$OUT/checks.log" 2>&1
python3 "$HERE/export_check.py" --ours "$W/final" --inputs "$W/in.safetensors" --ours-output "$W/ours.safetensors" 2>>"$OUT/checks.log" | tee -a "$OUT/results.jsonl"
echo done
