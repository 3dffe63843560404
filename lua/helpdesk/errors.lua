--- The error object every failure returns as its second value (and the
-- listing iterator raises). `tostring(err)` is one line: kind, code, HTTP
-- status, message and log id, never a secret.
-- @module helpdesk.errors
local setmetatable, getmetatable, tostring, type, ipairs = setmetatable, getmetatable, tostring, type, ipairs
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

-- The forms of each secret a server may show: as it is, and as a JSON
-- string escapes it (lua-cjson writes "/" as "\/"); longest first, so that
-- a secret inside another never leaves the rest of the longer one.
local function forms(secrets)
  local out, seen = {}, {}
  for i = 1, #secrets do
    local s = secrets[i]
    if type(s) == "string" and #s >= 4 then
      local escaped = s:gsub('[/"\\]', "\\%0")
      for _, f in ipairs({ s, escaped }) do
        if not seen[f] then
          seen[f] = true
          out[#out + 1] = f
        end
      end
    end
  end
  table.sort(out, function(a, b) return #a > #b end)
  return out
end

-- text with every form of every secret replaced by "***".
local function redact_text(text, list)
  for i = 1, #list do text = text:gsub(plain(list[i]), "***") end
  return text
end

-- A beginning of a secret this long or longer left at the end of a text is
-- redacted too; a shorter one says next to nothing of the secret, and
-- would hide ordinary words ("Timeou" ending in the "t" a token starts with).
local MIN_PREFIX = 4

-- text with a secret's beginning at its end (a page cut short, by the
-- server or by the excerpt) replaced by "***".
local function redact_tail(text, list)
  for i = 1, #list do
    local s = list[i]
    for k = math.min(#s - 1, #text), MIN_PREFIX, -1 do
      if text:sub(-k) == s:sub(1, k) then
        text = text:sub(1, -k - 1) .. "***"
        break
      end
    end
  end
  return text
end

-- Replaces every secret in err.msg (a beginning of one at its end too) and
-- in err.log_id with "***": a last guard for what comes from a server or
-- from libcurl.
function M.redact(err, secrets)
  local list = forms(secrets)
  if type(err.msg) == "string" then err.msg = redact_tail(redact_text(err.msg, list), list) end
  if type(err.log_id) == "string" then err.log_id = redact_text(err.log_id, list) end
  return err
end

--- A short, printable excerpt of a server's text for an error message:
-- the secrets in the list redacted in the whole text first (as they are and
-- as JSON escapes them), then cut to limit bytes (default 120) at a
-- character's start, then any beginning of a secret left at the end
-- redacted too.
-- @string text what the server sent
-- @tab secrets the strings that must not show
-- @int[opt=120] limit
-- @treturn string
function M.excerpt(text, secrets, limit)
  limit = limit or 120
  local list = forms(secrets or {})
  text = redact_tail(redact_text(text, list), list)
  local cut = text
  if #text > limit then
    -- not inside a UTF-8 sequence: back to the start of the character
    local n = limit
    while n > 0 and text:byte(n + 1) and text:byte(n + 1) >= 0x80 and text:byte(n + 1) < 0xC0 do n = n - 1 end
    cut = redact_tail(text:sub(1, n), list)
  end
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
