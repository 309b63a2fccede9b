#!/usr/bin/env bash
# The demo's RL gains over seeds × ATen CPU kernel paths: runs `lmmr1 demo` (Release build) for every seed and every
# ATEN_CPU_CAPABILITY, at most JOBS at a time, then prints one row per run (FRE and MGT held-out gain ± paired standard
# error, wall and CPU seconds) and the spread per mode. Results: bench/demo/README.md.
#
#   bench/demo/sweep.sh [--full] [--seeds "1 2 3 4 5"] [--caps "default avx2 avx512"] [--jobs 2] [--out DIR] [--config FILE]
#                       [--keep] [--table]
#
# --full runs the default (README) mode instead of --quick; --config passes a demo_config.json-style file (its seed is
# replaced by each --seeds value); DIR (default runs/demo-sweep) keeps every run's folder and log; --keep skips runs
# whose summary.json is already there; --table only prints the table of what DIR holds. Runs go seed by seed (every
# capability of seed 1, then of seed 2, …), so a sweep cut short still covers every kernel path. On a shared machine
# keep --jobs at 2 or less: each run uses one torch thread, wall times grow with the machine's load (CPU seconds less).
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=quick seeds="1 2 3 4 5" caps="default avx2 avx512" jobs=2 out=runs/demo-sweep config="" keep=0 table=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --full) mode=full; shift ;;
        --seeds) seeds="$2"; shift 2 ;;
        --caps) caps="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --config) config="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        --table) table=1; shift ;;
        *) echo "error: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
    esac
done
[[ $table == 1 ]] || dotnet build src/LmmR1.Cli -c Release -v q -nologo >/dev/null
dll=src/LmmR1.Cli/bin/Release/net10.0/lmmr1.dll
mkdir -p "$out"
args=()
[[ $mode == quick ]] && args+=(--quick)
[[ -n $config ]] && args+=(--config "$config")

run_one() {   # cap seed
    local dir="$out/$mode-$1-s$2"
    [[ $keep == 1 && -f $dir/summary.json ]] && return 0
    rm -rf "$dir"
    ATEN_CPU_CAPABILITY=$1 /usr/bin/time -f "%e %U" -o "$dir.time" \
        dotnet "$dll" demo "${args[@]}" --seed "$2" --output "$dir" >"$dir.log" 2>&1 \
        || echo "run $mode $1 seed $2 failed: see $dir.log" >&2
}
export -f run_one
export out mode dll keep
export args_str="${args[*]}"
[[ $table == 1 ]] || for seed in $seeds; do for cap in $caps; do echo "$cap $seed"; done; done |
    xargs -P "$jobs" -L 1 bash -c 'args=($args_str); run_one "$0" "$1"'

python3 - "$out" "$mode" "$caps" "$seeds" <<'PY'
import json, math, os, sys
out, mode, caps, seeds = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
print(f"| mode | ATEN_CPU_CAPABILITY | seed | FRE text gain ± s.e. (pts) | MGT image gain ± s.e. (pts) | gain − 3·s.e. (FRE, MGT) | wall s | CPU s |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
rows = []
for cap in caps:
    for seed in seeds:
        d = os.path.join(out, f"{mode}-{cap}-s{seed}")
        try:
            s = json.load(open(os.path.join(d, "summary.json")))
        except OSError:
            print(f"| {mode} | {cap} | {seed} | (no summary.json) | | | | |"); continue
        st = {x["name"]: x for x in s["stages"]}
        wall, cpu = open(d + ".time").read().split()[-2:]
        f, m = st["fre"], st["mgt"]
        g = lambda x: (100 * x["gain"], 100 * x["gain_stderr"], 100 * x["accuracy_before"], 100 * x["accuracy_after"])
        (fg, fs, fb, fa), (mg, ms, mb, ma) = g(f), g(m)
        rows.append((cap, seed, fg, fs, mg, ms, float(wall), float(cpu)))
        print(f"| {mode} | {cap} | {seed} | {fb:.1f} → {fa:.1f}: **{fg:+.1f} ± {fs:.1f}** | {mb:.1f} → {ma:.1f}: **{mg:+.1f} ± {ms:.1f}** "
              f"| {fg - 3 * fs:+.1f}, {mg - 3 * ms:+.1f} | {float(wall):.0f} | {float(cpu):.0f} |")
if rows:
    mean = lambda v: sum(v) / len(v)
    for name, i in (("FRE", 2), ("MGT", 4)):
        v = [r[i] for r in rows]
        print(f"\n{mode} {name}: gain min {min(v):+.1f}, mean {mean(v):+.1f}, max {max(v):+.1f} pts over {len(v)} runs; "
              f"min gain − 3·s.e. {min(r[i] - 3 * r[i + 1] for r in rows):+.1f}")
    print(f"{mode} wall: {min(r[6] for r in rows):.0f}–{max(r[6] for r in rows):.0f} s; CPU {min(r[7] for r in rows):.0f}–{max(r[7] for r in rows):.0f} s")
PY
