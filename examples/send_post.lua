-- Sends a rich-text (post) message to a ticket, in the shape of the
-- documents' example: a title, a line with a link, a second line.
local helpdesk = require "helpdesk"

local ticket_id = os.getenv("FEISHU_TICKET_ID") or "6948728206392295444"
local data, err = helpdesk.send_ticket_message(ticket_id, {
  msg_type = "post",
  content = {
    post = {
      zh_cn = {
        title = "Ticket update",
        content = {
          {
            { tag = "text", text = "Status: " },
            { tag = "a", text = "open the ticket", href = "https://www.feishu.cn" },
          },
          { { tag = "text", text = "We will get back to you within the hour." } },
        },
      },
    },
  },
})
if not data then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print("post message sent: " .. data.message_id)
