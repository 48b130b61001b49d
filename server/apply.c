/*
 * apply.c — what the server does with uploaded batches (PROTOCOL.md §5.2, §5.3, §7): verify, keep
 * the chain, apply exactly once, merge field by field, queue conflicts, sign receipts; and the two
 * endpoints that report it, POST /v1/batches/commit and GET /v1/receipts.
 *
 * Verification uses the one verifier of sync/ (pd_batch_peek to find whose batch it is, then
 * pd_batch_verify_reviewed: the author's signature, the supervisor's review of this very batch,
 * bounded inflate and decode). The server adds what only it knows: the author key is an enrolled
 * enumerator's, on the device the header names, not revoked; the reviewer is that enumerator's
 * supervisor; the batch's area and every record it touches lie in the author's assignment.
 *
 * Exactly once, keyed by (device, seq, hash): a batch already held answers its stored receipt;
 * another batch at a held seq, or one whose prev_hash does not continue the chain, is a fork and
 * goes to quarantine; a batch ahead of a gap is held and applied when the gap closes. Applying is
 * ONE storage transaction per batch: records, field changes, conflicts, audit rows, the chain row
 * and its receipt commit together or not at all.
 *
 * A visit op records the visit; the household's status follows by the device's own "set" op
 * after it (core/visit.c sends both).
 *
 * Merge (per field, against field_rev, the last change of each field): untouched since the op's
 * base_rev, or last changed by the same device → applied (counted "merged" when other fields of
 * the record changed since the base); changed elsewhere to the same value → nothing to do
 * (merged); changed elsewhere back to the op's old value → applied; otherwise a conflict row keeps
 * base, server and device values with both sides' authorship, and the server's value stays.
 * Duplicate NIKs across households and double visits (two devices, different outcomes) are
 * conflicts too. The server does not use the device's pd_oplog_apply: ops reach its records
 * through the storage interface (storage.h), so a PostgreSQL backend needs no SQLite code.
 */
#include "srv_internal.h"

#include "korcam.h"

#include "pd_sync.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TEXT_MAX 4096 /* bytes of one text value an op may set */

static const uint8_t zero_hash[PD_HASH_BYTES];

/* ---- receipts ----------------------------------------------------------------------------------
 */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void srv_receipt_encode(const pd_server *srv, const srv_receipt *r, uint8_t out[PD_RECEIPT_BYTES])
{
    memset(out, 0, PD_RECEIPT_BYTES);
    memcpy(out, "PDRC", 4);
    out[4] = 1;
    out[5] = (uint8_t)r->status;
    memcpy(out + 8, r->batch_hash, PD_HASH_BYTES);
    memcpy(out + 40, r->author_pk, PD_PUBKEY_BYTES);
    put_u64(out + 72, r->seq);
    put_u32(out + 80, r->applied);
    put_u32(out + 84, r->merged);
    put_u32(out + 88, r->conflicted);
    put_u64(out + 96, (uint64_t)r->server_time);
    memcpy(out + 104, r->device_id, strnlen(r->device_id, 32));
    srv_sign(srv, out, PD_RECEIPT_SIGNED_BYTES, out + PD_RECEIPT_SIGNED_BYTES);
}

int srv_receipt_decode(const uint8_t in[PD_RECEIPT_BYTES], const uint8_t pk[PD_PUBKEY_BYTES],
                       srv_receipt *r)
{
    memset(r, 0, sizeof *r);
    if (memcmp(in, "PDRC", 4) != 0 || in[4] != 1)
        return PD_ERR_CORRUPT;
    if (crypto_sign_verify_detached(in + PD_RECEIPT_SIGNED_BYTES, in, PD_RECEIPT_SIGNED_BYTES,
                                    pk) != 0)
        return PD_ERR_SIGNATURE;
    if (in[5] < PD_RECEIPT_APPLIED || in[5] > PD_RECEIPT_FORK)
        return PD_ERR_CORRUPT;
    r->status = (srv_receipt_status)in[5];
    memcpy(r->batch_hash, in + 8, PD_HASH_BYTES);
    memcpy(r->author_pk, in + 40, PD_PUBKEY_BYTES);
    r->seq = get_u64(in + 72);
    r->applied = get_u32(in + 80);
    r->merged = get_u32(in + 84);
    r->conflicted = get_u32(in + 88);
    r->server_time = (int64_t)get_u64(in + 96);
    memcpy(r->device_id, in + 104, 32);
    r->device_id[32] = '\0';
    return PD_OK;
}

const char *srv_receipt_status_name(srv_receipt_status s)
{
    switch (s) {
    case PD_RECEIPT_APPLIED:
        return "applied";
    case PD_RECEIPT_VOIDED:
        return "voided";
    case PD_RECEIPT_HELD:
        return "held";
    case PD_RECEIPT_FORK:
        return "fork";
    }
    return "?";
}

/* ---- small helpers -----------------------------------------------------------------------------
 */

static bool value_equal(const pd_value *a, const pd_value *b)
{
    if (a->type == PD_VAL_INT && b->type == PD_VAL_REAL)
        return (double)a->i == b->r;
    if (a->type == PD_VAL_REAL && b->type == PD_VAL_INT)
        return a->r == (double)b->i;
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case PD_VAL_NULL:
        return true;
    case PD_VAL_INT:
        return a->i == b->i;
    case PD_VAL_REAL:
        return a->r == b->r;
    case PD_VAL_TEXT:
    case PD_VAL_BLOB:
        return a->len == b->len && (a->len == 0 || !memcmp(a->p, b->p, a->len));
    }
    return false;
}

/* A TEXT value as a NUL-terminated copy (NULL if not text or too long). Caller frees. */
static char *text_dup(const pd_value *v, size_t max)
{
    if (v->type != PD_VAL_TEXT || v->len > max)
        return NULL;
    char *s = malloc(v->len + 1);
    if (!s)
        return NULL;
    if (v->len)
        memcpy(s, v->p, v->len);
    s[v->len] = '\0';
    if (strlen(s) != v->len) { /* an embedded NUL */
        free(s);
        return NULL;
    }
    return s;
}

static bool valid_text_value(const pd_value *v)
{
    if (v->type != PD_VAL_TEXT)
        return true;
    if (v->len == 0)
        return true;
    char *s = text_dup(v, TEXT_MAX);
    bool ok = false;
    if (s) {
        /* srv_valid_text refuses control characters; notes may hold line breaks and tabs */
        for (char *p = s; *p; p++)
            if (*p == '\n' || *p == '\t' || *p == '\r')
                *p = ' ';
        ok = srv_valid_text(s, TEXT_MAX);
    }
    free(s);
    return ok;
}

/* ---- applying one batch -------------------------------------------------------------------------
 */

typedef struct apply_ctx {
    pd_server *srv;
    pd_storage *st;
    const pd_batch_header *h;
    const uint8_t *hash;
    const pd_srv_user *author;
    int64_t now;
    uint32_t applied, merged, conflicted;
    /* why the batch was refused (with srv_err) */
    const char *error;
    /* a household whose double visit this batch already queued as a conflict */
    char double_visit[256];
} apply_ctx;

static int refuse(apply_ctx *a, int code, const char *error, const char *fmt, ...) PD_PRINTF(4, 5);
static int refuse(apply_ctx *a, int code, const char *error, const char *fmt, ...)
{
    a->error = error;
    pd_error *e = srv_err(a->srv);
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

static int storage_refuse(apply_ctx *a)
{
    int code = pd_storage_error(a->st)->code;
    return refuse(a, code ? code : PD_ERR_INTERNAL, "internal", "%s", pd_storage_errmsg(a->st));
}

static int audit_op(apply_ctx *a, const char *action, const pd_op *op, const char *entity,
                    const char *field, const pd_value *old_v, const pd_value *new_v, int64_t rev)
{
    pd_srv_audit au = {.at = a->now,
                       .action = action,
                       .actor = a->author->id,
                       .device_id = a->h->device_id,
                       .batch_hash = a->hash,
                       .seq = op->seq,
                       .entity = entity,
                       .target = op->target,
                       .field = field,
                       .old_value = old_v,
                       .new_value = new_v,
                       .rev = rev};
    return a->st->ops->audit_add(a->st, &au) == PD_OK ? PD_OK : storage_refuse(a);
}

static void change_of(apply_ctx *a, const pd_op *op, int64_t rev, pd_srv_change *ch)
{
    memset(ch, 0, sizeof *ch);
    ch->rev = rev;
    snprintf(ch->device_id, sizeof ch->device_id, "%s", a->h->device_id);
    ch->has_author = true;
    memcpy(ch->author_pk, a->h->author_pk, PD_PUBKEY_BYTES);
    ch->seq = op->seq;
    ch->hlc = op->hlc;
    ch->has_batch = true;
    memcpy(ch->batch_hash, a->hash, PD_HASH_BYTES);
}

static int add_conflict(apply_ctx *a, const pd_op *op, const char *kind, const char *entity,
                        const char *target, const char *field, const char *desa,
                        const pd_value *base, const pd_value *server_v, const pd_srv_change *server,
                        const pd_value *device_v)
{
    int64_t rev;
    if (a->st->ops->revision_next(a->st, &rev) != PD_OK)
        return storage_refuse(a);
    pd_srv_conflict c = {.kind = kind,
                         .entity = entity,
                         .target = target,
                         .field = field,
                         .area = desa,
                         .base_rev = op->base_rev,
                         .base_value = base,
                         .server_value = server_v,
                         .server = server,
                         .device_value = device_v,
                         .device_id =
                             op->device_id && *op->device_id ? op->device_id : a->h->device_id,
                         .device_author = a->h->author_pk,
                         .device_seq = op->seq,
                         .device_hlc = op->hlc,
                         .batch_seq = (int64_t)a->h->seq,
                         .batch_hash = a->hash,
                         .created_at = a->now,
                         .rev = rev};
    if (a->st->ops->conflict_add(a->st, &c, NULL) != PD_OK)
        return storage_refuse(a);
    return audit_op(a, "conflict", op, entity, field, server_v, device_v, rev);
}

/* A record's desa (record_area's answer, or field_merge_read's) against the author's area. */
static int check_desa(apply_ctx *a, int rc, pd_entity e, const char *id, const char *desa)
{
    if (rc == PD_ERR_NOTFOUND)
        return refuse(a, PD_ERR_INVALID, "bad_batch", "batch %s/%llu: %s %s does not exist",
                      a->h->device_id, (unsigned long long)a->h->seq, pd_entity_name(e), id);
    if (rc != PD_OK)
        return storage_refuse(a);
    if (!srv_areas_cover(a->author->area, desa))
        return refuse(a, PD_ERR_DENIED, "denied", "%s %s lies in %s, outside the author %s's area",
                      pd_entity_name(e), id, desa, a->author->id);
    return PD_OK;
}

/* The desa of a record, checked against the author's area. */
static int check_area(apply_ctx *a, pd_entity e, const char *id, char desa[PD_SRV_CODE_MAX + 1])
{
    return check_desa(a, a->st->ops->record_area(a->st, e, id, desa), e, id, desa);
}

/* ---- korcam checks (server/korcam.c) ------------------------------------------------------------
 * A NIK another member holds (in another household or twice in one) and what it may mean — a
 * proposed household whose head heads another one, a member active here who is deceased or moved
 * there — and, after each op, a proposed household that matches an existing one or a member ended
 * while active elsewhere: korcam.c decides the kind and queues the conflict. */

static srv_korcam_batch korcam_batch(apply_ctx *a, const pd_op *op)
{
    srv_korcam_batch b = {.device_id =
                              op->device_id && *op->device_id ? op->device_id : a->h->device_id,
                          .author_id = a->author->id,
                          .author_pk = a->h->author_pk,
                          .batch_seq = (int64_t)a->h->seq,
                          .batch_hash = a->hash,
                          .now = a->now,
                          .conflicted = &a->conflicted};
    return b;
}

static int check_nik(apply_ctx *a, const pd_op *op, const char *member_id, const char *household_id,
                     const char *desa, const pd_value *nik)
{
    srv_korcam_batch b = korcam_batch(a, op);
    if (srv_korcam_check_nik(a->srv, &b, op, member_id, household_id, desa, nik) != PD_OK)
        return storage_refuse(a);
    return PD_OK;
}

static int korcam_after_op(apply_ctx *a, const pd_op *op)
{
    srv_korcam_batch b = korcam_batch(a, op);
    if (srv_korcam_after_op(a->srv, &b, op) != PD_OK)
        return storage_refuse(a);
    return PD_OK;
}

/* Once every op of the batch is in (derived state: member counts). */
static int korcam_after_batch(apply_ctx *a, const pd_op *ops, size_t n)
{
    if (n == 0)
        return PD_OK;
    srv_korcam_batch b = korcam_batch(a, &ops[n - 1]);
    if (srv_korcam_after_batch(a->srv, &b, ops, n) != PD_OK)
        return storage_refuse(a);
    return PD_OK;
}

/* What merging one field reads: the record's desa (checked), the field's value and last change,
 * whether the record changed elsewhere since the op's base. One storage call where the backend
 * has field_merge_read (SQLite), else four. On PD_OK the caller clears m->value. */
static int merge_read(apply_ctx *a, const pd_op *op, pd_entity e, int col, const char *dev,
                      pd_srv_merge_read *m)
{
    pd_storage *st = a->st;
    memset(m, 0, sizeof *m);
    if (st->ops->field_merge_read) {
        int rc = st->ops->field_merge_read(st, e, op->target, col, op->base_rev, dev, m);
        if ((rc = check_desa(a, rc, e, op->target, m->desa)) != PD_OK)
            pd_srv_value_clear(&m->value);
        return rc;
    }
    int rc = check_area(a, e, op->target, m->desa);
    if (rc != PD_OK)
        return rc;
    if (st->ops->changed_elsewhere(st, e, op->target, op->base_rev, dev, &m->changed_elsewhere) !=
        PD_OK)
        return storage_refuse(a);
    rc = st->ops->field_change(st, e, op->target, col, &m->last);
    if (rc != PD_OK && rc != PD_ERR_NOTFOUND)
        return storage_refuse(a);
    m->has_last = rc == PD_OK;
    if (st->ops->field_get(st, e, op->target, col, &m->value) != PD_OK)
        return storage_refuse(a);
    return PD_OK;
}

/* One field of an existing record, merged (op kinds "set" and "end"). */
static int merge_field(apply_ctx *a, const pd_op *op, pd_entity e, const char *field)
{
    size_t ncols;
    const pd_column *cols = pd_entity_columns(e, &ncols);
    int col = pd_entity_column(e, field);
    if (col < 0 || !cols[col].settable)
        return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: %s.%s cannot be set",
                      (long long)op->seq, pd_entity_name(e), field);
    if (!pd_column_accepts(&cols[col], &op->new_value) || !valid_text_value(&op->new_value))
        return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: a bad value for %s.%s",
                      (long long)op->seq, pd_entity_name(e), field);
    pd_storage *st = a->st;
    const char *dev = op->device_id && *op->device_id ? op->device_id : a->h->device_id;
    pd_srv_merge_read m;
    int rc = merge_read(a, op, e, col, dev, &m);
    if (rc != PD_OK)
        return rc;
    const char *desa = m.desa;
    pd_srv_value cur = m.value; /* (cleared on every return below) */
    if (e == PD_ENT_HOUSEHOLD && !strcmp(field, "status") && a->double_visit[0] &&
        !strcmp(a->double_visit, op->target)) {
        a->conflicted++; /* its conflict row is the double visit's */
        pd_srv_value_clear(&cur);
        return PD_OK;
    }
    if (e == PD_ENT_HOUSEHOLD && !strcmp(field, "desa")) {
        char *nd = text_dup(&op->new_value, PD_SRV_CODE_MAX);
        bool ok = nd && srv_areas_cover(a->author->area, nd);
        free(nd);
        if (!ok) {
            pd_srv_value_clear(&cur);
            return refuse(a, PD_ERR_DENIED, "denied",
                          "op %lld moves household %s outside the author's area",
                          (long long)op->seq, op->target);
        }
    }
    bool other_fields = m.changed_elsewhere;
    const pd_srv_change *last = m.has_last ? &m.last : NULL;
    bool changed_since = last && last->rev > op->base_rev && strcmp(last->device_id, dev);
    const char *action;
    if (!changed_since || value_equal(&cur.v, &op->old_value)) {
        if (value_equal(&cur.v, &op->new_value)) {
            a->merged++; /* already so */
            pd_srv_value_clear(&cur);
            return PD_OK;
        }
        int64_t rev;
        pd_srv_change ch;
        if (st->ops->revision_next(st, &rev) != PD_OK) {
            pd_srv_value_clear(&cur);
            return storage_refuse(a);
        }
        change_of(a, op, rev, &ch);
        if (st->ops->field_set(st, e, op->target, col, &op->new_value, &ch) != PD_OK) {
            pd_srv_value_clear(&cur);
            if (pd_storage_error(st)->code == PD_ERR_INVALID)
                return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: %s", (long long)op->seq,
                              pd_storage_errmsg(st));
            return storage_refuse(a);
        }
        if (other_fields || changed_since) {
            a->merged++;
            action = "merge";
        } else {
            a->applied++;
            action = "apply";
        }
        rc = audit_op(a, action, op, pd_entity_name(e), field, &cur.v, &op->new_value, rev);
        if (rc == PD_OK && e == PD_ENT_MEMBER && !strcmp(field, "nik")) {
            pd_srv_value hh = {0};
            if (st->ops->field_get(st, e, op->target, pd_entity_column(e, "household_id"), &hh) ==
                PD_OK) {
                char *hid = text_dup(&hh.v, 255);
                if (hid)
                    rc = check_nik(a, op, op->target, hid, desa, &op->new_value);
                free(hid);
            }
            pd_srv_value_clear(&hh);
        }
        pd_srv_value_clear(&cur);
        return rc;
    }
    if (value_equal(&cur.v, &op->new_value)) {
        a->merged++; /* both sides made the same change */
        pd_srv_value_clear(&cur);
        return PD_OK;
    }
    a->conflicted++;
    rc = add_conflict(a, op, "field", pd_entity_name(e), op->target, field, desa, &op->old_value,
                      &cur.v, last, &op->new_value);
    pd_srv_value_clear(&cur);
    return rc;
}

/* ---- records from an op's JSON object ----------------------------------------------------------
 */

typedef struct json_rec {
    pd_srv_field f[48];
    size_t n;
    uint8_t *blobs[8];
    size_t nblobs;
    cJSON *root;
} json_rec;

static void json_rec_free(json_rec *r)
{
    for (size_t i = 0; i < r->nblobs; i++)
        free(r->blobs[i]);
    cJSON_Delete(r->root);
    memset(r, 0, sizeof *r);
}

static const pd_value *json_rec_get(const json_rec *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->f[i].name, name))
            return &r->f[i].value;
    return NULL;
}

static int json_rec_text(apply_ctx *a, const json_rec *r, const char *name, char *out, size_t cap)
{
    const pd_value *v = json_rec_get(r, name);
    if (!v || v->type != PD_VAL_TEXT || v->len >= cap)
        return refuse(a, PD_ERR_INVALID, "bad_batch", "the record has no valid '%s'", name);
    memcpy(out, v->p, v->len);
    out[v->len] = '\0';
    return PD_OK;
}

/* Parse the op's JSON object into fields of entity e (column 0, the id, from the target; the
 * server-kept columns refused). */
static int json_record(apply_ctx *a, const pd_op *op, pd_entity e, json_rec *r)
{
    memset(r, 0, sizeof *r);
    if (op->new_value.type != PD_VAL_TEXT)
        return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: the %s record must be JSON text",
                      (long long)op->seq, pd_entity_name(e));
    /* srv_json_parse: a \u0000 would cut a value short of what the author signed */
    r->root = srv_json_parse(op->new_value.p, op->new_value.len);
    if (!cJSON_IsObject(r->root))
        return refuse(a, PD_ERR_INVALID, "bad_batch",
                      "op %lld: the %s record is not a JSON object (or a string in it holds "
                      "\\u0000)",
                      (long long)op->seq, pd_entity_name(e));
    size_t ncols;
    const pd_column *cols = pd_entity_columns(e, &ncols);
    r->f[r->n].name = cols[0].name;
    r->f[r->n].value = (pd_value){
        .type = PD_VAL_TEXT, .p = (const uint8_t *)op->target, .len = strlen(op->target)};
    r->n++;
    const cJSON *it;
    cJSON_ArrayForEach(it, r->root)
    {
        int c = pd_entity_column(e, it->string);
        if (it->string && !strcmp(it->string, "rev"))
            continue; /* the device's view of a revision: the server assigns its own */
        if (c < 0 || !strcmp(it->string, "device_id") || !strcmp(it->string, "batch_hash"))
            return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: %s has no field '%s'",
                          (long long)op->seq, pd_entity_name(e), it->string ? it->string : "");
        if (c == 0) {
            if (!cJSON_IsString(it) || strcmp(it->valuestring, op->target) != 0)
                return refuse(a, PD_ERR_INVALID, "bad_batch",
                              "op %lld: the record's id is not the op's target",
                              (long long)op->seq);
            continue;
        }
        if (r->n >= PD_ARRAY_LEN(r->f))
            return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: too many fields",
                          (long long)op->seq);
        for (size_t k = 0; k < r->n; k++)
            if (!strcmp(r->f[k].name, cols[c].name))
                return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: field '%s' twice",
                              (long long)op->seq, cols[c].name);
        pd_value v = {0};
        if (cJSON_IsNull(it)) {
            v.type = PD_VAL_NULL;
        } else if (cols[c].type == PD_VAL_INT && (cJSON_IsNumber(it) || cJSON_IsBool(it))) {
            double d = cJSON_IsBool(it) ? (cJSON_IsTrue(it) ? 1 : 0) : it->valuedouble;
            if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0)
                return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: %s must be an integer",
                              (long long)op->seq, cols[c].name);
            v.type = PD_VAL_INT;
            v.i = (int64_t)d;
        } else if (cols[c].type == PD_VAL_REAL && cJSON_IsNumber(it)) {
            v.type = PD_VAL_REAL;
            v.r = it->valuedouble;
        } else if (cols[c].type == PD_VAL_TEXT && cJSON_IsString(it)) {
            v.type = PD_VAL_TEXT;
            v.p = (const uint8_t *)it->valuestring;
            v.len = strlen(it->valuestring);
        } else if (cols[c].type == PD_VAL_BLOB && cJSON_IsString(it) &&
                   r->nblobs < PD_ARRAY_LEN(r->blobs) && strlen(it->valuestring) % 2 == 0 &&
                   strlen(it->valuestring) <= 2 * 1024) {
            size_t bn = strlen(it->valuestring) / 2;
            uint8_t *b = malloc(bn ? bn : 1);
            if (!b || !srv_unhex(it->valuestring, b, bn)) {
                free(b);
                return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: %s must be hex",
                              (long long)op->seq, cols[c].name);
            }
            r->blobs[r->nblobs++] = b;
            v.type = PD_VAL_BLOB;
            v.p = b;
            v.len = bn;
        } else {
            return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: %s has the wrong type",
                          (long long)op->seq, cols[c].name);
        }
        if (!pd_column_accepts(&cols[c], &v) || !valid_text_value(&v))
            return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: a bad value for %s.%s",
                          (long long)op->seq, pd_entity_name(e), cols[c].name);
        r->f[r->n].name = cols[c].name;
        r->f[r->n].value = v;
        r->n++;
    }
    return PD_OK;
}

static int insert_record(apply_ctx *a, const pd_op *op, pd_entity e, json_rec *r, int64_t *rev)
{
    if (a->st->ops->revision_next(a->st, rev) != PD_OK)
        return storage_refuse(a);
    int rc = a->st->ops->record_insert(a->st, e, r->f, r->n, *rev);
    if (rc == PD_ERR_INVALID)
        return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: %s", (long long)op->seq,
                      pd_storage_errmsg(a->st));
    if (rc != PD_OK)
        return storage_refuse(a);
    return PD_OK;
}

/* "create" of a household or member. */
static int create_record(apply_ctx *a, const pd_op *op, pd_entity e)
{
    if (e != PD_ENT_HOUSEHOLD && e != PD_ENT_MEMBER)
        return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: cannot create a %s",
                      (long long)op->seq, pd_entity_name(e));
    json_rec r;
    int rc = json_record(a, op, e, &r);
    char desa[PD_SRV_CODE_MAX + 1], hh[256] = "";
    if (rc != PD_OK)
        goto out;
    if (e == PD_ENT_HOUSEHOLD) {
        if ((rc = json_rec_text(a, &r, "desa", desa, sizeof desa)) != PD_OK)
            goto out;
        if (!srv_areas_cover(a->author->area, desa)) {
            rc = refuse(a, PD_ERR_DENIED, "denied",
                        "new household %s lies in %s, outside the "
                        "author %s's area",
                        op->target, desa, a->author->id);
            goto out;
        }
    } else {
        if ((rc = json_rec_text(a, &r, "household_id", hh, sizeof hh)) != PD_OK ||
            (rc = check_area(a, PD_ENT_HOUSEHOLD, hh, desa)) != PD_OK)
            goto out;
    }
    int64_t rev;
    rc = a->st->ops->record_rev(a->st, e, op->target, &rev);
    if (rc == PD_OK) { /* made elsewhere already (two devices, one new id) */
        a->conflicted++;
        rc = add_conflict(a, op, "create", pd_entity_name(e), op->target, "", desa, NULL, NULL,
                          NULL, &op->new_value);
        goto out;
    }
    if (rc != PD_ERR_NOTFOUND) {
        rc = storage_refuse(a);
        goto out;
    }
    if ((rc = insert_record(a, op, e, &r, &rev)) != PD_OK)
        goto out;
    a->applied++;
    rc = audit_op(a, "apply", op, pd_entity_name(e), "", NULL, &op->new_value, rev);
    const pd_value *nik = e == PD_ENT_MEMBER ? json_rec_get(&r, "nik") : NULL;
    if (rc == PD_OK && nik && nik->type == PD_VAL_TEXT)
        rc = check_nik(a, op, op->target, hh, desa, nik);
out:
    json_rec_free(&r);
    return rc;
}

/* Double visit: another device's visit of the household with a different outcome. */
typedef struct visit_ctx {
    const char *device, *outcome, *self;
    char other_outcome[32], other_device[PD_SRV_ID_MAX + 1];
    bool found;
} visit_ctx;

static int visit_cb(void *ctx, const char *id, const char *outcome, const char *device)
{
    visit_ctx *c = ctx;
    if (!strcmp(id, c->self) || !device || !strcmp(device, c->device) ||
        !strcmp(outcome, c->outcome))
        return 0;
    snprintf(c->other_outcome, sizeof c->other_outcome, "%s", outcome);
    snprintf(c->other_device, sizeof c->other_device, "%s", device);
    c->found = true;
    return 1;
}

static int record_visit(apply_ctx *a, const pd_op *op)
{
    json_rec r;
    int rc = json_record(a, op, PD_ENT_VISIT, &r);
    char hh[256], outcome[32], desa[PD_SRV_CODE_MAX + 1];
    if (rc != PD_OK || (rc = json_rec_text(a, &r, "household_id", hh, sizeof hh)) != PD_OK ||
        (rc = json_rec_text(a, &r, "outcome", outcome, sizeof outcome)) != PD_OK ||
        (rc = check_area(a, PD_ENT_HOUSEHOLD, hh, desa)) != PD_OK)
        goto out;
    int64_t rev;
    rc = a->st->ops->record_rev(a->st, PD_ENT_VISIT, op->target, &rev);
    if (rc == PD_OK) { /* already recorded */
        a->merged++;
        rc = PD_OK;
        goto out;
    }
    if (rc != PD_ERR_NOTFOUND) {
        rc = storage_refuse(a);
        goto out;
    }
    const char *dev = op->device_id && *op->device_id ? op->device_id : a->h->device_id;
    r.f[r.n].name = "device_id";
    r.f[r.n++].value =
        (pd_value){.type = PD_VAL_TEXT, .p = (const uint8_t *)dev, .len = strlen(dev)};
    r.f[r.n].name = "batch_hash";
    r.f[r.n++].value = (pd_value){.type = PD_VAL_BLOB, .p = a->hash, .len = PD_HASH_BYTES};
    if ((rc = insert_record(a, op, PD_ENT_VISIT, &r, &rev)) != PD_OK)
        goto out;
    rc = audit_op(a, "apply", op, "visit", "", NULL, &op->new_value, rev);
    if (rc != PD_OK)
        goto out;

    visit_ctx v = {.device = dev, .outcome = outcome, .self = op->target};
    int vrc = a->st->ops->visits_of(a->st, hh, visit_cb, &v);
    if (vrc != PD_OK && vrc != 1) {
        rc = storage_refuse(a);
        goto out;
    }
    pd_value mine = {.type = PD_VAL_TEXT, .p = (const uint8_t *)outcome, .len = strlen(outcome)};
    if (v.found) {
        pd_value theirs = {.type = PD_VAL_TEXT,
                           .p = (const uint8_t *)v.other_outcome,
                           .len = strlen(v.other_outcome)};
        pd_srv_change other = {0};
        snprintf(other.device_id, sizeof other.device_id, "%s", v.other_device);
        a->conflicted++;
        /* the device's own "set status" op that follows is part of this same conflict */
        snprintf(a->double_visit, sizeof a->double_visit, "%s", hh);
        rc = add_conflict(a, op, "double_visit", "household", hh, "status", desa, NULL, &theirs,
                          &other, &mine);
        goto out;
    }
    /* (the household's status changes by the device's own "set status" op that follows) */
    a->applied++;
out:
    json_rec_free(&r);
    return rc;
}

static int record_photo(apply_ctx *a, const pd_op *op)
{
    uint8_t h[PD_HASH_BYTES];
    if (!srv_unhex(op->target, h, sizeof h))
        return refuse(a, PD_ERR_INVALID, "bad_batch",
                      "op %lld: a photo's target must be its "
                      "hash in hex",
                      (long long)op->seq);
    json_rec r;
    int rc = json_record(a, op, PD_ENT_PHOTO, &r);
    char hh[256], desa[PD_SRV_CODE_MAX + 1];
    if (rc != PD_OK || (rc = json_rec_text(a, &r, "household_id", hh, sizeof hh)) != PD_OK ||
        (rc = check_area(a, PD_ENT_HOUSEHOLD, hh, desa)) != PD_OK)
        goto out;
    int64_t rev;
    rc = a->st->ops->record_rev(a->st, PD_ENT_PHOTO, op->target, &rev);
    if (rc == PD_OK) {
        a->merged++;
        rc = PD_OK;
        goto out;
    }
    if (rc != PD_ERR_NOTFOUND) {
        rc = storage_refuse(a);
        goto out;
    }
    const char *dev = op->device_id && *op->device_id ? op->device_id : a->h->device_id;
    r.f[r.n].name = "device_id";
    r.f[r.n++].value =
        (pd_value){.type = PD_VAL_TEXT, .p = (const uint8_t *)dev, .len = strlen(dev)};
    r.f[r.n].name = "batch_hash";
    r.f[r.n++].value = (pd_value){.type = PD_VAL_BLOB, .p = a->hash, .len = PD_HASH_BYTES};
    if ((rc = insert_record(a, op, PD_ENT_PHOTO, &r, &rev)) != PD_OK)
        goto out;
    a->applied++;
    rc = audit_op(a, "apply", op, "photo", "", NULL, &op->new_value, rev);
out:
    json_rec_free(&r);
    return rc;
}

static int apply_op(apply_ctx *a, const pd_op *op)
{
    int e = pd_entity_parse(op->entity);
    if (e < 0 || !op->kind || !op->target || !*op->target || strlen(op->target) > 255)
        return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: unknown entity or no target",
                      (long long)op->seq);
    if (!strcmp(op->kind, "set")) {
        if (e != PD_ENT_HOUSEHOLD && e != PD_ENT_MEMBER)
            return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: a %s cannot be set",
                          (long long)op->seq, op->entity);
        return merge_field(a, op, (pd_entity)e, op->field ? op->field : "");
    }
    if (!strcmp(op->kind, "end")) {
        if (e != PD_ENT_MEMBER)
            return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: only a member can end",
                          (long long)op->seq);
        return merge_field(a, op, PD_ENT_MEMBER, op->field && *op->field ? op->field : "status");
    }
    if (!strcmp(op->kind, "create"))
        return create_record(a, op, (pd_entity)e);
    if (!strcmp(op->kind, "visit"))
        return record_visit(a, op);
    if (!strcmp(op->kind, "photo"))
        return record_photo(a, op);
    return refuse(a, PD_ERR_INVALID, "bad_batch", "op %lld: unknown kind '%s'", (long long)op->seq,
                  op->kind);
}

/* ---- one batch: who, chain, apply ---------------------------------------------------------------
 */

/* What processing one batch gave. */
typedef struct batch_result {
    pd_srv_result r;
    bool has_receipt;
    uint8_t receipt[PD_RECEIPT_BYTES];
    const char *upload_id; /* the upload whose result row this is (NULL: none to store) */
    bool stored;           /* the row went in with the batch's own transaction */
} batch_result;

static void reject(batch_result *out, pd_server *srv, const char *error)
{
    snprintf(out->r.status, sizeof out->r.status, "rejected");
    snprintf(out->r.error, sizeof out->r.error, "%s", error);
    snprintf(out->r.message, sizeof out->r.message, "%s", pd_server_errmsg(srv));
}

static const char *error_name(int code)
{
    switch (code) {
    case PD_ERR_SIGNATURE:
        return "bad_signature";
    case PD_ERR_DENIED:
        return "denied";
    case PD_ERR_TOOBIG:
        return "too_large";
    case PD_ERR_VERSION:
        return "version";
    default:
        return "bad_batch";
    }
}

/* What pd_batch_verify_reviewed said of a batch and its review, found without the lock. */
typedef struct prechecked {
    int rc;
    pd_error err;
    pd_batch *b; /* (PD_OK) taken over by verify_batch */
    bool voided;
    uint8_t supervisor_pk[PD_PUBKEY_BYTES];
} prechecked;

/* Everything known about a batch once verified. */
typedef struct verified {
    pd_batch *b;
    pd_batch_header h;
    uint8_t hash[PD_HASH_BYTES];
    bool voided;
    pd_srv_user author;
    uint8_t approver_pk[PD_PUBKEY_BYTES];
    const uint8_t *bytes, *review;
    size_t len, review_len;
    prechecked *pre; /* NULL: verify_batch checks the signatures itself */
} verified;

/* Verify a batch with its review record; PD_OK, or the failure on srv with *error set. */
static int verify_batch(pd_server *srv, verified *v, const char **error)
{
    pd_storage *st = srv_store(srv);
    pd_error e = {0};
    pd_srv_person_key k;
    int rc = st->ops->person_key_get(st, v->h.author_pk, &k);
    *error = "denied";
    if (rc == PD_ERR_NOTFOUND)
        return srv_fail(srv, PD_ERR_DENIED, "batch %s/%llu: its author key is not enrolled",
                        v->h.device_id, (unsigned long long)v->h.seq);
    if (rc == PD_OK)
        rc = st->ops->user_get(st, k.user_id, &v->author);
    if (rc != PD_OK) {
        *error = "internal";
        return srv_fail_storage(srv);
    }
    if (strcmp(v->author.role, "enumerator") != 0)
        return srv_fail(srv, PD_ERR_DENIED,
                        "batch %s/%llu: its author %s is a %s, not an "
                        "enumerator",
                        v->h.device_id, (unsigned long long)v->h.seq, v->author.id, v->author.role);
    if (strcmp(k.device_id, v->h.device_id) != 0)
        return srv_fail(srv, PD_ERR_DENIED,
                        "batch %s/%llu: the author's key was enrolled on "
                        "device %s",
                        v->h.device_id, (unsigned long long)v->h.seq, k.device_id);
    pd_srv_device dev;
    if (st->ops->device_get(st, v->h.device_id, &dev) != PD_OK || dev.revoked_at)
        return srv_fail(srv, PD_ERR_DENIED, "batch %s/%llu: device %s is revoked or unknown",
                        v->h.device_id, (unsigned long long)v->h.seq, v->h.device_id);
    if (!v->author.supervisor_id[0])
        return srv_fail(srv, PD_ERR_DENIED,
                        "batch %s/%llu: author %s has no supervisor to "
                        "approve it",
                        v->h.device_id, (unsigned long long)v->h.seq, v->author.id);
    if (!v->review)
        return srv_fail(srv, PD_ERR_DENIED,
                        "batch %s/%llu: no review record (approve or "
                        "return) by the author's supervisor came with it",
                        v->h.device_id, (unsigned long long)v->h.seq);
    pd_review rv;
    /* The bundle precheck parsed (and so verified) these very review bytes outside the lock:
     * only the key it named is needed here. */
    if (v->pre)
        memcpy(rv.supervisor_pk, v->pre->supervisor_pk, PD_PUBKEY_BYTES);
    else if (pd_review_parse(&rv, v->review, v->review_len, &e) != PD_OK) {
        *error = error_name(e.code);
        return srv_fail(srv, e.code, "batch %s/%llu: review record: %s", v->h.device_id,
                        (unsigned long long)v->h.seq, e.msg);
    }
    pd_srv_person_key sk;
    rc = st->ops->person_key_get(st, rv.supervisor_pk, &sk);
    if (rc != PD_OK || strcmp(sk.user_id, v->author.supervisor_id) != 0)
        return srv_fail(srv, PD_ERR_DENIED,
                        "batch %s/%llu: reviewed by a key that is not the "
                        "author's supervisor %s",
                        v->h.device_id, (unsigned long long)v->h.seq, v->author.supervisor_id);
    memcpy(v->approver_pk, rv.supervisor_pk, PD_PUBKEY_BYTES);
    if (v->pre && !memcmp(v->pre->supervisor_pk, rv.supervisor_pk, PD_PUBKEY_BYTES)) {
        rc = v->pre->rc;
        e = v->pre->err;
        v->b = v->pre->b;
        v->voided = v->pre->voided;
        v->pre->b = NULL;
    } else {
        rc = pd_batch_verify_reviewed(&v->b, &v->voided, v->bytes, v->len, v->h.author_pk,
                                      v->review, v->review_len, rv.supervisor_pk, &e);
    }
    if (rc != PD_OK) {
        *error = error_name(rc);
        return srv_fail(srv, rc, "batch %s/%llu: %s", v->h.device_id, (unsigned long long)v->h.seq,
                        e.msg);
    }
    if (v->h.area[0] && !srv_areas_overlap(v->author.area, v->h.area)) {
        pd_batch_free(v->b);
        v->b = NULL;
        return srv_fail(srv, PD_ERR_DENIED,
                        "batch %s/%llu: area %s is outside the author %s's "
                        "area",
                        v->h.device_id, (unsigned long long)v->h.seq, v->h.area, v->author.id);
    }
    return PD_OK;
}

static void make_receipt(pd_server *srv, const verified *v, srv_receipt_status status,
                         const apply_ctx *a, uint8_t out[PD_RECEIPT_BYTES])
{
    srv_receipt r = {.status = status, .seq = v->h.seq, .server_time = srv_now_ms()};
    memcpy(r.batch_hash, v->hash, PD_HASH_BYTES);
    memcpy(r.author_pk, v->h.author_pk, PD_PUBKEY_BYTES);
    snprintf(r.device_id, sizeof r.device_id, "%s", v->h.device_id);
    if (a) {
        r.applied = a->applied;
        r.merged = a->merged;
        r.conflicted = a->conflicted;
    }
    srv_receipt_encode(srv, &r, out);
}

static void fill_stored(pd_srv_batch *sb, const verified *v, const char *state)
{
    memset(sb, 0, sizeof *sb);
    snprintf(sb->device_id, sizeof sb->device_id, "%s", v->h.device_id);
    sb->seq = (int64_t)v->h.seq;
    memcpy(sb->hash, v->hash, PD_HASH_BYTES);
    memcpy(sb->prev_hash, v->h.prev_hash, PD_HASH_BYTES);
    memcpy(sb->author_pk, v->h.author_pk, PD_PUBKEY_BYTES);
    sb->has_approver = true;
    memcpy(sb->approver_pk, v->approver_pk, PD_PUBKEY_BYTES);
    snprintf(sb->area, sizeof sb->area, "%s", v->h.area);
    snprintf(sb->state, sizeof sb->state, "%s", state);
    sb->bytes = (uint8_t *)v->bytes;
    sb->bytes_len = v->len;
    sb->review = (uint8_t *)v->review;
    sb->review_len = v->review_len;
    sb->received_at = srv_now_ms();
}

/* Quarantine a fork (in the caller's transaction). */
static int quarantine(pd_server *srv, const verified *v, const char *reason, batch_result *out)
{
    pd_srv_batch sb;
    fill_stored(&sb, v, "fork");
    snprintf(sb.reason, sizeof sb.reason, "%s", reason);
    make_receipt(srv, v, PD_RECEIPT_FORK, NULL, sb.receipt);
    sb.has_receipt = true;
    pd_srv_audit au = {.at = srv_now_ms(),
                       .action = "fork",
                       .actor = v->author.id,
                       .device_id = v->h.device_id,
                       .batch_hash = v->hash,
                       .seq = (int64_t)v->h.seq};
    if (srv_store(srv)->ops->quarantine_put(srv_store(srv), &sb) != PD_OK ||
        srv_store(srv)->ops->audit_add(srv_store(srv), &au) != PD_OK)
        return srv_fail_storage(srv);
    snprintf(out->r.status, sizeof out->r.status, "fork");
    memcpy(out->receipt, sb.receipt, PD_RECEIPT_BYTES);
    out->has_receipt = true;
    return PD_OK;
}

/* Apply (or void) a verified batch that continues the chain, in the caller's transaction.
 * held: it is already stored as held (update it rather than insert). */
static int apply_verified(pd_server *srv, const verified *v, bool held, batch_result *out)
{
    apply_ctx a = {.srv = srv,
                   .st = srv_store(srv),
                   .h = &v->h,
                   .hash = v->hash,
                   .author = &v->author,
                   .now = srv_now_ms()};
    srv_receipt_status status = PD_RECEIPT_VOIDED;
    if (!v->voided) {
        size_t n;
        const pd_op *ops = pd_batch_ops(v->b, &n);
        for (size_t i = 0; i <= n; i++) {
            int rc = i < n ? apply_op(&a, &ops[i]) : korcam_after_batch(&a, ops, n);
            if (rc == PD_OK && i < n)
                rc = korcam_after_op(&a, &ops[i]);
            if (rc != PD_OK) {
                snprintf(out->r.status, sizeof out->r.status, "rejected");
                snprintf(out->r.error, sizeof out->r.error, "%s", a.error ? a.error : "internal");
                snprintf(out->r.message, sizeof out->r.message, "%s", pd_server_errmsg(srv));
                return rc;
            }
        }
        status = PD_RECEIPT_APPLIED;
    } else {
        pd_srv_audit au = {.at = a.now,
                           .action = "void",
                           .actor = v->author.id,
                           .device_id = v->h.device_id,
                           .batch_hash = v->hash,
                           .seq = (int64_t)v->h.seq};
        if (srv_store(srv)->ops->audit_add(srv_store(srv), &au) != PD_OK)
            return srv_fail_storage(srv);
    }
    pd_srv_batch sb;
    const char *state = status == PD_RECEIPT_APPLIED ? "applied" : "voided";
    fill_stored(&sb, v, state);
    make_receipt(srv, v, status, &a, sb.receipt);
    sb.has_receipt = true;
    int rc = held ? srv_store(srv)->ops->batch_set_state(srv_store(srv), sb.device_id, sb.seq,
                                                         state, sb.receipt, a.now)
                  : srv_store(srv)->ops->batch_put(srv_store(srv), &sb);
    if (rc == PD_OK && !held)
        rc = srv_store(srv)->ops->batch_set_state(srv_store(srv), sb.device_id, sb.seq, state,
                                                  sb.receipt, a.now);
    if (rc != PD_OK)
        return srv_fail_storage(srv);
    snprintf(out->r.status, sizeof out->r.status, "%s", state);
    memcpy(out->receipt, sb.receipt, PD_RECEIPT_BYTES);
    out->has_receipt = true;
    return PD_OK;
}

/* ---- transactions that may be lost to another writer ------------------------------------------
 * With two servers on one database (or an operator command beside `serve`), a write transaction
 * can fail with PD_ERR_BUSY: a serialization failure or deadlock in PostgreSQL, SQLITE_BUSY past
 * the busy timeout. The whole transaction was rolled back, so it runs again from its first read
 * after a short random pause (so that two losers do not collide again), a bounded number of
 * times. Every decision (exactly once, the chain) is read inside the transaction that acts on
 * it. */

#define TXN_ATTEMPTS 5

/* Pause before attempt `attempt` + 1; false when no attempt is left. */
static bool retry_pause(int attempt)
{
    if (attempt + 1 >= TXN_ATTEMPTS)
        return false;
    uint32_t us = 500u + randombytes_uniform(1000u << attempt); /* 0.5-1.5 ms, then doubling */
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)us * 1000};
    nanosleep(&ts, NULL);
    return true;
}

/* Exactly once: a batch the server holds already (chain or quarantine) answers what it got
 * then. PD_OK with out filled (again), PD_ERR_NOTFOUND, or a storage failure (on srv). */
static int known_batch(pd_server *srv, const uint8_t hash[PD_HASH_BYTES], batch_result *out)
{
    pd_storage *st = srv_store(srv);
    pd_srv_batch known;
    int rc = st->ops->batch_by_hash(st, hash, &known);
    if (rc == PD_ERR_NOTFOUND)
        rc = st->ops->quarantine_by_hash(st, hash, &known);
    if (rc == PD_ERR_NOTFOUND)
        return rc;
    if (rc != PD_OK)
        return srv_fail_storage(srv);
    snprintf(out->r.status, sizeof out->r.status, "%s", known.state);
    out->r.again = true;
    out->has_receipt = known.has_receipt;
    memcpy(out->receipt, known.receipt, PD_RECEIPT_BYTES);
    pd_srv_batch_clear(&known);
    return PD_OK;
}

/* Chain decision and apply, in one transaction (one attempt). */
static int place_once(pd_server *srv, const verified *v, batch_result *out)
{
    pd_storage *st = srv_store(srv);
    if (st->ops->begin(st) != PD_OK)
        return srv_fail_storage(srv);
    /* the chain's head first: in PostgreSQL that read takes the device's chain lock (and reads
     * after it), so what follows sees every batch of the device committed before */
    pd_srv_batch last;
    int64_t expected = 1;
    uint8_t prev[PD_HASH_BYTES];
    memcpy(prev, zero_hash, sizeof prev);
    int rc = st->ops->batch_last(st, v->h.device_id, &last);
    if (rc == PD_OK) {
        expected = last.seq + 1;
        memcpy(prev, last.hash, PD_HASH_BYTES);
        pd_srv_batch_clear(&last);
    } else if (rc != PD_ERR_NOTFOUND) {
        rc = srv_fail_storage(srv);
        goto fail;
    }
    /* exactly once, decided inside the transaction: another server (or request) may have
     * applied this very batch since the caller's look outside it */
    rc = known_batch(srv, v->hash, out);
    if (rc == PD_OK) {
        st->ops->rollback(st); /* nothing written */
        return PD_OK;
    }
    if (rc != PD_ERR_NOTFOUND)
        goto fail;
    int64_t seq = (int64_t)v->h.seq;
    if (seq != expected) {
        pd_srv_batch at;
        rc = st->ops->batch_get(st, v->h.device_id, seq, &at);
        if (rc == PD_OK) {
            pd_srv_batch_clear(&at);
            rc = quarantine(srv, v, "another batch is held at this seq", out);
        } else if (rc != PD_ERR_NOTFOUND) {
            rc = srv_fail_storage(srv);
        } else if (seq < expected) { /* (cannot happen: every seq below is held) */
            rc = quarantine(srv, v, "seq below the chain's head", out);
        } else {
            pd_srv_batch sb;
            fill_stored(&sb, v, "held");
            make_receipt(srv, v, PD_RECEIPT_HELD, NULL, sb.receipt);
            sb.has_receipt = true;
            rc = st->ops->batch_put(st, &sb);
            if (rc != PD_OK) {
                rc = srv_fail_storage(srv);
            } else {
                snprintf(out->r.status, sizeof out->r.status, "held");
                memcpy(out->receipt, sb.receipt, PD_RECEIPT_BYTES);
                out->has_receipt = true;
            }
        }
    } else if (memcmp(v->h.prev_hash, prev, PD_HASH_BYTES) != 0) {
        rc = quarantine(srv, v, "prev_hash does not continue the chain", out);
    } else {
        rc = apply_verified(srv, v, false, out);
    }
    /* the upload's result row commits with the batch: one commit, not two */
    if (rc == PD_OK && out->upload_id &&
        (rc = st->ops->result_put(st, out->upload_id, &out->r)) != PD_OK)
        rc = srv_fail_storage(srv);
    if (rc != PD_OK)
        goto fail;
    if ((rc = st->ops->commit(st)) != PD_OK) {
        rc = srv_fail_storage(srv);
        goto fail;
    }
    out->stored = out->upload_id != NULL;
    return PD_OK;
fail:
    st->ops->rollback(st);
    return rc;
}

static int place_batch(pd_server *srv, const verified *v, batch_result *out)
{
    const batch_result start = *out;
    for (int attempt = 0;; attempt++) {
        int rc = place_once(srv, v, out);
        if (rc != PD_ERR_BUSY || !retry_pause(attempt))
            return rc;
        *out = start;
    }
}

/* The batch held at seq + 1, if any, in one transaction: applied when it continues the chain at
 * seq, else dropped (to quarantine when it verifies). The chain is read inside the transaction
 * that acts on it. *joined: it was applied or voided (the next one may follow). */
static int drain_once(pd_server *srv, const char *device_id, int64_t seq, bool *joined)
{
    pd_storage *st = srv_store(srv);
    *joined = false;
    if (st->ops->begin(st) != PD_OK)
        return srv_fail_storage(srv);
    pd_srv_batch next, head;
    memset(&next, 0, sizeof next);
    memset(&head, 0, sizeof head);
    verified v;
    memset(&v, 0, sizeof v);
    batch_result out;
    memset(&out, 0, sizeof out);
    int rc = st->ops->batch_get(st, device_id, seq + 1, &next);
    if (rc == PD_ERR_NOTFOUND || (rc == PD_OK && strcmp(next.state, "held") != 0)) {
        rc = PD_OK; /* nothing held there */
        goto fail;
    }
    if (rc != PD_OK || (rc = st->ops->batch_get(st, device_id, seq, &head)) != PD_OK) {
        rc = srv_fail_storage(srv);
        goto fail;
    }
    v.bytes = next.bytes;
    v.len = next.bytes_len;
    v.review = next.review;
    v.review_len = next.review_len;
    const char *error;
    pd_error e = {0};
    bool ok = pd_batch_peek(&v.h, v.hash, v.bytes, v.len, &e) == PD_OK &&
              verify_batch(srv, &v, &error) == PD_OK;
    if (ok && !memcmp(v.h.prev_hash, head.hash, PD_HASH_BYTES)) {
        rc = apply_verified(srv, &v, true, &out);
    } else {
        rc = st->ops->batch_unhold(st, device_id, seq + 1);
        if (rc != PD_OK)
            rc = srv_fail_storage(srv);
        else if (ok)
            rc = quarantine(srv, &v, "prev_hash does not continue the chain", &out);
    }
    if (rc != PD_OK)
        goto fail;
    if ((rc = st->ops->commit(st)) != PD_OK) {
        rc = srv_fail_storage(srv);
        goto fail;
    }
    *joined = !strcmp(out.r.status, "applied") || !strcmp(out.r.status, "voided");
    goto out;
fail:
    st->ops->rollback(st);
out:
    pd_batch_free(v.b);
    pd_srv_batch_clear(&next);
    pd_srv_batch_clear(&head);
    return rc;
}

/* After a batch joined the chain: apply held successors, in order, each in its transaction. */
static void drain_held(pd_server *srv, const char *device_id, int64_t seq)
{
    for (int attempt = 0;;) {
        bool joined;
        int rc = drain_once(srv, device_id, seq, &joined);
        if (rc == PD_ERR_BUSY && retry_pause(attempt++))
            continue;
        if (rc != PD_OK || !joined)
            return;
        seq++;
        attempt = 0;
    }
}

/* Process one batch of a bundle (pre: its signatures checked already, or NULL). */
static void process_batch(pd_server *srv, const uint8_t *bytes, size_t len, const uint8_t *review,
                          size_t review_len, prechecked *pre, batch_result *out)
{
    verified v = {
        .bytes = bytes, .len = len, .review = review, .review_len = review_len, .pre = pre};
    pd_error e = {0};
    int rc = pd_batch_peek(&v.h, v.hash, bytes, len, &e);
    if (rc != PD_OK) {
        srv_fail(srv, rc, "batch: %s", e.msg);
        reject(out, srv, error_name(rc));
        return;
    }
    snprintf(out->r.device_id, sizeof out->r.device_id, "%s", v.h.device_id);
    out->r.seq = (int64_t)v.h.seq;
    memcpy(out->r.hash, v.hash, PD_HASH_BYTES);

    /* exactly once: a batch already held answers what it got then (a first look, which spares
     * a replay the verification; place_batch decides again inside its transaction) */
    rc = known_batch(srv, v.hash, out);
    if (rc == PD_OK)
        return;
    if (rc != PD_ERR_NOTFOUND) {
        reject(out, srv, "internal");
        return;
    }
    const char *error = "bad_batch";
    if (verify_batch(srv, &v, &error) != PD_OK) {
        reject(out, srv, error);
        return;
    }
    if (place_batch(srv, &v, out) != PD_OK) {
        if (strcmp(out->r.status, "rejected") != 0)
            reject(out, srv, "internal");
        out->has_receipt = false;
    } else if (!out->r.again &&
               (!strcmp(out->r.status, "applied") || !strcmp(out->r.status, "voided"))) {
        drain_held(srv, v.h.device_id, (int64_t)v.h.seq);
    }
    pd_batch_free(v.b);
}

/* ---- bundles ------------------------------------------------------------------------------------
 */

typedef struct item_ref {
    size_t idx; /* position in the bundle */
    pd_batch_header h;
    uint8_t hash[PD_HASH_BYTES];
    bool peeked;
    const uint8_t *review; /* the review record that goes with it (a return outranks an approval) */
    size_t review_len;
    bool prechecked;
    prechecked pre;
} item_ref;

/* The part of a bundle's processing that needs neither the storage nor the server's state:
 * parse the bundle, hash and peek each batch, pair it with its review, check both signatures,
 * inflate and decode. Run without the lock. Returns PD_OK, or PD_ERR_INVALID with msg set. */
static int bundle_precheck(const uint8_t *bytes, size_t len, pd_bundle_item **items, size_t *count,
                           item_ref **refs_out, size_t *nbat_out, char *msg, size_t cap)
{
    pd_error e = {0};
    int rc = pd_bundle_parse(items, count, bytes, len, &e);
    if (rc != PD_OK) {
        snprintf(msg, cap, "not a valid bundle: %.*s", (int)(cap > 64 ? cap - 64 : 0), e.msg);
        return PD_ERR_INVALID;
    }
    size_t n = *count, nrev = 0, nbat = 0;
    pd_review *reviews = calloc(n ? n : 1, sizeof *reviews);
    size_t *review_item = calloc(n ? n : 1, sizeof *review_item);
    item_ref *refs = calloc(n ? n : 1, sizeof *refs);
    if (!reviews || !review_item || !refs) {
        snprintf(msg, cap, "out of memory reading a bundle");
        rc = PD_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const pd_bundle_item *it = &(*items)[i];
        if (it->type == PD_BUNDLE_REVIEW) {
            pd_error re = {0};
            if (pd_review_parse(&reviews[nrev], it->bytes, it->len, &re) == PD_OK)
                review_item[nrev++] = i;
        } else if (it->type == PD_BUNDLE_BATCH) {
            refs[nbat].idx = i;
            pd_error pe = {0};
            refs[nbat].peeked =
                pd_batch_peek(&refs[nbat].h, refs[nbat].hash, it->bytes, it->len, &pe) == PD_OK;
            nbat++;
        }
    }
    if (nbat == 0) {
        snprintf(msg, cap, "the bundle holds no batch");
        rc = PD_ERR_INVALID;
        goto out;
    }
    for (size_t k = 0; k < nbat; k++) {
        item_ref *r = &refs[k];
        if (!r->peeked)
            continue;
        const pd_review *chosen = NULL;
        for (size_t j = 0; j < nrev; j++) {
            if (memcmp(reviews[j].batch_hash, r->hash, PD_HASH_BYTES) != 0)
                continue;
            if (!chosen || reviews[j].kind == PD_REVIEW_RETURN) {
                chosen = &reviews[j];
                r->review = (*items)[review_item[j]].bytes;
                r->review_len = (*items)[review_item[j]].len;
            }
        }
        if (!chosen)
            continue;
        const pd_bundle_item *it = &(*items)[r->idx];
        memcpy(r->pre.supervisor_pk, chosen->supervisor_pk, PD_PUBKEY_BYTES);
        r->pre.rc =
            pd_batch_verify_reviewed(&r->pre.b, &r->pre.voided, it->bytes, it->len, r->h.author_pk,
                                     r->review, r->review_len, chosen->supervisor_pk, &r->pre.err);
        r->prechecked = true;
    }
    rc = PD_OK;
out:
    free(reviews);
    free(review_item);
    if (rc == PD_OK) {
        *refs_out = refs;
        *nbat_out = nbat;
    } else {
        free(refs);
    }
    return rc;
}

static int cmp_items(const void *pa, const void *pb)
{
    const item_ref *a = pa, *b = pb;
    if (a->peeked != b->peeked)
        return a->peeked ? -1 : 1;
    int c = strcmp(a->h.device_id, b->h.device_id);
    if (c)
        return c;
    if (a->h.seq != b->h.seq)
        return a->h.seq < b->h.seq ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

int srv_bundle_process(pd_server *srv, const char *upload_id, const char *uploader_device,
                       const uint8_t *bytes, size_t len)
{
    (void)uploader_device;
    pd_bundle_item *items = NULL;
    size_t count = 0, nbat = 0;
    item_ref *refs = NULL;
    char msg[PD_ERRMSG_MAX] = "";
    /* Signatures, inflating and decoding need no storage: the other requests go on meanwhile
     * (the caller's upload is its own: tus keeps it busy, and applying is exactly once). */
    srv_unlock(srv);
    int rc = bundle_precheck(bytes, len, &items, &count, &refs, &nbat, msg, sizeof msg);
    srv_lock(srv);
    if (rc != PD_OK) {
        rc = srv_fail(srv, rc, "%s", msg);
        goto out;
    }
    qsort(refs, nbat, sizeof *refs, cmp_items);
    for (size_t k = 0; k < nbat; k++) {
        const pd_bundle_item *it = &items[refs[k].idx];
        batch_result res;
        memset(&res, 0, sizeof res);
        res.r.idx = (int)k;
        res.upload_id = upload_id;
        srv_err(srv)->code = 0;
        srv_err(srv)->msg[0] = '\0';
        process_batch(srv, it->bytes, it->len, refs[k].review, refs[k].review_len,
                      refs[k].prechecked ? &refs[k].pre : NULL, &res);
        if (!res.stored &&
            srv_store(srv)->ops->result_put(srv_store(srv), upload_id, &res.r) != PD_OK) {
            rc = srv_fail_storage(srv);
            goto out;
        }
    }
    rc = PD_OK;
out:
    for (size_t k = 0; refs && k < nbat; k++)
        pd_batch_free(refs[k].pre.b);
    free(refs);
    free(items);
    return rc;
}

/* ---- POST /v1/batches/commit, GET /v1/receipts ---------------------------------------------- */

/* The batch's current receipt (a held batch may have been applied since). */
static bool current_receipt(pd_server *srv, const uint8_t hash[PD_HASH_BYTES],
                            uint8_t out[PD_RECEIPT_BYTES])
{
    pd_srv_batch b;
    int rc = srv_store(srv)->ops->batch_by_hash(srv_store(srv), hash, &b);
    if (rc == PD_ERR_NOTFOUND)
        rc = srv_store(srv)->ops->quarantine_by_hash(srv_store(srv), hash, &b);
    if (rc != PD_OK)
        return false;
    bool ok = b.has_receipt;
    if (ok)
        memcpy(out, b.receipt, PD_RECEIPT_BYTES);
    pd_srv_batch_clear(&b);
    return ok;
}

static cJSON *result_json(pd_server *srv, const pd_srv_result *r, const uint8_t *receipt)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char hex[2 * PD_RECEIPT_BYTES + 1];
    cJSON_AddStringToObject(o, "device", r->device_id);
    cJSON_AddNumberToObject(o, "seq", (double)r->seq);
    srv_hex(r->hash, PD_HASH_BYTES, hex);
    cJSON_AddStringToObject(o, "hash", hex);
    srv_receipt rc;
    if (receipt && srv_receipt_decode(receipt, srv->keys.sign_pk, &rc) == PD_OK) {
        cJSON_AddStringToObject(o, "status", srv_receipt_status_name(rc.status));
        cJSON_AddBoolToObject(o, "again", r->again);
        cJSON_AddNumberToObject(o, "applied", rc.applied);
        cJSON_AddNumberToObject(o, "merged", rc.merged);
        cJSON_AddNumberToObject(o, "conflicted", rc.conflicted);
        srv_hex(receipt, PD_RECEIPT_BYTES, hex);
        cJSON_AddStringToObject(o, "receipt", hex);
    } else {
        cJSON_AddStringToObject(o, "status", r->status);
        cJSON_AddBoolToObject(o, "again", r->again);
        if (r->error[0])
            cJSON_AddStringToObject(o, "error", r->error);
        if (r->message[0])
            cJSON_AddStringToObject(o, "message", r->message);
    }
    return o;
}

typedef struct results_ctx {
    pd_server *srv;
    cJSON *arr;
} results_ctx;

static int result_cb(void *ctx, const pd_srv_result *r)
{
    results_ctx *c = ctx;
    uint8_t receipt[PD_RECEIPT_BYTES];
    bool has = strcmp(r->status, "rejected") != 0 && current_receipt(c->srv, r->hash, receipt);
    cJSON *o = result_json(c->srv, r, has ? receipt : NULL);
    if (!o)
        return PD_ERR_NOMEM;
    cJSON_AddItemToArray(c->arr, o);
    return 0;
}

int srv_handle_commit(pd_server *srv, const srv_req *q, srv_resp *r)
{
    cJSON *in = cJSON_ParseWithLength((const char *)q->body, q->body_len);
    const cJSON *up = in ? cJSON_GetObjectItemCaseSensitive(in, "upload") : NULL;
    char id[PD_SRV_UPLOAD_ID_LEN + 1];
    if (!cJSON_IsString(up) || strlen(up->valuestring) != PD_SRV_UPLOAD_ID_LEN) {
        cJSON_Delete(in);
        return srv_resp_error(r, 400, "bad_request", "the body must be {\"upload\": \"<id>\"}");
    }
    memcpy(id, up->valuestring, sizeof id);
    cJSON_Delete(in);
    pd_srv_upload u;
    int rc = srv_store(srv)->ops->upload_get(srv_store(srv), id, &u);
    if (rc == PD_ERR_NOTFOUND || (rc == PD_OK && strcmp(u.device_id, q->device->id) != 0))
        return srv_resp_error(r, 404, "not_found", "no upload %s", id);
    if (rc != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
    if (strcmp(u.kind, "bundle") != 0)
        return srv_resp_error(r, 400, "bad_request", "upload %s is not a bundle", id);
    if (!strcmp(u.state, "open"))
        return srv_resp_error(r, 409, "incomplete", "upload %s is at %lld of %lld bytes", id,
                              (long long)u.acked, (long long)u.length);
    if (!strcmp(u.state, "failed"))
        return srv_resp_error(r, 422, "bad_bundle", "upload %s is not a valid bundle", id);
    if (!strcmp(u.state, "terminated"))
        return srv_resp_error(r, 410, "gone", "upload %s was terminated", id);
    if (!strcmp(u.state, "complete")) {
        if (srv_on_reader(srv)) { /* processing writes: again under the lock (http.c) */
            r->needs_writer = true;
            return 0;
        }
        int e = srv_tus_process_bundle(srv, &u, r);
        if (e)
            return e;
    }
    return srv_upload_results(srv, id, r);
}

int srv_upload_results(pd_server *srv, const char *id, srv_resp *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "results") : NULL;
    if (!arr) {
        cJSON_Delete(o);
        return srv_resp_error(r, 500, "internal", "out of memory");
    }
    cJSON_AddStringToObject(o, "upload", id);
    cJSON_AddNumberToObject(o, "server_time", (double)srv_now_ms());
    results_ctx c = {.srv = srv, .arr = arr};
    if (srv_store(srv)->ops->results_of(srv_store(srv), id, result_cb, &c) != PD_OK) {
        cJSON_Delete(o);
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
    }
    r->json = o;
    r->status = 200;
    return 200;
}

static int receipt_cb(void *ctx, const pd_srv_batch *b)
{
    results_ctx *c = ctx;
    pd_srv_result res;
    memset(&res, 0, sizeof res);
    snprintf(res.device_id, sizeof res.device_id, "%s", b->device_id);
    res.seq = b->seq;
    memcpy(res.hash, b->hash, PD_HASH_BYTES);
    snprintf(res.status, sizeof res.status, "%s", b->state);
    res.again = true;
    cJSON *o = result_json(c->srv, &res, b->has_receipt ? b->receipt : NULL);
    if (!o)
        return PD_ERR_NOMEM;
    cJSON_DeleteItemFromObject(o, "again");
    cJSON_AddItemToArray(c->arr, o);
    return 0;
}

int srv_handle_receipts(pd_server *srv, const srv_req *q, srv_resp *r)
{
    char dev[PD_SRV_ID_MAX + 2], since_s[24];
    if (!srv_query_param(q->query, "device", dev, sizeof dev) || !srv_valid_id(dev))
        return srv_resp_error(r, 400, "bad_request", "give ?device=<device id>");
    int64_t since = 0;
    int got = srv_query_get(q->query, "since", since_s, sizeof since_s);
    if (got != 0) {
        char *end = NULL;
        since = got > 0 ? strtoll(since_s, &end, 10) : -1;
        if (got < 0 || *end || since < 0 || !since_s[0])
            return srv_resp_error(r, 400, "bad_request", "since must be a batch seq");
    }
    pd_storage *st = srv_store(srv);
    /* who may ask: the device itself, its person's supervisor, korcam and admin */
    if (strcmp(dev, q->device->id) != 0) {
        pd_srv_device target;
        pd_srv_user asker, owner;
        if (st->ops->user_get(st, q->device->user_id, &asker) != PD_OK)
            return srv_resp_error(r, 403, "denied", "unknown user");
        bool ok = !strcmp(asker.role, "korcam") || !strcmp(asker.role, "admin");
        if (!ok && st->ops->device_get(st, dev, &target) == PD_OK &&
            st->ops->user_get(st, target.user_id, &owner) == PD_OK)
            ok = !strcmp(owner.supervisor_id, asker.id) || !strcmp(owner.id, asker.id);
        if (!ok)
            return srv_resp_error(r, 403, "denied", "device %s's receipts are not yours to read",
                                  dev);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "receipts") : NULL;
    if (!arr) {
        cJSON_Delete(o);
        return srv_resp_error(r, 500, "internal", "out of memory");
    }
    cJSON_AddStringToObject(o, "device", dev);
    results_ctx c = {.srv = srv, .arr = arr};
    if (st->ops->batches_of(st, dev, since, receipt_cb, &c) != PD_OK) {
        cJSON_Delete(o);
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
    }
    r->json = o;
    r->status = 200;
    return 200;
}
