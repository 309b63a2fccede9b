#!/usr/bin/env bash
# All reward benchmarks of bench/README.md (section Rewards), in order. Run from the repository root.
# Needs wrk (apt-get install -y wrk) and ../shared/reference/math_verify_cases.jsonl. On a shared machine compare the
# "per CPU-second" figures: wall-clock rates drop with whatever else runs (the load average is printed).
set -euo pipefail
dotnet build -c Release bench/rewards > /dev/null
dotnet build -c Release src/LmmR1.Cli > /dev/null
B="dotnet bench/rewards/bin/Release/net10.0/LmmR1.Rewards.Bench.dll"
echo "== $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
$B cases --threads 2 --seconds 20
echo "== load $(cut -d' ' -f1-3 /proc/loadavg)"
$B hostile --repeats 20
echo "== load $(cut -d' ' -f1-3 /proc/loadavg)"
$B reward --threads 2 --seconds 20
$B body --out bench/rewards/body.json
src/LmmR1.Cli/bin/Release/net10.0/lmmr1 reward serve --port 5000 &
SERVER=$!
trap 'kill $SERVER' EXIT
sleep 8
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
echo "== load $(cut -d' ' -f1-3 /proc/loadavg)"
C0=$(cpu $SERVER)
wrk -t1 -c64 -d30s --timeout 30s --latency -s bench/rewards/get_reward.lua http://127.0.0.1:5000/get_reward
C1=$(cpu $SERVER)
echo "server CPU during the run: $(( (C1 - C0) / $(getconf CLK_TCK) )) s; load $(cut -d' ' -f1-3 /proc/loadavg)"
