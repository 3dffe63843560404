-- The handlers of examples/openresty/nginx.conf. The module functions use a
-- default client per worker, configured from the FEISHU_* environment; its
-- HTTP calls run in nginx's thread pool, its token and rate limits live in
-- the shared dict, so the handlers read like plain blocking code.
local helpdesk = require "helpdesk"
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

return M
