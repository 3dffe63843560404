local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local FIELDS = { "id", "message_id", "message_type", "created_at", "content", "user_name", "avatar_url", "user_id" }

describe("listing", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client()
  end)

  describe("client:list_ticket_messages", function()
    it("returns one page with total and the documented fields", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 30, start = 1617960686, step = 10 })
      local page, err = client:list_ticket_messages(fake.TICKET, { page = 2, page_size = 20 })
      assert.is_nil(err)
      assert.are.equal(30, page.total)
      assert.are.equal(10, #page.messages)
      local m = page.messages[1]
      for _, f in ipairs(FIELDS) do assert.is_not_nil(m[f], f) end
      assert.are.equal((1617960686 + 200) * 1000, m.created_at)
      assert.are.equal("string", type(m.id))
      assert.are.equal(19, #m.id)
      assert.are.equal("page=2&page_size=20", fake.requests_to(PATH)[1].query)
      if math.type then
        assert.are.equal("integer", math.type(m.created_at))
        assert.are.equal("integer", math.type(page.total))
      end
    end)

    it("sends the time filters and gets only what is inside them", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 10, start = 1000, step = 100 })
      local page = assert(client:list_ticket_messages(fake.TICKET, { time_start = 1200, time_end = 1500 }))
      assert.are.equal(4, page.total)
      assert.are.equal("time_start=1200&time_end=1500", fake.requests_to(PATH)[1].query)
    end)

    it("writes large timestamps as plain integers on every Lua", function()
      -- Lua 5.1 and LuaJIT print 2^53 - 1 as 9.007199254741e+15
      local big = 9007199254740991
      assert(client:list_ticket_messages(fake.TICKET, { time_start = 1700000000000, time_end = big }))
      assert.are.equal("time_start=1700000000000&time_end=9007199254740991", fake.requests_to(PATH)[1].query)
    end)

    it("returns an empty page of an empty ticket", function()
      local page = assert(client:list_ticket_messages(fake.TICKET))
      assert.are.same({ messages = {}, total = 0 }, page)
    end)

    it("accepts integral floats and sends them as integers", function()
      assert(client:list_ticket_messages(fake.TICKET, { page = 1.0, page_size = 50.0 }))
      assert.are.equal("page=1&page_size=50", fake.requests_to(PATH)[1].query)
    end)
  end)

  describe("client:ticket_messages", function()
    it("walks every page, 200 at a time, in order", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 450, start = 1700000000 })
      local seen = {}
      for m in client:ticket_messages(fake.TICKET) do seen[#seen + 1] = m end
      assert.are.equal(450, #seen)
      for i = 1, 450 do
        assert.are.equal((1700000000 + i - 1) * 1000, seen[i].created_at)
      end
      local reqs = fake.requests_to(PATH)
      assert.are.equal(3, #reqs)
      assert.are.equal("page=1&page_size=200", reqs[1].query)
      assert.are.equal("page=3&page_size=200", reqs[3].query)
    end)

    it("stops at total without asking for an empty page", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 40 })
      local n = 0
      for _ in client:ticket_messages(fake.TICKET, { page_size = 20 }) do n = n + 1 end
      assert.are.equal(40, n)
      assert.are.equal(2, #fake.requests_to(PATH))
    end)

    it("yields nothing for an empty ticket", function()
      local n = 0
      for _ in client:ticket_messages(fake.TICKET) do n = n + 1 end
      assert.are.equal(0, n)
      assert.are.equal(1, #fake.requests_to(PATH))
    end)

    it("raises the error object when a page fails, never ending as if complete", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 30 })
      fake.fault({ path = PATH, status = 502, body = "<html>bad gateway</html>", times = 1, skip = 1 })
      local n = 0
      local ok, err = pcall(function()
        for _ in client:ticket_messages(fake.TICKET, { page_size = 10 }, { max_retries = 0 }) do n = n + 1 end
      end)
      assert.is_false(ok)
      assert.are.equal(10, n)
      assert.are.equal("http", err.kind)
      assert.are.equal(502, err.status)
      assert.matches("^helpdesk http error %(HTTP 502%): HTTP 502: <html>bad gateway</html>", tostring(err))
    end)

    it("raises an invalid error at once for bad input", function()
      local ok, err = pcall(client.ticket_messages, client, 123)
      assert.is_false(ok)
      assert.are.equal("invalid", err.kind)
      assert.are.equal("ticket_id", err.field)
      ok, err = pcall(client.ticket_messages, client, fake.TICKET, { page_size = 201 })
      assert.is_false(ok)
      assert.are.equal("page_size", err.field)
      assert.are.equal(0, #fake.requests())
    end)

    it("keeps going with a fresh token when it expires mid-iteration", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 30 })
      local n = 0
      for _ in client:ticket_messages(fake.TICKET, { page_size = 10 }) do
        n = n + 1
        if n == 15 then fake.control("expire_tokens", {}) end
      end
      assert.are.equal(30, n)
      assert.are.equal(2, fake.state().token_count)
    end)
  end)
end)

describe("the ticket-message iterator against a server that misbehaves", function()
  local errors = require "helpdesk.errors"
  local client
  before_each(function()
    fake.reset()
    client = fake.client({ rate_limit = false })
  end)
  after_each(function() fake.config({ listing = false }) end)

  -- Walks the listing in mode, at most limit messages (a bound of the spec's
  -- own, far past any stop the iterator should make). Returns how many
  -- were yielded, the error raised (or nil) and the pages asked for.
  local function walk(mode, limit)
    fake.config({ listing = mode })
    local before = #fake.requests_to(PATH)
    local n = 0
    local ok, err = pcall(function()
      for _ in client:ticket_messages(fake.TICKET) do
        n = n + 1
        if n >= limit then return end
      end
    end)
    return n, (not ok) and err or nil, #fake.requests_to(PATH) - before
  end

  local function assert_decode(err, what)
    assert.is_true(errors.is(err), "raised " .. tostring(err))
    assert.are.equal("decode", err.kind)
    assert.matches(what, err.msg, 1, true)
  end

  it("stops at a page that repeats the last one, no total given", function()
    local n, err, pages = walk("repeat", 10000)
    assert_decode(err, "repeats")
    assert.are.equal(200, n)
    assert.are.equal(2, pages)
  end)

  it("raises the same error again when called after it raised, never a quiet end", function()
    fake.config({ listing = "repeat" })
    local iter = client:ticket_messages(fake.TICKET)
    for _ = 1, 200 do assert.is_table(iter()) end
    local ok1, e1 = pcall(iter)
    local ok2, e2 = pcall(iter)
    assert.is_false(ok1)
    assert.is_false(ok2)
    assert.are.equal(e1, e2)
    assert.are.equal("decode", e2.kind)
  end)

  it("stops at a page that holds messages of the page before, with a total", function()
    local n, err = walk("backwards", 10000)
    assert_decode(err, "repeats")
    assert.are.equal(200, n)
  end)

  it("keeps to the first page's total when each page says there is one more", function()
    local n, err, pages = walk("growing", 10000)
    assert.is_nil(err)
    assert.are.equal(400, n)
    assert.are.equal(2, pages)
  end)

  it("raises a decode error for messages given as an object, yielding nothing", function()
    local n, err = walk("object", 10000)
    assert_decode(err, "data.messages is not a list")
    assert.are.equal(0, n)
    local page, perr = client:list_ticket_messages(fake.TICKET)
    assert.is_nil(page)
    assert.are.equal("decode", perr.kind)
  end)

  it("raises a decode error when the pages run out before the total", function()
    local n, err = walk("short", 10000)
    assert_decode(err, "200 of the 450")
    assert.are.equal(200, n)
  end)

  -- A page of messages with ids from..to and total (nil: none), as a fault's body.
  local function page_body(from, to, total, extra)
    local list = {}
    for n = from, to do
      list[#list + 1] = string.format('{"id":"%d","message_id":"om_%d","message_type":"text",'
        .. '"content":"{}","created_at":%d}', 9000 + n, n, 1700000000000 + n)
    end
    return '{"code":0,"msg":"ok","data":{"messages":[' .. table.concat(list, ",") .. (extra or "") .. "]"
      .. (total and (',"total":' .. total) or "") .. "}}"
  end

  it("stops at a page that comes round again after others, and at an id twice on a page", function()
    for _, body in ipairs({ page_body(1, 200, 450), page_body(201, 400, 450), page_body(1, 200, 450) }) do
      fake.fault({ path = PATH, method = "GET", status = 200, body = body })
    end
    local n, err = walk(false, 10000)
    assert_decode(err, "repeats page 1")
    assert.are.equal(400, n)
    fake.fault({ path = PATH, method = "GET", status = 200, body = page_body(1, 3, 4, ',{"id":"9001"}') })
    n, err = walk(false, 10000)
    assert_decode(err, "twice")
    assert.are.equal(0, n)
  end)

  it("raises a decode error for a page that contradicts itself or is not a list of objects", function()
    fake.fault({ path = PATH, method = "GET", status = 200, body = page_body(1, 200, 0) })
    local n, err = walk(false, 10000)
    assert_decode(err, "its total says 0")
    assert.are.equal(0, n)
    for _, body in ipairs({ '{"code":0,"msg":"ok","data":[1]}',
                            '{"code":0,"msg":"ok","data":{"messages":[[1],[2]],"total":2}}' }) do
      fake.fault({ path = PATH, method = "GET", status = 200, body = body })
      local page, perr = client:list_ticket_messages(fake.TICKET)
      assert.is_nil(page)
      assert.are.equal("decode", perr.kind)
    end
  end)

  it("says a listing that timed out was not a message that may have been processed", function()
    fake.fault({ path = PATH, method = "GET", delay = 1, times = 5 })
    local page, err = client:list_ticket_messages(fake.TICKET, nil, { timeout = 0.2, max_retries = 0 })
    assert.is_nil(page)
    assert.are.equal("transport", err.kind)
    assert.is_false(err.sent)
    assert.is_nil(err.msg:find("may have been processed", 1, true))
  end)

  it("stops after 100,000 messages when pages never end and no total is given", function()
    local n, err, pages = walk("endless", 150000)
    assert_decode(err, "100000")
    assert.are.equal(100000, n)
    assert.are.equal(501, pages) -- the 501st shows there is no end
  end)
end)
