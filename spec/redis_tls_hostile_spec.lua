-- The Redis store over TLS (rediss://) against hostile servers: one that
-- takes the connection and never answers, one that answers a byte at a
-- time (each byte within the timeout, the whole far past it). The slow
-- ones are a relay (spec/tls_relay.lua, LuaSocket, a process of its own
-- that exits after a few seconds) in front of a real TLS redis-server.
local core = require "helpdesk.core"
local redis_server = require "redis_server"
local redis_store = require "helpdesk.redis_store"

local has_socket = pcall(require, "socket")
local RELAY = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "spec") .. "/tls_relay.lua"

local random_port, slurp = redis_server.random_port, redis_server.slurp

-- A relay to upstream's port (0: none) answering one byte every delay s
-- after the first free s of a connection, for life s; its port.
local function relay(upstream, delay, free, life)
  for _ = 1, 10 do
    local port, ready = random_port(), os.tmpname()
    os.remove(ready)
    os.execute(string.format("env -u LD_PRELOAD lua5.4 %s %d %d %g %g %g %s </dev/null >/dev/null 2>&1 &",
                             RELAY, port, upstream, delay, free, life, ready))
    for _ = 1, 300 do
      local said = slurp(ready)
      if said ~= "" then
        os.remove(ready)
        if said == "ready" then return port end
        break
      end
      core.sleep(0.01)
    end
  end
  error("the relay did not start")
end

describe("the Redis store over TLS, attacked", function()
  local tls

  setup(function() tls = redis_server.start({ tls = true, password = "tls-hostile-pass" }) end)
  teardown(function() redis_server.finish(tls) end)

  local function timed(f)
    local t0 = core.monotime()
    local a, b, c = f()
    return core.monotime() - t0, a, b, c
  end

  -- Past the relay's quick second, a GET of slow:big (2000 bytes at 20 a
  -- second): an I/O error within the timeout, the connection closed.
  local function slow_get_fails(conn)
    core.sleep(1.2)
    local took, res, err, how = timed(function() return conn:command("GET", "slow:big") end)
    assert.is_nil(res)
    assert.are.equal("Resource temporarily unavailable", err)
    assert.are.equal("io", how)
    assert.is_false(conn:is_open())
    assert.is_true(took < 3, took)
  end

  describe("a server that takes the connection and never answers the ClientHello", function()
    it("fails the connection within the timeout", function()
      assert(has_socket, "LuaSocket is not installed (lua-socket: make deps)")
      local srv = assert(require("socket").bind("127.0.0.1", 0))
      finally(function() srv:close() end)
      local _, port = srv:getsockname()
      local took, conn, err = timed(function()
        return core.redis_connect("127.0.0.1", tonumber(port), 0.3, { ca_file = tls.ca_file })
      end)
      assert.is_nil(conn)
      assert.are.equal("Resource temporarily unavailable", err)
      assert.is_true(took < 3, took)
    end)
  end)

  describe("a server that sends a byte at a time, each within the timeout", function()
    it("fails the handshake within the timeout, not after the whole handshake", function()
      assert(has_socket, "LuaSocket is not installed (lua-socket: make deps)")
      -- the server's first flight (a certificate: over 1 KB) at 20 bytes a second
      local port = relay(tls.port, 0.05, 0, 8)
      local took, conn, err = timed(function()
        return core.redis_connect("127.0.0.1", port, 0.3, { ca_file = tls.ca_file })
      end)
      if conn then conn:close() end
      assert.is_nil(conn)
      assert.are.equal("Resource temporarily unavailable", err)
      assert.is_true(took < 3, took)
    end)

    it("fails a command within the timeout, not after the whole reply", function()
      assert(has_socket, "LuaSocket is not installed (lua-socket: make deps)")
      local admin = assert(core.redis_connect("127.0.0.1", tls.port, 1, { ca_file = tls.ca_file }))
      assert(admin:command("AUTH", "tls-hostile-pass"))
      assert(admin:command("SET", "slow:big", string.rep("x", 2000)))
      admin:close()
      -- quick for a second (the handshake, AUTH), then 20 bytes a second
      local port = relay(tls.port, 0.05, 1, 8)
      local conn = assert(core.redis_connect("127.0.0.1", port, 0.3, { ca_file = tls.ca_file }))
      assert.are.equal("OK", conn:command("AUTH", "tls-hostile-pass"))
      slow_get_fails(conn)
    end)

    it("leaves a store on its local one within its timeout, saying so", function()
      assert(has_socket, "LuaSocket is not installed (lua-socket: make deps)")
      local port = relay(tls.port, 0.05, 0, 8)
      local events = {}
      local st = assert(redis_store.new({ redis = "rediss://:tls-hostile-pass@127.0.0.1:" .. port,
                                          ca_file = tls.ca_file, timeout = 0.3,
                                          on_event = function(e) events[#events + 1] = e end }))
      local took, ok = timed(function() return st:set("k", "v") end)
      st:close()
      assert.is_true(ok) -- in the local store
      assert.is_true(took < 3, took)
      assert.are.equal("store_fallback", events[1] and events[1].event)
    end)
  end)

  describe("unverified (insecure = true)", function()
    it("says a timeout or a reset, never a certificate refused that was not checked", function()
      assert(has_socket, "LuaSocket is not installed (lua-socket: make deps)")
      -- quick for a second, then silent; the spec's CA is no system's
      local port = relay(tls.port, 0, 1, 8)
      local conn = assert(core.redis_connect("127.0.0.1", port, 0.3, { verify = false }))
      core.sleep(1.2)
      local res, err, how = conn:command("PING")
      assert.is_nil(res)
      assert.are.equal("io", how)
      assert.are.equal("Resource temporarily unavailable", err)
      -- a store's event says what the timeout was, connecting as in a command
      local events = {}
      local st = assert(redis_store.new({ redis = "rediss://127.0.0.1:" .. relay(0, 0, 0, 4), insecure = true,
                                          timeout = 0.3, on_event = function(e) events[#events + 1] = e end }))
      assert.is_true(st:set("k", "v"))
      st:close()
      assert.are.equal("no answer within 0.3 s (store.timeout)", events[1] and events[1].error)
    end)
  end)

  describe("a plain Redis (redis://) that sends a byte at a time, each within the timeout", function()
    it("fails a command within the timeout too, not after the whole reply", function()
      assert(has_socket, "LuaSocket is not installed (lua-socket: make deps)")
      local plain = redis_server.start()
      finally(function() redis_server.finish(plain) end)
      local admin = assert(core.redis_connect("127.0.0.1", plain.port, 1))
      assert(admin:command("SET", "slow:big", string.rep("x", 2000)))
      admin:close()
      -- quick for a second, then 20 bytes a second
      local port = relay(plain.port, 0.05, 1, 8)
      local conn = assert(core.redis_connect("127.0.0.1", port, 0.3))
      assert.are.equal("PONG", conn:command("PING"))
      slow_get_fails(conn)
    end)
  end)

  describe("a reply larger than any the store makes", function()
    it("is an I/O error, not memory without end", function()
      local plain = redis_server.start()
      finally(function() redis_server.finish(plain) end)
      local conn = assert(core.redis_connect("127.0.0.1", plain.port, 5))
      assert.are.equal("OK", conn:command("SET", "huge", string.rep("x", 17 * 2 ^ 20)))
      local res, err, how = conn:command("GET", "huge")
      assert.is_nil(res)
      assert.are.equal("a reply of more than 16 MiB", err)
      assert.are.equal("io", how)
      assert.is_false(conn:is_open())
      conn = assert(core.redis_connect("127.0.0.1", plain.port, 5))
      assert.are.equal(15 * 2 ^ 20, #conn:command("GETRANGE", "huge", "0", string.format("%d", 15 * 2 ^ 20 - 1)))
      conn:close()
    end)
  end)

  describe("a server that closed the connection (a restart, CLIENT KILL, its idle timeout)", function()
    -- a command of several writes: the first goes out, the peer answers it
    -- with a reset, the next raises SIGPIPE, which ends the process. In a
    -- process of its own: LuaSocket (loaded here) ignores SIGPIPE for good.
    local LUA = rawget(_G, "jit") and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
    local CHILD = [[
      package.path, package.cpath = %q, %q
      local core = require "helpdesk.core"
      local tls = %s
      local conn = assert(core.redis_connect("127.0.0.1", %d, 2, tls))
      local admin = assert(core.redis_connect("127.0.0.1", %d, 2, tls))
      if tls then
        assert(conn:command("AUTH", "tls-hostile-pass"))
        assert(admin:command("AUTH", "tls-hostile-pass"))
      end
      assert(admin:command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") == 1)
      admin:close()
      core.sleep(0.2)
      local res, err, how = conn:command("SET", "big", string.rep("x", %d))
      print(tostring(res) .. " " .. type(err) .. " " .. tostring(how) .. " " .. tostring(conn:is_open()))
    ]]

    it("is an I/O error, over TLS and plain, never SIGPIPE", function()
      local plain = redis_server.start()
      finally(function() redis_server.finish(plain) end)
      for _, case in ipairs({ { port = tls.port, tls = string.format("{ ca_file = %q }", tls.ca_file), size = 200000 },
                              { port = plain.port, tls = "nil", size = 20000000 } }) do
        local script = os.tmpname()
        local f = assert(io.open(script, "w"))
        f:write(string.format(CHILD, package.path, package.cpath, case.tls, case.port, case.port, case.size))
        f:close()
        -- SIGPIPE as a program starts with it (LuaSocket left it ignored, which
        -- a child inherits)
        local p = assert(io.popen("env --default-signal=PIPE " .. LUA .. " " .. script .. " 2>&1"))
        local out = p:read("*a")
        p:close()
        os.remove(script)
        assert.are.equal("nil string io false\n", out)
      end
    end)
  end)
end)
