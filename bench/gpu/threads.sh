#!/usr/bin/env bash
# Decode-thread scaling of the generation engine on the GPU machine (bench/README.md "Generation"): the synthetic
# Qwen2.5-VL-3B, 64 prompts x 8 samples, text and image prompts, with 1..8 host threads launching micro-batches.
# usage: OUT=... bash bench/gpu/threads.sh out/gpu.tar.xz "1 2 4 8" [NEW_TOKENS]
set -uo pipefail
TARBALL=$1; THREADS=${2:-"1 2 4 8"}; NEW=${3:-128}
OUT=${OUT:-$PWD/gpu-out}; mkdir -p "$OUT"
mkdir -p /tmp/lmmr1-bin && tar -xJf "$TARBALL" -C /tmp/lmmr1-bin
BIN=$(dirname "$(find /tmp/lmmr1-bin -name lmmr1 -type f | head -1)"); chmod +x "$BIN/lmmr1"
TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
NV=$(python3 -c 'import nvidia,os;print(os.path.dirname(nvidia.__path__[0]))')/nvidia
export LD_LIBRARY_PATH=$TL:$(ls -d "$NV"/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
CKPT=/tmp/qwen25vl-3b-random
[[ -f $CKPT/config.json ]] || "$BIN/lmmr1" debug synth-checkpoint --config qwen2.5-vl-3b --dtype bfloat16 --output $CKPT >"$OUT/synth.log" 2>&1
for t in $THREADS; do
  "$BIN/lmmr1" bench generate --model $CKPT --device cuda --dtype bfloat16 --cases "64x8:$NEW:text,64x8:$NEW:image448" \
    --decode-threads $t --output "$OUT/threads.jsonl" 2>>"$OUT/threads.log" | cut -c1-400
done
