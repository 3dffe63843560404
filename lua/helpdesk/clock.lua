-- Time for the limiter, retries and the token cache: a monotonic clock and
-- a sleep. Inside nginx, ngx.sleep yields instead of blocking the worker.
local core = require "helpdesk.core"
local openresty = require "helpdesk.openresty"

local M = { now = core.monotime }

local ngx = rawget(_G, "ngx")

-- ngx.sleep where nginx lets a handler wait; elsewhere (init_worker, log, a
-- plain script) a real sleep.
local function sleep(s)
  if openresty.can_yield() then return ngx.sleep(s) end
  return core.sleep(s)
end
M.sleep = sleep

-- Whether a sleep now lets other coroutines of this Lua state run: in nginx
-- where it yields, or when the caller set a sleep of their own (a scheduler's).
function M.yields()
  return M.sleep ~= sleep or openresty.can_yield()
end

return M
