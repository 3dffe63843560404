-- The error object every failure returns as its second value.
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

return M
