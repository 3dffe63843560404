-- Inside nginx (lua-nginx-module): a libcurl transfer in the worker would
-- stall every other request of that worker, so each HTTP exchange runs in
-- nginx's thread pool (ngx.run_worker_thread), on the core handle that the
-- thread's Lua VM keeps (helpdesk.thread). This object stands in for a core
-- handle: request(req) and close().
local core = require "helpdesk.core"

local type, setmetatable, tostring, min = type, setmetatable, tostring, math.min

local M = {}

local ngx = rawget(_G, "ngx")

-- Phases whose handlers may yield: run_worker_thread and ngx.sleep work there.
local YIELDABLE = { rewrite = true, access = true, content = true, timer = true }

-- True inside an nginx worker's Lua VM (not in a worker thread's VM, which
-- has no ngx.sleep, and not in resty's init phases).
function M.in_nginx()
  return type(ngx) == "table" and type(ngx.get_phase) == "function" and type(ngx.sleep) == "function"
end

function M.can_yield()
  return M.in_nginx() and YIELDABLE[ngx.get_phase()] == true
end

local Handle = {}
Handle.__index = Handle

-- opts: { thread_pool = name, allow_blocking = bool }.
function M.new(opts)
  return setmetatable({ pool = opts.thread_pool, allow_blocking = opts.allow_blocking }, Handle)
end

local function setup_error(field, msg)
  return nil, { field = field, message = msg }
end

-- The blocking fallback, only when the caller allowed it.
function Handle:blocking(req)
  if not self.direct then
    local h, err = core.new()
    if not h then return nil, { message = err } end
    self.direct = h
  end
  return self.direct:request(req)
end

-- Can the exchange go to the thread pool here and now?
local function pool_usable()
  return type(ngx.run_worker_thread) == "function" and YIELDABLE[ngx.get_phase()] == true
end

-- Whether a call can run here and now: nil and the reason (an error info
-- naming the option to change) if it would have to block and may not.
function Handle:check()
  if self.allow_blocking or pool_usable() then return true end
  if type(ngx.run_worker_thread) ~= "function" then
    return setup_error("allow_blocking", "this lua-nginx-module has no ngx.run_worker_thread (0.10.22 or "
      .. "later has); pass allow_blocking = true to block the nginx worker instead")
  end
  return setup_error("allow_blocking", "an HTTP call cannot wait for the thread pool in the "
    .. tostring(ngx.get_phase()) .. " phase (only in rewrite, access, content and timers); pass "
    .. "allow_blocking = true to block the nginx worker instead")
end

function Handle:request(req)
  if not pool_usable() then
    local ok, err = self:check()
    if not ok then return nil, err end
    return self:blocking(req)
  end
  -- Every VM of the pool busy (lua_worker_thread_vm_pool_size): wait for one,
  -- for as long as the exchange itself may take. Polled often: a call that
  -- waits goes out after its rate-limit slot, and should not go out late.
  local waited, pause, limit = 0, 0.001, req.timeout or 30
  while true do
    local ok, status, body, headers = ngx.run_worker_thread(self.pool, "helpdesk.thread", "request", req)
    if ok then return status, body, headers end
    local msg = tostring(status)
    if msg:find("not found", 1, true) and msg:find("thread pool", 1, true) then
      if self.allow_blocking then return self:blocking(req) end
      return setup_error("thread_pool", "nginx has no thread pool '" .. self.pool .. "': add `thread_pool "
        .. self.pool .. " threads=16;` to the main context of nginx.conf, name another with the thread_pool "
        .. "option, or pass allow_blocking = true")
    end
    if not msg:find("no available Lua vm", 1, true) then
      return nil, { message = "nginx worker thread failed: " .. msg }
    end
    if waited >= limit then
      return nil, { message = "no free Lua VM in nginx's thread pool for " .. limit
        .. " s: raise lua_worker_thread_vm_pool_size" }
    end
    ngx.sleep(pause)
    waited = waited + pause
    pause = min(pause * 2, 0.005)
  end
end

-- Runs fn(job) for every job, at most concurrency at once, in light
-- threads (each waits on the thread pool without holding up the others).
-- Returns the results in job order. Where the pool cannot be used (allowed
-- blocking), one after the other.
function M.each(jobs, concurrency, fn)
  local out, nxt = {}, 1
  local function worker()
    while nxt <= #jobs do
      local i = nxt
      nxt = nxt + 1
      out[i] = fn(jobs[i])
    end
  end
  if not M.can_yield() then
    worker()
    return out
  end
  local threads = {}
  for k = 1, math.min(concurrency, #jobs) do threads[k] = ngx.thread.spawn(worker) end
  for k = 1, #threads do ngx.thread.wait(threads[k]) end
  return out
end

-- The thread VMs keep their handles for the next client; only the fallback
-- handle is this client's own.
function Handle:close()
  if self.direct then self.direct:close() end
end

return M
