local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"

-- Runs code in a fresh interpreter with the given environment; returns its output.
local function run_with_env(env, code)
  local parts = {}
  for k, v in pairs(env) do parts[#parts + 1] = k .. "='" .. v .. "'" end
  local lua = arg and arg[-1] or "lua5.4"
  -- Under make sanitize the child inherits the ASan runtime: memory errors
  -- are still caught, but LeakSanitizer's exit-time tracer has crashed in
  -- such children (a fault of its own, "Tracer caught signal 11"); leaks are
  -- checked in the spec process itself.
  local cmd = string.format("env -u FEISHU_TENANT_ACCESS_TOKEN -u FEISHU_REDIS_URL ASAN_OPTIONS=detect_leaks=0 "
    .. "%s LUA_PATH='%s' "
    .. "LUA_CPATH='%s' %s -e %q 2>&1",
    table.concat(parts, " "), package.path, package.cpath, lua, code)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

describe("module functions", function()
  before_each(function() fake.reset() end)

  it("use the client set by configure", function()
    local helpdesk = require "helpdesk"
    local c = assert(helpdesk.configure(fake.options()))
    assert.matches("^helpdesk.client", tostring(c))
    local data = assert(helpdesk.send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "m" } }))
    assert.is_string(data.message_id)
    assert(helpdesk.bot_message({ msg_type = "text", content = { text = "b" }, receiver_id = "ou_1" }))
    local page = assert(helpdesk.list_ticket_messages(fake.TICKET, { page_size = 5 }))
    assert.are.equal(1, page.total)
    local n = 0
    for _ in helpdesk.ticket_messages(fake.TICKET) do n = n + 1 end
    assert.are.equal(1, n)
    assert.are.equal(1, fake.state().token_count)
  end)

  it("keep the old client when configure gets bad options", function()
    local helpdesk = require "helpdesk"
    assert(helpdesk.configure(fake.options()))
    local c, err = helpdesk.configure({ base_url = "gopher://x" })
    assert.is_nil(c)
    assert.are.equal("base_url", err.field)
    assert(helpdesk.send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "m" } }))
  end)

  it("let a running listing finish on the client it began with when configure replaces it", function()
    local helpdesk = require "helpdesk"
    fake.ticket({ ticket_id = fake.TICKET, messages = 450, start = 1700000000, step = 60 })
    local old = assert(helpdesk.configure(fake.options()))
    local n = 0
    local ok, err = pcall(function()
      for _ in helpdesk.ticket_messages(fake.TICKET) do
        n = n + 1
        if n == 200 then assert(helpdesk.configure(fake.options())) end
      end
    end)
    assert.is_true(ok, tostring(err))
    assert.are.equal(450, n)
    -- the old client is not the default any more, but works for whoever holds it
    assert(old:send_ticket_message(fake.TICKET, { msg_type = "text", content = { text = "old" } }))
    assert.are_not.equal(old, (helpdesk.configure(fake.options())))
  end)

  it("read FEISHU_* from the environment without configure", function()
    local out = run_with_env({
      FEISHU_BASE_URL = fake.url, FEISHU_APP_ID = fake.APP_ID, FEISHU_APP_SECRET = fake.APP_SECRET,
      FEISHU_HELPDESK_ID = fake.HELPDESK_ID, FEISHU_HELPDESK_TOKEN = fake.HELPDESK_TOKEN,
    }, [[
      local h = require "helpdesk"
      local d, e = h.send_ticket_message("]] .. fake.TICKET .. [[", { msg_type = "text", content = { text = "env" } })
      print(d and d.message_id or tostring(e))
    ]])
    assert.matches("^om_%x+\n$", out)
    assert.are.equal(1, #fake.requests_to(PATH))
  end)

  -- The fake's credentials as the environment holds them, and extra.
  local function credentials_env(extra)
    local env = {
      FEISHU_BASE_URL = fake.url, FEISHU_APP_ID = fake.APP_ID, FEISHU_APP_SECRET = fake.APP_SECRET,
      FEISHU_HELPDESK_ID = fake.HELPDESK_ID, FEISHU_HELPDESK_TOKEN = fake.HELPDESK_TOKEN,
    }
    for k, v in pairs(extra) do env[k] = v end
    return env
  end

  it("share the token of other processes through FEISHU_REDIS_URL", function()
    local redis_server = require "redis_server"
    local redis = redis_server.start()
    finally(function() redis_server.finish(redis) end)
    local env = credentials_env({ FEISHU_REDIS_URL = redis.url .. "/6" })
    local outs = {}
    for i = 1, 2 do
      outs[i] = run_with_env(env, [[
        local h = require "helpdesk"
        local d, e = h.send_ticket_message("]] .. fake.TICKET .. [[", { msg_type = "text", content = { text = "r" } })
        print(d and d.message_id or tostring(e))
      ]])
    end
    for i = 1, 2 do assert.matches("^om_%x+\n$", outs[i]) end
    assert.are.equal(1, fake.state().token_count)
  end)

  it("take the Redis store's prefix, timeout and share from FEISHU_REDIS_PREFIX, _TIMEOUT and FEISHU_STORE_SHARE",
     function()
    local redis_server = require "redis_server"
    local redis = redis_server.start()
    finally(function() redis_server.finish(redis) end)
    local env = credentials_env({ FEISHU_REDIS_URL = redis.url .. "/7", FEISHU_REDIS_PREFIX = "prod-7:",
                                  FEISHU_REDIS_TIMEOUT = "1.5", FEISHU_STORE_SHARE = "3" })
    local script = [[
      local h = require "helpdesk"
      local d, e = h.send_ticket_message("]] .. fake.TICKET .. [[", { msg_type = "text", content = { text = "p" } })
      print(d and d.message_id or tostring(e))
    ]]
    local out = run_with_env(env, script)
    assert.matches("^om_%x+\n$", out)
    -- every key under the prefix
    local c = assert(require("helpdesk.core").redis_connect("127.0.0.1", redis.port, 1))
    assert(c:command("SELECT", "7"))
    local keys = c:command("KEYS", "*")
    c:close()
    assert.is_true(#keys >= 2, #keys .. " keys")
    for _, k in ipairs(keys) do assert.matches("^prod%-7:helpdesk:", k) end
    -- a value that is not one is refused, naming the option, and nothing is sent
    fake.reset()
    for var, field in pairs({ FEISHU_REDIS_TIMEOUT = "store.timeout", FEISHU_STORE_SHARE = "store_share",
                              FEISHU_REDIS_PREFIX = "store.prefix" }) do
      local bad = {}
      for k, v in pairs(env) do bad[k] = v end
      bad[var] = var == "FEISHU_REDIS_PREFIX" and "has space" or "soon"
      out = run_with_env(bad, [[
        local h = require "helpdesk"
        local d, e = h.send_ticket_message("1", { msg_type = "text", content = { text = "env" } })
        print(d, e.kind, e.field)
      ]])
      assert.are.equal("nil\tinvalid\t" .. field .. "\n", out)
    end
    assert.are.equal(0, #fake.requests())
  end)

  it("say which variable is missing from the environment", function()
    local out = run_with_env({ FEISHU_BASE_URL = fake.url, FEISHU_APP_ID = fake.APP_ID }, [[
      local h = require "helpdesk"
      local d, e = h.send_ticket_message("1", { msg_type = "text", content = { text = "env" } })
      print(d, e.kind, e.field)
      print(pcall(h.ticket_messages, "1"))
    ]])
    assert.matches("^nil\tinvalid\tapp_secret\nfalse\thelpdesk invalid error: app_secret is missing\n$", out)
    assert.are.equal(0, #fake.requests())
  end)
end)
