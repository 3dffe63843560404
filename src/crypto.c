#include "crypto.h"

#include <limits.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* The digest md over the concatenation of the n parts p[i][0..len[i]) into
 * out[want]: 0, or -1 when libcrypto fails or the digest is not want bytes. */
static int digest(const EVP_MD *md, size_t n, const char *const *p, const size_t *len, unsigned char *out,
                  unsigned int want) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned int out_len = 0;
  int ok;
  size_t i;
  if (ctx == NULL) return -1;
  ok = EVP_DigestInit_ex(ctx, md, NULL) == 1;
  for (i = 0; ok && i < n; i++) ok = EVP_DigestUpdate(ctx, p[i], len[i]) == 1;
  ok = ok && EVP_MD_size(md) == (int)want && EVP_DigestFinal_ex(ctx, out, &out_len) == 1 && out_len == want;
  EVP_MD_CTX_free(ctx);
  return ok ? 0 : -1;
}

int hd_sha256(size_t n, const char *const *p, const size_t *len, unsigned char out[HD_SHA256_LEN]) {
  return digest(EVP_sha256(), n, p, len, out, HD_SHA256_LEN);
}

int hd_sha1(size_t n, const char *const *p, const size_t *len, unsigned char out[HD_SHA1_LEN]) {
  return digest(EVP_sha1(), n, p, len, out, HD_SHA1_LEN);
}

/* The padding check: every byte of the last block is looked at, and the
 * verdict is built from masks, so its time does not depend on where the
 * padding goes wrong (no padding oracle through timing). */
static int padding_length(const unsigned char *last_block, size_t *pad) {
  unsigned int p = last_block[HD_AES_BLOCK - 1], bad = 0, i;
  /* p must be 1..16 */
  bad |= (unsigned int)((p - 1u) >> 8 & 1u) | (unsigned int)((16u - p) >> 8 & 1u);
  for (i = 0; i < HD_AES_BLOCK; i++) {
    /* in_pad is all ones for the last p bytes (15 - i < p), else zero */
    unsigned int below = (unsigned int)(HD_AES_BLOCK - 1 - i) - p;
    unsigned int in_pad = 0u - (below >> (sizeof(unsigned int) * CHAR_BIT - 1));
    bad |= in_pad & (last_block[i] ^ p);
  }
  *pad = p;
  return bad == 0;
}

int hd_aes256cbc_decrypt(const unsigned char *key, const unsigned char *iv, const unsigned char *in, size_t n,
                         unsigned char *out, size_t *out_len) {
  EVP_CIPHER_CTX *ctx;
  int ok, len1 = 0, len2 = 0;
  size_t pad;
  *out_len = 0;
  if (n == 0) return HD_DECRYPT_EMPTY;
  if (n % HD_AES_BLOCK != 0) return HD_DECRYPT_LENGTH;
  if (n > (size_t)INT_MAX) return HD_DECRYPT_LENGTH; /* EVP counts in int */
  ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL) return HD_DECRYPT_OPENSSL;
  ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) == 1 && EVP_CIPHER_CTX_set_padding(ctx, 0) == 1 &&
       EVP_DecryptUpdate(ctx, out, &len1, in, (int)n) == 1 && EVP_DecryptFinal_ex(ctx, out + len1, &len2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok || (size_t)len1 + (size_t)len2 != n) return HD_DECRYPT_OPENSSL;
  if (!padding_length(out + n - HD_AES_BLOCK, &pad)) return HD_DECRYPT_PADDING;
  *out_len = n - pad;
  return HD_DECRYPT_OK;
}

int hd_aes256cbc_encrypt(const unsigned char *key, const unsigned char *iv, const unsigned char *in, size_t n,
                         unsigned char *out, size_t *out_len) {
  EVP_CIPHER_CTX *ctx;
  int ok, len1 = 0, len2 = 0;
  *out_len = 0;
  if (n > (size_t)INT_MAX - HD_AES_BLOCK) return HD_DECRYPT_LENGTH; /* EVP counts in int */
  ctx = EVP_CIPHER_CTX_new();
  if (ctx == NULL) return HD_DECRYPT_OPENSSL;
  /* EVP's own PKCS#7 padding (on by default): 1 to 16 bytes */
  ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, iv) == 1 &&
       EVP_EncryptUpdate(ctx, out, &len1, in, (int)n) == 1 && EVP_EncryptFinal_ex(ctx, out + len1, &len2) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok || (size_t)len1 + (size_t)len2 != (n / HD_AES_BLOCK + 1) * HD_AES_BLOCK) return HD_DECRYPT_OPENSSL;
  *out_len = (size_t)len1 + (size_t)len2;
  return HD_DECRYPT_OK;
}

const char *hd_decrypt_strerror(int rc) {
  switch (rc) {
    case HD_DECRYPT_OK: return "ok";
    case HD_DECRYPT_EMPTY: return "ciphertext is empty";
    case HD_DECRYPT_LENGTH: return "ciphertext length is not a multiple of 16";
    case HD_DECRYPT_PADDING: return "bad padding (wrong key, or damaged ciphertext)";
    default: return "libcrypto failed to decrypt";
  }
}

int hd_equal(const void *a, const void *b, size_t n) { return n == 0 || CRYPTO_memcmp(a, b, n) == 0; }

int hd_random(unsigned char *out, size_t n) {
  if (n > INT_MAX) return -1;
  return RAND_bytes(out, (int)n) == 1 ? 0 : -1;
}
