/*
 * test_oplog_replay.c — the op log is the truth: over many random sequences of changes (visits,
 * corrections, members born, joining and leaving, proposed households, photos — valid and
 * invalid mixed), replaying the log with pd_oplog_apply onto a fresh import of the same prelist
 * gives exactly the same tables, row for row (households, members, visits, photos, the location
 * index, the search indexes). Along the way: seq is 1, 2, 3, ... with no gap; the clock strictly
 * increases; every op's old value is what the record held (pd_oplog_check); the log is
 * append-only (earlier rows never change; UPDATE and DELETE are refused); and the column tables
 * of fields.c match the schema.
 *
 * PD_REPLAY_SEEDS (default 24) and PD_REPLAY_CHANGES (default 120) size the run.
 */
#include "codes.h"
#include "fields.h"
#include "pd_prelist.h"
#include "store_internal.h"
#include "testutil.h"
#include "visits_fixture.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Stop this test function (after cleanup) if cond fails. */
#define REQUIRE_VOID_OR(cond, cleanup)                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            CHECK(cond);                                                                           \
            cleanup;                                                                               \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define AREA "32.73.01"
#define HOUSEHOLDS 80

static char *root;
static char *package;
static uint8_t issuer_pk[PD_PUBKEY_BYTES];

/* ---- a small deterministic RNG ----------------------------------------------------------------
 */

typedef struct rng {
    uint64_t s;
} rng;

static uint32_t rnd(rng *r)
{
    r->s = r->s * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(r->s >> 33);
}

static uint32_t below(rng *r, uint32_t n)
{
    return n ? rnd(r) % n : 0;
}

static double unit(rng *r)
{
    return (double)rnd(r) / 2147483648.0;
}

/* ---- store helpers ----------------------------------------------------------------------------
 */

static pd_store *fresh_store(const char *name)
{
    char *dir = pd_test_path(root, name);
    pd_store *s = NULL;
    pd_error err = {0};
    if (pd_store_create(&s, dir, "1234", &PD_KDF_TEST, &err) != PD_OK) {
        fprintf(stderr, "store: %s\n", err.msg);
        free(dir);
        return NULL;
    }
    free(dir);
    pd_prelist_import_stats stats = {0};
    if (pd_prelist_import(s, package, issuer_pk, &stats) != PD_OK) {
        fprintf(stderr, "import: %s\n", pd_store_errmsg(s));
        pd_store_close(s);
        return NULL;
    }
    return s;
}

/* A random row's id from a query (no parameters), or "" if none. */
static void pick(sqlite3 *db, rng *r, const char *count_sql, const char *row_sql, char *out,
                 size_t cap)
{
    out[0] = '\0';
    sqlite3_stmt *st = NULL;
    int64_t n = 0;
    if (sqlite3_prepare_v2(db, count_sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (n <= 0)
        return;
    st = NULL;
    if (sqlite3_prepare_v2(db, row_sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, below(r, (uint32_t)n));
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
}

static void pick_household(sqlite3 *db, rng *r, char *out)
{
    pick(db, r, "SELECT COUNT(*) FROM household",
         "SELECT id FROM household ORDER BY id LIMIT 1 OFFSET ?1", out, PD_ID_MAX);
}

static void pick_member(sqlite3 *db, rng *r, bool active, char *out)
{
    if (active)
        pick(db, r, "SELECT COUNT(*) FROM member WHERE status = 'active'",
             "SELECT id FROM member WHERE status = 'active' ORDER BY id LIMIT 1 OFFSET ?1", out,
             PD_ID_MAX);
    else
        pick(db, r, "SELECT COUNT(*) FROM member",
             "SELECT id FROM member ORDER BY id LIMIT 1 OFFSET ?1", out, PD_ID_MAX);
}

static int64_t q_int(sqlite3 *db, const char *sql, const char *arg)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (arg)
            sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static bool q_loc(sqlite3 *db, const char *hh, double *lat, double *lon)
{
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_prepare_v2(db, "SELECT lat, lon FROM household WHERE id = ?1 AND lat IS NOT NULL",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, hh, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            *lat = sqlite3_column_double(st, 0);
            *lon = sqlite3_column_double(st, 1);
            ok = true;
        }
    }
    sqlite3_finalize(st);
    return ok;
}

/* ---- random values ----------------------------------------------------------------------------
 */

static const char *const names[] = {"Siti Aminah",        "Budi Santoso",
                                    "Sri Rahayu",         "Agus Salim",
                                    "Dewi Lestari",       "Putu Ayu",
                                    "José Manurung",      "Ñoman Wayan",
                                    "O'Brien Siregar",    "Robert'); DROP TABLE member;--",
                                    "Nur \"Aini\"",       "Ahmad bin Yusuf",
                                    "Fatimah binti Umar", "Ketut Sari",
                                    "Yohanes Pattinama"};

static void random_date(rng *r, int y0, int y1, char out[32], int *y, int *m, int *d)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    *y = y0 + (int)below(r, (uint32_t)(y1 - y0 + 1));
    *m = 1 + (int)below(r, 12);
    *d = 1 + (int)below(r, (uint32_t)dm[*m - 1]);
    snprintf(out, 32, "%04d-%02d-%02d", *y, *m, *d);
}

/* A NIK for sex and birth date (registered in Sukasari), or an invalid one now and then. */
static void random_nik(rng *r, int sex, int y, int m, int d, bool valid, char out[40])
{
    int dd = d + (sex == 2 ? 40 : 0);
    snprintf(out, 40, "327301%02d%02d%02d%04u", dd, m, y % 100, 1 + below(r, 9000));
    if (!valid)
        out[8 + below(r, 2)] = '9'; /* a month or day that does not exist, mostly */
}

static pd_value text_value(const char *s)
{
    pd_value v = {.type = PD_VAL_TEXT, .p = (const uint8_t *)s, .len = strlen(s)};
    return v;
}

static pd_value int_value(int64_t i)
{
    pd_value v = {.type = PD_VAL_INT, .i = i};
    return v;
}

/* ---- one random change ------------------------------------------------------------------------
 */

typedef struct run {
    pd_store *store;
    sqlite3 *db;
    rng r;
    int64_t clock; /* visits and photos move forward in time */
    unsigned photo_no;
    int ok[8], tried[8];
} run;

static const char *const outcomes[] = {"found",        "found_new_head", "moved_within",
                                       "moved_out",    "joined_other",   "not_found",
                                       "all_deceased", "refused",        "new_household"};
static const char *const member_outcomes[] = {"confirmed", "not_confirmed", "duplicate", "deceased",
                                              "moved"};
static const char *const household_fields[] = {
    "sls",           "address",       "head_name",    "kk",
    "desa",          "tenure",        "floor_area",   "floor_material",
    "wall_material", "roof_material", "rooms",        "water_source",
    "lighting",      "power_va",      "cooking_fuel", "toilet",
    "asset_flags",   "cattle",        "goats",        "pigs",
    "poultry",       "land_m2",       "status",       "no_such_field"};
static const char *const member_fields[] = {
    "name",       "nik",          "kk",         "sex",        "birth_place",
    "birth_date", "relationship", "marital",    "disability", "chronic_illness",
    "schooling",  "work",         "programmes", "outcome",    "member_no"};

static int do_visit(run *x)
{
    char hh[PD_ID_MAX];
    pick_household(x->db, &x->r, hh);
    x->clock += 30000 + below(&x->r, 300000);
    double lat = -6.88, lon = 107.59;
    q_loc(x->db, hh, &lat, &lon);
    pd_gps g = {.lat = lat + (unit(&x->r) - 0.5) * 0.002,
                .lon = lon + (unit(&x->r) - 0.5) * 0.002,
                .accuracy = 3 + below(&x->r, 80),
                .altitude = below(&x->r, 2) ? NAN : 700 + below(&x->r, 50),
                .fix_time = x->clock - below(&x->r, 20000),
                .provider = "fused",
                .mock = below(&x->r, 20) == 0};
    if (below(&x->r, 15) == 0)
        g.lat = 95; /* invalid now and then */
    pd_member_outcome mo[8];
    char ids[8][PD_ID_MAX];
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(x->db, "SELECT id FROM member WHERE household_id = ?1 ORDER BY id LIMIT 8",
                       -1, &st, NULL);
    sqlite3_bind_text(st, 1, hh, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        if (below(&x->r, 2))
            continue;
        snprintf(ids[n], PD_ID_MAX, "%s", sqlite3_column_text(st, 0));
        mo[n].member_id = ids[n];
        mo[n].outcome = member_outcomes[below(&x->r, 5)];
        n++;
    }
    sqlite3_finalize(st);
    pd_visit_in v = {.household_id = hh,
                     .outcome = outcomes[below(&x->r, 9)],
                     .visited_at = x->clock,
                     .gps = below(&x->r, 8) ? &g : NULL,
                     .notes = below(&x->r, 3) ? NULL : names[below(&x->r, PD_ARRAY_LEN(names))],
                     .members = mo,
                     .member_count = n};
    char id[PD_ID_MAX];
    return pd_visit_record(x->store, &v, id, NULL);
}

static int do_household_set(run *x)
{
    char hh[PD_ID_MAX];
    pick_household(x->db, &x->r, hh);
    const char *field = household_fields[below(&x->r, PD_ARRAY_LEN(household_fields))];
    char buf[64];
    pd_value v;
    size_t n = 0;
    const pd_code *codes = pd_codes_of(field, &n);
    if (codes) {
        v = int_value(below(&x->r, 10) ? codes[below(&x->r, (uint32_t)n)].value : 99);
    } else if (!strcmp(field, "sls")) {
        snprintf(buf, sizeof buf, "RT %03u / RW %03u", below(&x->r, 20), below(&x->r, 9));
        v = text_value(buf);
    } else if (!strcmp(field, "address") || !strcmp(field, "head_name")) {
        v = text_value(names[below(&x->r, PD_ARRAY_LEN(names))]);
    } else if (!strcmp(field, "kk")) {
        if (below(&x->r, 4) == 0) {
            v = (pd_value){0};
        } else {
            snprintf(buf, sizeof buf, "327301%02u%02u%02u%04u", 1 + below(&x->r, 28),
                     1 + below(&x->r, 12), below(&x->r, 24), below(&x->r, 9999));
            v = text_value(buf);
        }
    } else if (!strcmp(field, "desa")) {
        snprintf(buf, sizeof buf, "32.73.01.100%u", 1 + below(&x->r, 5));
        v = text_value(buf);
    } else if (!strcmp(field, "asset_flags")) {
        v = int_value(below(&x->r, 0x4000));
    } else if (!strcmp(field, "status")) {
        v = text_value("found");
    } else {
        v = int_value(below(&x->r, 12) == 0 ? -1 : 1 + (int64_t)below(&x->r, 100));
    }
    return pd_household_set(x->store, hh, field, &v, NULL);
}

static int do_member_set(run *x)
{
    char m[PD_ID_MAX];
    pick_member(x->db, &x->r, false, m);
    const char *field = member_fields[below(&x->r, PD_ARRAY_LEN(member_fields))];
    char buf[64];
    pd_value v;
    size_t n = 0;
    const pd_code *codes = pd_codes_of(field, &n);
    int y, mo, d;
    if (codes) {
        v = int_value(below(&x->r, 10) ? codes[below(&x->r, (uint32_t)n)].value : 77);
    } else if (!strcmp(field, "name") || !strcmp(field, "birth_place")) {
        v = text_value(names[below(&x->r, PD_ARRAY_LEN(names))]);
    } else if (!strcmp(field, "birth_date")) {
        random_date(&x->r, 1940, 2020, buf, &y, &mo, &d);
        v = text_value(buf);
    } else if (!strcmp(field, "nik")) {
        int64_t sex = q_int(x->db, "SELECT sex FROM member WHERE id = ?1", m);
        random_date(&x->r, 1940, 2020, buf, &y, &mo, &d);
        char nik[40];
        random_nik(&x->r, (int)sex, y, mo, d, below(&x->r, 6) != 0, nik);
        snprintf(buf, sizeof buf, "%s", nik);
        v = text_value(buf);
    } else if (!strcmp(field, "kk")) {
        snprintf(buf, sizeof buf, "327301%02u%02u15%04u", 1 + below(&x->r, 28),
                 1 + below(&x->r, 12), 1 + below(&x->r, 9000));
        v = text_value(buf);
    } else if (!strcmp(field, "programmes")) {
        v = int_value(below(&x->r, 16));
    } else {
        v = int_value(3);
    }
    return pd_member_set(x->store, m, field, &v, NULL);
}

static int do_member_add(run *x)
{
    char hh[PD_ID_MAX], date[32], nik[40];
    pick_household(x->db, &x->r, hh);
    int y, m, d;
    bool born = below(&x->r, 2);
    random_date(&x->r, born ? 2020 : 1950, born ? 2024 : 2005, date, &y, &m, &d);
    int sex = 1 + (int)below(&x->r, 2);
    random_nik(&x->r, sex, y, m, d, below(&x->r, 8) != 0, nik);
    pd_member_new mn = {.name = names[below(&x->r, PD_ARRAY_LEN(names))],
                        .nik = below(&x->r, 3) ? nik : NULL,
                        .sex = sex,
                        .birth_date = date,
                        .birth_place = "Bandung",
                        .relationship = 3 + (int)below(&x->r, 7),
                        .marital = born ? 1 : 1 + (int)below(&x->r, 4),
                        .reason = born ? "born" : "joined"};
    char id[PD_ID_MAX];
    return pd_member_add(x->store, hh, &mn, id, NULL);
}

static int do_member_end(run *x)
{
    char m[PD_ID_MAX];
    pick_member(x->db, &x->r, below(&x->r, 5) != 0, m);
    static const char *const reasons[] = {"deceased", "moved", "duplicate", "vanished"};
    return pd_member_end(x->store, m, reasons[below(&x->r, 4)]);
}

static int do_propose(run *x)
{
    char desa[16], date[32], nik[40];
    snprintf(desa, sizeof desa, "32.73.01.100%u", 1 + below(&x->r, 5));
    int y, m, d;
    random_date(&x->r, 1950, 2000, date, &y, &m, &d);
    int sex = 1 + (int)below(&x->r, 2);
    random_nik(&x->r, sex, y, m, d, true, nik);
    bool located = below(&x->r, 2);
    pd_household_new h = {.desa = desa,
                          .sls = "RT 001 / RW 001",
                          .address = "Jl. Baru",
                          .lat = located ? -6.88 + unit(&x->r) * 0.01 : NAN,
                          .lon = located ? 107.59 + unit(&x->r) * 0.01 : NAN,
                          .head = {.name = names[below(&x->r, PD_ARRAY_LEN(names))],
                                   .nik = nik,
                                   .sex = sex,
                                   .birth_date = date}};
    char id[PD_ID_MAX];
    return pd_household_propose(x->store, &h, id, NULL);
}

static int do_photo(run *x)
{
    static const char *const kinds[] = {"front", "wall", "floor", "kitchen", "toilet",
                                        "kk",    "ktp",  "head",  "roof"};
    char hh[PD_ID_MAX], visit[PD_ID_MAX];
    visit[0] = '\0';
    pick_household(x->db, &x->r, hh);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(x->db,
                       "SELECT id FROM visit WHERE household_id = ?1 ORDER BY rowid DESC "
                       "LIMIT 1",
                       -1, &st, NULL);
    sqlite3_bind_text(st, 1, hh, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && below(&x->r, 2))
        snprintf(visit, sizeof visit, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    uint8_t jpeg[1024];
    /* now and then the same bytes again (refused: already stored) */
    unsigned variant = below(&x->r, 8) == 0 && x->photo_no ? x->photo_no - 1 : x->photo_no++;
    size_t n = pd_fixture_jpeg(jpeg, 8 + below(&x->r, 40), 8 + below(&x->r, 40),
                               variant + 1000 * (unsigned)x->r.s);
    if (below(&x->r, 10) == 0)
        n -= 2; /* truncated: refused */
    x->clock += 1000;
    return pd_photo_add(x->store, hh, visit[0] ? visit : NULL, kinds[below(&x->r, 9)], jpeg, n,
                        x->clock, NULL);
}

static int random_change(run *x)
{
    static int (*const kinds[])(run *) = {do_visit,         do_visit,      do_visit,
                                          do_household_set, do_member_set, do_member_add,
                                          do_member_end,    do_propose,    do_photo};
    unsigned k = below(&x->r, PD_ARRAY_LEN(kinds));
    int rc = kinds[k](x);
    unsigned slot = k < 3 ? 0 : k - 2;
    x->tried[slot]++;
    if (rc == PD_OK)
        x->ok[slot]++;
    return rc;
}

/* ---- replay -----------------------------------------------------------------------------------
 */

typedef struct replay {
    sqlite3 *src; /* the device that made the ops: where photo bytes come from */
    sqlite3 *dst; /* the fresh import */
    sqlite3_stmt *photo;
    int64_t last_seq, last_hlc, n;
    int bad_order, bad_check, bad_apply;
} replay;

static int fetch_photo(void *ctx, const uint8_t hash[PD_HASH_BYTES], const uint8_t **bytes,
                       size_t *len)
{
    replay *r = ctx;
    if (!r->photo && sqlite3_prepare_v2(r->src, "SELECT bytes FROM photo WHERE hash = ?1", -1,
                                        &r->photo, NULL) != SQLITE_OK)
        return PD_ERR_INTERNAL;
    sqlite3_reset(r->photo);
    sqlite3_bind_blob(r->photo, 1, hash, PD_HASH_BYTES, SQLITE_TRANSIENT);
    if (sqlite3_step(r->photo) != SQLITE_ROW)
        return PD_ERR_NOTFOUND;
    *bytes = sqlite3_column_blob(r->photo, 0);
    *len = (size_t)sqlite3_column_bytes(r->photo, 0);
    return PD_OK;
}

static int replay_one(void *ctx, const pd_op *op)
{
    replay *r = ctx;
    if (op->seq != r->last_seq + 1 || op->hlc <= r->last_hlc)
        r->bad_order++;
    r->last_seq = op->seq;
    r->last_hlc = op->hlc;
    r->n++;
    pd_error err = {0};
    if (pd_oplog_check(r->dst, op, &err) != PD_OK) {
        if (r->bad_check++ < 5)
            fprintf(stderr, "check op %lld %s %s %s %s: %s\n", (long long)op->seq, op->kind,
                    op->entity, op->target, op->field, err.msg);
    }
    if (pd_oplog_apply(r->dst, op, fetch_photo, r, &err) != PD_OK) {
        if (r->bad_apply++ < 5)
            fprintf(stderr, "apply op %lld %s %s %s %s: %s\n", (long long)op->seq, op->kind,
                    op->entity, op->target, op->field, err.msg);
    }
    return 0;
}

static void digest_ops_upto(sqlite3 *db, int64_t seq, uint8_t out[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT * FROM op WHERE seq <= %lld ORDER BY seq", (long long)seq);
    pd_fixture_hash_query(db, sql, &h);
    crypto_generichash_final(&h, out, 32);
}

static bool fts_ok(sqlite3 *db)
{
    return sqlite3_exec(db,
                        "INSERT INTO person_fts (person_fts) VALUES ('integrity-check');"
                        "INSERT INTO address_fts (address_fts) VALUES ('integrity-check');",
                        NULL, NULL, NULL) == SQLITE_OK;
}

static void replay_reproduces_every_table(void)
{
    int seeds = getenv("PD_REPLAY_SEEDS") ? atoi(getenv("PD_REPLAY_SEEDS")) : 24;
    int changes = getenv("PD_REPLAY_CHANGES") ? atoi(getenv("PD_REPLAY_CHANGES")) : 120;
    int total_ok[8] = {0}, total_tried[8] = {0};
    int64_t total_ops = 0;
    for (int seed = 1; seed <= seeds; seed++) {
        char a_name[32], b_name[32];
        snprintf(a_name, sizeof a_name, "a%d", seed);
        snprintf(b_name, sizeof b_name, "b%d", seed);
        pd_store *a = fresh_store(a_name);
        pd_store *b = fresh_store(b_name);
        REQUIRE_VOID_OR(a && b, {
            pd_store_close(a);
            pd_store_close(b);
        });
        run x = {.store = a,
                 .db = pd_store_sqlite(a),
                 .r = {.s = (uint64_t)seed * 0x9E3779B97F4A7C15ULL},
                 .clock = (int64_t)time(NULL) * 1000 - 86400000};
        /* the fresh import and the device start equal */
        uint8_t da[32], db_[32];
        pd_fixture_digest(x.db, 0, da);
        pd_fixture_digest(pd_store_sqlite(b), 0, db_);
        CHECK(memcmp(da, db_, 32) == 0);
        uint8_t mid[32];
        int64_t mid_seq = 0;
        for (int i = 0; i < changes; i++) {
            random_change(&x);
            if (i == changes / 2) {
                mid_seq = q_int(x.db, "SELECT COALESCE(MAX(seq), 0) FROM op", NULL);
                digest_ops_upto(x.db, mid_seq, mid);
            }
        }
        /* append-only: the first half of the log is exactly as it was */
        uint8_t mid2[32];
        digest_ops_upto(x.db, mid_seq, mid2);
        CHECK(memcmp(mid, mid2, 32) == 0);
        CHECK(sqlite3_exec(x.db, "UPDATE op SET field = 'x' WHERE seq = 1", NULL, NULL, NULL) !=
              SQLITE_OK);
        CHECK(sqlite3_exec(x.db, "DELETE FROM op WHERE seq = 1", NULL, NULL, NULL) != SQLITE_OK);
        /* replay onto b in one transaction */
        replay r = {.src = x.db, .dst = pd_store_sqlite(b)};
        CHECK_EQ_INT(sqlite3_exec(r.dst, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        CHECK_EQ_INT(pd_oplog_since(a, 0, replay_one, &r), PD_OK);
        CHECK_EQ_INT(sqlite3_exec(r.dst, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_finalize(r.photo);
        CHECK_EQ_INT(r.bad_order, 0);
        CHECK_EQ_INT(r.bad_check, 0);
        CHECK_EQ_INT(r.bad_apply, 0);
        CHECK_EQ_INT(r.n, q_int(x.db, "SELECT COUNT(*) FROM op", NULL));
        pd_fixture_digest(x.db, 0, da);
        pd_fixture_digest(r.dst, 0, db_);
        if (memcmp(da, db_, 32) != 0) {
            pd_test_failures++;
            fprintf(stderr, "seed %d: replay differs from the device\n", seed);
            for (size_t t = 0; t < PD_ARRAY_LEN(pd_fixture_domain_sql); t++) {
                crypto_generichash_state h1, h2;
                uint8_t o1[32], o2[32];
                crypto_generichash_init(&h1, NULL, 0, 32);
                crypto_generichash_init(&h2, NULL, 0, 32);
                pd_fixture_hash_query(x.db, pd_fixture_domain_sql[t], &h1);
                pd_fixture_hash_query(r.dst, pd_fixture_domain_sql[t], &h2);
                crypto_generichash_final(&h1, o1, 32);
                crypto_generichash_final(&h2, o2, 32);
                if (memcmp(o1, o2, 32))
                    fprintf(stderr, "  differs: %s\n", pd_fixture_domain_sql[t]);
            }
        }
        CHECK(fts_ok(x.db));
        CHECK(fts_ok(r.dst));
        total_ops += r.n;
        for (int k = 0; k < 8; k++)
            total_ok[k] += x.ok[k], total_tried[k] += x.tried[k];
        pd_store_close(a);
        pd_store_close(b);
    }
    /* every kind of change happened, and some were refused */
    const char *what[] = {"visit",      "household set", "member set", "member add",
                          "member end", "propose",       "photo"};
    for (int k = 0; k < 7; k++) {
        fprintf(stderr, "   %-14s %4d of %4d accepted\n", what[k], total_ok[k], total_tried[k]);
        CHECK(total_ok[k] > 0);
    }
    CHECK(total_ok[0] < total_tried[0]);
    fprintf(stderr, "   %lld ops replayed over %d seeds\n", (long long)total_ops, seeds);
}

/* ---- apply refuses what is not an op ------------------------------------------------------------
 */

static void apply_refuses_bad_ops_and_changes_nothing(void)
{
    pd_store *s = fresh_store("bad");
    REQUIRE_VOID_OR(s, {});
    sqlite3 *db = pd_store_sqlite(s);
    char hh[PD_ID_MAX];
    rng r = {.s = 7};
    pick_household(db, &r, hh);
    uint8_t before[32], after[32];
    pd_fixture_digest(db, 1, before);
    struct {
        pd_op op;
        int code;
        const char *fragment;
    } cases[] = {
        {{.kind = "rename", .entity = "household", .target = hh}, PD_ERR_INVALID, "kind 'rename'"},
        {{.kind = "set", .entity = "village", .target = hh}, PD_ERR_INVALID, "unknown entity"},
        {{.kind = "set",
          .entity = "household",
          .target = hh,
          .field = "no_such",
          .new_value = {.type = PD_VAL_INT, .i = 1}},
         PD_ERR_INVALID,
         "not a field an op may set"},
        {{.kind = "set",
          .entity = "household",
          .target = hh,
          .field = "rev",
          .new_value = {.type = PD_VAL_INT, .i = 9}},
         PD_ERR_INVALID,
         "not a field an op may set"},
        {{.kind = "set",
          .entity = "household",
          .target = hh,
          .field = "tenure",
          .new_value = {.type = PD_VAL_INT, .i = 42}},
         PD_ERR_INVALID,
         "household.tenure: 42"},
        {{.kind = "set",
          .entity = "household",
          .target = "nobody",
          .field = "tenure",
          .new_value = {.type = PD_VAL_INT, .i = 1}},
         PD_ERR_NOTFOUND,
         "not found"},
        {{.kind = "set",
          .entity = "member",
          .target = "x",
          .field = "status",
          .new_value = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"moved", .len = 5}},
         PD_ERR_INVALID,
         "only by an 'end' op"},
        {{.kind = "create",
          .entity = "household",
          .target = "N1",
          .new_value = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"{\"sls\":", .len = 7}},
         PD_ERR_INVALID,
         "not a JSON object"},
        {{.kind = "create",
          .entity = "household",
          .target = "N1",
          .new_value = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"{\"evil\":1}", .len = 10}},
         PD_ERR_INVALID,
         "'evil' is not a field"},
        {{.kind = "create",
          .entity = "member",
          .target = "X01",
          .new_value = {.type = PD_VAL_TEXT,
                        .p = (const uint8_t *)"{\"household_id\":\"X\",\"member_no\":1}",
                        .len = 34}},
         PD_ERR_NOTFOUND,
         "household X: not found"},
        {{.kind = "photo",
          .entity = "photo",
          .target = "00",
          .new_value = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"{}", .len = 2}},
         PD_ERR_INVALID,
         "64-hex-digit hash"},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(cases); i++) {
        pd_error err = {0};
        int rc = pd_oplog_apply(db, &cases[i].op, NULL, NULL, &err);
        CHECK_EQ_INT(rc, cases[i].code);
        if (!strstr(err.msg, cases[i].fragment)) {
            pd_test_failures++;
            fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i, err.msg, cases[i].fragment);
        }
    }
    /* a photo op whose bytes do not match its hash */
    uint8_t jpeg[512];
    size_t n = pd_fixture_jpeg(jpeg, 8, 8, 1);
    char json[256];
    snprintf(json, sizeof json,
             "{\"household_id\":\"%s\",\"visit_id\":null,\"kind\":\"front\","
             "\"size\":%zu,\"taken_at\":1735689600000}",
             hh, n);
    pd_op ph = {
        .kind = "photo",
        .entity = "photo",
        .target = "00000000000000000000000000000000000000000000000000000000000000ff",
        .new_value = {.type = PD_VAL_TEXT, .p = (const uint8_t *)json, .len = strlen(json)}};
    pd_error err = {0};
    CHECK_EQ_INT(pd_oplog_apply(db, &ph, NULL, NULL, &err), PD_ERR_NOTFOUND);
    pd_fixture_digest(db, 1, after);
    CHECK(memcmp(before, after, 32) == 0);
    pd_store_close(s);
}

/* ---- the field tables follow the schema ---------------------------------------------------------
 */

static void field_tables_match_the_schema(void)
{
    pd_store *s = fresh_store("schema");
    REQUIRE_VOID_OR(s, {});
    sqlite3 *db = pd_store_sqlite(s);
    const char *tables[] = {"household", "member", "visit", "photo"};
    for (size_t t = 0; t < 4; t++) {
        const pd_record *r = pd_record_of(tables[t]);
        CHECK(r != NULL);
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT name FROM pragma_table_info('%s') ORDER BY cid",
                 tables[t]);
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        size_t i = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *col = (const char *)sqlite3_column_text(st, 0);
            if (!strcmp(col, "hh_rowid"))
                continue;
            CHECK(i < r->count && !strcmp(r->fields[i].name, col));
            i++;
        }
        sqlite3_finalize(st);
        CHECK_EQ_INT(i, r->count);
    }
    pd_store_close(s);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    root = pd_test_tmpdir("replay");
    package = pd_test_path(root, "prelist.pdpl");
    uint8_t sk[PD_SECKEY_BYTES];
    crypto_sign_keypair(issuer_pk, sk);
    pd_prelist_gen_options opt = {.seed = 7, .households = HOUSEHOLDS};
    pd_error err = {0};
    int rc = pd_prelist_generate_file(package, AREA, &opt, sk, NULL, &err);
    sodium_memzero(sk, sizeof sk);
    if (rc != PD_OK)
        fprintf(stderr, "generate: %s\n", err.msg);
    REQUIRE(rc == PD_OK);
    RUN(field_tables_match_the_schema);
    RUN(apply_refuses_bad_ops_and_changes_nothing);
    RUN(replay_reproduces_every_table);
    pd_test_rmtree(root);
    free(package);
    free(root);
    return pd_test_finish();
}
