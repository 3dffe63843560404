-- Many POSTs at once on libcurl's multi interface (core.multi): at most
-- `concurrency` in flight over kept connections, each started no sooner
-- than the rate limiter allows, retried only when certainly not processed
-- (the rule of single sends), results in input order.
local clock = require "helpdesk.clock"
local core = require "helpdesk.core"
local errors = require "helpdesk.errors"
local ratelimit = require "helpdesk.ratelimit"
local retry = require "helpdesk.retry"
local transport = require "helpdesk.transport"

local ipairs, remove, min = ipairs, table.remove, math.min

local M = {}

-- b: { jobs = { { url =, body = } … }, endpoint =, concurrency =, deadline =, max_retries =,
--   max_rate_limit_wait =, tokens =, limiter = (or nil), headers = function(tok),
--   request = function(deadline) -> the core request fields but url, body, headers,
--   log_request, log_response, log_retry = the logger's hooks, or nil,
--   closed = function() -> the error of a client closed meanwhile, or nil,
--   secrets = function() -> the strings no error may show,
--   min_attempt = seconds of budget an exchange needs at least }
-- Returns a list: for each job, { obj = the decoded answer } or { err = error }.
function M.run(b)
  local jobs, out = b.jobs, {}
  if #jobs == 0 then return out end
  local slots = min(b.concurrency, #jobs)
  local m, merr = core.multi(slots)
  if not m then
    for i = 1, #jobs do out[i] = { err = errors.new("transport", { msg = merr }) } end
    return out
  end
  local queue = {}  -- job indices waiting, each with a not-before time in ready[]
  local ready, retries, refreshed, slot_job = {}, {}, {}, {}
  local start_at = {} -- the rate-limit slot a job holds: it must start then
  for i = 1, #jobs do
    queue[#queue + 1] = i
    ready[i], retries[i] = 0, 0
  end

  local function fail(i, err)
    err.retries = retries[i]
    out[i] = { err = err }
  end

  -- A job that may go now, or the time until one may (the queue head first).
  local function next_job(now)
    local soonest
    for q = 1, #queue do
      local i = queue[q]
      local at = start_at[i] or ready[i]
      if at <= now then return q end
      soonest = soonest and min(soonest, at) or at
    end
    return nil, soonest
  end

  local in_flight = 0
  while #queue > 0 or in_flight > 0 do
    local now = clock.now()
    -- past the budget nothing starts, but what went out is waited for
    local open = now < b.deadline
    if not open and in_flight == 0 then break end
    local wait_until = b.deadline
    -- a client closed meanwhile (from its logger, say) starts nothing more
    if b.closed and b.closed() then
      for q = #queue, 1, -1 do fail(remove(queue, q), b.closed()) end
    end
    -- start what may start
    while open and in_flight < slots and #queue > 0 do
      local q, soonest = next_job(now)
      if not q then
        wait_until = min(wait_until, soonest)
        break
      end
      local i = queue[q]
      -- the token before the rate-limit slot: a token fetch must not make a
      -- call start after its slot (it would crowd the calls after it). With
      -- transfers in flight, only a token at hand: a fetch would leave them
      -- undriven until their own timeouts, answered or not; they drain first.
      local tok, terr
      if in_flight > 0 then
        tok = b.tokens:peek()
        if not tok then break end
      else
        local attempt = b.request(b.deadline)
        if not attempt then break end -- the budget is spent: what is left fails below
        tok, terr = b.tokens:get(attempt)
      end
      local at, need = start_at[i], nil
      if tok and b.limiter and not at then
        at, need = b.limiter:reserve(clock, b.deadline - (b.min_attempt or 0))
        start_at[i] = at
      end
      if not tok or (b.limiter and not at) then
        remove(queue, q)
        fail(i, tok and ratelimit.past_budget(b.endpoint, "the batch", need) or terr)
      elseif at and at > clock.now() then
        wait_until = min(wait_until, at) -- held: it starts at its slot's time, not before
        break
      else
        local req = b.request(b.deadline)
        if not req then break end -- spent: what is left fails below
        if b.log_request then b.log_request(jobs[i].url) end
        -- closed meanwhile (from the logger, even this request's event): as
        -- a single send, this one does not go, nor any after it
        if b.closed and b.closed() then break end
        remove(queue, q)
        start_at[i] = nil
        req.method, req.url, req.body, req.headers = "POST", jobs[i].url, jobs[i].body, b.headers(tok)
        if b.started then b.started() end
        slot_job[m:add(req)] = { i = i, tok = tok, t0 = clock.now() }
        in_flight = in_flight + 1
      end
    end
    local left = wait_until - clock.now()
    if in_flight == 0 then
      if #queue == 0 or wait_until >= b.deadline then break end
      if left > 0 then clock.sleep(left) end
    else
      for _, r in ipairs(m:wait(open and min(1, left) or 1)) do
        local job = slot_job[r.slot]
        local i = job.i
        slot_job[r.slot] = nil
        in_flight = in_flight - 1
        -- the token this one went with, which others may have replaced
        -- among the client's last ones meanwhile
        local obj, err = transport.answer(r.status, r.status and r.body or r.error, r.headers, function()
          local list = b.secrets()
          list[#list + 1] = job.tok
          return list
        end)
        if b.log_response then b.log_response(jobs[i].url, obj, err, clock.now() - job.t0) end
        if obj then
          out[i] = { obj = obj, meta = err }
        else
          local step = retry.next_step(err, { method = "POST", retries = retries[i], max_retries = b.max_retries,
            refreshed = refreshed[i], refreshable = b.tokens:refreshable(),
            max_rate_limit_wait = b.max_rate_limit_wait })
          if step == "refresh" then
            b.tokens:invalidate(job.tok)
            refreshed[i] = true
            queue[#queue + 1] = i
          elseif step then
            if b.log_retry then b.log_retry(jobs[i].url, retries[i] + 1, step, err) end
            retries[i] = retries[i] + 1
            ready[i] = clock.now() + step
            queue[#queue + 1] = i
          else
            fail(i, err)
          end
        end
      end
    end
  end
  m:close()
  for i = 1, #jobs do
    if not out[i] then
      fail(i, errors.new("transport", { sent = false,
        msg = "the batch's budget ran out before this one was sent; nothing was sent" }))
    end
  end
  return out
end

return M
