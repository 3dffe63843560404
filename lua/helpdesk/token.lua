-- The tenant access token of one client: a fixed token used as given, or
-- one fetched with app_id + app_secret, cached and refreshed before expiry.
local errors = require "helpdesk.errors"
local core = require "helpdesk.core"
local MIN_SECRET = require("helpdesk.validate").MIN_SECRET

local setmetatable, type, tonumber, tostring, pcall = setmetatable, type, tonumber, tostring, pcall
local min, max, format, running, costatus = math.min, math.max, string.format, coroutine.running, coroutine.status

local M = {}

-- The longest token taken (Feishu's are some 40 bytes): one longer would
-- be refused with its whole request by any server's header limit (nginx's
-- 8 KB), which no token-invalid answer would cure.
M.MAX_LENGTH = 2048

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

-- After an early refresh failed, the next try waits this long (doubling
-- from the first, at most the second), but no longer than half the old
-- token's time left, and at least a second.
local BACKOFF_FIRST, BACKOFF_MAX = 5, 60

-- A batch may go on with a token this close to expiry, rather than stall its
-- transfers in flight for a fetch.
local PEEK_SAFETY = 30

-- The fetches under way in this Lua state, by the value of the lock each
-- holds: the coroutine that holds it. Waiting on it from the same coroutine
-- (a logger calling back in) or with a sleep that blocks the whole state
-- would never end. Weak values: an abandoned coroutine (a cancelled task)
-- goes with what it holds, and its lock is then known for one nobody will
-- let go. By the lock's value, not the store: two store objects over one
-- place (two clients' views of one Redis) hold one lock.
local live = setmetatable({}, { __mode = "v" })
local MAIN = {} -- coroutine.running() of the main thread on Lua 5.1

-- The mark of this process and Lua state, which the value of every lock it
-- takes begins with; drawn anew in a new process (nginx's workers fork from
-- a master that may have drawn it).
local own_mark, own_pid, serial = nil, nil, 0
local function mark()
  local pid = core.pid()
  if pid ~= own_pid then
    own_mark = (core.random(12):gsub(".", function(ch) return format("%02x", ch:byte()) end)) .. "-" .. pid .. "."
    own_pid = pid
  end
  return own_mark
end

-- A lock value of this state's, never given before.
local function lock_value()
  serial = serial + 1
  return mark() .. serial
end

-- Who holds the lock whose value is v: the coroutine of this state; false
-- when v is this state's but its fetch is over with no one left to let it
-- go (its coroutine collected, or, out of nginx, whose coroutine.status
-- knows only the request's own, dead); nil when v is not this state's.
local function holder_of(v)
  if type(v) ~= "string" then return nil end
  local m = mark()
  if v:sub(1, #m) ~= m then return nil end
  local co = live[v]
  if co == nil then return false end
  if co ~= MAIN and not rawget(_G, "ngx") and costatus(co) == "dead" then return false end
  return co
end

-- For claims of the same kind elsewhere (the events receiver's runs): a
-- value of this state's never given before, and whether v is one.
M.lock_value = lock_value
function M.own(v)
  if type(v) ~= "string" then return false end
  local m = mark()
  return v:sub(1, #m) == m
end

local Token = {}
Token.__index = Token

-- opts: { fixed = "t-…" } or { fetch = function(arg) -> token, expire | nil, err,
-- store = helpdesk.store, key = where in the store }, now = a monotonic clock
-- in seconds (system-wide, so that workers can share its times), sleep, and
-- yields = function() -> whether sleep lets other coroutines run; memo:
-- seconds (on the clock memo_now) to keep using a token read from a remote
-- store (Redis) before reading it again, which saves a round trip a call.
function M.new(opts)
  return setmetatable({ fixed = opts.fixed, fetch = opts.fetch, now = opts.now, sleep = opts.sleep,
                        yields = opts.yields, store = opts.store, key = opts.key, recent = {},
                        memo = opts.memo, memo_now = opts.memo_now,
                        lock = opts.key and opts.key .. ":lock", retry_key = opts.key and opts.key .. ":retry" },
                      Token)
end

-- An error of the token's own (not of the fetch): nothing was sent.
local function token_error(msg)
  return errors.new("transport", { msg = msg, sent = false, token = true })
end

-- Can a token-invalid answer be cured by fetching a new token?
function Token:refreshable()
  return self.fixed == nil
end

-- The cached token as { token, refresh_at, expires_at }, or nil.
function Token:cached()
  if self.memo_until and self.memo_now() < self.memo_until then return self.parsed end
  local v = self.store:get(self.key)
  if type(v) ~= "string" then return nil end
  if v == self.raw then -- parsed once, not on every call
    if self.memo then self.memo_until = self.memo_now() + self.memo end
    return self.parsed
  end
  local refresh_at, expires_at, tok = v:match("^(%S+) (%S+) (.+)$")
  refresh_at, expires_at = tonumber(refresh_at), tonumber(expires_at)
  -- what another process sharing the store wrote may be anything: a token
  -- as a fetch would refuse it (CR or LF, which no header may hold, too
  -- short to keep out of messages, too long for any header) would fail
  -- every call until it expired, so it is none, and the fetch replaces it
  if not (tok and refresh_at and expires_at) or #tok < MIN_SECRET or #tok > M.MAX_LENGTH
     or tok:find("[\r\n%z]") then
    return nil
  end
  self.raw, self.parsed = v, { token = tok, refresh_at = refresh_at, expires_at = expires_at }
  if self.memo then self.memo_until = self.memo_now() + self.memo end
  return self.parsed
end

-- When the next early refresh may be tried, after one failed (or nil).
function Token:next_try()
  local v = self.store:get(self.retry_key)
  if type(v) ~= "string" then return nil, 0 end
  local at, failures = v:match("^(%S+) (%d+)$")
  return tonumber(at), tonumber(failures) or 0
end

-- Fetches a token and caches it; the caller holds the lock.
function Token:refresh(arg, old)
  local token, expire = self.fetch(arg)
  local now = self.now()
  if token then
    self.memo_until = nil
    self.store:set(self.key, format("%.3f %.3f %s", now + expire - margin(expire), now + expire, token),
                   expire)
    self.store:delete(self.retry_key)
    return token
  end
  -- an early refresh that failed: the old token is still good for a while,
  -- and the next try waits (every call trying would cost each its timeout)
  if old and now < old.expires_at then
    local _, failures = self:next_try()
    local wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ^ min(failures, 10), (old.expires_at - now) / 2)
    self.store:set(self.retry_key, format("%.3f %d", now + max(1, wait), failures + 1), old.expires_at - now)
    return old.token
  end
  return nil, expire
end

-- Lets the lock go if it still holds value: one that outlived its
-- time-to-live (a host paused mid-fetch) may be another fetch's by now, and
-- deleting that would let a third fetch start. In one step where the store
-- can (Redis: a script); a table store is one Lua state, where reading and
-- deleting are one step anyway.
local function release(store, key, value)
  if store.delete_if then return store:delete_if(key, value) end
  if store:get(key) == value then store:delete(key) end
end

-- Runs the fetch with the lock held and lets it go whatever happens: a fetch
-- that raised (a store that failed, say) must not hold it for its lifetime.
function Token:locked_refresh(arg, old, co, value)
  live[value] = co
  local ok, tok, err = pcall(self.refresh, self, arg, old)
  -- the lock first: while it is held, the entry says by whom
  pcall(release, self.store, self.lock, value)
  live[value] = nil
  if not ok then
    return nil, token_error("fetching the tenant token failed, so nothing was sent: " .. tostring(tok))
  end
  return tok, err
end

-- The tokens this client used last: an answer to a request made with one
-- (a batch's, in flight when another took its place) may quote it.
local RECENT = 4

-- Notes tok as used (a secret errors must not show), and returns it.
function Token:used(tok)
  local recent = self.recent
  if recent[1] ~= tok then
    -- to the front, once: tokens that come round again push no other out
    local at = #recent + 1
    for i = 2, #recent do
      if recent[i] == tok then at = i break end
    end
    for i = min(at, RECENT) - 1, 1, -1 do recent[i + 1] = recent[i] end
    recent[1] = tok
  end
  return tok
end

-- Returns the token to use now, or nil and an error. arg goes to fetch, and
-- its timeout bounds the wait for another worker's fetch.
function Token:get(arg)
  if self.fixed then return self.fixed end
  local waited, pause = 0, 0.005
  -- the time gone on a clock finer than the token's (os.time with Redis)
  local elapsed = self.memo_now or self.now
  local t0 = elapsed()
  -- the lock outlives a fetch that takes its whole timeout, never for ever;
  -- a wait for another's fetch takes no more than this call's own would
  local timeout = max(arg and arg.timeout or 30, 0)
  local limit = timeout + 1
  local co = running() or MAIN
  local value = lock_value()
  local let_go
  while true do
    local now = self.now()
    local c = self:cached()
    if c and now < c.refresh_at then
      return self:used(c.token)
    end
    -- in the refresh window after a failed refresh: not again before its time
    if c and now < c.expires_at then
      local at = self:next_try()
      if at and now < at then
        return self:used(c.token)
      end
    end
    -- one fetch at a time, across every worker that shares the store; a
    -- store that cannot take the lock at all (full, failing) lets it go ahead
    local locked, why = self.store:add(self.lock, value, limit)
    if locked or (why ~= nil and why ~= "exists") then
      local tok, err = self:locked_refresh(arg, c, co, value)
      if tok then self:used(tok) end
      return tok, err
    end
    -- someone else is fetching: an old token that still works is good enough
    if c and now < c.expires_at then
      return self:used(c.token)
    end
    local held = self.store:get(self.lock)
    local holder = holder_of(held)
    if holder == nil and type(held) == "string" and not held:match("^%x+%-%d+%.%d+$") then
      -- no fetch's lock (lock_value's shape) but what another program
      -- wrote, maybe with no time-to-live: none to wait for, let go as one
      -- abandoned, or every call would wait out its timeout and fail
      holder = false
    end
    if holder == false and not let_go then
      let_go = true -- once: a store that fails to delete must not spin here
      -- a fetch of this state abandoned mid-way: nobody else will let its
      -- lock go, so this call does (that lock, not one taken since), and
      -- takes it on the next turn
      release(self.store, self.lock, held)
    elseif holder and (holder == co or not self.yields()) then
      return nil, token_error("the tenant token is being fetched by a call under way in this Lua state "
        .. "(one whose logger calls back in, or a coroutine it let run), which cannot go on while this one "
        .. "waits; nothing was sent")
    elseif waited >= timeout then
      return nil, token_error("timed out waiting for another fetch of the tenant token; nothing was sent")
    else
      self.sleep(pause)
      -- the pauses, or the time gone if more: the store's round trips count
      -- (a slow Redis, each turn up to its timeout twice)
      waited = max(waited + pause, elapsed() - t0)
      pause = min(pause * 2, 0.05)
    end
  end
end

-- A token a batch can use without fetching one (which would stall its
-- transfers in flight), or nil.
function Token:peek()
  if self.fixed then return self.fixed end
  local c, now = self:cached(), self.now()
  if c and (now < c.refresh_at or now < c.expires_at - PEEK_SAFETY) then return self:used(c.token) end
end

-- Forgets token if it is the cached one (not a newer one fetched since).
function Token:invalidate(token)
  -- what the store holds now: another host may have replaced it already
  self.memo_until = nil
  local c = self:cached()
  self.memo_until = nil -- and the next call reads it again too
  if c and c.token == token then self.store:delete(self.key) end
end

-- The secret strings an error message must never show.
function Token:secrets()
  -- a list without holes: the caller appends to it and walks it with #
  local out = {}
  if self.fixed then out[#out + 1] = self.fixed end
  for i = 1, #self.recent do out[#out + 1] = self.recent[i] end
  return out
end

return M
