#!/usr/bin/env bash
# All reward benchmarks of bench/README.md (section Rewards), in order. Run from the repository root.
# Needs wrk (apt-get install -y wrk) and ../shared/reference/math_verify_cases.jsonl.
set -euo pipefail
dotnet build -c Release bench/rewards > /dev/null
dotnet build -c Release src/LmmR1.Cli > /dev/null
B="dotnet bench/rewards/bin/Release/net10.0/LmmR1.Rewards.Bench.dll"
echo "== machine: $(nproc) cores, $(uptime)"
$B cases --threads 2 --seconds 20
echo "== $(uptime)"
$B hostile --repeats 20
echo "== $(uptime)"
$B reward --threads 2 --seconds 20
$B body --out bench/rewards/body.json
src/LmmR1.Cli/bin/Release/net10.0/lmmr1 reward serve --port 5000 &
SERVER=$!
trap 'kill $SERVER' EXIT
sleep 8
echo "== $(uptime)"
wrk -t1 -c64 -d30s --timeout 30s --latency -s bench/rewards/get_reward.lua http://127.0.0.1:5000/get_reward
echo "== $(uptime)"
