-- wrk script for bench/run.sh: POSTs the JSON body in $BENCH_BODY with the client key in
-- $BENCH_KEY (when set), and prints one machine-readable summary line that run.sh parses.
local function read_file(path)
   local f = assert(io.open(path, "rb"))
   local data = f:read("*a")
   f:close()
   return data
end

wrk.method = "POST"
wrk.body = read_file(assert(os.getenv("BENCH_BODY"), "BENCH_BODY is not set"))
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("BENCH_KEY")
if key ~= nil and key ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. key
end

-- errors.status counts responses with a status of 400 or more (wrk's definition of non-2xx/3xx).
function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK requests=%d duration_us=%d bytes=%d p50_us=%d p99_us=%d max_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(99), latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
