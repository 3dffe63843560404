local core = require "helpdesk.core"
local fake = require "fake"
local helpdesk = require "helpdesk"
local redis_server = require "redis_server"
local redis_store = require "helpdesk.redis_store"
local store = require "helpdesk.store"

local TEXT = { msg_type = "text", content = { text = "shared" } }

describe("the Redis store", function()
  local server
  -- a connection of the spec's own, to look into Redis
  local admin
  local n_prefix = 0

  local function prefix()
    n_prefix = n_prefix + 1
    return "spec" .. n_prefix .. ":"
  end

  local function command(...)
    return admin:command(...)
  end

  setup(function()
    server = redis_server.start()
    admin = assert(core.redis_connect("127.0.0.1", server.port, 1))
  end)

  teardown(function()
    if admin then admin:close() end
    redis_server.finish(server)
  end)

  before_each(function() fake.reset() end)

  local function new_store(overrides)
    local o = { redis = server.url, prefix = prefix() }
    for k, v in pairs(overrides or {}) do o[k] = v end
    return assert(redis_store.new(o))
  end

  describe("its connection (helpdesk.core)", function()
    it("answers replies as Lua values, and says which failures leave it usable", function()
      local c = assert(core.redis_connect("127.0.0.1", server.port, 1))
      assert.matches("^helpdesk.core.redis %(open%)$", tostring(c))
      assert.are.equal("OK", c:command("SET", "core:k", "v"))
      assert.are.equal("v", c:command("GET", "core:k"))
      assert.is_false(c:command("GET", "core:none"))
      assert.are.equal(3, c:command("INCRBY", "core:n", 3))
      assert.are.same({ 1, "two", false, { 3 } }, c:command("EVAL", "return { 1, 'two', false, { 3 } }", "0"))
      local res, msg, how = c:command("EVALSHA", string.rep("0", 40), "0")
      assert.is_nil(res)
      assert.matches("^NOSCRIPT", msg)
      assert.are.equal("redis", how)
      assert.is_true(c:is_open())
      c:close()
      c:close()
      assert.is_false(c:is_open())
      assert.matches("closed", select(2, pcall(c.command, c, "PING")))
    end)

    it("fails with io when the server goes, and closes itself", function()
      local other = redis_server.start()
      local c = assert(core.redis_connect("127.0.0.1", other.port, 1))
      assert.are.equal("PONG", c:command("PING"))
      redis_server.finish(other)
      local res, msg, how = c:command("PING")
      assert.is_nil(res)
      assert.is_string(msg)
      assert.are.equal("io", how)
      assert.is_false(c:is_open())
      local none, why = core.redis_connect("127.0.0.1", other.port, 0.2)
      assert.is_nil(none)
      assert.matches("refused", why)
    end)
  end)

  describe("keeps the contract of the table store", function()
    -- The same calls on both stores give the same answers.
    local function contract(st)
      local out = {}
      -- Redis keeps text: a number set comes back as its text
      local function note(...)
        local row = { n = select("#", ...), ... }
        for i = 1, row.n do
          if type(row[i]) == "number" then row[i] = "#" .. tostring(row[i]) end
        end
        out[#out + 1] = row
      end
      note(st:get("a"))
      note(st:set("a", "x y 1"))
      note(st:get("a"))
      note(st:add("a", "other"))
      note(st:get("a"))
      note(st:add("b", 1, 0.05))
      note(st:get("b"))
      note(st:set("c", "short", 0.05))
      note(st:set("d", "no ttl", 0))
      note(st:incr("n", 1, 0))
      note(st:incr("n", 1, 0))
      note(st:incr("n", 5))
      note(st:incr("missing", 1))
      note(st:incr("m", 2, 10))
      note(st:incr("m", 0.5, 10))
      core.sleep(0.1)
      note(st:get("b"))
      note(st:get("c"))
      note(st:get("d"))
      note(st:add("b", "again", 10))
      note(st:get("b"))
      st:delete("a")
      note(st:get("a"))
      return out
    end

    it("get, set, add, delete and incr, with times-to-live in seconds", function()
      local want = contract(store.table(core.monotime))
      local got = contract(new_store())
      -- what get gives back of a number set, Redis has as text
      assert.are.same({ n = 1, "#1" }, want[7])
      want[7] = { n = 1, "1" }
      assert.are.same(want, got)
      -- incr counts in numbers, from init when the key holds nothing
      assert.are.same({ n = 1, "#12.5" }, got[15])
      assert.are.same({ n = 2, nil, "not found" }, got[13])
    end)

    it("sets a lock with SET NX PX, in one command", function()
      local st = new_store()
      assert(command("CONFIG", "RESETSTAT"))
      assert.is_true(st:add("lock", 1, 5))
      local ok, why = st:add("lock", 1, 5)
      assert.is_false(ok)
      assert.are.equal("exists", why)
      local pttl = command("PTTL", st.prefix .. "lock")
      assert.is_true(pttl > 4000 and pttl <= 5000, tostring(pttl))
      local stats = command("INFO", "commandstats")
      assert.matches("cmdstat_set:calls=2,", stats, 1, true)
    end)

    it("keeps its keys under its prefix, apart from another prefix's", function()
      local a, b = new_store(), new_store()
      a:set("k", "from a")
      assert.is_nil(b:get("k"))
      assert.are.equal("from a", command("GET", a.prefix .. "k"))
    end)
  end)

  describe("its URL", function()
    it("takes a password, a port and a db", function()
      assert.are.same({ host = "cache.internal", port = 6380, db = 3, password = "p@ss:w" },
                      redis_store.parse_url("redis://:p@ss:w@cache.internal:6380/3"))
      assert.are.same({ host = "127.0.0.1", port = 6379, db = 0 }, redis_store.parse_url("redis://127.0.0.1"))
    end)

    it("refuses a bad one with an invalid error naming the option, never showing the password", function()
      for _, bad in ipairs({ "redis://:hunter22@", "http://:hunter22@h:1", "redis://:hunter22@h:0",
                             "redis://:hunter22@h:70000", "redis://:hunter22@h/16", "redis://user:hunter22@h",
                             "redis://:hunter22@h:1/x", "redis://:hunter22@h:1\r\n", "redis://:hunter22@ h",
                             "rediss://:hunter22@h:1", 42 }) do
        local c, err = helpdesk.new(fake.options({ store = { redis = bad } }))
        assert.is_nil(c)
        assert.are.equal("invalid", err.kind)
        assert.are.equal("store.redis", err.field)
        assert.is_nil(tostring(err):find("hunter22", 1, true), tostring(err))
      end
      local _, err = helpdesk.new(fake.options({ store = { redis = "rediss://h:1" } }))
      assert.matches("TLS", tostring(err))
      _, err = helpdesk.new(fake.options({ store = { redis = server.url, timeout = 0 } }))
      assert.are.equal("store.timeout", err.field)
      _, err = helpdesk.new(fake.options({ store = { redis = server.url, prefix = "a b" } }))
      assert.are.equal("store.prefix", err.field)
      _, err = helpdesk.new(fake.options({ store = { redis = server.url, host = "x" } }))
      assert.are.equal("store", err.field)
      _, err = helpdesk.new(fake.options({ store_share = 2 }))
      assert.are.equal("store_share", err.field)
      _, err = helpdesk.new(fake.options({ store = { redis = server.url }, store_share = 0 }))
      assert.are.equal("store_share", err.field)
    end)

    it("never shows its password in tostring", function()
      local st = assert(redis_store.new({ redis = "redis://:hunter22@127.0.0.1:1/2" }))
      assert.are.equal("helpdesk.redis_store (127.0.0.1:1/2, prefix )", tostring(st))
    end)
  end)

  describe("with a password", function()
    local locked

    setup(function() locked = redis_server.start({ password = "hunter22-secret" }) end)
    teardown(function() redis_server.finish(locked) end)

    it("authenticates and selects its db", function()
      local st = assert(redis_store.new({ redis = locked.url .. "/5", prefix = "p:" }))
      assert.is_true(st:set("k", "v"))
      assert.are.equal("v", st:get("k"))
      assert.is_true(st:up())
      local c = assert(core.redis_connect("127.0.0.1", locked.port, 1))
      assert(c:command("AUTH", "hunter22-secret"))
      assert(c:command("SELECT", "5"))
      assert.are.equal("v", c:command("GET", "p:k"))
      c:close()
    end)

    it("says why it falls back on a wrong one, without the password", function()
      local events = {}
      local url = "redis://:wrong-password-1@127.0.0.1:" .. locked.port
      local client = fake.client({ store = { redis = url }, logger = function(e) events[#events + 1] = e end })
      local data, err = client:send_ticket_message(fake.TICKET, TEXT)
      assert.is_nil(err)
      assert.is_string(data.message_id)
      local fallback
      for _, e in ipairs(events) do
        if e.event == "store_fallback" then fallback = e end
        for _, v in pairs(e) do
          assert.is_nil(tostring(v):find("wrong-password-1", 1, true))
        end
      end
      assert.is_table(fallback)
      assert.matches("AUTH failed", fallback.error)
      assert.is_nil(tostring(client):find("wrong-password-1", 1, true))
    end)
  end)

  describe("shares the token", function()
    it("fetches one token for clients on one Redis (hosts), through SET NX PX", function()
      local url = server.url .. "/1"
      command("SELECT", "1")
      command("FLUSHDB")
      command("SELECT", "0")
      local a = fake.client({ store = { redis = url } })
      local b = fake.client({ store = { redis = url } })
      for _ = 1, 3 do
        assert(a:send_ticket_message(fake.TICKET, TEXT))
        assert(b:send_ticket_message(fake.TICKET, TEXT))
      end
      assert.are.equal(1, fake.state().token_count)
      a:close()
      b:close()
    end)
  end)
end)
