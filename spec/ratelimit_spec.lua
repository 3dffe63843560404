local core = require "helpdesk.core"
local fake = require "fake"
local helpdesk = require "helpdesk"
local ratelimit = require "helpdesk.ratelimit"
local redis_server = require "redis_server"
local redis_store = require "helpdesk.redis_store"
local store = require "helpdesk.store"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TEXT = { msg_type = "text", content = { text = "paced" } }

describe("rate limits", function()
  before_each(function() fake.reset() end)

  -- a real Redis, for the limiters that share one through it
  local redis
  setup(function() redis = redis_server.start() end)
  teardown(function() redis_server.finish(redis) end)

  describe("the sliding window", function()
    -- A clock that moves only when told (or when the limiter sleeps).
    local function fake_clock()
      local t = 0
      return { now = function() return t end, sleep = function(s) t = t + s end,
               advance = function(s) t = t + s end }
    end

    local SECONDS = { per_second = 1, per_minute = 60 }
    local EPS = 1e-6

    -- The windows of limits as { n =, w = }, shortest first.
    local function windows_of(limits)
      local out = {}
      for key, n in pairs(limits) do out[#out + 1] = { n = n, w = SECONDS[key] } end
      table.sort(out, function(a, b) return a.w < b.w end)
      return out
    end

    -- Gaps between arrivals: for each window, quiet spells of 0.5, 2, 3 and
    -- 100 windows, each followed by a burst larger than the limit and a few
    -- scattered arrivals. spells[i] is true where gap i ends a spell longer
    -- than every window.
    local function arrival_gaps(limits, rounds)
      local wins = windows_of(limits)
      local longest = wins[#wins].w
      local gaps, after_spell = {}, {}
      for _ = 1, rounds do
        for _, win in ipairs(wins) do
          for _, f in ipairs({ 0.5, 2, 3, 100 }) do
            gaps[#gaps + 1] = f * win.w
            after_spell[#gaps] = f * win.w > longest + ratelimit.MARGIN
            for _ = 1, win.n + 3 do gaps[#gaps + 1] = 0 end
            for _ = 1, 10 do gaps[#gaps + 1] = math.random() * 2 * win.w / win.n end
          end
        end
      end
      return gaps, after_spell
    end

    -- Drives limiters (sharing one store, or one each) with arrivals; pick(i)
    -- names the limiter of arrival i; one arrival in ten has a budget too
    -- short to wait for a slot. Returns the calls in reservation order:
    -- { a = arrival, s = start }, { a =, refused = true } or { a =, dead = true }.
    local function drive(lims, gaps, clock, pick)
      local calls = {}
      for i, gap in ipairs(gaps) do
        clock.advance(gap)
        local a, lim = clock.now(), lims[pick(i)]
        local deadline = math.random() < 0.1 and a + 0.2 or math.huge
        local ok, start = pcall(lim.reserve, lim, clock, deadline)
        if not ok then calls[#calls + 1] = { a = a, dead = true }
        elseif not start then calls[#calls + 1] = { a = a, refused = true }
        else calls[#calls + 1] = { a = a, s = start } end
      end
      return calls
    end

    local function count(calls, field)
      local n = 0
      for _, c in ipairs(calls) do n = n + (c[field] and 1 or 0) end
      return n
    end

    -- Safety: no window of w, wherever it starts, holds more than n starts.
    local function assert_safe(calls, limits)
      local starts = {}
      for _, c in ipairs(calls) do
        if c.s then starts[#starts + 1] = c.s end
      end
      table.sort(starts)
      for _, win in ipairs(windows_of(limits)) do
        local j = 1
        for i = 1, #starts do
          -- the window [starts[i], starts[i] + w): starts j..i end inside it
          while starts[i] - starts[j] >= win.w do j = j + 1 end
          assert(i - j + 1 <= win.n, string.format("%d starts in the %g s window from %.4f (limit %d)",
            i - j + 1, win.w, starts[j], win.n))
        end
      end
      return #starts
    end

    -- Liveness against a model written apart from the limiter: a call may
    -- start at its arrival, or once the n-th latest start before it is w
    -- behind (for each window); the limiter may add its margin. A caller
    -- that died holding its number counts as a call at its earliest moment
    -- (it took one place in the budget, for one window). Returns how much
    -- later than that each late call started.
    local function late_calls(calls, limits)
      local wins, started, late = windows_of(limits), {}, {}
      for _, c in ipairs(calls) do
        if c.s or c.dead then
          local earliest = c.a
          for _, win in ipairs(wins) do
            local nth = started[#started - win.n + 1]
            if nth then earliest = math.max(earliest, nth + win.w) end
          end
          local s = c.s or earliest
          if s > earliest + ratelimit.MARGIN + EPS then late[#late + 1] = s - earliest end
          -- kept sorted: a call refused its slot lets a later one go sooner
          local j = #started
          while j > 0 and started[j] > s do j = j - 1 end
          table.insert(started, j + 1, s)
        end
      end
      return late
    end

    -- After a spell longer than every window since the last start, the first
    -- calls of the burst, as many as the smallest limit, start as they arrive.
    local function assert_burst_after_spells(calls, after_spell, limits)
      local smallest, longest = math.huge, 0
      for key, n in pairs(limits) do
        smallest, longest = math.min(smallest, n), math.max(longest, SECONDS[key])
      end
      local checked, last = 0, -math.huge
      for i, c in ipairs(calls) do
        if after_spell[i] and c.a > last + longest + ratelimit.MARGIN then
          for j = i, i + smallest - 1 do
            local b = calls[j]
            if b.s then
              assert(b.s <= b.a + EPS, string.format("call %d waited %.3f s after a quiet spell", j, b.s - b.a))
              checked = checked + 1
            end
          end
        end
        if c.s then last = math.max(last, c.s) end
      end
      assert.is_true(checked >= smallest)
    end

    local CASES = {
      { per_second = 5, per_minute = 40 },
      { per_second = 5 },
      { per_minute = 100 },
      { per_second = 50, per_minute = 1000 },
    }

    for _, limits in ipairs(CASES) do
      local name = (limits.per_second and limits.per_second .. "/s " or "")
        .. (limits.per_minute and limits.per_minute .. "/min" or "")

      it("is safe and never holds a call back needlessly, " .. name .. ", one store", function()
        math.randomseed(7)
        local clock = fake_clock()
        local lim = ratelimit.limiter(limits, nil, nil, clock.now)
        local gaps, after_spell = arrival_gaps(limits, 2)
        local calls = drive({ lim }, gaps, clock, function() return 1 end)
        assert.is_true(count(calls, "refused") > 0)
        assert.are.equal(#gaps - count(calls, "refused"), assert_safe(calls, limits))
        assert.are.same({}, late_calls(calls, limits))
        assert_burst_after_spells(calls, after_spell, limits)
      end)

      it("keeps one budget for limiters that share a store, as workers do, " .. name, function()
        math.randomseed(11)
        local clock = fake_clock()
        local shared = store.table(clock.now)
        local lims = {}
        for w = 1, 3 do lims[w] = ratelimit.limiter(limits, shared, "app:ep", clock.now) end
        local gaps, after_spell = arrival_gaps(limits, 2)
        local calls = drive(lims, gaps, clock, function() return math.random(3) end)
        assert.is_true(count(calls, "refused") > 0)
        assert.are.equal(#gaps - count(calls, "refused"), assert_safe(calls, limits))
        assert.are.same({}, late_calls(calls, limits))
        assert_burst_after_spells(calls, after_spell, limits)
      end)
    end

    local n_redis = 0

    for _, limits in ipairs(CASES) do
      local name = (limits.per_second and limits.per_second .. "/s " or "")
        .. (limits.per_minute and limits.per_minute .. "/min" or "")

      it("keeps one budget for limiters on one Redis, as hosts do, " .. name, function()
        math.randomseed(13)
        local clock = fake_clock()
        n_redis = n_redis + 1
        local lims = {}
        for w = 1, 3 do
          -- a store (a connection) each; the reservations on the specs' clock
          local st = assert(redis_store.new({ redis = redis.url, prefix = "rl" .. n_redis .. ":",
                                              now = clock.now, caller_clock = true }))
          lims[w] = ratelimit.limiter(limits, st, "app:ep", clock.now)
        end
        local gaps, after_spell = arrival_gaps(limits, 1)
        local calls = drive(lims, gaps, clock, function() return math.random(3) end)
        assert.are.equal(0, count(calls, "dead"))
        assert.is_true(count(calls, "refused") > 0)
        assert.are.equal(#gaps - count(calls, "refused"), assert_safe(calls, limits))
        assert.are.same({}, late_calls(calls, limits))
        assert_burst_after_spells(calls, after_spell, limits)
        -- it was Redis that held the budget, not a store of one limiter's
        for w = 1, 3 do assert.is_true(lims[w].store:up()) end
        assert.is_nil(lims[1].fallback)
      end)
    end

    -- A store whose set raises for the reservations in dies (by count of
    -- numbers taken): the caller died after taking its number, holding the
    -- lock of the reservations, before writing its slots.
    local function dying_store(base, dies)
      local st, n = setmetatable({}, { __index = base }), 0
      function st.incr(_, key, ...)
        if key:find(":seq:", 1, true) then n = n + 1 end
        return base:incr(key, ...)
      end
      function st.set(_, key, ...)
        if dies[n] then error("caller killed between reserving and writing") end
        return base:set(key, ...)
      end
      return st
    end

    for _, shared_by in ipairs({ 1, 3 }) do
      it("lets a caller that died before writing its slot cost one window once, "
         .. (shared_by == 1 and "one limiter" or "limiters sharing a store"), function()
        math.randomseed(3)
        local limits = { per_second = 5, per_minute = 40 }
        local clock = fake_clock()
        local base = store.table(clock.now)
        local dies = {}
        local gaps = arrival_gaps(limits, 3)
        for i = 1, #gaps do
          if math.random() < 0.02 then dies[i] = true end
        end
        local lims = {}
        for w = 1, shared_by do lims[w] = ratelimit.limiter(limits, dying_store(base, dies), "app:ep", clock.now) end
        local calls = drive(lims, gaps, clock, function() return math.random(shared_by) end)
        local dead = count(calls, "dead")
        assert.is_true(dead >= 5)
        assert_safe(calls, limits)
        -- a dead caller holds the lock until it expires: the next call waits
        -- that long, once; nothing else is held back
        local late = late_calls(calls, limits)
        assert.is_true(#late <= dead, #late .. " late calls for " .. dead .. " deaths")
        for _, by in ipairs(late) do assert.is_true(by <= 0.2, tostring(by)) end
        -- and afterwards nothing is held back: the last spell's burst goes at once
        local tail = {}
        for i = #calls - 12, #calls do tail[#tail + 1] = calls[i] end
        assert.are.same({}, late_calls(tail, {}))
      end)
    end

    it("takes a slot whose start no limiter could have written for none, and is not held back for ever", function()
      local clock = fake_clock()
      local st = store.table(clock.now)
      local lim = ratelimit.limiter({ per_second = 2 }, st, "t", clock.now)
      assert(lim:acquire(clock, 1))
      assert(lim:acquire(clock, 1))
      -- another program (or a corruption) wrote starts far ahead into the ring
      for key, v in pairs(st.values) do
        if type(v) == "string" and v:match("^%d+ ") then st.values[key] = v:gsub(" .*", " 1e300") end
      end
      clock.advance(2)
      local waited = lim:acquire(clock, clock.now() + 1)
      assert.are.equal(0, waited)
      -- while a start a day's budget ahead is one a limiter may write: waited for
      for key, v in pairs(st.values) do
        if type(v) == "string" and v:match("^%d+ ") then
          st.values[key] = v:gsub(" .*", " " .. string.format("%.6f", clock.now() + 3600))
        end
      end
      local ok, need = lim:acquire(clock, clock.now() + 1)
      assert.is_nil(ok)
      assert.is_true(need > 3600)
    end)

    it("numbers its calls anew when the count in the store is one no limiter comes to", function()
      for _, nonsense in ipairs({ 1e300, 1e16, -5, 2.5, "x" }) do
        local clock = fake_clock()
        local st = store.table(clock.now)
        local lim = ratelimit.limiter({ per_second = 2 }, st, "t", clock.now)
        assert(lim:acquire(clock, 1))
        st.values[lim.seq_key] = nonsense
        clock.advance(5)
        local starts = {}
        for i = 1, 6 do
          local ok, waited = pcall(lim.acquire, lim, clock, clock.now() + 5)
          assert.is_true(ok, tostring(nonsense) .. ": " .. tostring(waited))
          assert.is_number(waited, tostring(nonsense))
          starts[i] = clock.now()
        end
        -- two a second again, not one a minute nor none
        assert.is_true(starts[6] - starts[1] <= 2 + 3 * ratelimit.MARGIN, tostring(nonsense) .. ": "
          .. (starts[6] - starts[1]) .. " s for 6 calls")
        assert.is_true(starts[3] - starts[1] >= 1, tostring(nonsense))
      end
    end)

    it("counts the starts its ring holds when the count starts again: no window over the limit", function()
      for _, nonsense in ipairs({ "x", -5, 1e300 }) do
        local clock = fake_clock()
        local st = store.table(clock.now)
        local lim = ratelimit.limiter({ per_second = 2 }, st, "t", clock.now)
        assert(lim:acquire(clock, 1))
        assert(lim:acquire(clock, 1))
        local t0 = clock.now()
        clock.advance(0.1)
        st.values[lim.seq_key] = nonsense
        assert(lim:acquire(clock, clock.now() + 5))
        -- the third within the second of the first two would be one too many
        assert.is_true(clock.now() - t0 >= 1, tostring(nonsense) .. ": the third after " .. (clock.now() - t0) .. " s")
      end
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

    it("gives the whole burst again after a pause longer than the window", function()
      -- the ring's slots once expired after 3 s: the second burst took 10 s
      fake.config({ rate_limits = { ticket_message = { per_second = 5 } } })
      local client = fake.client({ rate_limit = { ticket_message = { per_second = 5, per_minute = false } } })
      for i = 1, 5 do assert(client:send_ticket_message(fake.TICKET, TEXT), "send " .. i) end
      core.sleep(4)
      local t0 = core.monotime()
      for i = 1, 5 do assert(client:send_ticket_message(fake.TICKET, TEXT), "send " .. i .. " after the pause") end
      assert.is_true(core.monotime() - t0 < 0.5, "the second burst took " .. (core.monotime() - t0) .. " s")
      assert.are.equal(0, fake.state().rate_limited)
      assert.are.equal(10, #fake.requests_to(PATH))
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
