-- Sends several messages to a ticket at once (send_ticket_messages), and
-- reports each one's fate in input order.
-- Credentials come from FEISHU_* (see README); FEISHU_TICKET_ID names the ticket.
local helpdesk = require "helpdesk"

local ticket_id = os.getenv("FEISHU_TICKET_ID") or "6948728206392295444"
local items = {}
for i, step in ipairs({ "received", "assigned to an agent", "being worked on" }) do
  items[i] = { ticket_id = ticket_id, msg_type = "text", content = { text = "Update " .. i .. ": " .. step } }
end
local results, err = helpdesk.send_ticket_messages(items, { concurrency = 3 })
if not results then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
for i, r in ipairs(results) do
  if r.err then print(i .. ": failed: " .. tostring(r.err)) else print(i .. ": sent " .. r.data.message_id) end
end
if results.failed > 0 then os.exit(1) end
