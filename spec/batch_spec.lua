-- client:send_ticket_messages: many at once over libcurl's multi interface,
-- in input order, with the never-duplicate rule of single sends.
local cjson = require "cjson"
local fake = require "fake"
local helpdesk = require "helpdesk"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TEXT = { msg_type = "text", content = { text = "first" } }

local function items(n)
  local list = {}
  for i = 1, n do
    list[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "m" .. i } }
  end
  return list
end

-- message_id -> text of what the fake holds for the ticket
local function delivered()
  local page = assert(fake.client({ rate_limit = false }):list_ticket_messages(fake.TICKET, { page_size = 200 }))
  local out = {}
  for _, m in ipairs(page.messages) do out[m.message_id] = cjson.decode(m.content).content end
  return out
end

describe("send_ticket_messages", function()
  before_each(function() fake.reset() end)

  it("sends every message once, answers in input order, over a few connections", function()
    local list = items(20)
    list[5] = { ticket_id = 12, msg_type = "text", content = { text = "bad" } }
    list[9] = { ticket_id = fake.TICKET, msg_type = "image", content = { image_key = "x" } }
    local results = assert(fake.client():send_ticket_messages(list, { concurrency = 4 }))
    assert.are.equal(20, #results)
    assert.are.equal(2, results.failed)
    assert.are.equal("invalid", results[5].err.kind)
    assert.are.equal("ticket_id", results[5].err.field)
    assert.are.equal("msg_type", results[9].err.field)
    local texts = delivered()
    for i, r in ipairs(results) do
      if i ~= 5 and i ~= 9 then
        assert.is_nil(r.err)
        assert.are.equal("m" .. i, texts[r.data.message_id], "item " .. i)
      end
    end
    local reqs = {}
    for _, r in ipairs(fake.requests_to(PATH)) do
      if r.method == "POST" then reqs[#reqs + 1] = r end
    end
    assert.are.equal(18, #reqs)
    local conns, n = {}, 0
    for _, r in ipairs(reqs) do
      if not conns[r.connection] then n = n + 1 end
      conns[r.connection] = true
    end
    assert.is_true(n >= 1 and n <= 4, n .. " connections")
  end)

  it("never resends a message whose connection dropped, and says it may be delivered", function()
    local client = fake.client()
    assert(client:send_ticket_message(fake.TICKET, TEXT)) -- token and a kept connection
    fake.fault({ path = PATH, close = true, skip = 2 })
    local results = assert(client:send_ticket_messages(items(6), { concurrency = 2 }))
    assert.are.equal(1, results.failed)
    local failed
    for _, r in ipairs(results) do if r.err then failed = r.err end end
    assert.are.equal("transport", failed.kind)
    assert.is_true(failed.sent)
    assert.matches("may have been processed", tostring(failed))
    assert.are.equal(7, #fake.requests_to(PATH)) -- 1 + 6: the dropped one went out once
    assert.are.equal(6, fake.state().ticket_messages[fake.TICKET])
  end)

  it("does not retry a 5xx, and retries a 429 after its reset", function()
    local client = fake.client()
    fake.fault({ path = PATH, status = 502, body = "<html>bad gateway</html>" })
    local results = assert(client:send_ticket_messages(items(3)))
    assert.are.equal(1, results.failed)
    assert.are.equal(3, #fake.requests_to(PATH))
    fake.reset()
    client = fake.client() -- the fake forgot the old client's token
    fake.fault({ path = PATH, status = 429, headers = { ["x-ogw-ratelimit-reset"] = "1" },
                 body = cjson.encode({ code = 99991400, msg = "request trigger frequency limit" }) })
    results = assert(client:send_ticket_messages(items(3)))
    assert.are.equal(0, results.failed)
    assert.are.equal(4, #fake.requests_to(PATH))
    assert.are.equal(3, fake.state().ticket_messages[fake.TICKET])
  end)

  it("fetches a new token once when the cached one stops working", function()
    local client = fake.client()
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    fake.control("expire_tokens", {})
    local results = assert(client:send_ticket_messages(items(4), { concurrency = 1 }))
    assert.are.equal(0, results.failed)
    assert.are.equal(2, fake.state().token_count)
    assert.are.equal(5, fake.state().ticket_messages[fake.TICKET])
  end)

  it("keeps to the client-side rate limit, and fails what would start past the budget", function()
    fake.config({ rate_limits = { ticket_message = { per_second = 5 } } })
    local client = fake.client({ rate_limit = { ticket_message = { per_second = 5, per_minute = 8 } } })
    local results = assert(client:send_ticket_messages(items(10), { concurrency = 8, budget = 5 }))
    assert.are.equal(0, fake.state().rate_limited)
    assert.are.equal(2, results.failed) -- the 9th and 10th would wait a minute
    assert.are.equal("rate_limit", results[9].err.kind)
    assert.are.equal("rate_limit", results[10].err.kind)
    assert.are.equal(8, #fake.requests_to(PATH))
  end)

  it("refuses malformed input before sending anything", function()
    local client = fake.client()
    local _, err = client:send_ticket_messages("x")
    assert.are.equal("items", err.field)
    _, err = client:send_ticket_messages({ [2] = items(1)[1] })
    assert.are.equal("items", err.field)
    _, err = client:send_ticket_messages(items(2), { concurrency = 0 })
    assert.are.equal("concurrency", err.field)
    _, err = client:send_ticket_messages(items(2), { speed = 1 })
    assert.are.equal("invalid", err.kind)
    assert.are.same({ failed = 0 }, client:send_ticket_messages({}))
    assert.are.equal(0, #fake.requests_to(PATH))
  end)

  it("is a module function too", function()
    assert(helpdesk.configure(fake.options()))
    local results = assert(helpdesk.send_ticket_messages(items(2)))
    assert.are.equal(0, results.failed)
    assert.are.equal(2, fake.state().ticket_messages[fake.TICKET])
  end)
end)
