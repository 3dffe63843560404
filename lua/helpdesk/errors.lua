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

-- text with every secret in the list replaced by "***".
local function redact_text(text, secrets)
  for i = 1, #secrets do
    local s = secrets[i]
    if type(s) == "string" and #s >= 4 then text = text:gsub(plain(s), "***") end
  end
  return text
end

-- Replaces every secret in err.msg with "***": a last guard for messages
-- that come from a server or from libcurl.
function M.redact(err, secrets)
  if type(err.msg) == "string" then err.msg = redact_text(err.msg, secrets) end
  return err
end

-- text with a secret's beginning at its end (a page cut short, by the
-- server or by the excerpt) replaced by "***": what is left of a secret
-- is the secret, however short.
local function redact_tail(text, secrets)
  for i = 1, #secrets do
    local s = secrets[i]
    if type(s) == "string" and #s >= 4 then
      for k = math.min(#s - 1, #text), 1, -1 do
        if text:sub(-k) == s:sub(1, k) then
          text = text:sub(1, -k - 1) .. "***"
          break
        end
      end
    end
  end
  return text
end

--- A short, printable excerpt of a server's text for an error message:
-- the secrets in the list redacted in the whole text first, then cut to
-- limit bytes (default 120), then any beginning of a secret left at the end
-- redacted too.
-- @string text what the server sent
-- @tab secrets the strings that must not show
-- @int[opt=120] limit
-- @treturn string
function M.excerpt(text, secrets, limit)
  limit = limit or 120
  text = redact_tail(redact_text(text, secrets or {}), secrets or {})
  local cut = text:sub(1, limit)
  if #text > limit then cut = redact_tail(cut, secrets or {}) end
  cut = cut:gsub("[%c]+", " ")
  if #text > limit then cut = cut .. "…" end
  return cut
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
