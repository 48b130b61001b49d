/*
 * client_http.c — one HTTP exchange of the sync client over libcurl, and what every exchange
 * shares: the Pd-Auth request signature (PROTOCOL.md §4), the check of the server's signature on
 * JSON answers (§2) with the pinned key, clock-skew correction from a `stale_time` answer,
 * retries with exponential backoff and full jitter, timeouts (connect, and a low-speed limit so a
 * stalled 2G link fails instead of hanging), request and byte counters, and progress.
 *
 * What is not here: what the requests mean (client.c, client_pull.c) and the tus state machine
 * (client_tus.c). One curl handle is kept per pd_http so connections are reused (keep-alive);
 * curl_easy_reset between requests keeps the live connections.
 */
#include "client_internal.h"
#include "json_text.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define DEFAULT_CONNECT_MS 15000L
#define DEFAULT_STALL_S 60L
#define DEFAULT_STALL_BPS 16L
#define DEFAULT_ATTEMPTS 8u
#define DEFAULT_BASE_MS 500u
#define DEFAULT_CAP_MS 30000u
#define DEFAULT_CHUNK (256u << 10)
#define AUTH_MAX 512
#define SIGN_MSG_MAX (PD_HTTP_URL_MAX + 256)

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void pd_http_cfg_from(pd_http_cfg *cfg, const pd_sync_options *opt)
{
    pd_sync_options none;
    memset(&none, 0, sizeof none);
    if (!opt)
        opt = &none;
    cfg->connect_timeout_ms =
        opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : DEFAULT_CONNECT_MS;
    cfg->stall_timeout_s = opt->stall_timeout_s > 0 ? opt->stall_timeout_s : DEFAULT_STALL_S;
    cfg->stall_bytes_per_s =
        opt->stall_bytes_per_s > 0 ? opt->stall_bytes_per_s : DEFAULT_STALL_BPS;
    cfg->max_attempts = opt->max_attempts ? opt->max_attempts : DEFAULT_ATTEMPTS;
    cfg->backoff_base_ms = opt->backoff_base_ms ? opt->backoff_base_ms : DEFAULT_BASE_MS;
    cfg->backoff_cap_ms = opt->backoff_cap_ms ? opt->backoff_cap_ms : DEFAULT_CAP_MS;
    if (cfg->backoff_cap_ms < cfg->backoff_base_ms)
        cfg->backoff_cap_ms = cfg->backoff_base_ms;
    cfg->chunk_bytes = opt->chunk_bytes ? opt->chunk_bytes : DEFAULT_CHUNK;
    cfg->ca_file = opt->ca_file;
    cfg->progress = opt->progress;
    cfg->progress_ctx = opt->progress_ctx;
}

/* http:// or https://, a host, and no query or fragment (paths are appended to it). */
static int check_base(const char *url, pd_error *err)
{
    if (!url || !*url)
        return pd_error_set(err, PD_ERR_INVALID, "no server URL given");
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))
        return pd_error_set(err, PD_ERR_INVALID,
                            "server URL %.200s: must start with http:// or https://", url);
    if (strlen(url) > PD_HTTP_URL_MAX - 256)
        return pd_error_set(err, PD_ERR_TOOBIG, "server URL is longer than %d bytes",
                            PD_HTTP_URL_MAX - 256);
    if (strpbrk(url, "?# \t\r\n"))
        return pd_error_set(err, PD_ERR_INVALID,
                            "server URL %.200s: no query, fragment or spaces allowed", url);
    CURLU *u = curl_url();
    if (!u)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    CURLUcode uc = curl_url_set(u, CURLUPART_URL, url, 0);
    char *host = NULL;
    if (uc == CURLUE_OK)
        uc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    curl_free(host);
    curl_url_cleanup(u);
    if (uc != CURLUE_OK)
        return pd_error_set(err, PD_ERR_INVALID, "server URL %.200s: %s", url,
                            curl_url_strerror(uc));
    return PD_OK;
}

int pd_http_init(pd_http *h, const char *base_url, const pd_sync_options *opt, pd_error *err)
{
    memset(h, 0, sizeof *h);
    pd_http_cfg_from(&h->cfg, opt);
    int rc = check_base(base_url, err);
    if (rc != PD_OK)
        return rc;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return pd_error_set(err, PD_ERR_INTERNAL, "libcurl failed to initialise: %s",
                            curl_easy_strerror(curl_init_rc));
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    memcpy(h->base, base_url, n);
    h->base[n] = '\0';
    h->curl = curl_easy_init();
    if (!h->curl)
        return pd_error_set(err, PD_ERR_NOMEM, "libcurl: cannot make a handle");
    return PD_OK;
}

int pd_http_set_device(pd_http *h, const char *device_id, const uint8_t sk[PD_SECKEY_BYTES])
{
    if (!device_id || strlen(device_id) >= sizeof h->device_id)
        return pd_error_set(&h->err, PD_ERR_INVALID, "device id is missing or too long");
    if (!h->device_sk && !(h->device_sk = sodium_malloc(PD_SECKEY_BYTES)))
        return pd_error_set(&h->err, PD_ERR_NOMEM, "no secure memory for the device key");
    memcpy(h->device_sk, sk, PD_SECKEY_BYTES);
    snprintf(h->device_id, sizeof h->device_id, "%s", device_id);
    return PD_OK;
}

void pd_http_pin(pd_http *h, const uint8_t sign_pk[PD_PUBKEY_BYTES])
{
    memcpy(h->sign_pk, sign_pk, PD_PUBKEY_BYTES);
    h->pinned = true;
}

void pd_http_close(pd_http *h)
{
    if (!h)
        return;
    if (h->curl)
        curl_easy_cleanup(h->curl);
    h->curl = NULL;
    sodium_free(h->device_sk); /* wipes */
    h->device_sk = NULL;
}

int pd_http_url(const pd_http *h, const char *path, char out[PD_HTTP_URL_MAX])
{
    int n = snprintf(out, PD_HTTP_URL_MAX, "%s%s", h->base, path);
    if (n < 0 || n >= PD_HTTP_URL_MAX)
        return PD_ERR_TOOBIG;
    return PD_OK;
}

int pd_http_resolve(const char *request_url, const char *location, char out[PD_HTTP_URL_MAX])
{
    CURLU *u = curl_url();
    if (!u)
        return PD_ERR_NOMEM;
    char *full = NULL;
    int rc = PD_OK;
    if (curl_url_set(u, CURLUPART_URL, request_url, 0) != CURLUE_OK ||
        curl_url_set(u, CURLUPART_URL, location, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_URL, &full, 0) != CURLUE_OK)
        rc = PD_ERR_PROTOCOL;
    else if (strncasecmp(full, "http://", 7) && strncasecmp(full, "https://", 8))
        rc = PD_ERR_PROTOCOL;
    else if (strlen(full) >= PD_HTTP_URL_MAX)
        rc = PD_ERR_TOOBIG;
    else
        memcpy(out, full, strlen(full) + 1);
    curl_free(full);
    curl_url_cleanup(u);
    return rc;
}

void pd_http_hash_hex(const uint8_t *p, size_t n, char out[2 * PD_HASH_BYTES + 1])
{
    uint8_t hash[PD_HASH_BYTES];
    crypto_generichash(hash, sizeof hash, p, n, NULL, 0);
    pd_sync_hex(out, hash, sizeof hash);
}

int64_t pd_http_now_ms(const pd_http *h)
{
    return pd_sync_now_ms() + h->skew_ms;
}

void pd_http_resp_free(pd_http_resp *r)
{
    if (!r)
        return;
    free(r->body);
    memset(r, 0, sizeof *r);
}

bool pd_http_transient(long status)
{
    return status == 0 || status == 408 || status == 423 || status == 429 ||
           (status >= 500 && status <= 599 && status != 501 && status != 505);
}

/* ---- one exchange --------------------------------------------------------------------------- */

typedef struct xfer {
    pd_http *h;
    const pd_http_req *req;
    pd_http_resp *r;
    size_t cap;
    size_t read_off;  /* body bytes handed to curl (no_resend) */
    long seen_status; /* status line of the answer being read */
    int failed;       /* PD_ERR_TOOBIG / PD_ERR_NOMEM while storing the body */
} xfer;

static void copy_value(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static bool parse_i64(const char *s, size_t n, int64_t *out)
{
    if (n == 0 || n > 19)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t len = size * nitems;
    pd_http_resp *r = x->r;
    if (len >= 5 && !memcmp(buf, "HTTP/", 5)) {
        /* A new answer (after a 100 Continue, say): forget the headers of the previous one. */
        const char *sp = memchr(buf, ' ', len);
        long st = 0;
        if (sp && (size_t)(sp - buf) + 4 <= len)
            st = strtol(sp + 1, NULL, 10);
        char *body = r->body;
        size_t body_len = r->body_len;
        char nonce[sizeof r->nonce];
        memcpy(nonce, r->nonce, sizeof nonce);
        uint64_t sent = r->body_sent;
        memset(r, 0, sizeof *r);
        r->body = body;
        r->body_len = body_len;
        memcpy(r->nonce, nonce, sizeof nonce);
        r->body_sent = sent;
        r->content_length = -1;
        x->seen_status = st;
        return len;
    }
    const char *colon = memchr(buf, ':', len);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vlen = len - nlen - 1;
    while (vlen && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
#define IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(buf, name, nlen))
    if (IS("Content-Type"))
        copy_value(r->content_type, sizeof r->content_type, v, vlen);
    else if (IS("Location"))
        copy_value(r->location, sizeof r->location, v, vlen);
    else if (IS("ETag"))
        copy_value(r->etag, sizeof r->etag, v, vlen);
    else if (IS("Content-Range"))
        copy_value(r->content_range, sizeof r->content_range, v, vlen);
    else if (IS("Pd-Server-Signature"))
        copy_value(r->sig, sizeof r->sig, v, vlen);
    else if (IS("Tus-Version"))
        copy_value(r->tus_version, sizeof r->tus_version, v, vlen);
    else if (IS("Tus-Extension"))
        copy_value(r->tus_extension, sizeof r->tus_extension, v, vlen);
    else if (IS("Tus-Resumable"))
        r->tus_resumable = vlen == 5 && !memcmp(v, "1.0.0", 5);
    else if (IS("Upload-Offset"))
        r->has_offset = parse_i64(v, vlen, &r->upload_offset);
    else if (IS("Upload-Length"))
        r->has_length = parse_i64(v, vlen, &r->upload_length);
    else if (IS("Pd-Cursor"))
        r->has_cursor = parse_i64(v, vlen, &r->cursor);
    else if (IS("Pd-Complete"))
        r->pd_complete = vlen == 1 && v[0] == '1';
    else if (IS("Content-Length")) {
        if (!parse_i64(v, vlen, &r->content_length))
            r->content_length = -1;
    } else if (IS("Retry-After")) {
        int64_t s;
        if (parse_i64(v, vlen, &s))
            r->retry_after_s = s;
    }
#undef IS
    return len;
}

static size_t on_body(char *buf, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t len = size * nmemb;
    pd_http_resp *r = x->r;
    if (x->req->sink && (x->seen_status == 200 || x->seen_status == 206)) {
        if (x->req->sink(x->req->sink_ctx, (const uint8_t *)buf, len) != 0) {
            r->sink_failed = true;
            return 0; /* aborts the transfer */
        }
        r->body_len += len;
        return len;
    }
    size_t max = x->req->max_body ? x->req->max_body : PD_HTTP_JSON_MAX;
    if (x->seen_status < 200 || x->seen_status > 299)
        max = PD_HTTP_ERROR_MAX < max ? PD_HTTP_ERROR_MAX : max;
    if (len > max - r->body_len || r->body_len > max) {
        x->failed = PD_ERR_TOOBIG;
        return 0;
    }
    if (r->body_len + len + 1 > x->cap) {
        size_t cap = x->cap ? x->cap : 4096;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        char *p = realloc(r->body, cap);
        if (!p) {
            x->failed = PD_ERR_NOMEM;
            return 0;
        }
        r->body = p;
        x->cap = cap;
    }
    memcpy(r->body + r->body_len, buf, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return len;
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    xfer *x = ud;
    const pd_http_cfg *cfg = &x->h->cfg;
    if (!cfg->progress)
        return 0;
    uint64_t now = (uint64_t)(ultotal > 0 ? ulnow : dlnow);
    uint64_t total = x->req->progress_total;
    if (!total)
        total = (uint64_t)(ultotal > 0 ? ultotal : dltotal) + x->req->progress_base;
    cfg->progress(cfg->progress_ctx, x->req->phase, x->req->progress_base + now, total);
    return 0;
}

/* The body of a no_resend request, handed out once: with no way to rewind it, libcurl cannot
 * resend it on its own (CURLE_SEND_FAIL_REWIND instead), so the caller asks HEAD first. */
static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    xfer *x = ud;
    size_t left = x->req->body_len - x->read_off, n = size * nitems;
    if (n > left)
        n = left;
    if (n)
        memcpy(buf, x->req->body + x->read_off, n);
    x->read_off += n;
    return n;
}

/* The request target as it goes on the request line: path and "?query". */
static int request_target(const char *url, char *out, size_t cap)
{
    CURLU *u = curl_url();
    if (!u)
        return PD_ERR_NOMEM;
    char *path = NULL, *query = NULL;
    int rc = PD_ERR_INVALID;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_QUERY, &query, 0);
        int n = snprintf(out, cap, "%s%s%s", path, query ? "?" : "", query ? query : "");
        rc = (n < 0 || (size_t)n >= cap) ? PD_ERR_TOOBIG : PD_OK;
    }
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(u);
    return rc;
}

/* Pd-Auth for this request (PROTOCOL.md §4); nonce gets the 32 hex sent. */
static int make_auth(pd_http *h, const pd_http_req *req, char *header, size_t cap,
                     char nonce[PD_HTTP_NONCE_HEX + 1])
{
    if (!h->device_sk)
        return pd_error_set(&h->err, PD_ERR_INTERNAL, "signed request without a device key");
    char target[PD_HTTP_URL_MAX];
    int rc = request_target(req->url, target, sizeof target);
    if (rc != PD_OK)
        return pd_error_set(&h->err, rc, "%.200s: not a URL curl can parse", req->url);
    uint8_t raw[PD_HTTP_NONCE_HEX / 2];
    randombytes_buf(raw, sizeof raw);
    pd_sync_hex(nonce, raw, sizeof raw);
    char body_hex[2 * PD_HASH_BYTES + 1];
    pd_http_hash_hex(req->body, req->body_len, body_hex);
    long long t = (long long)(pd_http_now_ms(h) / 1000);
    char msg[SIGN_MSG_MAX];
    int n = snprintf(msg, sizeof msg, "PD1\n%s\n%s\n%s\n%lld\n%s\n%s", h->device_id, req->method,
                     target, t, nonce, body_hex);
    if (n < 0 || (size_t)n >= sizeof msg)
        return pd_error_set(&h->err, PD_ERR_TOOBIG, "request target too long to sign");
    uint8_t sig[PD_SIG_BYTES];
    crypto_sign_detached(sig, NULL, (const uint8_t *)msg, (size_t)n, h->device_sk);
    char sig_hex[2 * PD_SIG_BYTES + 1];
    pd_sync_hex(sig_hex, sig, sizeof sig);
    n = snprintf(header, cap, "Pd-Auth: PD1 device=%s,time=%lld,nonce=%s,sig=%s", h->device_id, t,
                 nonce, sig_hex);
    if (n < 0 || (size_t)n >= cap)
        return pd_error_set(&h->err, PD_ERR_TOOBIG, "Pd-Auth header too long");
    return PD_OK;
}

int pd_http_check_sig(pd_http *h, const pd_http_resp *r, const char *third,
                      const uint8_t pk[PD_PUBKEY_BYTES])
{
    const char *s = r->sig;
    uint8_t sig[PD_SIG_BYTES];
    if (strncmp(s, "PD1 sig=", 8) || pd_sync_unhex(sig, sizeof sig, s + 8) != 0)
        return pd_error_set(&h->err, PD_ERR_SIGNATURE,
                            "the server's answer (HTTP %ld) has %s Pd-Server-Signature: not "
                            "from the pinned server",
                            r->status, s[0] ? "a malformed" : "no");
    char body_hex[2 * PD_HASH_BYTES + 1];
    pd_http_hash_hex((const uint8_t *)r->body, r->body ? r->body_len : 0, body_hex);
    char msg[256];
    int n = snprintf(msg, sizeof msg, "PD1-RESP\n%ld\n%s\n%s", r->status, third, body_hex);
    if (n < 0 || (size_t)n >= sizeof msg)
        return pd_error_set(&h->err, PD_ERR_INTERNAL, "response signature input too long");
    if (crypto_sign_verify_detached(sig, (const uint8_t *)msg, (size_t)n, pk) != 0)
        return pd_error_set(&h->err, PD_ERR_SIGNATURE,
                            "the server's answer (HTTP %ld) is not signed by the pinned server "
                            "key: refusing it",
                            r->status);
    return PD_OK;
}

static bool is_json(const pd_http_resp *r)
{
    return !strncasecmp(r->content_type, "application/json", 16);
}

static void count(pd_http *h, CURL *c, const pd_http_resp *r)
{
    if (!h->stats)
        return;
    long req_size = 0, hdr_size = 0;
    curl_off_t up = 0, down = 0;
    curl_easy_getinfo(c, CURLINFO_REQUEST_SIZE, &req_size);
    curl_easy_getinfo(c, CURLINFO_HEADER_SIZE, &hdr_size);
    curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &down);
    h->stats->requests++;
    h->stats->bytes_sent += (uint64_t)(req_size > 0 ? req_size : 0) + (uint64_t)(up > 0 ? up : 0);
    h->stats->bytes_received +=
        (uint64_t)(hdr_size > 0 ? hdr_size : 0) + (uint64_t)(down > 0 ? down : 0);
    (void)r;
}

int pd_http_once(pd_http *h, const pd_http_req *req, pd_http_resp *r)
{
    CURL *c = h->curl;
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    struct curl_slist *hdrs = NULL;
    int rc = PD_OK;
    xfer x = {.h = h, .req = req, .r = r};
    char line[AUTH_MAX];

    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, h->cfg.connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, h->cfg.stall_bytes_per_s);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, h->cfg.stall_timeout_s);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "pendata/" PD_VERSION_STRING);
    if (h->cfg.ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->cfg.ca_file);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, h->cfg.progress ? 0L : 1L);
    if (req->gzip)
        curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "gzip, deflate");

    const char *m = req->method;
    if (!strcmp(m, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else if (!strcmp(m, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else {
        if (req->no_resend && req->body) {
            curl_easy_setopt(c, CURLOPT_POST, 1L);
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, &x);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        } else if (req->body || !strcmp(m, "POST") || !strcmp(m, "PATCH")) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body ? (const char *)req->body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        }
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, m);
    }
    /* No "Expect: 100-continue": a wasted round trip on a slow link. */
    hdrs = curl_slist_append(hdrs, "Expect:");
    if (req->content_type) {
        snprintf(line, sizeof line, "Content-Type: %s", req->content_type);
        hdrs = curl_slist_append(hdrs, line);
    } else if (req->body || !strcmp(m, "POST") || !strcmp(m, "PATCH")) {
        hdrs = curl_slist_append(hdrs, "Content-Type:");
    }
    if (req->tus)
        hdrs = curl_slist_append(hdrs, "Tus-Resumable: 1.0.0");
    for (size_t i = 0; req->headers && req->headers[i]; i++)
        hdrs = curl_slist_append(hdrs, req->headers[i]);
    if (req->sign) {
        rc = make_auth(h, req, line, sizeof line, r->nonce);
        if (rc != PD_OK)
            goto out;
        hdrs = curl_slist_append(hdrs, line);
    }
    if (!hdrs) {
        rc = pd_error_set(&h->err, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);

    CURLcode cc = curl_easy_perform(c);
    curl_off_t up = 0;
    curl_easy_getinfo(c, CURLINFO_SIZE_UPLOAD_T, &up);
    r->body_sent = (uint64_t)(up > 0 ? up : 0);
    /* a transfer that failed may report less than it put on the wire: count what curl took */
    if (req->no_resend && req->body && x.read_off > r->body_sent)
        r->body_sent = x.read_off;
    count(h, c, r);
    if (x.failed) {
        rc = pd_error_set(&h->err, x.failed, "%s %s: the answer is %s", m, req->url,
                          x.failed == PD_ERR_TOOBIG ? "over the size limit" : "out of memory");
        goto out;
    }
    if (r->sink_failed) {
        rc = pd_error_set(&h->err, PD_ERR_IO, "%s %s: could not store the download", m, req->url);
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    r->status = status;
    if (cc != CURLE_OK) {
        r->curl_rc = (int)cc;
        snprintf(r->curl_msg, sizeof r->curl_msg, "%s", curl_easy_strerror(cc));
        r->status = 0; /* an answer cut short is no answer */
        h->link_failed = true;
        rc =
            pd_error_set(&h->err, PD_ERR_NETWORK, "%s %s: %s", m, req->url, curl_easy_strerror(cc));
        goto out;
    }
    /* A HEAD answer carries no body, so a signature made over one cannot be checked: for HEAD the
     * status is all there is (its 200 is not signed either). */
    if (req->sign && h->pinned && is_json(r) && strcmp(req->method, "HEAD") != 0) {
        rc = pd_http_check_sig(h, r, r->nonce, h->sign_pk);
        if (rc != PD_OK)
            goto out;
    }
out:
    curl_slist_free_all(hdrs);
    return rc;
}

/* ---- retries ------------------------------------------------------------------------------ */

void pd_http_backoff(pd_http *h, unsigned attempt, int64_t retry_after_s)
{
    uint64_t ceiling = h->cfg.backoff_base_ms;
    for (unsigned i = 0; i < attempt && ceiling < h->cfg.backoff_cap_ms; i++)
        ceiling *= 2;
    if (ceiling > h->cfg.backoff_cap_ms)
        ceiling = h->cfg.backoff_cap_ms;
    /* Full jitter: anywhere in [0, ceiling], so that devices cut off together do not come back
     * together. */
    uint64_t ms = randombytes_uniform((uint32_t)ceiling + 1);
    if (retry_after_s > 0) {
        uint64_t ra = (uint64_t)retry_after_s * 1000;
        if (ra > h->cfg.backoff_cap_ms)
            ra = h->cfg.backoff_cap_ms;
        if (ms < ra)
            ms = ra;
    }
    if (h->stats)
        h->stats->retries++;
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

bool pd_http_auth_retry(pd_http *h, const pd_http_resp *r)
{
    if (r->status != 401 || !is_json(r) || !r->body)
        return false;
    cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
    bool again = false;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "server_time");
    if (cJSON_IsString(e) && !strcmp(e->valuestring, "stale_time") && cJSON_IsNumber(t) &&
        t->valuedouble > 0) {
        h->skew_ms = (int64_t)t->valuedouble - pd_sync_now_ms();
        h->skew_changed = true;
        again = true;
    } else if (cJSON_IsString(e) && !strcmp(e->valuestring, "replayed_nonce")) {
        /* libcurl resends a request whose reused connection died before any answer, with the
         * same Pd-Auth; if the server had in fact taken the first copy, it refuses the second
         * as a replay. A new nonce is all it needs. */
        again = true;
    }
    cJSON_Delete(j);
    return again;
}

int pd_http_call(pd_http *h, const pd_http_req *req, pd_http_resp *r)
{
    bool skew_retried = false;
    int rc = PD_OK;
    for (unsigned attempt = 0;; attempt++) {
        rc = pd_http_once(h, req, r);
        if (rc != PD_OK && rc != PD_ERR_NETWORK)
            return rc;
        if (rc == PD_OK && req->sign && !skew_retried && pd_http_auth_retry(h, r)) {
            skew_retried = true;
            pd_http_resp_free(r);
            attempt--; /* not a failure of the link */
            continue;
        }
        if (rc == PD_OK && !pd_http_transient(r->status))
            return PD_OK;
        if (attempt + 1 >= h->cfg.max_attempts || r->sink_failed)
            return rc;
        int64_t ra = r->retry_after_s;
        pd_http_resp_free(r);
        pd_http_backoff(h, attempt, ra);
    }
}

int pd_http_fail_status(pd_http *h, const char *what, const pd_http_resp *r)
{
    char code[64] = "", msg[300] = "";
    if (r->body && is_json(r)) {
        cJSON *j = cJSON_ParseWithLength(r->body, r->body_len);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
        if (cJSON_IsString(e))
            snprintf(code, sizeof code, "%s", e->valuestring);
        if (cJSON_IsString(m))
            snprintf(msg, sizeof msg, "%s", m->valuestring);
        cJSON_Delete(j);
    }
    int rc;
    switch (r->status) {
    case 400:
    case 415:
    case 422:
        rc = PD_ERR_INVALID;
        break;
    case 401:
    case 403:
        rc = PD_ERR_DENIED;
        break;
    case 404:
    case 410:
        rc = PD_ERR_NOTFOUND;
        break;
    case 409:
        rc = (!strcmp(code, "device_exists") || !strcmp(code, "key_in_use")) ? PD_ERR_EXISTS
                                                                             : PD_ERR_STATE;
        break;
    case 412:
        rc = PD_ERR_VERSION;
        break;
    case 413:
        rc = PD_ERR_TOOBIG;
        break;
    case 460:
        rc = PD_ERR_CORRUPT;
        break;
    case 503:
    case 423:
    case 429:
        rc = PD_ERR_BUSY;
        break;
    default:
        rc = r->status >= 500 ? PD_ERR_NETWORK : PD_ERR_PROTOCOL;
        break;
    }
    return pd_error_set(&h->err, rc, "%s: HTTP %ld%s%s%s%s", what, r->status, code[0] ? " " : "",
                        code, msg[0] ? ": " : "", msg);
}

cJSON *pd_http_json(pd_http *h, const char *what, const pd_http_resp *r)
{
    if (!r->body || !is_json(r)) {
        pd_error_set(&h->err, PD_ERR_PROTOCOL, "%s: the answer is not JSON (%s)", what,
                     r->content_type[0] ? r->content_type : "no Content-Type");
        return NULL;
    }
    if (pd_json_has_nul_escape(r->body, r->body_len)) {
        /* cJSON would cut the string there and we would store a value nobody sent */
        pd_error_set(&h->err, PD_ERR_PROTOCOL,
                     "%s: a string in the answer holds \\u0000 (NUL): refusing it whole", what);
        return NULL;
    }
    cJSON *j = pd_json_parse(r->body, r->body_len);
    if (!j || !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        pd_error_set(&h->err, PD_ERR_PROTOCOL, "%s: the answer is not a JSON object", what);
        return NULL;
    }
    return j;
}
