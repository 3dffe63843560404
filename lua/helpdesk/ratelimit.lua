-- Client-side rate limits: per endpoint, one sliding-window log per limit,
-- so that no window of the limit's length, wherever it starts, holds more
-- requests than allowed (Feishu does not document how it counts).
local setmetatable, type, pairs, max = setmetatable, type, pairs, math.max

local M = {}

-- The documented limits; "list" has none documented ("special").
M.DEFAULTS = {
  ticket_message = { per_second = 50, per_minute = 1000 },
  bot_message = { per_minute = 100 },
  list = {},
}

local WINDOWS = { per_second = 1, per_minute = 60 }
-- Requests reach Feishu a little later than they leave here, and not all
-- equally late: a margin keeps a burst at a window's edge inside the limit.
local MARGIN = 0.02

local Window = {}
Window.__index = Window

local function new_window(limit, seconds)
  return setmetatable({ limit = limit, seconds = seconds, times = {}, head = 1 }, Window)
end

-- Seconds until one more request fits (0: now). times is a ring of the
-- last `limit` start times; head is the oldest of them.
function Window:wait(now)
  local oldest = self.times[self.head]
  if oldest == nil then return 0 end
  local w = oldest + self.seconds + MARGIN - now
  return w > 0 and w or 0
end

function Window:take(now)
  self.times[self.head] = now
  self.head = self.head % self.limit + 1
end

local Limiter = {}
Limiter.__index = Limiter

-- limits: { per_second = n, per_minute = n }, either may be absent.
function M.limiter(limits)
  local windows = {}
  for key, seconds in pairs(WINDOWS) do
    if limits[key] then windows[#windows + 1] = new_window(limits[key], seconds) end
  end
  if #windows == 0 then return nil end
  return setmetatable({ windows = windows }, Limiter)
end

-- Waits for a slot and takes it. Returns the seconds waited, or nil and the
-- wait that was needed when it would end after deadline.
function Limiter:acquire(clock, deadline)
  local waited = 0
  while true do
    local now = clock.now()
    local w = 0
    for i = 1, #self.windows do w = max(w, self.windows[i]:wait(now)) end
    if w == 0 then
      for i = 1, #self.windows do self.windows[i]:take(now) end
      return waited
    end
    if now + w > deadline then return nil, w end
    clock.sleep(w)
    waited = waited + w
  end
end

-- Checks the rate_limit option and returns { endpoint = limiter|nil } or
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
    out[name] = M.limiter(limits)
  end
  for name in pairs(opt or {}) do
    if not M.DEFAULTS[name] then return nil, "has an unknown endpoint " .. tostring(name) end
  end
  return out
end

return M
