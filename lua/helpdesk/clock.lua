-- Time for the limiter, retries and the token cache: a monotonic clock and
-- a sleep. Inside nginx, ngx.sleep yields instead of blocking the worker.
local core = require "helpdesk.core"

local M = { now = core.monotime, sleep = core.sleep }

local ngx = rawget(_G, "ngx")
if type(ngx) == "table" and type(ngx.sleep) == "function" then
  M.sleep = function(s) return ngx.sleep(s) end
end

return M
