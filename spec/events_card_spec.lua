-- Card action callbacks through the receiver: the new protocol
-- (card.action.trigger, a v2 envelope, AES and the SHA-256 signature) and
-- the old one (no envelope, SHA-1 over timestamp, nonce, verification token
-- and body), answered with the handler's reply. Requests are made apart from
-- the library (spec/openssl.lua: the openssl command line, sha1sum).
local cjson = require "cjson"
local events = require "helpdesk.events"
local openssl = require "openssl"

local KEY = "cK7-card-key-Secret"
local TOKEN = "cT3-card-Token"

local CARD = {
  config = { update_multi = true },
  elements = { { tag = "div", text = { tag = "plain_text", content = "Solved, thank you" } } },
}

local function receiver(extra)
  local opts = { verification_token = TOKEN, encrypt_key = KEY }
  for k, v in pairs(extra or {}) do
    if v == false then opts[k] = nil else opts[k] = v end -- false: without it
  end
  return assert(events.new(opts))
end

-- A click of the new protocol as Feishu sends it: encrypted, SHA-256 signed.
local function new_click(value, id)
  local plain = cjson.encode({
    schema = "2.0",
    header = { event_id = id or "card-ev-1", token = TOKEN, create_time = "1700000000000",
               event_type = "card.action.trigger", tenant_key = "t_1", app_id = "cli_1" },
    event = { operator = { open_id = "ou_clicker", user_id = "u_1", union_id = "on_1", tenant_key = "t_1" },
              token = "c-update-token", host = "im_message",
              action = { tag = "button", value = value },
              context = { open_message_id = "om_card_1", open_chat_id = "oc_1" } },
  })
  local body = cjson.encode({ encrypt = openssl.encrypt(KEY, plain) })
  local ts = tostring(os.time())
  return { ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = "n-1",
           ["X-Lark-Signature"] = openssl.signature(ts, "n-1", KEY, body) }, body
end

-- A click of the old protocol: the body plain (or encrypted when encrypt),
-- signed with SHA-1 over timestamp, nonce, token and the raw body.
local function old_click(value, opts)
  opts = opts or {}
  local body = cjson.encode({ open_id = "ou_clicker", user_id = "u_1", open_message_id = "om_card_1",
                              open_chat_id = "oc_1", tenant_key = "t_1", token = "c-update-token",
                              action = { tag = "button", value = value } })
  if opts.encrypt then body = cjson.encode({ encrypt = openssl.encrypt(KEY, body) }) end
  local ts = tostring(opts.ts or os.time())
  return { ["x-lark-request-timestamp"] = ts, ["x-lark-request-nonce"] = "n-2",
           ["x-lark-signature"] = openssl.card_signature(ts, "n-2", opts.token or TOKEN, body) }, body
end

local function toast_and_card()
  return assert(events.card_reply({ toast = { type = "success", content = "Marked solved" }, card = CARD }))
end

describe("card actions, new protocol (card.action.trigger)", function()
  it("are decoded as v2 events and read with card_action", function()
    local ev = assert(receiver():decode(new_click({ action = "solved", ticket_id = "6948728206392295444" })))
    assert.are.equal("card.action.trigger", ev.event_type)
    assert.are.equal("card-ev-1", ev.event_id)
    assert.are.same({ protocol = "new", tag = "button",
                      value = { action = "solved", ticket_id = "6948728206392295444" },
                      open_id = "ou_clicker", user_id = "u_1", union_id = "on_1", open_message_id = "om_card_1",
                      open_chat_id = "oc_1", token = "c-update-token" }, events.card_action(ev))
  end)

  it("are answered with the handler's toast and card, in the request", function()
    local r = receiver()
    local seen
    r:on("card.action.trigger", function(ev)
      seen = events.card_action(ev).value.action
      return toast_and_card()
    end)
    local status, body = r:handle(new_click({ action = "solved" }))
    assert.are.equal(200, status)
    assert.are.equal("solved", seen)
    assert.are.same({ toast = { type = "success", content = "Marked solved" }, card = { type = "raw", data = CARD } },
      cjson.decode(body))
  end)

  it("answers a template card, a table as it is, or {} for nothing", function()
    local r = receiver()
    local reply
    r:on("card.action.trigger", function() return reply end)
    reply = assert(events.card_reply({ template = { id = "AAq1", variables = { n = 3 }, version = "1.0.1" } }))
    assert.are.same({ card = { type = "template", data = { template_id = "AAq1", template_variable = { n = 3 },
                                                           template_version_name = "1.0.1" } } },
      cjson.decode((select(2, r:handle(new_click({}))))))
    reply = { toast = { type = "info", content = "as it is" } }
    assert.are.same(reply, cjson.decode((select(2, r:handle(new_click({}))))))
    reply = nil
    assert.are.equal("{}", (select(2, r:handle(new_click({})))))
  end)

  it("are not de-duplicated: Feishu never pushes one again", function()
    local r = receiver()
    local n = 0
    r:on("card.action.trigger", function() n = n + 1 end)
    local h, b = new_click({ k = 1 })
    r:handle(h, b)
    r:handle(h, b)
    assert.are.equal(2, n)
  end)

  it("answer 500 when the handler fails or returns something else than a reply", function()
    local r = receiver()
    r:on("card.action.trigger", function() error("boom") end)
    local status, body, err = r:handle(new_click({}))
    assert.are.equal(500, status)
    assert.are.same({ msg = "the handler failed" }, cjson.decode(body))
    assert.matches("boom", tostring(err))
    r:on("card.action.trigger", function() return "a string" end)
    status, body = r:handle(new_click({}))
    assert.are.equal(500, status)
    assert.matches("neither a card reply nor a table", body)
  end)

  it("refuse the old SHA-1 signature on a v2 envelope", function()
    local h, b = new_click({})
    h["X-Lark-Signature"] = openssl.card_signature(h["X-Lark-Request-Timestamp"], "n-1", TOKEN, b)
    local status, _, err = receiver():handle(h, b)
    assert.are.equal(401, status)
    assert.are.equal("signature", err.field)
  end)
end)

describe("card actions, old protocol (SHA-1 signed)", function()
  it("are decoded plain, and read with card_action", function()
    local ev = assert(receiver():decode(old_click({ action = "solved" })))
    assert.are.equal("card.action.trigger_v1", ev.event_type)
    assert.are.equal("card", ev.schema)
    assert.is_nil(ev.event_id)
    assert.are.same({ protocol = "old", tag = "button", value = { action = "solved" }, open_id = "ou_clicker",
                      user_id = "u_1", open_message_id = "om_card_1", open_chat_id = "oc_1",
                      token = "c-update-token" }, events.card_action(ev))
  end)

  it("are decoded encrypted, the signature over the encrypted body", function()
    local ev = assert(receiver():decode(old_click({ action = "solved" }, { encrypt = true })))
    assert.are.same({ action = "solved" }, events.card_action(ev).value)
  end)

  it("are answered with the updated card, the toast beside its fields", function()
    local r = receiver({ encrypt_key = false })
    r:on("card.action.trigger_v1", toast_and_card)
    local status, body = r:handle(old_click({ action = "solved" }))
    assert.are.equal(200, status)
    local want = { toast = { type = "success", content = "Marked solved" } }
    for k, v in pairs(CARD) do want[k] = v end
    assert.are.same(want, cjson.decode(body))
    -- a template has no place in the old protocol
    r:on("card.action.trigger_v1", function() return events.card_reply({ template = { id = "AAq1" } }) end)
    status, body = r:handle(old_click({}))
    assert.are.equal(500, status)
    assert.matches("old%-protocol", body)
  end)

  it("refuse a tampered body, a wrong token, missing headers, a stale timestamp", function()
    local r = receiver()
    local ran = 0
    r:on("card.action.trigger_v1", function() ran = ran + 1 end)
    local h, b = old_click({ action = "solved" })
    local stale_h, stale_b = old_click({}, { ts = os.time() - 3600 })
    local cases = {
      { h, (b:gsub("solved", "deleted")), "signature" },
      { (old_click({ action = "solved" }, { token = "not-the-token" })), b, "signature" },
      { {}, b, "signature" },
      { stale_h, stale_b, "timestamp" },
    }
    for i, c in ipairs(cases) do
      local status, body, err = r:handle(c[1], c[2])
      assert.are.equal(401, status, "case " .. i)
      assert.are.equal(c[3], err.field, "case " .. i)
      -- no secret in what is answered
      assert.is_nil(body:find(TOKEN, 1, true))
      assert.is_nil(tostring(err):find(TOKEN, 1, true))
      assert.is_nil(tostring(err):find(KEY, 1, true))
    end
    assert.are.equal(0, ran)
    assert.are.equal(200, (r:handle(h, b)))
    assert.are.equal(1, ran)
  end)

  it("are refused without a verification_token, which signs them", function()
    local status, _, err = receiver({ verification_token = false }):handle(old_click({}))
    assert.are.equal(401, status)
    assert.are.equal("signature", err.field)
    assert.matches("verification_token", err.msg)
  end)
end)

describe("events.card_reply", function()
  it("refuses what Feishu would not take, naming the field", function()
    local cases = {
      { nil, "reply" },
      { {}, "reply" },
      { { toast = "hi" }, "toast" },
      { { toast = { type = "loud", content = "hi" } }, "toast" },
      { { toast = { type = "info" } }, "toast" },
      { { toast = { type = "info", content = "" } }, "toast" },
      { { toast = { type = "info", content = "\255" } }, "toast" },
      { { toast = { type = "info", content = "x", colour = "red" } }, "toast" },
      { { toast = { type = "info", i18n = {} } }, "toast" },
      { { card = {} }, "card" },
      { { card = "{}" }, "card" },
      { { card = CARD, template = { id = "AAq1" } }, "card" },
      { { template = { variables = {} } }, "template" },
      { { toast = { type = "info", content = "x" }, extra = 1 }, "reply" },
    }
    for i, c in ipairs(cases) do
      local r, err = events.card_reply(c[1])
      assert.is_nil(r, "case " .. i)
      assert.are.equal("invalid", err.kind, "case " .. i)
      assert.are.equal(c[2], err.field, "case " .. i)
    end
  end)

  it("takes a toast in several languages", function()
    local r = assert(events.card_reply({ toast = { type = "warning", i18n = { zh_cn = "好", en_us = "OK" } } }))
    assert.are.same({ type = "warning", i18n = { zh_cn = "好", en_us = "OK" } }, r.toast)
  end)

  it("takes card_timeout from 0.01 to 3 seconds only", function()
    assert.is_not_nil(events.new({ verification_token = TOKEN, card_timeout = 1 }))
    for _, bad in ipairs({ 0, 3.5, "1" }) do
      local r, err = events.new({ verification_token = TOKEN, card_timeout = bad })
      assert.is_nil(r)
      assert.are.equal("card_timeout", err.field)
    end
  end)
end)

describe("card answers and the receiver's calls, whatever the caller does", function()
  local CLICK = { x = 1 }

  it("go out with every number exact, as message content does", function()
    local r = receiver()
    local card = { config = { update_multi = true },
                   elements = { { tag = "div", value = 0.1 + 0.2, id = 1700000000123456 } } }
    r:on("card.action.trigger_v1", function() return assert(events.card_reply({ card = card })) end)
    local status, body = r:handle(old_click(CLICK))
    assert.are.equal(200, status)
    assert.matches('"value":0.30000000000000004', body, 1, true)
    assert.matches('"id":1700000000123456', body, 1, true)
    r:on("card.action.trigger", function()
      return assert(events.card_reply({ toast = { type = "info", content = "t" }, card = card }))
    end)
    body = select(2, r:handle(new_click(CLICK)))
    assert.matches('"id":1700000000123456', body, 1, true)
    -- a table as it is, likewise
    r:on("card.action.trigger", function() return { n = 1700000000123456, f = 1 / 3 } end)
    body = select(2, r:handle(new_click(CLICK)))
    assert.matches('"n":1700000000123456', body, 1, true)
    assert.matches('"f":0.3333333333333333', body, 1, true)
  end)

  it("answer 500, never raise, for a reply the handler changed after card_reply made it", function()
    local r = receiver()
    local change
    r:on("card.action.trigger_v1", function()
      local reply = toast_and_card()
      change(reply)
      return reply
    end)
    local cases = {
      { function(reply) reply.card = 5 end, "the card reply's card was changed after card_reply made it" },
      -- pairs of Lua 5.1 and LuaJIT would skip it silently: the card dropped
      { function(reply) reply.card.data = setmetatable({}, { __pairs = function() error("no pairs") end }) end,
        "the card reply's card has a metatable: content tables must be plain (lua-cjson does not follow metatables)" },
      { function(reply) reply.toast = { type = "loud", content = "x" } end,
        "the card reply's toast type must be info, success, error or warning" },
    }
    for _, case in ipairs(cases) do
      change = case[1]
      local ok, status, body = pcall(r.handle, r, old_click(CLICK))
      assert.is_true(ok, tostring(status))
      assert.are.equal(500, status)
      assert.are.same({ msg = case[2] }, cjson.decode(body))
    end
  end)

  it("answer 400 for headers that raise when read, on every Lua", function()
    local r = receiver({ encrypt_key = false })
    local ran = false
    r:on("card.action.trigger_v1", function() ran = true end)
    local h, b = old_click(CLICK)
    -- a proxy of the headers whose iteration fails (Lua 5.1 and LuaJIT
    -- would have read it as no headers at all)
    local proxy = setmetatable({}, { __pairs = function() error("headers gone") end })
    local status, body, err = r:handle(proxy, b)
    assert.are.equal(400, status)
    assert.are.equal("headers", err.field)
    assert.matches("headers gone", cjson.decode(body).msg, 1, true)
    -- one that iterates as 5.2 would, on every Lua
    local ok_proxy = setmetatable({}, { __pairs = function() return next, h, nil end })
    assert.are.equal(200, (r:handle(ok_proxy, b)))
    -- a header given as a list whose lookup raises
    h["x-lark-signature"] = setmetatable({}, { __index = function() error("idx") end })
    status, body, err = r:handle(h, b)
    assert.matches("idx", body, 1, true)
    assert.are.equal(400, status)
    assert.are.equal("headers", err.field)
    assert.is_true(ran)
  end)

  it("answer 500, never raise, when called with a dot or no receiver", function()
    local r = receiver()
    local h, b = old_click(CLICK)
    for _, call in ipairs({ function() return r.handle(h, b) end,
                            function() return events.Receiver.handle(nil, h, b) end }) do
      local ok, status, body, err = pcall(call)
      assert.is_true(ok, tostring(status))
      assert.are.equal(500, status)
      assert.are.same({ msg = "not a receiver" }, cjson.decode(body))
      assert.are.equal("receiver", err.field)
    end
    local bad = setmetatable({}, { __index = function() error("no fields here") end })
    for _, call in ipairs({ function() return r:decode(bad, b) end, function() return r.decode(nil, h, b) end,
                            function() return events.card_reply(bad) end,
                            function() return events.card_action(bad) end,
                            function() return events.ticket_status(bad) end }) do
      local ok, v, err = pcall(call)
      assert.is_true(ok, tostring(v))
      assert.is_nil(v)
      assert.are.equal("invalid", err.kind)
    end
  end)
end)
