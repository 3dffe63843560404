#include "wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int hd_buf_append(hd_buf *b, const char *p, size_t n) {
  if (n > b->limit || b->len > b->limit - n) return -1;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *d;
    while (cap < b->len + n) cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
    if (cap > b->limit) cap = b->limit;
    d = realloc(b->data, cap);
    if (d == NULL) return -2;
    b->data = d;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void hd_buf_free(hd_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t hd_base64_len(size_t n) {
  size_t groups = n / 3 + (n % 3 != 0);
  if (groups > SIZE_MAX / 4) return 0;
  return groups * 4;
}

void hd_base64_encode(const unsigned char *in, size_t n, char *out) {
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    *out++ = b64[v >> 18];
    *out++ = b64[(v >> 12) & 63];
    *out++ = b64[(v >> 6) & 63];
    *out++ = b64[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    *out++ = b64[v >> 18];
    *out++ = b64[(v >> 12) & 63];
    *out++ = i + 1 < n ? b64[(v >> 6) & 63] : '=';
    *out++ = '=';
  }
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

int hd_next_field(const char *buf, size_t len, size_t *pos, hd_field *f) {
  while (*pos < len) {
    const char *line = buf + *pos;
    const char *nl = memchr(line, '\n', len - *pos);
    size_t n = nl ? (size_t)(nl - line) : len - *pos;
    const char *colon;
    *pos += nl ? n + 1 : n;
    if (n && line[n - 1] == '\r') n--;
    colon = memchr(line, ':', n);
    /* the status line, the blank end line and obs-folded or broken lines */
    if (colon == NULL || colon == line || !hd_is_token(line, (size_t)(colon - line)))
      continue;
    f->name = line;
    f->name_len = (size_t)(colon - line);
    f->value = colon + 1;
    f->value_len = n - f->name_len - 1;
    while (f->value_len && is_space(*f->value)) f->value++, f->value_len--;
    while (f->value_len && is_space(f->value[f->value_len - 1])) f->value_len--;
    return 1;
  }
  return 0;
}

int hd_has_crlf_nul(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 1;
  return 0;
}

int hd_is_token(const char *s, size_t n) {
  size_t i;
  if (n == 0) return 0;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 'a' && c <= 'z') continue;
    if (c >= 'A' && c <= 'Z') continue;
    if (c >= '0' && c <= '9') continue;
    if (c && strchr("!#$%&'*+-.^_`|~", c)) continue;
    return 0;
  }
  return 1;
}

size_t hd_utf8_valid_len(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    size_t len, k;
    if (c < 0x80) {
      i++;
      continue;
    }
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;      /* overlong below U+0800 */
      else if (c == 0xED) hi = 0x9F; /* surrogates U+D800..DFFF */
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;      /* overlong below U+10000 */
      else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
      return i; /* a continuation byte, C0, C1 or F5..FF */
    }
    if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return i;
    for (k = 2; k < len; k++)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return i;
    i += len;
  }
  return n;
}

/* The value of a base64 digit, or -1 */
static int b64_digit(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int hd_base64_decode(const char *in, size_t n, unsigned char *out, size_t *out_len) {
  size_t i, j = 0, pad = 0;
  *out_len = 0;
  if (n % 4 != 0) return -1;
  if (n && in[n - 1] == '=') pad = in[n - 2] == '=' ? 2 : 1;
  for (i = 0; i < n; i += 4) {
    int d[4], k, last = i + 4 == n;
    uint32_t v;
    for (k = 0; k < 4; k++) {
      /* '=' only in the last group's last pad places */
      if (last && k >= 4 - (int)pad) {
        d[k] = 0;
        continue;
      }
      d[k] = b64_digit((unsigned char)in[i + (size_t)k]);
      if (d[k] < 0) return -1;
    }
    v = (uint32_t)d[0] << 18 | (uint32_t)d[1] << 12 | (uint32_t)d[2] << 6 | (uint32_t)d[3];
    if (last && pad) {
      /* the bits past the last byte must be zero (canonical text only) */
      if ((pad == 1 && (v & 0xFF)) || (pad == 2 && (v & 0xFFFF))) return -1;
    }
    out[j++] = (unsigned char)(v >> 16);
    if (!(last && pad == 2)) out[j++] = (unsigned char)(v >> 8);
    if (!(last && pad >= 1)) out[j++] = (unsigned char)v;
  }
  *out_len = j;
  return 0;
}
