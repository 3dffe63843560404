-- Lifetime simulation (make life): one client, and two clients sharing one
-- store, through a simulated week against the fake Feishu. The clock runs
-- as time does, but jumps wherever anyone sleeps (the library's waits and
-- the week's quiet spells alike), and the fake follows it, so its tokens
-- expire and its rate windows turn on the same time. Every call is judged
-- by the reference model (tools/life_model.lua): when it may start, whether
-- it must fetch a token, what it may return; every message is checked
-- against what the fake received and delivered. Prints one summary line;
-- exits 1 on any violation.
-- Usage: fake/fakefeishu run lua5.4 tools/life.lua [days] [seed]
package.path = "lua/?.lua;spec/?.lua;tools/?.lua;" .. package.path
package.cpath = "build/lua/" .. (type(jit) == "table" and "jit" or _VERSION:match("%d+%.%d+")) .. "/?.so;"
  .. package.cpath
local core = require "helpdesk.core"
local clock = require "helpdesk.clock"
local fake = require "fake"
local usage = require "process_usage"
local helpdesk = require "helpdesk"
local life = require "life_model"

local DAYS = tonumber(arg[1]) or 7
math.randomseed(tonumber(arg[2]) or 20261125)

-- The seam: the library reads time through helpdesk.clock, set here before
-- any client is made. A sleep moves this clock and the fake's alike.
local offset = 0
clock.now = function() return core.monotime() + offset end
clock.sleep = function(s)
  if s > 0 then
    offset = offset + s
    fake.clock(s)
  end
end

local BUDGET = 60 -- the default budget of a call
local HOUR, DAY = 3600, 86400
local TICKETS = {}
for i = 1, 8 do TICKETS[i] = string.format("70000000000000%05d", i) end

local T0 = clock.now()
local model = life.new()
local violations, stats = {}, { calls = 0, messages = 0, delivered = 0, refused = 0, failed = 0, listed = 0 }
local function violation(msg)
  if #violations < 50 then
    violations[#violations + 1] = string.format("day %d %s: %s", math.floor((clock.now() - T0) / DAY) + 1,
      os.date("!%H:%M:%S", math.floor((clock.now() - T0) % DAY)), msg)
  end
end

-- Waits in a histogram of fixed size, so the driver's memory stays flat too.
local function histogram()
  return { n = 0, counts = {} }
end
local function bucket(s) return s <= 0.001 and 0 or math.floor(math.log(s * 1000) * 100) + 1 end
local function add(h, s)
  local b = bucket(s)
  h.counts[b] = (h.counts[b] or 0) + 1
  h.n = h.n + 1
end
local function quantile(h, q)
  local want, seen = q * h.n, 0
  for b = 0, 1200 do
    seen = seen + (h.counts[b] or 0)
    if seen >= want and seen > 0 then return b == 0 and 0 or math.exp(b / 100) / 1000 end
  end
  return 0
end
local waits, model_waits = histogram(), histogram()

-- What the call under way has done, as its logger events tell.
local current
local function logger(e)
  local c = current
  if not c then return end
  local token = type(e.url) == "string" and e.url:find("tenant_access_token", 1, true)
  if e.event == "request" then
    if token then
      c.token_requested = true
    else
      local now = clock.now()
      c.first = c.first or now
      -- every request counts at Feishu, retries too
      model:started(c.endpoint, now)
    end
  elseif e.event == "response" and token then
    c.slack = c.slack + (e.duration or 0)
  elseif e.event == "retry" then
    c.slack = c.slack + e.wait
  elseif e.event == "token_refresh" then
    if e.ok then c.token_ok = true else c.token_failed = clock.now() end
  end
end

-- Faults in force, as windows of this clock: { from =, to =, kind =, endpoint = }.
local faults = {}
local function excuse(a, b, endpoint)
  for _, f in ipairs(faults) do
    if f.from <= b and a <= f.to and (f.endpoint == nil or f.endpoint == endpoint) then return f.kind end
  end
end

-- Asks the fake for a fault now, for seconds of this clock.
local function fault(kind, seconds, spec, endpoint)
  local fnow = fake.clock().now
  spec["until"] = fnow + seconds
  fake.fault(spec)
  faults[#faults + 1] = { from = clock.now(), to = clock.now() + seconds, kind = kind, endpoint = endpoint }
end

-- The groups of clients: one alone, two sharing one store. Made anew as
-- the week goes.
local groups = { solo = { gen = 0 }, pair = { gen = 0 } }
local active = "solo"
local function new_client(st)
  return assert(helpdesk.new(fake.options({ timeout = 1, logger = logger, store = st })))
end
local function make_group(name)
  local g = groups[name]
  for _, c in ipairs(g.clients or {}) do c:close() end
  g.gen = g.gen + 1
  g.store = name .. g.gen
  if name == "solo" then
    g.clients = { new_client() }
  else
    local st = helpdesk.memory_store()
    g.clients = { new_client(st), new_client(st) }
  end
  g.turn = 0
end

-- One call of endpoint: fn(client) returns the result or nil, err. Judged
-- at once against the model; messages also at the day's end (texts).
local texts_today = {}
local function call(endpoint, fn, text)
  local g = groups[active]
  g.turn = g.turn % #g.clients + 1
  local a = clock.now()
  local e = model:earliest(endpoint, a)
  local fetched_before, pause_before = model.tokens[g.store], model.refresh_pause[g.store]
  local must_fetch = model:token_call(g.store, a)
  current = { endpoint = endpoint, slack = 0.05 }
  local ok, res, err = pcall(fn, g.clients[g.turn])
  local c = current
  current = nil
  stats.calls = stats.calls + 1
  if not ok then
    violation(endpoint .. " raised: " .. tostring(res))
    return
  end
  -- a fetch that failed and was not made good in the same call
  if c.token_failed and not c.token_ok then
    model:token_failed(g.store, fetched_before, c.token_failed, pause_before)
  end
  local why = life.judge({ ok = res ~= nil, err = err, wait = e + life.MARGIN - a, budget = BUDGET,
                           excuse = excuse(a, clock.now(), endpoint) })
  if why then violation(string.format("%s: %s (%s)", endpoint, why, tostring(err))) end
  if must_fetch ~= (c.token_requested == true) then
    violation(string.format("%s: the model %s a token fetch, the client %s", endpoint,
      must_fetch and "expected" or "did not expect", c.token_requested and "fetched" or "did not"))
  end
  if c.first then
    if c.first > e + life.MARGIN + c.slack then
      violation(string.format("%s went out %.3f s after the model allows", endpoint, c.first - e - life.MARGIN))
    end
    add(waits, c.first - a)
    add(model_waits, e - a)
  end
  if not res then
    if err.kind == "rate_limit" then stats.refused = stats.refused + 1 else stats.failed = stats.failed + 1 end
  end
  if text then texts_today[text] = { ok = res ~= nil, err = err } end
  return res, err
end

local seq = 0
local function burst(n)
  for _ = 1, n do
    seq = seq + 1
    local text = "life " .. seq
    local ticket = TICKETS[math.random(#TICKETS)]
    stats.messages = stats.messages + 1
    call("ticket_message", function(c) return c:send_ticket_message(ticket, helpdesk.text(text)) end, text)
  end
end

local function bots(n)
  for _ = 1, n do
    seq = seq + 1
    local text = "life bot " .. seq
    stats.messages = stats.messages + 1
    call("bot_message", function(c)
      return c:bot_message({ msg_type = "text", content = { text = text }, receiver_id = "ou_life" })
    end, text)
  end
end

local function list(ticket)
  local want = fake.delivered(ticket).total
  local n = call("list", function(c)
    local count = 0
    local ok, err = pcall(function()
      for _ in c:ticket_messages(ticket) do count = count + 1 end
    end)
    if not ok then return nil, err end
    return count
  end)
  if n then
    stats.listed = stats.listed + n
    if n ~= want then violation(string.format("a listing of ticket %s yielded %d of %d", ticket, n, want)) end
  end
end

-- Every message of the day against what the fake received and delivered.
local function judge_texts()
  local t = fake.texts()
  for text, r in pairs(texts_today) do
    local received, delivered = t.received[text] or 0, t.delivered[text] or 0
    stats.delivered = stats.delivered + delivered
    if delivered > 1 then violation(text .. " delivered " .. delivered .. " times") end
    if r.ok and delivered ~= 1 then violation(text .. " reported sent, delivered " .. delivered .. " times") end
    if not r.ok then
      if not r.err.sent and delivered > 0 then violation(text .. " reported not sent, but delivered") end
      if r.err.sent and received == 0 then violation(text .. " reported maybe processed, but never reached Feishu") end
      if (r.err.token or r.err.kind == "rate_limit") and received > 0 then
        violation(text .. " reported nothing sent, but reached Feishu")
      end
    end
  end
  texts_today = {}
end

local function sleep_until(t)
  if t > clock.now() then clock.sleep(t - clock.now()) end
end

-- Quiet spells of every length between a working day's activities.
local SPELLS = { 0, 0, 0, 0.05, 0.5, 1, 2, 3, 10, 30, 61, 90, 125, 300, 900, 3600 }
local BURSTS = { 1, 1, 1, 2, 3, 5, 8, 20, 60, 120 }

local function activity()
  local r = math.random()
  if r < 0.6 then burst(BURSTS[math.random(#BURSTS)])
  elseif r < 0.85 then bots(({ 1, 1, 2, 3, 30 })[math.random(5)])
  else list(TICKETS[math.random(#TICKETS)]) end
end

-- The week's events, at hours of given days (0 is the first).
local HELPDESK = "/open-apis/helpdesk/v1/"
local EVENTS = {
  { day = 0, at = 10, name = "1050 ticket messages at once", run = function() burst(1050) end },
  { day = 1, at = 10, name = "a 429 storm", run = function()
      fault("429", 20, { path = HELPDESK, status = 429, headers = { ["x-ogw-ratelimit-reset"] = "2" },
                        body = '{"code":99991400,"msg":"request trigger frequency limit"}' })
      burst(30)
    end },
  { day = 1, at = 15, name = "110 bot messages at once", run = function() bots(110) end },
  { day = 2, at = 11, name = "a minute of 5xx", run = function()
      fault("5xx", 60, { path = HELPDESK, status = 500, body = '{"code":99991672,"msg":"internal error"}' })
      burst(10)
      list(TICKETS[1])
    end },
  { day = 3, at = 9.5, name = "dropped connections", run = function()
      fault("drop", 1, { path = HELPDESK, method = "POST", close = true, times = 3 })
      burst(5)
    end },
  { day = 3, at = 14, name = "tokens revoked", run = function()
      fake.revoke_tokens()
      model:revoke()
    end },
  { day = 4, at = 8, name = "a hanging token endpoint in the morning", run = function()
      fault("token_hang", 600, { path = "tenant_access_token", delay = 1.5, status = 500, times = 2 })
      burst(3)
    end },
  { day = 5, at = 10, name = "a hanging token endpoint in the refresh window", run = function()
      -- a token fresh enough that its refresh window is ahead, then into it
      local store = groups[active].store
      if not model.tokens[store] or clock.now() >= model.tokens[store] + life.TOKEN_TTL - life.REFRESH_BEFORE then
        burst(1)
      end
      sleep_until(model.tokens[store] + life.TOKEN_TTL - life.REFRESH_BEFORE + 30)
      -- hanging for the rest of the window: each try costs its timeout; the
      -- tries back off, and the last ones come as the old token runs out
      fault("token_hang", 200, { path = "tenant_access_token", delay = 1.5, status = 500 })
      for _ = 1, 30 do
        burst(2)
        sleep_until(clock.now() + 7)
      end
      -- back: the next try gets a token before the old one expires
      sleep_until(model.tokens[store] + life.TOKEN_TTL - 5)
      burst(3)
    end },
  { day = 5, at = 15, name = "a slow listing", run = function()
      fake.config({ latency = 0.2 })
      list(TICKETS[2])
      fake.config({ latency = false })
    end },
  { day = 6, at = 10, name = "1050 ticket messages at once, two clients", run = function()
      active = "pair"
      burst(1050)
    end },
}

local function work_until(t, d)
  while clock.now() < t do
    local spell = SPELLS[math.random(#SPELLS)]
    clock.sleep(spell)
    -- a group hands over only after a quiet minute: their budgets never meet
    if spell > 61 and math.random() < 0.3 then active = active == "solo" and "pair" or "solo" end
    for _, ev in ipairs(EVENTS) do
      if ev.day == d and not ev.done and clock.now() >= T0 + d * DAY + ev.at * HOUR then
        ev.done = true
        ev.run()
      end
    end
    activity()
  end
end

local fds, lua_kib = usage.open_fds, usage.lua_kib

fake.reset()
fake.config({ record = false, rate_limits = { ticket_message = { per_second = 50, per_minute = 1000 },
                                               bot_message = { per_minute = 100 } } })
local wall0 = core.monotime()
local marks = {}
for d = 0, DAYS - 1 do
  local base = T0 + d * DAY
  sleep_until(base + 8 * HOUR) -- the night
  make_group("solo")
  make_group("pair")
  work_until(base + 12 * HOUR, d)
  sleep_until(base + 12 * HOUR + math.random(30, 90) * 60) -- lunch
  if d == 2 then make_group("solo") end
  work_until(base + 18.5 * HOUR, d)
  judge_texts()
  active = "solo"
  -- every client closed and dropped for the night: what memory is still
  -- held then is held for good
  for _, g in pairs(groups) do
    for _, c in ipairs(g.clients) do c:close() end
    g.clients = {}
  end
  marks[#marks + 1] = { kib = lua_kib(), fds = fds() }
  sleep_until(base + DAY)
  if os.getenv("LIFE_VERBOSE") then print(string.format("day %d: Lua %.0f KiB, fds %d", d + 1, marks[#marks].kib,
    marks[#marks].fds)) end
end
for _, ev in ipairs(EVENTS) do
  if ev.day < DAYS and not ev.done then violation("the event '" .. ev.name .. "' never ran") end
end

local st = fake.state()
if st.rate_limited ~= 0 then violation(st.rate_limited .. " 429s earned with the limiter on") end
if st.expired_token_uses ~= 0 then violation(st.expired_token_uses .. " calls with an expired token") end
if st.token_count ~= model.fetches then
  violation(string.format("%d token fetches, the model says %d", st.token_count, model.fetches))
end
-- memory and descriptors flat: the nights of the week's second half hold
-- no more than those of its first (medians: the model's own list of recent
-- requests saws up and down)
local function median(from, to)
  local v = {}
  for i = from, to do v[#v + 1] = marks[i].kib end
  table.sort(v)
  return v[math.floor((#v + 1) / 2)]
end
if #marks >= 6 then
  local half = math.floor(#marks / 2)
  local early, late = median(1, half), median(#marks - half + 1, #marks)
  if late > early + 64 then violation(string.format("Lua memory grew from %.0f to %.0f KiB", early, late)) end
  if marks[#marks].fds > marks[1].fds then
    violation(string.format("descriptors grew from %d to %d", marks[1].fds, marks[#marks].fds))
  end
end

print(string.format("life: %.1f simulated hours in %.1f s, %d calls, %d messages, %d delivered, %d refused by "
  .. "the limiter, %d failed under faults, %d listed; waits p50 %.3f s (model %.3f), p99 %.3f s (model %.3f); "
  .. "%d 429s earned; %d token fetches (model %d); Lua %.0f -> %.0f KiB, fds %d -> %d",
  (clock.now() - T0) / HOUR, core.monotime() - wall0, stats.calls, stats.messages, stats.delivered, stats.refused,
  stats.failed, stats.listed, quantile(waits, 0.5), quantile(model_waits, 0.5), quantile(waits, 0.99),
  quantile(model_waits, 0.99), st.rate_limited, st.token_count, model.fetches,
  marks[1].kib, marks[#marks].kib, marks[1].fds, marks[#marks].fds))
for _, v in ipairs(violations) do print("  " .. v) end
os.exit(#violations == 0 and 0 or 1)
