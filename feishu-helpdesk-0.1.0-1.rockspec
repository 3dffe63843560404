rockspec_format = "3.0"
package = "feishu-helpdesk"
version = "0.1.0-1"
source = {
  url = "git+https://example.invalid/feishu-helpdesk.git",
  tag = "v0.1.0",
}
description = {
  summary = "Feishu / Lark helpdesk message APIs for Lua, over libcurl",
  detailed = [[
Send helpdesk ticket messages and helpdesk-bot messages, and read a
ticket's messages, with tenant token management, clear errors and a thin
C core over libcurl.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
  "lua-cjson",
}
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  -- OpenSSL (Debian: libssl-dev): libcrypto for the events' SHA-256 and AES,
  -- libssl for TLS to Redis
  OPENSSL = { header = "openssl/ssl.h", library = "ssl" },
  -- hiredis (Debian: libhiredis-dev), the Redis store's connection
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
}
build = {
  type = "builtin",
  modules = {
    ["helpdesk.core"] = {
      sources = { "src/core.c", "src/wire.c", "src/crypto.c", "src/redis.c" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)", "$(HIREDIS_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)", "$(HIREDIS_LIBDIR)" },
      libraries = { "curl", "ssl", "crypto", "hiredis", "pthread" },
    },
    helpdesk = "lua/helpdesk.lua",
    ["helpdesk.batch"] = "lua/helpdesk/batch.lua",
    ["helpdesk.cli"] = "lua/helpdesk/cli.lua",
    ["helpdesk.client"] = "lua/helpdesk/client.lua",
    ["helpdesk.clock"] = "lua/helpdesk/clock.lua",
    ["helpdesk.config"] = "lua/helpdesk/config.lua",
    ["helpdesk.errors"] = "lua/helpdesk/errors.lua",
    ["helpdesk.events"] = "lua/helpdesk/events.lua",
    ["helpdesk.json"] = "lua/helpdesk/json.lua",
    ["helpdesk.message"] = "lua/helpdesk/message.lua",
    ["helpdesk.openresty"] = "lua/helpdesk/openresty.lua",
    ["helpdesk.ratelimit"] = "lua/helpdesk/ratelimit.lua",
    ["helpdesk.redis_store"] = "lua/helpdesk/redis_store.lua",
    ["helpdesk.retry"] = "lua/helpdesk/retry.lua",
    ["helpdesk.store"] = "lua/helpdesk/store.lua",
    ["helpdesk.thread"] = "lua/helpdesk/thread.lua",
    ["helpdesk.token"] = "lua/helpdesk/token.lua",
    ["helpdesk.transport"] = "lua/helpdesk/transport.lua",
    ["helpdesk.validate"] = "lua/helpdesk/validate.lua",
  },
  install = {
    bin = { helpdesk = "bin/helpdesk" },
  },
  copy_directories = { "examples" },
}
test = {
  type = "busted",
}
