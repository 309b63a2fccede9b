#!/usr/bin/env bash
# One GPU-machine call for the checks that need CUDA or the Python stack (README "Running on GPU", bench/README.md):
#   1. CUDA parity of `lmmr1 debug forward` on both tiny fixtures, fp32 and bf16, against transformers' references;
#   2. the generation benchmark vs transformers generate (bench/generation/run_gpu.sh);
#   3. the inputs benchmark, ours and Python tokenizers/transformers, on the same CPU, pinned to 2 cores.
# usage: OUT=... bash bench/gpu/run_gpu_checks.sh out/gpu.tar.xz .carry/inputs.tar.xz [parity,inputs,generation]
set -uo pipefail
TARBALL=$1; DATA=$2; WHAT=${3:-parity,inputs,generation}
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p /tmp/lmmr1-bin /tmp/lmmr1-data && tar -xJf "$TARBALL" -C /tmp/lmmr1-bin && tar -xJf "$DATA" -C /tmp/lmmr1-data
BIN=$(dirname "$(find /tmp/lmmr1-bin -name lmmr1 -type f | head -1)"); chmod +x "$BIN/lmmr1"
TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
NV=$(python3 -c 'import nvidia,os;print(os.path.dirname(nvidia.__path__[0]))')/nvidia
export LD_LIBRARY_PATH=$TL:$(ls -d "$NV"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
D=/tmp/lmmr1-data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

if [[ $WHAT == *parity* ]]; then
  for m in qwen2vl-tiny qwen25vl-tiny; do
    for dt in float32 bfloat16; do
      "$BIN/lmmr1" debug forward --model "$D/$m" --inputs "$D/$m/reference.safetensors" --output "/tmp/$m-$dt.safetensors" \
        --max-new-tokens 8 --dtype $dt --device cuda 2>>"$OUT/parity.log" \
        && python3 "$HERE/parity.py" "$D/$m/reference.safetensors" "/tmp/$m-$dt.safetensors" "$m cuda $dt" | tee -a "$OUT/results.jsonl"
    done
  done
fi
if [[ $WHAT == *inputs* ]]; then
  taskset -c 0,1 "$BIN/lmmr1" bench inputs run --inputs "$D/bench-inputs" --tokenizer "$D/qwen-tokenizer" --repeats 5 | sed 's/^{/{"impl":"lmmr1 (2 cores)",/' | tee -a "$OUT/results.jsonl"
  taskset -c 0,1 python3 "$HERE/../inputs/python_baseline.py" --inputs "$D/bench-inputs" --tokenizer "$D/qwen-tokenizer" --threads 2 --repeats 5 2>>"$OUT/inputs.log" | sed 's/^{/{"impl":"python (2 cores)",/' | tee -a "$OUT/results.jsonl"
fi
if [[ $WHAT == *generation* ]]; then
  OUT=$OUT bash "$HERE/../generation/run_gpu.sh" "$BIN" 2>"$OUT/generation.log"
fi
echo done
