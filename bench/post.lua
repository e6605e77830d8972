-- wrk script: POST one message per request, count statuses, print a JSON summary.
-- Usage: wrk -s bench/post.lua URL -- BODY_FILE [RESPONSES_PER_THREAD MARKER_DIR]
-- With RESPONSES_PER_THREAD, each thread stops after that many responses and leaves a
-- file in MARKER_DIR; wrk itself runs out its -d duration, so the caller watches the
-- markers and ends it with SIGINT (wrk then prints its summary as usual).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = io.open(args[1], "r")
  wrk.body = file:read("*a")
  file:close()
  limit = tonumber(args[2] or "0") or 0
  marker_dir = args[3]
  created = 0
  other = 0
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
  else
    other = other + 1
  end
  if limit > 0 and created + other == limit then
    if marker_dir then
      local marker = io.open(string.format("%s/%s-%d", marker_dir, tostring(wrk.thread):gsub("[^%w]", ""), math.random(1e9)), "w")
      marker:close()
    end
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local created_total, other_total = 0, 0
  for _, thread in ipairs(threads) do
    created_total = created_total + thread:get("created")
    other_total = other_total + thread:get("other")
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "created": %d, "other_status": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, created_total, other_total,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
