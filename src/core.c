/* helpdesk.core: the HTTP primitives of feishu-helpdesk over libcurl.
 * It knows nothing of Feishu; the Lua modules under lua/ hold all policy. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>

#include "compat.h"
#include "crypto.h"
#include "redis.h"
#include "wire.h"

#define HANDLE_MT "helpdesk.core.handle"
#define MULTI_MT "helpdesk.core.multi"
#define MAX_SLOTS 256
#define DEFAULT_MAX_BODY (8 * 1024 * 1024)
#define MAX_HEAD (64 * 1024)

typedef struct {
  CURL *curl;
  struct curl_slist *headers; /* of the current request; freed by the next */
  hd_buf body, head;
  const char *post; /* the POST body, anchored on the Lua stack during perform */
  size_t post_len, post_pos;
  int body_failed, head_failed; /* hd_buf_append result that stopped it */
  char errbuf[CURL_ERROR_SIZE];
  int body_ref; /* in a multi: the registry reference anchoring the POST body */
  int busy;     /* in a multi: added and not finished */
} handle;

/* Concurrent transfers: slots easy handles in one multi handle, which keeps
 * the connections for all of them. */
typedef struct {
  CURLM *multi;
  handle *slots;
  int n;
} multi;

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void) { global_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

static handle *check_handle(lua_State *L) {
  handle *h = (handle *)luaL_checkudata(L, 1, HANDLE_MT);
  if (h->curl == NULL) luaL_argerror(L, 1, "handle is closed");
  return h;
}

/* --- libcurl callbacks: plain C, never touch Lua (no longjmp through curl) */

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  handle *h = (handle *)ud;
  int rc = hd_buf_append(&h->body, p, size * n);
  if (rc != 0) {
    h->body_failed = rc;
    return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
  }
  return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  handle *h = (handle *)ud;
  int rc;
  /* keep only the last head (after a 100 Continue, say) */
  if (size * n >= 5 && memcmp(p, "HTTP/", 5) == 0) h->head.len = 0;
  rc = hd_buf_append(&h->head, p, size * n);
  if (rc != 0) {
    h->head_failed = rc;
    return 0;
  }
  return size * n;
}

static size_t on_read(char *p, size_t size, size_t n, void *ud) {
  handle *h = (handle *)ud;
  size_t left = h->post_len - h->post_pos, take = size * n < left ? size * n : left;
  memcpy(p, h->post + h->post_pos, take);
  h->post_pos += take;
  return take;
}

/* libcurl rewinds a body to resend it when a reused connection dies before
 * the answer. A POST that went out may have been processed, so refuse: the
 * transfer fails (CURLE_SEND_FAIL_REWIND) instead of sending it twice. */
static int on_seek(void *ud, curl_off_t offset, int origin) {
  handle *h = (handle *)ud;
  if (offset == 0 && origin == SEEK_SET && h->post_pos == 0) return CURL_SEEKFUNC_OK;
  return CURL_SEEKFUNC_CANTSEEK;
}

/* --- request building */

static void set_headers(lua_State *L, handle *h, int idx) {
  curl_slist_free_all(h->headers);
  h->headers = NULL;
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    size_t nlen, vlen;
    const char *name, *value;
    struct curl_slist *next;
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "headers must map strings to strings");
    name = lua_tolstring(L, -2, &nlen);
    value = lua_tolstring(L, -1, &vlen);
    if (!hd_is_token(name, nlen)) luaL_error(L, "invalid header name");
    if (hd_has_crlf_nul(value, vlen))
      luaL_error(L, "header %s has CR, LF or NUL in its value", name);
    lua_pushfstring(L, "%s: %s", name, value);
    next = curl_slist_append(h->headers, lua_tostring(L, -1));
    if (next == NULL) luaL_error(L, "out of memory");
    h->headers = next; /* owned by h at once, so an error above cannot leak it */
    lua_pop(L, 2);
  }
}

static const char *opt_string(lua_State *L, int idx, const char *key) {
  const char *s;
  size_t n;
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return NULL;
  }
  if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "option %s must be a string", key);
  s = lua_tolstring(L, -1, &n);
  if (strlen(s) != n || hd_has_crlf_nul(s, n))
    luaL_error(L, "option %s has CR, LF or NUL", key);
  lua_pop(L, 1); /* still anchored in the options table */
  return s;
}

static double opt_number(lua_State *L, int idx, const char *key, double def) {
  double v;
  lua_getfield(L, idx, key);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return def;
  }
  if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "option %s must be a number", key);
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!(v >= 0)) luaL_error(L, "option %s must not be negative", key);
  return v;
}

static long to_ms(double seconds) {
  double ms = seconds * 1000.0;
  if (ms > 2147483647.0) return 2147483647L;
  if (seconds > 0 && ms < 1) return 1;
  return (long)ms;
}

static void push_headers(lua_State *L, const hd_buf *head) {
  size_t pos = 0, i;
  hd_field f;
  char name[256];
  lua_newtable(L);
  if (head->data == NULL) return;
  while (hd_next_field(head->data, head->len, &pos, &f)) {
    if (f.name_len >= sizeof name) continue;
    for (i = 0; i < f.name_len; i++) {
      char c = f.name[i];
      name[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    lua_pushlstring(L, name, f.name_len);
    lua_pushvalue(L, -1);
    lua_rawget(L, -3);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      lua_pushlstring(L, f.value, f.value_len);
    } else { /* a repeated field joins its values, as RFC 9110 allows */
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, f.value, f.value_len);
      lua_concat(L, 3);
    }
    lua_rawset(L, -3);
  }
}

/* Pushes nil and an error table; returns 2. */
static int push_failure(lua_State *L, handle *h, CURLcode rc) {
  long request_size = 0;
  /* Sent, as far as anyone can tell: request bytes went out, or libcurl took
   * some of the POST body. Counted conservatively: "sent" may be processed. */
  int sent;
  curl_easy_getinfo(h->curl, CURLINFO_REQUEST_SIZE, &request_size);
  sent = request_size > 0 || h->post_pos > 0;
  lua_pushnil(L);
  lua_createtable(L, 0, 5);
  if (h->body_failed == -1) {
    lua_pushliteral(L, "response body exceeds the limit");
    lua_pushboolean(L, 1);
    lua_setfield(L, -3, "too_large");
  } else if (h->head_failed == -1) {
    lua_pushliteral(L, "response headers exceed the limit");
    lua_pushboolean(L, 1);
    lua_setfield(L, -3, "too_large");
  } else if (h->body_failed == -2 || h->head_failed == -2) {
    lua_pushliteral(L, "out of memory reading the response");
  } else if (h->errbuf[0]) {
    size_t n = strlen(h->errbuf);
    while (n && (h->errbuf[n - 1] == '\n' || h->errbuf[n - 1] == ' ')) n--;
    lua_pushlstring(L, h->errbuf, n);
  } else {
    lua_pushstring(L, curl_easy_strerror(rc));
  }
  lua_setfield(L, -2, "message");
  lua_pushinteger(L, (lua_Integer)rc);
  lua_setfield(L, -2, "curl_code");
  lua_pushstring(L, curl_easy_strerror(rc));
  lua_setfield(L, -2, "curl_error");
  lua_pushboolean(L, sent);
  lua_setfield(L, -2, "sent");
  return 2;
}

/*
 * handle:request{ method=, url=, headers=, body=, timeout=, connect_timeout=,
 *                 max_body=, ca_file=, ca_path=, insecure=, proxy= }
 * -> status, body, headers (lower-case names)
 * -> nil, { message=, curl_code=, curl_error=, sent=, too_large= }
 * Misuse (bad option types, CR/LF/NUL in a header) raises.
 */
/* Configures h for the request table at index 2 (index 1 is the handle or
 * the multi). Leaves the url at 3, the body at 4 and the headers at 5: the
 * caller keeps the body anchored while the transfer runs. Raises on misuse,
 * before anything is sent. */
static void setup_request(lua_State *L, handle *h) {
  CURL *c = h->curl;
  const char *method, *url, *ca_file, *ca_path, *proxy, *body = NULL;
  size_t url_len, body_len = 0;
  double timeout, connect_timeout, max_body;
  int insecure;

  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  method = opt_string(L, 2, "method");
  if (method == NULL) method = "GET";
  if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
    luaL_error(L, "method must be GET or POST");
  lua_getfield(L, 2, "url"); /* index 3: anchors the url */
  url = lua_tolstring(L, 3, &url_len);
  if (url == NULL || lua_type(L, 3) != LUA_TSTRING) luaL_error(L, "url must be a string");
  if (hd_has_crlf_nul(url, url_len) || strchr(url, ' '))
    luaL_error(L, "url has a space, CR, LF or NUL");
  lua_getfield(L, 2, "body"); /* index 4: anchors the body during the transfer */
  if (!lua_isnil(L, 4)) {
    if (lua_type(L, 4) != LUA_TSTRING) luaL_error(L, "body must be a string");
    body = lua_tolstring(L, 4, &body_len);
  }
  lua_getfield(L, 2, "headers"); /* index 5 */
  ca_file = opt_string(L, 2, "ca_file");
  ca_path = opt_string(L, 2, "ca_path");
  proxy = opt_string(L, 2, "proxy");
  timeout = opt_number(L, 2, "timeout", 30);
  connect_timeout = opt_number(L, 2, "connect_timeout", 5);
  max_body = opt_number(L, 2, "max_body", DEFAULT_MAX_BODY);
  lua_getfield(L, 2, "insecure");
  insecure = lua_toboolean(L, -1);
  lua_pop(L, 1);
  set_headers(L, h, 5);
  if (strcmp(method, "POST") == 0) {
    /* no "Expect: 100-continue" round trip */
    struct curl_slist *next = curl_slist_append(h->headers, "Expect:");
    if (next == NULL) luaL_error(L, "out of memory");
    h->headers = next;
  }

  /* A reset keeps the connection cache, so keep-alive survives it, and no
   * option of an earlier request leaks into this one. */
  curl_easy_reset(c);
  h->body.len = h->head.len = 0;
  h->body.limit = max_body >= (double)SIZE_MAX ? SIZE_MAX : (size_t)max_body;
  h->head.limit = MAX_HEAD;
  h->body_failed = h->head_failed = 0;
  h->errbuf[0] = '\0';

  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  /* HTTP/1.1 only: the resend and "sent" rules above are proven for it */
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, to_ms(timeout));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, to_ms(connect_timeout));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, insecure ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, insecure ? 0L : 2L);
  if (ca_file) curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
  if (ca_path) curl_easy_setopt(c, CURLOPT_CAPATH, ca_path);
  if (proxy) curl_easy_setopt(c, CURLOPT_PROXY, proxy);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h->headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, h);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
  if (strcmp(method, "POST") == 0) {
    h->post = body ? body : "";
    h->post_len = body_len;
    h->post_pos = 0;
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, h);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, h);
  } else {
    h->post_pos = 0;
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
}

/* The answer of a finished transfer: status, body, headers (3 values), or
 * nil and the error table (2) */
static int push_result(lua_State *L, handle *h, CURLcode rc) {
  long status = 0;
  h->post = NULL;
  if (rc != CURLE_OK) return push_failure(L, h, rc);
  h->post_pos = 0;
  curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
  lua_pushinteger(L, (lua_Integer)status);
  lua_pushlstring(L, h->body.data ? h->body.data : "", h->body.len);
  push_headers(L, &h->head);
  /* do not keep a large answer's memory for the life of the client */
  if (h->body.cap > 1024 * 1024) hd_buf_free(&h->body);
  return 3;
}

static int handle_request(lua_State *L) {
  handle *h = check_handle(L);
  setup_request(L, h); /* the body stays anchored at index 4 */
  return push_result(L, h, curl_easy_perform(h->curl));
}

/* handle:close() -- also __gc and __close; safe to call more than once */
static int handle_close(lua_State *L) {
  handle *h = (handle *)luaL_checkudata(L, 1, HANDLE_MT);
  if (h->curl) {
    curl_easy_cleanup(h->curl);
    h->curl = NULL;
  }
  curl_slist_free_all(h->headers);
  h->headers = NULL;
  hd_buf_free(&h->body);
  hd_buf_free(&h->head);
  return 0;
}

/* tostring(handle) */
static int handle_tostring(lua_State *L) {
  handle *h = (handle *)luaL_checkudata(L, 1, HANDLE_MT);
  lua_pushfstring(L, "helpdesk.core.handle (%s)", h->curl ? "open" : "closed");
  return 1;
}

/* Initialises libcurl once, then pushes a zeroed userdata of size bytes
 * with the metatable mt. NULL, with nil and a message pushed, if libcurl
 * could not be initialised. */
static void *new_object(lua_State *L, size_t size, const char *mt) {
  void *p;
  pthread_once(&global_once, global_init);
  if (global_rc != CURLE_OK) {
    lua_pushnil(L);
    lua_pushfstring(L, "curl_global_init failed: %s", curl_easy_strerror(global_rc));
    return NULL;
  }
  p = lua_newuserdata(L, size);
  memset(p, 0, size);
  luaL_getmetatable(L, mt);
  lua_setmetatable(L, -2);
  return p;
}

/* --- the multi interface: several transfers at once */

static multi *check_multi(lua_State *L) {
  multi *m = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  if (m->multi == NULL) luaL_argerror(L, 1, "multi is closed");
  return m;
}

static void slot_release(lua_State *L, multi *m, handle *h) {
  if (h->busy) curl_multi_remove_handle(m->multi, h->curl);
  h->busy = 0;
  h->post = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, h->body_ref);
  h->body_ref = LUA_NOREF;
}

/* multi:add(request) -> slot number (1..n); the request table as for
 * handle:request. Raises when no slot is free or on misuse. */
static int multi_add(lua_State *L) {
  multi *m = check_multi(L);
  handle *h = NULL;
  int i;
  CURLMcode mc;
  for (i = 0; i < m->n; i++) {
    if (!m->slots[i].busy) {
      h = &m->slots[i];
      break;
    }
  }
  if (h == NULL) return luaL_error(L, "no free slot (%d in flight)", m->n);
  setup_request(L, h);
  lua_pushvalue(L, 4); /* the body lives as long as the transfer */
  h->body_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  mc = curl_multi_add_handle(m->multi, h->curl);
  if (mc != CURLM_OK) {
    slot_release(L, m, h);
    return luaL_error(L, "curl_multi_add_handle: %s", curl_multi_strerror(mc));
  }
  h->busy = 1;
  lua_pushinteger(L, (lua_Integer)(i + 1));
  return 1;
}

/* multi:wait(seconds) -> { { slot =, status =, body =, headers = } or
 * { slot =, error = } ... }: runs the transfers until one or more finish or
 * the time is up (then the list is empty). */
static int multi_wait(lua_State *L) {
  multi *m = check_multi(L);
  double seconds = luaL_optnumber(L, 2, 0);
  double deadline;
  struct timespec ts;
  int done = 0;
  lua_settop(L, 1);
  lua_newtable(L); /* 2: the results */
  clock_gettime(CLOCK_MONOTONIC, &ts);
  deadline = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + (seconds > 0 ? seconds : 0);
  for (;;) {
    int running = 0, left = 0;
    CURLMsg *msg;
    double now;
    curl_multi_perform(m->multi, &running);
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
      int i, n;
      if (msg->msg != CURLMSG_DONE) continue;
      for (i = 0; i < m->n && m->slots[i].curl != msg->easy_handle; i++) {
      }
      if (i == m->n) continue;
      {
        handle *h = &m->slots[i];
        CURLcode rc = msg->data.result;
        curl_multi_remove_handle(m->multi, h->curl);
        h->busy = 0;
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, (lua_Integer)(i + 1));
        lua_setfield(L, -2, "slot");
        n = push_result(L, h, rc);
        if (n == 3) {
          lua_setfield(L, -4, "headers");
          lua_setfield(L, -3, "body");
          lua_setfield(L, -2, "status");
        } else {
          lua_setfield(L, -3, "error");
          lua_pop(L, 1);
        }
        slot_release(L, m, h);
        lua_rawseti(L, 2, ++done);
      }
    }
    if (done > 0 || running == 0) break;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    if (now >= deadline) break;
    curl_multi_poll(m->multi, NULL, 0, (int)((deadline - now) * 1000) + 1, NULL);
  }
  return 1;
}

/* multi:pending() -> transfers in flight */
static int multi_pending(lua_State *L) {
  multi *m = check_multi(L);
  int i, busy = 0;
  for (i = 0; i < m->n; i++) busy += m->slots[i].busy;
  lua_pushinteger(L, busy);
  return 1;
}

/* multi:close() -- also __gc and __close; drops what is in flight */
static int multi_close(lua_State *L) {
  multi *m = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  int i;
  if (m->slots) {
    for (i = 0; i < m->n; i++) {
      handle *h = &m->slots[i];
      if (m->multi) slot_release(L, m, h);
      if (h->curl) curl_easy_cleanup(h->curl);
      curl_slist_free_all(h->headers);
      hd_buf_free(&h->body);
      hd_buf_free(&h->head);
    }
    free(m->slots);
    m->slots = NULL;
  }
  if (m->multi) curl_multi_cleanup(m->multi);
  m->multi = NULL;
  return 0;
}

static int multi_tostring(lua_State *L) {
  multi *m = (multi *)luaL_checkudata(L, 1, MULTI_MT);
  lua_pushfstring(L, "helpdesk.core.multi (%d slots, %s)", m->n, m->multi ? "open" : "closed");
  return 1;
}

/* core.multi(n) -> multi with n slots (1..256) | nil, message */
static int core_multi(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  multi *m;
  int i;
  luaL_argcheck(L, n >= 1 && n <= MAX_SLOTS, 1, "slots must be 1..256");
  m = (multi *)new_object(L, sizeof *m, MULTI_MT);
  if (m == NULL) return 2;
  m->slots = (handle *)calloc((size_t)n, sizeof *m->slots);
  m->multi = curl_multi_init();
  if (m->slots == NULL || m->multi == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "out of memory");
    return 2;
  }
  m->n = (int)n;
  for (i = 0; i < m->n; i++) {
    m->slots[i].body_ref = LUA_NOREF;
    m->slots[i].curl = curl_easy_init();
    if (m->slots[i].curl == NULL) {
      lua_pushnil(L);
      lua_pushliteral(L, "curl_easy_init failed");
      return 2;
    }
  }
  curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, (long)n);
  return 1;
}

/* core.new() -> handle | nil, message */
static int core_new(lua_State *L) {
  handle *h = (handle *)new_object(L, sizeof *h, HANDLE_MT);
  if (h == NULL) return 2;
  h->curl = curl_easy_init();
  if (h->curl == NULL) {
    lua_pushnil(L);
    lua_pushliteral(L, "curl_easy_init failed");
    return 2;
  }
  return 1;
}

/* core.base64(s) -> padded base64 text of s */
static int core_base64(lua_State *L) {
  size_t n, out_len;
  const char *s = luaL_checklstring(L, 1, &n);
  luaL_Buffer b;
  out_len = hd_base64_len(n);
  if (n && out_len == 0) return luaL_error(L, "string too long");
  luaL_buffinit(L, &b);
  /* in chunks, so no buffer larger than LUAL_BUFFERSIZE is needed */
  while (n) {
    size_t take = n > 768 ? 768 : n; /* a multiple of 3 */
    char out[1024];
    hd_base64_encode((const unsigned char *)s, take, out);
    luaL_addlstring(&b, out, hd_base64_len(take));
    s += take;
    n -= take;
  }
  luaL_pushresult(&b);
  return 1;
}

/* core.base64_decode(s) -> the bytes of the strict base64 text s
 * -> nil, reason (any other text: see hd_base64_decode) */
static int core_base64_decode(lua_State *L) {
  size_t n, out_len;
  const char *s = luaL_checklstring(L, 1, &n);
  /* a userdata, not malloc: nothing to free if a push below raises */
  unsigned char *out = (unsigned char *)lua_newuserdata(L, n / 4 * 3 + 1);
  if (hd_base64_decode(s, n, out, &out_len) != 0) {
    lua_pushnil(L);
    lua_pushliteral(L, "not strict base64 (RFC 4648 alphabet, padded, no spaces)");
    return 2;
  }
  lua_pushlstring(L, (const char *)out, out_len);
  return 1;
}

/* The strings at 1..top into parts and lens (1 to 16 of them); raises on
 * another count or a non-string. Returns the count. */
static size_t digest_parts(lua_State *L, const char **parts, size_t *lens) {
  int n = lua_gettop(L), i;
  luaL_argcheck(L, n >= 1 && n <= 16, n < 1 ? 1 : 17, "1 to 16 strings");
  for (i = 0; i < n; i++) parts[i] = luaL_checklstring(L, i + 1, &lens[i]);
  return (size_t)n;
}

/* core.sha256(s, ...) -> the SHA-256 of the concatenated strings, as 32
 * raw bytes (lower-case hex is the Lua side's business). Raises on a
 * non-string argument, or when libcrypto fails. */
static int core_sha256(lua_State *L) {
  const char *parts[16];
  size_t lens[16], n = digest_parts(L, parts, lens);
  unsigned char md[HD_SHA256_LEN];
  if (hd_sha256(n, parts, lens, md) != 0) return luaL_error(L, "sha256: libcrypto failed");
  lua_pushlstring(L, (const char *)md, sizeof md);
  return 1;
}

/* core.sha1(s, ...) -> the SHA-1 of the concatenated strings, as 20 raw
 * bytes: the old card-action protocol's signature, nothing else. Raises as
 * core.sha256 does. */
static int core_sha1(lua_State *L) {
  const char *parts[16];
  size_t lens[16], n = digest_parts(L, parts, lens);
  unsigned char md[HD_SHA1_LEN];
  if (hd_sha1(n, parts, lens, md) != 0) return luaL_error(L, "sha1: libcrypto failed");
  lua_pushlstring(L, (const char *)md, sizeof md);
  return 1;
}

/* The arguments of core.aes256cbc_decrypt and _encrypt: key, iv and data
 * (raises on a non-string); the reason they cannot be used, or NULL. */
static const char *aes_args(lua_State *L, const char **key, const char **iv, const char **in, size_t *n) {
  size_t key_len, iv_len;
  *key = luaL_checklstring(L, 1, &key_len);
  *iv = luaL_checklstring(L, 2, &iv_len);
  *in = luaL_checklstring(L, 3, n);
  if (key_len != HD_AES_KEY_LEN) return "key must be 32 bytes";
  if (iv_len != HD_AES_BLOCK) return "iv must be 16 bytes";
  if (*n > (size_t)INT_MAX - HD_AES_BLOCK) return "data too long";
  return NULL;
}

/* AES-256-CBC one way (encrypt, or decrypt) over the arguments: the
 * result, or nil and the reason. */
static int aes_run(lua_State *L, int encrypt) {
  const char *key, *iv, *in, *why;
  size_t n, out_len = 0;
  unsigned char *out;
  int rc;
  why = aes_args(L, &key, &iv, &in, &n);
  if (why) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  /* a userdata, collected with the rest: no free to forget if Lua raises;
   * room for the padding's block either way (EVP's contract) */
  out = (unsigned char *)lua_newuserdata(L, n / HD_AES_BLOCK * HD_AES_BLOCK + 2 * HD_AES_BLOCK);
  if (encrypt)
    rc = hd_aes256cbc_encrypt((const unsigned char *)key, (const unsigned char *)iv, (const unsigned char *)in, n,
                              out, &out_len);
  else
    rc = hd_aes256cbc_decrypt((const unsigned char *)key, (const unsigned char *)iv, (const unsigned char *)in, n,
                              out, &out_len);
  if (rc != HD_DECRYPT_OK) {
    lua_pushnil(L);
    lua_pushstring(L, hd_decrypt_strerror(rc));
    return 2;
  }
  lua_pushlstring(L, (const char *)out, out_len);
  return 1;
}

/* core.aes256cbc_decrypt(key, iv, ciphertext) -> plaintext
 * -> nil, reason: a key not of 32 bytes, an iv not of 16, a ciphertext
 *    empty or not a multiple of 16 bytes, bad PKCS#7 padding.
 * Raises only on arguments that are not strings. */
static int core_aes256cbc_decrypt(lua_State *L) { return aes_run(L, 0); }

/* core.aes256cbc_encrypt(key, iv, plaintext) -> ciphertext, PKCS#7 padded
 * (16 to 16 + #plaintext bytes, a multiple of 16)
 * -> nil, reason: a key not of 32 bytes, an iv not of 16, a plaintext too
 *    long for libcrypto, libcrypto failing.
 * Raises only on arguments that are not strings. */
static int core_aes256cbc_encrypt(lua_State *L) { return aes_run(L, 1); }

/* core.equal(a, b) -> whether the strings are equal, compared in a time
 * that depends on their lengths only (CRYPTO_memcmp); strings of different
 * lengths are unequal at once (the length of a signature is no secret). */
static int core_equal(lua_State *L) {
  size_t na, nb;
  const char *a = luaL_checklstring(L, 1, &na);
  const char *b = luaL_checklstring(L, 2, &nb);
  lua_pushboolean(L, na == nb && hd_equal(a, b, na));
  return 1;
}

/* core.random(n) -> n bytes (1 to 64) from libcrypto's generator: marks
 * that another process, or another host, will not draw too. Raises when
 * the generator fails. */
static int core_random(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  unsigned char buf[64];
  luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof buf, 1, "1 to 64 bytes");
  if (hd_random(buf, (size_t)n) != 0) return luaL_error(L, "random: libcrypto failed");
  lua_pushlstring(L, (const char *)buf, (size_t)n);
  return 1;
}

/* core.pid() -> the process id: a mark drawn in one process (nginx's
 * master) is known for another's after a fork */
static int core_pid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* core.utf8_valid(s) -> true, or false and the 1-based position of the
 * first byte that does not begin a well-formed UTF-8 character */
static int core_utf8_valid(lua_State *L) {
  size_t n, ok;
  const char *s = luaL_checklstring(L, 1, &n);
  ok = hd_utf8_valid_len((const unsigned char *)s, n);
  lua_pushboolean(L, ok == n);
  if (ok == n) return 1;
  lua_pushinteger(L, (lua_Integer)ok + 1);
  return 2;
}

/* core.monotime() -> seconds of a monotonic clock, as a number */
static int core_monotime(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

/* Walks the table at idx (a value lua-cjson decoded): floats with an
 * integral value below 2^53 become integers (Lua 5.3+; lua-cjson 2.1
 * decodes every number as a float), and fields under string keys that hold
 * the null sentinel at null_idx are removed. Assigning to fields that exist
 * is allowed during lua_next. */
static void normalize(lua_State *L, int idx, int null_idx, int depth) {
  if (depth > 1000) luaL_error(L, "normalize: tables nested too deep (a cycle?)");
  luaL_checkstack(L, 6, "normalize");
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int t = lua_type(L, -1);
    if (t == LUA_TTABLE) {
      normalize(L, lua_gettop(L), null_idx, depth + 1);
#if LUA_VERSION_NUM >= 503
    } else if (t == LUA_TNUMBER && !lua_isinteger(L, -1)) {
      lua_Number x = lua_tonumber(L, -1);
      /* 2^53 itself may stand for 2^53 + 1, rounded: it stays a float */
      if (x > -9007199254740992.0 && x < 9007199254740992.0 && x == (lua_Number)(lua_Integer)x) {
        lua_pushvalue(L, -2);
        lua_pushinteger(L, (lua_Integer)x);
        lua_rawset(L, idx);
      }
#endif
    } else if (t == LUA_TLIGHTUSERDATA && lua_type(L, -2) == LUA_TSTRING && lua_rawequal(L, -1, null_idx)) {
      lua_pushvalue(L, -2);
      lua_pushnil(L);
      lua_rawset(L, idx);
    }
    lua_pop(L, 1);
  }
}

/* core.normalize(value, null) -> value, its tables fixed up in place */
static int core_normalize(lua_State *L) {
  lua_settop(L, 2);
  if (lua_type(L, 1) == LUA_TTABLE) normalize(L, 1, 2, 0);
  lua_settop(L, 1);
  return 1;
}

/* core.sleep(seconds) -- blocks the thread; OpenResty code uses ngx.sleep */
static int core_sleep(lua_State *L) {
  double s = luaL_checknumber(L, 1);
  struct timespec ts;
  if (!(s > 0)) return 0;
  if (s > 86400) s = 86400;
  ts.tv_sec = (time_t)s;
  ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  return 0;
}

static const luaL_Reg handle_methods[] = {
    {"request", handle_request},
    {"close", handle_close},
    {NULL, NULL},
};

static const luaL_Reg handle_meta[] = {
    {"__gc", handle_close},
#if LUA_VERSION_NUM >= 504
    {"__close", handle_close},
#endif
    {"__tostring", handle_tostring},
    {NULL, NULL},
};

static const luaL_Reg multi_methods[] = {
    {"add", multi_add},
    {"wait", multi_wait},
    {"pending", multi_pending},
    {"close", multi_close},
    {NULL, NULL},
};

static const luaL_Reg multi_meta[] = {
    {"__gc", multi_close},
#if LUA_VERSION_NUM >= 504
    {"__close", multi_close},
#endif
    {"__tostring", multi_tostring},
    {NULL, NULL},
};

static const luaL_Reg core_functions[] = {
    {"new", core_new},
    {"multi", core_multi},
    {"base64", core_base64},
    {"base64_decode", core_base64_decode},
    {"sha256", core_sha256},
    {"sha1", core_sha1},
    {"aes256cbc_decrypt", core_aes256cbc_decrypt},
    {"aes256cbc_encrypt", core_aes256cbc_encrypt},
    {"equal", core_equal},
    {"random", core_random},
    {"pid", core_pid},
    {"monotime", core_monotime},
    {"normalize", core_normalize},
    {"utf8_valid", core_utf8_valid},
    {"sleep", core_sleep},
    {NULL, NULL},
};

/* The metatable named name: meta's metamethods, methods as __index. Made
 * once per Lua state (a second require finds it in the registry). */
static void register_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods) {
  if (luaL_newmetatable(L, name)) {
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}

int luaopen_helpdesk_core(lua_State *L) {
  register_class(L, HANDLE_MT, handle_meta, handle_methods);
  register_class(L, MULTI_MT, multi_meta, multi_methods);
  luaL_newlib(L, core_functions);
  hd_redis_open(L);
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  lua_setfield(L, -2, "curl_version");
  return 1;
}
