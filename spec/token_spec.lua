local cjson = require "cjson"
local core = require "helpdesk.core"
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
local TEXT = { msg_type = "text", content = { text = "hi" } }

describe("tenant token", function()
  before_each(function() fake.reset() end)

  it("is fetched once with app_id and app_secret and then reused", function()
    local client = fake.client()
    for _ = 1, 3 do assert(client:send_ticket_message(fake.TICKET, TEXT)) end
    local fetches = fake.requests_to(TOKEN_PATH)
    assert.are.equal(1, #fetches)
    assert.are.same({ app_id = fake.APP_ID, app_secret = fake.APP_SECRET }, cjson.decode(fetches[1].body))
    assert.are.equal("application/json; charset=utf-8", fetches[1].headers["content-type"])
    -- the helpdesk credential never goes to the token endpoint
    assert.is_nil(fetches[1].headers["x-lark-helpdesk-authorization"])
    assert.is_nil(fetches[1].headers["authorization"])
    local auths = {}
    for _, r in ipairs(fake.requests_to(PATH)) do auths[r.headers.authorization] = true end
    assert.are.equal(1, #(function() local l = {} for k in pairs(auths) do l[#l + 1] = k end return l end)())
  end)

  it("is refreshed before it expires", function()
    fake.config({ token_ttl = 2 }) -- refreshed a quarter of its life early
    local client = fake.client()
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    core.sleep(1.6)
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    assert.are.equal(2, fake.state().token_count)
    -- and no call was ever answered with a token-invalid code
    assert.are.equal(2, #fake.requests_to(PATH))
  end)

  it("is dropped, fetched anew and the call retried once on a token-invalid answer", function()
    local client = fake.client()
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    fake.control("expire_tokens", {})
    local data, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.is_nil(err)
    assert.is_string(data.message_id)
    local sent = fake.requests_to(PATH)
    assert.are.equal(3, #sent)
    assert.are_not.equal(sent[2].headers.authorization, sent[3].headers.authorization)
    assert.are.equal(2, fake.state().token_count)
    assert.are.equal(2, fake.state().ticket_messages[fake.TICKET])
  end)

  for _, code in ipairs({ 99991661, 99991663, 99991664, 99991668, 99991671 }) do
    it("treats code " .. code .. " as token-invalid, with HTTP 200 too", function()
      local client = fake.client()
      fake.fault({ path = PATH, status = 200, body = cjson.encode({ code = code, msg = "token invalid" }) })
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      assert.are.equal(2, #fake.requests_to(PATH))
      assert.are.equal(2, fake.state().token_count)
    end)
  end

  it("retries only once", function()
    local client = fake.client()
    fake.fault({ path = PATH, status = 400, times = 5,
                 body = cjson.encode({ code = 99991663, msg = "Invalid access token" }) })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("api", err.kind)
    assert.are.equal(99991663, err.code)
    assert.are.equal(2, #fake.requests_to(PATH))
  end)

  it("is used as given when fixed, and never refreshed", function()
    local client = fake.client({ app_id = false, app_secret = false, tenant_access_token = "t-not-issued" })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("api", err.kind)
    assert.are.equal(99991663, err.code)
    local sent = fake.requests_to(PATH)
    assert.are.equal(1, #sent)
    assert.are.equal("Bearer t-not-issued", sent[1].headers.authorization)
    assert.are.equal(0, #fake.requests_to(TOKEN_PATH))
    assert.is_nil(tostring(err):find("t-not-issued", 1, true))
  end)

  it("fails with the token endpoint's api error for a wrong secret, without the secret", function()
    local client = fake.client({ app_secret = "wrong-secret-value" })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("api", err.kind)
    assert.are.equal(10014, err.code)
    assert.are.equal("helpdesk api error 10014 (HTTP 400): fetching the tenant token failed, so nothing was sent: "
                     .. "app secret invalid [log_id " .. err.log_id .. "]", tostring(err))
    assert.is_nil(tostring(err):find("wrong-secret-value", 1, true))
    assert.are.equal(0, #fake.requests_to(PATH))
  end)

  it("is a decode error when the token answer lacks the token", function()
    local client = fake.client()
    fake.fault({ path = TOKEN_PATH, status = 200, body = '{"code":0,"msg":"ok","expire":7200}' })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("decode", err.kind)
    assert.matches("tenant_access_token", err.msg)
    assert.are.equal(0, #fake.requests_to(PATH))
  end)
end)
