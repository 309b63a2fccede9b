#!/usr/bin/env bash
# GPU equality check of the CUDA-graph decode path (issue 12): `lmmr1 bench graph-check` on the tiny fixtures (fp32 and
# bf16) and on the random Qwen2.5-VL-3B-shaped checkpoint (bf16): eager loop vs captured graphs vs the same static step
# run eagerly, greedy and seeded sampling, before and after an in-place weight update. JSON lines in $OUT/graph_check.jsonl.
# Attention windows: the tiny cases use windows of TINY_WINDOW (16) positions, so every batch captures several windows
# mid-batch; the 3B text case runs 200 tokens past a 64-token prompt (windows 128, 256, 320 at the default 128).
# usage: bash bench/generation/graph_check.sh LMMR1_DIR FIXTURES_DIR   (env: OUT, CKPT as run_gpu.sh, or preset:qwen2.5-vl-3b; SKIP_3B=1, SKIP_TINY=1,
#   TINY_WINDOW, CASES_3B)
set -euo pipefail
BIN=$1; FIX=$2
OUT=${OUT:-$PWD/bench-out}
CKPT=${CKPT:-/tmp/qwen25vl-3b-random}
mkdir -p "$OUT"
RES=$OUT/graph_check.jsonl
step() { local name=$1; shift; echo "== $name: $*" >&2; "$@" || echo "{\"what\":\"failed\",\"step\":\"$name\",\"exit\":$?}" | tee -a "$RES"; }
if [[ "${SKIP_TINY:-0}" != 1 ]]; then
for m in qwen2vl-tiny qwen25vl-tiny; do
  step "$m-fp32" "$BIN/lmmr1" bench graph-check --model "$FIX/$m" --device cuda --dtype float32 --cases 6x4:48:image56 --prompt-len 24 --attention-window "${TINY_WINDOW:-16}" --output "$RES"
  step "$m-bf16" "$BIN/lmmr1" bench graph-check --model "$FIX/$m" --device cuda --dtype bfloat16 --cases 6x4:48:image56 --prompt-len 24 --attention-window "${TINY_WINDOW:-16}" --output "$RES"
done
fi
if [[ "${SKIP_3B:-0}" != 1 ]]; then
  [[ "$CKPT" == preset:* || -f "$CKPT/config.json" ]] || step synth "$BIN/lmmr1" debug synth-checkpoint --config qwen2.5-vl-3b --dtype bfloat16 --output "$CKPT"
  step 3b "$BIN/lmmr1" bench graph-check --model "$CKPT" --device cuda --dtype bfloat16 --cases ${CASES_3B:-4x4:32:image448,8x4:200:text} --prompt-len 64 --output "$RES"
fi
echo "done: $RES"
