-- The specs' side of the fake Feishu (fake/feishu_fake.lua): its URL, its
-- credentials, and its /_fake/* control endpoints, over real HTTP.
local core = require "helpdesk.core"
local cjson = require "cjson.safe"
local helpdesk = require "helpdesk"

local M = {}

M.url = os.getenv("FEISHU_FAKE_URL")
  or error("run the specs through fake/fakefeishu run (make test)")

-- The same fake over TLS, with a self-signed certificate for 127.0.0.1.
M.tls_url = os.getenv("FEISHU_FAKE_TLS_URL")
M.ca_file = os.getenv("FEISHU_FAKE_CA")

M.APP_ID = "cli_fake_app"
M.APP_SECRET = "fake-app-secret"
M.HELPDESK_ID = "6939767543285809180"
M.HELPDESK_TOKEN = "fake-helpdesk-token"
M.TICKET = "6948728206392295444"

local handle = assert(core.new())

function M.control(name, body)
  local status, text = handle:request({
    method = body and "POST" or "GET",
    url = M.url .. "/_fake/" .. name,
    body = body and cjson.encode(body) or nil,
    headers = { ["Content-Type"] = "application/json" },
  })
  assert(status == 200, "fake control " .. name .. " failed: " .. tostring(status))
  return cjson.decode(text)
end

function M.reset() return M.control("reset", {}) end
function M.requests() return M.control("requests") end
function M.state() return M.control("state") end
function M.config(t) return M.control("config", t) end
function M.ticket(t) return M.control("ticket", t) end
function M.fault(t) return M.control("fault", t) end
function M.bot_messages() return M.control("bot_messages") end
function M.subscriptions() return M.control("subscriptions") end
-- Pushes an event as Feishu does (t: url, event, encrypt_key, delays,
-- timeout, ignore_first); pushes() lists each try.
function M.push(t) return M.control("push", t) end
function M.pushes() return M.control("pushes") end
-- A card action (a button clicked) sent as Feishu sends it (t: url, protocol
-- "new" | "old", action, open_id, open_message_id, encrypt_key,
-- verification_token, timeout); returns { status =, body = } or { error = }.
function M.card_action(t) return M.control("card_action", t) end

-- The fake's clock: advance it by seconds (>= 0; nil only reads it). Returns
-- { ok = true, offset = seconds ahead of the wall clock, now = the fake's time }.
function M.clock(advance) return M.control("clock", { advance = advance }) end

-- Every token issued so far is refused from now on (99991663), its uses
-- counted in state().revoked_token_uses.
function M.revoke_tokens() return M.control("revoke_tokens", {}) end

-- { counts = { [text] = times delivered }, total = n }: the text messages the
-- fake took into the ticket through the API (record = false too).
function M.delivered(ticket_id) return M.control("delivered", { ticket_id = ticket_id }) end
function M.texts() return M.control("texts") end

-- A listing of the ticket's own messages that does not page as documented
-- (nil: the honest one again): { mode = "repeat" | "overlap" | "back" |
-- "grow" | "object" | "descending", total = n (reported instead),
-- no_total = true }. See fake/feishu_fake.lua for what each mode answers
-- (config({ listing = mode }) has other modes, of messages it makes up).
function M.listing(t) return M.control("listing", t or {}) end

-- Requests the fake received on paths that start with prefix.
function M.requests_to(prefix)
  local out = {}
  for _, r in ipairs(M.requests()) do
    if r.path:sub(1, #prefix) == prefix then out[#out + 1] = r end
  end
  return out
end

-- false in overrides removes an option (app_id = false: no app_id), except
-- for the options whose value false means something.
local KEEP_FALSE = { insecure = true, rate_limit = true }

function M.options(overrides)
  local o = {
    base_url = M.url, app_id = M.APP_ID, app_secret = M.APP_SECRET,
    helpdesk_id = M.HELPDESK_ID, helpdesk_token = M.HELPDESK_TOKEN,
  }
  for k, v in pairs(overrides or {}) do
    if v == false and not KEEP_FALSE[k] then o[k] = nil else o[k] = v end
  end
  return o
end

function M.client(overrides)
  return assert(helpdesk.new(M.options(overrides)))
end

-- Nothing listens on loopback port 1: a connection there is refused at once.
M.dead_url = "http://127.0.0.1:1"

return M
