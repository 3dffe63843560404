-- helpdesk.events: every input encrypted and signed apart from the library
-- (spec/openssl.lua: the openssl command line and sha256sum).
local helpdesk = require "helpdesk"
local events = require "helpdesk.events"
local errors = require "helpdesk.errors"
local cjson = require "cjson"
local core = require "helpdesk.core"
local openssl = require "openssl"

local KEY = "kE9-event-key-Secret"
local TOKEN = "vT7-verification-Token"
local has_integers = math.type ~= nil

-- Every error the specs see goes through here: an invalid error naming
-- field, whose message and text hold neither secret.
local function refused(field, v, err)
  assert.is_nil(v)
  assert.is_true(errors.is(err))
  assert.are.equal("invalid", err.kind)
  assert.are.equal(field, err.field)
  for _, secret in ipairs({ KEY, TOKEN, openssl.sha256_hex(KEY) }) do
    assert.is_nil(err.msg:find(secret, 1, true), "secret in " .. err.msg)
    assert.is_nil(tostring(err):find(secret, 1, true), "secret in " .. tostring(err))
  end
  return err
end

local function v2(event_type, event, token)
  return cjson.encode({
    schema = "2.0",
    header = { event_id = "5e3702a84e847582be8db7fb73283c02", token = token or TOKEN, create_time = "1608725989000",
               event_type = event_type, tenant_key = "736588c92lxf175d", app_id = "cli_9e28cb7ba56a100e" },
    event = event,
  })
end

local TICKET_MESSAGE = {
  ticket_message_id = "6949088236610568211", message_id = "om_8baa3656c7b41900d29bf9104bf5310b",
  msg_type = "text", position = "10",
  sender_id = { user_id = "ca51d123", open_id = "ou_37019b7c830210acd88fdce886e25c71",
                union_id = "on_773f1ed1e3a3b7e8f52d5e2b2b23f2e0" },
  sender_type = 2, text = "my printer is on fire",
  ticket = { ticket_id = "6626871355780366331", ticket_type = 2, status = 2,
             comments = { content = "vip", created_at = 1616920429000, id = 1, user_name = "agent" } },
  event_id = "6949088240624222228", chat_id = "oc_7b6e9fa5d6d1f1e0e4f8c0c3a7b2d1e0",
  content = { content = "my printer is on fire", msg_type = "text", image_keys = cjson.empty_array },
}

local TICKET_CREATED = {
  ticket_id = "6626871355780366331", helpdesk_id = "6626871355780366330",
  guest = { id = { user_id = "u1", open_id = "ou_1", union_id = "on_1" }, name = "Li Lei" },
  stage = 1, status = 1, score = 0, created_at = 1616920429000, updated_at = 1616920429000, closed_at = 0,
  channel = 0, solve = 0, customized_fields = cjson.empty_array, chat_id = "oc_1",
  comments = { { content = "first", id = 1 }, { content = "second", id = 2 } },
}

local TICKET_UPDATED = {
  object = { ticket_id = "6626871355780366331", helpdesk_id = "6626871355780366330", stage = 2, status = 50,
             updated_at = 1616920500000, comments = { content = "closed by bot", id = 3 } },
  old_object = { stage = 1, status = 1, updated_at = 1616920429000 },
}

-- The headers and body of a push the way Feishu makes it: the plaintext
-- encrypted under key (unless plain), signed with key over the raw body.
local function push(plaintext, o)
  o = o or {}
  local key = o.key or KEY
  local body = o.plain and plaintext or cjson.encode({ encrypt = openssl.encrypt(key, plaintext, o.iv) })
  local ts = o.timestamp or tostring(os.time())
  local headers = {
    ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = "1634783431",
    ["X-Lark-Signature"] = openssl.signature(ts, "1634783431", o.sign_key or key, o.signed_body or body),
  }
  return headers, body
end

describe("helpdesk.events", function()
  local receiver

  before_each(function()
    receiver = assert(events.new { verification_token = TOKEN, encrypt_key = KEY })
  end)

  it("is helpdesk.events", function()
    assert.are.equal(events, helpdesk.events)
  end)

  it("decrypts the documents' test vector", function()
    assert.are.equal("hello world", events.decrypt("test key", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="))
    refused("encrypt", events.decrypt("test keys", "P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk="))
    assert.are.equal("hello world", events.decrypt("test key", openssl.encrypt("test key", "hello world")))
  end)

  it("encrypts as Feishu does, what openssl decrypts, with a fresh IV each time", function()
    for _, text in ipairs({ "", "x", ("a"):rep(16), ("b"):rep(17), "工单 ✓", ("z"):rep(5000) }) do
      local a = assert(events.encrypt(KEY, text))
      local b = assert(events.encrypt(KEY, text))
      assert.are_not.equal(a, b)
      assert.are.equal(text, openssl.decrypt(KEY, a))
      assert.are.equal(text, events.decrypt(KEY, b))
      -- IV, then whole blocks of padded ciphertext
      assert.are.equal(16 + (math.floor(#text / 16) + 1) * 16, #assert(core.base64_decode(a)))
    end
    refused("encrypt_key", events.encrypt("", "x"))
    refused("encrypt_key", events.encrypt(nil, "x"))
    refused("plaintext", events.encrypt(KEY, 42))
  end)

  it("signs as Feishu does: hex SHA-256 of timestamp, nonce, key and body", function()
    local body = '{"encrypt":"abc/def"}'
    assert.are.equal(openssl.signature("1700000000", "42", KEY, body), events.signature("1700000000", "42", KEY, body))
    refused("body", events.signature("1700000000", "42", KEY, nil))
    refused("nonce", events.signature("1700000000", 42, KEY, body))
    -- a request made so passes the receiver
    local r = assert(events.new({ encrypt_key = KEY, verification_token = TOKEN }))
    local enc = assert(events.encrypt(KEY, v2("helpdesk.ticket.created_v1", { ticket_id = "1" })))
    body = cjson.encode({ encrypt = enc })
    local ts = tostring(os.time())
    local ev = assert(r:decode({ ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = "n",
                                 ["X-Lark-Signature"] = events.signature(ts, "n", KEY, body) }, body))
    assert.are.equal("helpdesk.ticket.created_v1", ev.event_type)
  end)

  describe("new", function()
    it("checks its options, naming the field and never the value", function()
      refused("options", events.new())
      refused("options", events.new { verification_token = TOKEN, encrpyt_key = KEY })
      refused("verification_token", events.new {})
      refused("verification_token", events.new { verification_token = "" })
      refused("verification_token", events.new { verification_token = TOKEN .. "\n" })
      refused("encrypt_key", events.new { encrypt_key = 42 })
      refused("encrypt_key", events.new { verification_token = TOKEN, encrypt_key = KEY .. "\0" })
      refused("max_skew", events.new { encrypt_key = KEY, max_skew = 0 })
      refused("max_skew", events.new { encrypt_key = KEY, max_skew = true })
      refused("max_skew", events.new { encrypt_key = KEY, max_skew = 0 / 0 })
      refused("max_body_size", events.new { encrypt_key = KEY, max_body_size = 10 })
      assert.truthy(events.new { encrypt_key = KEY, max_skew = false })
      assert.truthy(events.new { verification_token = TOKEN })
    end)

    it("keeps the secrets out of the receiver's fields and its text", function()
      assert.are.equal("helpdesk.events.receiver", tostring(receiver))
      for k, v in pairs(receiver) do
        assert.is_nil(tostring(k):find(KEY, 1, true))
        assert.is_nil(tostring(v):find(KEY, 1, true))
      end
    end)
  end)

  describe("URL verification", function()
    local challenge = cjson.encode { challenge = "ajls384kdjx98XX", token = TOKEN, type = "url_verification" }

    it("answers a plain one", function()
      local plain_receiver = assert(events.new { verification_token = TOKEN })
      assert.are.same({ challenge = "ajls384kdjx98XX" }, plain_receiver:decode({}, challenge))
      assert.are.same({ challenge = "ajls384kdjx98XX" }, plain_receiver:decode(nil, challenge))
    end)

    it("answers an encrypted one before any signature check", function()
      local _, body = push(challenge)
      assert.are.same({ challenge = "ajls384kdjx98XX" }, receiver:decode({}, body))
      local headers = push(challenge, { sign_key = "not the key" })
      assert.are.same({ challenge = "ajls384kdjx98XX" }, receiver:decode(headers, body))
    end)

    it("refuses a wrong token, plain or encrypted", function()
      local wrong = cjson.encode { challenge = "x", token = "guess", type = "url_verification" }
      refused("token", assert(events.new { verification_token = TOKEN }):decode({}, wrong))
      local _, body = push(wrong)
      refused("token", receiver:decode({}, body))
      local _, no_token = push(cjson.encode { challenge = "x", type = "url_verification" })
      refused("token", receiver:decode({}, no_token))
    end)

    it("refuses an encrypted one under another key", function()
      local _, body = push(challenge, { key = "another key" })
      refused("encrypt", receiver:decode({}, body))
    end)
  end)

  describe("a helpdesk.ticket_message.created_v1", function()
    it("decoded, checked and read", function()
      local ev = assert(receiver:decode(push(v2("helpdesk.ticket_message.created_v1", TICKET_MESSAGE))))
      assert.are.equal("2.0", ev.schema)
      assert.are.equal("helpdesk.ticket_message.created_v1", ev.event_type)
      assert.are.equal("5e3702a84e847582be8db7fb73283c02", ev.event_id)
      assert.are.equal(1608725989000, ev.create_time)
      if has_integers then
        assert.are.equal("integer", math.type(ev.create_time))
        assert.are.equal("integer", math.type(ev.event.sender_type))
        assert.are.equal("integer", math.type(ev.event.ticket.comments[1].created_at))
      end
      assert.are.equal("cli_9e28cb7ba56a100e", ev.app_id)
      assert.are.equal("736588c92lxf175d", ev.tenant_key)
      assert.is_nil(ev.token)
      assert.is_nil(ev.header)
      assert.are.equal("6949088240624222228", ev.helpdesk_event_id)
      assert.are.equal("6949088240624222228", ev.event.event_id)
      assert.are.equal("10", ev.event.position)
      -- an object, as documented: a list of one
      assert.are.same({ { content = "vip", created_at = 1616920429000, id = 1, user_name = "agent" } },
        ev.event.ticket.comments)
      assert.are.equal("6626871355780366331", events.ticket_id(ev))
      assert.are.equal("text", events.message_type(ev))
      assert.are.same({ type = "guest", type_code = 2, user_id = "ca51d123",
                        open_id = "ou_37019b7c830210acd88fdce886e25c71",
                        union_id = "on_773f1ed1e3a3b7e8f52d5e2b2b23f2e0" }, events.sender(ev))
      assert.are.equal("my printer is on fire", events.text_of(ev))
      assert.are.equal("my printer is on fire", helpdesk.text_of(ev))
    end)

    it("with position a number and comments a list, as Feishu also sends them", function()
      local msg = cjson.decode(cjson.encode(TICKET_MESSAGE))
      msg.position, msg.ticket.comments = 10, { { content = "a" }, { content = "b" } }
      msg.sender_type, msg.sender_id = 1, nil
      msg.msg_type, msg.content = "image", { msg_type = "image", image_keys = { "img_1" }, image_key = "img_1" }
      local ev = assert(receiver:decode(push(v2("helpdesk.ticket_message.created_v1", msg))))
      assert.are.equal("10", ev.event.position)
      assert.are.same({ { content = "a" }, { content = "b" } }, ev.event.ticket.comments)
      assert.are.same({ type = "bot", type_code = 1 }, events.sender(ev))
      assert.are.equal("image", events.message_type(ev))
      refused("message", events.text_of(ev))
      refused("message", helpdesk.text_of(ev))
    end)
  end)

  it("never raises on odd field types, and the readers answer nil", function()
    local plain_receiver = assert(events.new { verification_token = TOKEN })
    local odd = {
      { position = 2.5, ticket = "t", content = "c", sender_id = { 1, 2 }, sender_type = {}, msg_type = 5 },
      { position = 1e300, ticket = { comments = "none", ticket_id = 66 }, content = { content = 7 }, text = {} },
      { position = -0.0, ticket = { comments = { 1, 2 } }, msg_type = "text", content = { msg_type = {} } },
      { position = 0, ticket = {}, event_id = 5 },
    }
    for _, e in ipairs(odd) do
      for _, t in ipairs({ "helpdesk.ticket_message.created_v1", "helpdesk.ticket.created_v1",
                           "helpdesk.ticket.updated_v1", "im.message.receive_v1" }) do
        local ev = assert(plain_receiver:decode({}, v2(t, e)))
        assert.is_string(ev.event.position == nil and "" or tostring(ev.event.position))
        assert.is_nil(events.ticket_id(ev))
        events.message_type(ev)
        events.sender(ev)
        events.text_of(ev)
        helpdesk.text_of(ev)
        assert.is_nil(ev.helpdesk_event_id)
      end
    end
    assert.are.equal("2.5", assert(plain_receiver:decode({}, v2("helpdesk.ticket_message.created_v1",
      { position = 2.5 }))).event.position)
    for _, v in ipairs({ 1, "x", true }) do
      assert.is_nil(events.ticket_id(v))
      assert.is_nil(events.sender(v))
      refused("message", events.text_of(v))
    end
  end)

  it("a helpdesk.ticket.created_v1", function()
    local ev = assert(receiver:decode(push(v2("helpdesk.ticket.created_v1", TICKET_CREATED))))
    assert.are.equal("helpdesk.ticket.created_v1", ev.event_type)
    assert.are.equal("6626871355780366331", events.ticket_id(ev))
    assert.are.equal("Li Lei", ev.event.guest.name)
    assert.are.equal(1616920429000, ev.event.created_at)
    assert.are.same({ { content = "first", id = 1 }, { content = "second", id = 2 } }, ev.event.comments)
    assert.is_nil(ev.helpdesk_event_id)
    assert.is_nil(events.message_type(ev))
    assert.is_nil(events.sender(ev))
    refused("message", events.text_of(ev))
  end)

  it("a helpdesk.ticket.updated_v1", function()
    local ev = assert(receiver:decode(push(v2("helpdesk.ticket.updated_v1", TICKET_UPDATED))))
    assert.are.equal("helpdesk.ticket.updated_v1", ev.event_type)
    assert.are.equal("6626871355780366331", events.ticket_id(ev))
    assert.are.equal(50, ev.event.object.status)
    assert.are.equal(1, ev.event.old_object.status)
    assert.are.same({ { content = "closed by bot", id = 3 } }, ev.event.object.comments)
    local now, before, code = events.ticket_status(ev)
    assert.are.equal("closed_by_bot", now)
    assert.are.equal("created", before)
    assert.are.equal(50, code)
  end)

  it("reads a ticket's status by name, whatever the code's type, and nothing of other events", function()
    local cases = { { 1, "created" }, { "2", "processing" }, { 3, "queued" }, { 4, "pending" },
                    { 5, "waiting_for_user" }, { 51, "closed_by_agent" }, { "52", "closed_by_user" },
                    { 77, "unknown" } }
    for _, case in ipairs(cases) do
      local t = {}
      for k, v in pairs(TICKET_CREATED) do t[k] = v end
      t.status = case[1]
      local ev = assert(receiver:decode(push(v2("helpdesk.ticket.created_v1", t))))
      local now, before, code = events.ticket_status(ev)
      assert.are.equal(case[2], now)
      assert.is_nil(before)
      assert.are.equal(tonumber(case[1]), code)
    end
    local t = {}
    for k, v in pairs(TICKET_CREATED) do t[k] = v end
    t.status = nil
    assert.is_nil((events.ticket_status(assert(receiver:decode(push(v2("helpdesk.ticket.created_v1", t)))))))
    local msg = assert(receiver:decode(push(v2("helpdesk.ticket_message.created_v1",
      { ticket = { ticket_id = "1" }, msg_type = "text", content = { content = "x", msg_type = "text" } }))))
    assert.is_nil((events.ticket_status(msg)))
    assert.is_nil((events.ticket_status({})))
  end)

  it("a v1 event_callback, plain and encrypted", function()
    local body = cjson.encode {
      uuid = "41b5f371157e3d5341b38b20396e77a3", token = TOKEN, ts = "1502199207.7171419", type = "event_callback",
      event = { type = "helpdesk.ticket_message.created_v1", app_id = "cli_1", tenant_key = "t_1",
                ticket = { ticket_id = "6626871355780366331" }, msg_type = "text",
                content = { content = "hi", msg_type = "text" } },
    }
    local plain_receiver = assert(events.new { verification_token = TOKEN })
    for _, ev in ipairs({ assert(plain_receiver:decode({}, body)), assert(receiver:decode(push(body))) }) do
      assert.are.equal("1.0", ev.schema)
      assert.are.equal("helpdesk.ticket_message.created_v1", ev.event_type)
      assert.are.equal("41b5f371157e3d5341b38b20396e77a3", ev.event_id)
      assert.are.equal(1502199207717, ev.create_time)
      if has_integers then assert.are.equal("integer", math.type(ev.create_time)) end
      assert.are.equal("cli_1", ev.app_id)
      assert.are.equal("t_1", ev.tenant_key)
      assert.is_nil(ev.token)
      assert.are.equal("6626871355780366331", events.ticket_id(ev))
      assert.are.equal("hi", helpdesk.text_of(ev))
    end
  end)

  it("a plain v2 event with a token alone", function()
    local plain_receiver = assert(events.new { verification_token = TOKEN })
    local ev = assert(plain_receiver:decode({}, v2("helpdesk.ticket.created_v1", TICKET_CREATED)))
    assert.are.equal("6626871355780366331", events.ticket_id(ev))
    refused("token", plain_receiver:decode({}, v2("helpdesk.ticket.created_v1", TICKET_CREATED, "guess")))
  end)

  it("reads the headers in any case, and a list of one value", function()
    local headers, body = push(v2("helpdesk.ticket.created_v1", TICKET_CREATED))
    local lower, upper, listed = {}, {}, {}
    for k, v in pairs(headers) do
      lower[k:lower()], upper[k:upper()], listed[k] = v, v, { v }
    end
    assert.truthy(receiver:decode(lower, body))
    assert.truthy(receiver:decode(upper, body))
    assert.truthy(receiver:decode(listed, body))
    listed["X-Lark-Signature"] = { headers["X-Lark-Signature"], headers["X-Lark-Signature"] }
    refused("headers", receiver:decode(listed, body))
    refused("headers", receiver:decode("X-Lark-Signature: x", body))
  end)

  describe("refuses", function()
    local event = v2("helpdesk.ticket_message.created_v1", TICKET_MESSAGE)

    it("a wrong verification token, even encrypted and signed", function()
      refused("token", receiver:decode(push(v2("helpdesk.ticket_message.created_v1", TICKET_MESSAGE, "guess"))))
      local no_token = cjson.decode(event)
      no_token.header.token = nil
      refused("token", receiver:decode(push(cjson.encode(no_token))))
    end)

    it("a tampered body: the signature covers the raw bytes", function()
      local headers, body = push(event)
      assert.truthy(receiver:decode(headers, body))
      -- the same JSON written otherwise: decrypts the same, signs differently
      refused("signature", receiver:decode(headers, " " .. body))
      refused("signature", receiver:decode(headers, (body:gsub('^{"encrypt":', '{ "encrypt" :'))))
      -- another event, valid, under the first one's signature
      local _, other = push(v2("helpdesk.ticket.created_v1", TICKET_CREATED))
      refused("signature", receiver:decode(headers, other))
      -- a plain event signed for another body
      refused("signature", receiver:decode(headers, event))
    end)

    it("a signature made with another key, changed, or missing", function()
      refused("signature", receiver:decode(push(event, { sign_key = "another key" })))
      local headers, body = push(event)
      local sig = headers["X-Lark-Signature"]
      headers["X-Lark-Signature"] = sig:sub(1, -2) .. (sig:sub(-1) == "0" and "1" or "0")
      refused("signature", receiver:decode(headers, body))
      headers["X-Lark-Signature"] = sig:upper()
      assert.truthy(receiver:decode(headers, body))
      for _, name in ipairs({ "X-Lark-Signature", "X-Lark-Request-Timestamp", "X-Lark-Request-Nonce" }) do
        local h = push(event)
        h[name] = nil
        refused("signature", receiver:decode(h, body))
      end
      refused("signature", receiver:decode({}, body))
      -- a plain event with an encrypt_key set needs the signature too
      refused("signature", receiver:decode({}, event))
      assert.truthy(receiver:decode(push(event, { plain = true })))
    end)

    it("an event encrypted under another key", function()
      refused("encrypt", receiver:decode(push(event, { key = "another key", sign_key = KEY })))
      local err = refused("encrypt", receiver:decode(push(event, { key = "another key" })))
      assert.are.equal("encrypt does not decrypt to a JSON object (wrong encrypt_key, or a damaged payload)", err.msg)
    end)

    it("a truncated, misaligned, badly padded, empty or not base64 ciphertext, all alike", function()
      local iv = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
      local raw = openssl.unhex(iv) .. openssl.ciphertext(KEY, iv, event)
      local function sent(encrypt)
        local body = cjson.encode { encrypt = encrypt }
        local ts = tostring(os.time())
        return { ["x-lark-request-timestamp"] = ts, ["x-lark-request-nonce"] = "n",
                 ["x-lark-signature"] = openssl.signature(ts, "n", KEY, body) }, body
      end
      assert.truthy(receiver:decode(sent(openssl.base64(raw))))
      local fill = 16 - #event % 16 + 16 -- 17..32 bytes: the last one says 3, the others 5
      local bad = {
        openssl.base64(raw:sub(1, -17)), -- a block short
        openssl.base64(raw:sub(1, -2)), -- not a multiple of 16
        openssl.base64(raw .. "x"),
        openssl.base64(raw:sub(1, 16)), -- the iv alone
        openssl.base64(raw:sub(1, 8)),
        openssl.encrypt(KEY, event .. string.rep("\5", fill - 1) .. "\3", iv, true),
        openssl.encrypt(KEY, string.rep(" ", 15) .. "\0", iv, true), -- padding 0
        openssl.encrypt(KEY, "[1,2]", iv), -- JSON, not an object
        openssl.encrypt(KEY, "not json", iv),
        "", "!!!!", openssl.base64(raw):sub(2), openssl.base64(raw) .. "\n", 42,
      }
      local first
      for _, encrypt in ipairs(bad) do
        local err = refused("encrypt", receiver:decode(sent(encrypt)))
        first = first or err.msg
        assert.are.equal(first, err.msg) -- no oracle in the message
      end
    end)

    it("an encrypted body when no encrypt_key is set", function()
      local _, body = push(event)
      refused("encrypt", assert(events.new { verification_token = TOKEN }):decode({}, body))
    end)

    it("a stale or future timestamp, unless max_skew is false", function()
      local stale = tostring(os.time() - 301 - 5)
      local future = tostring(os.time() + 301 + 5)
      local err = refused("timestamp", receiver:decode(push(event, { timestamp = stale })))
      assert.matches("behind", err.msg)
      err = refused("timestamp", receiver:decode(push(event, { timestamp = future })))
      assert.matches("ahead", err.msg)
      assert.truthy(receiver:decode(push(event, { timestamp = tostring(os.time() - 290) })))
      refused("timestamp", receiver:decode(push(event, { timestamp = "soon" })))
      refused("timestamp", receiver:decode(push(event, { timestamp = "-5" })))
      local lax = assert(events.new { verification_token = TOKEN, encrypt_key = KEY, max_skew = false })
      assert.truthy(lax:decode(push(event, { timestamp = stale })))
      local tight = assert(events.new { encrypt_key = KEY, max_skew = 10 })
      refused("timestamp", tight:decode(push(event, { timestamp = tostring(os.time() - 60) })))
    end)

    it("an oversized body", function()
      local big = string.rep(" ", events.MAX_BODY + 1 - #event) .. event
      refused("body", receiver:decode({}, big))
      local _, body = push(event)
      local small = assert(events.new { encrypt_key = KEY, max_body_size = 1024 })
      refused("body", small:decode({}, body .. string.rep(" ", 1024)))
    end)

    it("what is not a JSON object of a known shape", function()
      local plain_receiver = assert(events.new { verification_token = TOKEN })
      for _, body in ipairs({ "", "{", "[]", "[1]", "42", '"x"', "null", '{"schema":"2.0"}',
                              '{"schema":"1.0","header":{}}',
                              '{"type":"event_callback","uuid":"u"}', '{"hello":"world"}',
                              '{"schema":"2.0","header":{"event_id":"e"}}' }) do
        refused("body", plain_receiver:decode({}, body))
      end
      refused("body", plain_receiver:decode({}, nil))
      refused("body", plain_receiver:decode({}, { "{}" }))
    end)
  end)
end)
