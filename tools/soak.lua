-- Soak: N calls (default 100k) through one client, then through short-lived
-- clients, against the fake Feishu (fake/fakefeishu run). Prints file
-- descriptors and Lua memory along the way; fails if either grows.
-- Usage: fake/fakefeishu run lua5.4 tools/soak.lua [calls]
package.path = "lua/?.lua;spec/?.lua;" .. package.path
package.cpath = "build/lua/" .. (type(jit) == "table" and "jit" or _VERSION:match("%d+%.%d+")) .. "/?.so;"
  .. package.cpath
local fake = require "fake"
local core = require "helpdesk.core"

local N = tonumber(arg[1]) or 100000
local TEXT = { msg_type = "text", content = { text = "soak" } }

local function fds()
  local p = io.popen("ls /proc/" .. (io.open("/proc/self/stat"):read("*n")) .. "/fd 2>/dev/null | wc -l")
  local n = p:read("*n")
  p:close()
  return n
end

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local function lua_kib()
  collectgarbage()
  collectgarbage()
  return collectgarbage("count")
end

-- the fake keeps no record of requests, and the ticket is not stored huge
fake.reset()
fake.config({ record = false })

local failed = false
local function phase(name, step)
  -- made up front, so that the marks themselves do not count as growth
  local marks, taken = {}, 0
  for k = 1, 10 do marks[k] = { i = 0, fds = 0, lua = 0, rss = 0 } end
  local t0 = core.monotime()
  for i = 1, N do
    local ok, err = step(i)
    if not ok then error(name .. " call " .. i .. ": " .. tostring(err)) end
    if i % (N // 10) == 0 then
      taken = taken + 1
      local m = marks[taken]
      m.i, m.lua = i, lua_kib() -- collects first: unclosed clients give their sockets back
      m.fds, m.rss = fds(), rss_kib()
      if i % (N // 2) == 0 then fake.reset(); fake.config({ record = false }) end
    end
  end
  local dt = core.monotime() - t0
  print(string.format("%s: %d calls in %.1f s (%.0f/s)", name, N, dt, N / dt))
  for _, m in ipairs(marks) do
    print(string.format("  after %6d: fds %3d  lua %8.1f KiB  rss %7d KiB", m.i, m.fds, m.lua, m.rss))
  end
  -- flat: the last mark against the second (the first warms caches up)
  local a, b = marks[2], marks[#marks]
  if b.fds > a.fds then print("  FAIL: file descriptors grew"); failed = true end
  if b.lua > a.lua + 8 then print("  FAIL: Lua memory grew"); failed = true end
  if b.rss > a.rss + 1024 then print("  FAIL: RSS grew by more than 1 MiB"); failed = true end
end

local one = fake.client({ rate_limit = false })
phase("one client", function()
  return one:send_ticket_message(fake.TICKET, TEXT)
end)
one:close()

phase("short-lived clients", function(i)
  local c = fake.client({ rate_limit = false, tenant_access_token = "t-soak", app_id = false, app_secret = false })
  -- the fixed token is not one the fake issued: an api error, a full exchange all the same
  local _, err = c:list_ticket_messages(fake.TICKET)
  if i % 2 == 0 then c:close() end -- and half are left to the collector
  return err and err.code == 99991663, err
end)

os.exit(failed and 1 or 0)
