-- The message builders and readers, and what the fake makes of what they build.
local cjson = require "cjson"
local fake = require "fake"
local helpdesk = require "helpdesk"

local BOT_PATH = "/open-apis/helpdesk/v1/message"

-- the content string a message went out with, decoded
local function sent_content(path)
  local reqs = fake.requests_to(path)
  return cjson.decode(cjson.decode(reqs[#reqs].body).content)
end

describe("message builders", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client()
  end)

  it("build text, sent as the documents show", function()
    local msg = assert(helpdesk.text("hello"))
    assert.are.same({ msg_type = "text", content = { text = "hello" } }, msg)
    assert(client:send_ticket_message(fake.TICKET, msg))
    assert.are.same({ text = "hello" }, sent_content("/open-apis/helpdesk/v1/tickets/"))
  end)

  it("build a post with text, link, @ and image elements, escaped by JSON", function()
    local msg = assert(helpdesk.post {
      title = 'Ticket "42"',
      { "Status: ", helpdesk.link("open it", "https://www.feishu.cn/x?a=1&b=2") },
      { helpdesk.at("ou_123", "Ann"), " please look <here>" },
      "a line of its own",
      { helpdesk.img("img_v2_abc") },
    })
    assert(client:send_ticket_message(fake.TICKET, msg))
    assert.are.same({ post = { zh_cn = { title = 'Ticket "42"', content = {
      { { tag = "text", text = "Status: " },
        { tag = "a", text = "open it", href = "https://www.feishu.cn/x?a=1&b=2" } },
      { { tag = "at", user_id = "ou_123", user_name = "Ann" }, { tag = "text", text = " please look <here>" } },
      { { tag = "text", text = "a line of its own" } },
      { { tag = "img", image_key = "img_v2_abc" } },
    } } } }, sent_content("/open-apis/helpdesk/v1/tickets/"))
    local en = assert(helpdesk.post { lang = "en_us", "hi" })
    assert.is_table(en.content.post.en_us)
  end)

  it("build images and cards for bot messages, which tickets refuse", function()
    local img = assert(helpdesk.image("img_v2_abc"))
    img.receiver_id = "ou_1"
    assert(client:bot_message(img))
    assert.are.same({ image_key = "img_v2_abc" }, sent_content(BOT_PATH))
    local card = assert(helpdesk.card({ config = { wide_screen_mode = true },
      elements = { { tag = "div", text = { tag = "plain_text", content = "Hi" } } } }))
    card.receiver_id = "ou_1"
    assert(client:bot_message(card))
    assert.are.equal("Hi", sent_content(BOT_PATH).elements[1].text.content)
    card.receiver_id = nil
    local _, err = client:send_ticket_message(fake.TICKET, card)
    assert.are.equal("msg_type", err.field)
    _, err = client:send_ticket_message(fake.TICKET, assert(helpdesk.image("k")))
    assert.are.equal("msg_type", err.field)
    assert.are.equal(0, #fake.requests_to("/open-apis/helpdesk/v1/tickets/"))
  end)

  it("send every number of a card as exactly as a double holds it", function()
    -- lua-cjson writes 14 significant digits: 0.1 + 0.2 would go out as 0.3
    local numbers = { 0.1 + 0.2, 1 / 3, math.pi, 2 ^ 53 - 1, 1700000000123456, -1e-300, 123456.789, 5e-324,
                      1.7976931348623157e-300, 123456789.12345679, 0.1, 42 }
    local card = { config = { wide_screen_mode = true }, numbers = numbers,
                   elements = { { tag = "chart", data = { ratio = 2 / 3, label = "\0N1" } } } }
    assert(client:bot_message({ receiver_id = "ou_7346484524", msg_type = "interactive", content = card }))
    local got = sent_content(BOT_PATH)
    for i, x in ipairs(numbers) do
      assert.are.equal(x, got.numbers[i], "number " .. i .. " went out as " .. tostring(got.numbers[i]))
    end
    assert.are.equal(2 / 3, got.elements[1].data.ratio)
    assert.are.equal("\0N1", got.elements[1].data.label)
    -- the text is as short as exactness allows
    local reqs = fake.requests_to(BOT_PATH)
    local text = cjson.decode(reqs[#reqs].body).content
    assert.truthy(text:find("0.30000000000000004", 1, true), text)
    assert.truthy(text:find("[0.30000000000000004,", 1, true) and text:find(",0.1,42]", 1, true), text)
  end)

  it("name the field at fault", function()
    local cases = {
      { "text", helpdesk.text("") }, { "text", helpdesk.text(5) }, { "image_key", helpdesk.image(nil) },
      { "post", helpdesk.post("x") }, { "post", helpdesk.post({}) }, { "lang", helpdesk.post({ lang = "fr", "x" }) },
      { "post[1][2]", helpdesk.post({ { "ok", helpdesk.link("x", "javascript:alert(1)") } }) },
      { "post[1][1]", helpdesk.post({ { helpdesk.at("") } }) },
      { "post[1][1]", helpdesk.post({ { { tag = "text", text = "raw" } } }) },
      { "post[2]", helpdesk.post({ "x", {} }) }, { "post", helpdesk.post({ "x", colour = "red" }) },
      { "card", helpdesk.card({ schema = "2.0", body = {} }) }, { "card", helpdesk.card({ header = {} }) },
    }
    for i, case in ipairs(cases) do
      -- each builder call is last in its row, so its nil, err fill [2] and [3]
      local msg, err = case[2], case[3]
      assert.is_nil(msg, "case " .. i)
      assert.are.equal("invalid", err.kind, "case " .. i)
      assert.are.equal(case[1], err.field, "case " .. i)
    end
  end)

  it("refuse a post with a hole in its lines or in a line, the same on every Lua", function()
    local msg, err = helpdesk.post { "line 1", nil, "line 3" }
    assert.is_nil(msg)
    assert.are.equal("invalid", err.kind)
    assert.are.equal("post[2]", err.field)
    assert.matches("post[2] is missing (a nil in the list)", err.msg, 1, true)
    msg, err = helpdesk.post { title = "t", "line 1", nil, nil, "line 4", "line 5" }
    assert.is_nil(msg)
    assert.are.equal("post[2]", err.field)
    msg, err = helpdesk.post { { "a", nil, helpdesk.link("c", "https://www.feishu.cn") } }
    assert.is_nil(msg)
    assert.are.equal("post[1][2]", err.field)
    msg, err = helpdesk.post { [2] = "only line 2" }
    assert.is_nil(msg)
    assert.are.equal("post[1]", err.field)
    -- a nil at the end is no line at all: Lua cannot tell it from no value
    msg = assert(helpdesk.post { "line 1", nil })
    assert.are.equal(1, #msg.content.post.zh_cn.content)
    assert.are.equal(0, #fake.requests())
  end)

  it("refuse strings that are not UTF-8, naming the field", function()
    local cases = {
      { "text", helpdesk.text("caf\233") }, { "image_key", helpdesk.image("k\255") },
      { "title", helpdesk.post({ title = "\192\175", "x" }) },
      { "post[1][1]", helpdesk.post({ "ok\237\160\128" }) },
      { "post[1][2]", helpdesk.post({ { "ok", helpdesk.link("\255", "https://www.feishu.cn") } }) },
      { "post[1][1]", helpdesk.post({ { helpdesk.link("x", "https://www.feishu.cn/\255") } }) },
      { "post[1][1]", helpdesk.post({ { helpdesk.at("ou_\255") } }) },
      { "post[1][1]", helpdesk.post({ { helpdesk.at("ou_1", "Ann\255") } }) },
      { "post[1][1]", helpdesk.post({ { helpdesk.img("img_\255") } }) },
      { "card", helpdesk.card({ elements = { { tag = "div", text = { content = "\255" } } } }) },
    }
    for i, case in ipairs(cases) do
      local msg, err = case[2], case[3]
      assert.is_nil(msg, "case " .. i)
      assert.are.equal("invalid", err.kind, "case " .. i)
      assert.are.equal(case[1], err.field, "case " .. i)
      assert.matches("not valid UTF-8", err.msg, 1, true)
    end
    assert(helpdesk.text("\228\189\160\229\165\189"))
  end)

  it("refuse post tables and lines with a metatable, which ipairs follows on some Luas only", function()
    local lines = setmetatable({}, { __index = function(_, i) if i == 1 then return "x" end end })
    local msg, err = helpdesk.post(lines)
    assert.is_nil(msg)
    assert.are.equal("post", err.field)
    msg, err = helpdesk.post { setmetatable({ "a" }, { __index = { "b", "c" } }) }
    assert.is_nil(msg)
    assert.are.equal("post[1]", err.field)
    msg, err = helpdesk.card(setmetatable({}, { __index = { elements = {} } }))
    assert.is_nil(msg)
    assert.are.equal("card", err.field)
  end)
end)

describe("message readers", function()
  before_each(function() fake.reset() end)

  it("decode listed content and give the text of text messages", function()
    local client = fake.client()
    assert(client:send_ticket_message(fake.TICKET, assert(helpdesk.text("plain words"))))
    assert(client:send_ticket_message(fake.TICKET, assert(helpdesk.post({ "rich" }))))
    local page = assert(client:list_ticket_messages(fake.TICKET))
    local text_msg, post_msg = page.messages[1], page.messages[2]
    assert.are.equal("plain words", helpdesk.text_of(text_msg))
    assert.are.equal("text", assert(helpdesk.decode_content(text_msg)).msg_type)
    local _, err = helpdesk.text_of(post_msg)
    assert.are.equal("invalid", err.kind)
    _, err = helpdesk.decode_content({ content = "not json" })
    assert.are.equal("decode", err.kind)
    _, err = helpdesk.decode_content("x")
    assert.are.equal("message", err.field)
  end)
end)
