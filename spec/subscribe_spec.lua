-- Subscribing the app to helpdesk events, against the fake Feishu.
local fake = require "fake"
local helpdesk = require "helpdesk"

local PATH = "/open-apis/helpdesk/v1/events/"

describe("client:subscribe_events", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client()
  end)

  it("subscribes and unsubscribes, as type and subtype, with both credentials", function()
    assert.is_true(assert(client:subscribe_events({ "helpdesk.ticket_message.created_v1",
                                                   "helpdesk.ticket.updated_v1" })))
    assert.are.same({ "helpdesk.ticket/ticket.updated_v1", "helpdesk.ticket_message/ticket_message.created_v1" },
                    fake.subscriptions())
    local req = fake.requests_to(PATH .. "subscribe")[1]
    assert.are.same({ events = { { type = "helpdesk.ticket_message", subtype = "ticket_message.created_v1" },
                                 { type = "helpdesk.ticket", subtype = "ticket.updated_v1" } } },
                    require("cjson").decode(req.body))
    assert.is_string(req.headers["x-lark-helpdesk-authorization"])
    assert.is_true(assert(client:unsubscribe_events({ "helpdesk.ticket.updated_v1" })))
    assert.are.same({ "helpdesk.ticket_message/ticket_message.created_v1" }, fake.subscriptions())
  end)

  it("refuses what is not a list of helpdesk event types, sending nothing", function()
    for _, bad in ipairs({ "helpdesk.ticket.created_v1", {}, { "im.message.receive_v1" }, { 1 },
                           { "helpdesk.ticket.created_v1", nil, "helpdesk.ticket.updated_v1" } }) do
      local ok, err = client:subscribe_events(bad)
      assert.is_nil(ok)
      assert.are.equal("invalid", err.kind)
      assert.matches("^events", err.field)
    end
    assert.are.equal(0, #fake.requests_to(PATH))
  end)

  it("is an api error when Feishu refuses, and works as a module function", function()
    fake.fault({ path = PATH .. "subscribe", status = 400, body = '{"code":154000,"msg":"no such event"}' })
    local ok, err = client:subscribe_events({ "helpdesk.ticket.created_v1" })
    assert.is_nil(ok)
    assert.are.equal("api", err.kind)
    assert.are.equal(154000, err.code)
    assert(helpdesk.configure(fake.options()))
    assert.is_true(assert(helpdesk.subscribe_events({ "helpdesk.ticket.created_v1" })))
    assert.are.same({ "helpdesk.ticket/ticket.created_v1" }, fake.subscriptions())
  end)
end)
