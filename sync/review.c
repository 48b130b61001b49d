/*
 * review.c — the supervisor's queue in the device store: import batch files, list, load,
 * approve, return (the records themselves are made and checked in record.c), export.
 *
 * The enumerator's side of the same records is here too (outbox list, export of a batch file,
 * import of the supervisor's decisions), since both sides keep batches in the one table `batch`.
 * Sealing and requeueing a returned batch's ops are in outbox.c; batch-level warnings and the SVG
 * map in review_map.c.
 */
#include "keys.h"
#include "outbox.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The supervisor's queue in the store ---------------------------------------------------- */

/* The record stored with a batch (or none). */
typedef struct held {
    int64_t id;
    uint8_t author_pk[PD_PUBKEY_BYTES];
    uint64_t seq;
    uint8_t hash[PD_HASH_BYTES];
    uint8_t prev_hash[PD_HASH_BYTES];
    char state[16];
    bool has_record;
    uint8_t record[PD_REVIEW_MAX_BYTES];
    size_t record_len;
} held;

#define HELD_COLUMNS "rowid, author_pk, seq, hash, prev_hash, state, approval"

static void held_row(sqlite3_stmt *st, held *h)
{
    memset(h, 0, sizeof *h);
    h->id = sqlite3_column_int64(st, 0);
    if (sqlite3_column_bytes(st, 1) == PD_PUBKEY_BYTES)
        memcpy(h->author_pk, sqlite3_column_blob(st, 1), PD_PUBKEY_BYTES);
    h->seq = (uint64_t)sqlite3_column_int64(st, 2);
    if (sqlite3_column_bytes(st, 3) == PD_HASH_BYTES)
        memcpy(h->hash, sqlite3_column_blob(st, 3), PD_HASH_BYTES);
    if (sqlite3_column_bytes(st, 4) == PD_HASH_BYTES)
        memcpy(h->prev_hash, sqlite3_column_blob(st, 4), PD_HASH_BYTES);
    snprintf(h->state, sizeof h->state, "%s", (const char *)sqlite3_column_text(st, 5));
    int n = sqlite3_column_bytes(st, 6);
    if (n > 0 && (size_t)n <= sizeof h->record) {
        h->has_record = true;
        h->record_len = (size_t)n;
        memcpy(h->record, sqlite3_column_blob(st, 6), (size_t)n);
    }
}

/* How a held batch is looked up; each is one constant statement. */
typedef enum held_by { BY_ID, BY_AUTHOR_SEQ, BY_HASH } held_by;

static const char *const held_sql[] = {
    [BY_ID] = "SELECT " HELD_COLUMNS " FROM batch WHERE rowid = ?1",
    [BY_AUTHOR_SEQ] = "SELECT " HELD_COLUMNS " FROM batch WHERE author_pk = ?1 AND seq = ?2",
    [BY_HASH] = "SELECT " HELD_COLUMNS " FROM batch WHERE hash = ?1",
};

/* Find a held batch by rowid (id), by author and seq (blob, seq) or by hash (blob).
 * PD_ERR_NOTFOUND quietly (no message) when there is none. */
static int held_find(pd_store *store, held_by by, int64_t id, const uint8_t *blob, uint64_t seq,
                     held *h)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store), held_sql[by], -1, &st, NULL);
    if (rc == SQLITE_OK) {
        if (by == BY_ID)
            sqlite3_bind_int64(st, 1, id);
        else
            sqlite3_bind_blob(st, 1, blob, PD_HASH_BYTES, SQLITE_STATIC);
        if (by == BY_AUTHOR_SEQ)
            sqlite3_bind_int64(st, 2, (int64_t)seq);
        rc = sqlite3_step(st);
    }
    int code = PD_OK;
    if (rc == SQLITE_ROW)
        held_row(st, h);
    else if (rc == SQLITE_DONE)
        code = PD_ERR_NOTFOUND;
    else
        code = pd_store_fail_sqlite(store, rc, "batch table");
    sqlite3_finalize(st);
    return code;
}

static int store_batch_row(pd_store *store, const uint8_t *bytes, size_t len, const pd_batch *b)
{
    const pd_batch_header *h = pd_batch_header_get(b);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "INSERT INTO batch (author_pk, seq, hash, prev_hash, state, "
                                "created_at, op_count, bytes) VALUES (?1, ?2, ?3, ?4, 'sealed', "
                                "?5, ?6, ?7)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, h->author_pk, PD_PUBKEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (int64_t)h->seq);
        sqlite3_bind_blob(st, 3, pd_batch_hash(b), PD_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, h->prev_hash, PD_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, h->created_at);
        sqlite3_bind_int64(st, 6, h->op_count);
        sqlite3_bind_blob(st, 7, bytes, (int)len, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "storing a batch");
    return PD_OK;
}

static int set_state(pd_store *store, int64_t id, const char *state, const uint8_t *record,
                     size_t record_len, const char *reason)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "UPDATE batch SET state = ?2, approval = coalesce(?3, approval), "
                                "reason = coalesce(?4, reason) WHERE rowid = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
        if (record)
            sqlite3_bind_blob(st, 3, record, (int)record_len, SQLITE_STATIC);
        if (reason && *reason)
            sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "updating a batch");
    return PD_OK;
}

/* Store a verified batch, checking it against its held neighbours: the same batch again is
 * `known`, another batch at a held seq or one that does not link is a fork (PD_ERR_CONFLICT). */
static int hold_batch(pd_store *store, const uint8_t *bytes, size_t len, const pd_batch *b,
                      bool *known)
{
    const pd_batch_header *h = pd_batch_header_get(b);
    held other;
    *known = false;
    int rc = held_find(store, BY_AUTHOR_SEQ, 0, h->author_pk, h->seq, &other);
    if (rc == PD_OK) {
        if (!memcmp(other.hash, pd_batch_hash(b), PD_HASH_BYTES)) {
            *known = true;
            return PD_OK;
        }
        return pd_store_fail(store, PD_ERR_CONFLICT,
                             "batch %llu of this enumerator is already held with different "
                             "content: the chain forks",
                             (unsigned long long)h->seq);
    }
    if (rc != PD_ERR_NOTFOUND)
        return rc;
    pd_chain_link me, nb;
    pd_chain_link_set(&me, h, pd_batch_hash(b));
    if (h->seq > 1 &&
        (rc = held_find(store, BY_AUTHOR_SEQ, 0, h->author_pk, h->seq - 1, &other)) == PD_OK) {
        memcpy(nb.author_pk, other.author_pk, PD_PUBKEY_BYTES);
        nb.seq = other.seq;
        memcpy(nb.hash, other.hash, PD_HASH_BYTES);
        memcpy(nb.prev_hash, other.prev_hash, PD_HASH_BYTES);
        pd_error e = {0};
        if (pd_chain_check(&me, 1, &nb, NULL, &e) != PD_OK)
            return pd_store_fail(store, PD_ERR_CONFLICT, "%s", e.msg);
    } else if (rc != PD_OK && rc != PD_ERR_NOTFOUND) {
        return rc;
    }
    if ((rc = held_find(store, BY_AUTHOR_SEQ, 0, h->author_pk, h->seq + 1, &other)) == PD_OK) {
        memcpy(nb.author_pk, other.author_pk, PD_PUBKEY_BYTES);
        nb.seq = other.seq;
        memcpy(nb.hash, other.hash, PD_HASH_BYTES);
        memcpy(nb.prev_hash, other.prev_hash, PD_HASH_BYTES);
        pd_error e = {0};
        if (pd_chain_check(&nb, 1, &me, NULL, &e) != PD_OK)
            return pd_store_fail(store, PD_ERR_CONFLICT, "%s", e.msg);
    } else if (rc != PD_ERR_NOTFOUND) {
        return rc;
    }
    return store_batch_row(store, bytes, len, b);
}

/* Apply a review record to a held batch. `voids` (enumerator side or the author's own device):
 * a return voids the batch and requeues its ops. */
static int apply_record(pd_store *store, const held *hb, const pd_review *r, const uint8_t *rec,
                        size_t rec_len, bool voids, bool *known, size_t *requeued)
{
    *known = false;
    const char *target = r->kind == PD_REVIEW_APPROVE ? "approved" : voids ? "voided" : "returned";
    if (strcmp(hb->state, "sealed") != 0) {
        if (hb->has_record && hb->record_len == rec_len && !memcmp(hb->record, rec, rec_len)) {
            *known = true;
            return PD_OK;
        }
        /* the supervisor's own returned batch arriving back on the author's device */
        if (voids && !strcmp(hb->state, "returned") && r->kind == PD_REVIEW_RETURN)
            goto apply;
        return pd_store_fail(store, PD_ERR_STATE,
                             "batch %llu is already %s: a review decision is final",
                             (unsigned long long)hb->seq, hb->state);
    }
apply:;
    int rc = set_state(store, hb->id, target, rec, rec_len,
                       r->kind == PD_REVIEW_RETURN ? r->reason : NULL);
    if (rc == PD_OK && voids && r->kind == PD_REVIEW_RETURN)
        rc = pd_outbox_requeue(store, hb->seq, requeued);
    return rc;
}

/* Is this device the author of the batch (a review on the enumerator's own phone)? */
static bool own_batch(pd_store *store, const uint8_t author_pk[PD_PUBKEY_BYTES])
{
    uint8_t pk[PD_PUBKEY_BYTES];
    sqlite3_stmt *st = NULL;
    bool own = false;
    if (sqlite3_prepare_v2(pd_store_sqlite(store),
                           "SELECT sign_pk FROM identity WHERE role = 'enumerator'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PD_PUBKEY_BYTES) {
        memcpy(pk, sqlite3_column_blob(st, 0), PD_PUBKEY_BYTES);
        own = !memcmp(pk, author_pk, PD_PUBKEY_BYTES);
    }
    sqlite3_finalize(st);
    return own;
}

int pd_review_import(pd_store *store, const uint8_t *bundle, size_t len, pd_import_result *out)
{
    pd_import_result res = {0};
    pd_bundle_item *items = NULL;
    size_t n = 0;
    uint8_t me[PD_PUBKEY_BYTES];
    pd_error e = {0};
    int rc = pd_keys_identity(store, "supervisor", me, NULL);
    if (rc)
        return rc;
    if ((rc = pd_bundle_parse(&items, &n, bundle, len, &e)) != PD_OK)
        return pd_store_fail(store, rc, "%s", e.msg);
    if ((rc = pd_store_begin(store)) != PD_OK)
        goto out_free;
    for (size_t i = 0; i < n && rc == PD_OK; i++) {
        if (items[i].type != PD_BUNDLE_BATCH)
            continue;
        pd_batch_header h;
        uint8_t sup[PD_PUBKEY_BYTES];
        if ((rc = pd_batch_peek(&h, NULL, items[i].bytes, items[i].len, &e)) != PD_OK) {
            rc = pd_store_fail(store, rc, "item %zu: %s", i, e.msg);
            break;
        }
        if ((rc = pd_keys_supervisor_of(store, h.author_pk, sup, NULL)) != PD_OK)
            break;
        if (sodium_memcmp(sup, me, PD_PUBKEY_BYTES) != 0) {
            rc = pd_store_fail(store, PD_ERR_DENIED,
                               "batch %llu is by an enumerator this supervisor does not "
                               "supervise",
                               (unsigned long long)h.seq);
            break;
        }
        pd_batch *b = NULL;
        if ((rc = pd_batch_verify(&b, items[i].bytes, items[i].len, h.author_pk, &e)) != PD_OK) {
            rc = pd_store_fail(store, rc, "item %zu: %s", i, e.msg);
            break;
        }
        bool known;
        rc = hold_batch(store, items[i].bytes, items[i].len, b, &known);
        pd_batch_free(b);
        if (rc == PD_OK)
            known ? res.known++ : res.batches++;
    }
    for (size_t i = 0; i < n && rc == PD_OK; i++) {
        if (items[i].type != PD_BUNDLE_REVIEW)
            continue;
        pd_review r;
        held hb;
        uint8_t sup[PD_PUBKEY_BYTES];
        if ((rc = pd_review_parse(&r, items[i].bytes, items[i].len, &e)) != PD_OK) {
            rc = pd_store_fail(store, rc, "item %zu: %s", i, e.msg);
            break;
        }
        rc = held_find(store, BY_HASH, 0, r.batch_hash, 0, &hb);
        if (rc == PD_ERR_NOTFOUND) {
            rc = PD_OK; /* a record about a batch not held here: nothing to do */
            continue;
        }
        if (rc || (rc = pd_keys_supervisor_of(store, hb.author_pk, sup, NULL)) != PD_OK)
            break;
        if ((rc = pd_review_check(&r, hb.hash, sup, &e)) != PD_OK) {
            rc = pd_store_fail(store, rc, "batch %llu: %s", (unsigned long long)hb.seq, e.msg);
            break;
        }
        bool known;
        rc = apply_record(store, &hb, &r, items[i].bytes, items[i].len,
                          own_batch(store, hb.author_pk), &known, &res.requeued);
        if (rc == PD_OK && !known)
            r.kind == PD_REVIEW_APPROVE ? res.approved++ : res.returned++;
    }
    if (rc == PD_OK)
        rc = pd_store_commit(store);
    else
        pd_store_rollback(store);
out_free:
    free(items);
    if (rc == PD_OK && out)
        *out = res;
    return rc;
}

static int list_rows(pd_store *store, const char *sql, const uint8_t *author, pd_outbox_fn fn,
                     void *ctx)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store), sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "batch table");
    if (author)
        sqlite3_bind_blob(st, 1, author, PD_PUBKEY_BYTES, SQLITE_STATIC);
    int code = PD_OK;
    pd_outbox_entry *e = malloc(sizeof *e);
    if (!e) {
        sqlite3_finalize(st);
        return pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(e, 0, sizeof *e);
        e->id = sqlite3_column_int64(st, 0);
        if (sqlite3_column_bytes(st, 1) == PD_PUBKEY_BYTES)
            memcpy(e->author_pk, sqlite3_column_blob(st, 1), PD_PUBKEY_BYTES);
        e->seq = (uint64_t)sqlite3_column_int64(st, 2);
        if (sqlite3_column_bytes(st, 3) == PD_HASH_BYTES)
            memcpy(e->hash, sqlite3_column_blob(st, 3), PD_HASH_BYTES);
        snprintf(e->state, sizeof e->state, "%s", (const char *)sqlite3_column_text(st, 4));
        e->created_at = sqlite3_column_int64(st, 5);
        e->op_count = sqlite3_column_int64(st, 6);
        e->bytes = (size_t)sqlite3_column_int64(st, 7);
        const unsigned char *reason = sqlite3_column_text(st, 8);
        snprintf(e->reason, sizeof e->reason, "%s", reason ? (const char *)reason : "");
        if ((code = fn(ctx, e)) != 0)
            break;
    }
    if (code == PD_OK && rc != SQLITE_DONE)
        code = pd_store_fail_sqlite(store, rc, "batch table");
    free(e);
    sqlite3_finalize(st);
    return code;
}

#define LIST_COLUMNS                                                                               \
    "rowid, author_pk, seq, hash, state, created_at, op_count, length(bytes), reason"

int pd_review_list(pd_store *store, bool all, pd_outbox_fn fn, void *ctx)
{
    return list_rows(store,
                     all ? "SELECT " LIST_COLUMNS " FROM batch ORDER BY author_pk, seq"
                         : "SELECT " LIST_COLUMNS
                           " FROM batch WHERE state = 'sealed' ORDER BY author_pk, seq",
                     NULL, fn, ctx);
}

int pd_outbox_list(pd_store *store, pd_outbox_fn fn, void *ctx)
{
    uint8_t me[PD_PUBKEY_BYTES];
    int rc = pd_keys_identity(store, "enumerator", me, NULL);
    if (rc)
        return rc;
    return list_rows(store, "SELECT " LIST_COLUMNS " FROM batch WHERE author_pk = ?1 ORDER BY seq",
                     me, fn, ctx);
}

/* Load a held batch's bytes and verify them. */
static int load_verified(pd_store *store, const held *hb, pd_batch **out, uint8_t **bytes_out,
                         size_t *len_out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store), "SELECT bytes FROM batch WHERE rowid = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, hb->id);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return pd_store_fail_sqlite(store, rc, "reading a batch");
    }
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    uint8_t *bytes = malloc(len ? len : 1);
    if (!bytes) {
        sqlite3_finalize(st);
        return pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    }
    if (len)
        memcpy(bytes, sqlite3_column_blob(st, 0), len);
    sqlite3_finalize(st);
    pd_error e = {0};
    rc = pd_batch_verify(out, bytes, len, hb->author_pk, &e);
    if (rc == PD_OK && memcmp(hb->hash, out ? pd_batch_hash(*out) : hb->hash, PD_HASH_BYTES) != 0)
        rc = pd_error_set(&e, PD_ERR_CORRUPT, "the stored hash does not match the bytes");
    if (rc) {
        if (out) {
            pd_batch_free(*out);
            *out = NULL;
        }
        free(bytes);
        return pd_store_fail(store, rc, "batch %lld: %s", (long long)hb->id, e.msg);
    }
    if (bytes_out) {
        *bytes_out = bytes;
        *len_out = len;
    } else {
        free(bytes);
    }
    return PD_OK;
}

static int find_by_id(pd_store *store, int64_t id, held *hb)
{
    int rc = held_find(store, BY_ID, id, NULL, 0, hb);
    if (rc == PD_ERR_NOTFOUND)
        return pd_store_fail(store, PD_ERR_NOTFOUND, "no batch %lld here (see pendata review list)",
                             (long long)id);
    return rc;
}

int pd_review_load(pd_store *store, int64_t id, pd_batch **out, pd_keyring_entry *author)
{
    held hb;
    *out = NULL;
    int rc = find_by_id(store, id, &hb);
    if (rc)
        return rc;
    if ((rc = load_verified(store, &hb, out, NULL, NULL)) != PD_OK)
        return rc;
    if (author && pd_keyring_get(store, hb.author_pk, author) != PD_OK) {
        memset(author, 0, sizeof *author);
        memcpy(author->pk, hb.author_pk, PD_PUBKEY_BYTES);
    }
    return PD_OK;
}

static int decide(pd_store *store, int64_t id, pd_review_kind kind, const char *reason)
{
    held hb;
    uint8_t me[PD_PUBKEY_BYTES], sup[PD_PUBKEY_BYTES];
    uint8_t *sk = sodium_malloc(PD_SECKEY_BYTES);
    if (!sk)
        return pd_store_fail(store, PD_ERR_NOMEM, "no secure memory for the key");
    pd_error e = {0};
    int rc = pd_store_begin(store);
    if (rc)
        goto out_key;
    if ((rc = find_by_id(store, id, &hb)) != PD_OK ||
        (rc = pd_keys_identity(store, "supervisor", me, sk)) != PD_OK ||
        (rc = pd_keys_supervisor_of(store, hb.author_pk, sup, NULL)) != PD_OK)
        goto out;
    if (sodium_memcmp(sup, me, PD_PUBKEY_BYTES) != 0) {
        rc = pd_store_fail(store, PD_ERR_DENIED,
                           "batch %lld is by an enumerator this supervisor does not supervise",
                           (long long)id);
        goto out;
    }
    if (strcmp(hb.state, "sealed") != 0) {
        rc =
            pd_store_fail(store, PD_ERR_STATE, "batch %lld is already %s", (long long)id, hb.state);
        goto out;
    }
    if ((rc = load_verified(store, &hb, NULL, NULL, NULL)) != PD_OK)
        goto out;
    pd_review r;
    uint8_t rec[PD_REVIEW_MAX_BYTES];
    size_t rec_len = 0;
    if ((rc = pd_review_make(&r, kind, hb.hash, reason, sk, &e)) != PD_OK) {
        rc = pd_store_fail(store, rc, "%s", e.msg);
        goto out;
    }
    pd_review_encode(&r, rec, sizeof rec, &rec_len);
    bool known;
    size_t requeued = 0;
    rc = apply_record(store, &hb, &r, rec, rec_len, own_batch(store, hb.author_pk), &known,
                      &requeued);
out:
    if (rc == PD_OK)
        rc = pd_store_commit(store);
    else
        pd_store_rollback(store);
out_key:
    sodium_free(sk);
    return rc;
}

int pd_review_approve(pd_store *store, int64_t id)
{
    return decide(store, id, PD_REVIEW_APPROVE, NULL);
}

int pd_review_return(pd_store *store, int64_t id, const char *reason)
{
    return decide(store, id, PD_REVIEW_RETURN, reason);
}

/* A bundle of one held batch and its record. */
static int export_held(pd_store *store, const held *hb, uint8_t **out, size_t *out_len)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    pd_bundle *bu = NULL;
    *out = NULL;
    *out_len = 0;
    int rc = load_verified(store, hb, NULL, &bytes, &len);
    if (rc)
        return rc;
    if ((rc = pd_bundle_new(&bu)) != PD_OK ||
        (rc = pd_bundle_add(bu, PD_BUNDLE_BATCH, bytes, len)) != PD_OK ||
        (hb->has_record &&
         (rc = pd_bundle_add(bu, PD_BUNDLE_REVIEW, hb->record, hb->record_len)) != PD_OK)) {
        rc = pd_store_fail(store, rc, "making the batch file: %s", pd_strerror(rc));
        goto out;
    }
    size_t n;
    const uint8_t *p = pd_bundle_bytes(bu, &n);
    if (!(*out = malloc(n))) {
        rc = pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(*out, p, n);
    *out_len = n;
out:
    pd_bundle_free(bu);
    free(bytes);
    return rc;
}

int pd_review_export(pd_store *store, int64_t id, uint8_t **out, size_t *out_len)
{
    held hb;
    int rc = find_by_id(store, id, &hb);
    if (rc)
        return rc;
    return export_held(store, &hb, out, out_len);
}

int pd_outbox_export(pd_store *store, uint64_t seq, uint8_t **out, size_t *out_len)
{
    uint8_t me[PD_PUBKEY_BYTES];
    held hb;
    int rc = pd_keys_identity(store, "enumerator", me, NULL);
    if (rc)
        return rc;
    rc = held_find(store, BY_AUTHOR_SEQ, 0, me, seq, &hb);
    if (rc == PD_ERR_NOTFOUND)
        return pd_store_fail(store, PD_ERR_NOTFOUND, "this device has sealed no batch %llu",
                             (unsigned long long)seq);
    if (rc)
        return rc;
    return export_held(store, &hb, out, out_len);
}

int pd_outbox_import(pd_store *store, const uint8_t *bundle, size_t len, pd_import_result *out)
{
    pd_import_result res = {0};
    pd_bundle_item *items = NULL;
    size_t n = 0, about_me = 0;
    uint8_t me[PD_PUBKEY_BYTES], sup[PD_PUBKEY_BYTES];
    pd_error e = {0};
    int rc = pd_keys_identity(store, "enumerator", me, NULL);
    if (rc)
        return rc;
    if (pd_keys_supervisor_of(store, me, sup, NULL) != PD_OK)
        return pd_store_fail(store, PD_ERR_DENIED,
                             "this device does not know its supervisor's key, so it cannot trust "
                             "a review (pendata outbox supervisor PUBLIC_KEY)");
    if ((rc = pd_bundle_parse(&items, &n, bundle, len, &e)) != PD_OK)
        return pd_store_fail(store, rc, "%s", e.msg);
    if ((rc = pd_store_begin(store)) != PD_OK)
        goto out_free;
    for (size_t i = 0; i < n && rc == PD_OK; i++) {
        if (items[i].type != PD_BUNDLE_REVIEW)
            continue;
        pd_review r;
        held hb;
        if ((rc = pd_review_parse(&r, items[i].bytes, items[i].len, &e)) != PD_OK) {
            rc = pd_store_fail(store, rc, "item %zu: %s", i, e.msg);
            break;
        }
        rc = held_find(store, BY_HASH, 0, r.batch_hash, 0, &hb);
        if (rc == PD_ERR_NOTFOUND || (rc == PD_OK && memcmp(hb.author_pk, me, PD_PUBKEY_BYTES))) {
            rc = PD_OK;
            continue;
        }
        if (rc)
            break;
        about_me++;
        if ((rc = pd_review_check(&r, hb.hash, sup, &e)) != PD_OK) {
            rc = pd_store_fail(store, rc, "batch %llu: %s", (unsigned long long)hb.seq, e.msg);
            break;
        }
        bool known;
        rc =
            apply_record(store, &hb, &r, items[i].bytes, items[i].len, true, &known, &res.requeued);
        if (rc == PD_OK)
            known ? res.known++ : r.kind == PD_REVIEW_APPROVE ? res.approved++ : res.returned++;
    }
    if (rc == PD_OK && about_me == 0)
        rc = pd_store_fail(store, PD_ERR_NOTFOUND,
                           "the file holds no review of a batch sealed on this device");
    if (rc == PD_OK)
        rc = pd_store_commit(store);
    else
        pd_store_rollback(store);
out_free:
    free(items);
    if (rc == PD_OK && out)
        *out = res;
    return rc;
}
