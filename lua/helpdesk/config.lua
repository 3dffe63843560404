-- Client options: defaults, checks, and the FEISHU_* environment.
local validate = require "helpdesk.validate"
local errors = require "helpdesk.errors"
local ratelimit = require "helpdesk.ratelimit"

local type, pairs, ipairs, pcall, getenv, tonumber, char = type, pairs, ipairs, pcall, os.getenv, tonumber,
  string.char
local proxy_secrets

local M = {}

M.FEISHU_BASE_URL = "https://open.feishu.cn"
M.LARK_BASE_URL = "https://open.larksuite.com"
M.DEFAULT_MAX_BODY = 8 * 1024 * 1024

local OPTIONS = {
  base_url = true, app_id = true, app_secret = true, tenant_access_token = true,
  helpdesk_id = true, helpdesk_token = true, timeout = true, connect_timeout = true,
  max_body_size = true, ca_file = true, ca_path = true, insecure = true,
  max_retries = true, budget = true, max_rate_limit_wait = true, rate_limit = true,
  thread_pool = true, shared_dict = true, allow_blocking = true, logger = true,
  proxy = true, user_agent = true, store = true, store_share = true,
}

-- base_url shortcuts, as the official SDKs' domain option has
local DOMAINS = { feishu = M.FEISHU_BASE_URL, lark = M.LARK_BASE_URL }

local ENV = {
  base_url = "FEISHU_BASE_URL", app_id = "FEISHU_APP_ID", app_secret = "FEISHU_APP_SECRET",
  tenant_access_token = "FEISHU_TENANT_ACCESS_TOKEN", helpdesk_id = "FEISHU_HELPDESK_ID",
  helpdesk_token = "FEISHU_HELPDESK_TOKEN",
}

-- A Redis store's options: the URL given, the rest from the environment
-- (FEISHU_REDIS_PREFIX, FEISHU_REDIS_TIMEOUT, FEISHU_REDIS_CA_FILE;
-- FEISHU_STORE_SHARE is the client's store_share). A value that is not a
-- number is left as written, for the option's own check to refuse.
function M.redis_from_env(url)
  local store = { redis = url }
  local prefix, timeout = getenv("FEISHU_REDIS_PREFIX"), getenv("FEISHU_REDIS_TIMEOUT")
  local ca_file = getenv("FEISHU_REDIS_CA_FILE")
  if prefix ~= nil and prefix ~= "" then store.prefix = prefix end
  if ca_file ~= nil and ca_file ~= "" then store.ca_file = ca_file end
  if timeout ~= nil and timeout ~= "" then store.timeout = tonumber(timeout) or timeout end
  return store
end

-- store_share from FEISHU_STORE_SHARE, for a client with a Redis store.
function M.share_from_env(opts)
  local share = getenv("FEISHU_STORE_SHARE")
  if share ~= nil and share ~= "" and type(opts.store) == "table" and opts.store.redis ~= nil then
    opts.store_share = tonumber(share) or share
  end
  return opts
end

-- The options of the default client, read from the environment.
function M.from_env()
  local opts = {}
  for k, name in pairs(ENV) do
    local v = getenv(name)
    if v ~= nil and v ~= "" then opts[k] = v end
  end
  -- the token and the limits shared through Redis by every host of the app
  local redis = getenv("FEISHU_REDIS_URL")
  if redis ~= nil and redis ~= "" then opts.store = M.redis_from_env(redis) end
  return M.share_from_env(opts)
end

-- The secrets among the credentials, which must be long enough to redact.
local SECRETS = { app_secret = true, tenant_access_token = true, helpdesk_token = true }

local function check_secret(out, opts, k)
  if opts[k] == nil then return true end
  local v, err = validate.secret(k, opts[k], SECRETS[k] and validate.MIN_SECRET)
  if not v then return nil, err end
  out[k] = v
  return true
end

-- %XX decoded, as libcurl decodes a URL's user and password.
local function percent_decoded(s)
  return (s:gsub("%%(%x%x)", function(h) return char(tonumber(h, 16)) end))
end

-- Where libcurl finds a proxy when none is given.
local PROXY_ENV = { "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY" }

-- The proxy URLs a client's calls may go through (the option's, else
-- those of the environment), with the passwords they hold as written and as
-- sent (percent-decoded): what errors must not show. A password shorter than
-- a secret may be (once decoded) is refused: it could not be redacted.
-- Returns { url or password, ... } and the { user, password } pairs for
-- their Basic credentials, or nil and an invalid error.
proxy_secrets = function(proxy)
  local found = {}
  if proxy then
    found[1] = { name = "proxy", url = proxy }
  else
    for _, name in ipairs(PROXY_ENV) do
      local v = getenv(name)
      if v and v ~= "" then found[#found + 1] = { name = name, url = v } end
    end
  end
  local list, pairs_ = {}, {}
  for _, f in ipairs(found) do
    list[#list + 1] = f.url
    local user, password = f.url:match("^%a[%w+.-]*://([^:@/]*):([^@/]*)@")
    if not user then user, password = f.url:match("^([^:@/]*):([^@/]*)@") end -- no scheme
    if password and password ~= "" then
      local plain = percent_decoded(password)
      if #plain < validate.MIN_SECRET then
        local where = f.name == "proxy" and "" or " (in the environment's " .. f.name .. ")"
        return nil, errors.invalid("proxy", "has a password shorter than " .. validate.MIN_SECRET
          .. " bytes" .. where .. ", which could not be kept out of messages")
      end
      list[#list + 1] = password
      list[#list + 1] = plain
      pairs_[#pairs_ + 1] = { percent_decoded(user), plain }
    end
  end
  return { list = list, basic = pairs_ }
end

-- Returns a clean copy of opts with defaults filled in, or nil and an
-- invalid error naming the field.
-- The store option st, checked: the methods of a lua_shared_dict.
function M.store(st)
  for _, m in ipairs({ "get", "set", "add", "delete", "incr" }) do
    -- a table, or userdata with a metatable (a lua_shared_dict)
    local found, f = pcall(function() return st[m] end)
    if not found or type(f) ~= "function" then
      return nil, errors.invalid("store", "must have the methods get, set, add, delete and incr "
        .. "(helpdesk.memory_store() or a lua_shared_dict), or be { redis = \"redis://…\" }")
    end
  end
  return st
end

M.proxy_secrets = function(proxy) return proxy_secrets(proxy) end

function M.check(opts)
  if type(opts) ~= "table" then return nil, errors.invalid("options", "must be a table") end
  local ok, err = validate.known_keys("options", opts, OPTIONS)
  if not ok then return nil, err end

  local out = {}
  out.base_url, err = validate.base_url(DOMAINS[opts.base_url] or opts.base_url or M.FEISHU_BASE_URL)
  if not out.base_url then return nil, err end

  for _, k in pairs({ "app_id", "app_secret", "tenant_access_token", "helpdesk_id", "helpdesk_token" }) do
    ok, err = check_secret(out, opts, k)
    if not ok then return nil, err end
  end
  -- these two go into the token request's JSON body
  for _, k in ipairs({ "app_id", "app_secret" }) do
    if out[k] then
      ok, err = validate.utf8(k, out[k])
      if not ok then return nil, err end
    end
  end
  if out.tenant_access_token then
    if out.app_id or out.app_secret then
      return nil, errors.invalid("tenant_access_token", "cannot be given together with app_id and app_secret")
    end
  elseif not out.app_id then
    return nil, errors.invalid("app_id", "is missing: give app_id and app_secret, or tenant_access_token")
  elseif not out.app_secret then
    return nil, errors.invalid("app_secret", "is missing")
  end
  if not out.helpdesk_id then return nil, errors.invalid("helpdesk_id", "is missing") end
  if not out.helpdesk_token then return nil, errors.invalid("helpdesk_token", "is missing") end
  if out.helpdesk_id:find(":", 1, true) then
    return nil, errors.invalid("helpdesk_id", "must not contain ':'")
  end

  out.timeout, err = validate.seconds("timeout", opts.timeout or 30)
  if not out.timeout then return nil, err end
  out.connect_timeout, err = validate.seconds("connect_timeout", opts.connect_timeout or 5)
  if not out.connect_timeout then return nil, err end
  out.max_body_size, err = validate.integer("max_body_size", opts.max_body_size or M.DEFAULT_MAX_BODY, 1024)
  if not out.max_body_size then return nil, err end
  for _, k in pairs({ "ca_file", "ca_path" }) do
    ok, err = check_secret(out, opts, k)
    if not ok then return nil, err end
  end
  if opts.insecure ~= nil and type(opts.insecure) ~= "boolean" then
    return nil, errors.invalid("insecure", "must be a boolean")
  end
  out.insecure = opts.insecure == true

  out.max_retries, err = validate.integer("max_retries", opts.max_retries or 3, 0, 10)
  if out.max_retries == nil then return nil, err end
  out.budget, err = validate.seconds("budget", opts.budget or 60)
  if not out.budget then return nil, err end
  out.max_rate_limit_wait, err = validate.seconds("max_rate_limit_wait", opts.max_rate_limit_wait or 30)
  if not out.max_rate_limit_wait then return nil, err end
  -- inside nginx only (helpdesk.openresty); checked everywhere all the same
  out.thread_pool = opts.thread_pool or "helpdesk"
  if type(out.thread_pool) ~= "string" or not out.thread_pool:match("^[%w_%-]+$") then
    return nil, errors.invalid("thread_pool", "must be the name of an nginx thread_pool")
  end
  out.shared_dict = opts.shared_dict
  if out.shared_dict == nil then out.shared_dict = "helpdesk" end
  if out.shared_dict ~= false and (type(out.shared_dict) ~= "string" or out.shared_dict == "") then
    return nil, errors.invalid("shared_dict", "must be the name of a lua_shared_dict, or false")
  end
  out.shared_dict_given = opts.shared_dict ~= nil
  if opts.allow_blocking ~= nil and type(opts.allow_blocking) ~= "boolean" then
    return nil, errors.invalid("allow_blocking", "must be a boolean")
  end
  out.allow_blocking = opts.allow_blocking == true

  -- a proxy for every call (libcurl's syntax: http://, https://, socks5h://…;
  -- without it libcurl follows the http_proxy / https_proxy environment)
  if opts.proxy ~= nil then
    local v, perr = validate.secret("proxy", opts.proxy)
    if not v then return nil, perr end
    if not v:match("^%a[%w+.-]*://[^%s]+$") then
      return nil, errors.invalid("proxy", "must be a URL such as http://host:3128")
    end
    out.proxy = v
  end
  out.proxy_secrets, err = proxy_secrets(out.proxy)
  if not out.proxy_secrets then return nil, err end
  -- appended to the User-Agent, to tell one's integration apart in Feishu's logs
  if opts.user_agent ~= nil then
    local v, uerr = validate.secret("user_agent", opts.user_agent)
    if not v then return nil, uerr end
    out.user_agent = v
  end

  -- where the token and the limiter's slots live, shared by the clients
  -- given the same one (one app's budget across helpdesks, say)
  if type(opts.store) == "table" and opts.store.redis ~= nil and opts.store.get == nil then
    -- { redis = "redis://…", prefix =, timeout = }: the client makes the store
    local ok_, serr = require("helpdesk.redis_store").new(opts.store)
    if not ok_ then return nil, serr end
    out.redis = { redis = opts.store.redis, prefix = opts.store.prefix, timeout = opts.store.timeout,
                  ca_file = opts.store.ca_file, insecure = opts.store.insecure }
  elseif opts.store ~= nil then
    local st, serr = M.store(opts.store)
    if not st then return nil, serr end
    out.store = st
  end
  -- how many hosts share the Redis store: while Redis is down each keeps
  -- this share of every limit
  if opts.store_share ~= nil then
    if not out.redis then
      return nil, errors.invalid("store_share", "needs a Redis store (store = { redis = \"redis://…\" })")
    end
    out.store_share, err = validate.integer("store_share", opts.store_share, 1, 1000)
    if not out.store_share then return nil, err end
  end

  if opts.logger ~= nil and type(opts.logger) ~= "function" then
    return nil, errors.invalid("logger", "must be a function(event)")
  end
  out.logger = opts.logger

  local why
  out.rate_limit, why = ratelimit.build(opts.rate_limit)
  if out.rate_limit == nil then return nil, errors.invalid("rate_limit", why) end
  return out
end

return M
