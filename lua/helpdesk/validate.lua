-- Input checks, run before anything is sent. Each returns the cleaned value,
-- or nil and an "invalid" error that names the field.
local errors = require "helpdesk.errors"
local json = require "helpdesk.json"

local type, pairs, tostring, floor = type, pairs, tostring, math.floor
local tointeger = math.tointeger or function(x) return x end
local invalid = errors.invalid

local M = {}

local MAX_EXACT = 2 ^ 53

function M.ticket_id(v)
  if type(v) == "number" then
    return nil, invalid("ticket_id", "must be a string of ASCII digits, not a number "
      .. "(19-digit ids lose precision as Lua numbers)")
  end
  if type(v) ~= "string" or not v:match("^%d+$") or #v > 64 then
    return nil, invalid("ticket_id", "must be a string of ASCII digits")
  end
  return v
end

-- A set of allowed strings; the error lists them in order.
local function one_of(field, list)
  local set = {}
  for _, s in pairs(list) do set[s] = true end
  local expected = "must be one of " .. table.concat(list, ", ")
  return function(v)
    if set[v] then return v end
    return nil, invalid(field, expected)
  end
end

M.ticket_msg_type = one_of("msg_type", { "text", "post" })
M.bot_msg_type = one_of("msg_type", { "text", "post", "image", "interactive" })
M.receive_type = one_of("receive_type", { "chat", "user" })
M.user_id_type = one_of("user_id_type", { "open_id", "union_id", "user_id" })

-- lua-cjson 2.1 writes numbers with 14 significant digits: a larger integer
-- would reach Feishu altered. Returns the path of the first such number.
local function inexact_number(t, path, depth)
  if depth > 200 then return nil end -- cjson reports the nesting itself
  for k, x in pairs(t) do
    local here = path .. (type(k) == "number" and "[" .. tostring(k) .. "]" or "." .. tostring(k))
    if type(x) == "number" and x == floor(x) and (x >= 1e14 or x <= -1e14) then
      return here
    elseif type(x) == "table" then
      local found = inexact_number(x, here, depth + 1)
      if found then return found end
    end
  end
end

-- The content as the JSON text that goes on the wire (a JSON string in the
-- body): a table is encoded; a string must already be JSON text of an object.
function M.content(v)
  if type(v) == "table" then
    if v[1] ~= nil then return nil, invalid("content", "must be an object, not an array") end
    local inexact = inexact_number(v, "content", 1)
    if inexact then
      return nil, invalid("content", "holds a number JSON cannot carry exactly at " .. inexact
        .. ": pass it as a string")
    end
    local text, err = json.encode(v)
    if not text then return nil, invalid("content", "cannot be encoded as JSON: " .. tostring(err)) end
    return text
  elseif type(v) == "string" then
    if not v:match("^%s*{") or type(json.decode(v)) ~= "table" then
      return nil, invalid("content", "must be JSON text of an object")
    end
    return v
  end
  return nil, invalid("content", "must be a table or JSON text of an object")
end

-- A message table with only the given fields, its msg_type accepted by
-- check_type. Returns msg_type and the content's wire text, or nil, err.
function M.message(msg, fields, check_type)
  if type(msg) ~= "table" then return nil, invalid("message", "must be a table") end
  local ok, err = M.known_keys("message", msg, fields)
  if not ok then return nil, err end
  local msg_type, terr = check_type(msg.msg_type)
  if not msg_type then return nil, terr end
  local content, cerr = M.content(msg.content)
  if not content then return nil, cerr end
  return msg_type, content
end

function M.receiver_id(v)
  if type(v) ~= "string" or v == "" or v:find("[%s%c]") or #v > 256 then
    return nil, invalid("receiver_id", "must be a non-empty id without whitespace or control characters")
  end
  return v
end

-- An integer in [min, max] (max optional); floats with an integral value are
-- accepted and returned as integers.
function M.integer(field, v, min, max)
  if type(v) ~= "number" or v ~= floor(v) or v < -MAX_EXACT or v > MAX_EXACT then
    return nil, invalid(field, "must be an integer")
  end
  if v < min then return nil, invalid(field, "must be at least " .. min) end
  if max and v > max then return nil, invalid(field, "must be at most " .. max) end
  return tointeger(v)
end

function M.seconds(field, v)
  if type(v) ~= "number" or v ~= v or v <= 0 or v > 86400 then
    return nil, invalid(field, "must be a number of seconds, above 0 and at most 86400")
  end
  return v
end

-- A credential or other header-bound string.
function M.secret(field, v)
  if type(v) ~= "string" or v == "" then return nil, invalid(field, "must be a non-empty string") end
  if v:find("[\r\n%z]") then return nil, invalid(field, "must not contain CR, LF or NUL") end
  return v
end

function M.base_url(v)
  if type(v) ~= "string" or not v:match("^[hH][tT][tT][pP][sS]?://[^/?#]+") then
    return nil, invalid("base_url", "must be an http:// or https:// URL")
  end
  if v:find("[%s%c?#]") then
    return nil, invalid("base_url", "must not contain whitespace, control characters, '?' or '#'")
  end
  return (v:gsub("/+$", ""))
end

-- Rejects keys outside the allowed set, so a typo never goes unnoticed.
function M.known_keys(what, t, allowed)
  for k in pairs(t) do
    if type(k) ~= "string" or not allowed[k] then
      return nil, invalid(what, "has an unknown field " .. tostring(k))
    end
  end
  return t
end

-- Per-call options: { timeout =, connect_timeout =, budget =, max_retries = }.
local CALL_SECONDS = { timeout = true, connect_timeout = true, budget = true }
local CALL_OPTS = { timeout = true, connect_timeout = true, budget = true, max_retries = true }
function M.call_opts(opts)
  if opts == nil then return {} end
  if type(opts) ~= "table" then return nil, invalid("opts", "must be a table") end
  local ok, err = M.known_keys("opts", opts, CALL_OPTS)
  if not ok then return nil, err end
  local out = {}
  for k in pairs(CALL_SECONDS) do
    if opts[k] ~= nil then
      local v, verr = M.seconds(k, opts[k])
      if not v then return nil, verr end
      out[k] = v
    end
  end
  if opts.max_retries ~= nil then
    local v, verr = M.integer("max_retries", opts.max_retries, 0, 10)
    if not v then return nil, verr end
    out.max_retries = v
  end
  return out
end

return M
