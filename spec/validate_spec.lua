local fake = require "fake"
local cjson = require "cjson"
local helpdesk = require "helpdesk"

-- Calls f and checks it failed with an invalid error on field, sending nothing.
local function assert_invalid(field, f)
  local before = #fake.requests()
  local res, err = f()
  assert.is_nil(res)
  assert.is_table(err)
  assert.are.equal("invalid", err.kind)
  assert.are.equal(field, err.field)
  -- the field, or a place inside it (content.list[2])
  assert.matches("^helpdesk invalid error: " .. field:gsub("%p", "%%%0") .. "[ .[]", tostring(err))
  assert.are.equal(before, #fake.requests())
end

-- Runs f, failing instead of hanging once it has run limit VM instructions
-- (LuaJIT: with the JIT off, since compiled code runs no hooks).
local function bounded(limit, f)
  if jit then jit.off(); jit.flush() end
  debug.sethook(function() error(("still running after %d VM instructions"):format(limit), 2) end, "", limit)
  local ok, a, b = pcall(f)
  debug.sethook()
  if jit then jit.on() end
  if not ok then error(a, 0) end
  return a, b
end

-- A chain of depth tables, each holding the one below it twice: 2^depth
-- paths from the top, depth + 1 tables. With cycle, the bottom refers back
-- to the top.
local function doubled(depth, cycle)
  local bottom = { text = "x" }
  local t = bottom
  for _ = 1, depth do t = { a = t, b = t } end
  if cycle then bottom.top = t end
  return t
end

describe("validation", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client()
  end)

  describe("of ticket messages", function()
    local good = { msg_type = "text", content = { text = "x" } }
    it("rejects bad ticket ids", function()
      for _, id in ipairs({ 6948728206392295444, "", "12a", " 12", "12/../1", "1?x=1", {}, false,
                            string.rep("1", 65) }) do
        assert_invalid("ticket_id", function() return client:send_ticket_message(id, good) end)
      end
    end)

    it("says why a numeric ticket id is refused", function()
      local _, err = client:send_ticket_message(6948728206392295444, good)
      assert.matches("lose precision", err.msg)
    end)

    it("rejects msg types a ticket message cannot take", function()
      for _, t in ipairs({ "image", "interactive", "TEXT", 1 }) do
        assert_invalid("msg_type", function()
          return client:send_ticket_message(fake.TICKET, { msg_type = t, content = { text = "x" } })
        end)
      end
      assert_invalid("msg_type", function() return client:send_ticket_message(fake.TICKET, { content = {} }) end)
    end)

    it("rejects content that is not an object", function()
      for _, c in ipairs({ "hello", "[1,2]", "{broken", 42, { "a", "b" }, { f = print } }) do
        assert_invalid("content", function()
          return client:send_ticket_message(fake.TICKET, { msg_type = "text", content = c })
        end)
      end
    end)

    it("rejects whole floats beyond 2^53, which are not what was written; sends Lua integers exactly", function()
      -- a 19-digit id read as a double (every number on 5.1 and LuaJIT)
      local _, err = client:send_ticket_message(fake.TICKET, { msg_type = "text",
        content = { text = "x", extra = { id = 6948728206392295444.0 } } })
      assert.are.equal("content", err.field)
      assert.matches("content.extra.id", err.msg, 1, true)
      assert(client:send_ticket_message(fake.TICKET, { msg_type = "text",
        content = { text = "x", n = 1617960686000 } }))
      local big = tonumber("6948728206392295444")
      if math.type and math.type(big) == "integer" then -- luacheck: ignore 143
        assert(client:send_ticket_message(fake.TICKET, { msg_type = "text",
          content = { text = "x", least = math.mininteger } })) -- luacheck: ignore 143
        local least = fake.requests_to("/open-apis/helpdesk/v1/tickets/")
        assert.matches('"least":-9223372036854775808', require("cjson").decode(least[#least].body).content, 1, true)
        assert(client:send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "x", id = big } }))
        local reqs = fake.requests_to("/open-apis/helpdesk/v1/tickets/")
        assert.matches('"id":6948728206392295444', require("cjson").decode(reqs[#reqs].body).content, 1, true)
      end
    end)

    it("rejects a message that is not a table or has unknown fields", function()
      assert_invalid("message", function() return client:send_ticket_message(fake.TICKET, "hi") end)
      assert_invalid("message", function()
        return client:send_ticket_message(fake.TICKET, { msg_type = "text", contents = {} })
      end)
    end)

    it("rejects bad per-call options", function()
      assert_invalid("opts", function() return client:send_ticket_message(fake.TICKET, good, { timout = 1 }) end)
      assert_invalid("timeout", function() return client:send_ticket_message(fake.TICKET, good, { timeout = 0 }) end)
      assert_invalid("timeout", function()
        return client:send_ticket_message(fake.TICKET, good, { timeout = 0 / 0 })
      end)
      assert_invalid("connect_timeout", function()
        return client:send_ticket_message(fake.TICKET, good, { connect_timeout = "5" })
      end)
    end)
  end)

  describe("of bot messages", function()
    local function bot(over)
      local m = { msg_type = "text", content = { text = "x" }, receiver_id = "ou_1" }
      for k, v in pairs(over) do m[k] = v end
      return function() return client:bot_message(m) end
    end
    it("rejects each bad field", function()
      assert_invalid("msg_type", bot({ msg_type = "file" }))
      assert_invalid("content", bot({ content = "text" }))
      assert_invalid("receiver_id", bot({ receiver_id = "" }))
      assert_invalid("receiver_id", bot({ receiver_id = "ou 1" }))
      assert_invalid("receiver_id", bot({ receiver_id = "ou_1\n" }))
      assert_invalid("receiver_id", bot({ receiver_id = 12 }))
      assert_invalid("receive_type", bot({ receive_type = "group" }))
      assert_invalid("user_id_type", bot({ user_id_type = "email" }))
      assert_invalid("message", bot({ receiverid = "x" }))
    end)
  end)


  describe("of content that refers to itself or shares tables", function()
    local BOT = "/open-apis/helpdesk/v1/message"
    local function send(content)
      return client:send_ticket_message(fake.TICKET, { msg_type = "text", content = content })
    end

    it("refuses content with two references to itself, at once", function()
      local c = { text = "x" }
      c.a, c.b = c, c
      local _, err = bounded(1e6, function()
        assert_invalid("content", function() return send(c) end)
        return send(c)
      end)
      assert.matches("^content%.[ab] refers to a table that holds it", err.msg)
    end)

    it("refuses a depth-60 doubly-referenced cycle for sends, bot messages and batch items", function()
      local c = doubled(60, true)
      c.text = "x"
      bounded(1e6, function()
        assert_invalid("content", function() return send(c) end)
        assert_invalid("content", function()
          return client:bot_message({ msg_type = "text", content = c, receiver_id = "ou_1" })
        end)
        local results = assert(client:send_ticket_messages({
          { ticket_id = fake.TICKET, msg_type = "text", content = c },
          { ticket_id = fake.TICKET, msg_type = "text", content = { text = "fine" } },
        }))
        assert.are.equal(1, results.failed)
        assert.are.equal("invalid", results[1].err.kind)
        assert.are.equal("content", results[1].err.field)
        assert.matches("refers to a table that holds it", results[1].err.msg, 1, true)
        assert.is_string(results[2].data.message_id)
      end)
      assert.are.equal(0, #fake.requests_to(BOT))
      assert.are.equal(1, #fake.requests_to("/open-apis/helpdesk/v1/tickets/"))
    end)

    it("refuses a depth-60 doubly-shared tree (no cycle) whose JSON would be 2^60 copies", function()
      local c = doubled(60, false)
      c.text = "x"
      local _, err = bounded(1e6, function()
        assert_invalid("content", function() return send(c) end)
        return send(c)
      end)
      assert.matches("over 1 MiB", err.msg, 1, true)
    end)

    it("refuses a cycle in a card when it is built", function()
      local card = { elements = {} }
      card.elements[1] = card
      local msg, err = bounded(1e6, function() return helpdesk.card(card) end)
      assert.is_nil(msg)
      assert.are.equal("card", err.field)
      assert.matches("card.elements[1] refers to a table that holds it", err.msg, 1, true)
    end)

    it("sends a table used in several places, written out in each", function()
      local hr = { tag = "hr" }
      local note = { tag = "div", text = { tag = "plain_text", content = "note" } }
      local card = assert(helpdesk.card({ elements = { note, hr, note, hr, note } }))
      card.receiver_id = "ou_1"
      assert(bounded(1e6, function() return client:bot_message(card) end))
      local reqs = fake.requests_to(BOT)
      local sent = cjson.decode(cjson.decode(reqs[#reqs].body).content)
      assert.are.same({ note, hr, note, hr, note }, sent.elements)
    end)

    it("refuses nesting deeper than 200 tables, naming where", function()
      local c = { text = "x" }
      local t = c
      for _ = 1, 200 do t.n = {}; t = t.n end
      local _, err = send(c)
      assert.are.equal("content", err.field)
      assert.matches("nested deeper than 200", err.msg, 1, true)
      c.n.n = nil -- 199 levels below the top: 200 in all
      assert(send(c))
    end)
  end)


  describe("of content that is not what it seems", function()
    local function send(content)
      return client:send_ticket_message(fake.TICKET, { msg_type = "text", content = content })
    end
    -- content is refused with an invalid error on content whose message holds what
    local function refused(content, what)
      local _, err
      assert_invalid("content", function()
        _, err = send(content)
        return _, err
      end)
      assert.matches(what, err.msg, 1, true)
    end
    local function sent_content()
      local reqs = fake.requests_to("/open-apis/helpdesk/v1/tickets/")
      return cjson.decode(reqs[#reqs].body).content
    end

    it("refuses lists with holes instead of sending nulls", function()
      refused({ [2] = "x" }, "content must be an object, not an array")
      refused({ text = "x", list = { [2] = "x" } }, "content.list is a list with no [1]")
      refused({ text = "x", list = { "a", nil, "c" } }, "content.list is a list with no [2]")
      refused({ text = "x", list = { [1] = "a", [3] = "c" } }, "content.list is a list with no [2]")
    end)

    it("refuses tables that mix list entries and named fields, and keys JSON has not", function()
      refused({ text = "x", "y" }, "content must be an object, not an array")
      refused({ text = "x", t = { "a", b = 1 } }, "content.t mixes list entries [1..] and named fields")
      refused({ text = "x", t = { [1.5] = "a" } }, "content.t has the key 1.5")
      refused({ text = "x", t = { [0] = "a" } }, "content.t has the key 0")
      refused({ text = "x", t = { [true] = "a" } }, "content.t has a boolean key")
      refused({ text = "x", t = { [{}] = "a" } }, "content.t has a table key")
    end)

    it("refuses tables with a metatable, which lua-cjson would not follow", function()
      refused(setmetatable({}, { __index = { text = "hi" } }), "content has a metatable")
      refused({ text = "x", t = setmetatable({ a = 1 }, {}) }, "content.t has a metatable")
      refused({ text = "x", t = setmetatable({}, { __metatable = false }) }, "content.t has a metatable")
    end)

    it("refuses strings that are not UTF-8, in values and keys, naming where", function()
      refused({ text = "caf\233" }, "content.text is not valid UTF-8 (byte 4)")
      refused({ text = "x", t = { "ok", "\192\175" } }, "content.t[2] is not valid UTF-8 (byte 1)") -- overlong '/'
      refused({ text = "\237\160\128" }, "content.text is not valid UTF-8") -- a surrogate, U+D800
      refused({ text = "\244\144\128\128" }, "content.text is not valid UTF-8") -- above U+10FFFF
      refused({ text = "ab\228\184" }, "content.text is not valid UTF-8 (byte 3)") -- cut short
      refused({ text = "\128" }, "content.text is not valid UTF-8 (byte 1)") -- a lone continuation
      refused({ text = "x", ["k\255"] = 1 }, 'content["k\\255"] is a key that is not valid UTF-8 (byte 2)')
      refused({ text = "x", ["\255"] = 1 }, "is a key that is not valid UTF-8 (byte 1)")
      refused('{"text":"caf\233"}', "content is not valid UTF-8 (byte 13)")
    end)

    it("sends UTF-8 as it is, to the last code point", function()
      local text = "\228\189\160\229\165\189 \240\159\152\128 \239\191\191 \244\143\191\191 \0 end"
      assert(send({ text = text }))
      assert.are.equal(text, cjson.decode(sent_content()).text)
    end)

    it("refuses NaN and infinities, naming where", function()
      refused({ text = "x", n = 0 / 0 }, "content.n is not a finite number")
      refused({ text = "x", t = { 1, math.huge } }, "content.t[2] is not a finite number")
      refused({ text = "x", n = -math.huge }, "content.n is not a finite number")
    end)

    it("refuses values JSON has not, naming where", function()
      refused({ text = "x", f = print }, "content.f is a function")
      refused({ text = "x", t = { coroutine.create(function() end) } }, "content.t[1] is a thread")
      refused({ text = "x", u = io.stdout }, "content.u is a userdata")
    end)

    it("sends lists, nulls, booleans and empty objects as given", function()
      local null = require("cjson").null
      assert(send({ text = "x", list = { 1, "two", true, null, { a = false } }, empty = {} }))
      assert.matches('"list":[1,"two",true,null,{"a":false}]', sent_content(), 1, true)
      assert.matches('"empty":{}', sent_content(), 1, true)
      local back = cjson.decode(sent_content())
      assert.are.same({ 1, "two", true, null, { a = false } }, back.list)
    end)

    it("checks content given as JSON text as it checks a table", function()
      refused('{"text":"x","n":NaN}', "no NaN")
      refused('{"text":"x","n":-Infinity}', "no NaN")
      refused('{"text":"x","n":0x10}', "no NaN")
      -- text goes out as it is: its large integers reach Feishu unaltered
      assert(send('{"text":"x","n":123456789012345678}'))
      assert.matches('"n":123456789012345678', sent_content(), 1, true)
      refused('{"text":"' .. string.rep("x", 1024 * 1024) .. '"}', "over 1 MiB")
      local msg, err = helpdesk.post({ { helpdesk.link("x", "https://a\0b") } })
      assert.is_nil(msg)
      assert.are.equal("post[1][1]", err.field)
    end)

    it("refuses an id that is not UTF-8", function()
      assert_invalid("receiver_id", function()
        return client:bot_message({ msg_type = "text", content = { text = "x" }, receiver_id = "ou_\255" })
      end)
    end)

    it("refuses a batch with a hole in its list, the same on every Lua", function()
      local item = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "x" } }
      local _, err
      assert_invalid("items", function()
        _, err = client:send_ticket_messages({ item, nil, item })
        return _, err
      end)
      assert.matches("items has no item at [2]", err.msg, 1, true)
      assert_invalid("items", function() return client:send_ticket_messages({ item, nil, item, item }) end)
      assert_invalid("items", function() return client:send_ticket_messages({ item, x = item }) end)
    end)
  end)

  describe("of listing queries", function()
    it("rejects bad pages, sizes and times", function()
      local bad = {
        { "page", { page = 0 } }, { "page", { page = 1.5 } }, { "page", { page = "1" } },
        { "page_size", { page_size = 0 } }, { "page_size", { page_size = 201 } },
        { "time_start", { time_start = -1 } }, { "time_end", { time_end = 2 ^ 60 } },
        { "time_start", { time_start = 10, time_end = 5 } }, { "query", { limit = 5 } },
      }
      for _, case in ipairs(bad) do
        assert_invalid(case[1], function() return client:list_ticket_messages(fake.TICKET, case[2]) end)
      end
      assert_invalid("query", function() return client:list_ticket_messages(fake.TICKET, "page=1") end)
    end)
  end)

  describe("of client options", function()
    local function new(over) return function() return helpdesk.new(fake.options(over)) end end
    it("rejects bad or missing options, naming them", function()
      assert_invalid("base_url", new({ base_url = "ftp://open.feishu.cn" }))
      assert_invalid("base_url", new({ base_url = "https://open.feishu.cn/x?y" }))
      assert_invalid("base_url", new({ base_url = "https://" }))
      assert_invalid("app_id", new({ app_id = false }))
      assert_invalid("app_secret", new({ app_secret = false }))
      assert_invalid("app_secret", new({ app_secret = "a\r\nX-Evil: 1" }))
      assert_invalid("helpdesk_id", new({ helpdesk_id = false }))
      assert_invalid("helpdesk_id", new({ helpdesk_id = "a:b" }))
      assert_invalid("helpdesk_token", new({ helpdesk_token = "" }))
      assert_invalid("helpdesk_token", new({ helpdesk_token = "x\0y" }))
      assert_invalid("app_id", new({ app_id = "cli_\255" }))
      assert_invalid("app_secret", new({ app_secret = "s\192\175" }))
      assert_invalid("tenant_access_token", new({ tenant_access_token = "t-1" }))
      assert_invalid("tenant_access_token", new({ app_id = false, app_secret = false, tenant_access_token = "t\n" }))
      assert_invalid("timeout", new({ timeout = -1 }))
      assert_invalid("max_body_size", new({ max_body_size = 10 }))
      assert_invalid("insecure", new({ insecure = "yes" }))
      assert_invalid("options", new({ app_secert = "typo" }))
      assert_invalid("options", function() return helpdesk.new("https://open.feishu.cn") end)
    end)

    it("refuses a secret too short to be kept out of messages, and a base URL holding a password", function()
      -- Feishu's secrets are 32 characters and more: a short one is a typo,
      -- and could not be redacted without hiding ordinary words
      assert_invalid("app_secret", new({ app_secret = "abc" }))
      assert_invalid("helpdesk_token", new({ helpdesk_token = "1234567" }))
      assert_invalid("tenant_access_token", new({ app_id = false, app_secret = false, tenant_access_token = "t-x" }))
      assert_invalid("proxy", new({ proxy = "http://user:pw@127.0.0.1:3128" }))
      assert_invalid("base_url", new({ base_url = "https://user:s3cr3t-pass@open.feishu.cn" }))
      local _, err = new({ base_url = "https://user:s3cr3t-pass@open.feishu.cn" })()
      assert.is_nil(tostring(err):find("s3cr3t", 1, true))
      assert_invalid("base_url", new({ base_url = "https://@open.feishu.cn" }))
      -- eight bytes will do, and an @ after the host is not a password
      assert.is_table(new({ app_secret = "12345678", helpdesk_token = "abcdefgh",
                            proxy = "http://user:pw345678@127.0.0.1:3128" })())
      assert.is_table(new({ base_url = "https://open.feishu.cn/x@y" })())
    end)

    it("never shows the secret of a rejected option", function()
      local _, err = helpdesk.new(fake.options({ app_secret = "s3cr3t\r\n" }))
      assert.is_nil(tostring(err):find("s3cr3t", 1, true))
    end)

    it("accepts the Lark base URL and strips a trailing slash", function()
      local c = assert(helpdesk.new(fake.options({ base_url = helpdesk.LARK_BASE_URL .. "/" })))
      assert.are.equal("https://open.larksuite.com", c.base_url)
      assert.are.equal("https://open.feishu.cn", helpdesk.FEISHU_BASE_URL)
    end)
  end)
end)
