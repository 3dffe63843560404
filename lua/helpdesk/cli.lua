--- The `helpdesk` command: send a ticket message, send a helpdesk-bot
-- message, list a ticket's messages, (un)subscribe to events, decode a
-- pushed event, push one (`helpdesk --help`; the README has examples). bin/helpdesk is a two-line launcher of @{main}.
-- @module helpdesk.cli
local helpdesk = require "helpdesk"
local config = require "helpdesk.config"
local core = require "helpdesk.core"
local events = require "helpdesk.events"
local transport = require "helpdesk.transport"
local errors = require "helpdesk.errors"
local json = require "helpdesk.json"
local retry = require "helpdesk.retry"
local clock = require "helpdesk.clock"

local type, tostring, tonumber, ipairs, pairs, pcall, next = type, tostring, tonumber, ipairs, pairs, pcall, next
local format, concat, floor = string.format, table.concat, math.floor

local M = {}

--- Exit code 0: done.
M.OK = 0
--- Exit code 1: Feishu refused the call, or answered something unusable, or
-- stdout could not be written.
M.FAILED = 1
--- Exit code 2: bad command line or input; nothing was sent.
M.USAGE = 2
--- Exit code 3: a send whose outcome is unknown; it may have been processed.
M.MAYBE_SENT = 3
--- Exit code 4: a passing failure (rate limit, network, 5xx); nothing processed.
M.TRY_LATER = 4
--- Exit code 70 (sysexits' EX_SOFTWARE): a bug in the command itself.
M.BUG = 70

local COMMON_HELP = [==[
Credentials (flags override the environment):
  --app-id ID                 FEISHU_APP_ID
  --app-secret SECRET         FEISHU_APP_SECRET
  --tenant-access-token TOK   FEISHU_TENANT_ACCESS_TOKEN (instead of app id and secret)
  --helpdesk-id ID            FEISHU_HELPDESK_ID
  --helpdesk-token TOK        FEISHU_HELPDESK_TOKEN
  Secrets given as flags are visible to other users in the process list;
  prefer the environment.
Connection:
  --base-url URL|feishu|lark  FEISHU_BASE_URL (default https://open.feishu.cn)
  --timeout SECONDS           per request (default 30)
  --ca-file FILE              CA bundle to verify the server with
  --proxy URL                 e.g. http://proxy:3128
  --redis URL                 FEISHU_REDIS_URL: the token and the rate limits shared
                              with other hosts, redis://[[user]:password@]host[:port][/db]
                              (rediss:// for TLS; FEISHU_REDIS_PREFIX, _TIMEOUT,
                              _CA_FILE and FEISHU_STORE_SHARE from the environment)
  --verbose                   log each request, answer and retry to stderr
Exit codes: 0 done; 1 Feishu refused the call (or stdout could not be
written); 2 bad usage or input (or a closed stdout), nothing sent; 3 the
message may have been sent (do not resend blindly); 4 a passing failure
(rate limit, network, server error), nothing processed: try later; 70 a
bug in helpdesk.
]==]

local HELP = {
  main = [==[
Usage: helpdesk COMMAND [ARGS] [OPTIONS]

Commands:
  send TICKET       send a message into a helpdesk ticket
  bot RECEIVER      send a helpdesk-bot message to a user's helpdesk chat
  messages TICKET   list a ticket's messages
  events subscribe|unsubscribe TYPE...
                    (un)subscribe the app to helpdesk events
  events decode     check and decode an event Feishu pushed (body on stdin)
  events push URL   push an event (JSON on stdin) to URL as Feishu does
  help [COMMAND]    this text, or a command's

`helpdesk COMMAND --help` says more; `helpdesk --version` prints the version.
]==],
  send = [==[
Usage: helpdesk send TICKET (--text TEXT | --post FILE | --json FILE)

Sends one message into ticket TICKET and prints its message_id.
  --text TEXT    a text message; "-" reads it from stdin
  --post FILE    a rich-text message: a JSON file with the post content
                 ({"zh_cn":{"title":…,"content":[[…]]}}), or a plain text file
                 whose first line is the title and each further line a line
  --json FILE    the whole message as JSON: {"msg_type":…,"content":…}
  --lang LANG    the language of a plain-text --post: zh_cn (default), en_us, ja_jp
FILE may be "-" for stdin.
]==],
  bot = [==[
Usage: helpdesk bot RECEIVER (--text TEXT | --post FILE | --image KEY | --card FILE | --json FILE)

Sends a helpdesk-bot message and prints its message_id. By default RECEIVER is
a chat id and the message goes to the user's helpdesk group; with --user it is
a user id and the message goes to a private chat with the helpdesk bot.
  --user                 RECEIVER is a user (receive_type user)
  --user-id-type TYPE    open_id (default), union_id or user_id, with --user
  --text TEXT            a text message; "-" reads it from stdin
  --post FILE            a rich-text message, as for `helpdesk send`
  --lang LANG            the language of a plain-text --post
  --image KEY            an image, by its image_key
  --card FILE            an interactive card (card JSON 1.0) from a JSON file
  --json FILE            the whole message as JSON: {"msg_type":…,"content":…}
]==],
  messages = [==[
Usage: helpdesk messages TICKET [--since TIME] [--until TIME] [--format jsonl|table]

Prints every message of ticket TICKET, oldest first as Feishu gives them.
  --since TIME     only messages from TIME on
  --until TIME     only messages up to TIME
  --format FMT     jsonl (default): one JSON object per message, as Feishu
                   returns it; table: time, type, sender and text per line
  --page-size N    messages per request, 1-200 (default 200)
  --progress       show "messages so far/total" on stderr even when it is not
                   a terminal (--no-progress: never)
TIME is Unix seconds (1700000000), a UTC date or time (2024-05-01,
2024-05-01T08:00:00Z, 2024-05-01 16:00+08:00), or a time ago (90s, 30m, 6h, 7d, 2w).
]==],
  events = [==[
Usage: helpdesk events subscribe|unsubscribe TYPE...
       helpdesk events decode [--timestamp TS --nonce N --signature SIG | --headers FILE] < body.json
       helpdesk events push URL [--timestamp TS] [--nonce N] < event.json

subscribe, unsubscribe: subscribes the app to helpdesk events, or
unsubscribes it (Feishu sends them only to apps subscribed this way as well
as in the console). TYPE is one of helpdesk.ticket_message.created_v1,
helpdesk.ticket.created_v1, helpdesk.ticket.updated_v1,
helpdesk.notification.approve_v1.

decode: checks a body Feishu pushed to a callback URL (read from stdin, byte
for byte) as a receiver does (decryption, URL verification, signature,
timestamp, verification token) and prints the event, or the challenge, as
one line of JSON. A body that fails a check exits 2, saying which.
  --timestamp TS        X-Lark-Request-Timestamp of the request
  --nonce N             X-Lark-Request-Nonce
  --signature SIG       X-Lark-Signature
  --headers FILE        the request's headers: "Name: value" lines (as
                        curl -D writes them), or a JSON object; the three
                        options above override it
  --max-skew SECONDS    how far the timestamp may be from this host's clock
                        (default 300); "off" for a request captured earlier

push: encrypts and signs an event (a JSON object on stdin, sent as it is:
its token should be the receiver's verification token) as Feishu does and
POSTs it to URL; prints the receiver's answer. Without an encrypt key the
event goes plain and unsigned. Exit 0 on a 2xx answer, 1 on another.
  --timestamp TS        X-Lark-Request-Timestamp (default: now)
  --nonce N             X-Lark-Request-Nonce (default: random)

Secrets, for decode and push (flags override the environment):
  --encrypt-key KEY            FEISHU_ENCRYPT_KEY: the subscription's Encrypt Key
  --verification-token TOK     FEISHU_VERIFICATION_TOKEN (decode): its Verification Token
]==],
}

-- Flags of every command, and whether each takes a value.
local COMMON_FLAGS = {
  ["app-id"] = true, ["app-secret"] = true, ["tenant-access-token"] = true, ["helpdesk-id"] = true,
  ["helpdesk-token"] = true, ["base-url"] = true, timeout = true, ["ca-file"] = true, proxy = true,
  redis = true, verbose = false, help = false,
}
local FLAGS = {
  send = { text = true, post = true, json = true, lang = true },
  bot = { text = true, post = true, json = true, lang = true, image = true, card = true,
          user = false, ["user-id-type"] = true },
  messages = { since = true, ["until"] = true, format = true, ["page-size"] = true,
               progress = false, ["no-progress"] = false },
  events = { timestamp = true, nonce = true, signature = true, headers = true, ["max-skew"] = true,
             ["encrypt-key"] = true, ["verification-token"] = true },
}

-- The flags of each events verb (the others are refused for it).
local EVENTS_FLAGS = {
  decode = { timestamp = true, nonce = true, signature = true, headers = true, ["max-skew"] = true,
             ["encrypt-key"] = true, ["verification-token"] = true },
  push = { timestamp = true, nonce = true, ["encrypt-key"] = true },
  subscribe = {}, unsubscribe = {},
}

local Usage = {}
local function usage(msg) return setmetatable({ msg = msg }, Usage) end

-- Splits args into positionals and flags ("--name value", "--name=value",
-- "--" ends the flags). Returns positionals, flags or nil, usage error.
local function parse(args, first, known)
  local pos, flags = {}, {}
  local i = first
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    end
    local name, value = a:match("^%-%-([%w%-]+)=(.*)$")
    if not name then name = a:match("^%-%-([%w%-]+)$") end
    if name then
      local takes = known[name]
      if takes == nil then takes = COMMON_FLAGS[name] end
      if takes == nil then return nil, usage("unknown option --" .. name) end
      if takes and value == nil then
        i = i + 1
        value = args[i]
        if value == nil then return nil, usage("--" .. name .. " needs a value") end
      elseif not takes and value ~= nil then
        return nil, usage("--" .. name .. " takes no value")
      end
      if flags[name] ~= nil then return nil, usage("--" .. name .. " is given twice") end
      flags[name] = takes and value or true
    elseif a:match("^%-.") and a ~= "-" then
      return nil, usage("unknown option " .. a)
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, flags
end

-- nil, or a usage error when --flag's file name cannot be read (missing,
-- a directory, no permission); what it holds is for its reader to judge.
local function unreadable(flag, name)
  local f, err = io.open(name, "rb")
  if not f then return usage("--" .. flag .. " cannot read " .. tostring(err)) end
  local ok, s, rerr = pcall(f.read, f, 1)
  f:close()
  if not ok or (s == nil and rerr) then
    return usage("--" .. flag .. " cannot read " .. name .. ": " .. tostring(ok and rerr or s))
  end
end

-- The client options: the FEISHU_* environment, then the flags.
local function client_options(flags, out)
  local opts = config.from_env()
  local map = { ["app-id"] = "app_id", ["app-secret"] = "app_secret",
                ["tenant-access-token"] = "tenant_access_token", ["helpdesk-id"] = "helpdesk_id",
                ["helpdesk-token"] = "helpdesk_token", ["base-url"] = "base_url",
                ["ca-file"] = "ca_file", proxy = "proxy" }
  for flag, key in pairs(map) do
    if flags[flag] ~= nil then opts[key] = flags[flag] end
  end
  if flags.redis then
    opts.store = config.redis_from_env(flags.redis)
    config.share_from_env(opts)
  end
  if flags["ca-file"] then
    local bad = unreadable("ca-file", flags["ca-file"])
    if bad then return nil, bad end
  end
  -- a token from the flags replaces app credentials from the environment, and the other way round
  if flags["tenant-access-token"] then opts.app_id, opts.app_secret = nil, nil
  elseif flags["app-id"] or flags["app-secret"] then opts.tenant_access_token = nil end
  if flags.timeout then
    opts.timeout = tonumber(flags.timeout)
    if not opts.timeout then return nil, usage("--timeout must be a number of seconds") end
  end
  if flags.verbose then
    opts.logger = function(e)
      local parts = { "helpdesk:", e.event }
      for _, k in ipairs({ "method", "url", "endpoint", "status", "duration", "attempt", "wait", "ok", "expire",
                                 "kind", "code", "log_id", "error", "store", "retry_in" }) do
        if e[k] ~= nil then parts[#parts + 1] = k .. "=" .. tostring(e[k]) end
      end
      out.err:write(concat(parts, " "), "\n")
    end
  end
  return opts
end

local MAX_INPUT = 1024 * 1024

-- The whole of file name ("-": stdin) for --flag, or nil and a usage
-- error: a directory, a closed stdin or a read error is bad input.
local function read_file(flag, name, stdin)
  local f = stdin
  local what = flag and ("--" .. flag .. " ") or ""
  if name ~= "-" then
    local err
    f, err = io.open(name, "rb")
    if not f then return nil, usage(what .. "cannot read " .. tostring(err)) end
  end
  -- a message is at most a few hundred KiB: /dev/zero or `yes` is not one
  local ok, s, rerr = pcall(f.read, f, MAX_INPUT + 1)
  if name ~= "-" then f:close() end
  if ok and s == nil and rerr == nil then s = "" end -- empty
  if not ok or type(s) ~= "string" then
    return nil, usage(what .. "cannot read " .. (name == "-" and "stdin" or name) .. ": "
      .. tostring(ok and (rerr or "nothing to read") or s))
  end
  if #s > MAX_INPUT then
    return nil, usage(what .. (name == "-" and "stdin" or name) .. " is larger than 1 MiB")
  end
  return s
end

local function json_file(flag, name, stdin)
  local text, err = read_file(flag, name, stdin)
  if not text then return nil, err end
  local v, jerr = json.decode(text)
  if type(v) ~= "table" then
    return nil, usage("--" .. flag .. " " .. name .. " is not a JSON object: " .. tostring(jerr or v))
  end
  return v
end

-- --post FILE: the post content as JSON, or plain text (title, then lines).
local function post_message(name, lang, stdin)
  local text, err = read_file("post", name, stdin)
  if not text then return nil, err end
  if text:match("^%s*{") then
    local v, jerr = json.decode(text)
    if type(v) ~= "table" then return nil, usage("--post " .. name .. " is not valid JSON: " .. tostring(jerr)) end
    if v.post == nil then v = { post = v } end
    return { msg_type = "post", content = v }
  end
  local t = { lang = lang }
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", "")
    if t.title == nil then t.title = line
    elseif line:match("%S") then t[#t + 1] = line end
  end
  if #t == 0 then return nil, usage("--post " .. name .. " needs a title line and at least one more line") end
  return helpdesk.post(t)
end

local function stdin_text(s, stdin)
  if s ~= "-" then return s end
  local text, err = read_file("text", "-", stdin)
  if not text then return nil, err end
  return (text:gsub("[\r\n]+$", ""))
end

-- The one message the flags describe (exactly one of the message flags).
local function message_from(flags, kinds, stdin)
  local given = {}
  for _, k in ipairs(kinds) do
    if flags[k] ~= nil then given[#given + 1] = k end
  end
  if #given ~= 1 then
    local names = {}
    for i, k in ipairs(kinds) do names[i] = "--" .. k end
    return nil, usage("give exactly one of " .. concat(names, ", "))
  end
  local kind, v = given[1], flags[given[1]]
  if kind == "text" then
    local text, err = stdin_text(v, stdin)
    if not text then return nil, err end
    return helpdesk.text(text)
  end
  if kind == "image" then return helpdesk.image(v) end
  if kind == "post" then return post_message(v, flags.lang or "zh_cn", stdin) end
  local t, err = json_file(kind, v, stdin)
  if not t then return nil, err end
  if kind == "card" then return helpdesk.card(t) end
  return t
end

--- The exit code a failure maps to.
-- @tparam helpdesk.errors.Error err
-- @string method the call's HTTP method (`"POST"` or `"GET"`)
-- @treturn int
function M.exit_code(err, method)
  if getmetatable(err) == Usage or err.kind == "invalid" then return M.USAGE end
  -- a GET changes nothing: its outcome is never unknown
  if err.sent and method ~= "GET" then return M.MAYBE_SENT end
  -- a token fetch is as safe to repeat as a GET
  if err.kind == "rate_limit" or retry.retryable(err.token and "GET" or method, err) then return M.TRY_LATER end
  return M.FAILED
end

-- One JSON line of a listed message, its numbers as Feishu sent them (as
-- exactly as a double holds them). Raises a decode error for a number JSON
-- cannot carry.
local function json_line(msg)
  local text, err = json.encode_exact(msg)
  if not text then
    error(errors.new("decode", { msg = "a listed message " .. tostring(err) }), 0)
  end
  return text .. "\n"
end

local function fail(out, err, method)
  out.err:write("helpdesk: ", getmetatable(err) == Usage and err.msg or tostring(err), "\n")
  return M.exit_code(err, method)
end

local function new_client(flags, out)
  local opts, err = client_options(flags, out)
  if not opts then return nil, err end
  return helpdesk.new(opts)
end

local function one_positional(pos, what)
  if #pos ~= 1 then return nil, usage("needs exactly one " .. what .. " (see --help)") end
  return pos[1]
end

-- Writes to stdout (flush: and flushes it); a full disk is an error, never
-- a quiet success.
local function write_out(out, s, flush)
  local ok, err = out.out:write(s)
  if ok and flush then ok, err = out.out:flush() end
  if not ok then return nil, errors.new("output", { msg = "cannot write the output: " .. tostring(err) }) end
  return true
end

-- Sends msg with send(client, msg) and prints the new message_id.
local function send_message(flags, out, msg, send)
  local c, err = new_client(flags, out)
  if not c then return nil, err end
  local data
  data, err = send(c, msg)
  c:close()
  if not data then return nil, err end
  local ok, werr = write_out(out, data.message_id .. "\n", true)
  if not ok then
    werr.msg = "message " .. data.message_id .. " was sent, but " .. werr.msg
    return nil, werr
  end
  return true
end

local commands = {}

function commands.send(pos, flags, out)
  local ticket, err = one_positional(pos, "TICKET")
  if not ticket then return nil, err end
  if flags.lang and not flags.post then return nil, usage("--lang goes with --post") end
  local msg
  msg, err = message_from(flags, { "text", "post", "json" }, out.stdin)
  if not msg then return nil, err end
  return send_message(flags, out, msg, function(c, m) return c:send_ticket_message(ticket, m) end)
end

function commands.bot(pos, flags, out)
  local receiver, err = one_positional(pos, "RECEIVER")
  if not receiver then return nil, err end
  if flags.lang and not flags.post then return nil, usage("--lang goes with --post") end
  if flags["user-id-type"] and not flags.user then return nil, usage("--user-id-type goes with --user") end
  local msg
  msg, err = message_from(flags, { "text", "post", "image", "card", "json" }, out.stdin)
  if not msg then return nil, err end
  msg.receiver_id = receiver
  msg.receive_type = flags.user and "user" or "chat"
  msg.user_id_type = flags["user-id-type"]
  return send_message(flags, out, msg, function(c, m) return c:bot_message(m) end)
end

-- --flag, else the environment variable, else nil ("" counts as not given).
local function flag_or_env(flags, flag, name)
  local v = flags[flag]
  if v == nil then v = os.getenv(name) end
  if v == "" then return nil end
  return v
end

-- The request headers of --headers FILE: "Name: value" lines (a request or
-- status line and blank lines skipped; a repeated name a list, which the
-- receiver refuses), or a JSON object of names and values.
local function headers_file(name, stdin)
  local text, err = read_file("headers", name, stdin)
  if not text then return nil, err end
  if text:match("^%s*{") then
    local v = json.decode(text)
    if type(v) ~= "table" then return nil, usage("--headers " .. name .. " is not a JSON object") end
    return v
  end
  local h = {}
  for line in text:gmatch("[^\n]+") do
    local k, v = line:gsub("\r$", ""):match("^([!#$%%&'*+%-.^_`|~%w]+):[ \t]*(.-)[ \t]*$")
    if k then
      local prev = h[k]
      if prev == nil then h[k] = v
      elseif type(prev) == "table" then prev[#prev + 1] = v
      else h[k] = { prev, v } end
    end
  end
  return h
end

-- helpdesk events decode: a pushed body on stdin, checked and printed.
local function decode_event(flags, out)
  local opts = { encrypt_key = flag_or_env(flags, "encrypt-key", "FEISHU_ENCRYPT_KEY"),
                 verification_token = flag_or_env(flags, "verification-token", "FEISHU_VERIFICATION_TOKEN") }
  if not opts.encrypt_key and not opts.verification_token then
    return nil, usage("events decode needs FEISHU_ENCRYPT_KEY or FEISHU_VERIFICATION_TOKEN (or --encrypt-key, "
      .. "--verification-token)")
  end
  local skew = flags["max-skew"]
  if skew == "off" then opts.max_skew = false
  elseif skew ~= nil then
    opts.max_skew = tonumber(skew)
    if not opts.max_skew then return nil, usage("--max-skew must be a number of seconds, or off") end
  end
  local receiver, err = events.new(opts)
  if not receiver then return nil, err end
  if flags.headers == "-" then return nil, usage("--headers cannot be stdin: the body is read from there") end
  local headers = {}
  if flags.headers then
    headers, err = headers_file(flags.headers, out.stdin)
    if not headers then return nil, err end
  end
  for flag, name in pairs({ timestamp = "X-Lark-Request-Timestamp", nonce = "X-Lark-Request-Nonce",
                            signature = "X-Lark-Signature" }) do
    if flags[flag] then
      -- the flag replaces the file's header, whatever its case there
      for k in pairs(headers) do
        if type(k) == "string" and k:lower() == name:lower() then headers[k] = nil end
      end
      headers[name] = flags[flag]
    end
  end
  local body
  body, err = read_file(nil, "-", out.stdin)
  if not body then return nil, err end
  local ev
  ev, err = receiver:decode(headers, body)
  if not ev then return nil, err end
  return write_out(out, json_line(ev), true)
end

-- An http(s) URL libcurl may be given: no whitespace or control characters.
local function push_url(url)
  if type(url) ~= "string" or not url:match("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#]") or url:find("[%s%c]") then
    return nil, usage("events push needs the URL of a receiver: http:// or https://, without spaces")
  end
  return url
end

-- helpdesk events push URL: an event on stdin, sent as Feishu sends it.
local function push_event(url, flags, out)
  local ok, err = push_url(url)
  if not ok then return nil, err end
  local key = flag_or_env(flags, "encrypt-key", "FEISHU_ENCRYPT_KEY")
  local event
  event, err = read_file(nil, "-", out.stdin)
  if not event then return nil, err end
  local v = json.decode(event)
  if type(v) ~= "table" or (v[1] ~= nil or next(v) == nil) then
    return nil, usage("stdin is not a JSON object (the event to push)")
  end
  local ts = flags.timestamp or tostring(os.time())
  if not ts:match("^%d+$") then return nil, usage("--timestamp must be Unix seconds") end
  local nonce = flags.nonce
  if nonce == nil then
    local got, bytes = pcall(core.random, 8)
    if not got then return nil, errors.new("invalid", { field = "nonce", msg = "no random nonce: " .. bytes }) end
    nonce = tostring((bytes:gsub(".", function(c) return format("%02x", c:byte()) end)))
  end
  local body = event
  local headers = { ["Content-Type"] = "application/json; charset=utf-8", ["X-Lark-Request-Timestamp"] = ts,
                    ["X-Lark-Request-Nonce"] = nonce }
  if key then
    local enc
    enc, err = events.encrypt(key, event)
    if not enc then return nil, err end
    body = '{"encrypt":"' .. enc .. '"}'
    headers["X-Lark-Signature"], err = events.signature(ts, nonce, key, body)
    if not headers["X-Lark-Signature"] then return nil, err end
  end
  for _, h in pairs(headers) do
    if h:find("[%c]") then return nil, usage("--nonce and --timestamp must not hold control characters") end
  end
  local opts
  opts, err = client_options(flags, out)
  if not opts then return nil, err end
  -- what the answer (a proxy's page, say) must not show
  local hidden
  hidden, err = config.proxy_secrets(opts.proxy)
  if not hidden then return nil, err end
  local secrets = hidden.list
  for _, up in ipairs(hidden.basic) do secrets[#secrets + 1] = core.base64(up[1] .. ":" .. up[2]) end
  secrets[#secrets + 1] = key
  secrets[#secrets + 1] = flag_or_env(flags, "verification-token", "FEISHU_VERIFICATION_TOKEN")
  local h = core.new()
  if not h then return nil, errors.new("transport", { msg = "curl_easy_init failed", sent = false }) end
  local called, status, answer, answer_headers = pcall(h.request, h, {
    method = "POST", url = url, headers = headers, body = body, timeout = opts.timeout,
    ca_file = opts.ca_file, proxy = opts.proxy, max_body = MAX_INPUT,
  })
  h:close()
  if not called then return nil, usage("events push: " .. tostring(status)) end
  if flags.verbose then
    out.err:write("helpdesk: push POST ", url, " ", key and "encrypted, signed" or "plain",
                  " status=", tostring(status), "\n")
  end
  if not status then
    local _, terr = transport.answer(nil, answer, answer_headers, nil, "POST")
    return nil, errors.redact(terr, secrets)
  end
  answer = errors.redact({ msg = answer }, secrets).msg
  local written, werr = write_out(out, answer .. ((answer == "" or answer:sub(-1) == "\n") and "" or "\n"), true)
  if not written then return nil, werr end
  if status < 200 or status > 299 then
    local said = answer ~= "" and (": " .. errors.excerpt(answer, secrets)) or ""
    return nil, errors.new("http", { status = status, msg = "the receiver did not take the event" .. said })
  end
  return true
end

function commands.events(pos, flags, out)
  local verb = pos[1]
  local allowed = EVENTS_FLAGS[verb]
  if not allowed then
    return nil, usage("events needs subscribe, unsubscribe, decode or push (see helpdesk events --help)")
  end
  for name in pairs(FLAGS.events) do
    if flags[name] ~= nil and not allowed[name] then
      return nil, usage("--" .. name .. " does not go with events " .. verb)
    end
  end
  if verb == "decode" then
    if #pos ~= 1 then return nil, usage("events decode reads the body from stdin and takes no argument") end
    return decode_event(flags, out)
  end
  if verb == "push" then
    if #pos ~= 2 then return nil, usage("events push needs exactly one URL") end
    return push_event(pos[2], flags, out)
  end
  if #pos < 2 then return nil, usage("events " .. verb .. " needs at least one event type") end
  local types = {}
  for i = 2, #pos do types[#types + 1] = pos[i] end
  local c, err = new_client(flags, out)
  if not c then return nil, err end
  local ok
  ok, err = c[verb .. "_events"](c, types)
  c:close()
  if not ok then return nil, err end
  local written, werr = write_out(out, verb .. "d: " .. concat(types, " ") .. "\n", true)
  if not written then return nil, werr end
  return true
end

-- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local UNITS = { s = 1, m = 60, h = 3600, d = 86400, w = 604800 }

--- The value of the since and until options as Unix seconds: Unix seconds, a UTC date
-- or date-time (with `Z` or an offset such as `+08:00`), or a time ago
-- (`90s`, `30m`, `6h`, `7d`, `2w`).
-- @string s
-- @int[opt] now the time "ago" counts from (default `os.time()`)
-- @treturn[1] int
-- @return[2] nil
-- @treturn[2] ?string why, when it is more than unreadable
function M.parse_time(s, now)
  local n = s:match("^%d+$")
  if n then
    n = tonumber(n)
    if n >= 1e11 then return nil, "looks like milliseconds: give Unix seconds" end
    return n
  end
  local count, unit = s:match("^(%d+)([smhdw])$")
  if count then return (now or os.time()) - tonumber(count) * UNITS[unit] end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  local h, mi, sec, zone = 0, 0, 0, ""
  if rest ~= "" then
    local hh, mm, tail = rest:match("^[T ](%d%d):(%d%d)(.*)$")
    if not hh then return nil end
    h, mi = tonumber(hh), tonumber(mm)
    local ss, tail2 = tail:match("^:(%d%d)(.*)$")
    if ss then sec, tail = tonumber(ss), tail2 end
    zone = tail
  end
  local offset = 0
  if zone ~= "" and zone ~= "Z" then
    local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(zh) * 60 + tonumber(zm)) * 60
    if sign == "-" then offset = -offset end
  end
  local mdays = { 31, (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31,
                  30, 31 }
  if mo < 1 or mo > 12 or d < 1 or d > mdays[mo] or h > 23 or mi > 59 or sec > 59 then return nil end
  local t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset
  if t < 0 then return nil end
  return t
end

-- The title and element texts of a rich-text content, whatever its nesting.
local function post_texts(v, acc, depth)
  if type(v) ~= "table" or depth > 8 then return acc end
  if type(v.title) == "string" and v.title ~= "" then acc[#acc + 1] = v.title end
  if (v.tag == "text" or v.tag == "a") and type(v.text) == "string" then acc[#acc + 1] = v.text end
  for _, child in ipairs(v) do post_texts(child, acc, depth + 1) end
  for k, child in pairs(v) do
    if type(k) ~= "number" then post_texts(child, acc, depth + 1) end
  end
  return acc
end

-- What a listed message says, on one line, safe to print to a terminal.
local function summary(msg)
  local text = helpdesk.text_of(msg)
  if not text then
    local c = helpdesk.decode_content(msg)
    if type(c) == "table" and type(c.content) == "string" then c = json.decode(c.content) or c end
    local parts = type(c) == "table" and post_texts(c, {}, 0) or {}
    text = "[" .. tostring(msg.message_type or "?") .. "]"
    if #parts > 0 then text = text .. " " .. concat(parts, " ") end
  end
  return (text:gsub("%c+", " "):gsub("\194[\128-\159]", " "))
end

local function table_line(msg)
  -- milliseconds; os.date raises on a time out of its range
  local at = tonumber(msg.created_at)
  local when = at and at >= 0 and at < 1e14 and os.date("!%Y-%m-%d %H:%M:%S", floor(at / 1000)) or "?"
  local who = (tostring(msg.user_name or msg.user_id or "")):gsub("%c+", " "):gsub("\194[\128-\159]", " ")
  return format("%s  %-8s %-20s %s\n", when, tostring(msg.message_type or "?"):gsub("%c+", " "), who,
                summary(msg))
end

local function is_terminal(fd)
  local ok = os.execute("test -t " .. fd)
  return ok == true or ok == 0
end

function commands.messages(pos, flags, out)
  local ticket, err = one_positional(pos, "TICKET")
  if not ticket then return nil, err end
  local query = {}
  for flag, key in pairs({ since = "time_start", ["until"] = "time_end" }) do
    if flags[flag] then
      local t, why = M.parse_time(flags[flag], out.now)
      if not t then
        return nil, usage("--" .. flag .. " " .. flags[flag] .. ": " .. (why or "not a time (see --help)"))
      end
      query[key] = t
    end
  end
  if flags["page-size"] then
    query.page_size = tonumber(flags["page-size"])
    if not query.page_size then return nil, usage("--page-size must be a number") end
  end
  local fmt = flags.format or "jsonl"
  if fmt ~= "jsonl" and fmt ~= "table" then return nil, usage("--format must be jsonl or table") end
  if flags.progress and flags["no-progress"] then return nil, usage("--progress or --no-progress, not both") end
  local progress = flags.progress or (not flags["no-progress"] and is_terminal(2))

  local c
  c, err = new_client(flags, out)
  if not c then return nil, err end
  local count, last_shown, shown_total = 0, -1, nil
  local function show(total, final)
    local now = clock.now()
    if not final and now - last_shown < 0.1 then return end
    last_shown = now
    shown_total = total
    out.err:write("\r", count, total and ("/" .. total) or "", " messages")
  end
  local ok, perr = pcall(function()
    for msg, total in c:ticket_messages(ticket, query) do
      count = count + 1
      local written, werr = write_out(out, fmt == "jsonl" and json_line(msg) or table_line(msg))
      if not written then error(werr, 0) end
      if progress then show(total) end
    end
    local flushed, ferr = write_out(out, "", true)
    if not flushed then error(ferr, 0) end
  end)
  c:close()
  if progress then
    show(shown_total, true)
    out.err:write("\n")
  end
  if not ok then
    if type(perr) ~= "table" then error(perr, 0) end -- a bug, not a failed call
    return nil, perr
  end
  return true
end

-- subscribing twice does no harm, but an unknown outcome is still reported as one
local METHOD = { send = "POST", bot = "POST", messages = "GET", events = "POST" }

local function run(args, out)
  local cmd = args[1]
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    local topic = cmd == "help" and args[2] or "main"
    if not HELP[topic] then
      out.err:write("helpdesk: no command ", tostring(topic), "\n", HELP.main)
      return M.USAGE
    end
    local stream = cmd == nil and out.err or out.out
    stream:write(HELP[topic], topic ~= "main" and ("\n" .. COMMON_HELP) or "")
    return cmd == nil and M.USAGE or M.OK
  end
  if cmd == "--version" then
    out.out:write("helpdesk ", helpdesk._VERSION, "\n")
    return M.OK
  end
  if not commands[cmd] then
    out.err:write("helpdesk: unknown command ", cmd, " (helpdesk --help lists them)\n")
    return M.USAGE
  end
  local pos, flags = parse(args, 2, FLAGS[cmd])
  if not pos then return fail(out, flags) end
  if flags.help then
    out.out:write(HELP[cmd], "\n", COMMON_HELP)
    return M.OK
  end
  local ok, err = commands[cmd](pos, flags, out)
  if ok then return M.OK end
  return fail(out, err, METHOD[cmd])
end

-- Whether f's descriptor is closed (EBADF; a pipe answers ESPIPE).
local EBADF = 9
local function closed(f)
  local pos, _, errno = f:seek("cur")
  return pos == nil and errno == EBADF
end

--- Runs a command line.
-- @tab args as the global `arg`: `args[1]` is the command
-- @tab[opt] io_ `{ out =, err =, stdin = }` (default `io.stdout`,
-- `io.stderr`, `io.stdin`)
-- @treturn int the exit code
function M.main(args, io_)
  io_ = io_ or {}
  local out = { out = io_.out or io.stdout, err = io_.err or io.stderr, stdin = io_.stdin or io.stdin,
                now = io_.now }
  -- A closed stdout's descriptor would go to the first socket opened
  -- (libcurl's), and the output into it: nothing is done.
  if not io_.out and closed(io.stdout) then
    out.err:write("helpdesk: stdout is closed; nothing was sent\n")
    return M.USAGE
  end
  -- a bug must not exit 1, which scripts read as "Feishu refused"
  local ok, code = xpcall(function() return run(args, out) end, debug.traceback)
  if ok then return code end
  out.err:write("helpdesk: internal error (please report it): ", tostring(code), "\n")
  return M.BUG
end

return M
