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
  local server, admin
  local n_prefix = 0

  local function prefix()
    n_prefix = n_prefix + 1
    return "hostile" .. n_prefix .. ":"
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
    it("fetches a new one in place of one no header may hold, or too short to keep out of messages", function()
      for _, bad in ipairs({ "t-evil\r\nX-Evil: 1", "t-\0nul-inside", "short" }) do
        fake.reset()
        local p = prefix()
        local a = fake.client({ store = { redis = server.url, prefix = p } })
        assert(a:send_ticket_message(fake.TICKET, TEXT))
        local key = admin:command("KEYS", p .. "helpdesk:token:*")[1]
        assert.is_string(key)
        -- good, by its times, for ever
        assert(admin:command("SET", key, "9999999999 9999999999 " .. bad))
        local b = fake.client({ store = { redis = server.url, prefix = p } })
        local data, err = b:send_ticket_message(fake.TICKET, TEXT)
        assert.is_nil(err, bad)
        assert.is_string(data.message_id)
        assert.are.equal(2, fake.state().token_count)
        assert.matches("^[%d.]+ [%d.]+ t%-fake", admin:command("GET", key))
        a:close()
        b:close()
      end
    end)
  end)
end)
