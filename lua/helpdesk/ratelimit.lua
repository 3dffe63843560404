-- Client-side rate limits: per endpoint, one sliding-window log per limit,
-- so that no window of the limit's length, wherever it starts, holds more
-- requests than allowed (Feishu does not document how it counts).
local setmetatable, type, pairs, ipairs, max, tonumber, format, concat =
  setmetatable, type, pairs, ipairs, math.max, tonumber, string.format, table.concat

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
M.MARGIN = MARGIN

-- Calls are numbered (incr on the store: workers that share the store share
-- the numbers). A limit of n per window of w seconds is a ring of n slots:
-- call k starts no sooner than call k-n did, plus w, and writes its start
-- into slot k % n, tagged with k. Among any n+1 calls two share a slot, so
-- they start at least w apart: no window holds more than n.
-- Slots never expire: a ring is n keys whatever the traffic, and a start
-- long past is what lets the next call go at once after a quiet spell.
-- A reservation (read the number, the slots, write them) holds a lock in
-- the store, so another worker never sees one half made.
local Limiter = {}
Limiter.__index = Limiter

-- A start time long past: of the calls before the first.
local NONE = -1e15
-- A reservation takes microseconds; a lock older than this was left by a
-- caller that died holding it (a killed worker).
local LOCK_TTL = 0.1
local LOCK_PAUSE = 0.001
-- The longest a call may wait for its slot: its budget (at most a day),
-- and the window.
local MAX_AHEAD = 86400 + 60

local function parse(v)
  if type(v) ~= "string" then return nil end
  local tag, t = v:match("^(%d+) (%S+)$")
  return tonumber(tag), tonumber(t)
end

-- limits: { per_second = n, per_minute = n }, either may be absent; store:
-- a helpdesk.store (a table of its own by default); prefix names the
-- limiter in it (the app and the endpoint).
function M.limiter(limits, store, prefix, now)
  local windows, shape = {}, {}
  for _, key in ipairs({ "per_second", "per_minute" }) do
    if limits[key] then windows[#windows + 1] = { n = limits[key], w = WINDOWS[key] } end
  end
  if #windows == 0 then return nil end
  store = store or require("helpdesk.store").table(now or require("helpdesk.clock").now)
  prefix = prefix or "helpdesk:rl"
  for i, win in ipairs(windows) do
    win.key = format("%s:%d:%d:", prefix, win.w, win.n)
    shape[i] = win.n .. "/" .. win.w
  end
  -- other limits under the same name number their calls apart
  local seq_key = prefix .. ":seq:" .. concat(shape, ",")
  return setmetatable({ store = store, windows = windows, seq_key = seq_key, lock_key = seq_key .. ":lock",
                        prefix = prefix },
                      Limiter)
end

-- The start of call k in the ring of win. A slot still tagged with an older
-- call is that of a number whose caller died before writing: it never
-- started, and its slot keeps the time of the call before it in the ring.
-- A start further ahead of now than the longest budget a call may wait out
-- was never written by a limiter (another program, or a corrupted store):
-- it would hold every call back for ever, and counts as none.
function Limiter:start_of(k, win, now)
  -- read even for k < 1: numbering started again (a count lost or garbled)
  -- keeps the starts its ring holds, which a window must still count; in
  -- a ring never used the slot is empty
  local _, t = parse(self.store:get(win.key .. k % win.n))
  if not t or t > now + MAX_AHEAD then return NONE end
  return t
end

-- When call k may start, given the time now; and, per window, the start of
-- the call before it in that ring.
function Limiter:compute(k, now)
  local start, prev = now, {}
  for i, win in ipairs(self.windows) do
    prev[i] = self:start_of(k - win.n, win, now)
    start = max(start, prev[i] + win.w + MARGIN)
  end
  return start, prev
end

function Limiter:write(k, i, t)
  local win = self.windows[i]
  self.store:set(win.key .. k % win.n, format("%d %.6f", k, t))
end

-- Takes the lock of the reservations, waiting out one left by a dead
-- caller; false if it could not be had (a full store): then the
-- reservation goes ahead without it.
function Limiter:lock(clock)
  local waited = 0
  while not self.store:add(self.lock_key, 1, LOCK_TTL) do
    if waited > 2 * LOCK_TTL then return false end
    clock.sleep(LOCK_PAUSE)
    waited = waited + LOCK_PAUSE
  end
  return true
end

-- A call number as a limiter counts them: a whole number from 0, far from
-- where 1 more is the same number (2^53); else nil.
local function sane_count(v)
  v = tonumber(v)
  if v and v >= 0 and v < 2 ^ 50 and v % 1 == 0 then return v end
  return nil
end

-- Takes the next slot without waiting for it: returns the time (on clock)
-- the call may start, or nil and the wait that was needed when that would
-- be after deadline (then no number is taken: a number taken and not used
-- would hold back the call after it in its ring).
function Limiter:reserve(clock, deadline)
  local store = self.store
  -- a store that makes the whole reservation itself, in one step (Redis)
  if store.reserve then
    local now = clock.now()
    local ok, wait = store:reserve(self.seq_key, self.windows, MARGIN, now, deadline - now)
    -- the wait counts from the moment the store answered (on its clock):
    -- from now, the round trip later, never from before it
    if ok then return clock.now() + wait end
    if ok == false then return nil, wait end
    -- it could not (Redis is down): this host's share of the limits, kept
    -- in the store's local stand-in
    return self:local_limiter():reserve(clock, deadline)
  end
  local locked = self:lock(clock)
  local now = clock.now()
  local next_k = sane_count(store:get(self.seq_key))
  if not next_k then
    -- a number no limiter could have come to (another program, a corrupted
    -- store): numbering starts again, the slots keep their times
    store:set(self.seq_key, 0)
    next_k = 0
  end
  next_k = next_k + 1
  local start = self:compute(next_k, now)
  if start > deadline then
    if locked then store:delete(self.lock_key) end
    return nil, start - now
  end
  local k = sane_count(store:incr(self.seq_key, 1, 0)) -- nil: a store that cannot count
  if k and k ~= next_k then
    -- without the lock another caller came first: its number was looked at
    local prev
    start, prev = self:compute(k, now)
    if start > deadline then
      for i in ipairs(self.windows) do self:write(k, i, prev[i]) end -- handed on unused
      if locked then store:delete(self.lock_key) end
      return nil, start - now
    end
  end
  -- a store that cannot count (a full shared dict) does not hold calls back
  if k then
    for i in ipairs(self.windows) do self:write(k, i, start) end
  end
  if locked then store:delete(self.lock_key) end
  return start
end

-- The limiter of this host alone, while a shared store cannot be reached:
-- each of the store's share hosts keeps 1/share of every limit (at least
-- one call a window), so that together they stay under it.
function Limiter:local_limiter()
  if not self.fallback then
    local share, limits = self.store.share or 1, {}
    for _, win in ipairs(self.windows) do
      limits[win.w == 1 and "per_second" or "per_minute"] = max(1, math.floor(win.n / share))
    end
    self.fallback = M.limiter(limits, self.store.fallback, self.prefix)
  end
  return self.fallback
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
