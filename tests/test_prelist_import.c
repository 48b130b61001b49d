/*
 * test_prelist_import.c — loading packages into a device store (prelist/import.c): the first
 * import fills households, members, shapes, the location and search indexes and pins the issuer;
 * the same package twice is a no-op; a newer package updates the records whose rev rose and
 * leaves alone every field with a local change the server has not acknowledged (its value set
 * aside in server_diff); an older package, another issuer, or a package failing half-way change
 * nothing.
 *
 * Local changes are made as the op log records them (an op row, batch_seq NULL or in a batch
 * that is not acknowledged), with the record's column changed alongside.
 */
#include "prelist_fixture.h"
#include "store_internal.h"
#include "testutil.h"

#include <math.h>
#include <zlib.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE_VOID(cond)                                                                    \
    do {                                                                                      \
        pd_test_checks++;                                                                     \
        if (!(cond)) {                                                                        \
            pd_test_failures++;                                                               \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);        \
            return;                                                                           \
        }                                                                                     \
    } while (0)

static char *dir;
static uint8_t pk[32], sk[64], pk2[32], sk2[64];

static pd_store *new_store(const char *name)
{
    char *home = pd_test_path(dir, name);
    pd_store *s = NULL;
    pd_error e = {0};
    if (pd_store_create(&s, home, PD_FIXTURE_PIN, &PD_KDF_TEST, &e) != PD_OK)
        fprintf(stderr, "   store: %s\n", e.msg);
    free(home);
    return s;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "   %s: %s\n", sql, msg);
    CHECK_EQ_INT(rc, SQLITE_OK);
    sqlite3_free(msg);
}

/* A text value from a query with one text parameter, into buf ("" if none). */
static const char *text1(sqlite3 *db, const char *sql, const char *p, char *buf, size_t cap)
{
    sqlite3_stmt *st = NULL;
    buf[0] = '\0';
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, p, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return buf;
}

static double real1(sqlite3 *db, const char *sql, const char *p)
{
    sqlite3_stmt *st = NULL;
    double v = NAN;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, p, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_double(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static int64_t int1(sqlite3 *db, const char *sql, const char *p)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, p, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

static void digest(pd_store *s, uint8_t out[32])
{
    CHECK_EQ_INT(pd_fixture_store_digest(pd_store_sqlite(s), out), 0);
}

/* ---- a newer package made from an older one ------------------------------------------------- */

typedef struct edit {
    pd_prelist_writer *w;
    int hh_index; /* of the household being copied */
    char ids[4][24];
    char member2[24]; /* first member of household 2 */
    bool fail_at_end;
} edit;

static int ed_shape(void *ud, const pd_prelist_shape *s, pd_error *err)
{
    return pd_prelist_writer_shape(((edit *)ud)->w, s, err);
}

static int ed_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    edit *e = ud;
    int i = e->hh_index++;
    pd_prelist_household x = *h;
    if (i < 4)
        snprintf(e->ids[i], sizeof e->ids[i], "%s", h->id);
    if (i == 0) { /* rev rose: new address, desil and location */
        x.rev = 2;
        x.address = "Jl. Server Baru No. 9";
        x.desil = h->desil == 10 ? 9 : h->desil + 1;
        x.lat = h->lat + 0.0001;
        x.lon = h->lon + 0.0001;
    } else if (i == 1) { /* changed but rev did not rise: must not apply */
        x.head_name = "Nama Tanpa Revisi";
    } else if (i == 3) { /* rev rose and it moved; a visit there has a fix */
        x.rev = 2;
        x.lat = h->lat - 0.0002;
    }
    return pd_prelist_writer_household(e->w, &x, err);
}

static int ed_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    edit *e = ud;
    pd_prelist_member x = *m;
    if (e->hh_index == 3 && m->member_no == 1) { /* household 2's head */
        snprintf(e->member2, sizeof e->member2, "%s", m->id);
        x.rev = 2;
        x.name = "Nama Dari Server";
        x.work = m->work == 1 ? 2 : 1;
    }
    return pd_prelist_writer_member(e->w, &x, err);
}

/* Write `out` from `in`, edited as above, plus one new household; issued a day later. */
static int make_newer(const char *in, const char *out, edit *e)
{
    pd_prelist_info info;
    pd_prelist_peek(in, &info, NULL);
    memset(e, 0, sizeof *e);
    int rc = pd_prelist_writer_open(&e->w, out, sk, info.area, info.issued_at + 86400000, NULL);
    if (rc != PD_OK)
        return rc;
    pd_prelist_handler h = {ed_shape, ed_household, ed_member, e};
    rc = pd_prelist_read(in, pk, &h, NULL, NULL);
    pd_prelist_household n = {
        .id = "3273011001999999", .rev = 5, .prov = "32", .kab = "32.73", .kec = "32.73.01",
        .desa = "32.73.01.1001", .sls = "RT 009 / RW 009", .address = "Jl. Baru",
        .head_name = "Keluarga Baru", .member_count = 1, .tenure = PD_PRELIST_NULL,
        .floor_area = PD_PRELIST_NULL, .floor_material = PD_PRELIST_NULL,
        .wall_material = PD_PRELIST_NULL, .roof_material = PD_PRELIST_NULL,
        .rooms = PD_PRELIST_NULL, .water_source = PD_PRELIST_NULL, .lighting = PD_PRELIST_NULL,
        .power_va = PD_PRELIST_NULL, .cooking_fuel = PD_PRELIST_NULL, .toilet = PD_PRELIST_NULL,
        .desil = 2, .percentile = 15, .lat = NAN, .lon = NAN};
    pd_prelist_member m = {
        .id = "327301100199999901", .household_id = n.id, .rev = 5, .member_no = 1,
        .name = "Keluarga Baru", .sex = 1, .relationship = 1, .marital = PD_PRELIST_NULL,
        .schooling = PD_PRELIST_NULL, .work = PD_PRELIST_NULL};
    if (rc == PD_OK)
        rc = pd_prelist_writer_household(e->w, &n, NULL);
    if (rc == PD_OK)
        rc = pd_prelist_writer_member(e->w, &m, NULL);
    if (rc == PD_OK)
        rc = pd_prelist_writer_finish(e->w, NULL, NULL);
    pd_prelist_writer_free(e->w);
    e->w = NULL;
    return rc;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void first_import_fills_the_store_and_pins_the_issuer(void)
{
    pd_store *s = new_store("first");
    REQUIRE_VOID(s != NULL);
    sqlite3 *db = pd_store_sqlite(s);
    char *path = pd_test_path(dir, "first.pdpl");
    pd_prelist_gen_options o = {.seed = 2, .households = 200};
    pd_prelist_info info;
    REQUIRE_VOID(pd_prelist_generate_file(path, "32.73.01", &o, sk, &info, NULL) == PD_OK);

    /* nothing pinned and no key given: refused, nothing changes */
    uint8_t before[32], after[32];
    digest(s, before);
    CHECK_EQ_INT(pd_prelist_import(s, path, NULL, NULL), PD_ERR_NOTFOUND);
    CHECK(strstr(pd_store_errmsg(s), "pinned") != NULL);
    digest(s, after);
    CHECK(memcmp(before, after, 32) == 0);

    pd_prelist_import_stats st;
    CHECK_EQ_INT(pd_prelist_import(s, path, pk, &st), PD_OK);
    CHECK(st.pinned && !st.already);
    CHECK_EQ_INT(st.households_added, 200);
    CHECK_EQ_INT(st.members_added, info.members);
    CHECK_EQ_INT(st.shapes, 4);
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM household"), 200);
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM member"), info.members);
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM area_shape"), 4);
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM household_geo"), 200);
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM household WHERE source = 'prelist' "
                                    "AND rev = 1 AND status IS NULL"),
                 200);
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM member WHERE status = 'active'"),
                 info.members);
    /* the geo index holds each household's point (an R*Tree box of 32-bit floats around it) */
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM household h JOIN household_geo g ON "
                                    "g.hh_rowid = h.hh_rowid WHERE g.min_lat <= h.lat AND "
                                    "h.lat <= g.max_lat AND g.min_lon <= h.lon AND "
                                    "h.lon <= g.max_lon AND g.max_lat - g.min_lat < 1e-4"),
                 200);
    /* the search indexes follow (triggers) */
    char name[PD_PRELIST_MAX_TEXT + 1], word[64];
    text1(db, "SELECT name FROM member WHERE id LIKE ?1 || '%' LIMIT 1", "32730110", name,
          sizeof name);
    snprintf(word, sizeof word, "\"%.*s\"", (int)strcspn(name, " "), name);
    CHECK(int1(db, "SELECT count(*) FROM person_fts WHERE person_fts MATCH ?1", word) >= 1);
    /* the package and the pinned key are recorded */
    sqlite3_stmt *q = NULL;
    sqlite3_prepare_v2(db, "SELECT hash, households, members, issued_at, bbox FROM "
                           "prelist_package WHERE area = '32.73.01'", -1, &q, NULL);
    CHECK(sqlite3_step(q) == SQLITE_ROW && sqlite3_column_bytes(q, 0) == 32 &&
          memcmp(sqlite3_column_blob(q, 0), info.id, 32) == 0 &&
          sqlite3_column_int64(q, 1) == 200 && sqlite3_column_int64(q, 3) == info.issued_at &&
          sqlite3_column_type(q, 4) == SQLITE_TEXT);
    sqlite3_finalize(q);
    uint8_t pinned[32];
    CHECK_EQ_INT(pd_prelist_pinned_issuer(s, pinned), PD_OK);
    CHECK(memcmp(pinned, pk, 32) == 0);
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM keyring WHERE role = 'server'"), 1);

    /* the same package again: a no-op, with or without the key */
    digest(s, before);
    CHECK_EQ_INT(pd_prelist_import(s, path, NULL, &st), PD_OK);
    CHECK(st.already && st.households_added == 0 && !st.pinned);
    CHECK_EQ_INT(pd_prelist_import(s, path, pk, &st), PD_OK);
    CHECK(st.already);
    digest(s, after);
    CHECK(memcmp(before, after, 32) == 0);

    /* another issuer's key: denied, nothing changes */
    CHECK_EQ_INT(pd_prelist_import(s, path, pk2, &st), PD_ERR_DENIED);
    digest(s, after);
    CHECK(memcmp(before, after, 32) == 0);
    /* a package from another issuer: refused by signature */
    char *other = pd_test_path(dir, "other.pdpl");
    REQUIRE_VOID(pd_prelist_generate_file(other, "32.73.02", &o, sk2, NULL, NULL) == PD_OK);
    CHECK_EQ_INT(pd_prelist_import(s, other, NULL, &st), PD_ERR_SIGNATURE);
    digest(s, after);
    CHECK(memcmp(before, after, 32) == 0);
    pd_store_close(s);
    free(other);
    free(path);
}

static void newer_package_respects_local_changes(void)
{
    pd_store *s = new_store("newer");
    REQUIRE_VOID(s != NULL);
    sqlite3 *db = pd_store_sqlite(s);
    char *v1 = pd_test_path(dir, "v1.pdpl"), *v2 = pd_test_path(dir, "v2.pdpl");
    pd_prelist_gen_options o = {.seed = 4, .households = 60};
    REQUIRE_VOID(pd_prelist_generate_file(v1, "32.73.01.1001", &o, sk, NULL, NULL) == PD_OK);
    edit e;
    REQUIRE_VOID(make_newer(v1, v2, &e) == PD_OK);
    pd_prelist_import_stats st;
    REQUIRE_VOID(pd_prelist_import(s, v1, pk, &st) == PD_OK);
    char buf[256], h0_desil_v1[8];
    text1(db, "SELECT desil FROM household WHERE id = ?1", e.ids[0], h0_desil_v1,
          sizeof h0_desil_v1);

    /* local changes: H0's address unsynced; H0's desil synced and acknowledged; the head of H2
     * renamed in a batch sealed but not acknowledged; a visit with a fix at H3 */
    char sql[1024];
    exec_ok(db, "INSERT INTO batch (author_pk, seq, hash, prev_hash, state, created_at, op_count, "
                "bytes) SELECT sign_pk, 1, randomblob(32), zeroblob(32), 'acknowledged', 1, 1, x'00' "
                "FROM identity WHERE role = 'device'");
    exec_ok(db, "INSERT INTO batch (author_pk, seq, hash, prev_hash, state, created_at, op_count, "
                "bytes) SELECT sign_pk, 2, randomblob(32), zeroblob(32), 'sealed', 2, 1, x'00' "
                "FROM identity WHERE role = 'device'");
    snprintf(sql, sizeof sql,
             "UPDATE household SET address = 'Jl. Lokal No. 5' WHERE id = '%s';"
             "INSERT INTO op (seq, device_id, hlc, kind, entity, target, field, old_value, "
             "new_value, base_rev) VALUES (1, 'dev', 1, 'set', 'household', '%s', 'address', "
             "'x', 'Jl. Lokal No. 5', 1);"
             "UPDATE household SET desil = 10 WHERE id = '%s';"
             "INSERT INTO op (seq, device_id, hlc, kind, entity, target, field, old_value, "
             "new_value, base_rev, batch_seq) VALUES (2, 'dev', 2, 'set', 'household', '%s', "
             "'desil', 1, 10, 1, 1);"
             "UPDATE member SET name = 'Nama Lokal' WHERE id = '%s';"
             "INSERT INTO op (seq, device_id, hlc, kind, entity, target, field, old_value, "
             "new_value, base_rev, batch_seq) VALUES (3, 'dev', 3, 'set', 'member', '%s', "
             "'name', 'x', 'Nama Lokal', 1, 2);"
             "INSERT INTO visit (id, household_id, outcome, visited_at, lat, lon, accuracy_m) "
             "VALUES ('dev-9', '%s', 'found', 1, -6.5, 108.2, 5);",
             e.ids[0], e.ids[0], e.ids[0], e.ids[0], e.member2, e.member2, e.ids[3]);
    exec_ok(db, sql);
    double h3_geo = real1(db, "SELECT g.min_lat FROM household_geo g JOIN household h ON "
                              "h.hh_rowid = g.hh_rowid WHERE h.id = ?1",
                          e.ids[3]);
    char h1_head[256];
    text1(db, "SELECT head_name FROM household WHERE id = ?1", e.ids[1], h1_head, sizeof h1_head);

    CHECK_EQ_INT(pd_prelist_import(s, v2, NULL, &st), PD_OK);
    CHECK(!st.already);
    CHECK_EQ_INT(st.households_added, 1);
    CHECK_EQ_INT(st.households_updated, 2);
    CHECK_EQ_INT(st.households_unchanged, 59 - 1);
    CHECK_EQ_INT(st.members_added, 1);
    CHECK_EQ_INT(st.members_updated, 1);
    CHECK_EQ_INT(st.fields_kept, 2);

    /* H0: rev 2; the unsynced address stays, the acknowledged desil takes the server's value */
    CHECK_EQ_INT(int1(db, "SELECT rev FROM household WHERE id = ?1", e.ids[0]), 2);
    CHECK(strcmp(text1(db, "SELECT address FROM household WHERE id = ?1", e.ids[0], buf,
                       sizeof buf),
                 "Jl. Lokal No. 5") == 0);
    CHECK(int1(db, "SELECT desil FROM household WHERE id = ?1", e.ids[0]) != 10);
    CHECK_EQ_INT(int1(db, "SELECT desil FROM household WHERE id = ?1", e.ids[0]),
                 atoi(h0_desil_v1) == 10 ? 9 : atoi(h0_desil_v1) + 1);
    CHECK(strcmp(text1(db, "SELECT server_value FROM server_diff WHERE entity = 'household' AND "
                           "field = 'address' AND target = ?1",
                       e.ids[0], buf, sizeof buf),
                 "Jl. Server Baru No. 9") == 0);
    CHECK(strcmp(text1(db, "SELECT local_value FROM server_diff WHERE entity = 'household' AND "
                           "field = 'address' AND target = ?1",
                       e.ids[0], buf, sizeof buf),
                 "Jl. Lokal No. 5") == 0);
    CHECK_EQ_INT(int1(db, "SELECT server_rev FROM server_diff WHERE target = ?1", e.ids[0]), 2);
    CHECK_EQ_INT(int1(db, "SELECT count(*) FROM server_diff WHERE field = 'desil' AND target = ?1",
                      e.ids[0]),
                 0);
    /* the search index follows the kept address; the geo index follows the new point */
    CHECK_EQ_INT(int1(db, "SELECT count(*) FROM address_fts WHERE address_fts MATCH ?1", "Lokal"),
                 1);
    CHECK_EQ_INT(int1(db, "SELECT count(*) FROM household_geo g JOIN household h ON "
                          "h.hh_rowid = g.hh_rowid WHERE h.id = ?1 AND g.min_lat <= h.lat AND "
                          "h.lat <= g.max_lat AND g.min_lon <= h.lon AND h.lon <= g.max_lon",
                      e.ids[0]),
                 1);
    /* H1 changed without a rev: untouched */
    CHECK(strcmp(text1(db, "SELECT head_name FROM household WHERE id = ?1", e.ids[1], buf,
                       sizeof buf),
                 h1_head) == 0);
    /* H2's head: the name in a sealed, unacknowledged batch stays; work takes the server's */
    CHECK(strcmp(text1(db, "SELECT name FROM member WHERE id = ?1", e.member2, buf, sizeof buf),
                 "Nama Lokal") == 0);
    CHECK_EQ_INT(int1(db, "SELECT rev FROM member WHERE id = ?1", e.member2), 2);
    CHECK(strcmp(text1(db, "SELECT server_value FROM server_diff WHERE entity = 'member' AND "
                           "field = 'name' AND target = ?1",
                       e.member2, buf, sizeof buf),
                 "Nama Dari Server") == 0);
    /* H3 moved, but its visit's fix keeps the geo index */
    CHECK(fabs(real1(db, "SELECT g.min_lat FROM household_geo g JOIN household h ON "
                         "h.hh_rowid = g.hh_rowid WHERE h.id = ?1",
                     e.ids[3]) -
               h3_geo) < 1e-9);
    /* the new household is there */
    CHECK_EQ_INT(int1(db, "SELECT rev FROM household WHERE id = ?1", "3273011001999999"), 5);

    /* the older package now: refused, nothing changes */
    uint8_t before[32], after[32];
    digest(s, before);
    CHECK_EQ_INT(pd_prelist_import(s, v1, NULL, &st), PD_ERR_STATE);
    CHECK(strstr(pd_store_errmsg(s), "not newer") != NULL);
    digest(s, after);
    CHECK(memcmp(before, after, 32) == 0);
    /* v2 again: a no-op */
    CHECK_EQ_INT(pd_prelist_import(s, v2, NULL, &st), PD_OK);
    CHECK(st.already);
    digest(s, after);
    CHECK(memcmp(before, after, 32) == 0);
    pd_store_close(s);
    free(v1);
    free(v2);
}

static void a_package_failing_late_changes_nothing(void)
{
    pd_store *s = new_store("late");
    REQUIRE_VOID(s != NULL);
    char *v1 = pd_test_path(dir, "l1.pdpl"), *v2 = pd_test_path(dir, "l2.pdpl");
    pd_prelist_gen_options o = {.seed = 6, .households = 50};
    REQUIRE_VOID(pd_prelist_generate_file(v1, "32.73.01.1002", &o, sk, NULL, NULL) == PD_OK);
    REQUIRE_VOID(pd_prelist_import(s, v1, pk, NULL) == PD_OK);
    edit e;
    REQUIRE_VOID(make_newer(v1, v2, &e) == PD_ERR_INVALID); /* the new household is not in 1002 */
    /* build it by hand instead: a valid newer payload whose header claims one member too many */
    size_t len;
    uint8_t *bytes = pd_test_read_file(v1, &len);
    pd_prelist_info info;
    REQUIRE_VOID(pd_prelist_verify_mem(bytes, len, pk, &info, NULL) == PD_OK);
    uLongf plain_len = (uLongf)info.inflated_size;
    uint8_t *plain = malloc(plain_len + 1);
    REQUIRE_VOID(uncompress(plain, &plain_len, bytes + 208, (uLong)(len - 208)) == Z_OK);
    /* bump every rev so that every record would update */
    for (uLongf i = 0; i + 7 < plain_len; i++)
        if (!memcmp(plain + i, "\"rev\":1,", 8))
            plain[i + 6] = '7';
    pd_prelist_info hdr = info;
    hdr.issued_at += 1000;
    hdr.members += 1;
    uint8_t *pkg = NULL;
    size_t pkg_len = 0;
    REQUIRE_VOID(pd_prelist_pack_mem(plain, plain_len, &hdr, sk, &pkg, &pkg_len, NULL) == PD_OK);
    REQUIRE_VOID(pd_test_write_file(v2, pkg, pkg_len) == 0);
    uint8_t before[32], after[32];
    digest(s, before);
    pd_prelist_import_stats st;
    CHECK_EQ_INT(pd_prelist_import(s, v2, NULL, &st), PD_ERR_CORRUPT);
    CHECK(strstr(pd_store_errmsg(s), "header counts") != NULL);
    CHECK_EQ_INT(st.households_updated, 0);
    digest(s, after);
    CHECK(memcmp(before, after, 32) == 0);
    /* with honest counts the same payload updates every record */
    hdr.members -= 1;
    free(pkg);
    REQUIRE_VOID(pd_prelist_pack_mem(plain, plain_len, &hdr, sk, &pkg, &pkg_len, NULL) == PD_OK);
    REQUIRE_VOID(pd_test_write_file(v2, pkg, pkg_len) == 0);
    CHECK_EQ_INT(pd_prelist_import(s, v2, NULL, &st), PD_OK);
    CHECK_EQ_INT(st.households_updated, 50);
    CHECK_EQ_INT(st.members_updated, info.members);
    CHECK_EQ_INT(st.fields_kept, 0);
    free(pkg);
    free(plain);
    free(bytes);
    pd_store_close(s);
    free(v1);
    free(v2);
}

static void the_enrolled_server_key_is_the_pinned_issuer(void)
{
    pd_store *s = new_store("enrolled");
    REQUIRE_VOID(s != NULL);
    sqlite3 *db = pd_store_sqlite(s);
    char *path = pd_test_path(dir, "enrolled.pdpl");
    pd_prelist_gen_options o = {.seed = 8, .households = 20};
    REQUIRE_VOID(pd_prelist_generate_file(path, "32.73.01.1003", &o, sk, NULL, NULL) == PD_OK);
    /* two server keys in the keyring and no settings: ambiguous */
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "INSERT INTO keyring (pk, role, added_at) VALUES (?1, 'server', 1)",
                       -1, &st, NULL);
    sqlite3_bind_blob(st, 1, pk2, 32, SQLITE_STATIC);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_reset(st);
    sqlite3_bind_blob(st, 1, pk, 32, SQLITE_STATIC);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    uint8_t got[32];
    CHECK_EQ_INT(pd_prelist_pinned_issuer(s, got), PD_ERR_STATE);
    CHECK_EQ_INT(pd_prelist_import(s, path, NULL, NULL), PD_ERR_STATE);
    /* enrolment's settings row decides */
    sqlite3_prepare_v2(db, "INSERT INTO settings (key, value) VALUES ('server_sign_pk', ?1)", -1,
                       &st, NULL);
    sqlite3_bind_blob(st, 1, pk, 32, SQLITE_STATIC);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    CHECK_EQ_INT(pd_prelist_pinned_issuer(s, got), PD_OK);
    CHECK(memcmp(got, pk, 32) == 0);
    pd_prelist_import_stats stats;
    CHECK_EQ_INT(pd_prelist_import(s, path, NULL, &stats), PD_OK);
    CHECK(!stats.pinned && stats.households_added == 20);
    CHECK_EQ_INT(pd_prelist_import(s, path, pk2, &stats), PD_ERR_DENIED);
    pd_store_close(s);
    free(path);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    dir = pd_test_tmpdir("prelist-import");
    pd_fixture_issuer(1, pk, sk);
    pd_fixture_issuer(2, pk2, sk2);
    RUN(first_import_fills_the_store_and_pins_the_issuer);
    RUN(newer_package_respects_local_changes);
    RUN(a_package_failing_late_changes_nothing);
    RUN(the_enrolled_server_key_is_the_pinned_issuer);
    pd_test_rmtree(dir);
    free(dir);
    return pd_test_finish();
}
