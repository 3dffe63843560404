-- `make bench`: the module against its baselines, on loopback against the
-- fake Feishu (started by fake/fakefeishu run, recording off), contenders
-- alternated round by round; prints a table of medians and ratios and
-- writes it as JSON to build/bench/results.json. Never part of the tests.
-- Usage: fake/fakefeishu run lua5.4 bench/run.lua  (BENCH_ROUNDS, BENCH_SENDS;
-- BENCH_ONLY=events: the events row alone; BENCH_ONLY=redis: the Redis
-- store's row alone)
package.path = "lua/?.lua;spec/?.lua;" .. package.path
package.cpath = "build/lua/" .. _VERSION:match("%d+%.%d+") .. "/?.so;" .. package.cpath
local cjson = require "cjson"
local core = require "helpdesk.core"
local events = require "helpdesk.events"
local fake = require "fake"

local ROUNDS = tonumber(os.getenv("BENCH_ROUNDS")) or 10
local SENDS = tonumber(os.getenv("BENCH_SENDS")) or 3000
local EVENTS = tonumber(os.getenv("BENCH_EVENTS")) or 20000
local LIST_TICKET = "7000000000000000001"
local LIST_MESSAGES = 100000
local TEXT = { msg_type = "text", content = { text = "bench" } }
local results = { machine = {}, runs = {} }

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local function median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  local n = #t
  if n % 2 == 1 then return t[(n + 1) / 2] end
  return (t[n / 2] + t[n / 2 + 1]) / 2
end

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

-- the answers of the fake stay small: each run writes to a fresh ticket
local ticket_seq = 7100000000000000000
local function fresh_ticket()
  ticket_seq = ticket_seq + 1
  return string.format("%d", ticket_seq)
end

local function tenant_token()
  local h = assert(core.new())
  local status, body = h:request({
    method = "POST", url = fake.url .. "/open-apis/auth/v3/tenant_access_token/internal",
    headers = { ["Content-Type"] = "application/json" },
    body = cjson.encode({ app_id = fake.APP_ID, app_secret = fake.APP_SECRET }),
  })
  h:close()
  assert(status == 200, "token: " .. tostring(status))
  return cjson.decode(body).tenant_access_token
end

-- 1. sequential sends: the module vs raw libcurl (bench/raw_send.c)
local function module_sends(client, n)
  local ticket = fresh_ticket()
  local t0 = core.monotime()
  for i = 1, n do
    local data, err = client:send_ticket_message(ticket, TEXT)
    if not data then error("send " .. i .. ": " .. tostring(err)) end
  end
  return n / (core.monotime() - t0)
end

local function raw_sends(token, n)
  local out = sh(string.format("build/bench/raw_send %s %s %s %s %d", fake.url, fresh_ticket(), token,
    core.base64(fake.HELPDESK_ID .. ":" .. fake.HELPDESK_TOKEN), n))
  return assert(tonumber(out), "raw_send: " .. out)
end

-- 2. the official Node SDK, if bench/node could be installed
local function node_sends(n)
  local out = sh(string.format("node bench/node/send.js %s %s %s %s %s %s %d 2>&1", fake.url, fake.APP_ID,
    fake.APP_SECRET, fake.HELPDESK_ID, fake.HELPDESK_TOKEN, fresh_ticket(), n))
  return tonumber(out), out
end

-- 3. iterating a ticket's messages: the module vs core + lua-cjson by hand
local function module_iterate(client)
  local n, low, high = 0, math.huge, 0
  local t0 = core.monotime()
  for _ in client:ticket_messages(LIST_TICKET) do
    n = n + 1
    if n % 20000 == 0 then
      local kib = collectgarbage("count")
      low, high = math.min(low, kib), math.max(high, kib)
    end
  end
  assert(n == LIST_MESSAGES, "iterated " .. n)
  return n / (core.monotime() - t0), high - low
end

local function raw_iterate(token)
  local h = assert(core.new())
  local headers = {
    Authorization = "Bearer " .. token,
    ["X-Lark-Helpdesk-Authorization"] = core.base64(fake.HELPDESK_ID .. ":" .. fake.HELPDESK_TOKEN),
  }
  local n, page = 0, 1
  local t0 = core.monotime()
  while true do
    local status, body = h:request({ method = "GET", headers = headers,
      url = string.format("%s/open-apis/helpdesk/v1/tickets/%s/messages?page=%d&page_size=200", fake.url,
        LIST_TICKET, page) })
    assert(status == 200)
    local msgs = cjson.decode(body).data.messages
    for _ = 1, #msgs do n = n + 1 end
    if #msgs < 200 then break end
    page = page + 1
  end
  h:close()
  assert(n == LIST_MESSAGES, "iterated " .. n)
  return n / (core.monotime() - t0)
end

local function row(name, contender, baseline, goal, unit)
  local ratio = contender / baseline
  results.runs[#results.runs + 1] = { name = name, module = contender, baseline = baseline, ratio = ratio,
                                      goal = goal, unit = unit }
  print(string.format("%-44s %10.0f %10.0f %7.2f %7s %s", name, contender, baseline, ratio,
    goal and string.format(goal < 1 and ">= %.2f" or ">= %.0fx", goal) or "",
    (goal and ratio < goal) and "MISSED" or ""))
end

-- 6. decoding a pushed event: an encrypted, signed 1 KiB ticket message
-- event, the same request through receiver:decode and through the Node
-- SDK's EventDispatcher (bench/node/events.js), rounds alternated
local function events_request()
  local KEY, TOKEN = "bench-encrypt-key", "bench-verification-token"
  local text = ("my printer is on fire. "):rep(20)
  local function event(pad)
    return cjson.encode({
      schema = "2.0",
      header = { event_id = "5e3702a84e847582be8db7fb73283c02", token = TOKEN, create_time = "1608725989000",
                 event_type = "helpdesk.ticket_message.created_v1", tenant_key = "736588c92lxf175d",
                 app_id = "cli_9e28cb7ba56a100e" },
      event = { ticket = { ticket_id = "6626871355780366331" }, msg_type = "text", position = "3", sender_type = 2,
                event_id = "6949088240624222228", content = { content = text, msg_type = "text" }, pad = pad },
    })
  end
  local plain = event(("x"):rep(1024 - #event("")))
  assert(#plain == 1024 and cjson.decode(plain), "the event is not 1 KiB of JSON")
  -- as Feishu writes it: "/" unescaped (the SDK signs the body re-serialised)
  local body = '{"encrypt":"' .. assert(events.encrypt(KEY, plain)) .. '"}'
  local ts, nonce = tostring(os.time()), "1634567"
  return { encrypt_key = KEY, verification_token = TOKEN, body = body,
           event_type = "helpdesk.ticket_message.created_v1",
           headers = { ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = nonce,
                       ["X-Lark-Signature"] = assert(events.signature(ts, nonce, KEY, body)) } }
end

local function module_decodes(req, n)
  local receiver = assert(events.new({ encrypt_key = req.encrypt_key, verification_token = req.verification_token }))
  local headers, body = req.headers, req.body
  for _ = 1, 2000 do assert(receiver:decode(headers, body)) end
  local t0 = core.monotime()
  for i = 1, n do
    local ev, err = receiver:decode(headers, body)
    if not ev then error("decode " .. i .. ": " .. tostring(err)) end
  end
  return n / (core.monotime() - t0)
end

local function events_row(have_node)
  local req = events_request()
  local file = os.tmpname()
  local f = assert(io.open(file, "w"))
  f:write(cjson.encode(req))
  f:close()
  local m, nd = {}, {}
  for round = 1, 5 do
    collectgarbage()
    m[round] = module_decodes(req, EVENTS)
    if have_node then
      local out = sh(string.format("node bench/node/events.js %s %d 2>&1", file, EVENTS))
      if tonumber(out) then nd[#nd + 1] = tonumber(out)
      else print("node SDK events run failed: " .. out:sub(1, 300)) end
    end
    io.stderr:write(string.format("events round %d/5 done\n", round))
  end
  os.remove(file)
  if #nd > 0 then
    row("6. events decoded/s (1 KiB) vs Node SDK", median(m), median(nd), nil, "events/s")
  else
    print(string.format("6. events decoded/s (1 KiB): %.0f (no Node SDK)", median(m)))
    results.events_decoded_per_s = median(m)
  end
end

local function write_results()
  os.execute("mkdir -p build/bench")
  local f = assert(io.open("build/bench/results.json", "w"))
  f:write(cjson.encode(results), "\n")
  f:close()
  print("written: build/bench/results.json")
end

-- set-up: the contenders on CPU 0 (raw_send and node inherit it), so that
-- the fake, on the other core, does not share one with them
local pid = io.open("/proc/self/stat"):read("*n")
os.execute("taskset -pc 0 " .. pid .. " >/dev/null 2>&1")
fake.reset()
fake.config({ record = false, helpdesk_bearer = true })
local c = assert(core.new())
c:request({ method = "POST", url = fake.url .. "/_fake/ticket",
  body = cjson.encode({ ticket_id = LIST_TICKET, messages = LIST_MESSAGES }) })
c:close()
local token = tenant_token()
local client = fake.client({ rate_limit = false })
local node_there = os.execute("test -f bench/node/node_modules/@larksuiteoapi/node-sdk/package.json")
local have_node = node_there == true or node_there == 0 -- Lua 5.1 and LuaJIT say 0
results.machine = {
  cpu = sh("grep -m1 'model name' /proc/cpuinfo"):match(":%s*(.-)%s*$"),
  cores = tonumber(sh("nproc --all")), lua = _VERSION, libcurl = core.curl_version,
  date = os.date("!%Y-%m-%d"),
}
print(string.format("machine: %s, %d cores; %s, libcurl %s", results.machine.cpu, results.machine.cores,
  _VERSION, core.curl_version))
print(string.format("%d rounds of %d sends, 5 of iterating, contenders alternated; medians", ROUNDS, SENDS))
if not have_node then print("node SDK: not installed (npm unreachable?): its row is left out") end

-- 7. the cost of a send with the Redis store vs the table store, the
-- limiter on with limits out of reach (every call reserves, none waits),
-- alternated round by round; then the round trips to Redis per send,
-- counted where the commands leave a connection
local function redis_row()
  local redis_server = require "redis_server"
  local redis = redis_server.start()
  -- Redis on the fake's core, as a host's Redis is elsewhere
  local redis_pid = io.open(redis.dir .. "/redis.pid"):read("*n")
  os.execute("taskset -pc 1 " .. redis_pid .. " >/dev/null 2>&1")
  local high = { ticket_message = { per_second = 1000000, per_minute = 1000000 } }
  local on_table = fake.client({ rate_limit = high })
  local on_redis = fake.client({ rate_limit = high, store = { redis = redis.url } })
  module_sends(on_table, 200)
  module_sends(on_redis, 200)
  local st_t, st_r = {}, {}
  for round = 1, ROUNDS do
    collectgarbage()
    st_t[round] = module_sends(on_table, SENDS)
    st_r[round] = module_sends(on_redis, SENDS)
    io.stderr:write(string.format("store round %d/%d done\n", round, ROUNDS))
  end
  on_redis:close()
  local connect, trips = core.redis_connect, 0
  core.redis_connect = function(...)
    local conn, err = connect(...)
    if not conn then return nil, err end
    return setmetatable({}, { __index = function(_, k)
      if k == "command" then
        return function(_, ...)
          trips = trips + 1
          return conn:command(...)
        end
      end
      return function(_, ...) return conn[k](conn, ...) end
    end })
  end
  local counted = fake.client({ rate_limit = high, store = { redis = redis.url } })
  module_sends(counted, 10) -- connects, fetches the token, loads the script
  trips = 0
  module_sends(counted, 1000)
  core.redis_connect = connect
  counted:close()
  redis_server.finish(redis)
  row("7. sends/s, Redis store vs table store", median(st_r), median(st_t), nil, "requests/s")
  print(string.format("   round trips to Redis per send: %.2f (the slot's EVALSHA; the token is read once a second)",
    trips / 1000))
  results.redis_round_trips_per_send = trips / 1000
end

if os.getenv("BENCH_ONLY") == "events" then
  print(string.format("5 rounds of %d event decodes, contenders alternated; medians", EVENTS))
  print(string.format("%-44s %10s %10s %7s %7s", "run", "module", "baseline", "ratio", "goal"))
  events_row(have_node)
  write_results()
  os.exit(0)
end
if os.getenv("BENCH_ONLY") == "redis" then
  print(string.format("%-44s %10s %10s %7s %7s", "run", "module", "baseline", "ratio", "goal"))
  redis_row()
  write_results()
  os.exit(0)
end

-- warm-up: connections, token, caches
module_sends(client, 200)
raw_sends(token, 200)

local m, r, nd, it_m, it_r, it_mem = {}, {}, {}, {}, {}, {}
for round = 1, ROUNDS do
  collectgarbage()
  m[round] = module_sends(client, SENDS)
  r[round] = raw_sends(token, SENDS)
  if have_node then
    local v, out = node_sends(SENDS)
    if v then nd[#nd + 1] = v else print("node SDK run failed: " .. out:sub(1, 300)) end
  end
  io.stderr:write(string.format("send round %d/%d done\n", round, ROUNDS))
end
for round = 1, 5 do
  collectgarbage()
  it_m[round], it_mem[round] = module_iterate(client)
  it_r[round] = raw_iterate(token)
  io.stderr:write(string.format("iteration round %d/5 done\n", round))
end

print()
print(string.format("%-44s %10s %10s %7s %7s", "run", "module", "baseline", "ratio", "goal"))
row("1. sequential sends/s vs raw libcurl", median(m), median(r), 0.90, "requests/s")
if #nd > 0 then row("2. sequential sends/s vs official Node SDK", median(m), median(nd), 5, "requests/s") end
row("3. messages iterated/s vs core + lua-cjson", median(it_m), median(it_r), 0.85, "messages/s")
print(string.format("   Lua memory spread while iterating 100k: %.0f KiB", median(it_mem)))
results.iterate_lua_memory_spread_kib = median(it_mem)

-- 4. RSS over 100k sends through one client
local rss0 = rss_kib()
module_sends(client, 100000)
collectgarbage()
local growth = rss_kib() - rss0
print(string.format("4. RSS growth over 100k sends: %d KiB (goal < 1024)%s", growth,
  growth >= 1024 and " MISSED" or ""))
results.rss_growth_kib = growth

-- 5. a batch against 100 ms of latency and Feishu's 50 a second, the
-- client-side limiter on (its defaults): how close to the limit, and no 429
-- reaching the caller
fake.config({ latency = 0.1, rate_limits = { ticket_message = { per_second = 50 } } })
local limited = fake.client()
local batch = {}
for i = 1, 500 do batch[i] = { ticket_id = fresh_ticket(), msg_type = "text", content = { text = "b" .. i } } end
local t0 = core.monotime()
local res = assert(limited:send_ticket_messages(batch, { concurrency = 16, budget = 120 }))
local rate = #batch / (core.monotime() - t0)
local answered_429 = fake.state().rate_limited
print(string.format("5. batch of 500, 100 ms latency, 50/s enforced: %.1f sends/s (%.2f of the limit, goal >= 0.95); "
  .. "429s answered %d, failed %d%s", rate, rate / 50, answered_429, res.failed,
  (rate / 50 < 0.95 or res.failed > 0) and " MISSED" or ""))
results.batch = { rate = rate, ratio = rate / 50, answered_429 = answered_429, failed = res.failed }
fake.config({ latency = false, rate_limits = false })

events_row(have_node)

redis_row()

write_results()
