-- wrk script of scripts/bench: POSTs the benchmark event's body ($BENCH_BODY, the exact bytes
-- the daemon sends) with the daemon's headers, and prints one JSON line of totals at the end.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["User-Agent"] = os.getenv("BENCH_USER_AGENT") or "pilot-daemon"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"requests_per_sec":%.3f,' ..
    '"latency_mean_us":%.3f,"latency_p50_us":%d,"latency_p99_us":%d,"latency_max_us":%d,' ..
    '"errors":%d}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency.mean, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
