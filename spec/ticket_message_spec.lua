local cjson = require "cjson"
local core = require "helpdesk.core"
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"

describe("client:send_ticket_message", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client()
  end)

  it("sends a text message in the documented wire format", function()
    local data, err = client:send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "hello" } })
    assert.is_nil(err)
    assert.matches("^om_%x+$", data.message_id)

    local sent = fake.requests_to(PATH)
    assert.are.equal(1, #sent)
    local r = sent[1]
    assert.are.equal("POST", r.method)
    -- the first token the fake issued, fetched once
    assert.matches("^Bearer t%-fake00000001%x+$", r.headers.authorization)
    assert.are.equal(1, fake.state().token_count)
    assert.are.equal(core.base64(fake.HELPDESK_ID .. ":" .. fake.HELPDESK_TOKEN),
                     r.headers["x-lark-helpdesk-authorization"])
    assert.are.equal("application/json; charset=utf-8", r.headers["content-type"])
    assert.matches("^feishu%-helpdesk/%d+%.%d+%.%d+ ", r.headers["user-agent"])
    local body = cjson.decode(r.body)
    assert.are.same({ msg_type = "text", content = '{"text":"hello"}' }, body)
    assert.are.equal("string", type(body.content)) -- a JSON string, as every SDK sends it
  end)

  it("sends a post message whose content decodes to the given table", function()
    local post = { post = { zh_cn = { title = "this is title", content = {
      { { tag = "text", un_escape = true, text = "第一行&nbsp;:" },
        { tag = "a", text = "超链接", href = "http://www.feishu.cn" } },
      { { tag = "text", text = "第二行 :" }, { tag = "text", text = "文本测试" } },
    } } } }
    local data = assert(client:send_ticket_message(fake.TICKET, { msg_type = "post", content = post }))
    assert.is_string(data.message_id)
    local body = cjson.decode(fake.requests_to(PATH)[1].body)
    assert.are.equal("post", body.msg_type)
    assert.are.same(post, cjson.decode(body.content))
  end)

  it("sends content given as JSON text exactly as given", function()
    local text = '{ "text" : "as given\\u0021" }'
    assert(client:send_ticket_message(fake.TICKET, { msg_type = "text", content = text }))
    assert.are.equal(text, cjson.decode(fake.requests_to(PATH)[1].body).content)
  end)

  it("makes the message show up in the ticket's listing", function()
    local data = assert(client:send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "seen?" } }))
    local page = assert(client:list_ticket_messages(fake.TICKET))
    assert.are.equal(1, page.total)
    assert.are.equal(data.message_id, page.messages[1].message_id)
    assert.are.same({ content = "seen?", msg_type = "text" }, cjson.decode(page.messages[1].content))
  end)

  it("returns the api error of a closed ticket, 154401", function()
    fake.ticket({ ticket_id = fake.TICKET, closed = true })
    local data, err = client:send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "x" } })
    assert.is_nil(data)
    assert.are.equal("api", err.kind)
    assert.are.equal(154401, err.code)
    assert.are.equal(401, err.status)
    assert.are.equal("Ticket already be closed", err.msg)
    assert.matches("FAKE$", err.log_id)
    assert.are.equal(1, #fake.requests_to(PATH)) -- not retried
  end)

  it("returns the api error of a bad url, 154403", function()
    local _, err = client:send_ticket_message(fake.TICKET, { msg_type = "post", content = {
      post = { zh_cn = { title = "t", content = { { { tag = "a", text = "x", href = "javascript:1" } } } } } } })
    assert.are.equal("api", err.kind)
    assert.are.equal(154403, err.code)
  end)

  it("takes a per-call timeout", function()
    fake.fault({ path = PATH, delay = 1, status = 200, body = "{}" })
    local _, err = client:send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "x" } },
                                              { timeout = 0.2 })
    assert.are.equal("transport", err.kind)
    assert.is_true(err.sent)
    assert.matches("may have been processed", err.msg)
    -- and the client works for the next call
    assert(client:send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "y" } }))
  end)
end)
