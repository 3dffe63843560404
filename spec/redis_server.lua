-- A real redis-server for the specs (Debian's), on a free loopback port,
-- in a directory of its own: start() it in setup, stop() it in teardown.
-- Nothing is saved to disk; it listens on 127.0.0.1 only.
local core = require "helpdesk.core"

local M = {}

local BIN = os.getenv("REDIS_SERVER") or "redis-server"

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("*a")
  p:close()
  return out
end

-- Whether process pid runs: a zombie has stopped (the daemon's parent is
-- whoever reaps orphans here, maybe late).
local function running(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("*a") or ""
  f:close()
  local state = stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

-- A port from /dev/urandom: the specs seed math.random for their own use.
local function random_port()
  local f = assert(io.open("/dev/urandom", "rb"))
  local a, b = f:read(2):byte(1, 2)
  f:close()
  return 30000 + (a * 256 + b) % 30000
end

local function quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

-- A certificate authority (in ca_dir, made there unless it is there) and a
-- certificate of its in dir for names (subjectAltName's: 127.0.0.1 and
-- localhost unless given), made with the openssl command: the CA's file.
local function make_certificates(dir, names, ca_dir)
  local q = function(name) return quote(dir .. "/" .. name) end
  ca_dir = ca_dir or dir
  local ca = function(name) return quote(ca_dir .. "/" .. name) end
  local out = sh("(" .. table.concat({
    "{ [ -f", ca("ca.crt"), "] || openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=helpdesk-spec-ca",
    "-keyout", ca("ca.key"), "-out", ca("ca.crt"), "; }",
    "&& openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout", q("redis.key"), "-out", q("redis.csr"),
    "&& printf 'subjectAltName=%s\\n'", quote(names or "IP:127.0.0.1,DNS:localhost"), ">", q("ext.cnf"),
    "&& openssl x509 -req -in", q("redis.csr"), "-CA", ca("ca.crt"), "-CAkey", ca("ca.key"),
    "-CAcreateserial -days 2 -extfile", q("ext.cnf"), "-out", q("redis.crt"), "&& echo made",
  }, " ") .. ")")
  assert(out:find("made", 1, true), "openssl: " .. out)
  return ca_dir .. "/ca.crt"
end

-- A connection that answers PING, within 5 s (a loaded machine, valgrind);
-- nil if none.
local function ping(port, password, tls)
  for _ = 1, 500 do
    local c = core.redis_connect("127.0.0.1", port, 0.2, tls)
    if c then
      if password then c:command("AUTH", password) end
      local pong = c:command("PING")
      c:close()
      if pong == "PONG" then return true end
    end
    core.sleep(0.01)
  end
  return nil
end

-- Starts the server (on port, or a free one); opts.password sets requirepass;
-- opts.tls: TLS only, with a certificate of a CA of the spec's own (the
-- one in opts.ca_dir, another server's dir) for opts.tls_names.
-- Returns the server: { port =, url =, dir =, ca_file = (with tls) }.
function M.start(opts)
  opts = opts or {}
  local dir = opts.dir or sh("mktemp -d \"${TMPDIR:-/tmp}/helpdesk-redis.XXXXXX\""):gsub("%s+$", "")
  local ca_file = opts.tls and make_certificates(dir, opts.tls_names, opts.ca_dir)
  for _ = 1, 20 do
    local port = opts.port or random_port()
    -- not under the sanitizers' runtime the specs may run with (make sanitize)
    local args = { "env -u LD_PRELOAD", BIN, "--bind 127.0.0.1", "--save ''", "--appendonly no",
                   "--daemonize yes", "--dir " .. quote(dir), "--pidfile " .. quote(dir .. "/redis.pid"),
                   "--logfile " .. quote(dir .. "/redis.log") }
    if opts.tls then
      for _, a in ipairs({ "--port 0", "--tls-port " .. port, "--tls-cert-file " .. quote(dir .. "/redis.crt"),
                           "--tls-key-file " .. quote(dir .. "/redis.key"), "--tls-ca-cert-file " .. quote(ca_file),
                           "--tls-auth-clients no" }) do
        args[#args + 1] = a
      end
    else
      args[#args + 1] = "--port " .. port
    end
    if opts.password then args[#args + 1] = "--requirepass " .. quote(opts.password) end
    -- DEBUG SLEEP: a Redis that is slow to answer
    if opts.debug then args[#args + 1] = "--enable-debug-command local" end
    os.remove(dir .. "/redis.pid")
    sh(table.concat(args, " "))
    -- ready, whatever its certificate names (a spec may test that)
    if ping(port, opts.password, opts.tls and { verify = false } or nil) then
      local s = { port = port, dir = dir, password = opts.password, tls = opts.tls, ca_file = ca_file,
                  url = (opts.tls and "rediss://" or "redis://")
                    .. (opts.password and ":" .. opts.password .. "@" or "") .. "127.0.0.1:" .. port }
      M.current = s
      return s
    end
    M.stop({ dir = dir })
    if opts.port or not slurp(dir .. "/redis.log"):find("in use", 1, true) then
      error("redis-server did not start: " .. slurp(dir .. "/redis.log"):sub(-400))
    end
  end
  error("redis-server: no free port")
end

-- Stops the server (it stays stopped: its port may be reused by start{ port = }).
function M.stop(s)
  s = s or M.current
  if not s then return end
  local pid = tonumber(slurp(s.dir .. "/redis.pid"))
  if pid then
    os.execute("kill " .. pid .. " 2>/dev/null")
    for _ = 1, 200 do
      if not running(pid) then break end
      core.sleep(0.01)
    end
  end
  os.remove(s.dir .. "/redis.pid")
end

-- For a describe block: a server started in its setup (registered first,
-- so the block's own setups see it) and finished in its teardown, a
-- connection of the spec's own to look into it (admin), and stores under
-- prefixes of their own (name1:, name2:, …). Returns that, filled in at setup.
-- busted's setup and teardown are the spec file's, not globals: passed in.
function M.for_spec(name, setup, teardown)
  local env, n = {}, 0
  setup(function()
    env.server = M.start()
    env.admin = assert(core.redis_connect("127.0.0.1", env.server.port, 1))
  end)
  teardown(function()
    if env.admin then env.admin:close() end
    M.finish(env.server)
  end)
  function env.prefix()
    n = n + 1
    return name .. n .. ":"
  end
  -- a store on the server under a prefix of its own, with overrides
  function env.new_store(overrides)
    local o = { redis = env.server.url, prefix = env.prefix() }
    for k, v in pairs(overrides or {}) do o[k] = v end
    return assert(require("helpdesk.redis_store").new(o))
  end
  return env
end

-- Stops the server and removes its directory.
function M.finish(s)
  s = s or M.current
  if not s then return end
  M.stop(s)
  for _, name in ipairs({ "redis.log", "ca.key", "ca.crt", "ca.srl", "redis.key", "redis.csr", "redis.crt",
                          "ext.cnf" }) do
    os.remove(s.dir .. "/" .. name)
  end
  os.remove(s.dir)
  if M.current == s then M.current = nil end
end

M.random_port, M.slurp = random_port, slurp

return M
