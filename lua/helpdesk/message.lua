--- Message builders that make exactly the content shapes the documents give
-- (and Feishu's message-content rules for post elements), checked here so a
-- mistake is an invalid error naming the field rather than a 154000 later;
-- and readers of a listed message's content. All of them are also fields of
-- `require "helpdesk"`: `helpdesk.text(…)`.
-- Each builder returns `{ msg_type =, content = }` for
-- @{helpdesk.client.Client:send_ticket_message} or
-- @{helpdesk.client.Client:bot_message}, or `nil` and an `invalid` error.
-- @module helpdesk.message
local core = require "helpdesk.core"
local errors = require "helpdesk.errors"
local json = require "helpdesk.json"
local validate = require "helpdesk.validate"

local type, tostring = type, tostring
local setmetatable, getmetatable = setmetatable, getmetatable
local invalid, utf8, utf8_valid = errors.invalid, validate.utf8, core.utf8_valid

local M = {}

local function text_value(field, s)
  if type(s) ~= "string" or s == "" then return nil, invalid(field, "must be a non-empty string") end
  return utf8(field, s)
end

--- A text message.
-- @string s the text
-- @treturn table `{ msg_type = "text", content = { text = s } }`
function M.text(s)
  local v, err = text_value("text", s)
  if not v then return nil, err end
  return { msg_type = "text", content = { text = v } }
end

--- An image message (bot messages only).
-- @string image_key the key of an uploaded image
-- @treturn table `{ msg_type = "image", content = { image_key = } }`
function M.image(image_key)
  local v, err = text_value("image_key", image_key)
  if not v then return nil, err end
  return { msg_type = "image", content = { image_key = v } }
end

-- Elements of a post line. A plain string in a line is a text element.
local ELEMENT = {}

--- A link, for a line of a @{post}.
-- @string text
-- @string href an http or https URL
function M.link(text, href)
  return setmetatable({ tag = "a", text = text, href = href }, ELEMENT)
end

--- An @ of a user, for a line of a @{post}.
-- @string user_id an open_id, or `"all"`
-- @string[opt] user_name
function M.at(user_id, user_name)
  return setmetatable({ tag = "at", user_id = user_id, user_name = user_name }, ELEMENT)
end

--- An image, for a line of a @{post}.
-- @string image_key
function M.img(image_key)
  return setmetatable({ tag = "img", image_key = image_key }, ELEMENT)
end

-- The strings of an element e, field naming it, list giving for each its
-- key, how the message names it and whether it is optional (absent or any
-- string): present ones are strings in UTF-8, required ones not empty.
local function element_strings(field, e, list)
  for i = 1, #list, 3 do
    local key, what, optional = list[i], list[i + 1], list[i + 2]
    local v = e[key]
    if not (optional and v == nil) then
      if type(v) ~= "string" or (v == "" and not optional) then
        return nil, invalid(field, what .. (optional and " must be a string" or " must be a non-empty string"))
      end
      local ok, at = utf8_valid(v)
      if not ok then return nil, invalid(field, what .. " is not valid UTF-8 (byte " .. at .. ")") end
    end
  end
  return true
end

local LINK = { "text", "link text", false, "href", "link href", false }
local AT = { "user_id", "@ user_id", false, "user_name", "@ user_name", true }
local IMG = { "image_key", "img image_key", false }

local function element(field, e)
  if type(e) == "string" then
    if e == "" then return nil, invalid(field, "must not be an empty string") end
    local ok, err = utf8(field, e)
    if not ok then return nil, err end
    return { tag = "text", text = e }
  end
  if getmetatable(e) ~= ELEMENT then
    return nil, invalid(field, "must be a string or made by helpdesk.link, helpdesk.at or helpdesk.img")
  end
  local ok, err
  if e.tag == "a" then
    ok, err = element_strings(field, e, LINK)
    if not ok then return nil, err end
    if not e.href:match("^[hH][tT][tT][pP][sS]?://[^%s%c]+$") then
      return nil, invalid(field, "link href must be an http or https URL")
    end
    return { tag = "a", text = e.text, href = e.href }
  elseif e.tag == "at" then
    ok, err = element_strings(field, e, AT)
    if not ok then return nil, err end
    if e.user_id:find("[%s%c]") then return nil, invalid(field, "@ needs a user id (or \"all\")") end
    return { tag = "at", user_id = e.user_id, user_name = e.user_name }
  end
  ok, err = element_strings(field, e, IMG)
  if not ok then return nil, err end
  return { tag = "img", image_key = e.image_key }
end

local LANGS = { zh_cn = true, en_us = true, ja_jp = true }

-- The length of a list t (the lines of a post, the elements of a line),
-- field naming it: no metatable (ipairs follows one on some Luas only), keys
-- exactly 1..n besides the named ones in skip (see validate.list_length).
-- Returns n, or nil and an invalid error naming the hole or the odd key.
local function entries(field, t, skip)
  if getmetatable(t) ~= nil then
    return nil, invalid(field, "must be a plain table (no metatable: ipairs would follow it on some Luas only)")
  end
  local n, missing, key = validate.list_length(t, skip)
  if n then return n end
  if missing then
    return nil, invalid(field .. "[" .. missing .. "]", "is missing (a nil in the list): "
      .. "a list needs keys 1..n without holes")
  end
  return nil, invalid(field, "has an unknown field " .. tostring(key))
end

local POST_FIELDS = { title = true, lang = true }

--- A rich-text message: each array entry is a line, each line a string or a
-- list of elements (strings, @{link}, @{at}, @{img}). Lines and elements
-- are lists without holes: `{ "a", nil, "c" }` is an `invalid` error on the
-- missing one (`post[2]`), the same on every Lua.
-- @tab t `{ title = "…", lang = "zh_cn" | "en_us" | "ja_jp", line, … }`
-- @treturn table `{ msg_type = "post", content = { post = { [lang] = { title =, content = } } } }`
-- @usage helpdesk.post{ title = "Ticket update", "Status: resolved",
--   { "See ", helpdesk.link("the report", "https://example.com/r/1"), " ", helpdesk.at("ou_1") } }
function M.post(t)
  if type(t) ~= "table" then return nil, invalid("post", "must be a table of lines") end
  local n, err = entries("post", t, POST_FIELDS)
  if not n then return nil, err end
  local lang = t.lang or "zh_cn"
  if not LANGS[lang] then return nil, invalid("lang", "must be zh_cn, en_us or ja_jp") end
  if t.title ~= nil then
    if type(t.title) ~= "string" then return nil, invalid("title", "must be a string") end
    local ok, terr = utf8("title", t.title)
    if not ok then return nil, terr end
  end
  if n == 0 then return nil, invalid("post", "needs at least one line") end
  local lines = {}
  for i = 1, n do
    local field, line = "post[" .. i .. "]", t[i]
    if type(line) == "string" then line = { line } end
    if getmetatable(line) == ELEMENT then
      return nil, invalid(field, "must be a string or a list of elements: wrap a single element in { }")
    end
    local count
    if type(line) == "table" then
      count, err = entries(field, line)
      if not count then return nil, err end
    end
    if not count or count == 0 then
      return nil, invalid(field, "must be a string or a non-empty list of elements")
    end
    local out = {}
    for j = 1, count do
      local el, eerr = element(field .. "[" .. j .. "]", line[j])
      if not el then return nil, eerr end
      out[j] = el
    end
    lines[i] = out
  end
  return { msg_type = "post", content = { post = { [lang] = { title = t.title or "", content = lines } } } }
end

--- An interactive card message (bot messages only): card JSON 1.0, since
-- the endpoint takes no 2.0 card.
-- @tab card a card JSON 1.0 table, with `elements` or `i18n_elements`
-- @treturn table `{ msg_type = "interactive", content = card }`
function M.card(card)
  if type(card) ~= "table" then return nil, invalid("card", "must be a card table (card JSON 1.0)") end
  local ok, err = validate.content_table(card, "card")
  if not ok then return nil, err end
  if card.schema ~= nil then
    return nil, invalid("card", "card JSON 2.0 (schema " .. tostring(card.schema) .. ") is not supported here")
  end
  if card.elements == nil and card.i18n_elements == nil then
    return nil, invalid("card", "needs elements (card JSON 1.0)")
  end
  return { msg_type = "interactive", content = card }
end

--- The content of a listed message, decoded.
-- @tab msg a message from a listing
-- @treturn[1] table such as `{ content = "…", msg_type = "text" }` for a text message
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error `decode` when the content is not a JSON object
function M.decode_content(msg)
  if type(msg) ~= "table" or type(msg.content) ~= "string" then
    return nil, invalid("message", "must be a listed message with a content string")
  end
  local v, err = json.decode(msg.content)
  if type(v) ~= "table" then
    return nil, errors.new("decode", { msg = "message content is not a JSON object: " .. tostring(err or v) })
  end
  return v
end

--- The plain text of a listed text message, or of a ticket message event
-- (`helpdesk.ticket_message.created_v1` from @{helpdesk.events}).
-- @tab msg a message from a listing, or an event
-- @treturn[1] string
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error `invalid` for a message that is not text
function M.text_of(msg)
  if type(msg) == "table" and msg.event_type ~= nil then return require("helpdesk.events").text_of(msg) end
  local c, err = M.decode_content(msg)
  if not c then return nil, err end
  local text = c.content
  if (msg.message_type or c.msg_type) ~= "text" or type(text) ~= "string" then
    return nil, invalid("message", "is not a text message")
  end
  return text
end

return M
