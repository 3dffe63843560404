-- Soak: N calls (default 100k) through one client, then through short-lived
-- clients, then 20,000 clients made and closed, against the fake Feishu
-- (fake/fakefeishu run). Prints file descriptors and Lua memory along the
-- way; fails if either grows. Runs on every Lua (make soak runs each).
-- Usage: fake/fakefeishu run lua5.4 tools/soak.lua [calls]
package.path = "lua/?.lua;spec/?.lua;" .. package.path
package.cpath = "build/lua/" .. (type(jit) == "table" and "jit" or _VERSION:match("%d+%.%d+")) .. "/?.so;"
  .. package.cpath
local fake = require "fake"
local usage = require "process_usage"
local core = require "helpdesk.core"

local N = tonumber(arg[1]) or 100000
-- closed clients: a few seconds' worth on every Lua, whatever N
local CLOSED = 20000
local floor = math.floor
local TEXT = { msg_type = "text", content = { text = "soak" } }

local fds, lua_kib = usage.open_fds, usage.lua_kib

local function rss_kib()
  for line in io.lines("/proc/self/status") do
    local v = line:match("^VmRSS:%s+(%d+)")
    if v then return tonumber(v) end
  end
end

-- the fake keeps no record of requests, and the ticket is not stored huge
fake.reset()
fake.config({ record = false })

local failed = false
-- n steps (calls, or clients), with twenty marks of descriptors and memory.
local MARKS = 20
local function phase(name, step, n, what)
  n, what = n or N, what or "calls"
  -- made up front, so that the marks themselves do not count as growth
  local marks, taken = {}, 0
  for k = 1, MARKS do marks[k] = { i = 0, fds = 0, lua = 0, rss = 0 } end
  local every, half = floor(n / MARKS), floor(n / 2)
  local t0 = core.monotime()
  for i = 1, n do
    local ok, err = step(i)
    if not ok then error(name .. " step " .. i .. ": " .. tostring(err)) end
    if i % every == 0 and taken < #marks then
      taken = taken + 1
      local m = marks[taken]
      m.i, m.lua = i, lua_kib() -- collects first: unclosed clients give their sockets back
      m.fds, m.rss = fds(), rss_kib()
      if i % half == 0 then fake.reset(); fake.config({ record = false }) end
    end
  end
  local dt = core.monotime() - t0
  print(string.format("%s (%s): %d %s in %.1f s (%.0f/s)", name,
    type(jit) == "table" and jit.version or _VERSION, n, what, dt, n / dt))
  for _, m in ipairs(marks) do
    print(string.format("  after %6d: fds %3d  lua %8.1f KiB  rss %7d KiB", m.i, m.fds, m.lua, m.rss))
  end
  -- flat: the last mark against the third (the first ones warm caches
  -- up); for Lua memory the least of the last five against the most of
  -- five early ones, since the collector's tables come and go in steps of
  -- tens of KiB (5.1, LuaJIT: a see-saw, low at some marks whatever the
  -- run), while a leak only grows, and is above the early ones at all five
  local a, b = marks[3], marks[#marks]
  local early, late = -math.huge, math.huge
  for k = 3, 7 do early = math.max(early, marks[k].lua) end
  for k = MARKS - 4, MARKS do late = math.min(late, marks[k].lua) end
  if b.fds > a.fds then print("  FAIL: file descriptors grew"); failed = true end
  if late > early + 8 then print("  FAIL: Lua memory grew"); failed = true end
  if b.rss > a.rss + 1024 then print("  FAIL: RSS grew by more than 1 MiB"); failed = true end
end

local one = fake.client({ rate_limit = false })
phase("one client", function()
  return one:send_ticket_message(fake.TICKET, TEXT)
end)
one:close()

phase("short-lived clients", function(i)
  local c = fake.client({ rate_limit = false, tenant_access_token = "t-soaking", app_id = false, app_secret = false })
  -- the fixed token is not one the fake issued: an api error, a full exchange all the same
  local _, err = c:list_ticket_messages(fake.TICKET)
  if i % 2 == 0 then c:close() end -- and half are left to the collector
  return err and err.code == 99991663, err
end)

-- clients that never call, closed: each must go with its private state
phase("closed clients", function()
  local c = fake.client()
  c:close()
  return true
end, CLOSED, "clients")

os.exit(failed and 1 or 0)
