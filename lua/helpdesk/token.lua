-- The tenant access token of one client: a fixed token used as given, or
-- one fetched with app_id + app_secret, cached and refreshed before expiry.
local setmetatable, min = setmetatable, math.min

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

-- opts: { fixed = "t-…" } or { fetch = function() -> token, expire | nil, err },
-- and now = a monotonic clock in seconds.
function M.new(opts)
  return setmetatable({ fixed = opts.fixed, fetch = opts.fetch, now = opts.now }, Token)
end

-- Can a token-invalid answer be cured by fetching a new token?
function Token:refreshable()
  return self.fixed == nil
end

-- Returns the token to use now, or nil and an error. arg goes to fetch.
function Token:get(arg)
  if self.fixed then return self.fixed end
  local now = self.now()
  if self.token and now < self.refresh_at then return self.token end
  local token, expire = self.fetch(arg)
  if not token then
    -- an early refresh that failed: the old token is still good for a while
    if self.token and now < self.expires_at then return self.token end
    return nil, expire
  end
  self.token = token
  self.expires_at = now + expire
  self.refresh_at = now + expire - margin(expire)
  return token
end

-- Forgets token if it is the cached one (not a newer one fetched since).
function Token:invalidate(token)
  if self.token == token then self.token = nil end
end

-- The secret strings an error message must never show.
function Token:secrets()
  return { self.fixed, self.token }
end

return M
