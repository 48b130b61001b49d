/*
 * tus.c — resumable uploads, tus 1.0.0 core + creation, checksum, termination and expiration
 * (PROTOCOL.md §5), at /v1/uploads.
 *
 * An upload's bytes are a file <data dir>/uploads/<id>; the storage row holds its length and the
 * acknowledged offset `acked`. A PATCH writes at `acked`, and only after the whole request has
 * arrived, its signature verified and its checksum (if given) matched, are the bytes fsync'd and
 * the new offset committed — then answered. A server killed at any moment therefore restarts
 * with `acked` = the last offset it acknowledged; bytes past it in the file (received, never
 * acknowledged) are cut off by the next PATCH before it writes.
 *
 * A complete photo is checked against the BLAKE2b-256 it was announced with and moved into the
 * content-addressed blob store (<data dir>/blobs/<2 hex>/<hash hex>); a photo the server already
 * holds is complete at creation. A complete bundle is verified and applied (apply.c) before the
 * PATCH that completed it is answered.
 *
 * The file is created by the first PATCH that has bytes to keep, not by the POST. A bundle that
 * arrives whole in one PATCH (offset 0, Content-Length = Upload-Length, at most SRV_TUS_MEM_MAX:
 * a sync's usual case) never touches the disk as bytes: it is held in memory, applied, and its
 * offset and state become (Upload-Length, processed) in one step after the batches' commits.
 * Nothing is acknowledged before that, so a crash anywhere leaves the upload at offset 0 and the
 * client sends the bundle again, which exactly-once answers with the same receipts. (Creating,
 * writing, syncing and reading back a file for each small bundle was a quarter of the server's
 * time under a storm of syncs.)
 */
#include "srv_internal.h"

#include "sha1.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PHOTO_MAX_BYTES (16LL << 20)
/* What one device may hold unfinished at once by default (PROTOCOL.md §5; pd_server_config
 * max_open_uploads, max_open_bytes): a device sends its uploads one at a time, and a few
 * abandoned ones wait for their expiry; past these an enrolled device could fill the disk with
 * uploads it never finishes. Bytes are the declared lengths of its open uploads, by default a
 * multiple of Tus-Max-Size so that one upload of the largest size always fits. */
#define DEVICE_OPEN_UPLOADS_MAX 16
#define DEVICE_OPEN_BYTES_FACTOR 4
#define OFFSET_TYPE "application/offset+octet-stream"

enum { ALG_NONE = 0, ALG_SHA1, ALG_SHA256, ALG_SHA512 };
_Static_assert(SRV_TUS_DIGEST_MAX == crypto_hash_sha512_BYTES, "the largest digest");

struct srv_patch {
    char id[PD_SRV_UPLOAD_ID_LEN + 1];
    int fd;       /* the upload's file, or -1 when mem holds the bytes */
    uint8_t *mem; /* a whole bundle in one PATCH (SRV_TUS_MEM_MAX) */
    int64_t start, length;
    uint64_t written;
    bool overflow, io_error;
    int alg;
    uint8_t expect[SRV_TUS_DIGEST_MAX];
    pd_sha1 sha1;
    crypto_hash_sha256_state sha256;
    crypto_hash_sha512_state sha512;
    uint64_t synced; /* of `written`, the bytes srv_tus_patch_sync has fsync'd */
};

/* The uploads a PATCH of this process is writing. Requests run in parallel (PostgreSQL), so the
 * list has its own lock; taking an id checks and adds at once. */
static bool busy_has_locked(const pd_server *srv, const char *id)
{
    for (const srv_busy *b = srv->busy; b; b = b->next)
        if (!strcmp(b->id, id))
            return true;
    return false;
}

static bool busy_has(pd_server *srv, const char *id)
{
    pthread_mutex_lock(&srv->state_lock);
    bool has = busy_has_locked(srv, id);
    pthread_mutex_unlock(&srv->state_lock);
    return has;
}

/* Mark id busy; false if it already was (or out of memory). */
static bool busy_take(pd_server *srv, const char *id)
{
    srv_busy *b = calloc(1, sizeof *b);
    if (!b)
        return false;
    snprintf(b->id, sizeof b->id, "%s", id);
    pthread_mutex_lock(&srv->state_lock);
    bool taken = !busy_has_locked(srv, id);
    if (taken) {
        b->next = srv->busy;
        srv->busy = b;
    }
    pthread_mutex_unlock(&srv->state_lock);
    if (!taken)
        free(b);
    return taken;
}

static void busy_remove(pd_server *srv, const char *id)
{
    pthread_mutex_lock(&srv->state_lock);
    for (srv_busy **pp = &srv->busy; *pp; pp = &(*pp)->next) {
        if (!strcmp((*pp)->id, id)) {
            srv_busy *b = *pp;
            *pp = b->next;
            free(b);
            break;
        }
    }
    pthread_mutex_unlock(&srv->state_lock);
}

/* Content-Type: application/offset+octet-stream (parameters allowed) */
static bool offset_type(const srv_req *q)
{
    const char *ct = q->header(q->hctx, "Content-Type");
    size_t n = strlen(OFFSET_TYPE);
    return ct && strncmp(ct, OFFSET_TYPE, n) == 0 && (ct[n] == '\0' || ct[n] == ';');
}

static void expires_header(srv_resp *r, int64_t at)
{
    char d[40];
    srv_http_date(at, d);
    srv_resp_header(r, "Upload-Expires", "%s", d);
}

bool srv_tus_parse_u64(const char *v, int64_t *out)
{
    if (!v || !*v || strlen(v) > 18 || strspn(v, "0123456789") != strlen(v))
        return false;
    *out = (int64_t)strtoll(v, NULL, 10);
    return true;
}

/* Parse a non-negative decimal header value; false if absent or malformed. */
static bool header_u64(const srv_req *q, const char *name, int64_t *out)
{
    return srv_tus_parse_u64(q->header(q->hctx, name), out);
}

bool srv_tus_metadata_get(const char *md, const char *key, char *out, size_t cap)
{
    if (!md)
        return false;
    size_t kl = strlen(key);
    const char *p = md;
    while (*p) {
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, ",");
        if (n >= kl && !strncmp(p, key, kl) && (n == kl || p[kl] == ' ')) {
            const char *v = p + kl;
            size_t vl = n - kl;
            while (vl && *v == ' ') {
                v++;
                vl--;
            }
            size_t len = 0;
            if (vl == 0) {
                out[0] = '\0';
                return true;
            }
            if (sodium_base642bin((unsigned char *)out, cap - 1, v, vl, NULL, &len, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) != 0 &&
                sodium_base642bin((unsigned char *)out, cap - 1, v, vl, NULL, &len, NULL,
                                  sodium_base64_VARIANT_ORIGINAL_NO_PADDING) != 0)
                return false;
            out[len] = '\0';
            return strlen(out) == len;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

static char *upload_file(const pd_server *srv, const char *id)
{
    return srv_path(srv, "uploads", id);
}

static char *blob_file(const pd_server *srv, const uint8_t hash[PD_HASH_BYTES], bool mkdir_too)
{
    char hex[2 * PD_HASH_BYTES + 1], sub[16];
    srv_hex(hash, PD_HASH_BYTES, hex);
    snprintf(sub, sizeof sub, "blobs/%.2s", hex);
    if (mkdir_too) {
        char *dir = srv_path(srv, sub, NULL);
        if (dir)
            mkdir(dir, 0700);
        free(dir);
    }
    return srv_path(srv, sub, hex);
}

/* Load an upload of this device; fills r and returns false if it is not there for it. */
static bool load_upload(pd_server *srv, const srv_req *q, const char *id, pd_srv_upload *u,
                        srv_resp *r)
{
    int rc = srv_store(srv)->ops->upload_get(srv_store(srv), id, u);
    if (rc == PD_ERR_NOTFOUND || (rc == PD_OK && strcmp(u->device_id, q->device->id) != 0)) {
        srv_resp_error(r, 404, "not_found", "no upload %s", id);
        return false;
    }
    if (rc != PD_OK) {
        srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
        return false;
    }
    if (!strcmp(u->state, "terminated") || !strcmp(u->state, "failed")) {
        srv_resp_error(r, 410, "gone", "upload %s was %s", id, u->state);
        return false;
    }
    if (!strcmp(u->state, "open") && u->expires_at < srv_now_ms()) {
        srv_tus_expire(srv, srv_now_ms());
        srv_resp_error(r, 410, "gone", "upload %s has expired", id);
        return false;
    }
    return true;
}

typedef struct id_list {
    char (*ids)[PD_SRV_UPLOAD_ID_LEN + 1];
    size_t n, cap;
} id_list;

static int collect(void *ctx, const char *id)
{
    id_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *nv = realloc(l->ids, cap * sizeof *l->ids);
        if (!nv)
            return PD_ERR_NOMEM;
        l->ids = nv;
        l->cap = cap;
    }
    snprintf(l->ids[l->n++], PD_SRV_UPLOAD_ID_LEN + 1, "%s", id);
    return 0;
}

/* Would a new upload of length bytes keep the device within its caps? false with r answered
 * (429 upload_quota, Retry-After when its first open upload expires, or 503). */
static bool within_quota(pd_server *srv, const srv_req *q, int64_t length, int64_t now, srv_resp *r)
{
    int64_t count, bytes, first_expiry;
    if (srv_store(srv)->ops->uploads_open_of(srv_store(srv), q->device->id, now, &count, &bytes,
                                             &first_expiry) != PD_OK) {
        srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
        return false;
    }
    int64_t max_count =
        srv->cfg.max_open_uploads ? srv->cfg.max_open_uploads : DEVICE_OPEN_UPLOADS_MAX;
    uint64_t cap = srv->cfg.max_open_bytes ? srv->cfg.max_open_bytes
                   : srv->cfg.max_upload_bytes > UINT64_MAX / DEVICE_OPEN_BYTES_FACTOR
                       ? UINT64_MAX
                       : srv->cfg.max_upload_bytes * DEVICE_OPEN_BYTES_FACTOR;
    int64_t max_bytes = cap > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)cap;
    if (count + 1 <= max_count && bytes + length <= max_bytes)
        return true;
    if (count + 1 > max_count)
        srv_resp_error(r, 429, "upload_quota",
                       "this device has %lld unfinished uploads, the most it may have: finish "
                       "or DELETE one, or wait for one to expire",
                       (long long)count);
    else
        srv_resp_error(r, 429, "upload_quota",
                       "this device's unfinished uploads hold %lld bytes; %lld more would pass "
                       "its %lld: finish or DELETE one, or wait for one to expire",
                       (long long)bytes, (long long)length, (long long)max_bytes);
    int64_t wait_s = (first_expiry - now + 999) / 1000;
    srv_resp_header(r, "Retry-After", "%lld", (long long)(wait_s > 0 ? wait_s : 1));
    return false;
}

/* ---- OPTIONS, POST, HEAD, DELETE ------------------------------------------------------------ */

int srv_tus_options(pd_server *srv, const srv_req *q, srv_resp *r)
{
    (void)q;
    r->status = 204;
    srv_resp_header(r, "Tus-Version", "1.0.0");
    srv_resp_header(r, "Tus-Extension",
                    "creation,creation-with-upload,checksum,termination,expiration");
    srv_resp_header(r, "Tus-Max-Size", "%llu", (unsigned long long)srv->cfg.max_upload_bytes);
    srv_resp_header(r, "Tus-Checksum-Algorithm", "sha1,sha256,sha512");
    return 204;
}

static int create_with_body(pd_server *srv, const srv_req *q, const pd_srv_upload *u, srv_resp *r);

int srv_tus_create(pd_server *srv, const srv_req *q, srv_resp *r)
{
    if (q->header(q->hctx, "Upload-Defer-Length"))
        return srv_resp_error(r, 400, "bad_request", "Upload-Defer-Length is not supported");
    if (q->body_len && !offset_type(q))
        return srv_resp_error(
            r, 415, "unsupported_media_type",
            "a POST with bytes of the upload must have Content-Type: " OFFSET_TYPE);
    int64_t length;
    if (!header_u64(q, "Upload-Length", &length))
        return srv_resp_error(r, 400, "bad_request", "Upload-Length must be a decimal size");
    if ((uint64_t)length > srv->cfg.max_upload_bytes)
        return srv_resp_error(r, 413, "too_large", "Upload-Length %lld is over Tus-Max-Size %llu",
                              (long long)length, (unsigned long long)srv->cfg.max_upload_bytes);
    const char *md = q->header(q->hctx, "Upload-Metadata");
    char kind[16], hash_hex[80];
    if (!srv_tus_metadata_get(md, "kind", kind, sizeof kind) ||
        (strcmp(kind, "bundle") != 0 && strcmp(kind, "photo") != 0))
        return srv_resp_error(r, 400, "bad_request",
                              "Upload-Metadata must name the kind: 'bundle' or 'photo'");
    pd_srv_upload u = {0};
    int64_t now = srv_now_ms();
    memcpy(u.kind, kind, strlen(kind) + 1); /* "bundle" or "photo" */
    snprintf(u.device_id, sizeof u.device_id, "%s", q->device->id);
    u.length = length;
    u.created_at = now;
    u.expires_at = now + srv->cfg.upload_ttl_ms;
    snprintf(u.state, sizeof u.state, "open");
    if (!strcmp(kind, "photo")) {
        if (!srv_tus_metadata_get(md, "hash", hash_hex, sizeof hash_hex) ||
            !srv_unhex(hash_hex, u.photo_hash, PD_HASH_BYTES))
            return srv_resp_error(r, 400, "bad_request",
                                  "a photo upload needs its hash (64 hex) in Upload-Metadata");
        if (length > PHOTO_MAX_BYTES)
            return srv_resp_error(r, 413, "too_large", "a photo may not be over %lld bytes",
                                  PHOTO_MAX_BYTES);
        if (length == 0)
            return srv_resp_error(r, 400, "bad_request", "an empty photo");
        u.has_photo_hash = true;
    } else if (length == 0) {
        return srv_resp_error(r, 400, "bad_request", "an empty bundle");
    }
    if (q->body_len > (uint64_t)length)
        return srv_resp_error(r, 413, "too_large", "the body runs past Upload-Length %lld",
                              (long long)length);
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    srv_hex(rnd, sizeof rnd, u.id);

    int64_t have;
    bool known = u.has_photo_hash &&
                 srv_store(srv)->ops->blob_get(srv_store(srv), u.photo_hash, &have) == PD_OK;
    if (!known && !within_quota(srv, q, length, now, r))
        return r->status;
    if (known) { /* content-addressed: nothing to send */
        u.acked = length;
        snprintf(u.state, sizeof u.state, "processed");
    }
    /* (no file yet: the first PATCH with bytes to keep creates it) */
    if (srv_store(srv)->ops->upload_add(srv_store(srv), &u) != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
    if (q->body_len && !known)
        return create_with_body(srv, q, &u, r);
    r->status = 201;
    srv_resp_header(r, "Location", "/v1/uploads/%s", u.id);
    srv_resp_header(r, "Upload-Offset", "%lld", (long long)u.acked);
    if (known)
        srv_resp_header(r, "Pd-Complete", "1");
    else
        expires_header(r, u.expires_at);
    return 201;
}

int srv_tus_head(pd_server *srv, const srv_req *q, const char *id, srv_resp *r)
{
    pd_srv_upload u;
    if (!load_upload(srv, q, id, &u, r)) {
        srv_resp_header(r, "Cache-Control", "no-store");
        return r->status;
    }
    r->status = 200;
    srv_resp_header(r, "Upload-Offset", "%lld", (long long)u.acked);
    srv_resp_header(r, "Upload-Length", "%lld", (long long)u.length);
    srv_resp_header(r, "Cache-Control", "no-store");
    if (u.acked < u.length)
        expires_header(r, u.expires_at);
    return 200;
}

int srv_tus_delete(pd_server *srv, const srv_req *q, const char *id, srv_resp *r)
{
    pd_srv_upload u;
    if (!load_upload(srv, q, id, &u, r))
        return r->status;
    if (busy_has(srv, id))
        return srv_resp_error(r, 423, "busy", "upload %s is being written by another request", id);
    if (srv_store(srv)->ops->upload_update(srv_store(srv), id, u.acked, u.expires_at,
                                           "terminated") != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
    char *path = upload_file(srv, id);
    if (path)
        unlink(path);
    free(path);
    r->status = 204;
    return 204;
}

void srv_tus_expire(pd_server *srv, int64_t now)
{
    id_list l = {0};
    srv_store(srv)->ops->uploads_expired(srv_store(srv), now, collect, &l);
    for (size_t i = 0; i < l.n; i++) {
        if (busy_has(srv, l.ids[i]))
            continue;
        pd_srv_upload u;
        if (srv_store(srv)->ops->upload_get(srv_store(srv), l.ids[i], &u) != PD_OK)
            continue;
        srv_store(srv)->ops->upload_update(srv_store(srv), u.id, u.acked, u.expires_at,
                                           "terminated");
        char *path = upload_file(srv, u.id);
        if (path)
            unlink(path);
        free(path);
    }
    free(l.ids);
}

/* ---- PATCH ------------------------------------------------------------------------------------
 */

int srv_tus_checksum_parse(const char *h, uint8_t expect[SRV_TUS_DIGEST_MAX], size_t *digest_len)
{
    size_t n = strcspn(h, " ");
    size_t want;
    int alg;
    if (n == 4 && !strncmp(h, "sha1", 4)) {
        alg = ALG_SHA1;
        want = PD_SHA1_BYTES;
    } else if (n == 6 && !strncmp(h, "sha256", 6)) {
        alg = ALG_SHA256;
        want = crypto_hash_sha256_BYTES;
    } else if (n == 6 && !strncmp(h, "sha512", 6)) {
        alg = ALG_SHA512;
        want = crypto_hash_sha512_BYTES;
    } else {
        return 0;
    }
    const char *b64 = h + n;
    while (*b64 == ' ')
        b64++;
    size_t len = 0;
    if (sodium_base642bin(expect, SRV_TUS_DIGEST_MAX, b64, strlen(b64), NULL, &len, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        len != want)
        return 0;
    if (digest_len)
        *digest_len = len;
    return alg;
}

static bool parse_checksum(const char *h, srv_patch *p)
{
    p->alg = srv_tus_checksum_parse(h, p->expect, NULL);
    return p->alg != ALG_NONE;
}

/* A patch of upload u at its acknowledged offset, whose body is body_len bytes (has_len: the
 * request said so; else it is unknown until the end). false with r answered. */
static bool patch_open(pd_server *srv, const srv_req *q, const pd_srv_upload *u, bool has_len,
                       uint64_t body_len, srv_patch **out, srv_resp *r)
{
    *out = NULL;
    srv_patch *p = calloc(1, sizeof *p);
    if (!p) {
        srv_resp_error(r, 500, "internal", "out of memory");
        return false;
    }
    p->fd = -1;
    const char *ck = q->header(q->hctx, "Upload-Checksum");
    if (ck && !parse_checksum(ck, p)) {
        free(p);
        srv_resp_error(r, 400, "bad_request",
                       "Upload-Checksum must be '<sha1|sha256|sha512> <base64 digest>'");
        return false;
    }
    if (has_len && body_len > (uint64_t)(u->length - u->acked)) {
        free(p);
        srv_resp_error(r, 413, "too_large", "the body runs past Upload-Length %lld",
                       (long long)u->length);
        return false;
    }
    if (!busy_take(srv, u->id)) {
        free(p);
        srv_resp_error(r, 423, "busy", "upload %s is being written by another request", u->id);
        return false;
    }
    /* a whole bundle in this one request: in memory (see the top of the file) */
    if (!strcmp(u->state, "open") && !strcmp(u->kind, "bundle") && u->acked == 0 && has_len &&
        u->length <= SRV_TUS_MEM_MAX && body_len == (uint64_t)u->length) {
        p->mem = malloc((size_t)u->length);
        if (!p->mem) {
            busy_remove(srv, u->id);
            free(p);
            srv_resp_error(r, 500, "internal", "out of memory");
            return false;
        }
    } else if (!strcmp(u->state, "open")) {
        char *path = upload_file(srv, u->id);
        p->fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
        free(path);
        /* bytes past the acknowledged offset were never acknowledged: drop them */
        if (p->fd < 0 || ftruncate(p->fd, u->acked) != 0 || lseek(p->fd, u->acked, SEEK_SET) < 0) {
            if (p->fd >= 0)
                close(p->fd);
            busy_remove(srv, u->id);
            free(p);
            srv_resp_error(r, 500, "internal", "cannot open the upload's file");
            return false;
        }
    }
    snprintf(p->id, sizeof p->id, "%s", u->id);
    p->start = u->acked;
    p->length = u->length;
    if (p->alg == ALG_SHA1)
        pd_sha1_init(&p->sha1);
    else if (p->alg == ALG_SHA256)
        crypto_hash_sha256_init(&p->sha256);
    else if (p->alg == ALG_SHA512)
        crypto_hash_sha512_init(&p->sha512);
    *out = p;
    return true;
}

bool srv_tus_patch_begin(pd_server *srv, const srv_req *q, const char *id, srv_patch **out,
                         srv_resp *r)
{
    *out = NULL;
    if (!offset_type(q)) {
        srv_resp_error(r, 415, "unsupported_media_type",
                       "a PATCH must have Content-Type: " OFFSET_TYPE);
        return false;
    }
    pd_srv_upload u;
    if (!load_upload(srv, q, id, &u, r))
        return false;
    int64_t offset;
    if (!header_u64(q, "Upload-Offset", &offset)) {
        srv_resp_error(r, 400, "bad_request", "Upload-Offset must be a decimal offset");
        return false;
    }
    if (offset != u.acked) {
        srv_resp_error(r, 409, "offset_mismatch", "the upload is at offset %lld, not %lld",
                       (long long)u.acked, (long long)offset);
        srv_resp_header(r, "Upload-Offset", "%lld", (long long)u.acked);
        return false;
    }
    const char *cl = q->header(q->hctx, "Content-Length");
    return patch_open(srv, q, &u, cl != NULL, cl ? strtoull(cl, NULL, 10) : 0, out, r);
}

void srv_tus_patch_data(srv_patch *p, const uint8_t *data, size_t n)
{
    if (p->overflow || p->io_error)
        return;
    if (p->written + n > (uint64_t)(p->length - p->start)) {
        p->overflow = true;
        return;
    }
    if (p->alg == ALG_SHA1)
        pd_sha1_update(&p->sha1, data, n);
    else if (p->alg == ALG_SHA256)
        crypto_hash_sha256_update(&p->sha256, data, n);
    else if (p->alg == ALG_SHA512)
        crypto_hash_sha512_update(&p->sha512, data, n);
    if (p->mem) {
        memcpy(p->mem + p->written, data, n);
        p->written += n;
        return;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(p->fd, data + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            p->io_error = true;
            return;
        }
        done += (size_t)w;
    }
    p->written += n;
}

/* Outside the lock (http.c, create_with_body). srv_tus_patch_finish, under the lock, then syncs
 * only what came after: an fsync here is a flush of the disk's cache even with nothing to
 * write (ext4), ~0.2 ms under the lock for every PATCH. */
void srv_tus_patch_sync(srv_patch *p)
{
    if (p && p->fd >= 0 && !p->io_error && fsync(p->fd) == 0)
        p->synced = p->written;
}

static void patch_free(pd_server *srv, srv_patch *p)
{
    busy_remove(srv, p->id);
    if (p->fd >= 0)
        close(p->fd);
    free(p->mem);
    sodium_memzero(p, sizeof *p);
    free(p);
}

void srv_tus_patch_abort(pd_server *srv, srv_patch *p)
{
    if (!p)
        return;
    if (p->fd >= 0 && ftruncate(p->fd, p->start) != 0) {
        /* the next PATCH truncates to the acknowledged offset anyway */
    }
    patch_free(srv, p);
}

static bool checksum_ok(srv_patch *p)
{
    uint8_t got[crypto_hash_sha512_BYTES];
    switch (p->alg) {
    case ALG_SHA1:
        pd_sha1_final(&p->sha1, got);
        return sodium_memcmp(got, p->expect, PD_SHA1_BYTES) == 0;
    case ALG_SHA256:
        crypto_hash_sha256_final(&p->sha256, got);
        return sodium_memcmp(got, p->expect, crypto_hash_sha256_BYTES) == 0;
    case ALG_SHA512:
        crypto_hash_sha512_final(&p->sha512, got);
        return sodium_memcmp(got, p->expect, crypto_hash_sha512_BYTES) == 0;
    default:
        return true;
    }
}

/* Read a whole upload file (at most max bytes). */
static uint8_t *read_all(const char *path, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    uint8_t *buf = malloc(len ? len : 1);
    size_t got = 0;
    while (buf && got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (buf && got != len) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* A complete photo: hash check, into the blob store. 0 or an HTTP error status (r filled). */
static int finish_photo(pd_server *srv, const pd_srv_upload *u, srv_resp *r)
{
    char *path = upload_file(srv, u->id);
    uint8_t *bytes = path ? read_all(path, (size_t)u->length) : NULL;
    if (!bytes) {
        free(path);
        return srv_resp_error(r, 500, "internal", "cannot read the upload back");
    }
    uint8_t h[PD_HASH_BYTES];
    crypto_generichash(h, sizeof h, bytes, (size_t)u->length, NULL, 0);
    free(bytes);
    if (sodium_memcmp(h, u->photo_hash, PD_HASH_BYTES) != 0) {
        srv_store(srv)->ops->upload_update(srv_store(srv), u->id, u->acked, u->expires_at,
                                           "failed");
        unlink(path);
        free(path);
        return srv_resp_error(r, 422, "hash_mismatch",
                              "the photo's bytes do not have the hash it was announced with");
    }
    char *dest = blob_file(srv, h, true);
    int rc = dest ? rename(path, dest) : -1;
    if (rc == 0) {
        char *dir = strdup(dest);
        if (dir) {
            *strrchr(dir, '/') = '\0';
            srv_fsync_dir(dir);
            free(dir);
        }
    }
    free(dest);
    free(path);
    if (rc != 0)
        return srv_resp_error(r, 500, "internal", "cannot store the photo");
    if (srv_store(srv)->ops->blob_add(srv_store(srv), h, u->length, srv_now_ms(), u->device_id) !=
            PD_OK ||
        srv_store(srv)->ops->upload_update(srv_store(srv), u->id, u->acked, u->expires_at,
                                           "processed") != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
    return 0;
}

/* Apply a whole bundle's bytes; its upload then becomes (acked, expires, processed), or failed
 * for bytes that are not a bundle. 0 or an HTTP error status (r filled). */
static int apply_bundle(pd_server *srv, const pd_srv_upload *u, const uint8_t *bytes, int64_t acked,
                        int64_t expires, srv_resp *r)
{
    pd_storage *st = srv_store(srv);
    int rc = srv_bundle_process(srv, u->id, u->device_id, bytes, (size_t)u->length);
    if (rc == PD_ERR_INVALID || rc == PD_ERR_CORRUPT || rc == PD_ERR_TOOBIG) {
        st->ops->upload_update(st, u->id, acked, expires, "failed");
        return srv_resp_error(r, 422, "bad_bundle", "%s", pd_server_errmsg(srv));
    }
    if (rc != PD_OK)
        return srv_resp_status(r, srv, rc);
    if (st->ops->upload_update(st, u->id, acked, expires, "processed") != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
    return 0;
}

/* Process a complete bundle upload (also called by commit when the PATCH's processing did not
 * finish). 0 or an HTTP error status (r filled). */
int srv_tus_process_bundle(pd_server *srv, const pd_srv_upload *u, srv_resp *r)
{
    char *path = upload_file(srv, u->id);
    uint8_t *bytes = path ? read_all(path, (size_t)u->length) : NULL;
    free(path);
    if (!bytes)
        return srv_resp_error(r, 500, "internal", "cannot read the upload back");
    int e = apply_bundle(srv, u, bytes, u->acked, u->expires_at, r);
    free(bytes);
    return e;
}

/* A whole bundle held in memory (see the top of the file): applied from memory; its offset and
 * state become (length, processed) — or failed, for a bundle that is not one — only after the
 * batches' commits. A request that could not apply it acknowledges nothing: the client sends
 * it again. */
static int finish_in_memory(pd_server *srv, srv_patch *p, pd_srv_upload *u, srv_resp *r)
{
    int status;
    if ((int64_t)p->written != u->length) /* (Content-Length promised the whole upload) */
        status = srv_resp_error(r, 400, "bad_request", "the body ended before Upload-Length");
    else if ((status = apply_bundle(srv, u, p->mem, u->length,
                                    srv_now_ms() + srv->cfg.upload_ttl_ms, r)) == 0) {
        status = r->status = 204;
        srv_resp_header(r, "Upload-Offset", "%lld", (long long)u->length);
        srv_resp_header(r, "Pd-Commit", "/v1/batches/commit");
    }
    patch_free(srv, p);
    return status;
}

int srv_tus_patch_finish(pd_server *srv, const srv_req *q, srv_patch *p, srv_resp *r)
{
    (void)q;
    int status;
    if (p->overflow) {
        status = srv_resp_error(r, 413, "too_large", "the body runs past Upload-Length %lld",
                                (long long)p->length);
        goto undo;
    }
    if (p->io_error) {
        status = srv_resp_error(r, 500, "internal", "cannot write the upload's file");
        goto undo;
    }
    if (!checksum_ok(p)) {
        status = srv_resp_error(r, 460, "checksum_mismatch",
                                "Upload-Checksum does not match the bytes received");
        goto undo;
    }
    if (p->fd >= 0 && p->synced != p->written && fsync(p->fd) != 0) {
        status = srv_resp_error(r, 500, "internal", "cannot sync the upload's file");
        goto undo;
    }
    pd_srv_upload u;
    if (srv_store(srv)->ops->upload_get(srv_store(srv), p->id, &u) != PD_OK) {
        status = srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
        goto undo;
    }
    if (p->mem)
        return finish_in_memory(srv, p, &u, r);
    int64_t acked = p->start + (int64_t)p->written;
    bool complete = acked == p->length;
    int64_t expires = srv_now_ms() + srv->cfg.upload_ttl_ms;
    if (acked != u.acked || !strcmp(u.state, "open")) {
        if (srv_store(srv)->ops->upload_update(srv_store(srv), p->id, acked, expires,
                                               complete ? "complete" : "open") != PD_OK) {
            status =
                srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
            goto undo;
        }
        u.acked = acked;
        u.expires_at = expires;
        snprintf(u.state, sizeof u.state, "%s", complete ? "complete" : "open");
    }
    /* From here the bytes are acknowledged: never undone. */
    close(p->fd);
    p->fd = -1;
    if (complete && !strcmp(u.state, "complete")) {
        int e = !strcmp(u.kind, "photo") ? finish_photo(srv, &u, r)
                                         : srv_tus_process_bundle(srv, &u, r);
        if (e) {
            patch_free(srv, p);
            return e;
        }
        if (!strcmp(u.kind, "bundle"))
            srv_resp_header(r, "Pd-Commit", "/v1/batches/commit");
    }
    r->status = 204;
    srv_resp_header(r, "Upload-Offset", "%lld", (long long)acked);
    if (!complete)
        expires_header(r, expires);
    patch_free(srv, p);
    return 204;
undo:
    srv_tus_patch_abort(srv, p);
    return status;
}

/* creation-with-upload: the POST's body is the upload's first bytes, taken as a PATCH at offset 0
 * would take them (a whole bundle is applied before the answer). The answer is the creation's
 * 201 with the offset now held; when the body completed a bundle, it carries the commit's answer
 * (PROTOCOL.md §5.3), so a sync needs no commit request. A POST whose bytes were not taken leaves
 * no upload behind: the client, which never learnt its Location, could not resume it, and it
 * would count against the device's cap until it expired. */
static int create_with_body(pd_server *srv, const srv_req *q, const pd_srv_upload *u, srv_resp *r)
{
    pd_storage *st = srv_store(srv);
    srv_patch *p;
    int status = 0;
    if (!patch_open(srv, q, u, true, q->body_len, &p, r)) {
        status = r->status;
    } else {
        /* Bytes that go to the upload's file (a photo, a piece of a bundle) are written and
         * fsync'd without the lock, as a PATCH's are (http.c): the upload is this request's
         * (busy, its Location not yet told), and the lock's other requests need not wait for
         * the disk. A whole bundle stays in memory. */
        bool to_file = p->mem == NULL;
        if (to_file)
            srv_unlock(srv);
        srv_tus_patch_data(p, q->body, q->body_len);
        if (to_file) {
            srv_tus_patch_sync(p);
            srv_lock(srv);
        }
        status = srv_tus_patch_finish(srv, q, p, r);
    }
    pd_srv_upload now;
    if (status != 204) { /* nothing was taken (a bundle refused whole applied nothing) */
        st->ops->upload_del(st, u->id);
        char *path = upload_file(srv, u->id);
        if (path)
            unlink(path);
        free(path);
        return status;
    }
    if (st->ops->upload_get(st, u->id, &now) != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
    if (!strcmp(now.kind, "bundle") && !strcmp(now.state, "processed")) {
        int e = srv_upload_results(srv, u->id, r);
        if (e != 200)
            return e;
    }
    r->status = 201;
    srv_resp_header(r, "Location", "/v1/uploads/%s", u->id);
    return 201;
}
