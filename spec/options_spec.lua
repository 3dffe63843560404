-- Options the official SDKs have too: a proxy, a User-Agent suffix, the
-- Lark domain shortcut.
local fake = require "fake"
local helpdesk = require "helpdesk"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TEXT = { msg_type = "text", content = { text = "via" } }

describe("options", function()
  before_each(function() fake.reset() end)

  it("send every call through the proxy", function()
    -- nginx answers a proxy-style request (absolute URI) like any other, so
    -- the fake stands in for the proxy of a host that does not resolve
    local client = fake.client({ base_url = "http://feishu.invalid", proxy = fake.url })
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    local reqs = fake.requests_to(PATH)
    assert.are.equal(1, #reqs)
    assert.are.equal("feishu.invalid", reqs[1].headers.host)
    -- without it the host does not resolve: nothing reached the fake
    local _, err = fake.client({ base_url = "http://feishu.invalid", max_retries = 0 })
      :send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("transport", err.kind)
    assert.are.equal(1, #fake.requests_to(PATH))
  end)

  it("append a User-Agent suffix", function()
    assert(fake.client({ user_agent = "acme-support/2.1" }):send_ticket_message(fake.TICKET, TEXT))
    for _, r in ipairs(fake.requests()) do
      assert.matches("^feishu%-helpdesk/%S+ %(.-%) acme%-support/2%.1$", r.headers["user-agent"])
    end
  end)

  it("take feishu and lark as base_url shortcuts", function()
    local o = fake.options()
    o.base_url = "lark"
    assert.are.equal(helpdesk.LARK_BASE_URL, assert(helpdesk.new(o)).base_url)
    o.base_url = "feishu"
    assert.are.equal(helpdesk.FEISHU_BASE_URL, assert(helpdesk.new(o)).base_url)
  end)

  it("refuse a malformed proxy or User-Agent suffix", function()
    for field, bad in pairs({ proxy = "not a url", user_agent = "x\r\nX-Evil: 1" }) do
      local _, err = helpdesk.new(fake.options({ [field] = bad }))
      assert.are.equal(field, err.field)
    end
    local _, err = helpdesk.new(fake.options({ proxy = 3128 }))
    assert.are.equal("proxy", err.field)
  end)

  it("share one token and one rate budget between clients given the same store", function()
    fake.config({ rate_limits = { ticket_message = { per_second = 4 } } })
    local shared = helpdesk.memory_store()
    local limits = { ticket_message = { per_second = 4, per_minute = false } }
    local a = fake.client({ store = shared, rate_limit = limits })
    local b = fake.client({ store = shared, rate_limit = limits })
    local t0 = require("helpdesk.core").monotime()
    for i = 1, 4 do assert(a:send_ticket_message(fake.TICKET, TEXT), "a " .. i) end
    -- the budget of this second is spent: b waits for the next one
    for i = 1, 4 do assert(b:send_ticket_message(fake.TICKET, TEXT), "b " .. i) end
    assert.is_true(require("helpdesk.core").monotime() - t0 >= 1)
    local st = fake.state()
    assert.are.equal(1, st.token_count)
    assert.are.equal(0, st.rate_limited)
    assert.are.equal(8, #fake.requests_to(PATH))
    local _, err = helpdesk.new(fake.options({ store = {} }))
    assert.are.equal("store", err.field)
    _, err = helpdesk.new(fake.options({ store = "redis" }))
    assert.are.equal("store", err.field)
  end)
end)
