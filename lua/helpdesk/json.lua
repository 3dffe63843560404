-- JSON through lua-cjson, with Feishu's integers kept as integers.
local cjson = require("cjson.safe").new()
local core_normalize = require("helpdesk.core").normalize
local type = type

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

return M
