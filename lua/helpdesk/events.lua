--- Receiving the events Feishu pushes to an app's callback URL: the URL
-- verification, the verification token, the signature, the timestamp and
-- the decryption, checked the way the official SDKs do (and stricter, see
-- the README's "Events"), and the helpdesk events read as native Lua tables.
-- Also `require("helpdesk").events`.
-- @module helpdesk.events
-- @usage
-- local events = require "helpdesk.events"
-- local receiver = assert(events.new{
--   verification_token = os.getenv("FEISHU_VERIFICATION_TOKEN"),
--   encrypt_key = os.getenv("FEISHU_ENCRYPT_KEY"),
-- })
-- local ev, err = receiver:decode(headers, raw_body)
-- if not ev then --[[ answer 400: tostring(err) ]] elseif ev.challenge then
--   --[[ answer 200 with {"challenge": ev.challenge} ]]
-- elseif ev.event_type == "helpdesk.ticket_message.created_v1" then
--   print(events.ticket_id(ev), events.message_type(ev), events.text_of(ev))
-- end
local clock = require "helpdesk.clock"
local config = require "helpdesk.config"
local core = require "helpdesk.core"
local errors = require "helpdesk.errors"
local json = require "helpdesk.json"
local openresty = require "helpdesk.openresty"
local store = require "helpdesk.store"
local claims = require "helpdesk.token" -- its lock values, for the claims of running events
local validate = require "helpdesk.validate"

local type, pairs, ipairs, next, tostring, tonumber, setmetatable, getmetatable, pcall = type, pairs, ipairs, next,
  tostring, tonumber, setmetatable, getmetatable, pcall
local floor, abs, time = math.floor, math.abs, os.time
local running, costatus = coroutine.running, coroutine.status
local tointeger = math.tointeger or function(x) return x end
local sha256, sha1, equal, base64, base64_decode = core.sha256, core.sha1, core.equal, core.base64,
  core.base64_decode
local aes_decrypt, aes_encrypt = core.aes256cbc_decrypt, core.aes256cbc_encrypt
local invalid = errors.invalid

local M = {
  --- The default `max_body_size`: 1 MiB (Feishu's events are a few KiB).
  MAX_BODY = 1024 * 1024,
  --- The default `max_skew`: 300 seconds.
  MAX_SKEW = 300,
  --- The default `remember`: 7.2 hours (26,000 s), past Feishu's last re-push (6 h).
  REMEMBER = 26000,
  --- The default `card_timeout`: 2.5 seconds, inside Feishu's 3 s for a card action's answer.
  CARD_TIMEOUT = 2.5,
  --- Seconds an event is claimed as running while its handler runs: 60. A
  -- push of the event meanwhile is answered 409 (Feishu pushes it again
  -- later); a run whose process died holds its event no longer than this.
  RUNNING_TTL = 60,
  --- The event type of a card action of the new protocol (a v2 envelope).
  CARD_ACTION = "card.action.trigger",
  --- The event type given to a card action of the old protocol (no envelope, SHA-1 signed).
  CARD_ACTION_V1 = "card.action.trigger_v1",
}
local CARD_ACTION, CARD_ACTION_V1 = M.CARD_ACTION, M.CARD_ACTION_V1
-- the card actions: answered with the handler's reply, never de-duplicated
local CARD = { [CARD_ACTION] = true, [CARD_ACTION_V1] = true }

-- The receivers' secrets, out of reach of anyone who prints a receiver.
local private = setmetatable({}, { __mode = "k" })
-- The key under which a receiver holds the caller's store (see new).
local HOLDS = setmetatable({}, { __tostring = function() return "(held)" end })

local Receiver = { __name = "helpdesk.events.receiver" }
Receiver.__index = Receiver
Receiver.__tostring = function() return "helpdesk.events.receiver" end
M.Receiver = Receiver

local OPTIONS = { verification_token = true, encrypt_key = true, max_skew = true, max_body_size = true,
                  store = true, shared_dict = true, remember = true, card_timeout = true }

--- A new receiver.
-- @tparam table opts `verification_token` and `encrypt_key` (the app's
-- "Encrypt Key" and "Verification Token" of its event subscription; at
-- least one of them), `max_skew` (seconds that `X-Lark-Request-Timestamp`
-- may be away from this host's clock, default 300; `false` turns the check
-- off), `max_body_size` (bytes, default 1 MiB), `store`, `shared_dict` and
-- `remember` (where and how long event ids are kept), `card_timeout` (seconds
-- @{nginx_handler} waits for a card action's handler, default 2.5). An
-- unknown option is an error.
-- @treturn[1] helpdesk.events.Receiver the receiver
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error an `invalid` error naming the option (never its value)
function M.new(opts)
  if type(opts) ~= "table" then return nil, invalid("options", "must be a table") end
  local ok, err = validate.known_keys("options", opts, OPTIONS)
  if not ok then return nil, err end
  local p = {}
  for _, k in pairs({ "verification_token", "encrypt_key" }) do
    if opts[k] ~= nil then
      p[k], err = validate.secret(k, opts[k])
      if not p[k] then return nil, err end
    end
  end
  if not p.verification_token and not p.encrypt_key then
    return nil, invalid("verification_token", "is missing: give verification_token, encrypt_key or both")
  end
  if p.encrypt_key then p.aes_key = sha256(p.encrypt_key) end
  if opts.max_skew == false then
    p.max_skew = false
  else
    p.max_skew = validate.seconds("max_skew", opts.max_skew or M.MAX_SKEW)
    if not p.max_skew then
      return nil, invalid("max_skew", "must be a number of seconds from 0.01 to 86400, or false")
    end
  end
  p.max_body, err = validate.integer("max_body_size", opts.max_body_size or M.MAX_BODY, 1024)
  if not p.max_body then return nil, err end
  p.remember, err = validate.integer("remember", opts.remember or M.REMEMBER, 1, 30 * 86400)
  if not p.remember then return nil, err end
  p.card_timeout = validate.seconds("card_timeout", opts.card_timeout or M.CARD_TIMEOUT)
  if not p.card_timeout or p.card_timeout > 3 then
    return nil, invalid("card_timeout", "must be a number of seconds from 0.01 to 3 (Feishu waits 3 s)")
  end
  -- where the ids of the events already handled live: shared by the
  -- receivers given the same store, and inside nginx by every worker
  local held
  local redis = type(opts.store) == "table" and rawget(opts.store, "redis") ~= nil and rawget(opts.store, "get") == nil
  if redis then
    -- { redis = "redis://…", prefix =, timeout = }: the ids in Redis, shared
    -- by the receivers of every host; the local store while Redis is down
    for k in pairs(opts.store) do
      if k ~= "redis" and k ~= "prefix" and k ~= "timeout" then
        return nil, invalid("store", "has an unknown field " .. tostring(k) .. " (a Redis store takes redis, "
          .. "prefix and timeout)")
      end
    end
    local fallback = openresty.in_nginx() and opts.shared_dict ~= false
      and store.shared(type(opts.shared_dict) == "string" and opts.shared_dict or "helpdesk") or store.table(clock.now)
    held, err = require("helpdesk.redis_store").new({ redis = opts.store.redis, prefix = opts.store.prefix,
                                                      timeout = opts.store.timeout, fallback = fallback })
    if not held then return nil, err end
    p.store = store.guarded(held)
  elseif opts.store ~= nil then
    held, err = config.store(opts.store)
    if not held then return nil, err end
    -- a method that raises (a closed connection) fails the call, never the receiver
    p.store = store.guarded(held)
  elseif openresty.in_nginx() and opts.shared_dict ~= false then
    local name = opts.shared_dict or "helpdesk"
    if type(name) ~= "string" then return nil, invalid("shared_dict", "must be the name of a lua_shared_dict") end
    p.store = store.shared(name)
    if not p.store and opts.shared_dict ~= nil then
      return nil, invalid("shared_dict", "'" .. name .. "' is not a lua_shared_dict of this nginx")
    end
  end
  if not p.store and openresty.in_nginx() and opts.shared_dict == nil then
    -- each worker would catch only the re-pushes that reach it
    local ngx = rawget(_G, "ngx")
    local workers = ngx.worker and ngx.worker.count and ngx.worker.count() or 1
    if workers > 1 then
      -- an error, not a warning: nginx logs no warnings by default
      ngx.log(ngx.ERR, "helpdesk.events: no lua_shared_dict 'helpdesk': each of the ", workers,
        " workers keeps its own event ids, so a re-pushed event may be handled once per worker; ",
        "add `lua_shared_dict helpdesk 1m;` to the http block, or pass shared_dict = false")
    end
  end
  p.store = p.store or store.table(clock.now)
  -- handlers live on the receiver, not with its secrets: one may well refer
  -- to its receiver (see the client's private table)
  local r = setmetatable({ handlers = {} }, Receiver)
  -- The caller's store, likewise (the guarded store in p holds it weakly: it
  -- may refer back to its receiver, and Lua 5.1 and LuaJIT have no
  -- ephemerons), behind a function, under a key no one sets by mistake.
  if held then r[HOLDS] = function() return held end end
  private[r] = p
  return r
end

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- The four headers the receiver reads, found whatever their case. A value
-- is a string, or a list of one (OpenResty's ngx.req.get_headers() gives a
-- list for a repeated header: more than one is refused).
local WANTED = {
  ["x-lark-signature"] = "signature", ["x-lark-request-timestamp"] = "timestamp",
  ["x-lark-request-nonce"] = "nonce",
}

-- pairs(t) as Lua 5.2 and later have it, following __pairs (Lua 5.1 and
-- LuaJIT ignore it: a proxy table would read as empty there, silently).
local native_pairs = false
pcall(function()
  for _ in pairs(setmetatable({}, { __pairs = function() native_pairs = true return next, {}, nil end })) do end
end)
local function pairs_of(t)
  if not native_pairs then
    local mt = getmetatable(t)
    if type(mt) == "table" and mt.__pairs ~= nil then return mt.__pairs(t) end
  end
  return pairs(t)
end

local function read_headers(headers)
  local h = {}
  if headers == nil then return h end
  if type(headers) ~= "table" then return nil, invalid("headers", "must be a table of request headers") end
  for k, v in pairs_of(headers) do
    local name = type(k) == "string" and WANTED[k:lower()]
    if name then
      if type(v) == "table" then
        if v[2] ~= nil then return nil, invalid("headers", "repeat " .. k) end
        v = v[1]
      end
      if type(v) ~= "string" then return nil, invalid("headers", k .. " must be a string") end
      h[name] = v
    end
  end
  return h
end

-- The text of a decrypted "encrypt", or nil: one message for every way it
-- fails (base64, length, padding, JSON) so that no answer tells them apart.
local UNDECRYPTABLE = "does not decrypt to a JSON object (wrong encrypt_key, or a damaged payload)"

local function decrypt(aes_key, encrypt)
  local raw = base64_decode(encrypt)
  if not raw or #raw < 32 then return nil end
  return aes_decrypt(aes_key, raw:sub(1, 16), raw:sub(17))
end

--- Decrypts an `encrypt` value as Feishu makes it: base64 of a 16-byte IV
-- and the AES-256-CBC ciphertext under SHA-256(`encrypt_key`), PKCS#7 padded.
-- @string encrypt_key
-- @string encrypt
-- @treturn[1] string the plaintext
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error `invalid`
function M.decrypt(encrypt_key, encrypt)
  if type(encrypt_key) ~= "string" or type(encrypt) ~= "string" then
    return nil, invalid("encrypt", "and the encrypt_key must be strings")
  end
  local plain = decrypt(sha256(encrypt_key), encrypt)
  if not plain then return nil, invalid("encrypt", "does not decrypt (wrong encrypt_key, or a damaged payload)") end
  return plain
end

--- Encrypts plaintext into an `encrypt` value as Feishu makes it (the
-- counterpart of @{decrypt}): base64 of a random 16-byte IV and the
-- AES-256-CBC ciphertext under SHA-256(`encrypt_key`), PKCS#7 padded. For
-- pushing test events to one's own receiver (`helpdesk events push`).
-- @string encrypt_key
-- @string plaintext
-- @treturn[1] string the base64 text to put in `{"encrypt": …}`
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error `invalid` (never showing the key)
function M.encrypt(encrypt_key, plaintext)
  if type(encrypt_key) ~= "string" or encrypt_key == "" then
    return nil, invalid("encrypt_key", "must be a non-empty string")
  end
  if type(plaintext) ~= "string" then return nil, invalid("plaintext", "must be a string") end
  local ok, iv = pcall(core.random, 16)
  if not ok then return nil, invalid("encrypt", "no random IV: " .. tostring(iv)) end
  local ct, why = aes_encrypt(sha256(encrypt_key), iv, plaintext)
  if not ct then return nil, invalid("plaintext", "cannot be encrypted: " .. tostring(why)) end
  return base64(iv .. ct)
end

--- The `X-Lark-Signature` of a request: lower-case hex SHA-256 of the
-- timestamp, the nonce, the encrypt key and the raw body, as Feishu signs.
-- @string timestamp `X-Lark-Request-Timestamp` (Unix seconds, as text)
-- @string nonce `X-Lark-Request-Nonce`
-- @string encrypt_key
-- @string body the raw body, byte for byte
-- @treturn[1] string 64 hex digits
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error `invalid`
function M.signature(timestamp, nonce, encrypt_key, body)
  for _, a in ipairs({ { "timestamp", timestamp }, { "nonce", nonce }, { "encrypt_key", encrypt_key },
                       { "body", body } }) do
    if type(a[2]) ~= "string" then return nil, invalid(a[1], "must be a string") end
  end
  return hex(sha256(timestamp, nonce, encrypt_key, body))
end

--- A receiver, made by @{new}.
-- @type Receiver

-- "1608725989000" or 1608725989000 -> 1608725989000 (an integer where the
-- Lua has them), else nil.
local function ms_integer(v)
  if type(v) == "string" and v:match("^%d+$") and #v <= 15 then return tointeger(tonumber(v)) end
  if type(v) == "number" and v >= 0 and v < 2 ^ 53 and v == floor(v) then return tointeger(v) end
end

-- v1's ts, seconds with a fraction ("1502199207.7171419") -> milliseconds.
local function ts_ms(v)
  if type(v) == "number" then v = ("%.3f"):format(v) end
  if type(v) ~= "string" then return nil end
  local s, frac = v:match("^(%d+)%.?(%d*)$")
  if not s or #s > 12 then return nil end
  return tointeger(tonumber(s) * 1000 + tonumber((frac .. "000"):sub(1, 3)))
end

-- A list decoded from JSON (keys 1..n, or empty): not an object.
local function is_list(t)
  return t[1] ~= nil or next(t) == nil
end

-- Feishu documents ticket.comments as an object and sends a list: always a list.
local function fix_ticket(t)
  if type(t) == "table" and type(t.comments) == "table" and not is_list(t.comments) then
    t.comments = { t.comments }
  end
end

local TICKET_MESSAGE = "helpdesk.ticket_message.created_v1"

local function body_of(ev)
  return type(ev) == "table" and type(ev.event) == "table" and ev.event or nil
end

-- Evens out where Feishu is inconsistent (the README lists it).
local function tolerate(ev)
  local e = ev.event
  if type(e) ~= "table" then return end
  if ev.event_type == TICKET_MESSAGE then
    local pos = e.position
    if type(pos) == "number" then
      e.position = (pos == floor(pos) and abs(pos) < 2 ^ 53) and ("%d"):format(pos) or tostring(pos)
    end
    fix_ticket(e.ticket)
    if type(e.event_id) == "string" then ev.helpdesk_event_id = e.event_id end
  elseif ev.event_type == "helpdesk.ticket.created_v1" then
    fix_ticket(e)
  elseif ev.event_type == "helpdesk.ticket.updated_v1" then
    fix_ticket(e.object)
    fix_ticket(e.old_object)
  end
end

local function check_token(p, token)
  if not p.verification_token then return true end
  if type(token) ~= "string" or not equal(token, p.verification_token) then
    return nil, invalid("token", "does not match the verification_token")
  end
  return true
end

local function check_signature(p, h, body)
  if not (h.signature and h.timestamp and h.nonce) then
    return nil, invalid("signature", "is missing: with an encrypt_key set, X-Lark-Signature, "
      .. "X-Lark-Request-Timestamp and X-Lark-Request-Nonce are required")
  end
  local want = hex(sha256(h.timestamp, h.nonce, p.encrypt_key, body))
  if not equal(want, h.signature:lower()) then
    return nil, invalid("signature", "does not match the body (X-Lark-Signature)")
  end
  return true
end

-- The old card-action protocol signs with SHA-1 over the timestamp, the
-- nonce, the verification token and the raw body (the official SDKs'
-- card handlers), whether or not the body is encrypted.
local function check_card_signature(p, h, body)
  if not p.verification_token then
    return nil, invalid("signature", "of an old-protocol card action is made with the verification_token, "
      .. "which this receiver has not")
  end
  if not (h.signature and h.timestamp and h.nonce) then
    return nil, invalid("signature", "is missing: a card action needs X-Lark-Signature, "
      .. "X-Lark-Request-Timestamp and X-Lark-Request-Nonce")
  end
  local want = hex(sha1(h.timestamp, h.nonce, p.verification_token, body))
  if not equal(want, h.signature:lower()) then
    return nil, invalid("signature", "does not match the body (X-Lark-Signature of an old-protocol card action)")
  end
  return true
end

-- A card action of the old protocol: no envelope, no type, an action.
local function is_old_card(payload)
  return payload.schema == nil and payload.type == nil and type(payload.action) == "table"
end

local function check_timestamp(p, h)
  if p.max_skew == false or h.timestamp == nil then return true end
  local ts = h.timestamp:match("^%d+$") and #h.timestamp <= 12 and tonumber(h.timestamp)
  if not ts then return nil, invalid("timestamp", "X-Lark-Request-Timestamp must be Unix seconds") end
  local skew = ts - time()
  if abs(skew) > p.max_skew then
    return nil, invalid("timestamp", ("X-Lark-Request-Timestamp is %d s %s this host's clock (max_skew %s)")
      :format(abs(skew), skew < 0 and "behind" or "ahead of", tostring(p.max_skew)))
  end
  return true
end

-- The event table of a v2 or v1 payload, or nil and an invalid error.
local function shape(payload)
  local ev
  if payload.schema ~= nil then
    local head = payload.header
    if payload.schema ~= "2.0" or type(head) ~= "table" then
      return nil, invalid("body", "has an unknown schema (not 2.0 with a header)")
    end
    if type(head.event_type) ~= "string" or type(head.event_id) ~= "string" then
      return nil, invalid("body", "header needs event_type and event_id strings")
    end
    ev = {
      schema = "2.0", event_type = head.event_type, event_id = head.event_id,
      create_time = ms_integer(head.create_time), app_id = head.app_id, tenant_key = head.tenant_key,
      event = payload.event,
    }
    return ev, nil, head.token
  end
  if payload.type == "event_callback" then
    local e = payload.event
    if type(e) ~= "table" or type(e.type) ~= "string" or type(payload.uuid) ~= "string" then
      return nil, invalid("body", "v1 event_callback needs uuid and event.type")
    end
    ev = {
      schema = "1.0", event_type = e.type, event_id = payload.uuid, create_time = ts_ms(payload.ts),
      app_id = e.app_id, tenant_key = e.tenant_key, event = e,
    }
    return ev, nil, payload.token
  end
  return nil, invalid("body", "is neither a v2 event (schema 2.0), a v1 event_callback nor a url_verification")
end

--- Decodes and checks one request Feishu pushed. In order: the size, the
-- JSON, the decryption (when the body is `{"encrypt": …}`), the URL
-- verification (answered here: it carries no signature), the signature
-- (required whenever an `encrypt_key` is set), the timestamp window, the
-- verification token (on every event), the shape.
-- @tparam table headers the request headers, names in any case (a value may
-- be a list of one, as `ngx.req.get_headers()` gives); `nil` for none
-- @string body the raw request body, byte for byte (the signature covers it)
-- @treturn[1] table `{ challenge = "…" }` for the URL verification: answer
-- `{"challenge":"…"}` with status 200
-- @treturn[2] table an event: `schema` (`"2.0"` or `"1.0"`), `event_type`,
-- `event_id` (the header's; v1: `uuid`), `create_time` (integer milliseconds),
-- `app_id`, `tenant_key`, `event` (the event's body as Lua tables, ids strings,
-- integers integers), and for a ticket message `helpdesk_event_id` (the inner
-- `event.event_id`, which `answer_user_query` takes). The token is not kept.
-- A card action of the new protocol is such an event, of type
-- `card.action.trigger`; one of the old protocol (no envelope, signed with
-- SHA-1 over timestamp, nonce, verification token and body) has `schema`
-- `"card"`, `event_type` `card.action.trigger_v1`, no `event_id`, and the
-- body as `event`. @{card_action} reads both.
-- @return[3] nil
-- @treturn[3] helpdesk.errors.Error `invalid`, `field` one of `body`,
-- `headers`, `encrypt`, `signature`, `timestamp`, `token`; its message never
-- holds the encrypt key or the token
function Receiver:decode(headers, body)
  local p = private[self]
  if p == nil then return nil, invalid("receiver", "must be made by helpdesk.events.new") end
  if type(body) ~= "string" then return nil, invalid("body", "must be a string (the raw request body)") end
  if #body > p.max_body then
    return nil, invalid("body", "is larger than max_body_size (" .. p.max_body .. " bytes)")
  end
  local read, h, err = pcall(read_headers, headers)
  if not read then
    return nil, invalid("headers", "could not be read (reading them raised an error: " .. tostring(h) .. ")")
  end
  if not h then return nil, err end
  local payload = json.decode(body)
  if type(payload) ~= "table" or is_list(payload) then return nil, invalid("body", "is not a JSON object") end
  if payload.encrypt ~= nil then
    if not p.aes_key then return nil, invalid("encrypt", "arrived but no encrypt_key is set") end
    local plain = type(payload.encrypt) == "string" and decrypt(p.aes_key, payload.encrypt)
    payload = plain and json.decode(plain)
    if type(payload) ~= "table" or is_list(payload) then return nil, invalid("encrypt", UNDECRYPTABLE) end
  end
  local ok
  if payload.type == "url_verification" then
    ok, err = check_token(p, payload.token)
    if not ok then return nil, err end
    if type(payload.challenge) ~= "string" then return nil, invalid("body", "url_verification needs a challenge") end
    return { challenge = payload.challenge }
  end
  if is_old_card(payload) then
    ok, err = check_card_signature(p, h, body)
    if not ok then return nil, err end
    ok, err = check_timestamp(p, h)
    if not ok then return nil, err end
    -- its token is the card's update token (c-…), not the verification token
    return { schema = "card", event_type = CARD_ACTION_V1, app_id = payload.app_id, tenant_key = payload.tenant_key,
             event = payload }
  end
  if p.encrypt_key then
    ok, err = check_signature(p, h, body)
    if not ok then return nil, err end
  end
  ok, err = check_timestamp(p, h)
  if not ok then return nil, err end
  local ev, token
  ev, err, token = shape(payload)
  if not ev then return nil, err end
  ok, err = check_token(p, token)
  if not ok then return nil, err end
  tolerate(ev)
  return ev
end

--- Sets the handler of an event type (`"*"`: of every type without one
-- of its own), run by @{Receiver:handle} once per event.
-- @string event_type such as `"helpdesk.ticket_message.created_v1"`
-- @tparam function handler `function(event)`: raising, or returning `nil`
-- and an error, says it failed. A card action's handler (`card.action.trigger`,
-- `card.action.trigger_v1`) returns the answer: a @{card_reply}, a table
-- sent as JSON as it is, or nothing (`{}`)
-- @treturn[1] Receiver the receiver
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error `invalid`
function Receiver:on(event_type, handler)
  if type(self) ~= "table" or type(self.handlers) ~= "table" then
    return nil, invalid("receiver", "must be made by helpdesk.events.new")
  end
  if type(event_type) ~= "string" or event_type == "" then
    return nil, invalid("event_type", "must be an event type such as helpdesk.ticket_message.created_v1, or *")
  end
  if type(handler) ~= "function" then return nil, invalid("handler", "must be a function") end
  self.handlers[event_type] = handler
  return self
end

local function answer(msg)
  return json.encode({ msg = msg })
end

-- Failures of the sender's credentials (401) as against a malformed request.
local UNAUTHORIZED = { token = true, signature = true, timestamp = true }

local claim -- below: handle but for running the handler

-- The runs under way in this Lua state, by the value of their claim: what
-- runs the handler (its coroutine, or what stands for it until it runs).
-- Weak values: a run abandoned (its coroutine dropped by a server that
-- cancelled its task, and collected) leaves a claim nobody will end, known
-- for one by a later push. A claim's value: RUNNING and a lock value of
-- this state's (helpdesk.token's, drawn anew in a new process).
local runs = setmetatable({}, { __mode = "v" })
local MAIN = {} -- coroutine.running() of the main thread on Lua 5.1
local RUNNING = "running "

-- What the stored value v of an event says: "running" (a run under way,
-- here or in another process: until its claim expires), "abandoned" (a run
-- of this state's that nobody will end), or nil (the event was handled).
local function run_state(v)
  if type(v) ~= "string" or v:sub(1, #RUNNING) ~= RUNNING then return nil end
  if not claims.own(v:sub(#RUNNING + 1)) then return "running" end
  local co = runs[v]
  if co == nil then return "abandoned" end
  -- out of nginx (whose coroutine.status knows only the request's own)
  if type(co) == "thread" and not rawget(_G, "ngx") and costatus(co) == "dead" then return "abandoned" end
  return "running"
end

-- Ends the claim of a run: the event remembered as handled for `remember`
-- seconds, or forgotten (only if the claim is still this run's) so that
-- Feishu's next push runs it again.
local function settle(p, key, value, done)
  if value then runs[value] = nil end
  local st = p.store
  if done then
    pcall(st.set, st, key, 1, p.remember)
  elseif value then
    local ok, v = pcall(st.get, st, key)
    if ok and v == value then pcall(st.delete, st, key) end
  end
end
local card_in_nginx -- below: a card action's handler run in nginx, with its time limit

local CardReply = { __name = "helpdesk.events.card_reply" }
CardReply.__index = CardReply

local TOAST_TYPES = { info = true, success = true, error = true, warning = true }

local function toast_of(t)
  if type(t) ~= "table" then
    return nil, invalid("toast", "must be a table: { type = \"success\", content = \"…\" }")
  end
  local ok, err = validate.known_keys("toast", t, { type = true, content = true, i18n = true })
  if not ok then return nil, err end
  if not TOAST_TYPES[t.type] then return nil, invalid("toast", "type must be info, success, error or warning") end
  if t.content == nil and t.i18n == nil then return nil, invalid("toast", "needs content (or i18n)") end
  if t.content ~= nil then
    if type(t.content) ~= "string" or t.content == "" then
      return nil, invalid("toast", "content must be a non-empty string")
    end
    ok, err = validate.utf8("toast", t.content)
    if not ok then return nil, err end
  end
  if t.i18n ~= nil then
    if type(t.i18n) ~= "table" or next(t.i18n) == nil then
      return nil, invalid("toast", "i18n must be a table of language = text, such as { en_us = \"Done\" }")
    end
    for lang, text in pairs(t.i18n) do
      if type(lang) ~= "string" or type(text) ~= "string" or text == "" then
        return nil, invalid("toast", "i18n must map language names to non-empty strings")
      end
      ok, err = validate.utf8("toast", text)
      if not ok then return nil, err end
    end
  end
  return { type = t.type, content = t.content, i18n = t.i18n }
end

local function template_of(t)
  if type(t) ~= "table" then
    return nil, invalid("template", "must be a table: { id = \"AAq…\", variables = { … } }")
  end
  local ok, err = validate.known_keys("template", t, { id = true, variables = true, version = true })
  if not ok then return nil, err end
  if type(t.id) ~= "string" or t.id == "" then return nil, invalid("template", "id must be a non-empty string") end
  if t.version ~= nil and (type(t.version) ~= "string" or t.version == "") then
    return nil, invalid("template", "version must be a non-empty string")
  end
  if t.variables ~= nil then
    if type(t.variables) ~= "table" then return nil, invalid("template", "variables must be a table") end
    ok, err = validate.content_table(t.variables, "template")
    if not ok then return nil, err end
  end
  return { template_id = t.id, template_variable = t.variables, template_version_name = t.version }
end

-- A card_reply's card as the handler left it, checked again (it may have
-- changed it since card_reply made it): the card, or nil and a message.
local function card_of(card)
  if type(card) ~= "table" or getmetatable(card) ~= nil or (card.type ~= "raw" and card.type ~= "template")
      or type(card.data) ~= "table" then
    return nil, "the card reply's card was changed after card_reply made it"
  end
  local ok, err = validate.content_table(card.data, "card")
  if not ok then return nil, "the card reply's " .. err.msg end
  return card
end

-- The status and JSON body answering a card action whose handler returned
-- reply (a card_reply, a table as it is, or nothing); a 500 for a reply
-- that cannot be sent, and why. Every number goes out exactly (json.encode_exact).
local function card_answer(ev, reply)
  local function refuse(msg) return 500, answer(msg), msg end
  if reply == nil or reply == true then return 200, "{}" end
  local t = reply
  if getmetatable(reply) == CardReply then
    local toast, card = rawget(reply, "toast"), rawget(reply, "card")
    local err
    if toast ~= nil then
      toast, err = toast_of(toast)
      if not toast then return refuse("the card reply's " .. err.msg) end
    end
    if card ~= nil then
      card, err = card_of(card)
      if not card then return refuse(err) end
    end
    if ev.event_type ~= CARD_ACTION_V1 then
      t = { toast = toast, card = card }
    elseif card and card.type == "template" then
      return refuse("a card template cannot answer an old-protocol card action")
    else
      t = {}
      for k, v in next, card and card.data or {} do t[k] = v end
      t.toast = toast
    end
  elseif type(reply) ~= "table" then
    return refuse("the card action's handler returned neither a card reply nor a table")
  end
  local text, err = json.encode_exact(t)
  if not text then return refuse("the card reply is not JSON: " .. tostring(err)) end
  return 200, text
end

--- Answers one request Feishu pushed: decodes it (@{Receiver:decode}),
-- answers the URL verification, and runs the event's handler once per event
-- id (for `remember` seconds, in the receiver's store: Feishu pushes an event
-- again when it got no 200 within 3 s). While the handler runs the event is
-- claimed as running (for at most `RUNNING_TTL` seconds): a push of it
-- meanwhile is answered 409, so that Feishu pushes it again later. A
-- handler that fails is answered 500 and forgotten, so Feishu's next push of
-- the event runs it again; one that succeeds never runs again for that
-- event. A run abandoned (its coroutine dropped, or closed) is run again by
-- the next push. A store that fails does not stop the handler. Never raises.
-- @tparam table headers the request headers (any case)
-- @string body the raw request body
-- A card action is never de-duplicated (Feishu does not push one again)
-- and is answered with what its handler returns (see @{card_reply}).
-- @treturn int the status to answer: 200, 400 (a malformed request), 401
-- (a wrong token or signature, a stale timestamp), 409 (the event's handler
-- is running) or 500 (the handler failed)
-- @treturn string the JSON body to answer: the challenge, `{}`, a card
-- action's reply, or `{"msg":…}`
-- @return the event (its `duplicate` is `true` when it was handled before,
-- its `running` when its handler is running),
-- the challenge table, or the error (an `invalid` error, or what the handler
-- raised or returned)
function Receiver:handle(headers, body)
  local status, answer_body, ev, handler, key, value = claim(self, headers, body)
  if handler then
    local ran, r1, r2 = pcall(handler, ev)
    local failed = not ran or (r1 == nil and r2 ~= nil)
    if key then settle(private[self], key, value, not failed) end
    if failed then
      return 500, answer("the handler failed"), ran and r2 or r1
    end
    if CARD[ev.event_type] then
      status, answer_body = card_answer(ev, r1)
    end
  elseif key then
    settle(private[self], key, value, true) -- no handler: handled all the same
  end
  return status, answer_body, ev
end

-- Everything of handle but running the handler: the status and body to
-- answer, the event (or challenge, or error), and for a new event, its
-- handler (if any), its key in the store and the value of its claim there
-- (nil when the store failed to take it). answered_first: for nginx_handler,
-- the event taken as handled (at most once) rather than claimed as running.
claim = function(self, headers, body, answered_first)
  local ev, err = self:decode(headers, body)
  if not ev then return UNAUTHORIZED[err.field] and 401 or 400, answer(err.msg), err end
  if ev.challenge then return 200, json.encode({ challenge = ev.challenge }), ev end
  if CARD[ev.event_type] then return 200, "{}", ev, self.handlers[ev.event_type] or self.handlers["*"] end
  local p = private[self]
  local key = "helpdesk:event:" .. tostring(ev.app_id) .. ":" .. ev.event_id
  local handler = self.handlers[ev.event_type] or self.handlers["*"]
  -- the event claimed as running (not yet handled) for a bounded time; or,
  -- for nginx_handler, which answers before the handler runs, as handled
  local st, value, ttl = p.store, RUNNING .. claims.lock_value(), M.RUNNING_TTL
  if answered_first then value, ttl = 1, p.remember end
  local function take()
    local ok, added, why = pcall(st.add, st, key, value, ttl)
    if not ok then return false, "failed" end
    if added then return true end
    return false, why or "exists"
  end
  local added, why = take()
  if not added and why == "exists" then
    local ok, v = pcall(st.get, st, key)
    if not ok then v = nil end
    local state = run_state(v)
    if state == "abandoned" or v == nil then
      -- a run of this state that nobody will end (its coroutine dropped,
      -- or closed), or a claim gone meanwhile (or unreadable): taken anew,
      -- if the store lets it (else answered 409 below, never a duplicate)
      if state then pcall(st.delete, st, key) end
      added, why = take()
    elseif not state then
      ev.duplicate = true
      return 200, "{}", ev
    end
    if not added and why == "exists" then
      -- still running: not a 200, which would stand for it should it fail
      ev.running = true
      return 409, answer("the event is being handled: push it again later"), ev
    end
  end
  -- a store that fails (full, closed, raising): the event is handled (twice,
  -- maybe) rather than lost, with no claim to end
  if not added then
    value = nil
  elseif not answered_first then
    runs[value] = running() or MAIN
  end
  return 200, "{}", ev, handler, key, value
end

-- The raw body of the request nginx is serving (read from the temporary
-- file when it spilled to disk), or nil and why.
local function request_body(ngx)
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local file = ngx.req.get_body_file()
  if not file then return "" end
  local f, err = io.open(file, "rb")
  if not f then return nil, err end
  body, err = f:read("*a")
  f:close()
  return body, err
end

--- Answering card actions
-- @section cards

--- A card action's answer, for its handler to return: a toast the user
-- sees, an updated card, or both. Feishu takes it as the HTTP answer to the
-- action, within 3 s.
-- @tparam table opts `toast = { type = "info" | "success" | "error" |
-- "warning", content = "…" }` (or `i18n = { zh_cn = "…", en_us = "…" }` in
-- place of or besides `content`); `card`, the whole updated card as a table
-- (its JSON), or `template = { id =, variables =, version = }`, a card
-- template of the card builder; at least one of them
-- @treturn[1] table the reply. To the new protocol it goes as
-- `{"toast":{…},"card":{"type":"raw","data":…}}` (`"template"` and
-- `{template_id, template_variable, template_version_name}` for a template);
-- to the old, as the card's JSON itself with the toast beside its fields
-- (a template there is an error: the old protocol has none)
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error `invalid`, naming `reply`, `toast`, `card` or `template`
function M.card_reply(opts)
  if type(opts) ~= "table" then return nil, invalid("reply", "must be a table: { toast = …, card = … }") end
  local ok, err = validate.known_keys("reply", opts, { toast = true, card = true, template = true })
  if not ok then return nil, err end
  if opts.toast == nil and opts.card == nil and opts.template == nil then
    return nil, invalid("reply", "needs a toast, a card or a template")
  end
  if opts.card ~= nil and opts.template ~= nil then return nil, invalid("card", "and template exclude each other") end
  local r = {}
  if opts.toast ~= nil then
    r.toast, err = toast_of(opts.toast)
    if not r.toast then return nil, err end
  end
  if opts.card ~= nil then
    if type(opts.card) ~= "table" or next(opts.card) == nil then
      return nil, invalid("card", "must be the updated card, a table")
    end
    ok, err = validate.content_table(opts.card, "card")
    if not ok then return nil, err end
    r.card = { type = "raw", data = opts.card }
  elseif opts.template ~= nil then
    local data
    data, err = template_of(opts.template)
    if not data then return nil, err end
    r.card = { type = "template", data = data }
  end
  return setmetatable(r, CardReply)
end

--- Reads a card action of either protocol.
-- @tab ev an event from @{Receiver:decode}
-- @treturn table|nil `{ protocol = "new" | "old", value =, tag =, name =,
-- form_value =, option =, open_id =, user_id =, union_id =, open_message_id
-- =, open_chat_id =, token = }` (the `action` fields, the operator, the
-- message, the card's update token: what Feishu gave), nil for other events
function M.card_action(ev)
  local e = body_of(ev)
  if not e or not CARD[ev.event_type] then return nil end
  local action = type(e.action) == "table" and e.action or {}
  local a = { value = action.value, tag = action.tag, name = action.name, form_value = action.form_value,
              option = action.option, token = e.token }
  if ev.event_type == CARD_ACTION then
    local op = type(e.operator) == "table" and e.operator or {}
    local ctx = type(e.context) == "table" and e.context or {}
    a.protocol, a.open_id, a.user_id, a.union_id = "new", op.open_id, op.user_id, op.union_id
    a.open_message_id, a.open_chat_id = ctx.open_message_id, ctx.open_chat_id
  else
    a.protocol, a.open_id, a.user_id = "old", e.open_id, e.user_id
    a.open_message_id, a.open_chat_id = e.open_message_id, e.open_chat_id
  end
  return a
end

--- Serving in nginx
-- @section nginx

local TIMED_OUT = {}

-- Runs a card action's handler in a light thread of the request, waiting
-- for it at most timeout seconds: the status and body to answer, and true
-- when the handler is still running (answered {}: Feishu waits 3 s only).
-- A late handler that fails is logged when it ends, as one in time is.
card_in_nginx = function(ngx, timeout, handler, ev)
  local late = false
  local worker = ngx.thread.spawn(function()
    local ran, r1, r2 = pcall(handler, ev)
    if late and (not ran or (r1 == nil and r2 ~= nil)) then
      ngx.log(ngx.ERR, "helpdesk: the handler of a card action, answered {} after ", timeout,
              " s, then failed: ", tostring(ran and r2 or r1))
    end
    return ran, r1, r2
  end)
  local sleeper = ngx.thread.spawn(function()
    ngx.sleep(timeout)
    return TIMED_OUT
  end)
  local ok, ran, r1, r2 = ngx.thread.wait(worker, sleeper)
  if ran == TIMED_OUT then
    late = true
    ngx.log(ngx.ERR, "helpdesk: the handler of a card action took over ", timeout, " s: answered {}")
    return 200, "{}", true
  end
  ngx.thread.kill(sleeper)
  if not ok or not ran or (r1 == nil and r2 ~= nil) then
    ngx.log(ngx.ERR, "helpdesk: the handler of a card action failed: ", tostring(ran and r2 or r1))
    return 500, answer("the handler failed")
  end
  local status, text, why = card_answer(ev, r1)
  if why then
    ngx.log(ngx.ERR, "helpdesk: the reply of a card action's handler cannot be sent (answered 500): ", why)
  end
  return status, text
end

--- Serves Feishu's push in nginx: `content_by_lua_block {
-- helpdesk.events.nginx_handler(receiver) }`. It answers at once, as
-- @{Receiver:handle} would, and runs the event's handler after the answer
-- (in a timer, where it may call a client: the thread pool and the shared
-- budget work there), so a slow handler never makes Feishu push again. The
-- event is taken as handled when answered (at most once): a push of it
-- again is a duplicate, even while its handler runs. A handler that fails
-- is logged at `ngx.ERR`; Feishu, answered 200, does not push the event
-- again. A card action's handler runs before
-- the answer, which is its reply (see @{card_reply}): when it has not
-- returned within the receiver's `card_timeout` (default 2.5 s), `{}` is
-- answered and the handler left to finish (its failure, if it fails then,
-- logged at `ngx.ERR` too). Never raises.
-- @tparam Receiver receiver
-- @treturn int the status answered
function M.nginx_handler(receiver)
  local ngx = rawget(_G, "ngx")
  if type(ngx) ~= "table" or type(ngx.req) ~= "table" then return nil, invalid("nginx", "is not serving a request") end
  local body, berr = request_body(ngx)
  local status, answer_body, ev, handler, late, key, value
  if not body then
    status, answer_body = 400, answer("the request body could not be read: " .. tostring(berr))
  elseif getmetatable(receiver) ~= Receiver then
    status, answer_body = 500, answer("not a receiver")
  else
    status, answer_body, ev, handler, key, value = claim(receiver, ngx.req.get_headers(100), body, true)
  end
  local p = private[receiver]
  if handler and CARD[ev.event_type] then
    local ok, s1, b1, l1 = pcall(card_in_nginx, ngx, private[receiver].card_timeout, handler, ev)
    if ok then
      status, answer_body, late = s1, b1, l1
    else -- no light threads here (not a content handler), or a bug: the handler may not have run
      ngx.log(ngx.ERR, "helpdesk: a card action could not be served in light threads of the request ",
              "(nginx_handler belongs in content_by_lua): ", tostring(s1))
      status, answer_body = 500, answer("the card action could not be served")
    end
    handler = nil
  end
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["Content-Length"] = #answer_body
  ngx.print(answer_body)
  -- the handler still runs: the answer goes now, not when it ends
  if late then ngx.eof() end
  if handler then
    local ok, terr = ngx.timer.at(0, function(premature)
      if premature then -- nginx is exiting: it never ran, a push to come may run it
        if key then settle(p, key, value, false) end
        return
      end
      local ran, r1, r2 = pcall(handler, ev)
      if not ran or (r1 == nil and r2 ~= nil) then
        ngx.log(ngx.ERR, "helpdesk: the handler of ", ev.event_type, " ", ev.event_id, " failed: ",
                tostring(ran and r2 or r1))
      end
    end)
    if not ok then
      ngx.log(ngx.ERR, "helpdesk: no timer for the event handler: ", tostring(terr))
      if key then settle(p, key, value, false) end
    end
  end
  return status
end

--- Readers of helpdesk events
-- @section readers

local SENDER_TYPES = { [1] = "bot", [2] = "guest", [3] = "agent" }

--- The ticket id of a helpdesk event (`event.ticket.ticket_id` of a ticket
-- message, `event.ticket_id` of a created ticket, `event.object.ticket_id`
-- of an updated one).
-- @tab ev an event from @{Receiver:decode}
-- @treturn string|nil the ticket id, nil for other events
function M.ticket_id(ev)
  local e = body_of(ev)
  if not e then return nil end
  local t = ev.event_type
  local id
  if t == TICKET_MESSAGE then
    id = type(e.ticket) == "table" and e.ticket.ticket_id
  elseif t == "helpdesk.ticket.created_v1" then
    id = e.ticket_id
  elseif t == "helpdesk.ticket.updated_v1" then
    id = type(e.object) == "table" and e.object.ticket_id
  end
  if type(id) == "string" then return id end
  return nil
end

--- The message type of a ticket message event: `"text"`, `"post"`,
-- `"image"`… (`event.msg_type`, else `event.content.msg_type`).
-- @tab ev an event from @{Receiver:decode}
-- @treturn string|nil
function M.message_type(ev)
  local e = body_of(ev)
  if not e or ev.event_type ~= TICKET_MESSAGE then return nil end
  local t = e.msg_type
  if type(t) ~= "string" and type(e.content) == "table" then t = e.content.msg_type end
  if type(t) == "string" then return t end
  return nil
end

--- Who wrote a ticket message: `{ type = "bot" | "guest" | "agent",
-- type_code = n, open_id =, user_id =, union_id = }` (the ids when Feishu
-- gives them: none for the bot).
-- @tab ev an event from @{Receiver:decode}
-- @treturn table|nil nil for other events
function M.sender(ev)
  local e = body_of(ev)
  if not e or ev.event_type ~= TICKET_MESSAGE then return nil end
  local code = tonumber(e.sender_type)
  local s = { type = SENDER_TYPES[code], type_code = code }
  if type(e.sender_id) == "table" then
    for _, k in pairs({ "open_id", "user_id", "union_id" }) do
      if type(e.sender_id[k]) == "string" then s[k] = e.sender_id[k] end
    end
  end
  return s
end

-- Ticket status codes (API-NOTES: the helpdesk ticket's status).
local TICKET_STATUSES = {
  [1] = "created", [2] = "processing", [3] = "queued", [4] = "pending", [5] = "waiting_for_user",
  [50] = "closed_by_bot", [51] = "closed_by_agent", [52] = "closed_by_user",
}
M.TICKET_STATUSES = TICKET_STATUSES

--- The status of the ticket of a ticket event, by name: `"created"`,
-- `"processing"`, `"queued"`, `"pending"`, `"waiting_for_user"`,
-- `"closed_by_bot"`, `"closed_by_agent"` or `"closed_by_user"` (a code
-- Feishu has not documented reads `"unknown"`); and for an updated ticket,
-- the status before, when it changed (`old_object.status`).
-- @tab ev an event from @{Receiver:decode}
-- @treturn string|nil the status, nil for other events or when not given
-- @treturn string|nil the status before, for `helpdesk.ticket.updated_v1`
-- @treturn int|nil the status code
function M.ticket_status(ev)
  local e = body_of(ev)
  if not e then return nil end
  local now, before
  if ev.event_type == "helpdesk.ticket.created_v1" then
    now = e.status
  elseif ev.event_type == "helpdesk.ticket.updated_v1" then
    now = type(e.object) == "table" and e.object.status
    before = type(e.old_object) == "table" and e.old_object.status
  else
    return nil
  end
  local function name(code)
    code = tonumber(code)
    if not code then return nil end
    return TICKET_STATUSES[code] or "unknown"
  end
  return name(now), name(before), tonumber(now)
end

--- The plain text of a ticket message event of type text
-- (`event.content.content`, else `event.text`); `helpdesk.text_of` takes
-- such events too.
-- @tab ev an event from @{Receiver:decode}
-- @treturn[1] string
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error `invalid` when it is not a text message event
function M.text_of(ev)
  local e = body_of(ev)
  if e and ev.event_type == TICKET_MESSAGE and M.message_type(ev) == "text" then
    local text = type(e.content) == "table" and e.content.content
    if type(text) ~= "string" then text = e.text end
    if type(text) == "string" then return text end
  end
  return nil, invalid("message", "is not a text ticket message event")
end

-- A public function never raises: what raises inside (input whose
-- metamethods raise, a handler's reply changed into nonsense, a bug) is an
-- error, with the receiver's secrets redacted from its message.
local function raised_error(r, what)
  local ok, text = pcall(tostring, what)
  text = ok and text or "(an error that cannot be shown)"
  local err = errors.new("invalid", { field = "input", msg = "reading the input raised an error: " .. text })
  local p = private[r]
  if p then
    local secrets = {}
    if p.verification_token then secrets[#secrets + 1] = p.verification_token end
    if p.encrypt_key then secrets[#secrets + 1] = p.encrypt_key end
    errors.redact(err, secrets)
  end
  return err
end

local handle = Receiver.handle
function Receiver.handle(self, headers, body)
  if private[self] == nil then
    return 500, answer("not a receiver"),
      invalid("receiver", "must be made by helpdesk.events.new (call receiver:handle(headers, body), with a colon)")
  end
  local ok, status, text, ev = pcall(handle, self, headers, body)
  if ok then return status, text, ev end
  return 500, answer("the request could not be handled"), raised_error(self, status)
end

for _, name in ipairs({ "decode", "on" }) do
  local f = Receiver[name]
  Receiver[name] = function(self, ...)
    local ok, a, b = pcall(f, self, ...)
    if ok then return a, b end
    return nil, raised_error(self, a)
  end
end

for _, name in ipairs({ "card_reply", "card_action", "ticket_id", "message_type", "sender", "ticket_status",
                        "text_of" }) do
  local f = M[name]
  M[name] = function(...)
    local ok, a, b, c = pcall(f, ...)
    if ok then return a, b, c end
    return nil, raised_error(nil, a)
  end
end

local nginx_handler = M.nginx_handler
function M.nginx_handler(receiver)
  local ok, status, err = pcall(nginx_handler, receiver)
  if ok then return status, err end
  local ngx = rawget(_G, "ngx")
  ngx.log(ngx.ERR, "helpdesk: serving Feishu's push raised an error: ", tostring(raised_error(receiver, status)))
  if not ngx.headers_sent then
    local text = answer("the request could not be handled")
    ngx.status = 500
    ngx.header["Content-Type"] = "application/json; charset=utf-8"
    ngx.header["Content-Length"] = #text
    ngx.print(text)
  end
  return 500
end

return M
