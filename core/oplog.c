/*
 * oplog.c — the op log: field-level changes, appended in the same transaction as the change, and
 * the one function that applies an op onto the tables.
 *
 * Table `op` (schema/device/001_init.sql) is append-only (triggers refuse UPDATE of anything but
 * batch_seq, and DELETE). An op is: seq (strictly increasing on this device), device id, hybrid
 * logical clock (hlc.c), kind, entity, target, field, old value, new value, base_rev (the
 * record's server revision when it was changed).
 *
 *   kind    entity            target          field     values
 *   set     household|member  record id       column    old → new (typed)
 *   end     member            member id       "status"  'active' → deceased|moved|duplicate
 *   create  household|member  record id       ""        new: JSON object of every column
 *   visit   visit             visit id        ""        new: JSON object of every column
 *   photo   photo             hash (hex)      ""        new: JSON {household_id, visit_id, kind,
 *                                                        size, taken_at}; bytes travel apart
 *
 * Local changes (household.c, visit.c, photo.c) never write the tables directly: they build ops
 * and hand them to pd_change_apply, which runs pd_oplog_apply — the same code a replay onto a
 * fresh prelist import, or the server, runs. Derived state follows from the ops the same way
 * everywhere: household.member_count is the number of active members (recounted when a member is
 * created or ended), household_geo holds the latest visit's fix, else the household's own lat/lon.
 *
 * What this file does not do: decide conflicts (the server's merge does, with pd_oplog_check),
 * encode batches (sync/), or write the op log when applying (the caller's choice).
 */
#include "oplog.h"

#include "validate.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OP_JSON_MAX 65536 /* bytes of a create/visit/photo op's JSON */

/* ---- small helpers ------------------------------------------------------------------------ */

pd_value pd_text_value(const char *s)
{
    pd_value v = {0};
    if (s) {
        v.type = PD_VAL_TEXT;
        v.p = (const uint8_t *)s;
        v.len = strlen(s);
    }
    return v;
}

pd_value pd_int_value(int64_t i)
{
    pd_value v = {.type = PD_VAL_INT, .i = i};
    return v;
}

static int sql_fail(pd_error *err, sqlite3 *db, int rc, const char *ctx)
{
    return pd_error_sqlite(err, db, rc, ctx);
}

/* Run a statement with one text parameter to completion. */
static int exec1(sqlite3 *db, const char *sql, const char *arg, pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return sql_fail(err, db, rc, sql);
    return PD_OK;
}

/* Does a row exist? 1 yes, 0 no, <0 SQLite failure (err set; returns -code). */
static int row_exists(sqlite3 *db, const char *sql, const pd_value *key, pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        pd_value_bind(st, 1, key);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return -sql_fail(err, db, rc, "lookup");
}

int pd_field_current(sqlite3 *db, const pd_field *f, const char *key, sqlite3_stmt **stmt_out,
                     pd_value *value, int64_t *rev, pd_error *err)
{
    *stmt_out = NULL;
    if (!f->select_sql)
        return pd_error_set(err, PD_ERR_INTERNAL, "%s: not an op field", f->name);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, f->select_sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(err, db, rc, f->select_sql);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return pd_error_set(err, PD_ERR_NOTFOUND, "%s: no such record", key);
    }
    if (rc != SQLITE_ROW) {
        int code = sql_fail(err, db, rc, f->select_sql);
        sqlite3_finalize(st);
        return code;
    }
    pd_value_column(st, 0, value);
    if (rev)
        *rev = sqlite3_column_int64(st, 1);
    *stmt_out = st;
    return PD_OK;
}

/* ---- derived state ------------------------------------------------------------------------ */

/* household.member_count = its active members. */
static int recount_members(sqlite3 *db, const char *household_id, pd_error *err)
{
    return exec1(db,
                 "UPDATE household SET member_count = (SELECT COUNT(*) FROM member WHERE "
                 "household_id = ?1 AND status = 'active') WHERE id = ?1",
                 household_id, err);
}

/* household_geo: the latest visit's fix (by insertion), else the household's lat/lon, else none. */
static int refresh_geo(sqlite3 *db, const char *household_id, pd_error *err)
{
    static const char sel[] =
        "SELECT h.hh_rowid, CASE WHEN v.lat IS NOT NULL THEN v.lat ELSE h.lat END, "
        "CASE WHEN v.lat IS NOT NULL THEN v.lon ELSE h.lon END "
        "FROM household h LEFT JOIN (SELECT lat, lon FROM visit WHERE household_id = ?1 AND "
        "lat IS NOT NULL AND lon IS NOT NULL ORDER BY rowid DESC LIMIT 1) v "
        "WHERE h.id = ?1";
    sqlite3_stmt *st = NULL, *del = NULL, *ins = NULL;
    int code = PD_OK;
    int rc = sqlite3_prepare_v2(db, sel, -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto sqlfail;
    sqlite3_bind_text(st, 1, household_id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        code = pd_error_set(err, PD_ERR_NOTFOUND, "household %s: not found", household_id);
        goto out;
    }
    if (rc != SQLITE_ROW)
        goto sqlfail;
    int64_t rowid = sqlite3_column_int64(st, 0);
    bool have =
        sqlite3_column_type(st, 1) != SQLITE_NULL && sqlite3_column_type(st, 2) != SQLITE_NULL;
    double lat = sqlite3_column_double(st, 1), lon = sqlite3_column_double(st, 2);
    rc = sqlite3_prepare_v2(db, "DELETE FROM household_geo WHERE hh_rowid = ?1", -1, &del, NULL);
    if (rc != SQLITE_OK)
        goto sqlfail;
    sqlite3_bind_int64(del, 1, rowid);
    if ((rc = sqlite3_step(del)) != SQLITE_DONE)
        goto sqlfail;
    if (have) {
        rc = sqlite3_prepare_v2(db,
                                "INSERT INTO household_geo (hh_rowid, min_lat, max_lat, min_lon, "
                                "max_lon) VALUES (?1, ?2, ?2, ?3, ?3)",
                                -1, &ins, NULL);
        if (rc != SQLITE_OK)
            goto sqlfail;
        sqlite3_bind_int64(ins, 1, rowid);
        sqlite3_bind_double(ins, 2, lat);
        sqlite3_bind_double(ins, 3, lon);
        if ((rc = sqlite3_step(ins)) != SQLITE_DONE)
            goto sqlfail;
    }
    goto out;
sqlfail:
    code = sql_fail(err, db, rc, "household_geo");
out:
    sqlite3_finalize(st);
    sqlite3_finalize(del);
    sqlite3_finalize(ins);
    return code;
}

/* ---- applying ops ------------------------------------------------------------------------- */

static const char *nz(const char *s)
{
    return s ? s : "";
}

/* The op's target as a C string copy (bounded). */
static int target_id(const pd_op *op, char out[PD_ID_MAX], pd_error *err)
{
    size_t n = op->target ? strnlen(op->target, PD_ID_MAX) : 0;
    if (n == 0 || n >= PD_ID_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "op %lld: target missing or longer than %d bytes",
                            (long long)op->seq, PD_ID_MAX - 1);
    memcpy(out, op->target, n + 1);
    return PD_OK;
}

static int apply_set(sqlite3 *db, const pd_record *r, const pd_op *op, bool end, pd_error *err)
{
    char key[PD_ID_MAX];
    int rc = target_id(op, key, err);
    if (rc != PD_OK)
        return rc;
    const pd_field *f = pd_record_field(r, nz(op->field));
    if (!f || !(f->flags & PD_F_OP))
        return pd_error_set(err, PD_ERR_INVALID, "%s.%s: not a field an op may set", r->entity,
                            nz(op->field));
    bool member_status = !strcmp(r->entity, "member") && !strcmp(f->name, "status");
    if (end != member_status)
        return pd_error_set(err, PD_ERR_INVALID,
                            end ? "end: only a member's status can be ended"
                                : "%s.%s: a member's status changes only by an 'end' op",
                            r->entity, f->name);
    pd_value v = op->new_value;
    if ((rc = pd_field_check(r, f, &v, pd_now_ms(), NULL, err)) != PD_OK)
        return rc;
    if (end && v.type == PD_VAL_TEXT && v.len == 6 && !memcmp(v.p, "active", 6))
        return pd_error_set(err, PD_ERR_INVALID,
                            "end: reason must be deceased, moved or duplicate");
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, f->update_sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        pd_value_bind(st, 1, &v);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(err, db, rc, f->update_sql);
    if (sqlite3_changes(db) == 0)
        return pd_error_set(err, PD_ERR_NOTFOUND, "%s %s: not found", r->entity, key);
    if (member_status) {
        /* recount the member's household */
        sqlite3_stmt *h = NULL;
        rc = sqlite3_prepare_v2(db, "SELECT household_id FROM member WHERE id = ?1", -1, &h, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(h, 1, key, -1, SQLITE_STATIC);
            rc = sqlite3_step(h);
        }
        int code = rc == SQLITE_ROW
                       ? recount_members(db, (const char *)sqlite3_column_text(h, 0), err)
                       : sql_fail(err, db, rc, "member household");
        sqlite3_finalize(h);
        return code;
    }
    return PD_OK;
}

/* Every member of a create/visit/photo object must be a field of the record, once. */
static int check_keys(const pd_record *r, const cJSON *obj, pd_error *err)
{
    for (const cJSON *it = obj->child; it; it = it->next) {
        const pd_field *f = pd_record_field(r, it->string);
        if (!f || (f->flags & (PD_F_KEY | PD_F_LOCAL | PD_F_BYTES)))
            return pd_error_set(err, PD_ERR_INVALID, "%s: '%.40s' is not a field of a new %s",
                                r->entity, it->string ? it->string : "", r->entity);
        /* cJSON keeps duplicate keys; a record names each field once. */
        for (const cJSON *o = obj->child; o != it; o = o->next)
            if (!strcmp(o->string, it->string))
                return pd_error_set(err, PD_ERR_INVALID, "%s.%s: given twice", r->entity,
                                    it->string);
    }
    return PD_OK;
}

/* Check every field of a create/visit/photo op's object (parse_object already refused members
 * that are not fields) and bind it to the record's INSERT. The key is bound from `key`; LOCAL
 * fields get their defaults; BYTES from bytes/len. A missing field is refused. */
static int insert_record(sqlite3 *db, const pd_record *r, const pd_value *key, const cJSON *obj,
                         const uint8_t *bytes, size_t len, pd_error *err)
{
    int code = PD_OK;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, r->insert_sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_fail(err, db, rc, r->insert_sql);
    int64_t now = pd_now_ms();
    for (size_t i = 0; i < r->count; i++) {
        const pd_field *f = &r->fields[i];
        char pname[48];
        snprintf(pname, sizeof pname, ":%s", f->name);
        int idx = sqlite3_bind_parameter_index(st, pname);
        if (idx == 0) {
            code = pd_error_set(err, PD_ERR_INTERNAL, "%s: insert has no parameter %s", r->entity,
                                pname);
            goto out;
        }
        pd_value v = {0};
        uint8_t buf[PD_HASH_BYTES];
        if (f->flags & PD_F_KEY) {
            v = *key;
        } else if (f->flags & PD_F_LOCAL) {
            v = f->def_text ? pd_text_value(f->def_text) : pd_int_value(f->def_int);
        } else if (f->flags & PD_F_BYTES) {
            v.type = PD_VAL_BLOB;
            v.p = bytes;
            v.len = len;
        } else {
            const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, f->name);
            if (!item) {
                code = pd_error_set(err, PD_ERR_INVALID, "%s.%s: missing", r->entity, f->name);
                goto out;
            }
            if ((code = pd_json_value(r, f, item, &v, buf, sizeof buf, err)) != PD_OK)
                goto out;
        }
        if (!(f->flags & PD_F_BYTES) && (code = pd_field_check(r, f, &v, now, NULL, err)) != PD_OK)
            goto out;
        if ((rc = pd_value_bind(st, idx, &v)) != SQLITE_OK) {
            code = sql_fail(err, db, rc, "bind");
            goto out;
        }
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_CONSTRAINT && sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_PRIMARYKEY)
        code = pd_error_set(err, PD_ERR_EXISTS, "%s: already exists", r->entity);
    else if (rc == SQLITE_CONSTRAINT && sqlite3_extended_errcode(db) == SQLITE_CONSTRAINT_UNIQUE)
        code = pd_error_set(err, PD_ERR_EXISTS, "%s: already exists", r->entity);
    else if (rc != SQLITE_DONE)
        code = sql_fail(err, db, rc, r->entity);
out:
    sqlite3_finalize(st);
    return code;
}

/* The op's new value as a JSON object whose members are all fields of r, each once. */
static int parse_object(const pd_record *r, const pd_op *op, cJSON **out, pd_error *err)
{
    *out = NULL;
    const pd_value *v = &op->new_value;
    if (v->type != PD_VAL_TEXT)
        return pd_error_set(err, PD_ERR_INVALID, "%s %s: new value must be a JSON object",
                            nz(op->kind), nz(op->entity));
    if (v->len > OP_JSON_MAX)
        return pd_error_set(err, PD_ERR_TOOBIG, "%s %s: JSON over %d bytes", nz(op->kind),
                            nz(op->entity), OP_JSON_MAX);
    cJSON *obj = cJSON_ParseWithLength((const char *)v->p, v->len);
    if (!obj || !cJSON_IsObject(obj)) {
        cJSON_Delete(obj);
        return pd_error_set(err, PD_ERR_INVALID, "%s %s: new value is not a JSON object",
                            nz(op->kind), nz(op->entity));
    }
    int rc = check_keys(r, obj, err);
    if (rc != PD_OK) {
        cJSON_Delete(obj);
        return rc;
    }
    *out = obj;
    return PD_OK;
}

static const char *json_text(const cJSON *obj, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static int need_exists(sqlite3 *db, const char *sql, const char *what, const char *id,
                       pd_error *err)
{
    pd_value k = pd_text_value(id);
    int e = row_exists(db, sql, &k, err);
    if (e < 0)
        return -e;
    if (e == 0)
        return pd_error_set(err, PD_ERR_NOTFOUND, "%s %s: not found", what, id ? id : "(none)");
    return PD_OK;
}

/* Area codes of a new household nest: prov is the prefix of kab, kab of kec, kec of desa. */
static int check_area_chain(const cJSON *obj, pd_error *err)
{
    const char *chain[4] = {json_text(obj, "prov"), json_text(obj, "kab"), json_text(obj, "kec"),
                            json_text(obj, "desa")};
    static const size_t lens[4] = {2, 5, 8, 13};
    static const char *const names[4] = {"prov", "kab", "kec", "desa"};
    for (int i = 0; i < 4; i++)
        if (!chain[i] || strlen(chain[i]) != lens[i])
            return pd_error_set(err, PD_ERR_INVALID, "household.%s: missing or malformed",
                                names[i]);
    for (int i = 1; i < 4; i++)
        if (strncmp(chain[i], chain[i - 1], lens[i - 1]) != 0)
            return pd_error_set(err, PD_ERR_INVALID, "household.%s: %s is not inside %s %s",
                                names[i], chain[i], names[i - 1], chain[i - 1]);
    return PD_OK;
}

static int apply_create(sqlite3 *db, const pd_record *r, const pd_op *op, pd_error *err)
{
    char key[PD_ID_MAX];
    int rc = target_id(op, key, err);
    if (rc != PD_OK)
        return rc;
    cJSON *obj = NULL;
    if ((rc = parse_object(r, op, &obj, err)) != PD_OK)
        return rc;
    pd_value k = pd_text_value(key);
    bool household = !strcmp(r->entity, "household");
    const char *hh = household ? key : json_text(obj, "household_id");
    if (household) {
        rc = check_area_chain(obj, err);
    } else {
        /* A member id is its household id + its 2-digit member number. */
        const cJSON *no = cJSON_GetObjectItemCaseSensitive(obj, "member_no");
        char want[PD_ID_MAX + 8];
        if (!hh || !cJSON_IsNumber(no) || no->valuedouble < 1 || no->valuedouble > 99)
            rc = pd_error_set(err, PD_ERR_INVALID, "member %s: household_id or member_no missing",
                              key);
        else if (snprintf(want, sizeof want, "%s%02d", hh, (int)no->valuedouble) < 0 ||
                 strcmp(want, key) != 0)
            rc = pd_error_set(err, PD_ERR_INVALID,
                              "member %s: id must be the household id + member number (%s)", key,
                              want);
        else
            rc = need_exists(db, "SELECT 1 FROM household WHERE id = ?1", "household", hh, err);
    }
    if (rc == PD_OK)
        rc = insert_record(db, r, &k, obj, NULL, 0, err);
    if (rc == PD_ERR_EXISTS)
        pd_error_set(err, rc, "%s %s: already exists", r->entity, key);
    if (rc == PD_OK)
        rc = household ? refresh_geo(db, key, err) : recount_members(db, hh, err);
    cJSON_Delete(obj);
    return rc;
}

static int apply_visit(sqlite3 *db, const pd_record *r, const pd_op *op, pd_error *err)
{
    char key[PD_ID_MAX];
    int rc = target_id(op, key, err);
    if (rc != PD_OK)
        return rc;
    cJSON *obj = NULL;
    if ((rc = parse_object(r, op, &obj, err)) != PD_OK)
        return rc;
    pd_value k = pd_text_value(key);
    const char *hh = json_text(obj, "household_id");
    const cJSON *lat = cJSON_GetObjectItemCaseSensitive(obj, "lat");
    const cJSON *lon = cJSON_GetObjectItemCaseSensitive(obj, "lon");
    const cJSON *acc = cJSON_GetObjectItemCaseSensitive(obj, "accuracy_m");
    bool has_lat = lat && !cJSON_IsNull(lat), has_lon = lon && !cJSON_IsNull(lon);
    bool has_acc = acc && !cJSON_IsNull(acc);
    if (has_lat != has_lon || (has_lat && !has_acc))
        rc =
            pd_error_set(err, PD_ERR_INVALID, "visit %s: lat, lon and accuracy_m go together", key);
    if (rc == PD_OK)
        rc = need_exists(db, "SELECT 1 FROM household WHERE id = ?1", "household", hh, err);
    if (rc == PD_OK)
        rc = insert_record(db, r, &k, obj, NULL, 0, err);
    if (rc == PD_ERR_EXISTS)
        pd_error_set(err, rc, "visit %s: already exists", key);
    if (rc == PD_OK)
        rc = refresh_geo(db, hh, err);
    cJSON_Delete(obj);
    return rc;
}

static int apply_photo(sqlite3 *db, const pd_record *r, const pd_op *op, pd_photo_fetch_fn fetch,
                       void *fetch_ctx, pd_error *err)
{
    uint8_t hash[PD_HASH_BYTES];
    size_t tlen = op->target ? strnlen(op->target, 2 * PD_HASH_BYTES + 1) : 0;
    if (tlen != 2 * PD_HASH_BYTES ||
        sodium_hex2bin(hash, sizeof hash, op->target, tlen, NULL, NULL, NULL) != 0)
        return pd_error_set(err, PD_ERR_INVALID, "photo: target must be the 64-hex-digit hash");
    cJSON *obj = NULL;
    int rc = parse_object(r, op, &obj, err);
    if (rc != PD_OK)
        return rc;
    const uint8_t *bytes = NULL;
    size_t len = 0;
    const char *hh = json_text(obj, "household_id");
    const char *visit = json_text(obj, "visit_id");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(obj, "size");
    rc = need_exists(db, "SELECT 1 FROM household WHERE id = ?1", "household", hh, err);
    if (rc == PD_OK && visit)
        rc = need_exists(db, "SELECT 1 FROM visit WHERE id = ?1", "visit", visit, err);
    if (rc == PD_OK) {
        pd_value hv = {.type = PD_VAL_BLOB, .p = hash, .len = sizeof hash};
        int e = row_exists(db, r->exists_sql, &hv, err);
        if (e < 0)
            rc = -e;
        else if (e > 0)
            rc = pd_error_set(err, PD_ERR_EXISTS, "photo %.16s…: already stored", op->target);
    }
    if (rc == PD_OK && (!fetch || fetch(fetch_ctx, hash, &bytes, &len) != PD_OK || !bytes))
        rc = pd_error_set(err, PD_ERR_NOTFOUND, "photo %.16s…: bytes not available", op->target);
    if (rc == PD_OK && (!cJSON_IsNumber(size) || size->valuedouble != (double)len))
        rc = pd_error_set(err, PD_ERR_INVALID, "photo %.16s…: size does not match the bytes (%zu)",
                          op->target, len);
    if (rc == PD_OK) {
        uint8_t got[PD_HASH_BYTES];
        crypto_generichash(got, sizeof got, bytes, len, NULL, 0);
        if (sodium_memcmp(got, hash, sizeof got) != 0)
            rc = pd_error_set(err, PD_ERR_CORRUPT, "photo %.16s…: bytes do not match the hash",
                              op->target);
    }
    if (rc == PD_OK)
        rc = pd_validate_jpeg(bytes, len, err);
    if (rc == PD_OK) {
        pd_value k = {.type = PD_VAL_BLOB, .p = hash, .len = sizeof hash};
        rc = insert_record(db, r, &k, obj, bytes, len, err);
    }
    cJSON_Delete(obj);
    return rc;
}

int pd_oplog_apply(struct sqlite3 *db, const pd_op *op, pd_photo_fetch_fn fetch, void *fetch_ctx,
                   pd_error *err)
{
    if (!db || !op || !op->kind || !op->entity)
        return pd_error_set(err, PD_ERR_INVALID, "op: kind and entity are required");
    const pd_record *r = pd_record_of(op->entity);
    if (!r)
        return pd_error_set(err, PD_ERR_INVALID, "op %lld: unknown entity '%.20s'",
                            (long long)op->seq, op->entity);
    const char *k = op->kind;
    bool hm = !strcmp(r->entity, "household") || !strcmp(r->entity, "member");
    if (!strcmp(k, "set") && hm)
        return apply_set(db, r, op, false, err);
    if (!strcmp(k, "end") && !strcmp(r->entity, "member"))
        return apply_set(db, r, op, true, err);
    if (!strcmp(k, "create") && hm)
        return apply_create(db, r, op, err);
    if (!strcmp(k, "visit") && !strcmp(r->entity, "visit"))
        return apply_visit(db, r, op, err);
    if (!strcmp(k, "photo") && !strcmp(r->entity, "photo"))
        return apply_photo(db, r, op, fetch, fetch_ctx, err);
    return pd_error_set(err, PD_ERR_INVALID, "op %lld: kind '%.20s' does not apply to %s",
                        (long long)op->seq, k, r->entity);
}

int pd_oplog_check(struct sqlite3 *db, const pd_op *op, pd_error *err)
{
    if (!db || !op || !op->kind || !op->entity)
        return pd_error_set(err, PD_ERR_INVALID, "op: kind and entity are required");
    const pd_record *r = pd_record_of(op->entity);
    if (!r)
        return pd_error_set(err, PD_ERR_INVALID, "op: unknown entity '%.20s'", op->entity);
    if (!strcmp(op->kind, "set") || !strcmp(op->kind, "end")) {
        char key[PD_ID_MAX];
        int rc = target_id(op, key, err);
        if (rc != PD_OK)
            return rc;
        const pd_field *f = pd_record_field(r, nz(op->field));
        if (!f || !(f->flags & PD_F_OP))
            return pd_error_set(err, PD_ERR_INVALID, "%s.%s: not a field an op may set", r->entity,
                                nz(op->field));
        sqlite3_stmt *st = NULL;
        pd_value cur;
        if ((rc = pd_field_current(db, f, key, &st, &cur, NULL, err)) != PD_OK)
            return rc;
        if (!pd_value_equal(&cur, &op->old_value)) {
            char a[80], b[80];
            rc = pd_error_set(err, PD_ERR_CONFLICT, "%s %s.%s: is %s, the op expected %s",
                              r->entity, key, f->name, pd_value_describe(&cur, a, sizeof a),
                              pd_value_describe(&op->old_value, b, sizeof b));
        }
        sqlite3_finalize(st);
        return rc;
    }
    pd_value key;
    uint8_t hash[PD_HASH_BYTES];
    if (!strcmp(r->entity, "photo")) {
        size_t tlen = op->target ? strnlen(op->target, 65) : 0;
        if (tlen != 64 || sodium_hex2bin(hash, sizeof hash, op->target, tlen, NULL, NULL, NULL))
            return pd_error_set(err, PD_ERR_INVALID, "photo: target must be the 64-hex-digit hash");
        key = (pd_value){.type = PD_VAL_BLOB, .p = hash, .len = sizeof hash};
    } else {
        key = pd_text_value(op->target);
    }
    int e = row_exists(db, r->exists_sql, &key, err);
    if (e < 0)
        return -e;
    if (e > 0)
        return pd_error_set(err, PD_ERR_EXISTS, "%s %.64s: already exists", r->entity,
                            nz(op->target));
    return PD_OK;
}

/* ---- changes: apply + append in one transaction -------------------------------------------- */

int pd_change_begin(pd_store *store, pd_change *ch)
{
    memset(ch, 0, sizeof *ch);
    ch->store = store;
    ch->db = pd_store_sqlite(store);
    ch->device_id = pd_store_device_id(store);
    if (!ch->db || !ch->device_id || !*ch->device_id)
        return pd_store_fail(store, PD_ERR_STATE, "the store has no device id");
    int rc = pd_store_begin(store);
    if (rc != PD_OK)
        return rc;
    ch->open = 1;
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(ch->db,
                            "SELECT (SELECT value FROM settings WHERE key = 'hlc'), "
                            "(SELECT COALESCE(MAX(seq), 0) + 1 FROM op)",
                            -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        int code = pd_store_fail_sqlite(store, rc, "op log");
        pd_change_rollback(ch);
        return code;
    }
    ch->hlc = sqlite3_column_type(st, 0) == SQLITE_INTEGER ? sqlite3_column_int64(st, 0) : 0;
    ch->next_seq = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    return PD_OK;
}

int64_t pd_change_next_seq(const pd_change *ch)
{
    return ch->next_seq;
}

static int local_photo(void *ctx, const uint8_t hash[PD_HASH_BYTES], const uint8_t **bytes,
                       size_t *len)
{
    (void)hash; /* pd_oplog_apply checks the bytes against the hash */
    const pd_change *ch = ctx;
    if (!ch->photo)
        return PD_ERR_NOTFOUND;
    *bytes = ch->photo;
    *len = ch->photo_len;
    return PD_OK;
}

int pd_change_apply(pd_change *ch, pd_op *op)
{
    op->seq = ch->next_seq;
    op->device_id = ch->device_id;
    op->hlc = pd_hlc_next(ch->hlc, pd_now_ms());
    if (!op->field)
        op->field = "";
    pd_error err = {0};
    int rc = pd_oplog_apply(ch->db, op, local_photo, ch, &err);
    if (rc != PD_OK)
        return pd_store_fail(ch->store, rc, "%s", err.msg);
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(ch->db,
                            "INSERT INTO op (seq, device_id, hlc, kind, entity, target, field, "
                            "old_value, new_value, base_rev) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, "
                            "?8, ?9, ?10)",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, op->seq);
        sqlite3_bind_text(st, 2, op->device_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, op->hlc);
        sqlite3_bind_text(st, 4, op->kind, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, op->entity, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, op->target, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 7, op->field, -1, SQLITE_STATIC);
        pd_value_bind(st, 8, &op->old_value);
        pd_value_bind(st, 9, &op->new_value);
        sqlite3_bind_int64(st, 10, op->base_rev);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(ch->store, rc, "op log append");
    ch->hlc = op->hlc;
    ch->next_seq++;
    return PD_OK;
}

int pd_change_commit(pd_change *ch)
{
    if (!ch->open)
        return pd_store_fail(ch->store, PD_ERR_INTERNAL, "commit without a change");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(ch->db,
                                "INSERT INTO settings (key, value) VALUES ('hlc', ?1) "
                                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, ch->hlc);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        int code = pd_store_fail_sqlite(ch->store, rc, "saving the clock");
        pd_change_rollback(ch);
        return code;
    }
    ch->open = 0;
    return pd_store_commit(ch->store);
}

void pd_change_rollback(pd_change *ch)
{
    if (ch->open) {
        ch->open = 0;
        pd_store_rollback(ch->store);
    }
}

/* ---- reading and sealing the log ----------------------------------------------------------- */

static int each_op(pd_store *store, const char *sql, int64_t arg, pd_op_fn fn, void *ctx)
{
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "op log");
    sqlite3_bind_int64(st, 1, arg);
    int code = PD_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pd_op op = {0};
        op.seq = sqlite3_column_int64(st, 0);
        op.device_id = (const char *)sqlite3_column_text(st, 1);
        op.hlc = sqlite3_column_int64(st, 2);
        op.kind = (const char *)sqlite3_column_text(st, 3);
        op.entity = (const char *)sqlite3_column_text(st, 4);
        op.target = (const char *)sqlite3_column_text(st, 5);
        op.field = (const char *)sqlite3_column_text(st, 6);
        pd_value_column(st, 7, &op.old_value);
        pd_value_column(st, 8, &op.new_value);
        op.base_rev = sqlite3_column_int64(st, 9);
        if ((code = fn(ctx, &op)) != 0)
            break;
    }
    if (code == PD_OK && rc != SQLITE_DONE)
        code = pd_store_fail_sqlite(store, rc, "op log");
    sqlite3_finalize(st);
    return code;
}

#define OP_COLUMNS                                                                                 \
    "seq, device_id, hlc, kind, entity, target, field, old_value, new_value, base_rev"

int pd_oplog_pending(pd_store *store, pd_op_fn fn, void *ctx)
{
    return each_op(
        store, "SELECT " OP_COLUMNS " FROM op WHERE batch_seq IS NULL AND seq > ?1 ORDER BY seq", 0,
        fn, ctx);
}

int pd_oplog_since(pd_store *store, int64_t after_seq, pd_op_fn fn, void *ctx)
{
    return each_op(store, "SELECT " OP_COLUMNS " FROM op WHERE seq > ?1 ORDER BY seq", after_seq,
                   fn, ctx);
}

int pd_oplog_mark_sealed(pd_store *store, int64_t first_seq, int64_t last_seq, int64_t batch_seq)
{
    if (first_seq < 1 || last_seq < first_seq || batch_seq < 1)
        return pd_store_fail(store, PD_ERR_INVALID,
                             "op log: cannot seal ops %lld..%lld into batch %lld",
                             (long long)first_seq, (long long)last_seq, (long long)batch_seq);
    sqlite3 *db = pd_store_sqlite(store);
    int rc = pd_store_begin(store);
    if (rc != PD_OK)
        return rc;
    sqlite3_stmt *st = NULL;
    int code = PD_OK;
    rc = sqlite3_prepare_v2(db,
                            "SELECT COUNT(*) FROM op WHERE seq BETWEEN ?1 AND ?2 AND "
                            "batch_seq IS NULL",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, first_seq);
        sqlite3_bind_int64(st, 2, last_seq);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_ROW) {
        code = pd_store_fail_sqlite(store, rc, "op log");
        goto out;
    }
    if (sqlite3_column_int64(st, 0) != last_seq - first_seq + 1) {
        code = pd_store_fail(store, PD_ERR_STATE,
                             "op log: ops %lld..%lld are not all present and pending (%lld are)",
                             (long long)first_seq, (long long)last_seq,
                             (long long)sqlite3_column_int64(st, 0));
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    rc = sqlite3_prepare_v2(db, "UPDATE op SET batch_seq = ?3 WHERE seq BETWEEN ?1 AND ?2", -1, &st,
                            NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, first_seq);
        sqlite3_bind_int64(st, 2, last_seq);
        sqlite3_bind_int64(st, 3, batch_seq);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE)
        code = pd_store_fail_sqlite(store, rc, "op log: sealing");
out:
    sqlite3_finalize(st);
    if (code != PD_OK) {
        pd_store_rollback(store);
        return code;
    }
    return pd_store_commit(store);
}
