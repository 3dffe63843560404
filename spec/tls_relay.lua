-- A slow TCP relay for spec/redis_tls_hostile_spec.lua, run as a process of
-- its own (LuaSocket): lua tls_relay.lua port upstream delay free life ready
-- listens on 127.0.0.1:port and passes each connection's bytes to
-- 127.0.0.1:upstream at once, and the answers back at once for the first
-- `free` seconds of the connection, then one byte every `delay` seconds
-- (never, with delay 0). upstream 0: no upstream, nothing ever answered.
-- Writes "ready" (or the reason it could not listen) into the file `ready`;
-- exits after `life` seconds, whatever happens.
local socket = require "socket"

local port, upstream, delay, free, life = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]), tonumber(arg[4]),
  tonumber(arg[5])

local function say(what)
  local f = assert(io.open(arg[6], "w"))
  f:write(what)
  f:close()
end

local srv, err = socket.bind("127.0.0.1", port)
if not srv then
  say(tostring(err))
  os.exit(1)
end
srv:settimeout(0)
say("ready")

local conns = {}
local t_end = socket.gettime() + life
while socket.gettime() < t_end do
  local watch = { srv }
  for _, p in ipairs(conns) do
    watch[#watch + 1] = p.c
    if p.u then watch[#watch + 1] = p.u end
  end
  socket.select(watch, nil, 0.005)
  local now = socket.gettime()
  local c = srv:accept()
  if c and #conns < 16 then
    c:settimeout(0)
    local u
    if upstream > 0 then
      u = socket.tcp()
      u:settimeout(1)
      if not u:connect("127.0.0.1", upstream) then u = nil end
      if u then u:settimeout(0) end
    end
    conns[#conns + 1] = { c = c, u = u, t = now, buf = "", next = 0 }
  elseif c then
    c:close()
  end
  for i = #conns, 1, -1 do
    local p = conns[i]
    local data, rerr, partial = p.c:receive(4096)
    local got = data or partial
    if got and #got > 0 and p.u then p.u:send(got) end
    local closed = rerr == "closed"
    if p.u then
      local d, uerr, part = p.u:receive(4096)
      p.buf = p.buf .. (d or part or "")
      closed = closed or (uerr == "closed" and p.buf == "")
    end
    if #p.buf > 0 then
      local n = 0
      if now - p.t < free then
        local last, _, sent = p.c:send(p.buf)
        n = last or sent or 0
      elseif delay > 0 and now >= p.next then
        local last, _, sent = p.c:send(p.buf, 1, 1)
        n = last or sent or 0
        p.next = now + delay
      end
      p.buf = p.buf:sub(n + 1)
    end
    if closed then
      p.c:close()
      if p.u then p.u:close() end
      table.remove(conns, i)
    end
  end
end
