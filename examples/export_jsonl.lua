-- Exports every message of a ticket to a JSON-lines file, one message per
-- line as Feishu returns it. The file is written beside its final name and
-- renamed only when the listing completed, so a failed export never leaves
-- a file that looks whole.
-- Usage: lua export_jsonl.lua [OUT] (default ticket-<id>.jsonl); FEISHU_TICKET_ID names the ticket.
local helpdesk = require "helpdesk"
local cjson = require "cjson"

local ticket_id = os.getenv("FEISHU_TICKET_ID") or "6948728206392295444"
local out_name = arg[1] or ("ticket-" .. ticket_id .. ".jsonl")
local part_name = out_name .. ".part"

local f = assert(io.open(part_name, "w"))
local count, last_at = 0, nil
local ok, err = pcall(function()
  for msg in helpdesk.ticket_messages(ticket_id) do
    f:write(cjson.encode(msg), "\n")
    count, last_at = count + 1, msg.created_at
  end
end)
f:close()
if not ok then
  os.remove(part_name)
  io.stderr:write("export failed after ", count, " messages: ", tostring(err), "\n")
  os.exit(1)
end
assert(os.rename(part_name, out_name))
print(string.format("%d messages exported to %s%s", count, out_name,
  last_at and (", the last from " .. os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(last_at / 1000))) or ""))
