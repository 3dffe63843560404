local core = require "helpdesk.core"
local fake = require "fake"

describe("helpdesk.core", function()
  describe("base64", function()
    it("encodes the RFC 4648 test vectors", function()
      local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                        fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
      for input, want in pairs(vectors) do assert.are.equal(want, core.base64(input)) end
    end)

    it("encodes binary bytes and long input", function()
      assert.are.equal("AP8=", core.base64("\0\255"))
      local long = string.rep("helpdesk_id:helpdesk_token", 200)
      local out = core.base64(long)
      assert.are.equal(math.ceil(#long / 3) * 4, #out)
      assert.are.equal(core.base64(long:sub(1, 768)), out:sub(1, 1024))
    end)

    it("raises on a non-string", function()
      assert.has_error(function() core.base64({}) end)
    end)
  end)

  describe("random", function()
    it("draws the bytes asked for, different each time, and refuses other lengths", function()
      local seen = {}
      for n = 1, 64 do
        local r = core.random(n)
        assert.are.equal(n, #r)
        if n >= 8 then
          assert.is_nil(seen[r], "drawn twice")
          seen[r] = true
        end
      end
      for _, bad in ipairs({ 0, -1, 65 }) do
        assert.has_error(function() core.random(bad) end)
      end
      assert.has_error(function() core.random("x") end)
    end)
  end)

  describe("normalize", function()
    local cjson = require "cjson"
    local has_integers = math.type ~= nil

    it("turns integral floats into integers and drops nulls under string keys", function()
      local v = core.normalize(cjson.decode(
        '{"code":0,"total":12,"x":1.5,"big":1e300,"edge":9007199254740993,"gone":null,'
        .. '"list":[1,null,{"created_at":1700000000123,"none":null}]}'), cjson.null)
      assert.are.equal(0, v.code)
      assert.are.equal(1.5, v.x)
      assert.is_nil(v.gone)
      assert.are.equal(cjson.null, v.list[2]) -- an array keeps its place
      assert.is_nil(v.list[3].none)
      assert.are.equal(1700000000123, v.list[3].created_at)
      if has_integers then
        assert.are.equal("integer", math.type(v.code))
        assert.are.equal("integer", math.type(v.total))
        assert.are.equal("integer", math.type(v.list[1]))
        assert.are.equal("integer", math.type(v.list[3].created_at))
        assert.are.equal("float", math.type(v.x))
        assert.are.equal("float", math.type(v.big)) -- past 2^53: no exact integer
        assert.are.equal("float", math.type(v.edge))
      end
    end)

    it("passes other values through and refuses a cycle", function()
      assert.are.equal("text", core.normalize("text", cjson.null))
      assert.is_nil(core.normalize(nil, cjson.null))
      local t = {}
      t.self = t
      assert.has_error(function() core.normalize(t, cjson.null) end)
    end)
  end)

  describe("multi", function()
    local cjson = require "cjson"
    local TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
    local function post()
      return { method = "POST", url = fake.url .. TOKEN_PATH, headers = { ["Content-Type"] = "application/json" },
               body = cjson.encode({ app_id = fake.APP_ID, app_secret = fake.APP_SECRET }) }
    end
    -- results by slot, waiting a bounded number of times
    local function drain(m)
      local got = {}
      for _ = 1, 50 do
        for _, r in ipairs(m:wait(1)) do got[r.slot] = r end
        if m:pending() == 0 then break end
      end
      return got
    end
    before_each(function() fake.reset() end)

    it("runs transfers at once, each on a connection it keeps for the next", function()
      local m = assert(core.multi(3))
      for i = 1, 3 do assert.are.equal(i, m:add(post())) end
      assert.has_error(function() m:add(post()) end) -- every slot taken
      assert.are.equal(3, m:pending())
      local got = drain(m)
      for i = 1, 3 do
        assert.are.equal(200, got[i].status)
        assert.matches("tenant_access_token", got[i].body, 1, true)
        assert.matches("^application/json", got[i].headers["content-type"])
      end
      local first, n = {}, 0
      for _, r in ipairs(fake.requests()) do
        if not first[r.connection] then n = n + 1 end
        first[r.connection] = true
      end
      assert.are.equal(3, n) -- three in flight at once: three connections
      for _ = 1, 3 do m:add(post()) end
      drain(m)
      local reqs = fake.requests()
      assert.are.equal(6, #reqs)
      for i = 4, 6 do assert.is_true(first[reqs[i].connection], "request " .. i .. " on a new connection") end
      m:close()
      m:close()
      assert.matches("closed", tostring(m))
      assert.has_error(function() m:add(post()) end)
    end)

    it("never resends a POST whose kept-alive connection drops", function()
      local m = assert(core.multi(1))
      m:add(post())
      assert.are.equal(200, drain(m)[1].status)
      fake.fault({ path = TOKEN_PATH, close = true })
      m:add(post())
      local r = drain(m)[1]
      assert.is_nil(r.status)
      assert.is_true(r.error.sent)
      assert.is_number(r.error.curl_code)
      assert.are.equal(2, #fake.requests_to(TOKEN_PATH)) -- the dropped one went out once
      m:add(post()) -- and the slot works again
      assert.are.equal(200, drain(m)[1].status)
      m:close()
    end)

    it("waits for nothing when nothing runs, and frees a slot a bad request took", function()
      local m = assert(core.multi(1))
      assert.are.same({}, m:wait(0))
      assert.has_error(function() m:add({ method = "DELETE", url = fake.url }) end)
      assert.has_error(function() m:add({ url = fake.url, headers = { ["X-Bad"] = "a\r\nb" } }) end)
      assert.are.equal(0, m:pending())
      assert.are.equal(1, m:add({ url = fake.url .. "/_fake/state" }))
      assert.are.equal(200, drain(m)[1].status)
      assert.has_error(function() core.multi(0) end)
      m:close()
    end)

    it("drops what is in flight when closed or collected", function()
      fake.config({ latency = 0.2 })
      local m = assert(core.multi(2))
      m:add(post())
      m:add(post())
      m:close() -- valgrind and ASan check that nothing leaks
      assert.matches("closed", tostring(m))
      assert.has_error(function() m:pending() end)
      local g = assert(core.multi(2))
      g:add(post())
      g = nil -- luacheck: ignore 311
      collectgarbage()
      collectgarbage()
    end)
  end)

  describe("handle", function()
    local h
    before_each(function()
      fake.reset()
      h = assert(core.new())
    end)
    after_each(function() h:close() end)

    it("makes a GET and returns status, body and lower-case headers", function()
      local status, body, headers = h:request({ url = fake.url .. "/open-apis/helpdesk/v1/tickets/1/messages" })
      assert.are.equal(400, status)
      assert.matches('"code":99991661', body, 1, true)
      assert.are.equal("application/json; charset=utf-8", headers["content-type"])
      assert.matches("FAKE$", headers["x-tt-logid"])
    end)

    it("sends a POST body and the given headers as they are", function()
      local status = h:request({
        method = "POST", url = fake.url .. "/open-apis/auth/v3/tenant_access_token/internal",
        headers = { ["Content-Type"] = "application/json", ["X-Custom"] = "a b  c" },
        body = '{"app_id":"cli_fake_app","app_secret":"fake-app-secret"}',
      })
      assert.are.equal(200, status)
      local r = fake.requests()[1]
      assert.are.equal("POST", r.method)
      assert.are.equal('{"app_id":"cli_fake_app","app_secret":"fake-app-secret"}', r.body)
      assert.are.equal("a b  c", r.headers["x-custom"])
    end)

    it("reuses one connection for many requests (keep-alive)", function()
      for _ = 1, 5 do
        assert.are.equal(400, (h:request({ url = fake.url .. "/open-apis/helpdesk/v1/tickets/1/messages" })))
      end
      local reqs = fake.requests()
      assert.are.equal(5, #reqs)
      for i = 2, 5 do assert.are.equal(reqs[1].connection, reqs[i].connection) end
      -- a second handle opens a connection of its own
      local other = assert(core.new())
      other:request({ url = fake.url .. "/open-apis/helpdesk/v1/tickets/1/messages" })
      other:close()
      assert.are_not.equal(reqs[1].connection, fake.requests()[6].connection)
    end)

    it("rejects CR, LF and NUL in header values and bad header names", function()
      for _, bad in ipairs({ "a\r\nX-Injected: 1", "a\nb", "a\0b" }) do
        assert.has_error(function()
          h:request({ url = fake.url .. "/_fake/state", headers = { ["X-Test"] = bad } })
        end)
      end
      assert.has_error(function()
        h:request({ url = fake.url .. "/_fake/state", headers = { ["Bad Name"] = "x" } })
      end)
      assert.has_error(function() h:request({ url = fake.url .. "/\r\nX: y" }) end)
      assert.are.equal(0, #fake.requests())
    end)

    it("rejects methods other than GET and POST", function()
      assert.has_error(function() h:request({ method = "DELETE", url = fake.url }) end)
    end)

    it("reports a refused connection as not sent", function()
      local ok, info = h:request({ url = fake.dead_url .. "/x", connect_timeout = 2 })
      assert.is_nil(ok)
      assert.are.equal(7, info.curl_code) -- CURLE_COULDNT_CONNECT
      assert.is_false(info.sent)
      assert.matches("connect", info.message)
    end)

    it("refuses schemes other than http and https", function()
      local ok, info = h:request({ url = "file:///etc/passwd" })
      assert.is_nil(ok)
      assert.are.equal(1, info.curl_code) -- CURLE_UNSUPPORTED_PROTOCOL
    end)

    it("caps the response body", function()
      fake.fault({ path = "/big", status = 200, body = string.rep("x", 100000) })
      local ok, info = h:request({ url = fake.url .. "/big", max_body = 4096 })
      assert.is_nil(ok)
      assert.is_true(info.too_large)
      assert.is_true(info.sent)
      assert.matches("exceeds the limit", info.message)
      -- and the handle works afterwards
      assert.are.equal(200, (h:request({ url = fake.url .. "/_fake/state" })))
    end)

    it("does not follow redirects", function()
      fake.fault({ path = "/moved", status = 302, headers = { Location = "http://example.invalid/" } })
      local status, _, headers = h:request({ url = fake.url .. "/moved" })
      assert.are.equal(302, status)
      assert.are.equal("http://example.invalid/", headers.location)
    end)

    it("times out and then works again", function()
      fake.fault({ path = "/slow", delay = 1, status = 200, body = "{}" })
      local ok, info = h:request({ url = fake.url .. "/slow", timeout = 0.2 })
      assert.is_nil(ok)
      assert.are.equal(28, info.curl_code) -- CURLE_OPERATION_TIMEDOUT
      assert.is_true(info.sent)
      assert.are.equal(200, (h:request({ url = fake.url .. "/_fake/state" })))
    end)

    it("closes once, however often close is called", function()
      h:close()
      h:close()
      assert.matches("closed", tostring(h))
      assert.has_error(function() h:request({ url = fake.url }) end, nil)
    end)

    if _VERSION == "Lua 5.4" then
      it("closes a to-be-closed handle when its block ends", function()
        local probe = assert(load([[
          local core = ...
          local kept
          do
            local x <close> = assert(core.new())
            kept = x
          end
          return kept
        ]]))
        assert.matches("closed", tostring(probe(core)))
      end)
    end

    it("frees handles that are only collected", function()
      for _ = 1, 50 do
        local x = assert(core.new())
        assert.are.equal(200, (x:request({ url = fake.url .. "/_fake/state" })))
      end
      collectgarbage()
      collectgarbage()
      assert.matches("open", tostring(h))
    end)
  end)

  it("has a monotonic clock and a sleep", function()
    local t0 = core.monotime()
    core.sleep(0.01)
    assert.is_true(core.monotime() - t0 >= 0.009)
  end)
end)

describe("helpdesk.core cryptography", function()
  local openssl = require "openssl"
  local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end

  it("sha256: the FIPS 180-2 vectors, over one string or several", function()
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", hex(core.sha256("")))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", hex(core.sha256("abc")))
    assert.are.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
      hex(core.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    assert.are.equal(hex(core.sha256("abc")), hex(core.sha256("a", "", "bc")))
    local long = string.rep("\0\1\255x", 50000)
    assert.are.equal(openssl.sha256_hex(long), hex(core.sha256(long)))
    assert.has_error(function() core.sha256() end)
    assert.has_error(function() core.sha256("a", {}) end)
  end)

  it("sha1: the FIPS 180-2 vectors, over one string or several", function()
    assert.are.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", hex(core.sha1("")))
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(core.sha1("abc")))
    assert.are.equal("84983e441c3bd26ebaae4aa1f95129e5e54670f1",
      hex(core.sha1("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
    assert.are.equal(hex(core.sha1("abc")), hex(core.sha1("a", "", "bc")))
    local long = string.rep("\0\1\255x", 50000)
    assert.are.equal(openssl.sha1_hex(long), hex(core.sha1(long)))
    assert.has_error(function() core.sha1() end)
    assert.has_error(function() core.sha1("a", {}) end)
  end)

  it("equal: equal strings only", function()
    assert.is_true(core.equal("", ""))
    assert.is_true(core.equal("abc\0d", "abc\0d"))
    assert.is_false(core.equal("abc\0d", "abc\0e"))
    assert.is_false(core.equal("abc", "ab"))
    assert.is_false(core.equal("", "a"))
    assert.has_error(function() core.equal("a", nil) end)
  end)

  it("base64_decode: the RFC 4648 vectors, and nothing but strict base64", function()
    local vectors = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                      fooba = "Zm9vYmE=", foobar = "Zm9vYmFy", ["\0\255\254"] = "AP/+" }
    for want, text in pairs(vectors) do assert.are.equal(want, core.base64_decode(text)) end
    local long = string.rep("\0\1\2\253\254\255", 3000)
    assert.are.equal(long, core.base64_decode(openssl.base64(long)))
    for _, bad in ipairs({ "Zg", "Zg=", "Zh==", "Zm9=", "Z===", "====", "Zg==Zg==", "Zm9v\n", " Zm9v", "Zm-v",
                           "Zm_v", "Zm9v=", "Zm\0v" }) do
      local v, err = core.base64_decode(bad)
      assert.is_nil(v, bad)
      assert.are.equal("not strict base64 (RFC 4648 alphabet, padded, no spaces)", err)
    end
  end)

  it("aes256cbc_decrypt: the documents' test vector", function()
    local raw = core.base64_decode("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=")
    assert.are.equal("hello world", core.aes256cbc_decrypt(core.sha256("test key"), raw:sub(1, 16), raw:sub(17)))
  end)

  it("aes256cbc_decrypt: what openssl enc encrypts, for every padding length", function()
    local key, iv = core.sha256("k"), openssl.unhex("000102030405060708090a0b0c0d0e0f")
    for n = 0, 33 do
      local plain = string.rep("x", n) .. (n > 0 and "\0" or "")
      local ct = openssl.ciphertext("k", "000102030405060708090a0b0c0d0e0f", plain)
      assert.are.equal(plain, core.aes256cbc_decrypt(key, iv, ct))
    end
  end)

  it("aes256cbc_decrypt: nil and a reason for bad lengths and padding, never a raise", function()
    local key, iv = core.sha256("k"), openssl.unhex("000102030405060708090a0b0c0d0e0f")
    local ct = openssl.ciphertext("k", "000102030405060708090a0b0c0d0e0f", "0123456789abcdef0123456789")
    local function fails(why, ...)
      local v, err = core.aes256cbc_decrypt(...)
      assert.is_nil(v)
      assert.are.equal(why, err)
    end
    fails("key must be 32 bytes", key:sub(2), iv, ct)
    fails("key must be 32 bytes", key .. "x", iv, ct)
    fails("iv must be 16 bytes", key, iv:sub(2), ct)
    fails("ciphertext is empty", key, iv, "")
    fails("ciphertext length is not a multiple of 16", key, iv, ct:sub(1, 31))
    fails("ciphertext length is not a multiple of 16", key, iv, ct .. "x")
    fails("bad padding (wrong key, or damaged ciphertext)", core.sha256("other"), iv, ct)
    fails("bad padding (wrong key, or damaged ciphertext)", key, iv, ct:sub(1, 16)) -- a block short
    -- padded by hand: the last byte says 3, the two before it are not 3
    local bad = openssl.ciphertext("k", "000102030405060708090a0b0c0d0e0f", "0123456789abc\1\2\3", true)
    fails("bad padding (wrong key, or damaged ciphertext)", key, iv, bad)
    local zero = openssl.ciphertext("k", "000102030405060708090a0b0c0d0e0f", "0123456789abcde\0", true)
    fails("bad padding (wrong key, or damaged ciphertext)", key, iv, zero)
    local big = openssl.ciphertext("k", "000102030405060708090a0b0c0d0e0f", "0123456789abcde\17", true)
    fails("bad padding (wrong key, or damaged ciphertext)", key, iv, big)
    local full = openssl.ciphertext("k", "000102030405060708090a0b0c0d0e0f", string.rep("\16", 16), true)
    assert.are.equal("", core.aes256cbc_decrypt(key, iv, full))
    assert.has_error(function() core.aes256cbc_decrypt(key, iv, nil) end)
    assert.has_error(function() core.aes256cbc_decrypt({}, iv, ct) end)
  end)

  it("aes256cbc_encrypt: what openssl enc makes, byte for byte, for every padding length", function()
    local key, iv = core.sha256("k"), openssl.unhex("000102030405060708090a0b0c0d0e0f")
    for n = 0, 33 do
      local plain = string.rep("y", n) .. (n > 0 and "\0" or "")
      assert.are.equal(openssl.ciphertext("k", "000102030405060708090a0b0c0d0e0f", plain),
                       core.aes256cbc_encrypt(key, iv, plain))
    end
    local function fails(why, ...)
      local v, err = core.aes256cbc_encrypt(...)
      assert.is_nil(v)
      assert.are.equal(why, err)
    end
    fails("key must be 32 bytes", key:sub(2), iv, "x")
    fails("iv must be 16 bytes", key, iv .. "x", "x")
    assert.has_error(function() core.aes256cbc_encrypt(key, iv, nil) end)
  end)
end)
