-- wrk script for bench.load: POST one prepared v2 inference body, count answers by status.
--   wrk -t1 -c8 -d20s -s bench/wrk_v2.lua URL -- BODY_FILE [INFERENCE_HEADER_LENGTH]
-- Prints one line "ROWGEN {json}" with requests, status counts, socket errors and latency
-- percentiles (microseconds, over every answer) for bench.load to read.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "rb"))
  local body = file:read("*all")
  file:close()
  local headers = {["Content-Type"] = "application/json"}
  if args[2] then
    headers["Content-Type"] = "application/octet-stream"
    headers["Inference-Header-Content-Length"] = args[2]
  end
  prepared = wrk.format("POST", nil, headers, body)
  codes = {}
end

function request()
  return prepared
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("codes")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, string.format('"%d": %d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'ROWGEN {"requests": %d, "duration_us": %d, "codes": {%s}, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, table.concat(parts, ", "), e.connect, e.read,
    e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
