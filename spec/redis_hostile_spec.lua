-- The Redis store against a hostile Redis: keys of the wrong type or
-- holding garbage, a Redis that refuses writes, a connection inherited
-- across fork. Every loop is bounded by count.
local core = require "helpdesk.core"
local fake = require "fake"
local ratelimit = require "helpdesk.ratelimit"
local redis_server = require "redis_server"
local redis_store = require "helpdesk.redis_store"

local TEXT = { msg_type = "text", content = { text = "hostile" } }

describe("the Redis store, attacked", function()
  local env = redis_server.for_spec("hostile", setup, teardown)
  local prefix, new_store = env.prefix, env.new_store
  local server, admin
  setup(function() server, admin = env.server, env.admin end)

  before_each(function() fake.reset() end)

  -- A host on a prefix of its own (the fake reset) that has sent once, so
  -- that its token is in Redis: its client, the prefix and the token's key.
  local function host_with_token()
    fake.reset()
    local p = prefix()
    local a = fake.client({ store = { redis = server.url, prefix = p } })
    assert(a:send_ticket_message(fake.TICKET, TEXT))
    return a, p, admin:command("KEYS", p .. "helpdesk:token:*")[1]
  end

  local clock = { now = core.monotime, sleep = core.sleep }

  describe("with garbage in the limiter's count", function()
    it("never lets it open the window (NaN, infinite, negative, 1e308, a fraction, past 2^53, a hash)", function()
      for _, bad in ipairs({ "nan", "-nan", "inf", "-inf", "1e308", "-1e308", "-5", "3.5", "9007199254740993",
                             "garbage", "hash" }) do
        local st = new_store()
        local lim = ratelimit.limiter({ per_second = 5, per_minute = false }, st, "app:ep")
        local t0 = core.monotime()
        for i = 1, 5 do assert(lim:reserve(clock, math.huge), bad .. " call " .. i) end
        local seq = st.prefix .. lim.seq_key
        assert.are.equal("5", admin:command("GET", seq))
        assert(admin:command("DEL", seq))
        if bad == "hash" then
          assert(admin:command("HSET", seq, "a", "b"))
        else
          assert(admin:command("SET", seq, bad))
        end
        -- the five before are still in this second's window: none more in it
        local more = 0
        for _ = 1, 20 do
          if lim:reserve(clock, t0 + 0.5) then more = more + 1 end
        end
        assert.are.equal(0, more, bad)
        assert.is_true(st:up(), bad)
      end
    end)
  end)

  describe("with garbage for the token", function()
    it("fetches a new one in place of one no header may hold, too long for one, or too short to redact", function()
      for _, bad in ipairs({ "t-evil\r\nX-Evil: 1", "t-\0nul-inside", "short", "t-" .. string.rep("x", 10000) }) do
        local a, p, key = host_with_token()
        assert.is_string(key)
        -- good, by its times, for ever
        assert(admin:command("SET", key, "9999999999 9999999999 " .. bad))
        local b = fake.client({ store = { redis = server.url, prefix = p } })
        local data, err = b:send_ticket_message(fake.TICKET, TEXT)
        assert.is_nil(err, bad:sub(1, 20))
        assert.is_string(data.message_id)
        assert.are.equal(2, fake.state().token_count)
        assert.matches("^[%d.]+ [%d.]+ t%-fake", admin:command("GET", key))
        a:close()
        b:close()
      end
    end)
  end)

  describe("when Redis reads but refuses writes", function()
    it("tries it again less and less often, not every 0.5 s (a replica's READONLY, OOM)", function()
      for _, how in ipairs({ "READONLY", "OOM" }) do
        local other = redis_server.start()
        local c = assert(core.redis_connect("127.0.0.1", other.port, 1))
        if how == "READONLY" then
          assert(c:command("REPLICAOF", "127.0.0.1", "1"))
        else
          assert(c:command("CONFIG", "SET", "maxmemory", "1"))
        end
        c:close()
        local t = 0
        local said = {}
        local st = assert(redis_store.new({ redis = other.url, now = function() return t end,
                                            on_event = function(e) said[#said + 1] = e end }))
        -- a minute of a call every 0.1 s, as a token lookup then its lock
        for _ = 1, 600 do
          st:get("k")
          st:add("k:lock", "v", 1)
          t = t + 0.1
        end
        redis_server.finish(other)
        local fallbacks = 0
        for _, e in ipairs(said) do
          if e.event == "store_fallback" then
            fallbacks = fallbacks + 1
            assert.matches(how, e.error)
          end
        end
        -- 0.5, 1, 2, 4, 8, 16, 30 s: 7 or 8 in a minute, where it was 60
        assert.is_true(fallbacks >= 2 and fallbacks <= 8, how .. ": " .. fallbacks)
      end
    end)

    it("pauses 0.5 s again after Redis answered well for as long as its last pause", function()
      local other = redis_server.start()
      local t = 0
      local st = assert(redis_store.new({ redis = other.url, now = function() return t end }))
      local c = assert(core.redis_connect("127.0.0.1", other.port, 1))
      -- one finally: busted keeps the last one given
      finally(function()
        c:close()
        st:close()
        redis_server.finish(other)
      end)
      local function refuse(on)
        assert(c:command("CONFIG", "SET", "maxmemory", on and "1" or "0"))
      end
      -- three failures soon after each other: 0.5, 1, 2 s
      for i = 1, 3 do
        refuse(true)
        st:set("k", "v")
        assert.is_false(st:up(), "set " .. i)
        refuse(false)
        t = t + st.backoff
        st:set("k", "v")
        assert.is_true(st:up(), "set " .. i)
      end
      assert.are.equal(2, st.backoff)
      -- good for 2 s
      t = t + 2
      st:set("k", "v")
      refuse(true)
      st:set("k", "v")
      refuse(false)
      assert.is_false(st:up())
      assert.are.equal(0.5, st.backoff)
    end)
  end)

  describe("with garbage for the token's lock", function()
    it("takes the lock in place of what no fetch wrote, kept for ever, and fetches at once", function()
      for _, bad in ipairs({ "garbage", "1", "hash" }) do
        local a, p, key = host_with_token()
        assert(admin:command("DEL", key))
        -- no time-to-live: it would stay there for ever
        if bad == "hash" then
          assert(admin:command("HSET", key .. ":lock", "a", "b"))
        else
          assert(admin:command("SET", key .. ":lock", bad))
        end
        local b = fake.client({ store = { redis = server.url, prefix = p } })
        local t0 = core.monotime()
        local data, err = b:send_ticket_message(fake.TICKET, TEXT, { timeout = 2 })
        assert.is_nil(err, bad)
        assert.is_string(data.message_id)
        assert.is_true(core.monotime() - t0 < 1, bad)
        assert.are.equal(2, fake.state().token_count)
        a:close()
        b:close()
      end
    end)
  end)

  describe("across fork", function()
    -- get and set, n times, on keys of tag's; the answers that were another's
    local function wrong_answers(st, tag, n)
      local wrong = 0
      for i = 1, n do
        local key = tag .. (i % 7)
        local v = st:get(key)
        st:set(key, tag .. (i % 7))
        if v and v ~= tag .. (i % 7) then wrong = wrong + 1 end
      end
      return wrong
    end

    it("makes a connection of its own in the child, never using its parent's", function()
      local st = new_store()
      assert.is_true(st:set("who", "parent"))
      local ok, ffi = pcall(require, "ffi")
      if ok then
        -- LuaJIT: a real fork, both processes at once on the one store
        -- declared once per process (another spec may have)
        pcall(ffi.cdef, "int fork(void); int waitpid(int pid, int *status, int options); void _exit(int status);")
        local pid = ffi.C.fork()
        assert.is_true(pid >= 0)
        if pid == 0 then
          local wrong = wrong_answers(st, "child", 500)
          ffi.C._exit(math.min(wrong, 100))
        end
        local wrong = wrong_answers(st, "parent", 500)
        local status = ffi.new("int[1]")
        assert.are.equal(pid, ffi.C.waitpid(pid, status, 0))
        assert.are.equal(0, wrong)
        assert.are.equal(0, status[0]) -- the child's wrong answers, in its exit code
      else
        -- elsewhere: the child as the store sees it, another pid
        local before = st:backend().conn
        local pid_of = core.pid
        local child = pid_of() + 1
        core.pid = function() return child end
        local okc, err = pcall(function()
          assert.are.equal("parent", st:get("who"))
          assert.are_not.equal(before, st:backend().conn)
          assert.is_false(before:is_open())
        end)
        core.pid = pid_of
        assert(okc, err)
      end
      assert.are.equal("parent", st:get("who"))
      assert.is_true(st:up())
    end)
  end)

  describe("answered what Redis never answers", function()
    -- the store's connection answering name with answer instead
    local function answering(st, name, answer)
      local b = st:backend()
      local command_of = b.command
      b.command = function(self, cmd, ...)
        if cmd == name then return answer end
        return command_of(self, cmd, ...)
      end
      return function() b.command = command_of end
    end

    it("never takes a reservation with a wait past the call's deadline, or none at all", function()
      for _, answer in ipairs({ { 1, "1e300" }, { 1, "nan" }, { 1, "inf" }, { 1, "-inf" }, { 1, "5" },
                                { "1", "0" }, { 1 }, "OK", 42 }) do
        local st = new_store()
        local lim = ratelimit.limiter({ per_second = 5, per_minute = false }, st, "app:ep")
        assert(lim:reserve(clock, math.huge)) -- the script loaded
        local undo = answering(st, "EVALSHA", answer)
        local now = core.monotime()
        local start = lim:reserve(clock, now + 1)
        undo()
        -- the local stand-in answered instead
        assert.is_number(start)
        assert.is_true(start - now >= 0 and start - now < 1, tostring(start - now))
      end
    end)

    it("never keeps a SHA1 that is not text, which every EVALSHA after would raise on", function()
      local st = new_store()
      local lim = ratelimit.limiter({ per_second = 5, per_minute = false }, st, "app:ep")
      local undo = answering(st, "SCRIPT", { "not", "a", "sha" })
      assert(lim:reserve(clock, math.huge))
      undo()
      assert.is_nil(st.reserve_sha)
      assert(lim:reserve(clock, math.huge))
      assert.is_string(st.reserve_sha)
      assert.is_true(st:up())
      assert.are.equal("1", admin:command("GET", st.prefix .. lim.seq_key))
    end)
  end)

  describe("with a key of another type where a string belongs", function()
    it("takes it for none and sets the token in its place, never leaving Redis for it", function()
      for _, which in ipairs({ "token", "lock", "retry" }) do
        local a, p, key = host_with_token()
        a:close()
        if which ~= "token" then
          assert(admin:command("DEL", key))
          key = key .. ":" .. which
        end
        assert(admin:command("DEL", key))
        assert(admin:command("HSET", key, "a", "b"))
        local events = {}
        local b = fake.client({ store = { redis = server.url, prefix = p },
                                logger = function(e) events[#events + 1] = e end })
        for _ = 1, 3 do assert(b:send_ticket_message(fake.TICKET, TEXT, { timeout = 2 })) end
        b:close()
        for _, e in ipairs(events) do assert.are_not.equal("store_fallback", e.event, which) end
        assert.are.equal(2, fake.state().token_count, which)
        local token_key = which == "token" and key or key:sub(1, -#which - 2)
        assert.are.equal("string", admin:command("TYPE", token_key), which)
      end
    end)
  end)

  describe("when Redis is slow and another host holds the token's lock", function()
    it("waits for its fetch no longer than the call's timeout, the round trips counted", function()
      local st = new_store({ timeout = 1 })
      -- each command 0.1 s late, well within the store's timeout
      local b = st:backend()
      local command_of = b.command
      b.command = function(...)
        core.sleep(0.1)
        return command_of(...)
      end
      local fetches = 0
      local tok = require("helpdesk.token").new({
        fetch = function() fetches = fetches + 1 return "t-never-fetched", 7200 end,
        store = st, key = "tok", now = core.monotime, sleep = core.sleep,
        yields = function() return false end,
      })
      -- another host's fetch, under way for a minute
      assert(admin:command("SET", st.prefix .. "tok:lock", "0123456789abcdef01234567-1.1", "PX", "60000"))
      local t0 = core.monotime()
      local got, err = tok:get({ timeout = 1 })
      local took = core.monotime() - t0
      assert.is_nil(got)
      assert.matches("timed out waiting", err.msg)
      assert.are.equal(0, fetches)
      -- the timeout and a last turn's round trips, on a loaded machine
      -- (ASan beside valgrind); counting the pauses alone it took 8 s
      assert.is_true(took < 3, took .. " s")
    end)
  end)

  describe("closed by its client's logger mid-call", function()
    it("connects to Redis no more: the connection goes with close, at once", function()
      local other = redis_server.start()
      finally(function() redis_server.finish(other) end)
      local client
      client = fake.client({ store = { redis = other.url, timeout = 0.1 }, logger = function(e)
        if e.event == "store_recovered" then client:close() end
      end })
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      redis_server.stop(other)
      assert(client:send_ticket_message(fake.TICKET, TEXT)) -- on the local store
      redis_server.start({ port = other.port, dir = other.dir })
      core.sleep(0.6) -- the pause before Redis is tried again
      local ok, data, err = pcall(client.send_ticket_message, client, fake.TICKET, TEXT)
      assert.is_true(ok)
      assert.is_nil(data)
      assert.matches("closed", tostring(err))
      local c = assert(core.redis_connect("127.0.0.1", other.port, 1))
      local clients = c:command("CLIENT", "LIST")
      c:close()
      -- this one alone
      assert.are.equal(1, select(2, clients:gsub("\n", "")), clients)
    end)
  end)
end)
