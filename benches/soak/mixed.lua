-- wrk script for benches/soak.sh: POSTs the event in $BODY_FILE, and every
-- $BAD_EVERY-th request a truncated copy (malformed JSON). Counts responses
-- by status; valid requests must get 204, malformed ones 400.
local path = os.getenv("BODY_FILE") or error("BODY_FILE is not set")
local f = assert(io.open(path, "rb"))
local good = f:read("*a")
f:close()
local bad = good:sub(1, math.floor(#good / 2))
local every = tonumber(os.getenv("BAD_EVERY") or "20")

local threads = {}
function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   sent_bad = 0
   sent_good = 0
   counts = {}
   n = 0
end

function request()
   n = n + 1
   if n % every == 0 then
      sent_bad = sent_bad + 1
      return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bad)
   end
   sent_good = sent_good + 1
   return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, good)
end

function response(status, headers, body)
   local k = tostring(status)
   counts[k] = (counts[k] or 0) + 1
end

function done(summary, latency, requests)
   local good, bad, totals = 0, 0, {}
   for _, t in ipairs(threads) do
      good = good + t:get("sent_good")
      bad = bad + t:get("sent_bad")
      local c = t:get("counts")
      for k, v in pairs(c) do
         totals[k] = (totals[k] or 0) + v
      end
   end
   local parts = {}
   for k, v in pairs(totals) do
      table.insert(parts, k .. "=" .. v)
   end
   table.sort(parts)
   io.write(string.format("RESULT sent_good=%d sent_bad=%d socket_errors=%d statuses=%s p99_us=%d\n",
      good, bad,
      summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
      table.concat(parts, ","), latency:percentile(99)))
end
