-- Test inputs made apart from the library: the openssl command line (and
-- sha256sum) through temporary files, never helpdesk.core.
local unpack = table.unpack or unpack -- luacheck: ignore 143
local M = {}

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs cmd (its %s filled with the paths of temporary files holding each
-- input) and returns its standard output.
local function run(cmd, ...)
  local files, args = {}, {}
  for i = 1, select("#", ...) do
    local p = os.tmpname()
    write(p, (select(i, ...)))
    files[i], args[i] = p, "'" .. p .. "'"
  end
  local out_path = os.tmpname()
  local ok = os.execute(cmd:format(unpack(args)) .. " > '" .. out_path
    .. "' 2>/dev/null")
  local out = read(out_path)
  os.remove(out_path)
  for _, p in ipairs(files) do os.remove(p) end
  assert(ok == true or ok == 0, "command failed: " .. cmd)
  return out
end

-- Lower-case hex SHA-256 of s, by sha256sum.
function M.sha256_hex(s)
  return (run("sha256sum < %s", s):match("^(%x+)"))
end

-- Lower-case hex SHA-1 of s, by sha1sum.
function M.sha1_hex(s)
  return (run("sha1sum < %s", s):match("^(%x+)"))
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end
M.unhex = unhex

-- The base64 text Feishu puts in "encrypt": the iv, then the AES-256-CBC
-- ciphertext of plaintext under the key SHA-256(encrypt_key), by `openssl
-- enc` (PKCS#7 padding; with nopad the plaintext goes as it is and must be
-- a multiple of 16 bytes). iv_hex: 32 hex digits.
function M.ciphertext(encrypt_key, iv_hex, plaintext, nopad)
  local key_hex = M.sha256_hex(encrypt_key)
  return run("openssl enc -aes-256-cbc " .. (nopad and "-nopad " or "") .. "-K " .. key_hex .. " -iv " .. iv_hex
    .. " -in %s", plaintext)
end

function M.encrypt(encrypt_key, plaintext, iv_hex, nopad)
  iv_hex = iv_hex or "000102030405060708090a0b0c0d0e0f"
  return M.base64(unhex(iv_hex) .. M.ciphertext(encrypt_key, iv_hex, plaintext, nopad))
end

-- The plaintext of an "encrypt" value (base64 of the iv and the ciphertext),
-- by `openssl base64 -d` and `openssl enc -d` (which checks the padding).
function M.decrypt(encrypt_key, encrypt)
  local raw = run("openssl base64 -d -A -in %s", encrypt)
  local iv, ct = raw:sub(1, 16), raw:sub(17)
  local iv_hex = iv:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  return run("openssl enc -d -aes-256-cbc -K " .. M.sha256_hex(encrypt_key) .. " -iv " .. iv_hex .. " -in %s", ct)
end

-- Base64 of s on one line, by `openssl base64 -A`.
function M.base64(s)
  return (run("openssl base64 -A -in %s", s):gsub("%s+$", ""))
end

-- X-Lark-Signature for a request: hex SHA-256 of timestamp, nonce, the
-- encrypt key and the raw body.
function M.signature(timestamp, nonce, encrypt_key, body)
  return M.sha256_hex(timestamp .. nonce .. encrypt_key .. body)
end

-- X-Lark-Signature of the old card-action protocol: hex SHA-1 of timestamp,
-- nonce, the verification token and the raw body.
function M.card_signature(timestamp, nonce, verification_token, body)
  return M.sha1_hex(timestamp .. nonce .. verification_token .. body)
end

return M
