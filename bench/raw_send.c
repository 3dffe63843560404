/* The baseline of `make bench`: N sequential ticket-message sends through one
 * libcurl easy handle (keep-alive), with the headers and body the module
 * sends, and nothing else: no JSON decoding, no checks beyond the status.
 * Usage: raw_send BASE_URL TICKET TENANT_TOKEN HELPDESK_AUTH N
 * Prints the requests per second. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

static size_t discard(char *p, size_t size, size_t n, void *ud) {
  (void)p;
  (void)ud;
  return size * n;
}

struct post { const char *p; size_t len, pos; };

static size_t on_read(char *p, size_t size, size_t n, void *ud) {
  struct post *b = ud;
  size_t left = b->len - b->pos, take = size * n < left ? size * n : left;
  memcpy(p, b->p + b->pos, take);
  b->pos += take;
  return take;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  char url[512], auth[1024], hd[1024];
  const char *body = "{\"content\":\"{\\\"text\\\":\\\"bench\\\"}\",\"msg_type\":\"text\"}";
  struct curl_slist *headers = NULL;
  CURL *c;
  long i, n, status = 0;
  double t0, dt;
  if (argc != 6) {
    fprintf(stderr, "usage: raw_send BASE_URL TICKET TENANT_TOKEN HELPDESK_AUTH N\n");
    return 2;
  }
  n = atol(argv[5]);
  snprintf(url, sizeof url, "%s/open-apis/helpdesk/v1/tickets/%s/messages", argv[1], argv[2]);
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", argv[3]);
  snprintf(hd, sizeof hd, "X-Lark-Helpdesk-Authorization: %s", argv[4]);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  c = curl_easy_init();
  if (!c) return 1;
  headers = curl_slist_append(headers, auth);
  headers = curl_slist_append(headers, hd);
  headers = curl_slist_append(headers, "Content-Type: application/json; charset=utf-8");
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "User-Agent: raw-libcurl-bench");
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  if (getenv("RAW_READ")) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
  } else {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  t0 = now();
  for (i = 0; i < n; i++) {
    struct post b = {body, strlen(body), 0};
    CURLcode rc;
    curl_easy_setopt(c, CURLOPT_READDATA, &b);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
      fprintf(stderr, "raw_send: request %ld: %s, HTTP %ld\n", i, curl_easy_strerror(rc), status);
      return 1;
    }
  }
  dt = now() - t0;
  printf("%.1f\n", (double)n / dt);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  curl_global_cleanup();
  return 0;
}
