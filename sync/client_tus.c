/*
 * client_tus.c — the tus 1.0 upload engine of the sync client (core, creation, checksum), used for
 * the sync bundle and photos (signed, to a pendata server) and for plain files to any tus server
 * (pd_tus_upload_file, e.g. @tus/server in the interop test).
 *
 * The one rule that makes uploads resumable without waste: never send a byte before the server
 * said it lacks it. So after anything but a clean 204 (a cut connection, a timeout, a 409, a 5xx)
 * the next request is a HEAD, and the PATCH starts at the offset the HEAD reported; and the upload
 * URL and the acknowledged offset are handed to the caller's store (the sync state, or a small
 * file) before any byte past that offset goes out, so a killed program resumes the same way.
 *
 * A HEAD does not tell whether the server is still holding a request of ours that broke (a cut
 * PATCH it has not noticed yet, or the PATCH of a run that was killed): a PATCH sent then is
 * refused 423, and its body would be wasted. So after a failed PATCH, and when resuming a saved
 * upload, the first PATCH at the offset HEAD reported carries no body: a probe the server answers
 * 204 (free, at that offset), 409 (another offset) or 423 (still busy: back off, HEAD again). Only
 * then does a body go out; the happy path pays nothing for it.
 *
 * Each PATCH carries at most cfg.chunk_bytes, with Upload-Checksum (sha1) when the server has the
 * checksum extension: a chunk damaged on the way is refused (460) instead of stored, and at most
 * one chunk is lost by a cut. Attempts are counted since the last progress, so a flaky link that
 * keeps moving finishes, and a dead one fails after max_attempts with backoff and full jitter.
 *
 * An upload the caller gives up on is terminated (DELETE, pd_tus_terminate): a pendata server caps
 * a device's unfinished uploads (PROTOCOL.md §5), and answers a creation past the cap 429 with
 * Retry-After. Creation waits that long only when it is within the backoff cap; otherwise it stops
 * at once (h->over_quota, h->quota_retry_s) instead of spinning through its attempts.
 *
 * SHA-1 is here because tus makes it the mandatory checksum and libsodium has none. It is only a
 * transport check; pendata's own hashes are BLAKE2b.
 */
#include "client_internal.h"
#include "sha1.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_UPLOAD_MAX ((uint64_t)1 << 32) /* pd_tus_upload_file reads the file into memory */

/* SHA-1 for tus's checksum extension: one implementation, sync/sha1.c, shared with the server. */
void pd_tus_sha1(const uint8_t *p, size_t n, uint8_t out[PD_TUS_SHA1_BYTES])
{
    pd_sha1 s;
    pd_sha1_init(&s);
    pd_sha1_update(&s, p, n);
    pd_sha1_final(&s, out);
}

int pd_tus_metadata(char **out, const char *const *keys, const char *const *values, size_t n)
{
    pd_sbuf b = {0};
    for (size_t i = 0; i < n; i++) {
        size_t vlen = strlen(values[i]);
        size_t blen = sodium_base64_encoded_len(vlen, sodium_base64_VARIANT_ORIGINAL);
        char *enc = malloc(blen);
        if (!enc) {
            pd_sbuf_free(&b);
            return PD_ERR_NOMEM;
        }
        sodium_bin2base64(enc, blen, (const unsigned char *)values[i], vlen,
                          sodium_base64_VARIANT_ORIGINAL);
        pd_sbuf_printf(&b, "%s%s %s", i ? "," : "", keys[i], enc);
        free(enc);
    }
    pd_sbuf_byte(&b, 0);
    if (b.failed) {
        int rc = b.failed;
        pd_sbuf_free(&b);
        return rc;
    }
    *out = (char *)b.p;
    return PD_OK;
}

/* ---- the engine ------------------------------------------------------------------------------ */

static int save_point(pd_http *h, const pd_tus_store *st, const char *url, uint64_t offset)
{
    if (!st || !st->save)
        return PD_OK;
    int rc = st->save(st->ctx, url, offset);
    if (rc != PD_OK && !h->err.msg[0])
        pd_error_set(&h->err, rc, "cannot save the upload's resume point");
    return rc;
}

/* The creation POST, retried as pd_http_call does, except a 429 whose Retry-After is past the
 * backoff cap (a device's upload cap, PROTOCOL.md §5: hours, not seconds): answered at once, so a
 * full device stops instead of spinning through its attempts. */
static int post_create(pd_http *h, const pd_http_req *req, pd_http_resp *r)
{
    bool auth_retried = false;
    for (unsigned attempt = 0;; attempt++) {
        int rc = pd_http_once(h, req, r);
        if (h->stats && req->body)
            h->stats->upload_body_bytes += r->body_sent; /* (creation-with-upload) */
        if (rc != PD_OK && rc != PD_ERR_NETWORK)
            return rc;
        if (rc == PD_OK && !auth_retried && pd_http_auth_retry(h, r)) {
            auth_retried = true;
            pd_http_resp_free(r);
            attempt--; /* not a failure of the link */
            continue;
        }
        if (rc == PD_OK && !pd_http_transient(r->status))
            return PD_OK;
        if (rc == PD_OK && r->status == 429 &&
            (r->retry_after_s <= 0 || (uint64_t)r->retry_after_s * 1000 > h->cfg.backoff_cap_ms))
            return PD_OK;
        if (attempt + 1 >= h->cfg.max_attempts)
            return rc;
        int64_t ra = r->retry_after_s;
        pd_http_resp_free(r);
        pd_http_backoff(h, attempt, ra);
    }
}

static int create_upload(pd_http *h, const char *create_url, pd_tus_upload *u,
                         const pd_tus_store *st, uint64_t *offset)
{
    char len_hdr[64], meta_hdr[1024], sum_hdr[96];
    const char *hdrs[4] = {len_hdr, NULL, NULL, NULL};
    size_t nh = 1;
    snprintf(len_hdr, sizeof len_hdr, "Upload-Length: %llu", (unsigned long long)u->length);
    if (u->metadata) {
        int n = snprintf(meta_hdr, sizeof meta_hdr, "Upload-Metadata: %s", u->metadata);
        if (n < 0 || (size_t)n >= sizeof meta_hdr)
            return pd_error_set(&h->err, PD_ERR_TOOBIG, "tus metadata too long");
        hdrs[nh++] = meta_hdr;
    }
    /* creation-with-upload: the bytes ride in the POST (the whole upload, or its first chunk:
     * no more than a PATCH would risk on a cut) */
    size_t body_n = 0, most = h->cfg.chunk_bytes < PD_TUS_CREATE_BODY_MAX ? h->cfg.chunk_bytes
                                                                          : PD_TUS_CREATE_BODY_MAX;
    if (u->create_with_body && u->length)
        body_n = u->length < most ? (size_t)u->length : most;
    if (body_n && u->checksum) {
        uint8_t sum[PD_TUS_SHA1_BYTES];
        char b64[64];
        pd_tus_sha1(u->data, body_n, sum);
        sodium_bin2base64(b64, sizeof b64, sum, sizeof sum, sodium_base64_VARIANT_ORIGINAL);
        snprintf(sum_hdr, sizeof sum_hdr, "Upload-Checksum: sha1 %s", b64);
        hdrs[nh++] = sum_hdr;
    }
    pd_http_req req = {.method = "POST",
                       .url = create_url,
                       .body = body_n ? u->data : NULL,
                       .body_len = body_n,
                       .content_type = body_n ? "application/offset+octet-stream" : NULL,
                       .headers = hdrs,
                       .sign = u->sign,
                       .tus = true,
                       .gzip = body_n > 0, /* the answer may carry the commit's results */
                       .phase = u->phase,
                       .progress_total = u->length};
    pd_http_resp r;
    int rc = post_create(h, &req, &r);
    if (rc != PD_OK)
        goto out;
    if (r.status == 429) {
        h->over_quota = true;
        h->quota_retry_s = r.retry_after_s > 0 ? r.retry_after_s : 0;
        char why[PD_ERRMSG_MAX];
        pd_http_fail_status(h, "tus create", &r);
        memcpy(why, h->err.msg, sizeof why);
        rc = pd_error_set(&h->err, PD_ERR_BUSY,
                          "%s (no new upload from this device for %lld s: try again then)", why,
                          (long long)h->quota_retry_s);
        goto out;
    }
    if (r.status != 201) {
        rc = pd_http_fail_status(h, "tus create", &r);
        goto out;
    }
    if (!r.location[0] || pd_http_resolve(create_url, r.location, u->url) != PD_OK) {
        rc = pd_error_set(&h->err, PD_ERR_PROTOCOL, "tus create: 201 without a usable Location");
        goto out;
    }
    *offset = r.has_offset ? (uint64_t)r.upload_offset : 0;
    if (*offset > u->length) {
        rc = pd_error_set(&h->err, PD_ERR_PROTOCOL,
                          "tus create: Upload-Offset %llu is past "
                          "Upload-Length %llu",
                          (unsigned long long)*offset, (unsigned long long)u->length);
        goto out;
    }
    u->complete_at_create = r.pd_complete && *offset == u->length;
    rc = save_point(h, st, u->url, *offset);
    if (rc == PD_OK && body_n && u->create_answer) {
        *u->create_answer = r; /* the caller's now */
        return PD_OK;
    }
out:
    pd_http_resp_free(&r);
    return rc;
}

/* HEAD: the offset the server holds. PD_ERR_NOTFOUND when the upload is gone. Transient failures
 * come back as PD_ERR_NETWORK / PD_ERR_BUSY for the caller's retry loop. */
static int head_offset(pd_http *h, pd_tus_upload *u, uint64_t *offset)
{
    pd_http_req req = {
        .method = "HEAD", .url = u->url, .sign = u->sign, .tus = true, .phase = u->phase};
    pd_http_resp r;
    int rc = pd_http_once(h, &req, &r);
    if (rc != PD_OK)
        goto out;
    if (r.status == 404 || r.status == 410) {
        rc = pd_error_set(&h->err, PD_ERR_NOTFOUND, "tus upload %s is gone (HTTP %ld)", u->url,
                          r.status);
    } else if (pd_http_transient(r.status)) {
        rc = pd_error_set(&h->err, PD_ERR_BUSY, "tus HEAD %s: HTTP %ld", u->url, r.status);
    } else if (r.status != 200 && r.status != 204) {
        rc = pd_http_fail_status(h, "tus HEAD", &r);
    } else if (!r.has_offset || (uint64_t)r.upload_offset > u->length) {
        rc = pd_error_set(&h->err, PD_ERR_PROTOCOL, "tus HEAD %s: no valid Upload-Offset", u->url);
    } else if (r.has_length && (uint64_t)r.upload_length != u->length) {
        /* Not the upload we think it is: start over rather than corrupt it. */
        rc = pd_error_set(&h->err, PD_ERR_NOTFOUND,
                          "tus upload %s has length %lld, not %llu: starting a new one", u->url,
                          (long long)r.upload_length, (unsigned long long)u->length);
    } else {
        *offset = (uint64_t)r.upload_offset;
    }
out:
    pd_http_resp_free(&r);
    return rc;
}

typedef enum patch_next { PATCH_OK, PATCH_HEAD, PATCH_RETRY } patch_next;

/* One PATCH at *offset: the next chunk, or with probe no body at all (see the top comment). */
static int patch_chunk(pd_http *h, pd_tus_upload *u, uint64_t *offset, bool probe, patch_next *next)
{
    uint64_t left = u->length - *offset;
    size_t n = probe ? 0 : left < h->cfg.chunk_bytes ? (size_t)left : h->cfg.chunk_bytes;
    const uint8_t *chunk = u->data + *offset;
    char off_hdr[64], sum_hdr[96];
    const char *hdrs[3] = {off_hdr, NULL, NULL};
    snprintf(off_hdr, sizeof off_hdr, "Upload-Offset: %llu", (unsigned long long)*offset);
    if (u->checksum && n) {
        uint8_t sum[PD_TUS_SHA1_BYTES];
        char b64[64];
        pd_tus_sha1(chunk, n, sum);
        sodium_bin2base64(b64, sizeof b64, sum, sizeof sum, sodium_base64_VARIANT_ORIGINAL);
        snprintf(sum_hdr, sizeof sum_hdr, "Upload-Checksum: sha1 %s", b64);
        hdrs[1] = sum_hdr;
    }
    pd_http_req req = {.method = "PATCH",
                       .url = u->url,
                       .body = n ? chunk : NULL,
                       .body_len = n,
                       .content_type = "application/offset+octet-stream",
                       .headers = hdrs,
                       .sign = u->sign,
                       .tus = true,
                       .no_resend = true,
                       .phase = u->phase,
                       .progress_base = *offset,
                       .progress_total = u->length};
    pd_http_resp r;
    int rc = pd_http_once(h, &req, &r);
    if (h->stats)
        h->stats->upload_body_bytes += r.body_sent;
    *next = PATCH_HEAD;
    if (rc == PD_ERR_NETWORK) {
        rc = PD_OK; /* the caller asks HEAD where we are */
        goto out;
    }
    if (rc != PD_OK)
        goto out;
    if (r.status == 204) {
        /* a body moves the offset on (by at most its length), a probe leaves it */
        uint64_t at = r.has_offset && r.upload_offset >= 0 ? (uint64_t)r.upload_offset : 0;
        if (!r.has_offset || at < *offset || at > *offset + n || (at == *offset) != probe) {
            rc = pd_error_set(&h->err, PD_ERR_PROTOCOL,
                              "tus PATCH %s at %llu (%zu bytes): the answer's Upload-Offset is "
                              "missing or wrong",
                              u->url, (unsigned long long)*offset, n);
            goto out;
        }
        *offset = (uint64_t)r.upload_offset;
        *next = PATCH_OK;
    } else if (r.status == 409) {
        /* Our offset is not the server's: it says which in the answer (or HEAD will). */
        if (r.has_offset && (uint64_t)r.upload_offset <= u->length) {
            *offset = (uint64_t)r.upload_offset;
            *next = PATCH_RETRY;
        }
    } else if (r.status == 401 && pd_http_auth_retry(h, &r)) {
        /* a clock corrected, or a copy of a PATCH the server took: ask where we are */
    } else if (r.status == 460) {
        *next = PATCH_RETRY; /* damaged on the way: the server kept nothing of it */
    } else if (r.status == 404 || r.status == 410) {
        rc = pd_error_set(&h->err, PD_ERR_NOTFOUND, "tus upload %s is gone (HTTP %ld)", u->url,
                          r.status);
    } else if (!pd_http_transient(r.status)) {
        rc = pd_http_fail_status(h, "tus PATCH", &r);
    }
out:
    pd_http_resp_free(&r);
    return rc;
}

int pd_tus_send(pd_http *h, const char *create_url, pd_tus_upload *u, const pd_tus_store *st)
{
    uint64_t offset = 0;
    bool known = false;
    /* A saved upload may still be held by the server for the request of a run that died. */
    bool probe = u->url[0] != '\0';
    int rc;
    u->complete_at_create = false;
    u->resumed = false;
    if (!u->url[0]) {
        rc = create_upload(h, create_url, u, st, &offset);
        if (rc != PD_OK)
            return rc;
        known = true;
    }
    unsigned attempt = 0;
    for (;;) {
        if (!known) {
            rc = head_offset(h, u, &offset);
            if (rc == PD_ERR_NETWORK || rc == PD_ERR_BUSY) {
                if (++attempt >= h->cfg.max_attempts)
                    return rc;
                pd_http_backoff(h, attempt - 1, 0);
                continue;
            }
            if (rc != PD_OK)
                return rc;
            if (offset > 0) {
                u->resumed = true;
                u->resumed_at = offset;
                if (h->stats) {
                    h->stats->upload_resumed++;
                    h->stats->upload_resume_offset = offset;
                }
            }
            known = true;
            if ((rc = save_point(h, st, u->url, offset)) != PD_OK)
                return rc;
        }
        if (offset == u->length) {
            if (h->stats && !u->complete_at_create)
                h->stats->upload_length += u->length;
            return PD_OK;
        }
        patch_next next;
        uint64_t before = offset;
        rc = patch_chunk(h, u, &offset, probe, &next);
        if (rc != PD_OK)
            return rc;
        if (next == PATCH_OK) {
            attempt = 0;
            probe = false; /* the server is free and at our offset: the body may go */
            if (offset > before && (rc = save_point(h, st, u->url, offset)) != PD_OK)
                return rc;
            continue;
        }
        /* Whatever broke (a cut, 423, 409, 5xx), no body goes out before a probe says so. */
        probe = true;
        if (offset > before && (rc = save_point(h, st, u->url, offset)) != PD_OK)
            return rc; /* a 409 told us the server holds more */
        known = next == PATCH_RETRY;
        if (++attempt >= h->cfg.max_attempts) {
            if (!h->err.msg[0] || h->err.code == PD_OK)
                pd_error_set(&h->err, PD_ERR_NETWORK,
                             "tus upload %s: no progress after %u "
                             "attempts",
                             u->url, attempt);
            return h->err.code ? h->err.code : PD_ERR_NETWORK;
        }
        pd_http_backoff(h, attempt - 1, 0);
    }
}

int pd_tus_terminate(pd_http *h, const char *url, bool sign)
{
    pd_http_req req = {
        .method = "DELETE", .url = url, .sign = sign, .tus = true, .phase = PD_SYNC_PHASE_UPLOAD};
    pd_http_resp r;
    int rc = pd_http_call(h, &req, &r); /* 423 (a PATCH of ours still held) is retried */
    if (rc == PD_OK && r.status != 204 && r.status != 404 && r.status != 410)
        rc = pd_http_fail_status(h, "tus DELETE", &r);
    pd_http_resp_free(&r);
    return rc;
}

/* ---- a plain file to any tus server ------------------------------------------------------------
 */

typedef struct file_state {
    const char *path;
    char last_url[PD_HTTP_URL_MAX];
} file_state;

/* Write "URL\nOFFSET\n" to the state file durably (temp + fsync + rename). */
static int file_state_save(void *ctx, const char *url, uint64_t offset)
{
    file_state *fs = ctx;
    if (!fs->path)
        return PD_OK;
    size_t n = strlen(fs->path) + 8;
    char *tmp = malloc(n);
    if (!tmp)
        return PD_ERR_NOMEM;
    snprintf(tmp, n, "%s.tmp", fs->path);
    int rc = PD_ERR_IO;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        char line[PD_HTTP_URL_MAX + 32];
        int len = snprintf(line, sizeof line, "%s\n%llu\n", url, (unsigned long long)offset);
        if (len > 0 && (size_t)len < sizeof line && write(fd, line, (size_t)len) == len &&
            fsync(fd) == 0)
            rc = PD_OK;
        if (close(fd) != 0)
            rc = PD_ERR_IO;
        if (rc == PD_OK && rename(tmp, fs->path) != 0)
            rc = PD_ERR_IO;
    }
    if (rc != PD_OK)
        unlink(tmp);
    free(tmp);
    return rc;
}

static int read_whole(const char *path, uint8_t **out, size_t *len, pd_error *err)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pd_error_set(err, errno == ENOENT ? PD_ERR_NOTFOUND : PD_ERR_IO, "%s: %s", path,
                            strerror(errno));
    struct stat sb;
    int rc = PD_OK;
    uint8_t *buf = NULL;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: not a regular file", path);
        goto out;
    }
    if ((uint64_t)sb.st_size > FILE_UPLOAD_MAX) {
        rc = pd_error_set(err, PD_ERR_TOOBIG, "%s: over 4 GiB", path);
        goto out;
    }
    size_t n = (size_t)sb.st_size;
    buf = malloc(n ? n : 1);
    if (!buf) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = pd_error_set(err, PD_ERR_IO, "%s: read failed", path);
            goto out;
        }
        got += (size_t)r;
    }
    *out = buf;
    *len = n;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* The upload URL saved by an earlier run, if any. */
static void file_state_load(const char *path, char url[PD_HTTP_URL_MAX])
{
    url[0] = '\0';
    if (!path)
        return;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(url, PD_HTTP_URL_MAX, f)) {
        url[strcspn(url, "\r\n")] = '\0';
        if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8))
            url[0] = '\0';
    } else {
        url[0] = '\0';
    }
    fclose(f);
}

/* OPTIONS: does the server take Upload-Checksum? (A server without OPTIONS gets none.) */
static bool server_has_checksum(pd_http *h, const char *endpoint)
{
    pd_http_req req = {.method = "OPTIONS", .url = endpoint, .phase = PD_SYNC_PHASE_UPLOAD};
    pd_http_resp r;
    bool yes = false;
    if (pd_http_call(h, &req, &r) == PD_OK && (r.status == 200 || r.status == 204)) {
        for (const char *p = r.tus_extension; (p = strstr(p, "checksum")) != NULL; p += 8) {
            bool start = p == r.tus_extension || p[-1] == ',' || p[-1] == ' ';
            bool end = p[8] == '\0' || p[8] == ',' || p[8] == ' ';
            if (start && end)
                yes = true;
        }
    }
    pd_http_resp_free(&r);
    return yes;
}

int pd_tus_upload_file(const char *endpoint, const char *path, const char *state_path,
                       const pd_sync_options *opt, pd_sync_stats *stats, char *url_out,
                       size_t url_cap, pd_error *err)
{
    pd_error_clear(err);
    if (!endpoint || !path)
        return pd_error_set(err, PD_ERR_INVALID, "tus upload: endpoint and file are required");
    pd_http h;
    uint8_t *data = NULL;
    size_t len = 0;
    char *meta = NULL;
    int rc = pd_http_init(&h, endpoint, opt, err);
    if (rc != PD_OK)
        goto out;
    h.stats = stats;
    if ((rc = read_whole(path, &data, &len, err)) != PD_OK)
        goto out;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *keys[] = {"filename"};
    const char *values[] = {base};
    if ((rc = pd_tus_metadata(&meta, keys, values, 1)) != PD_OK) {
        pd_error_set(err, rc, "tus metadata: out of memory");
        goto out;
    }
    pd_tus_upload u;
    memset(&u, 0, sizeof u);
    u.data = data;
    u.length = len;
    u.metadata = meta;
    u.checksum = server_has_checksum(&h, endpoint);
    u.phase = PD_SYNC_PHASE_UPLOAD;
    file_state fs = {.path = state_path};
    pd_tus_store st = {.save = file_state_save, .ctx = &fs};
    file_state_load(state_path, u.url);
    rc = pd_tus_send(&h, endpoint, &u, &st);
    if (rc == PD_ERR_NOTFOUND && u.url[0]) {
        /* The saved upload is gone (expired, terminated), or is not this file's: start a new
         * one, and terminate the old (best effort: 404/410 when it is gone). */
        pd_tus_terminate(&h, u.url, false);
        u.url[0] = '\0';
        memset(&h.err, 0, sizeof h.err);
        rc = pd_tus_send(&h, endpoint, &u, &st);
    }
    if (rc != PD_OK) {
        pd_error_set(err, rc, "%s", h.err.msg[0] ? h.err.msg : pd_strerror(rc));
        goto out;
    }
    if (state_path)
        unlink(state_path);
    if (url_out && url_cap) {
        if (strlen(u.url) >= url_cap) {
            rc = pd_error_set(err, PD_ERR_TOOBIG, "upload URL longer than the caller's buffer");
            goto out;
        }
        memcpy(url_out, u.url, strlen(u.url) + 1);
    }
out:
    free(meta);
    free(data);
    pd_http_close(&h);
    return rc;
}
