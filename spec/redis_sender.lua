-- One "host" of the shared-budget spec: a plain Lua process that sends
-- ticket messages as fast as its client lets it, through a Redis store.
-- Environment: FEISHU_FAKE_URL, SENDER_REDIS (the store's URL), SENDER_N
-- (how many), SENDER_NAME (in each text), SENDER_RATE (the client's
-- limit a second; the documented 50 and 1000 a minute when unset),
-- SENDER_PER_MINUTE (with SENDER_RATE: the limit a minute; none when unset),
-- SENDER_TIMEOUT (the store's timeout; its default when unset). Prints "sent <n> failed <n>"
-- and, for each failure, its error.
local fake = require "fake"
local helpdesk = require "helpdesk"

local n, name = tonumber(os.getenv("SENDER_N")), os.getenv("SENDER_NAME")
local rate = tonumber(os.getenv("SENDER_RATE"))
local per_minute = tonumber(os.getenv("SENDER_PER_MINUTE"))
local store = { redis = os.getenv("SENDER_REDIS"), timeout = tonumber(os.getenv("SENDER_TIMEOUT")) }
local client = assert(helpdesk.new(fake.options({ store = store,
  rate_limit = rate and { ticket_message = { per_second = rate, per_minute = per_minute or false } } or nil })))
local sent, failed, errs = 0, 0, {}
for i = 1, n do
  local _, err = client:send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = name .. "-" .. i } })
  if err then
    failed = failed + 1
    errs[#errs + 1] = tostring(err)
  else
    sent = sent + 1
  end
end
client:close()
print("sent " .. sent .. " failed " .. failed)
for _, e in ipairs(errs) do print(e) end
