wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
local events = {"view", "click", "buy", "signup", "share"}
local countries = {"DE","FR","IT","ES","NL","BE","AT","PL","SE","DK","FI","PT","IE","CZ","GR","HU","RO","BG","HR","SK"}
request = function()
  local parts = {}
  for i = 1, 10 do
    parts[i] = string.format('{"userId":"user-%d","event":"%s","country":"%s","revenue":%d,"email":"x%d@example.com"}',
      math.random(1, 100000), events[math.random(1, #events)], countries[math.random(1, #countries)], math.random(0, 2000), i)
  end
  return wrk.format(nil, "/stats/e", nil, '{"batch":[' .. table.concat(parts, ",") .. ']}')
end
