-- The fake Feishu pushing an event to a callback URL the way Feishu does:
-- encrypted (AES-256-CBC under SHA-256 of the encrypt key, a random IV,
-- base64 of both) and signed (hex SHA-256 of timestamp, nonce, encrypt key
-- and the raw body), by the openssl command line, apart from the library;
-- pushed again when the answer is not a 200 in time. And a card action (a
-- button clicked) sent as Feishu sends it, in the new protocol or the old
-- (SHA-1 signed with the verification token), its answer read back.
local cjson = require "cjson.safe"

local M = {}

-- Runs cmd with its %s filled by the paths of temporary files holding each
-- input; returns its standard output.
local function openssl(cmd, ...)
  local paths = {}
  for i, input in ipairs({ ... }) do
    paths[i] = os.tmpname()
    local f = assert(io.open(paths[i], "wb"))
    f:write(input)
    f:close()
  end
  local p = assert(io.popen(string.format(cmd, unpack(paths))))
  local out = p:read("*a")
  p:close()
  for _, path in ipairs(paths) do os.remove(path) end
  return out
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local function sha256_hex(s)
  return (openssl("openssl dgst -sha256 -r %s", s):match("^(%x+)"))
end

local function sha1_hex(s)
  return (openssl("openssl dgst -sha1 -r %s", s):match("^(%x+)"))
end

-- {"encrypt": …} of plaintext under key.
local function encrypt(key, plaintext)
  local iv = ""
  for _ = 1, 16 do iv = iv .. string.char(math.random(0, 255)) end
  local ct = openssl("openssl enc -aes-256-cbc -K " .. sha256_hex(key) .. " -iv " .. hex(iv) .. " -in %s", plaintext)
  -- written as Feishu writes it: lua-cjson would escape each "/" of the
  -- base64 as "\/", which a receiver that re-serialises the body before
  -- checking the signature (the Node SDK) refuses
  return '{"encrypt":"' .. ngx.encode_base64(iv .. ct) .. '"}'
end

-- One POST of body to url (http://host:port/path) with headers; returns the
-- status, or nil and why (no answer within timeout seconds).
local function post(url, headers, body, timeout)
  local host, port, path = url:match("^http://([^:/]+):(%d+)(/.*)$")
  if not host then return nil, "url must be http://host:port/path" end
  local sock = ngx.socket.tcp()
  sock:settimeout(timeout * 1000)
  local ok, err = sock:connect(host, tonumber(port))
  if not ok then return nil, err end
  local lines = { "POST " .. path .. " HTTP/1.1", "Host: " .. host .. ":" .. port, "Connection: close",
                  "Content-Type: application/json; charset=utf-8", "Content-Length: " .. #body }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  ok, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if not ok then sock:close(); return nil, err end
  local status_line
  status_line, err = sock:receive("*l")
  sock:close()
  if not status_line then return nil, err end
  return tonumber(status_line:match("^HTTP/1%.%d (%d%d%d)"))
end

-- One POST as HTTP/1.0 (the answer ends when the connection closes): the
-- status and the body, or nil and why.
local function exchange(url, headers, body, timeout)
  local host, port, path = url:match("^http://([^:/]+):(%d+)(/.*)$")
  if not host then return nil, "url must be http://host:port/path" end
  local sock = ngx.socket.tcp()
  sock:settimeout(timeout * 1000)
  local ok, err = sock:connect(host, tonumber(port))
  if not ok then return nil, err end
  local lines = { "POST " .. path .. " HTTP/1.0", "Host: " .. host .. ":" .. port,
                  "Content-Type: application/json; charset=utf-8", "Content-Length: " .. #body }
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  ok, err = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if not ok then sock:close(); return nil, err end
  local line, length
  line, err = sock:receive("*l")
  local status = line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  while line and line ~= "" do
    line, err = sock:receive("*l")
    length = length or tonumber(line and line:lower():match("^content%-length:%s*(%d+)"))
  end
  -- the answer ends at its Content-Length, else when the connection closes
  local answer = line and sock:receive(length or "*a")
  sock:close()
  if not (status and answer) then return nil, err or "no answer" end
  return status, answer
end

local function random_hex(n)
  local t = {}
  for i = 1, n do t[i] = string.format("%x", math.random(0, 15)) end
  return table.concat(t)
end

-- card_action: { url =, protocol = "new" | "old", action = { tag =, value =
-- }, open_id =, open_message_id =, open_chat_id =, encrypt_key = (nil:
-- plain), verification_token =, timeout = seconds (Feishu: 3) }. Returns {
-- status =, body = } (the answer) or { error = }. The new protocol is a v2
-- event (card.action.trigger) signed as events are; the old is the bare
-- action, signed with SHA-1 over timestamp, nonce, verification token, body.
function M.card_action(req)
  local key, token = req.encrypt_key, req.verification_token
  local plain
  if req.protocol == "old" then
    plain = cjson.encode({ open_id = req.open_id, user_id = "fake_user", open_message_id = req.open_message_id,
                           open_chat_id = req.open_chat_id, tenant_key = "fake_tenant", token = "c-" .. random_hex(16),
                           action = req.action })
  else
    plain = cjson.encode({
      schema = "2.0",
      header = { event_id = random_hex(32), token = token, create_time = tostring(ngx.time() * 1000),
                 event_type = "card.action.trigger", tenant_key = "fake_tenant",
                 app_id = req.app_id or "cli_fake_app" },
      event = { operator = { open_id = req.open_id, user_id = "fake_user", tenant_key = "fake_tenant" },
                token = "c-" .. random_hex(16), host = "im_message", action = req.action,
                context = { open_message_id = req.open_message_id, open_chat_id = req.open_chat_id } },
    })
  end
  local body = key and encrypt(key, plain) or plain
  local ts, nonce = tostring(ngx.time()), tostring(math.random(1, 1e9))
  local headers = { ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = nonce }
  if req.protocol == "old" then
    if token then headers["X-Lark-Signature"] = sha1_hex(ts .. nonce .. token .. body) end
  elseif key then
    headers["X-Lark-Signature"] = sha256_hex(ts .. nonce .. key .. body)
  end
  local status, answer = exchange(req.url, headers, body, req.timeout or 3)
  if not status then return { error = answer } end
  return { status = status, body = answer }
end

-- push: { url =, event = the plaintext (JSON text), encrypt_key = (nil:
-- plain), delays = { seconds between tries } (Feishu: 15, 300, 3600,
-- 21600), timeout = seconds an answer may take (Feishu: 3), ignore_first =
-- true (the first answer counts as lost) }. record(push, try) is told of
-- each try: { status =, error = }.
function M.start(push, record)
  local key = push.encrypt_key
  local body = key and encrypt(key, push.event) or push.event
  local delays = push.delays or { 15, 300, 3600, 21600 }
  local function try(premature, n)
    if premature then return end
    local ts, nonce = tostring(ngx.time()), tostring(math.random(1, 1e9))
    local headers = { ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = nonce }
    if key then headers["X-Lark-Signature"] = sha256_hex(ts .. nonce .. key .. body) end
    local status, err = post(push.url, headers, body, push.timeout or 3)
    if n == 1 and push.ignore_first then status, err = nil, "ignored" end
    record({ n = n, status = status, error = err })
    if status ~= 200 and delays[n] then ngx.timer.at(delays[n], try, n + 1) end
  end
  return ngx.timer.at(0, try, 1)
end

return M
