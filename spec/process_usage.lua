-- What this process holds, for the specs and tools that check nothing
-- leaks (spec/collect_spec.lua, tools/soak.lua, tools/life.lua).
local M = {}

-- A full collection. LuaJIT's traces keep the objects they were specialised
-- on (the last client, say) as constants: flushed first, so that only real
-- growth counts.
function M.full_gc()
  if type(jit) == "table" then jit.flush() end
  collectgarbage()
  collectgarbage()
end

-- Lua memory in KiB after a full collection.
function M.lua_kib()
  M.full_gc()
  return collectgarbage("count")
end

-- Open file descriptors of this process (sockets included).
function M.open_fds()
  local stat = assert(io.open("/proc/self/stat"))
  local pid = stat:read("*n")
  stat:close()
  local p = assert(io.popen("ls /proc/" .. pid .. "/fd 2>/dev/null | wc -l"))
  local n = p:read("*n")
  p:close()
  return n
end

return M
