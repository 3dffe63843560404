-- receiver:on and receiver:handle: the answer Feishu gets, and each event's
-- handler run once per event id however often Feishu pushes it. Pushes are
-- made apart from the library (spec/openssl.lua: the openssl command line).
local cjson = require "cjson"
local clock = require "helpdesk.clock"
local events = require "helpdesk.events"
local helpdesk = require "helpdesk"
local openssl = require "openssl"

local KEY = "hK4-handle-key-Secret"
local TOKEN = "hT9-handle-Token"
local MESSAGE = "helpdesk.ticket_message.created_v1"

local function event(id, event_type)
  return cjson.encode({
    schema = "2.0",
    header = { event_id = id, token = TOKEN, create_time = "1608725989000", event_type = event_type or MESSAGE,
               tenant_key = "736588c92lxf175d", app_id = "cli_9e28cb7ba56a100e" },
    event = { ticket = { ticket_id = "6626871355780366331" }, msg_type = "text", text = "help " .. id,
              content = { content = "help " .. id, msg_type = "text" }, sender_type = 2, event_id = "in-" .. id },
  })
end

-- A push as Feishu makes it: encrypted, signed over the raw body.
local function push(plaintext, sign_key)
  local body = cjson.encode({ encrypt = openssl.encrypt(KEY, plaintext) })
  local ts = tostring(os.time())
  return { ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = "77",
           ["X-Lark-Signature"] = openssl.signature(ts, "77", sign_key or KEY, body) }, body
end

local function receiver(extra)
  local opts = { verification_token = TOKEN, encrypt_key = KEY }
  for k, v in pairs(extra or {}) do opts[k] = v end
  return assert(events.new(opts))
end

describe("receiver:handle", function()
  local real_now = clock.now
  after_each(function() clock.now = real_now end)

  it("answers the URL verification with its challenge", function()
    local r = receiver()
    local h, b = push(cjson.encode({ type = "url_verification", challenge = "ch-1", token = TOKEN }))
    local status, body = r:handle(h, b)
    assert.are.equal(200, status)
    assert.are.same({ challenge = "ch-1" }, cjson.decode(body))
  end)

  it("runs the handler once per event id, however often it is pushed", function()
    local r = receiver()
    local seen = {}
    assert(r:on(MESSAGE, function(ev) seen[#seen + 1] = ev.event_id .. " " .. events.text_of(ev) end))
    local h, b = push(event("e1"))
    for _ = 1, 3 do
      local status, body = r:handle(h, b)
      assert.are.equal(200, status)
      assert.are.equal("{}", body)
    end
    -- pushed again as Feishu re-pushes: a new signature, a new iv, the same event
    local h2, b2 = push(event("e1"))
    local status, _, ev = r:handle(h2, b2)
    assert.are.equal(200, status)
    assert.is_true(ev.duplicate)
    h2, b2 = push(event("e2"))
    assert.are.equal(200, (r:handle(h2, b2)))
    assert.are.same({ "e1 help e1", "e2 help e2" }, seen)
  end)

  it("runs it once across receivers sharing a store, as workers share a dict", function()
    local st = helpdesk.memory_store()
    local a, b = receiver({ store = st }), receiver({ store = st })
    local n = 0
    a:on(MESSAGE, function() n = n + 1 end)
    b:on(MESSAGE, function() n = n + 1 end)
    local h, body = push(event("shared-1"))
    assert.are.equal(200, (a:handle(h, body)))
    assert.are.equal(200, (b:handle(h, body)))
    assert.are.equal(1, n)
  end)

  it("answers 500 for a handler that fails, and runs it again on the next push", function()
    local r = receiver()
    local tries = 0
    r:on(MESSAGE, function()
      tries = tries + 1
      if tries == 1 then error("database down") end
      if tries == 2 then return nil, "still down" end
    end)
    local h, b = push(event("f1"))
    local status, body, err = r:handle(h, b)
    assert.are.equal(500, status)
    assert.are.same({ msg = "the handler failed" }, cjson.decode(body))
    assert.matches("database down", tostring(err))
    local status2, _, err2 = r:handle(h, b)
    assert.are.equal(500, status2)
    assert.are.equal("still down", err2)
    assert.are.equal(200, (r:handle(h, b)))
    assert.are.equal(200, (r:handle(h, b)))
    assert.are.equal(3, tries)
  end)

  it("answers 401 or 400, running no handler, for a request that fails its checks", function()
    local r = receiver()
    local ran = false
    r:on("*", function() ran = true end)
    local h, b = push(event("x1"), "not-the-key")
    local status, body, err = r:handle(h, b)
    assert.are.equal(401, status)
    assert.are.equal("signature", err.field)
    assert.is_nil(body:find(KEY, 1, true))
    local bad_token = event("x2"):gsub(TOKEN:gsub("%p", "%%%0"), "wrong-token")
    h, b = push(bad_token)
    assert.are.equal(401, (r:handle(h, b)))
    assert.are.equal(400, (r:handle({}, "not json")))
    assert.are.equal(400, (r:handle(nil, nil)))
    assert.is_false(ran)
  end)

  it("runs the * handler for types without their own, and answers 200 when none", function()
    local r = receiver()
    local got = {}
    r:on("*", function(ev) got[#got + 1] = ev.event_type end)
    r:on(MESSAGE, function() got[#got + 1] = "own" end)
    local h, b = push(event("s1", "helpdesk.ticket.created_v1"))
    assert.are.equal(200, (r:handle(h, b)))
    h, b = push(event("s2"))
    assert.are.equal(200, (r:handle(h, b)))
    assert.are.same({ "helpdesk.ticket.created_v1", "own" }, got)
    local bare = receiver()
    h, b = push(event("s3"))
    assert.are.equal(200, (bare:handle(h, b)))
  end)

  it("forgets an event id after remember seconds, never before", function()
    local offset = 0
    clock.now = function() return real_now() + offset end
    local r = receiver({ remember = 3600 })
    local n = 0
    r:on(MESSAGE, function() n = n + 1 end)
    local h, b = push(event("t1"))
    -- the push, then re-pushes at Feishu's times (15 s, 5 min, 1 h less a
    -- second): handled once
    for _, at in ipairs({ 0, 15, 300, 3599 }) do
      offset = at
      assert.are.equal(200, (r:handle(h, b)))
    end
    assert.are.equal(1, n)
    offset = 3601
    assert.are.equal(200, (r:handle(h, b)))
    assert.are.equal(2, n)
  end)

  it("refuses a handler that is not a function and an empty type, raising nothing", function()
    local r = receiver()
    local ok, err = r:on(MESSAGE, "not a function")
    assert.is_nil(ok)
    assert.are.equal("handler", err.field)
    ok, err = r:on("", function() end)
    assert.is_nil(ok)
    assert.are.equal("event_type", err.field)
    ok, err = events.new({ verification_token = TOKEN, remember = 0 })
    assert.is_nil(ok)
    assert.are.equal("remember", err.field)
    ok, err = events.new({ verification_token = TOKEN, store = {} })
    assert.is_nil(ok)
    assert.are.equal("store", err.field)
  end)

  it("lets the collector take receivers whose handlers refer to them", function()
    local probe = setmetatable({}, { __mode = "v" })
    local function run()
      for i = 1, 50 do
        local r = receiver()
        r:on(MESSAGE, function() return r end)
        probe[i] = r
      end
    end
    run()
    require("process_usage").full_gc()
    local left = 0
    for _ in pairs(probe) do left = left + 1 end
    assert.are.equal(0, left)
  end)
end)
