-- No part of a secret reaches an error or a log event: a server's text is
-- redacted first and cut to its excerpt after, and a start of a secret left
-- at the cut (4 bytes or more: errors.lua's MIN_PREFIX) is taken for the
-- secret. The fake answers pages that quote what the client sent (the token
-- request's body, a credential header, a proxy's credential), with the
-- quote moved across the cut one byte at a time.
local core = require "helpdesk.core"
local errors = require "helpdesk.errors"
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
local APP_SECRET = "sv-Qx7mZ2pL9wR4tY8uK3jH5gF1dS0aZ"
local HELPDESK_TOKEN = "hd-token-Wq3eR5tY7uI9oP1aS3dF"
local PROXY_USER, PROXY_PASSWORD = "squid", "pw-Zx9cV8bN7mQ6"
local CUT = 120 -- the excerpt's length, in bytes
local MIN = 4 -- no start of a secret this long may show (errors.lua's MIN_PREFIX is not more)
local PADS = 150 -- offsets 0..PADS of the quote in the answer
local NEAR = 3 -- of which those that put a secret across the cut or within NEAR bytes of it, and 0 and PADS
local HEAD, TAIL = "<html><body><h1>500 Internal Server Error</h1><pre>", "</pre></body></html>"

-- Every text an error and the logger's events hold.
local function texts_of(err, events)
  local out = { tostring(err) }
  for _, v in pairs(err) do out[#out + 1] = tostring(v) end
  for _, e in ipairs(events) do
    for _, v in pairs(e) do out[#out + 1] = tostring(v) end
  end
  return out
end

-- The first start of secret (MIN bytes or more) that shows in
-- one of texts, or nil.
local function leak(texts, secret)
  for _, text in ipairs(texts) do
    for n = #secret, MIN, -1 do
      if text:find(secret:sub(1, n), 1, true) then return secret:sub(1, n) .. " in " .. text end
    end
  end
end

describe("secrets in a server's answer", function()
  local events, client
  before_each(function()
    fake.reset()
    fake.config({ app_secret = APP_SECRET, helpdesk_token = HELPDESK_TOKEN })
    events = {}
    client = fake.client({ app_secret = APP_SECRET, helpdesk_token = HELPDESK_TOKEN, max_retries = 0,
                           logger = function(e) events[#events + 1] = e end })
  end)

  -- The tenant token the client holds, after one call.
  local function tenant_token(c)
    assert(c:list_ticket_messages(fake.TICKET))
    local reqs = fake.requests_to(PATH)
    return reqs[#reqs].headers.authorization:sub(#"Bearer " + 1)
  end

  -- For pad = 0..PADS: the fault fault(pad) answers call(), whose error and
  -- events must hold no start of any of secrets; quoted(0) is the text the
  -- excerpt is made of at pad 0 (each pad moves the quote one byte on), to
  -- find the pads where a secret is near or across the cut: only those are
  -- tried, with 0 and PADS (the others would repeat a whole secret before
  -- or after the cut).
  local function sweep(t)
    local crossed, at = 0, nil -- at[secret]: where it starts in the text at pad 0
    for pad = 0, PADS do
      local near = pad == 0 or pad == PADS
      for _, secret in ipairs(t.secrets) do
        local q = at and at[secret] + pad
        if q and q + #secret - 1 >= CUT - NEAR and q <= CUT + NEAR then near = true end
      end
      if near then
        fake.fault(t.fault(pad))
        events = {}
        local data, err = t.call()
        assert.is_nil(data)
        assert.is_true(errors.is(err))
        if t.kind then assert.are.equal(t.kind, err.kind, tostring(err)) end
        local texts = texts_of(err, events)
        if not at then
          at = {}
          local quoted = t.quoted(0)
          for _, secret in ipairs(t.secrets) do at[secret] = assert(quoted:find(secret, 1, true), "not quoted") end
        end
        for _, secret in ipairs(t.secrets) do
          local found = leak(texts, secret)
          assert.is_nil(found, "pad " .. pad .. ": " .. tostring(found))
          local q = at[secret] + pad
          if q <= CUT and q + #secret - 1 > CUT then crossed = crossed + 1 end
        end
        if t.shows then assert.matches(t.shows, tostring(err), 1, true) end
      end
    end
    -- the sweep did put secrets across the cut, at every offset
    assert.is_true(crossed >= #t.secrets[1] - 1, "only " .. crossed .. " offsets crossed the cut")
  end

  local function page(pad, echo, status)
    return { path = PATH, method = "GET", status = status or 502, body = HEAD .. ("x"):rep(pad), echo = echo,
             after = TAIL }
  end

  it("of the token request (app_secret), quoted by a gateway's 500 page", function()
    sweep({
      kind = "http",
      secrets = { APP_SECRET },
      fault = function(pad)
        return { path = TOKEN_PATH, status = 500, body = "<pre>" .. ("x"):rep(pad), echo = "body", after = TAIL }
      end,
      call = function() return client:list_ticket_messages(fake.TICKET) end,
      quoted = function(pad)
        local reqs = fake.requests_to(TOKEN_PATH)
        local body = reqs[#reqs].body
        return "<pre>" .. ("x"):rep(pad) .. body .. TAIL
      end,
      shows = "<pre>",
    })
  end)

  it("of the tenant token, in the body of a 502, of a 200 that is not JSON, and in a redirect's Location", function()
    local tok = tenant_token(client)
    local auth = "Bearer " .. tok
    for _, status in ipairs({ 502, 200 }) do
      sweep({
        kind = status == 200 and "decode" or "http",
        secrets = { tok },
        fault = function(pad) return page(pad, "authorization", status) end,
        call = function() return client:list_ticket_messages(fake.TICKET) end,
        quoted = function(pad) return HEAD .. ("x"):rep(pad) .. auth .. TAIL end,
        shows = HEAD,
      })
    end
    sweep({
      kind = "http",
      secrets = { tok },
      fault = function(pad)
        return { path = PATH, method = "GET", status = 302, body = "/login?" .. ("x"):rep(pad) .. "&t=",
                 echo = "authorization", echo_header = "Location" }
      end,
      call = function() return client:list_ticket_messages(fake.TICKET) end,
      quoted = function(pad) return "/login?" .. ("x"):rep(pad) .. "&t=" .. auth end,
      shows = "/login?",
    })
  end)

  it("of the helpdesk credential, base64 as sent and decoded to id:token", function()
    local b64 = core.base64(fake.HELPDESK_ID .. ":" .. HELPDESK_TOKEN)
    sweep({
      secrets = { b64 },
      fault = function(pad) return page(pad, "x-lark-helpdesk-authorization") end,
      call = function() return client:list_ticket_messages(fake.TICKET) end,
      quoted = function(pad) return HEAD .. ("x"):rep(pad) .. b64 .. TAIL end,
    })
    sweep({
      secrets = { HELPDESK_TOKEN },
      fault = function(pad)
        local f = page(pad, "x-lark-helpdesk-authorization")
        f.decode64 = true
        return f
      end,
      call = function() return client:list_ticket_messages(fake.TICKET) end,
      quoted = function(pad) return HEAD .. ("x"):rep(pad) .. fake.HELPDESK_ID .. ":" .. HELPDESK_TOKEN .. TAIL end,
    })
  end)

  it("of a batch's tenant token, in a 500 page", function()
    local tok = tenant_token(client)
    sweep({
      secrets = { tok },
      fault = function(pad)
        return { path = PATH, method = "POST", status = 500, body = HEAD .. ("x"):rep(pad), echo = "authorization",
                 after = TAIL }
      end,
      call = function()
        local results = assert(client:send_ticket_messages({
          { ticket_id = fake.TICKET, msg_type = "text", content = { text = "hi" } } }))
        return nil, results[1].err
      end,
      quoted = function(pad) return HEAD .. ("x"):rep(pad) .. "Bearer " .. tok .. TAIL end,
    })
  end)

  it("of a proxy's credential, its password and the Basic credential libcurl sends", function()
    local proxy = "http://" .. PROXY_USER .. ":" .. PROXY_PASSWORD .. "@" .. fake.url:match("//(.*)$")
    local c = fake.client({ app_secret = APP_SECRET, helpdesk_token = HELPDESK_TOKEN, max_retries = 0,
                            base_url = "http://feishu.invalid", proxy = proxy,
                            logger = function(e) events[#events + 1] = e end })
    local basic = core.base64(PROXY_USER .. ":" .. PROXY_PASSWORD)
    sweep({
      secrets = { basic },
      fault = function(pad) return page(pad, "proxy-authorization") end,
      call = function() return c:list_ticket_messages(fake.TICKET) end,
      quoted = function(pad) return HEAD .. ("x"):rep(pad) .. "Basic " .. basic .. TAIL end,
    })
    sweep({
      secrets = { PROXY_PASSWORD },
      fault = function(pad)
        local f = page(pad, "proxy-authorization")
        f.body = f.body .. "decoded: "
        f.decode64 = true
        return f
      end,
      call = function() return c:list_ticket_messages(fake.TICKET) end,
      quoted = function(pad)
        return HEAD .. ("x"):rep(pad) .. "decoded: " .. PROXY_USER .. ":" .. PROXY_PASSWORD .. TAIL
      end,
    })
  end)

  it("of the tenant token in the log id header", function()
    local tok = tenant_token(client)
    fake.fault({ path = PATH, method = "GET", status = 502, body = "bad gateway", echo = "authorization",
                 echo_header = "X-Tt-Logid" })
    events = {}
    local _, err = client:list_ticket_messages(fake.TICKET)
    assert.are.equal(502, err.status)
    assert.is_nil(leak(texts_of(err, events), tok))
    assert.are.equal("bad gatewayBearer ***", err.log_id)
  end)

  describe("errors.redact", function()
    it("takes a start of a secret at the end of a text, 4 bytes or more, for the secret", function()
      local s = { "abcdefgh" }
      assert.are.equal("x *** y ***", errors.redact(errors.new("http", { msg = "x abcdefgh y abcd" }), s).msg)
      assert.are.equal("x ***", errors.redact(errors.new("http", { msg = "x abcdefg" }), s).msg)
      assert.are.equal("x abc", errors.redact(errors.new("http", { msg = "x abc" }), s).msg)
      assert.are.equal("abcd x", errors.redact(errors.new("http", { msg = "abcd x" }), s).msg)
    end)
  end)
end)
