-- Why the C core binds hiredis rather than using Debian's lua-redis: the
-- cost of a Redis round trip through each, on Lua 5.3 (lua-redis has no
-- Lua 5.4 build in Debian 12: /usr/share/lua/5.1 to 5.3 only). Not part of
-- make bench; needs `apt-get install lua-redis` and `make build-all`:
--   lua5.3 bench/redis_clients.lua
package.cpath = "build/lua/5.3/?.so;" .. package.cpath
package.path = "lua/?.lua;spec/?.lua;" .. package.path
local core = require "helpdesk.core"
local rs = require "redis_server"
local server = rs.start()
local redis = require "redis"
local lr = redis.connect("127.0.0.1", server.port)
local hc = assert(core.redis_connect("127.0.0.1", server.port, 1))
lr:set("k", "v")
local N = 20000
local res = { lr = {}, hc = {} }
for round = 1, 3 do
  local t = core.monotime()
  for _ = 1, N do hc:command("GET", "k") end
  res.hc[round] = N / (core.monotime() - t)
  t = core.monotime()
  for _ = 1, N do lr:get("k") end
  res.lr[round] = N / (core.monotime() - t)
end
table.sort(res.hc)
table.sort(res.lr)
print(string.format("GET round trips/s, Lua 5.3, median of 3 x %d: hiredis in the core %.0f, "
  .. "lua-redis (LuaSocket) %.0f, ratio %.2f",
  N, res.hc[2], res.lr[2], res.hc[2] / res.lr[2]))
hc:close()
rs.finish(server)
