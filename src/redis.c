/* helpdesk.core's Redis primitive: one blocking connection over hiredis,
 * commands in, replies out as Lua values. What the commands mean (the
 * store, its scripts, reconnecting) is lua/helpdesk/redis_store.lua's. */
#define _POSIX_C_SOURCE 200809L

#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "redis.h"

#define REDIS_MT "helpdesk.core.redis"
#define MAX_ARGS 64
#define MAX_DEPTH 8

typedef struct {
  redisContext *ctx; /* NULL once closed, or after an I/O error */
} conn;

static struct timeval to_timeval(double s) {
  struct timeval tv;
  if (!(s > 0)) s = 0.001;
  if (s > 3600) s = 3600;
  tv.tv_sec = (time_t)s;
  tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
  return tv;
}

/* core.redis_connect(host, port, timeout) -> connection
 * -> nil, reason: the connection could not be made in timeout seconds
 * (which bounds every command after it too). */
static int redis_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  struct timeval tv = to_timeval(luaL_checknumber(L, 3));
  conn *c;
  luaL_argcheck(L, port >= 1 && port <= 65535, 2, "port must be 1 to 65535");
  c = (conn *)lua_newuserdata(L, sizeof *c);
  c->ctx = NULL;
  luaL_getmetatable(L, REDIS_MT);
  lua_setmetatable(L, -2);
  c->ctx = redisConnectWithTimeout(host, (int)port, tv);
  if (c->ctx == NULL || c->ctx->err || redisSetTimeout(c->ctx, tv) != REDIS_OK) {
    lua_pushnil(L);
    if (c->ctx == NULL) lua_pushliteral(L, "out of memory");
    else lua_pushstring(L, c->ctx->errstr[0] ? c->ctx->errstr : "connection failed");
    if (c->ctx) redisFree(c->ctx);
    c->ctx = NULL;
    return 2;
  }
  return 1;
}

/* Pushes reply as a Lua value: a string (bulk or status), an integer, false
 * for nil, a list for an array; an error inside an array is { err = msg }. */
static void push_reply(lua_State *L, const redisReply *r, int depth) {
  size_t i;
  luaL_checkstack(L, 3, "redis reply");
  switch (r->type) {
  case REDIS_REPLY_STRING:
  case REDIS_REPLY_STATUS:
    lua_pushlstring(L, r->str, r->len);
    break;
  case REDIS_REPLY_INTEGER:
    lua_pushinteger(L, (lua_Integer)r->integer);
    break;
  case REDIS_REPLY_ARRAY:
    lua_createtable(L, r->elements > 1000 ? 1000 : (int)r->elements, 0);
    for (i = 0; i < r->elements; i++) {
      if (depth >= MAX_DEPTH) lua_pushboolean(L, 0);
      else push_reply(L, r->element[i], depth + 1);
      lua_rawseti(L, -2, (int)i + 1);
    }
    break;
  case REDIS_REPLY_ERROR:
    lua_createtable(L, 0, 1);
    lua_pushlstring(L, r->str, r->len);
    lua_setfield(L, -2, "err");
    break;
  default: /* nil */
    lua_pushboolean(L, 0);
    break;
  }
}

static int push_protected(lua_State *L) {
  push_reply(L, (const redisReply *)lua_touserdata(L, 1), 0);
  return 1;
}

/* conn:command(name, arg...) -> the reply (false for a nil reply)
 * -> nil, message, "redis": Redis answered an error (NOSCRIPT…); the
 *    connection is still good
 * -> nil, message, "io": the connection failed (refused, timed out, reset)
 *    and is closed; make a new one.
 * Arguments are strings or numbers. Raises on misuse (a closed connection,
 * other argument types, more than 64 arguments). */
static int redis_command(lua_State *L) {
  conn *c = (conn *)luaL_checkudata(L, 1, REDIS_MT);
  int n = lua_gettop(L) - 1, i;
  const char *argv[MAX_ARGS];
  size_t lens[MAX_ARGS];
  redisReply *r;
  if (c->ctx == NULL) return luaL_argerror(L, 1, "connection is closed");
  luaL_argcheck(L, n >= 1 && n <= MAX_ARGS, n < 1 ? 2 : MAX_ARGS + 2, "1 to 64 arguments");
  for (i = 0; i < n; i++) argv[i] = luaL_checklstring(L, i + 2, &lens[i]);
  r = (redisReply *)redisCommandArgv(c->ctx, n, argv, lens);
  if (r == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, c->ctx->errstr[0] ? c->ctx->errstr : "connection failed");
    lua_pushliteral(L, "io");
    redisFree(c->ctx);
    c->ctx = NULL;
    return 3;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    lua_pushnil(L);
    lua_pushlstring(L, r->str, r->len);
    lua_pushliteral(L, "redis");
    freeReplyObject(r);
    return 3;
  }
  /* pushing may raise (out of memory): protected, so the reply is freed */
  lua_pushcfunction(L, push_protected);
  lua_pushlightuserdata(L, r);
  i = lua_pcall(L, 1, 1, 0);
  freeReplyObject(r);
  if (i != 0) return lua_error(L);
  return 1;
}

/* conn:close() -- also __gc and __close; safe to call more than once */
static int redis_close(lua_State *L) {
  conn *c = (conn *)luaL_checkudata(L, 1, REDIS_MT);
  if (c->ctx) redisFree(c->ctx);
  c->ctx = NULL;
  return 0;
}

/* conn:is_open() -> whether the connection can take commands */
static int redis_is_open(lua_State *L) {
  conn *c = (conn *)luaL_checkudata(L, 1, REDIS_MT);
  lua_pushboolean(L, c->ctx != NULL);
  return 1;
}

/* tostring(conn): never the address nor a password */
static int redis_tostring(lua_State *L) {
  conn *c = (conn *)luaL_checkudata(L, 1, REDIS_MT);
  lua_pushfstring(L, "helpdesk.core.redis (%s)", c->ctx ? "open" : "closed");
  return 1;
}

static const luaL_Reg redis_methods[] = {
    {"command", redis_command},
    {"close", redis_close},
    {"is_open", redis_is_open},
    {NULL, NULL},
};

static const luaL_Reg redis_meta[] = {
    {"__gc", redis_close},
#if LUA_VERSION_NUM >= 504
    {"__close", redis_close},
#endif
    {"__tostring", redis_tostring},
    {NULL, NULL},
};

void hd_redis_open(lua_State *L) {
  if (luaL_newmetatable(L, REDIS_MT)) {
    luaL_setfuncs(L, redis_meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, redis_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, REDIS_MT);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, redis_connect);
  lua_setfield(L, -2, "redis_connect");
}
