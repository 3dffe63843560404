local fake = require "fake"
local helpdesk = require "helpdesk"

-- Calls f and checks it failed with an invalid error on field, sending nothing.
local function assert_invalid(field, f)
  local before = #fake.requests()
  local res, err = f()
  assert.is_nil(res)
  assert.is_table(err)
  assert.are.equal("invalid", err.kind)
  assert.are.equal(field, err.field)
  assert.matches("^helpdesk invalid error: " .. field:gsub("%p", "%%%0") .. " ", tostring(err))
  assert.are.equal(before, #fake.requests())
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

    it("rejects numbers that would not reach Feishu exactly", function()
      local _, err = client:send_ticket_message(fake.TICKET, { msg_type = "text",
        content = { text = "x", extra = { id = 6948728206392295444 } } })
      assert.are.equal("content", err.field)
      assert.matches("content.extra.id", err.msg, 1, true)
      assert(client:send_ticket_message(fake.TICKET, { msg_type = "text",
        content = { text = "x", n = 1617960686000 } }))
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
      assert_invalid("tenant_access_token", new({ tenant_access_token = "t-1" }))
      assert_invalid("tenant_access_token", new({ app_id = false, app_secret = false, tenant_access_token = "t\n" }))
      assert_invalid("timeout", new({ timeout = -1 }))
      assert_invalid("max_body_size", new({ max_body_size = 10 }))
      assert_invalid("insecure", new({ insecure = "yes" }))
      assert_invalid("options", new({ app_secert = "typo" }))
      assert_invalid("options", function() return helpdesk.new("https://open.feishu.cn") end)
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
