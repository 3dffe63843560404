-- One spec per fault the fake injects: the error kind, no duplicate POST,
-- no secret in the error, and the same client works for the next call.
local cjson = require "cjson"
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TEXT = { msg_type = "text", content = { text = "fault" } }
local SECRETS = { fake.APP_SECRET, fake.HELPDESK_TOKEN, "t-fake" }

local FAULTS = {
  { "a connection reset before the answer", { close = true }, "transport" },
  { "a connection reset in the middle of the body",
    { status = 200, partial = true, body = '{"code":0,"msg":"success","data":{"message_id":"om_1"}}' }, "transport" },
  { "slow headers", { delay = 1, status = 200, body = "{}" }, "transport", { timeout = 0.3 } },
  { "a slow body", { status = 200, body_delay = 1, body = '{"code":0,"data":{"message_id":"om_1"}}' },
    "transport", { timeout = 0.3 } },
  { "a 5xx with an HTML body", { status = 502, body = "<html><h1>502 Bad Gateway</h1></html>" }, "http" },
  { "a 200 that is not JSON", { status = 200, body = "<html>maintenance</html>" }, "decode" },
  { "a 200 with code 0 but no data", { status = 200, body = '{"code":0,"msg":"success"}' }, "decode" },
  { "a 429 that asks for too long a wait", { status = 429, headers = { ["x-ogw-ratelimit-reset"] = "3600" },
    body = cjson.encode({ code = 99991400, msg = "request trigger frequency limit" }) }, "api" },
  { "an off-host redirect", { status = 307, headers = { Location = "https://attacker.invalid/open-apis" } }, "http" },
  { "an oversized body", { status = 200, body = '{"code":0,"data":{"message_id":"' .. string.rep("x", 20000) .. '"}}' },
    "transport" },
}

local function with(t, extra)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  for k, v in pairs(extra) do out[k] = v end
  return out
end

local function assert_no_secret(text)
  for _, s in ipairs(SECRETS) do assert.is_nil(text:find(s, 1, true), text) end
end

describe("faults", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client({ max_body_size = 8192 })
  end)

  for _, case in ipairs(FAULTS) do
    local name, fault, kind, opts = case[1], case[2], case[3], case[4]
    it(name .. " is a " .. kind .. " error, sent once", function()
      -- a first call, so the faulty one goes over a kept-alive connection
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      fake.fault(with(fault, { path = PATH }))
      local data, err = client:send_ticket_message(fake.TICKET, TEXT, opts)
      assert.is_nil(data)
      assert.are.equal(kind, err.kind)
      assert_no_secret(tostring(err))
      for _, v in pairs(err) do assert_no_secret(tostring(v)) end
      assert.are.equal(2, #fake.requests_to(PATH)) -- the faulty POST went out once
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      assert.are.equal(3, #fake.requests_to(PATH))
    end)
  end

  it("connection refused is a transport error, never sent", function()
    local c = fake.client({ base_url = fake.dead_url, max_retries = 1 })
    local _, err = c:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("transport", err.kind)
    assert.is_false(err.sent)
    assert_no_secret(tostring(err))
  end)

  it("a closed ticket is an api error, sent once", function()
    fake.ticket({ ticket_id = fake.TICKET, closed = true })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal(154401, err.code)
    assert.are.equal(1, #fake.requests_to(PATH))
    fake.ticket({ ticket_id = fake.TICKET, closed = false })
    assert(client:send_ticket_message(fake.TICKET, TEXT))
  end)

  it("token expiry in the middle of an iteration is absorbed", function()
    fake.ticket({ ticket_id = fake.TICKET, messages = 25 })
    local n = 0
    for _ in client:ticket_messages(fake.TICKET, { page_size = 10 }) do
      n = n + 1
      if n == 12 then fake.control("expire_tokens", {}) end
    end
    assert.are.equal(25, n)
    assert.are.equal(2, fake.state().token_count)
  end)

  for _, case in ipairs(FAULTS) do
    local name, fault, kind, opts = case[1], case[2], case[3], case[4]
    if kind ~= "transport" or fault.close == nil then
      it(name .. " fails a listing loudly after its retries", function()
        fake.fault(with(fault, { path = PATH, method = "GET", times = 20 }))
        local list_opts = with(opts or {}, { max_retries = 1 })
        local ok, err = pcall(function()
          for _ in client:ticket_messages(fake.TICKET, nil, list_opts) do end
        end)
        assert.is_false(ok)
        assert.are.equal(kind, err.kind)
        assert_no_secret(tostring(err))
      end)
    end
  end

  describe("a failed token fetch", function()
    local TOKEN = "/open-apis/auth/v3/tenant_access_token/internal"
    local CLI = require("helpdesk.cli")
    for _, case in ipairs({
      { "that times out", { delay = 1, status = 200, body = "{}" }, "transport" },
      { "that drops the connection", { close = true }, "transport" },
      { "answered with a 5xx", { status = 502, body = "<html>Bad Gateway</html>" }, "http" },
      { "answered with a Feishu 5xx", { status = 500, body = '{"code":99991672,"msg":"internal"}' }, "api" },
    }) do
      local name, fault, kind = case[1], case[2], case[3]
      it(name .. " says the message was not sent, and is worth trying again", function()
        fake.fault(with(fault, { path = TOKEN, times = 10 }))
        local c = fake.client({ timeout = 0.3, max_retries = 1 })
        for _, send in ipairs({
          function() return c:send_ticket_message(fake.TICKET, TEXT) end,
          function() return c:bot_message({ msg_type = "text", content = { text = "x" }, receiver_id = "ou_1" }) end,
          function()
            local r = c:send_ticket_messages({ { ticket_id = fake.TICKET, msg_type = "text", content = TEXT.content } })
            return nil, r[1].err
          end,
        }) do
          local _, err = send()
          assert.are.equal(kind, err.kind)
          assert.is_false(err.sent)
          assert.is_true(err.token)
          assert.matches("tenant token", tostring(err))
          assert.is_nil(tostring(err):find("may have been processed", 1, true))
          assert.are.equal(CLI.TRY_LATER, CLI.exit_code(err, "POST"))
          assert_no_secret(tostring(err))
        end
        assert.are.equal(0, #fake.requests_to(PATH))
        assert.are.equal(0, #fake.bot_messages())
      end)
    end
  end)
end)
