/*
 * outbox.c — the enumerator's side of batches in the device store: sealing the pending ops into
 * the next signed batch of the chain (pd_batch_seal), and putting the ops of a batch the
 * supervisor returned back in the queue (pd_outbox_requeue).
 *
 * Sealing is one transaction: the next seq and the previous hash come from table batch, the ops
 * from the op log (pd_oplog_pending, in seq order, at most PD_BATCH_MAX_OPS), the photo sizes from
 * table photo; the batch row (state 'sealed') is inserted and the ops marked sealed
 * (pd_oplog_mark_sealed) before the commit, so a batch never exists without its ops marked, nor
 * the reverse.
 *
 * A returned batch is voided, never rewritten: the op table is append-only, so its ops are COPIED
 * as new pending ops (new seqs at the end of the log; everything else, the clock included, as it
 * was — the clock says when the change was made). The originals keep their batch_seq (the voided
 * batch); sync_state 'requeued.<batch seq>' records "first-last" of the copies, so the link from
 * copies to originals is kept on the device, and the next batch carries PD_BATCH_FLAG_AMENDS.
 */
#include "outbox.h"

#include "oplog.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Collecting pending ops (the iterator's rows live only during the callback) ------------ */

typedef struct collect {
    pd_op *ops;
    void **blocks; /* one allocation per op: its strings and value bytes */
    size_t n, cap, max;
    bool full;
} collect;

static char *put_str(char **w, const char *s)
{
    size_t n = strlen(s ? s : "") + 1;
    memcpy(*w, s ? s : "", n);
    char *r = *w;
    *w += n;
    return r;
}

static void put_value(char **w, pd_value *v)
{
    if ((v->type == PD_VAL_TEXT || v->type == PD_VAL_BLOB) && v->len) {
        memcpy(*w, v->p, v->len);
        v->p = (const uint8_t *)*w;
        *w += v->len;
    } else if (v->type == PD_VAL_TEXT || v->type == PD_VAL_BLOB) {
        v->p = (const uint8_t *)"";
    }
}

static size_t value_bytes(const pd_value *v)
{
    return (v->type == PD_VAL_TEXT || v->type == PD_VAL_BLOB) ? v->len : 0;
}

static int collect_op(void *ctx, const pd_op *op)
{
    collect *c = ctx;
    if (c->n == c->max) {
        c->full = true;
        return PD_ERR_TOOBIG;
    }
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        pd_op *ops = realloc(c->ops, cap * sizeof *ops);
        if (!ops)
            return PD_ERR_NOMEM;
        c->ops = ops;
        void **blocks = realloc(c->blocks, cap * sizeof *blocks);
        if (!blocks)
            return PD_ERR_NOMEM;
        c->blocks = blocks;
        c->cap = cap;
    }
    size_t need = 5 + value_bytes(&op->old_value) + value_bytes(&op->new_value);
    const char *strs[] = {op->device_id, op->kind, op->entity, op->target, op->field};
    for (size_t i = 0; i < PD_ARRAY_LEN(strs); i++)
        need += strs[i] ? strlen(strs[i]) : 0;
    char *block = malloc(need), *w = block;
    if (!block)
        return PD_ERR_NOMEM;
    pd_op *o = &c->ops[c->n];
    *o = *op;
    o->device_id = put_str(&w, op->device_id);
    o->kind = put_str(&w, op->kind);
    o->entity = put_str(&w, op->entity);
    o->target = put_str(&w, op->target);
    o->field = put_str(&w, op->field);
    put_value(&w, &o->old_value);
    put_value(&w, &o->new_value);
    c->blocks[c->n++] = block;
    return PD_OK;
}

static void collect_free(collect *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->blocks[i]);
    free(c->blocks);
    free(c->ops);
}

/* ---- Pieces of the seal ---------------------------------------------------------------------- */

/* The last batch of this author: its seq and hash (seq 0 when there is none). */
static int last_batch(pd_store *store, const uint8_t *author, uint64_t *seq, uint8_t *hash)
{
    sqlite3_stmt *st = NULL;
    *seq = 0;
    memset(hash, 0, PD_HASH_BYTES);
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT seq, hash FROM batch WHERE author_pk = ?1 "
                                "ORDER BY seq DESC LIMIT 1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, author, PD_PUBKEY_BYTES, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int code = PD_OK;
    if (rc == SQLITE_ROW) {
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) == PD_HASH_BYTES)
            memcpy(hash, sqlite3_column_blob(st, 1), PD_HASH_BYTES);
        else
            code = pd_store_fail(store, PD_ERR_CORRUPT, "batch %llu has a malformed hash",
                                 (unsigned long long)*seq);
    } else if (rc != SQLITE_DONE) {
        code = pd_store_fail_sqlite(store, rc, "batch table");
    }
    sqlite3_finalize(st);
    return code;
}

/* The photos the ops name (kind "photo": the target is the hash in hex), with their sizes. */
static int named_photos(pd_store *store, const collect *c, pd_batch_photo **out, size_t *count)
{
    pd_batch_photo *ph = NULL;
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    int code = PD_OK;
    *out = NULL;
    *count = 0;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store), "SELECT size FROM photo WHERE hash = ?1",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "photo table");
    for (size_t i = 0; i < c->n && code == PD_OK; i++) {
        const pd_op *op = &c->ops[i];
        if (strcmp(op->kind, "photo") != 0)
            continue;
        uint8_t hash[PD_HASH_BYTES];
        if (pd_sync_unhex(hash, PD_HASH_BYTES, op->target) != 0) {
            code =
                pd_store_fail(store, PD_ERR_CORRUPT, "op %lld: photo target \"%s\" is not a hash",
                              (long long)op->seq, op->target);
            break;
        }
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = !memcmp(ph[k].hash, hash, PD_HASH_BYTES);
        if (dup)
            continue;
        if (n == PD_BATCH_MAX_PHOTOS) {
            code = pd_store_fail(store, PD_ERR_TOOBIG, "more than %u photos pending in one batch",
                                 PD_BATCH_MAX_PHOTOS);
            break;
        }
        sqlite3_reset(st);
        sqlite3_bind_blob(st, 1, hash, PD_HASH_BYTES, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            code = pd_store_fail(store, PD_ERR_STATE,
                                 "op %lld names photo %.16s... which is not on this device",
                                 (long long)op->seq, op->target);
            break;
        }
        if (rc != SQLITE_ROW) {
            code = pd_store_fail_sqlite(store, rc, "photo table");
            break;
        }
        pd_batch_photo *np = realloc(ph, (n + 1) * sizeof *np);
        if (!np) {
            code = pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
            break;
        }
        ph = np;
        memcpy(ph[n].hash, hash, PD_HASH_BYTES);
        ph[n].size = (uint64_t)sqlite3_column_int64(st, 0);
        n++;
    }
    sqlite3_finalize(st);
    if (code) {
        free(ph);
        return code;
    }
    *out = ph;
    *count = n;
    return PD_OK;
}

/* The area a batch is about: the device's assigned desa (else the areas of the prelists it
 * imported), or the longest dotted prefix they share (their kecamatan, ...); "" if none. */
static int batch_area(pd_store *store, char area[PD_BATCH_AREA_MAX + 1])
{
    sqlite3_stmt *st = NULL;
    area[0] = '\0';
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT DISTINCT desa FROM assignment UNION ALL "
                                "SELECT area FROM prelist_package WHERE NOT EXISTS "
                                "(SELECT 1 FROM assignment)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "assignment");
    bool first = true;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 0);
        if (!d)
            continue;
        if (first) {
            snprintf(area, PD_BATCH_AREA_MAX + 1, "%s", d);
            first = false;
            continue;
        }
        size_t k = 0;
        while (area[k] && area[k] == d[k])
            k++;
        if (area[k] || (d[k] && d[k] != '.')) {
            /* cut back to the last whole component they share */
            while (k > 0 && area[k] != '.')
                k--;
        }
        area[k] = '\0';
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "assignment");
    /* keep only what a batch header may carry */
    for (size_t i = 0; area[i]; i++)
        if (!((area[i] >= '0' && area[i] <= '9') || area[i] == '.')) {
            area[0] = '\0';
            break;
        }
    return PD_OK;
}

static int state_get_int(pd_store *store, const char *key, int64_t *v)
{
    sqlite3_stmt *st = NULL;
    *v = 0;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT value FROM sync_state WHERE key = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "sync state");
    return PD_OK;
}

static int state_set(pd_store *store, const char *key, const char *text, int64_t num)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "INSERT INTO sync_state (key, value) VALUES (?1, ?2) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (text)
            sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
        else
            sqlite3_bind_int64(st, 2, num);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "sync state");
    return PD_OK;
}

static int64_t count_pending(pd_store *store)
{
    sqlite3_stmt *st = NULL;
    int64_t n = 0;
    if (sqlite3_prepare_v2(pd_store_sqlite(store),
                           "SELECT COUNT(*) FROM op WHERE batch_seq IS NULL", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int insert_batch(pd_store *store, const uint8_t *author, const pd_batch_params *p,
                        const uint8_t *prev, const uint8_t *bytes, size_t len, size_t op_count,
                        uint8_t hash[PD_HASH_BYTES])
{
    crypto_generichash(hash, PD_HASH_BYTES, bytes, PD_BATCH_PREFIX_BYTES, NULL, 0);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "INSERT INTO batch (author_pk, seq, hash, prev_hash, state, "
                                "created_at, op_count, bytes) VALUES (?1, ?2, ?3, ?4, 'sealed', "
                                "?5, ?6, ?7)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, author, PD_PUBKEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)p->seq);
        sqlite3_bind_blob(st, 3, hash, PD_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, prev, PD_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, p->created_at);
        sqlite3_bind_int64(st, 6, (int64_t)op_count);
        sqlite3_bind_blob(st, 7, bytes, (int)len, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "storing the batch");
    return PD_OK;
}

int pd_batch_seal(pd_store *store, pd_seal_result *out)
{
    uint8_t pk[PD_PUBKEY_BYTES], prev[PD_HASH_BYTES];
    uint8_t *sk = sodium_malloc(PD_SECKEY_BYTES);
    collect c = {.max = PD_BATCH_MAX_OPS};
    pd_batch_photo *photos = NULL;
    size_t nphotos = 0;
    uint8_t *bytes = NULL;
    size_t len = 0;
    pd_seal_result res = {0};
    char area[PD_BATCH_AREA_MAX + 1];
    pd_error e = {0};
    uint64_t last = 0;
    int64_t amends = 0;
    if (!sk)
        return pd_store_fail(store, PD_ERR_NOMEM, "no secure memory for the key");
    int rc = pd_keys_identity(store, "enumerator", pk, sk);
    if (rc)
        goto out_key;
    if ((rc = pd_store_begin(store)) != PD_OK)
        goto out_key;
    if ((rc = last_batch(store, pk, &last, prev)) != PD_OK)
        goto out;
    rc = pd_oplog_pending(store, collect_op, &c);
    if (rc == PD_ERR_TOOBIG && c.full)
        rc = PD_OK;
    else if (rc == PD_ERR_NOMEM)
        rc = pd_store_fail(store, rc, "out of memory reading the op log");
    if (rc)
        goto out;
    if (c.n == 0) {
        rc = pd_store_fail(store, PD_ERR_STATE, "nothing to seal: no pending changes");
        goto out;
    }
    if ((rc = named_photos(store, &c, &photos, &nphotos)) != PD_OK ||
        (rc = batch_area(store, area)) != PD_OK ||
        (rc = state_get_int(store, "batch_amends", &amends)) != PD_OK)
        goto out;
    pd_batch_params p = {.device_id = pd_store_device_id(store),
                         .area = area,
                         .seq = last + 1,
                         .prev_hash = last ? prev : NULL,
                         .created_at = pd_sync_now_ms(),
                         .flags = amends ? PD_BATCH_FLAG_AMENDS : 0};
    if ((rc = pd_batch_build(&bytes, &len, &p, c.ops, c.n, photos, nphotos, sk, &e)) != PD_OK) {
        rc = pd_store_fail(store, rc, "sealing batch %llu: %s", (unsigned long long)p.seq, e.msg);
        goto out;
    }
    if ((rc = insert_batch(store, pk, &p, prev, bytes, len, c.n, res.hash)) != PD_OK ||
        (rc = pd_oplog_mark_sealed(store, c.ops[0].seq, c.ops[c.n - 1].seq, (int64_t)p.seq)) !=
            PD_OK ||
        (amends && (rc = state_set(store, "batch_amends", NULL, 0)) != PD_OK))
        goto out;
    res.seq = p.seq;
    res.op_count = c.n;
    res.photo_count = nphotos;
    res.bytes = len;
    res.remaining = (size_t)count_pending(store);
out:
    if (rc == PD_OK)
        rc = pd_store_commit(store);
    else
        pd_store_rollback(store);
out_key:
    sodium_free(sk);
    collect_free(&c);
    free(photos);
    free(bytes);
    if (rc == PD_OK && out)
        *out = res;
    return rc;
}

int pd_outbox_requeue(pd_store *store, uint64_t batch_seq, size_t *copied)
{
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int64_t base = 0;
    int rc = pd_store_begin(store);
    if (rc)
        return rc;
    rc = sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(seq), 0) FROM op", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        base = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (rc != SQLITE_ROW) {
        rc = pd_store_fail_sqlite(store, rc, "op log");
        goto out;
    }
    rc = sqlite3_prepare_v2(db,
                            "INSERT INTO op (seq, device_id, hlc, kind, entity, target, field, "
                            "old_value, new_value, base_rev) "
                            "SELECT ?1 + row_number() OVER (ORDER BY seq), device_id, hlc, kind, "
                            "entity, target, field, old_value, new_value, base_rev "
                            "FROM op WHERE batch_seq = ?2 ORDER BY seq",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, base);
        sqlite3_bind_int64(st, 2, (int64_t)batch_seq);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        rc = pd_store_fail_sqlite(store, rc, "requeueing the ops of a returned batch");
        goto out;
    }
    int n = sqlite3_changes(db);
    char key[48], val[64];
    snprintf(key, sizeof key, "requeued.%llu", (unsigned long long)batch_seq);
    snprintf(val, sizeof val, "%lld-%lld", (long long)base + 1, (long long)base + n);
    if ((rc = state_set(store, key, val, 0)) != PD_OK ||
        (rc = state_set(store, "batch_amends", NULL, 1)) != PD_OK)
        goto out;
    if (copied)
        *copied += (size_t)n;
    rc = PD_OK;
out:
    if (rc == PD_OK)
        return pd_store_commit(store);
    pd_store_rollback(store);
    return rc;
}
