#!/usr/bin/env bash
# One GPU-machine call for issue 15's LoRA checks (results: $OUT/results.jsonl, logs next to it):
#   fixtures  both tiny fixtures: a random PEFT adapter (lmmr1 debug random-adapter, all-linear + the vision tower,
#             random B) loaded by peft (or applied by hand when peft is missing) onto transformers vs
#             `lmmr1 debug forward --adapter`, fp32 on the GPU, on the fixtures' own inputs (peft_check.py);
#   graphs    `lmmr1 bench graph-check --lora_rank 16` on the 3B shape: CUDA-graph decoding with the adapters inside the
#             graphs, before and after an in-place update of every weight (adapters included);
#   3b        the Qwen2.5-VL-3B shape (random bf16 weights, the real tokenizer): a full fine-tuning run and a LoRA run
#             (r=16, α=32, all-linear) of 2 steps with the same flags; time/step from metrics.jsonl and the peak GPU
#             memory (nvidia-smi every 200 ms); the LoRA run's PEFT folder checked with peft_check.py (processor files
#             from its --lora_merge export) and the merged export with export_check.py.
# usage: OUT=... bash bench/gpu/run_lora_checks.sh out/gpu.tar.xz .carry/inputs.tar.xz [fixtures,graphs,3b]
# (the same two archives as run_train_checks.sh: the published lmmr1 and the data folder with qwen-tokenizer/ and the
# fixtures). Env: GEN (new tokens per sample, 128), CKPT (/tmp/qwen25vl-3b-random), FIXTURES (both tiny fixtures).
set -uo pipefail
TARBALL=$1; DATA=$2; WHAT=${3:-fixtures,graphs,3b}
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
GEN=${GEN:-128}
CKPT=${CKPT:-/tmp/qwen25vl-3b-random}
W=/tmp/lmmr1-lora-checks; rm -rf "$W"; mkdir -p "$W" /tmp/lmmr1-bin /tmp/lmmr1-data
tar -xJf "$TARBALL" -C /tmp/lmmr1-bin && tar -xJf "$DATA" -C /tmp/lmmr1-data
BIN=$(dirname "$(find /tmp/lmmr1-bin -name lmmr1 -type f | head -1)"); chmod +x "$BIN/lmmr1"; L=$BIN/lmmr1
TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
NV=$(python3 -c 'import nvidia,os;print(os.path.dirname(nvidia.__path__[0]))')/nvidia
export LD_LIBRARY_PATH=$TL:$(ls -d "$NV"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
D=/tmp/lmmr1-data
R=$OUT/results.jsonl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c 'import transformers; print("transformers", transformers.__version__)' 2>&1 | tee -a "$OUT/gpu.txt"
python3 -c 'import peft; print("peft", peft.__version__)' 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"

if [[ $WHAT == *fixtures* ]]; then
  # Three adapters per fixture (every linear layer; the language model only; the vision tower only), so a mismatch
  # says where it is; our base forward (no adapter) is compared with transformers' too.
  for m in ${FIXTURES:-qwen2vl-tiny qwen25vl-tiny}; do
    F=$D/$m
    for v in "all:all-linear visual" "text:all-linear" "visual:visual"; do
      tag=${v%%:*}; targets=${v#*:}; P=$W/$m-$tag
      echo "== peft_check $m $tag ($targets)" | tee -a "$R"
      # shellcheck disable=SC2086
      "$L" debug random-adapter --model "$F" --output "$P-adapter" --lora_rank 8 --lora_alpha 16 --target_modules $targets >> "$OUT/checks.log" 2>&1
      python3 "$HERE/peft_check.py" --base "$F" --adapter "$P-adapter" --inputs-from "$F/reference.safetensors" --write-inputs "$P-in.safetensors" --device cuda 2>>"$OUT/checks.log" | tee -a "$R"
      "$L" debug forward --model "$F" --adapter "$P-adapter" --inputs "$P-in.safetensors" --output "$P-ours.safetensors" --dtype float32 --device cuda >> "$OUT/checks.log" 2>&1
      [[ -f "$W/$m-base.safetensors" ]] || "$L" debug forward --model "$F" --inputs "$P-in.safetensors" --output "$W/$m-base.safetensors" --dtype float32 --device cuda >> "$OUT/checks.log" 2>&1
      python3 "$HERE/peft_check.py" --inputs "$P-in.safetensors" --ours-output "$P-ours.safetensors" --ours-base-output "$W/$m-base.safetensors" --tol 1e-3 2>>"$OUT/checks.log" | tee -a "$R"
    done
  done
fi

if [[ $WHAT == *graphs* || $WHAT == *3b* ]]; then
  if [[ ! -f "$CKPT/config.json" ]]; then
    "$L" debug synth-checkpoint --config qwen2.5-vl-3b --dtype bfloat16 --output "$CKPT" > "$OUT/synth.log" 2>&1
  fi
  cp "$D/qwen-tokenizer/tokenizer.json" "$D/qwen-tokenizer/tokenizer_config.json" "$CKPT/"
fi

if [[ $WHAT == *graphs* ]]; then
  echo "== graph-check with LoRA (3B shape)" | tee -a "$R"
  "$L" bench graph-check --model "$CKPT" --device cuda --dtype bfloat16 --cases 8x4:64:text --lora_rank 16 2>>"$OUT/checks.log" | tee -a "$R"
fi

if [[ $WHAT == *3b* ]]; then
  common=(--pretrain "$CKPT" --prompt_data examples/data/test_message.jsonl --input_key message --label_key answer
        --device cuda --bf16 --gradient_checkpointing --freeze_prefix visual --advantage_estimator reinforce_baseline
        --rollout_batch_size 2 --n_samples_per_prompt 8 --micro_rollout_batch_size 4 --train_batch_size 16
        --micro_train_batch_size 2 --generate_max_len "$GEN" --prompt_max_len 4096 --init_kl_coef 0.001
        --entropy_loss_coef 0.01 --temperature 1.0 --seed 7 --max_global_steps 2)
  run() {  # tag, extra flags…: a 2-step run with the GPU memory polled
    local tag=$1; shift
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$W/mem-$tag.csv" 2>/dev/null &
    local poll=$!
    echo "== 3B $tag" | tee -a "$OUT/train.log"
    "$L" train "${common[@]}" --save_path "$W/$tag" "$@" >> "$OUT/train.log" 2>&1
    local rc=$?
    kill "$poll" 2>/dev/null; wait "$poll" 2>/dev/null
    python3 - "$tag" "$rc" "$W/mem-$tag.csv" "$W/$tag/metrics.jsonl" <<'PY' | tee -a "$R"
import json, sys
tag, rc, mem, metrics = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
peak = max((int(l) for l in open(mem) if l.strip().isdigit()), default=None)
rows = [json.loads(l) for l in open(metrics)] if rc == 0 else []
rows = [r for r in rows if "time/step" in r]
print(json.dumps({"what": "lora_3b_step", "run": tag, "exit": rc, "peak_gpu_memory_mib": peak,
                  "time_step_s": [round(r["time/step"], 2) for r in rows],
                  "time_update_s": [round(r.get("time/update", float("nan")), 2) for r in rows],
                  "time_generate_s": [round(r.get("time/generate", float("nan")), 2) for r in rows]}))
PY
  }
  run full --actor_learning_rate 1e-6
  rm -rf "$W/full"                                   # 7.5 GB export; the disk is shared with the LoRA run's merged export
  run lora --actor_learning_rate 1e-4 --lora_rank 16 --lora_alpha 32 --lora_merge
  ls -la "$W/lora" "$W/lora_merged" >> "$OUT/train.log" 2>&1

  echo "== peft_check 3B (trained adapter)" | tee -a "$R"
  python3 "$HERE/peft_check.py" --base "$CKPT" --adapter "$W/lora" --processor "$W/lora_merged" --write-inputs "$W/3b-in.safetensors" --device cuda 2>>"$OUT/checks.log" | tee -a "$R"
  "$L" debug forward --model "$CKPT" --adapter "$W/lora" --inputs "$W/3b-in.safetensors" --output "$W/3b-ours.safetensors" --dtype float32 --device cuda >> "$OUT/checks.log" 2>&1
  "$L" debug forward --model "$CKPT" --inputs "$W/3b-in.safetensors" --output "$W/3b-base.safetensors" --dtype float32 --device cuda >> "$OUT/checks.log" 2>&1
  python3 "$HERE/peft_check.py" --inputs "$W/3b-in.safetensors" --ours-output "$W/3b-ours.safetensors" --ours-base-output "$W/3b-base.safetensors" --tol 1e-3 2>>"$OUT/checks.log" | tee -a "$R"

  echo "== export_check 3B (merged)" | tee -a "$R"
  python3 "$HERE/export_check.py" --ours "$W/lora_merged" --write-inputs "$W/m-in.safetensors" --device cuda 2>>"$OUT/checks.log" | tee -a "$R"
  "$L" debug forward --model "$W/lora_merged" --inputs "$W/m-in.safetensors" --output "$W/m-ours.safetensors" --dtype float32 --device cuda >> "$OUT/checks.log" 2>&1
  python3 "$HERE/export_check.py" --ours "$W/lora_merged" --inputs "$W/m-in.safetensors" --ours-output "$W/m-ours.safetensors" 2>>"$OUT/checks.log" | tee -a "$R"
fi
echo done
