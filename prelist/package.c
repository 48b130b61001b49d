/*
 * package.c — the signed prelist package (format in pd_prelist.h): header codec, the streaming
 * writer (records → deflate → temp file, header signed last, renamed into place) and the
 * streaming reader (signature → length → hash → inflate line by line in bounded memory).
 *
 * The reader never inflates a byte before the header's signature verified with the pinned key
 * and the compressed bytes hashed to the signed hash. Inflation is held to the declared size
 * (itself bounded by PD_PRELIST_MAX_INFLATED and PD_PRELIST_MAX_RATIO), each line to
 * PD_PRELIST_MAX_LINE. A file is read twice (hash, then inflate); the second pass hashes again
 * so a file changed in between fails instead of slipping unverified bytes through.
 *
 * Records themselves (fields, validation, JSON) live in record.c.
 */
#include "prelist_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK 65536

/* ---- header ---------------------------------------------------------------------------------- */

void pd_prelist_fingerprint(const uint8_t pk[PD_PUBKEY_BYTES], char out[17])
{
    sodium_bin2hex(out, 17, pk, 8);
}

int pd_prelist_area_id_check(const char *s, pd_area_key *area, pd_error *err)
{
    size_t n = strnlen(s, PD_PRELIST_AREA_ID_MAX + 1);
    if (n == 0 || n > PD_PRELIST_AREA_ID_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "area id must be 1 to %d bytes",
                            PD_PRELIST_AREA_ID_MAX);
    const char *colon = memchr(s, ':', n);
    size_t code_len = colon ? (size_t)(colon - s) : n;
    pd_area_key k;
    if (!pd_area_parse_n(s, code_len, &k) || pd_area_index(k) < 0)
        return pd_error_set(err, PD_ERR_INVALID, "area id '%.32s' does not start with a real area "
                            "code", s);
    if (colon) {
        if (colon + 1 == s + n)
            return pd_error_set(err, PD_ERR_INVALID, "area id '%.32s': empty part after ':'", s);
        for (const char *p = colon + 1; p < s + n; p++)
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_' || *p == ':'))
                return pd_error_set(err, PD_ERR_INVALID,
                                    "area id: the part after ':' must be of 0-9 A-Z a-z - _ :");
    }
    if (area)
        *area = k;
    return PD_OK;
}

void pd_prelist_header_encode(const pd_prelist_info *info, uint8_t out[PD_PRELIST_HEADER_BYTES])
{
    memset(out, 0, PD_PRELIST_HEADER_BYTES);
    memcpy(out + PD_PL_OFF_MAGIC, PD_PRELIST_MAGIC, 4);
    pd_le16(out + PD_PL_OFF_VERSION, PD_PRELIST_VERSION);
    pd_le16(out + PD_PL_OFF_HSIZE, PD_PRELIST_HEADER_BYTES);
    memcpy(out + PD_PL_OFF_ISSUER, info->issuer_pk, PD_PUBKEY_BYTES);
    pd_le64(out + PD_PL_OFF_ISSUED_AT, (uint64_t)info->issued_at);
    memcpy(out + PD_PL_OFF_AREA, info->area, strnlen(info->area, PD_PRELIST_AREA_ID_MAX));
    pd_le32(out + PD_PL_OFF_SHAPES, info->shapes);
    pd_le32(out + PD_PL_OFF_HOUSEHOLDS, info->households);
    pd_le32(out + PD_PL_OFF_MEMBERS, info->members);
    pd_le64(out + PD_PL_OFF_ZSIZE, info->compressed_size);
    pd_le64(out + PD_PL_OFF_SIZE, info->inflated_size);
    memcpy(out + PD_PL_OFF_HASH, info->payload_hash, PD_HASH_BYTES);
}

int pd_prelist_header_decode(pd_prelist_info *info, const uint8_t in[PD_PRELIST_HEADER_BYTES],
                             const char *name, pd_error *err)
{
    memset(info, 0, sizeof *info);
    if (memcmp(in + PD_PL_OFF_MAGIC, PD_PRELIST_MAGIC, 4) != 0)
        return pd_error_set(err, PD_ERR_INVALID, "%s: not a prelist package (no \"PDPL\" magic)",
                            name);
    info->version = pd_rd16(in + PD_PL_OFF_VERSION);
    if (info->version != PD_PRELIST_VERSION)
        return pd_error_set(err, PD_ERR_VERSION,
                            "%s: package format version %u; this pendata reads version %d", name,
                            info->version, PD_PRELIST_VERSION);
    if (pd_rd16(in + PD_PL_OFF_HSIZE) != PD_PRELIST_HEADER_BYTES)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: header size %u, expected %d", name,
                            pd_rd16(in + PD_PL_OFF_HSIZE), PD_PRELIST_HEADER_BYTES);
    memcpy(info->issuer_pk, in + PD_PL_OFF_ISSUER, PD_PUBKEY_BYTES);
    info->issued_at = (int64_t)pd_rd64(in + PD_PL_OFF_ISSUED_AT);
    const uint8_t *area = in + PD_PL_OFF_AREA;
    size_t alen = 0;
    while (alen < PD_PRELIST_AREA_ID_MAX && area[alen])
        alen++;
    for (size_t i = alen; i < PD_PRELIST_AREA_ID_MAX; i++)
        if (area[i])
            return pd_error_set(err, PD_ERR_CORRUPT, "%s: area id is not NUL-padded", name);
    for (size_t i = 0; i < alen; i++)
        if (area[i] < 0x21 || area[i] > 0x7e)
            return pd_error_set(err, PD_ERR_CORRUPT, "%s: area id is not printable ASCII", name);
    memcpy(info->area, area, alen);
    info->area[alen] = '\0';
    info->shapes = pd_rd32(in + PD_PL_OFF_SHAPES);
    info->households = pd_rd32(in + PD_PL_OFF_HOUSEHOLDS);
    info->members = pd_rd32(in + PD_PL_OFF_MEMBERS);
    info->compressed_size = pd_rd64(in + PD_PL_OFF_ZSIZE);
    info->inflated_size = pd_rd64(in + PD_PL_OFF_SIZE);
    memcpy(info->payload_hash, in + PD_PL_OFF_HASH, PD_HASH_BYTES);
    for (int i = PD_PL_OFF_RESERVED; i < PD_PRELIST_HEADER_BYTES; i++)
        if (in[i])
            return pd_error_set(err, PD_ERR_CORRUPT, "%s: reserved header bytes are not zero",
                                name);
    return PD_OK;
}

/* Sizes and counts a header may declare (checked before anything else is trusted). */
static int header_bounds(const pd_prelist_info *h, const char *name, pd_error *err)
{
    if (h->compressed_size > PD_PRELIST_MAX_COMPRESSED)
        return pd_error_set(err, PD_ERR_TOOBIG,
                            "%s: compressed payload of %llu bytes is over the %u limit", name,
                            (unsigned long long)h->compressed_size, PD_PRELIST_MAX_COMPRESSED);
    if (h->inflated_size > PD_PRELIST_MAX_INFLATED)
        return pd_error_set(err, PD_ERR_TOOBIG,
                            "%s: payload of %llu bytes once inflated is over the %u limit", name,
                            (unsigned long long)h->inflated_size, PD_PRELIST_MAX_INFLATED);
    if (h->inflated_size > h->compressed_size * PD_PRELIST_MAX_RATIO + PD_PRELIST_RATIO_SLACK)
        return pd_error_set(err, PD_ERR_TOOBIG,
                            "%s: %llu compressed bytes claim to inflate to %llu: over the "
                            "ratio limit of %d (a decompression bomb?)",
                            name, (unsigned long long)h->compressed_size,
                            (unsigned long long)h->inflated_size, PD_PRELIST_MAX_RATIO);
    if (h->shapes > PD_PRELIST_MAX_SHAPES || h->households > PD_PRELIST_MAX_HOUSEHOLDS ||
        h->members > PD_PRELIST_MAX_MEMBERS)
        return pd_error_set(err, PD_ERR_TOOBIG,
                            "%s: %u areas, %u households, %u members: over the limits (%d, %u, %u)",
                            name, h->shapes, h->households, h->members, PD_PRELIST_MAX_SHAPES,
                            PD_PRELIST_MAX_HOUSEHOLDS, PD_PRELIST_MAX_MEMBERS);
    return PD_OK;
}

static void package_id(const uint8_t prefix[PD_PRELIST_PREFIX_BYTES], uint8_t id[PD_HASH_BYTES])
{
    crypto_generichash(id, PD_HASH_BYTES, prefix, PD_PRELIST_PREFIX_BYTES, NULL, 0);
}

void pd_prelist_resign(uint8_t *pkg, const uint8_t sk[PD_SECKEY_BYTES])
{
    crypto_sign_detached(pkg + PD_PRELIST_HEADER_BYTES, NULL, pkg, PD_PRELIST_HEADER_BYTES, sk);
}

/* ---- writer ---------------------------------------------------------------------------------- */

struct pd_prelist_writer {
    int fd;
    char *path, *tmp;
    bool z_ready, failed;
    z_stream z;
    crypto_generichash_state hs;
    uint8_t sk[PD_SECKEY_BYTES];
    pd_prelist_info info;
    pd_seq seq;
    pd_buf line;
    uint8_t out[CHUNK];
};

static int write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Move what deflate produced to the file (and the hash). */
static int writer_drain(pd_prelist_writer *w, pd_error *err)
{
    size_t have = CHUNK - w->z.avail_out;
    if (have) {
        if (w->info.compressed_size + have > PD_PRELIST_MAX_COMPRESSED)
            return pd_error_set(err, PD_ERR_TOOBIG, "%s: compressed payload over %u bytes",
                                w->path, PD_PRELIST_MAX_COMPRESSED);
        if (write_all(w->fd, w->out, have) != 0)
            return pd_error_set(err, PD_ERR_IO, "%s: write: %s", w->tmp, strerror(errno));
        crypto_generichash_update(&w->hs, w->out, have);
        w->info.compressed_size += have;
    }
    w->z.next_out = w->out;
    w->z.avail_out = CHUNK;
    return PD_OK;
}

static int writer_deflate(pd_prelist_writer *w, const void *p, size_t n, int flush, pd_error *err)
{
    if (w->info.inflated_size + n > PD_PRELIST_MAX_INFLATED)
        return pd_error_set(err, PD_ERR_TOOBIG, "%s: payload over %u bytes", w->path,
                            PD_PRELIST_MAX_INFLATED);
    w->info.inflated_size += n;
    w->z.next_in = (Bytef *)(uintptr_t)p;
    w->z.avail_in = (uInt)n;
    for (;;) {
        int zrc = deflate(&w->z, flush);
        if (zrc == Z_STREAM_ERROR)
            return pd_error_set(err, PD_ERR_INTERNAL, "%s: deflate failed", w->path);
        if (w->z.avail_out == 0 || zrc == Z_STREAM_END || flush == Z_FINISH) {
            int rc = writer_drain(w, err);
            if (rc != PD_OK)
                return rc;
        }
        if (zrc == Z_STREAM_END)
            return PD_OK;
        if (flush != Z_FINISH && w->z.avail_in == 0 && w->z.avail_out != 0)
            return PD_OK;
    }
}

int pd_prelist_writer_open(pd_prelist_writer **out, const char *path,
                           const uint8_t issuer_sk[PD_SECKEY_BYTES], const char *area,
                           int64_t issued_at, pd_error *err)
{
    *out = NULL;
    pd_area_key key;
    int rc = pd_prelist_area_id_check(area, &key, err);
    if (rc != PD_OK)
        return rc;
    pd_prelist_writer *w = calloc(1, sizeof *w);
    if (!w)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    w->fd = -1;
    size_t n = strlen(path);
    w->path = malloc(n + 1);
    w->tmp = malloc(n + 5);
    if (!w->path || !w->tmp) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(w->path, path, n + 1);
    snprintf(w->tmp, n + 5, "%s.tmp", path);
    memcpy(w->sk, issuer_sk, PD_SECKEY_BYTES);
    crypto_sign_ed25519_sk_to_pk(w->info.issuer_pk, issuer_sk);
    w->info.version = PD_PRELIST_VERSION;
    w->info.issued_at = issued_at;
    snprintf(w->info.area, sizeof w->info.area, "%s", area);
    w->seq.area = key;
    w->line.max = PD_PRELIST_MAX_LINE;
    crypto_generichash_init(&w->hs, NULL, 0, PD_HASH_BYTES);
    if (deflateInit(&w->z, Z_DEFAULT_COMPRESSION) != Z_OK) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "%s: deflateInit failed", path);
        goto fail;
    }
    w->z_ready = true;
    w->z.next_out = w->out;
    w->z.avail_out = CHUNK;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        goto fail;
    }
    uint8_t zero[PD_PRELIST_PREFIX_BYTES] = {0}; /* the header goes here at the end */
    if (write_all(w->fd, zero, sizeof zero) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: write: %s", w->tmp, strerror(errno));
        goto fail;
    }
    *out = w;
    return PD_OK;
fail:
    pd_prelist_writer_free(w);
    return rc;
}

/* Validate, order-check, encode and deflate one record. */
static int writer_add(pd_prelist_writer *w, pd_rec_kind kind, const void *rec, pd_error *err)
{
    if (w->failed)
        return pd_error_set(err, PD_ERR_STATE, "%s: the writer failed earlier", w->path);
    int rc;
    w->line.len = 0;
    switch (kind) {
    case PD_REC_SHAPE:
        rc = pd_shape_validate(rec, err);
        if (rc == PD_OK)
            rc = pd_seq_shape(&w->seq, rec, err);
        if (rc == PD_OK && (rc = pd_shape_encode(&w->line, rec)) != PD_OK)
            pd_error_set(err, rc, "area %s: record too long", ((const pd_prelist_shape *)rec)->code);
        break;
    case PD_REC_HOUSEHOLD:
        rc = pd_household_validate(rec, err);
        if (rc == PD_OK)
            rc = pd_seq_household(&w->seq, rec, err);
        if (rc == PD_OK && (rc = pd_household_encode(&w->line, rec)) != PD_OK)
            pd_error_set(err, rc, "household: record too long");
        break;
    default:
        rc = pd_member_validate(rec, err);
        if (rc == PD_OK)
            rc = pd_seq_member(&w->seq, rec, err);
        if (rc == PD_OK && (rc = pd_member_encode(&w->line, rec)) != PD_OK)
            pd_error_set(err, rc, "member: record too long");
        break;
    }
    if (rc == PD_OK)
        rc = writer_deflate(w, w->line.p, w->line.len, Z_NO_FLUSH, err);
    if (rc != PD_OK)
        w->failed = true;
    return rc;
}

int pd_prelist_writer_shape(pd_prelist_writer *w, const pd_prelist_shape *s, pd_error *err)
{
    return writer_add(w, PD_REC_SHAPE, s, err);
}
int pd_prelist_writer_household(pd_prelist_writer *w, const pd_prelist_household *h,
                                pd_error *err)
{
    return writer_add(w, PD_REC_HOUSEHOLD, h, err);
}
int pd_prelist_writer_member(pd_prelist_writer *w, const pd_prelist_member *m, pd_error *err)
{
    return writer_add(w, PD_REC_MEMBER, m, err);
}

static int wh_shape(void *ud, const pd_prelist_shape *s, pd_error *err)
{
    return pd_prelist_writer_shape(ud, s, err);
}
static int wh_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    return pd_prelist_writer_household(ud, h, err);
}
static int wh_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    return pd_prelist_writer_member(ud, m, err);
}

pd_prelist_handler pd_prelist_writer_handler(pd_prelist_writer *w)
{
    return (pd_prelist_handler){wh_shape, wh_household, wh_member, w};
}

static int fsync_dir_of(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return -1;
    char *slash = strrchr(dir, '/');
    const char *d = ".";
    if (slash == dir)
        d = "/";
    else if (slash) {
        *slash = '\0';
        d = dir;
    }
    int fd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = -1;
    if (fd >= 0) {
        rc = fsync(fd);
        close(fd);
    }
    free(dir);
    return rc;
}

int pd_prelist_writer_finish(pd_prelist_writer *w, pd_prelist_info *info, pd_error *err)
{
    if (w->failed || w->fd < 0)
        return pd_error_set(err, PD_ERR_STATE, "%s: the writer failed earlier", w->path);
    int rc = pd_seq_end(&w->seq, err);
    if (rc == PD_OK)
        rc = writer_deflate(w, "", 0, Z_FINISH, err);
    if (rc != PD_OK)
        goto fail;
    w->info.shapes = w->seq.shapes;
    w->info.households = w->seq.households;
    w->info.members = w->seq.members;
    crypto_generichash_final(&w->hs, w->info.payload_hash, PD_HASH_BYTES);
    rc = header_bounds(&w->info, w->path, err);
    if (rc != PD_OK)
        goto fail;
    uint8_t prefix[PD_PRELIST_PREFIX_BYTES];
    pd_prelist_header_encode(&w->info, prefix);
    crypto_sign_detached(prefix + PD_PRELIST_HEADER_BYTES, NULL, prefix, PD_PRELIST_HEADER_BYTES,
                         w->sk);
    package_id(prefix, w->info.id);
    if (pwrite(w->fd, prefix, sizeof prefix, 0) != (ssize_t)sizeof prefix || fsync(w->fd) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: write: %s", w->tmp, strerror(errno));
        goto fail;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: close: %s", w->tmp, strerror(errno));
        goto fail;
    }
    if (rename(w->tmp, w->path) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: rename to %s: %s", w->tmp, w->path,
                          strerror(errno));
        goto fail;
    }
    fsync_dir_of(w->path);
    free(w->tmp);
    w->tmp = NULL; /* nothing left to remove */
    if (info)
        *info = w->info;
    w->failed = true; /* finished: no more records */
    return PD_OK;
fail:
    w->failed = true;
    return rc;
}

void pd_prelist_writer_free(pd_prelist_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp)
        unlink(w->tmp);
    if (w->z_ready)
        deflateEnd(&w->z);
    sodium_memzero(w->sk, sizeof w->sk);
    pd_buf_free(&w->line);
    free(w->path);
    free(w->tmp);
    free(w);
}

/* ---- reader ---------------------------------------------------------------------------------- */

struct pd_prelist_reader {
    char name[256];
    FILE *f;
    const uint8_t *mem;
    size_t mem_len;
    pd_prelist_info info;
    bool ran;
};

/* Read exactly n bytes of payload at the current position (file) or offset (memory). */
static size_t src_read(pd_prelist_reader *r, size_t off, uint8_t *buf, size_t n)
{
    if (r->f)
        return fread(buf, 1, n, r->f);
    if (off >= r->mem_len)
        return 0;
    if (n > r->mem_len - off)
        n = r->mem_len - off;
    memcpy(buf, r->mem + off, n);
    return n;
}

static int reader_open(pd_prelist_reader *r, uint64_t total_size, const uint8_t *prefix,
                       const uint8_t pinned_pk[PD_PUBKEY_BYTES], pd_error *err)
{
    const char *name = r->name;
    if (!pinned_pk)
        return pd_error_set(err, PD_ERR_INVALID, "%s: no issuer key to verify with", name);
    if (total_size < PD_PRELIST_PREFIX_BYTES)
        return pd_error_set(err, total_size >= 4 && memcmp(prefix, PD_PRELIST_MAGIC, 4) != 0
                                     ? PD_ERR_INVALID
                                     : PD_ERR_CORRUPT,
                            "%s: %llu bytes: too short for a prelist package (header and "
                            "signature are %d)",
                            name, (unsigned long long)total_size, PD_PRELIST_PREFIX_BYTES);
    int rc = pd_prelist_header_decode(&r->info, prefix, name, err);
    if (rc != PD_OK)
        return rc;
    rc = header_bounds(&r->info, name, err);
    if (rc != PD_OK)
        return rc;
    if (sodium_memcmp(r->info.issuer_pk, pinned_pk, PD_PUBKEY_BYTES) != 0) {
        char a[17], b[17];
        pd_prelist_fingerprint(r->info.issuer_pk, a);
        pd_prelist_fingerprint(pinned_pk, b);
        return pd_error_set(err, PD_ERR_SIGNATURE,
                            "%s: issued by key %s…, not by the pinned issuer key %s…", name, a, b);
    }
    if (crypto_sign_verify_detached(prefix + PD_PRELIST_HEADER_BYTES, prefix,
                                    PD_PRELIST_HEADER_BYTES, pinned_pk) != 0)
        return pd_error_set(err, PD_ERR_SIGNATURE,
                            "%s: signature does not verify with the pinned issuer key", name);
    pd_error area_err = {0};
    if (pd_prelist_area_id_check(r->info.area, NULL, &area_err) != PD_OK)
        return pd_error_set(err, PD_ERR_INVALID, "%s: %s", name, area_err.msg);
    uint64_t want = PD_PRELIST_PREFIX_BYTES + r->info.compressed_size;
    if (total_size < want)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: truncated: %llu bytes, the header says %llu",
                            name, (unsigned long long)total_size, (unsigned long long)want);
    if (total_size > want)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: %llu bytes of trailing garbage after the "
                            "payload", name, (unsigned long long)(total_size - want));
    package_id(prefix, r->info.id);
    /* hash pass over the compressed bytes */
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, PD_HASH_BYTES);
    uint8_t hash[PD_HASH_BYTES];
    if (r->f) {
        uint8_t *buf = malloc(CHUNK);
        if (!buf)
            return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        uint64_t left = r->info.compressed_size;
        while (left) {
            size_t want_n = left < CHUNK ? (size_t)left : CHUNK;
            size_t got = fread(buf, 1, want_n, r->f);
            if (got != want_n) {
                free(buf);
                return pd_error_set(err, PD_ERR_IO, "%s: read failed", name);
            }
            crypto_generichash_update(&hs, buf, got);
            left -= got;
        }
        free(buf);
    } else {
        crypto_generichash_update(&hs, r->mem + PD_PRELIST_PREFIX_BYTES,
                                  (size_t)r->info.compressed_size);
    }
    crypto_generichash_final(&hs, hash, sizeof hash);
    if (sodium_memcmp(hash, r->info.payload_hash, PD_HASH_BYTES) != 0)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "%s: the payload's hash does not match the signed header", name);
    return PD_OK;
}

int pd_prelist_reader_open(pd_prelist_reader **out, const char *path,
                           const uint8_t pinned_pk[PD_PUBKEY_BYTES], pd_error *err)
{
    *out = NULL;
    pd_prelist_reader *r = calloc(1, sizeof *r);
    if (!r)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    snprintf(r->name, sizeof r->name, "%s", path);
    int rc;
    r->f = fopen(path, "rb");
    struct stat st;
    if (!r->f) {
        rc = pd_error_set(err, errno == ENOENT ? PD_ERR_NOTFOUND : PD_ERR_IO, "%s: %s", path,
                          strerror(errno));
        goto fail;
    }
    if (fstat(fileno(r->f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: not a regular file", path);
        goto fail;
    }
    uint8_t prefix[PD_PRELIST_PREFIX_BYTES] = {0};
    size_t got = fread(prefix, 1, sizeof prefix, r->f);
    if (got < sizeof prefix && (uint64_t)st.st_size >= sizeof prefix) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: read failed", path);
        goto fail;
    }
    rc = reader_open(r, (uint64_t)st.st_size, prefix, pinned_pk, err);
    if (rc != PD_OK)
        goto fail;
    *out = r;
    return PD_OK;
fail:
    pd_prelist_reader_free(r);
    return rc;
}

int pd_prelist_reader_open_mem(pd_prelist_reader **out, const uint8_t *buf, size_t len,
                               const uint8_t pinned_pk[PD_PUBKEY_BYTES], pd_error *err)
{
    *out = NULL;
    pd_prelist_reader *r = calloc(1, sizeof *r);
    if (!r)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    snprintf(r->name, sizeof r->name, "(package in memory)");
    r->mem = buf;
    r->mem_len = len;
    uint8_t prefix[PD_PRELIST_PREFIX_BYTES] = {0};
    memcpy(prefix, buf, len < sizeof prefix ? len : sizeof prefix);
    int rc = reader_open(r, len, prefix, pinned_pk, err);
    if (rc != PD_OK) {
        pd_prelist_reader_free(r);
        return rc;
    }
    *out = r;
    return PD_OK;
}

const pd_prelist_info *pd_prelist_reader_info(const pd_prelist_reader *r)
{
    return &r->info;
}

void pd_prelist_reader_free(pd_prelist_reader *r)
{
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    free(r);
}

/* State of one run over the payload. */
typedef struct run {
    pd_prelist_reader *r;
    const pd_prelist_handler *h;
    pd_seq seq;
    char *line;
    size_t line_len;
    uint64_t lineno;
} run;

/* Prefix err's message with the package name and record number. */
static int record_error(run *st, int rc, pd_error *err)
{
    if (!err)
        return rc;
    char inner[PD_ERRMSG_MAX];
    snprintf(inner, sizeof inner, "%s", err->msg[0] ? err->msg : pd_strerror(rc));
    return pd_error_set(err, rc, "%s: record %llu: %s", st->r->name,
                        (unsigned long long)st->lineno, inner);
}

static int handle_line(run *st, const char *line, size_t len, pd_error *err)
{
    st->lineno++;
    pd_rec rec;
    pd_error_clear(err);
    int rc = pd_rec_decode(&rec, line, len, err);
    if (rc != PD_OK)
        return record_error(st, rc, err);
    const pd_prelist_handler *h = st->h;
    switch (rec.kind) {
    case PD_REC_SHAPE:
        rc = pd_seq_shape(&st->seq, &rec.u.shape, err);
        if (rc == PD_OK && h && h->shape)
            rc = h->shape(h->ud, &rec.u.shape, err);
        break;
    case PD_REC_HOUSEHOLD:
        rc = pd_seq_household(&st->seq, &rec.u.hh, err);
        if (rc == PD_OK && h && h->household)
            rc = h->household(h->ud, &rec.u.hh, err);
        break;
    default:
        rc = pd_seq_member(&st->seq, &rec.u.m, err);
        if (rc == PD_OK && h && h->member)
            rc = h->member(h->ud, &rec.u.m, err);
        break;
    }
    pd_rec_clear(&rec);
    if (rc != PD_OK)
        return record_error(st, rc, err);
    return PD_OK;
}

/* Split inflated bytes into lines; each complete line is handled at once. */
static int feed(run *st, const uint8_t *p, size_t n, pd_error *err)
{
    while (n) {
        const uint8_t *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (st->line_len + take > PD_PRELIST_MAX_LINE) {
            st->lineno++;
            return pd_error_set(err, PD_ERR_TOOBIG, "%s: record %llu is longer than %u bytes",
                                st->r->name, (unsigned long long)st->lineno,
                                PD_PRELIST_MAX_LINE);
        }
        memcpy(st->line + st->line_len, p, take);
        st->line_len += take;
        if (!nl)
            return PD_OK; /* a partial line: the rest comes with the next chunk */
        int rc = handle_line(st, st->line, st->line_len, err);
        st->line_len = 0;
        if (rc != PD_OK)
            return rc;
        p = nl + 1;
        n -= take + 1;
    }
    return PD_OK;
}

int pd_prelist_reader_run(pd_prelist_reader *r, const pd_prelist_handler *h, pd_error *err)
{
    if (r->ran)
        return pd_error_set(err, PD_ERR_STATE, "%s: already read", r->name);
    r->ran = true;
    run st = {.r = r, .h = h};
    pd_prelist_area_id_check(r->info.area, &st.seq.area, NULL);
    st.seq.limit_to_declared = true;
    st.seq.declared_shapes = r->info.shapes;
    st.seq.declared_households = r->info.households;
    st.seq.declared_members = r->info.members;
    int rc = PD_OK;
    bool z_ready = false;
    z_stream z = {0};
    uint8_t *in = malloc(CHUNK), *out = malloc(CHUNK);
    st.line = malloc(PD_PRELIST_MAX_LINE);
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, PD_HASH_BYTES);
    if (!in || !out || !st.line) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (r->f && fseek(r->f, PD_PRELIST_PREFIX_BYTES, SEEK_SET) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: seek failed", r->name);
        goto out;
    }
    if (inflateInit(&z) != Z_OK) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "%s: inflateInit failed", r->name);
        goto out;
    }
    z_ready = true;
    uint64_t left = r->info.compressed_size, total = 0;
    size_t off = PD_PRELIST_PREFIX_BYTES;
    bool end = false;
    while (!end) {
        if (z.avail_in == 0 && left) {
            size_t want = left < CHUNK ? (size_t)left : CHUNK;
            size_t got = src_read(r, off, in, want);
            if (got != want) {
                rc = pd_error_set(err, PD_ERR_IO, "%s: read failed", r->name);
                goto out;
            }
            crypto_generichash_update(&hs, in, got);
            off += got;
            left -= got;
            z.next_in = in;
            z.avail_in = (uInt)got;
        }
        z.next_out = out;
        z.avail_out = CHUNK;
        int zrc = inflate(&z, Z_NO_FLUSH);
        size_t produced = CHUNK - z.avail_out;
        if (zrc == Z_STREAM_END)
            end = true;
        else if (zrc == Z_BUF_ERROR && z.avail_in == 0 && left == 0) {
            rc = pd_error_set(err, PD_ERR_CORRUPT, "%s: the compressed payload is cut short",
                              r->name);
            goto out;
        } else if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
            rc = pd_error_set(err, zrc == Z_MEM_ERROR ? PD_ERR_NOMEM : PD_ERR_CORRUPT,
                              "%s: the compressed payload is damaged (%s)", r->name,
                              z.msg ? z.msg : "inflate failed");
            goto out;
        }
        total += produced;
        if (total > r->info.inflated_size) {
            rc = pd_error_set(err, PD_ERR_TOOBIG,
                              "%s: the payload inflates past the %llu bytes its header declares "
                              "(a decompression bomb?)",
                              r->name, (unsigned long long)r->info.inflated_size);
            goto out;
        }
        rc = feed(&st, out, produced, err);
        if (rc != PD_OK)
            goto out;
    }
    if (z.avail_in != 0 || left != 0) {
        rc = pd_error_set(err, PD_ERR_CORRUPT,
                          "%s: bytes after the end of the compressed stream", r->name);
        goto out;
    }
    if (total != r->info.inflated_size) {
        rc = pd_error_set(err, PD_ERR_CORRUPT,
                          "%s: the payload inflates to %llu bytes; the header declares %llu",
                          r->name, (unsigned long long)total,
                          (unsigned long long)r->info.inflated_size);
        goto out;
    }
    if (st.line_len) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "%s: the last record has no newline", r->name);
        goto out;
    }
    uint8_t hash[PD_HASH_BYTES];
    crypto_generichash_final(&hs, hash, sizeof hash);
    if (sodium_memcmp(hash, r->info.payload_hash, PD_HASH_BYTES) != 0) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "%s: the file changed while it was read",
                          r->name);
        goto out;
    }
    pd_error_clear(err);
    rc = pd_seq_end(&st.seq, err);
    if (rc != PD_OK)
        rc = record_error(&st, rc, err);
out:
    if (z_ready)
        inflateEnd(&z);
    free(in);
    free(out);
    free(st.line);
    return rc;
}

/* ---- public read / verify / peek ------------------------------------------------------------- */

int pd_prelist_read(const char *path, const uint8_t pinned_pk[PD_PUBKEY_BYTES],
                    const pd_prelist_handler *handler, pd_prelist_info *info, pd_error *err)
{
    pd_prelist_reader *r;
    int rc = pd_prelist_reader_open(&r, path, pinned_pk, err);
    if (rc != PD_OK)
        return rc;
    rc = pd_prelist_reader_run(r, handler, err);
    if (rc == PD_OK && info)
        *info = r->info;
    pd_prelist_reader_free(r);
    return rc;
}

int pd_prelist_read_mem(const uint8_t *buf, size_t len, const uint8_t pinned_pk[PD_PUBKEY_BYTES],
                        const pd_prelist_handler *handler, pd_prelist_info *info, pd_error *err)
{
    pd_prelist_reader *r;
    int rc = pd_prelist_reader_open_mem(&r, buf, len, pinned_pk, err);
    if (rc != PD_OK)
        return rc;
    rc = pd_prelist_reader_run(r, handler, err);
    if (rc == PD_OK && info)
        *info = r->info;
    pd_prelist_reader_free(r);
    return rc;
}

int pd_prelist_verify(const char *path, const uint8_t pinned_pk[PD_PUBKEY_BYTES],
                      pd_prelist_info *info, pd_error *err)
{
    return pd_prelist_read(path, pinned_pk, NULL, info, err);
}

int pd_prelist_verify_mem(const uint8_t *buf, size_t len, const uint8_t pinned_pk[PD_PUBKEY_BYTES],
                          pd_prelist_info *info, pd_error *err)
{
    return pd_prelist_read_mem(buf, len, pinned_pk, NULL, info, err);
}

int pd_prelist_peek(const char *path, pd_prelist_info *info, pd_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pd_error_set(err, errno == ENOENT ? PD_ERR_NOTFOUND : PD_ERR_IO, "%s: %s", path,
                            strerror(errno));
    uint8_t prefix[PD_PRELIST_PREFIX_BYTES];
    size_t got = fread(prefix, 1, sizeof prefix, f);
    fclose(f);
    if (got < sizeof prefix)
        return pd_error_set(err, got >= 4 && memcmp(prefix, PD_PRELIST_MAGIC, 4) != 0
                                     ? PD_ERR_INVALID
                                     : PD_ERR_CORRUPT,
                            "%s: too short for a prelist package", path);
    int rc = pd_prelist_header_decode(info, prefix, path, err);
    if (rc == PD_OK)
        package_id(prefix, info->id);
    return rc;
}

/* ---- raw packing (tests, fuzzing) ------------------------------------------------------------ */

int pd_prelist_pack_compressed(const uint8_t *z, size_t zlen, pd_prelist_info *hdr,
                               const uint8_t sk[PD_SECKEY_BYTES], uint8_t **out, size_t *out_len,
                               pd_error *err)
{
    size_t total;
    if (!pd_size_add(zlen, PD_PRELIST_PREFIX_BYTES, &total))
        return pd_error_set(err, PD_ERR_TOOBIG, "too big");
    uint8_t *p = malloc(total);
    if (!p)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    hdr->version = PD_PRELIST_VERSION;
    crypto_sign_ed25519_sk_to_pk(hdr->issuer_pk, sk);
    hdr->compressed_size = zlen;
    crypto_generichash(hdr->payload_hash, PD_HASH_BYTES, z, zlen, NULL, 0);
    pd_prelist_header_encode(hdr, p);
    pd_prelist_resign(p, sk);
    package_id(p, hdr->id);
    if (zlen)
        memcpy(p + PD_PRELIST_PREFIX_BYTES, z, zlen);
    *out = p;
    *out_len = total;
    return PD_OK;
}

int pd_prelist_pack_mem(const uint8_t *payload, size_t len, pd_prelist_info *hdr,
                        const uint8_t sk[PD_SECKEY_BYTES], uint8_t **out, size_t *out_len,
                        pd_error *err)
{
    uLongf zlen = compressBound((uLong)len);
    uint8_t *z = malloc(zlen ? zlen : 1);
    if (!z)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    if (compress2(z, &zlen, payload, (uLong)len, Z_DEFAULT_COMPRESSION) != Z_OK) {
        free(z);
        return pd_error_set(err, PD_ERR_INTERNAL, "compress failed");
    }
    hdr->inflated_size = len;
    int rc = pd_prelist_pack_compressed(z, zlen, hdr, sk, out, out_len, err);
    free(z);
    return rc;
}
