/*
 * import.c — loading a verified prelist package into a device store, in one transaction.
 *
 * Order of work: the issuer key is settled (pinned in the store, or given and pinned now); the
 * package is opened (signature and hash verified: package.c); then, inside BEGIN IMMEDIATE, the
 * package's area row in prelist_package decides between "already imported" (same identity: a
 * no-op), "not newer" (refused) and a load; records stream from the reader into prepared
 * statements reused for every row. Any failure — a bad record at the end of the payload included
 * — rolls the whole import back: the store is as it was.
 *
 * A record already in the store is updated only when the package's rev is higher than its own.
 * Then each field is taken from the package unless a local change of it is still unsynced: an op
 * row on that record and field (or a whole-record op: create) that is in no batch yet, or in a
 * batch of this device that the server has not acknowledged. Such a field keeps its local value;
 * when the server's differs it is written to server_diff (schema/device/002_server_diff.sql) for
 * sync to resolve. Local-only columns (status, outcome) are never in a package.
 *
 * household_geo follows the household's lat/lon, except where a visit already has a fix (that
 * fix wins, as in core/oplog.c).
 *
 * Speed: new households and members are first staged in TEMP tables (in memory) and moved into
 * the real tables AT_ONCE households at a time by one INSERT … SELECT each. Row by row, every
 * insert would fire the search-index trigger inside its own statement savepoint, and FTS5
 * flushes its pending terms at every savepoint: a segment per row and endless merging (about ten
 * times slower). Staging keeps memory bounded (AT_ONCE households with their members). The
 * members of a new household need no look-up (the foreign key keeps members of unknown
 * households out), and the connection's page cache is raised to IMPORT_CACHE_KIB for the import
 * (restored after) so that pages of the growing indexes are not written out and read back again
 * and again through the encrypting VFS.
 */
#include "prelist_internal.h"
#include "store_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Column i of each SELECT is field i of the record (record.c's table order) for i ≥ 1; column 0
 * is the row's rowid. The staging INSERTs and the UPDATEs bind field i to parameter i + 1. */
static const char hh_select[] =
    "SELECT hh_rowid, rev, prov, kab, kec, desa, sls, address, head_name, kk, member_count, "
    "tenure, floor_area, floor_material, wall_material, roof_material, rooms, water_source, "
    "lighting, power_va, cooking_fuel, toilet, asset_flags, cattle, goats, pigs, poultry, land_m2, "
    "desil, percentile, lat, lon FROM household WHERE id = ?1";
/* staging: the same columns in temp tables, moved over in batches */
#define AT_ONCE 1000
#define IMPORT_CACHE_KIB 10240
static const char stage_create_sql[] =
    "CREATE TEMP TABLE IF NOT EXISTS pd_import_household AS SELECT id, rev, prov, kab, kec, desa, "
    "sls, address, head_name, kk, member_count, tenure, floor_area, floor_material, "
    "wall_material, roof_material, rooms, water_source, lighting, power_va, cooking_fuel, toilet, "
    "asset_flags, cattle, goats, pigs, poultry, land_m2, desil, percentile, lat, lon FROM household "
    "WHERE 0;"
    "CREATE TEMP TABLE IF NOT EXISTS pd_import_member AS SELECT id, household_id, rev, member_no, "
    "name, nik, kk, sex, birth_place, birth_date, relationship, marital, disability, "
    "chronic_illness, schooling, work, programmes FROM member WHERE 0;"
    "DELETE FROM temp.pd_import_household; DELETE FROM temp.pd_import_member;";
static const char stage_drop_sql[] =
    "DROP TABLE IF EXISTS temp.pd_import_household; DROP TABLE IF EXISTS temp.pd_import_member;";
static const char hh_stage[] =
    "INSERT INTO temp.pd_import_household (id, rev, prov, kab, kec, desa, sls, address, "
    "head_name, kk, member_count, tenure, floor_area, floor_material, wall_material, "
    "roof_material, rooms, water_source, lighting, power_va, cooking_fuel, toilet, asset_flags, "
    "cattle, goats, pigs, poultry, land_m2, desil, percentile, lat, lon) VALUES (?1, ?2, ?3, ?4, "
    "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, "
    "?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32)";
static const char hh_flush[] =
    "INSERT INTO household (id, rev, prov, kab, kec, desa, sls, address, head_name, kk, "
    "member_count, tenure, floor_area, floor_material, wall_material, roof_material, rooms, "
    "water_source, lighting, power_va, cooking_fuel, toilet, asset_flags, cattle, goats, pigs, "
    "poultry, land_m2, desil, percentile, lat, lon, source) SELECT id, rev, prov, kab, kec, desa, "
    "sls, address, head_name, kk, member_count, tenure, floor_area, floor_material, "
    "wall_material, roof_material, rooms, water_source, lighting, power_va, cooking_fuel, toilet, "
    "asset_flags, cattle, goats, pigs, poultry, land_m2, desil, percentile, lat, lon, 'prelist' "
    "FROM temp.pd_import_household ORDER BY rowid";
static const char geo_flush[] =
    "INSERT INTO household_geo (hh_rowid, min_lat, max_lat, min_lon, max_lon) SELECT h.hh_rowid, "
    "s.lat, s.lat, s.lon, s.lon FROM temp.pd_import_household s JOIN household h ON h.id = s.id "
    "WHERE s.lat IS NOT NULL AND s.lon IS NOT NULL ORDER BY s.rowid";
static const char m_stage[] =
    "INSERT INTO temp.pd_import_member (id, household_id, rev, member_no, name, nik, kk, sex, "
    "birth_place, birth_date, relationship, marital, disability, chronic_illness, schooling, "
    "work, programmes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
    "?16, ?17)";
static const char m_flush[] =
    "INSERT INTO member (id, household_id, rev, member_no, name, nik, kk, sex, birth_place, "
    "birth_date, relationship, marital, disability, chronic_illness, schooling, work, "
    "programmes) SELECT id, household_id, rev, member_no, name, nik, kk, sex, birth_place, "
    "birth_date, relationship, marital, disability, chronic_illness, schooling, work, "
    "programmes FROM temp.pd_import_member ORDER BY rowid";
static const char stage_clear_hh[] = "DELETE FROM temp.pd_import_household";
static const char stage_clear_m[] = "DELETE FROM temp.pd_import_member";

static const char hh_update[] =
    "UPDATE household SET rev = ?2, prov = ?3, kab = ?4, kec = ?5, desa = ?6, sls = ?7, "
    "address = ?8, head_name = ?9, kk = ?10, member_count = ?11, tenure = ?12, floor_area = ?13, "
    "floor_material = ?14, wall_material = ?15, roof_material = ?16, rooms = ?17, "
    "water_source = ?18, lighting = ?19, power_va = ?20, cooking_fuel = ?21, toilet = ?22, "
    "asset_flags = ?23, cattle = ?24, goats = ?25, pigs = ?26, poultry = ?27, land_m2 = ?28, "
    "desil = ?29, percentile = ?30, lat = ?31, lon = ?32 WHERE id = ?1";
#define HH_NFIELDS 32
#define HH_FIRST_DATA 2 /* id and rev come first */
#define HH_LAT 30
#define HH_LON 31

static const char m_select[] =
    "SELECT rowid, household_id, rev, member_no, name, nik, kk, sex, birth_place, birth_date, "
    "relationship, marital, disability, chronic_illness, schooling, work, programmes FROM member "
    "WHERE id = ?1";
static const char m_update[] =
    "UPDATE member SET household_id = ?2, rev = ?3, member_no = ?4, name = ?5, nik = ?6, kk = ?7, "
    "sex = ?8, birth_place = ?9, birth_date = ?10, relationship = ?11, marital = ?12, "
    "disability = ?13, chronic_illness = ?14, schooling = ?15, work = ?16, programmes = ?17 "
    "WHERE id = ?1";
#define M_NFIELDS 17
#define M_FIRST_DATA 3 /* id, household_id, rev */

/* the fields of a record with a local change the server has not acknowledged */
static const char pending_sql[] =
    "SELECT kind, field FROM op WHERE entity = ?1 AND target = ?2 AND (batch_seq IS NULL OR "
    "NOT EXISTS (SELECT 1 FROM batch b WHERE b.seq = op.batch_seq AND b.state = 'acknowledged' "
    "AND b.author_pk IN (SELECT sign_pk FROM identity)))";
static const char diff_sql[] =
    "INSERT OR REPLACE INTO server_diff (entity, target, field, server_rev, server_value, "
    "local_value, source, recorded_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char fix_sql[] =
    "SELECT 1 FROM visit WHERE household_id = ?1 AND lat IS NOT NULL AND lon IS NOT NULL LIMIT 1";
static const char geo_del_sql[] = "DELETE FROM household_geo WHERE hh_rowid = ?1";
static const char geo_ins_sql[] =
    "INSERT INTO household_geo (hh_rowid, min_lat, max_lat, min_lon, max_lon) "
    "VALUES (?1, ?2, ?2, ?3, ?3)";
static const char shape_sql[] =
    "INSERT OR REPLACE INTO area_shape (code, name, shape) VALUES (?1, ?2, ?3)";
static const char pkg_get_sql[] = "SELECT issued_at, hash FROM prelist_package WHERE area = ?1";
static const char pkg_put_sql[] =
    "INSERT OR REPLACE INTO prelist_package (area, issued_at, issuer_pk, hash, households, "
    "members, imported_at, bbox) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
static const char pin_sql[] =
    "INSERT INTO keyring (pk, role, name, added_at) VALUES (?1, 'server', "
    "'prelist issuer (pinned at first import)', ?2)";

enum {
    S_HH_SEL, S_HH_STAGE, S_HH_UPD, S_M_SEL, S_M_STAGE, S_M_UPD, S_PENDING, S_DIFF, S_FIX,
    S_GEO_DEL, S_GEO_INS, S_SHAPE, S_HH_FLUSH, S_GEO_FLUSH, S_M_FLUSH, S_CLEAR_HH, S_CLEAR_M,
    S__COUNT
};
static const char *const stmt_sql[S__COUNT] = {
    hh_select,   hh_stage,  hh_update, m_select,    m_stage,        m_update,
    pending_sql, diff_sql,  fix_sql,   geo_del_sql, geo_ins_sql,    shape_sql,
    hh_flush,    geo_flush, m_flush,   stage_clear_hh, stage_clear_m,
};

typedef struct ctx {
    pd_store *store;
    sqlite3 *db;
    sqlite3_stmt *st[S__COUNT];
    pd_prelist_import_stats *stats;
    char source[PD_PRELIST_AREA_ID_MAX + 16];
    int64_t now;
    unsigned staged;    /* households waiting in the staging table */
    bool new_household; /* the household being read was not in the store */
    bool have_box;
    double min_lat, min_lon, max_lat, max_lon;
} ctx;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int sql_error(ctx *c, int rc, const char *what, pd_error *err)
{
    return pd_error_sqlite(err, c->db, rc, what);
}

static int bind_value(sqlite3_stmt *st, int idx, const pd_value *v)
{
    switch (v->type) {
    case PD_VAL_INT: return sqlite3_bind_int64(st, idx, v->i);
    case PD_VAL_REAL: return sqlite3_bind_double(st, idx, v->r);
    case PD_VAL_TEXT: return sqlite3_bind_text(st, idx, (const char *)v->p, (int)v->len, SQLITE_STATIC);
    default: return sqlite3_bind_null(st, idx);
    }
}

/* Is the stored column (of the current row of sel) equal to the package's value? */
static bool same(sqlite3_stmt *sel, int col, const pd_value *v)
{
    int t = sqlite3_column_type(sel, col);
    switch (v->type) {
    case PD_VAL_NULL: return t == SQLITE_NULL;
    case PD_VAL_INT: return t == SQLITE_INTEGER && sqlite3_column_int64(sel, col) == v->i;
    case PD_VAL_REAL:
        return (t == SQLITE_FLOAT || t == SQLITE_INTEGER) && sqlite3_column_double(sel, col) == v->r;
    default:
        return t == SQLITE_TEXT && (size_t)sqlite3_column_bytes(sel, col) == v->len &&
               memcmp(sqlite3_column_text(sel, col), v->p, v->len) == 0;
    }
}

/* Bind every field of a record to stmt (field i → parameter i + 1). */
static int bind_all(sqlite3_stmt *st, pd_rec_kind kind, const void *rec, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pd_value v;
        pd_rec_field_get(kind, rec, i, &v);
        int rc = bind_value(st, (int)i + 1, &v);
        if (rc != SQLITE_OK)
            return rc;
    }
    return SQLITE_OK;
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Collect the fields of (entity, id) with an unacknowledged local change into `locked` (one flag
 * per field of the kind); *all when a whole-record op (create) is pending. */
static int pending_fields(ctx *c, const char *entity, const char *id, pd_rec_kind kind,
                          bool *locked, size_t n, bool *all, pd_error *err)
{
    sqlite3_stmt *st = c->st[S_PENDING];
    *all = false;
    memset(locked, 0, n * sizeof *locked);
    sqlite3_bind_text(st, 1, entity, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *kind_s = (const char *)sqlite3_column_text(st, 0);
        const char *field = (const char *)sqlite3_column_text(st, 1);
        if (kind_s && strcmp(kind_s, "set") != 0 && strcmp(kind_s, "end") != 0) {
            *all = true; /* create (or anything that rewrites the record) */
            continue;
        }
        for (size_t i = 0; field && i < n; i++)
            if (!strcmp(field, pd_rec_field_name(kind, i)))
                locked[i] = true;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return sql_error(c, rc, "reading pending changes", err);
    return PD_OK;
}

static int record_diff(ctx *c, const char *entity, const char *id, const char *field,
                       int64_t rev, const pd_value *server, sqlite3_stmt *sel, int col,
                       pd_error *err)
{
    sqlite3_stmt *st = c->st[S_DIFF];
    sqlite3_bind_text(st, 1, entity, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, field, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, rev);
    bind_value(st, 5, server);
    sqlite3_bind_value(st, 6, sqlite3_column_value(sel, col));
    sqlite3_bind_text(st, 7, c->source, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, c->now);
    int rc = step_done(st);
    if (rc != SQLITE_OK)
        return sql_error(c, rc, "recording a server value in server_diff", err);
    c->stats->fields_kept++;
    return PD_OK;
}

/* Update an existing record whose rev rose: bind each field to upd, the package's value unless
 * the field is locked by a local change (then the local value, and a server_diff row when they
 * differ). sel holds the stored row. *geo_changed tells whether lat/lon took new values. */
static int update_fields(ctx *c, pd_rec_kind kind, const char *entity, const void *rec,
                         const char *id, int64_t rev, size_t n, size_t first_data,
                         sqlite3_stmt *sel, sqlite3_stmt *upd, bool *lat_lon_new, pd_error *err)
{
    bool locked[64], all;
    int code = pending_fields(c, entity, id, kind, locked, n, &all, err);
    if (code != PD_OK)
        return code;
    if (lat_lon_new)
        *lat_lon_new = false;
    for (size_t i = 0; i < n; i++) {
        pd_value v;
        pd_rec_field_get(kind, rec, i, &v);
        bool keep = i >= first_data && (all || locked[i]);
        int rc;
        if (keep) {
            if (!same(sel, (int)i, &v)) {
                code = record_diff(c, entity, id, pd_rec_field_name(kind, i), rev, &v, sel,
                                   (int)i, err);
                if (code != PD_OK)
                    return code;
            }
            rc = sqlite3_bind_value(upd, (int)i + 1, sqlite3_column_value(sel, (int)i));
        } else {
            if (lat_lon_new && (i == HH_LAT || i == HH_LON) && !same(sel, (int)i, &v))
                *lat_lon_new = true;
            rc = bind_value(upd, (int)i + 1, &v);
        }
        if (rc != SQLITE_OK)
            return sql_error(c, rc, "binding a value", err);
    }
    int rc = step_done(upd);
    if (rc != SQLITE_OK)
        return sql_error(c, rc, kind == PD_REC_HOUSEHOLD ? "updating a household" : "updating a member",
                         err);
    return PD_OK;
}

/* household_geo of a household that moved: its new point, unless a visit of it has a fix. */
static int move_geo(ctx *c, int64_t rowid, const char *id, double lat, double lon, pd_error *err)
{
    sqlite3_stmt *fx = c->st[S_FIX];
    sqlite3_bind_text(fx, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(fx);
    sqlite3_reset(fx);
    sqlite3_clear_bindings(fx);
    if (rc == SQLITE_ROW)
        return PD_OK;
    if (rc != SQLITE_DONE)
        return sql_error(c, rc, "reading visit fixes", err);
    sqlite3_bind_int64(c->st[S_GEO_DEL], 1, rowid);
    if ((rc = step_done(c->st[S_GEO_DEL])) != SQLITE_OK)
        return sql_error(c, rc, "household_geo", err);
    if (lat != lat) /* NAN: no point */
        return PD_OK;
    sqlite3_stmt *ins = c->st[S_GEO_INS];
    sqlite3_bind_int64(ins, 1, rowid);
    sqlite3_bind_double(ins, 2, lat);
    sqlite3_bind_double(ins, 3, lon);
    if ((rc = step_done(ins)) != SQLITE_OK)
        return sql_error(c, rc, "household_geo", err);
    return PD_OK;
}

/* Move the staged rows into the real tables: households (and their geo rows) first, so that
 * their members find them. */
static int flush(ctx *c, pd_error *err)
{
    static const struct {
        int st;
        const char *what;
    } steps[] = {{S_HH_FLUSH, "adding households"},
                 {S_GEO_FLUSH, "indexing household locations"},
                 {S_M_FLUSH, "adding members"},
                 {S_CLEAR_HH, "clearing the staging tables"},
                 {S_CLEAR_M, "clearing the staging tables"}};
    for (size_t i = 0; i < PD_ARRAY_LEN(steps); i++) {
        int rc = step_done(c->st[steps[i].st]);
        if (rc != SQLITE_OK)
            return sql_error(c, rc, steps[i].what, err);
    }
    c->staged = 0;
    return PD_OK;
}

static int on_shape(void *ud, const pd_prelist_shape *s, pd_error *err)
{
    ctx *c = ud;
    sqlite3_stmt *st = c->st[S_SHAPE];
    sqlite3_bind_text(st, 1, s->code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, s->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, s->shape, -1, SQLITE_STATIC);
    int rc = step_done(st);
    if (rc != SQLITE_OK)
        return sql_error(c, rc, "storing an area shape", err);
    c->stats->shapes++;
    return PD_OK;
}

static int on_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    ctx *c = ud;
    if (h->lat == h->lat) {
        if (!c->have_box || h->lat < c->min_lat)
            c->min_lat = h->lat;
        if (!c->have_box || h->lat > c->max_lat)
            c->max_lat = h->lat;
        if (!c->have_box || h->lon < c->min_lon)
            c->min_lon = h->lon;
        if (!c->have_box || h->lon > c->max_lon)
            c->max_lon = h->lon;
        c->have_box = true;
    }
    int code;
    if (c->staged >= AT_ONCE && (code = flush(c, err)) != PD_OK)
        return code;
    sqlite3_stmt *sel = c->st[S_HH_SEL];
    sqlite3_bind_text(sel, 1, h->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(sel);
    code = PD_OK;
    if (rc == SQLITE_DONE) {
        sqlite3_reset(sel);
        sqlite3_stmt *ins = c->st[S_HH_STAGE];
        if ((rc = bind_all(ins, PD_REC_HOUSEHOLD, h, HH_NFIELDS)) != SQLITE_OK ||
            (rc = step_done(ins)) != SQLITE_OK) {
            sqlite3_reset(ins);
            sqlite3_clear_bindings(ins);
            return sql_error(c, rc, "staging a household", err);
        }
        c->staged++;
        c->stats->households_added++;
        c->new_household = true;
        return PD_OK;
    }
    c->new_household = false;
    if (rc != SQLITE_ROW) {
        sqlite3_reset(sel);
        return sql_error(c, rc, "reading a household", err);
    }
    int64_t rowid = sqlite3_column_int64(sel, 0), rev = sqlite3_column_int64(sel, 1);
    if (h->rev <= rev) {
        c->stats->households_unchanged++;
    } else {
        bool moved = false;
        code = update_fields(c, PD_REC_HOUSEHOLD, "household", h, h->id, h->rev, HH_NFIELDS,
                             HH_FIRST_DATA, sel, c->st[S_HH_UPD], &moved, err);
        if (code == PD_OK) {
            c->stats->households_updated++;
            if (moved)
                code = move_geo(c, rowid, h->id, h->lat, h->lon, err);
        }
    }
    sqlite3_reset(sel);
    sqlite3_clear_bindings(sel);
    return code;
}

static int stage_member(ctx *c, const pd_prelist_member *m, pd_error *err)
{
    sqlite3_stmt *ins = c->st[S_M_STAGE];
    int rc = bind_all(ins, PD_REC_MEMBER, m, M_NFIELDS);
    if (rc == SQLITE_OK)
        rc = step_done(ins);
    if (rc != SQLITE_OK) {
        sqlite3_reset(ins);
        sqlite3_clear_bindings(ins);
        return sql_error(c, rc, "staging a member", err);
    }
    c->stats->members_added++;
    return PD_OK;
}

static int on_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    ctx *c = ud;
    if (c->new_household) /* its household was not in the store: neither is it */
        return stage_member(c, m, err);
    sqlite3_stmt *sel = c->st[S_M_SEL];
    sqlite3_bind_text(sel, 1, m->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(sel), code = PD_OK;
    if (rc == SQLITE_DONE) {
        sqlite3_reset(sel);
        return stage_member(c, m, err);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(sel);
        return sql_error(c, rc, "reading a member", err);
    }
    if (m->rev <= sqlite3_column_int64(sel, 2)) {
        c->stats->members_unchanged++;
    } else {
        code = update_fields(c, PD_REC_MEMBER, "member", m, m->id, m->rev, M_NFIELDS,
                             M_FIRST_DATA, sel, c->st[S_M_UPD], NULL, err);
        if (code == PD_OK)
            c->stats->members_updated++;
    }
    sqlite3_reset(sel);
    sqlite3_clear_bindings(sel);
    return code;
}

/* The connection's cache_size setting (as PRAGMA cache_size reports it), and setting it. The
 * pragma takes no parameters: only an integer is ever formatted into it. */
static int64_t cache_size_get(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t v = 0;
    if (sqlite3_prepare_v2(db, "PRAGMA cache_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void cache_size_set(sqlite3 *db, int64_t v)
{
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA cache_size = %lld", (long long)v);
    sqlite3_exec(db, sql, NULL, NULL, NULL);
}

int pd_prelist_pinned_issuer(pd_store *store, uint8_t pk[PD_PUBKEY_BYTES])
{
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int code = PD_ERR_NOTFOUND;
    /* enrolment pins the server key in settings (and keyring); a first import in the keyring */
    int rc = sqlite3_prepare_v2(db, "SELECT value FROM settings WHERE key = 'server_sign_pk'", -1,
                                &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "reading the pinned server key");
    if ((rc = sqlite3_step(st)) == SQLITE_ROW && sqlite3_column_type(st, 0) == SQLITE_BLOB &&
        sqlite3_column_bytes(st, 0) == PD_PUBKEY_BYTES) {
        memcpy(pk, sqlite3_column_blob(st, 0), PD_PUBKEY_BYTES);
        code = PD_OK;
    } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        code = pd_store_fail_sqlite(store, rc, "reading the pinned server key");
    }
    sqlite3_finalize(st);
    if (code != PD_ERR_NOTFOUND)
        return code;
    rc = sqlite3_prepare_v2(db, "SELECT pk FROM keyring WHERE role = 'server' ORDER BY added_at, pk",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "reading the keyring");
    int rows = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (rows++ == 0 && sqlite3_column_bytes(st, 0) == PD_PUBKEY_BYTES) {
            memcpy(pk, sqlite3_column_blob(st, 0), PD_PUBKEY_BYTES);
            code = PD_OK;
        }
    }
    if (rc != SQLITE_DONE)
        code = pd_store_fail_sqlite(store, rc, "reading the keyring");
    else if (rows > 1)
        code = pd_store_fail(store, PD_ERR_STATE,
                             "the keyring holds %d server keys and no settings server_sign_pk: "
                             "cannot tell which one issues prelists",
                             rows);
    else if (code == PD_ERR_NOTFOUND)
        pd_store_fail(store, PD_ERR_NOTFOUND, "no issuer (server) key is pinned in this store");
    sqlite3_finalize(st);
    return code;
}

/* The stored package row of an area: found (1), absent (0) or an error (< 0, set on err). */
static int package_row(ctx *c, const char *area, int64_t *issued_at, uint8_t hash[PD_HASH_BYTES],
                       pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, pkg_get_sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        sql_error(c, rc, "reading prelist_package", err);
        return -1;
    }
    sqlite3_bind_text(st, 1, area, -1, SQLITE_STATIC);
    int found = 0;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        found = 1;
        *issued_at = sqlite3_column_int64(st, 0);
        memset(hash, 0, PD_HASH_BYTES);
        if (sqlite3_column_bytes(st, 1) == PD_HASH_BYTES)
            memcpy(hash, sqlite3_column_blob(st, 1), PD_HASH_BYTES);
    } else if (rc != SQLITE_DONE) {
        sql_error(c, rc, "reading prelist_package", err);
        found = -1;
    }
    sqlite3_finalize(st);
    return found;
}

static int finish_package(ctx *c, const pd_prelist_info *info, bool pin, pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, pkg_put_sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_error(c, rc, "recording the package", err);
    char bbox[128] = "";
    if (c->have_box)
        snprintf(bbox, sizeof bbox, "%.6f,%.6f,%.6f,%.6f", c->min_lat, c->min_lon, c->max_lat,
                 c->max_lon);
    sqlite3_bind_text(st, 1, info->area, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, info->issued_at);
    sqlite3_bind_blob(st, 3, info->issuer_pk, PD_PUBKEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, info->id, PD_HASH_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, info->households);
    sqlite3_bind_int64(st, 6, info->members);
    sqlite3_bind_int64(st, 7, c->now);
    if (c->have_box)
        sqlite3_bind_text(st, 8, bbox, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 8);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_error(c, rc, "recording the package", err);
    if (!pin)
        return PD_OK;
    rc = sqlite3_prepare_v2(c->db, pin_sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return sql_error(c, rc, "pinning the issuer key", err);
    sqlite3_bind_blob(st, 1, info->issuer_pk, PD_PUBKEY_BYTES, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, c->now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_error(c, rc, "pinning the issuer key", err);
    c->stats->pinned = true;
    return PD_OK;
}

/* The import proper, of the package file `path`, or (path NULL) of the len bytes at buf. */
static int import_package(pd_store *store, const char *path, const uint8_t *buf, size_t len,
                          const uint8_t issuer_pk[PD_PUBKEY_BYTES],
                          pd_prelist_import_stats *stats)
{
    pd_prelist_import_stats dummy;
    if (!stats)
        stats = &dummy;
    memset(stats, 0, sizeof *stats);
    if (!store || (!path && !buf))
        return pd_store_fail(store, PD_ERR_INVALID, "prelist import: no store or no package");
    const char *name = path ? path : "prelist package (in memory)";

    uint8_t pinned[PD_PUBKEY_BYTES];
    int code = pd_prelist_pinned_issuer(store, pinned);
    bool have_pin = code == PD_OK;
    if (code != PD_OK && code != PD_ERR_NOTFOUND)
        return code;
    if (!have_pin && !issuer_pk)
        return pd_store_fail(store, PD_ERR_NOTFOUND,
                             "%s: no issuer key is pinned in this store: give the issuer's public "
                             "key (it is pinned by this first import)",
                             name);
    if (have_pin && issuer_pk && sodium_memcmp(pinned, issuer_pk, PD_PUBKEY_BYTES) != 0) {
        char a[17], b[17];
        pd_prelist_fingerprint(issuer_pk, a);
        pd_prelist_fingerprint(pinned, b);
        return pd_store_fail(store, PD_ERR_DENIED,
                             "%s: issuer key %s… is not the key pinned in this store (%s…)", name,
                             a, b);
    }
    const uint8_t *key = have_pin ? pinned : issuer_pk;

    pd_error err = {0};
    pd_prelist_reader *r = NULL;
    ctx c = {.store = store, .db = pd_store_sqlite(store), .stats = stats, .now = now_ms()};
    bool in_tx = false, staging = false;
    int64_t old_cache = 0;
    bool cache_raised = false;
    code = path ? pd_prelist_reader_open(&r, path, key, &err)
                : pd_prelist_reader_open_mem(&r, buf, len, key, &err);
    if (code != PD_OK)
        goto out;
    const pd_prelist_info *info = pd_prelist_reader_info(r);
    snprintf(c.source, sizeof c.source, "prelist:%s", info->area);

    code = pd_store_begin(store);
    if (code != PD_OK)
        goto out_store; /* the message is on the store already */
    in_tx = true;
    int64_t old_issued = 0;
    uint8_t old_hash[PD_HASH_BYTES];
    int found = package_row(&c, info->area, &old_issued, old_hash, &err);
    if (found < 0) {
        code = err.code;
        goto out;
    }
    if (found && sodium_memcmp(old_hash, info->id, PD_HASH_BYTES) == 0) {
        stats->already = true;
        code = PD_OK;
        goto out; /* nothing to do: the transaction is rolled back, having changed nothing */
    }
    if (found && old_issued >= info->issued_at) {
        code = pd_error_set(&err, PD_ERR_STATE,
                            "%s: this store holds a package for area %s issued at %lld; this one "
                            "(issued at %lld) is not newer",
                            name, info->area, (long long)old_issued, (long long)info->issued_at);
        goto out;
    }
    old_cache = cache_size_get(c.db);
    if (old_cache > -IMPORT_CACHE_KIB && old_cache < IMPORT_CACHE_KIB / 4) { /* KiB or pages */
        cache_size_set(c.db, -IMPORT_CACHE_KIB);
        cache_raised = true;
    }
    staging = true;
    int xrc = sqlite3_exec(c.db, stage_create_sql, NULL, NULL, NULL);
    if (xrc != SQLITE_OK) {
        code = sql_error(&c, xrc, "making the staging tables", &err);
        goto out;
    }
    for (int i = 0; i < S__COUNT; i++) {
        int rc = sqlite3_prepare_v3(c.db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c.st[i],
                                    NULL);
        if (rc != SQLITE_OK) {
            code = sql_error(&c, rc, "preparing the import", &err);
            goto out;
        }
    }
    if (sqlite3_column_count(c.st[S_HH_SEL]) != HH_NFIELDS ||
        pd_rec_nfields(PD_REC_HOUSEHOLD) != HH_NFIELDS ||
        sqlite3_column_count(c.st[S_M_SEL]) != M_NFIELDS ||
        pd_rec_nfields(PD_REC_MEMBER) != M_NFIELDS) {
        code = pd_error_set(&err, PD_ERR_INTERNAL, "import statements out of step with record.c");
        goto out;
    }
    pd_prelist_handler h = {on_shape, on_household, on_member, &c};
    code = pd_prelist_reader_run(r, &h, &err);
    if (code == PD_OK)
        code = flush(&c, &err);
    if (code == PD_OK)
        code = finish_package(&c, info, !have_pin, &err);
    if (code == PD_OK) {
        for (int i = 0; i < S__COUNT; i++) {
            sqlite3_finalize(c.st[i]);
            c.st[i] = NULL;
        }
        in_tx = false;
        code = pd_store_commit(store);
        if (code != PD_OK)
            goto out_store;
    }
out:
    if (code != PD_OK)
        pd_store_fail(store, code, "%s", err.msg[0] ? err.msg : pd_strerror(code));
out_store:
    for (int i = 0; i < S__COUNT; i++)
        sqlite3_finalize(c.st[i]);
    if (in_tx)
        pd_store_rollback(store);
    if (staging) { /* temp tables live in memory, not in the store: dropped whatever happened */
        sqlite3_exec(c.db, stage_drop_sql, NULL, NULL, NULL);
        if (cache_raised)
            cache_size_set(c.db, old_cache);
    }
    pd_prelist_reader_free(r);
    if (code != PD_OK) {
        bool already = stats->already;
        memset(stats, 0, sizeof *stats);
        stats->already = already;
    }
    return code;
}

int pd_prelist_import(pd_store *store, const char *path, const uint8_t issuer_pk[PD_PUBKEY_BYTES],
                      pd_prelist_import_stats *stats)
{
    if (!path)
        return pd_store_fail(store, PD_ERR_INVALID, "prelist import: no path");
    return import_package(store, path, NULL, 0, issuer_pk, stats);
}

int pd_prelist_import_mem(pd_store *store, const uint8_t *buf, size_t len,
                          const uint8_t issuer_pk[PD_PUBKEY_BYTES], pd_prelist_import_stats *stats)
{
    if (!buf)
        return pd_store_fail(store, PD_ERR_INVALID, "prelist import: no package bytes");
    return import_package(store, NULL, buf, len, issuer_pk, stats);
}
