-- wrk script: POST the batch in body.json (64 LMM-R1 samples) to /get_reward on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local dir = os.getenv("BENCH_DIR") or "bench/rewards"
local f = assert(io.open(dir .. "/body.json", "r"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  io.write(string.format("requests/s %.1f  samples/s %.0f  p50 %.1f ms  p99 %.1f ms  max %.1f ms  errors %d\n",
    summary.requests / (summary.duration / 1e6), 64 * summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout))
end
