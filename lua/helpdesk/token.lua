-- The tenant access token of one client: a fixed token used as given, or
-- one fetched with app_id + app_secret, cached and refreshed before expiry.
local errors = require "helpdesk.errors"

local setmetatable, type, tonumber, min, format = setmetatable, type, tonumber, math.min, string.format

local M = {}

-- Token-invalid answers: drop the cached token, fetch anew, retry once.
M.INVALID_CODES = {
  [99991661] = true, [99991663] = true, [99991664] = true,
  [99991668] = true, [99991671] = true,
}

-- Refresh this long before expiry: 5 minutes (the official SDKs use 3 to 10),
-- or a quarter of a short lifetime.
local function margin(expire)
  return min(300, expire / 4)
end

local Token = {}
Token.__index = Token

-- opts: { fixed = "t-…" } or { fetch = function(arg) -> token, expire | nil, err,
-- store = helpdesk.store, key = where in the store }, now = a monotonic clock
-- in seconds (system-wide, so that workers can share its times) and sleep.
function M.new(opts)
  return setmetatable({ fixed = opts.fixed, fetch = opts.fetch, now = opts.now, sleep = opts.sleep,
                        store = opts.store, key = opts.key, lock = opts.key and opts.key .. ":lock" }, Token)
end

-- Can a token-invalid answer be cured by fetching a new token?
function Token:refreshable()
  return self.fixed == nil
end

-- The cached token as { token, refresh_at, expires_at }, or nil.
function Token:cached()
  local v = self.store:get(self.key)
  if type(v) ~= "string" then return nil end
  if v == self.raw then return self.parsed end -- parsed once, not on every call
  local refresh_at, expires_at, tok = v:match("^(%S+) (%S+) (.+)$")
  if not tok then return nil end
  self.raw, self.parsed = v, { token = tok, refresh_at = tonumber(refresh_at), expires_at = tonumber(expires_at) }
  return self.parsed
end

-- Fetches a token and caches it; the caller holds the lock.
function Token:refresh(arg, old)
  local token, expire = self.fetch(arg)
  local now = self.now()
  if token then
    self.store:set(self.key, format("%.3f %.3f %s", now + expire - margin(expire), now + expire, token),
                   expire)
  end
  self.store:delete(self.lock)
  if not token then
    -- an early refresh that failed: the old token is still good for a while
    if old and now < old.expires_at then return old.token end
    return nil, expire
  end
  return token
end

-- Returns the token to use now, or nil and an error. arg goes to fetch, and
-- its timeout bounds the wait for another worker's fetch.
function Token:get(arg)
  if self.fixed then return self.fixed end
  local waited, pause = 0, 0.005
  local limit = (arg and arg.timeout or 30) + 1
  while true do
    local now = self.now()
    local c = self:cached()
    if c and now < c.refresh_at then
      self.token = c.token
      return c.token
    end
    -- one fetch at a time, across every worker that shares the store
    if self.store:add(self.lock, 1, limit) then
      local tok, err = self:refresh(arg, c)
      self.token = tok or self.token
      return tok, err
    end
    -- someone else is fetching: an old token that still works is good enough
    if c and now < c.expires_at then
      self.token = c.token
      return c.token
    end
    if waited >= limit then
      return nil, errors.new("transport", { msg = "timed out waiting for another fetch of the tenant token" })
    end
    self.sleep(pause)
    waited = waited + pause
    pause = min(pause * 2, 0.05)
  end
end

-- Forgets token if it is the cached one (not a newer one fetched since).
function Token:invalidate(token)
  local c = self:cached()
  if c and c.token == token then self.store:delete(self.key) end
end

-- The secret strings an error message must never show.
function Token:secrets()
  -- a list without holes: the caller appends to it and walks it with #
  local out = {}
  if self.fixed then out[#out + 1] = self.fixed end
  if self.token then out[#out + 1] = self.token end
  return out
end

return M
