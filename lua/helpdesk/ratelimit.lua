-- Client-side rate limits: per endpoint, one sliding-window log per limit,
-- so that no window of the limit's length, wherever it starts, holds more
-- requests than allowed (Feishu does not document how it counts).
local setmetatable, type, pairs, ipairs, max, tonumber, format =
  setmetatable, type, pairs, ipairs, math.max, tonumber, string.format

local M = {}

-- The documented limits; "list" has none documented ("special").
M.DEFAULTS = {
  ticket_message = { per_second = 50, per_minute = 1000 },
  bot_message = { per_minute = 100 },
  list = {},
}

local WINDOWS = { per_second = 1, per_minute = 60 }
-- Requests reach Feishu a little later than they leave here, and not all
-- equally late (a thread pool, a busy machine: some ms): a margin keeps a
-- burst at a window's edge inside the limit.
local MARGIN = 0.03
-- How long to wait for a concurrent caller to write the slot it reserved.
local SLOT_WAIT = 1

-- A limit of n per window of w seconds is a ring of n slots in the store.
-- Call k reserves number k (incr), then starts no sooner than call k-n did,
-- plus w; its start time goes into slot k % n. Among any n+1 calls two share
-- a slot, so they start at least w apart: no window holds more than n.
-- Workers that share the store share the ring.
local Window = {}
Window.__index = Window

local function new_window(store, prefix, limit, seconds)
  local key = format("%s:%d:%d", prefix, seconds, limit)
  return setmetatable({ store = store, limit = limit, seconds = seconds, key = key, seq_key = key .. ":seq" },
                      Window)
end

function Window:slot_key(k)
  return self.key .. ":" .. (k % self.limit)
end

-- A start time long past: of the calls before the first.
local NONE = -1e15

-- The start time of call k (NONE for none), waiting a little for a concurrent
-- caller that reserved k and has not written it yet.
function Window:start_of(k, clock)
  if k < 1 then return NONE end
  local waited = 0
  while true do
    local v = self.store:get(self:slot_key(k))
    local tag, t = nil, nil
    if type(v) == "string" then
      tag, t = v:match("^(%d+) (%S+)$")
      tag, t = tonumber(tag), tonumber(t)
    end
    if tag and tag >= k then return t end
    -- lost, or its caller stopped before writing: count it as starting now
    if waited >= SLOT_WAIT then return clock.now() end
    clock.sleep(0.002)
    waited = waited + 0.002
  end
end

function Window:write(k, t)
  self.store:set(self:slot_key(k), format("%d %.6f", k, t), self.seconds * 2 + 1)
end

local Limiter = {}
Limiter.__index = Limiter

-- limits: { per_second = n, per_minute = n }, either may be absent; store:
-- a helpdesk.store (a table of its own by default); prefix names the ring
-- in it (the app and the endpoint).
function M.limiter(limits, store, prefix, now)
  local windows = {}
  store = store or require("helpdesk.store").table(now or require("helpdesk.clock").now)
  for key, seconds in pairs(WINDOWS) do
    if limits[key] then windows[#windows + 1] = new_window(store, prefix or "helpdesk:rl", limits[key], seconds) end
  end
  if #windows == 0 then return nil end
  return setmetatable({ windows = windows }, Limiter)
end

-- Takes the next slot without waiting: returns the time (on clock) the call
-- may start, or nil and the wait that was needed when that would be after
-- deadline (and then the slot is handed on unused).
function Limiter:reserve(clock, deadline)
  local now = clock.now()
  local start, ks, prev = now, {}, {}
  for i, w in ipairs(self.windows) do
    ks[i] = w.store:incr(w.seq_key, 1, 0)
    prev[i] = w:start_of(ks[i] - w.limit, clock)
    start = max(start, prev[i] + w.seconds + MARGIN)
  end
  if start > deadline then
    -- not sent: the slot keeps the time of the call before it in the ring
    for i, w in ipairs(self.windows) do w:write(ks[i], prev[i]) end
    return nil, start - now
  end
  for i, w in ipairs(self.windows) do w:write(ks[i], start) end
  return start
end

-- Waits for a slot and takes it. Returns the seconds waited, or nil and the
-- wait that was needed when it would end after deadline.
function Limiter:acquire(clock, deadline)
  local start, need = self:reserve(clock, deadline)
  if not start then return nil, need end
  local now = clock.now()
  if start > now then clock.sleep(start - now) end
  return start > now and start - now or 0
end

-- The error of a call to endpoint whose slot would come after its budget
-- (of what: "the call", "the batch"); need is the wait that would have taken.
function M.past_budget(endpoint, what, need)
  return require("helpdesk.errors").new("rate_limit", { retry_after = need,
    msg = format("the client-side rate limit of %s frees a slot in %.2f s, past %s's budget; "
                 .. "nothing was sent", endpoint, need, what) })
end

-- Checks the rate_limit option and returns { endpoint = limits|nil } or
-- false when switched off; nil, message when malformed.
function M.build(opt)
  if opt == false then return false end
  if opt ~= nil and type(opt) ~= "table" then return nil, "must be false or a table" end
  local out = {}
  for name, defaults in pairs(M.DEFAULTS) do
    local given = opt and opt[name]
    if given ~= nil and type(given) ~= "table" then return nil, name .. " must be a table" end
    local limits = {}
    for key in pairs(WINDOWS) do
      local v = defaults[key]
      if given and given[key] ~= nil then v = given[key] end
      if v ~= false and v ~= nil then
        if type(v) ~= "number" or v < 1 or v ~= math.floor(v) or v > 1e6 then
          return nil, name .. "." .. key .. " must be a whole number from 1, or false"
        end
        limits[key] = v
      end
    end
    for key in pairs(given or {}) do
      if not WINDOWS[key] then return nil, name .. " has an unknown field " .. tostring(key) end
    end
    if next(limits) then out[name] = limits end
  end
  for name in pairs(opt or {}) do
    if not M.DEFAULTS[name] then return nil, "has an unknown endpoint " .. tostring(name) end
  end
  return out
end

return M
