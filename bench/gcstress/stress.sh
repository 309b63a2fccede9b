#!/usr/bin/env bash
# GC stress of the TorchSharp temporaries (LMMR1_GC_STRESS=1, src/LmmR1.Cli/GcStress.cs): runs a torch workload RUNS
# times with a background thread that forces GC + finalizers in a loop, one process at a time, and prints each run's
# exit code and seconds, then how many crashed. Exit 134 (SIGABRT; .NET's abort on an unhandled exception, or glibc's
# on heap corruption) or 139 (SIGSEGV) is the use-after-free of a Scalar/Tensor freed by its finalizer mid-call.
# Results: bench/gcstress/README.md.
#
#   bench/gcstress/stress.sh [--runs 5] [--workload demo|generate|train] [--timeout 900] [--out DIR] [--debug]
#
# demo: `lmmr1 demo --quick` (SFT + FRE + MGT, every torch path: vision, decoder, sampling, backward, AdamW);
# generate: `lmmr1 generate` of 8 samples × 3 example prompts (images included) on a tiny random model, 48 tokens;
# train: 3 `lmmr1 train` steps (gae, critic, reference, KL) of the tiny model on the example prompts.
# --debug uses the Debug build (what the tests run) instead of Release. Logs go to DIR (default runs/gcstress).
set -uo pipefail
cd "$(dirname "$0")/../.."
runs=5 workload=demo timeout=900 out=runs/gcstress config=Release
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) runs="$2"; shift 2 ;;
        --workload) workload="$2"; shift 2 ;;
        --timeout) timeout="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --debug) config=Debug; shift ;;
        *) echo "error: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
dotnet build src/LmmR1.Cli -c "$config" -v q -nologo >/dev/null || exit 1
dll=src/LmmR1.Cli/bin/$config/net10.0/lmmr1.dll
mkdir -p "$out"
data=examples/data/test_message.jsonl
small='{"min_pixels": 3136, "max_pixels": 12544}'
if [[ $workload != demo && ! -f $out/tiny/config.json ]]; then
    dotnet "$dll" debug tiny-model --output "$out/tiny" --family qwen2_5_vl --seed 3 >/dev/null || exit 1
fi
case "$workload" in
    demo) cmd=(demo --quick) ;;
    generate) cmd=(generate --pretrain "$out/tiny" --prompt_data "$data" --input_key message --label_key answer
                   --generate_max_len 48 --n_samples_per_prompt 8 --temperature 0.9 --top_p 0.95 --device cpu
                   --processor_kwargs "$small" --output "$out/generate.jsonl") ;;
    train) cmd=(train --pretrain "$out/tiny" --prompt_data "$data" --input_key message --label_key answer
                --processor_kwargs "$small" --advantage_estimator gae --init_kl_coef 0.01 --rollout_batch_size 1
                --n_samples_per_prompt 2 --micro_rollout_batch_size 2 --train_batch_size 2 --micro_train_batch_size 1
                --max_epochs 2 --generate_max_len 8 --actor_learning_rate 1e-3 --critic_learning_rate 1e-3
                --max_global_steps 3 --save_path "$out/train-final" --reward_time_budget_ms 60000) ;;
    *) echo "error: --workload: expected demo, generate or train, got '$workload'" >&2; exit 2 ;;
esac
crashed=0
for i in $(seq 1 "$runs"); do
    start=$(date +%s.%N)
    ( LMMR1_GC_STRESS=1 timeout "$timeout" dotnet "$dll" "${cmd[@]}" >"$out/$workload-$i.log" 2>&1; exit $? ) 2>/dev/null   # no "Aborted" notice
    rc=$?
    secs=$(echo "$(date +%s.%N) - $start" | bc)
    where=""
    if [[ $rc != 0 ]]; then
        crashed=$((crashed + 1))
        where=$(grep -m1 -E '^   at LmmR1\.' "$out/$workload-$i.log" | sed 's/^   at //; s/ in .*//')
    fi
    printf '%s run %d: exit %d after %.1f s %s\n' "$workload" "$i" "$rc" "$secs" "$where"
done
echo "$workload: $crashed of $runs runs failed under LMMR1_GC_STRESS=1 ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
[[ $crashed == 0 ]]
