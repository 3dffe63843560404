-- Sends a plain-text message to a ticket.
-- Credentials come from FEISHU_* (see README); FEISHU_TICKET_ID names the ticket.
local helpdesk = require "helpdesk"

local ticket_id = os.getenv("FEISHU_TICKET_ID") or "6948728206392295444"
local data, err = helpdesk.send_ticket_message(ticket_id, {
  msg_type = "text",
  content = { text = "Hello from feishu-helpdesk: your ticket is being handled." },
})
if not data then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print("text message sent: " .. data.message_id)
