-- The reference model of the lifetime simulation (tools/life.lua), written
-- apart from the library from what Feishu and the README document: when a
-- call may start under the rate limits, when a tenant token must be fetched,
-- and what a call may return. It uses nothing of the library.
local M = {}

-- Feishu's documented limits (seed 001, seed 003): per endpoint, per window.
M.LIMITS = {
  ticket_message = { { n = 50, w = 1 }, { n = 1000, w = 60 } },
  bot_message = { { n = 100, w = 60 } },
  list = {},
}
-- What the README promises: a slot a little after the window (the margin),
-- a tenant token refreshed 5 minutes before its 2 hours are up.
M.MARGIN = 0.03
M.TOKEN_TTL = 7200
M.REFRESH_BEFORE = 300

local Model = {}
Model.__index = Model

function M.new()
  local m = setmetatable({ starts = {}, tokens = {}, refresh_pause = {}, fetches = 0 }, Model)
  -- long past requests, as many as the list holds at its shortest: its
  -- memory saws from the first day as it does later
  for name, wins in pairs(M.LIMITS) do
    local s = {}
    for _, win in ipairs(wins) do
      for i = #s + 1, win.n do s[i] = -math.huge end
    end
    m.starts[name] = s
  end
  return m
end

-- The earliest moment a call of endpoint arriving at a may start: first
-- come, first served, no window of w holding more than n requests.
function Model:earliest(endpoint, a)
  local s, t = self.starts[endpoint], a
  for _, win in ipairs(M.LIMITS[endpoint]) do
    local nth = s[#s - win.n + 1]
    if nth then t = math.max(t, nth + win.w) end
  end
  return t
end

-- A request of endpoint went out at t (first tries and retries alike: each
-- counts at Feishu). Only the latest n of the largest window matter: the
-- list is cut back to them whenever it doubles.
function Model:started(endpoint, t)
  local keep = 0
  for _, win in ipairs(M.LIMITS[endpoint]) do keep = math.max(keep, win.n) end
  if keep == 0 then return end
  local s = self.starts[endpoint]
  local j = #s
  while j > 0 and s[j] > t do j = j - 1 end
  table.insert(s, j + 1, t)
  if #s >= 2 * keep then
    local latest = {}
    for i = #s - keep + 1, #s do latest[#latest + 1] = s[i] end
    self.starts[endpoint] = latest
  end
end

-- A call at t by a client whose token lives in store (a name): returns true
-- when the client must fetch a token first (none yet, revoked, or within
-- the refresh margin of its expiry and past the pause after a failed early
-- refresh), and counts the fetch.
function Model:token_call(store, t)
  local fetched = self.tokens[store]
  if fetched and t < fetched + M.TOKEN_TTL - M.REFRESH_BEFORE then return false end
  local pause = self.refresh_pause[store]
  if fetched and pause and t < pause.next and t < fetched + M.TOKEN_TTL then return false end
  self.tokens[store] = t
  self.fetches = self.fetches + 1
  self.refresh_pause[store] = nil
  return true
end

-- A fetch that failed at t (the token endpoint hung): the old token, if
-- any, stays the store's. The next call tries again, but for an early
-- refresh (the old token still good) not before a pause of 5 s, doubling to
-- 60 s, at most half the old token's time left, at least a second.
function Model:token_failed(store, fetched_before, t, pause_before)
  self.tokens[store] = fetched_before
  self.fetches = self.fetches - 1
  local expires = fetched_before and fetched_before + M.TOKEN_TTL
  if expires and t < expires then
    local n = pause_before and pause_before.n or 0
    local wait = math.min(60, 5 * 2 ^ n, (expires - t) / 2)
    self.refresh_pause[store] = { next = t + math.max(1, wait), n = n + 1 }
  else
    self.refresh_pause[store] = pause_before
  end
end

-- Every token is revoked: each store's next call fetches.
function Model:revoke()
  self.tokens = {}
  self.refresh_pause = {}
end

-- Whether the result of a call is one the model allows. c: { ok =, err =,
-- method =, wait = the model's wait for its slot, budget =, excuse = the
-- fault in force, or nil }. Returns nil when allowed, else why not.
function M.judge(c)
  local err = c.err
  -- a slot at the budget's edge: refused and sent are both right
  local near = math.abs(c.wait - c.budget) <= 0.05
  if c.wait > c.budget + 0.05 then
    -- no slot within the budget: refused by the client, nothing sent
    if c.ok then return "sent although its slot was past the budget" end
    if err.kind ~= "rate_limit" or err.sent then return "past the budget, but not a rate_limit error" end
    return nil
  end
  if near and not c.ok and err.kind == "rate_limit" and not err.sent then return nil end
  if c.ok then return nil end
  if err.kind == "rate_limit" and c.wait < c.budget - 0.05 and c.excuse ~= "429" then
    return "refused a slot the limits allow within the budget"
  end
  local allowed = {
    ["429"] = function()
      return (err.kind == "api" or err.kind == "http" or err.kind == "rate_limit") and not err.sent
    end,
    ["5xx"] = function() return err.kind == "api" or err.kind == "http" end,
    drop = function() return err.kind == "transport" and err.sent end,
    token_hang = function() return err.token and not err.sent end,
  }
  local rule = c.excuse and allowed[c.excuse]
  if rule and rule() then return nil end
  return "failed with no fault to excuse it"
end

return M
