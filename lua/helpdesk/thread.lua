-- Runs in the Lua VMs of nginx's thread pool (ngx.run_worker_thread, see
-- helpdesk.openresty): the blocking libcurl exchange, off the worker. Each
-- VM serves one call at a time and keeps one core handle, so connections
-- are kept alive across calls and clients (the handle's options are reset
-- for every request).
local core = require "helpdesk.core"

local M = {}

local handle

-- req: the core's request table. Returns what handle:request returns.
function M.request(req)
  if handle == nil then
    local h, err = core.new()
    if not h then return nil, { message = err } end
    handle = h
  end
  return handle:request(req)
end

return M
