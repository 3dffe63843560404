--- A store in Redis, shared by every host of an app: the tenant token (one
-- fetch across all of them, under a lock taken with `SET NX PX`) and the
-- rate limiter's rings, reserved in one server-side script per call. Made
-- by the client from the option `store = { redis = "redis://…" }`.
-- Plain Lua talks to Redis through hiredis in the C core (blocking, within
-- the store's timeout); inside nginx through cosockets (Debian's
-- lua-nginx-redis, `resty.redis`), with its connection pool.
-- When Redis fails, the store answers from a local one (a table, or the
-- shared dict in nginx) and tries Redis again after a pause that doubles
-- (from 0.5 s to 30 s): see @{helpdesk.redis_store.new}.
-- @module helpdesk.redis_store
local errors = require "helpdesk.errors"

local type, tostring, tonumber, setmetatable, pcall, format, floor, ceil, min, rawget =
  type, tostring, tonumber, setmetatable, pcall, string.format, math.floor, math.ceil, math.min, rawget
local unpack = table.unpack or unpack

local M = {}

M.DEFAULT_PREFIX = ""
M.DEFAULT_TIMEOUT = 0.2
local BACKOFF_FIRST, BACKOFF_MAX = 0.5, 30

local USAGE = "must be redis://[[user]:password@]host[:port][/db] or rediss:// (TLS) "
  .. "(host a name or an IPv4 address, db 0 to 15)"

-- Parses a redis:// URL into { host =, port =, db =, password =, user = },
-- or nil and the reason. The reason never holds the URL (it may hold a
-- password). A user is an ACL user (Redis 6 and later: AUTH user password).
function M.parse_url(url)
  if type(url) ~= "string" then return nil, USAGE end
  if url:find("[%c%s]") then return nil, USAGE end
  local scheme, rest = url:match("^(rediss?)://(.*)$")
  if not rest then return nil, USAGE end
  local password, user
  -- the password runs to the last "@": it may hold "@" itself, never "/"
  local auth, hostpart = rest:match("^([^/]*)@([^@/]*.*)$")
  if auth then
    local name, pw = auth:match("^([^:]*):(.*)$")
    if not name or pw == "" or not name:match("^[%w%-_%.]*$") then
      return nil, USAGE .. "; a password goes after a colon, after the user's name or none"
    end
    if name ~= "" then user = name end
    -- one that short could not be kept out of messages (as app_secret)
    if #pw < require("helpdesk.validate").MIN_SECRET then
      return nil, "has a password shorter than " .. require("helpdesk.validate").MIN_SECRET
        .. " bytes, which could not be kept out of messages"
    end
    password, rest = pw, hostpart
  end
  local host, port, db = rest:match("^([%w%.%-]+):?(%d*)/?(%d*)$")
  if not host or host == "" or host:match("^%.") or host:match("%-$") then return nil, USAGE end
  if rest:match("/$") then return nil, USAGE end
  port = port ~= "" and tonumber(port) or 6379
  db = db ~= "" and tonumber(db) or 0
  if rest:match(":$") or port < 1 or port > 65535 or db > 15 then return nil, USAGE end
  return { host = host, port = port, db = db, password = password, user = user, tls = scheme == "rediss" or nil }
end

-- The reservation of the limiter (helpdesk.ratelimit), whole, in Redis:
-- take the next call number k, read the start of call k-n in each ring,
-- and, if k may start within max_wait, write k's start into its slots and
-- keep the number. Returns { 1, wait } or { 0, need }, as strings (Redis
-- turns a Lua number into an integer).
-- KEYS[1]: the sequence; ARGV: now ("" = Redis's own clock, the one clock
-- every host shares), max_wait, margin, then n and the ring's key prefix
-- and w for each window. The rings' keys are made here (a ring is n keys):
-- standalone Redis or a replica set, not Redis Cluster.
M.RESERVE = [[
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1e6
else
  now = tonumber(ARGV[1])
end
local max_wait, margin = tonumber(ARGV[2]), tonumber(ARGV[3])
-- a key of another type (a hash) is garbage, as a string no number is: the
-- SETs below put strings in their place
local function get(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'string' then return v end
  return false -- a value: Redis's tonumber() raises on none
end
-- a count no limiter could have come to (NaN, infinite, negative, a
-- fraction, past 2^50 where 1 more is the same number) starts the numbering
-- again, as ratelimit's sane_count: else every call would go unchecked
local k = tonumber(get(KEYS[1]))
if not (k and k >= 0 and k < 2 ^ 50 and k % 1 == 0) then k = 0 end
k = k + 1
local start = now
local wins = {}
for i = 4, #ARGV, 3 do
  local n, key, w = tonumber(ARGV[i]), ARGV[i + 1], tonumber(ARGV[i + 2])
  local prev = -1e15
  -- read even when k <= n: numbering started again (a lost count) keeps
  -- the starts its ring holds, which a window must still count
  local v = get(key .. (k % n))
  local t = v and tonumber(string.match(v, '^%d+ (%S+)$'))
  -- further ahead than any call may wait (ratelimit's MAX_AHEAD: a day's
  -- budget and the window), or NaN: never a limiter's, counts as none
  if t and t <= now + 86460 then prev = t end
  if prev + w + margin > start then start = prev + w + margin end
  wins[#wins + 1] = { n, key }
end
if start - now > max_wait then return { 0, string.format('%.6f', start - now) } end
redis.call('SET', KEYS[1], k)
for _, win in ipairs(wins) do
  redis.call('SET', win[2] .. (k % win[1]), string.format('%d %.6f', k, start))
end
return { 1, string.format('%.6f', start - now) }
]]

-- incr as a lua_shared_dict's: a key that holds nothing starts at init,
-- or the answer is nothing when there is no init.
local INCR = [[
local v = redis.call('GET', KEYS[1])
if not v then
  if ARGV[2] == '' then return false end
  v = ARGV[2]
end
v = tonumber(v)
if not v then return false end
v = v + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.17g', v), 'KEEPTTL')
return string.format('%.17g', v)
]]

-- --- the connections: command(...) -> reply | nil, msg, "redis" | "io"

-- Plain Lua: one hiredis connection of the store's own, made when first
-- needed and again after it failed.
local Plain = {}
Plain.__index = Plain

local function plain_backend(cfg)
  return setmetatable({ cfg = cfg }, Plain)
end

function Plain:connect()
  local core = require "helpdesk.core"
  local cfg = self.cfg
  local conn, err = core.redis_connect(cfg.host, cfg.port, cfg.timeout,
                                       cfg.tls and { verify = not cfg.insecure, ca_file = cfg.ca_file } or nil)
  if not conn then return nil, err end
  if cfg.auth then
    local ok, aerr = conn:command("AUTH", unpack(cfg.auth))
    if not ok then
      conn:close()
      return nil, "AUTH failed: " .. tostring(aerr)
    end
  end
  if cfg.db ~= 0 then
    local ok, serr = conn:command("SELECT", cfg.db)
    if not ok then
      conn:close()
      return nil, "SELECT " .. cfg.db .. " failed: " .. tostring(serr)
    end
  end
  self.conn, self.pid = conn, core.pid()
  return conn
end

function Plain:command(...)
  local conn = self.conn
  if conn and self.pid ~= require("helpdesk.core").pid() then
    -- made before a fork: the parent's socket too, whose replies would go
    -- to whichever process reads first (closing it here leaves the parent's)
    conn:close()
    conn, self.conn = nil, nil
  end
  local res, err, how
  if not (conn and conn:is_open()) then
    conn, err = self:connect()
    if not conn then res, how = nil, "io" end
  end
  if conn then
    res, err, how = conn:command(...)
    if res == nil and how ~= "redis" then self.conn = nil end
  end
  -- hiredis (and the core's TLS) say EAGAIN's words when the timeout ran
  -- out, connecting as in a command
  if res == nil and how ~= "redis" and err == "Resource temporarily unavailable" then
    err = format("no answer within %g s (store.timeout)", self.cfg.timeout)
  end
  return res, err, how
end

function Plain:close()
  if self.conn then self.conn:close() end
  self.conn = nil
end

-- Inside nginx: resty.redis over a cosocket, taken from and given back to
-- nginx's pool for each command (one pool per server, db and password).
local Nginx = {}
Nginx.__index = Nginx

local function nginx_backend(cfg, resty_redis)
  local core = require "helpdesk.core"
  -- the pool's name tells servers, dbs and passwords apart without showing one
  local id = core.base64(core.sha256(cfg.user or "", "\0", cfg.password or "", "\0", tostring(cfg.db), "\0",
                                     cfg.tls and (cfg.insecure and "tls-any" or "tls") or "")):sub(1, 16)
  return setmetatable({ cfg = cfg, redis = resty_redis,
                        pool = format("helpdesk:%s:%d:%s", cfg.host, cfg.port, id) }, Nginx)
end

function Nginx:command(name, ...)
  local cfg = self.cfg
  local red, err = self.redis:new()
  if not red then return nil, err, "io" end
  red:set_timeout(ceil(cfg.timeout * 1000))
  local ok
  ok, err = red:connect(cfg.host, cfg.port, { pool = self.pool })
  if not ok then return nil, err, "io" end
  if (red:get_reused_times() or 0) == 0 then
    if cfg.tls then
      -- resty.redis 0.27 (Debian's) has no TLS option: the cosocket under
      -- it does. Checked against lua_ssl_trusted_certificate, and the host
      -- always given: without a server name nginx checks none, and any
      -- certificate of a trusted CA (any public one's, with the system's)
      -- would pass for an IP address. nginx checks an IP address as a name
      -- (X509_check_host): the certificate must hold it as its CN or a DNS
      -- name, not only as an IP address
      local sock = rawget(red, "_sock")
      local server_name = cfg.host
      -- a session asked for (nil, not false): resty.core reads the
      -- verification's result only then; it raises (an assertion) on some
      -- failed ones, whose reason nginx writes to its error log
      local done, res, why = pcall(sock.sslhandshake, sock, nil, server_name, not cfg.insecure)
      if not (done and res) then
        red:close()
        return nil, "TLS: " .. (done and tostring(why) or "the handshake failed (see nginx's error log)"), "io"
      end
    end
    if cfg.auth then
      ok, err = red:auth(unpack(cfg.auth))
      if not ok then
        red:close()
        return nil, "AUTH failed: " .. tostring(err), "io"
      end
    end
    if cfg.db ~= 0 then
      ok, err = red:select(cfg.db)
      if not ok then
        red:close()
        return nil, "SELECT failed: " .. tostring(err), "io"
      end
    end
  end
  local res
  res, err = red[name:lower()](red, ...)
  if res == nil then
    red:close()
    return nil, err, "io"
  end
  red:set_keepalive(60000, 64)
  if res == false then return nil, err, "redis" end
  local null = rawget(_G, "ngx").null
  if res == null then return false end
  if type(res) == "table" then
    for i = 1, #res do
      if res[i] == null then res[i] = false end
    end
  end
  return res
end

-- the connections go back to nginx's pool after each command
function Nginx.close() end

-- --- the store

local Store = {}
Store.__index = Store

function Store.__tostring(s)
  -- never the password
  return format("helpdesk.redis_store (%s%s:%d/%d, prefix %s)", s.cfg.tls and "tls " or "", s.cfg.host, s.cfg.port,
                s.cfg.db, s.prefix)
end

--- Makes a Redis store. Does not connect: the first call does.
-- @tab opts `redis` (`"redis://[[user]:password@]host[:port][/db]"`, or
-- `rediss://` for TLS, required), `prefix` (`"helpdesk:"`), `timeout`
-- (seconds, `0.2`: connect and each command), with `rediss://` `ca_file`
-- (PEM certificates the server's must chain to; the system's by default;
-- inside nginx, `lua_ssl_trusted_certificate`) and `insecure = true` (any
-- certificate taken), and from the client: `fallback` (the local store used while
-- Redis fails), `on_event` (called with `store_fallback` and
-- `store_recovered` events), `now` (the clock of the backoff); and for the
-- limiter's property specs `caller_clock = true` (reservations on the
-- caller's clock, which may jump, instead of Redis's `TIME`)
-- @return the store, or `nil` and an `invalid` error on `store.redis`,
-- `store.prefix` or `store.timeout` (never showing the password)
function M.new(opts)
  if type(opts) ~= "table" then return nil, errors.invalid("store", "must be a table") end
  for k in pairs(opts) do
    if k ~= "redis" and k ~= "prefix" and k ~= "timeout" and k ~= "ca_file" and k ~= "insecure"
       and k ~= "fallback" and k ~= "on_event" and k ~= "now" and k ~= "caller_clock" then
      return nil, errors.invalid("store", "has an unknown field " .. tostring(k)
        .. " (a Redis store takes redis, prefix, timeout, ca_file and insecure)")
    end
  end
  local cfg, why = M.parse_url(opts.redis)
  if not cfg then return nil, errors.invalid("store.redis", why) end
  -- TLS's settings, for rediss:// only: given with redis:// they would
  -- read as protection there is not
  for _, k in ipairs({ "ca_file", "insecure" }) do
    if opts[k] ~= nil and not cfg.tls then
      return nil, errors.invalid("store." .. k, "is for TLS: the URL must be rediss://")
    end
  end
  if opts.ca_file ~= nil then
    if type(opts.ca_file) ~= "string" or opts.ca_file == "" or opts.ca_file:find("%z") then
      return nil, errors.invalid("store.ca_file", "must be the path of a file of PEM certificates")
    end
    -- a directory opens, and reads nothing, as an empty file does
    local f = io.open(opts.ca_file, "rb")
    local first = f and f:read(1)
    if f then f:close() end
    if not first then return nil, errors.invalid("store.ca_file", "cannot be read, or is empty") end
    cfg.ca_file = opts.ca_file
  end
  if opts.insecure ~= nil and type(opts.insecure) ~= "boolean" then
    return nil, errors.invalid("store.insecure", "must be a boolean (true: any certificate is taken)")
  end
  cfg.insecure = opts.insecure == true
  -- AUTH's arguments: an ACL user's name and password, or the password
  cfg.auth = cfg.password and (cfg.user and { cfg.user, cfg.password } or { cfg.password })
  local prefix = opts.prefix
  if prefix == nil then prefix = M.DEFAULT_PREFIX end
  if type(prefix) ~= "string" or #prefix > 200 or prefix:find("[%c%s]") then
    return nil, errors.invalid("store.prefix", "must be a string of at most 200 characters without spaces")
  end
  local timeout = opts.timeout
  if timeout == nil then timeout = M.DEFAULT_TIMEOUT end
  if type(timeout) ~= "number" or not (timeout >= 0.001 and timeout <= 60) then
    return nil, errors.invalid("store.timeout", "must be a number of seconds from 0.001 to 60")
  end
  cfg.timeout = timeout
  local now = opts.now or require("helpdesk.clock").now
  local fallback = opts.fallback or require("helpdesk.store").table(now)
  local s = setmetatable({
    cfg = cfg, prefix = prefix, now = now, fallback = fallback, on_event = opts.on_event,
    -- the limiter's reservations on the caller's clock, not Redis's: for
    -- the property specs, whose clock jumps
    caller_clock = opts.caller_clock == true,
    backoff = 0, retry_at = nil,
  }, Store)
  return s
end

-- The secret strings an error must never show: the password.
function Store:secrets()
  return { self.cfg.password }
end

-- The connection for here and now: a cosocket where nginx lets one run.
function Store:backend()
  if self.closed then return nil end
  local ngx = rawget(_G, "ngx")
  if type(ngx) == "table" and type(ngx.get_phase) == "function" then
    local phase = ngx.get_phase()
    if phase == "rewrite" or phase == "access" or phase == "content" or phase == "timer"
       or phase == "ssl_cert" or phase == "ssl_session_fetch" then
      if not self.nginx then
        local ok, resty_redis = pcall(require, "nginx.redis")
        if not ok then ok, resty_redis = pcall(require, "resty.redis") end
        if not ok then return nil end
        self.nginx = nginx_backend(self.cfg, resty_redis)
      end
      return self.nginx
    end
    -- init_worker, log, header_filter…: no cosockets; the local store
    return nil
  end
  if not self.plain then self.plain = plain_backend(self.cfg) end
  return self.plain
end

local function emit(self, event)
  local f = self.on_event
  if f then pcall(f, event) end
end

-- Runs a command on Redis, unless Redis failed lately (then nothing, at
-- once). Returns the reply, or nil and "redis" / "down".
function Store:call(...)
  if self.retry_at and self.now() < self.retry_at then return nil, "down" end
  local b = self:backend()
  if not b then return nil, "down" end
  local okc, res, err, how = pcall(b.command, b, ...)
  if not okc then res, err, how = nil, res, "io" end
  -- an error reply fails the store as a lost connection does: a replica
  -- (READONLY), a user short of a right (NOPERM), a full Redis (OOM) would
  -- otherwise cost a token fetch a call, quietly; but NOSCRIPT asks for
  -- the script, which script() sends, and WRONGTYPE is of one key (a hash
  -- another program put there), which get() clears
  if res == nil and how == "redis" and not tostring(err):match("^NOSCRIPT")
     and not tostring(err):match("^WRONGTYPE") then
    how = "io"
  end
  if res == nil and how ~= "redis" then
    local first = self.retry_at == nil
    -- the pause doubles on from the last while Redis fails again soon after
    -- it answered: one that reads but refuses writes (READONLY, OOM) would
    -- else be back every 0.5 s, each time with a token fetch and two events
    self.backoff = self.backoff == 0 and BACKOFF_FIRST or min(self.backoff * 2, BACKOFF_MAX)
    self.retry_at, self.good_since = self.now() + self.backoff, nil
    if first then
      -- the reason, with the password (were it there) taken out
      local e = errors.redact(errors.new("transport", { msg = tostring(err) }), self:secrets())
      emit(self, { event = "store_fallback", store = "redis", error = e.msg, retry_in = self.backoff })
    end
    return nil, "down"
  end
  if self.retry_at then
    self.retry_at, self.good_since = nil, self.now()
    emit(self, { event = "store_recovered", store = "redis" })
  elseif self.good_since and self.now() - self.good_since >= self.backoff then
    -- good for as long as the last pause: the next failure pauses 0.5 s
    self.good_since, self.backoff = nil, 0
  end
  if res == nil then return nil, "redis", err end
  return res
end

-- Whether Redis is being used (false while it is down and the local store
-- stands in).
function Store:up()
  return not (self.retry_at and self.now() < self.retry_at)
end

local function ttl_args(ttl)
  if ttl and ttl > 0 then return "PX", format("%d", ceil(ttl * 1000)) end
end

local function encode(v)
  if type(v) == "number" then
    if v == floor(v) and v > -2 ^ 53 and v < 2 ^ 53 then return format("%d", v) end
    return format("%.17g", v)
  end
  return tostring(v)
end

function Store:get(key)
  local res, why, err = self:call("GET", self.prefix .. key)
  if why == "down" then return self.fallback:get(key) end
  if why == "redis" and tostring(err):match("^WRONGTYPE") then
    -- a key of ours holding another type (a hash) is no store's: gone, so
    -- that the token or lock set next takes its place; else every host
    -- would leave Redis for its local store, and never come back for good
    self:call("DEL", self.prefix .. key)
  end
  if type(res) == "string" then return res end
  return nil
end

function Store:set(key, value, ttl)
  local px, ms = ttl_args(ttl)
  local res, why
  if px then
    res, why = self:call("SET", self.prefix .. key, encode(value), px, ms)
  else
    res, why = self:call("SET", self.prefix .. key, encode(value))
  end
  if why == "down" then return self.fallback:set(key, value, ttl) end
  return res == "OK"
end

-- Sets key only if it holds nothing (SET NX): the lock of a token fetch.
function Store:add(key, value, ttl)
  local px, ms = ttl_args(ttl)
  local res, why
  if px then
    res, why = self:call("SET", self.prefix .. key, encode(value), "NX", px, ms)
  else
    res, why = self:call("SET", self.prefix .. key, encode(value), "NX")
  end
  if why == "down" then return self.fallback:add(key, value, ttl) end
  if res == "OK" then return true end
  if res == false then return false, "exists" end
  return false, "failed"
end

function Store:delete(key)
  local _, why = self:call("DEL", self.prefix .. key)
  if why == "down" then self.fallback:delete(key) end
end

-- Deletes key if it holds value (the token lock's owner letting it go):
-- one script, so that a lock another host took meanwhile stays.
local DELETE_IF = [[
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
]]

function Store:delete_if(key, value)
  local _, why = self:script(DELETE_IF, "delete_if_sha", 1, self.prefix .. key, encode(value))
  if why == "down" then
    local fb = self.fallback
    if fb:get(key) == value then fb:delete(key) end
  end
end

function Store:incr(key, by, init)
  local res, why
  if init == 0 and by == floor(by) then
    res, why = self:call("INCRBY", self.prefix .. key, format("%d", by))
  else
    res, why = self:script(INCR, "incr_sha", 1, self.prefix .. key, encode(by), init == nil and "" or encode(init))
  end
  if why == "down" then return self.fallback:incr(key, by, init) end
  res = tonumber(res)
  if res == nil then return nil, "not found" end
  return res
end

-- Runs a script by its SHA1, loading it once (again after NOSCRIPT: a
-- Redis restarted or flushed).
function Store:script(src, field, ...)
  local sha = self[field]
  local res, why, err
  if sha then
    res, why, err = self:call("EVALSHA", sha, ...)
    if not (why == "redis" and tostring(err):match("^NOSCRIPT")) then return res, why, err end
  end
  sha, why, err = self:call("SCRIPT", "LOAD", src)
  if not sha then return nil, why, err end
  -- a SHA1 is text: anything else (a server that only looks like Redis)
  -- would raise in every EVALSHA after, never loaded again
  if type(sha) ~= "string" then return nil end
  self[field] = sha
  return self:call("EVALSHA", sha, ...)
end

-- The limiter's whole reservation in one round trip (see RESERVE). wins:
-- the limiter's windows ({ n =, w =, key = }); now: the caller's clock;
-- max_wait: how long the call may wait for its slot. Returns true and the
-- wait, false and the wait needed (nothing taken), or nil when Redis is
-- not there (the caller then reserves on the local store).
function Store:reserve(seq_key, wins, margin, now, max_wait)
  local argv = { self.caller_clock and format("%.6f", now) or "",
                 format("%.6f", min(max_wait, 1e9)), format("%.6f", margin) }
  for _, win in ipairs(wins) do
    argv[#argv + 1] = format("%d", win.n)
    argv[#argv + 1] = self.prefix .. win.key
    argv[#argv + 1] = format("%d", win.w)
  end
  local res = self:script(M.RESERVE, "reserve_sha", 1, self.prefix .. seq_key, unpack(argv))
  if type(res) ~= "table" then return nil end
  local wait = tonumber(res[2])
  -- what the script never answers (a server that only looks like Redis): a
  -- wait that is not a finite number, or one past max_wait that the call
  -- would sleep out: none, as when Redis is not there
  if not (wait and wait >= 0 and wait < 1e9) then return nil end
  if res[1] == 0 then return false, wait end
  if res[1] ~= 1 or wait > min(max_wait, 1e9) + 0.001 then return nil end
  return true, wait
end

function Store:close()
  -- for good: a call of its client under way (its logger closed it) must
  -- not connect again, a connection nobody would close
  self.closed = true
  if self.plain then self.plain:close() end
end

return M
