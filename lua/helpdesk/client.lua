--- A client: one libcurl handle (keep-alive; inside nginx, the thread
-- pool's), one tenant token, and the three helpdesk endpoints. Make one
-- with @{helpdesk.new}.
-- @module helpdesk.client
local clock = require "helpdesk.clock"
local core = require "helpdesk.core"
local config = require "helpdesk.config"
local errors = require "helpdesk.errors"
local json = require "helpdesk.json"
local batch = require "helpdesk.batch"
local openresty = require "helpdesk.openresty"
local ratelimit = require "helpdesk.ratelimit"
local retry = require "helpdesk.retry"
local redis_store = require "helpdesk.redis_store"
local store = require "helpdesk.store"
local token = require "helpdesk.token"
local transport = require "helpdesk.transport"
local validate = require "helpdesk.validate"

local type, pairs, ipairs, setmetatable, tostring, error = type, pairs, ipairs, setmetatable, tostring, error
local concat, format, min, running = table.concat, string.format, math.min, coroutine.running

local M = {}

M.VERSION = "0.1.0"
local USER_AGENT = format("feishu-helpdesk/%s (%s; libcurl %s)", M.VERSION,
  type(jit) == "table" and jit.version or _VERSION, core.curl_version)

local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
-- The longest token life believed (30 days); Feishu's is 2 hours.
local MAX_EXPIRE = 30 * 86400

-- Secrets live here, keyed by client, so that no dump of a client shows them.
-- Nothing in a value may lead back to its client (no closure over it, no
-- logger that may hold it): Lua 5.1 and LuaJIT have no ephemerons, and such
-- an entry would keep the client, its socket and its secrets for ever.
local private = setmetatable({}, { __mode = "k" })
local HOLDS = setmetatable({}, { __tostring = function() return "(held)" end })

--- The client @{helpdesk.new} returns. Its methods return their result, or
-- `nil` and an @{helpdesk.errors.Error|error}; bad input is an `invalid`
-- error naming the field, and nothing is sent.
-- @type Client
local Client = {}
Client.__index = Client

function Client.__tostring(c)
  return format("helpdesk.client (%s, %s, helpdesk %s)", c.base_url,
    c.app_id and "app " .. c.app_id or "fixed tenant token", c.helpdesk_id)
end

local function secrets_of(c)
  local p = private[c]
  local list = p.tokens:secrets()
  list[#list + 1] = p.app_secret
  list[#list + 1] = p.helpdesk_token
  list[#list + 1] = p.helpdesk_auth
  -- the proxy URLs, their passwords, as written and as sent, and as Basic
  for i = 1, #p.proxy_secrets do list[#list + 1] = p.proxy_secrets[i] end
  if p.redis then list[#list + 1] = p.redis.cfg.password end
  return list
end

-- Hands event to the logger option, if any; a logger that fails is ignored,
-- never the call's failure. Events carry no secret (see README).
local function emit(c, event)
  local log = c.logger
  if log then pcall(log, event) end
end

-- Inside nginx a client with no logger still tells of Redis failing and
-- coming back, in the error log: a team must hear that its hosts no longer
-- share one budget. The event's error is redacted already.
local function nginx_store_log(e)
  local ngx = rawget(_G, "ngx")
  if e.event == "store_fallback" then
    ngx.log(ngx.ERR, "helpdesk: store_fallback: ", e.store, " failed (", e.error, "); this worker uses its ",
            "local store and tries ", e.store, " again in ", e.retry_in, " s")
  else
    ngx.log(ngx.WARN, "helpdesk: store_recovered: ", e.store, " answers again; the budget is shared again")
  end
end

-- The "response" event of an exchange that took seconds.
local function response_event(c, method, url, obj, err, seconds)
  local e = { event = "response", method = method, url = url, duration = seconds }
  if obj then
    e.status, e.log_id = err.status, err.log_id
  else
    local r = errors.redact(err, secrets_of(c))
    e.status, e.log_id, e.kind, e.code, e.error = r.status, r.log_id, r.kind, r.code, tostring(r)
  end
  return e
end

local function retry_event(method, url, attempt, wait, err)
  return { event = "retry", method = method, url = url, attempt = attempt, wait = wait,
           kind = err.kind, code = err.code, status = err.status }
end

local function closed_error()
  return errors.new("invalid", { field = "client", msg = "client is closed", sent = false })
end

-- attempt: { timeout =, connect_timeout = } of this one exchange.
local MAIN = {} -- coroutine.running() of the main thread on Lua 5.1

-- Counts a helpdesk POST of the coroutine running.
local function posted(p)
  local co = running() or MAIN
  p.posted[co] = (p.posted[co] or 0) + 1
end

-- The secrets of c and the token a request went with: another may have
-- taken its place among the tokens c used last meanwhile.
local function secrets_with(p, tok)
  if not tok then return p.secrets end
  return function()
    local list = p.secrets()
    list[#list + 1] = tok
    return list
  end
end
M.secrets_with = secrets_with

local function core_request(c, method, url, headers, body, attempt, tok)
  local p = private[c]
  if c.logger then emit(c, { event = "request", method = method, url = url }) end
  -- the logger may have closed the client
  if p.closed then return nil, closed_error() end
  local t0 = clock.now()
  local obj, err = transport.exchange(p.handle, {
    method = method, url = url, headers = headers, body = body,
    timeout = attempt.timeout, connect_timeout = attempt.connect_timeout,
    max_body = c.max_body_size, ca_file = c.ca_file, ca_path = c.ca_path,
    insecure = c.insecure, proxy = p.proxy,
  }, secrets_with(p, tok))
  if c.logger then emit(c, response_event(c, method, url, obj, err, clock.now() - t0)) end
  return obj, err
end

-- Fetches a tenant token: the helpdesk credential never goes to this endpoint.
local function fetch_token(c, attempt)
  local p = private[c]
  local body = json.encode({ app_id = c.app_id, app_secret = p.app_secret })
  local obj, err = core_request(c, "POST", c.base_url .. TOKEN_PATH, {
    ["Content-Type"] = "application/json; charset=utf-8",
    ["User-Agent"] = p.user_agent,
    ["Accept"] = "application/json",
  }, body, attempt)
  if not obj then
    emit(c, { event = "token_refresh", ok = false, kind = err.kind, code = err.code })
    return nil, M.token_error(err)
  end
  local tok, expire = obj.tenant_access_token, obj.expire
  -- a token too short to redact, or too long for a header, is none Feishu gives
  if type(tok) ~= "string" or #tok < validate.MIN_SECRET or #tok > token.MAX_LENGTH or tok:find("[\r\n%z]") then
    return nil, M.token_error(errors.new("decode", { status = err.status, log_id = err.log_id,
                                                     msg = "token answer lacks tenant_access_token" }))
  end
  -- NaN fails both comparisons; Feishu gives 7200
  if type(expire) ~= "number" or not (expire >= 1 and expire <= MAX_EXPIRE) then
    return nil, M.token_error(errors.new("decode", { status = err.status, log_id = err.log_id,
      msg = "token answer's expire is not a number of seconds from 1 to " .. MAX_EXPIRE }))
  end
  emit(c, { event = "token_refresh", ok = true, expire = expire })
  return tok, expire
end

-- The error of a call whose tenant token could not be fetched: its message
-- never went out, whatever became of the token request itself.
function M.token_error(err)
  err.token, err.sent = true, false
  err.msg = "fetching the tenant token failed, so nothing was sent: "
    .. err.msg:gsub(" %(the request was sent: it may have been processed%)", "")
  return err
end

function M.new(opts)
  local cfg, err = config.check(opts)
  if not cfg then return nil, err end
  local in_nginx = openresty.in_nginx()
  local handle, herr
  if in_nginx then
    handle = openresty.new(cfg)
  else
    handle, herr = core.new()
    if not handle then return nil, errors.new("transport", { msg = herr }) end
  end

  local c = setmetatable({
    base_url = cfg.base_url, app_id = cfg.app_id, helpdesk_id = cfg.helpdesk_id,
    timeout = cfg.timeout, connect_timeout = cfg.connect_timeout,
    max_body_size = cfg.max_body_size, ca_file = cfg.ca_file, ca_path = cfg.ca_path,
    insecure = cfg.insecure, max_retries = cfg.max_retries, budget = cfg.budget,
    max_rate_limit_wait = cfg.max_rate_limit_wait,
    -- here, not with the secrets: a logger may well refer to its client
    logger = cfg.logger,
  }, Client)
  -- The caller's store, likewise (what the client keeps out of sight holds
  -- it weakly), behind a function, since it holds the token: no dump of the
  -- client shows it; under a key of its own, which no one sets by mistake.
  if cfg.store then
    local st = cfg.store
    c[HOLDS] = function() return st end
  end
  local p = {
    handle = handle,
    app_secret = cfg.app_secret,
    helpdesk_token = cfg.helpdesk_token,
    helpdesk_auth = core.base64(cfg.helpdesk_id .. ":" .. cfg.helpdesk_token),
    -- the proxy URL may hold a password: kept with the secrets
    proxy = cfg.proxy,
    user_agent = cfg.user_agent and USER_AGENT .. " " .. cfg.user_agent or USER_AGENT,
    -- helpdesk POSTs started, by coroutine (a call runs in one): a call
    -- that raises after one of its own knows it went
    posted = setmetatable({}, { __mode = "k" }),
  }
  -- the proxy's password alone, and as a Basic credential, may show too
  p.proxy_secrets = cfg.proxy_secrets.list
  for _, up in ipairs(cfg.proxy_secrets.basic) do
    p.proxy_secrets[#p.proxy_secrets + 1] = core.base64(up[1] .. ":" .. up[2])
  end
  -- Inside nginx, the token and the limiter's slots go into the shared dict
  -- when there is one, so that every worker shares them.
  local weak_client = setmetatable({ c }, { __mode = "v" })
  local shared = in_nginx and cfg.shared_dict and store.shared(cfg.shared_dict) or nil
  if cfg.shared_dict_given and cfg.shared_dict and in_nginx and not shared then
    return nil, errors.invalid("shared_dict", "'" .. cfg.shared_dict .. "' is not a lua_shared_dict of this nginx: "
      .. "add `lua_shared_dict " .. cfg.shared_dict .. " 1m;` to the http block, or pass shared_dict = false")
  end
  local st = cfg.store and store.guarded(cfg.store) or shared or store.table(clock.now)
  -- the token's times: with Redis, of the wall clock every host shares
  -- (a monotonic clock starts anew on each machine)
  local token_now, memo = clock.now, nil
  if cfg.redis then
    -- what stands in for Redis while it is down: the shared dict, or a table
    local local_store = st
    local r = cfg.redis
    st = assert(redis_store.new({ redis = r.redis, prefix = r.prefix, timeout = r.timeout, ca_file = r.ca_file,
      insecure = r.insecure, fallback = local_store,
      -- the client through a weak reference (see private)
      on_event = function(e)
        local cl = weak_client[1]
        if cl and cl.logger then emit(cl, e) elseif in_nginx then nginx_store_log(e) end
      end }))
    st.share = cfg.store_share or 1
    token_now = os.time
    -- a token read from Redis is used for a second before it is read again
    memo = 1
  end
  -- what Feishu counts per: the app (a fixed token's app is unknown: all share one)
  local app = cfg.base_url .. " " .. (cfg.app_id or "fixed-token")
  -- the fetch reaches its client through a weak reference (see private);
  -- only a call on the client fetches, so the client is there
  local weak = weak_client
  p.secrets = function() return secrets_of(weak[1]) end
  p.tokens = token.new({
    fixed = cfg.tenant_access_token,
    fetch = function(attempt) return fetch_token(weak[1], attempt) end,
    now = token_now, sleep = clock.sleep, yields = clock.yields, memo = memo, memo_now = clock.now,
    store = st, key = "helpdesk:token:" .. app,
  })
  if cfg.rate_limit then
    p.limits = {}
    for endpoint, limits in pairs(cfg.rate_limit) do
      p.limits[endpoint] = ratelimit.limiter(limits, st, "helpdesk:rl:" .. app .. ":" .. endpoint)
    end
  end
  p.redis = cfg.redis and st or nil
  private[c] = p
  return c
end

local function query_string(q)
  local parts = {}
  for _, kv in ipairs(q) do
    -- %d: Lua 5.1 and LuaJIT would print a 15-digit number with an exponent
    local v = type(kv[2]) == "number" and format("%d", kv[2]) or tostring(kv[2])
    parts[#parts + 1] = kv[1] .. "=" .. v:gsub("[^%w%-%._~]", function(ch)
      return format("%%%02X", ch:byte())
    end)
  end
  if #parts == 0 then return "" end
  return "?" .. concat(parts, "&")
end

-- Less than this left of a budget is none: an exchange that cannot end in
-- time would leave a POST's fate unknown (and libcurl counts whole
-- milliseconds, where 0 means no timeout at all).
local MIN_ATTEMPT = 0.01

-- The per-attempt limits: the call's timeouts, cut to what is left of its
-- budget; nil when nothing is left.
local function attempt_opts(c, call_opts, deadline)
  local left = deadline - clock.now()
  if left < MIN_ATTEMPT then return nil end
  return {
    timeout = min(call_opts.timeout or c.timeout, left),
    connect_timeout = min(call_opts.connect_timeout or c.connect_timeout, left),
  }
end

-- Whether the client may make a call here and now: not closed, and, inside
-- nginx, where it can wait without blocking the worker (or may block).
local function ready(p)
  if p.closed then return nil, closed_error() end
  if p.handle.check then
    local ok, why = p.handle:check()
    if not ok then return nil, transport.setup_error(why) end
  end
  return true
end

-- The headers of a helpdesk call (never of the token fetch).
local function helpdesk_headers(p, tok, method)
  local headers = {
    ["Authorization"] = "Bearer " .. tok,
    ["X-Lark-Helpdesk-Authorization"] = p.helpdesk_auth,
    ["User-Agent"] = p.user_agent,
    ["Accept"] = "application/json",
  }
  if method == "POST" then headers["Content-Type"] = "application/json; charset=utf-8" end
  return headers
end

-- Says in the error that a POST which failed after going out may have been
-- delivered, so nobody resends it blindly.
local function mark_maybe_delivered(method, err)
  -- transport says so itself; a failed token fetch says nothing was sent
  if method ~= "POST" or err.kind == "transport" or err.token then return end
  local status = err.status
  -- a 5xx, or a 2xx whose body cannot be read (a gateway's page, say)
  if status and ((status >= 500 and (err.kind == "http" or err.kind == "api"))
                 or (status >= 200 and status < 300 and err.kind == "decode")) then
    err.sent = true
    err.msg = err.msg .. " (the request was sent: it may have been processed)"
  end
end

-- The error of a POST that Feishu answered with code 0 (it processed the
-- message) in a shape that cannot be used: never one that looks unsent.
local function processed_but(msg, meta)
  local err = M.decode_error(msg .. " (Feishu answered code 0: the message was processed)", meta)
  err.sent = true
  return err
end

local DATA_OPTIONAL = { events = true }

local function budget_error()
  return errors.new("transport", { sent = false,
    msg = "the call's budget ran out before it was sent; nothing was sent" })
end

-- One helpdesk call: the client-side rate limit, the token, retries within
-- the call's budget (POSTs only when certainly not processed) and one retry
-- with a fresh token after a token-invalid answer. query: a list of
-- { name, value }. Returns the answer's data table and { status, log_id }.
local function call(c, endpoint, method, path, query, body, call_opts)
  local p = private[c]
  local url = c.base_url .. path .. query_string(query)
  local deadline = clock.now() + (call_opts.budget or c.budget)
  local max_retries = call_opts.max_retries or c.max_retries
  local limiter = p.limits and p.limits[endpoint]
  local retries, refreshed = 0, false
  local obj, err, used_tok
  local ok, why = ready(p)
  if not ok then return nil, why end
  while true do
    local tok
    local attempt = attempt_opts(c, call_opts, deadline)
    if not attempt then
      err = err or budget_error()
      break
    end
    tok, err = p.tokens:get(attempt)
    used_tok = tok or used_tok
    if tok and limiter then
      -- a slot that leaves no time for the exchange (a sleep may run over
      -- a little) is past the budget too
      local waited, need = limiter:acquire(clock, deadline - 2 * MIN_ATTEMPT)
      if waited and waited > 0 then emit(c, { event = "rate_limit_wait", endpoint = endpoint, wait = waited }) end
      if not waited then
        err = ratelimit.past_budget(endpoint, "the call", need)
        break
      end
    end
    if tok then
      -- what the token and the rate limit took counts
      attempt = attempt_opts(c, call_opts, deadline)
      if not attempt then
        err = budget_error()
        break
      end
      if method == "POST" then posted(p) end
      obj, err = core_request(c, method, url, helpdesk_headers(p, tok, method), body, attempt, tok)
      if obj then break end
    end
    -- a failed token fetch is as safe to repeat as a GET
    local step = retry.next_step(err, { method = tok and method or "GET", retries = retries,
      max_retries = max_retries, refreshed = refreshed or not tok, refreshable = p.tokens:refreshable(),
      max_rate_limit_wait = c.max_rate_limit_wait })
    if step == "refresh" then
      p.tokens:invalidate(tok)
      refreshed = true
    elseif not step or clock.now() + step >= deadline then
      break
    else
      emit(c, retry_event(method, url, retries + 1, step, err))
      clock.sleep(step)
      retries = retries + 1
    end
  end
  if not obj then
    err.retries = retries
    mark_maybe_delivered(method, err)
    return nil, errors.redact(err, secrets_with(p, used_tok)())
  end
  local meta = err
  if type(obj.data) ~= "table" then
    -- an answer that only says "done" may leave data out
    if DATA_OPTIONAL[endpoint] and obj.data == nil then return {}, meta end
    if method == "POST" then return nil, processed_but("answer lacks data", meta) end
    return nil, M.decode_error("answer lacks data", meta)
  end
  return obj.data, meta
end

function M.decode_error(msg, meta)
  return errors.new("decode", { msg = msg, status = meta.status, log_id = meta.log_id })
end

local function message_result(data, meta)
  if not data then return nil, meta end
  if type(data.message_id) ~= "string" then
    return nil, processed_but("answer lacks data.message_id", meta)
  end
  return data
end

local TICKET_MSG_FIELDS = { msg_type = true, content = true }

--- Sends a message into a helpdesk ticket. Sent once: retried only when
-- Feishu certainly did not process it (a rate-limit answer, a token
-- refresh, a connection never made).
-- @string ticket_id the ticket's id, a string of digits
-- @tab msg `{ msg_type = "text" | "post", content = table }`, as
-- @{helpdesk.message.text} or @{helpdesk.message.post} make
-- @tab[opt] opts for this call: `timeout`, `connect_timeout`, `budget`,
-- `max_retries`
-- @treturn[1] table the answer's data: `{ message_id = "…" }`
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error with `sent = true` when it may have
-- been processed all the same
-- @usage local data, err = client:send_ticket_message(id, helpdesk.text("On it."))
function Client:send_ticket_message(ticket_id, msg, opts)
  local id, err = validate.ticket_id(ticket_id)
  if not id then return nil, err end
  local msg_type, content = validate.message(msg, TICKET_MSG_FIELDS, validate.ticket_msg_type)
  if not msg_type then return nil, content end
  local call_opts, oerr = validate.call_opts(opts)
  if not call_opts then return nil, oerr end
  local body = json.encode({ msg_type = msg_type, content = content })
  return message_result(call(self, "ticket_message", "POST",
                             "/open-apis/helpdesk/v1/tickets/" .. id .. "/messages", {}, body, call_opts))
end

local TICKET_BATCH_FIELDS = { ticket_id = true, msg_type = true, content = true }

-- Checks the batch's options: { concurrency = 1..64 (8) } and the per-call ones.
local function batch_opts(opts)
  if opts ~= nil and type(opts) ~= "table" then return nil, errors.invalid("opts", "must be a table") end
  local rest, concurrency = {}, 8
  for k, v in pairs(opts or {}) do
    if k ~= "concurrency" then rest[k] = v end
  end
  if opts and opts.concurrency ~= nil then
    local err
    concurrency, err = validate.integer("concurrency", opts.concurrency, 1, 64)
    if not concurrency then return nil, err end
  end
  local call_opts, err = validate.call_opts(rest)
  if not call_opts then return nil, err end
  return call_opts, concurrency
end

-- The answer to one message of a batch, as a single send would give it.
local function batch_result(c, r)
  if r.obj then
    local data, meta = r.obj.data, r.meta
    if type(data) ~= "table" then return { err = processed_but("answer lacks data", meta) } end
    local ok, err = message_result(data, meta)
    if ok then return { data = ok } end
    return { err = err }
  end
  mark_maybe_delivered("POST", r.err)
  return { err = errors.redact(r.err, secrets_of(c)) }
end

--- Sends many ticket messages at once, concurrently within the rate limits.
-- @tab items `{ { ticket_id =, msg_type =, content = }, … }`
-- @tab[opt] opts `concurrency` (1-64, default 8), `budget` (for the whole
-- batch), `timeout`, `connect_timeout`, `max_retries`
-- @treturn[1] table a list in input order of `{ data = { message_id = } }` or
-- `{ err = error }`, with `failed` counting the errors
-- @return[2] nil only when items or opts are malformed
-- @treturn[2] helpdesk.errors.Error
function Client:send_ticket_messages(items, opts)
  if type(items) ~= "table" then return nil, errors.invalid("items", "must be a list of messages") end
  local n, missing = validate.list_length(items)
  if missing then
    return nil, errors.invalid("items", "has no item at [" .. missing .. "] (a nil in the list): "
      .. "a list needs keys 1..n without holes")
  elseif not n then
    return nil, errors.invalid("items", "must be a list (keys 1..n)")
  end
  local call_opts, concurrency = batch_opts(opts)
  if not call_opts then return nil, concurrency end
  local p = private[self]
  local ok, why = ready(p)
  if not ok then return nil, why end

  local results, jobs, item_of = { failed = 0 }, {}, {}
  for i = 1, n do
    local item, id, msg_type, content, err = items[i]
    if type(item) ~= "table" then
      err = errors.invalid("items[" .. i .. "]", "must be a message table")
    else
      id, err = validate.ticket_id(item.ticket_id)
      if id then
        msg_type, content = validate.message(item, TICKET_BATCH_FIELDS, validate.ticket_msg_type)
        if not msg_type then err = content end
      end
    end
    if err then
      results[i] = { err = err }
    else
      jobs[#jobs + 1] = { path = "/open-apis/helpdesk/v1/tickets/" .. id .. "/messages",
                          body = json.encode({ msg_type = msg_type, content = content }) }
      item_of[#jobs] = i
    end
  end

  local done
  if openresty.in_nginx() then
    done = openresty.each(jobs, concurrency, function(job)
      local data, meta = call(self, "ticket_message", "POST", job.path, {}, job.body, call_opts)
      if data then return { obj = { data = data }, meta = meta } end
      return { err = meta, final = true }
    end)
  else
    for _, job in ipairs(jobs) do job.url = self.base_url .. job.path end
    done = batch.run({
      jobs = jobs, concurrency = concurrency,
      deadline = clock.now() + (call_opts.budget or self.budget),
      max_retries = call_opts.max_retries or self.max_retries,
      max_rate_limit_wait = self.max_rate_limit_wait,
      endpoint = "ticket_message", tokens = p.tokens, limiter = p.limits and p.limits.ticket_message,
      headers = function(tok) return helpdesk_headers(p, tok, "POST") end,
      log_request = self.logger and function(url) emit(self, { event = "request", method = "POST", url = url }) end,
      log_response = self.logger and function(url, obj, err, seconds)
        emit(self, response_event(self, "POST", url, obj, err, seconds))
      end,
      log_retry = self.logger and function(url, attempt, wait, err)
        emit(self, retry_event("POST", url, attempt, wait, err))
      end,
      closed = function() return p.closed and closed_error() or nil end,
      started = function() posted(p) end,
      min_attempt = 2 * MIN_ATTEMPT,
      secrets = p.secrets,
      request = function(deadline)
        local a = attempt_opts(self, call_opts, deadline)
        if not a then return nil end
        return { timeout = a.timeout, connect_timeout = a.connect_timeout, max_body = self.max_body_size,
                 ca_file = self.ca_file, ca_path = self.ca_path, insecure = self.insecure, proxy = p.proxy }
      end,
    })
  end
  for j, r in ipairs(done) do
    results[item_of[j]] = r.final and { err = r.err } or batch_result(self, r)
  end
  for i = 1, n do
    if results[i].err then results.failed = results.failed + 1 end
  end
  return results
end

local BOT_MSG_FIELDS = { msg_type = true, content = true, receiver_id = true,
                         receive_type = true, user_id_type = true }

--- Sends a helpdesk-bot message to a user's helpdesk chat.
-- @tab msg `{ msg_type = "text" | "post" | "image" | "interactive", content =,
-- receiver_id =, receive_type = "chat" (default) | "user", user_id_type =
-- "open_id" (default) | "union_id" | "user_id" }`
-- @tab[opt] opts as for @{Client:send_ticket_message}
-- @treturn[1] table the answer's data: `{ message_id = "…" }`
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error
function Client:bot_message(msg, opts)
  local msg_type, content = validate.message(msg, BOT_MSG_FIELDS, validate.bot_msg_type)
  if not msg_type then return nil, content end
  local receiver_id, rerr = validate.receiver_id(msg.receiver_id)
  if not receiver_id then return nil, rerr end
  local receive_type, rterr = validate.receive_type(msg.receive_type or "chat")
  if not receive_type then return nil, rterr end
  local user_id_type, uerr = validate.user_id_type(msg.user_id_type or "open_id")
  if not user_id_type then return nil, uerr end
  local call_opts, oerr = validate.call_opts(opts)
  if not call_opts then return nil, oerr end
  local body = json.encode({ msg_type = msg_type, content = content,
                             receiver_id = receiver_id, receive_type = receive_type })
  return message_result(call(self, "bot_message", "POST", "/open-apis/helpdesk/v1/message",
                             { { "user_id_type", user_id_type } }, body, call_opts))
end

local QUERY_FIELDS = { page = true, page_size = true, time_start = true, time_end = true }

-- Checks a listing query; returns the clean query or nil, err.
local function check_query(query)
  if query == nil then return {} end
  if type(query) ~= "table" then return nil, errors.invalid("query", "must be a table") end
  local ok, err = validate.known_keys("query", query, QUERY_FIELDS)
  if not ok then return nil, err end
  local out = {}
  local limits = { page = { 1 }, page_size = { 1, 200 }, time_start = { 0 }, time_end = { 0 } }
  for k, lim in pairs(limits) do
    if query[k] ~= nil then
      local v, verr = validate.integer(k, query[k], lim[1], lim[2])
      if not v then return nil, verr end
      out[k] = v
    end
  end
  if out.time_start and out.time_end and out.time_start > out.time_end then
    return nil, errors.invalid("time_start", "must not be after time_end")
  end
  return out
end

local function list_page(c, id, q, call_opts)
  local query = {}
  for _, k in ipairs({ "time_start", "time_end", "page", "page_size" }) do
    if q[k] ~= nil then query[#query + 1] = { k, q[k] } end
  end
  local data, meta = call(c, "list", "GET", "/open-apis/helpdesk/v1/tickets/" .. id .. "/messages",
                          query, nil, call_opts)
  if not data then return nil, meta end
  if data[1] ~= nil then return nil, M.decode_error("answer's data is not an object", meta) end
  local messages = data.messages
  if messages == nil then messages = {} end
  -- a JSON object here would read as an empty list (no [1]): counted with
  -- next, so that it is an error, not an end
  local n = type(messages) == "table" and validate.list_length(messages)
  if not n then
    return nil, M.decode_error("answer's data.messages is not a list", meta)
  end
  for i = 1, n do
    if type(messages[i]) ~= "table" or messages[i][1] ~= nil then
      return nil, M.decode_error("answer's data.messages holds a non-object", meta)
    end
  end
  local total = data.total
  if total ~= nil and not (type(total) == "number" and total >= 0 and total < 2 ^ 53 and total % 1 == 0) then
    return nil, M.decode_error("answer's data.total is not a count", meta)
  end
  return { messages = messages, total = total }, meta
end

--- One page of a ticket's messages.
-- @string ticket_id
-- @tab[opt] query `page` (from 1), `page_size` (1-200; Feishu's default 20),
-- `time_start`, `time_end` (Unix seconds)
-- @tab[opt] opts as for @{Client:send_ticket_message}
-- @treturn[1] table `{ messages = { … }, total = n }`; each message a plain
-- table with Feishu's fields (`id`, `message_id`, `message_type`,
-- `created_at` in milliseconds, `content` a JSON string, `user_name`, …)
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error
function Client:list_ticket_messages(ticket_id, query, opts)
  local id, err = validate.ticket_id(ticket_id)
  if not id then return nil, err end
  local q, qerr = check_query(query)
  if not q then return nil, qerr end
  local call_opts, oerr = validate.call_opts(opts)
  if not call_opts then return nil, oerr end
  local page, perr = list_page(self, id, q, call_opts)
  if not page then return nil, perr end
  return page
end

-- The body of /events/subscribe for a list of event types, or nil and an
-- invalid error: "helpdesk.ticket_message.created_v1" is the type
-- "helpdesk.ticket_message" and the subtype "ticket_message.created_v1".
local function event_list(types)
  local n = type(types) == "table" and validate.list_length(types)
  if not n or n == 0 then
    return nil, errors.invalid("events", "must be a non-empty list of event types")
  end
  local out = {}
  for i = 1, n do
    local what, version
    if type(types[i]) == "string" then what, version = types[i]:match("^helpdesk%.([%l_]+)%.([%w_]+)$") end
    if not what then
      return nil, errors.invalid("events[" .. i .. "]",
        "must be a helpdesk event type such as helpdesk.ticket_message.created_v1")
    end
    out[i] = { type = "helpdesk." .. what, subtype = what .. "." .. version }
  end
  return json.encode({ events = out })
end

local function subscription(c, verb, types, opts)
  local body, err = event_list(types)
  if not body then return nil, err end
  local call_opts, oerr = validate.call_opts(opts)
  if not call_opts then return nil, oerr end
  local data, meta = call(c, "events", "POST", "/open-apis/helpdesk/v1/events/" .. verb, {}, body, call_opts)
  if not data then return nil, meta end
  return true
end

--- Subscribes the app to helpdesk events (which Feishu sends only to apps
-- subscribed by this call as well as in the console).
-- @tab types event types: `"helpdesk.ticket_message.created_v1"`,
-- `"helpdesk.ticket.created_v1"`, `"helpdesk.ticket.updated_v1"`,
-- `"helpdesk.notification.approve_v1"`
-- @tab[opt] opts as for @{Client:send_ticket_message}
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error
-- @usage assert(client:subscribe_events{ "helpdesk.ticket_message.created_v1" })
function Client:subscribe_events(types, opts)
  return subscription(self, "subscribe", types, opts)
end

--- Unsubscribes the app from helpdesk events.
-- @tab types event types, as for @{Client:subscribe_events}
-- @tab[opt] opts as for @{Client:send_ticket_message}
-- @treturn[1] boolean true
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error
function Client:unsubscribe_events(types, opts)
  return subscription(self, "unsubscribe", types, opts)
end

-- A listing that has not ended after this many messages never will,
-- whatever total it tells: a ticket holds far fewer.
M.MAX_UNTOLD = 100000

-- A message's identity on a page: its id, or message_id.
local function id_of(m)
  local id = m.id or m.message_id
  return id ~= nil and tostring(id) or nil
end

--- An iterator over every message of a ticket, 200 a page unless
-- `query.page_size` says otherwise. It raises the error object when a page
-- fails (or the input is invalid), so a loop never ends as if complete.
-- It stops by itself on a server that misbehaves, with a `decode` error: a
-- page that repeats messages of the page before it, or the first or last
-- message of any page before (a list shifted back under it), pages that run out
-- before the first page's `total`, or pages that go on past 100,000
-- messages (`MAX_UNTOLD` of this module), whatever `total` they tell. It
-- never yields more than the first page's `total` (what was there when the
-- listing began; messages that arrive meanwhile are for the next listing).
-- @string ticket_id
-- @tab[opt] query as for @{Client:list_ticket_messages}
-- @tab[opt] opts as for @{Client:send_ticket_message}
-- @return an iterator yielding each message and the `total` Feishu reported
-- @usage local ok, err = pcall(function()
--   for msg, total in client:ticket_messages(id, { time_start = t0 }) do print(msg.message_id) end
-- end)
function Client:ticket_messages(ticket_id, query, opts)
  local id, err = validate.ticket_id(ticket_id)
  if not id then error(err, 2) end
  local q, qerr = check_query(query)
  if not q then error(qerr, 2) end
  local call_opts, oerr = validate.call_opts(opts)
  if not call_opts then error(oerr, 2) end
  q.page = q.page or 1
  q.page_size = q.page_size or 200

  -- seen counts the pages before the first asked for too: the total is of
  -- the whole listing
  local buffer, i, seen, done, total, cap = {}, 0, (q.page - 1) * q.page_size, false, nil, nil
  local last_ids = {} -- the ids of the page before
  local pages_seen = {} -- each page's first and last id and size: a page that comes round again
  -- each page's first and last id, and its page: a page shifted back past
  -- the page before (a list newest first that new messages push down) holds
  -- one of them, the pages before being each a run of the same list
  local edges = {}
  local pending -- an error to raise once the page in hand is yielded
  local raised -- once it has raised, it raises the same again: never a quiet end
  local function fail(msg, meta)
    done, buffer, i = true, {}, 0
    raised = M.decode_error(msg, meta or {})
    error(raised, 0)
  end
  local function short(meta)
    return M.decode_error(format("the pages ran out after %d of the %d messages the listing's first page announced",
                                 seen, cap), meta)
  end
  return function()
    if i < #buffer then
      i = i + 1
      return buffer[i], total
    end
    if pending then
      buffer, raised, pending = {}, pending, nil
      error(raised, 0)
    end
    if raised then error(raised, 0) end
    if done then return nil end
    local page, perr = list_page(self, id, q, call_opts)
    if not page then
      done, raised = true, perr
      error(perr, 0)
    end
    local n, meta = #page.messages, perr or {}
    if not cap and page.total and n > page.total then
      fail(format("page %d holds %d messages, but its total says %d", q.page, n, page.total), meta)
    end
    cap = cap or page.total
    -- a page that gives back what the page before gave: the server is
    -- going round, and would for ever
    local ids, back = {}, nil
    for k = 1, n do
      local mid = id_of(page.messages[k])
      if mid then
        if ids[mid] then
          fail(format("page %d holds message %s twice", q.page, mid), meta)
        end
        if last_ids[mid] then
          fail(format("page %d repeats message %s of the page before: the listing would not end", q.page, mid),
               meta)
        end
        back = back or (edges[mid] and mid)
        ids[mid] = true
      end
    end
    last_ids = ids
    if n > 0 then
      local first, last = id_of(page.messages[1]), id_of(page.messages[n])
      local sig = tostring(first) .. " " .. tostring(last) .. " " .. n
      if pages_seen[sig] then
        fail(format("page %d repeats page %d: the listing would not end", q.page, pages_seen[sig]), meta)
      end
      if back then
        fail(format("page %d repeats message %s of page %d: the listing would not end", q.page, back, edges[back]),
             meta)
      end
      pages_seen[sig] = q.page
      if first then edges[first] = q.page end
      if last then edges[last] = q.page end
    end
    if cap and seen + n > cap then n = cap - seen end -- never past the first total
    if cap and n == 0 and seen < cap then
      done, raised = true, short(meta)
      error(raised, 0)
    end
    if seen + n > M.MAX_UNTOLD then
      fail(format("the listing passed %d messages with %s and no end in sight", M.MAX_UNTOLD,
                  cap and format("a total of %.0f, more than a ticket holds,", cap) or "no total"), meta)
    end
    buffer, i, total = page.messages, 0, page.total
    for k = #buffer, n + 1, -1 do buffer[k] = nil end
    seen = seen + n
    q.page = q.page + 1
    if #page.messages < q.page_size or (cap and seen >= cap) then done = true end
    if cap and done and seen < cap then pending = short(meta) end
    if n == 0 then return nil end
    i = 1
    return buffer[1], total
  end
end

--- Releases the connection now rather than at garbage collection.
function Client:close()
  local p = private[self]
  p.closed = true
  p.handle:close()
  if p.redis then p.redis:close() end
end

-- A public call never raises: input whose metamethods raise (an __index
-- that errors, say) is an invalid error, as other bad input is; a raise
-- once a POST went out (a bug) is never taken for one that sent nothing.
-- The iterator raises error objects only, by design.
local function raised_error(c, what, went)
  local ok, text = pcall(tostring, what)
  text = ok and text or "(an error that cannot be shown)"
  local err
  if went then
    err = errors.new("transport", { sent = true, msg = "the call failed after its request was sent ("
      .. text .. "): it may have been processed" })
  else
    err = errors.new("invalid", { field = "input", msg = "reading the input raised an error: " .. text })
  end
  if type(c) == "table" and private[c] then return errors.redact(err, secrets_of(c)) end
  return err
end

for _, name in ipairs({ "send_ticket_message", "send_ticket_messages", "bot_message", "list_ticket_messages",
                        "subscribe_events", "unsubscribe_events" }) do
  local f = Client[name]
  Client[name] = function(self, ...)
    local p = type(self) == "table" and private[self]
    local co = running() or MAIN
    local before = p and p.posted[co]
    local ok, a, b = pcall(f, self, ...)
    if ok then return a, b end
    if errors.is(a) then return nil, a end
    return nil, raised_error(self, a, p and p.posted[co] ~= before)
  end
end

local make_iterator = Client.ticket_messages
function Client:ticket_messages(...)
  local ok, iter = pcall(make_iterator, self, ...)
  if not ok then
    if errors.is(iter) then error(iter, 2) end
    error(raised_error(self, iter), 2)
  end
  -- what a step raises is an error object too, and again on every later call
  local failed
  return function(...)
    if failed then error(failed, 0) end
    local stepped, msg, total = pcall(iter, ...)
    if stepped then return msg, total end
    failed = errors.is(msg) and msg or raised_error(self, msg)
    error(failed, 0)
  end
end

local new = M.new
function M.new(opts)
  local ok, c, err = pcall(new, opts)
  if ok then return c, err end
  if errors.is(c) then return nil, c end
  return nil, raised_error(nil, c)
end

M.Client = Client
return M
