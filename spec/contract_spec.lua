-- The contract between the paths: a call never raises, whatever is left of
-- its budget and whatever the token endpoint answers, and a client never
-- stays broken after a fault (issue 12, items 1 to 5 and 9).
local cjson = require "cjson"
local core = require "helpdesk.core"
local fake = require "fake"
local helpdesk = require "helpdesk"
local clock = require "helpdesk.clock"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
local TEXT = { msg_type = "text", content = { text = "contract" } }

-- Calls f(...) in protected mode: a raise fails the spec with its message.
local function no_raise(f, ...)
  local ok, a, b = pcall(f, ...)
  assert(ok, "raised: " .. tostring(a))
  return a, b
end

-- An error object of kind, with a one-line tostring.
local function assert_error(err, kind)
  assert.is_true(require("helpdesk.errors").is(err), "not an error object: " .. tostring(err))
  if kind then assert.are.equal(kind, err.kind, tostring(err)) end
  assert.is_nil(tostring(err):find("[\r\n]"))
end

-- The client's clock, moved on by jump(s) without waiting, the fake's with
-- it: both see tokens expire at the same moments.
local real_now, real_sleep = clock.now, clock.sleep
local offset = 0
local function fast_clock()
  offset = 0
  clock.now = function() return real_now() + offset end
  clock.sleep = function(s) offset = offset + s; fake.clock(s) end
end
local function jump(s)
  offset = offset + s
  fake.clock(s)
end

describe("a call", function()
  before_each(function() fake.reset() end)
  after_each(function() clock.now, clock.sleep = real_now, real_sleep end)

  describe("with next to no budget left", function()
    it("returns an error, sends nothing, for a send, a bot message, a listing and a batch", function()
      local client = fake.client()
      for _, budget in ipairs({ 1e-5, 1e-6, 1e-9, 0.0099 }) do
        local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT, { budget = budget })
        assert.is_nil(data)
        assert_error(err)
        assert.is_not_true(err.sent)
        assert.matches("budget", err.msg)
        data, err = no_raise(client.bot_message, client,
          { msg_type = "text", content = { text = "x" }, receiver_id = "ou_1" }, { budget = budget })
        assert.is_nil(data)
        assert_error(err)
        data, err = no_raise(client.list_ticket_messages, client, fake.TICKET, nil, { budget = budget })
        assert.is_nil(data)
        assert_error(err)
        local results, berr = no_raise(client.send_ticket_messages, client,
          { { ticket_id = fake.TICKET, msg_type = "text", content = { text = "b" } } }, { budget = budget })
        if results then assert.are.equal(1, results.failed) else assert_error(berr, "invalid") end
      end
      assert.are.equal(0, #fake.requests_to(PATH))
      -- and the client is not broken: the lock of the token fetch it never
      -- made is free
      assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
    end)

    it("returns an error when a rate-limit wait ends past the budget by a hair", function()
      -- a clock that stands still but for sleeps, which oversleep by 2 ms,
      -- as on a loaded machine: each budget below ends at the slot's time
      -- give or take a millisecond
      offset = 0
      clock.now = function() return 1000 + offset end
      clock.sleep = function(s) offset = offset + s + 0.002 end
      local client = fake.client({ rate_limit = { ticket_message = { per_second = 1, per_minute = false } } })
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      local sent, maybe, margin = 1, 0, require("helpdesk.ratelimit").MARGIN
      for _, extra in ipairs({ -0.001, 0, 0.0005, 0.001, 0.0015, 0.002, 0.003, 0.01, 0.05 }) do
        local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT,
                                   { budget = 1 + margin + extra })
        if data then
          sent = sent + 1
        else
          assert_error(err)
          if err.sent ~= false then maybe = maybe + 1 end
        end
      end
      assert.is_true(sent > 1, "no call got through")
      local n = #fake.requests_to(PATH)
      assert.is_true(n >= sent and n <= sent + maybe, n .. " received, " .. sent .. " sent, " .. maybe .. " maybe")
    end)

    it("gives per-message results when the token endpoint hangs past the batch's budget", function()
      fake.fault({ path = TOKEN_PATH, delay = 3, times = 5 })
      local client = fake.client({ timeout = 5 })
      local items = {}
      for i = 1, 5 do items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "h" .. i } } end
      local results = no_raise(client.send_ticket_messages, client, items, { budget = 1 })
      assert.are.equal(5, results.failed)
      for i = 1, 5 do
        assert_error(results[i].err)
        assert.is_false(results[i].err.sent)
      end
      assert.are.equal(0, #fake.requests_to(PATH))
    end)

    it("refreshes a token mid-batch with per-message results, nothing raised", function()
      fake.config({ token_ttl = 40 })
      fast_clock()
      local client = fake.client({ rate_limit = false })
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      jump(35) -- in the refresh window
      fake.fault({ path = TOKEN_PATH, delay = 0.3, times = 1 })
      local items = {}
      for i = 1, 25 do items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "r" .. i } } end
      local results = no_raise(client.send_ticket_messages, client, items, { budget = 0.2, timeout = 0.1 })
      assert.are.equal(25, #results)
      local ok = 0
      for i = 1, 25 do if results[i].data then ok = ok + 1 else assert_error(results[i].err) end end
      assert.are.equal(ok, fake.delivered(fake.TICKET).total - 1)
    end)
  end)

  describe("whose token fetch fails inside", function()
    it("leaves no lock behind: the next call on the client fetches at once", function()
      -- a store whose set raises once, in the middle of the fetch
      local st = helpdesk.memory_store()
      local set, raised = st.set, false
      st.set = function(self, key, ...)
        if not raised and key:find(":token:", 1, true) and not key:find(":lock", 1, true) then
          raised = true
          error("store is full")
        end
        return set(self, key, ...)
      end
      local client = fake.client({ store = st, timeout = 2 })
      -- the store's failure costs the cache, not the call
      local data = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
      assert.is_true(raised)
      assert.is_string(data.message_id)
      local t0 = core.monotime()
      assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
      -- not the lock's time-to-live (the fetch timeout and a second)
      assert.is_true(core.monotime() - t0 < 1, "the next call waited for a lock nobody holds")
    end)

    it("lives with a store that raises, answers nonsense or is full: no raise, messages sent", function()
      for _, mode in ipairs({ "raise", "garbage", "nan", "full" }) do
        local inner = helpdesk.memory_store()
        local st = {}
        for _, m in ipairs({ "get", "set", "add", "delete", "incr" }) do
          st[m] = function(_, ...)
            if mode == "raise" then error("store down") end
            if mode == "garbage" then return ({ get = 42, incr = "zz", add = "yes", set = {} })[m] end
            if mode == "nan" and m == "incr" then return 0 / 0 end
            if mode == "full" then
              if m == "get" then return nil, "no memory" end
              if m == "add" or m == "set" then return false, "no memory" end
            end
            return inner[m](inner, ...)
          end
        end
        fake.reset()
        local client = fake.client({ store = st, timeout = 2 })
        local t0 = core.monotime()
        local data = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
        assert.is_string(data and data.message_id, mode)
        local items = {}
        for i = 1, 4 do items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = mode .. i } } end
        local results = no_raise(client.send_ticket_messages, client, items, { concurrency = 2 })
        assert.are.equal(0, results.failed, mode)
        assert(no_raise(client.list_ticket_messages, client, fake.TICKET))
        assert.is_true(core.monotime() - t0 < 2, mode .. ": waited on a lock the store could not hold")
      end
    end)

    it("lives with a store whose very methods cannot be looked up any more (a closed connection)", function()
      local inner, broken, responses = helpdesk.memory_store(), false, 0
      local st = setmetatable({}, { __index = function(_, name)
        if broken then error("store connection closed") end
        return function(_, ...) return inner[name](inner, ...) end
      end })
      local client = fake.client({ store = st, rate_limit = { ticket_message = { per_second = 50 } },
                                   logger = function(e)
        if e.event == "response" and e.url:find(PATH, 1, true) then
          responses = responses + 1
          if responses == 5 then broken = true end
        end
      end })
      local items = {}
      for i = 1, 12 do
        items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "lookup " .. i } }
      end
      local results, err = no_raise(client.send_ticket_messages, client, items, { concurrency = 2 })
      assert.is_nil(err and tostring(err))
      assert.are.equal(12, #results)
      assert.are.equal(0, results.failed)
      assert.are.equal(12, #fake.requests_to(PATH))
      assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
    end)

    for _, expire in ipairs({ "NaN", "Infinity", "-Infinity", "1e400", "-1", "0", "1e300", '"7200"' }) do
      it("is a decode error when the token answer's expire is " .. expire .. ", and the next call works", function()
        fake.fault({ path = TOKEN_PATH, status = 200,
          body = '{"code":0,"msg":"ok","tenant_access_token":"t-odd","expire":' .. expire .. '}' })
        local client = fake.client()
        local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
        assert.is_nil(data)
        assert_error(err, "decode")
        assert.is_true(err.token)
        assert.is_false(err.sent)
        assert.are.equal(0, #fake.requests_to(PATH))
        assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
        assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
        assert.are.equal(1, fake.state().token_count)
      end)
    end

    for _, reset in ipairs({ "nan", "inf", "-5", "1e308", "0x10", "" }) do
      it("gives up or waits a sane time on a 429 whose reset header is '" .. reset .. "'", function()
        fake.fault({ path = PATH, status = 429, times = 2, headers = { ["x-ogw-ratelimit-reset"] = reset },
          body = '{"code":99991400,"msg":"too many requests"}' })
        offset = 0
        clock.now = function() return real_now() + offset end
        clock.sleep = function(s)
          assert(s == s and s >= 0 and s <= 60, "slept " .. tostring(s))
          offset = offset + s
        end
        local client = fake.client({ rate_limit = false })
        local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
        if not data then assert_error(err) end
        assert.is_true(offset <= 60, "waited " .. offset .. " s")
      end)
    end
  end)

  describe("whose token fetch outlives its lock", function()
    it("lets go of its own lock only, not one taken after its own outlived its time-to-live", function()
      local inner = helpdesk.memory_store()
      local lock
      -- the store as given, noting the lock's key
      local st = setmetatable({
        add = function(_, key, value, ttl)
          if key:match("^helpdesk:token:.*:lock$") then lock = key end
          return inner:add(key, value, ttl)
        end,
      }, { __index = function(_, name) return function(_, ...) return inner[name](inner, ...) end end })
      local client = fake.client({ store = st, logger = function(e)
        if e.event == "request" and e.url:find(TOKEN_PATH, 1, true) then
          -- as if this worker paused past the lock's time-to-live and another took it
          assert(inner:set(assert(lock, "no lock while fetching"), "another-worker-1", 30))
        end
      end })
      assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
      assert.are.equal("another-worker-1", inner:get(lock))
    end)
  end)

  describe("that raises after its request went out (a client's field set to nonsense)", function()
    it("is an error that says the message may have been processed, never 'nothing sent'", function()
      local client = fake.client({ rate_limit = false })
      client.max_retries = "2" -- read once the answer is a 500
      fake.fault({ path = PATH, method = "POST", status = 500, body = '{"code":1,"msg":"busy"}' })
      local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
      assert.is_nil(data)
      assert_error(err, "transport")
      assert.is_true(err.sent)
      assert.matches("may have been processed", err.msg)
      assert.are.equal(1, #fake.requests_to(PATH))
      -- and before anything went out, bad input it is
      client.max_retries = 0
      client.base_url = nil
      data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
      assert.is_nil(data)
      assert_error(err, "invalid")
      assert.is_not_true(err.sent)
      assert.are.equal(1, #fake.requests_to(PATH))
    end)
  end)

  describe("that raises while another coroutine of the client POSTs", function()
    it("never says its own request went out", function()
      local client = fake.client({ rate_limit = { list = { per_second = 1 } } })
      assert(client:list_ticket_messages(fake.TICKET, { page_size = 1 })) -- the second's one slot
      -- a scheduler's sleep: yields, and raises when the task is cancelled
      clock.sleep = function() coroutine.yield("sleeping"); error("task cancelled", 0) end
      local waiting = coroutine.create(function()
        return client:list_ticket_messages(fake.TICKET, { page_size = 1 })
      end)
      local resumed, said = coroutine.resume(waiting)
      clock.sleep = real_sleep
      assert.is_true(resumed)
      if said == "sleeping" then -- Lua 5.1 cannot yield across the call's pcall
        assert(client:send_ticket_message(fake.TICKET, TEXT)) -- another task's POST
        local _, data, err = coroutine.resume(waiting)
        assert.is_nil(data)
        assert_error(err)
        assert.is_not_true(err.sent)
      end
    end)
  end)

  describe("given input whose metamethods raise", function()
    it("returns an invalid error for each call and raises only error objects", function()
      local bomb = setmetatable({}, { __index = function() error("boom") end })
      local client = fake.client()
      local calls = {
        function() return client:send_ticket_message(fake.TICKET, bomb) end,
        function() return client:send_ticket_message(fake.TICKET, TEXT, bomb) end,
        function() return client:bot_message(bomb) end,
        function() return client:list_ticket_messages(fake.TICKET, bomb) end,
        function() return client:send_ticket_messages({ bomb }) end,
        function() return client:send_ticket_messages({ TEXT }, bomb) end,
        function() return client:subscribe_events(bomb) end,
        function() return helpdesk.new(bomb) end,
      }
      for i, f in ipairs(calls) do
        local r, err = no_raise(f)
        if r and r.failed then
          assert.are.equal(1, r.failed, "call " .. i)
        else
          assert.is_nil(r, "call " .. i)
          assert_error(err, "invalid")
        end
      end
      local ok, err = pcall(function() for _ in client:ticket_messages(fake.TICKET, bomb) do end end)
      assert.is_false(ok)
      assert_error(err, "invalid")
      assert.are.equal(0, #fake.requests_to(PATH))
    end)
  end)

  describe("made from inside a token fetch", function()
    it("by the client's own logger does not wait out the fetch's lock", function()
      local client, inner, inner_err, inner_s
      client = fake.client({ timeout = 5, logger = function(e)
        if e.event == "request" and e.url:find(TOKEN_PATH, 1, true) and inner == nil then
          inner = false
          local t0 = core.monotime()
          inner, inner_err = client:send_ticket_message(fake.TICKET, helpdesk.text("from the logger"))
          inner_s = core.monotime() - t0
        end
      end })
      assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
      assert.is_true(inner_s < 1, "the logger's call waited " .. tostring(inner_s) .. " s")
      if not inner then
        assert_error(inner_err)
        assert.is_false(inner_err.sent)
        assert.matches("under way", inner_err.msg)
      end
      assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
    end)

    it("by another client sharing the store, from the logger, does not wait either", function()
      local st = helpdesk.memory_store()
      local other = fake.client({ store = st, timeout = 5 })
      local inner_s, inner, inner_err
      local client = fake.client({ store = st, timeout = 5, logger = function(e)
        if e.event == "request" and e.url:find(TOKEN_PATH, 1, true) and inner_s == nil then
          local t0 = core.monotime()
          inner, inner_err = other:send_ticket_message(fake.TICKET, helpdesk.text("from the logger"))
          inner_s = core.monotime() - t0
        end
      end })
      assert(no_raise(client.send_ticket_message, client, fake.TICKET, TEXT))
      assert.is_true(inner_s < 1, "the logger's call waited " .. tostring(inner_s) .. " s")
      if not inner then assert_error(inner_err) end
    end)

    it("by another coroutine while the fetching one is suspended does not wait out the lock", function()
      local client, co2_s, co2_err
      local fetching
      client = fake.client({ timeout = 5, logger = function(e)
        if e.event == "request" and e.url:find(TOKEN_PATH, 1, true) and not fetching then
          fetching = true
          coroutine.yield() -- as a logger on a coroutine scheduler may
        end
      end })
      local co1 = coroutine.create(function() return client:send_ticket_message(fake.TICKET, TEXT) end)
      assert(coroutine.resume(co1)) -- suspended in the logger, mid-fetch
      assert.is_true(fetching)
      -- Lua 5.1 cannot yield across the pcall the logger runs in: the
      -- fetch went on, and there is nothing to wait for
      if coroutine.status(co1) == "dead" then return end
      local co2 = coroutine.create(function()
        local t0 = core.monotime()
        local data, err = client:send_ticket_message(fake.TICKET, TEXT)
        co2_s, co2_err = core.monotime() - t0, err
        return data
      end)
      assert(coroutine.resume(co2))
      assert.is_true(co2_s < 1, "the second coroutine waited " .. tostring(co2_s) .. " s")
      if co2_err then assert_error(co2_err) end
      local ok, data = coroutine.resume(co1)
      assert.is_true(ok)
      assert.is_table(data)
    end)

    it("by another client whose store is another view of the same place is refused at once, not a second fetch",
       function()
      -- two store objects over one backend, as one per client over a Redis
      local backend = helpdesk.memory_store()
      local function view()
        local v = {}
        for _, m in ipairs({ "get", "set", "add", "delete", "incr" }) do
          v[m] = function(_, ...) return backend[m](backend, ...) end
        end
        return v
      end
      local b = fake.client({ store = view(), timeout = 2 })
      local inner, inner_err
      local a = fake.client({ store = view(), timeout = 2, logger = function(e)
        if e.event == "request" and e.url:find(TOKEN_PATH, 1, true) and inner == nil then
          inner = false
          inner, inner_err = b:send_ticket_message(fake.TICKET, TEXT)
        end
      end })
      assert(no_raise(a.send_ticket_message, a, fake.TICKET, TEXT))
      assert.is_nil(inner)
      assert_error(inner_err)
      assert.matches("under way", inner_err.msg)
      assert.are.equal(1, #fake.requests_to(TOKEN_PATH))
    end)

    it("by a coroutine abandoned mid-fetch leaves no lock behind: the next call fetches at once", function()
      local client, fetching
      client = fake.client({ timeout = 5, logger = function(e)
        if e.event == "request" and e.url:find(TOKEN_PATH, 1, true) and not fetching then
          fetching = true
          coroutine.yield() -- and the scheduler never resumes it (a cancelled task)
        end
      end })
      local co1 = coroutine.create(function() return client:send_ticket_message(fake.TICKET, TEXT) end)
      assert(coroutine.resume(co1))
      assert.is_true(fetching)
      -- Lua 5.1 cannot yield across the pcall the logger runs in
      if coroutine.status(co1) == "dead" then return end
      -- closed where the Lua can (5.4), else dropped and collected
      local close = coroutine.close
      if close then assert(close(co1)) else co1 = nil end -- luacheck: ignore 311
      collectgarbage("collect")
      collectgarbage("collect")
      local t0 = core.monotime()
      local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
      local waited = core.monotime() - t0
      assert.is_nil(err and tostring(err))
      assert.is_table(data)
      assert.is_true(waited < 1, "the next call waited " .. waited .. " s")
    end)

    it("by a coroutine abandoned mid-fetch, with a store that cannot delete, ends by the call's timeout", function()
      local inner = helpdesk.memory_store()
      local deletes = 0
      -- deletes nothing; after 50 tries it lets the lock go, so that a spin ends
      local st = setmetatable({
        delete = function() deletes = deletes + 1 end,
        get = function(_, key)
          if deletes > 50 and key:find(":lock$") then return nil end
          return inner:get(key)
        end,
      }, { __index = function(_, name) return function(_, ...) return inner[name](inner, ...) end end })
      local client, fetching
      client = fake.client({ store = st, timeout = 0.3, logger = function(e)
        if e.event == "request" and e.url:find(TOKEN_PATH, 1, true) and not fetching then
          fetching = true
          coroutine.yield()
        end
      end })
      local co1 = coroutine.create(function() return client:send_ticket_message(fake.TICKET, TEXT) end)
      assert(coroutine.resume(co1))
      if coroutine.status(co1) == "dead" then return end -- Lua 5.1: no yield across pcall
      local close = coroutine.close
      if close then assert(close(co1)) else co1 = nil end -- luacheck: ignore 311
      collectgarbage("collect")
      collectgarbage("collect")
      local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
      assert.is_nil(data)
      assert_error(err)
      assert.is_false(err.sent)
      assert.is_true(deletes <= 2, deletes .. " deletes of the lock")
    end)

    it("closing the client from the logger ends the call with an error, not a raise", function()
      local client
      client = fake.client({ logger = function(e)
        if e.event == "request" then client:close() end
      end })
      local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
      assert.is_nil(data)
      assert_error(err, "invalid")
      assert.matches("closed", err.msg)
      data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
      assert.is_nil(data)
      assert_error(err, "invalid")
    end)

    it("closing the client from the logger mid-batch gives per-message errors", function()
      local client
      local n = 0
      client = fake.client({ rate_limit = false, logger = function(e)
        if e.event == "response" and not e.url:find(TOKEN_PATH, 1, true) then
          n = n + 1
          if n == 2 then client:close() end
        end
      end })
      local items = {}
      for i = 1, 6 do items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "c" .. i } } end
      local results = no_raise(client.send_ticket_messages, client, items, { concurrency = 1 })
      assert.are.equal(6, #results)
      assert.are.equal(4, results.failed)
      assert.is_string(results[1].data.message_id)
      assert.is_string(results[2].data.message_id)
      for i = 3, 6 do
        assert_error(results[i].err, "invalid")
        assert.is_false(results[i].err.sent)
        assert.matches("closed", results[i].err.msg)
      end
      assert.are.equal(2, #fake.requests_to(PATH))
      -- closed on the first request event: not even that one goes
      fake.reset()
      client = fake.client({ rate_limit = false, logger = function(e)
        if e.event == "request" and not e.url:find(TOKEN_PATH, 1, true) then client:close() end
      end })
      results = no_raise(client.send_ticket_messages, client, items, { concurrency = 2 })
      assert.are.equal(6, results.failed)
      assert.are.equal(0, #fake.requests_to(PATH))
    end)
  end)
end)

describe("a POST answered 2xx in a shape that cannot be used", function()
  before_each(function() fake.reset() end)

  it("is an error that says the message may have been processed, single or in a batch", function()
    for _, body in ipairs({ '{"code":0,"msg":"success","data":{}}', '{"code":0,"msg":"success"}',
                            '<html>ok</html>', '{"code":0,"data":{"message_id":7}}' }) do
      fake.reset()
      fake.fault({ path = PATH, method = "POST", status = 200, body = body, times = 2 })
      local client = fake.client()
      local data, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
      assert.is_nil(data)
      assert_error(err, "decode")
      assert.is_true(err.sent, body)
      assert.matches("processed", err.msg)
      local results = no_raise(client.send_ticket_messages, client, { { ticket_id = fake.TICKET, msg_type = "text",
                                                                       content = { text = "batch" } } })
      assert_error(results[1].err, "decode")
      assert.is_true(results[1].err.sent, body)
      -- sent once each: never again on its own
      assert.are.equal(2, #fake.requests_to(PATH))
    end
    -- a refusal with code other than 0 is not processed, and says so
    fake.reset()
    fake.fault({ path = PATH, method = "POST", status = 200, body = '{"code":154401,"msg":"ticket closed"}' })
    local client = fake.client()
    local _, err = no_raise(client.send_ticket_message, client, fake.TICKET, TEXT)
    assert_error(err, "api")
    assert.is_not_true(err.sent)
  end)
end)

describe("an early token refresh that fails", function()
  before_each(function() fake.reset() end)
  after_each(function() clock.now, clock.sleep = real_now, real_sleep end)

  it("is not tried again on every call, and is tried again before the token expires", function()
    fake.config({ token_ttl = 7200 })
    fast_clock()
    local client = fake.client({ timeout = 0.05 })
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    jump(7200 - 290) -- in the refresh window, 290 s left
    -- the token endpoint hangs for the next 282 s
    fake.fault({ path = TOKEN_PATH, delay = 1, ["until"] = fake.clock(0).now + 282 })
    local attempts, calls = {}, 0
    -- a call every second for the rest of the token's life
    for _ = 1, 280 do
      local before = #fake.requests_to(TOKEN_PATH)
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      calls = calls + 1
      if #fake.requests_to(TOKEN_PATH) > before then attempts[#attempts + 1] = calls end
      jump(1)
    end
    -- safety: not a fetch (and its timeout) per call
    assert.is_true(#attempts <= 12, #attempts .. " fetches tried in 280 calls")
    -- liveness: tried again, and again late in the window
    assert.is_true(#attempts >= 4, #attempts .. " fetches tried in 280 calls")
    assert.is_true(attempts[#attempts] > 200, "the last try was at call " .. attempts[#attempts])
    -- the endpoint is back: a try gets a token before the old one expires
    for _ = 1, 60 do
      assert(client:send_ticket_message(fake.TICKET, TEXT))
      jump(0.1)
    end
    assert.are.equal(2, fake.state().token_count)
    assert.are.equal(0, fake.state().expired_token_uses)
  end)
end)

describe("a batch that needs a new token", function()
  before_each(function() fake.reset() end)

  it("fetches it only when no transfer is in flight, and loses none", function()
    local events = {}
    local client = fake.client({ rate_limit = false, timeout = 1, logger = function(e)
      if e.event == "request" or e.event == "response" then
        events[#events + 1] = { e.event, e.url:find(TOKEN_PATH, 1, true) and "token" or "message" }
      end
    end })
    -- messages 15 to 20 are slow, the 21st is answered token-invalid at
    -- once while they are in flight, and the second fetch is slow too
    fake.fault({ path = PATH, method = "POST", delay = 0.5, pass = true, skip = 14, times = 6 })
    fake.fault({ path = PATH, method = "POST", status = 200, times = 1,
      body = '{"code":99991663,"msg":"token invalid"}' })
    fake.fault({ path = TOKEN_PATH, delay = 0.95, pass = true, skip = 1, times = 1 })
    local items = {}
    for i = 1, 64 do items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "t" .. i } } end
    local results = no_raise(client.send_ticket_messages, client, items, { concurrency = 8 })
    local in_flight, worst = 0, 0
    for _, e in ipairs(events) do
      if e[2] == "message" then
        in_flight = in_flight + (e[1] == "request" and 1 or -1)
      elseif e[1] == "request" then
        worst = math.max(worst, in_flight)
      end
    end
    assert.are.equal(2, fake.state().token_count)
    assert.are.equal(0, worst, "a token fetch started with " .. worst .. " messages in flight")
    for i = 1, 64 do assert(results[i].data, tostring(results[i].err)) end
    assert.are.equal(0, results.failed)
    assert.are.equal(64, fake.delivered(fake.TICKET).total)
    local bodies = {}
    for _, r in ipairs(fake.requests_to(PATH)) do bodies[#bodies + 1] = cjson.decode(r.body).msg_type end
    assert.are.equal(65, #bodies)
  end)
end)
