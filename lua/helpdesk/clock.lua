-- Time for the limiter, retries and the token cache: a monotonic clock and
-- a sleep. Inside nginx, ngx.sleep yields instead of blocking the worker.
local core = require "helpdesk.core"
local openresty = require "helpdesk.openresty"

local M = { now = core.monotime }

local ngx = rawget(_G, "ngx")

-- ngx.sleep where nginx lets a handler wait; elsewhere (init_worker, log, a
-- plain script) a real sleep.
function M.sleep(s)
  if openresty.can_yield() then return ngx.sleep(s) end
  return core.sleep(s)
end

return M
