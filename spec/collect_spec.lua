-- Clients that nobody holds any more are collected, with their connections,
-- on every Lua: 5.1 and LuaJIT have no ephemerons, so nothing the client
-- keeps out of sight (its secrets, its token cache) may lead back to it.
local fake = require "fake"

local PATH = "/open-apis/helpdesk/v1/tickets/" .. fake.TICKET .. "/messages"
local TEXT = { msg_type = "text", content = { text = "collected" } }
local N = 200

local usage = require "process_usage"
local fds, full_gc = usage.open_fds, usage.full_gc

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

-- Makes N clients with make(i), each used by use(c, i), held only by a
-- weak-valued probe; returns how many the collector left, and the file
-- descriptors before and after.
local function churn(make, use)
  local probe = setmetatable({}, { __mode = "v" })
  full_gc()
  local before = fds()
  -- in a frame of its own, gone before the collection: no stack slot keeps
  -- the last client
  local function run()
    for i = 1, N do
      local c = make(i)
      use(c, i)
      probe[i] = c
    end
  end
  run()
  full_gc()
  local left = count(probe)
  return left, before, fds(), left .. " of " .. N .. " clients left after a full collection"
end

describe("clients", function()
  before_each(function() fake.reset(); fake.config({ record = false }) end)

  it("are collected with their sockets after a token fetch and a call, closed or not", function()
    local left, before, after, why = churn(function() return fake.client({ rate_limit = false }) end,
      function(c, i)
        assert(c:list_ticket_messages(fake.TICKET))
        if i % 2 == 0 then c:close() end
      end)
    assert.are.equal(0, left, why)
    assert.is_true(after <= before, before .. " descriptors before, " .. after .. " after")
  end)

  it("are collected when their logger holds them", function()
    local left, before, after, why = churn(function()
      local c
      c = fake.client({ rate_limit = false, logger = function(e) e.client = tostring(c) end })
      return c
    end, function(c) assert(c:send_ticket_message(fake.TICKET, TEXT)) end)
    assert.are.equal(0, left, why)
    assert.is_true(after <= before, before .. " descriptors before, " .. after .. " after")
  end)

  it("are collected after a batch, a failed call and a listing iterator", function()
    local left, _, _, why = churn(function() return fake.client({ rate_limit = false }) end, function(c, i)
      if i % 3 == 0 then
        assert.are.equal(0, assert(c:send_ticket_messages({
          { ticket_id = fake.TICKET, msg_type = "text", content = { text = "a" } },
          { ticket_id = fake.TICKET, msg_type = "text", content = { text = "b" } } })).failed)
      elseif i % 3 == 1 then
        fake.fault({ path = PATH, method = "GET", status = 400, body = '{"code":154000,"msg":"no"}' })
        assert.is_nil((c:list_ticket_messages(fake.TICKET)))
      else
        for _ in c:ticket_messages(fake.TICKET) do end -- luacheck: ignore 512
      end
    end)
    assert.are.equal(0, left, why)
  end)

  it("are collected when made with a fixed token and a shared store", function()
    local helpdesk = require "helpdesk"
    local st = helpdesk.memory_store()
    local left, _, _, why = churn(function(i)
      if i % 2 == 0 then return fake.client({ store = st }) end
      return fake.client({ app_id = false, app_secret = false, tenant_access_token = "t-fixed-token" })
    end, function(c) c:list_ticket_messages(fake.TICKET) end)
    assert.are.equal(0, left, why)
  end)

  it("are collected when the store given them refers back to them", function()
    local helpdesk = require "helpdesk"
    local left, before, after, why = churn(function()
      -- a caller's store that logs through its client: the store leads back
      local c
      local inner = helpdesk.memory_store()
      local st = setmetatable({}, { __index = function(_, name)
        return function(_, ...)
          if c then c.last_store_call = name end
          return inner[name](inner, ...)
        end
      end })
      c = fake.client({ store = st })
      return c
    end, function(c)
      assert(c:send_ticket_message(fake.TICKET, TEXT))
      -- and while it lives it keeps its store, whatever its fields become
      c.store = nil
      full_gc()
      local fetched = fake.state().token_count
      assert(c:send_ticket_message(fake.TICKET, TEXT))
      assert.are.equal(fetched, fake.state().token_count, "the token was fetched again: the store was lost")
    end)
    assert.are.equal(0, left, why)
    assert.is_true(after <= before, before .. " descriptors before, " .. after .. " after")
  end)

  it("replaced by configure mid-listing are collected with their sockets once the listing is done or dropped",
     function()
    local helpdesk = require "helpdesk"
    fake.ticket({ ticket_id = fake.TICKET, messages = 450, start = 1700000000, step = 60 })
    local probe = setmetatable({}, { __mode = "v" })
    full_gc()
    local before = fds()
    local function run()
      for i = 1, 20 do
        probe[#probe + 1] = assert(helpdesk.configure(fake.options({ rate_limit = false })))
        local n = 0
        for _ in helpdesk.ticket_messages(fake.TICKET) do
          n = n + 1
          if n == 200 then probe[#probe + 1] = assert(helpdesk.configure(fake.options({ rate_limit = false }))) end
          if i % 2 == 0 and n == 300 then break end -- dropped half-way
        end
        assert.are.equal(i % 2 == 0 and 300 or 450, n)
      end
    end
    run()
    full_gc()
    -- the default client the last configure set, and nothing else
    assert.are.equal(1, count(probe), count(probe) .. " of 40 clients left after a full collection")
    local after = fds()
    assert.is_true(after <= before + 1, before .. " descriptors before, " .. after .. " after")
  end)
end)
