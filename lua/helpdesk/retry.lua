-- When a failed call may be tried again, and how long to wait first.
-- The rule for POST: only when the request certainly was not processed.
local token = require "helpdesk.token"

local random, min = math.random, math.min

local M = {}

M.RATE_LIMITED_CODE = 99991400

-- libcurl codes of failures that may pass (DNS, connect, TLS handshake,
-- timeouts, a dropped connection); certificate and usage errors never do.
local TRANSIENT = {
  [5] = true, [6] = true, [7] = true, [16] = true, [18] = true, [28] = true,
  [35] = true, [52] = true, [55] = true, [56] = true, [65] = true, [92] = true,
}

function M.rate_limited(err)
  return (err.kind == "api" or err.kind == "http") and (err.status == 429 or err.code == M.RATE_LIMITED_CODE)
end

-- Was this failure certainly not processed by Feishu?
function M.not_processed(err)
  if M.rate_limited(err) then return true end
  return err.kind == "transport" and not err.sent and TRANSIENT[err.curl_code] == true
end

-- Might trying again help? GETs change nothing, so they are retried on any
-- passing failure; POSTs only when not processed.
function M.retryable(method, err)
  if M.not_processed(err) then return true end
  if method ~= "GET" then return false end
  if err.kind == "transport" then return TRANSIENT[err.curl_code] == true end
  return (err.kind == "http" or err.kind == "api") and err.status ~= nil and err.status >= 500
end

-- What to do after a failed try: "refresh" (a token-invalid answer, so not
-- processed: fetch a new token and try once more), seconds to wait before
-- trying again, or nil to give up. t: { method =, retries =, max_retries =,
-- refreshed =, refreshable =, max_rate_limit_wait = }.
function M.next_step(err, t)
  if err.kind == "api" and token.INVALID_CODES[err.code] and not t.refreshed and t.refreshable then
    return "refresh"
  end
  if t.retries >= t.max_retries or not M.retryable(t.method, err) then return nil end
  if M.rate_limited(err) and err.retry_after then
    if err.retry_after > t.max_rate_limit_wait then return nil end
    return err.retry_after
  end
  return M.backoff(t.retries + 1)
end

-- Exponential backoff with equal jitter: attempt 1 waits 0.1..0.2 s, then
-- 0.2..0.4 s, …, at most 2 s.
function M.backoff(attempt)
  local d = min(2, 0.2 * 2 ^ (attempt - 1))
  return d / 2 + random() * d / 2
end

return M
