-- Where the tenant token and the rate-limit slots live: a Lua table of the
-- client's own, or, inside nginx, a lua_shared_dict that every worker sees
-- (so that all workers share one token and one budget). Both answer the
-- calls of ngx.shared.DICT that the token cache and the limiter use:
-- get, set, add, delete, incr. Times-to-live are in seconds; 0 or nil is none.
local setmetatable, type, pcall, next = setmetatable, type, pcall, next

local M = {}

local Table = {}
Table.__index = Table

-- A table of n keys is swept of its expired entries once it holds twice the
-- keys it held after the last sweep (and at least this many): a sweep walks
-- the whole table, so each set pays for it a constant share.
local SWEEP_MIN = 64

-- now: the clock the times-to-live are counted on.
function M.table(now)
  return setmetatable({ now = now, values = {}, expiry = {}, count = 0, sweep_at = SWEEP_MIN }, Table)
end

-- Forgets key, keeping the count of keys.
local function drop(self, key)
  if self.values[key] ~= nil then self.count = self.count - 1 end
  self.values[key], self.expiry[key] = nil, nil
end

-- Drops every expired entry: entries whose keys are never read again would
-- otherwise stay for ever (a receiver's event ids, one per event).
local function sweep(self)
  local now = self.now()
  for key, exp in next, self.expiry do
    if exp <= now then drop(self, key) end
  end
  self.sweep_at = self.count * 2
  if self.sweep_at < SWEEP_MIN then self.sweep_at = SWEEP_MIN end
end

-- Sets key to value, counting a new key (and sweeping when due).
local function put(self, key, value)
  if self.values[key] == nil then
    self.count = self.count + 1
    if self.count >= self.sweep_at then
      self.values[key] = value -- counted: the sweep keeps it
      sweep(self)
      return
    end
  end
  self.values[key] = value
end

function Table:get(key)
  local exp = self.expiry[key]
  if exp and exp <= self.now() then drop(self, key) end
  return self.values[key]
end

function Table:set(key, value, ttl)
  if value == nil then
    drop(self, key)
    return true
  end
  self.expiry[key] = ttl and ttl > 0 and self.now() + ttl or nil
  put(self, key, value)
  return true
end

-- Sets key only if it holds nothing: the lock of a token fetch.
function Table:add(key, value, ttl)
  if self:get(key) ~= nil then return false, "exists" end
  return self:set(key, value, ttl)
end

function Table:delete(key)
  drop(self, key)
end

function Table:incr(key, by, init)
  local v = self:get(key)
  if v == nil then
    if init == nil then return nil, "not found" end
    v = init
  end
  v = v + by
  put(self, key, v)
  return v
end

-- A store given by the caller, made safe to lean on: a method that raises
-- answers as a full shared dict does (nothing, false), never the raise,
-- and get gives one value (a shared dict's get may add an error message,
-- which tonumber would take for a base).
-- The store is held weakly: its client holds it, for a caller's store may
-- well refer back to its client, and what the client keeps out of sight
-- must not (Lua 5.1 and LuaJIT have no ephemerons).
function M.guarded(st)
  local ref = setmetatable({ st }, { __mode = "v" })
  -- the lookup too: a store whose __index raises (a closed connection)
  local function method(s, name, ...) return s[name](s, ...) end
  local function call(name, ...)
    local s = ref[1]
    if s == nil then return nil end -- gone with its client
    local ok, a, b = pcall(method, s, name, ...)
    if ok then return a, b end
    return nil
  end
  return {
    get = function(_, key) return (call("get", key)) end,
    set = function(_, key, value, ttl) return (call("set", key, value, ttl)) or false end,
    add = function(_, key, value, ttl)
      if ref[1] == nil then return false, "failed" end
      local a, why = call("add", key, value, ttl)
      if a == nil and why == nil then return false, "failed" end -- it raised
      return a and true or false, why
    end,
    delete = function(_, key) call("delete", key) end,
    incr = function(_, key, by, init)
      local v = call("incr", key, by, init)
      -- a count, or nothing
      if type(v) == "number" and v == v and v % 1 == 0 then return v end
      return nil
    end,
  }
end

-- The lua_shared_dict named name, or nil if nginx has none of that name.
function M.shared(name)
  local ngx = rawget(_G, "ngx")
  local dict = type(ngx) == "table" and type(ngx.shared) == "table" and ngx.shared[name] or nil
  return dict
end

return M
