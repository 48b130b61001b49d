/*
 * http.c — the server's HTTP face on libmicrohttpd: the daemon (internal thread pool on epoll,
 * connection limit, idle timeout, header memory cap), routing, request authentication (the
 * Pd-Auth header of PROTOCOL.md §4), body limits, response signing, Range, and the access log.
 *
 * A request goes through three phases, as libmicrohttpd calls us:
 *   1. headers: route it; tus version check; parse Pd-Auth and check everything that needs no
 *      body (device known and not revoked, time window, nonce not seen, declared size); a tus
 *      PATCH opens its upload here. Any failure is answered at once, before the body is read.
 *   2. body pieces: hashed (BLAKE2b-256, for the signature) and buffered within the JSON cap,
 *      or streamed to the upload's file for a PATCH.
 *   3. complete: the signature is checked over the whole request (outside the storage lock);
 *      only then, under the lock, is the nonce recorded and the handler run. A failed signature
 *      on a PATCH discards the bytes written.
 *
 * The lock covers storage access only: signature checks, hashing, JSON printing and response
 * signing run outside it. Commits made under it are deferred (storage.h sync_defer) and made
 * durable by one sync_flush after the lock is released and BEFORE the answer is queued, so
 * requests that commit at the same time share one fsync (group commit) and none waits for a
 * disk flush while holding the lock. Nonces: the nonce is recorded (its own small write) before
 * the handler runs and is flushed with the handler's writes; no answer — to a state-changing
 * request or a read — leaves before its nonce is durable, so a replay is refused after a
 * restart or a power cut too.
 *
 * "The lock" is srv_lock: the server's one mutex for a backend used by one thread at a time
 * (SQLite), nothing for a concurrent one (PostgreSQL: each request's transaction on a pooled
 * connection of its own), whose requests run their storage work in parallel as two server
 * processes would. What the server itself keeps in memory has its own small lock (state_lock).
 *
 * The access log (if the caller gave a FILE*) has one line per request: time, device id, method,
 * path, status, bytes in and out, milliseconds. Never a query string, body or header value.
 */
#include "srv_internal.h"

#include "korcam.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define AUTH_SCHEME "PD1 "
#define NONCE_BYTES PD_SRV_NONCE_BYTES
#define DRAIN_MAX_BYTES (1u << 20) /* an oversize JSON body up to this is read before the 413 */
#define PURGE_EVERY_MS 60000

enum route {
    R_NONE = 0,
    R_HEALTH,
    R_ENROLL,
    R_UPLOADS, /* the tus collection: OPTIONS, POST */
    R_UPLOAD,  /* one upload: HEAD, PATCH, DELETE */
    R_COMMIT,
    R_RECEIPTS,
    R_PRELIST,
    R_DELTA,
    R_KORCAM,     /* /v1/korcam/...: a korcam's device (server/korcam.c) */
    R_KORCAM_WEB, /* /korcam/...: the web page, its own login (server/korcam.c) */
};

typedef struct srv_conn {
    pd_server *srv;
    struct MHD_Connection *con;
    char *target; /* the raw request target, as sent */
    const char *method;
    char path[256];
    const char *query;
    enum route route;
    char upload_id[PD_SRV_UPLOAD_ID_LEN + 1];
    bool started, answered, tus, open_route;
    struct timespec t0;

    /* authentication */
    bool authed;
    pd_srv_device device;
    int64_t req_time;
    uint8_t nonce[NONCE_BYTES];
    char nonce_hex[2 * NONCE_BYTES + 1];
    uint8_t sig[PD_SIG_BYTES];
    crypto_generichash_state bh;

    /* body */
    uint8_t *body;
    size_t body_len, body_cap, body_max;
    uint64_t body_in;
    bool too_large;
    srv_patch *patch;

    /* response */
    srv_resp resp;
    char resp_ctx[2 * PD_HASH_BYTES + 1]; /* the line the response signature binds to */
    int status;
    uint64_t bytes_out;
} srv_conn;

/* ---- responses ------------------------------------------------------------------------------ */

void srv_resp_header(srv_resp *r, const char *name, const char *fmt, ...)
{
    if (r->nh >= SRV_RESP_HEADERS)
        return;
    snprintf(r->h[r->nh].name, sizeof r->h[r->nh].name, "%s", name);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->h[r->nh].value, sizeof r->h[r->nh].value, fmt, ap);
    va_end(ap);
    r->nh++;
}

int srv_resp_error(srv_resp *r, int status, const char *code, const char *fmt, ...)
{
    char msg[PD_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON_Delete(r->json);
    r->json = cJSON_CreateObject();
    if (r->json) {
        cJSON_AddStringToObject(r->json, "error", code);
        cJSON_AddStringToObject(r->json, "message", msg);
    }
    r->status = status;
    return status;
}

int srv_resp_status(srv_resp *r, pd_server *srv, int code)
{
    const char *msg = pd_server_errmsg(srv);
    switch (code) {
    case PD_ERR_INVALID:
    case PD_ERR_CORRUPT:
    case PD_ERR_VERSION:
        return srv_resp_error(r, 400, "bad_request", "%s", msg);
    case PD_ERR_SIGNATURE:
        return srv_resp_error(r, 401, "bad_signature", "%s", msg);
    case PD_ERR_DENIED:
        return srv_resp_error(r, 403, "denied", "%s", msg);
    case PD_ERR_NOTFOUND:
        return srv_resp_error(r, 404, "not_found", "%s", msg);
    case PD_ERR_EXISTS:
    case PD_ERR_CONFLICT:
    case PD_ERR_STATE:
        return srv_resp_error(r, 409, "conflict", "%s", msg);
    case PD_ERR_TOOBIG:
        return srv_resp_error(r, 413, "too_large", "%s", msg);
    case PD_ERR_BUSY:
        return srv_resp_error(r, 503, "busy", "%s", msg);
    default:
        return srv_resp_error(r, 500, "internal", "%s", msg);
    }
}

const char *srv_query_param(const char *query, const char *name, char *buf, size_t cap)
{
    return srv_query_get(query, name, buf, cap) == 1 ? buf : NULL;
}

int srv_query_get(const char *query, const char *name, char *buf, size_t cap)
{
    if (!query || !name)
        return 0;
    size_t nl = strlen(name);
    const char *p = query;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && !strncmp(p, name, nl) && p[nl] == '=') {
            const char *v = p + nl + 1;
            size_t vl = len - nl - 1, o = 0;
            for (size_t i = 0; i < vl; i++) {
                char c = v[i];
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    uint8_t b;
                    if (i + 2 >= vl)
                        return -1;
                    char hx[3] = {v[i + 1], v[i + 2], '\0'};
                    if (!srv_unhex(hx, &b, 1))
                        return -1;
                    c = (char)b;
                    i += 2;
                }
                if (o + 1 >= cap || c == '\0')
                    return -1;
                buf[o++] = c;
            }
            buf[o] = '\0';
            return 1;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return 0;
}

void srv_http_date(int64_t ms, char out[40])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- request helpers ------------------------------------------------------------------------ */

static const char *conn_header(const void *hctx, const char *name)
{
    const srv_conn *c = hctx;
    return MHD_lookup_connection_value(c->con, MHD_HEADER_KIND, name);
}

static srv_req make_req(srv_conn *c)
{
    srv_req q = {.method = c->method,
                 .path = c->path,
                 .query = c->query,
                 .body = c->body,
                 .body_len = c->body_len,
                 .device = c->authed ? &c->device : NULL,
                 .header = conn_header,
                 .hctx = c};
    return q;
}

static void route(srv_conn *c)
{
    const char *p = c->path;
    if (!strcmp(p, "/v1/health"))
        c->route = R_HEALTH;
    else if (!strcmp(p, "/v1/enroll"))
        c->route = R_ENROLL;
    else if (!strcmp(p, "/v1/uploads"))
        c->route = R_UPLOADS;
    else if (!strncmp(p, "/v1/uploads/", 12)) {
        const char *id = p + 12;
        if (strlen(id) == PD_SRV_UPLOAD_ID_LEN &&
            strspn(id, "0123456789abcdef") == PD_SRV_UPLOAD_ID_LEN) {
            memcpy(c->upload_id, id, PD_SRV_UPLOAD_ID_LEN + 1);
            c->route = R_UPLOAD;
        } else {
            c->route = R_NONE;
        }
    } else if (!strcmp(p, "/v1/batches/commit"))
        c->route = R_COMMIT;
    else if (!strcmp(p, "/v1/receipts"))
        c->route = R_RECEIPTS;
    else if (!strcmp(p, "/v1/prelist"))
        c->route = R_PRELIST;
    else if (!strcmp(p, "/v1/delta"))
        c->route = R_DELTA;
    else if (!strncmp(p, "/v1/korcam/", 11))
        c->route = R_KORCAM;
    else if (!strcmp(p, "/korcam") || !strncmp(p, "/korcam/", 8))
        c->route = R_KORCAM_WEB;
    else
        c->route = R_NONE;
    c->tus = c->route == R_UPLOADS || c->route == R_UPLOAD;
    c->open_route = c->route == R_HEALTH || c->route == R_ENROLL || c->route == R_KORCAM_WEB ||
                    (c->route == R_UPLOADS && !strcmp(c->method, "OPTIONS"));
}

/* Is the method allowed on the route? */
static bool method_ok(const srv_conn *c)
{
    const char *m = c->method;
    switch (c->route) {
    case R_HEALTH:
    case R_RECEIPTS:
    case R_PRELIST:
    case R_DELTA:
        return !strcmp(m, "GET");
    case R_ENROLL:
    case R_COMMIT:
        return !strcmp(m, "POST");
    case R_UPLOADS:
        return !strcmp(m, "OPTIONS") || !strcmp(m, "POST");
    case R_UPLOAD:
        return !strcmp(m, "HEAD") || !strcmp(m, "PATCH") || !strcmp(m, "DELETE");
    case R_KORCAM:
    case R_KORCAM_WEB:
        return !strcmp(m, "GET") || !strcmp(m, "POST");
    default:
        return false;
    }
}

bool srv_auth_parse(const char *h, srv_auth *out)
{
    if (!h || strncmp(h, AUTH_SCHEME, strlen(AUTH_SCHEME)) != 0)
        return false;
    const char *p = h + strlen(AUTH_SCHEME);
    static const char *const keys[] = {"device=", "time=", "nonce=", "sig="};
    char val[4][160];
    for (int i = 0; i < 4; i++) {
        size_t kl = strlen(keys[i]);
        if (strncmp(p, keys[i], kl) != 0)
            return false;
        p += kl;
        size_t n = strcspn(p, ",");
        if (n == 0 || n >= sizeof val[i])
            return false;
        memcpy(val[i], p, n);
        val[i][n] = '\0';
        p += n;
        if (i < 3) {
            if (*p != ',')
                return false;
            p++;
        }
    }
    if (*p != '\0' || !srv_valid_id(val[0]))
        return false;
    memcpy(out->device, val[0], strlen(val[0]) + 1); /* valid ids fit */
    char *end = NULL;
    long long t = strtoll(val[1], &end, 10);
    if (!end || *end || val[1][0] == '-' || val[1][0] == '+' || strlen(val[1]) > 12)
        return false;
    out->time = (int64_t)t;
    if (strlen(val[2]) != 2 * NONCE_BYTES || !srv_unhex(val[2], out->nonce, NONCE_BYTES))
        return false;
    srv_hex(out->nonce, NONCE_BYTES, out->nonce_hex);
    if (!srv_unhex(val[3], out->sig, PD_SIG_BYTES))
        return false;
    return true;
}

/* Parse "PD1 device=…,time=…,nonce=…,sig=…" into the connection. */
static bool parse_auth(srv_conn *c, const char *h)
{
    srv_auth a;
    if (!srv_auth_parse(h, &a))
        return false;
    memcpy(c->device.id, a.device, sizeof a.device);
    c->req_time = a.time;
    memcpy(c->nonce, a.nonce, NONCE_BYTES);
    memcpy(c->nonce_hex, a.nonce_hex, sizeof c->nonce_hex);
    memcpy(c->sig, a.sig, PD_SIG_BYTES);
    sodium_memzero(&a, sizeof a);
    return true;
}

static uint64_t content_length(srv_conn *c, bool *present)
{
    const char *cl =
        MHD_lookup_connection_value(c->con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    *present = cl != NULL;
    return cl ? strtoull(cl, NULL, 10) : 0;
}

/* Phase 1 for authenticated routes: everything that needs no body. false: answered. */
static bool auth_headers(pd_server *srv, srv_conn *c)
{
    srv_resp *r = &c->resp;
    const char *h = MHD_lookup_connection_value(c->con, MHD_HEADER_KIND, "Pd-Auth");
    if (!h) {
        srv_resp_error(r, 401, "auth_missing", "this request needs a Pd-Auth header");
        return false;
    }
    if (!parse_auth(c, h)) {
        srv_resp_error(r, 401, "auth_malformed",
                       "Pd-Auth must be 'PD1 device=ID,time=SECONDS,nonce=32HEX,sig=128HEX'");
        return false;
    }
    memcpy(c->resp_ctx, c->nonce_hex, sizeof c->nonce_hex); /* answers bind to the nonce */
    char dev_id[PD_SRV_ID_MAX + 1];
    snprintf(dev_id, sizeof dev_id, "%s", c->device.id);
    /* on a reader if one is free (auth_nonce decides on the writer, under the lock) */
    bool reading = srv_read_begin(srv);
    if (!reading)
        srv_lock(srv);
    pd_storage *st = srv_store(srv);
    int rc = st->ops->device_get(st, dev_id, &c->device);
    bool seen = false;
    int nrc = rc == PD_OK ? st->ops->nonce_seen(st, dev_id, c->nonce, NONCE_BYTES, &seen) : PD_OK;
    char msg[PD_ERRMSG_MAX] = "";
    if (rc != PD_OK || nrc != PD_OK)
        snprintf(msg, sizeof msg, "%s", pd_storage_errmsg(st));
    if (reading)
        srv_read_end(srv, false); /* (decides nothing alone: auth_nonce and the handler do) */
    else
        srv_unlock(srv);
    if (rc == PD_ERR_NOTFOUND) {
        srv_resp_error(r, 401, "unknown_device", "device %s is not enrolled", dev_id);
        return false;
    }
    if (rc != PD_OK || nrc != PD_OK) {
        srv_resp_error(r, 503, "busy", "storage: %s", msg);
        return false;
    }
    if (c->device.revoked_at) {
        srv_resp_error(r, 403, "device_revoked", "device %s was revoked", dev_id);
        return false;
    }
    int64_t now = srv_now_ms();
    int64_t skew = c->req_time * 1000 - now;
    if (skew < -srv->cfg.skew_ms || skew > srv->cfg.skew_ms) {
        srv_resp_error(
            r, 401, "stale_time", "request time %lld is %lld s from server time; allowed ±%lld s",
            (long long)c->req_time, (long long)(skew / 1000), (long long)(srv->cfg.skew_ms / 1000));
        if (r->json)
            cJSON_AddNumberToObject(r->json, "server_time", (double)now);
        return false;
    }
    if (seen) {
        srv_resp_error(r, 401, "replayed_nonce", "this nonce was already used by device %s",
                       dev_id);
        return false;
    }
    crypto_generichash_init(&c->bh, NULL, 0, PD_HASH_BYTES);
    return true;
}

/* Phase 3, no lock: the signature over the whole request. false: answered. */
static bool auth_signature(srv_conn *c)
{
    uint8_t bh[PD_HASH_BYTES];
    char bh_hex[2 * PD_HASH_BYTES + 1];
    crypto_generichash_final(&c->bh, bh, sizeof bh);
    srv_hex(bh, sizeof bh, bh_hex);
    size_t n = strlen(c->device.id) + strlen(c->method) + strlen(c->target) + 200;
    char *msg = malloc(n);
    if (!msg) {
        srv_resp_error(&c->resp, 500, "internal", "out of memory");
        return false;
    }
    int len = snprintf(msg, n, "PD1\n%s\n%s\n%s\n%lld\n%s\n%s", c->device.id, c->method, c->target,
                       (long long)c->req_time, c->nonce_hex, bh_hex);
    bool ok =
        len > 0 && (size_t)len < n &&
        crypto_sign_verify_detached(c->sig, (const uint8_t *)msg, (size_t)len, c->device.pk) == 0;
    free(msg);
    if (!ok) {
        srv_resp_error(&c->resp, 401, "bad_signature",
                       "the Pd-Auth signature does not verify with device %s's key", c->device.id);
        return false;
    }
    return true;
}

/* Phase 3, under the lock: record the nonce (refused if seen meanwhile). false: answered. */
static bool auth_nonce(pd_server *srv, srv_conn *c)
{
    int rc = srv->st->ops->nonce_add(srv->st, c->device.id, c->nonce, NONCE_BYTES, srv_now_ms());
    if (rc == PD_ERR_EXISTS) {
        srv_resp_error(&c->resp, 401, "replayed_nonce", "this nonce was already used by device %s",
                       c->device.id);
        return false;
    }
    if (rc != PD_OK) {
        srv_resp_error(&c->resp, 503, "busy", "storage: %s", pd_storage_errmsg(srv->st));
        return false;
    }
    c->authed = true;
    return true;
}

/* Housekeeping every minute or so, under the lock: old nonces, expired uploads. */
static void maybe_purge(pd_server *srv)
{
    int64_t now = srv_now_ms();
    pthread_mutex_lock(&srv->state_lock);
    bool due = now - srv->last_purge >= PURGE_EVERY_MS;
    if (due)
        srv->last_purge = now;
    pthread_mutex_unlock(&srv->state_lock);
    if (!due)
        return;
    srv->st->ops->nonce_purge(srv->st, now - 2 * srv->cfg.skew_ms);
    srv_tus_expire(srv, now);
}

/* ---- the three phases ------------------------------------------------------------------------ */

static void phase_headers(pd_server *srv, srv_conn *c, const char *url)
{
    srv_resp *r = &c->resp;
    snprintf(c->path, sizeof c->path, "%s", url);
    const char *qm = strchr(c->target, '?');
    c->query = qm ? qm + 1 : "";
    route(c);
    if (c->route == R_NONE) {
        srv_resp_error(r, 404, "not_found", "no such resource");
        c->answered = true;
        return;
    }
    if (!method_ok(c)) {
        srv_resp_error(r, 405, "method_not_allowed", "%s is not allowed here", c->method);
        c->answered = true;
        return;
    }
    if (c->tus && strcmp(c->method, "OPTIONS") != 0) {
        const char *v = MHD_lookup_connection_value(c->con, MHD_HEADER_KIND, "Tus-Resumable");
        if (!v || strcmp(v, "1.0.0") != 0) {
            srv_resp_error(r, 412, "tus_version", "this server speaks tus 1.0.0 only");
            srv_resp_header(r, "Tus-Version", "1.0.0");
            c->answered = true;
            return;
        }
    }
    if (!c->open_route && !auth_headers(srv, c)) {
        c->answered = true;
        return;
    }
    bool has_cl;
    uint64_t cl = content_length(c, &has_cl);
    if (c->route == R_UPLOAD && !strcmp(c->method, "PATCH")) {
        srv_req q = make_req(c);
        q.device = &c->device; /* headers checked; the signature comes at the end */
        srv_lock(srv);
        bool go = srv_tus_patch_begin(srv, &q, c->upload_id, &c->patch, r);
        srv_unlock(srv);
        if (!go)
            c->answered = true;
        return;
    }
    /* a tus creation may carry the upload's first bytes (creation-with-upload), held in memory */
    c->body_max = c->route == R_UPLOADS ? SRV_TUS_MEM_MAX : srv->cfg.max_json_bytes;
    /* A body a little over the limit is read and thrown away, then answered 413: answered at
     * once, the client still sending would meet a reset and might never read the answer. One
     * far over it is answered at once (a client that sends Expect: 100-continue never sends it). */
    if (has_cl && cl > c->body_max && cl <= DRAIN_MAX_BYTES) {
        c->too_large = true;
        return;
    }
    if (has_cl && cl > c->body_max) {
        srv_resp_error(r, 413, "too_large",
                       "request body of %llu bytes is over the %zu-byte "
                       "limit",
                       (unsigned long long)cl, c->body_max);
        c->answered = true;
        return;
    }
}

static void phase_body(srv_conn *c, const char *data, size_t n)
{
    c->body_in += n;
    if (!c->open_route)
        crypto_generichash_update(&c->bh, (const uint8_t *)data, n);
    if (c->patch) {
        srv_tus_patch_data(c->patch, (const uint8_t *)data, n);
        return;
    }
    if (c->too_large)
        return;
    if (c->body_len + n > c->body_max) {
        c->too_large = true;
        return;
    }
    if (c->body_len + n + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + n + 1)
            cap *= 2;
        uint8_t *nb = realloc(c->body, cap);
        if (!nb) {
            c->too_large = true;
            return;
        }
        c->body = nb;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, data, n);
    c->body_len += n;
    c->body[c->body_len] = 0;
}

static void run_handler(pd_server *srv, srv_conn *c);

/* Routes whose handlers only read (a read transaction on a reader suits them). A commit only
 * reads too unless its bundle still waits to be processed: its handler then asks for the writer
 * (srv_resp.needs_writer) and runs again under the lock. */
static bool reads_only(const srv_conn *c)
{
    return ((c->route == R_DELTA || c->route == R_RECEIPTS || c->route == R_PRELIST) &&
            !strcmp(c->method, "GET")) ||
           c->route == R_COMMIT;
}

/* The handler under the lock, its commits grouped (flushed by the caller before it answers). */
static void run_locked(pd_server *srv, srv_conn *c)
{
    pd_storage *st = srv->st;
    srv_lock(srv);
    if (st->ops->sync_defer)
        st->ops->sync_defer(st, true);
    run_handler(srv, c);
    if (st->ops->sync_defer)
        st->ops->sync_defer(st, false);
    srv_unlock(srv);
}

/* A PATCH's bytes reach the disk before the lock is taken: tus.c fsyncs the upload's file under
 * the lock before it acknowledges them (and stays the one that decides), and that fsync then
 * finds nothing left to write instead of holding every other request for a disk flush. (The
 * file is tus.c's <data dir>/uploads/<id>; a srv_tus_patch_sync(p) in tus.c would say so in one
 * place.) */
static void phase_complete(pd_server *srv, srv_conn *c)
{
    srv_resp *r = &c->resp;
    if (c->too_large) {
        srv_resp_error(r, 413, "too_large", "request body is over the %zu-byte limit", c->body_max);
        return;
    }
    if (c->route == R_ENROLL) {
        uint8_t h[PD_HASH_BYTES];
        crypto_generichash(h, sizeof h, c->body ? c->body : (const uint8_t *)"", c->body_len, NULL,
                           0);
        srv_hex(h, sizeof h, c->resp_ctx);
    }
    bool authed = c->open_route || auth_signature(c);
    if (authed && c->patch)
        srv_tus_patch_sync(c->patch); /* the fsync outside the lock */
    srv_lock(srv);
    pd_storage *st = srv->st;
    if (st->ops->sync_defer)
        st->ops->sync_defer(st, true);
    maybe_purge(srv);
    bool ok = authed && (c->open_route || auth_nonce(srv, c)), read_later = false;
    if (!ok) {
        if (c->patch) {
            srv_tus_patch_abort(srv, c->patch);
            c->patch = NULL;
        }
    } else if (!(read_later = reads_only(c))) {
        run_handler(srv, c);
    }
    if (st->ops->sync_defer)
        st->ops->sync_defer(st, false);
    srv_unlock(srv);
    /* A request that only reads (its nonce is recorded above) runs on a reader, without the
     * lock, where there are readers (SQLite); else under the lock as any other. */
    bool durable = true;
    if (read_later) {
        if (srv_read_begin(srv)) {
            run_handler(srv, c);
            durable = srv_read_end(srv, true);
            if (r->needs_writer) {
                r->needs_writer = false;
                run_locked(srv, c);
            }
        } else {
            run_locked(srv, c);
        }
    }
    /* the group commit: durable before anyone hears of it */
    if (!durable || (st->ops->sync_flush && st->ops->sync_flush(st) != PD_OK)) {
        cJSON_Delete(r->json);
        r->json = NULL;
        free(r->body);
        r->body = NULL;
        if (r->fd >= 0)
            close(r->fd);
        r->fd = -1;
        r->nh = 0;
        r->etag[0] = '\0';
        r->ranges = false;
        srv_resp_error(r, 503, "busy", "storage: the request's writes could not be made durable");
    }
}

/* The route's handler (request authenticated; lock held, or on a reader: srv_read_begin). */
static void run_handler(pd_server *srv, srv_conn *c)
{
    srv_resp *r = &c->resp;
    srv_req q = make_req(c);
    switch (c->route) {
    case R_HEALTH: {
        char fp[PD_SERVER_FINGERPRINT_LEN + 1];
        pd_server_fingerprint(srv, fp);
        r->status = 200;
        r->json = cJSON_CreateObject();
        if (r->json) {
            cJSON_AddStringToObject(r->json, "status", "ok");
            cJSON_AddNumberToObject(r->json, "server_time", (double)srv_now_ms());
            cJSON_AddStringToObject(r->json, "fingerprint", fp);
        }
        break;
    }
    case R_ENROLL:
        srv_handle_enroll(srv, &q, r);
        break;
    case R_UPLOADS:
        if (!strcmp(c->method, "OPTIONS"))
            srv_tus_options(srv, &q, r);
        else
            srv_tus_create(srv, &q, r);
        break;
    case R_UPLOAD:
        if (!strcmp(c->method, "HEAD")) {
            srv_tus_head(srv, &q, c->upload_id, r);
        } else if (!strcmp(c->method, "DELETE")) {
            srv_tus_delete(srv, &q, c->upload_id, r);
        } else {
            srv_tus_patch_finish(srv, &q, c->patch, r);
            c->patch = NULL;
        }
        break;
    case R_COMMIT:
        srv_handle_commit(srv, &q, r);
        break;
    case R_RECEIPTS:
        srv_handle_receipts(srv, &q, r);
        break;
    case R_PRELIST:
        srv_handle_prelist(srv, &q, r);
        break;
    case R_DELTA:
        srv_handle_delta(srv, &q, r);
        break;
    case R_KORCAM:
    case R_KORCAM_WEB:
        srv_korcam_handle(srv, &q, r);
        break;
    default:
        srv_resp_error(r, 404, "not_found", "no such resource");
    }
}

/* ---- sending ------------------------------------------------------------------------------- */

/* Parse a single "bytes=a-b" range against len. 0: no usable Range (send all), 1: first and
 * last set, -1: unsatisfiable. */
static int parse_range(const char *h, uint64_t len, uint64_t *first, uint64_t *last)
{
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return 0;
    const char *p = h + 6;
    char *end;
    if (*p == '-') { /* suffix: the last n bytes */
        unsigned long long n = strtoull(p + 1, &end, 10);
        if (end == p + 1 || *end)
            return 0;
        if (n == 0 || len == 0)
            return -1;
        *first = n >= len ? 0 : len - n;
        *last = len - 1;
        return 1;
    }
    if (*p < '0' || *p > '9')
        return 0;
    unsigned long long a = strtoull(p, &end, 10);
    if (*end != '-')
        return 0;
    p = end + 1;
    unsigned long long b = len ? len - 1 : 0;
    if (*p) {
        if (*p < '0' || *p > '9')
            return 0;
        b = strtoull(p, &end, 10);
        if (*end || b < a)
            return 0;
        if (b >= len)
            b = len ? len - 1 : 0;
    }
    if (a >= len)
        return -1;
    *first = a;
    *last = b;
    return 1;
}

/* PROTOCOL.md §2: Ed25519 over "PD1-RESP\n<status>\n<context>\n<hex BLAKE2b of body>". */
static void sign_response(pd_server *srv, int status, const char *context, const uint8_t *body,
                          size_t len, char *out, size_t cap)
{
    uint8_t h[PD_HASH_BYTES], sig[PD_SIG_BYTES];
    char hh[2 * PD_HASH_BYTES + 1], line[256], sh[2 * PD_SIG_BYTES + 1];
    crypto_generichash(h, sizeof h, body, len, NULL, 0);
    srv_hex(h, sizeof h, hh);
    int n = snprintf(line, sizeof line, "PD1-RESP\n%d\n%s\n%s", status, context, hh);
    srv_sign(srv, (const uint8_t *)line, (size_t)n, sig);
    srv_hex(sig, sizeof sig, sh);
    snprintf(out, cap, "PD1 sig=%s", sh);
}

/* Does the request accept a gzip'd answer? Accept-Encoding is a comma-separated list of codings,
 * each with an optional ";q=" weight (RFC 9110 12.5.3): gzip (or its alias x-gzip) is taken
 * when listed with a weight above 0. Anything odd (no header, unknown codings, "*", a weight that
 * is not a number) gets the plain answer, which every client can read. */
static bool accepts_gzip(srv_conn *c)
{
    const char *p =
        MHD_lookup_connection_value(c->con, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT_ENCODING);
    while (p && *p) {
        p += strspn(p, " \t,");
        size_t n = strcspn(p, " \t;,");
        bool gzip =
            (n == 4 && !strncasecmp(p, "gzip", 4)) || (n == 6 && !strncasecmp(p, "x-gzip", 6));
        p += n;
        double q = 1.0;
        p += strspn(p, " \t");
        if (*p == ';') {
            p += 1 + strspn(p + 1, " \t");
            if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                char *e;
                q = strtod(p + 2, &e);
                if (e == p + 2 || !(q >= 0.0 && q <= 1.0))
                    q = 0.0; /* unreadable weight: not taken */
                p = e;
            } else {
                q = 0.0; /* a parameter other than q: not a coding we know how to honour */
            }
        }
        if (gzip && q > 0.0)
            return true;
        p += strcspn(p, ",");
    }
    return false;
}

/* Each request thread keeps one deflate stream (about 300 KB of zlib state) and resets it for
 * the next answer: setting one up per answer cost more than compressing a delta page. Freed
 * when the thread ends (pthread key destructor). */
static pthread_key_t gzip_key;
static pthread_once_t gzip_once = PTHREAD_ONCE_INIT;

static void gzip_stream_free(void *p)
{
    z_stream *z = p;
    deflateEnd(z);
    free(z);
}

static void gzip_key_make(void)
{
    (void)pthread_key_create(&gzip_key, gzip_stream_free);
}

static z_stream *gzip_stream(void)
{
    pthread_once(&gzip_once, gzip_key_make);
    z_stream *z = pthread_getspecific(gzip_key);
    if (z)
        return deflateReset(z) == Z_OK ? z : NULL;
    z = calloc(1, sizeof *z);
    if (!z)
        return NULL;
    /* level 6: a delta page shrinks 4.8 times (level 1: 4.0) for no CPU the storm bench could
     * tell apart once the stream is reused */
    if (deflateInit2(z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(z);
        return NULL;
    }
    if (pthread_setspecific(gzip_key, z) != 0) {
        gzip_stream_free(z);
        return NULL;
    }
    return z;
}

/* text gzip'd into a malloc'd buffer (*out, *out_len), or false: a delta page or a korcam list
 * is JSON the devices pay for byte by byte on 2G. */
static bool gzip_text(const char *text, size_t len, uint8_t **out, size_t *out_len)
{
    z_stream *z = gzip_stream();
    if (!z)
        return false;
    uLong cap = deflateBound(z, (uLong)len);
    uint8_t *buf = malloc(cap);
    if (!buf)
        return false;
    z->next_in = (Bytef *)(uintptr_t)text;
    z->avail_in = (uInt)len;
    z->next_out = buf;
    z->avail_out = (uInt)cap;
    if (deflate(z, Z_FINISH) != Z_STREAM_END) {
        free(buf);
        return false;
    }
    *out = buf;
    *out_len = (size_t)z->total_out;
    return true;
}

#define GZIP_MIN_BYTES 1024 /* smaller answers go as they are */

static enum MHD_Result send_response(pd_server *srv, srv_conn *c)
{
    srv_resp *r = &c->resp;
    struct MHD_Response *m = NULL;
    int status = r->status ? r->status : 500;
    char sighdr[PD_SIG_BYTES * 2 + 16] = "";

    if (r->json) {
        char *text = cJSON_PrintUnformatted(r->json);
        if (!text)
            return MHD_NO;
        size_t len = strlen(text);
        if (!c->open_route || c->route == R_ENROLL)
            sign_response(srv, status, c->resp_ctx[0] ? c->resp_ctx : "-", (const uint8_t *)text,
                          len, sighdr, sizeof sighdr);
        /* the signature is over the JSON text; gzip is only how it travels (the client's libcurl
         * decodes it before the check) */
        uint8_t *gz = NULL;
        size_t gz_len = 0;
        bool gzipped =
            len >= GZIP_MIN_BYTES && accepts_gzip(c) && gzip_text(text, len, &gz, &gz_len);
        if (gzipped) {
            free(text);
            m = MHD_create_response_from_buffer(gz_len, gz, MHD_RESPMEM_MUST_FREE);
            if (!m) {
                free(gz);
                return MHD_NO;
            }
            MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
            len = gz_len;
        } else {
            m = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
            if (!m) {
                free(text);
                return MHD_NO;
            }
        }
        MHD_add_response_header(m, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
        MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        c->bytes_out = len;
    } else if (r->body || r->fd >= 0) {
        uint64_t len = r->body_len, first = 0, last = len ? len - 1 : 0;
        int rng = 0;
        if (r->ranges && status == 200) {
            const char *ir = MHD_lookup_connection_value(c->con, MHD_HEADER_KIND, "If-Range");
            if (!ir || !strcmp(ir, r->etag))
                rng = parse_range(
                    MHD_lookup_connection_value(c->con, MHD_HEADER_KIND, MHD_HTTP_HEADER_RANGE),
                    len, &first, &last);
        }
        char cr[80];
        if (rng < 0) {
            status = 416;
            snprintf(cr, sizeof cr, "bytes */%llu", (unsigned long long)len);
            m = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            if (m)
                MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
        } else {
            uint64_t n = len ? last - first + 1 : 0;
            if (rng > 0) {
                status = 206;
                snprintf(cr, sizeof cr, "bytes %llu-%llu/%llu", (unsigned long long)first,
                         (unsigned long long)last, (unsigned long long)len);
            }
            if (r->fd >= 0) {
                m = MHD_create_response_from_fd_at_offset64(n, r->fd, first);
                if (m)
                    r->fd = -1; /* MHD closes it */
            } else {
                m = MHD_create_response_from_buffer(n, r->body + first, MHD_RESPMEM_MUST_COPY);
            }
            if (m && rng > 0)
                MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_RANGE, cr);
            c->bytes_out = n;
        }
        if (m) {
            MHD_add_response_header(m, MHD_HTTP_HEADER_CONTENT_TYPE,
                                    r->content_type ? r->content_type : "application/octet-stream");
            if (r->ranges)
                MHD_add_response_header(m, MHD_HTTP_HEADER_ACCEPT_RANGES, "bytes");
            if (r->etag[0])
                MHD_add_response_header(m, MHD_HTTP_HEADER_ETAG, r->etag);
        }
    } else {
        m = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    if (!m)
        return MHD_NO;
    for (int i = 0; i < r->nh; i++)
        MHD_add_response_header(m, r->h[i].name, r->h[i].value);
    if (sighdr[0])
        MHD_add_response_header(m, "Pd-Server-Signature", sighdr);
    if (c->tus && strcmp(c->method, "OPTIONS") != 0)
        MHD_add_response_header(m, "Tus-Resumable", "1.0.0");
    c->status = status;
    enum MHD_Result ok = MHD_queue_response(c->con, (unsigned)status, m);
    MHD_destroy_response(m);
    return ok;
}

/* ---- libmicrohttpd callbacks ---------------------------------------------------------------- */

/* Milliseconds since t0 (CLOCK_MONOTONIC). */
static double ms_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* One line of the access log (the caller checked there is one); tail is appended as it is. */
static void access_line(pd_server *srv, const char *device, const char *method, const char *path,
                        int status, uint64_t in, uint64_t out, double ms, const char *tail)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char ts[40];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    pthread_mutex_lock(&srv->log_lock);
    fprintf(srv->cfg.access_log,
            "time=%s.%03ldZ device=%s method=%s path=%s status=%d in=%llu out=%llu ms=%.1f%s\n", ts,
            now.tv_nsec / 1000000, device, method, path, status, (unsigned long long)in,
            (unsigned long long)out, ms, tail);
    fflush(srv->cfg.access_log);
    pthread_mutex_unlock(&srv->log_lock);
}

/* A connection as libmicrohttpd tells of it (MHD_OPTION_NOTIFY_CONNECTION): how many requests
 * reached on_uri. One that closes with none (bytes that are not HTTP, a request line too long
 * for its memory, a client that connected and said nothing) gets a line of its own. */
typedef struct conn_note {
    struct timespec t0;
    unsigned requests;
} conn_note;

static void on_connection(void *cls, struct MHD_Connection *con, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)con;
    pd_server *srv = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        conn_note *n = calloc(1, sizeof *n);
        if (n)
            clock_gettime(CLOCK_MONOTONIC, &n->t0);
        *socket_context = n;
        return;
    }
    conn_note *n = *socket_context;
    if (n && n->requests == 0 && srv->cfg.access_log)
        access_line(srv, "-", "-", "-", 0, 0, 0, ms_since(&n->t0), " closed=before_request");
    free(n);
    *socket_context = NULL;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *con)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (ci && ci->socket_context)
        ((conn_note *)ci->socket_context)->requests++;
    srv_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = cls;
    c->resp.fd = -1;
    c->target = strdup(uri ? uri : "");
    clock_gettime(CLOCK_MONOTONIC, &c->t0);
    if (!c->target) {
        free(c);
        return NULL;
    }
    return c;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    pd_server *srv = cls;
    srv_conn *c = *con_cls;
    if (!c)
        return MHD_NO;
    if (!c->started) {
        c->started = true;
        c->con = con;
        c->method = method;
        phase_headers(srv, c, url);
        if (c->answered)
            return send_response(srv, c);
        return MHD_YES;
    }
    if (*upload_data_size) {
        phase_body(c, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    phase_complete(srv, c);
    return send_response(srv, c);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)con;
    pd_server *srv = cls;
    srv_conn *c = *con_cls;
    if (!c)
        return;
    if (c->patch) { /* the connection broke mid-PATCH: nothing of it was acknowledged */
        srv_lock(srv);
        srv_tus_patch_abort(srv, c->patch);
        srv_unlock(srv);
    }
    if (srv->cfg.access_log && c->started)
        access_line(
            srv, c->device.id[0] ? c->device.id : "-", c->method, c->path[0] ? c->path : "-",
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? c->status : 0, c->body_in, c->bytes_out,
            ms_since(&c->t0), toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " aborted=1");
    cJSON_Delete(c->resp.json);
    free(c->resp.body);
    if (c->resp.fd >= 0)
        close(c->resp.fd);
    free(c->body);
    free(c->target);
    sodium_memzero(c->sig, sizeof c->sig);
    free(c);
    *con_cls = NULL;
}

/* The library never prints. libmicrohttpd tells here of an answer it gave itself before any
 * handler of ours saw the request (414 request line too long, 431 headers too large, 400 …):
 * that answer gets its access-log line. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 0)))
#endif
static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    pd_server *srv = cls;
    static const char mark[] = "HTTP response code is ";
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    const char *p = strstr(msg, mark);
    unsigned status;
    if (srv && srv->cfg.access_log && p && sscanf(p + strlen(mark), "%u", &status) == 1)
        access_line(srv, "-", "-", "-", (int)status, 0, 0, 0.0, " by=libmicrohttpd");
}

/* ---- start / stop ---------------------------------------------------------------------------- */

int pd_server_start(pd_server *srv, const pd_server_config *cfg)
{
    if (srv->mhd)
        return srv_fail(srv, PD_ERR_STATE, "the server is already running");
    pd_server_config d = cfg ? *cfg : (pd_server_config){0};
    if (!d.listen)
        d.listen = "127.0.0.1:8080";
    if (!d.threads) {
        /* A request thread waits as often as it computes (the writer's lock on SQLite, fsyncs,
         * the pool on PostgreSQL): four a core, at least 8. 200 syncs at once on 2 cores: p99
         * 0.98-0.99 s with 8 threads, 1.02-1.24 s with 4 (README, Benchmarks). */
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        d.threads = cores > 2 ? (unsigned)(cores > 16 ? 64 : 4 * cores) : 8;
    }
    if (!d.max_connections)
        d.max_connections = 512;
    if (!d.timeout_s)
        d.timeout_s = 60;
    if (!d.max_header_bytes)
        d.max_header_bytes = 16 * 1024;
    if (!d.max_json_bytes)
        d.max_json_bytes = 64 * 1024;
    if (!d.max_upload_bytes)
        d.max_upload_bytes = 64ull << 20;
    if (!d.skew_ms)
        d.skew_ms = 300 * 1000;
    if (!d.upload_ttl_ms)
        d.upload_ttl_ms = 24LL * 3600 * 1000;
    srv->cfg = d;

    char host[64];
    const char *colon = strrchr(d.listen, ':');
    if (!colon || (size_t)(colon - d.listen) >= sizeof host)
        return srv_fail(srv, PD_ERR_INVALID, "listen address '%s' must be HOST:PORT", d.listen);
    memcpy(host, d.listen, (size_t)(colon - d.listen));
    host[colon - d.listen] = '\0';
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || port > 65535 || colon[1] == '\0')
        return srv_fail(srv, PD_ERR_INVALID, "listen address '%s': bad port", d.listen);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return srv_fail(srv, PD_ERR_INVALID, "listen address '%s': '%s' is not an IPv4 address",
                        d.listen, host);

    /* one reader for each request thread (SQLite; nothing for PostgreSQL's pool) */
    if (srv_readers_open(srv, (int)d.threads) != PD_OK)
        return srv_err(srv)->code;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    /* The logger first: an option before it that fails is reported by MHD's own logger, on
     * stderr. A connection's memory pool holds its request line and headers (whose parsed
     * entries come from the same pool) and then its answer's headers: max_header_bytes plus
     * room for those, so a request line that does not fit is answered 414 and headers 431 by
     * libmicrohttpd, and each of max_connections costs about this much. */
    srv->mhd = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log,
        srv, MHD_OPTION_SOCK_ADDR, &addr, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)d.threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)d.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)d.timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(d.max_header_bytes + 4 * 1024), MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        srv, MHD_OPTION_END);
    if (!srv->mhd) {
        srv_readers_close(srv);
        return srv_fail(srv, PD_ERR_IO, "cannot listen on %s (address in use, or not allowed)",
                        d.listen);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = info ? info->port : (uint16_t)port;
    return PD_OK;
}

uint16_t pd_server_port(const pd_server *srv)
{
    return srv ? srv->port : 0;
}

void pd_server_stop(pd_server *srv)
{
    if (!srv || !srv->mhd)
        return;
    MHD_stop_daemon(srv->mhd);
    srv->mhd = NULL;
    srv_readers_close(srv);
}
