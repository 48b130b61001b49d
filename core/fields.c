/*
 * fields.c — the column tables of household, member, visit and photo (see fields.h), the check
 * of one value against its column, and values to and from SQLite rows and JSON.
 *
 * The tables follow schema/device/001_init.sql column for column (tests/test_oplog_replay.c
 * compares them with PRAGMA table_info). Limits here are what a person or an op may write; the
 * prelist importer has its own, wider, checks for what the server sends.
 */
#include "fields.h"

#include "codes.h"
#include "validate.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- enumerations ------------------------------------------------------------------------- */

static int source_check(const char *v, pd_error *err)
{
    if (v && (!strcmp(v, "prelist") || !strcmp(v, "new")))
        return PD_OK;
    return pd_error_set(err, PD_ERR_INVALID, "source: '%.20s' is not prelist or new", v ? v : "");
}

static int member_status_check(const char *v, pd_error *err)
{
    if (v && !strcmp(v, "active"))
        return PD_OK;
    int rc = pd_validate_end_reason(v, err);
    if (rc != PD_OK)
        pd_error_set(err, rc, "status: '%.20s' is not active, deceased, moved or duplicate",
                     v ? v : "");
    return rc;
}

static int provider_check(const char *v, pd_error *err)
{
    static const char *const ok[] = {"gps", "network", "fused", "manual"};
    for (size_t i = 0; v && i < PD_ARRAY_LEN(ok); i++)
        if (!strcmp(v, ok[i]))
            return PD_OK;
    return pd_error_set(err, PD_ERR_INVALID,
                        "provider: '%.20s' is not gps, network, fused or manual", v ? v : "");
}

/* ---- the tables --------------------------------------------------------------------------- */

#define INT64_MAXV INT64_MAX
#define MS_2000 946684800000LL

/* A column; an OP column also gets its UPDATE and SELECT statements. */
#define COL(t, key, name, type, flags, check, min, max, en)                                        \
    {                                                                                              \
#name, type, flags, check, min, max, en, NULL, NULL, 0, NULL                               \
    }
#define OPCOL(t, key, name, type, flags, check, min, max, en)                                      \
    {                                                                                              \
#name, type, (flags) | PD_F_OP, check, min, max, en,                                       \
            "UPDATE " #t " SET " #name " = ?1 WHERE " #key " = ?2",                                \
            "SELECT " #name ", rev FROM " #t " WHERE " #key " = ?1", 0, NULL                       \
    }

#define H(name, type, flags, check, min, max)                                                      \
    COL(household, id, name, type, flags, check, min, max, NULL)
#define HU(name, type, flags, check, min, max)                                                     \
    OPCOL(household, id, name, type, (flags) | PD_F_USER, check, min, max, NULL)

static const pd_field household_fields[] = {
    H(id, PD_FT_TEXT, PD_F_KEY, PD_CK_ID, 0, 0),
    H(rev, PD_FT_INT, 0, PD_CK_RANGE, 0, INT64_MAXV),
    COL(household, id, source, PD_FT_TEXT, 0, PD_CK_ENUM, 0, 0, source_check),
    H(prov, PD_FT_TEXT, 0, PD_CK_AREA, 0, 0),
    H(kab, PD_FT_TEXT, 0, PD_CK_AREA, 0, 0),
    H(kec, PD_FT_TEXT, 0, PD_CK_AREA, 0, 0),
    HU(desa, PD_FT_TEXT, 0, PD_CK_AREA, 0, 0),
    HU(sls, PD_FT_TEXT, 0, PD_CK_TEXT, 0, PD_SLS_MAX),
    HU(address, PD_FT_TEXT, 0, PD_CK_TEXT, 0, PD_ADDRESS_MAX),
    HU(head_name, PD_FT_TEXT, 0, PD_CK_NAME, 0, PD_NAME_MAX),
    HU(kk, PD_FT_TEXT, PD_F_NULL, PD_CK_KK, 0, 0),
    H(member_count, PD_FT_INT, 0, PD_CK_RANGE, 0, 99),
    HU(tenure, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    HU(floor_area, PD_FT_INT, PD_F_NULL, PD_CK_RANGE, 1, 100000),
    HU(floor_material, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    HU(wall_material, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    HU(roof_material, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    HU(rooms, PD_FT_INT, PD_F_NULL, PD_CK_RANGE, 1, 100),
    HU(water_source, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    HU(lighting, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    HU(power_va, PD_FT_INT, PD_F_NULL, PD_CK_RANGE, 0, PD_POWER_VA_MAX),
    HU(cooking_fuel, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    HU(toilet, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    HU(asset_flags, PD_FT_INT, 0, PD_CK_BITS, 0, PD_ASSET_MASK),
    HU(cattle, PD_FT_INT, 0, PD_CK_RANGE, 0, 100000),
    HU(goats, PD_FT_INT, 0, PD_CK_RANGE, 0, 100000),
    HU(pigs, PD_FT_INT, 0, PD_CK_RANGE, 0, 100000),
    HU(poultry, PD_FT_INT, 0, PD_CK_RANGE, 0, 1000000),
    HU(land_m2, PD_FT_INT, 0, PD_CK_RANGE, 0, 1000000000),
    H(desil, PD_FT_INT, PD_F_NULL, PD_CK_RANGE, 1, 10),
    H(percentile, PD_FT_INT, PD_F_NULL, PD_CK_RANGE, 1, 100),
    H(lat, PD_FT_REAL, PD_F_NULL, PD_CK_RANGE, -90, 90),
    H(lon, PD_FT_REAL, PD_F_NULL, PD_CK_RANGE, -180, 180),
    OPCOL(household, id, status, PD_FT_TEXT, PD_F_NULL, PD_CK_ENUM, 0, 0,
          pd_validate_visit_outcome),
};

#define M(name, type, flags, check, min, max)                                                      \
    COL(member, id, name, type, flags, check, min, max, NULL)
#define MU(name, type, flags, check, min, max)                                                     \
    OPCOL(member, id, name, type, (flags) | PD_F_USER, check, min, max, NULL)

static const pd_field member_fields[] = {
    M(id, PD_FT_TEXT, PD_F_KEY, PD_CK_ID, 0, 0),
    M(household_id, PD_FT_TEXT, 0, PD_CK_ID, 0, 0),
    M(rev, PD_FT_INT, 0, PD_CK_RANGE, 0, INT64_MAXV),
    M(member_no, PD_FT_INT, 0, PD_CK_RANGE, 1, 99),
    MU(name, PD_FT_TEXT, 0, PD_CK_NAME, 0, PD_NAME_MAX),
    MU(nik, PD_FT_TEXT, PD_F_NULL, PD_CK_NIK, 0, 0),
    MU(kk, PD_FT_TEXT, PD_F_NULL, PD_CK_KK, 0, 0),
    MU(sex, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    MU(birth_place, PD_FT_TEXT, PD_F_NULL, PD_CK_TEXT, 0, PD_PLACE_MAX),
    MU(birth_date, PD_FT_TEXT, PD_F_NULL, PD_CK_DATE, 0, 0),
    MU(relationship, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    MU(marital, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    MU(disability, PD_FT_INT, 0, PD_CK_CODE, 0, 0),
    MU(chronic_illness, PD_FT_INT, 0, PD_CK_CODE, 0, 0),
    MU(schooling, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    MU(work, PD_FT_INT, PD_F_NULL, PD_CK_CODE, 0, 0),
    MU(programmes, PD_FT_INT, 0, PD_CK_BITS, 0, PD_PROG_MASK),
    OPCOL(member, id, status, PD_FT_TEXT, 0, PD_CK_ENUM, 0, 0, member_status_check),
    OPCOL(member, id, outcome, PD_FT_TEXT, PD_F_NULL, PD_CK_ENUM, 0, 0, pd_validate_member_outcome),
};

#define V(name, type, flags, check, min, max)                                                      \
    COL(visit, id, name, type, flags, check, min, max, NULL)

static const pd_field visit_fields[] = {
    V(id, PD_FT_TEXT, PD_F_KEY, PD_CK_ID, 0, 0),
    V(household_id, PD_FT_TEXT, 0, PD_CK_ID, 0, 0),
    COL(visit, id, outcome, PD_FT_TEXT, 0, PD_CK_ENUM, 0, 0, pd_validate_visit_outcome),
    V(visited_at, PD_FT_INT, 0, PD_CK_RANGE, MS_2000, INT64_MAXV),
    V(enumerator_pk, PD_FT_BLOB, PD_F_NULL, PD_CK_PK, 0, 0),
    V(lat, PD_FT_REAL, PD_F_NULL, PD_CK_RANGE, -90, 90),
    V(lon, PD_FT_REAL, PD_F_NULL, PD_CK_RANGE, -180, 180),
    V(accuracy_m, PD_FT_REAL, PD_F_NULL, PD_CK_RANGE, 0, 1000000),
    V(altitude_m, PD_FT_REAL, PD_F_NULL, PD_CK_RANGE, -500, 9000),
    V(fix_time, PD_FT_INT, PD_F_NULL, PD_CK_RANGE, MS_2000, INT64_MAXV),
    COL(visit, id, provider, PD_FT_TEXT, PD_F_NULL, PD_CK_ENUM, 0, 0, provider_check),
    V(mock, PD_FT_INT, 0, PD_CK_RANGE, 0, 1),
    V(notes, PD_FT_TEXT, PD_F_MULTI, PD_CK_TEXT, 0, PD_NOTES_MAX),
    V(warnings, PD_FT_TEXT, 0, PD_CK_TEXT, 0, 1000),
};

#define P(name, type, flags, check, min, max)                                                      \
    COL(photo, hash, name, type, flags, check, min, max, NULL)

static const pd_field photo_fields[] = {
    P(hash, PD_FT_BLOB, PD_F_KEY, PD_CK_HASH, 0, 0),
    P(household_id, PD_FT_TEXT, 0, PD_CK_ID, 0, 0),
    P(visit_id, PD_FT_TEXT, PD_F_NULL, PD_CK_ID, 0, 0),
    COL(photo, hash, kind, PD_FT_TEXT, 0, PD_CK_ENUM, 0, 0, pd_validate_photo_kind),
    P(size, PD_FT_INT, 0, PD_CK_RANGE, 1, PD_PHOTO_MAX_BYTES),
    P(taken_at, PD_FT_INT, 0, PD_CK_RANGE, MS_2000, INT64_MAXV),
    P(bytes, PD_FT_BLOB, PD_F_BYTES, PD_CK_NONE, 0, 0),
    {"uploaded", PD_FT_INT, PD_F_LOCAL, PD_CK_RANGE, 0, 1, NULL, NULL, NULL, 0, NULL},
};

static const pd_record records[] = {
    {"household", household_fields, PD_ARRAY_LEN(household_fields),
     "INSERT INTO household (id, rev, source, prov, kab, kec, desa, sls, address, head_name, kk, "
     "member_count, tenure, floor_area, floor_material, wall_material, roof_material, rooms, "
     "water_source, lighting, power_va, cooking_fuel, toilet, asset_flags, cattle, goats, pigs, "
     "poultry, land_m2, desil, percentile, lat, lon, status) VALUES (:id, :rev, :source, :prov, "
     ":kab, :kec, :desa, :sls, :address, :head_name, :kk, :member_count, :tenure, :floor_area, "
     ":floor_material, :wall_material, :roof_material, :rooms, :water_source, :lighting, "
     ":power_va, :cooking_fuel, :toilet, :asset_flags, :cattle, :goats, :pigs, :poultry, "
     ":land_m2, :desil, :percentile, :lat, :lon, :status)",
     "SELECT 1 FROM household WHERE id = ?1"},
    {"member", member_fields, PD_ARRAY_LEN(member_fields),
     "INSERT INTO member (id, household_id, rev, member_no, name, nik, kk, sex, birth_place, "
     "birth_date, relationship, marital, disability, chronic_illness, schooling, work, programmes, "
     "status, outcome) VALUES (:id, :household_id, :rev, :member_no, :name, :nik, :kk, :sex, "
     ":birth_place, :birth_date, :relationship, :marital, :disability, :chronic_illness, "
     ":schooling, :work, :programmes, :status, :outcome)",
     "SELECT 1 FROM member WHERE id = ?1"},
    {"visit", visit_fields, PD_ARRAY_LEN(visit_fields),
     "INSERT INTO visit (id, household_id, outcome, visited_at, enumerator_pk, lat, lon, "
     "accuracy_m, altitude_m, fix_time, provider, mock, notes, warnings) VALUES (:id, "
     ":household_id, :outcome, :visited_at, :enumerator_pk, :lat, :lon, :accuracy_m, :altitude_m, "
     ":fix_time, :provider, :mock, :notes, :warnings)",
     "SELECT 1 FROM visit WHERE id = ?1"},
    {"photo", photo_fields, PD_ARRAY_LEN(photo_fields),
     "INSERT INTO photo (hash, household_id, visit_id, kind, size, taken_at, bytes, uploaded) "
     "VALUES (:hash, :household_id, :visit_id, :kind, :size, :taken_at, :bytes, :uploaded)",
     "SELECT 1 FROM photo WHERE hash = ?1"},
};

const pd_record *pd_record_of(const char *entity)
{
    for (size_t i = 0; entity && i < PD_ARRAY_LEN(records); i++)
        if (!strcmp(records[i].entity, entity))
            return &records[i];
    return NULL;
}

const pd_field *pd_record_field(const pd_record *r, const char *name)
{
    for (size_t i = 0; r && name && i < r->count; i++)
        if (!strcmp(r->fields[i].name, name))
            return &r->fields[i];
    return NULL;
}

/* ---- checking one value ------------------------------------------------------------------- */

static const char *type_name(pd_ftype t)
{
    switch (t) {
    case PD_FT_INT:
        return "an integer";
    case PD_FT_REAL:
        return "a number";
    case PD_FT_TEXT:
        return "text";
    case PD_FT_BLOB:
        return "bytes";
    }
    return "?";
}

/* Run a validator that reports "<name>: why" and report "<entity>.<field>: why". */
#define PREFIXED(call)                                                                             \
    do {                                                                                           \
        pd_error e_ = {0};                                                                         \
        int rc_ = (call);                                                                          \
        if (rc_ != PD_OK) {                                                                        \
            const char *why_ = strstr(e_.msg, ": ");                                               \
            return pd_error_set(err, rc_, "%s.%s: %s", r->entity, f->name,                         \
                                why_ ? why_ + 2 : e_.msg);                                         \
        }                                                                                          \
        return PD_OK;                                                                              \
    } while (0)

static bool id_ok(const uint8_t *p, size_t n)
{
    if (n < 1 || n >= PD_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
              c == '.' || c == '-' || c == '_'))
            return false;
    }
    return true;
}

int pd_field_check(const pd_record *r, const pd_field *f, pd_value *v, int64_t now_ms,
                   pd_warnings *w, pd_error *err)
{
    if (v->type == PD_VAL_NULL) {
        if (f->flags & PD_F_NULL)
            return PD_OK;
        return pd_error_set(err, PD_ERR_INVALID, "%s.%s: may not be empty", r->entity, f->name);
    }
    if (f->type == PD_FT_REAL && v->type == PD_VAL_INT) {
        v->type = PD_VAL_REAL;
        v->r = (double)v->i;
    }
    static const pd_value_type want[] = {[PD_FT_INT] = PD_VAL_INT,
                                         [PD_FT_REAL] = PD_VAL_REAL,
                                         [PD_FT_TEXT] = PD_VAL_TEXT,
                                         [PD_FT_BLOB] = PD_VAL_BLOB};
    if (v->type != want[f->type])
        return pd_error_set(err, PD_ERR_INVALID, "%s.%s: must be %s", r->entity, f->name,
                            type_name(f->type));
    if (v->type == PD_VAL_TEXT) {
        /* Text from SQLite or JSON is NUL-free up to len; a NUL inside is refused. */
        if (memchr(v->p, '\0', v->len))
            return pd_error_set(err, PD_ERR_INVALID, "%s.%s: contains a NUL byte", r->entity,
                                f->name);
    }
    /* Text checks below need a NUL-terminated copy; fields are short (bounded first). */
    char text[PD_NOTES_MAX + 1];
    if (v->type == PD_VAL_TEXT) {
        size_t limit = f->check == PD_CK_TEXT || f->check == PD_CK_NAME ? (size_t)f->max : 63;
        if (f->check == PD_CK_NIK || f->check == PD_CK_KK)
            limit = 16;
        if (f->check == PD_CK_DATE)
            limit = 10;
        if (f->check == PD_CK_AREA)
            limit = 13;
        if (f->check == PD_CK_ENUM)
            limit = 40;
        if (v->len > limit) {
            if (f->check == PD_CK_TEXT || f->check == PD_CK_NAME)
                return pd_error_set(err, PD_ERR_INVALID, "%s.%s: longer than %zu bytes", r->entity,
                                    f->name, limit);
            if (f->check == PD_CK_NIK || f->check == PD_CK_KK)
                return pd_error_set(err, PD_ERR_INVALID,
                                    "%s.%s: must be 16 digits, got %zu "
                                    "characters",
                                    r->entity, f->name, v->len);
            return pd_error_set(err, PD_ERR_INVALID, "%s.%s: longer than %zu bytes", r->entity,
                                f->name, limit);
        }
        memcpy(text, v->p, v->len);
        text[v->len] = '\0';
    }
    switch (f->check) {
    case PD_CK_NONE:
        return PD_OK;
    case PD_CK_ID:
        if (!id_ok(v->p, v->len))
            return pd_error_set(err, PD_ERR_INVALID,
                                "%s.%s: '%.63s' is not an id (1-63 of 0-9 A-Z a-z . - _)",
                                r->entity, f->name, text);
        return PD_OK;
    case PD_CK_TEXT:
        PREFIXED(
            pd_validate_text(f->name, text, (size_t)f->max, (f->flags & PD_F_MULTI) != 0, &e_));
    case PD_CK_NAME: {
        bool blank = true;
        for (size_t i = 0; i < v->len && blank; i++)
            blank = text[i] == ' ';
        if (blank)
            return pd_error_set(err, PD_ERR_INVALID, "%s.%s: may not be empty", r->entity, f->name);
        PREFIXED(pd_validate_text(f->name, text, (size_t)f->max, 0, &e_));
    }
    case PD_CK_RANGE:
        if (v->type == PD_VAL_REAL) {
            if (!isfinite(v->r) || v->r < (double)f->min || v->r > (double)f->max)
                return pd_error_set(err, PD_ERR_INVALID,
                                    "%s.%s: %g is outside %" PRId64 "..%" PRId64, r->entity,
                                    f->name, v->r, f->min, f->max);
            return PD_OK;
        }
        if (v->i < f->min || v->i > f->max)
            return pd_error_set(err, PD_ERR_INVALID,
                                "%s.%s: %" PRId64 " is outside %" PRId64 "..%" PRId64, r->entity,
                                f->name, v->i, f->min, f->max);
        return PD_OK;
    case PD_CK_CODE:
        PREFIXED(pd_validate_code(f->name, v->i, &e_));
    case PD_CK_BITS:
        if (v->i < 0 || (v->i & ~f->max))
            return pd_error_set(err, PD_ERR_INVALID,
                                "%s.%s: %" PRId64 " has bits outside the known set (mask 0x%" PRIx64
                                ")",
                                r->entity, f->name, v->i, (uint64_t)f->max);
        return PD_OK;
    case PD_CK_NIK:
        PREFIXED(pd_validate_nik(text, 0, NULL, w, &e_));
    case PD_CK_KK:
        PREFIXED(pd_validate_kk(text, now_ms, &e_));
    case PD_CK_DATE:
        PREFIXED(pd_validate_date(f->name, text, now_ms, &e_));
    case PD_CK_AREA:
        PREFIXED(pd_validate_area(f->name, text, &e_));
    case PD_CK_ENUM:
        PREFIXED(f->enum_check(text, &e_));
    case PD_CK_HASH:
    case PD_CK_PK:
        if (v->len != 32)
            return pd_error_set(err, PD_ERR_INVALID, "%s.%s: must be 32 bytes, got %zu", r->entity,
                                f->name, v->len);
        return PD_OK;
    }
    return pd_error_set(err, PD_ERR_INTERNAL, "%s.%s: unknown check", r->entity, f->name);
}

/* ---- values ------------------------------------------------------------------------------- */

int pd_value_bind(sqlite3_stmt *stmt, int idx, const pd_value *v)
{
    switch (v->type) {
    case PD_VAL_NULL:
        return sqlite3_bind_null(stmt, idx);
    case PD_VAL_INT:
        return sqlite3_bind_int64(stmt, idx, v->i);
    case PD_VAL_REAL:
        return sqlite3_bind_double(stmt, idx, v->r);
    case PD_VAL_TEXT:
        return sqlite3_bind_text64(stmt, idx, (const char *)v->p, v->len, SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
    case PD_VAL_BLOB:
        return sqlite3_bind_blob64(stmt, idx, v->p, v->len, SQLITE_TRANSIENT);
    }
    return SQLITE_MISUSE;
}

void pd_value_column(sqlite3_stmt *stmt, int col, pd_value *v)
{
    memset(v, 0, sizeof *v);
    switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_INTEGER:
        v->type = PD_VAL_INT;
        v->i = sqlite3_column_int64(stmt, col);
        break;
    case SQLITE_FLOAT:
        v->type = PD_VAL_REAL;
        v->r = sqlite3_column_double(stmt, col);
        break;
    case SQLITE_TEXT:
        v->type = PD_VAL_TEXT;
        v->p = sqlite3_column_text(stmt, col);
        v->len = (size_t)sqlite3_column_bytes(stmt, col);
        break;
    case SQLITE_BLOB:
        v->type = PD_VAL_BLOB;
        v->p = sqlite3_column_blob(stmt, col);
        v->len = (size_t)sqlite3_column_bytes(stmt, col);
        break;
    default:
        v->type = PD_VAL_NULL;
    }
}

bool pd_value_equal(const pd_value *a, const pd_value *b)
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

const char *pd_value_describe(const pd_value *v, char *buf, size_t cap)
{
    switch (v->type) {
    case PD_VAL_NULL:
        snprintf(buf, cap, "NULL");
        break;
    case PD_VAL_INT:
        snprintf(buf, cap, "%" PRId64, v->i);
        break;
    case PD_VAL_REAL:
        snprintf(buf, cap, "%.17g", v->r);
        break;
    case PD_VAL_TEXT:
        snprintf(buf, cap, "'%.*s'", (int)(v->len > 60 ? 60 : v->len), (const char *)v->p);
        break;
    case PD_VAL_BLOB:
        snprintf(buf, cap, "%zu bytes", v->len);
        break;
    }
    return buf;
}

void pd_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

bool pd_json_add_value(cJSON *obj, const char *name, const pd_value *v)
{
    cJSON *item = NULL;
    switch (v->type) {
    case PD_VAL_NULL:
        item = cJSON_CreateNull();
        break;
    case PD_VAL_INT:
        item = cJSON_CreateNumber((double)v->i);
        break;
    case PD_VAL_REAL:
        item = cJSON_CreateNumber(v->r);
        break;
    case PD_VAL_TEXT: {
        char *s = malloc(v->len + 1);
        if (!s)
            return false;
        memcpy(s, v->p, v->len);
        s[v->len] = '\0';
        item = cJSON_CreateString(s);
        free(s);
        break;
    }
    case PD_VAL_BLOB: {
        if (v->len > 4096)
            return false;
        char hex[2 * 4096 + 1];
        pd_hex(v->p, v->len, hex);
        item = cJSON_CreateString(hex);
        break;
    }
    }
    if (!item)
        return false;
    if (!cJSON_AddItemToObject(obj, name, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}

bool pd_json_add_column(cJSON *obj, const char *name, sqlite3_stmt *stmt, int col)
{
    pd_value v;
    pd_value_column(stmt, col, &v);
    return pd_json_add_value(obj, name, &v);
}

static int unhex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* 2^53: integers beyond it do not survive a JSON number. */
#define JSON_INT_MAX 9007199254740992.0

int pd_json_value(const pd_record *r, const pd_field *f, const cJSON *item, pd_value *v,
                  uint8_t *buf, size_t cap, pd_error *err)
{
    memset(v, 0, sizeof *v);
    if (!item || cJSON_IsNull(item)) {
        v->type = PD_VAL_NULL;
        return PD_OK;
    }
    switch (f->type) {
    case PD_FT_INT:
        if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) ||
            fabs(item->valuedouble) > JSON_INT_MAX)
            break;
        v->type = PD_VAL_INT;
        v->i = (int64_t)item->valuedouble;
        return PD_OK;
    case PD_FT_REAL:
        if (!cJSON_IsNumber(item))
            break;
        v->type = PD_VAL_REAL;
        v->r = item->valuedouble;
        return PD_OK;
    case PD_FT_TEXT:
        if (!cJSON_IsString(item) || !item->valuestring)
            break;
        v->type = PD_VAL_TEXT;
        v->p = (const uint8_t *)item->valuestring;
        v->len = strlen(item->valuestring);
        return PD_OK;
    case PD_FT_BLOB: {
        if (!cJSON_IsString(item) || !item->valuestring)
            break;
        size_t n = strlen(item->valuestring);
        if (n % 2 || n / 2 > cap)
            return pd_error_set(err, PD_ERR_INVALID, "%s.%s: hex of at most %zu bytes expected",
                                r->entity, f->name, cap);
        for (size_t i = 0; i < n / 2; i++) {
            int hi = unhex(item->valuestring[2 * i]), lo = unhex(item->valuestring[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return pd_error_set(err, PD_ERR_INVALID, "%s.%s: not hexadecimal", r->entity,
                                    f->name);
            buf[i] = (uint8_t)(hi << 4 | lo);
        }
        v->type = PD_VAL_BLOB;
        v->p = buf;
        v->len = n / 2;
        return PD_OK;
    }
    }
    return pd_error_set(err, PD_ERR_INVALID, "%s.%s: must be %s", r->entity, f->name,
                        type_name(f->type));
}
