-- The handlers of examples/openresty/nginx.conf. The module functions use a
-- default client per worker, configured from the FEISHU_* environment; its
-- HTTP calls run in nginx's thread pool, its token and rate limits live in
-- the shared dict, so the handlers read like plain blocking code.
local helpdesk = require "helpdesk"
local events = require "helpdesk.events"
local cjson = require "cjson.safe"

local M = {}

local function reply(status, body)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(body))
end

-- Bad input is the caller's fault (400); anything else is Feishu's or the
-- network's (502). tostring(err) never shows a secret.
local function failed(err)
  reply(err.kind == "invalid" and 400 or 502, { error = tostring(err), kind = err.kind, code = err.code })
end

local function json_body()
  ngx.req.read_body()
  local body = cjson.decode(ngx.req.get_body_data() or "")
  if type(body) ~= "table" then
    reply(400, { error = "expected a JSON object" })
    return nil
  end
  return body
end

function M.send_ticket_message()
  local body = json_body()
  if not body then return end
  local data, err = helpdesk.send_ticket_message(body.ticket_id, {
    msg_type = "text", content = { text = body.text or "" },
  })
  if not data then return failed(err) end
  reply(200, { message_id = data.message_id, worker = ngx.worker.pid() })
end

function M.bot_message()
  local body = json_body()
  if not body then return end
  local data, err = helpdesk.bot_message({
    msg_type = "text", content = { text = body.text or "" }, receiver_id = body.receiver_id,
  })
  if not data then return failed(err) end
  reply(200, { message_id = data.message_id, worker = ngx.worker.pid() })
end

function M.ticket_messages()
  local messages = {}
  -- the iterator raises on a failed page: a listing never ends half-way quietly
  local ok, err = pcall(function()
    for msg in helpdesk.ticket_messages(ngx.var.arg_ticket_id) do
      messages[#messages + 1] = { message_id = msg.message_id, created_at = msg.created_at }
    end
  end)
  if not ok then return failed(err) end
  reply(200, { count = #messages, messages = messages, worker = ngx.worker.pid() })
end

-- The reply bot. Feishu pushes helpdesk.ticket_message.created_v1 to
-- /feishu/events when someone writes in a ticket; the bot answers in the
-- ticket with how many messages it now holds. nginx_handler answers Feishu
-- at once and runs the handler after the answer, in a timer, where the
-- calls wait in the thread pool; an event Feishu pushes again (no 200 within
-- 3 s) is run once, across workers: its id is kept in the lua_shared_dict.
-- It also sends the guest a card with a button; the click comes to the same
-- URL as a card action, answered in the request with a toast and the card
-- updated.

-- The card (JSON 1.0: the bot-message endpoint takes no 2.0): a button
-- whose value comes back in the card action, or once clicked, a thank-you.
local function solved_card(ticket_id, solved)
  local elements = { { tag = "div", text = { tag = "plain_text",
    content = solved and "Thanks for telling us." or "Did we solve your problem?" } } }
  if not solved then
    elements[2] = { tag = "action", actions = { {
      tag = "button", type = "primary", text = { tag = "plain_text", content = "Solved" },
      value = { action = "solved", ticket_id = ticket_id },
    } } }
  end
  return { config = { wide_screen_mode = true, update_multi = true },
           header = { title = { tag = "plain_text", content = "Ticket " .. ticket_id } }, elements = elements }
end

function M.on_ticket_message(ev)
  -- only a guest's words: the bot's own reply comes back as an event too,
  -- and answering it would never end
  local sender = events.sender(ev)
  if sender.type ~= "guest" then return true end
  local ticket_id = events.ticket_id(ev)
  -- the iterator raises on a failed page: count inside pcall
  local n = 0
  local ok, err = pcall(function()
    for _ in helpdesk.ticket_messages(ticket_id) do n = n + 1 end
  end)
  if not ok then return nil, err end
  local data
  data, err = helpdesk.send_ticket_message(ticket_id, helpdesk.text(
    ("Thanks, we got your message: this ticket now holds %d messages. An agent will answer soon."):format(n)))
  if not data then return nil, err end -- logged at ngx.ERR by nginx_handler
  -- and the card, to the guest's private chat with the helpdesk bot
  if sender.open_id then
    local msg = assert(helpdesk.card(solved_card(ticket_id)))
    msg.receiver_id, msg.receive_type, msg.user_id_type = sender.open_id, "user", "open_id"
    data, err = helpdesk.bot_message(msg)
    if not data then return nil, err end
  end
  return true
end

-- A click on the card's button, in either protocol: what it returns is the
-- answer Feishu shows (a toast) and applies (the card updated), within 3 s.
function M.on_card_action(ev)
  local action = events.card_action(ev)
  local value = type(action.value) == "table" and action.value or {}
  if value.action ~= "solved" or type(value.ticket_id) ~= "string" then
    return events.card_reply({ toast = { type = "error", content = "This button is not ours." } })
  end
  return events.card_reply({
    toast = { type = "success", content = "Ticket " .. value.ticket_id .. " is solved: thank you." },
    card = solved_card(value.ticket_id, true),
  })
end

-- One receiver per worker, made on first use (not in init_by_lua): its
-- store is then the lua_shared_dict "helpdesk", which every worker sees.
local receiver

local function feishu_receiver()
  if receiver then return receiver end
  local r, err = events.new({
    verification_token = os.getenv("FEISHU_VERIFICATION_TOKEN"),
    encrypt_key = os.getenv("FEISHU_ENCRYPT_KEY"),
  })
  if not r then return nil, err end
  r:on("helpdesk.ticket_message.created_v1", M.on_ticket_message)
  r:on(events.CARD_ACTION, M.on_card_action)    -- card.action.trigger
  r:on(events.CARD_ACTION_V1, M.on_card_action) -- the old protocol
  receiver = r
  return r
end

function M.feishu_events()
  ngx.header["X-Worker"] = ngx.worker.pid() -- which worker answered, for the specs
  local r, err = feishu_receiver()
  if not r then -- a missing or bad setting: never the secret itself
    ngx.log(ngx.ERR, "helpdesk_app: no receiver: ", tostring(err))
    return reply(500, { msg = "the receiver is not configured" })
  end
  events.nginx_handler(r)
end

return M
