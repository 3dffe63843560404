/* helpdesk.core's Redis primitive: one blocking connection, commands in,
 * replies out as Lua values, plain or over TLS (rediss://), which hiredis
 * 0.14 (Debian 12's) has none of. hiredis connects and frames; the core
 * reads and writes (libssl over TLS) on a non-blocking socket, so that one
 * deadline bounds a whole command. What the commands mean (the store, its
 * scripts, reconnecting) is lua/helpdesk/redis_store.lua's. */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <lauxlib.h>
#include <lua.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "compat.h"
#include "redis.h"

#define REDIS_MT "helpdesk.core.redis"
#define MAX_ARGS 64
#define MAX_DEPTH 8

typedef struct {
  redisContext *ctx; /* NULL once closed, or after an I/O error */
  SSL_CTX *tls_ctx;  /* with TLS: its context and session, else NULL */
  SSL *tls;
  double timeout;    /* seconds for a whole command (and a TLS handshake) */
} conn;

/* Frees what c holds; it is closed after (any number of times). */
static void conn_free(conn *c) {
  if (c->tls) SSL_free(c->tls);
  if (c->tls_ctx) SSL_CTX_free(c->tls_ctx);
  if (c->ctx) redisFree(c->ctx); /* closes the socket, after TLS let go of it */
  c->tls = NULL;
  c->tls_ctx = NULL;
  c->ctx = NULL;
}

/* The reason for what just failed in libssl, into buf: the certificate's
 * verification first, else libssl's queue (emptied), else errno's. */
static const char *tls_reason(conn *c, char *buf, size_t size) {
  /* unverified (insecure), the result names no failure: a reset or a
   * timeout must not read as a certificate refused */
  long v = c->tls && SSL_get_verify_mode(c->tls) != SSL_VERIFY_NONE ? SSL_get_verify_result(c->tls) : X509_V_OK;
  unsigned long e = ERR_get_error();
  if (v != X509_V_OK) {
    snprintf(buf, size, "TLS: certificate verify failed: %s", X509_verify_cert_error_string(v));
  } else if (e != 0) {
    char what[200];
    ERR_error_string_n(e, what, sizeof what);
    snprintf(buf, size, "TLS: %s", what);
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    snprintf(buf, size, "Resource temporarily unavailable"); /* as hiredis says a timeout */
  } else {
    snprintf(buf, size, "TLS: %s", errno ? strerror(errno) : "connection closed");
  }
  ERR_clear_error();
  return buf;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits until fd is ready for writing (or reading), until deadline: 1 to
 * try again; 0 when the time ran out (errno EAGAIN) or poll failed. */
static int fd_wait(int fd, int writing, double deadline) {
  struct pollfd p;
  double left;
  int n;
  p.fd = fd;
  p.events = writing ? POLLOUT : POLLIN;
  for (;;) {
    left = deadline - now_s();
    if (left <= 0) break;
    p.revents = 0;
    n = poll(&p, 1, (int)(left * 1000) + 1);
    if (n > 0) return 1;
    if (n < 0 && errno != EINTR) return 0;
  }
  errno = EAGAIN;
  return 0;
}

/* After ret from an SSL_ call on c's (non-blocking) socket: waits until
 * the socket is ready for what libssl wants, until deadline. Returns 1 to
 * call again; 0 when it failed (errno EAGAIN when the time ran out). */
static int tls_wait(conn *c, int ret, double deadline) {
  int why = SSL_get_error(c->tls, ret);
  if (why != SSL_ERROR_WANT_READ && why != SSL_ERROR_WANT_WRITE) return 0;
  if (fd_wait(c->ctx->fd, why == SSL_ERROR_WANT_WRITE, deadline)) return 1;
  why = errno; /* EAGAIN: the time ran out, which tls_reason says */
  ERR_clear_error();
  errno = why;
  return 0;
}

/* Makes fd non-blocking: every read and write then waits in poll, within
 * one deadline for a whole handshake or command. Returns 0 on failure. */
static int set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

/* Starts TLS on c's connected socket: the server's certificate checked
 * against ca_file (NULL: the system's) and host, unless verify is 0.
 * Returns NULL, or the reason (in buf). */
static const char *tls_start(conn *c, const char *host, int verify, const char *ca_file, char *buf, size_t size) {
  unsigned char ip[16];
  int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1, ret;
  double deadline = now_s() + c->timeout;
  ERR_clear_error();
  errno = 0;
  c->tls_ctx = SSL_CTX_new(TLS_client_method());
  if (c->tls_ctx == NULL) return tls_reason(c, buf, size);
  SSL_CTX_set_min_proto_version(c->tls_ctx, TLS1_2_VERSION);
  if (verify) {
    SSL_CTX_set_verify(c->tls_ctx, SSL_VERIFY_PEER, NULL);
    if ((ca_file ? SSL_CTX_load_verify_locations(c->tls_ctx, ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(c->tls_ctx)) != 1) {
      ERR_clear_error();
      snprintf(buf, size, "TLS: the CA certificates could not be read%s", ca_file ? " from store.ca_file" : "");
      return buf;
    }
  }
  c->tls = SSL_new(c->tls_ctx);
  if (c->tls == NULL || SSL_set_fd(c->tls, c->ctx->fd) != 1) return tls_reason(c, buf, size);
  /* non-blocking from here: each SSL_ call waits in tls_wait, within the
   * handshake's or the command's deadline */
  if (!set_nonblocking(c->ctx->fd)) return tls_reason(c, buf, size);
  if (!is_ip && SSL_set_tlsext_host_name(c->tls, host) != 1) return tls_reason(c, buf, size);
  if (verify) {
    X509_VERIFY_PARAM *param = SSL_get0_param(c->tls);
    if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host) : X509_VERIFY_PARAM_set1_host(param, host, 0)) != 1)
      return tls_reason(c, buf, size);
  }
  for (;;) {
    errno = 0;
    ret = SSL_connect(c->tls);
    if (ret == 1) return NULL;
    if (!tls_wait(c, ret, deadline)) return tls_reason(c, buf, size);
  }
}

static struct timeval to_timeval(double s) {
  struct timeval tv;
  if (!(s > 0)) s = 0.001;
  if (s > 3600) s = 3600;
  tv.tv_sec = (time_t)s;
  tv.tv_usec = (suseconds_t)((s - (double)tv.tv_sec) * 1e6);
  return tv;
}

/* SIGPIPE held back while a connection writes: a write to a peer that
 * closed (a Redis restarted, CLIENT KILL, its idle timeout) would end the
 * process, where it must be an I/O error. hiredis and libssl write with
 * write(), which has no MSG_NOSIGNAL. One raised meanwhile by our write is
 * taken off this thread before the mask is put back; one pending before
 * stays pending. */
typedef struct {
  sigset_t old;
  int pending;
} sigpipe_hold;

static void sigpipe_block(sigpipe_hold *h) {
  sigset_t pipe, now;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, &h->old);
  h->pending = sigpending(&now) == 0 && sigismember(&now, SIGPIPE);
}

static void sigpipe_restore(sigpipe_hold *h) {
  sigset_t pipe, now;
  struct timespec zero = {0, 0};
  int e = errno;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  if (!h->pending && sigpending(&now) == 0 && sigismember(&now, SIGPIPE)) {
    while (sigtimedwait(&pipe, NULL, &zero) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &h->old, NULL);
  errno = e;
}

/* core.redis_connect(host, port, timeout [, tls]) -> connection
 * -> nil, reason: the connection could not be made in timeout seconds
 * (which bounds every command after it too, as a whole).
 * tls: a table for TLS, { verify = false to take any certificate,
 * ca_file = path (else the system's CA certificates) }. */
static int redis_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  struct timeval tv = to_timeval(luaL_checknumber(L, 3));
  int tls = !lua_isnoneornil(L, 4), verify = 1;
  const char *ca_file = NULL, *why = NULL;
  char buf[320];
  conn *c;
  luaL_argcheck(L, port >= 1 && port <= 65535, 2, "port must be 1 to 65535");
  if (tls) {
    luaL_checktype(L, 4, LUA_TTABLE);
    lua_getfield(L, 4, "verify");
    verify = lua_isnil(L, -1) || lua_toboolean(L, -1);
    lua_getfield(L, 4, "ca_file");
    ca_file = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
    lua_pop(L, 1); /* ca_file's string stays alive in the table */
    lua_pop(L, 1);
  }
  c = (conn *)lua_newuserdata(L, sizeof *c);
  c->ctx = NULL;
  c->tls_ctx = NULL;
  c->tls = NULL;
  c->timeout = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
  luaL_getmetatable(L, REDIS_MT);
  lua_setmetatable(L, -2);
  c->ctx = redisConnectWithTimeout(host, (int)port, tv);
  if (c->ctx == NULL) why = "out of memory";
  else if (c->ctx->err) /* no socket timeout to set: the core polls to a deadline */
    why = c->ctx->errstr[0] ? strcpy(buf, c->ctx->errstr) : "connection failed"; /* errstr: 128 bytes */
  else if (tls) {
    sigpipe_hold h;
    sigpipe_block(&h);
    why = tls_start(c, host, verify, ca_file, buf, sizeof buf);
    sigpipe_restore(&h);
  } else if (!set_nonblocking(c->ctx->fd)) {
    why = strcpy(buf, strerror(errno));
  }
  if (why) {
    conn_free(c); /* before pushing, which may raise */
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  return 1;
}

/* The most a reply may hold: a server (or a man in the middle) must not
 * make the core buffer without end. The store's replies are a few bytes. */
#define MAX_REPLY (16u << 20)

/* One write (or read) of up to n bytes on c's non-blocking socket, TLS or
 * plain, waiting within deadline: the bytes done, or 0 with the reason in
 * buf (a timeout says "Resource temporarily unavailable", as hiredis does). */
static int conn_io(conn *c, int writing, char *p, int n, double deadline, char *buf, size_t size) {
  for (;;) {
    int got;
    errno = 0;
    if (c->tls) {
      got = writing ? SSL_write(c->tls, p, n) : SSL_read(c->tls, p, n);
      if (got > 0) return got;
      if (tls_wait(c, got, deadline)) continue; /* the same bytes again */
      tls_reason(c, buf, size);
      return 0;
    }
    got = writing ? (int)write(c->ctx->fd, p, (size_t)n) : (int)read(c->ctx->fd, p, (size_t)n);
    if (got > 0) return got;
    if (got == 0) {
      snprintf(buf, size, "Server closed the connection");
      return 0;
    }
    if ((errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) && fd_wait(c->ctx->fd, writing, deadline)) continue;
    snprintf(buf, size, "%s", strerror(errno));
    return 0;
  }
}

/* Sends the command and reads its reply, with hiredis's framing, the whole
 * within the connection's timeout: a server that trickles its answer, a
 * byte at a time, cannot stretch it. Returns the reply, or NULL with the
 * reason in buf. */
static redisReply *run_command(conn *c, int n, const char **argv, const size_t *lens, char *buf, size_t size) {
  char *cmd = NULL;
  int len = redisFormatCommandArgv(&cmd, n, argv, lens), off = 0, got;
  size_t fed = 0;
  void *reply = NULL;
  char in[16384];
  double deadline = now_s() + c->timeout;
  if (len < 0 || cmd == NULL) {
    snprintf(buf, size, "out of memory");
    return NULL;
  }
  ERR_clear_error();
  while (off < len) {
    got = conn_io(c, 1, cmd + off, len - off, deadline, buf, size);
    if (got == 0) {
      redisFreeCommand(cmd);
      return NULL;
    }
    off += got;
  }
  redisFreeCommand(cmd);
  for (;;) {
    if (redisReaderGetReply(c->ctx->reader, &reply) != REDIS_OK) {
      snprintf(buf, size, "%s", c->ctx->reader->errstr[0] ? c->ctx->reader->errstr : "protocol error");
      return NULL;
    }
    if (reply) return (redisReply *)reply;
    if (fed > MAX_REPLY) {
      snprintf(buf, size, "a reply of more than %u MiB", MAX_REPLY >> 20);
      return NULL;
    }
    got = conn_io(c, 0, in, (int)sizeof in, deadline, buf, size);
    if (got == 0) return NULL;
    fed += (size_t)got;
    if (redisReaderFeed(c->ctx->reader, in, (size_t)got) != REDIS_OK) {
      snprintf(buf, size, "protocol error");
      return NULL;
    }
  }
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
  char buf[512];
  sigpipe_hold h;
  if (c->ctx == NULL) return luaL_argerror(L, 1, "connection is closed");
  luaL_argcheck(L, n >= 1 && n <= MAX_ARGS, n < 1 ? 2 : MAX_ARGS + 2, "1 to 64 arguments");
  for (i = 0; i < n; i++) argv[i] = luaL_checklstring(L, i + 2, &lens[i]);
  sigpipe_block(&h);
  r = run_command(c, n, argv, lens, buf, sizeof buf);
  sigpipe_restore(&h);
  if (r == NULL) {
    /* freed before pushing, which may raise (out of memory) */
    conn_free(c);
    lua_pushnil(L);
    lua_pushstring(L, buf);
    lua_pushliteral(L, "io");
    return 3;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    /* an error's text is short (NOSCRIPT…, WRONGTYPE…): copied, so that
     * the reply is freed before pushing, which may raise */
    snprintf(buf, sizeof buf, "%.*s", r->len > 511 ? 511 : (int)r->len, r->str);
    freeReplyObject(r);
    lua_pushnil(L);
    lua_pushstring(L, buf);
    lua_pushliteral(L, "redis");
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
  conn_free((conn *)luaL_checkudata(L, 1, REDIS_MT));
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
