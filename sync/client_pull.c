/*
 * client_pull.c — the download side of a sync: the first time the prelist package of the
 * device's area, then deltas since the cursor (PROTOCOL.md §6).
 *
 * The prelist is downloaded into the encrypted store (table prelist_part, one row a piece of at
 * most PART_PIECE bytes), never into a plain file: it holds names and NIKs. Its ETag and the
 * Pd-Cursor that came with it are saved in sync_state as soon as the first byte arrives, so a cut
 * download (or a killed program, which loses at most the piece still in memory) resumes with
 * `Range: bytes=<held>-` and `If-Range: <etag>`: a 206 appends, a 200 (the package changed
 * meanwhile) starts over. The finished package is read back into guarded memory, must hash to
 * its ETag, then pd_prelist_import_mem loads it with the pinned server key as issuer, and the
 * cursor is set and the pieces deleted in one transaction. A plain <home>/prelist.part left by
 * an older version is removed when a sync starts (pd_client_forget_plain_part).
 *
 * A delta page is applied in ONE transaction together with its new cursor: a page that fails
 * validation anywhere changes nothing. Each household and member row is validated by the
 * prelist's own record validator (pd_rec_decode: the same checks as a package line) plus the
 * local-state columns a package lacks (status, outcome, source). The merge follows the prelist
 * import's rule: a record is updated only when its rev rose, and a field with a local change the
 * server has not acknowledged yet (an op in no batch, or in a batch without an acknowledged
 * receipt) keeps its local value; the server's goes to server_diff. So the device's view never
 * jumps back over its own unsent work (PowerSync's rule; sync uploads before it pulls).
 *
 * SQL here is built once per kind from the prelist's static field table (pd_rec_field_name):
 * column names never come from the network; values are always bound.
 */
#include "client_internal.h"
#include "json_text.h"
#include "pd_korcam.h"
#include "prelist_internal.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PART_LEGACY "prelist.part" /* where versions before schema 4 kept it, in plain */
#define PART_PIECE (256u << 10)    /* bytes gathered in memory before they go into the store */
#define SQL_MAX 2048
#define MAX_COLS 48

/* ---- the prelist ------------------------------------------------------------------------------
 */

/* The download so far: the rows of prelist_part (schema/device/004_prelist_part.sql). */
static const char part_held_sql[] =
    "SELECT coalesce(sum(length(data)), 0), coalesce(max(off + length(data)), 0) FROM "
    "prelist_part";
static const char part_add_sql[] = "INSERT INTO prelist_part (off, data) VALUES (?1, ?2)";
static const char part_read_sql[] = "SELECT off, data FROM prelist_part ORDER BY off";
static const char part_clear_sql[] = "DELETE FROM prelist_part";

typedef struct part_sink {
    pd_store *store;
    pd_http_resp *r;
    uint64_t start; /* the bytes held when the request went out */
    uint64_t off;   /* held + buffered */
    int64_t total;  /* the whole package, when the answer said */
    uint8_t *buf;   /* PART_PIECE bytes: what arrived since the last flush, from off - len */
    size_t len;
    bool started, bad_range, no_etag;
} part_sink;

static int part_exec(pd_store *store, const char *sql)
{
    int rc = sqlite3_exec(pd_store_sqlite(store), sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? PD_OK : pd_store_fail_sqlite(store, rc, "prelist_part");
}

/* The bytes held (contiguous from 0; a gap, which no code path makes, starts over). */
static int part_held(pd_store *store, uint64_t *held)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store), part_held_sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t sum = sqlite3_column_int64(st, 0), end = sqlite3_column_int64(st, 1);
        *held = sum == end ? (uint64_t)sum : 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? PD_OK : pd_store_fail_sqlite(store, rc, "prelist_part");
}

/* Store what is buffered as the next piece, in its own transaction (it survives a kill). */
static int part_flush(part_sink *s)
{
    if (s->len == 0)
        return PD_OK;
    int rc = pd_store_begin(s->store);
    if (rc != PD_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(pd_store_sqlite(s->store), part_add_sql, -1, &st, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (int64_t)(s->off - s->len));
        sqlite3_bind_blob(st, 2, s->buf, (int)s->len, SQLITE_STATIC);
        src = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK
                                              : sqlite3_errcode(pd_store_sqlite(s->store));
    }
    sqlite3_finalize(st);
    if (src != SQLITE_OK) {
        rc = pd_store_fail_sqlite(s->store, src, "prelist_part");
        pd_store_rollback(s->store);
        return rc;
    }
    sodium_memzero(s->buf, s->len);
    s->len = 0;
    return pd_store_commit(s->store);
}

/* "bytes A-B/T" (or "bytes *\/T"): A (or -1) and T. */
static bool parse_content_range(const char *s, int64_t *first, int64_t *total)
{
    if (strncmp(s, "bytes ", 6) != 0)
        return false;
    s += 6;
    char *end;
    if (*s == '*') {
        *first = -1;
        end = (char *)s + 1;
    } else {
        errno = 0;
        long long a = strtoll(s, &end, 10);
        if (errno || end == s || *end != '-' || a < 0)
            return false;
        *first = a;
        s = end + 1;
        strtoll(s, &end, 10);
        if (end == s)
            return false;
    }
    if (*end != '/')
        return false;
    s = end + 1;
    errno = 0;
    long long t = strtoll(s, &end, 10);
    if (errno || end == s || t < 0)
        return false;
    *total = t;
    return true;
}

static int part_write(void *ctx, const uint8_t *p, size_t n)
{
    part_sink *s = ctx;
    if (!s->started) {
        s->started = true;
        pd_http_resp *r = s->r;
        if (r->content_range[0]) {
            int64_t first, total;
            if (!parse_content_range(r->content_range, &first, &total) ||
                first != (int64_t)s->start) {
                s->bad_range = true;
                return -1;
            }
            s->total = total;
            s->off = s->start;
        } else {
            /* The whole package (first time, or it changed since): start over, and remember
             * what resumes it before keeping a byte of it. */
            if (!r->etag[0] || !r->has_cursor) {
                s->no_etag = true;
                return -1;
            }
            s->off = 0;
            s->total = r->content_length;
            if (pd_store_begin(s->store) != PD_OK)
                return -1;
            if (part_exec(s->store, part_clear_sql) != PD_OK ||
                pd_sync_state_set_text(s->store, "prelist.etag", r->etag) != PD_OK ||
                pd_sync_state_set_int(s->store, "prelist.cursor", r->cursor) != PD_OK) {
                pd_store_rollback(s->store);
                return -1;
            }
            if (pd_store_commit(s->store) != PD_OK)
                return -1;
        }
    }
    if (s->total >= 0 && (uint64_t)s->total < s->off + n)
        return -1; /* more than announced */
    while (n > 0) {
        size_t take = PART_PIECE - s->len < n ? PART_PIECE - s->len : n;
        memcpy(s->buf + s->len, p, take);
        s->len += take;
        s->off += take;
        p += take;
        n -= take;
        if (s->len == PART_PIECE && part_flush(s) != PD_OK)
            return -1;
    }
    return 0;
}

static int clear_prelist_state(pd_store *store)
{
    int rc = pd_store_begin(store);
    if (rc != PD_OK)
        return rc;
    if ((rc = part_exec(store, part_clear_sql)) != PD_OK ||
        (rc = pd_sync_state_del(store, "prelist.etag")) != PD_OK ||
        (rc = pd_sync_state_del(store, "prelist.cursor")) != PD_OK) {
        pd_store_rollback(store);
        return rc;
    }
    return pd_store_commit(store);
}

int pd_client_forget_plain_part(pd_store *store)
{
    const char *home = pd_store_home(store);
    size_t n = strlen(home) + sizeof PART_LEGACY + 2;
    char *path = malloc(n);
    if (!path)
        return pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    snprintf(path, n, "%s/%s", home, PART_LEGACY);
    int rc = PD_OK;
    if (unlink(path) != 0 && errno != ENOENT)
        rc = pd_store_fail(store, PD_ERR_IO, "%s: cannot remove it: %s", PART_LEGACY,
                           strerror(errno));
    free(path);
    return rc;
}

/* Download the package into prelist_part (resuming what is there). */
static int download_prelist(pd_store *store, pd_http *h, pd_sync_stats *stats)
{
    char url[PD_HTTP_URL_MAX];
    pd_http_url(h, "/v1/prelist", url);
    uint8_t *buf = sodium_malloc(PART_PIECE); /* guarded, wiped when freed */
    if (!buf)
        return pd_error_set(&h->err, PD_ERR_NOMEM, "out of memory");
    unsigned attempt = 0;
    int rc;
    for (;;) {
        char etag[160] = "";
        uint64_t size = 0;
        if ((rc = part_held(store, &size)) != PD_OK)
            break;
        if (pd_sync_state_get_text(store, "prelist.etag", etag, sizeof etag) != PD_OK)
            etag[0] = '\0';
        if (!etag[0] && size > 0) {
            /* nothing says what the bytes there are: start over */
            if ((rc = part_exec(store, part_clear_sql)) != PD_OK)
                break;
            size = 0;
        }
        char range[64], ifrange[200];
        const char *hdrs[3] = {NULL, NULL, NULL};
        if (size > 0) {
            snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)size);
            snprintf(ifrange, sizeof ifrange, "If-Range: %s", etag);
            hdrs[0] = range;
            hdrs[1] = ifrange;
        }
        pd_http_resp r;
        part_sink sink = {
            .store = store, .r = &r, .start = size, .off = size, .total = -1, .buf = buf};
        pd_http_req req = {.method = "GET",
                           .url = url,
                           .headers = hdrs,
                           .sign = true,
                           .sink = part_write,
                           .sink_ctx = &sink,
                           .phase = PD_SYNC_PHASE_PRELIST,
                           .progress_base = size};
        rc = pd_http_once(h, &req, &r);
        /* keep what arrived, also (above all) when the link broke */
        int frc = sink.bad_range || sink.no_etag ? PD_OK : part_flush(&sink);
        if (sink.bad_range || sink.no_etag) {
            pd_http_resp_free(&r);
            clear_prelist_state(store);
            if (sink.no_etag) {
                rc = pd_error_set(&h->err, PD_ERR_PROTOCOL,
                                  "GET /v1/prelist: the answer has no ETag or Pd-Cursor");
                break;
            }
            if (++attempt >= h->cfg.max_attempts) {
                rc = pd_error_set(&h->err, PD_ERR_PROTOCOL,
                                  "GET /v1/prelist: the server keeps answering another range");
                break;
            }
            continue;
        }
        if (frc != PD_OK) {
            pd_http_resp_free(&r);
            rc = pd_error_set(&h->err, frc, "the prelist download cannot be kept: %s",
                              pd_store_errmsg(store));
            break;
        }
        bool progressed = sink.off > size;
        if (rc == PD_ERR_NETWORK || (rc == PD_OK && pd_http_transient(r.status))) {
            int64_t ra = r.retry_after_s;
            pd_http_resp_free(&r);
            if (progressed)
                attempt = 0;
            if (++attempt >= h->cfg.max_attempts) {
                if (rc == PD_OK)
                    rc = pd_error_set(&h->err, PD_ERR_BUSY, "GET /v1/prelist: the server is busy");
                break;
            }
            pd_http_backoff(h, attempt - 1, ra);
            continue;
        }
        if (rc != PD_OK) {
            pd_http_resp_free(&r);
            break;
        }
        if (r.status == 401 && pd_http_auth_retry(h, &r)) {
            pd_http_resp_free(&r);
            if (++attempt >= h->cfg.max_attempts) {
                rc = pd_error_set(&h->err, PD_ERR_DENIED, "GET /v1/prelist: refused");
                break;
            }
            continue; /* the clock corrected, or a resent copy refused: once more */
        }
        if (r.status == 416) {
            int64_t first, total;
            bool ok = parse_content_range(r.content_range, &first, &total);
            pd_http_resp_free(&r);
            if (ok && (uint64_t)total == size) {
                rc = PD_OK; /* it was all here already */
                break;
            }
            clear_prelist_state(store);
            if (++attempt >= h->cfg.max_attempts) {
                rc = pd_error_set(&h->err, PD_ERR_PROTOCOL, "GET /v1/prelist: range refused");
                break;
            }
            continue;
        }
        if (r.status == 404) {
            /* no_area: this person has no assigned area (an admin, say): nothing to pull */
            pd_http_resp_free(&r);
            rc = PD_ERR_NOTFOUND;
            break;
        }
        if (r.status != 200 && r.status != 206) {
            rc = pd_http_fail_status(h, "GET /v1/prelist", &r);
            pd_http_resp_free(&r);
            break;
        }
        pd_http_resp_free(&r);
        if (!sink.started) {
            rc = pd_error_set(&h->err, PD_ERR_PROTOCOL, "GET /v1/prelist: an empty package");
            break;
        }
        if (sink.total >= 0 && sink.off != (uint64_t)sink.total) {
            if (++attempt >= h->cfg.max_attempts) {
                rc = pd_error_set(&h->err, PD_ERR_NETWORK, "GET /v1/prelist: short answer");
                break;
            }
            continue;
        }
        (void)stats;
        rc = PD_OK;
        break;
    }
    sodium_free(buf);
    return rc;
}

/* The whole download, from the store into guarded memory (*out: sodium_malloc'd, at least 1
 * byte; the caller sodium_free's it). */
static int part_load(pd_store *store, pd_http *h, uint8_t **out, size_t *len)
{
    uint64_t held = 0;
    int rc = part_held(store, &held);
    if (rc != PD_OK)
        return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    if (held == 0 || held > PD_PRELIST_PREFIX_BYTES + (uint64_t)PD_PRELIST_MAX_COMPRESSED)
        return pd_error_set(&h->err, PD_ERR_CORRUPT, "the downloaded prelist has %llu bytes",
                            (unsigned long long)held);
    uint8_t *p = sodium_malloc((size_t)held);
    if (!p)
        return pd_error_set(&h->err, PD_ERR_NOMEM, "no memory for a prelist of %llu bytes",
                            (unsigned long long)held);
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    int src = sqlite3_prepare_v2(pd_store_sqlite(store), part_read_sql, -1, &st, NULL);
    while (st && (src = sqlite3_step(st)) == SQLITE_ROW) {
        size_t k = (size_t)sqlite3_column_bytes(st, 1);
        if ((uint64_t)sqlite3_column_int64(st, 0) != n || k > held - n) {
            src = SQLITE_CORRUPT;
            break;
        }
        memcpy(p + n, sqlite3_column_blob(st, 1), k);
        n += k;
    }
    sqlite3_finalize(st);
    if (src != SQLITE_DONE || n != held) {
        sodium_free(p);
        return pd_error_set(&h->err, PD_ERR_CORRUPT, "the downloaded prelist cannot be read back");
    }
    *out = p;
    *len = n;
    return PD_OK;
}

static int pull_prelist(pd_store *store, pd_http *h, pd_sync_stats *stats, int64_t *cursor)
{
    uint8_t *pkg = NULL;
    size_t len = 0;
    int rc = download_prelist(store, h, stats);
    if (rc == PD_ERR_NOTFOUND) {
        clear_prelist_state(store);
        return rc; /* the caller pulls nothing */
    }
    if (rc != PD_OK)
        return rc;
    char etag[160], want[2 * PD_HASH_BYTES + 1], got[2 * PD_HASH_BYTES + 1];
    int64_t pcursor = 0;
    if (pd_sync_state_get_text(store, "prelist.etag", etag, sizeof etag) != PD_OK ||
        pd_sync_state_get_int(store, "prelist.cursor", &pcursor) != PD_OK) {
        rc = pd_error_set(&h->err, PD_ERR_STATE, "the prelist download lost its ETag");
        clear_prelist_state(store);
        goto out;
    }
    const char *q = etag[0] == '"' ? etag + 1 : etag;
    size_t qn = strcspn(q, "\"");
    if (qn != 2 * PD_HASH_BYTES) {
        rc = pd_error_set(&h->err, PD_ERR_PROTOCOL, "prelist ETag %s is not a BLAKE2b-256", etag);
        clear_prelist_state(store);
        goto out;
    }
    memcpy(want, q, qn);
    want[qn] = '\0';
    if ((rc = part_load(store, h, &pkg, &len)) != PD_OK) {
        clear_prelist_state(store);
        goto out;
    }
    /* The ETag is "hex BLAKE2b-256 of the package" (PROTOCOL.md §6): of the whole package, or
     * the package's identity (BLAKE2b of its signed header and signature, which commits to the
     * payload through its hash: pd_prelist.h) as the server sends it. */
    char ident[2 * PD_HASH_BYTES + 1] = "";
    pd_http_hash_hex(pkg, len, got);
    if (len >= PD_PRELIST_PREFIX_BYTES)
        pd_http_hash_hex(pkg, PD_PRELIST_PREFIX_BYTES, ident);
    if (strcasecmp(got, want) != 0 && strcasecmp(ident, want) != 0) {
        rc = pd_error_set(&h->err, PD_ERR_CORRUPT,
                          "the downloaded prelist (%zu bytes) does not hash to its ETag: it is "
                          "fetched again next time",
                          len);
        clear_prelist_state(store);
        goto out;
    }
    uint8_t issuer[PD_PUBKEY_BYTES];
    memcpy(issuer, h->sign_pk, sizeof issuer);
    pd_prelist_import_stats st;
    rc = pd_prelist_import_mem(store, pkg, len, issuer, &st);
    if (rc != PD_OK) {
        rc = pd_error_set(&h->err, rc, "prelist import: %s", pd_store_errmsg(store));
        if (rc == PD_ERR_SIGNATURE || rc == PD_ERR_CORRUPT || rc == PD_ERR_INVALID)
            clear_prelist_state(store);
        goto out;
    }
    stats->prelist_imported = true;
    stats->records_pulled += (uint64_t)st.households_added + st.households_updated +
                             st.households_unchanged + st.members_added + st.members_updated +
                             st.members_unchanged;
    stats->fields_kept += st.fields_kept;
    if ((rc = pd_store_begin(store)) == PD_OK) {
        if ((rc = pd_sync_state_set_int(store, "cursor", pcursor)) != PD_OK ||
            (rc = pd_sync_state_del(store, "prelist.etag")) != PD_OK ||
            (rc = pd_sync_state_del(store, "prelist.cursor")) != PD_OK ||
            (rc = part_exec(store, part_clear_sql)) != PD_OK)
            pd_store_rollback(store);
        else
            rc = pd_store_commit(store);
    }
    if (rc != PD_OK) {
        rc = pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
        goto out;
    }
    *cursor = pcursor;
out:
    sodium_free(pkg); /* wipes */
    return rc;
}

/* ---- applying a delta ---------------------------------------------------------------------- */

static const char *const hh_status[] = {"found",        "found_new_head", "moved_within",
                                        "moved_out",    "joined_other",   "not_found",
                                        "all_deceased", "refused",        "new_household"};
static const char *const m_status[] = {"active", "deceased", "moved", "duplicate"};
static const char *const m_outcome[] = {"confirmed", "not_confirmed", "duplicate",
                                        "deceased",  "moved",         "new"};
static const char *const sources[] = {"prelist", "new"};

/* A local-state column a package does not carry. */
typedef struct extra_col {
    const char *name;
    const char *const *allowed;
    size_t n_allowed;
    bool nullable;
} extra_col;

static const extra_col hh_extra[] = {
    {"source", sources, PD_ARRAY_LEN(sources), false},
    {"status", hh_status, PD_ARRAY_LEN(hh_status), true},
};
static const extra_col m_extra[] = {
    {"status", m_status, PD_ARRAY_LEN(m_status), false},
    {"outcome", m_outcome, PD_ARRAY_LEN(m_outcome), true},
};

/* One kind of record: its statements and columns. */
typedef struct kind_stmts {
    pd_rec_kind kind;
    const char *table, *entity;
    const extra_col *extra;
    size_t nextra;
    size_t nfields; /* the package's fields (pd_rec_field_name 0..nfields-1) */
    sqlite3_stmt *sel, *ins, *upd;
} kind_stmts;

typedef struct delta_ctx {
    pd_store *store;
    sqlite3 *db;
    kind_stmts hh, m;
    sqlite3_stmt *pending, *visit_pending, *diff, *fix, *geo_del, *geo_ins;
    pd_sync_stats *stats;
    int64_t now;
    pd_error err;
} delta_ctx;

static const char pending_sql[] =
    "SELECT kind, field FROM op WHERE entity = ?1 AND target = ?2 AND (batch_seq IS NULL OR "
    "NOT EXISTS (SELECT 1 FROM batch b WHERE b.seq = op.batch_seq AND b.state = 'acknowledged' "
    "AND b.author_pk IN (SELECT sign_pk FROM identity)))";
static const char visit_pending_sql[] =
    "SELECT 1 FROM op JOIN visit v ON op.entity = 'visit' AND op.target = v.id WHERE "
    "v.household_id = ?1 AND (op.batch_seq IS NULL OR NOT EXISTS (SELECT 1 FROM batch b WHERE "
    "b.seq = op.batch_seq AND b.state = 'acknowledged' AND b.author_pk IN (SELECT sign_pk FROM "
    "identity))) LIMIT 1";
static const char diff_sql[] =
    "INSERT OR REPLACE INTO server_diff (entity, target, field, server_rev, server_value, "
    "local_value, source, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'delta', ?7)";
static const char fix_sql[] =
    "SELECT 1 FROM visit WHERE household_id = ?1 AND lat IS NOT NULL AND lon IS NOT NULL LIMIT 1";
static const char geo_del_sql[] = "DELETE FROM household_geo WHERE hh_rowid = ?1";
static const char geo_ins_sql[] =
    "INSERT INTO household_geo (hh_rowid, min_lat, max_lat, min_lon, max_lon) "
    "VALUES (?1, ?2, ?2, ?3, ?3)";

static int ctx_sql(delta_ctx *c, int rc, const char *what)
{
    return pd_error_sqlite(&c->err, c->db, rc, what);
}

static int col_name(const kind_stmts *k, size_t i, const char **name)
{
    *name = i < k->nfields ? pd_rec_field_name(k->kind, i) : k->extra[i - k->nfields].name;
    return *name ? PD_OK : PD_ERR_INTERNAL;
}

/* SELECT rowid-ish, every column; INSERT of every column; UPDATE of every column by id. */
static int kind_prepare(delta_ctx *c, kind_stmts *k)
{
    char sel[SQL_MAX], ins[SQL_MAX], vals[SQL_MAX / 2], upd[SQL_MAX];
    size_t n = k->nfields + k->nextra;
    if (n > MAX_COLS)
        return pd_error_set(&c->err, PD_ERR_INTERNAL, "too many columns");
    int sl =
        snprintf(sel, sizeof sel, "SELECT %s", k->kind == PD_REC_HOUSEHOLD ? "hh_rowid" : "rowid");
    int il = snprintf(ins, sizeof ins, "INSERT INTO %s (", k->table);
    int vl = 0;
    int ul = snprintf(upd, sizeof upd, "UPDATE %s SET ", k->table);
    for (size_t i = 0; i < n; i++) {
        const char *name;
        if (col_name(k, i, &name) != PD_OK)
            return pd_error_set(&c->err, PD_ERR_INTERNAL, "field table");
        sl += snprintf(sel + sl, sizeof sel - (size_t)sl, ", %s", name);
        il += snprintf(ins + il, sizeof ins - (size_t)il, "%s%s", i ? ", " : "", name);
        vl += snprintf(vals + vl, sizeof vals - (size_t)vl, "%s?%zu", i ? ", " : "", i + 1);
        ul +=
            snprintf(upd + ul, sizeof upd - (size_t)ul, "%s%s = ?%zu", i ? ", " : "", name, i + 1);
        if ((size_t)sl >= sizeof sel || (size_t)il >= sizeof ins || (size_t)vl >= sizeof vals ||
            (size_t)ul >= sizeof upd)
            return pd_error_set(&c->err, PD_ERR_INTERNAL, "statement too long");
    }
    sl += snprintf(sel + sl, sizeof sel - (size_t)sl, " FROM %s WHERE id = ?1", k->table);
    il += snprintf(ins + il, sizeof ins - (size_t)il, ") VALUES (%s)", vals);
    ul += snprintf(upd + ul, sizeof upd - (size_t)ul, " WHERE id = ?1");
    if ((size_t)sl >= sizeof sel || (size_t)il >= sizeof ins || (size_t)ul >= sizeof upd)
        return pd_error_set(&c->err, PD_ERR_INTERNAL, "statement too long");
    int rc;
    if ((rc = sqlite3_prepare_v2(c->db, sel, -1, &k->sel, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(c->db, ins, -1, &k->ins, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(c->db, upd, -1, &k->upd, NULL)) != SQLITE_OK)
        return ctx_sql(c, rc, "preparing the delta statements");
    return PD_OK;
}

static void kind_finalize(kind_stmts *k)
{
    sqlite3_finalize(k->sel);
    sqlite3_finalize(k->ins);
    sqlite3_finalize(k->upd);
    k->sel = k->ins = k->upd = NULL;
}

static int bind_value(sqlite3_stmt *st, int idx, const pd_value *v)
{
    switch (v->type) {
    case PD_VAL_INT:
        return sqlite3_bind_int64(st, idx, v->i);
    case PD_VAL_REAL:
        return sqlite3_bind_double(st, idx, v->r);
    case PD_VAL_TEXT:
        return sqlite3_bind_text(st, idx, (const char *)v->p, (int)v->len, SQLITE_TRANSIENT);
    default:
        return sqlite3_bind_null(st, idx);
    }
}

static bool same(sqlite3_stmt *sel, int col, const pd_value *v)
{
    int t = sqlite3_column_type(sel, col);
    switch (v->type) {
    case PD_VAL_NULL:
        return t == SQLITE_NULL;
    case PD_VAL_INT:
        return t == SQLITE_INTEGER && sqlite3_column_int64(sel, col) == v->i;
    case PD_VAL_REAL:
        return (t == SQLITE_FLOAT || t == SQLITE_INTEGER) &&
               sqlite3_column_double(sel, col) == v->r;
    default:
        return t == SQLITE_TEXT && (size_t)sqlite3_column_bytes(sel, col) == v->len &&
               memcmp(sqlite3_column_text(sel, col), v->p, v->len) == 0;
    }
}

/* A validated record: the package fields (through pd_rec_decode) and the extras. */
typedef struct rec_in {
    pd_rec rec;
    pd_value extra[4];
    bool extra_given[4];
} rec_in;

static const char *jstr_id(const cJSON *row)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, "id");
    return cJSON_IsString(v) ? v->valuestring : "(no id)";
}

static int decode_row(delta_ctx *c, const kind_stmts *k, const cJSON *row, rec_in *out,
                      size_t index)
{
    memset(out, 0, sizeof *out);
    if (!cJSON_IsObject(row))
        return pd_error_set(&c->err, PD_ERR_PROTOCOL, "delta: %s %zu is not an object", k->entity,
                            index);
    /* The package's fields go through the package's validator; unknown members are ignored
     * (PROTOCOL.md §2), local-state columns are checked here. */
    cJSON *filtered = cJSON_CreateObject();
    if (!filtered || !cJSON_AddStringToObject(filtered, "type", k->entity))
        goto nomem;
    for (size_t i = 0; i < k->nfields; i++) {
        const char *name = pd_rec_field_name(k->kind, i);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, name);
        if (!v)
            continue;
        cJSON *dup = cJSON_Duplicate(v, true);
        if (!dup)
            goto nomem;
        cJSON_AddItemToObject(filtered, name, dup);
    }
    char *line = cJSON_PrintUnformatted(filtered);
    cJSON_Delete(filtered);
    filtered = NULL;
    if (!line)
        goto nomem;
    pd_error e = {0};
    int rc = pd_rec_decode(&out->rec, line, strlen(line), &e);
    cJSON_free(line);
    if (rc != PD_OK) {
        /* the validator's messages name the record */
        return pd_error_set(&c->err, rc == PD_ERR_NOMEM ? rc : PD_ERR_PROTOCOL, "delta: %s", e.msg);
    }
    for (size_t x = 0; x < k->nextra; x++) {
        const extra_col *ec = &k->extra[x];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, ec->name);
        if (!v)
            continue;
        out->extra_given[x] = true;
        if (cJSON_IsNull(v) && ec->nullable) {
            out->extra[x].type = PD_VAL_NULL;
            continue;
        }
        bool ok = false;
        for (size_t a = 0; cJSON_IsString(v) && a < ec->n_allowed; a++)
            if (!strcmp(v->valuestring, ec->allowed[a])) {
                out->extra[x].type = PD_VAL_TEXT;
                out->extra[x].p = (const uint8_t *)ec->allowed[a];
                out->extra[x].len = strlen(ec->allowed[a]);
                ok = true;
            }
        if (!ok) {
            pd_rec_clear(&out->rec);
            return pd_error_set(&c->err, PD_ERR_PROTOCOL,
                                "delta: %s %.40s: %s is not a known value", k->entity, jstr_id(row),
                                ec->name);
        }
    }
    return PD_OK;
nomem:
    cJSON_Delete(filtered);
    return pd_error_set(&c->err, PD_ERR_NOMEM, "out of memory");
}

/* Which columns of (entity, id) hold a local change the server has not acknowledged. */
static int locked_columns(delta_ctx *c, const kind_stmts *k, const char *id,
                          const char *household_id, bool *locked, size_t n, bool *all)
{
    memset(locked, 0, n * sizeof *locked);
    *all = false;
    sqlite3_stmt *st = c->pending;
    sqlite3_bind_text(st, 1, k->entity, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *kind = (const char *)sqlite3_column_text(st, 0);
        const char *field = (const char *)sqlite3_column_text(st, 1);
        if (kind && strcmp(kind, "set") != 0 && strcmp(kind, "end") != 0) {
            *all = true;
            continue;
        }
        for (size_t i = 0; field && i < n; i++) {
            const char *name;
            if (col_name(k, i, &name) == PD_OK && !strcmp(field, name))
                locked[i] = true;
        }
        if (kind && !strcmp(kind, "end")) /* a member ended here: its status and outcome */
            for (size_t i = k->nfields; i < n; i++)
                locked[i] = true;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return ctx_sql(c, rc, "reading pending changes");
    /* A visit not yet acknowledged set the household's status and its members' outcomes. */
    st = c->visit_pending;
    sqlite3_bind_text(st, 1, household_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_ROW) {
        for (size_t i = k->nfields; i < n; i++) {
            const char *name;
            if (col_name(k, i, &name) == PD_OK && strcmp(name, "source") != 0)
                locked[i] = true;
        }
    } else if (rc != SQLITE_DONE) {
        return ctx_sql(c, rc, "reading pending visits");
    }
    return PD_OK;
}

static void value_of(const kind_stmts *k, const rec_in *in, size_t i, pd_value *v, bool *given)
{
    if (i < k->nfields) {
        pd_rec_field_get(k->kind, &in->rec.u, i, v);
        *given = true;
    } else {
        *v = in->extra[i - k->nfields];
        *given = in->extra_given[i - k->nfields];
    }
}

static int step_reset(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int set_geo(delta_ctx *c, int64_t rowid, const char *id, double lat, double lon)
{
    sqlite3_bind_text(c->fix, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(c->fix);
    sqlite3_reset(c->fix);
    sqlite3_clear_bindings(c->fix);
    if (rc == SQLITE_ROW)
        return PD_OK; /* a visit's fix wins */
    if (rc != SQLITE_DONE)
        return ctx_sql(c, rc, "reading visit fixes");
    sqlite3_bind_int64(c->geo_del, 1, rowid);
    if ((rc = step_reset(c->geo_del)) != SQLITE_OK)
        return ctx_sql(c, rc, "household_geo");
    if (isnan(lat) || isnan(lon))
        return PD_OK;
    sqlite3_bind_int64(c->geo_ins, 1, rowid);
    sqlite3_bind_double(c->geo_ins, 2, lat);
    sqlite3_bind_double(c->geo_ins, 3, lon);
    if ((rc = step_reset(c->geo_ins)) != SQLITE_OK)
        return ctx_sql(c, rc, "household_geo");
    return PD_OK;
}

static int apply_row(delta_ctx *c, kind_stmts *k, const cJSON *row, size_t index)
{
    rec_in in;
    int code = decode_row(c, k, row, &in, index);
    if (code != PD_OK)
        return code;
    bool hh = k->kind == PD_REC_HOUSEHOLD;
    const char *id = hh ? in.rec.u.hh.id : in.rec.u.m.id;
    const char *household_id = hh ? in.rec.u.hh.id : in.rec.u.m.household_id;
    int64_t rev = hh ? in.rec.u.hh.rev : in.rec.u.m.rev;
    size_t n = k->nfields + k->nextra;
    sqlite3_stmt *sel = k->sel;
    sqlite3_bind_text(sel, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(sel);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(sel);
        /* New here: every column as the server has it (defaults for extras not given). */
        for (size_t i = 0; i < n; i++) {
            pd_value v;
            bool given;
            value_of(k, &in, i, &v, &given);
            if (!given) {
                const char *name;
                col_name(k, i, &name);
                v.type = PD_VAL_TEXT;
                v.p = (const uint8_t *)(strcmp(name, "source") == 0          ? "prelist"
                                        : strcmp(name, "status") == 0 && !hh ? "active"
                                                                             : "");
                v.len = strlen((const char *)v.p);
                if (v.len == 0)
                    v.type = PD_VAL_NULL;
            }
            bind_value(k->ins, (int)i + 1, &v);
        }
        if ((rc = step_reset(k->ins)) != SQLITE_OK) {
            code = pd_error_sqlite(&c->err, c->db, rc,
                                   hh ? "delta: adding a household" : "delta: adding a member");
            if (code == PD_ERR_INVALID || rc == SQLITE_CONSTRAINT)
                code = pd_error_set(&c->err, PD_ERR_PROTOCOL, "delta: %s %s cannot be added (%s)",
                                    k->entity, id, sqlite3_errmsg(c->db));
            goto out;
        }
        c->stats->records_pulled++;
        if (hh)
            code =
                set_geo(c, sqlite3_last_insert_rowid(c->db), id, in.rec.u.hh.lat, in.rec.u.hh.lon);
        goto out;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(sel);
        code = ctx_sql(c, rc, "delta: reading a record");
        goto out;
    }
    c->stats->records_pulled++;
    int64_t rowid = sqlite3_column_int64(sel, 0);
    int rev_col = -1;
    for (size_t i = 0; i < k->nfields; i++)
        if (!strcmp(pd_rec_field_name(k->kind, i), "rev"))
            rev_col = (int)i + 1;
    if (rev_col < 0 || rev <= sqlite3_column_int64(sel, rev_col)) {
        sqlite3_reset(sel);
        goto out; /* not newer than what is here */
    }
    bool locked[MAX_COLS], all;
    if ((code = locked_columns(c, k, id, household_id, locked, n, &all)) != PD_OK) {
        sqlite3_reset(sel);
        goto out;
    }
    bool lat_lon_new = false;
    for (size_t i = 0; i < n; i++) {
        const char *name;
        col_name(k, i, &name);
        pd_value v;
        bool given;
        value_of(k, &in, i, &v, &given);
        bool key = !strcmp(name, "id") || !strcmp(name, "rev");
        int col = (int)i + 1;
        if (!given) {
            sqlite3_bind_value(k->upd, col, sqlite3_column_value(sel, col));
        } else if (!key && (all || locked[i])) {
            if (!same(sel, col, &v)) {
                sqlite3_bind_text(c->diff, 1, k->entity, -1, SQLITE_STATIC);
                sqlite3_bind_text(c->diff, 2, id, -1, SQLITE_STATIC);
                sqlite3_bind_text(c->diff, 3, name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(c->diff, 4, rev);
                bind_value(c->diff, 5, &v);
                sqlite3_bind_value(c->diff, 6, sqlite3_column_value(sel, col));
                sqlite3_bind_int64(c->diff, 7, c->now);
                if ((rc = step_reset(c->diff)) != SQLITE_OK) {
                    sqlite3_reset(sel);
                    code = ctx_sql(c, rc, "delta: server_diff");
                    goto out;
                }
                c->stats->fields_kept++;
            }
            sqlite3_bind_value(k->upd, col, sqlite3_column_value(sel, col));
        } else {
            if (hh && (!strcmp(name, "lat") || !strcmp(name, "lon")) && !same(sel, col, &v))
                lat_lon_new = true;
            bind_value(k->upd, col, &v);
        }
    }
    rc = step_reset(k->upd);
    sqlite3_reset(sel);
    if (rc != SQLITE_OK) {
        code = pd_error_set(&c->err, PD_ERR_PROTOCOL, "delta: %s %s cannot be updated (%s)",
                            k->entity, id, sqlite3_errmsg(c->db));
        goto out;
    }
    if (hh && lat_lon_new)
        code = set_geo(c, rowid, id, in.rec.u.hh.lat, in.rec.u.hh.lon);
out:
    sqlite3_clear_bindings(sel);
    pd_rec_clear(&in.rec);
    return code;
}

static int apply_rows(delta_ctx *c, kind_stmts *k, const cJSON *arr)
{
    if (!arr || cJSON_IsNull(arr))
        return PD_OK;
    if (!cJSON_IsArray(arr))
        return pd_error_set(&c->err, PD_ERR_PROTOCOL, "delta: %ss is not an array", k->entity);
    size_t i = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, arr)
    {
        int rc = apply_row(c, k, row, i++);
        if (rc != PD_OK)
            return rc;
    }
    return PD_OK;
}

static int64_t jint(const cJSON *o, const char *k, bool *ok)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 9007199254740992.0) {
        *ok = false;
        return 0;
    }
    return (int64_t)v->valuedouble;
}

int pd_client_apply_delta(pd_store *store, const cJSON *page, pd_sync_stats *stats)
{
    pd_sync_stats dummy;
    if (!stats) {
        memset(&dummy, 0, sizeof dummy);
        stats = &dummy;
    }
    delta_ctx c;
    memset(&c, 0, sizeof c);
    c.store = store;
    c.db = pd_store_sqlite(store);
    c.stats = stats;
    c.now = pd_sync_now_ms();
    c.hh = (kind_stmts){PD_REC_HOUSEHOLD,
                        "household",
                        "household",
                        hh_extra,
                        PD_ARRAY_LEN(hh_extra),
                        pd_rec_nfields(PD_REC_HOUSEHOLD),
                        NULL,
                        NULL,
                        NULL};
    c.m = (kind_stmts){PD_REC_MEMBER,
                       "member",
                       "member",
                       m_extra,
                       PD_ARRAY_LEN(m_extra),
                       pd_rec_nfields(PD_REC_MEMBER),
                       NULL,
                       NULL,
                       NULL};
    bool ok = true;
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(page, "format");
    const cJSON *more = cJSON_GetObjectItemCaseSensitive(page, "more");
    int64_t since = jint(page, "since", &ok), cursor = jint(page, "cursor", &ok);
    int64_t have = 0;
    if (pd_sync_state_get_int(store, "cursor", &have) != PD_OK)
        have = -1;
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "pd-delta-1") != 0 || !ok ||
        !cJSON_IsBool(more) || cursor < since)
        return pd_store_fail(store, PD_ERR_PROTOCOL,
                             "delta: not a pd-delta-1 page (format, since, cursor, more)");
    if (since != have)
        return pd_store_fail(store, PD_ERR_PROTOCOL,
                             "delta: the page starts at %lld, this device is at %lld",
                             (long long)since, (long long)have);
    int code = pd_store_begin(store);
    if (code != PD_OK)
        return code;
    int rc;
    if ((code = kind_prepare(&c, &c.hh)) != PD_OK || (code = kind_prepare(&c, &c.m)) != PD_OK)
        goto out;
    if ((rc = sqlite3_prepare_v2(c.db, pending_sql, -1, &c.pending, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(c.db, visit_pending_sql, -1, &c.visit_pending, NULL)) !=
            SQLITE_OK ||
        (rc = sqlite3_prepare_v2(c.db, diff_sql, -1, &c.diff, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(c.db, fix_sql, -1, &c.fix, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(c.db, geo_del_sql, -1, &c.geo_del, NULL)) != SQLITE_OK ||
        (rc = sqlite3_prepare_v2(c.db, geo_ins_sql, -1, &c.geo_ins, NULL)) != SQLITE_OK) {
        code = ctx_sql(&c, rc, "preparing the delta statements");
        goto out;
    }
    if ((code = apply_rows(&c, &c.hh, cJSON_GetObjectItemCaseSensitive(page, "households"))) !=
            PD_OK ||
        (code = apply_rows(&c, &c.m, cJSON_GetObjectItemCaseSensitive(page, "members"))) != PD_OK)
        goto out;
    size_t keys = 0;
    if ((code = pd_client_keyring_json(store, cJSON_GetObjectItemCaseSensitive(page, "keyring"),
                                       &keys, &c.err)) != PD_OK)
        goto out;
    stats->keys_pulled += keys;
    if (keys && (code = pd_client_link_self(store)) != PD_OK) {
        c.err = (pd_error){0};
        goto out;
    }
    const cJSON *conflicts = cJSON_GetObjectItemCaseSensitive(page, "conflicts");
    if (conflicts && !cJSON_IsNull(conflicts) && !cJSON_IsArray(conflicts)) {
        code = pd_error_set(&c.err, PD_ERR_PROTOCOL, "delta: conflicts is not an array");
        goto out;
    }
    stats->conflicts_pulled += (uint64_t)cJSON_GetArraySize(conflicts);
    /* what the korcam decided, and revisit tasks (sync/korcam.c) */
    if ((code = pd_korcam_delta_store(
             store, conflicts, cJSON_GetObjectItemCaseSensitive(page, "tasks"), &c.err)) != PD_OK)
        goto out;
    if ((code = pd_sync_state_set_int(store, "cursor", cursor)) != PD_OK) {
        c.err = (pd_error){0};
        goto out;
    }
    stats->cursor = cursor;
out:
    kind_finalize(&c.hh);
    kind_finalize(&c.m);
    sqlite3_finalize(c.pending);
    sqlite3_finalize(c.visit_pending);
    sqlite3_finalize(c.diff);
    sqlite3_finalize(c.fix);
    sqlite3_finalize(c.geo_del);
    sqlite3_finalize(c.geo_ins);
    if (code != PD_OK) {
        if (c.err.msg[0])
            pd_store_fail(store, code, "%s", c.err.msg);
        pd_store_rollback(store);
        return code;
    }
    return pd_store_commit(store);
}

int pd_client_apply_delta_text(pd_store *store, const char *text, size_t len, pd_sync_stats *stats)
{
    if (!text || pd_json_has_nul_escape(text, len))
        return pd_store_fail(store, PD_ERR_PROTOCOL,
                             "delta: a string in the page holds \\u0000 (NUL): refusing the page "
                             "whole");
    cJSON *page = pd_json_parse(text, len);
    if (!cJSON_IsObject(page)) {
        cJSON_Delete(page);
        return pd_store_fail(store, PD_ERR_PROTOCOL, "delta: the page is not a JSON object");
    }
    int rc = pd_client_apply_delta(store, page, stats);
    cJSON_Delete(page);
    return rc;
}

/* ---- the pull -------------------------------------------------------------------------------- */

int pd_client_pull(pd_store *store, pd_http *h, pd_sync_stats *stats)
{
    int64_t cursor = 0;
    int rc = pd_sync_state_get_int(store, "cursor", &cursor);
    if (rc == PD_ERR_NOTFOUND) {
        rc = pull_prelist(store, h, stats, &cursor);
        if (rc == PD_ERR_NOTFOUND)
            return PD_OK; /* no area assigned: nothing to pull, and no cursor to keep */
        if (rc != PD_OK)
            return rc;
    } else if (rc != PD_OK) {
        return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    }
    stats->cursor = cursor;
    for (;;) {
        char path[96], url[PD_HTTP_URL_MAX];
        snprintf(path, sizeof path, "/v1/delta?since=%lld", (long long)cursor);
        pd_http_url(h, path, url);
        /* The page is signed over our nonce (PROTOCOL.md §2): a recorded page is refused. */
        pd_http_req req = {
            .method = "GET", .url = url, .sign = true, .gzip = true, .phase = PD_SYNC_PHASE_DELTA};
        pd_http_resp r;
        cJSON *j = NULL;
        rc = pd_http_call(h, &req, &r);
        if (rc == PD_OK && r.status != 200)
            rc = pd_http_fail_status(h, "GET /v1/delta", &r);
        if (rc == PD_OK && !(j = pd_http_json(h, "GET /v1/delta", &r)))
            rc = h->err.code;
        bool more = false;
        int64_t next = cursor;
        if (rc == PD_OK) {
            rc = pd_client_apply_delta(store, j, stats);
            if (rc != PD_OK) {
                pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
            } else {
                more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "more"));
                next = stats->cursor;
            }
        }
        cJSON_Delete(j);
        pd_http_resp_free(&r);
        if (rc != PD_OK)
            return rc;
        if (!more)
            return PD_OK;
        if (next <= cursor)
            return pd_error_set(&h->err, PD_ERR_PROTOCOL,
                                "GET /v1/delta: more=true without moving the cursor");
        cursor = next;
    }
}
