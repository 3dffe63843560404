--- The error object every failure returns as its second value (and the
-- listing iterator raises). `tostring(err)` is one line: kind, code, HTTP
-- status, message and log id, never a secret.
-- @module helpdesk.errors
local setmetatable, getmetatable, tostring, type = setmetatable, getmetatable, tostring, type
local concat = table.concat

local M = {}

local Error = { __name = "helpdesk.error" }
Error.__index = Error

-- One line: kind, code, status, message, log id. Built only from fields
-- that never hold a secret.
function Error.__tostring(e)
  local parts = { "helpdesk ", e.kind, " error" }
  if e.code ~= nil then parts[#parts + 1] = " " .. tostring(e.code) end
  if e.status ~= nil then parts[#parts + 1] = " (HTTP " .. tostring(e.status) .. ")" end
  parts[#parts + 1] = ": "
  parts[#parts + 1] = (tostring(e.msg):gsub("%c+", " "))
  if e.log_id ~= nil then parts[#parts + 1] = " [log_id " .. tostring(e.log_id) .. "]" end
  return concat(parts)
end

local function new(kind, fields)
  fields.kind = kind
  return setmetatable(fields, Error)
end
M.new = new

-- Bad input: nothing was sent.
function M.invalid(field, msg)
  return new("invalid", { field = field, msg = field .. " " .. msg })
end

--- Is v an error object of this library?
-- @param v any value
-- @treturn boolean
function M.is(v)
  return type(v) == "table" and getmetatable(v) == Error
end

local function plain(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

-- Replaces every secret in err.msg with "***": a last guard for messages
-- that come from a server or from libcurl.
function M.redact(err, secrets)
  local msg = err.msg
  if type(msg) ~= "string" then return err end
  for i = 1, #secrets do
    local s = secrets[i]
    if type(s) == "string" and #s >= 4 then msg = msg:gsub(plain(s), "***") end
  end
  err.msg = msg
  return err
end

--- An error. Only the fields that apply are set.
-- @table Error
-- @field kind `"invalid"` (bad input, nothing sent), `"transport"`
-- (connect, TLS, timeout, reset, answer too large), `"http"` (a non-2xx
-- answer without a Feishu body), `"api"` (Feishu answered a code other than
-- 0), `"decode"` (an answer that is not JSON or lacks the expected fields),
-- `"rate_limit"` (the client-side limiter had no slot in time; nothing sent)
-- @field code Feishu's code, for `api` errors (such as 154401, ticket closed)
-- @field msg what went wrong, in words
-- @field status the HTTP status, when there was an answer
-- @field log_id Feishu's log id (`X-Tt-Logid`), for Feishu's support
-- @field field the option or input field an `invalid` error is about
-- @field sent `true` when a POST went out and may have been processed: do not
-- resend it blindly
-- @field token `true` when the failure was fetching the tenant token: the
-- call itself was not sent
-- @field retry_after seconds to wait, when a rate limit said so
-- @field curl_code libcurl's code, for `transport` errors

return M
