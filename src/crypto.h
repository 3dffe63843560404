/* The cryptography of the core on OpenSSL's libcrypto (EVP), free of Lua so
 * that the fuzzer in fuzz/ can link it alone. */
#ifndef HELPDESK_CRYPTO_H
#define HELPDESK_CRYPTO_H

#include <stddef.h>

#define HD_SHA256_LEN 32
#define HD_SHA1_LEN 20
#define HD_AES_KEY_LEN 32
#define HD_AES_BLOCK 16

/* Results of hd_aes256cbc_decrypt (0 is success) */
enum {
  HD_DECRYPT_OK = 0,
  HD_DECRYPT_EMPTY = -1,    /* no ciphertext */
  HD_DECRYPT_LENGTH = -2,   /* not a multiple of the block size */
  HD_DECRYPT_PADDING = -3,  /* PKCS#7 padding malformed */
  HD_DECRYPT_OPENSSL = -4,  /* libcrypto failed (out of memory, say) */
};

/* SHA-256 over the concatenation of the n parts p[i][0..len[i]), into
 * out[32]. Returns 0, or -1 when libcrypto fails (out of memory). */
int hd_sha256(size_t n, const char *const *p, const size_t *len, unsigned char out[HD_SHA256_LEN]);

/* SHA-1 likewise, into out[20]: the old card-action protocol's signature
 * (X-Lark-Signature over timestamp, nonce, verification token and body). */
int hd_sha1(size_t n, const char *const *p, const size_t *len, unsigned char out[HD_SHA1_LEN]);

/* AES-256-CBC decryption of in[0..n) with key[32] and iv[16] into out (room
 * for n + 16 bytes, as EVP_DecryptUpdate's contract asks, though n are
 * written), then the PKCS#7 padding (1..16 bytes each equal to its
 * length) checked without a branch on the bytes and removed: *out_len is
 * the plaintext's length. Returns HD_DECRYPT_OK or one of the errors above;
 * the cipher context is freed on every path. */
int hd_aes256cbc_decrypt(const unsigned char *key, const unsigned char *iv, const unsigned char *in, size_t n,
                         unsigned char *out, size_t *out_len);

/* AES-256-CBC encryption of in[0..n) (n may be 0) with key[32] and iv[16],
 * PKCS#7 padded, into out: room for n / 16 * 16 + 16 bytes, which is
 * *out_len. Returns HD_DECRYPT_OK, HD_DECRYPT_LENGTH (n too large for EVP)
 * or HD_DECRYPT_OPENSSL; the cipher context is freed on every path. */
int hd_aes256cbc_encrypt(const unsigned char *key, const unsigned char *iv, const unsigned char *in, size_t n,
                         unsigned char *out, size_t *out_len);

/* A sentence for a result of hd_aes256cbc_decrypt or _encrypt. */
const char *hd_decrypt_strerror(int rc);

/* n bytes from libcrypto's generator into out. Returns 0, or -1 when it
 * fails (not seeded). */
int hd_random(unsigned char *out, size_t n);

/* 1 if a[0..n) equals b[0..n), in a time that depends on n only. */
int hd_equal(const void *a, const void *b, size_t n);

#endif
