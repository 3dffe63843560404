local cjson = require "cjson"
local errors = require "helpdesk.errors"
local fake = require "fake"
local helpdesk = require "helpdesk"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TEXT = { msg_type = "text", content = { text = "hi" } }

-- No secret of the fake's credentials may show in any text of an error.
local function assert_no_secret(err, client)
  local texts = { tostring(err), tostring(client) }
  for _, v in pairs(err) do texts[#texts + 1] = tostring(v) end
  local secrets = { fake.APP_SECRET, fake.HELPDESK_TOKEN, "t-fake" }
  for _, text in ipairs(texts) do
    for _, s in ipairs(secrets) do assert.is_nil(text:find(s, 1, true), text) end
  end
end

describe("errors", function()
  local client
  before_each(function()
    fake.reset()
    client = fake.client()
  end)

  it("reads as one line with kind, code, status, message and log id", function()
    local e = errors.new("api", { code = 154401, status = 401, msg = "Ticket already be closed", log_id = "L1" })
    assert.are.equal("helpdesk api error 154401 (HTTP 401): Ticket already be closed [log_id L1]", tostring(e))
    assert.are.equal("helpdesk invalid error: ticket_id must be x", tostring(errors.invalid("ticket_id", "must be x")))
    assert.is_true(errors.is(e))
    local multi = errors.new("api", { code = 1, msg = "line one\nline two\r\n" })
    assert.are.equal("helpdesk api error 1: line one line two ", tostring(multi))
    assert.is_false(errors.is({ kind = "api" }))
  end)

  it("is a transport error when nothing listens, and says it was not sent", function()
    local c = fake.client({ base_url = fake.dead_url })
    local data, err = c:send_ticket_message(fake.TICKET, TEXT)
    assert.is_nil(data)
    assert.are.equal("transport", err.kind)
    assert.is_false(err.sent)
    assert.are.equal(7, err.curl_code)
    assert.matches("^helpdesk transport error: fetching the tenant token failed, so nothing was sent: "
      .. "Failed to connect", tostring(err))
    assert_no_secret(err, c)
  end)

  it("is an http error for a 5xx with an HTML body", function()
    fake.fault({ path = PATH, status = 503, body = "<html><body>Service Unavailable</body></html>" })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("http", err.kind)
    assert.are.equal(503, err.status)
    assert.is_nil(err.code)
    assert.matches("FAKE$", err.log_id)
    assert.matches("Service Unavailable", err.msg)
    assert_no_secret(err, client)
    assert.are.equal(1, #fake.requests_to(PATH)) -- a POST is not repeated
  end)

  it("is an http error for a redirect, which is not followed, whatever its body", function()
    fake.fault({ path = PATH, status = 302, headers = { Location = "http://evil.invalid/steal" },
                 body = '{"code":1,"msg":"moved"}' })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("http", err.kind)
    assert.are.equal(302, err.status)
    assert.matches("redirect", err.msg)
    assert.are.equal(1, #fake.requests_to(PATH))
  end)

  it("is an api error 154001 for a wrong helpdesk credential, naming neither token", function()
    local c = fake.client({ helpdesk_token = "wrong-helpdesk-token" })
    local _, err = c:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("api", err.kind)
    assert.are.equal(154001, err.code)
    assert.are.equal(401, err.status)
    if math.type then assert.are.equal("integer", math.type(err.code)) end
    assert.is_nil(tostring(err):find("wrong-helpdesk-token", 1, true))
    assert.are.equal(0, fake.state().ticket_messages[fake.TICKET] or 0)
  end)

  it("is an api error for a 4xx or 5xx with a Feishu body", function()
    fake.fault({ path = PATH, status = 500, body = '{"code":155000,"msg":"Internal error"}' })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("api", err.kind)
    assert.are.equal(155000, err.code)
    assert.are.equal(500, err.status)
  end)

  it("is a decode error for a 200 that is not JSON", function()
    fake.fault({ path = PATH, status = 200, body = "OK" })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("decode", err.kind)
    assert.are.equal(200, err.status)
    assert.matches("not a JSON object: OK", err.msg)
  end)

  it("is a decode error for code 0 without data, or without message_id", function()
    fake.fault({ path = PATH, status = 200, body = '{"code":0,"msg":"success"}' })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("decode", err.kind)
    assert.matches("lacks data", err.msg)
    fake.fault({ path = PATH, status = 200, body = '{"code":0,"msg":"success","data":{}}' })
    _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("decode", err.kind)
    assert.matches("message_id", err.msg)
    assert.matches("FAKE$", err.log_id)
  end)

  it("is a decode error for a listing whose messages are not a list", function()
    fake.fault({ path = PATH, method = "GET", status = 200, body = '{"code":0,"data":{"messages":"x","total":1}}' })
    local _, err = client:list_ticket_messages(fake.TICKET)
    assert.are.equal("decode", err.kind)
  end)

  it("takes the log id from X-Request-Id when X-Tt-Logid is absent", function()
    fake.fault({ path = PATH, status = 400, logid = false, headers = { ["X-Request-Id"] = "req-42" },
                 body = '{"code":154000,"msg":"Bad request"}' })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("req-42", err.log_id)
  end)

  it("never shows a secret, even when a server echoes one", function()
    fake.fault({ path = PATH, status = 400, body = cjson.encode({ code = 154001,
      msg = "bad credential " .. fake.HELPDESK_TOKEN .. " / " .. fake.APP_SECRET }) })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("api", err.kind)
    assert.matches("bad credential %*%*%* / %*%*%*", err.msg)
    assert_no_secret(err, client)
  end)

  it("never show the token a batch item went with, however many others took its place meanwhile", function()
    local clock = require "helpdesk.clock"
    local st = helpdesk.memory_store()
    local key = "helpdesk:token:" .. fake.url .. " " .. fake.APP_ID
    local function fresh_token()
      local other = helpdesk.memory_store()
      local c = fake.client({ store = other, rate_limit = false })
      assert(c:list_ticket_messages(fake.TICKET, { page_size = 1 }))
      c:close()
      return other:get(key):match("^%S+ %S+ (.+)$")
    end
    local logged, posts = {}, 0
    local batcher = fake.client({ store = st, rate_limit = false, logger = function(e)
      if e.error then logged[#logged + 1] = e.error end
      if e.event == "request" and e.method == "POST" then
        posts = posts + 1
        if posts >= 2 then -- after the slow first item went out, another worker refreshed
          st:set(key, string.format("%.3f %.3f %s", clock.now() + 3000, clock.now() + 7000, fresh_token()), 7000)
        end
      end
    end })
    -- the first item: slow, then a 500 quoting its Authorization
    fake.fault({ path = PATH, method = "POST", status = 500, delay = 0.5, body = "upstream failed: ",
                 echo = "Authorization" })
    local items = {}
    for i = 1, 7 do items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "b" .. i } } end
    local results = assert(batcher:send_ticket_messages(items, { concurrency = 2 }))
    local first
    for _, q in ipairs(fake.requests_to(PATH)) do
      if q.method == "POST" then first = q.headers.authorization:match("Bearer (.+)") break end
    end
    assert.is_table(results[1].err)
    assert.matches("upstream failed", results[1].err.msg)
    for i = 1, #items do
      if results[i].err then assert.is_nil(tostring(results[i].err):find(first, 1, true), tostring(results[i].err)) end
    end
    for _, l in ipairs(logged) do assert.is_nil(l:find(first, 1, true), l) end
  end)

  it("never show in a log id quoting the request, on a success too, nor in one that is not a string", function()
    local events = {}
    local c = fake.client({ max_retries = 0, logger = function(e) events[#events + 1] = e end })
    assert(c:send_ticket_message(fake.TICKET, TEXT))
    local tok = fake.requests_to(PATH)[1].headers.authorization:match("Bearer (.+)")
    local function clean(text)
      text = tostring(text)
      for _, secret in ipairs({ tok, fake.HELPDESK_TOKEN, fake.APP_SECRET }) do
        assert.is_nil(text:find(secret, 1, true), text)
      end
    end
    -- a 2xx the send cannot use; a page of messages that is no list; a success
    fake.fault({ path = PATH, method = "POST", status = 200, body = '{"code":0,"x":"',
                 echo = "Authorization", echo_header = "X-Tt-Logid" })
    local _, err = c:send_ticket_message(fake.TICKET, TEXT)
    clean(err)
    clean(err.log_id)
    fake.fault({ path = PATH, method = "GET", status = 200, body = '{"code":0,"data":{"messages":{"a":1}}}',
                 echo = "Authorization", echo_header = "X-Tt-Logid" })
    _, err = c:list_ticket_messages(fake.TICKET)
    clean(err)
    events = {}
    fake.fault({ path = PATH, method = "POST", status = 200, body = '{"code":0,"data":{"message_id":"om_1"}}',
                 echo = "X-Lark-Helpdesk-Authorization", decode64 = true, echo_header = "X-Tt-Logid" })
    local data, meta = c:send_ticket_message(fake.TICKET, TEXT)
    assert.is_table(data)
    if type(meta) == "table" then clean(meta.log_id) end
    local responses = 0
    for _, e in ipairs(events) do
      if e.event == "response" then
        responses = responses + 1
        clean(e.log_id)
      end
    end
    assert.are.equal(1, responses)
    -- a log id that is a list quoting the request is no log id
    fake.fault({ path = PATH, method = "GET", status = 400, logid = false,
                 body = '{"code":99991499,"msg":"bad","error":{"log_id":["', echo = "Authorization", after = '"]}}' })
    _, err = c:list_ticket_messages(fake.TICKET)
    assert.is_nil(err.log_id)
    clean(require("cjson").encode(err))
  end)

  it("never show in a dump of the client, with a store of the caller's or not", function()
    local function dump(v, seen, out)
      if type(v) == "table" then
        if seen[v] then return out end
        seen[v] = true
        for k, x in pairs(v) do
          out[#out + 1] = tostring(k)
          dump(x, seen, out)
        end
      else
        out[#out + 1] = tostring(v)
      end
      return out
    end
    for _, opts in ipairs({ {}, { store = helpdesk.memory_store() } }) do
      local c = fake.client(opts)
      assert(c:send_ticket_message(fake.TICKET, TEXT))
      local text = table.concat(dump(c, {}, {}), " ")
      for _, secret in ipairs({ fake.APP_SECRET, fake.HELPDESK_TOKEN, "t-fake" }) do
        assert.is_nil(text:find(secret, 1, true), text)
      end
    end
  end)

  it("never show a proxy's password as libcurl sends it, percent-decoded, nor as Basic", function()
    -- the fake is the proxy too: a page quoting the Proxy-Authorization it got
    local hostport = fake.url:match("^http://(.*)$")
    local events = {}
    local c = fake.client({ proxy = "http://b%6Fb:s3cr%40t-proxy-pw@" .. hostport, rate_limit = false,
                            logger = function(e) events[#events + 1] = e.error end })
    fake.fault({ path = PATH, method = "POST", status = 502, body = "proxy saw ", echo = "proxy-authorization" })
    fake.fault({ path = PATH, method = "POST", status = 502, body = "proxy saw ", echo = "proxy-authorization",
                 decode64 = true })
    local shown = {}
    for _ = 1, 2 do
      local _, err = c:send_ticket_message(fake.TICKET, TEXT, { max_retries = 0 })
      assert.is_table(err)
      assert.matches("proxy saw", err.msg)
      shown[#shown + 1] = tostring(err)
    end
    for _, e in ipairs(events) do shown[#shown + 1] = e end
    for _, text in ipairs(shown) do
      for _, piece in ipairs({ "s3cr@t-proxy-pw", "s3cr%40t", "Ym9iOnMzY3JAdC1wcm94eS1wdw" }) do
        assert.is_nil(text:find(piece, 1, true), text)
      end
    end
    -- nine bytes written, three sent: too short to redact
    local _, err = helpdesk.new(fake.options({ proxy = "http://bob:%61%62%63@" .. hostport }))
    assert.are.equal("invalid", err.kind)
    assert.are.equal("proxy", err.field)
  end)

  it("never show a token another client of the store fetched while a batch ran, quoted by a 500 page", function()
    local clock = require "helpdesk.clock"
    local st = helpdesk.memory_store()
    local key = "helpdesk:token:" .. fake.url .. " " .. fake.APP_ID
    local logged, fresh, armed = {}, nil, false
    local sharer = fake.client({ store = st, rate_limit = false, logger = function(e)
      if e.error then logged[#logged + 1] = e.error end
      if e.event == "request" and e.url:find("/messages", 1, true) and armed and not fresh then
        -- another worker sharing the store refreshed the token just now
        local other = helpdesk.memory_store()
        assert(fake.client({ store = other }):send_ticket_message(fake.TICKET, TEXT))
        fresh = other:get(key):match("^%S+ %S+ (.+)$")
        st:set(key, string.format("%.3f %.3f %s", clock.now() + 3000, clock.now() + 7000, fresh), 7000)
        fake.fault({ path = PATH, method = "POST", status = 500, times = 10, skip = 1,
                     body = "upstream failed: Authorization: Bearer " .. fresh })
      end
    end })
    assert(sharer:send_ticket_message(fake.TICKET, TEXT))
    armed = true
    local items = {}
    for i = 1, 4 do items[i] = { ticket_id = fake.TICKET, msg_type = "text", content = { text = "b" .. i } } end
    local results = assert(sharer:send_ticket_messages(items, { concurrency = 4 }))
    assert.is_string(fresh)
    local failed = 0
    for i = 1, 4 do
      if results[i].err then
        failed = failed + 1
        assert.is_nil(tostring(results[i].err):find(fresh, 1, true), tostring(results[i].err))
      end
    end
    assert.is_true(failed > 0, "no item met the page")
    for _, l in ipairs(logged) do assert.is_nil(l:find(fresh, 1, true), l) end
  end)

  describe("of a page that quotes a secret", function()
    local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
    -- distinctive secrets: none of their 4-byte pieces occurs in ordinary text
    local SECRET = "Zq8xV2mK9pLw4NcR7tYbHj3D"
    local HD_TOKEN = "Kx7pQ2vN8sLm4RtW9zYc"

    -- Every 4-byte piece of each secret that shows in text.
    local function pieces_shown(text, secrets)
      local shown = {}
      for _, s in ipairs(secrets) do
        for i = 1, #s - 3 do
          local piece = s:sub(i, i + 3)
          if text:find(piece, 1, true) then shown[#shown + 1] = piece end
        end
      end
      return shown
    end

    it("shows none of it, wherever the excerpt's cut falls", function()
      local events = {}
      local c = fake.client({ app_secret = SECRET, helpdesk_token = HD_TOKEN,
        logger = function(e) if e.error then events[#events + 1] = e.error end end })
      local auth = require("helpdesk.core").base64(fake.HELPDESK_ID .. ":" .. HD_TOKEN)
      for pad = 60, 140 do
        events = {}
        local quoted = '"app_secret":"' .. SECRET .. '","auth":"' .. auth .. '","token":"' .. HD_TOKEN .. '"'
        fake.fault({ path = TOKEN_PATH, status = 502, body = "<html>" .. string.rep("x", pad) .. quoted .. "</html>" })
        local _, err = c:send_ticket_message(fake.TICKET, TEXT, { max_retries = 0 })
        assert.are.equal("http", err.kind)
        local texts = { tostring(err), err.msg }
        for _, e in ipairs(events) do texts[#texts + 1] = e end
        for _, text in ipairs(texts) do
          local shown = pieces_shown(text, { SECRET, HD_TOKEN, auth })
          assert.are.same({}, shown, "pad " .. pad .. ": " .. text)
        end
      end
    end)

    it("shows none of it escaped as JSON, in a log id, inside a longer one, or the proxy's password", function()
      local slashed = "se/cr/et-Very-Long-Secret"
      local inner = "abcd1234"
      local events = {}
      local c = fake.client({ app_secret = slashed, helpdesk_token = "XXXX-" .. inner .. "-YYYY-ZZZZ",
        proxy = "http://user:hunter2-proxy-pw@127.0.0.1:1", logger = function(e) events[#events + 1] = e.error end })
      -- the proxy is never reached: the fake's pages come by way of a fault on a direct client
      local direct = fake.client({ app_secret = slashed, helpdesk_token = "XXXX-" .. inner .. "-YYYY-ZZZZ",
        logger = function(e) events[#events + 1] = e.error end })
      fake.fault({ path = TOKEN_PATH, status = 502, headers = { ["X-Tt-Logid"] = slashed },
        body = '{"app_secret":"se\\/cr\\/et-Very-Long-Secret","token":"XXXX-abcd1234-YYYY-ZZZZ"}' })
      local _, err = direct:send_ticket_message(fake.TICKET, TEXT, { max_retries = 0 })
      local _, perr = c:send_ticket_message(fake.TICKET, TEXT, { max_retries = 0 })
      local texts = { tostring(err), tostring(perr), err.log_id }
      for _, e in ipairs(events) do texts[#texts + 1] = e end
      for _, text in ipairs(texts) do
        for _, piece in ipairs({ "cr\\/et", "Very-Long", "abcd1234", "YYYY", "hunter2",
                                 require("helpdesk.core").base64("user:hunter2-proxy-pw") }) do
          assert.is_nil(text:find(piece, 1, true), piece .. " in " .. text)
        end
      end
    end)

    it("keeps ordinary words whole: only four bytes or more of a secret count at an end", function()
      local c = fake.client({ app_secret = SECRET })
      fake.fault({ path = TOKEN_PATH, status = 504, body = "Gateway Timeout Z" })
      local _, err = c:send_ticket_message(fake.TICKET, TEXT, { max_retries = 0 })
      assert.matches("Gateway Timeout Z", tostring(err), 1, true)
      fake.fault({ path = TOKEN_PATH, status = 502, body = string.rep("x", 119) .. "\195\169 more" })
      _, err = c:send_ticket_message(fake.TICKET, TEXT, { max_retries = 0 })
      assert.matches("x…", tostring(err), 1, true) -- cut before the two-byte character, not inside it
    end)

    it("shows none of it when the page ends in the middle of a secret", function()
      local c = fake.client({ app_secret = SECRET })
      for keep = 4, #SECRET - 1 do
        fake.fault({ path = TOKEN_PATH, status = 502, body = 'gateway: "app_secret":"' .. SECRET:sub(1, keep) })
        local _, err = c:send_ticket_message(fake.TICKET, TEXT, { max_retries = 0 })
        assert.are.equal("http", err.kind)
        assert.is_nil(tostring(err):find(SECRET:sub(1, keep), 1, true), tostring(err))
      end
    end)
  end)

  it("is a transport error when the answer is larger than max_body_size", function()
    local c = fake.client({ max_body_size = 2048 })
    fake.fault({ path = PATH, method = "GET", status = 200, body = string.rep(" ", 10000) .. "{}" })
    local _, err = c:list_ticket_messages(fake.TICKET)
    assert.are.equal("transport", err.kind)
    assert.is_true(err.too_large)
    assert(c:list_ticket_messages(fake.TICKET))
  end)

  it("is an error for a closed client, not a crash", function()
    client:close()
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("invalid", err.kind)
    assert.matches("closed", err.msg)
    _, err = client:send_ticket_messages({ { ticket_id = fake.TICKET, msg_type = "text", content = { text = "x" } } })
    assert.are.equal("client", err.field)
    _, err = client:list_ticket_messages(fake.TICKET)
    assert.are.equal("client", err.field)
    assert.are.equal(0, #fake.requests_to("/open-apis/helpdesk"))
  end)

  it("never resends a POST whose connection died before the answer", function()
    assert(client:send_ticket_message(fake.TICKET, TEXT)) -- so the next one reuses the connection
    fake.fault({ path = PATH, close = true })
    local _, err = client:send_ticket_message(fake.TICKET, TEXT)
    assert.are.equal("transport", err.kind)
    assert.is_true(err.sent)
    assert.matches("may have been processed", tostring(err))
    assert.are.equal(2, #fake.requests_to(PATH)) -- libcurl's own resend was refused
    -- and the client works for the next call
    assert(client:send_ticket_message(fake.TICKET, TEXT))
    assert.are.equal(2, fake.state().ticket_messages[fake.TICKET])
  end)

  it("lets libcurl retry a GET on a connection that died", function()
    assert(client:list_ticket_messages(fake.TICKET))
    fake.fault({ path = PATH, method = "GET", close = true })
    assert(client:list_ticket_messages(fake.TICKET))
    assert.are.equal(3, #fake.requests_to(PATH))
  end)

  it("shows no secret in tostring(client)", function()
    local text = tostring(client)
    assert.matches("^helpdesk.client %(http://127.0.0.1:%d+, app cli_fake_app, helpdesk 6939767543285809180%)$", text)
    for k, v in pairs(client) do
      assert.is_nil(tostring(v):find(fake.APP_SECRET, 1, true), k)
      assert.is_nil(tostring(v):find(fake.HELPDESK_TOKEN, 1, true), k)
    end
    assert.is_nil(helpdesk.new(fake.options({ app_id = false, app_secret = false,
      tenant_access_token = "t-secret-fixed" })):__tostring():find("t-secret-fixed", 1, true))
  end)
end)
