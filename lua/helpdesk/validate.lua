-- Input checks, run before anything is sent. Each returns the cleaned value,
-- or nil and an "invalid" error that names the field.
local core = require "helpdesk.core"
local errors = require "helpdesk.errors"
local json = require "helpdesk.json"

local type, pairs, next, tostring, floor = type, pairs, next, tostring, math.floor
local getmetatable, huge = getmetatable, math.huge
local utf8_valid = core.utf8_valid
local tointeger = math.tointeger or function(x) return x end
local mathtype = math.type
-- Whether x is a Lua integer (5.3 and later), not a float
local function is_integer(x) return mathtype ~= nil and mathtype(x) == "integer" end
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

-- Content: what lua-cjson will write exactly as meant, checked in one walk
-- that visits each table once (so a table used in several places costs no
-- more, and one that holds itself is found):
-- - a table has no metatable (lua-cjson reads tables raw: an __index table
--   would go out as {}), and is an object (string keys only) or a list
--   (keys exactly 1..n, n the number of its entries, counted with next:
--   never #, which differs between Luas when there are holes);
-- - strings, keys included, are well-formed UTF-8 (core.utf8_valid);
-- - numbers are finite, and an integral one is below 1e14 in magnitude:
--   lua-cjson 2.1 writes 14 significant digits, so a larger integer would
--   reach Feishu altered;
-- - other values are booleans and json.null;
-- - at most MAX_DEPTH tables deep (lua-cjson's own limit), and at most
--   MAX_JSON bytes of JSON once every shared table is written out in full
--   (a chain of tables each holding the next twice doubles at each step).
local MAX_DEPTH = 200
local MAX_JSON = 1024 * 1024
M.MAX_CONTENT_BYTES = MAX_JSON

local null = json.null

-- How a key is written in the path of an error: .name, ["…"] or [n], the
-- bytes of an odd key escaped so the message stays one printable line.
local function step(k)
  if type(k) == "number" then return "[" .. tostring(k) .. "]" end
  if k:match("^[%a_][%w_]*$") then return "." .. k end
  return '["' .. k:gsub('[%c"\\\128-\255]', function(ch) return "\\" .. ch:byte() end) .. '"]'
end

-- The first of 1..n that t lacks, n being its number of entries.
local function first_missing(t, n)
  for i = 1, n + 1 do
    if t[i] == nil then return i end
  end
end

-- Checks the table t, depth deep, against the rules above. seen[t] is true
-- while t is being walked and its JSON size once done. Returns that size (a
-- lower bound of it), or nil, the path below t (from "" for t itself) and
-- what is wrong there.
local function walk(t, depth, seen)
  if getmetatable(t) ~= nil then
    return nil, "", " has a metatable: content tables must be plain (lua-cjson does not follow metatables)"
  end
  if depth > MAX_DEPTH then return nil, "", " is nested deeper than " .. MAX_DEPTH .. " tables" end
  seen[t] = true
  local size, n, ints, top = 2, 0, 0, 0
  for k, v in next, t do
    n = n + 1
    local tk = type(k)
    if tk == "string" then
      local ok, at = utf8_valid(k)
      if not ok then return nil, step(k), " is a key that is not valid UTF-8 (byte " .. at .. ")" end
      size = size + #k + 4
    elseif tk == "number" and k >= 1 and k % 1 == 0 then
      ints = ints + 1
      if k > top then top = k end
      size = size + 1
    elseif tk == "number" then
      return nil, "", " has the key " .. tostring(k) .. ": JSON keys are strings, and a list's are 1..n"
    else
      return nil, "", " has a " .. tk .. " key: JSON keys are strings, and a list's are 1..n"
    end
    local tv = type(v)
    if tv == "string" then
      local ok, at = utf8_valid(v)
      if not ok then return nil, step(k), " is not valid UTF-8 (byte " .. at .. ")" end
      size = size + #v + 2
    elseif tv == "number" then
      if v ~= v or v == huge or v == -huge then return nil, step(k), " is not a finite number" end
      -- a whole float this large is not what was written, more than likely
      -- (a 19-digit id read as a double); a Lua integer goes out exactly
      if v % 1 == 0 and (v >= MAX_EXACT or v <= -MAX_EXACT) and not is_integer(v) then
        return nil, step(k), " is a whole number beyond 2^53, which a double does not hold exactly: "
          .. "pass it as a string"
      end
      size = size + 1
    elseif tv == "table" then
      local done = seen[v]
      if done == true then return nil, step(k), " refers to a table that holds it (a cycle)" end
      if not done then
        local path, why
        done, path, why = walk(v, depth + 1, seen)
        if not done then return nil, step(k) .. path, why end
      end
      size = size + done
    elseif tv == "boolean" or v == null then
      size = size + 4
    else
      return nil, step(k), " is a " .. tv .. ", which JSON cannot carry"
    end
    if size > MAX_JSON then
      return nil, "", " would be over 1 MiB of JSON (a table used in several places is written out in each)"
    end
  end
  if ints > 0 and depth == 1 then return nil, "", " must be an object, not an array" end
  if ints > 0 and ints < n then
    return nil, "", " mixes list entries [1..] and named fields"
  end
  if top > n then return nil, "", " is a list with no [" .. first_missing(t, n) .. "]" end
  seen[t] = size
  return size
end

-- Checks the content table v of the field name (where the paths in its
-- errors start). Returns true, or nil and an invalid error such as
-- "content.elements[2].text is not valid UTF-8 (byte 7)".
function M.content_table(v, name)
  local size, path, why = walk(v, 1, {})
  if not size then return nil, errors.new("invalid", { field = name, msg = name .. path .. why }) end
  return true
end

-- The content as the JSON text that goes on the wire (a JSON string in the
-- body): a table is encoded; a string must already be JSON text of an
-- object, in UTF-8.
function M.content(v)
  if type(v) == "table" then
    local ok, err = M.content_table(v, "content")
    if not ok then return nil, err end
    -- every number as exactly as it was given (lua-cjson writes 14 digits)
    local text, eerr = json.encode_exact(v)
    if not text then return nil, invalid("content", "cannot be encoded as JSON: " .. tostring(eerr)) end
    return text
  elseif type(v) == "string" then
    local ok, at = utf8_valid(v)
    if not ok then return nil, invalid("content", "is not valid UTF-8 (byte " .. at .. ")") end
    if #v > MAX_JSON then return nil, invalid("content", "is over 1 MiB of JSON") end
    -- sent as it is: standard JSON only (no NaN, which Feishu would refuse)
    if not v:match("^%s*{") or type(json.decode_strict(v)) ~= "table" then
      return nil, invalid("content", "must be JSON text of an object (standard JSON: no NaN or Infinity)")
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
  if type(v) ~= "string" or v == "" or v:find("[%s%c]") or #v > 256 or not utf8_valid(v) then
    return nil, invalid("receiver_id", "must be a non-empty id in UTF-8 without whitespace or control characters")
  end
  return v
end

-- A string that goes into a JSON body: well-formed UTF-8.
function M.utf8(field, v)
  local ok, at = utf8_valid(v)
  if not ok then return nil, invalid(field, "is not valid UTF-8 (byte " .. at .. ")") end
  return v
end

-- The n of a list t whose keys are exactly 1..n, besides named fields in
-- skip. n is the number of its entries, counted with next: never #, which
-- differs between Luas when there are holes ({ "a", nil, "c" }), so a table
-- gets the same answer on every Lua. Returns n, or nil and the first index
-- missing, or nil, false and the first key that is neither an index nor in
-- skip.
function M.list_length(t, skip)
  local n, top = 0, 0
  for k in next, t do
    if type(k) == "number" and k >= 1 and k % 1 == 0 then
      n = n + 1
      if k > top then top = k end
    elseif not (skip and skip[k]) then
      return nil, false, k
    end
  end
  if top > n then return nil, first_missing(t, n) end
  return n
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

-- Less than 10 ms is no time at all for an exchange: a POST given 1 ms
-- goes out and times out, its fate unknown.
function M.seconds(field, v)
  if type(v) ~= "number" or v ~= v or v < 0.01 or v > 86400 then
    return nil, invalid(field, "must be a number of seconds, from 0.01 to 86400")
  end
  return v
end

-- A credential or other header-bound string.
-- Feishu's secrets are 32 characters and more; a shorter one is a typo,
-- and one this short could not be redacted from a message without hiding
-- ordinary words in it too.
M.MIN_SECRET = 8

-- A string for a header or a credential; min: the fewest bytes it may have.
function M.secret(field, v, min)
  if type(v) ~= "string" or v == "" then return nil, invalid(field, "must be a non-empty string") end
  if v:find("[\r\n%z]") then return nil, invalid(field, "must not contain CR, LF or NUL") end
  if min and #v < min then
    return nil, invalid(field, "is shorter than " .. min .. " bytes: not a secret Feishu issues "
      .. "(and one that short could not be kept out of messages)")
  end
  return v
end

function M.base_url(v)
  if type(v) ~= "string" or not v:match("^[hH][tT][tT][pP][sS]?://[^/?#]+") then
    return nil, invalid("base_url", "must be an http:// or https:// URL")
  end
  if v:find("[%s%c?#]") then
    return nil, invalid("base_url", "must not contain whitespace, control characters, '?' or '#'")
  end
  -- Feishu takes no user or password in the URL (its calls carry tokens),
  -- and one there would show wherever the URL does
  if v:match("^[^:]+://([^/]*)"):find("@", 1, true) then
    return nil, invalid("base_url", "must not hold a user or password (user:password@host)")
  end
  return (v:gsub("/+$", ""))
end

-- Rejects keys outside the allowed set, so a typo never goes unnoticed.
function M.known_keys(what, t, allowed)
  for k in next, t do
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
