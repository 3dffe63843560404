-- The receiver's store of event ids under strain: a store that fails, one
-- that refers back to its receiver, ids that must expire, and handlers
-- still running when Feishu pushes again (a coroutine server).
local cjson = require "cjson"
local clock = require "helpdesk.clock"
local events = require "helpdesk.events"
local helpdesk = require "helpdesk"

local TOKEN = "sT5-store-Token"
local MESSAGE = "helpdesk.ticket_message.created_v1"

-- A push of a plain (unencrypted, unsigned) event: the receiver has a
-- verification token only.
local function push(id)
  return {}, cjson.encode({
    schema = "2.0",
    header = { event_id = id, token = TOKEN, create_time = "1608725989000", event_type = MESSAGE,
               tenant_key = "t_1", app_id = "cli_1" },
    event = { ticket = { ticket_id = "6626871355780366331" }, msg_type = "text", sender_type = 2,
              content = { content = "help " .. id, msg_type = "text" } },
  })
end

local function receiver(extra)
  local opts = { verification_token = TOKEN }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(events.new(opts))
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

describe("the receiver's store", function()
  local real_now = clock.now
  after_each(function() clock.now = real_now end)

  it("runs the handler when the store fails to take the event id, rather than lose the event", function()
    for _, failure in ipairs({ { false, "no memory" }, { nil, "closed" }, { false, "failed" } }) do
      local mem = helpdesk.memory_store()
      local st = setmetatable({ add = function() return failure[1], failure[2] end }, { __index = mem })
      local r = receiver({ store = st })
      local ran = 0
      r:on(MESSAGE, function() ran = ran + 1 end)
      local status, body, ev = r:handle(push("fail-" .. failure[2]))
      assert.are.equal(200, status, failure[2])
      assert.are.equal("{}", body)
      assert.is_nil(ev.duplicate)
      assert.are.equal(1, ran, failure[2])
    end
  end)

  it("answers 409, neither a duplicate nor a second run, when the store has the id but cannot read it", function()
    local mem = helpdesk.memory_store()
    local st = setmetatable({ add = function() return false, "exists" end,
                              get = function() error("read timed out") end }, { __index = mem })
    local r = receiver({ store = st })
    local ran = 0
    r:on(MESSAGE, function() ran = ran + 1 end)
    local status, _, ev = r:handle(push("unreadable-1"))
    assert.are.equal(409, status)
    assert.is_nil(ev.duplicate)
    assert.are.equal(0, ran)
  end)

  it("answers, never raises, when looking up the store's methods raises", function()
    local mem = helpdesk.memory_store()
    local closed = false
    local st = setmetatable({}, { __index = function(_, name)
      if closed then error("connection closed") end
      return function(_, ...) return mem[name](mem, ...) end
    end })
    local r = receiver({ store = st })
    local ran = 0
    r:on(MESSAGE, function() ran = ran + 1 end)
    closed = true
    local ok, status = pcall(r.handle, r, push("raise-1"))
    assert.is_true(ok, tostring(status))
    assert.are.equal(200, status)
    assert.are.equal(1, ran)
  end)

  it("keeps its ids bounded: expired ones go though never read again", function()
    local now = 1000
    clock.now = function() return now end
    local st = helpdesk.memory_store()
    local r = receiver({ store = st, remember = 10 })
    local ran = 0
    r:on(MESSAGE, function() ran = ran + 1 end)
    local most = 0
    for i = 1, 3000 do
      now = now + 1 -- one event a second, each remembered 10 s
      assert.are.equal(200, (r:handle(push("grow-" .. i))))
      most = math.max(most, count(st.values))
    end
    assert.are.equal(3000, ran)
    -- ten live ids; at most twice the keys of the last sweep, and 64
    assert.is_true(most <= 64, most .. " keys held")
    assert.are.equal(count(st.values), count(st.expiry))
    -- an id still remembered is a duplicate all the same
    local _, _, ev = r:handle(push("grow-3000"))
    assert.is_true(ev.duplicate)
  end)

  it("lets the collector take receivers whose store refers to them (Lua 5.1, LuaJIT)", function()
    local probe = setmetatable({}, { __mode = "v" })
    local function run()
      for i = 1, 50 do
        local r
        local mem = helpdesk.memory_store()
        local st = {}
        for _, m in ipairs({ "get", "set", "add", "delete", "incr" }) do
          st[m] = function(_, ...)
            local _ = r -- a store that logs through its receiver, say
            return mem[m](mem, ...)
          end
        end
        r = receiver({ store = st })
        assert.are.equal(200, (r:handle(push("cycle-" .. i))))
        probe[i] = r
      end
    end
    run()
    require("process_usage").full_gc()
    assert.are.equal(0, count(probe))
  end)

  -- handlers that yield (a coroutine server: copas, cqueues): not across
  -- pcall on plain Lua 5.1
  local it_yields = (_VERSION ~= "Lua 5.1" or type(jit) == "table") and it or pending

  -- A push served in a coroutine of its own; the handler yields until resumed.
  local function serve(r, id)
    local co = coroutine.create(function() return r:handle(push(id)) end)
    assert(coroutine.resume(co))
    return co
  end

  it_yields("answers 409 to a push while the event's handler runs, and runs a failed one again", function()
    local r = receiver()
    local runs, fail = 0, true
    r:on(MESSAGE, function()
      runs = runs + 1
      coroutine.yield()
      if fail then return nil, "Feishu answered 500" end
    end)
    local first = serve(r, "run-1")
    -- Feishu's push after 3 s without an answer: not a 200 while it runs
    local status, body, ev = r:handle(push("run-1"))
    assert.are.equal(409, status)
    assert.are.same({ msg = "the event is being handled: push it again later" }, cjson.decode(body))
    assert.is_true(ev.running)
    assert.is_nil(ev.duplicate)
    local _, s1 = coroutine.resume(first)
    assert.are.equal(500, s1)
    -- the next push runs it again, and once it succeeds it is done
    fail = false
    local again = serve(r, "run-1")
    assert.are.equal(409, (r:handle(push("run-1"))))
    local _, s2 = coroutine.resume(again)
    assert.are.equal(200, s2)
    local s3, _, ev3 = r:handle(push("run-1"))
    assert.are.equal(200, s3)
    assert.is_true(ev3.duplicate)
    assert.are.equal(2, runs)
  end)

  it_yields("runs an event again whose run was abandoned (its coroutine dropped)", function()
    local r = receiver()
    local runs, finished = 0, 0
    r:on(MESSAGE, function()
      runs = runs + 1
      coroutine.yield()
      finished = finished + 1
    end)
    serve(r, "gone-1") -- the server cancelled the task: nobody resumes it
    require("process_usage").full_gc()
    local co = serve(r, "gone-1")
    assert.are.equal(2, runs)
    local _, status = coroutine.resume(co)
    assert.are.equal(200, status)
    assert.are.equal(1, finished)
    assert.is_true(select(3, r:handle(push("gone-1"))).duplicate)
  end)

  it_yields("holds a running event no longer than RUNNING_TTL", function()
    local now = 1000
    clock.now = function() return now end
    local r = receiver({ store = helpdesk.memory_store() })
    local runs = 0
    r:on(MESSAGE, function()
      runs = runs + 1
      if runs == 1 then coroutine.yield() end
    end)
    local stuck = serve(r, "ttl-1") -- alive, never resumed (as a run in a process that died)
    now = now + events.RUNNING_TTL - 1
    assert.are.equal(409, (r:handle(push("ttl-1"))))
    now = now + 2
    assert.are.equal(200, (r:handle(push("ttl-1"))))
    assert.are.equal(2, runs)
    assert.are.equal("suspended", coroutine.status(stuck))
  end)
end)

describe("receivers on several hosts, given one Redis", function()
  local redis_server = require "redis_server"
  local server
  setup(function() server = redis_server.start() end)
  teardown(function() redis_server.finish(server) end)

  it("act on an event once between them, and refuse a Redis URL that is not one", function()
    local runs = 0
    local hosts = {}
    for i = 1, 2 do
      hosts[i] = receiver({ store = { redis = server.url .. "/5", prefix = "events-spec:" } })
      hosts[i]:on(MESSAGE, function() runs = runs + 1 end)
    end
    -- Feishu pushes again, to another host behind the load balancer
    for _, i in ipairs({ 1, 2, 1, 2 }) do
      local status = hosts[i]:handle(push("redis-1"))
      assert.are.equal(200, status)
    end
    assert.are.equal(1, runs)
    assert.is_true(select(3, hosts[2]:handle(push("redis-1"))).duplicate)
    -- a third host, on the same Redis but another prefix, is another app
    local other = receiver({ store = { redis = server.url .. "/5", prefix = "other-app:" } })
    other:on(MESSAGE, function() runs = runs + 1 end)
    assert.are.equal(200, (other:handle(push("redis-1"))))
    assert.are.equal(2, runs)
    for _, bad in ipairs({ { redis = "redis://:Zq9xK2@127.0.0.1:1" }, { redis = server.url, host = "x" },
                           { redis = "http://127.0.0.1:1" } }) do
      local r, err = events.new({ verification_token = TOKEN, store = bad })
      assert.is_nil(r)
      assert.are.equal("invalid", err.kind)
      assert.is_nil(tostring(err):find("Zq9xK2", 1, true))
    end
  end)
end)
