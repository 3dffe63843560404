-- JSON through lua-cjson, with Feishu's integers kept as integers.
local cjson = require("cjson.safe").new()
local type, pairs, floor = type, pairs, math.floor
local tointeger = math.tointeger or function(x) return x end

local M = {}

cjson.encode_sparse_array(false)
cjson.decode_max_depth(200)
cjson.encode_max_depth(200)

local null = cjson.null
local MAX_EXACT = 2 ^ 53

-- lua-cjson 2.1 decodes every number as a float: integral values within
-- 2^53 (created_at, total, codes) become integers again; JSON nulls under a
-- string key become absent fields.
local function normalize(v)
  for k, x in pairs(v) do
    local t = type(x)
    if t == "number" then
      if x == floor(x) and x >= -MAX_EXACT and x <= MAX_EXACT then v[k] = tointeger(x) end
    elseif t == "table" then
      normalize(x)
    elseif x == null and type(k) == "string" then
      v[k] = nil
    end
  end
  return v
end

-- Returns the decoded value, or nil and a message.
function M.decode(text)
  local v, err = cjson.decode(text)
  if v == nil then return nil, err end
  if type(v) == "table" then return normalize(v) end
  return v
end

-- Returns JSON text, or nil and a message (functions, sparse arrays, cycles).
function M.encode(v)
  return cjson.encode(v)
end

return M
