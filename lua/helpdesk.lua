--- feishu-helpdesk: the Feishu / Lark helpdesk message APIs for Lua.
-- Every call returns its result, or nil and an error object (see README).
local client = require "helpdesk.client"
local config = require "helpdesk.config"
local message = require "helpdesk.message"

local error, ipairs = error, ipairs

local M = {
  _VERSION = client.VERSION,
  FEISHU_BASE_URL = config.FEISHU_BASE_URL,
  LARK_BASE_URL = config.LARK_BASE_URL,
}

-- The message builders and readers: helpdesk.text, image, post (with link,
-- at and img elements), card, decode_content and text_of.
for _, name in ipairs({ "text", "image", "post", "link", "at", "img", "card", "decode_content", "text_of" }) do
  M[name] = message[name]
end

--- A new client: helpdesk.new{ app_id=, app_secret= | tenant_access_token=,
-- helpdesk_id=, helpdesk_token=, base_url=, timeout=, connect_timeout=, … }
function M.new(opts)
  return client.new(opts)
end

local default_client

--- Sets up the client behind the module functions; same options as new.
function M.configure(opts)
  local c, err = client.new(opts)
  if not c then return nil, err end
  if default_client then default_client:close() end
  default_client = c
  return c
end

-- The default client, made from FEISHU_* on first use.
local function default()
  if not default_client then
    local c, err = client.new(config.from_env())
    if not c then return nil, err end
    default_client = c
  end
  return default_client
end

-- helpdesk.send_ticket_message(ticket_id, msg [, opts]), helpdesk.send_ticket_messages(items [, opts]),
-- helpdesk.bot_message(msg [, opts])
-- and helpdesk.list_ticket_messages(ticket_id, query [, opts]): the client
-- methods of the same names, on the default client.
for _, name in ipairs({ "send_ticket_message", "send_ticket_messages", "bot_message", "list_ticket_messages" }) do
  M[name] = function(...)
    local c, err = default()
    if not c then return nil, err end
    return c[name](c, ...)
  end
end

--- Raises the error object when the default client cannot be made or a
-- page fails, as client:ticket_messages does.
function M.ticket_messages(ticket_id, query, opts)
  local c, err = default()
  if not c then error(err, 2) end
  return c:ticket_messages(ticket_id, query, opts)
end

return M
