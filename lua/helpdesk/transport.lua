-- One HTTP exchange through the C core, and the answer sorted into a
-- decoded Feishu body or an error of kind transport, http, api or decode.
local errors = require "helpdesk.errors"
local json = require "helpdesk.json"

local type, tostring, tonumber = type, tostring, tonumber
local new_error = errors.new

local M = {}

local function excerpt(text, secrets)
  return errors.excerpt(text, secrets and secrets() or {})
end

-- The answer's log id, as a string, its secrets redacted: a gateway may
-- quote the request there, on a success too; anything else (a table, a
-- number) is none.
local function log_id_of(headers, body, secrets)
  local id = headers["x-tt-logid"] or headers["x-request-id"]
  if id == nil and type(body) == "table" and type(body.error) == "table" then
    id = body.error.log_id
  end
  if type(id) ~= "string" then return nil end
  -- the common case cheaply: a short id of plain characters holding no
  -- secret as it is (escaped forms need a backslash, which takes the long way)
  if #id <= 120 and not id:find("[^%w%-_.:]") then
    local list = secrets and secrets() or {}
    for i = 1, #list do
      if id:find(list[i], 1, true) then return excerpt(id, secrets) end
    end
    return id
  end
  return excerpt(id, secrets)
end


-- The seconds a rate-limit answer says to wait: whole seconds, at most a
-- day; anything else (a negative, NaN, hex, a date) is as if not said.
local function reset_seconds(headers)
  local v = headers["x-ogw-ratelimit-reset"]
  if type(v) ~= "string" or not v:match("^%d+$") then return nil end
  local n = tonumber(v)
  if n <= 86400 then return n end
end

-- CURLE_SEND_FAIL_REWIND: the core refused libcurl's resend of a POST.
local CURLE_SEND_FAIL_REWIND = 65

-- nginx set-up (no thread pool, a phase that cannot wait): nothing was sent.
function M.setup_error(info)
  return new_error("invalid", { field = info.field, msg = info.message })
end

-- method: of the request; a GET changes nothing, so its outcome is never in
-- doubt, sent or not.
local function transport_error(info, method)
  if info.field then return M.setup_error(info) end
  local msg = info.message or "transfer failed"
  if info.curl_code == CURLE_SEND_FAIL_REWIND then
    msg = "the connection closed before an answer; not resent"
  end
  local sent = info.sent and method ~= "GET" or false
  if sent then
    msg = msg .. " (the request was sent: it may have been processed)"
  end
  return new_error("transport", {
    msg = msg, curl_code = info.curl_code, sent = sent,
    too_large = info.too_large or nil,
  })
end

-- req: the core's request table. Returns the decoded JSON object and
-- { status =, log_id = }, or nil and an error.
-- secrets: a function that returns the strings no excerpt of the answer may
-- show (called only for an answer that needs an excerpt).
function M.exchange(handle, req, secrets)
  local status, body, headers = handle:request(req)
  return M.answer(status, body, headers, secrets, req.method)
end

-- What the core returned for one request (status, body, headers, or nil and
-- the error info), sorted the same way; secrets as for exchange, method that
-- of the request (POST when not given).
function M.answer(status, body, headers, secrets, method)
  if not status then return nil, transport_error(body, method) end

  local decoded = json.decode(body)
  local obj = type(decoded) == "table" and decoded or nil
  local log_id = log_id_of(headers, obj, secrets)
  local meta = { status = status, log_id = log_id }
  local code = obj and obj.code
  local msg = obj and type(obj.msg) == "string" and obj.msg or nil

  if status >= 200 and status < 300 then
    if not obj then
      return nil, new_error("decode", { status = status, log_id = log_id,
        msg = "answer is not a JSON object: " .. excerpt(body, secrets) })
    end
    if type(code) ~= "number" then
      return nil, new_error("decode", { status = status, log_id = log_id,
        msg = "answer has no numeric code" })
    end
    if code ~= 0 then
      return nil, new_error("api", { code = code, status = status, log_id = log_id,
        msg = msg or "Feishu answered code " .. tostring(code),
        retry_after = reset_seconds(headers) })
    end
    return obj, meta
  end

  -- A non-2xx answer with a Feishu body is an api error; anything else,
  -- and every redirect, is an http error.
  local redirect = status >= 300 and status < 400
  local retry_after = reset_seconds(headers)
  if not redirect and type(code) == "number" and code ~= 0 then
    return nil, new_error("api", { code = code, status = status, log_id = log_id,
      msg = msg or "Feishu answered code " .. tostring(code), retry_after = retry_after })
  end
  local what = "HTTP " .. status
  if redirect then
    what = "unexpected redirect (not followed)"
    if headers.location then what = what .. " to " .. excerpt(headers.location, secrets) end
  elseif body ~= "" then
    what = what .. ": " .. excerpt(body, secrets)
  end
  return nil, new_error("http", { status = status, log_id = log_id, msg = what, retry_after = retry_after })
end

return M
