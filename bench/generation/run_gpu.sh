#!/usr/bin/env bash
# Generation benchmark on the GPU machine: writes a random bf16 Qwen2.5-VL-3B-shaped checkpoint with our writer, builds
# the native CUDA-graph extension (`lmmr1 native build`), runs `lmmr1 bench generate` with CUDA graphs (the default)
# and with the eager loop (--no-cuda-graphs) on 64 prompts x 8 samples x 512 tokens (with and without a 448x448 image)
# and HF's 64-row shape, optional engine variants, then transformers' generate on the same shapes (hf_baseline.py) and
# the PyTorch CUDA-graph anchor (graph_anchor.py) at the same rows and capacity buckets. JSON lines go to
# $OUT/generation.jsonl as each case finishes, logs to $OUT/*.log. No LD_LIBRARY_PATH is needed: lmmr1 finds the
# installed PyTorch itself (python3, or LMMR1_TORCH_DIR).
#
# usage: bash bench/generation/run_gpu.sh [LMMR1_DIR_OR_TARBALL]     (default out/gpu or out/gpu.tar.xz)
#   LMMR1_DIR_OR_TARBALL: the output of
#     dotnet publish src/LmmR1.Cli -c Release -r linux-x64 --self-contained -p:TorchBackend=system -o out/gpu
#   (or `tar -cJf out/gpu.tar.xz -C out gpu` of it). Env: OUT (default ./bench-out), CKPT (default /tmp/qwen25vl-3b-random),
#   SKIP_HF=1, SKIP_VARIANTS=1, SKIP_EAGER=1 (no --no-cuda-graphs run), UNFUSED=1 (also the graphs with
#   LMMR1_FUSED_DECODE=0, on UNFUSED_CASES, default CASES), NOWINDOW=1 (also the graphs with
#   --attention-window 0, i.e. attention over the whole capacity bucket, on NOWINDOW_CASES, default CASES), SKIP_ANCHOR=1, ANCHOR_CASES (graph_anchor.py args), HF_MODE (hf_baseline.py's mode, default gen+rollout); for a dry run elsewhere DEVICE=cpu DTYPE=float32 CASES=... VARIANT_CASE=... with a small CKPT.
#   Variable lengths ending in stop tokens with and without row compaction (issue 12 item 3): on by default after the
#   variants (SKIP_COMPACTION=1 skips them); ONLY=compaction runs just those cases (plus checkpoint and native build).
#   COMPACT_CASES (default 64x8:512:text), COMPACT_LEN (forced log-normal lengths MEDIAN:SIGMA, default 128:0.7),
#   COMPACT_STOPS (stop share of the vocabulary, default 0.0039; empty = skip), SKIP_COMPACT_EAGER=1 (no eager reference).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${1:-out/gpu}
OUT=${OUT:-$PWD/bench-out}
CKPT=${CKPT:-/tmp/qwen25vl-3b-random}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bfloat16}
CASES=${CASES:-64x8:512:image448,64x8:512:text,64x1:512:text}
# graph_anchor.py ROWS:CAPACITY:FILLED at our capacity buckets (prompt + 512 rounded up to 64) and mean fill.
ANCHOR_CASES=${ANCHOR_CASES:-512:960:642 512:640:384 64:640:384}
VARIANT_CASE=${VARIANT_CASE:-64x8:512}
ONLY=${ONLY:-}
if [[ -n "$ONLY" && "$ONLY" != compaction ]]; then echo "error: ONLY must be 'compaction' or unset, got '$ONLY'" >&2; exit 2; fi
COMPACT_CASES=${COMPACT_CASES:-64x8:512:text}
COMPACT_LEN=${COMPACT_LEN-128:0.7}
COMPACT_STOPS=${COMPACT_STOPS-0.0039}
mkdir -p "$OUT"
RES=$OUT/generation.jsonl

# A failing step is logged and the next one still runs (each appends its own JSON lines to $RES).
step() { local name=$1; shift; echo "== $name: $*" >&2; "$@" || echo "{\"what\":\"failed\",\"step\":\"$name\",\"exit\":$?}" | tee -a "$RES"; }

if [[ -f "$SRC" ]]; then            # a tarball
  mkdir -p /tmp/lmmr1-bin && tar -xJf "$SRC" -C /tmp/lmmr1-bin
  BIN=$(dirname "$(find /tmp/lmmr1-bin -name lmmr1 -type f | head -1)")
elif [[ -f "$SRC.tar.xz" && ! -x "$SRC/lmmr1" ]]; then
  mkdir -p /tmp/lmmr1-bin && tar -xJf "$SRC.tar.xz" -C /tmp/lmmr1-bin
  BIN=$(dirname "$(find /tmp/lmmr1-bin -name lmmr1 -type f | head -1)")
else
  BIN=$SRC
fi
LMMR1=$BIN/lmmr1
chmod +x "$LMMR1"

if [[ "$DEVICE" == cuda* ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  echo "{\"what\":\"env\",\"gpu\":\"$(head -1 "$OUT/gpu.txt")\",\"date\":\"$(date -u +%FT%TZ)\"}" >> "$RES"
fi

if [[ "$CKPT" != preset:* && ! -f "$CKPT/config.json" ]]; then   # CKPT=preset:qwen2.5-vl-3b: random weights drawn on the GPU, no file
  step synth "$LMMR1" debug synth-checkpoint --config qwen2.5-vl-3b --dtype bfloat16 --output "$CKPT"
fi

if [[ "$DEVICE" == cuda* ]]; then
  step native bash -c "set -o pipefail; '$LMMR1' native build 2>&1 | tee '$OUT/native.log'"
fi

# Main cases on one loaded model: the rollout shapes (64 prompts x 8 samples) and HF's own 64-row shapes.
if [[ -z "$ONLY" ]]; then
step ours "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "$CASES" --output "$RES"
if [[ "${UNFUSED:-0}" == 1 ]]; then   # the graph path without the fused decode kernels (A/B of FusedDecodeOps)
  step ours_unfused env LMMR1_FUSED_DECODE=0 "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "${UNFUSED_CASES:-$CASES}" --output "$RES"
fi
if [[ "${NOWINDOW:-0}" == 1 ]]; then   # the graphs attending over the whole capacity bucket (A/B of the attention windows)
  step ours_nowindow "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "${NOWINDOW_CASES:-$CASES}" --attention-window 0 --output "$RES"
fi
if [[ "${SKIP_EAGER:-0}" != 1 ]]; then
  step ours_eager "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "$CASES" --no-cuda-graphs --output "$RES"
fi

if [[ "${SKIP_VARIANTS:-0}" != 1 ]]; then
  # Host check interval (1 = a sync every step; 16) and prefill without prefix sharing.
  step check1 "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "$VARIANT_CASE:text" --check-every 1 --output "$RES"
  step check16 "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "$VARIANT_CASE:text" --check-every 16 --output "$RES"
  step noshare "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "$VARIANT_CASE:image448" --no-share-prefix --output "$RES"
  # Variable lengths (1/256 of the vocabulary stops: mean ~250 tokens): drop finished rows at 25 % (default), never, always.
  for cf in 0.25 2 0; do
    step "compact$cf" "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "$VARIANT_CASE:text" \
      --stop-fraction 0.0039 --compact-fraction "$cf" --output "$RES"
  done
fi
fi  # ONLY

# Variable lengths ending in stop tokens at 512 rows: forced log-normal lengths (each sample ends in a stop token; the
# longest run to 512) and a share of the vocabulary as real stop tokens (geometric lengths). CUDA graphs with row
# compaction into smaller buckets (0.25 = the default: whenever the live rows fit a smaller bucket) and without (2 =
# never), and the eager loop with its own compaction (0.25) as a reference. Same prompts, seed and lengths in all.
if [[ "${SKIP_COMPACTION:-0}" != 1 ]]; then
  lengths=()
  [[ -n "$COMPACT_LEN" ]] && lengths+=("--synthetic-response-len $COMPACT_LEN")
  [[ -n "$COMPACT_STOPS" ]] && lengths+=("--stop-fraction $COMPACT_STOPS")
  for len in "${lengths[@]}"; do
    tag=$(echo "$len" | tr -c 'a-z0-9.\n' '_')
    for cf in 0.25 2; do
      # shellcheck disable=SC2086  # $len is two words: the flag and its value
      step "compaction${tag}cf$cf" "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "$COMPACT_CASES" \
        $len --compact-fraction "$cf" --output "$RES"
    done
    if [[ "${SKIP_COMPACT_EAGER:-0}" != 1 ]]; then
      # shellcheck disable=SC2086
      step "compaction${tag}eager" "$LMMR1" bench generate --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --cases "$COMPACT_CASES" \
        $len --compact-fraction 0.25 --no-cuda-graphs --output "$RES"
    fi
  done
fi

if [[ -z "$ONLY" && "${SKIP_ANCHOR:-0}" != 1 && "$DEVICE" == cuda* ]]; then
  ANCHOR=${ANCHOR:-$HERE/graph_anchor.py}
  step anchor bash -c "set -o pipefail; python3 '$ANCHOR' $ANCHOR_CASES 2> '$OUT/anchor.log' | tee -a '$RES'"
fi

if [[ -z "$ONLY" && "${SKIP_HF:-0}" != 1 ]]; then
  # hf_baseline.py prints its JSON lines on stdout; keep them in $RES too.
  step hf bash -c "set -o pipefail; python3 '$HERE/hf_baseline.py' ${HF_MODE:-gen+rollout} 2> '$OUT/hf.log' | tee -a '$RES'"
fi
echo "done: $RES"
