local cjson = require "cjson"
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/message"

describe("client:bot_message", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client()
  end)

  it("sends the documented body with the documented defaults", function()
    local content = { post = { zh_cn = { title = "some title",
                                         content = { { { tag = "text", text = "some content" } } } } } }
    local data, err = client:bot_message({ msg_type = "post", content = content, receiver_id = "ou_7346484524" })
    assert.is_nil(err)
    assert.matches("^om_", data.message_id)
    local r = fake.requests_to(PATH)[1]
    assert.are.equal("user_id_type=open_id", r.query)
    local body = cjson.decode(r.body)
    assert.are.same({ "content", "msg_type", "receive_type", "receiver_id" }, (function()
      local keys = {}
      for k in pairs(body) do keys[#keys + 1] = k end
      table.sort(keys)
      return keys
    end)())
    assert.are.equal("post", body.msg_type)
    assert.are.equal("ou_7346484524", body.receiver_id)
    assert.are.equal("chat", body.receive_type)
    assert.are.same(content, cjson.decode(body.content))
    assert.are.equal("application/json; charset=utf-8", r.headers["content-type"])
    assert.is_string(r.headers["x-lark-helpdesk-authorization"])
  end)

  it("passes receive_type and user_id_type through", function()
    assert(client:bot_message({ msg_type = "text", content = { text = "hi" }, receiver_id = "on_1",
                                receive_type = "user", user_id_type = "union_id" }))
    local m = fake.bot_messages()[1]
    assert.are.equal("user", m.receive_type)
    assert.are.equal("union_id", m.user_id_type)
    assert.are.equal("on_1", m.receiver_id)
  end)

  it("sends image and interactive messages", function()
    assert(client:bot_message({ msg_type = "image", content = { image_key = "img_v2_1" }, receiver_id = "ou_1" }))
    local card = { config = { wide_screen_mode = true },
                   elements = { { tag = "div", text = { tag = "plain_text", content = "x" } } } }
    assert(client:bot_message({ msg_type = "interactive", content = card, receiver_id = "ou_1" }))
    local got = fake.bot_messages()
    assert.are.equal(2, #got)
    assert.are.same({ image_key = "img_v2_1" }, cjson.decode(got[1].content))
    assert.are.same(card, cjson.decode(got[2].content))
  end)

  it("returns the api error of an unknown receiver", function()
    local data, err = client:bot_message({ msg_type = "text", content = { text = "x" }, receiver_id = "ou_unknown" })
    assert.is_nil(data)
    assert.are.equal("api", err.kind)
    assert.are.equal(154004, err.code)
    assert.are.equal(404, err.status)
  end)
end)
