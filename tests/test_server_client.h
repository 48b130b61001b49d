/*
 * test_server_client.h — what the server tests share: a real server in a temporary directory
 * (database, keys, a generated prelist, users), started in-process on a loopback port 0, and a
 * small libcurl client that signs requests exactly as server/PROTOCOL.md §4 says (with knobs to
 * get them wrong on purpose). Header-only (static functions): each tests/test_server*.c is its own
 * program.
 *
 * The fixture's people: supervisor S1 (area 32.73.01), enumerators E1 and E2 (32.73.01.1001, both
 * supervised by S1), E3 (32.73.02, supervised by S1), korcam K1 (32.73.01). The prelist: 40
 * generated households in desa 32.73.01.1001.
 *
 * The database is SQLite in the temporary directory, or with PD_TEST_DB_URL=postgres://… a fresh
 * database on that cluster (test_db.h), dropped by ts_stop. The data directory
 * is DIR/server.db.d either way; open the server again with pd_server_open(url, data_dir).
 */
#ifndef PD_TEST_SERVER_CLIENT_H
#define PD_TEST_SERVER_CLIENT_H

#include "pd_server.h"
#include "pd_sync.h"
#include "storage.h"
#include "test_db.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TS_DESA "32.73.01.1001"

/* REQUIRE for test functions that return nothing: count a failure and leave the function. */
#define REQUIRE_V(cond)                                                                            \
    do {                                                                                           \
        pd_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);             \
            pd_test_failures++;                                                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

typedef struct tdev {
    char id[33];
    uint8_t pk[32], sk[64];   /* device key: signs requests */
    uint8_t upk[32], usk[64]; /* person key: signs batches or reviews */
    uint8_t last_hash[32];    /* the last batch it sealed */
    uint64_t seq;
} tdev;

typedef struct tresp {
    long status;
    char *body;
    size_t len;
    char headers[16384];
    size_t hlen;
} tresp;

typedef struct tsrv {
    char *dir;
    char url[4300];      /* sqlite:DIR/server.db, or a fresh PostgreSQL database (PD_TEST_DB_URL) */
    char db_path[4200];  /* DIR/server.db (the file only exists on SQLite) */
    char data_dir[4200]; /* DIR/server.db.d on either backend: keys (PostgreSQL), uploads, blobs */
    pd_server *srv;
    uint16_t port;
    uint8_t sign_pk[32];
    FILE *log;
    char log_path[4200];
} tsrv;

/* Request knobs: what to get wrong. */
typedef struct topt {
    long time_offset;        /* seconds added to the signed time */
    const char *nonce_hex;   /* a fixed nonce (32 hex) */
    bool bad_sig;            /* flip a bit of the signature */
    bool no_auth;            /* send no Pd-Auth at all */
    const char *sign_target; /* sign this target instead of the one sent */
    bool expect;             /* let libcurl send "Expect: 100-continue" as it likes */
} topt;

/* Households of an area with their revisions, collected by ts_household_row through a storage
 * listing (ops->area_records(st, areas, ts_household_row, &list)). */
typedef struct ts_household {
    char id[64];
    int64_t rev;
} ts_household;

typedef struct ts_households {
    ts_household h[40];
    size_t n;
} ts_households;

static inline int ts_household_row(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    ts_households *l = ctx;
    if (e != PD_ENT_HOUSEHOLD || l->n >= sizeof l->h / sizeof l->h[0])
        return 0;
    ts_household *h = &l->h[l->n++];
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(f[i].name, "id"))
            snprintf(h->id, sizeof h->id, "%.*s", (int)f[i].value.len, (const char *)f[i].value.p);
        else if (!strcmp(f[i].name, "rev"))
            h->rev = f[i].value.i;
    }
    return 0;
}

static inline void tdev_init(tdev *d, const char *id)
{
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", id);
    crypto_sign_keypair(d->pk, d->sk);
    crypto_sign_keypair(d->upk, d->usk);
}

static inline void tresp_free(tresp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static inline size_t ts_body_cb(char *p, size_t sz, size_t n, void *ud)
{
    tresp *r = ud;
    size_t len = sz * n;
    char *nb = realloc(r->body, r->len + len + 1);
    if (!nb)
        return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, len);
    r->len += len;
    r->body[r->len] = '\0';
    return len;
}

static inline size_t ts_header_cb(char *p, size_t sz, size_t n, void *ud)
{
    tresp *r = ud;
    size_t len = sz * n;
    if (r->hlen + len < sizeof r->headers) {
        memcpy(r->headers + r->hlen, p, len);
        r->hlen += len;
        r->headers[r->hlen] = '\0';
    }
    return len;
}

/* A response header's value (the last one of that name), into a buffer of the calling thread
 * (benches call this from many threads at once); NULL if absent. */
static inline const char *tresp_header(const tresp *r, const char *name)
{
    static _Thread_local char val[1024];
    const char *found = NULL;
    size_t nl = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ')
                v++;
            size_t vl = strcspn(v, "\r\n");
            if (vl >= sizeof val)
                vl = sizeof val - 1;
            memcpy(val, v, vl);
            val[vl] = '\0';
            found = val;
        }
        const char *nlp = strchr(p, '\n');
        p = nlp ? nlp + 1 : NULL;
    }
    return found;
}

/* The JSON "error" member of a response, or "". */
static inline const char *tresp_error(const tresp *r)
{
    static _Thread_local char code[64];
    code[0] = '\0';
    cJSON *o = r->body ? cJSON_Parse(r->body) : NULL;
    const cJSON *e = o ? cJSON_GetObjectItemCaseSensitive(o, "error") : NULL;
    if (cJSON_IsString(e))
        snprintf(code, sizeof code, "%s", e->valuestring);
    cJSON_Delete(o);
    return code;
}

/* Does the response carry a valid Pd-Server-Signature for context (nonce hex or "-")? */
static inline bool tresp_signed(const tresp *r, const uint8_t server_pk[32], const char *context)
{
    const char *h = tresp_header(r, "Pd-Server-Signature");
    uint8_t sig[64], bh[32];
    if (!h || strncmp(h, "PD1 sig=", 8) != 0 ||
        sodium_hex2bin(sig, sizeof sig, h + 8, strlen(h + 8), NULL, NULL, NULL) != 0)
        return false;
    crypto_generichash(bh, sizeof bh, (const uint8_t *)(r->body ? r->body : ""), r->len, NULL, 0);
    char hex[65], line[256];
    sodium_bin2hex(hex, sizeof hex, bh, sizeof bh);
    int n = snprintf(line, sizeof line, "PD1-RESP\n%ld\n%s\n%s", r->status, context, hex);
    return crypto_sign_verify_detached(sig, (const uint8_t *)line, (size_t)n, server_pk) == 0;
}

/* The Pd-Auth header line for a request (PROTOCOL.md §4), into out. */
static inline void ts_auth_header(const tdev *dev, const char *method, const char *target,
                                  const void *body, size_t len, char *out, size_t cap)
{
    uint8_t nonce[16], bh[32], sig[64];
    char nonce_hex[33], bh_hex[65], sig_hex[129], msg[1024];
    randombytes_buf(nonce, sizeof nonce);
    sodium_bin2hex(nonce_hex, sizeof nonce_hex, nonce, sizeof nonce);
    crypto_generichash(bh, sizeof bh, body ? body : (const void *)"", body ? len : 0, NULL, 0);
    sodium_bin2hex(bh_hex, sizeof bh_hex, bh, sizeof bh);
    long t = (long)time(NULL);
    int n = snprintf(msg, sizeof msg, "PD1\n%s\n%s\n%s\n%ld\n%s\n%s", dev->id, method, target, t,
                     nonce_hex, bh_hex);
    crypto_sign_detached(sig, NULL, (const uint8_t *)msg, (size_t)n, dev->sk);
    sodium_bin2hex(sig_hex, sizeof sig_hex, sig, sizeof sig);
    snprintf(out, cap, "Pd-Auth: PD1 device=%s,time=%ld,nonce=%s,sig=%s", dev->id, t, nonce_hex,
             sig_hex);
}

/* Keep-alive (benches): each thread keeps one curl handle, and with it its connection, from one
 * request to the next, as the real client does within a sync; ts_thread_done() frees it. Off
 * by default: a test's requests each get a fresh connection. */
static bool ts_keepalive;
static _Thread_local CURL *ts_thread_curl;

static inline void ts_thread_done(void)
{
    curl_easy_cleanup(ts_thread_curl);
    ts_thread_curl = NULL;
}

/* One HTTP request to the fixture's server. dev NULL: unauthenticated. headers: NULL-terminated
 * extra header lines. nonce_out (33 bytes, may be NULL) gets the nonce used. */
static inline void ts_request_ex(const tsrv *s, const tdev *dev, const char *method,
                                 const char *target, const char *const *headers, const void *body,
                                 size_t len, const topt *o, tresp *out, char *nonce_out)
{
    topt none = {0};
    if (!o)
        o = &none;
    memset(out, 0, sizeof *out);
    CURL *c = ts_keepalive ? ts_thread_curl : NULL;
    if (c)
        curl_easy_reset(c);
    else
        c = curl_easy_init();
    if (!c) {
        out->status = -1;
        return;
    }
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)s->port, target);
    struct curl_slist *hl = curl_slist_append(NULL, o->expect ? "Expect: 100-continue" : "Expect:");
    for (const char *const *h = headers; h && *h; h++)
        hl = curl_slist_append(hl, *h);
    if (dev && !o->no_auth) {
        uint8_t nonce[16], bh[32], sig[64];
        char nonce_hex[33], bh_hex[65], sig_hex[129];
        if (o->nonce_hex)
            snprintf(nonce_hex, sizeof nonce_hex, "%s", o->nonce_hex);
        else {
            randombytes_buf(nonce, sizeof nonce);
            sodium_bin2hex(nonce_hex, sizeof nonce_hex, nonce, sizeof nonce);
        }
        if (nonce_out)
            memcpy(nonce_out, nonce_hex, 33);
        crypto_generichash(bh, sizeof bh, body ? body : (const void *)"", body ? len : 0, NULL, 0);
        sodium_bin2hex(bh_hex, sizeof bh_hex, bh, sizeof bh);
        long t = (long)time(NULL) + o->time_offset;
        char msg[1024];
        int n = snprintf(msg, sizeof msg, "PD1\n%s\n%s\n%s\n%ld\n%s\n%s", dev->id, method,
                         o->sign_target ? o->sign_target : target, t, nonce_hex, bh_hex);
        crypto_sign_detached(sig, NULL, (const uint8_t *)msg, (size_t)n, dev->sk);
        if (o->bad_sig)
            sig[5] ^= 0x10;
        sodium_bin2hex(sig_hex, sizeof sig_hex, sig, sizeof sig);
        char auth[512];
        snprintf(auth, sizeof auth, "Pd-Auth: PD1 device=%s,time=%ld,nonce=%s,sig=%s", dev->id, t,
                 nonce_hex, sig_hex);
        hl = curl_slist_append(hl, auth);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ts_body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, ts_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (!strcmp(method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(method, "GET")) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        if (body || !strcmp(method, "POST") || !strcmp(method, "PATCH")) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : (const void *)"");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? len : 0));
        }
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    else
        out->status = -1;
    curl_slist_free_all(hl);
    if (ts_keepalive)
        ts_thread_curl = c; /* its connection stays open for the thread's next request */
    else
        curl_easy_cleanup(c);
}

static inline void ts_request(const tsrv *s, const tdev *dev, const char *method,
                              const char *target, const char *const *headers, const void *body,
                              size_t len, tresp *out)
{
    ts_request_ex(s, dev, method, target, headers, body, len, NULL, out, NULL);
}

/* Start the fixture (see the top of this file). access_log: also log requests to a file. */
static inline bool ts_start(tsrv *s, const char *tag, bool access_log)
{
    memset(s, 0, sizeof *s);
    s->dir = pd_test_tmpdir(tag);
    snprintf(s->db_path, sizeof s->db_path, "%s/server.db", s->dir);
    snprintf(s->data_dir, sizeof s->data_dir, "%s/server.db.d", s->dir);
    if (td_make(s->url, sizeof s->url, s->dir, "pool=4") != 0)
        return false;
    pd_error err = {0};
    if (pd_server_create(s->url, s->data_dir, &err) != PD_OK ||
        pd_server_open(&s->srv, s->url, s->data_dir, &err) != PD_OK) {
        fprintf(stderr, "server: %s\n", err.msg);
        return false;
    }
    pd_server_public_keys(s->srv, s->sign_pk, NULL);
    pd_server_load_stats st;
    if (pd_server_load_generated(s->srv, TS_DESA, 42, 40, &st) != PD_OK) {
        fprintf(stderr, "load: %s\n", pd_server_errmsg(s->srv));
        return false;
    }
    const pd_server_user users[] = {
        {.id = "S1", .role = "supervisor", .name = "Budi Santoso", .area = "32.73.01"},
        {.id = "E1",
         .role = "enumerator",
         .name = "Dewi Lestari",
         .area = TS_DESA,
         .supervisor_id = "S1"},
        {.id = "E2",
         .role = "enumerator",
         .name = "Agus Salim",
         .area = TS_DESA,
         .supervisor_id = "S1"},
        {.id = "E3",
         .role = "enumerator",
         .name = "Rina",
         .area = "32.73.02",
         .supervisor_id = "S1"},
        {.id = "K1", .role = "korcam", .name = "Hendra", .area = "32.73.01"},
    };
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
        if (pd_server_user_add(s->srv, &users[i]) != PD_OK) {
            fprintf(stderr, "user: %s\n", pd_server_errmsg(s->srv));
            return false;
        }
    if (access_log) {
        snprintf(s->log_path, sizeof s->log_path, "%s/access.log", s->dir);
        s->log = fopen(s->log_path, "w");
    }
    pd_server_config cfg = {
        .listen = "127.0.0.1:0", .threads = 2, .access_log = s->log, .max_upload_bytes = 1 << 20};
    if (pd_server_start(s->srv, &cfg) != PD_OK) {
        fprintf(stderr, "start: %s\n", pd_server_errmsg(s->srv));
        return false;
    }
    s->port = pd_server_port(s->srv);
    return s->port != 0;
}

static inline void ts_stop(tsrv *s)
{
    pd_server_close(s->srv);
    s->srv = NULL;
    if (s->log)
        fclose(s->log);
    s->log = NULL;
    td_drop(s->url);
    pd_test_rmtree(s->dir);
    free(s->dir);
    s->dir = NULL;
}

/* Enrol dev as user: a fresh code, POST /v1/enroll. Returns the HTTP status. */
static inline long ts_enroll(tsrv *s, tdev *dev, const char *user)
{
    char code[PD_ENROLL_CODE_LEN + 1];
    if (pd_server_enroll_code(s->srv, user, 0, code) != PD_OK)
        return -1;
    char pk[65], upk[65], body[512];
    sodium_bin2hex(pk, sizeof pk, dev->pk, 32);
    sodium_bin2hex(upk, sizeof upk, dev->upk, 32);
    snprintf(body, sizeof body,
             "{\"code\":\"%s\",\"device_id\":\"%s\",\"device_pk\":\"%s\",\"user_pk\":\"%s\"}", code,
             dev->id, pk, upk);
    tresp r;
    ts_request(s, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    long st = r.status;
    tresp_free(&r);
    return st;
}

/* ---- batches ------------------------------------------------------------------------------- */

/* Seal ops into the next batch of dev (its chain advances). *out malloc'd. */
static inline int tb_seal(tdev *dev, const char *area, pd_op *ops, size_t n, uint8_t **out,
                          size_t *len)
{
    for (size_t i = 0; i < n; i++) {
        ops[i].device_id = dev->id;
        if (!ops[i].seq)
            ops[i].seq = (int64_t)(dev->seq * 1000 + i + 1);
        if (!ops[i].hlc)
            ops[i].hlc = ((int64_t)time(NULL) * 1000) << 16 | (int64_t)i;
    }
    pd_batch_params p = {.device_id = dev->id,
                         .area = area,
                         .seq = dev->seq + 1,
                         .prev_hash = dev->seq ? dev->last_hash : NULL,
                         .created_at = (int64_t)time(NULL) * 1000};
    pd_error err = {0};
    int rc = pd_batch_build(out, len, &p, ops, n, NULL, 0, dev->usk, &err);
    if (rc != PD_OK) {
        fprintf(stderr, "seal: %s\n", err.msg);
        return rc;
    }
    pd_batch_header h;
    rc = pd_batch_peek(&h, dev->last_hash, *out, *len, &err);
    dev->seq++;
    return rc;
}

/* Add a batch and its review by sup (approve, or return with reason) to a bundle. */
static inline int tb_add(pd_bundle *b, const uint8_t *batch, size_t len, const tdev *sup,
                         const char *return_reason)
{
    pd_batch_header h;
    uint8_t hash[32];
    pd_error err = {0};
    int rc = pd_batch_peek(&h, hash, batch, len, &err);
    if (rc != PD_OK)
        return rc;
    pd_review rv;
    rc = pd_review_make(&rv, return_reason ? PD_REVIEW_RETURN : PD_REVIEW_APPROVE, hash,
                        return_reason, sup->usk, &err);
    if (rc != PD_OK)
        return rc;
    uint8_t rec[PD_REVIEW_MAX_BYTES];
    size_t rl;
    if ((rc = pd_review_encode(&rv, rec, sizeof rec, &rl)) != PD_OK)
        return rc;
    if ((rc = pd_bundle_add(b, PD_BUNDLE_BATCH, batch, len)) != PD_OK)
        return rc;
    return pd_bundle_add(b, PD_BUNDLE_REVIEW, rec, rl);
}

/* Upload bytes with tus as dev (kind "bundle" or "photo"; photo_hash for photos). Returns the
 * final PATCH status; id (33 bytes) gets the upload id. */
static inline long ts_upload(const tsrv *s, const tdev *dev, const char *kind,
                             const char *photo_hash, const uint8_t *bytes, size_t len, char *id)
{
    char hl[64], md[256], k64[32], h64[128];
    sodium_bin2base64(k64, sizeof k64, (const uint8_t *)kind, strlen(kind),
                      sodium_base64_VARIANT_ORIGINAL);
    if (photo_hash) {
        sodium_bin2base64(h64, sizeof h64, (const uint8_t *)photo_hash, strlen(photo_hash),
                          sodium_base64_VARIANT_ORIGINAL);
        snprintf(md, sizeof md, "Upload-Metadata: kind %s,hash %s", k64, h64);
    } else {
        snprintf(md, sizeof md, "Upload-Metadata: kind %s", k64);
    }
    snprintf(hl, sizeof hl, "Upload-Length: %zu", len);
    const char *create[] = {"Tus-Resumable: 1.0.0", hl, md, NULL};
    tresp r;
    ts_request(s, dev, "POST", "/v1/uploads", create, NULL, 0, &r);
    const char *loc = tresp_header(&r, "Location");
    long st = r.status;
    if (st != 201 || !loc || strlen(loc) != 12 + 32) {
        tresp_free(&r);
        return st == 201 ? -2 : st;
    }
    snprintf(id, 33, "%s", loc + 12);
    const char *done = tresp_header(&r, "Pd-Complete");
    bool complete = done && !strcmp(done, "1");
    tresp_free(&r);
    if (complete)
        return 204;
    char path[80];
    snprintf(path, sizeof path, "/v1/uploads/%s", id);
    const char *patch[] = {"Tus-Resumable: 1.0.0", "Upload-Offset: 0",
                           "Content-Type: application/offset+octet-stream", NULL};
    ts_request(s, dev, "PATCH", path, patch, bytes, len, &r);
    st = r.status;
    tresp_free(&r);
    return st;
}

/* Upload a bundle and commit it: the commit's parsed JSON (cJSON_Delete it), or NULL. */
static inline cJSON *ts_sync(const tsrv *s, const tdev *dev, pd_bundle *b, long *status)
{
    size_t len;
    const uint8_t *bytes = pd_bundle_bytes(b, &len);
    char id[33] = "";
    long st = ts_upload(s, dev, "bundle", NULL, bytes, len, id);
    if (status)
        *status = st;
    if (st != 204)
        return NULL;
    char body[80];
    snprintf(body, sizeof body, "{\"upload\":\"%s\"}", id);
    tresp r;
    ts_request(s, dev, "POST", "/v1/batches/commit", NULL, body, strlen(body), &r);
    if (status)
        *status = r.status;
    cJSON *o = r.status == 200 ? cJSON_Parse(r.body) : NULL;
    tresp_free(&r);
    return o;
}

/* Upload a bundle as pd_sync_run does: one tus creation POST carrying it (creation-with-upload),
 * whose 201 carries the commit's answer. The answer's parsed JSON (cJSON_Delete it), or NULL;
 * *status the HTTP status, id (33 bytes, may be NULL) the upload id. */
static inline cJSON *ts_post_bundle(const tsrv *s, const tdev *dev, const uint8_t *bytes,
                                    size_t len, long *status, char *id)
{
    char hl[64], md[128], k64[32];
    sodium_bin2base64(k64, sizeof k64, (const uint8_t *)"bundle", 6,
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(md, sizeof md, "Upload-Metadata: kind %s", k64);
    snprintf(hl, sizeof hl, "Upload-Length: %zu", len);
    const char *h[] = {"Tus-Resumable: 1.0.0", hl, md,
                       "Content-Type: application/offset+octet-stream", NULL};
    tresp r;
    ts_request(s, dev, "POST", "/v1/uploads", h, bytes, len, &r);
    const char *loc = tresp_header(&r, "Location");
    if (id) {
        id[0] = '\0';
        if (loc && strlen(loc) == 12 + 32)
            snprintf(id, 33, "%s", loc + 12);
    }
    if (status)
        *status = r.status;
    cJSON *o = r.status == 201 && r.body ? cJSON_Parse(r.body) : NULL;
    tresp_free(&r);
    return o;
}

/* results[i] of a commit answer. */
static inline const cJSON *ts_result(const cJSON *commit, int i)
{
    return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(commit, "results"), i);
}

static inline const char *ts_str(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(it) ? it->valuestring : "";
}

static inline double ts_num(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(it) ? it->valuedouble : -1;
}

#endif
