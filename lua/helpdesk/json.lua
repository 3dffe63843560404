-- JSON through lua-cjson, with Feishu's integers kept as integers.
local cjson = require("cjson.safe").new()
local core_normalize = require("helpdesk.core").normalize
local type, next, tonumber, format, huge = type, next, tonumber, string.format, math.huge

local M = {}

cjson.encode_sparse_array(false)
cjson.decode_max_depth(200)
cjson.encode_max_depth(200)

local null = cjson.null
-- JSON null (lua-cjson's sentinel), for content that means null.
M.null = null

-- lua-cjson 2.1 decodes every number as a float: integral values below 2^53
-- in magnitude (created_at, total, codes) become integers again; JSON nulls
-- under a string key become absent fields. In C: the hot loop of a listing.
local function normalize(v)
  return core_normalize(v, null)
end

-- Returns the decoded value, or nil and a message.
function M.decode(text)
  local v, err = cjson.decode(text)
  if v == nil then return nil, err end
  if type(v) == "table" then return normalize(v) end
  return v
end

-- JSON as the standard has it: no NaN, Infinity or hex numbers, which
-- lua-cjson takes by default (for content given as text, checked before it
-- goes out as it is).
local strict = require("cjson.safe").new()
strict.decode_invalid_numbers(false)
strict.decode_max_depth(200)

-- The decoded value of text, standard JSON only, or nil and a message.
function M.decode_strict(text)
  return strict.decode(text)
end

-- Returns JSON text, or nil and a message (functions, sparse arrays, cycles).
function M.encode(v)
  return cjson.encode(v)
end

-- A number as JSON text that reads back as the same number: lua-cjson
-- writes 14 significant digits (0.1 + 0.2 as 0.3, 1700000000123456 as
-- 1.7e+15); this is the shortest text that is exact.
local function exact_number(x)
  if x % 1 == 0 and x >= -2 ^ 63 and x < 2 ^ 63 then return format("%d", x) end
  for digits = 15, 17 do
    local t = format("%." .. digits .. "g", x)
    if tonumber(t) == x then return t end
  end
end

local function altered(x)
  return (x % 1 == 0 and (x >= 1e14 or x <= -1e14)) or tonumber(format("%.14g", x)) ~= x
end

-- Whether v holds a number lua-cjson would alter, or a string with a NUL
-- (which could pass for a placeholder below). Stops at depth 200, as
-- lua-cjson does.
local function needs_marks(v, depth)
  if depth > 200 then return false end
  for _, x in next, v do
    local t = type(x)
    if t == "number" then
      if x == x and x ~= huge and x ~= -huge and altered(x) then return true end
    elseif t == "string" then
      if x:find("\0", 1, true) then return true end
    elseif t == "table" and needs_marks(x, depth + 1) then
      return true
    end
  end
  return false
end

-- A copy of v whose numbers lua-cjson would alter, and strings with a NUL,
-- are placeholders; the JSON text of each by its placeholder in exact.
-- nil and a message for a number JSON cannot carry, or past depth 200.
local function mark(v, exact, depth)
  if depth > 200 then return nil, "nested deeper than 200" end
  local out = {}
  for k, x in next, v do
    local t = type(x)
    if t == "number" then
      if x ~= x or x == huge or x == -huge then return nil, "holds a number JSON cannot carry (NaN or infinite)" end
      if altered(x) then
        exact[#exact + 1] = exact_number(x)
        x = "\0N" .. #exact
      end
    elseif t == "string" and x:find("\0", 1, true) then
      exact[#exact + 1] = cjson.encode(x)
      x = "\0N" .. #exact
    elseif t == "table" then
      local err
      x, err = mark(x, exact, depth + 1)
      if x == nil then return nil, err end
    end
    out[k] = x
  end
  return out
end

-- Returns JSON text of the table v with every number as exactly as a double
-- (or a Lua integer) holds it, or nil and a message.
function M.encode_exact(v)
  if type(v) ~= "table" or not needs_marks(v, 1) then return cjson.encode(v) end
  local exact = {}
  local copy, err = mark(v, exact, 1)
  if not copy then return nil, err end
  local text
  text, err = cjson.encode(copy)
  if not text then return nil, err end
  -- only values: a placeholder is a whole string followed by , } or ]
  -- (keys, followed by :, are left as they are)
  return (text:gsub('"\\u0000N(%d+)"([,}%]])', function(i, after) return exact[tonumber(i)] .. after end))
end

return M
