-- A listing against a server that does not page as the documents say
-- (../shared/seeds 004: page, page_size, data.messages a list, data.total):
-- the iterator stops on its own, with a decode error it raises as the error
-- object, never endless and never a quiet end. Every loop here is bounded in
-- count and in time, so that an iterator without a stop fails the spec
-- instead of hanging it. The hostile server is the fake's /_fake/listing,
-- over the ticket's own messages (list_spec.lua has config.listing's).
-- As the README says: a page that repeats messages of the page before (or
-- comes round again) and pages that run out before the first page's total
-- are errors; the total yielded is the one Feishu reported on each page,
-- the listing capped at the first; a message is taken with whatever fields
-- it has, so long as it is an object.
local errors = require "helpdesk.errors"
local fake = require "fake"
local helpdesk = require "helpdesk"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local MAX_MESSAGES = 5000
local MAX_SECONDS = 5

-- Runs the iterator for at most MAX_MESSAGES messages and MAX_SECONDS;
-- returns what it yielded, whether it ended by itself (true) or raised
-- (false, with the error), or "runaway" when a bound stopped it.
local function drain(iter)
  local got, totals = {}, {}
  local t0 = os.time()
  local ok, err = pcall(function()
    for msg, total in iter do
      got[#got + 1] = msg
      totals[#totals + 1] = total
      if #got >= MAX_MESSAGES or os.time() - t0 > MAX_SECONDS then error("runaway", 0) end
    end
  end)
  if not ok and err == "runaway" then return got, "runaway", nil, totals end
  return got, ok, err, totals
end

local function assert_decode(err, pattern)
  assert.is_true(errors.is(err), "raised a " .. type(err) .. ": " .. tostring(err))
  assert.are.equal("decode", err.kind)
  assert.are.equal(200, err.status)
  assert.matches("FAKE$", err.log_id)
  assert.matches("^helpdesk decode error %(HTTP 200%): ", tostring(err))
  if pattern then assert.matches(pattern, err.msg) end
end

describe("a listing against a server that does not page as documented", function()
  local client
  before_each(function()
    fake.reset()
    fake.ticket({ ticket_id = fake.TICKET, messages = 450, start = 1700000000 })
    client = fake.client({ max_retries = 0 })
  end)

  describe("client:ticket_messages", function()
    it("raises a decode error on the second page when the same full page repeats without total", function()
      fake.listing({ mode = "repeat", no_total = true })
      local got, ok, err = drain(client:ticket_messages(fake.TICKET))
      assert.are.equal(false, ok)
      assert.are.equal(200, #got)
      assert_decode(err, "^page 2 repeats message 69%d+ of the page before: the listing would not end$")
      assert.are.equal(2, #fake.requests_to(PATH))
    end)

    it("raises a decode error, with no silent duplicate, when the same page repeats with total = 450", function()
      fake.listing({ mode = "repeat", total = 450 })
      local got, ok, err = drain(client:ticket_messages(fake.TICKET))
      assert.are.equal(false, ok)
      assert.are.equal(200, #got)
      assert_decode(err, "^page 2 repeats")
    end)

    it("raises a decode error when each page starts half a page back", function()
      fake.listing({ mode = "overlap" })
      local got, ok, err = drain(client:ticket_messages(fake.TICKET, { page_size = 100 }))
      assert.are.equal(false, ok)
      assert.are.equal(100, #got)
      assert_decode(err, "^page 2 repeats")
    end)

    it("raises a decode error when a page answers the page before it", function()
      fake.listing({ mode = "back" })
      local got, ok, err = drain(client:ticket_messages(fake.TICKET, { page_size = 100 }))
      assert.are.equal(false, ok)
      assert.are.equal(100, #got)
      assert_decode(err, "^page 2 repeats")
    end)

    it("raises a decode error when a later page comes round again to a page before the one before", function()
      -- page 3 answers page 1: no id in common with page 2
      local c = fake.client({ max_retries = 0 })
      local iter = c:ticket_messages(fake.TICKET, { page_size = 100 })
      local got = {}
      local ok, err = pcall(function()
        for msg in iter do
          got[#got + 1] = msg
          if #got == 200 then fake.listing({ mode = "repeat" }) end
          if #got > MAX_MESSAGES then error("runaway", 0) end
        end
      end)
      assert.are.equal(false, ok)
      assert.are.equal(200, #got)
      assert_decode(err, "^page 3 repeats page 1: the listing would not end$")
      assert.are.equal(3, #fake.requests_to(PATH))
    end)

    it("stops at the first total when total grows with every page, yielding the totals Feishu reported", function()
      fake.listing({ mode = "grow" })
      local got, ok, err, totals = drain(client:ticket_messages(fake.TICKET))
      assert.are.equal(true, ok, tostring(err))
      assert.are.equal(201, #got)
      assert.are.equal(201, totals[1])
      assert.are.equal(201, totals[200])
      assert.are.equal(401, totals[201]) -- page 2's, of which only its first message is yielded
      local seen = {}
      for _, m in ipairs(got) do
        assert.is_nil(seen[m.id])
        seen[m.id] = true
      end
      assert.are.equal(2, #fake.requests_to(PATH))
    end)

    it("lists a ticket whose messages arrive during the listing: those of the first total, each once", function()
      local seen, n = {}, 0
      for msg, total in client:ticket_messages(fake.TICKET, { page_size = 100 }) do
        n = n + 1
        assert.is_nil(seen[msg.id])
        seen[msg.id] = true
        assert.are.equal(n <= 200 and 450 or 480, total) -- as each page reported it
        if n == 150 then fake.ticket({ ticket_id = fake.TICKET, messages = 30, start = 1800000000 }) end
        assert.is_true(n <= 450)
      end
      assert.are.equal(450, n)
      assert.are.equal(5, #fake.requests_to(PATH))
    end)

    it("raises a decode error for data.messages as an object, never a quiet end with 0 of 450", function()
      fake.listing({ mode = "object" })
      local got, ok, err = drain(client:ticket_messages(fake.TICKET))
      assert.are.equal(false, ok)
      assert.are.equal(0, #got)
      assert_decode(err, "^answer's data.messages is not a list$")
    end)

    it("raises a decode error after the last page when the pages end short of total", function()
      fake.listing({ mode = "descending", total = 500 })
      local got, ok, err = drain(client:ticket_messages(fake.TICKET))
      assert.are.equal(false, ok)
      assert.are.equal(450, #got)
      assert_decode(err, "^the pages ran out after 450 of the 500 messages the listing's first page announced$")
      -- and an empty first page with a total
      fake.fault({ path = PATH, method = "GET", status = 200, body = '{"code":0,"data":{"messages":{},"total":450}}' })
      got, ok, err = drain(client:ticket_messages(fake.TICKET))
      assert.are.equal(false, ok)
      assert.are.equal(0, #got)
      assert_decode(err, "^the pages ran out after 0 of the 450 messages the listing's first page announced$")
    end)

    it("lists to the first total, each message once, when total falls during the listing", function()
      -- the first page's total is the listing's: a later, smaller one is
      -- reported as it is, and pages that run out before the first total
      -- are the error (above)
      fake.listing({ mode = "descending" })
      local n, seen, totals = 0, {}, {}
      local ok, err = pcall(function()
        for msg, total in client:ticket_messages(fake.TICKET) do
          n = n + 1
          assert.is_nil(seen[msg.id])
          seen[msg.id] = true
          totals[n] = total
          if n == 100 then fake.listing({ mode = "descending", total = 420 }) end
          if n > MAX_MESSAGES then error("runaway", 0) end
        end
      end)
      assert.are.equal(true, ok, tostring(err))
      assert.are.equal(450, n)
      assert.are.equal(450, totals[200])
      assert.are.equal(420, totals[201])
      assert.are.equal(420, totals[450])
      assert.are.equal(3, #fake.requests_to(PATH))
    end)

    it("takes messages a little out of order at a page's edge, as clocks a little apart give", function()
      -- ids in order, created_at of the first message of each page 5 s before the page before ended
      fake.reset()
      for i = 0, 3 do
        fake.ticket({ ticket_id = fake.TICKET, messages = 1, start = 1700000000 + i * 100 - 5 })
        fake.ticket({ ticket_id = fake.TICKET, messages = 99, start = 1700000000 + i * 100 + 1 })
      end
      local got, ok, err = drain(client:ticket_messages(fake.TICKET, { page_size = 100 }))
      assert.are.equal(true, ok, tostring(err))
      assert.are.equal(400, #got)
    end)

    it("lists every message of a server that lists newest first", function()
      fake.listing({ mode = "descending" })
      local got, ok, err = drain(client:ticket_messages(fake.TICKET, { page_size = 100 }))
      assert.are.equal(true, ok, tostring(err))
      assert.are.equal(450, #got)
      for i = 2, #got do assert.is_true(got[i].created_at < got[i - 1].created_at) end
    end)

    it("never yields a message twice when a newest-first server's pages shift back past the page before", function()
      -- after page 2, 250 messages arrive: page 3 holds 50 of them and the
      -- first 50 of page 1 (then page 4 would hold page 1's last 50 and
      -- page 2's first 50, page 5 page 2's next 50: 200 repeated, 450
      -- yielded, and a quiet end); 330 arrive: page 3 holds new ones only,
      -- page 4 30 more and page 1's first 70
      for _, case in ipairs({ { arrive = 250, page = 3 }, { arrive = 330, page = 4 } }) do
        fake.reset()
        fake.ticket({ ticket_id = fake.TICKET, messages = 450, start = 1700000000 })
        fake.listing({ mode = "descending" })
        local c = fake.client({ max_retries = 0 })
        local got, seen, dup = {}, {}, 0
        local ok, err = pcall(function()
          for msg in c:ticket_messages(fake.TICKET, { page_size = 100 }) do
            got[#got + 1] = msg
            if seen[msg.id] then dup = dup + 1 end
            seen[msg.id] = true
            if #got == 200 then fake.ticket({ ticket_id = fake.TICKET, messages = case.arrive, start = 1800000000 }) end
            if #got > MAX_MESSAGES then error("runaway", 0) end
          end
        end)
        assert.are.equal(0, dup, case.arrive)
        assert.are.equal(false, ok)
        assert.are.equal((case.page - 1) * 100, #got)
        assert_decode(err, "^page " .. case.page .. " repeats message 69%d+ of page 1: the listing would not end$")
        assert.are.equal(case.page, #fake.requests_to(PATH))
      end
    end)

    it("raises the same error object again when called after it raised, never a quiet end", function()
      fake.listing({ mode = "repeat", no_total = true })
      local iter = client:ticket_messages(fake.TICKET)
      local got, ok, err = drain(iter)
      assert.are.equal(false, ok)
      assert.are.equal(200, #got)
      local ok2, err2 = pcall(iter)
      assert.is_false(ok2)
      assert.are.equal(err, err2)
      assert.are.equal(2, #fake.requests_to(PATH))
    end)

    it("raises the error object, not a string, for every failed page", function()
      for _, body in ipairs({ "not json", '{"code":0,"data":{"messages":[1,2],"total":2}}',
                              '{"code":0,"data":{"messages":[{"id":"1"}],"total":NaN}}' }) do
        fake.fault({ path = PATH, method = "GET", status = 200, body = body })
        local _, ok, err = drain(client:ticket_messages(fake.TICKET))
        assert.are.equal(false, ok)
        assert.is_true(errors.is(err), body .. ": raised " .. tostring(err))
        assert.are.equal("decode", err.kind)
      end
    end)
  end)

  describe("helpdesk.ticket_messages", function()
    it("raises the decode error object when the same page repeats", function()
      assert(helpdesk.configure(fake.options({ max_retries = 0 })))
      fake.listing({ mode = "repeat", no_total = true })
      local got, ok, err = drain(helpdesk.ticket_messages(fake.TICKET))
      assert.are.equal(false, ok)
      assert.are.equal(200, #got)
      assert_decode(err, "^page 2 repeats")
    end)
  end)

  describe("client:list_ticket_messages", function()
    local MALFORMED = {
      { "messages a string", '{"messages":"x","total":1}', "^answer's data.messages is not a list$" },
      { "messages an object", '{"messages":{"a":{"id":"1","created_at":1}},"total":1}',
        "^answer's data.messages is not a list$" },
      { "an item a number", '{"messages":[1],"total":1}', "^answer's data.messages holds a non%-object$" },
      { "an item null", '{"messages":[{"id":"1","created_at":1},null],"total":2}',
        "^answer's data.messages holds a non%-object$" },
      { "an item a list", '{"messages":[[1]],"total":1}', "^answer's data.messages holds a non%-object$" },
      { "total negative", '{"messages":[],"total":-1}', "^answer's data.total is not a count$" },
      { "total a fraction", '{"messages":[],"total":1.5}', "^answer's data.total is not a count$" },
      { "total a string", '{"messages":[],"total":"450"}', "^answer's data.total is not a count$" },
      { "total NaN", '{"messages":[],"total":NaN}', "^answer's data.total is not a count$" },
      { "total infinite", '{"messages":[],"total":Infinity}', "^answer's data.total is not a count$" },
      { "total past 2^53", '{"messages":[],"total":1e300}', "^answer's data.total is not a count$" },
    }
    for _, case in ipairs(MALFORMED) do
      it("returns nil and a decode error for " .. case[1], function()
        fake.fault({ path = PATH, method = "GET", status = 200,
                     body = '{"code":0,"msg":"success","data":' .. case[2] .. "}" })
        local page, err = client:list_ticket_messages(fake.TICKET, { page_size = 2 })
        assert.is_nil(page)
        assert_decode(err, case[3])
      end)
    end

    -- A page is Feishu's as it came: each message an object, its fields
    -- not checked (the iterator tells pages apart by id, else message_id).
    local AS_SENT = {
      { "an item without id", '{"messages":[{"created_at":1}],"total":1}' },
      { "an id a number", '{"messages":[{"id":69,"created_at":1}],"total":1}' },
      { "an empty id", '{"messages":[{"id":"","created_at":1}],"total":1}' },
      { "a created_at a string", '{"messages":[{"id":"1","created_at":"1"}],"total":1}' },
      { "more messages than total", '{"messages":[{"id":"1","created_at":1},{"id":"2","created_at":1}],"total":1}' },
      { "more messages than page_size",
        '{"messages":[{"id":"1","created_at":1},{"id":"2","created_at":1},{"id":"3","created_at":1}],"total":3}' },
    }
    local cjson = require "cjson.safe"
    for _, case in ipairs(AS_SENT) do
      it("returns the page as Feishu sent it for " .. case[1], function()
        fake.fault({ path = PATH, method = "GET", status = 200,
                     body = '{"code":0,"msg":"success","data":' .. case[2] .. "}" })
        local page, err = client:list_ticket_messages(fake.TICKET, { page_size = 2 })
        assert.is_nil(err)
        assert.are.same(cjson.decode(case[2]), page)
      end)
    end

    it("but the iterator raises a decode error for a first page holding more messages than its total", function()
      fake.fault({ path = PATH, method = "GET", status = 200,
                   body = '{"code":0,"msg":"success","data":' .. AS_SENT[5][2] .. "}" })
      local got, ok, err = drain(client:ticket_messages(fake.TICKET))
      assert.are.equal(false, ok)
      assert.are.equal(0, #got)
      assert_decode(err, "^page 1 holds 2 messages, but its total says 1$")
    end)

    it("returns nil and a decode error for data a list", function()
      fake.fault({ path = PATH, method = "GET", status = 200, body = '{"code":0,"data":[{"id":"1"}]}' })
      local page, err = client:list_ticket_messages(fake.TICKET)
      assert.is_nil(page)
      assert_decode(err, "^answer's data is not an object$")
    end)

    it("takes a page without total, or without messages, as the documents allow", function()
      fake.fault({ path = PATH, method = "GET", status = 200,
                   body = '{"code":0,"data":{"messages":[{"id":"1","created_at":1}]}}' })
      local page = assert(client:list_ticket_messages(fake.TICKET))
      assert.is_nil(page.total)
      assert.are.equal(1, #page.messages)
      fake.fault({ path = PATH, method = "GET", status = 200, body = '{"code":0,"data":{}}' })
      assert.are.same({ messages = {} }, assert(client:list_ticket_messages(fake.TICKET)))
    end)
  end)
end)
