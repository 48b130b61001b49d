/*
 * test_visits.c — households, members, visits, photos and search, end to end on a generated
 * kecamatan imported into a real encrypted store:
 *   - 500 visits covering every outcome, with member outcomes; the household's status, location
 *     (household_geo) and the op log follow;
 *   - members born, joined, ended and corrected (the head's name follows into head_name);
 *   - households proposed in the field, with ids no other device can make;
 *   - photos of every kind (a tiny valid JPEG made here), content-addressed;
 *   - search: accent-insensitive names ("síti" finds Siti), NIK, KK, address, desa, status, and
 *     nearest-to-a-point against a brute-force great-circle sort;
 *   - warnings recorded with the visit (outside the area, poor accuracy, jump, duplicate NIK,
 *     mock location);
 *   - bad input (invalid NIK, GPS out of range, non-JPEG photo, unknown field, ...) gives a clear
 *     error and leaves every table byte-for-byte as it was; SQL in a name is stored verbatim.
 */
#include "codes.h"
#include "pd_prelist.h"
#include "store_internal.h"
#include "testutil.h"
#include "visits_fixture.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Like REQUIRE, in a test function that returns nothing. */
#define REQUIRE_V(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            CHECK(cond);                                                                           \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define AREA "32.73.01" /* Sukasari, Kota Bandung */
#define HOUSEHOLDS 600
#define VISITS 500

static char *home;
static pd_store *store;
static sqlite3 *db;
static int64_t t0; /* visits are spread from here, two minutes apart */

/* ---- helpers -------------------------------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t q_int(const char *sql, const char *arg)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (arg)
            sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    } else {
        fprintf(stderr, "q_int: %s: %s\n", sql, sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return v;
}

/* First column of the first row as a string (static buffer per call site is the caller's). */
static int q_text(const char *sql, const char *arg, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    int ok = 0;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (arg)
            sqlite3_bind_text(st, 1, arg, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
            snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
            ok = 1;
        }
    }
    sqlite3_finalize(st);
    return ok;
}

static void digest(uint8_t out[32])
{
    if (pd_fixture_digest(db, 1, out) != 0)
        memset(out, 0xEE, 32);
}

/* Assert that a call failed with `code`, a message containing `fragment`, and no change at all. */
#define REFUSED(call, code, fragment)                                                              \
    do {                                                                                           \
        uint8_t before_[32], after_[32];                                                           \
        digest(before_);                                                                           \
        int rc_ = (call);                                                                          \
        digest(after_);                                                                            \
        CHECK_EQ_INT(rc_, code);                                                                   \
        if (!strstr(pd_store_errmsg(store), fragment)) {                                           \
            pd_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__,            \
                    pd_store_errmsg(store), fragment);                                             \
        }                                                                                          \
        CHECK(memcmp(before_, after_, 32) == 0);                                                   \
    } while (0)

static pd_gps fix(double lat, double lon, double acc, int64_t t)
{
    pd_gps g = {
        .lat = lat, .lon = lon, .accuracy = acc, .altitude = NAN, .fix_time = t, .provider = "gps"};
    return g;
}

/* Household ids in id order, from the prelist. */
static char (*hh_ids)[PD_ID_MAX];
static double *hh_lat, *hh_lon;
static size_t hh_count;

static void load_households(void)
{
    sqlite3_stmt *st = NULL;
    hh_ids = calloc(HOUSEHOLDS + 10, sizeof *hh_ids);
    hh_lat = calloc(HOUSEHOLDS + 10, sizeof *hh_lat);
    hh_lon = calloc(HOUSEHOLDS + 10, sizeof *hh_lon);
    sqlite3_prepare_v2(db,
                       "SELECT id, lat, lon FROM household WHERE source = 'prelist' ORDER BY id",
                       -1, &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW && hh_count < HOUSEHOLDS + 10) {
        snprintf(hh_ids[hh_count], PD_ID_MAX, "%s", sqlite3_column_text(st, 0));
        hh_lat[hh_count] = sqlite3_column_double(st, 1);
        hh_lon[hh_count] = sqlite3_column_double(st, 2);
        hh_count++;
    }
    sqlite3_finalize(st);
}

/* ---- setup ---------------------------------------------------------------------------------- */

static int setup(void)
{
    home = pd_test_tmpdir("visits");
    char *pkg = pd_test_path(home, "prelist.pdpl");
    char *dir = pd_test_path(home, "store");
    uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];
    crypto_sign_keypair(pk, sk);
    pd_prelist_gen_options opt = {.seed = 42, .households = HOUSEHOLDS};
    pd_error err = {0};
    int rc = pd_prelist_generate_file(pkg, AREA, &opt, sk, NULL, &err);
    if (rc != PD_OK)
        fprintf(stderr, "generate: %s\n", err.msg);
    if (rc == PD_OK && (rc = pd_store_create(&store, dir, "1234", &PD_KDF_TEST, &err)) != PD_OK)
        fprintf(stderr, "store: %s\n", err.msg);
    pd_prelist_import_stats stats = {0};
    if (rc == PD_OK && (rc = pd_prelist_import(store, pkg, pk, &stats)) != PD_OK)
        fprintf(stderr, "import: %s\n", pd_store_errmsg(store));
    sodium_memzero(sk, sizeof sk);
    free(pkg);
    free(dir);
    if (rc != PD_OK)
        return rc;
    db = pd_store_sqlite(store);
    t0 = now_ms() - (int64_t)(VISITS + 100) * 120000;
    load_households();
    return hh_count == HOUSEHOLDS ? PD_OK : PD_ERR_INTERNAL;
}

/* ---- households proposed in the field ---------------------------------------------------------
 */

#define PROPOSALS 20
static char proposed[PROPOSALS][PD_ID_MAX];

static void proposals_get_ids_no_device_can_repeat(void)
{
    char desa[16];
    REQUIRE_V(q_text("SELECT desa FROM household ORDER BY id LIMIT 1", NULL, desa, sizeof desa));
    const char *dev = pd_store_device_id(store);
    for (int i = 0; i < PROPOSALS; i++) {
        char name[64], nik[17];
        snprintf(name, sizeof name, "Kepala Baru %d", i);
        /* a man born 05-08-1990 registered in Sukasari, serial 9000 + i */
        snprintf(nik, sizeof nik, "3273010508909%03d", i + 1);
        pd_household_new h = {
            .desa = desa,
            .sls = "RT 009 / RW 001",
            .address = "Jl. Usulan Baru No. 1",
            .lat = hh_lat[i] + 0.0001,
            .lon = hh_lon[i] + 0.0001,
            .head = {.name = name, .nik = nik, .sex = 1, .birth_date = "1990-08-05", .marital = 2}};
        pd_warnings w = {0};
        int rc = pd_household_propose(store, &h, proposed[i], &w);
        CHECK_EQ_INT(rc, PD_OK);
        if (rc != PD_OK) {
            fprintf(stderr, "propose: %s\n", pd_store_errmsg(store));
            return;
        }
        CHECK(proposed[i][0] == 'N' && strncmp(proposed[i] + 1, dev, strlen(dev)) == 0);
        CHECK_EQ_INT(w.count, 0);
    }
    for (int i = 1; i < PROPOSALS; i++)
        CHECK(strcmp(proposed[i], proposed[i - 1]) != 0);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM household WHERE source = 'new'", NULL), PROPOSALS);
    char mid[PD_ID_MAX + 4];
    snprintf(mid, sizeof mid, "%s01", proposed[0]);
    CHECK_EQ_INT(q_int("SELECT relationship FROM member WHERE id = ?1", mid), 1);
    CHECK_EQ_INT(q_int("SELECT member_count FROM household WHERE id = ?1", proposed[0]), 1);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM household_geo g JOIN household h ON "
                       "h.hh_rowid = g.hh_rowid WHERE h.id = ?1",
                       proposed[0]),
                 1);
    char head[64];
    q_text("SELECT head_name FROM household WHERE id = ?1", proposed[3], head, sizeof head);
    CHECK(strcmp(head, "Kepala Baru 3") == 0);

    /* outside the kecamatan's prelists: not this device's area */
    pd_household_new far = {
        .desa = "11.01.01.2001", .lat = NAN, .lon = NAN, .head = {.name = "Jauh"}};
    char id[PD_ID_MAX];
    REFUSED(pd_household_propose(store, &far, id, NULL), PD_ERR_DENIED,
            "not in this device's assignment");
    pd_household_new nodesa = {
        .desa = "32.73.01.9999", .lat = NAN, .lon = NAN, .head = {.name = "X"}};
    REFUSED(pd_household_propose(store, &nodesa, id, NULL), PD_ERR_INVALID, "not a real area code");
    pd_household_new nohead = {.desa = desa, .lat = NAN, .lon = NAN};
    REFUSED(pd_household_propose(store, &nohead, id, NULL), PD_ERR_INVALID, "member.name: missing");
}

/* ---- visits --------------------------------------------------------------------------------- */

static const char *const outcomes[] = {"found",        "found_new_head", "moved_within",
                                       "moved_out",    "joined_other",   "not_found",
                                       "all_deceased", "refused",        "new_household"};

static void five_hundred_visits_cover_every_outcome(void)
{
    int64_t ops_before = q_int("SELECT COUNT(*) FROM op", NULL);
    int counts[9] = {0};
    int member_outcomes = 0, ended = 0;
    for (int i = 0; i < VISITS; i++) {
        int o = i % 9;
        const char *hh;
        double lat, lon;
        if (o == 8) { /* new_household: a proposed one */
            hh = proposed[(i / 9) % PROPOSALS];
            lat = hh_lat[(i / 9) % PROPOSALS] + 0.0001;
            lon = hh_lon[(i / 9) % PROPOSALS] + 0.0001;
        } else {
            hh = hh_ids[i % hh_count];
            lat = hh_lat[i % hh_count] + 0.00003 * (i % 5);
            lon = hh_lon[i % hh_count] - 0.00002 * (i % 3);
        }
        int64_t at = t0 + (int64_t)i * 120000;
        pd_gps g = fix(lat, lon, 4.0 + i % 20, at - 5000);
        /* members: confirm all on "found"; on "all_deceased" every active member died */
        pd_member_outcome mo[16];
        char ids[16][PD_ID_MAX];
        size_t nm = 0;
        if (o == 0 || o == 6) {
            sqlite3_stmt *st = NULL;
            sqlite3_prepare_v2(db,
                               "SELECT id FROM member WHERE household_id = ?1 AND status = "
                               "'active' ORDER BY id LIMIT 16",
                               -1, &st, NULL);
            sqlite3_bind_text(st, 1, hh, -1, SQLITE_STATIC);
            while (sqlite3_step(st) == SQLITE_ROW) {
                snprintf(ids[nm], PD_ID_MAX, "%s", sqlite3_column_text(st, 0));
                mo[nm].member_id = ids[nm];
                mo[nm].outcome = o == 6                    ? "deceased"
                                 : (nm == 1 && i % 4 == 0) ? "not_confirmed"
                                                           : "confirmed";
                nm++;
            }
            sqlite3_finalize(st);
        }
        pd_visit_in v = {.household_id = hh,
                         .outcome = outcomes[o],
                         .visited_at = at,
                         .gps = &g,
                         .notes = (i % 7 == 0) ? "Rumah di ujung gang,\nsebelah masjid." : NULL,
                         .members = mo,
                         .member_count = nm};
        char id[PD_ID_MAX];
        pd_warnings w = {0};
        int rc = pd_visit_record(store, &v, id, &w);
        CHECK_EQ_INT(rc, PD_OK);
        if (rc != PD_OK) {
            fprintf(stderr, "visit %d (%s %s): %s\n", i, hh, outcomes[o], pd_store_errmsg(store));
            return;
        }
        counts[o]++;
        member_outcomes += (int)nm;
        if (o == 6)
            ended += (int)nm;
        /* the household's status is the latest outcome; its location the fix */
        char status[32];
        q_text("SELECT status FROM household WHERE id = ?1", hh, status, sizeof status);
        CHECK(strcmp(status, outcomes[o]) == 0);
        if (i % 50 == 0) {
            sqlite3_stmt *st = NULL;
            sqlite3_prepare_v2(db,
                               "SELECT g.min_lat, g.max_lat, g.min_lon, g.max_lon FROM "
                               "household_geo g JOIN household h ON h.hh_rowid = g.hh_rowid "
                               "WHERE h.id = ?1",
                               -1, &st, NULL);
            sqlite3_bind_text(st, 1, hh, -1, SQLITE_STATIC);
            CHECK(sqlite3_step(st) == SQLITE_ROW);
            CHECK(fabs(sqlite3_column_double(st, 0) - lat) < 3e-5); /* float32 boxes */
            if (fabs(sqlite3_column_double(st, 2) - lon) >= 3e-5)
                fprintf(stderr, "geo %s: %.9f %.9f vs %.9f\n", hh, sqlite3_column_double(st, 2),
                        sqlite3_column_double(st, 3), lon);
            CHECK(fabs(sqlite3_column_double(st, 2) - lon) < 3e-5);
            sqlite3_finalize(st);
        }
    }
    for (int o = 0; o < 9; o++)
        CHECK(counts[o] > 0);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM visit", NULL), VISITS);
    CHECK_EQ_INT(q_int("SELECT COUNT(DISTINCT outcome) FROM visit", NULL), 9);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM op WHERE kind = 'visit'", NULL), VISITS);
    CHECK(q_int("SELECT COUNT(*) FROM op", NULL) - ops_before >= VISITS + member_outcomes / 2);
    CHECK(q_int("SELECT COUNT(*) FROM member WHERE status = 'deceased'", NULL) >= ended);
    CHECK(ended > 0);
    CHECK(q_int("SELECT COUNT(*) FROM member WHERE outcome = 'confirmed'", NULL) > 0);
    CHECK(q_int("SELECT COUNT(*) FROM member WHERE outcome = 'not_confirmed'", NULL) > 0);
    /* member_count follows the active members */
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM household h WHERE member_count <> (SELECT COUNT(*) "
                       "FROM member m WHERE m.household_id = h.id AND m.status = 'active')",
                       NULL),
                 0);
    /* every visit op carries the household's revision; ops are in strict seq and clock order */
    CHECK_EQ_INT(
        q_int("SELECT COUNT(*) FROM op a JOIN op b ON b.seq = a.seq + 1 WHERE b.hlc <= a.hlc",
              NULL),
        0);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM op o JOIN household h ON h.id = "
                       "json_extract(o.new_value, '$.household_id') WHERE o.kind = 'visit' AND "
                       "o.base_rev <> h.rev",
                       NULL),
                 0);
    char visit_id[PD_ID_MAX];
    q_text("SELECT id FROM visit ORDER BY rowid LIMIT 1", NULL, visit_id, sizeof visit_id);
    CHECK(visit_id[0] == 'V' && strstr(visit_id, pd_store_device_id(store)) == visit_id + 1);
}

static void visits_refuse_bad_input_and_change_nothing(void)
{
    const char *hh = hh_ids[7];
    int64_t at = t0 + (int64_t)(VISITS + 10) * 120000;
    pd_gps g = fix(91.0, 107.6, 5, at);
    pd_visit_in v = {.household_id = hh, .outcome = "found", .visited_at = at, .gps = &g};
    char id[PD_ID_MAX];
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID,
            "gps.lat: 91.000000 is outside -90..90");
    g = fix(-6.88, 181.0, 5, at);
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "gps.lon");
    g = fix(NAN, 107.6, 5, at);
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "gps.lat: not a finite number");
    g = fix(-6.88, 107.6, 0, at);
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "gps.accuracy");
    g = fix(-6.88, 107.6, 5, now_ms() + 3600000);
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "gps.fix_time");
    g = fix(-6.88, 107.6, 5, at);
    v.outcome = "visited";
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID,
            "outcome: 'visited' is not one of");
    v.outcome = "new_household";
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID,
            "new_household is for a household proposed");
    v.outcome = "found";
    v.household_id = "3273011001999999";
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_NOTFOUND,
            "household 3273011001999999: not found");
    v.household_id = hh;
    char other[PD_ID_MAX + 4];
    snprintf(other, sizeof other, "%s01", hh_ids[8]);
    pd_member_outcome mo = {.member_id = other, .outcome = "confirmed"};
    v.members = &mo;
    v.member_count = 1;
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "belongs to household");
    char mine[PD_ID_MAX + 4];
    snprintf(mine, sizeof mine, "%s01", hh);
    mo.member_id = mine;
    mo.outcome = "alive";
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "member outcome: 'alive'");
    mo.outcome = "new";
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "given by adding the member");
    v.member_count = 0;
    v.notes = "bad \xC3\x28 notes";
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "visit.notes: not valid UTF-8");
    char *big = malloc(PD_NOTES_MAX + 2);
    memset(big, 'n', PD_NOTES_MAX + 1);
    big[PD_NOTES_MAX + 1] = '\0';
    v.notes = big;
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "visit.notes: longer than");
    free(big);
    v.notes = NULL;
    v.visited_at = now_ms() + 86400000;
    REFUSED(pd_visit_record(store, &v, id, NULL), PD_ERR_INVALID, "visit.visited_at");
}

static void warnings_are_recorded_with_the_visit(void)
{
    const char *hh = hh_ids[11];
    int64_t at = t0 + (int64_t)(VISITS + 20) * 120000;
    char w_text[256];

    /* poor accuracy, mock location */
    pd_gps g = fix(hh_lat[11], hh_lon[11], 80.0, at);
    g.mock = 1;
    pd_visit_in v = {.household_id = hh, .outcome = "found", .visited_at = at, .gps = &g};
    char id[PD_ID_MAX];
    pd_warnings w = {0};
    CHECK_EQ_INT(pd_visit_record(store, &v, id, &w), PD_OK);
    CHECK(pd_warnings_has(&w, PD_WARN_GPS_ACCURACY));
    CHECK(pd_warnings_has(&w, PD_WARN_GPS_MOCK));
    CHECK(!pd_warnings_has(&w, PD_WARN_GPS_OUTSIDE_AREA));
    q_text("SELECT warnings FROM visit WHERE id = ?1", id, w_text, sizeof w_text);
    CHECK(strcmp(w_text, "gps_accuracy,gps_mock") == 0);
    CHECK_EQ_INT(q_int("SELECT mock FROM visit WHERE id = ?1", id), 1);

    /* 40 seconds later, 8 km away (still in Indonesia): a jump, and outside the desa */
    pd_gps far = fix(hh_lat[11] + 0.072, hh_lon[11], 5.0, at + 40000);
    pd_visit_in v2 = {
        .household_id = hh_ids[12], .outcome = "found", .visited_at = at + 40000, .gps = &far};
    pd_warnings w2 = {0};
    CHECK_EQ_INT(pd_visit_record(store, &v2, id, &w2), PD_OK);
    CHECK(pd_warnings_has(&w2, PD_WARN_GPS_JUMP));
    CHECK(pd_warnings_has(&w2, PD_WARN_GPS_OUTSIDE_AREA));
    CHECK(!pd_warnings_has(&w2, PD_WARN_GPS_OUTSIDE_COUNTRY));
    q_text("SELECT warnings FROM visit WHERE id = ?1", id, w_text, sizeof w_text);
    CHECK(strstr(w_text, "gps_jump") && strstr(w_text, "gps_outside_area"));

    /* two minutes later, back at home: no jump */
    pd_gps back = fix(hh_lat[13], hh_lon[13], 5.0, at + 160000);
    pd_visit_in v3 = {
        .household_id = hh_ids[13], .outcome = "found", .visited_at = at + 160000, .gps = &back};
    pd_warnings w3 = {0};
    CHECK_EQ_INT(pd_visit_record(store, &v3, id, &w3), PD_OK);
    CHECK_EQ_INT(w3.count, 0);

    /* a NIK that another household already has: a warning when set, recorded at the visit */
    char nik[20], target[PD_ID_MAX + 4];
    q_text("SELECT nik FROM member WHERE household_id = ?1 AND status = 'active' AND nik NOT LIKE "
           "'9999%' ORDER BY id LIMIT 1",
           hh_ids[20], nik, sizeof nik);
    REQUIRE_V(nik[0]);
    /* give it to a member of household 21 whose sex matches the NIK */
    int female = (nik[6] - '0') >= 4;
    {
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db,
                           "SELECT id, birth_date FROM member WHERE household_id = ?1 AND "
                           "status = 'active' AND sex = ?2 ORDER BY id LIMIT 1",
                           -1, &st, NULL);
        sqlite3_bind_text(st, 1, hh_ids[21], -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, female ? 2 : 1);
        target[0] = '\0';
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(target, sizeof target, "%s", sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
    }
    REQUIRE_V(target[0]);
    pd_value nv = {.type = PD_VAL_TEXT, .p = (const uint8_t *)nik, .len = strlen(nik)};
    pd_warnings w4 = {0};
    int rc = pd_member_set(store, target, "nik", &nv, &w4);
    CHECK_EQ_INT(rc, PD_OK);
    if (rc != PD_OK)
        fprintf(stderr, "nik set: %s\n", pd_store_errmsg(store));
    CHECK(pd_warnings_has(&w4, PD_WARN_NIK_DUPLICATE));
    pd_gps g5 = fix(hh_lat[21], hh_lon[21], 5.0, at + 400000);
    pd_visit_in v5 = {
        .household_id = hh_ids[21], .outcome = "found", .visited_at = at + 400000, .gps = &g5};
    pd_warnings w5 = {0};
    CHECK_EQ_INT(pd_visit_record(store, &v5, id, &w5), PD_OK);
    CHECK(pd_warnings_has(&w5, PD_WARN_NIK_DUPLICATE));
    q_text("SELECT warnings FROM visit WHERE id = ?1", id, w_text, sizeof w_text);
    CHECK(strstr(w_text, "nik_duplicate") != NULL);
}

/* ---- members -------------------------------------------------------------------------------- */

static void members_join_leave_and_are_corrected(void)
{
    const char *hh = hh_ids[30];
    int64_t count = q_int("SELECT member_count FROM household WHERE id = ?1", hh);
    int64_t max_no = q_int("SELECT MAX(member_no) FROM member WHERE household_id = ?1", hh);
    /* a baby born this year, no NIK yet (placeholder: a warning, not a refusal) */
    pd_member_new baby = {.name = "Bayi Putri",
                          .nik = "9999999999999995",
                          .sex = 2,
                          .birth_date = "2024-11-02",
                          .birth_place = "Bandung",
                          .relationship = PD_REL_GRANDCHILD,
                          .reason = "born"};
    char id[PD_ID_MAX];
    pd_warnings w = {0};
    CHECK_EQ_INT(pd_member_add(store, hh, &baby, id, &w), PD_OK);
    CHECK(pd_warnings_has(&w, PD_WARN_NIK_PLACEHOLDER));
    char want[PD_ID_MAX + 4];
    snprintf(want, sizeof want, "%s%02lld", hh, (long long)max_no + 1);
    CHECK(strcmp(id, want) == 0);
    CHECK_EQ_INT(q_int("SELECT member_count FROM household WHERE id = ?1", hh), count + 1);
    char outcome[16];
    q_text("SELECT outcome FROM member WHERE id = ?1", id, outcome, sizeof outcome);
    CHECK(strcmp(outcome, "new") == 0);
    char field[16];
    q_text("SELECT field FROM op WHERE kind = 'create' AND target = ?1", id, field, sizeof field);
    CHECK(strcmp(field, "born") == 0);

    /* someone joined: a woman, NIK consistent with sex and birth date */
    pd_member_new joined = {.name = "Siti Nurhaliza",
                            .nik = "3273014508900123",
                            .sex = 2,
                            .birth_date = "1990-08-05",
                            .relationship = PD_REL_OTHER,
                            .marital = 1,
                            .reason = "joined"};
    char siti[PD_ID_MAX];
    CHECK_EQ_INT(pd_member_add(store, hh, &joined, siti, NULL), PD_OK);
    CHECK_EQ_INT(q_int("SELECT member_count FROM household WHERE id = ?1", hh), count + 2);

    /* ended: moved */
    CHECK_EQ_INT(pd_member_end(store, siti, "moved"), PD_OK);
    q_text("SELECT status FROM member WHERE id = ?1", siti, outcome, sizeof outcome);
    CHECK(strcmp(outcome, "moved") == 0);
    q_text("SELECT outcome FROM member WHERE id = ?1", siti, outcome, sizeof outcome);
    CHECK(strcmp(outcome, "moved") == 0);
    CHECK_EQ_INT(q_int("SELECT member_count FROM household WHERE id = ?1", hh), count + 1);
    REFUSED(pd_member_end(store, siti, "deceased"), PD_ERR_STATE, "already ended (moved)");
    REFUSED(pd_member_end(store, id, "emigrated"), PD_ERR_INVALID,
            "reason: 'emigrated' is not one of");

    /* the head's name corrected: head_name follows, in the same transaction */
    char head[PD_ID_MAX];
    q_text("SELECT id FROM member WHERE household_id = ?1 AND relationship = 1", hh, head,
           sizeof head);
    pd_value name = {.type = PD_VAL_TEXT,
                     .p = (const uint8_t *)"Ahmad Fauzi Corrected",
                     .len = strlen("Ahmad Fauzi Corrected")};
    int64_t ops = q_int("SELECT COUNT(*) FROM op", NULL);
    CHECK_EQ_INT(pd_member_set(store, head, "name", &name, NULL), PD_OK);
    char hn[128];
    q_text("SELECT head_name FROM household WHERE id = ?1", hh, hn, sizeof hn);
    CHECK(strcmp(hn, "Ahmad Fauzi Corrected") == 0);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM op", NULL), ops + 2);
    /* the same value again: nothing to record */
    CHECK_EQ_INT(pd_member_set(store, head, "name", &name, NULL), PD_OK);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM op", NULL), ops + 2);
    /* set ops carry old and new values and the revision */
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db,
                       "SELECT old_value, new_value, base_rev FROM op WHERE kind = 'set' AND "
                       "target = ?1 AND field = 'name'",
                       -1, &st, NULL);
    sqlite3_bind_text(st, 1, head, -1, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(sqlite3_column_type(st, 0) == SQLITE_TEXT);
    CHECK(strcmp((const char *)sqlite3_column_text(st, 1), "Ahmad Fauzi Corrected") == 0);
    CHECK_EQ_INT(sqlite3_column_int64(st, 2), 1);
    sqlite3_finalize(st);

    /* household corrections */
    pd_value v;
    pd_error err = {0};
    CHECK_EQ_INT(pd_field_parse("household", "roof_material", "6", &v, &err), PD_OK);
    CHECK_EQ_INT(pd_household_set(store, hh, "roof_material", &v, NULL), PD_OK);
    CHECK_EQ_INT(q_int("SELECT roof_material FROM household WHERE id = ?1", hh), 6);
    CHECK_EQ_INT(pd_field_parse("household", "kk", "", &v, &err), PD_OK);
    CHECK(v.type == PD_VAL_NULL);
    CHECK_EQ_INT(pd_household_set(store, hh, "kk", &v, NULL), PD_OK);
    CHECK_EQ_INT(q_int("SELECT kk IS NULL FROM household WHERE id = ?1", hh), 1);
    CHECK_EQ_INT(pd_field_parse("member", "relationship", "3", &v, &err), PD_OK);
    CHECK_EQ_INT(pd_member_set(store, id, "relationship", &v, NULL), PD_OK);
    /* a second head is refused */
    CHECK_EQ_INT(pd_field_parse("member", "relationship", "1", &v, &err), PD_OK);
    REFUSED(pd_member_set(store, id, "relationship", &v, NULL), PD_ERR_INVALID,
            "already has a head");

    /* SQL in a name is only text: stored verbatim, nothing else happens */
    const char *evil = "Robert'); DROP TABLE member;--";
    pd_member_new bobby = {.name = evil, .relationship = PD_REL_OTHER, .reason = "joined"};
    char bid[PD_ID_MAX];
    CHECK_EQ_INT(pd_member_add(store, hh, &bobby, bid, NULL), PD_OK);
    char stored[128];
    q_text("SELECT name FROM member WHERE id = ?1", bid, stored, sizeof stored);
    CHECK(strcmp(stored, evil) == 0);
    CHECK(q_int("SELECT COUNT(*) FROM member", NULL) > HOUSEHOLDS);
}

static void member_and_household_bad_input_changes_nothing(void)
{
    const char *hh = hh_ids[40];
    char m[PD_ID_MAX], nik[20];
    int64_t sex = 0;
    {
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db,
                           "SELECT id, nik, sex FROM member WHERE household_id = ?1 AND "
                           "nik NOT LIKE '9999%' AND sex IS NOT NULL ORDER BY id LIMIT 1",
                           -1, &st, NULL);
        sqlite3_bind_text(st, 1, hh, -1, SQLITE_STATIC);
        REQUIRE_V(sqlite3_step(st) == SQLITE_ROW);
        snprintf(m, sizeof m, "%s", sqlite3_column_text(st, 0));
        snprintf(nik, sizeof nik, "%s", sqlite3_column_text(st, 1));
        sex = sqlite3_column_int64(st, 2);
        sqlite3_finalize(st);
    }
    pd_value v = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"327301450890", .len = 12};
    REFUSED(pd_member_set(store, m, "nik", &v, NULL), PD_ERR_INVALID,
            "member.nik: must be 16 digits");
    v.p = (const uint8_t *)"3273013002900001";
    v.len = 16;
    REFUSED(pd_member_set(store, m, "nik", &v, NULL), PD_ERR_INVALID, "does not exist");
    v.p = (const uint8_t *)"9901010508900001";
    REFUSED(pd_member_set(store, m, "nik", &v, NULL), PD_ERR_INVALID, "not a known kecamatan code");
    /* the other sex than the NIK says */
    pd_value s = {.type = PD_VAL_INT, .i = sex == 1 ? 2 : 1};
    REFUSED(pd_member_set(store, m, "sex", &s, NULL), PD_ERR_INVALID, "but sex is");
    s.i = 3;
    REFUSED(pd_member_set(store, m, "sex", &s, NULL), PD_ERR_INVALID,
            "member.sex: 3 is not a known code");
    pd_value t = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"x", .len = 1};
    REFUSED(pd_member_set(store, m, "favourite_colour", &t, NULL), PD_ERR_INVALID,
            "member.favourite_colour: no such field");
    REFUSED(pd_member_set(store, m, "status", &t, NULL), PD_ERR_INVALID, "not a correctable field");
    REFUSED(pd_household_set(store, hh, "id", &t, NULL), PD_ERR_INVALID, "not a correctable field");
    REFUSED(pd_household_set(store, hh, "rev", &s, NULL), PD_ERR_INVALID,
            "not a correctable field");
    REFUSED(pd_household_set(store, hh, "member_count", &s, NULL), PD_ERR_INVALID,
            "not a correctable");
    REFUSED(pd_household_set(store, hh, "tenure", &t, NULL), PD_ERR_INVALID,
            "household.tenure: must be an integer");
    pd_value big = {.type = PD_VAL_INT, .i = 6};
    REFUSED(pd_household_set(store, hh, "tenure", &big, NULL), PD_ERR_INVALID,
            "household.tenure: 6 is not a known code");
    big.i = 1 << 20;
    REFUSED(pd_household_set(store, hh, "asset_flags", &big, NULL), PD_ERR_INVALID, "bits outside");
    pd_value other_kec = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"32.73.02.1001", .len = 13};
    REFUSED(pd_household_set(store, hh, "desa", &other_kec, NULL), PD_ERR_INVALID,
            "is not a desa of kecamatan 32.73.01");
    pd_value bad_utf8 = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"Jl. \xFF", .len = 5};
    REFUSED(pd_household_set(store, hh, "address", &bad_utf8, NULL), PD_ERR_INVALID,
            "household.address: not valid UTF-8");
    pd_value null = {0};
    REFUSED(pd_household_set(store, hh, "head_name", &null, NULL), PD_ERR_INVALID,
            "may not be empty");
    REFUSED(pd_household_set(store, "no-such-household", "rooms", &s, NULL), PD_ERR_NOTFOUND,
            "not found");
    pd_member_new bad = {
        .name = "Anak", .nik = "3273014508900001", .sex = 1, .relationship = 3, .reason = "joined"};
    char id[PD_ID_MAX];
    REFUSED(pd_member_add(store, hh, &bad, id, NULL), PD_ERR_INVALID,
            "means a woman, but sex is male");
    pd_member_new born = {.name = "Anak", .relationship = 3, .reason = "born"};
    REFUSED(pd_member_add(store, hh, &born, id, NULL), PD_ERR_INVALID, "birth_date: required");
    pd_member_new norel = {.name = "Anak", .reason = "joined"};
    REFUSED(pd_member_add(store, hh, &norel, id, NULL), PD_ERR_INVALID, "relationship: missing");
    pd_member_new future = {
        .name = "Anak", .relationship = 3, .birth_date = "2999-01-01", .reason = "born"};
    REFUSED(pd_member_add(store, hh, &future, id, NULL), PD_ERR_INVALID, "in the future");
    char longname[PD_NAME_MAX + 2];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    pd_member_new lng = {.name = longname, .relationship = 3, .reason = "joined"};
    REFUSED(pd_member_add(store, hh, &lng, id, NULL), PD_ERR_INVALID, "longer than 100 bytes");
    pd_member_new badname = {.name = "Bad \xC0\xAF", .relationship = 3, .reason = "joined"};
    REFUSED(pd_member_add(store, hh, &badname, id, NULL), PD_ERR_INVALID, "not valid UTF-8");
    REFUSED(pd_member_add(store, "no-such-household", &norel, id, NULL), PD_ERR_INVALID,
            "relationship");
    (void)nik;
}

/* ---- photos --------------------------------------------------------------------------------- */

static void photos_are_checked_and_content_addressed(void)
{
    static const char *const kinds[] = {"front", "wall", "floor", "kitchen", "toilet",
                                        "kk",    "ktp",  "head",  "roof"};
    const char *hh = hh_ids[50];
    char visit[PD_ID_MAX];
    q_text("SELECT id FROM visit ORDER BY rowid LIMIT 1", NULL, visit, sizeof visit);
    char visit_hh[PD_ID_MAX];
    q_text("SELECT household_id FROM visit WHERE id = ?1", visit, visit_hh, sizeof visit_hh);
    uint8_t jpeg[1024];
    for (unsigned k = 0; k < 9; k++) {
        size_t n = pd_fixture_jpeg(jpeg, 16 + k, 16, k);
        uint8_t hash[PD_HASH_BYTES], want[PD_HASH_BYTES];
        crypto_generichash(want, sizeof want, jpeg, n, NULL, 0);
        int rc = pd_photo_add(store, k == 0 ? visit_hh : hh, k == 0 ? visit : NULL, kinds[k], jpeg,
                              n, 0, hash);
        CHECK_EQ_INT(rc, PD_OK);
        if (rc != PD_OK)
            fprintf(stderr, "photo: %s\n", pd_store_errmsg(store));
        CHECK(memcmp(hash, want, sizeof hash) == 0);
    }
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM photo", NULL), 9);
    CHECK_EQ_INT(q_int("SELECT COUNT(DISTINCT kind) FROM photo", NULL), 9);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM op WHERE kind = 'photo'", NULL), 9);
    CHECK_EQ_INT(q_int("SELECT COUNT(*) FROM photo WHERE visit_id IS NOT NULL", NULL), 1);
    /* the same bytes again */
    size_t n = pd_fixture_jpeg(jpeg, 16, 16, 0);
    REFUSED(pd_photo_add(store, hh, NULL, "front", jpeg, n, 0, NULL), PD_ERR_EXISTS,
            "already stored");
    /* not a JPEG */
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 0};
    REFUSED(pd_photo_add(store, hh, NULL, "front", png, sizeof png, 0, NULL), PD_ERR_INVALID,
            "not a JPEG");
    n = pd_fixture_jpeg(jpeg, 16, 16, 99);
    REFUSED(pd_photo_add(store, hh, NULL, "front", jpeg, n - 2, 0, NULL), PD_ERR_INVALID,
            "no end-of-image marker");
    REFUSED(pd_photo_add(store, hh, NULL, "selfie", jpeg, n, 0, NULL), PD_ERR_INVALID,
            "photo kind: 'selfie'");
    REFUSED(pd_photo_add(store, hh, "V-nope", "front", jpeg, n, 0, NULL), PD_ERR_NOTFOUND,
            "visit V-nope not found");
    REFUSED(pd_photo_add(store, hh, visit, "front", jpeg, n, 0, NULL), PD_ERR_INVALID,
            "is of household");
    REFUSED(pd_photo_add(store, "nope", NULL, "front", jpeg, n, 0, NULL), PD_ERR_NOTFOUND,
            "household nope: not found");
    /* the bytes are stored (encrypted with the page), retrievable by hash */
    uint8_t h0[PD_HASH_BYTES];
    n = pd_fixture_jpeg(jpeg, 16, 16, 0);
    crypto_generichash(h0, sizeof h0, jpeg, n, NULL, 0);
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "SELECT bytes FROM photo WHERE hash = ?1", -1, &st, NULL);
    sqlite3_bind_blob(st, 1, h0, sizeof h0, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_ROW && (size_t)sqlite3_column_bytes(st, 0) == n &&
          memcmp(sqlite3_column_blob(st, 0), jpeg, n) == 0);
    sqlite3_finalize(st);
}

/* ---- search --------------------------------------------------------------------------------- */

typedef struct hits {
    size_t n;
    char ids[PD_FIND_MAX_LIMIT][PD_ID_MAX];
    double dist[PD_FIND_MAX_LIMIT];
} hits;

static int collect(void *ctx, const pd_household_hit *h)
{
    hits *x = ctx;
    if (x->n < PD_FIND_MAX_LIMIT) {
        snprintf(x->ids[x->n], PD_ID_MAX, "%s", h->id);
        x->dist[x->n] = h->distance_m;
        x->n++;
    }
    return 0;
}

static bool has(const hits *x, const char *id)
{
    for (size_t i = 0; i < x->n; i++)
        if (!strcmp(x->ids[i], id))
            return true;
    return false;
}

static hits *find(const pd_find_query *q, int *rc)
{
    hits *x = calloc(1, sizeof *x);
    *rc = pd_household_find(store, q, collect, x);
    if (*rc != PD_OK)
        fprintf(stderr, "find: %s\n", pd_store_errmsg(store));
    return x;
}

typedef struct dh {
    double d;
    char id[PD_ID_MAX];
} dh;

static int dh_cmp(const void *a, const void *b)
{
    const dh *x = a, *y = b;
    return x->d < y->d ? -1 : x->d > y->d ? 1 : 0;
}

static void search_by_name_nik_kk_address_area_status_and_place(void)
{
    int rc;
    /* Siti, the member who joined household 30 above, and every generated Siti */
    pd_find_query q = {.name = "s\xC3\xADti", .limit = PD_FIND_MAX_LIMIT}; /* "síti" */
    hits *accent = find(&q, &rc);
    CHECK_EQ_INT(rc, PD_OK);
    CHECK(has(accent, hh_ids[30]));
    int64_t sitis = q_int("SELECT COUNT(DISTINCT household_id) FROM member WHERE name LIKE 'siti%' "
                          "OR name LIKE '% siti%'",
                          NULL);
    CHECK(sitis > 1);
    CHECK((int64_t)accent->n >= sitis);
    q.name = "SITI";
    hits *upper = find(&q, &rc);
    CHECK_EQ_INT(upper->n, accent->n);
    q.name = "síti nurha";
    hits *two = find(&q, &rc);
    CHECK(has(two, hh_ids[30]));
    CHECK(two->n < accent->n);
    q.name = "\"; DROP TABLE household; --";
    hits *inj = find(&q, &rc);
    CHECK_EQ_INT(rc, PD_OK);
    CHECK(q_int("SELECT COUNT(*) FROM household", NULL) > 0);
    free(accent), free(upper), free(two), free(inj);

    /* NIK, KK */
    char nik[20], hh[PD_ID_MAX], kk[20];
    q_text("SELECT nik FROM member WHERE household_id = ?1 AND nik NOT LIKE '9999%' LIMIT 1",
           hh_ids[60], nik, sizeof nik);
    pd_find_query qn = {.nik = nik};
    hits *byn = find(&qn, &rc);
    CHECK(has(byn, hh_ids[60]));
    free(byn);
    q_text("SELECT kk FROM household WHERE kk IS NOT NULL AND id = ?1", hh_ids[61], kk, sizeof kk);
    if (kk[0]) {
        pd_find_query qk = {.kk = kk};
        hits *byk = find(&qk, &rc);
        CHECK(has(byk, hh_ids[61]));
        free(byk);
    }
    /* address words */
    char addr[256];
    q_text("SELECT address FROM household WHERE id = ?1", hh_ids[62], addr, sizeof addr);
    pd_find_query qa = {.address = addr, .limit = PD_FIND_MAX_LIMIT};
    hits *bya = find(&qa, &rc);
    CHECK_EQ_INT(rc, PD_OK);
    CHECK(has(bya, hh_ids[62]));
    free(bya);
    /* desa and status: the same households SQL counts */
    q_text("SELECT desa FROM household WHERE id = ?1", hh_ids[0], hh, sizeof hh);
    pd_find_query qd = {.desa = hh, .limit = PD_FIND_MAX_LIMIT};
    hits *byd = find(&qd, &rc);
    CHECK_EQ_INT((int64_t)byd->n, q_int("SELECT COUNT(*) FROM household WHERE desa = ?1", hh));
    free(byd);
    pd_find_query qs = {.status = "unvisited", .limit = PD_FIND_MAX_LIMIT};
    hits *bys = find(&qs, &rc);
    CHECK_EQ_INT((int64_t)bys->n,
                 q_int("SELECT COUNT(*) FROM household WHERE status IS NULL", NULL));
    free(bys);
    pd_find_query qr = {.status = "refused", .desa = hh, .limit = PD_FIND_MAX_LIMIT};
    hits *byr = find(&qr, &rc);
    CHECK_EQ_INT((int64_t)byr->n, q_int("SELECT COUNT(*) FROM household WHERE status = 'refused' "
                                        "AND desa = ?1",
                                        hh));
    free(byr);

    /* nearest: the household at the point itself first, then the same order as a brute-force
     * great-circle sort over every household's best known location */
    const char *target = hh_ids[300];
    double lat = 0, lon = 0;
    {
        sqlite3_stmt *st = NULL;
        sqlite3_prepare_v2(db,
                           "SELECT (g.min_lat + g.max_lat) / 2, (g.min_lon + g.max_lon) / 2 "
                           "FROM household_geo g JOIN household h ON h.hh_rowid = g.hh_rowid "
                           "WHERE h.id = ?1",
                           -1, &st, NULL);
        sqlite3_bind_text(st, 1, target, -1, SQLITE_STATIC);
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        lat = sqlite3_column_double(st, 0);
        lon = sqlite3_column_double(st, 1);
        sqlite3_finalize(st);
    }
    pd_find_query qp = {.near = 1, .near_lat = lat, .near_lon = lon, .limit = 25};
    hits *near = find(&qp, &rc);
    CHECK_EQ_INT(rc, PD_OK);
    CHECK_EQ_INT(near->n, 25);
    CHECK(strcmp(near->ids[0], target) == 0);
    CHECK(near->dist[0] < 2.0);
    for (size_t i = 1; i < near->n; i++)
        CHECK(near->dist[i] >= near->dist[i - 1]);
    /* brute force */
    size_t total = (size_t)q_int("SELECT COUNT(*) FROM household", NULL);
    dh *all = calloc(total, sizeof *all);
    size_t k = 0;
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db,
                       "SELECT h.id, COALESCE((SELECT v.lat FROM visit v WHERE v.household_id "
                       "= h.id AND v.lat IS NOT NULL ORDER BY v.rowid DESC LIMIT 1), h.lat), "
                       "COALESCE((SELECT v.lon FROM visit v WHERE v.household_id = h.id AND "
                       "v.lat IS NOT NULL ORDER BY v.rowid DESC LIMIT 1), h.lon) FROM household h",
                       -1, &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW && k < total) {
        if (sqlite3_column_type(st, 1) == SQLITE_NULL)
            continue;
        snprintf(all[k].id, PD_ID_MAX, "%s", sqlite3_column_text(st, 0));
        all[k].d =
            pd_geo_distance_m(lat, lon, sqlite3_column_double(st, 1), sqlite3_column_double(st, 2));
        k++;
    }
    sqlite3_finalize(st);
    qsort(all, k, sizeof *all, dh_cmp);
    int same = 1;
    for (size_t i = 0; i < near->n; i++) {
        same &= fabs(all[i].d - near->dist[i]) < 0.01;
        /* ids match unless two households are at exactly the same distance */
        if (strcmp(all[i].id, near->ids[i]) != 0 && fabs(all[i].d - near->dist[i]) > 1e-9)
            same = 0;
    }
    CHECK(same);
    free(all);
    free(near);
    /* nearest and unvisited together; and far away (a point in Papua) still finds the nearest */
    pd_find_query qpu = {
        .near = 1, .near_lat = lat, .near_lon = lon, .status = "unvisited", .limit = 5};
    hits *nu = find(&qpu, &rc);
    CHECK_EQ_INT(nu->n, 5);
    for (size_t i = 0; i < nu->n; i++)
        CHECK_EQ_INT(q_int("SELECT status IS NULL FROM household WHERE id = ?1", nu->ids[i]), 1);
    free(nu);
    pd_find_query qfar = {.near = 1, .near_lat = -2.5, .near_lon = 140.7, .limit = 3};
    hits *nf = find(&qfar, &rc);
    CHECK_EQ_INT(rc, PD_OK);
    CHECK_EQ_INT(nf->n, 3);
    free(nf);

    /* bad queries */
    pd_find_query none = {0};
    hits *x = find(&none, &rc);
    CHECK_EQ_INT(rc, PD_ERR_INVALID);
    CHECK(strstr(pd_store_errmsg(store), "give at least one") != NULL);
    free(x);
    pd_find_query badnik = {.nik = "123"};
    x = find(&badnik, &rc);
    CHECK_EQ_INT(rc, PD_ERR_INVALID);
    free(x);
    pd_find_query badnear = {.near = 1, .near_lat = 95, .near_lon = 0};
    x = find(&badnear, &rc);
    CHECK_EQ_INT(rc, PD_ERR_INVALID);
    free(x);
    pd_find_query punct = {.name = "*** ::: \"\""};
    x = find(&punct, &rc);
    CHECK_EQ_INT(rc, PD_ERR_INVALID);
    CHECK(strstr(pd_store_errmsg(store), "no words") != NULL);
    free(x);
}

/* ---- the op log and the document ------------------------------------------------------------ */

static int count_op(void *ctx, const pd_op *op)
{
    int64_t *n = ctx;
    n[0]++;
    if (op->seq <= n[1])
        n[2]++; /* out of order */
    n[1] = op->seq;
    return 0;
}

static void op_log_is_append_only_and_seals(void)
{
    int64_t n[3] = {0, 0, 0};
    CHECK_EQ_INT(pd_oplog_pending(store, count_op, n), PD_OK);
    int64_t total = q_int("SELECT COUNT(*) FROM op", NULL);
    CHECK_EQ_INT(n[0], total);
    CHECK_EQ_INT(n[2], 0);
    CHECK_EQ_INT(pd_oplog_mark_sealed(store, 1, 10, 1), PD_OK);
    int64_t m[3] = {0, 0, 0};
    CHECK_EQ_INT(pd_oplog_pending(store, count_op, m), PD_OK);
    CHECK_EQ_INT(m[0], total - 10);
    REFUSED(pd_oplog_mark_sealed(store, 5, 12, 2), PD_ERR_STATE, "not all present and pending");
    REFUSED(pd_oplog_mark_sealed(store, total + 1, total + 3, 2), PD_ERR_STATE, "not all present");
    REFUSED(pd_oplog_mark_sealed(store, 12, 11, 2), PD_ERR_INVALID, "cannot seal");
    int64_t a[3] = {0, 0, 0};
    CHECK_EQ_INT(pd_oplog_since(store, total - 5, count_op, a), PD_OK);
    CHECK_EQ_INT(a[0], 5);
    /* the table refuses rewriting and deleting */
    CHECK(sqlite3_exec(db, "UPDATE op SET new_value = 'x' WHERE seq = 1", NULL, NULL, NULL) !=
          SQLITE_OK);
    CHECK(sqlite3_exec(db, "DELETE FROM op WHERE seq = 1", NULL, NULL, NULL) != SQLITE_OK);
}

static void household_document(void)
{
    char *json = NULL;
    CHECK_EQ_INT(pd_household_json(store, hh_ids[30], &json), PD_OK);
    REQUIRE_V(json);
    cJSON *doc = cJSON_Parse(json);
    CHECK(doc != NULL);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "members")) >= 3);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "visits")) >= 1);
    const cJSON *h = cJSON_GetObjectItem(doc, "household");
    CHECK(cJSON_IsString(cJSON_GetObjectItem(h, "head_name")));
    CHECK(strcmp(cJSON_GetObjectItem(h, "id")->valuestring, hh_ids[30]) == 0);
    cJSON_Delete(doc);
    pd_free(json);
    json = NULL;
    CHECK_EQ_INT(pd_household_json(store, "nope", &json), PD_ERR_NOTFOUND);
    CHECK(json == NULL);
}

static void changes_survive_reopening(void)
{
    /* The clock as left by a wall clock an hour ahead (then set right): kept in settings, so the
     * next op after reopening is still stamped after it. */
    int64_t ahead = (now_ms() + 3600000) << 16;
    sqlite3_stmt *up = NULL;
    sqlite3_prepare_v2(db, "UPDATE settings SET value = ?1 WHERE key = 'hlc'", -1, &up, NULL);
    sqlite3_bind_int64(up, 1, ahead);
    CHECK(sqlite3_step(up) == SQLITE_DONE && sqlite3_changes(db) == 1);
    sqlite3_finalize(up);
    uint8_t before[32], after[32];
    digest(before);
    char *dir = pd_test_path(home, "store");
    pd_store_close(store);
    pd_error err = {0};
    CHECK_EQ_INT(pd_store_open(&store, dir, "1234", &err), PD_OK);
    free(dir);
    db = pd_store_sqlite(store);
    digest(after);
    CHECK(memcmp(before, after, 32) == 0);
    /* the clock survived: a new op is stamped after every earlier one */
    int64_t last = q_int("SELECT MAX(hlc) FROM op", NULL);
    pd_value v = {.type = PD_VAL_INT, .i = 3};
    CHECK_EQ_INT(pd_household_set(store, hh_ids[90], "rooms", &v, NULL), PD_OK);
    int64_t stamped = q_int("SELECT hlc FROM op ORDER BY seq DESC LIMIT 1", NULL);
    CHECK(stamped > last);
    CHECK(stamped > ahead);
    CHECK_EQ_INT(stamped >> 16, ahead >> 16); /* the counter moved, not the milliseconds */
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    REQUIRE(setup() == PD_OK);
    RUN(proposals_get_ids_no_device_can_repeat);
    RUN(five_hundred_visits_cover_every_outcome);
    RUN(visits_refuse_bad_input_and_change_nothing);
    RUN(warnings_are_recorded_with_the_visit);
    RUN(members_join_leave_and_are_corrected);
    RUN(member_and_household_bad_input_changes_nothing);
    RUN(photos_are_checked_and_content_addressed);
    RUN(search_by_name_nik_kk_address_area_status_and_place);
    RUN(op_log_is_append_only_and_seals);
    RUN(household_document);
    RUN(changes_survive_reopening);
    pd_store_close(store);
    pd_test_rmtree(home);
    free(home);
    free(hh_ids);
    free(hh_lat);
    free(hh_lon);
    return pd_test_finish();
}
