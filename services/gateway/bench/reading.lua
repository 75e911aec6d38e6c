-- wrk script: POST one valid reading per request (token/port from env).
-- BENCH_TOKEN and BENCH_PORT are set by bench.sh from the seeded database.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local token = os.getenv("BENCH_TOKEN") or "bench-token-1"
local port = os.getenv("BENCH_PORT")
wrk.body = '{"deviceToken":"' .. token .. '","portId":"' .. port ..
           '","voltage":230.5,"current":0.45,"power":103.73}'

-- Any answer but 201 is counted, so a bench of errors cannot pass for one of readings.
local bad = 0
response = function(status, headers, body)
  if status ~= 201 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
