-- Distinct Telegram webhook updates for wrk: each thread numbers its own update_ids, so no
-- update repeats. Run by bench/telegram_ack.py:
--
--   wrk -t2 -c32 -d15s --latency -s bench/update.lua URL -- SECRET
--
-- done() prints one line "BENCH_JSON {...}".

local threads = {}
local count = 0

function setup(thread)
   thread:set("id", count)
   table.insert(threads, thread)
   count = count + 1
end

function init(args)
   secret = args[1]
   n = 0
   base = (id + 1) * 100000000 + math.floor(os.time() % 100000) * 1000
   headers = {["Content-Type"] = "application/json",
              ["X-Telegram-Bot-Api-Secret-Token"] = secret}
end

function request()
   n = n + 1
   local update = base + n
   local body = string.format(
      '{"update_id": %d, "message": {"message_id": %d, "date": %d, ' ..
      '"chat": {"id": %d, "type": "private"}, ' ..
      '"from": {"id": %d, "is_bot": false, "first_name": "Load"}, "text": "hello %d"}}',
      update, update, os.time(), 1000 + (n % 50), 1000 + (n % 50), update)
   return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "non2xx": %d, ' ..
      '"latency_us": {"p50": %d, "p99": %d, "max": %d}}\n',
      summary.requests, summary.duration, e.status,
      latency:percentile(50), latency:percentile(99), latency.max))
end
