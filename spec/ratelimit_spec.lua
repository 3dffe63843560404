local core = require "helpdesk.core"
local fake = require "fake"
local helpdesk = require "helpdesk"
local ratelimit = require "helpdesk.ratelimit"
local store = require "helpdesk.store"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TEXT = { msg_type = "text", content = { text = "paced" } }

describe("rate limits", function()
  before_each(function() fake.reset() end)

  describe("the sliding window", function()
    -- A clock that moves only when the limiter sleeps, with requests arriving
    -- at random moments: the property is checked over every window.
    local function fake_clock()
      local t = 0
      return { now = function() return t end, sleep = function(s) t = t + s end,
               advance = function(s) t = t + s end }
    end

    it("never lets more than the limit into any window, wherever it starts", function()
      math.randomseed(7)
      local clock = fake_clock()
      local lim = ratelimit.limiter({ per_second = 5, per_minute = 40 }, nil, nil, clock.now)
      local times = {}
      for _ = 1, 300 do
        clock.advance(math.random() * 0.3)
        assert(lim:acquire(clock, math.huge))
        times[#times + 1] = clock.now()
      end
      for i = 1, #times do
        local in_second, in_minute = 0, 0
        for j = i, #times do
          if times[j] < times[i] + 1 then in_second = in_second + 1 end
          if times[j] < times[i] + 60 then in_minute = in_minute + 1 end
        end
        assert.is_true(in_second <= 5, "second window at " .. times[i])
        assert.is_true(in_minute <= 40, "minute window at " .. times[i])
      end
    end)

    it("keeps one budget for limiters that share a store, as nginx workers do", function()
      math.randomseed(11)
      local clock = fake_clock()
      local shared = store.table(clock.now)
      local a = ratelimit.limiter({ per_second = 4 }, shared, "app:ep", clock.now)
      local b = ratelimit.limiter({ per_second = 4 }, shared, "app:ep", clock.now)
      local times = {}
      for n = 1, 200 do
        clock.advance(math.random() * 0.2)
        assert((n % 3 == 0 and b or a):acquire(clock, math.huge))
        times[#times + 1] = clock.now()
      end
      for i = 1, #times do
        local inside = 0
        for j = i, #times do
          if times[j] < times[i] + 1 then inside = inside + 1 end
        end
        assert.is_true(inside <= 4, "second window at " .. times[i])
      end
      -- and the same limits under another name count apart
      local other = ratelimit.limiter({ per_second = 4 }, shared, "app:other", clock.now)
      local t0 = clock.now()
      for _ = 1, 4 do assert(other:acquire(clock, math.huge)) end
      assert.are.equal(t0, clock.now())
    end)

    it("says how long it would wait when that is past the deadline", function()
      local clock = fake_clock()
      local lim = ratelimit.limiter({ per_minute = 2 }, nil, nil, clock.now)
      assert(lim:acquire(clock, 1))
      assert(lim:acquire(clock, 1))
      local ok, need = lim:acquire(clock, 1)
      assert.is_nil(ok)
      assert.is_true(need >= 60)
      assert.are.equal(0, clock.now()) -- and it did not wait
    end)

    it("has the documented limits by default", function()
      local built = ratelimit.build(nil)
      assert.are.same({ per_second = 50, per_minute = 1000 }, built.ticket_message)
      assert.are.same({ per_minute = 100 }, built.bot_message)
      assert.is_nil(built.list)
      assert.are.same({ per_second = 50, per_minute = 1000 }, ratelimit.DEFAULTS.ticket_message)
      assert.is_false(ratelimit.build(false))
      local custom = ratelimit.build({ ticket_message = { per_minute = false }, list = { per_second = 7 } })
      assert.are.same({ per_second = 50 }, custom.ticket_message)
      assert.are.same({ per_second = 7 }, custom.list)
    end)

    it("rejects malformed limits", function()
      for _, bad in ipairs({ "on", { ticket_message = 5 }, { ticket_message = { per_second = 0 } },
                             { ticket_message = { per_hour = 5 } }, { chat = {} },
                             { bot_message = { per_minute = 1.5 } } }) do
        local c, err = helpdesk.new(fake.options({ rate_limit = bad }))
        assert.is_nil(c)
        assert.are.equal("rate_limit", err.field)
      end
    end)
  end)

  describe("against a Feishu that enforces them", function()
    it("paces sends so that no 429 is ever earned", function()
      fake.config({ rate_limits = { ticket_message = { per_second = 10 } } })
      local client = fake.client({ rate_limit = { ticket_message = { per_second = 10 } } })
      local t0 = core.monotime()
      for i = 1, 21 do
        local data, err = client:send_ticket_message(fake.TICKET, TEXT)
        assert.is_nil(err, "send " .. i)
        assert.is_string(data.message_id)
      end
      assert.are.equal(0, fake.state().rate_limited)
      assert.are.equal(21, #fake.requests_to(PATH))
      -- 21 sends at 10 a second cannot finish in under 2 seconds
      assert.is_true(core.monotime() - t0 >= 2)
    end)

    it("absorbs Feishu's 429s when the client-side limit is off", function()
      fake.config({ rate_limits = { ticket_message = { per_second = 5 } } })
      local client = fake.client({ rate_limit = false })
      for i = 1, 8 do
        local _, err = client:send_ticket_message(fake.TICKET, TEXT)
        assert.is_nil(err, "send " .. i)
      end
      local st = fake.state()
      assert.is_true(st.rate_limited >= 1)
      assert.are.equal(8, st.ticket_messages[fake.TICKET]) -- each delivered once
    end)

    it("is off with rate_limit = false", function()
      -- with the default 100/min, the 101st bot message would have to wait a minute
      local client = fake.client({ rate_limit = false })
      local msg = { msg_type = "text", content = { text = "x" }, receiver_id = "ou_1" }
      for i = 1, 101 do
        local _, err = client:bot_message(msg, { budget = 5 })
        assert.is_nil(err, "bot message " .. i)
      end
      assert.are.equal(101, #fake.bot_messages())
    end)

    it("fails with a rate_limit error, sending nothing, when the slot is past the budget", function()
      local client = fake.client({ rate_limit = { bot_message = { per_minute = 2 } } })
      local msg = { msg_type = "text", content = { text = "x" }, receiver_id = "ou_1" }
      assert(client:bot_message(msg))
      assert(client:bot_message(msg))
      local _, err = client:bot_message(msg, { budget = 1 })
      assert.are.equal("rate_limit", err.kind)
      assert.matches("nothing was sent", tostring(err))
      -- the oldest of the two sends leaves the minute window in just under 60 s
      assert.is_true(err.retry_after > 50 and err.retry_after <= 60.1, tostring(err.retry_after))
      assert.are.equal(2, #fake.bot_messages())
      -- the other endpoints have limits of their own
      assert(client:send_ticket_message(fake.TICKET, TEXT))
    end)
  end)
end)
