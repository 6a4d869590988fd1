-- wrk script: POST /api/payment with a unique orderId per request, JSON body, Bearer key.
-- wrk ... -s bench/payment.lua http://127.0.0.1:PORT/api/payment -- PREFIX API_KEY MID
-- Each wrk thread has its own Lua state: setup() numbers them, so (prefix, thread, counter)
-- never repeats. done() prints one JSON line that bench/loadgen.py reads.

local threads = {}

function setup(thread)
   thread:set("thread_no", #threads)
   table.insert(threads, thread)
end

function init(args)
   prefix = args[1]
   mid = args[3]
   counter = 0
   headers = {}
   headers["Content-Type"] = "application/json"
   headers["Authorization"] = "Bearer " .. args[2]
end

function request()
   counter = counter + 1
   local order = string.format("%s_t%d_%d", prefix, thread_no, counter)
   local body = string.format(
      '{"userPublicId":"USR_%d","orderId":"%s","amount":%d,' ..
      '"echo":{"mid":"%s","orderNumber":"%s"}}',
      counter % 997, order, 1000 + counter % 1000, mid, order)
   return wrk.format("POST", "/api/payment", headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
      '"max_us":%d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
      latency.max))
end
