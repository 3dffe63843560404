-- Prints every message of a ticket (a text message as its text). The iterator fetches 200 a page and
-- raises the error object if a page fails, so pcall tells a failure from
-- the end of the list.
local helpdesk = require "helpdesk"

local ticket_id = os.getenv("FEISHU_TICKET_ID") or "6948728206392295444"
local count = 0
local ok, err = pcall(function()
  for msg in helpdesk.ticket_messages(ticket_id) do
    count = count + 1
    print(string.format("%s  %-6s %-16s %s", os.date("!%Y-%m-%d %H:%M:%S", math.floor(msg.created_at / 1000)),
      msg.message_type, msg.user_name or "", helpdesk.text_of(msg) or msg.content))
  end
end)
if not ok then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print(count .. " messages")
