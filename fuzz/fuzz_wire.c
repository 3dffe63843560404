/* libFuzzer harness for the byte-level parsers and encoders of the core
 * (src/wire.c): response-head field parsing, base64, the capped buffer,
 * the header checks and the UTF-8 check. Each result is checked against a
 * plain reference. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../src/wire.h"

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

static void check_base64(const uint8_t *data, size_t size) {
  size_t n = hd_base64_len(size), i, j = 0;
  char *out = malloc(n + 1);
  uint8_t *back = malloc(size + 3);
  assert(out && back);
  assert(n % 4 == 0 && n >= size && n <= size / 3 * 4 + 4);
  hd_base64_encode(data, size, out);
  for (i = 0; i < n; i += 4) { /* decode it back */
    int a = b64_value(out[i]), b = b64_value(out[i + 1]);
    int c = out[i + 2] == '=' ? 0 : b64_value(out[i + 2]);
    int d = out[i + 3] == '=' ? 0 : b64_value(out[i + 3]);
    assert(a >= 0 && b >= 0 && c >= 0 && d >= 0);
    back[j++] = (uint8_t)(a << 2 | b >> 4);
    back[j++] = (uint8_t)((b & 15) << 4 | c >> 2);
    back[j++] = (uint8_t)((c & 3) << 6 | d);
  }
  assert(j >= size && memcmp(back, data, size) == 0);
  free(out);
  free(back);
}

static int ref_token_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static void check_fields(const char *buf, size_t len) {
  size_t pos = 0, prev = 0, i;
  hd_field f;
  while (hd_next_field(buf, len, &pos, &f)) {
    assert(pos > prev && pos <= len);
    prev = pos;
    assert(f.name >= buf && f.name + f.name_len <= buf + len);
    assert(f.value >= buf && f.value + f.value_len <= buf + len);
    assert(f.name_len > 0 && hd_is_token(f.name, f.name_len));
    assert(f.name[f.name_len] == ':');
    for (i = 0; i < f.value_len; i++) assert(f.value[i] != '\n');
    if (f.value_len) {
      assert(f.value[0] != ' ' && f.value[0] != '\t');
      assert(f.value[f.value_len - 1] != ' ' && f.value[f.value_len - 1] != '\t');
    }
  }
  assert(pos == len || len == 0);
}

static void check_buf(const uint8_t *data, size_t size) {
  hd_buf b = {NULL, 0, 0, 0};
  size_t off = 0, want = 0;
  b.limit = size ? data[0] * 16u + 1 : 1;
  while (off < size) {
    size_t chunk = (data[off] % 64) + 1;
    int rc;
    if (chunk > size - off) chunk = size - off;
    rc = hd_buf_append(&b, (const char *)data + off, chunk);
    if (rc == 0) {
      assert(b.len == want + chunk && memcmp(b.data + want, data + off, chunk) == 0);
      want += chunk;
    } else {
      assert(rc == -1 && want + chunk > b.limit && b.len == want);
    }
    assert(b.len <= b.limit && b.len <= b.cap);
    off += chunk;
  }
  hd_buf_free(&b);
  assert(b.data == NULL && b.len == 0);
}

static void check_header_checks(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  size_t i;
  int crlf = 0, token = size > 0;
  for (i = 0; i < size; i++) {
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') crlf = 1;
    if (!ref_token_char((unsigned char)s[i])) token = 0;
  }
  assert(hd_has_crlf_nul(s, size) == crlf);
  assert(hd_is_token(s, size) == token);
}

/* The reference: decode each sequence by its length, then refuse overlong
 * forms, surrogates and code points above U+10FFFF. */
static size_t ref_utf8_valid_len(const uint8_t *s, size_t n) {
  size_t i = 0, len, k;
  while (i < n) {
    unsigned long cp;
    uint8_t c = s[i];
    if (c < 0x80) { i++; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return i;
    if (n - i < len) return i;
    for (k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return i;
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
    i += len;
  }
  return n;
}

static void check_utf8(const uint8_t *data, size_t size) {
  assert(hd_utf8_valid_len(data, size) == ref_utf8_valid_len(data, size));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_fields((const char *)data, size);
  check_base64(data, size);
  check_buf(data, size);
  check_header_checks(data, size);
  check_utf8(data, size);
  return 0;
}
