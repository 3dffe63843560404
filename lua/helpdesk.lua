--- feishu-helpdesk: the Feishu / Lark helpdesk message APIs for Lua.
-- Every call returns its result, or `nil` and an
-- @{helpdesk.errors.Error|error object}. The message builders and readers of @{helpdesk.message} are here
-- too: `helpdesk.text`, `image`, `post`, `link`, `at`, `img`, `card`,
-- `decode_content` and `text_of`.
-- @module helpdesk
-- @usage
-- local helpdesk = require "helpdesk"
-- local client = assert(helpdesk.new{
--   app_id = os.getenv("FEISHU_APP_ID"), app_secret = os.getenv("FEISHU_APP_SECRET"),
--   helpdesk_id = os.getenv("FEISHU_HELPDESK_ID"), helpdesk_token = os.getenv("FEISHU_HELPDESK_TOKEN"),
-- })
-- local data, err = client:send_ticket_message("6948728206392295444", helpdesk.text("Hello"))
-- if not data then print(tostring(err)) end
local client = require "helpdesk.client"
local config = require "helpdesk.config"
local message = require "helpdesk.message"
local clock = require "helpdesk.clock"
local store = require "helpdesk.store"
local events = require "helpdesk.events"

local error, ipairs = error, ipairs

local M = {
  --- The library's version, such as `"0.1.0"`.
  _VERSION = client.VERSION,
  --- `"https://open.feishu.cn"`, the default `base_url`.
  FEISHU_BASE_URL = config.FEISHU_BASE_URL,
  --- `"https://open.larksuite.com"`, the `base_url` for Lark (also `base_url = "lark"`).
  LARK_BASE_URL = config.LARK_BASE_URL,
  --- @{helpdesk.events}: receiving the events Feishu pushes (`helpdesk.events.new{…}`).
  events = events,
}

for _, name in ipairs({ "text", "image", "post", "link", "at", "img", "card", "decode_content", "text_of" }) do
  M[name] = message[name]
end

--- A new client.
-- @tparam table opts `app_id` and `app_secret`, or `tenant_access_token`;
-- `helpdesk_id` and `helpdesk_token`; and optionally `base_url` (a URL,
-- `"feishu"` or `"lark"`), `timeout`, `connect_timeout`, `max_body_size`,
-- `ca_file`, `ca_path`, `insecure`, `proxy`, `user_agent`, `max_retries`,
-- `budget`, `max_rate_limit_wait`, `rate_limit`, `store` (a store object, or
-- `{ redis = "redis://…", prefix =, timeout = }` shared by several hosts),
-- `store_share`, `logger`, and inside nginx
-- `thread_pool`, `shared_dict`, `allow_blocking` (the README's table says
-- what each does). An unknown option is an error.
-- @treturn[1] helpdesk.client.Client the client
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error an `invalid` error naming the option
function M.new(opts)
  return client.new(opts)
end

--- A store in this process's memory, for the `store` option: the clients
-- given the same one share one tenant token and one rate budget (several
-- helpdesks of one app, say). Inside nginx the `lua_shared_dict` does that
-- across workers.
-- @treturn table the store
function M.memory_store()
  return store.table(clock.now)
end

local default_client

--- Sets up the client behind the module functions, replacing the one
-- before. Without it, they use a client made from the `FEISHU_*`
-- environment on first use. The client before is not closed: a listing
-- under way, or anyone else holding it, goes on with it, and its connection
-- goes with it at garbage collection.
-- @tparam table opts as for @{new}
-- @treturn[1] helpdesk.client.Client the client
-- @return[2] nil
-- @treturn[2] helpdesk.errors.Error
function M.configure(opts)
  local c, err = client.new(opts)
  if not c then return nil, err end
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

for _, name in ipairs({ "send_ticket_message", "send_ticket_messages", "bot_message", "list_ticket_messages",
                        "subscribe_events", "unsubscribe_events" }) do
  M[name] = function(...)
    local c, err = default()
    if not c then return nil, err end
    return c[name](c, ...)
  end
end

--- @{helpdesk.client.Client:send_ticket_message} on the default client.
-- @function send_ticket_message
-- @string ticket_id
-- @tab msg
-- @tab[opt] opts

--- @{helpdesk.client.Client:send_ticket_messages} on the default client.
-- @function send_ticket_messages
-- @tab items
-- @tab[opt] opts

--- @{helpdesk.client.Client:bot_message} on the default client.
-- @function bot_message
-- @tab msg
-- @tab[opt] opts

--- @{helpdesk.client.Client:list_ticket_messages} on the default client.
-- @function list_ticket_messages
-- @string ticket_id
-- @tab[opt] query
-- @tab[opt] opts

--- @{helpdesk.client.Client:subscribe_events} on the default client.
-- @function subscribe_events
-- @tab types
-- @tab[opt] opts

--- @{helpdesk.client.Client:unsubscribe_events} on the default client.
-- @function unsubscribe_events
-- @tab types
-- @tab[opt] opts

--- @{helpdesk.client.Client:ticket_messages} on the default client. Raises the
-- error object when the default client cannot be made.
-- @string ticket_id
-- @tab[opt] query
-- @tab[opt] opts
function M.ticket_messages(ticket_id, query, opts)
  local c, err = default()
  if not c then error(err, 2) end
  return c:ticket_messages(ticket_id, query, opts)
end

return M
