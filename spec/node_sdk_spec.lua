-- helpdesk.events against the official Node SDK (@larksuiteoapi/node-sdk,
-- which `make node-sdk` installs into bench/node), both ways: what the SDK's
-- cipher makes we decrypt, what the fake's push (the openssl command line)
-- makes the SDK decrypts and accepts, and a set of requests that our
-- receiver:decode accepts exactly where the SDK's EventDispatcher does, but
-- for the differences the README lists ("Against the official Node SDK").
-- One node process per run (spec/node/sdk_events.js, without the ASan
-- runtime `make sanitize` preloads); requests are made apart from the
-- library (spec/openssl.lua).
local cjson = require "cjson"
local events = require "helpdesk.events"
local fake = require "fake"
local openssl = require "openssl"

local KEY = "nK2-node-Encrypt-key"
local TOKEN = "nT5-node-verification-Token"
local SDK = "bench/node/node_modules/@larksuiteoapi/node-sdk/package.json"

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs spec/node/sdk_events.js on batch; its results. Fails, saying why,
-- when node or the SDK is not there: this spec is never skipped.
local function run_node(batch)
  local has_node = os.execute("command -v node >/dev/null 2>&1")
  assert(has_node == true or has_node == 0,
    "node is not installed: the Node SDK cross-check needs node and npm (Debian: nodejs, npm)")
  assert(file_exists(SDK), "the official Node SDK is not installed in bench/node: run `make node-sdk` "
    .. "(bench/node-sdk-install; it needs npm and the npm registry; see bench/node/npm.log)")
  local input, output, errors = os.tmpname(), os.tmpname(), os.tmpname()
  local f = assert(io.open(input, "wb"))
  f:write(cjson.encode(batch))
  f:close()
  local ok = os.execute(("env -u LD_PRELOAD node spec/node/sdk_events.js < %s > %s 2> %s")
    :format(input, output, errors))
  local out, err = read_all(output), read_all(errors)
  os.remove(input); os.remove(output); os.remove(errors)
  assert(ok == true or ok == 0, "spec/node/sdk_events.js failed: " .. err)
  return cjson.decode(out)
end

local function v2(event_type, event, token)
  return cjson.encode({
    schema = "2.0",
    header = { event_id = "f7984f25108f8137722bb63cee927e66", token = token or TOKEN, create_time = "1608725989000",
               event_type = event_type, tenant_key = "736588c92lxf175d", app_id = "cli_9e28cb7ba56a100e" },
    event = event,
  })
end

local MESSAGE = "helpdesk.ticket_message.created_v1"
local TICKET_MESSAGE = {
  ticket_message_id = "6949088236610568211", message_id = "om_8baa3656c7b41900d29bf9104bf5310b",
  msg_type = "text", position = "10", sender_type = 2, text = "工单: the printer is on fire",
  sender_id = { open_id = "ou_37019b7c830210acd88fdce886e25c71" },
  ticket = { ticket_id = "6626871355780366331", ticket_type = 2, status = 2 },
  event_id = "6949088240624222228", chat_id = "oc_7b6e9fa5d6d1f1e0e4f8c0c3a7b2d1e0",
  content = { content = "工单: the printer is on fire", msg_type = "text" },
}
local TICKET_CREATED = { ticket_id = "6626871355780366331", helpdesk_id = "6626871355780366330", stage = 1,
                         status = 1, chat_id = "oc_1" }

local function v1_event(token)
  return cjson.encode({ uuid = "41b5f371157e3e6a4e5b3f4c2f1d0a9c", token = token or TOKEN, ts = "1502199207.7171419",
                        type = "event_callback",
                        event = { type = "helpdesk.ticket.created_v1", app_id = "cli_1", ticket_id = "1" } })
end

local function challenge(token)
  return cjson.encode({ challenge = "ajls384kdjx98XX", token = token or TOKEN, type = "url_verification" })
end

-- {"encrypt":"…"} as Feishu writes it: "/" not escaped (lua-cjson would
-- write "\/", and the SDK, which signs the body re-serialised, would refuse it)
-- (made once for each text and key: the openssl runs are what takes time)
local made = {}
local function encrypted(plaintext, key)
  local id = (key or KEY) .. "\0" .. plaintext
  made[id] = made[id] or
    '{"encrypt":"' .. openssl.encrypt(key or KEY, plaintext, "0f0e0d0c0b0a09080706050403020100") .. '"}'
  return made[id]
end

-- Headers signed as Feishu signs: timestamp, nonce, key and the raw body.
local function signed(body, o)
  o = o or {}
  local ts, nonce = o.ts or tostring(os.time()), o.nonce or "1634567"
  local sig = openssl.signature(ts, o.signed_nonce or nonce, o.key or KEY, o.signed_body or body)
  return { ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = nonce, ["X-Lark-Signature"] = sig }
end

-- A card action of the old protocol (no envelope), written as Feishu writes
-- it, and its signature: SHA-1 with the verification token.
local OLD_CARD = '{"open_id":"ou_1","user_id":"u_1","open_message_id":"om_card_1","open_chat_id":"oc_1",'
  .. '"tenant_key":"t_1","token":"c-0123","action":{"tag":"button","value":{"solved":"1"}}}'
local NEW_CARD = v2("card.action.trigger", { operator = { open_id = "ou_1" }, token = "c-0123",
                                             action = { tag = "button", value = { solved = "1" } },
                                             context = { open_message_id = "om_card_1", open_chat_id = "oc_1" } })

local function card_signed(body, o)
  o = o or {}
  local ts, nonce = o.ts or tostring(os.time()), "98765"
  return { ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = nonce,
           ["X-Lark-Signature"] = openssl.card_signature(ts, nonce, o.token or TOKEN, body) }
end

local FULL = { encrypt_key = KEY, verification_token = TOKEN }
local KEY_ONLY = { encrypt_key = KEY }
local TOKEN_ONLY = { verification_token = TOKEN }

-- Each case: a receiver's settings, a maker of the request (called in
-- setup, so that timestamps are fresh), whether we and the SDK accept it,
-- and where we refuse, the field. Where the two differ, why: the README's
-- list of differences, one by one.
local CASES = {
  { "a good encrypted event, signed", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE)); return signed(body), body end, true, true },
  { "a good encrypted ticket.created event, signed", FULL, function()
      local body = encrypted(v2("helpdesk.ticket.created_v1", TICKET_CREATED)); return signed(body), body end,
    true, true },
  { "a v1 event_callback, encrypted and signed", FULL, function()
      local body = encrypted(v1_event()); return signed(body), body end, true, true },
  { "a plain (unencrypted) event, signed", FULL, function()
      local body = v2(MESSAGE, TICKET_MESSAGE); return signed(body), body end, true, true },
  { "a wrong signature", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE)); return signed(body, { signed_nonce = "1" }), body end,
    false, false, "signature" },
  { "a signature made with another encrypt key", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE)); return signed(body, { key = "other" }), body end,
    false, false, "signature" },
  { "an altered body (another ciphertext under the old signature)", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE))
      return signed(body), encrypted(v2(MESSAGE, TICKET_MESSAGE, "other-token")) end, false, false, "signature" },
  { "an altered timestamp", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE))
      local h = signed(body)
      h["X-Lark-Request-Timestamp"] = tostring(tonumber(h["X-Lark-Request-Timestamp"]) - 1)
      return h, body end, false, false, "signature" },
  { "an altered nonce", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE))
      local h = signed(body)
      h["X-Lark-Request-Nonce"] = "1634568"
      return h, body end, false, false, "signature" },
  { "no signature headers at all", FULL, function()
      return {}, encrypted(v2(MESSAGE, TICKET_MESSAGE)) end, false, false, "signature" },
  { "no X-Lark-Signature", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE))
      local h = signed(body)
      h["X-Lark-Signature"] = nil
      return h, body end, false, false, "signature" },
  { "a payload encrypted with another key, signed", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE), "another key"); return signed(body), body end,
    false, false, "encrypt" },
  { "a body that is not JSON, signed", FULL, function()
      local body = "{\"encrypt\": "; return signed(body), body end, false, false, "body" },
  { "the URL verification, encrypted, unsigned", FULL, function() return {}, encrypted(challenge()) end,
    true, true },
  { "the URL verification, plain, unsigned", FULL, function() return {}, challenge() end, true, true },
  { "a plain event, right token, no encrypt key, unsigned", TOKEN_ONLY, function()
      return {}, v2(MESSAGE, TICKET_MESSAGE) end, true, true },
  { "a v1 event_callback, plain, no encrypt key", TOKEN_ONLY, function() return {}, v1_event() end, true, true },
  { "an encrypted body when no encrypt key is set", TOKEN_ONLY, function()
      return {}, encrypted(v2(MESSAGE, TICKET_MESSAGE)) end, false, false, "encrypt" },
  { "a body that is not JSON, no encrypt key", TOKEN_ONLY, function() return {}, "not json" end,
    false, false, "body" },
  -- the differences
  { "a wrong verification token in a good signed event", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE, "wrong-token")); return signed(body), body end,
    false, true, "token", "the SDK never checks the verification token" },
  { "a wrong verification token, no encrypt key", TOKEN_ONLY, function()
      return {}, v2(MESSAGE, TICKET_MESSAGE, "wrong-token") end,
    false, true, "token", "the SDK never checks the verification token" },
  { "the URL verification with a wrong token", FULL, function() return {}, encrypted(challenge("wrong-token")) end,
    false, true, "token", "the SDK answers any URL verification" },
  { "a signed event an hour old", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE))
      return signed(body, { ts = tostring(os.time() - 3600) }), body
    end, false, true, "timestamp", "the SDK has no timestamp window" },
  { "a signed event ten minutes ahead", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE))
      return signed(body, { ts = tostring(os.time() + 600) }), body
    end, false, true, "timestamp", "the SDK has no timestamp window" },
  { "an unsigned event an hour old, no encrypt key", TOKEN_ONLY, function()
      return { ["X-Lark-Request-Timestamp"] = tostring(os.time() - 3600) }, v2(MESSAGE, TICKET_MESSAGE) end,
    false, true, "timestamp", "the SDK has no timestamp window" },
  { "a body with spaces, signed over its raw bytes", FULL, function()
      local body = v2(MESSAGE, TICKET_MESSAGE):gsub('":', '": '); return signed(body), body end,
    true, false, nil, "the SDK signs JSON.stringify of the parsed body, not the bytes received" },
  { "a body with spaces, signed over the body re-serialised", FULL, function()
      local compact = v2(MESSAGE, TICKET_MESSAGE)
      local body = compact:gsub('":', '": ')
      return signed(body, { signed_body = compact }), body end,
    false, true, "signature", "the SDK signs JSON.stringify of the parsed body, not the bytes received" },
  { "a body whose \"/\" are escaped (lua-cjson's JSON), signed over its raw bytes", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE)):gsub("/", "\\/")
      assert(body:find("\\/"), "no / in the ciphertext: change the iv")
      return signed(body), body end,
    true, false, nil, "the SDK signs JSON.stringify of the parsed body, not the bytes received" },
  { "no X-Lark-Request-Nonce, signed as if it were the text 'undefined'", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE))
      local h = signed(body, { signed_nonce = "undefined" })
      h["X-Lark-Request-Nonce"] = nil
      return h, body end, false, true, "signature", "the SDK hashes a missing header as 'undefined'" },
  { "the signature in upper-case hex", FULL, function()
      local body = encrypted(v2(MESSAGE, TICKET_MESSAGE))
      local h = signed(body)
      h["X-Lark-Signature"] = h["X-Lark-Signature"]:upper()
      return h, body end, true, false, nil, "we read the hex signature in any case, the SDK in lower case only" },
  -- card actions, against the SDK's CardActionHandler
  { "a card action (old protocol), SHA-1 signed with the token", FULL, function()
      return card_signed(OLD_CARD), OLD_CARD end, true, true, card = true },
  { "a card action (new protocol), encrypted and signed", FULL, function()
      local body = encrypted(NEW_CARD); return signed(body), body end, true, true, card = true },
  { "a card action (old protocol) with a wrong signature", FULL, function()
      return card_signed(OLD_CARD, { token = "other" }), OLD_CARD end, false, false, "signature", card = true },
  { "a card action (old protocol) an hour old", FULL, function()
      return card_signed(OLD_CARD, { ts = tostring(os.time() - 3600) }), OLD_CARD end,
    false, true, "timestamp", "the SDK has no timestamp window", card = true },
  { "a card action (old protocol), no verification token set", KEY_ONLY, function()
      return card_signed(OLD_CARD), OLD_CARD end, false, true, "signature",
    "the SDK takes any old-protocol card action when it has no verification token", card = true },
  { "a card action (old protocol) encrypted, SHA-1 signed with the token", FULL, function()
      local body = encrypted(OLD_CARD); return card_signed(body), body end, true, false, nil,
    "the SDK checks an encrypted old-protocol action as an event (SHA-256 with the encrypt key)", card = true },
}

-- Plaintexts for the ciphers: empty, 1 byte, a block and either side of it,
-- 1 KiB, UTF-8; and random keys (printable and UTF-8).
local function plaintexts()
  local kib = {}
  for i = 1, 1024 do kib[i] = string.char(32 + (i * 7) % 95) end
  return { "", "x", ("a"):rep(15), ("b"):rep(16), ("c"):rep(17), table.concat(kib),
           "工单 🎫 Ünïcödé — «ticket» ✓", v2(MESSAGE, TICKET_MESSAGE) }
end

local function random_keys(seed)
  math.randomseed(seed)
  local keys = { KEY, "test key", "密钥-ключ-🔑" }
  for _ = 1, 5 do
    local k = {}
    for i = 1, math.random(1, 64) do k[i] = string.char(math.random(33, 126)) end
    keys[#keys + 1] = table.concat(k)
  end
  return keys
end

describe("the official Node SDK", function()
  local seed = os.time()
  local keys, texts = random_keys(seed), plaintexts()
  local pushed, requests, ours_encrypted = nil, {}, {}
  local sdk

  setup(function()
    local batch = { encrypt = {}, decrypt = {}, dispatch = {} }
    -- (a) the SDK's cipher encrypts, we decrypt: every text under every key
    for _, key in ipairs(keys) do
      for _, text in ipairs(texts) do batch.encrypt[#batch.encrypt + 1] = { key = key, plain = hex(text) } end
    end
    -- (a) the fake's push (openssl enc and dgst), caught by the fake itself
    fake.reset()
    local event = v2(MESSAGE, TICKET_MESSAGE)
    fake.push({ url = fake.url .. "/sink/events", event = event, encrypt_key = KEY, delays = {} })
    local deadline = os.time() + 10
    repeat
      local got = fake.requests_to("/sink/events")
      pushed = got[1]
      if not pushed then os.execute("sleep 0.05") end
    until pushed or os.time() > deadline
    assert(pushed, "the fake's push did not arrive in 10 s")
    pushed.event = event
    batch.decrypt[1] = { key = KEY, encrypt = cjson.decode(pushed.body).encrypt }
    batch.dispatch[1] = { encrypt_key = KEY, verification_token = TOKEN, headers = pushed.headers,
                          body = hex(pushed.body) }
    -- (a) we encrypt (events.encrypt), the SDK decrypts; and a request we
    -- make as `helpdesk events push` does, its dispatcher accepts
    for _, key in ipairs(keys) do
      for _, text in ipairs(texts) do
        ours_encrypted[#ours_encrypted + 1] = { key = key, text = text }
        batch.decrypt[#batch.decrypt + 1] = { key = key, encrypt = assert(events.encrypt(key, text)) }
      end
    end
    local body = '{"encrypt":"' .. assert(events.encrypt(KEY, event)) .. '"}'
    local ts = tostring(os.time())
    batch.dispatch[2] = { encrypt_key = KEY, verification_token = TOKEN, body = hex(body),
                          headers = { ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = "n1",
                                      ["X-Lark-Signature"] = events.signature(ts, "n1", KEY, body) } }
    -- (b) the requests
    for i, c in ipairs(CASES) do
      local headers, raw = c[3]()
      requests[i] = { headers = headers, body = raw }
      batch.dispatch[i + 2] = { encrypt_key = c[2].encrypt_key, verification_token = c[2].verification_token,
                                headers = headers, body = hex(raw), card = c.card }
    end
    sdk = run_node(batch)
  end)

  it("is installed, and is the version the lock file names", function()
    local lock = cjson.decode(read_all("bench/node/package-lock.json"))
    assert.are.equal(lock.packages["node_modules/@larksuiteoapi/node-sdk"].version, sdk.sdk_version)
  end)

  it("encrypts what our receiver decrypts to the same bytes, whatever the length, text or key (seed "
     .. seed .. ")", function()
    local n = 0
    for _, key in ipairs(keys) do
      for _, text in ipairs(texts) do
        n = n + 1
        local value = sdk.encrypt[n]
        assert.is_string(value)
        local plain, err = events.decrypt(key, value)
        assert.are.equal(text, plain, "key " .. key .. ", " .. #text .. " bytes: " .. tostring(err))
        -- and a body of it: our receiver (the event) or a refusal of the JSON only
        local r = assert(events.new({ encrypt_key = key }))
        local body = cjson.encode({ encrypt = value })
        local is_event = text == texts[#texts]
        local ev, derr = r:decode(is_event and signed(body, { key = key }) or {}, body)
        if is_event then
          assert.are.equal(MESSAGE, ev and ev.event_type, tostring(derr))
        else
          assert.are.equal("encrypt", derr and derr.field)
        end
      end
    end
    assert.are.equal(#keys * #texts, #sdk.encrypt)
  end)

  it("decrypts what the fake pushes (openssl enc), and its dispatcher accepts the push", function()
    assert.is_true(sdk.decrypt[1].ok, sdk.decrypt[1].error)
    assert.are.equal(hex(pushed.event), sdk.decrypt[1].plain)
    local got = sdk.dispatch[1]
    assert.is_true(got.accepted, cjson.encode(got))
    assert.are.equal(MESSAGE, got.event_type)
    -- and so does our receiver, the same request
    local r = assert(events.new(FULL))
    local ev, err = r:decode(pushed.headers, pushed.body)
    assert.are.equal(MESSAGE, ev and ev.event_type, tostring(err))
  end)

  it("decrypts what we encrypt (events.encrypt), and accepts a request we sign (events.signature)", function()
    for i, o in ipairs(ours_encrypted) do
      local got = sdk.decrypt[i + 1]
      assert.is_true(got.ok, got.error)
      assert.are.equal(hex(o.text), got.plain, "key " .. o.key .. ", " .. #o.text .. " bytes")
    end
    assert.are.equal(#ours_encrypted + 1, #sdk.decrypt)
    local got = sdk.dispatch[2]
    assert.is_true(got.accepted, cjson.encode(got))
    assert.are.equal(MESSAGE, got.event_type)
  end)

  describe("accepts a request exactly when our receiver:decode does", function()
    for i, c in ipairs(CASES) do
      local name, opts, _, ours, theirs, field, why = c[1], c[2], c[3], c[4], c[5], c[6], c[7]
      local label = name .. ": we " .. (ours and "accept" or "refuse") .. ", the SDK "
        .. (theirs and "accepts" or "refuses") .. (why and (" (a difference: " .. why .. ")") or "")
      it(label, function()
        local got = sdk.dispatch[i + 2]
        local r = assert(events.new(opts))
        local ev, err = r:decode(requests[i].headers, requests[i].body)
        assert.are.equal(theirs, got.accepted, "the SDK: " .. cjson.encode(got))
        assert.are.equal(ours, ev ~= nil, "ours: " .. tostring(err))
        if not ev then assert.are.equal(field, err.field, tostring(err)) end
        -- a difference is one the README lists, and each listed one is here
        assert.are.equal(ours ~= theirs, why ~= nil)
        if ev and got.accepted then
          if c.card then
            assert.are.equal(events.card_action(ev).open_message_id, got.open_message_id)
            assert.are.equal("om_card_1", got.open_message_id)
          elseif ev.challenge then
            assert.are.equal(ev.challenge, got.challenge)
          else
            assert.are.equal(ev.event_type, got.event_type)
            if ev.schema == "1.0" then
              assert.are.equal(ev.event_id, got.uuid)
            elseif ev.helpdesk_event_id then
              -- the SDK spreads the event over its header: the inner event_id hides the header's
              assert.are.equal(ev.helpdesk_event_id, got.event_id)
            else
              assert.are.equal(ev.event_id, got.event_id)
            end
          end
        end
      end)
    end
  end)
end)
