/* Pure byte-level helpers of the core, free of Lua and libcurl so that the
 * fuzzers in fuzz/ can link them alone. */
#ifndef HELPDESK_WIRE_H
#define HELPDESK_WIRE_H

#include <stddef.h>

/* Growable byte buffer with a hard cap. */
typedef struct {
  char *data;
  size_t len, cap, limit;
} hd_buf;

/* Appends n bytes; returns 0 on success, -1 past the limit, -2 out of memory.
 * On failure the buffer keeps what it had. */
int hd_buf_append(hd_buf *b, const char *p, size_t n);
void hd_buf_free(hd_buf *b);

/* Size of the base64 text for n input bytes, 0 on overflow. */
size_t hd_base64_len(size_t n);
/* Writes the padded base64 of in[0..n) to out (hd_base64_len(n) bytes). */
void hd_base64_encode(const unsigned char *in, size_t n, char *out);
/* Decodes the strict base64 text in[0..n) (RFC 4648 section 4: the standard
 * alphabet, padded with '=' to a multiple of 4, no spaces or line breaks,
 * zero bits after the last byte) into out (room for n / 4 * 3 bytes).
 * Returns 0 with *out_len set, or -1 on any other text. */
int hd_base64_decode(const char *in, size_t n, unsigned char *out, size_t *out_len);

/* One "Name: value" header field of a response head. */
typedef struct {
  const char *name, *value;
  size_t name_len, value_len;
} hd_field;

/* Walks the header lines of one response head in buf[*pos..len): skips the
 * status line and malformed lines, trims the value. Returns 1 with *f set
 * and *pos advanced, or 0 at the end. */
int hd_next_field(const char *buf, size_t len, size_t *pos, hd_field *f);

/* 1 if s[0..n) holds CR, LF or NUL (header injection), else 0. */
int hd_has_crlf_nul(const char *s, size_t n);
/* 1 if s[0..n) is a valid header field name (RFC 9110 token), else 0. */
int hd_is_token(const char *s, size_t n);

/* Length of the longest prefix of s[0..n) that is well-formed UTF-8 (RFC
 * 3629, Unicode table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF; NUL is a character like any other): n when all of it is. */
size_t hd_utf8_valid_len(const unsigned char *s, size_t n);

#endif
