-- The helpdesk bot writes to a user's helpdesk group (receive_type "chat")
-- or private chat ("user"). FEISHU_RECEIVER_ID names the user (an open_id).
local helpdesk = require "helpdesk"

local receiver = os.getenv("FEISHU_RECEIVER_ID") or "ou_7346484524"
local data, err = helpdesk.bot_message({
  msg_type = "text",
  content = { text = "Your ticket was resolved. Reply here if anything is left." },
  receiver_id = receiver,
  receive_type = "user",
  user_id_type = "open_id",
})
if not data then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
print("bot message sent: " .. data.message_id)
