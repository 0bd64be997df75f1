-- wrk script for benches/load.sh: POSTs the file named by $BODY_FILE as
-- application/json, counts every non-2xx response by status (the first one's
-- body is kept for the report) and prints one machine-readable RESULT line.
local path = os.getenv("BODY_FILE") or error("BODY_FILE is not set")
local f = assert(io.open(path, "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/json"

local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   non2xx = 0
   statuses = {}
   first_bad = ""
end

function response(status, headers, resp_body)
   if status < 200 or status > 299 then
      non2xx = non2xx + 1
      local k = tostring(status)
      statuses[k] = (statuses[k] or 0) + 1
      if first_bad == "" then
         first_bad = string.sub((resp_body or ""):gsub("[\r\n]", " "), 1, 300)
      end
   end
end

function done(summary, latency, requests)
   local bad, by_status, sample = 0, {}, ""
   for _, t in ipairs(threads) do
      bad = bad + (t:get("non2xx") or 0)
      for k, v in pairs(t:get("statuses") or {}) do
         by_status[k] = (by_status[k] or 0) + v
      end
      if sample == "" then sample = t:get("first_bad") or "" end
   end
   local parts = {}
   for k, v in pairs(by_status) do table.insert(parts, k .. ":" .. v) end
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
      "non2xx=%d statuses=%s err_connect=%d err_read=%d err_write=%d err_timeout=%d err_status=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      bad, (#parts > 0 and table.concat(parts, ",") or "-"),
      e.connect, e.read, e.write, e.timeout, e.status))
   if sample ~= "" then
      io.write("FIRST_NON2XX_BODY " .. sample .. "\n")
   end
end
