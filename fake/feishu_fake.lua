-- The fake Feishu: the tenant token endpoint and the three helpdesk v1
-- endpoints as ../shared/seeds documents them, plus /_fake/* control
-- endpoints for the specs. One nginx worker, so module state is the truth.
local cjson = require "cjson.safe"

local ngx = ngx
local M = {}

local TOKEN_INVALID_MSG = "Invalid access token for authorization"

local state

local function reset()
  state = {
    config = {
      app_id = "cli_fake_app",
      app_secret = "fake-app-secret",
      helpdesk_id = "6939767543285809180",
      helpdesk_token = "fake-helpdesk-token",
      token_ttl = 7200,
      record = true,
    },
    clock_offset = 0,   -- seconds now() runs ahead of the wall clock (/_fake/clock)
    tokens = {},        -- token -> expiry (now() seconds)
    revoked = {},       -- token -> true once /_fake/revoke_tokens (or expire_tokens) ran
    expired_token_uses = 0, -- helpdesk requests with an issued token past its expiry
    revoked_token_uses = 0, -- helpdesk requests with a revoked token
    admitted = {},      -- endpoint -> times of the requests let through
    rate_limited = 0,   -- 429s answered
    token_count = 0,
    tickets = {},       -- ticket_id -> { closed =, messages = {} }
    bot_messages = {},
    subscriptions = {}, -- "type/subtype" -> true, by /events/subscribe
    pushes = {},        -- each try of each /_fake/push: { push =, n =, status =, error = }
    texts = { received = {}, delivered = {} }, -- text -> requests that carried it / deliveries
    requests = {},
    faults = {},
    listing = nil,      -- a hostile listing (/_fake/listing), nil for the honest one
    seq = 0,
  }
end
reset()

-- The fake's one clock: the wall clock plus the offset /_fake/clock advances,
-- so that a simulation on a fast-forward clock sees tokens expire and
-- rate-limit windows pass in its time. ngx.update_time: ngx.now() alone is
-- the time the event loop last woke, too coarse for a window.
local function now()
  ngx.update_time()
  return ngx.now() + state.clock_offset
end

-- A finite number (not NaN, not ±inf).
local function finite(v)
  return type(v) == "number" and v == v and v > -math.huge and v < math.huge
end

local function next_seq()
  state.seq = state.seq + 1
  return state.seq
end

local function log_id()
  return string.format("%s%06dFAKE", os.date("!%Y%m%d%H%M%S"), next_seq())
end

local function send(status, tbl, raw)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json; charset=utf-8"
  ngx.header["X-Tt-Logid"] = log_id()
  ngx.print(raw or cjson.encode(tbl))
  return ngx.exit(ngx.HTTP_OK)
end

local function fail(status, code, msg)
  return send(status, { code = code, msg = msg })
end

local function bad_request(why)
  return fail(400, 154000, "Bad request, please check your request body: " .. why)
end

local function ok(data)
  return send(200, { code = 0, msg = "success", data = data })
end

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if not body then
    local file = ngx.req.get_body_file()
    if file then
      local f = io.open(file, "rb")
      if f then
        body = f:read("*a")
        f:close()
      end
    end
  end
  return body
end

local function record(body)
  if not state.config.record then return end
  local headers = {}
  for k, v in pairs(ngx.req.get_headers(100, true)) do
    headers[k:lower()] = v
  end
  state.requests[#state.requests + 1] = {
    method = ngx.req.get_method(),
    path = ngx.var.uri,
    query = ngx.var.args,
    args = ngx.req.get_uri_args(),
    headers = headers,
    body = body,
    time = now(),
    connection = tonumber(ngx.var.connection),
  }
end

-- A fault set through /_fake/fault answers the next matching request(s):
-- { path =, method =, skip = n requests first, times =, status =, body =,
--   headers =, delay = seconds, close = true (no answer at all),
--   partial = true (headers and half the body, then the connection closes),
--   body_delay = seconds (headers and half the body, a pause, the rest),
--   pass = true (after delay, the normal answer: a slow endpoint),
--   from = a now() time: inactive before it (neither answers nor skips),
--   until = a now() time: active only while now() < until, dropped after;
--   with until and no times, unlimited while active,
--   echo = "body" or a request header's name: the answer quotes what the
--   client sent there, after body (so #body is where the quote starts) and
--   before after, as a gateway's error page quoting the request does;
--   decode64 = true quotes it base64-decoded; echo_header = a response
--   header's name: the quote goes there instead of into the body }
-- Drops the faults whose until has passed.
local function drop_past_faults(t)
  local i = 1
  while i <= #state.faults do
    local u = state.faults[i]["until"]
    if u and t >= u then table.remove(state.faults, i) else i = i + 1 end
  end
end

local function take_fault(method, path)
  if #state.faults == 0 then return nil end
  local t = now()
  drop_past_faults(t)
  for i, f in ipairs(state.faults) do
    if (not f.from or t >= f.from) and
        (not f.method or f.method == method) and (not f.path or path:find(f.path, 1, true)) then
      if (f.skip or 0) > 0 then
        f.skip = f.skip - 1
        return nil
      end
      if f.times ~= nil or f["until"] == nil then
        f.times = (f.times or 1) - 1
        if f.times <= 0 then table.remove(state.faults, i) end
      end
      return f
    end
  end
end

-- The text a fault with echo quotes: what the request carried there.
local function echoed(f, body)
  local src
  if f.echo == "body" then
    src = body or ""
  else
    src = ngx.req.get_headers(100)[f.echo] or ""
    if type(src) == "table" then src = table.concat(src, ", ") end
  end
  if f.decode64 then src = ngx.decode_base64(src) or "" end
  return (f.body or "") .. src .. (f.after or "")
end

local function apply_fault(f, request_body)
  if f.delay then ngx.sleep(f.delay) end
  if f.close then return ngx.exit(444) end
  ngx.status = f.status or 500
  for k, v in pairs(f.headers or {}) do ngx.header[k] = v end
  local body = f.body or ""
  if f.echo then
    local quote = echoed(f, request_body)
    if f.echo_header then ngx.header[f.echo_header] = quote else body = quote end
  end
  if f.logid ~= false and not (f.headers or {})["X-Tt-Logid"] and f.echo_header ~= "X-Tt-Logid" then
    ngx.header["X-Tt-Logid"] = log_id()
  end
  if f.partial or f.body_delay then
    ngx.header["Content-Length"] = #body
    local half = math.floor(#body / 2)
    ngx.print(body:sub(1, half))
    ngx.flush(true)
    if f.partial then return ngx.exit(444) end
    ngx.sleep(f.body_delay)
    ngx.print(body:sub(half + 1))
    return ngx.exit(ngx.HTTP_OK)
  end
  ngx.print(body)
  return ngx.exit(ngx.HTTP_OK)
end

-- Feishu's rate limits, when config.rate_limits sets them:
-- { ticket_message = { per_second =, per_minute = }, bot_message = …, list = … }.
-- Sliding windows; an answer over the limit is 429 with code 99991400.
local function endpoint_of(method, path)
  if path == "/open-apis/helpdesk/v1/message" then return "bot_message" end
  if path:match("^/open%-apis/helpdesk/v1/tickets/[^/]+/messages$") then
    return method == "POST" and "ticket_message" or "list"
  end
end

local function rate_limit(method, path)
  local limits = state.config.rate_limits
  local name = endpoint_of(method, path)
  local lim = limits and name and limits[name]
  if not lim then return end
  local t = now()
  local times = state.admitted[name] or {}
  state.admitted[name] = times
  while times[1] and times[1] <= t - 60 do table.remove(times, 1) end
  for window, key in pairs({ [1] = "per_second", [60] = "per_minute" }) do
    local max = lim[key]
    if max then
      local inside, oldest = 0, nil
      for i = #times, 1, -1 do
        if times[i] > t - window then
          inside, oldest = inside + 1, times[i]
        else
          break
        end
      end
      if inside >= max then
        state.rate_limited = state.rate_limited + 1
        ngx.status = 429
        ngx.header["Content-Type"] = "application/json; charset=utf-8"
        ngx.header["X-Tt-Logid"] = log_id()
        ngx.header["x-ogw-ratelimit-limit"] = tostring(max)
        ngx.header["x-ogw-ratelimit-reset"] = tostring(math.max(1, math.ceil(oldest + window - t)))
        ngx.print(cjson.encode({ code = 99991400, msg = "request trigger frequency limit" }))
        return ngx.exit(ngx.HTTP_OK)
      end
    end
  end
  times[#times + 1] = t
end

-- Whether a token is good, counting the uses of issued tokens that are not:
-- a revoked token counts as revoked whether or not it has expired too.
local function is_token_valid(token)
  local exp = state.tokens[token]
  if not exp then return false end
  if state.revoked[token] then
    state.revoked_token_uses = state.revoked_token_uses + 1
    return false
  end
  if exp <= now() then
    state.expired_token_uses = state.expired_token_uses + 1
    return false
  end
  return true
end

local function b64_credential()
  return ngx.encode_base64(state.config.helpdesk_id .. ":" .. state.config.helpdesk_token)
end

-- Both credentials, as every helpdesk endpoint checks them.
local function check_auth(headers)
  local auth = headers["authorization"]
  if not auth then return fail(400, 99991661, "Missing access token for authorization") end
  local token = auth:match("^Bearer (.+)$")
  if not token or not is_token_valid(token) then
    return fail(400, 99991663, TOKEN_INVALID_MSG)
  end
  local credential = headers["x-lark-helpdesk-authorization"]
  -- config.helpdesk_bearer: also take the "Bearer " prefix the official Node
  -- SDK sends, for the side-by-side bench only (the documents say raw)
  if state.config.helpdesk_bearer and type(credential) == "string" then
    credential = credential:gsub("^Bearer ", "")
  end
  if credential ~= b64_credential() then
    return fail(401, 154001, "Unauthorized, please check you have the correct access")
  end
end

-- /_fake/texts: per text of a text message, the requests that carried it
-- (whatever became of them: a fault, a 429) and its deliveries.
local function count_text(what, text)
  if type(text) == "string" then state.texts[what][text] = (state.texts[what][text] or 0) + 1 end
end

local function json_object(text)
  if type(text) ~= "string" or not text:match("^%s*{") then return nil end
  local v = cjson.decode(text)
  if type(v) ~= "table" then return nil end
  return v
end

local function ticket(id)
  local t = state.tickets[id]
  if not t then
    t = { closed = false, messages = {}, delivered = {}, delivered_total = 0 }
    state.tickets[id] = t
  end
  return t
end

local function new_message(msg_type, content_text, created_at)
  local n = next_seq()
  return {
    id = string.format("69%017d", n),
    message_id = string.format("om_%032x", n),
    message_type = msg_type,
    created_at = created_at or math.floor(now() * 1000),
    content = cjson.encode({ content = content_text, msg_type = msg_type }),
    user_name = "Helpdesk Agent",
    avatar_url = "https://example.invalid/avatar.png",
    user_id = "ou_fake_agent",
  }
end

local function has_bad_url(post)
  for _, lang in pairs(post) do
    if type(lang) == "table" and type(lang.content) == "table" then
      for _, line in ipairs(lang.content) do
        for _, el in ipairs(type(line) == "table" and line or {}) do
          if type(el) == "table" and el.tag == "a" and
              not (type(el.href) == "string" and el.href:match("^https?://[%w%.%-]+")) then
            return true
          end
        end
      end
    end
  end
  return false
end

-- Shared by both POST endpoints: content must be a JSON string of an object
-- shaped for its msg_type.
local function check_content(msg_type, content)
  local c = json_object(content)
  if not c then return nil, "content must be a JSON string of an object" end
  if msg_type == "text" and type(c.text) ~= "string" then return nil, "text content needs text" end
  if msg_type == "post" and type(c.post) ~= "table" then return nil, "post content needs post" end
  if msg_type == "image" and type(c.image_key) ~= "string" then return nil, "image needs image_key" end
  if msg_type == "interactive" and (c.schema == "2.0" or c.schema == 2) then
    return nil, "card JSON 2.0 is not supported"
  end
  return c
end

local function token_endpoint(body)
  local req = json_object(body)
  if not req then return fail(400, 10003, "invalid param") end
  if req.app_id ~= state.config.app_id then return fail(400, 10003, "invalid param: app_id") end
  if req.app_secret ~= state.config.app_secret then return fail(400, 10014, "app secret invalid") end
  state.token_count = state.token_count + 1
  local token = string.format("t-fake%08d%s", state.token_count, ngx.md5(tostring(ngx.now()) .. next_seq()):sub(1, 16))
  local ttl = state.config.token_ttl
  state.tokens[token] = now() + ttl
  return send(200, { code = 0, msg = "ok", tenant_access_token = token, expire = ttl })
end

local function send_ticket_message(ticket_id, body, headers)
  local ctype = headers["content-type"] or ""
  if not ctype:find("application/json", 1, true) then return bad_request("content-type") end
  local req = json_object(body)
  if not req then return bad_request("body is not a JSON object") end
  if req.msg_type ~= "text" and req.msg_type ~= "post" then return bad_request("msg_type") end
  local c, why = check_content(req.msg_type, req.content)
  if not c then return bad_request(why) end
  local t = ticket(ticket_id)
  if t.closed then return fail(401, 154401, "Ticket already be closed") end
  if req.msg_type == "post" and has_bad_url(c.post) then
    return fail(401, 154403, "Send message with bad url")
  end
  local m = new_message(req.msg_type, req.msg_type == "text" and c.text or req.content)
  t.messages[#t.messages + 1] = m
  if req.msg_type == "text" then -- for /_fake/delivered, kept with record = false too
    count_text("delivered", c.text)
    t.delivered[c.text] = (t.delivered[c.text] or 0) + 1
    t.delivered_total = t.delivered_total + 1
  end
  return ok({ message_id = m.message_id })
end

local BOT_TYPES = { text = true, post = true, image = true, interactive = true }
local ID_TYPES = { open_id = true, union_id = true, user_id = true }

-- /open-apis/helpdesk/v1/events/subscribe and /unsubscribe: the helpdesk
-- events an app is sent (besides the console's setting).
local EVENT_SUBTYPES = {
  ["helpdesk.ticket_message"] = { ["ticket_message.created_v1"] = true },
  ["helpdesk.ticket"] = { ["ticket.created_v1"] = true, ["ticket.updated_v1"] = true },
  ["helpdesk.notification"] = { ["notification.approve_v1"] = true },
}

local function subscription(body, on)
  local req = json_object(body)
  if not req or type(req.events) ~= "table" or #req.events == 0 then return bad_request("events") end
  for _, e in ipairs(req.events) do
    if type(e) ~= "table" or not (EVENT_SUBTYPES[e.type] and EVENT_SUBTYPES[e.type][e.subtype]) then
      return bad_request("events")
    end
  end
  for _, e in ipairs(req.events) do state.subscriptions[e.type .. "/" .. e.subtype] = on or nil end
  return send(200, nil, '{"code":0,"msg":"success","data":{}}')
end

local function bot_message(body, headers)
  local ctype = headers["content-type"] or ""
  if not ctype:find("application/json", 1, true) then return bad_request("content-type") end
  local args = ngx.req.get_uri_args()
  if args.user_id_type ~= nil and not ID_TYPES[args.user_id_type] then
    return bad_request("user_id_type")
  end
  local req = json_object(body)
  if not req then return bad_request("body is not a JSON object") end
  if not BOT_TYPES[req.msg_type] then return bad_request("msg_type") end
  local c, why = check_content(req.msg_type, req.content)
  if not c then return bad_request(why) end
  if type(req.receiver_id) ~= "string" or req.receiver_id == "" then return bad_request("receiver_id") end
  if req.receive_type ~= nil and req.receive_type ~= "chat" and req.receive_type ~= "user" then
    return bad_request("receive_type")
  end
  if req.receiver_id == "ou_unknown" then return fail(404, 154004, "Resource not found") end
  local n = next_seq()
  local m = { message_id = string.format("om_%032x", n), msg_type = req.msg_type, content = req.content,
              receiver_id = req.receiver_id, receive_type = req.receive_type or "chat",
              user_id_type = args.user_id_type or "open_id" }
  state.bot_messages[#state.bot_messages + 1] = m
  if req.msg_type == "text" then count_text("delivered", c.text) end
  return ok({ message_id = m.message_id })
end

local function int_arg(v, min, max)
  if v == nil then return nil, true end
  if type(v) ~= "string" or not v:match("^%d+$") then return nil, false end
  local n = tonumber(v)
  if n < min or (max and n > max) then return nil, false end
  return n, true
end

local hostile_page

-- config.listing: a listing that misbehaves, for the iterator's own stops.
-- "repeat": the same full page each time, no total; "endless": full pages of
-- new messages, no total; "growing": new full pages, total one page ahead;
-- "object": messages as a JSON object; "short": total 450, then an empty
-- page after the first; "backwards": page 2 repeats page 1's messages.
local function hostile_message(n)
  return { id = "7" .. string.format("%018d", n), message_id = "om_h" .. n, message_type = "text",
           content = cjson.encode({ text = "h" .. n }), created_at = 1700000000000 + n, user_name = "h" }
end

hostile_page = function(mode, page, size)
  local out = {}
  local first = (mode == "repeat" or (mode == "backwards" and page == 2)) and 1 or (page - 1) * size + 1
  for n = first, first + size - 1 do out[#out + 1] = hostile_message(n) end
  if mode == "repeat" or mode == "endless" then return ok({ messages = out }) end
  if mode == "growing" then return ok({ messages = out, total = (page + 1) * size }) end
  if mode == "backwards" then return ok({ messages = out, total = 10 * size }) end
  if mode == "object" then
    local obj = {}
    for i, m in ipairs(out) do obj["m" .. i] = m end
    return ok({ messages = obj, total = 450 })
  end
  if mode == "short" and page == 1 then return ok({ messages = out, total = 450 }) end
  return send(200, nil, '{"code":0,"msg":"success","data":{"messages":[],"total":450}}')
end

-- An answer with data.messages a list even when empty: lua-cjson 2.1
-- encodes an empty table as {}, Feishu sends [].
local function send_page(messages, total)
  if #messages == 0 then
    local raw = cjson.encode({ code = 0, msg = "success", data = { messages = "\0EMPTY", total = total } })
    return send(200, nil, (raw:gsub('"\\u0000EMPTY"', "[]")))
  end
  return ok({ messages = messages, total = total })
end

-- /_fake/listing: a server that does not page as the documents say, over
-- the ticket's own messages (config.listing's modes make up their own).
-- { mode =, total = a number to report instead, no_total = true (total left
-- out) }; the modes, for page p of size n of the ticket's list:
--   repeat      page 1, whatever p is
--   overlap     each page starts half a page before the end of the one before
--   back        page p - 1 (page 1 for p = 1)
--   grow        n new messages every time (not stored), total one more than p * n
--   object      page p with data.messages an object keyed by message id
--   descending  the list newest first: an honest server of the other order
M.LISTING_MODES = { ["repeat"] = true, overlap = true, back = true, grow = true, object = true,
                    descending = true }

local function slice(list, first, count)
  local out = {}
  for i = math.max(first, 1), math.min(first + count - 1, #list) do out[#out + 1] = list[i] end
  return out
end

local function listing_page(t, page, size)
  local h, list = state.listing, t.messages
  local total, out = #list
  if h.mode == "repeat" then
    out = slice(list, 1, size)
  elseif h.mode == "overlap" then
    out = slice(list, (page - 1) * size - math.floor(size / 2) * (page - 1) + 1, size)
  elseif h.mode == "back" then
    out = slice(list, (math.max(page, 2) - 2) * size + 1, size)
  elseif h.mode == "grow" then
    out = {}
    for _ = 1, size do
      local n = state.seq + 1
      out[#out + 1] = new_message("text", "grown " .. n, 1700000000000 + n)
    end
    total = page * size + 1
  elseif h.mode == "descending" then
    local rev = {}
    for i = #list, 1, -1 do rev[#rev + 1] = list[i] end
    out = slice(rev, (page - 1) * size + 1, size)
  else -- object
    out = {}
    for _, m in ipairs(slice(list, (page - 1) * size + 1, size)) do out[m.id] = m end
  end
  if h.total ~= nil then total = h.total end
  if h.no_total then total = nil end
  if h.mode == "object" then return ok({ messages = out, total = total }) end
  return send_page(out, total)
end

local function list_messages(ticket_id)
  local args = ngx.req.get_uri_args()
  local page, ok1 = int_arg(args.page, 1)
  local size, ok2 = int_arg(args.page_size, 1, 200)
  local t0, ok3 = int_arg(args.time_start, 0)
  local t1, ok4 = int_arg(args.time_end, 0)
  if not (ok1 and ok2 and ok3 and ok4) then return bad_request("query") end
  page, size = page or 1, size or 20
  local hostile = state.config.listing
  if hostile then return hostile_page(hostile, page, size) end
  local t = ticket(ticket_id)
  if state.listing then return listing_page(t, page, size) end
  -- without filters, pages come straight from the list (fast enough for the bench)
  local matched = (t0 or t1) and {} or t.messages
  for _, m in ipairs((t0 or t1) and t.messages or {}) do
    local s = math.floor(m.created_at / 1000)
    if (not t0 or s >= t0) and (not t1 or s <= t1) then matched[#matched + 1] = m end
  end
  local out = {}
  for i = (page - 1) * size + 1, math.min(page * size, #matched) do out[#out + 1] = matched[i] end
  return send_page(out, #matched)
end

local function control_error(why)
  return send(400, { ok = false, error = why })
end

local function revoke_tokens()
  local n = 0
  for k in pairs(state.tokens) do
    if not state.revoked[k] then n = n + 1 end
    state.revoked[k] = true
  end
  return send(200, { ok = true, revoked = n })
end

-- Control endpoints for the specs; never part of Feishu.
local function control(path, body)
  local req = json_object(body) or {}
  if path == "/_fake/reset" then
    reset()
    return send(200, { ok = true })
  elseif path == "/_fake/config" then
    for k, v in pairs(req) do state.config[k] = v end
    return send(200, { ok = true, config = state.config })
  elseif path == "/_fake/requests" then
    local list = state.requests
    if #list == 0 then return send(200, nil, "[]") end
    return send(200, list)
  elseif path == "/_fake/state" then
    local counts = {}
    for id, t in pairs(state.tickets) do counts[id] = #t.messages end
    drop_past_faults(now())
    return send(200, { token_count = state.token_count, ticket_messages = counts,
                       rate_limited = state.rate_limited,
                       bot_messages = #state.bot_messages, request_count = #state.requests,
                       faults = #state.faults,
                       expired_token_uses = state.expired_token_uses,
                       revoked_token_uses = state.revoked_token_uses,
                       clock_offset = state.clock_offset })
  elseif path == "/_fake/subscriptions" then
    -- the subscribed "type/subtype"s, sorted
    local list = {}
    for k in pairs(state.subscriptions) do list[#list + 1] = k end
    if #list == 0 then return send(200, nil, "[]") end
    table.sort(list)
    return send(200, list)
  elseif path == "/_fake/bot_messages" then
    if #state.bot_messages == 0 then return send(200, nil, "[]") end
    return send(200, state.bot_messages)
  elseif path == "/_fake/ticket" then
    local t = ticket(tostring(req.ticket_id))
    if req.closed ~= nil then t.closed = req.closed and true or false end
    local start, step = req.start or 1700000000, req.step or 1
    for i = 1, req.messages or 0 do
      t.messages[#t.messages + 1] = new_message("text", "message " .. (#t.messages + 1),
                                                math.floor((start + (i - 1) * step) * 1000))
    end
    return send(200, { ok = true, messages = #t.messages })
  elseif path == "/_fake/expire_tokens" or path == "/_fake/revoke_tokens" then
    -- expire_tokens is the older name: its uses count as revoked too, so that
    -- expired_token_uses counts only tokens used past their natural ttl
    return revoke_tokens()
  elseif path == "/_fake/clock" then
    local advance = req.advance
    if advance ~= nil then
      if not finite(advance) or advance < 0 then
        return control_error("advance must be a finite number of seconds >= 0")
      end
      state.clock_offset = state.clock_offset + advance
    end
    return send(200, { ok = true, offset = state.clock_offset, now = now() })
  elseif path == "/_fake/push" then
    -- an event pushed to req.url as Feishu pushes it (fake/feishu_push.lua)
    if type(req.url) ~= "string" or type(req.event) ~= "string" then
      return control_error("url and event (the plaintext JSON) must be strings")
    end
    state.push_count = (state.push_count or 0) + 1
    local id = state.push_count
    local pushes = state.pushes -- a reset meanwhile starts a new list
    local started, err = require("feishu_push").start(req, function(t)
      t.push = id
      pushes[#pushes + 1] = t
    end)
    if not started then return control_error("no timer: " .. tostring(err)) end
    return send(200, { ok = true, push = id })
  elseif path == "/_fake/card_action" then
    -- a button clicked, sent to req.url as Feishu sends it; answers what the
    -- app answered (fake/feishu_push.lua)
    if type(req.url) ~= "string" or type(req.action) ~= "table" then
      return control_error("url must be a string and action a table")
    end
    if req.protocol ~= nil and req.protocol ~= "new" and req.protocol ~= "old" then
      return control_error("protocol must be new or old")
    end
    return send(200, require("feishu_push").card_action(req))
  elseif path == "/_fake/pushes" then
    if #state.pushes == 0 then return send(200, nil, "[]") end
    return send(200, state.pushes)
  elseif path == "/_fake/listing" then
    if req.mode ~= nil and not M.LISTING_MODES[req.mode] then
      return control_error("mode must be one of repeat, overlap, back, grow, object, descending (or none)")
    end
    if req.total ~= nil and not (finite(req.total) or type(req.total) == "string") then
      return control_error("total must be a number (or a string, to report a malformed one)")
    end
    state.listing = req.mode and req or nil
    return send(200, { ok = true, mode = req.mode })
  elseif path == "/_fake/texts" then
    return send(200, state.texts)
  elseif path == "/_fake/delivered" then
    if type(req.ticket_id) ~= "string" then return control_error("ticket_id must be a string") end
    local t = state.tickets[req.ticket_id]
    if not t or t.delivered_total == 0 then
      -- an empty table would encode as {} with lua-cjson's defaults, but
      -- not if encode_empty_table_as_object were off: say it outright
      return send(200, nil, '{"counts":{},"total":0}')
    end
    return send(200, { counts = t.delivered, total = t.delivered_total })
  elseif path == "/_fake/fault" then
    for _, k in ipairs({ "from", "until" }) do
      if req[k] ~= nil and not finite(req[k]) then
        return control_error(k .. " must be a finite number (a time on the fake's clock)")
      end
    end
    if req.times ~= nil and not finite(req.times) then return control_error("times must be a number") end
    state.faults[#state.faults + 1] = req
    return send(200, { ok = true, now = now() })
  end
  return send(404, { ok = false, error = "no such control endpoint" })
end

function M.handle()
  local method = ngx.req.get_method()
  local path = ngx.var.uri
  local body = method == "POST" and read_body() or nil
  if path:sub(1, 7) == "/_fake/" then return control(path, body) end

  record(body)
  if method == "POST" and endpoint_of(method, path) then
    local req = json_object(body)
    local c = req and req.msg_type == "text" and json_object(req.content)
    if c then count_text("received", c.text) end
  end
  local fault = take_fault(method, path)
  if fault and fault.pass then
    if fault.delay then ngx.sleep(fault.delay) end
    fault = nil
  end
  -- counted as it arrives, as Feishu does, before any latency
  if not fault then rate_limit(method, path) end
  -- config.latency: every answer takes this long (seconds), without holding up the others
  if state.config.latency then ngx.sleep(state.config.latency) end
  if fault then return apply_fault(fault, body) end

  local headers = ngx.req.get_headers(100)
  if path == "/open-apis/auth/v3/tenant_access_token/internal" and method == "POST" then
    return token_endpoint(body)
  end
  if path == "/open-apis/helpdesk/v1/message" and method == "POST" then
    check_auth(headers)
    return bot_message(body, headers)
  end
  local verb = path:match("^/open%-apis/helpdesk/v1/events/(%a+)$")
  if (verb == "subscribe" or verb == "unsubscribe") and method == "POST" then
    check_auth(headers)
    return subscription(body, verb == "subscribe")
  end
  local ticket_id = path:match("^/open%-apis/helpdesk/v1/tickets/([^/]+)/messages$")
  if ticket_id then
    check_auth(headers)
    if not ticket_id:match("^%d+$") then return bad_request("ticket_id") end
    if method == "POST" then return send_ticket_message(ticket_id, body, headers) end
    if method == "GET" then return list_messages(ticket_id) end
    return fail(405, 154005, "Method Forbidden")
  end
  return send(404, { code = 404, msg = "404 page not found" })
end

return M
