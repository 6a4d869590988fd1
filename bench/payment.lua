-- wrk script: POST /api/payment with a unique orderId per request, JSON body, Bearer key.
-- wrk ... -s bench/payment.lua http://127.0.0.1:PORT/api/payment -- PREFIX API_KEY MID
-- Each wrk thread has its own Lua state: setup() numbers them, so (prefix, thread, counter)
-- never repeats. done() prints one JSON line that bench/loadgen.py reads.
--
-- With BENCH_WRK_RATE in the environment (requests/s over all BENCH_WRK_THREADS threads) the
-- load is paced instead of closed-loop: each thread hands out send slots on a fixed schedule
-- (its share of the rate), and a
-- connection that comes free waits in delay() for the next slot. A slot whose time has passed
-- goes at once and counts as late: with enough connections that never happens, and when it
-- does, done() says how often, as an open-loop generator would.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local CLOCK_MONOTONIC = 1

local function now_ms()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
   return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

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
   slot = 0
   late_100 = 0
   late_max = 0
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

-- wrk calls delay() before each request only if the script defines it, so only paced runs do.
local rate = tonumber(os.getenv("BENCH_WRK_RATE") or "0")
if rate > 0 then
   local interval = tonumber(os.getenv("BENCH_WRK_THREADS") or "1") / rate * 1000  -- ms

   -- Milliseconds until this thread's next slot.
   function delay()
      local now = now_ms()
      if not t0 then
         t0 = now
      end
      local due = t0 + slot * interval
      slot = slot + 1
      if due > now then
         return math.floor(due - now)
      end
      local late = now - due
      if late > late_max then
         late_max = late
      end
      if late > 100 then
         late_100 = late_100 + 1
      end
      return 0
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   local late_100_all, late_max_all = 0, 0
   for _, thread in ipairs(threads) do
      late_100_all = late_100_all + (thread:get("late_100") or 0)
      late_max_all = math.max(late_max_all, thread:get("late_max") or 0)
   end
   io.write(string.format(
      'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
      '"max_us":%d,"late_100":%d,"late_max_ms":%.1f}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
      latency.max, late_100_all, late_max_all))
end
