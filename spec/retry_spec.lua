local cjson = require "cjson"
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
local TEXT = { msg_type = "text", content = { text = "once" } }
local RATE_LIMITED = cjson.encode({ code = 99991400, msg = "request trigger frequency limit" })

local function count(method)
  local n = 0
  for _, r in ipairs(fake.requests_to(PATH)) do
    if r.method == method then n = n + 1 end
  end
  return n
end

describe("retries", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client({ rate_limit = false })
  end)

  describe("of a listing (GET)", function()
    it("retry a 5xx and succeed", function()
      fake.fault({ path = PATH, method = "GET", status = 503, body = "<html>busy</html>", times = 2 })
      local page, err = client:list_ticket_messages(fake.TICKET)
      assert.is_nil(err)
      assert.are.equal(0, page.total)
      assert.are.equal(3, count("GET"))
    end)

    it("retry a connection reset in the middle of the body", function()
      fake.fault({ path = PATH, method = "GET", status = 200, partial = true,
                   body = '{"code":0,"data":{"messages":[],"total":0}}' })
      assert(client:list_ticket_messages(fake.TICKET))
      assert.are.equal(2, count("GET"))
    end)

    it("give up after max_retries with the last error", function()
      fake.fault({ path = PATH, method = "GET", status = 502, body = "bad gateway", times = 10 })
      local _, err = client:list_ticket_messages(fake.TICKET)
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.are.equal(3, err.retries)
      assert.are.equal(4, count("GET"))
    end)

    it("are switched off by max_retries = 0, per client or per call", function()
      fake.fault({ path = PATH, method = "GET", status = 502, times = 10 })
      local _, err = fake.client({ max_retries = 0 }):list_ticket_messages(fake.TICKET)
      assert.are.equal(0, err.retries)
      _, err = client:list_ticket_messages(fake.TICKET, nil, { max_retries = 0 })
      assert.are.equal(0, err.retries)
      assert.are.equal(2, count("GET"))
    end)

    it("stop when the call's budget is spent", function()
      fake.fault({ path = PATH, method = "GET", status = 503, times = 10 })
      local _, err = client:list_ticket_messages(fake.TICKET, nil, { budget = 0.25 })
      assert.are.equal("http", err.kind)
      assert.is_true(err.retries < 3)
    end)

    it("retry a failed token fetch", function()
      fake.fault({ path = TOKEN_PATH, status = 500, body = "oops" })
      assert(client:list_ticket_messages(fake.TICKET))
      assert.are.equal(2, #fake.requests_to(TOKEN_PATH))
      assert.are.equal(1, fake.state().token_count)
    end)
  end)

  describe("of a message (POST)", function()
    it("never retry a 5xx, and say the message may have been delivered", function()
      fake.fault({ path = PATH, status = 500, body = '{"code":155000,"msg":"Internal error"}' })
      local _, err = client:send_ticket_message(fake.TICKET, TEXT)
      assert.are.equal("api", err.kind)
      assert.are.equal(155000, err.code)
      assert.is_true(err.sent)
      assert.matches("may have been processed", tostring(err))
      assert.are.equal(1, count("POST"))
    end)

    it("never retry a timeout once the request went out", function()
      fake.fault({ path = PATH, delay = 1, status = 200, body = "{}" })
      local _, err = client:send_ticket_message(fake.TICKET, TEXT, { timeout = 0.2 })
      assert.are.equal("transport", err.kind)
      assert.is_true(err.sent)
      assert.are.equal(0, err.retries)
      assert.are.equal(1, count("POST"))
    end)

    it("retry a 429 after the wait x-ogw-ratelimit-reset asks for", function()
      fake.fault({ path = PATH, status = 429, body = RATE_LIMITED,
                   headers = { ["x-ogw-ratelimit-limit"] = "50", ["x-ogw-ratelimit-reset"] = "1" } })
      local data, err = client:send_ticket_message(fake.TICKET, TEXT)
      assert.is_nil(err)
      assert.is_string(data.message_id)
      local posts = fake.requests_to(PATH)
      assert.are.equal(2, #posts)
      assert.is_true(posts[2].time - posts[1].time >= 0.9)
      assert.are.equal(1, fake.state().ticket_messages[fake.TICKET])
    end)

    it("retry code 99991400 answered with HTTP 400", function()
      fake.fault({ path = PATH, status = 400, body = RATE_LIMITED })
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      assert.are.equal(2, count("POST"))
    end)

    it("return a 429 at once when its wait is longer than max_rate_limit_wait", function()
      local c = fake.client({ rate_limit = false, max_rate_limit_wait = 2 })
      fake.fault({ path = PATH, status = 429, body = RATE_LIMITED, headers = { ["x-ogw-ratelimit-reset"] = "30" } })
      local _, err = c:send_ticket_message(fake.TICKET, TEXT)
      assert.are.equal("api", err.kind)
      assert.are.equal(99991400, err.code)
      assert.are.equal(429, err.status)
      assert.are.equal(30, err.retry_after)
      assert.are.equal(1, count("POST"))
    end)

    it("retry when the connection was never established", function()
      local c = fake.client({ rate_limit = false, tenant_access_token = "t-xxxxxx", app_id = false, app_secret = false,
                              base_url = fake.dead_url })
      local _, err = c:send_ticket_message(fake.TICKET, TEXT)
      assert.are.equal("transport", err.kind)
      assert.is_false(err.sent)
      assert.are.equal(3, err.retries)
    end)
  end)
end)
