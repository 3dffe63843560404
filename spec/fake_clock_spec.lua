-- The fake's own clock (/_fake/clock), for simulations on a fast-forward
-- clock: token expiry, rate-limit windows, message times and timed faults
-- follow it; and the bookkeeping such a simulation checks (token uses,
-- delivered counts). No real sleep here: the clock is advanced instead.
local cjson = require "cjson.safe"
local core = require "helpdesk.core"
local fake = require "fake"
local helpdesk = require "helpdesk"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
local TEXT = { msg_type = "text", content = { text = "hi" } }
local LIMITED = cjson.encode({ code = 99991400, msg = "request trigger frequency limit" })

local function text(s) return { msg_type = "text", content = { text = s } } end

describe("the fake's clock", function()
  local h
  before_each(function()
    fake.reset()
    h = assert(core.new())
  end)
  after_each(function() h:close() end)

  -- raw HTTP to the fake: status, decoded body (or the text), headers
  local function raw(method, path, body, headers)
    local status, out, hdrs = h:request({
      method = method, url = fake.url .. path, headers = headers or { ["Content-Type"] = "application/json" },
      body = body and (type(body) == "string" and body or cjson.encode(body)) or nil,
    })
    assert(status, out)
    return status, cjson.decode(out) or out, hdrs, out
  end

  local function new_token()
    local status, body = raw("POST", TOKEN_PATH, { app_id = fake.APP_ID, app_secret = fake.APP_SECRET })
    assert.are.equal(200, status)
    return body.tenant_access_token
  end

  local function auth(token)
    return {
      ["Content-Type"] = "application/json; charset=utf-8",
      Authorization = "Bearer " .. token,
      ["X-Lark-Helpdesk-Authorization"] = core.base64(fake.HELPDESK_ID .. ":" .. fake.HELPDESK_TOKEN),
    }
  end

  local function post(token, s)
    return raw("POST", PATH, { msg_type = "text", content = cjson.encode({ text = s or "raw" }) }, auth(token))
  end

  describe("/_fake/clock", function()
    it("advances by the given seconds, adds up, and reports offset and now", function()
      local t0 = fake.clock()
      assert.are.equal(0, t0.offset)
      assert.is_true(t0.ok)
      local t1 = fake.clock(1.5)
      assert.are.equal(1.5, t1.offset)
      local t2 = fake.clock(86400)
      assert.are.equal(86401.5, t2.offset)
      -- now runs on the wall clock plus the offset (and the wall clock barely moved)
      assert.is_true(t2.now - t0.now >= 86401.5)
      assert.is_true(t2.now - t0.now < 86401.5 + 5)
      assert.are.equal(86401.5, fake.state().clock_offset)
    end)

    it("refuses a negative, infinite or non-number advance with 400 and keeps the offset", function()
      fake.clock(10)
      for _, bad in ipairs({ "-1", "-0.5", '"5"', "true", "1e999", "-1e999" }) do
        local status, body = raw("POST", "/_fake/clock", '{"advance":' .. bad .. "}")
        assert.are.equal(400, status, bad)
        assert.is_false(body.ok)
      end
      assert.are.equal(10, fake.clock().offset)
      assert.are.equal(10, fake.clock(0).offset)
    end)

    it("is set back to 0 by /_fake/reset", function()
      fake.clock(3600)
      assert.are.equal(3600, fake.clock().offset)
      fake.reset()
      assert.are.equal(0, fake.clock().offset)
    end)

    it("dates new messages on the fake's clock", function()
      local client = fake.client()
      assert(client:send_ticket_message(fake.TICKET, text("before")))
      fake.clock(86400)
      assert(client:send_ticket_message(fake.TICKET, text("after")))
      local list = assert(client:list_ticket_messages(fake.TICKET))
      local msgs = list.messages
      assert.are.equal(2, #msgs)
      local gap = msgs[2].created_at - msgs[1].created_at
      assert.is_true(gap >= 86400 * 1000 and gap < 86410 * 1000, tostring(gap))
    end)
  end)

  describe("tokens", function()
    it("expire when the clock passes their ttl: 99991663, counted, and the client fetches a new one", function()
      fake.config({ token_ttl = 600 })
      local client = fake.client()
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      local old = fake.requests_to(PATH)[1].headers.authorization:match("^Bearer (.+)$")
      fake.clock(590) -- not yet
      local status, body = post(old)
      assert.are.equal(200, status)
      assert.are.equal(0, body.code)
      fake.clock(11) -- 601 s after it was issued
      status, body = post(old)
      assert.are.equal(400, status)
      assert.are.equal(99991663, body.code)
      assert.are.equal(1, fake.state().expired_token_uses)
      -- the client's own clock has not moved: it sends the old token, is told
      -- it is invalid, fetches a new one and succeeds
      local data, err = client:send_ticket_message(fake.TICKET, TEXT)
      assert.is_nil(err)
      assert.is_string(data.message_id)
      local st = fake.state()
      assert.are.equal(2, st.token_count)
      assert.are.equal(2, st.expired_token_uses)
      assert.are.equal(0, st.revoked_token_uses)
      assert.are.equal(3, st.ticket_messages[fake.TICKET]) -- 2 by the client, 1 raw
      -- the new one lives its ttl on the advanced clock
      local sent = fake.requests_to(PATH)
      local new = sent[#sent].headers.authorization:match("^Bearer (.+)$")
      assert.are_not.equal(old, new)
      fake.clock(590)
      assert.are.equal(200, (post(new)))
      fake.clock(11)
      assert.are.equal(400, (post(new)))
      assert.are.equal(3, fake.state().expired_token_uses)
    end)

    it("are refused at once when revoked, counted apart from expired ones", function()
      local client = fake.client()
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      local old = fake.requests_to(PATH)[1].headers.authorization:match("^Bearer (.+)$")
      assert.are.equal(1, fake.revoke_tokens().revoked)
      local status, body = post(old)
      assert.are.equal(400, status)
      assert.are.equal(99991663, body.code)
      local data, err = client:send_ticket_message(fake.TICKET, TEXT)
      assert.is_nil(err)
      assert.is_string(data.message_id)
      local st = fake.state()
      assert.are.equal(2, st.token_count)
      assert.are.equal(2, st.revoked_token_uses)
      assert.are.equal(0, st.expired_token_uses)
      -- revoked and expired too: still counted as revoked
      fake.clock(7201)
      assert.are.equal(400, (post(old)))
      st = fake.state()
      assert.are.equal(3, st.revoked_token_uses)
      assert.are.equal(0, st.expired_token_uses)
      -- a token issued after the revocation is good
      assert.are.equal(200, (post(new_token())))
      -- a token the fake never issued is neither
      assert.are.equal(400, (post("t-never-issued")))
      st = fake.state()
      assert.are.equal(3, st.revoked_token_uses)
      assert.are.equal(0, st.expired_token_uses)
    end)

    it("are revoked by /_fake/expire_tokens too", function()
      local token = new_token()
      fake.control("expire_tokens", {})
      assert.are.equal(400, (post(token)))
      local st = fake.state()
      assert.are.equal(1, st.revoked_token_uses)
      assert.are.equal(0, st.expired_token_uses)
    end)
  end)

  describe("rate-limit windows", function()
    it("pass when the clock is advanced, without waiting", function()
      fake.config({ rate_limits = { ticket_message = { per_second = 2 } } })
      local token = new_token()
      local t0 = core.monotime()
      assert.are.equal(200, (post(token)))
      assert.are.equal(200, (post(token)))
      local status, body, headers = post(token)
      assert.are.equal(429, status)
      assert.are.equal(99991400, body.code)
      assert.are.equal("1", headers["x-ogw-ratelimit-reset"])
      fake.clock(1.1)
      assert.are.equal(200, (post(token)))
      assert.are.equal(200, (post(token)))
      assert.are.equal(429, (post(token)))
      -- all of it well inside one real second: only the fake's clock moved
      assert.is_true(core.monotime() - t0 < 0.9)
      assert.are.equal(2, fake.state().rate_limited)
    end)

    it("per minute too, with the reset counted on the fake's clock", function()
      fake.config({ rate_limits = { ticket_message = { per_minute = 2 } } })
      local token = new_token()
      assert.are.equal(200, (post(token)))
      fake.clock(30)
      assert.are.equal(200, (post(token)))
      local status, _, headers = post(token)
      assert.are.equal(429, status)
      assert.are.equal("30", headers["x-ogw-ratelimit-reset"]) -- the first leaves the window at 60
      fake.clock(30.1)
      assert.are.equal(200, (post(token)))
      assert.are.equal(429, (post(token)))
    end)

    it("let the client through after an advance, with rate_limit = false", function()
      fake.config({ rate_limits = { ticket_message = { per_second = 1 } } })
      local client = fake.client({ rate_limit = false, max_retries = 0 })
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      fake.clock(1.1)
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      assert.are.equal(0, fake.state().rate_limited)
    end)
  end)

  describe("faults by time", function()
    local storm = function(extra)
      local f = { path = PATH, status = 429, body = LIMITED,
                  headers = { ["Content-Type"] = "application/json", ["x-ogw-ratelimit-reset"] = "5" } }
      for k, v in pairs(extra) do f[k] = v end
      return f
    end

    it("a 429 storm with until applies to every request until the clock passes it, then is dropped", function()
      local token = new_token()
      local now = fake.clock().now
      assert.is_true(fake.fault(storm({ ["until"] = now + 120 })).ok)
      for _ = 1, 5 do -- no times: unlimited while it lasts
        local status, body, headers = post(token)
        assert.are.equal(429, status)
        assert.are.equal(99991400, body.code)
        assert.are.equal("5", headers["x-ogw-ratelimit-reset"])
      end
      fake.clock(60)
      assert.are.equal(429, (post(token)))
      assert.are.equal(1, fake.state().faults)
      fake.clock(61)
      assert.are.equal(0, fake.state().faults)
      assert.are.equal(200, (post(token)))
      assert.are.equal(1, fake.state().ticket_messages[fake.TICKET])
    end)

    it("with until and times stops at whichever comes first", function()
      local token = new_token()
      local now = fake.clock().now
      fake.fault(storm({ ["until"] = now + 120, times = 2 }))
      assert.are.equal(429, (post(token)))
      assert.are.equal(429, (post(token)))
      assert.are.equal(200, (post(token)))
      assert.are.equal(0, fake.state().faults)
    end)

    it("with from waits for the clock, skips nothing before it, and ends at until", function()
      fake.config({ token_ttl = 86400 }) -- the token outlives the two hours
      local token = new_token()
      local now = fake.clock().now
      fake.fault(storm({ from = now + 3600, ["until"] = now + 7200, skip = 1 }))
      assert.are.equal(200, (post(token)))
      assert.are.equal(200, (post(token)))
      fake.clock(3600)
      assert.are.equal(200, (post(token))) -- the skipped one, once the storm began
      assert.are.equal(429, (post(token)))
      assert.are.equal(429, (post(token)))
      fake.clock(3600)
      assert.are.equal(200, (post(token)))
    end)

    it("refuses a from or until that is not a number", function()
      local status = raw("POST", "/_fake/fault", '{"path":"/x","until":"soon"}')
      assert.are.equal(400, status)
      status = raw("POST", "/_fake/fault", '{"path":"/x","from":true}')
      assert.are.equal(400, status)
      assert.are.equal(0, fake.state().faults)
    end)

    it("drive the client's 429 handling", function()
      local client = fake.client({ rate_limit = false })
      local now = fake.clock().now
      fake.fault(storm({ ["until"] = now + 600, headers = { ["x-ogw-ratelimit-reset"] = "3600" } }))
      local _, err = client:send_ticket_message(fake.TICKET, TEXT)
      assert.are.equal("api", err.kind)
      assert.are.equal(99991400, err.code)
      fake.clock(600)
      assert(client:send_ticket_message(fake.TICKET, TEXT))
    end)
  end)

  describe("/_fake/delivered", function()
    it("counts each text delivered into the ticket, with record = false", function()
      fake.config({ record = false })
      fake.ticket({ ticket_id = fake.TICKET, messages = 3 }) -- seeded, not delivered
      local client = fake.client()
      for _, s in ipairs({ "a", "b", "a", "ü 中", "a" }) do
        assert(client:send_ticket_message(fake.TICKET, text(s)))
      end
      assert(client:send_ticket_message(fake.TICKET, { msg_type = "post", content = { post = { zh_cn = {
        title = "t", content = { { { tag = "text", text = "a" } } } } } } }))
      assert.are.equal(0, #fake.requests())
      local d = fake.delivered(fake.TICKET)
      assert.are.same({ a = 3, b = 1, ["ü 中"] = 1 }, d.counts)
      assert.are.equal(5, d.total)
      assert.are.equal(9, fake.state().ticket_messages[fake.TICKET])
    end)

    it("answers an empty counts object for a ticket without deliveries", function()
      fake.ticket({ ticket_id = "123", messages = 2 })
      for _, id in ipairs({ "123", "999" }) do
        local status, body, _, text_ = raw("POST", "/_fake/delivered", { ticket_id = id })
        assert.are.equal(200, status)
        assert.are.equal(0, body.total)
        assert.matches('"counts":{}', text_, 1, true)
      end
      assert.are.equal(400, (raw("POST", "/_fake/delivered", {})))
    end)

    it("counts per ticket", function()
      local client = fake.client()
      assert(client:send_ticket_message(fake.TICKET, text("x")))
      assert(client:send_ticket_message("42", text("x")))
      assert(client:send_ticket_message("42", text("x")))
      assert.are.same({ counts = { x = 1 }, total = 1 }, fake.delivered(fake.TICKET))
      assert.are.same({ counts = { x = 2 }, total = 2 }, fake.delivered("42"))
    end)
  end)

  describe("/_fake/texts", function()
    it("counts the requests that carried each text apart from its deliveries", function()
      local client = fake.client()
      assert(client:send_ticket_message(fake.TICKET, text("kept")))
      fake.fault({ path = "/messages", method = "POST", close = true })
      local _, err = client:send_ticket_message(fake.TICKET, text("dropped"))
      assert.is_true(err.sent)
      assert(client:bot_message({ msg_type = "text", content = { text = "bot" }, receiver_id = "ou_1" }))
      local t = fake.texts()
      assert.are.same({ kept = 1, dropped = 1, bot = 1 }, t.received)
      assert.are.same({ kept = 1, bot = 1 }, t.delivered)
    end)
  end)
end)

describe("the fake's pass fault", function()
  before_each(function() fake.reset() end)

  it("delays the normal answer: a slow endpoint, not a failing one", function()
    local path = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
    local client = fake.client({ rate_limit = false })
    assert(client:send_ticket_message(fake.TICKET, helpdesk.text("warm")))
    fake.fault({ path = path, method = "POST", delay = 0.5, pass = true, times = 1 })
    local data, err = client:send_ticket_message(fake.TICKET, helpdesk.text("slow"), { timeout = 0.1 })
    assert.is_nil(data)
    assert.are.equal("transport", err.kind)
    fake.fault({ path = path, method = "POST", delay = 0.2, pass = true, times = 1 })
    assert.is_string(assert(client:send_ticket_message(fake.TICKET, helpdesk.text("slower"))).message_id)
    assert.are.equal(1, fake.texts().delivered.slower)
  end)
end)
