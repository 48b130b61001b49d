/*
 * household.c — corrections to households and members, members joining and leaving, households
 * proposed in the field ("usulan baru"), and a household as one JSON document.
 *
 * Each public function here validates everything first (so bad input changes nothing), then
 * makes its change as ops through a pd_change (oplog.h): the op log and the tables move together
 * in one transaction. Cross-field rules live here because they need the stored record: a NIK
 * agrees with its member's sex; a household has one active head and its head_name follows the
 * head's name; a desa correction stays in the kecamatan and the device's assignment.
 */
#include "household_internal.h"

#include "codes.h"
#include "validate.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- shared with visit.c and photo.c ------------------------------------------------------ */

int pd_area_assigned(sqlite3 *db, const char *desa, bool *assigned, pd_error *err)
{
    /* With an assignment: its desa. Without one (a device that only imported prelists): the
     * desa of its prelist packages (their shapes) and of the households it holds. */
    static const char sql[] = "SELECT CASE WHEN EXISTS (SELECT 1 FROM assignment) "
                              "THEN EXISTS (SELECT 1 FROM assignment WHERE desa = ?1) "
                              "ELSE EXISTS (SELECT 1 FROM area_shape WHERE code = ?1) "
                              "  OR EXISTS (SELECT 1 FROM household WHERE desa = ?1) END";
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, desa, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW)
        *assigned = sqlite3_column_int(st, 0) != 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? PD_OK : pd_error_sqlite(err, db, rc, "assignment");
}

static bool is_placeholder_nik(const char *nik)
{
    return nik && strlen(nik) == 16 && !strncmp(nik, "99999999999999", 14);
}

int pd_nik_elsewhere(sqlite3 *db, const char *nik, const char *member_id, const char *household_id,
                     pd_warnings *w, pd_error *err)
{
    if (!nik || is_placeholder_nik(nik))
        return PD_OK;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT id, household_id FROM member WHERE nik = ?1 AND "
                                "status = 'active' AND id IS NOT ?2 AND household_id IS NOT ?3 "
                                "ORDER BY id LIMIT 1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, nik, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, member_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, household_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW)
        pd_warn_add(w, PD_WARN_NIK_DUPLICATE, "nik %s is also member %s of household %s", nik,
                    (const char *)sqlite3_column_text(st, 0),
                    (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return pd_error_sqlite(err, db, rc, "nik lookup");
    return PD_OK;
}

int pd_household_rev(sqlite3 *db, const char *id, pd_household_row *row, pd_error *err)
{
    memset(row, 0, sizeof *row);
    if (!id || !*id)
        return pd_error_set(err, PD_ERR_INVALID, "household: id missing");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT rev, desa, kec, source, status FROM household WHERE id = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int code = PD_OK;
    if (rc == SQLITE_ROW) {
        row->rev = sqlite3_column_int64(st, 0);
        snprintf(row->desa, sizeof row->desa, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(row->kec, sizeof row->kec, "%s", (const char *)sqlite3_column_text(st, 2));
        row->is_new = !strcmp((const char *)sqlite3_column_text(st, 3), "new");
        if (sqlite3_column_type(st, 4) != SQLITE_NULL)
            snprintf(row->status, sizeof row->status, "%s",
                     (const char *)sqlite3_column_text(st, 4));
    } else if (rc == SQLITE_DONE) {
        code = pd_error_set(err, PD_ERR_NOTFOUND, "household %.63s: not found", id);
    } else {
        code = pd_error_sqlite(err, db, rc, "household");
    }
    sqlite3_finalize(st);
    return code;
}

char *pd_json_print(cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    return s;
}

/* ---- parsing a typed value from text -------------------------------------------------------- */

static int resolve(const char *entity, const char *field, const pd_record **r, const pd_field **f,
                   pd_error *err)
{
    *r = pd_record_of(entity);
    if (!*r || (strcmp(entity, "household") && strcmp(entity, "member")))
        return pd_error_set(err, PD_ERR_INVALID, "%.20s: not a household or member", entity);
    if (!field || !*field)
        return pd_error_set(err, PD_ERR_INVALID, "%s: field name missing", entity);
    *f = pd_record_field(*r, field);
    if (!*f)
        return pd_error_set(err, PD_ERR_INVALID, "%s.%.40s: no such field", entity, field);
    if (!((*f)->flags & PD_F_USER))
        return pd_error_set(
            err, PD_ERR_INVALID,
            "%s.%s: not a correctable field (ids, revisions, area codes above desa, "
            "member_count, status, outcome and the welfare rank are not corrected "
            "by hand)",
            entity, field);
    return PD_OK;
}

int pd_field_parse(const char *entity, const char *field, const char *text, pd_value *out,
                   pd_error *err)
{
    const pd_record *r = NULL;
    const pd_field *f = NULL;
    int rc = resolve(entity, field, &r, &f, err);
    if (rc != PD_OK)
        return rc;
    memset(out, 0, sizeof *out);
    if (!text)
        return pd_error_set(err, PD_ERR_INVALID, "%s.%s: value missing", entity, field);
    bool empty = !*text || !strcmp(text, "null");
    if (empty && (f->flags & PD_F_NULL)) {
        out->type = PD_VAL_NULL;
        return PD_OK;
    }
    switch (f->type) {
    case PD_FT_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (!*text || *end || errno)
            return pd_error_set(err, PD_ERR_INVALID, "%s.%s: '%.40s' is not an integer", entity,
                                field, text);
        *out = pd_int_value(v);
        return PD_OK;
    }
    case PD_FT_REAL: {
        char *end;
        errno = 0;
        double v = strtod(text, &end);
        if (!*text || *end || errno || !isfinite(v))
            return pd_error_set(err, PD_ERR_INVALID, "%s.%s: '%.40s' is not a number", entity,
                                field, text);
        out->type = PD_VAL_REAL;
        out->r = v;
        return PD_OK;
    }
    case PD_FT_TEXT:
        *out = pd_text_value(text);
        return PD_OK;
    case PD_FT_BLOB:
        break;
    }
    return pd_error_set(err, PD_ERR_INVALID, "%s.%s: cannot be set from text", entity, field);
}

/* ---- one field ------------------------------------------------------------------------------ */

/* The C string of a text value (bounded copy into buf), or NULL for NULL. */
static const char *cstr(const pd_value *v, char *buf, size_t cap)
{
    if (v->type != PD_VAL_TEXT)
        return NULL;
    size_t n = v->len < cap - 1 ? v->len : cap - 1;
    memcpy(buf, v->p, n);
    buf[n] = '\0';
    return buf;
}

/* Append a "set" op of field f of record r (key) to value v, if it differs from the current
 * one. *changed says whether it did. */
static int set_op(pd_change *ch, const pd_record *r, const pd_field *f, const char *key,
                  const pd_value *v, bool *changed)
{
    pd_error err = {0};
    sqlite3_stmt *cur = NULL;
    pd_value old;
    int64_t rev = 0;
    if (changed)
        *changed = false;
    int rc = pd_field_current(ch->db, f, key, &cur, &old, &rev, &err);
    if (rc != PD_OK)
        return pd_store_fail(ch->store, rc, "%s %s: %s", r->entity, key,
                             rc == PD_ERR_NOTFOUND ? "not found" : err.msg);
    if (!pd_value_equal(&old, v)) {
        pd_op op = {.kind = "set",
                    .entity = r->entity,
                    .target = key,
                    .field = f->name,
                    .old_value = old,
                    .new_value = *v,
                    .base_rev = rev};
        rc = pd_change_apply(ch, &op);
        if (rc == PD_OK && changed)
            *changed = true;
    }
    sqlite3_finalize(cur);
    return rc;
}

int pd_household_set(pd_store *store, const char *household_id, const char *field,
                     const pd_value *value, pd_warnings *w)
{
    pd_error err = {0};
    const pd_record *r;
    const pd_field *f;
    int rc = resolve("household", field, &r, &f, &err);
    if (rc == PD_OK && !value)
        rc = pd_error_set(&err, PD_ERR_INVALID, "household.%s: value missing", field);
    pd_value v = value ? *value : (pd_value){0};
    pd_warnings local = {0};
    if (rc == PD_OK)
        rc = pd_field_check(r, f, &v, pd_now_ms(), &local, &err);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", err.msg);
    pd_change ch;
    if ((rc = pd_change_begin(store, &ch)) != PD_OK)
        return rc;
    pd_household_row hh;
    if ((rc = pd_household_rev(ch.db, household_id, &hh, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    if (!strcmp(f->name, "desa")) {
        char desa[16];
        cstr(&v, desa, sizeof desa);
        bool assigned = false;
        if (strlen(desa) != 13 || strncmp(desa, hh.kec, 8) != 0) {
            rc = pd_store_fail(store, PD_ERR_INVALID,
                               "household.desa: %s is not a desa of kecamatan %s (a household that "
                               "moved out is a visit outcome, not a correction)",
                               desa, hh.kec);
            goto fail;
        }
        if ((rc = pd_area_assigned(ch.db, desa, &assigned, &err)) != PD_OK) {
            pd_store_fail(store, rc, "%s", err.msg);
            goto fail;
        }
        if (!assigned) {
            rc = pd_store_fail(store, PD_ERR_DENIED,
                               "household.desa: %s is not in this device's assignment", desa);
            goto fail;
        }
    }
    if ((rc = set_op(&ch, r, f, household_id, &v, NULL)) != PD_OK)
        goto fail;
    if ((rc = pd_change_commit(&ch)) != PD_OK)
        return rc;
    for (size_t i = 0; w && i < local.count; i++)
        pd_warn_add(w, local.item[i].code, "%s", local.item[i].msg);
    return PD_OK;
fail:
    pd_change_rollback(&ch);
    return rc;
}

/* What member rules need of the stored member. */
typedef struct member_row {
    char household_id[PD_ID_MAX];
    char nik[20];
    bool has_nik;
    int sex;
    char birth_date[16];
    bool has_birth_date;
    int relationship;
    char name[PD_NAME_MAX + 1];
    char status[16];
    int64_t rev;
} member_row;

static int member_read(sqlite3 *db, const char *id, member_row *m, pd_error *err)
{
    memset(m, 0, sizeof *m);
    if (!id || !*id)
        return pd_error_set(err, PD_ERR_INVALID, "member: id missing");
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT household_id, nik, sex, birth_date, relationship, name, "
                                "status, rev FROM member WHERE id = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int code = PD_OK;
    if (rc == SQLITE_ROW) {
        snprintf(m->household_id, sizeof m->household_id, "%s", sqlite3_column_text(st, 0));
        m->has_nik = sqlite3_column_type(st, 1) == SQLITE_TEXT;
        if (m->has_nik)
            snprintf(m->nik, sizeof m->nik, "%s", sqlite3_column_text(st, 1));
        m->sex = sqlite3_column_int(st, 2);
        m->has_birth_date = sqlite3_column_type(st, 3) == SQLITE_TEXT;
        if (m->has_birth_date)
            snprintf(m->birth_date, sizeof m->birth_date, "%s", sqlite3_column_text(st, 3));
        m->relationship = sqlite3_column_int(st, 4);
        snprintf(m->name, sizeof m->name, "%s", sqlite3_column_text(st, 5));
        snprintf(m->status, sizeof m->status, "%s", sqlite3_column_text(st, 6));
        m->rev = sqlite3_column_int64(st, 7);
    } else if (rc == SQLITE_DONE) {
        code = pd_error_set(err, PD_ERR_NOTFOUND, "member %.63s: not found", id);
    } else {
        code = pd_error_sqlite(err, db, rc, "member");
    }
    sqlite3_finalize(st);
    return code;
}

/* The active head of a household other than `except`, into head (PD_ID_MAX); "" if none. */
static int other_head(sqlite3 *db, const char *household_id, const char *except, char *head,
                      pd_error *err)
{
    head[0] = '\0';
    sqlite3_stmt *st = NULL;
    int rc =
        sqlite3_prepare_v2(db,
                           "SELECT id FROM member WHERE household_id = ?1 AND relationship = 1 "
                           "AND status = 'active' AND id IS NOT ?2 LIMIT 1",
                           -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, household_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, except, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW)
        snprintf(head, PD_ID_MAX, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return pd_error_sqlite(err, db, rc, "head lookup");
    return PD_OK;
}

int pd_member_set(pd_store *store, const char *member_id, const char *field, const pd_value *value,
                  pd_warnings *w)
{
    pd_error err = {0};
    const pd_record *r;
    const pd_field *f;
    int rc = resolve("member", field, &r, &f, &err);
    if (rc == PD_OK && !value)
        rc = pd_error_set(&err, PD_ERR_INVALID, "member.%s: value missing", field);
    pd_value v = value ? *value : (pd_value){0};
    pd_warnings local = {0};
    if (rc == PD_OK)
        rc = pd_field_check(r, f, &v, pd_now_ms(), NULL, &err);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", err.msg);
    pd_change ch;
    if ((rc = pd_change_begin(store, &ch)) != PD_OK)
        return rc;
    member_row m;
    if ((rc = member_read(ch.db, member_id, &m, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    char buf[PD_NAME_MAX + 1];
    const char *text = cstr(&v, buf, sizeof buf);
    /* The NIK, sex and birth date must agree; check the member as it will be. */
    const char *nik = m.has_nik ? m.nik : NULL;
    int sex = m.sex;
    const char *birth = m.has_birth_date ? m.birth_date : NULL;
    bool nik_rule = false;
    if (!strcmp(f->name, "nik"))
        nik = text, nik_rule = true;
    else if (!strcmp(f->name, "sex"))
        sex = v.type == PD_VAL_INT ? (int)v.i : 0, nik_rule = true;
    else if (!strcmp(f->name, "birth_date"))
        birth = text, nik_rule = true;
    if (nik_rule && nik) {
        if ((rc = pd_validate_nik(nik, sex, birth, &local, &err)) != PD_OK) {
            pd_store_fail(store, rc, "member %s: %s", member_id, err.msg);
            goto fail;
        }
    }
    if (!strcmp(f->name, "nik") &&
        (rc = pd_nik_elsewhere(ch.db, nik, member_id, m.household_id, &local, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    bool becomes_head = !strcmp(f->name, "relationship") && v.type == PD_VAL_INT &&
                        v.i == PD_REL_HEAD && m.relationship != PD_REL_HEAD;
    if (becomes_head) {
        char head[PD_ID_MAX];
        if ((rc = other_head(ch.db, m.household_id, member_id, head, &err)) != PD_OK) {
            pd_store_fail(store, rc, "%s", err.msg);
            goto fail;
        }
        if (head[0]) {
            rc = pd_store_fail(store, PD_ERR_INVALID,
                               "member.relationship: household %s already has a head (member %s); "
                               "change that member first",
                               m.household_id, head);
            goto fail;
        }
    }
    bool changed = false;
    if ((rc = set_op(&ch, r, f, member_id, &v, &changed)) != PD_OK)
        goto fail;
    /* The household's head_name follows its head's name. */
    bool is_head = m.relationship == PD_REL_HEAD && !strcmp(m.status, "active");
    const char *head_name = NULL;
    if (changed && is_head && !strcmp(f->name, "name"))
        head_name = text;
    if (changed && becomes_head && !strcmp(m.status, "active"))
        head_name = m.name;
    if (head_name) {
        const pd_record *hr = pd_record_of("household");
        pd_value hv = pd_text_value(head_name);
        if ((rc = set_op(&ch, hr, pd_record_field(hr, "head_name"), m.household_id, &hv, NULL)) !=
            PD_OK)
            goto fail;
    }
    if ((rc = pd_change_commit(&ch)) != PD_OK)
        return rc;
    for (size_t i = 0; w && i < local.count; i++)
        pd_warn_add(w, local.item[i].code, "%s", local.item[i].msg);
    return PD_OK;
fail:
    pd_change_rollback(&ch);
    return rc;
}

/* ---- members joining and leaving ------------------------------------------------------------ */

/* Check a new member's fields (the head of a proposal too). `what` prefixes messages. */
static int check_new_member(const pd_member_new *m, bool need_reason, pd_warnings *w, pd_error *err)
{
    if (!m)
        return pd_error_set(err, PD_ERR_INVALID, "member: missing");
    const pd_record *r = pd_record_of("member");
    int64_t now = pd_now_ms();
    pd_value v = pd_text_value(m->name);
    int rc = m->name ? pd_field_check(r, pd_record_field(r, "name"), &v, now, NULL, err)
                     : pd_error_set(err, PD_ERR_INVALID, "member.name: missing");
    if (rc != PD_OK)
        return rc;
    if (m->sex && (rc = pd_validate_code("sex", m->sex, err)) != PD_OK)
        return pd_error_prefix(err, "member.");
    if (m->birth_date && (rc = pd_validate_date("member.birth_date", m->birth_date, now, err)))
        return rc;
    if (m->nik && (rc = pd_validate_nik(m->nik, m->sex, m->birth_date, w, err)) != PD_OK)
        return pd_error_prefix(err, "member.");
    if (m->kk && (rc = pd_validate_kk(m->kk, now, err)) != PD_OK)
        return pd_error_prefix(err, "member.");
    if (m->birth_place &&
        (rc = pd_validate_text("member.birth_place", m->birth_place, PD_PLACE_MAX, 0, err)))
        return rc;
    if (!m->relationship)
        return pd_error_set(err, PD_ERR_INVALID,
                            "member.relationship: missing (1 head .. 9 other)");
    if ((rc = pd_validate_code("relationship", m->relationship, err)) != PD_OK)
        return pd_error_prefix(err, "member.");
    if (m->marital && (rc = pd_validate_code("marital", m->marital, err)) != PD_OK)
        return pd_error_prefix(err, "member.");
    if (need_reason) {
        if (!m->reason || (strcmp(m->reason, "born") && strcmp(m->reason, "joined")))
            return pd_error_set(err, PD_ERR_INVALID, "member.reason: must be born or joined");
        if (!strcmp(m->reason, "born") && !m->birth_date)
            return pd_error_set(err, PD_ERR_INVALID,
                                "member.birth_date: required for a member who was born");
    }
    return PD_OK;
}

static bool add_text(cJSON *o, const char *name, const char *s)
{
    pd_value v = pd_text_value(s);
    return pd_json_add_value(o, name, &v);
}

static bool add_int(cJSON *o, const char *name, int64_t i, bool null_if_zero)
{
    pd_value v = null_if_zero && i == 0 ? (pd_value){0} : pd_int_value(i);
    return pd_json_add_value(o, name, &v);
}

/* The JSON of a new member row (every column but the id). NULL on allocation failure. */
static char *member_json(const char *household_id, int no, const pd_member_new *m, int relationship)
{
    cJSON *o = cJSON_CreateObject();
    bool ok = o && add_text(o, "household_id", household_id) && add_int(o, "rev", 0, false) &&
              add_int(o, "member_no", no, false) && add_text(o, "name", m->name) &&
              add_text(o, "nik", m->nik) && add_text(o, "kk", m->kk) &&
              add_int(o, "sex", m->sex, true) && add_text(o, "birth_place", m->birth_place) &&
              add_text(o, "birth_date", m->birth_date) &&
              add_int(o, "relationship", relationship, true) &&
              add_int(o, "marital", m->marital, true) && add_int(o, "disability", 0, false) &&
              add_int(o, "chronic_illness", 0, false) && add_int(o, "schooling", 0, true) &&
              add_int(o, "work", 0, true) && add_int(o, "programmes", 0, false) &&
              add_text(o, "status", "active") && add_text(o, "outcome", "new");
    char *s = ok ? pd_json_print(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* Append the create op of a member. */
static int create_member(pd_change *ch, const char *household_id, int64_t base_rev, int no,
                         const pd_member_new *m, int relationship, const char *reason,
                         char id_out[PD_ID_MAX])
{
    char id[PD_ID_MAX + 4];
    if (snprintf(id, sizeof id, "%s%02d", household_id, no) >= PD_ID_MAX)
        return pd_store_fail(ch->store, PD_ERR_TOOBIG, "member of %s: id too long", household_id);
    char *json = member_json(household_id, no, m, relationship);
    if (!json)
        return pd_store_fail(ch->store, PD_ERR_NOMEM, "member %s: out of memory", id);
    /* Why a member is new (born / joined) has no column: the create op carries it as its field. */
    pd_op op = {.kind = "create",
                .entity = "member",
                .target = id,
                .field = reason ? reason : "",
                .new_value = pd_text_value(json),
                .base_rev = base_rev};
    int rc = pd_change_apply(ch, &op);
    free(json);
    if (rc == PD_OK && id_out)
        memcpy(id_out, id, strlen(id) + 1); /* < PD_ID_MAX: checked above */
    return rc;
}

int pd_member_add(pd_store *store, const char *household_id, const pd_member_new *m,
                  char id_out[PD_ID_MAX], pd_warnings *w)
{
    pd_error err = {0};
    pd_warnings local = {0};
    int rc = check_new_member(m, true, &local, &err);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", err.msg);
    pd_change ch;
    if ((rc = pd_change_begin(store, &ch)) != PD_OK)
        return rc;
    pd_household_row hh;
    sqlite3_stmt *st = NULL;
    if ((rc = pd_household_rev(ch.db, household_id, &hh, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    if (m->relationship == PD_REL_HEAD) {
        char head[PD_ID_MAX];
        if ((rc = other_head(ch.db, household_id, NULL, head, &err)) != PD_OK) {
            pd_store_fail(store, rc, "%s", err.msg);
            goto fail;
        }
        if (head[0]) {
            rc = pd_store_fail(store, PD_ERR_INVALID,
                               "member.relationship: household %s already has a head (member %s)",
                               household_id, head);
            goto fail;
        }
    }
    int sqlrc = sqlite3_prepare_v2(ch.db,
                                   "SELECT COALESCE(MAX(member_no), 0) + 1 FROM member WHERE "
                                   "household_id = ?1",
                                   -1, &st, NULL);
    if (sqlrc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, household_id, -1, SQLITE_STATIC);
        sqlrc = sqlite3_step(st);
    }
    if (sqlrc != SQLITE_ROW) {
        rc = pd_store_fail_sqlite(store, sqlrc, "member number");
        goto fail;
    }
    int64_t no = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (no > 99) {
        rc = pd_store_fail(store, PD_ERR_TOOBIG,
                           "household %s: member numbers have two digits; 99 are used",
                           household_id);
        goto fail;
    }
    if ((rc = pd_nik_elsewhere(ch.db, m->nik, NULL, household_id, &local, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    char id[PD_ID_MAX];
    if ((rc = create_member(&ch, household_id, hh.rev, (int)no, m, m->relationship, m->reason,
                            id)) != PD_OK)
        goto fail;
    if (m->relationship == PD_REL_HEAD) {
        const pd_record *hr = pd_record_of("household");
        pd_value hv = pd_text_value(m->name);
        if ((rc = set_op(&ch, hr, pd_record_field(hr, "head_name"), household_id, &hv, NULL)))
            goto fail;
    }
    if ((rc = pd_change_commit(&ch)) != PD_OK)
        return rc;
    if (id_out)
        snprintf(id_out, PD_ID_MAX, "%s", id);
    for (size_t i = 0; w && i < local.count; i++)
        pd_warn_add(w, local.item[i].code, "%s", local.item[i].msg);
    return PD_OK;
fail:
    sqlite3_finalize(st);
    pd_change_rollback(&ch);
    return rc;
}

int pd_member_end_in(pd_change *ch, const char *member_id, const char *reason)
{
    pd_error err = {0};
    member_row m;
    int rc = member_read(ch->db, member_id, &m, &err);
    if (rc != PD_OK)
        return pd_store_fail(ch->store, rc, "%s", err.msg);
    if (strcmp(m.status, "active") != 0)
        return pd_store_fail(ch->store, PD_ERR_STATE, "member %s: already ended (%s)", member_id,
                             m.status);
    pd_op op = {.kind = "end",
                .entity = "member",
                .target = member_id,
                .field = "status",
                .old_value = pd_text_value("active"),
                .new_value = pd_text_value(reason),
                .base_rev = m.rev};
    if ((rc = pd_change_apply(ch, &op)) != PD_OK)
        return rc;
    const pd_record *r = pd_record_of("member");
    pd_value v = pd_text_value(reason);
    return set_op(ch, r, pd_record_field(r, "outcome"), member_id, &v, NULL);
}

int pd_member_end(pd_store *store, const char *member_id, const char *reason)
{
    pd_error err = {0};
    int rc = pd_validate_end_reason(reason, &err);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "member end %s", err.msg);
    pd_change ch;
    if ((rc = pd_change_begin(store, &ch)) != PD_OK)
        return rc;
    if ((rc = pd_member_end_in(&ch, member_id, reason)) != PD_OK) {
        pd_change_rollback(&ch);
        return rc;
    }
    return pd_change_commit(&ch);
}

/* ---- proposals ------------------------------------------------------------------------------ */

static char *household_json(const pd_household_new *h, const char *desa)
{
    char prov[3], kab[6], kec[9];
    snprintf(prov, sizeof prov, "%.2s", desa);
    snprintf(kab, sizeof kab, "%.5s", desa);
    snprintf(kec, sizeof kec, "%.8s", desa);
    static const char *const null_ints[] = {
        "tenure",       "floor_area", "floor_material", "wall_material", "roof_material", "rooms",
        "water_source", "lighting",   "power_va",       "cooking_fuel",  "toilet"};
    static const char *const zero_ints[] = {"asset_flags", "cattle",  "goats",
                                            "pigs",        "poultry", "land_m2"};
    cJSON *o = cJSON_CreateObject();
    bool ok = o && add_int(o, "rev", 0, false) && add_text(o, "source", "new") &&
              add_text(o, "prov", prov) && add_text(o, "kab", kab) && add_text(o, "kec", kec) &&
              add_text(o, "desa", desa) && add_text(o, "sls", h->sls ? h->sls : "") &&
              add_text(o, "address", h->address ? h->address : "") &&
              add_text(o, "head_name", h->head.name) && add_text(o, "kk", h->kk) &&
              add_int(o, "member_count", 0, false);
    for (size_t i = 0; ok && i < PD_ARRAY_LEN(null_ints); i++)
        ok = add_int(o, null_ints[i], 0, true);
    for (size_t i = 0; ok && i < PD_ARRAY_LEN(zero_ints); i++)
        ok = add_int(o, zero_ints[i], 0, false);
    ok = ok && add_int(o, "desil", 0, true) && add_int(o, "percentile", 0, true);
    if (ok) {
        pd_value lat = {0}, lon = {0};
        if (!isnan(h->lat) && !isnan(h->lon)) {
            lat = (pd_value){.type = PD_VAL_REAL, .r = h->lat};
            lon = (pd_value){.type = PD_VAL_REAL, .r = h->lon};
        }
        ok = pd_json_add_value(o, "lat", &lat) && pd_json_add_value(o, "lon", &lon) &&
             add_text(o, "status", NULL);
    }
    char *s = ok ? pd_json_print(o) : NULL;
    cJSON_Delete(o);
    return s;
}

int pd_household_propose(pd_store *store, const pd_household_new *h, char id_out[PD_ID_MAX],
                         pd_warnings *w)
{
    pd_error err = {0};
    pd_warnings local = {0};
    if (!h)
        return pd_store_fail(store, PD_ERR_INVALID, "household: missing");
    int rc = pd_validate_area("household.desa", h->desa, &err);
    if (rc == PD_OK && strlen(h->desa) != 13)
        rc = pd_error_set(&err, PD_ERR_INVALID, "household.desa: %s is not a desa code", h->desa);
    if (rc == PD_OK && h->sls)
        rc = pd_validate_text("household.sls", h->sls, PD_SLS_MAX, 0, &err);
    if (rc == PD_OK && h->address)
        rc = pd_validate_text("household.address", h->address, PD_ADDRESS_MAX, 0, &err);
    if (rc == PD_OK && h->kk && (rc = pd_validate_kk(h->kk, pd_now_ms(), &err)) != PD_OK)
        pd_error_prefix(&err, "household.");
    if (rc == PD_OK && (isnan(h->lat) != isnan(h->lon)))
        rc = pd_error_set(&err, PD_ERR_INVALID, "household: give both lat and lon, or neither");
    if (rc == PD_OK && !isnan(h->lat) &&
        (!isfinite(h->lat) || !isfinite(h->lon) || fabs(h->lat) > 90 || fabs(h->lon) > 180))
        rc = pd_error_set(&err, PD_ERR_INVALID, "household: lat/lon %g,%g out of range", h->lat,
                          h->lon);
    pd_member_new head = h->head;
    head.relationship = PD_REL_HEAD;
    if (rc == PD_OK)
        rc = check_new_member(&head, false, &local, &err);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", err.msg);
    pd_change ch;
    if ((rc = pd_change_begin(store, &ch)) != PD_OK)
        return rc;
    bool assigned = false;
    if ((rc = pd_area_assigned(ch.db, h->desa, &assigned, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    if (!assigned) {
        rc = pd_store_fail(store, PD_ERR_DENIED,
                           "household.desa: %s is not in this device's assignment", h->desa);
        goto fail;
    }
    /* "N" + this device's id + the seq of the create op: no other device can make it, and this
     * device never makes it twice (seq only grows). */
    char id[PD_ID_MAX];
    snprintf(id, sizeof id, "N%s-%06" PRId64, ch.device_id, pd_change_next_seq(&ch));
    if ((rc = pd_nik_elsewhere(ch.db, head.nik, NULL, id, &local, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    char *json = household_json(h, h->desa);
    if (!json) {
        rc = pd_store_fail(store, PD_ERR_NOMEM, "household: out of memory");
        goto fail;
    }
    pd_op op = {.kind = "create",
                .entity = "household",
                .target = id,
                .new_value = pd_text_value(json),
                .base_rev = 0};
    rc = pd_change_apply(&ch, &op);
    free(json);
    if (rc == PD_OK)
        rc = create_member(&ch, id, 0, 1, &head, PD_REL_HEAD, "", NULL);
    if (rc != PD_OK)
        goto fail;
    if ((rc = pd_change_commit(&ch)) != PD_OK)
        return rc;
    if (id_out)
        snprintf(id_out, PD_ID_MAX, "%s", id);
    for (size_t i = 0; w && i < local.count; i++)
        pd_warn_add(w, local.item[i].code, "%s", local.item[i].msg);
    return PD_OK;
fail:
    pd_change_rollback(&ch);
    return rc;
}

/* ---- one household as JSON --------------------------------------------------------------------
 */

/* Rows of a query (one text parameter) as objects: into an array, or (one=true) into obj itself. */
static int rows_json(sqlite3 *db, const char *sql, const char *arg, cJSON *dst, bool one,
                     pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_error_sqlite(err, db, rc, "household json");
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int code = PD_OK, n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cJSON *o = one ? dst : cJSON_CreateObject();
        bool ok = o != NULL;
        for (int c = 0; ok && c < sqlite3_column_count(st); c++)
            ok = pd_json_add_column(o, sqlite3_column_name(st, c), st, c);
        if (!one && ok)
            ok = cJSON_AddItemToArray(dst, o);
        if (!ok) {
            if (!one)
                cJSON_Delete(o);
            code = pd_error_set(err, PD_ERR_NOMEM, "household json: out of memory");
            break;
        }
        n++;
        if (one)
            break;
    }
    if (code == PD_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = pd_error_sqlite(err, db, rc, "household json");
    if (code == PD_OK && one && n == 0)
        code = pd_error_set(err, PD_ERR_NOTFOUND, "household %.63s: not found", arg);
    sqlite3_finalize(st);
    return code;
}

/* The parts of pd_household_json: key, query (?1 = household id), and whether it is one object
 * (the household) or an array of rows. */
static const struct {
    const char *key;
    bool one;
    const char *sql;
} household_parts[] = {
    {"household", true,
     "SELECT id, rev, source, prov, kab, kec, desa, sls, address, head_name, kk, member_count, "
     "tenure, floor_area, floor_material, wall_material, roof_material, rooms, water_source, "
     "lighting, power_va, cooking_fuel, toilet, asset_flags, cattle, goats, pigs, poultry, "
     "land_m2, desil, percentile, lat, lon, status FROM household WHERE id = ?1"},
    {"members", false,
     "SELECT id, member_no, name, nik, kk, sex, birth_place, birth_date, relationship, marital, "
     "disability, chronic_illness, schooling, work, programmes, status, outcome, rev FROM member "
     "WHERE household_id = ?1 ORDER BY member_no"},
    {"visits", false,
     "SELECT id, outcome, visited_at, lat, lon, accuracy_m, altitude_m, fix_time, provider, mock, "
     "notes, warnings FROM visit WHERE household_id = ?1 ORDER BY visited_at, rowid"},
    {"photos", false,
     "SELECT hash, kind, size, taken_at, visit_id, uploaded FROM photo WHERE household_id = ?1 "
     "ORDER BY taken_at, hash"},
};

int pd_household_json(pd_store *store, const char *household_id, char **json_out)
{
    *json_out = NULL;
    if (!household_id || !*household_id)
        return pd_store_fail(store, PD_ERR_INVALID, "household: id missing");
    sqlite3 *db = pd_store_sqlite(store);
    pd_error err = {0};
    cJSON *root = cJSON_CreateObject();
    int rc = root ? PD_OK : pd_error_set(&err, PD_ERR_NOMEM, "household json: out of memory");
    for (size_t i = 0; rc == PD_OK && i < sizeof household_parts / sizeof household_parts[0]; i++) {
        const char *key = household_parts[i].key;
        bool one = household_parts[i].one;
        cJSON *dst = one ? cJSON_AddObjectToObject(root, key) : cJSON_AddArrayToObject(root, key);
        if (!dst)
            rc = pd_error_set(&err, PD_ERR_NOMEM, "household json: out of memory");
        else
            rc = rows_json(db, household_parts[i].sql, household_id, dst, one, &err);
    }
    if (rc == PD_OK) {
        *json_out = pd_json_print(root);
        if (!*json_out)
            rc = pd_error_set(&err, PD_ERR_NOMEM, "household json: out of memory");
    }
    cJSON_Delete(root);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", err.msg);
    return PD_OK;
}

void pd_free(void *p)
{
    free(p);
}
