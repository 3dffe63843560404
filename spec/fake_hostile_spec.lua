-- The fake's hostile modes: listings that do not page as the documents say
-- (/_fake/listing) and faults whose answer quotes what the client sent
-- (echo), as a gateway's error page quoting the request does. Raw HTTP to
-- the fake, so that these say what the fake does, not what the client makes
-- of it.
local cjson = require "cjson.safe"
local core = require "helpdesk.core"
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"

describe("the fake's hostile modes", function()
  local h
  before_each(function()
    fake.reset()
    h = assert(core.new())
  end)
  after_each(function() h:close() end)

  local function raw(method, path, body, headers)
    local status, out, hdrs = h:request({
      method = method, url = fake.url .. path, headers = headers or { ["Content-Type"] = "application/json" },
      body = body,
    })
    assert(status, out)
    return status, out, hdrs
  end

  local function auth()
    local _, out = raw("POST", TOKEN_PATH, cjson.encode({ app_id = fake.APP_ID, app_secret = fake.APP_SECRET }))
    return {
      Authorization = "Bearer " .. cjson.decode(out).tenant_access_token,
      ["X-Lark-Helpdesk-Authorization"] = core.base64(fake.HELPDESK_ID .. ":" .. fake.HELPDESK_TOKEN),
    }
  end

  -- page p of size n: the decoded data and the raw text
  local function page(headers, p, n)
    local status, out = raw("GET", PATH .. "?page=" .. p .. "&page_size=" .. n, nil, headers)
    assert.are.equal(200, status, out)
    return cjson.decode(out).data, out
  end

  local function ids(data)
    local out = {}
    for i, m in ipairs(data.messages) do out[i] = tonumber(m.id:sub(-6)) end
    return out
  end

  describe("/_fake/listing", function()
    before_each(function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 10, start = 1700000000 })
    end)

    it("repeat answers page 1 whatever the page, with the ticket's total or the one given, or none", function()
      local a = auth()
      fake.listing({ mode = "repeat" })
      assert.are.same(ids(page(a, 1, 4)), ids(page(a, 3, 4)))
      assert.are.equal(10, page(a, 7, 4).total)
      fake.listing({ mode = "repeat", total = 450 })
      assert.are.equal(450, page(a, 2, 4).total)
      fake.listing({ mode = "repeat", no_total = true })
      local d = page(a, 2, 4)
      assert.is_nil(d.total)
      assert.are.equal(4, #d.messages)
    end)

    it("overlap starts each page half a page back; back answers the page before", function()
      local a = auth()
      local first = ids(page(a, 1, 4))
      fake.listing({ mode = "overlap" })
      local p2 = ids(page(a, 2, 4))
      assert.are.same({ first[3], first[4] }, { p2[1], p2[2] })
      fake.listing({ mode = "back" })
      assert.are.same(first, ids(page(a, 2, 4)))
      assert.are.same(first, ids(page(a, 1, 4)))
    end)

    it("grow answers a full page of new messages each time, total one more than so far", function()
      local a = auth()
      fake.listing({ mode = "grow" })
      local d1, d2 = page(a, 1, 5), page(a, 2, 5)
      assert.are.equal(6, d1.total)
      assert.are.equal(11, d2.total)
      assert.are.equal(5, #d2.messages)
      assert.is_true(d2.messages[1].created_at > d1.messages[5].created_at)
      assert.is_true(d2.messages[1].id > d1.messages[5].id)
      assert.are.equal(10, fake.state().ticket_messages[fake.TICKET]) -- not stored
    end)

    it("object sends data.messages as an object keyed by message id", function()
      local a = auth()
      fake.listing({ mode = "object" })
      local d, text = page(a, 1, 4)
      assert.matches('"messages":{"69', text, 1, true)
      local n = 0
      for id, m in pairs(d.messages) do
        assert.are.equal(id, m.id)
        n = n + 1
      end
      assert.are.equal(4, n)
      assert.are.equal(10, d.total)
    end)

    it("descending lists newest first, every message once", function()
      local a = auth()
      local honest = {}
      for _, p in ipairs({ 1, 2, 3 }) do
        for _, v in ipairs(ids(page(a, p, 4))) do table.insert(honest, 1, v) end
      end
      fake.listing({ mode = "descending" })
      local desc = {}
      for _, p in ipairs({ 1, 2, 3 }) do
        for _, v in ipairs(ids(page(a, p, 4))) do desc[#desc + 1] = v end
      end
      assert.are.same(honest, desc)
      local _, text = page(a, 4, 4)
      assert.matches('"messages":[]', text, 1, true)
    end)

    it("is switched off by an empty request and by reset, and refuses an unknown mode", function()
      local a = auth()
      fake.listing({ mode = "repeat" })
      fake.listing()
      assert.are.equal(2, #page(a, 3, 4).messages)
      fake.listing({ mode = "repeat" })
      fake.reset()
      fake.ticket({ ticket_id = fake.TICKET, messages = 10, start = 1700000000 })
      a = auth()
      assert.are.equal(2, #page(a, 3, 4).messages)
      local status, out = raw("POST", "/_fake/listing", '{"mode":"sideways"}')
      assert.are.equal(400, status)
      assert.matches("mode must be", out)
    end)
  end)

  describe("faults with echo", function()
    it("quote the request body after body and before after, as a gateway page does", function()
      fake.fault({ path = TOKEN_PATH, status = 500, body = "<pre>", after = "</pre>", echo = "body" })
      local status, out = raw("POST", TOKEN_PATH, '{"app_secret":"s3"}')
      assert.are.equal(500, status)
      assert.are.equal('<pre>{"app_secret":"s3"}</pre>', out)
    end)

    it("quote a request header, raw or base64-decoded, into the body or a response header", function()
      local a = auth()
      fake.fault({ path = PATH, status = 502, body = "x", echo = "x-lark-helpdesk-authorization", decode64 = true })
      local status, out = raw("GET", PATH, nil, a)
      assert.are.equal(502, status)
      assert.are.equal("x" .. fake.HELPDESK_ID .. ":" .. fake.HELPDESK_TOKEN, out)
      fake.fault({ path = PATH, status = 302, body = "/login?t=", echo = "authorization", echo_header = "Location" })
      local hdrs
      status, out, hdrs = raw("GET", PATH, nil, a)
      assert.are.equal(302, status)
      assert.are.equal("/login?t=" .. a.Authorization, hdrs.location)
      assert.are.equal("/login?t=", out)
    end)
  end)
end)
