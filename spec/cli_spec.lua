-- The helpdesk command, run as a real process (bin/helpdesk on the Lua that
-- runs the specs) against the fake Feishu: output, exit codes, what the fake
-- received.
local cjson = require "cjson"
local fake = require "fake"
local cli = require "helpdesk.cli"
local openssl = require "openssl"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local LUA = arg and arg[-1] or "lua5.4"
local TMP = os.tmpname()
local SECRETS = { fake.APP_SECRET, fake.HELPDESK_TOKEN, "t-fake" }

local ENV = {
  FEISHU_BASE_URL = fake.url, FEISHU_APP_ID = fake.APP_ID, FEISHU_APP_SECRET = fake.APP_SECRET,
  FEISHU_HELPDESK_ID = fake.HELPDESK_ID, FEISHU_HELPDESK_TOKEN = fake.HELPDESK_TOKEN,
}

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function slurp(name)
  local f = assert(io.open(name, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local function write(name, text)
  local f = assert(io.open(name, "wb"))
  f:write(text)
  f:close()
  return name
end

-- Runs `helpdesk args…` with env (false removes a variable) and stdin text
-- (or stdin_closed; stdout_closed and stderr_closed likewise); returns exit
-- code, stdout, stderr.
local function helpdesk(args, opts)
  opts = opts or {}
  local env = {}
  for k, v in pairs(ENV) do env[k] = v end
  for k, v in pairs(opts.env or {}) do env[k] = v or nil end
  local parts = { "env -u FEISHU_BASE_URL -u FEISHU_APP_ID -u FEISHU_APP_SECRET -u FEISHU_HELPDESK_ID",
                  "-u FEISHU_HELPDESK_TOKEN -u FEISHU_TENANT_ACCESS_TOKEN -u FEISHU_ENCRYPT_KEY",
                  "-u FEISHU_VERIFICATION_TOKEN -u FEISHU_REDIS_URL -u FEISHU_REDIS_PREFIX -u FEISHU_REDIS_TIMEOUT "
                 .. "-u FEISHU_REDIS_CA_FILE -u FEISHU_STORE_SHARE ASAN_OPTIONS=detect_leaks=0",
                  "LUA_PATH=" .. quote(package.path), "LUA_CPATH=" .. quote(package.cpath) }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. quote(v) end
  parts[#parts + 1] = LUA .. " bin/helpdesk"
  for _, a in ipairs(args) do parts[#parts + 1] = quote(a) end
  write(TMP .. ".in", opts.stdin or "")
  local stdin = opts.stdin_closed and " <&-" or " <" .. TMP .. ".in"
  local stdout = opts.stdout_closed and " >&-" or " >" .. (opts.stdout or TMP .. ".out")
  local cmd = table.concat(parts, " ") .. stdin .. stdout
  if opts.tty then
    -- stderr on a pseudo-terminal (script(1)); what it shows lands in .err
    cmd = "script -qec " .. quote(cmd .. "; echo $? >" .. TMP .. ".rc") .. " /dev/null >" .. TMP .. ".err"
  else
    cmd = cmd .. (opts.stderr_closed and " 2>&-" or " 2>" .. TMP .. ".err") .. "; echo $? >" .. TMP .. ".rc"
  end
  write(TMP .. ".out", "")
  os.execute(cmd)
  return tonumber(slurp(TMP .. ".rc")), slurp(TMP .. ".out"), slurp(TMP .. ".err")
end

local function assert_no_secret(...)
  for i = 1, select("#", ...) do
    local text = select(i, ...)
    for _, s in ipairs(SECRETS) do assert.is_nil(text:find(s, 1, true), text) end
  end
end

local function last_request(path)
  local reqs = fake.requests_to(path)
  return reqs[#reqs]
end

-- The last message body sent to path, its content (a JSON string on the wire) decoded.
local function last_body(path)
  local body = cjson.decode(last_request(path).body)
  body.content = cjson.decode(body.content)
  return body
end

describe("the helpdesk command", function()
  before_each(function() fake.reset() end)
  teardown(function()
    for _, ext in ipairs({ "", ".in", ".out", ".err", ".rc", ".json" }) do os.remove(TMP .. ext) end
  end)

  describe("help", function()
    for _, cmd in ipairs({ "send", "bot", "messages" }) do
      it("--help of " .. cmd .. " says its usage and the exit codes, and sends nothing", function()
        local rc, out, err = helpdesk({ cmd, "--help" })
        assert.are.equal(0, rc)
        assert.matches("Usage: helpdesk " .. cmd, out, 1, true)
        assert.matches("Exit codes:", out, 1, true)
        assert.are.equal("", err)
        local rc2, out2 = helpdesk({ "help", cmd })
        assert.are.equal(0, rc2)
        assert.are.equal(out, out2)
        assert.are.equal(0, #fake.requests_to("/open-apis"))
      end)
    end

    it("no command is a usage error with the list of commands on stderr", function()
      local rc, out, err = helpdesk({})
      assert.are.equal(2, rc)
      assert.are.equal("", out)
      assert.matches("messages TICKET", err, 1, true)
      rc, out, err = helpdesk({ "sned", "x" })
      assert.are.equal(2, rc)
      assert.are.equal("", out)
      assert.matches("unknown command sned", err, 1, true)
    end)

    it("--version prints the library's version", function()
      local rc, out = helpdesk({ "--version" })
      assert.are.equal(0, rc)
      assert.are.equal("helpdesk " .. require("helpdesk")._VERSION .. "\n", out)
    end)
  end)

  describe("send", function()
    it("sends a text and prints the message_id Feishu gave", function()
      local rc, out, err = helpdesk({ "send", fake.TICKET, "--text", "hello 'world'" })
      assert.are.equal(0, rc, err)
      local body = last_body(PATH)
      assert.are.same({ msg_type = "text", content = { text = "hello 'world'" } }, body)
      local listed = assert(fake.client():list_ticket_messages(fake.TICKET))
      assert.are.equal(listed.messages[#listed.messages].message_id .. "\n", out)
      assert.are.equal("", err)
    end)

    it("reads the text from stdin with --text -, without the final newline", function()
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "-" }, { stdin = "line 1\nline 2\n" })
      assert.are.equal(0, rc, err)
      assert.are.equal("line 1\nline 2", last_body(PATH).content.text)
    end)

    it("makes a post from a plain text file: a title line, then lines", function()
      local file = write(TMP .. ".txt", "Nightly report\nbuild ok\n\n  3 tests slow\n")
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--post", file, "--lang=en_us" })
      assert.are.equal(0, rc, err)
      assert.are.same({ msg_type = "post", content = { post = { en_us = { title = "Nightly report", content = {
        { { tag = "text", text = "build ok" } }, { { tag = "text", text = "  3 tests slow" } } } } } } },
        last_body(PATH))
    end)

    it("takes a post's content as JSON, with or without the post key, and a whole message with --json", function()
      local link = { tag = "a", text = "link", href = "https://x.test" }
      local content = { zh_cn = { title = "t", content = { { link } } } }
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--post", "-" }, { stdin = cjson.encode(content) })
      assert.are.equal(0, rc, err)
      assert.are.same({ post = content }, last_body(PATH).content)
      rc, _, err = helpdesk({ "send", fake.TICKET, "--post", "-" }, { stdin = cjson.encode({ post = content }) })
      assert.are.equal(0, rc, err)
      assert.are.same({ post = content }, last_body(PATH).content)
      local msg = { msg_type = "text", content = { text = "from json" } }
      rc, _, err = helpdesk({ "send", fake.TICKET, "--json", write(TMP .. ".json", cjson.encode(msg)) })
      assert.are.equal(0, rc, err)
      assert.are.same(msg, last_body(PATH))
      assert.are.equal(3, #fake.requests_to(PATH))
    end)

    local USAGE = {
      { "no ticket", { "send", "--text", "x" }, "needs exactly one TICKET" },
      { "two messages", { "send", "1234", "--text", "x", "--json", "f" },
        "give exactly one of --text, --post, --json" },
      { "no message", { "send", "1234" }, "give exactly one of" },
      { "an unknown option", { "send", "1234", "--txt", "x" }, "unknown option --txt" },
      { "a missing value", { "send", "1234", "--text" }, "--text needs a value" },
      { "an option twice", { "send", "1234", "--text", "a", "--text=b" }, "--text is given twice" },
      { "a bad ticket id", { "send", "12 34", "--text", "x" }, "ticket_id" },
      { "an empty text", { "send", "1234", "--text", "" }, "text must be a non-empty string" },
      { "an image as a ticket message", { "send", "1234", "--json", "-" }, "msg_type",
        '{"msg_type":"image","content":{"image_key":"img_1"}}' },
      { "a file that is not JSON", { "send", "1234", "--json", "-" }, "is not a JSON object", "nope" },
      { "a file that cannot be read", { "send", "1234", "--post", "/nonexistent/post.txt" }, "cannot read" },
      { "--lang without --post", { "send", "1234", "--text", "x", "--lang", "en_us" }, "--lang goes with --post" },
      { "a bad timeout", { "send", "1234", "--text", "x", "--timeout", "soon" }, "--timeout must be a number" },
      { "a missing credential", { "send", "1234", "--text", "x" }, "helpdesk_token is missing", nil,
        { FEISHU_HELPDESK_TOKEN = false } },
    }
    for _, case in ipairs(USAGE) do
      it(case[1] .. " is exit code 2 with a message naming it, and nothing is sent", function()
        local rc, out, err = helpdesk(case[2], { stdin = case[4], env = case[5] })
        assert.are.equal(2, rc, err)
        assert.are.equal("", out)
        assert.matches(case[3], err, 1, true)
        assert.are.equal(0, #fake.requests_to("/open-apis"))
      end)
    end

    it("takes credentials from flags over the environment", function()
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--helpdesk-token", fake.HELPDESK_TOKEN,
                                     "--base-url", fake.url },
                                   { env = { FEISHU_HELPDESK_TOKEN = "wrong-token", FEISHU_BASE_URL = fake.dead_url } })
      assert.are.equal(0, rc, err) -- the fake refuses the environment's token, and nothing listens at its URL
      assert.are.equal(1, #fake.requests_to(PATH))
    end)

    it("passes --proxy, --ca-file and --timeout to the client", function()
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--base-url", "http://feishu.invalid",
                                     "--proxy", fake.url, "--timeout", "5" })
      assert.are.equal(0, rc, err) -- the fake stood in for the proxy of a host that does not resolve
      assert.are.equal("feishu.invalid", last_request(PATH).headers.host)
      rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--base-url", assert(fake.tls_url),
                              "--ca-file", fake.ca_file })
      assert.are.equal(0, rc, err)
      -- without the CA the self-signed certificate is refused: not a passing failure
      rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--base-url", fake.tls_url })
      assert.are.equal(1, rc)
      assert.matches("helpdesk transport error", err, 1, true)
      assert.are.equal(2, #fake.requests_to(PATH))
    end)

    it("a refusal by Feishu is exit code 1, with the code and log id and no secret", function()
      local rc, out, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--verbose" },
                                    { env = { FEISHU_HELPDESK_TOKEN = "wrong-token" } })
      assert.are.equal(1, rc)
      assert.are.equal("", out)
      assert.matches("helpdesk: helpdesk api error 154001 %(HTTP 401%).*%[log_id [%w]+%]\n$", err)
      assert.matches("helpdesk: response method=POST", err, 1, true) -- --verbose logged the call
      assert_no_secret(out, err)
      assert.is_nil(err:find("wrong-token", 1, true))
    end)

    it("a send that may have been processed is exit code 3, sent once", function()
      fake.fault({ path = PATH, status = 200, partial = true, body = '{"code":0,"data":{"message_id":"om_1"}}' })
      local rc, out, err = helpdesk({ "send", fake.TICKET, "--text", "x" })
      assert.are.equal(3, rc, err)
      assert.are.equal("", out)
      assert.matches("may have been processed", err, 1, true)
      assert.are.equal(1, #fake.requests_to(PATH))
    end)

    it("a full disk under stdout is exit code 1, saying the message was sent", function()
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x" }, { stdout = "/dev/full" })
      assert.are.equal(1, rc)
      assert.matches("^helpdesk: helpdesk output error: message om_%x+ was sent, but cannot write the output", err)
      assert.are.equal(1, #fake.requests_to(PATH))
    end)

    it("a connection that cannot be made is exit code 4: nothing processed, try later", function()
      local rc, out, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--base-url", fake.dead_url })
      assert.are.equal(4, rc, err)
      assert.are.equal("", out)
      assert.matches("helpdesk transport error", err, 1, true)
    end)

    it("a rate limit that outlasts the retries is exit code 4", function()
      fake.fault({ path = PATH, status = 429, times = 10, headers = { ["x-ogw-ratelimit-reset"] = "3600" },
                   body = cjson.encode({ code = 99991400, msg = "request trigger frequency limit" }) })
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x" })
      assert.are.equal(4, rc, err)
      assert.matches("99991400", err, 1, true)
      assert.are.equal(1, #fake.requests_to(PATH))
    end)
  end)

  describe("on several hosts", function()
    local redis_server = require "redis_server"
    local redis
    setup(function() redis = redis_server.start({ password = "cli-redis-pass" }) end)
    teardown(function() redis_server.finish(redis) end)

    it("shares the token through Redis with --redis or FEISHU_REDIS_URL: one fetch for three runs", function()
      local url = redis.url .. "/4"
      for i, opts in ipairs({ { args = { "--redis", url } }, { args = { "--redis=" .. url } },
                              { args = {}, env = { FEISHU_REDIS_URL = url } } }) do
        local args = { "send", fake.TICKET, "--text", "run " .. i }
        for _, a in ipairs(opts.args) do args[#args + 1] = a end
        local rc, _, err = helpdesk(args, { env = opts.env })
        assert.are.equal(0, rc, err)
      end
      assert.are.equal(1, fake.state().token_count)
      assert.are.equal(3, #fake.requests_to(PATH))
    end)

    it("takes FEISHU_REDIS_PREFIX, _TIMEOUT and FEISHU_STORE_SHARE with --redis too, refusing bad ones", function()
      local url = redis.url .. "/4"
      for var, field in pairs({ FEISHU_REDIS_TIMEOUT = "store.timeout", FEISHU_STORE_SHARE = "store_share",
                                FEISHU_REDIS_PREFIX = "store.prefix" }) do
        local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--redis", url },
                                    { env = { [var] = "no good" } })
        assert.are.equal(cli.USAGE, rc, err)
        assert.matches(field, err, 1, true)
      end
      assert.are.equal(0, #fake.requests())
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--redis", url },
                                  { env = { FEISHU_REDIS_PREFIX = "cli-4:", FEISHU_REDIS_TIMEOUT = "1",
                                            FEISHU_STORE_SHARE = "2" } })
      assert.are.equal(0, rc, err)
      local c = assert(require("helpdesk.core").redis_connect("127.0.0.1", redis.port, 1))
      assert(c:command("AUTH", "cli-redis-pass"))
      assert(c:command("SELECT", "4"))
      local keys = c:command("KEYS", "cli-4:*")
      c:close()
      assert.is_true(#keys >= 2, #keys .. " keys under the prefix")
    end)

    it("refuses a bad URL, sending nothing and showing no password", function()
      local rc, out, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--redis", "redis://:cli-redis-pass@h:0" })
      assert.are.equal(cli.USAGE, rc)
      assert.are.equal("", out)
      assert.matches("store.redis must be redis://", err, 1, true)
      assert.is_nil(err:find("cli-redis-pass", 1, true))
      assert.are.equal(0, #fake.requests())
    end)

    it("goes on without Redis, saying so with --verbose, never with the password", function()
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--verbose",
                                    "--redis", "redis://:cli-redis-pass@127.0.0.1:1" })
      assert.are.equal(0, rc, err)
      assert.matches("helpdesk: store_fallback", err, 1, true)
      assert.is_nil(err:find("cli-redis-pass", 1, true))
    end)
  end)

  describe("bot", function()
    local BOT = "/open-apis/helpdesk/v1/message"

    it("sends to a chat by default and to a user with --user and --user-id-type", function()
      local rc, out, err = helpdesk({ "bot", "oc_chat1", "--text", "hi" })
      assert.are.equal(0, rc, err)
      assert.matches("^om_%x+\n$", out)
      local body, req = last_body(BOT), last_request(BOT)
      assert.are.same({ msg_type = "text", content = { text = "hi" }, receiver_id = "oc_chat1",
                        receive_type = "chat" }, body)
      assert.are.equal("open_id", req.args.user_id_type)
      rc, out, err = helpdesk({ "bot", "on_user1", "--text", "hi", "--user", "--user-id-type", "union_id" })
      assert.are.equal(0, rc, err)
      assert.matches("^om_%x+\n$", out)
      body, req = last_body(BOT), last_request(BOT)
      assert.are.equal("user", body.receive_type)
      assert.are.equal("union_id", req.args.user_id_type)
    end)

    it("sends an image and a card", function()
      local rc, _, err = helpdesk({ "bot", "ou_1", "--image", "img_v2_1" })
      assert.are.equal(0, rc, err)
      assert.are.same({ image_key = "img_v2_1" }, last_body(BOT).content)
      local card = { config = { wide_screen_mode = true }, elements = { { tag = "div", text = {
        tag = "plain_text", content = "card" } } } }
      rc, _, err = helpdesk({ "bot", "ou_1", "--card", "-" }, { stdin = cjson.encode(card) })
      assert.are.equal(0, rc, err)
      local body = last_body(BOT)
      assert.are.equal("interactive", body.msg_type)
      assert.are.same(card, body.content)
    end)

    it("refuses a 2.0 card, --user-id-type without --user and a bad id type, sending nothing", function()
      local cases = {
        { { "bot", "ou_1", "--card", "-" }, "card JSON 2.0", '{"schema":"2.0","body":{}}' },
        { { "bot", "ou_1", "--text", "x", "--user-id-type", "union_id" }, "--user-id-type goes with --user" },
        { { "bot", "ou_1", "--text", "x", "--user", "--user-id-type", "email" }, "user_id_type" },
        { { "bot", "--text", "x" }, "needs exactly one RECEIVER" },
      }
      for _, case in ipairs(cases) do
        local rc, _, err = helpdesk(case[1], { stdin = case[3] })
        assert.are.equal(2, rc, err)
        assert.matches(case[2], err, 1, true)
      end
      assert.are.equal(0, #fake.requests_to("/open-apis"))
    end)
  end)

  describe("messages", function()
    before_each(function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 250, start = 1700000000, step = 60 })
    end)

    it("prints every message as a JSON line, as Feishu gives it, over several pages", function()
      local rc, out, err = helpdesk({ "messages", fake.TICKET, "--page-size", "100" })
      assert.are.equal(0, rc, err)
      assert.are.equal("", err) -- no progress when stderr is not a terminal
      local n = 0
      for line in out:gmatch("[^\n]+") do
        n = n + 1
        local msg = cjson.decode(line)
        assert.are.equal("message " .. n, cjson.decode(msg.content).content)
        assert.are.equal((1700000000 + (n - 1) * 60) * 1000, msg.created_at)
      end
      assert.are.equal(250, n)
      assert.are.equal(3, #fake.requests_to(PATH))
    end)

    it("prints a table: UTC time, type, sender, text", function()
      local rc, out, err = helpdesk({ "messages", fake.TICKET, "--format", "table", "--until", "1700000060" })
      assert.are.equal(0, rc, err)
      assert.are.equal("2023-11-14 22:13:20  text     Helpdesk Agent       message 1\n"
        .. "2023-11-14 22:14:20  text     Helpdesk Agent       message 2\n", out)
    end)

    it("prints odd messages as one safe line each: no terminal escapes, no crash", function()
      local odd = {
        { message_id = "om_1", message_type = "text", created_at = 1e300, user_name = "\27[31mred\27[0m",
          content = '{"content":"two\\nlines\\u001b[2J","msg_type":"text"}' },
        { message_id = "om_2", message_type = "post", created_at = -5, content = "not json" },
        { message_id = "om_3", message_type = "post", user_id = "ou_9",
          content = '{"content":"{\\"title\\":\\"T\\",\\"content\\":[[{\\"tag\\":\\"text\\",\\"text\\":\\"x\\"}]]}"}' },
      }
      fake.fault({ path = PATH, method = "GET", status = 200,
                   body = cjson.encode({ code = 0, msg = "success", data = { messages = odd, total = 3 } }) })
      local rc, out, err = helpdesk({ "messages", fake.TICKET, "--format", "table" })
      assert.are.equal(0, rc, err)
      -- control characters (ESC, newlines) became spaces
      assert.are.equal("?  text     " .. string.format("%-20s", " [31mred [0m") .. " two lines [2J\n"
        .. "?  post                          [post]\n"
        .. "?  post     ou_9                 [post] T x\n", out)
    end)

    it("passes --since and --until as time_start and time_end", function()
      local rc, out, err = helpdesk({ "messages", fake.TICKET, "--since", "2023-11-14T22:15:00Z",
                                      "--until", "2023-11-15 06:20+08:00" })
      assert.are.equal(0, rc, err)
      local req = last_request(PATH)
      assert.are.equal("1700000100", req.args.time_start)
      assert.are.equal("1700000400", req.args.time_end)
      local n = select(2, out:gsub("\n", ""))
      assert.are.equal(5, n) -- messages 3..7
    end)

    it("shows progress when stderr is a terminal, as messages so far / total", function()
      local rc, out, err = helpdesk({ "messages", fake.TICKET }, { tty = true })
      assert.are.equal(0, rc, err)
      assert.matches("\r250/250 messages\r?\n$", err)
      assert.are.equal(250, select(2, out:gsub("\n", "")))
      rc, out, err = helpdesk({ "messages", fake.TICKET, "--no-progress" }, { tty = true })
      assert.are.equal(0, rc, err)
      assert.are.equal("", err)
      assert.are.equal(250, select(2, out:gsub("\n", "")))
    end)

    it("shows progress on stderr with --progress, as messages so far / total", function()
      local rc, out, err = helpdesk({ "messages", fake.TICKET, "--progress", "--format=table" })
      assert.are.equal(0, rc, err)
      assert.matches("\r250/250 messages\n$", err)
      assert.are.equal(250, select(2, out:gsub("\n", "")))
    end)

    it("a page that fails is an error and a non-zero exit, never a short listing", function()
      fake.fault({ path = PATH, method = "GET", skip = 1, times = 4, status = 503, body = "busy" })
      local rc, out, err = helpdesk({ "messages", fake.TICKET, "--page-size", "100" })
      assert.are.equal(4, rc)
      assert.are.equal(100, select(2, out:gsub("\n", "")))
      assert.matches("helpdesk http error %(HTTP 503%)", err)
    end)

    it("a ticket Feishu does not know is exit code 1", function()
      fake.fault({ path = PATH, method = "GET", status = 404,
                   body = cjson.encode({ code = 154002, msg = "ticket not found" }) })
      local rc, out, err = helpdesk({ "messages", fake.TICKET })
      assert.are.equal(1, rc)
      assert.are.equal("", out)
      assert.matches("154002", err, 1, true)
    end)

    it("a full disk under stdout is an error, never a complete export", function()
      local rc, _, err = helpdesk({ "messages", fake.TICKET }, { stdout = "/dev/full" })
      assert.are.equal(1, rc)
      assert.matches("^helpdesk: helpdesk output error: cannot write the output", err)
    end)

    it("a server that repeats the same page is exit code 1 after one page, never endless output", function()
      -- in this process, so that the output can be bounded: a command
      -- without a stop would fill the disk, not end
      fake.listing({ mode = "repeat", no_total = true })
      local lines, said = 0, {}
      local stdout = { write = function(self, s)
        lines = lines + select(2, s:gsub("\n", ""))
        if lines > 5000 then return nil, "spec: runaway output" end
        return self
      end, flush = function(self) return self end }
      local stderr = { write = function(self, ...)
        for i = 1, select("#", ...) do said[#said + 1] = select(i, ...) end
        return self
      end }
      local rc = cli.main({ "messages", fake.TICKET, "--no-progress", "--base-url", fake.url, "--app-id", fake.APP_ID,
                            "--app-secret", fake.APP_SECRET, "--helpdesk-id", fake.HELPDESK_ID,
                            "--helpdesk-token", fake.HELPDESK_TOKEN }, { out = stdout, err = stderr })
      local err = table.concat(said)
      assert.are.equal(1, rc, err)
      assert.are.equal(200, lines)
      assert.matches("^helpdesk: helpdesk decode error %(HTTP 200%): page 2 repeats message", err)
      assert.are.equal(2, #fake.requests_to(PATH))
    end)

    it("refuses a time it cannot read, and milliseconds, sending nothing", function()
      for _, t in ipairs({ "yesterday", "1700000000000", "2023-02-29", "2023-11-14T25:00Z", "-5" }) do
        local rc, _, err = helpdesk({ "messages", fake.TICKET, "--since", t })
        assert.are.equal(2, rc, t)
        assert.matches("--since " .. t, err, 1, true)
      end
      local rc, _, err = helpdesk({ "messages", fake.TICKET, "--format", "csv" })
      assert.are.equal(2, rc)
      assert.matches("--format must be jsonl or table", err, 1, true)
      assert.are.equal(0, #fake.requests_to(PATH))
    end)
  end)

  describe("events", function()
    it("subscribes and unsubscribes the app to helpdesk events", function()
      local rc, out, err = helpdesk({ "events", "subscribe", "helpdesk.ticket_message.created_v1",
                                      "helpdesk.ticket.created_v1" })
      assert.are.equal(0, rc, err)
      assert.are.equal("subscribed: helpdesk.ticket_message.created_v1 helpdesk.ticket.created_v1\n", out)
      assert.are.same({ "helpdesk.ticket/ticket.created_v1", "helpdesk.ticket_message/ticket_message.created_v1" },
                      fake.subscriptions())
      rc, out, err = helpdesk({ "events", "unsubscribe", "helpdesk.ticket.created_v1" })
      assert.are.equal(0, rc, err)
      assert.are.equal("unsubscribed: helpdesk.ticket.created_v1\n", out)
      assert.are.same({ "helpdesk.ticket_message/ticket_message.created_v1" }, fake.subscriptions())
    end)

    it("is a usage error without a verb or a valid type, sending nothing", function()
      for _, args in ipairs({ { "events" }, { "events", "list" }, { "events", "subscribe" },
                              { "events", "subscribe", "im.message.receive_v1" } }) do
        local rc, out, err = helpdesk(args)
        assert.are.equal(2, rc, err)
        assert.are.equal("", out)
        assert.matches("^helpdesk: ", err)
      end
      assert.are.equal(0, #fake.requests_to("/open-apis/helpdesk/v1/events/"))
    end)

    local KEY, TOKEN = "cK3-cli-Encrypt-key", "cT8-cli-Verification-token"
    -- written by hand: lua-cjson would write created_at as 1.6169204290001e+15
    local function event_json(token)
      return '{"schema":"2.0","header":{"event_id":"e-cli-1","token":"' .. token .. '",'
        .. '"create_time":"1608725989000","app_id":"cli_1","tenant_key":"t1",'
        .. '"event_type":"helpdesk.ticket_message.created_v1"},"event":{"ticket":{"ticket_id":"6626871355780366331"},'
        .. '"msg_type":"text","position":7,"event_id":"6949088240624222228",'
        .. '"content":{"content":"工单 on fire","msg_type":"text"},"created_at":1616920429000123}}'
    end
    local EVENT = event_json(TOKEN)
    local EVENT_ENV = { FEISHU_ENCRYPT_KEY = KEY, FEISHU_VERIFICATION_TOKEN = TOKEN }

    -- Neither secret, nor the key's SHA-256, in what the command printed.
    local function no_secrets(...)
      for i = 1, select("#", ...) do
        local text = select(i, ...)
        for _, secret in ipairs({ KEY, TOKEN, openssl.sha256_hex(KEY) }) do
          assert.is_nil(text:find(secret, 1, true), "a secret in: " .. text)
        end
      end
    end

    -- A push as Feishu makes it, apart from the library (openssl).
    local function feishu_push(plaintext, o)
      o = o or {}
      local body = '{"encrypt":"' .. openssl.encrypt(KEY, plaintext) .. '"}'
      local ts = o.ts or tostring(os.time())
      return body, ts, openssl.signature(ts, "n-77", o.key or KEY, body)
    end

    it("decode: prints a pushed event as one JSON line, headers from options or a file", function()
      local body, ts, sig = feishu_push(EVENT)
      local rc, out, err = helpdesk({ "events", "decode", "--timestamp", ts, "--nonce", "n-77",
                                      "--signature", sig }, { env = EVENT_ENV, stdin = body })
      assert.are.equal(0, rc, err)
      assert.are.equal("\n", out:sub(-1))
      local ev = cjson.decode(out)
      assert.are.equal("helpdesk.ticket_message.created_v1", ev.event_type)
      assert.are.equal("e-cli-1", ev.event_id)
      assert.are.equal("6949088240624222228", ev.helpdesk_event_id)
      assert.are.equal(1608725989000, ev.create_time)
      assert.are.equal("7", ev.event.position)
      assert.matches('"created_at":1616920429000123', out, 1, true) -- exact, not 1.6169204290001e+15
      assert.are.equal("工单 on fire", ev.event.content.content)
      no_secrets(out, err)
      -- the same from a file of header lines, as curl -D writes them (any case), and as JSON;
      -- the secrets from options instead of the environment
      local file = write(TMP .. ".h", "POST /feishu/events HTTP/1.1\r\nx-lark-request-timestamp: " .. ts
        .. "\r\nX-Lark-Request-Nonce:  n-77 \r\nX-LARK-SIGNATURE: " .. sig
        .. "\r\nContent-Type: application/json\r\n\r\n")
      rc, out, err = helpdesk({ "events", "decode", "--headers", file, "--encrypt-key", KEY, "--verification-token",
                                TOKEN }, { stdin = body })
      assert.are.equal(0, rc, err)
      assert.are.equal("e-cli-1", cjson.decode(out).event_id)
      write(file, cjson.encode({ ["X-Lark-Request-Timestamp"] = ts, ["X-Lark-Request-Nonce"] = "n-77",
                                 ["X-Lark-Signature"] = sig }))
      rc, out, err = helpdesk({ "events", "decode", "--headers", file }, { env = EVENT_ENV, stdin = body })
      assert.are.equal(0, rc, err)
      assert.are.equal("e-cli-1", cjson.decode(out).event_id)
      -- an option overrides the file: a wrong nonce breaks the signature
      rc, out, err = helpdesk({ "events", "decode", "--headers", file, "--nonce", "n-78" },
                              { env = EVENT_ENV, stdin = body })
      assert.are.equal(2, rc)
      assert.are.equal("", out)
      assert.are.equal("helpdesk: helpdesk invalid error: signature does not match the body (X-Lark-Signature)\n", err)
      os.remove(file)
    end)

    it("decode: the URL verification, plain with a token alone", function()
      local body = cjson.encode({ challenge = "ch-1", token = TOKEN, type = "url_verification" })
      local rc, out, err = helpdesk({ "events", "decode" },
                                    { env = { FEISHU_VERIFICATION_TOKEN = TOKEN }, stdin = body })
      assert.are.equal(0, rc, err)
      assert.are.same({ challenge = "ch-1" }, cjson.decode(out))
    end)

    it("decode: a request that fails a check exits 2 saying which, never showing a secret", function()
      local body, ts, sig = feishu_push(EVENT)
      local old_body, old_ts, old_sig = feishu_push(EVENT, { ts = tostring(os.time() - 3600) })
      local _, _, other_sig = feishu_push(EVENT, { key = "another key" })
      local wt_body, wt_ts, wt_sig = feishu_push(event_json("wrong-token"))
      local cases = {
        { "signature does not match", { "--timestamp", ts, "--nonce", "n-77", "--signature", other_sig }, body },
        { "signature is missing", {}, body },
        { "timestamp X-Lark-Request-Timestamp is 36", { "--timestamp", old_ts, "--nonce", "n-77",
          "--signature", old_sig }, old_body },
        { "token does not match", { "--timestamp", wt_ts, "--nonce", "n-77", "--signature", wt_sig }, wt_body },
        { "body is not a JSON object", {}, "not json" },
        { "encrypt does not decrypt", { "--timestamp", ts, "--nonce", "n-77", "--signature", sig },
          body:gsub('"}$', 'AAAA"}') },
      }
      for _, c in ipairs(cases) do
        local args = { "events", "decode" }
        for _, a in ipairs(c[2]) do args[#args + 1] = a end
        local rc, out, err = helpdesk(args, { env = EVENT_ENV, stdin = c[3] })
        assert.are.equal(2, rc, c[1] .. ": " .. err)
        assert.are.equal("", out)
        assert.matches("helpdesk: helpdesk invalid error: " .. c[1], err, 1, true)
        no_secrets(out, err)
      end
      -- a request captured earlier: --max-skew off
      local rc, out, err = helpdesk({ "events", "decode", "--timestamp", old_ts, "--nonce", "n-77", "--signature",
                                      old_sig, "--max-skew", "off" }, { env = EVENT_ENV, stdin = old_body })
      assert.are.equal(0, rc, err)
      assert.are.equal("e-cli-1", cjson.decode(out).event_id)
    end)

    it("decode and push: bad usage exits 2, naming what is wrong", function()
      for _, c in ipairs({
        { { "events", "decode" }, {}, "events decode needs FEISHU_ENCRYPT_KEY or FEISHU_VERIFICATION_TOKEN" },
        { { "events", "decode", "extra" }, EVENT_ENV, "events decode reads the body from stdin" },
        { { "events", "decode", "--max-skew", "soon" }, EVENT_ENV, "--max-skew must be a number of seconds, or off" },
        { { "events", "decode", "--headers", "-" }, EVENT_ENV, "--headers cannot be stdin" },
        { { "events", "decode", "--headers", "/nonexistent/h" }, EVENT_ENV, "--headers cannot read" },
        { { "events", "push" }, EVENT_ENV, "events push needs exactly one URL" },
        { { "events", "push", "ftp://x/y" }, EVENT_ENV, "events push needs the URL of a receiver" },
        { { "events", "push", fake.url .. "/sink", "--signature", "x" }, EVENT_ENV,
          "--signature does not go with events push" },
        { { "events", "subscribe", "helpdesk.ticket.created_v1", "--nonce", "1" }, EVENT_ENV,
          "--nonce does not go with events subscribe" },
        { { "events", "push", fake.url .. "/sink", "--timestamp", "yesterday" }, EVENT_ENV,
          "--timestamp must be Unix seconds" },
      }) do
        local rc, out, err = helpdesk(c[1], { env = c[2], stdin = EVENT })
        assert.are.equal(2, rc, table.concat(c[1], " ") .. ": " .. err)
        assert.are.equal("", out)
        assert.matches("helpdesk: " .. c[3], err, 1, true)
      end
      local rc, _, err = helpdesk({ "events", "push", fake.url .. "/sink" }, { env = EVENT_ENV, stdin = "[1, 2]" })
      assert.are.equal(2, rc)
      assert.matches("stdin is not a JSON object", err, 1, true)
      assert.are.equal(0, #fake.requests_to("/sink"))
    end)

    it("push: never prints a proxy's password, whatever the proxy answers", function()
      local hostport = fake.url:match("^http://(.*)$")
      fake.fault({ path = "/sink/proxied", status = 502, body = "proxy saw ", echo = "proxy-authorization",
                   decode64 = true })
      fake.fault({ path = "/sink/proxied", status = 502, body = "proxy saw ", echo = "proxy-authorization" })
      for _ = 1, 2 do
        local rc, out, err = helpdesk({ "events", "push", fake.url .. "/sink/proxied", "--proxy",
                                        "http://bob:push-proxy-password@" .. hostport },
                                      { env = EVENT_ENV, stdin = EVENT })
        assert.are.equal(1, rc, err)
        assert.matches("proxy saw", out)
        for _, text in ipairs({ out, err }) do
          for _, piece in ipairs({ "push-proxy-password", "Ym9iOnB1c2gtcHJveHktcGFzc3dvcmQ" }) do
            assert.is_nil(text:find(piece, 1, true), text)
          end
        end
        no_secrets(out, err)
      end
    end)

    it("push: encrypts and signs as Feishu does, which openssl checks and decode reads back", function()
      fake.fault({ path = "/sink/events", status = 200, body = '{"ok":"pushed"}', times = 1 })
      local rc, out, err = helpdesk({ "events", "push", fake.url .. "/sink/events", "--verbose" },
                                    { env = EVENT_ENV, stdin = EVENT })
      assert.are.equal(0, rc, err)
      assert.are.equal('{"ok":"pushed"}\n', out)
      no_secrets(out, err)
      local got = fake.requests_to("/sink/events")
      assert.are.equal(1, #got)
      local h, body = got[1].headers, got[1].body
      assert.matches('^{"encrypt":"[%w+/]+=*"}$', body)
      assert.are.equal(EVENT, openssl.decrypt(KEY, cjson.decode(body).encrypt))
      assert.are.equal(openssl.signature(h["x-lark-request-timestamp"], h["x-lark-request-nonce"], KEY, body),
                       h["x-lark-signature"])
      assert.is_true(math.abs(tonumber(h["x-lark-request-timestamp"]) - os.time()) <= 5)
      assert.matches("^%x+$", h["x-lark-request-nonce"])
      assert.are.equal("application/json; charset=utf-8", h["content-type"])
      -- and decode reads it back
      rc, out, err = helpdesk({ "events", "decode", "--timestamp", h["x-lark-request-timestamp"], "--nonce",
                                h["x-lark-request-nonce"], "--signature", h["x-lark-signature"] },
                              { env = EVENT_ENV, stdin = body })
      assert.are.equal(0, rc, err)
      assert.are.equal("e-cli-1", cjson.decode(out).event_id)
    end)

    it("push: plain without an encrypt key; a refusal exits 1, no receiver 4", function()
      fake.reset()
      local rc, out, err = helpdesk({ "events", "push", fake.url .. "/sink/plain", "--timestamp", "1700000000",
                                      "--nonce", "n1" }, { stdin = EVENT })
      assert.are.equal(1, rc) -- the fake answers 404 there
      assert.are.same({ code = 404, msg = "404 page not found" }, cjson.decode(out))
      assert.matches("helpdesk: helpdesk http error (HTTP 404): the receiver did not take the event: ", err, 1, true)
      local got = fake.requests_to("/sink/plain")[1]
      assert.are.equal(EVENT, got.body)
      assert.are.equal("1700000000", got.headers["x-lark-request-timestamp"])
      assert.are.equal("n1", got.headers["x-lark-request-nonce"])
      assert.is_nil(got.headers["x-lark-signature"])
      rc, out, err = helpdesk({ "events", "push", "http://127.0.0.1:1/events" }, { env = EVENT_ENV, stdin = EVENT })
      assert.are.equal(4, rc, err)
      assert.are.equal("", out)
      assert.matches("helpdesk: helpdesk transport error: ", err, 1, true)
      no_secrets(out, err)
    end)
  end)

  describe("input it cannot read", function()
    it("is a usage error naming the option, for a directory and a closed stdin", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. quote(dir)))
      local cases = {
        { { "send", fake.TICKET, "--json", dir }, "--json" },
        { { "send", fake.TICKET, "--post", dir }, "--post" },
        { { "bot", "oc_chat1", "--card", dir }, "--card" },
        { { "send", fake.TICKET, "--text", "-" }, "--text", true },
        { { "send", fake.TICKET, "--json", "-" }, "--json", true },
        { { "send", fake.TICKET, "--post", "-" }, "--post", true },
      }
      for i, case in ipairs(cases) do
        local rc, out, err = helpdesk(case[1], { stdin_closed = case[3] })
        assert.are.equal(2, rc, "case " .. i .. ": " .. err)
        assert.are.equal("", out)
        assert.matches("^helpdesk: " .. case[2]:gsub("%-", "%%-") .. " [^\n]*cannot read[^\n]*\n$", err)
        assert.is_nil(err:find("traceback", 1, true))
      end
      os.execute("rmdir " .. quote(dir))
      -- endless input is refused past 1 MiB, not read until memory runs out
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--json", "/dev/zero" })
      assert.are.equal(2, rc, err)
      assert.matches("larger than 1 MiB", err)
      assert.are.equal(0, #fake.requests_to(PATH))
    end)

    it("never shows the password of a proxy from the environment, and refuses one too short to hide", function()
      local hostport = fake.url:match("^http://(.*)$")
      fake.fault({ path = PATH, method = "POST", status = 502, body = "proxy saw ", echo = "proxy-authorization",
                   decode64 = true })
      local rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x", "--verbose" },
        { env = { http_proxy = "http://bob:env-proxy-password@" .. hostport } })
      assert.are.equal(3, rc, err)
      assert.matches("proxy saw", err)
      assert.is_nil(err:find("env-proxy-password", 1, true), err)
      rc, _, err = helpdesk({ "send", fake.TICKET, "--text", "x" },
        { env = { https_proxy = "http://bob:pw@" .. hostport } })
      assert.are.equal(2, rc, err)
      assert.matches("environment's https_proxy", err, 1, true)
      assert.are.equal(1, #fake.requests_to(PATH))
    end)

    it("is a usage error when stdout is closed, before anything is sent", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 3, start = 1700000000, step = 60 })
      for _, args in ipairs({ { "messages", fake.TICKET }, { "send", fake.TICKET, "--text", "x" },
                              { "bot", "oc_chat1", "--text", "x" } }) do
        local rc, _, err = helpdesk(args, { stdout_closed = true })
        assert.are.equal(2, rc, args[1] .. ": " .. err)
        assert.matches("^helpdesk: stdout is closed[^\n]*\n$", err)
      end
      assert.are.equal(0, #fake.requests())
    end)

    it("goes on with stderr closed, writing nothing where its connections are", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 3, start = 1700000000, step = 60 })
      local rc, out = helpdesk({ "messages", fake.TICKET, "--verbose" }, { stderr_closed = true })
      assert.are.equal(0, rc)
      assert.are.equal(3, select(2, out:gsub("\n", "")))
      fake.reset()
      rc = helpdesk({ "send", fake.TICKET, "--text", "x", "--verbose" }, { stderr_closed = true })
      assert.are.equal(0, rc)
      assert.are.equal(1, #fake.requests_to(PATH))
    end)

    it("is a usage error for a --ca-file that is a directory or missing, for every command, nothing sent", function()
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir " .. quote(dir)))
      for _, file in ipairs({ dir, dir .. "/missing.pem" }) do
        for _, args in ipairs({ { "send", fake.TICKET, "--text", "x" }, { "bot", "oc_chat1", "--text", "x" },
                                { "messages", fake.TICKET },
                                { "events", "subscribe", "helpdesk.ticket.created_v1" } }) do
          local call = {}
          for _, list in ipairs({ args, { "--base-url", assert(fake.tls_url), "--ca-file", file } }) do
            for _, a in ipairs(list) do call[#call + 1] = a end
          end
          local rc, out, err = helpdesk(call)
          assert.are.equal(2, rc, args[1] .. " " .. file .. ": " .. err)
          assert.are.equal("", out)
          assert.matches("^helpdesk: %-%-ca%-file cannot read [^\n]*\n$", err)
        end
      end
      os.execute("rmdir " .. quote(dir))
      assert.are.equal(0, #fake.requests())
    end)
  end)

  describe("a listing that fails", function()
    it("exits 4 when a page or its token fetch times out, after what it printed", function()
      fake.ticket({ ticket_id = fake.TICKET, messages = 250, start = 1700000000, step = 60 })
      -- the second page hangs past the timeout, every try
      fake.fault({ path = PATH, method = "GET", skip = 1, delay = 1.5, times = 10 })
      local rc, out, err = helpdesk({ "messages", fake.TICKET, "--page-size", "100", "--timeout", "0.3" })
      assert.are.equal(4, rc, err)
      local n = 0
      for _ in out:gmatch("[^\n]+") do n = n + 1 end
      assert.are.equal(100, n)
      fake.reset()
      fake.ticket({ ticket_id = fake.TICKET, messages = 5, start = 1700000000, step = 60 })
      fake.fault({ path = "/open-apis/auth/v3/tenant_access_token/internal", delay = 1.5, times = 10 })
      rc, out, err = helpdesk({ "messages", fake.TICKET, "--timeout", "0.3" })
      assert.are.equal(4, rc, err)
      assert.are.equal("", out)
    end)

    it("exits 1 for a page Feishu answered with nonsense", function()
      fake.fault({ path = PATH, method = "GET", status = 200,
        body = '{"code":0,"msg":"ok","data":{"messages":{"a":{"id":"1"}},"total":3}}' })
      local rc, _, err = helpdesk({ "messages", fake.TICKET })
      assert.are.equal(1, rc, err)
      assert.matches("decode", err)
    end)
  end)

  describe("JSON lines", function()
    it("carry Feishu's numbers exactly, past 14 digits", function()
      fake.fault({ path = PATH, method = "GET", status = 200, body = '{"code":0,"msg":"ok","data":{"messages":['
        .. '{"id":"1","message_id":"om_1","message_type":"text","content":"{\\"text\\":\\"x\\"}",'
        .. '"created_at":1700000000123456,"ratio":0.1,"big":123456789012345678,"odd":"\\u0000N1"}],'
        .. '"total":1}}' })
      local rc, out, err = helpdesk({ "messages", fake.TICKET })
      assert.are.equal(0, rc, err)
      assert.matches('"created_at":1700000000123456[,}]', out)
      assert.matches('"ratio":0.1[,}]', out)
      -- past 2^53 the decoder itself rounds: the nearest double, in full
      assert.matches('"big":123456789012345680[,}]', out)
      -- a string that looks like the placeholder inside stays a string
      assert.are.equal("\0N1", cjson.decode(out).odd)
    end)

    it("stay valid JSON whatever the strings hold, exact for round large integers, exit 1 on NaN", function()
      fake.fault({ path = PATH, method = "GET", status = 200, body = '{"code":0,"msg":"ok","data":{"messages":['
        .. '{"id":"1","created_at":1700000000000000,"s":"x\\"\\u0000N1","\\u0000N1":"k"}],"total":1}}' })
      local rc, out, err = helpdesk({ "messages", fake.TICKET })
      assert.are.equal(0, rc, err)
      local msg = cjson.decode(out)
      assert.are.equal('x"\0N1', msg.s)
      assert.are.equal("k", msg["\0N1"])
      assert.matches('"created_at":1700000000000000[,}]', out)
      fake.fault({ path = PATH, method = "GET", status = 200,
        body = '{"code":0,"msg":"ok","data":{"messages":[{"id":"1","n":NaN}],"total":1}}' })
      rc, out, err = helpdesk({ "messages", fake.TICKET })
      assert.are.equal(1, rc, err)
      assert.are.equal("", out)
      assert.matches("NaN", err)
    end)

    it("print no C1 control (a terminal's CSI) in the table format", function()
      fake.fault({ path = PATH, method = "GET", status = 200, body = '{"code":0,"msg":"ok","data":{"messages":['
        .. '{"id":"1","created_at":1700000000000,"message_type":"text","user_name":"ev\\u009bil",'
        .. '"content":"{\\"content\\":\\"x\\u009b2J\\"}"}],"total":1}}' })
      local rc, out, err = helpdesk({ "messages", fake.TICKET, "--format", "table" })
      assert.are.equal(0, rc, err)
      assert.is_nil(out:find("\194\155", 1, true), out)
      assert.matches("ev il", out, 1, true)
    end)
  end)

  describe("a bug in the command", function()
    it("is exit code 70 with a traceback, never 1 (\"Feishu refused\")", function()
      local said = {}
      local stderr = { write = function(self, ...)
        for i = 1, select("#", ...) do said[#said + 1] = select(i, ...) end
        return self
      end }
      local broken_stdout = { write = function() error("stdout object broke") end }
      assert.are.equal(70, cli.main({ "--version" }, { out = broken_stdout, err = stderr }))
      local text = table.concat(said)
      assert.matches("^helpdesk: internal error %(please report it%): .*stdout object broke", text)
      assert.matches("stack traceback", text, 1, true)
    end)
  end)

  describe("times", function()
    it("reads Unix seconds, UTC dates and times, offsets and times ago", function()
      local now = 1714550400 -- 2024-05-01T08:00:00Z
      local cases = {
        { "1714550400", 1714550400 }, { "2024-05-01", 1714521600 }, { "2024-05-01T08:00:00Z", now },
        { "2024-05-01 08:00", now }, { "2024-05-01T16:00+08:00", now }, { "2024-05-01T03:30-0430", now },
        { "2024-02-29", 1709164800 }, { "1970-01-01", 0 }, { "2000-03-01", 951868800 },
        { "90s", now - 90 }, { "30m", now - 1800 }, { "6h", now - 21600 }, { "7d", now - 604800 },
        { "2w", now - 1209600 },
      }
      for _, c in ipairs(cases) do
        assert.are.equal(c[2], cli.parse_time(c[1], now), c[1])
      end
      for _, bad in ipairs({ "2023-02-29", "2024-13-01", "2024-05-01T24:00", "2024-05-01T08:00+8", "1e9", "" }) do
        assert.is_nil(cli.parse_time(bad, now), bad)
      end
    end)
  end)
end)
