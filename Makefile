# feishu-helpdesk. The two commands: `make demo` and `make check`.
# A Lua is named by its version, or "jit" for LuaJIT 2.1 (Lua 5.1 API).
LUA_VERSION ?= 5.4
LUA_VERSIONS = 5.1 5.2 5.3 5.4 jit
LUAJIT_INCDIR ?= /usr/include/luajit-2.1
lua_incdir = $(if $(filter jit,$1),$(LUAJIT_INCDIR),/usr/include/lua$1)
lua_bin = $(if $(filter jit,$1),luajit,lua$1)
LUA ?= $(call lua_bin,$(LUA_VERSION))
LUA_INCDIR ?= $(call lua_incdir,$(LUA_VERSION))
CURL_CFLAGS ?= $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS ?= $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
# OpenSSL: libcrypto's SHA-256 and AES-256-CBC for the events (src/crypto.c),
# libssl for TLS to Redis (src/redis.c)
CRYPTO_CFLAGS ?= $(shell pkg-config --cflags libssl libcrypto 2>/dev/null)
CRYPTO_LIBS ?= $(shell pkg-config --libs libssl libcrypto 2>/dev/null || echo -lssl -lcrypto)
# hiredis: the Redis store's connection (src/redis.c)
HIREDIS_LIBS ?= $(shell pkg-config --libs hiredis 2>/dev/null || echo -lhiredis)
CC ?= cc
SHELL = /bin/bash
CFLAGS ?= -O2 -g
WARN = -std=c99 -Wall -Wextra -Werror -pedantic
BUILD = build
CORE = $(BUILD)/lua/$(LUA_VERSION)/helpdesk/core.so
CORES = $(foreach v,$(LUA_VERSIONS),$(BUILD)/lua/$(v)/helpdesk/core.so)
CORE_SRC = src/core.c src/wire.c src/crypto.c src/redis.c
CORE_HDR = src/compat.h src/wire.h src/crypto.h src/redis.h

# Debian packages the project needs; `make deps` installs the missing ones.
DEBS = make gcc pkg-config curl openssl libcurl4-openssl-dev libssl-dev \
       lua5.1 lua5.2 lua5.3 lua5.4 liblua5.1-0-dev liblua5.2-dev liblua5.3-dev liblua5.4-dev \
       luajit2 libluajit2-5.1-dev \
       lua-cjson lua-busted luarocks lua-check nginx libnginx-mod-http-lua valgrind \
       clang libclang-rt-14-dev lua-ldoc lua-markdown \
       redis-server libhiredis-dev lua-nginx-redis lua-socket

export LUA_PATH := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/lua/$(LUA_VERSION)/?.so;;

ASAN_CORE = $(BUILD)/asan/lua/$(LUA_VERSION)/helpdesk/core.so
SAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

FUZZ_SECONDS ?= 60
FUZZER = $(BUILD)/fuzz/fuzz_wire

.PHONY: all deps node-sdk build build-all lint test valgrind sanitize fuzz soak life bench examples rock doc check demo clean

all: build

deps:
	@tools/install-deps $(DEBS)

# The official Node SDK in bench/node (npm, from its lock file), for the bench
# and the specs' cross-check (spec/node_sdk_spec.lua); not for `make demo`.
node-sdk:
	@bench/node-sdk-install

build: $(CORE)

# the C core for every Lua (make check runs the specs on each)
build-all: $(CORES)

$(CORE): $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -fPIC -shared -I$(LUA_INCDIR) $(CURL_CFLAGS) $(CRYPTO_CFLAGS) -o $@ $(CORE_SRC) $(CURL_LIBS) $(CRYPTO_LIBS) $(HIREDIS_LIBS) -lpthread

$(BUILD)/lua/%/helpdesk/core.so: $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(WARN) $(CFLAGS) -fPIC -shared -I$(call lua_incdir,$*) $(CURL_CFLAGS) $(CRYPTO_CFLAGS) -o $@ $(CORE_SRC) $(CURL_LIBS) $(CRYPTO_LIBS) $(HIREDIS_LIBS) -lpthread

# The C core under AddressSanitizer and UBSan (clang); the spec suite runs on
# it with the ASan runtime preloaded into the interpreter.
$(ASAN_CORE): $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(dir $@)
	clang $(WARN) -O1 -g $(SAN_FLAGS) -fPIC -shared -I$(LUA_INCDIR) $(CURL_CFLAGS) $(CRYPTO_CFLAGS) -o $@ $(CORE_SRC) $(CURL_LIBS) $(CRYPTO_LIBS) $(HIREDIS_LIBS) -lpthread

sanitize: deps $(ASAN_CORE)
	tools/sanitize

# libFuzzer over every parser of the core and its decryption, for FUZZ_SECONDS, from fuzz/corpus.
$(FUZZER): fuzz/fuzz_wire.c src/wire.c src/wire.h src/crypto.c src/crypto.h
	@mkdir -p $(dir $@)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(CRYPTO_CFLAGS) -o $@ \
	  fuzz/fuzz_wire.c src/wire.c src/crypto.c $(CRYPTO_LIBS)

fuzz: deps $(FUZZER)
	tools/fuzz $(FUZZ_SECONDS)

# The benchmarks (bench/): never part of the tests.
$(BUILD)/bench/raw_send: bench/raw_send.c
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -D_POSIX_C_SOURCE=200809L -O2 $(CURL_CFLAGS) -o $@ $< $(CURL_LIBS)

bench: deps node-sdk build $(BUILD)/bench/raw_send
	fake/fakefeishu run $(LUA) bench/run.lua

# On every Lua: 100k calls (SOAK_CALLS) through one client and through
# short-lived clients, and 20,000 clients made and closed: file descriptors
# and Lua memory must stay flat. A script, not a timed test.
SOAK_CALLS ?= 100000
soak: deps build-all
	@rc=0; $(foreach v,$(LUA_VERSIONS),fake/fakefeishu run $(call lua_bin,$(v)) tools/soak.lua $(SOAK_CALLS) || rc=1;) \
	  exit $$rc

# A simulated week of a helpdesk bot (tools/life.lua) on a clock that jumps
# where anyone sleeps, judged call by call by a reference model.
life: deps build-all
	@rc=0; $(foreach v,$(LUA_VERSIONS),fake/fakefeishu run $(call lua_bin,$(v)) tools/life.lua || rc=1;) \
	  exit $$rc

lint:
	luacheck lua spec examples fake bench tools/soak.lua tools/life.lua tools/life_model.lua bin/helpdesk

test: node-sdk build-all
	fake/fakefeishu run $(LUA) /usr/bin/busted

valgrind: build
	fake/fakefeishu run valgrind -q --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite \
	  $(LUA) /usr/bin/busted --exclude-tags=openresty

examples: build
	fake/fakefeishu run examples/run-all

rock:
	tools/check-rock

# The API reference, from the source's doc comments (config.ld), into
# build/doc/; fails on any LDoc warning or an undocumented public function.
doc: deps build
	tools/check-doc

check: deps node-sdk build-all $(ASAN_CORE) $(FUZZER)
	@tools/check

demo: deps build
	@tools/demo

clean:
	rm -rf $(BUILD)
