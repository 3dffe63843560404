-- The logger option: structured events for every exchange, retry, rate-limit
-- wait and token fetch, never a secret, and never a failure of the call.
local cjson = require "cjson"
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TEXT = { msg_type = "text", content = { text = "logged" } }
local SECRETS = { fake.APP_SECRET, fake.HELPDESK_TOKEN }

local function logging_client(extra)
  local events = {}
  local o = { logger = function(e) events[#events + 1] = e end }
  for k, v in pairs(extra or {}) do o[k] = v end
  return fake.client(o), events
end

local function names(events)
  local out = {}
  for i, e in ipairs(events) do out[i] = e.event end
  return table.concat(out, " ")
end

-- no event may show a secret, nor the tenant token the fake issued
local function assert_no_secret(events, extra)
  local text = cjson.encode(events)
  for _, s in ipairs(SECRETS) do assert.is_nil(text:find(s, 1, true), s) end
  for _, s in ipairs(extra or {}) do assert.is_nil(text:find(s, 1, true)) end
end

describe("logger", function()
  before_each(function() fake.reset() end)

  it("tells of the token fetch, the request and the response with status, duration and log id", function()
    local client, events = logging_client()
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    assert.are.equal("request response token_refresh request response", names(events))
    assert.is_true(events[3].ok)
    assert.are.equal(7200, events[3].expire)
    local resp = events[5]
    assert.are.equal("POST", resp.method)
    assert.matches(PATH, resp.url, 1, true)
    assert.are.equal(200, resp.status)
    assert.is_string(resp.log_id)
    assert.is_true(resp.duration >= 0 and resp.duration < 10)
    local tokens = {}
    for _, r in ipairs(fake.requests_to(PATH)) do tokens[#tokens + 1] = r.headers.authorization:sub(8) end
    assert_no_secret(events, tokens)
  end)

  it("tells of retries and failures, with the error but no secret", function()
    local client, events = logging_client({ rate_limit = false })
    assert(client:list_ticket_messages(fake.TICKET)) -- the token first
    fake.fault({ path = PATH, method = "GET", status = 503, body = "echo " .. fake.HELPDESK_TOKEN })
    assert(client:list_ticket_messages(fake.TICKET))
    local retry, failed
    for _, e in ipairs(events) do
      if e.event == "retry" then retry = e end
      if e.event == "response" and e.status == 503 then failed = e end
    end
    assert.are.equal(1, retry.attempt)
    assert.are.equal("http", retry.kind)
    assert.is_true(retry.wait > 0)
    assert.are.equal("http", failed.kind)
    assert.matches("503", failed.error)
    assert_no_secret(events)
  end)

  it("tells of rate-limit waits", function()
    local client, events = logging_client({ rate_limit = { list = { per_second = 1 } } })
    assert(client:list_ticket_messages(fake.TICKET))
    assert(client:list_ticket_messages(fake.TICKET))
    local wait
    for _, e in ipairs(events) do if e.event == "rate_limit_wait" then wait = e end end
    assert.are.equal("list", wait.endpoint)
    assert.is_true(wait.wait > 0.5 and wait.wait <= 1.1, tostring(wait.wait))
  end)

  it("logs a batch's exchanges too", function()
    local client, events = logging_client()
    local items = {}
    for i = 1, 3 do items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "b" .. i } } end
    assert.are.equal(0, assert(client:send_ticket_messages(items)).failed)
    local requests, responses = 0, 0
    for _, e in ipairs(events) do
      if e.event == "request" and e.url:find(PATH, 1, true) then requests = requests + 1 end
      if e.event == "response" and e.url:find(PATH, 1, true) and e.status == 200 then responses = responses + 1 end
    end
    assert.are.equal(3, requests)
    assert.are.equal(3, responses)
  end)

  it("never fails a call, and must be a function", function()
    local client = fake.client({ logger = function() error("logger broke") end })
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    local helpdesk = require "helpdesk"
    local _, err = helpdesk.new(fake.options({ logger = "print" }))
    assert.are.equal("logger", err.field)
  end)
end)
