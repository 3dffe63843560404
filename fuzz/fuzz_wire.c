/* libFuzzer harness for the byte-level parsers and encoders of the core
 * (src/wire.c): response-head field parsing, base64 both ways, the capped
 * buffer, the header checks and the UTF-8 check; and its cryptography
 * (src/crypto.c): AES-256-CBC decryption with its padding and length checks,
 * AES-256-CBC encryption, SHA-256 and SHA-1 over parts, the constant-time
 * comparison. Each result is checked
 * against a plain reference (for the cipher: OpenSSL's own padding mode). */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "../src/crypto.h"
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

/* Strict base64: the decoder must give back what was encoded, and accept a
 * text exactly when it is canonical, that is when encoding what a lenient
 * reference decodes from it gives the same text again. */
static void check_base64_decode(const uint8_t *data, size_t size) {
  const char *text = (const char *)data;
  size_t n = hd_base64_len(size), out_len = 0, i, pad = 0, ref_len;
  char *enc = malloc(n + 1);
  unsigned char *out = malloc(size / 4 * 3 + 3 + n), *ref = malloc(size / 4 * 3 + 3);
  char *again;
  int ok, ref_ok = size % 4 == 0;
  assert(enc && out && ref);
  /* the round trip */
  hd_base64_encode(data, size, enc);
  assert(hd_base64_decode(enc, n, out, &out_len) == 0);
  assert(out_len == size && memcmp(out, data, size) == 0);
  /* the input as text */
  ok = hd_base64_decode(text, size, out, &out_len) == 0;
  while (pad < size && text[size - 1 - pad] == '=') pad++;
  if (pad > 2) ref_ok = 0;
  if (ref_ok && size) {
    ref_len = size / 4 * 3 - pad;
    for (i = 0; i < size / 4; i++) {
      int k, d[4];
      for (k = 0; k < 4; k++) {
        d[k] = b64_value(text[i * 4 + (size_t)k]);
        if (d[k] < 0) d[k] = 0; /* '=' and strays: the re-encoding tells */
      }
      ref[i * 3] = (uint8_t)(d[0] << 2 | d[1] >> 4);
      ref[i * 3 + 1] = (uint8_t)((d[1] & 15) << 4 | d[2] >> 2);
      ref[i * 3 + 2] = (uint8_t)((d[2] & 3) << 6 | d[3]);
    }
    again = malloc(hd_base64_len(ref_len) + 1);
    assert(again);
    hd_base64_encode(ref, ref_len, again);
    ref_ok = hd_base64_len(ref_len) == size && memcmp(again, text, size) == 0;
    free(again);
  } else {
    ref_len = 0;
  }
  assert(ok == ref_ok);
  if (ok) assert(out_len == ref_len && memcmp(out, ref, ref_len) == 0);
  free(enc);
  free(out);
  free(ref);
}

/* OpenSSL with its own PKCS#7 padding check: the reference for ours.
 * Returns the plaintext length, or -1. */
static long ref_decrypt(const uint8_t *key, const uint8_t *iv, const uint8_t *in, size_t n, uint8_t *out) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int l1 = 0, l2 = 0, ok;
  assert(ctx);
  ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) == 1 &&
       EVP_DecryptUpdate(ctx, out, &l1, in, (int)n) == 1 && EVP_DecryptFinal_ex(ctx, out + l1, &l2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  return ok ? (long)l1 + l2 : -1;
}

static size_t encrypt(const uint8_t *key, const uint8_t *iv, const uint8_t *in, size_t n, uint8_t *out) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  int l1 = 0, l2 = 0;
  assert(ctx);
  assert(EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) == 1);
  assert(EVP_EncryptUpdate(ctx, out, &l1, in, (int)n) == 1 && EVP_EncryptFinal_ex(ctx, out + l1, &l2) == 1);
  EVP_CIPHER_CTX_free(ctx);
  return (size_t)l1 + (size_t)l2;
}

/* The first 48 bytes are the key and the iv, the rest the ciphertext (any
 * length: the length checks come first) and, encrypted, a plaintext. */
static void check_decrypt(const uint8_t *data, size_t size) {
  const uint8_t *key, *iv, *rest;
  size_t n, out_len = 12345, ct_len;
  uint8_t *out, *ref, *ct;
  long ref_len;
  int rc;
  if (size < 48) return;
  key = data, iv = data + 32, rest = data + 48, n = size - 48;
  out = malloc(n + 32), ref = malloc(n + 32), ct = malloc(n + 32);
  assert(out && ref && ct);
  rc = hd_aes256cbc_decrypt(key, iv, rest, n, out, &out_len);
  if (n == 0) {
    assert(rc == HD_DECRYPT_EMPTY && out_len == 0);
  } else if (n % 16 != 0) {
    assert(rc == HD_DECRYPT_LENGTH && out_len == 0);
  } else {
    ref_len = ref_decrypt(key, iv, rest, n, ref);
    if (ref_len < 0) {
      assert(rc == HD_DECRYPT_PADDING && out_len == 0);
    } else {
      assert(rc == HD_DECRYPT_OK && out_len == (size_t)ref_len && out_len < n && n - out_len <= 16);
      assert(memcmp(out, ref, out_len) == 0);
    }
  }
  assert(strcmp(hd_decrypt_strerror(rc), "") != 0);
  /* the round trip: what OpenSSL encrypts (padded) decrypts to itself */
  ct_len = encrypt(key, iv, rest, n, ct);
  assert(ct_len == (n / 16 + 1) * 16);
  assert(hd_aes256cbc_decrypt(key, iv, ct, ct_len, out, &out_len) == HD_DECRYPT_OK);
  assert(out_len == n && memcmp(out, rest, n) == 0);
  /* ours encrypts as OpenSSL does, and decrypts back */
  {
    uint8_t *mine = malloc(n + 32);
    size_t mine_len = 12345;
    assert(mine);
    assert(hd_aes256cbc_encrypt(key, iv, rest, n, mine, &mine_len) == HD_DECRYPT_OK);
    assert(mine_len == ct_len && memcmp(mine, ct, ct_len) == 0);
    assert(hd_aes256cbc_decrypt(key, iv, mine, mine_len, out, &out_len) == HD_DECRYPT_OK);
    assert(out_len == n && memcmp(out, rest, n) == 0);
    free(mine);
  }
  /* cut short, or one block less: refused, never read past the end */
  assert(hd_aes256cbc_decrypt(key, iv, ct, ct_len - 1, out, &out_len) == HD_DECRYPT_LENGTH);
  free(out);
  free(ref);
  free(ct);
}

/* SHA-256 and SHA-1 over the input cut in up to three parts equal the
 * one-shot digests; hd_equal agrees with memcmp. */
static void check_sha256_equal(const uint8_t *data, size_t size) {
  unsigned char a[HD_SHA256_LEN], b[HD_SHA256_LEN];
  unsigned int blen = 0;
  size_t cut1 = size ? data[0] % (size + 1) : 0, cut2 = size > 1 ? data[1] % (size + 1) : 0, half = size / 2;
  const char *parts[3];
  size_t lens[3];
  if (cut1 > cut2) {
    size_t t = cut1;
    cut1 = cut2, cut2 = t;
  }
  parts[0] = (const char *)data, lens[0] = cut1;
  parts[1] = (const char *)data + cut1, lens[1] = cut2 - cut1;
  parts[2] = (const char *)data + cut2, lens[2] = size - cut2;
  assert(hd_sha256(3, parts, lens, a) == 0);
  assert(EVP_Digest(data, size, b, &blen, EVP_sha256(), NULL) == 1 && blen == 32);
  assert(memcmp(a, b, 32) == 0);
  /* SHA-1 (the old card-action signature) over the same three parts */
  assert(hd_sha1(3, parts, lens, a) == 0);
  assert(EVP_Digest(data, size, b, &blen, EVP_sha1(), NULL) == 1 && blen == HD_SHA1_LEN);
  assert(memcmp(a, b, HD_SHA1_LEN) == 0);
  assert(hd_equal(data, data + half, half) == (memcmp(data, data + half, half) == 0));
  assert(hd_equal(data, data, size));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_fields((const char *)data, size);
  check_base64(data, size);
  check_buf(data, size);
  check_header_checks(data, size);
  check_utf8(data, size);
  check_base64_decode(data, size);
  check_decrypt(data, size);
  check_sha256_equal(data, size);
  return 0;
}
