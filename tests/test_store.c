/*
 * test_store.c — the encrypted device store (core/store.c) end to end on real files: what is
 * written comes back after a reopen and is nowhere in the clear (database, WAL, journal, key
 * file) while a plain SQLite file doing the same shows it; wrong PINs change nothing but the
 * counter; a PIN change leaves store.db byte-identical; recovery and the lockout; a newer schema
 * is refused untouched; migrations are all-or-nothing; the identity and transaction helpers.
 */
#include "internal.h"
#include "keyfile.h"
#include "schema.h"
#include "store_internal.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ENSURE(cond)                                                                               \
    do {                                                                                           \
        pd_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            pd_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: ENSURE failed: %s\n", __FILE__, __LINE__, #cond);              \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static const char *PIN = "135790";
static const char *NAME = "Siti Nurhaliza Binti Zulkarnain";
static const char *NIK = "3273014508900001";

static void exec_ok(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "   %s: %s\n", sql, msg ? msg : sqlite3_errstr(rc));
    CHECK_EQ_INT(rc, SQLITE_OK);
    sqlite3_free(msg);
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One household with its head, the name and NIK we then look for in the raw files. */
static void insert_household(sqlite3 *db, const char *hh_id)
{
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(sqlite3_prepare_v2(db,
                                    "INSERT INTO household (id, prov, kab, kec, desa, address, "
                                    "head_name, member_count) VALUES (?1, '32', '32.73', "
                                    "'32.73.01', '32.73.01.1001', 'Jl. Merdeka 17', ?2, 1)",
                                    -1, &st, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(st, 1, hh_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, NAME, -1, SQLITE_STATIC);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    char member_id[64];
    snprintf(member_id, sizeof member_id, "%s01", hh_id);
    CHECK_EQ_INT(sqlite3_prepare_v2(db,
                                    "INSERT INTO member (id, household_id, member_no, name, nik, "
                                    "sex, relationship) VALUES (?1, ?2, 1, ?3, ?4, 2, 1)",
                                    -1, &st, NULL),
                 SQLITE_OK);
    sqlite3_bind_text(st, 1, member_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, hh_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, NAME, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, NIK, -1, SQLITE_STATIC);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

static bool has_secret(const char *path)
{
    return pd_test_file_contains(path, NAME, strlen(NAME)) ||
           pd_test_file_contains(path, NIK, strlen(NIK));
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static char *suffixed(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *p = malloc(n);
    snprintf(p, n, "%s%s", path, suffix);
    return p;
}

/*
 * Write the household through db and look for its name and NIK in the WAL (kept alive: no
 * automatic checkpoint), in the database after a checkpoint, and in the rollback journal of an
 * open transaction that rewrites those pages. `expect` says whether they should be visible.
 */
static void plaintext_flow(sqlite3 *db, const char *db_path, bool expect)
{
    char *wal = suffixed(db_path, "-wal");
    char *journal = suffixed(db_path, "-journal");
    exec_ok(db, "PRAGMA journal_mode = WAL");
    exec_ok(db, "PRAGMA wal_autocheckpoint = 0");
    exec_ok(db, "BEGIN");
    insert_household(db, "3273010001000001");
    exec_ok(db, "COMMIT");
    CHECK(file_size(wal) > 4096);
    CHECK_EQ_INT(has_secret(wal), expect);
    exec_ok(db, "PRAGMA wal_checkpoint(TRUNCATE)");
    CHECK_EQ_INT(has_secret(db_path), expect);

    exec_ok(db, "PRAGMA journal_mode = DELETE");
    exec_ok(db, "BEGIN IMMEDIATE");
    exec_ok(db, "UPDATE member SET name = 'Dewi', nik = '3273014508900002'");
    exec_ok(db, "UPDATE household SET head_name = 'Dewi'");
    CHECK(file_size(journal) > 4096); /* the old pages are in it, and the test means something */
    CHECK_EQ_INT(has_secret(journal), expect);
    exec_ok(db, "ROLLBACK");
    exec_ok(db, "PRAGMA journal_mode = WAL");
    free(wal);
    free(journal);
}

static void read_back(pd_store *s)
{
    sqlite3_stmt *st = NULL;
    sqlite3 *db = pd_store_sqlite(s);
    CHECK_EQ_INT(sqlite3_prepare_v2(db,
                                    "SELECT m.name, m.nik, h.head_name FROM member m JOIN "
                                    "household h ON h.id = m.household_id",
                                    -1, &st, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    const char *name = (const char *)sqlite3_column_text(st, 0);
    const char *nik = (const char *)sqlite3_column_text(st, 1);
    CHECK(name && strcmp(name, NAME) == 0);
    CHECK(nik && strcmp(nik, NIK) == 0);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

/* A home with a store holding one household, closed. */
static char *make_store(const char *tag)
{
    char *home = pd_test_tmpdir(tag);
    pd_store *s = NULL;
    pd_error err = {0};
    int rc = pd_store_create(&s, home, PIN, &PD_KDF_TEST, &err);
    if (rc != PD_OK)
        fprintf(stderr, "   create: %s\n", err.msg);
    CHECK_EQ_INT(rc, PD_OK);
    if (s)
        insert_household(pd_store_sqlite(s), "3273010001000001");
    pd_store_close(s);
    return home;
}

static pd_store *open_ok(const char *home, const char *pin)
{
    pd_store *s = NULL;
    pd_error err = {0};
    int rc = pd_store_open(&s, home, pin, &err);
    if (rc != PD_OK)
        fprintf(stderr, "   open: %s\n", err.msg);
    CHECK_EQ_INT(rc, PD_OK);
    return s;
}

static int open_code(const char *home, const char *pin, pd_error *err)
{
    pd_store *s = NULL;
    int rc = pd_store_open(&s, home, pin, err);
    CHECK(rc == PD_OK ? s != NULL : s == NULL);
    pd_store_close(s);
    return rc;
}

static bool same_file(const char *path, const uint8_t *bytes, size_t n)
{
    size_t m;
    uint8_t *now = pd_test_read_file(path, &m);
    bool same = now && m == n && memcmp(now, bytes, n) == 0;
    free(now);
    return same;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void create_write_reopen_reads_back_with_private_files(void)
{
    char *home = pd_test_tmpdir("store");
    char *sub = pd_test_path(home, "a/b");
    pd_store *s = NULL;
    pd_error err = {0};
    CHECK_EQ_INT(pd_store_create(&s, sub, PIN, &PD_KDF_TEST, &err), PD_OK);
    ENSURE(s != NULL);
    CHECK_EQ_INT(pd_store_schema_version(s), pd_schema_device_latest());
    CHECK(pd_schema_device_latest() >= 1);
    insert_household(pd_store_sqlite(s), "3273010001000001");
    struct stat st;
    char *wal = pd_test_path(sub, "store.db-wal"), *shm = pd_test_path(sub, "store.db-shm");
    CHECK(stat(wal, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(stat(shm, &st) == 0 && (st.st_mode & 0777) == 0600);
    free(wal);
    free(shm);
    char device_id[32];
    snprintf(device_id, sizeof device_id, "%s", pd_store_device_id(s));
    CHECK_EQ_INT(strlen(device_id), 16);
    CHECK_EQ_INT(strspn(device_id, "0123456789abcdef"), 16);
    CHECK(strcmp(pd_store_home(s) + strlen(pd_store_home(s)) - 4, "/a/b") == 0);
    pd_store_close(s);

    char *db = pd_test_path(sub, "store.db"), *key = pd_test_path(sub, "store.key");
    CHECK(stat(sub, &st) == 0 && (st.st_mode & 0777) == 0700);
    CHECK(stat(db, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK(stat(key, &st) == 0 && (st.st_mode & 0777) == 0600);

    s = open_ok(sub, PIN);
    ENSURE(s != NULL);
    read_back(s);
    CHECK(strcmp(pd_store_device_id(s), device_id) == 0);
    sqlite3 *conn = pd_store_sqlite(s);
    CHECK_EQ_INT(query_int(conn, "SELECT count(*) FROM identity WHERE role = 'device' AND "
                                 "length(sign_pk) = 32 AND length(sign_sk) = 64"),
                 1);
    CHECK_EQ_INT(query_int(conn, "PRAGMA foreign_keys"), 1);
    CHECK_EQ_INT(query_int(conn, "PRAGMA secure_delete"), 1);
    CHECK_EQ_INT(query_int(conn, "PRAGMA temp_store"), 2);
    CHECK_EQ_INT(query_int(conn, "PRAGMA synchronous"), 2);
    CHECK_EQ_INT(query_int(conn, "PRAGMA page_size"), PD_PAGE_SIZE);
    CHECK_EQ_INT(query_int(conn, "PRAGMA cache_size"), -PD_STORE_CACHE_KIB);
    pd_store_close(s);
    CHECK(!has_secret(db));
    CHECK(!has_secret(key));
    free(db);
    free(key);
    free(sub);
    pd_test_rmtree(home);
    free(home);
}

static void no_plaintext_in_db_wal_or_journal(void)
{
    char *home = pd_test_tmpdir("store");
    pd_store *s = NULL;
    pd_error err = {0};
    CHECK_EQ_INT(pd_store_create(&s, home, PIN, &PD_KDF_TEST, &err), PD_OK);
    ENSURE(s != NULL);
    char *db = pd_test_path(home, "store.db");
    plaintext_flow(pd_store_sqlite(s), db, false);
    pd_store_close(s);
    CHECK(!has_secret(db));
    char *key = pd_test_path(home, "store.key");
    CHECK(!has_secret(key));

    /* the same flow on plain SQLite finds them everywhere: the search works */
    char *plain = pd_test_path(home, "plain.db");
    sqlite3 *p = NULL;
    ENSURE(sqlite3_open(plain, &p) == SQLITE_OK);
    CHECK_EQ_INT(pd_schema_apply(p, pd_schema_device, pd_schema_device_count, &err), PD_OK);
    plaintext_flow(p, plain, true);
    sqlite3_close(p);
    free(plain);
    free(key);
    free(db);
    pd_test_rmtree(home);
    free(home);
}

static void wrong_pin_changes_nothing_but_the_counter(void)
{
    char *home = make_store("store");
    char *db = pd_test_path(home, "store.db"), *key = pd_test_path(home, "store.key");
    size_t ndb, nkey;
    uint8_t *db0 = pd_test_read_file(db, &ndb), *key0 = pd_test_read_file(key, &nkey);
    ENSURE(db0 && key0 && nkey == PD_KEYFILE_BYTES);
    pd_error err = {0};
    CHECK_EQ_INT(open_code(home, "000000", &err), PD_ERR_BADPIN);
    CHECK(strstr(err.msg, "wrong PIN") != NULL);
    CHECK_EQ_INT(open_code(home, "", &err), PD_ERR_BADPIN);
    CHECK(same_file(db, db0, ndb));
    size_t n;
    uint8_t *key1 = pd_test_read_file(key, &n);
    CHECK(key1 && n == nkey);
    /* bytes 252..255 are the counter, 256..271 the checksum over it: all else identical */
    CHECK(key1 && memcmp(key1, key0, 252) == 0);
    pd_keyfile kf;
    CHECK_EQ_INT(pd_keyfile_read(&kf, key, &err), PD_OK);
    CHECK_EQ_INT(kf.failures, 2);
    CHECK(!has_secret(key));
    free(key1);

    /* the right PIN opens and resets the counter */
    pd_store *s = open_ok(home, PIN);
    pd_store_close(s);
    CHECK_EQ_INT(pd_keyfile_read(&kf, key, &err), PD_OK);
    CHECK_EQ_INT(kf.failures, 0);
    free(db0);
    free(key0);
    free(db);
    free(key);
    pd_test_rmtree(home);
    free(home);
}

static void pin_change_rewraps_without_touching_the_database(void)
{
    char *home = make_store("store");
    char *db = pd_test_path(home, "store.db");
    size_t ndb;
    uint8_t *db0 = pd_test_read_file(db, &ndb);
    ENSURE(db0 != NULL);
    pd_error err = {0};
    CHECK_EQ_INT(pd_store_change_pin(home, "999999", "2468", NULL, &err), PD_ERR_BADPIN);
    CHECK_EQ_INT(pd_store_change_pin(home, PIN, "12", NULL, &err), PD_ERR_INVALID);
    CHECK(strstr(err.msg, "new PIN") != NULL);
    CHECK_EQ_INT(pd_store_change_pin(home, PIN, "swordfish-2468", NULL, &err), PD_OK);
    CHECK(same_file(db, db0, ndb));
    CHECK_EQ_INT(open_code(home, PIN, &err), PD_ERR_BADPIN);
    pd_store *s = open_ok(home, "swordfish-2468");
    if (s)
        read_back(s);
    pd_store_close(s);
    free(db0);
    free(db);
    pd_test_rmtree(home);
    free(home);
}

static void recovery_key_sets_a_new_pin(void)
{
    char *home = make_store("store");
    uint8_t pk[32], sk[32], pk2[32], sk2[32];
    crypto_box_keypair(pk, sk);
    crypto_box_keypair(pk2, sk2);
    pd_error err = {0};
    /* nothing to recover with yet */
    CHECK_EQ_INT(pd_store_recover(home, pk, sk, "4321", NULL, &err), PD_ERR_NOTFOUND);
    pd_store *s = open_ok(home, PIN);
    ENSURE(s != NULL);
    CHECK_EQ_INT(pd_store_set_recovery(s, pk), PD_OK);
    pd_store_close(s);
    char *key = pd_test_path(home, "store.key");
    size_t nkey;
    uint8_t *key0 = pd_test_read_file(key, &nkey);
    CHECK_EQ_INT(pd_store_recover(home, pk2, sk2, "4321", NULL, &err), PD_ERR_DENIED);
    CHECK_EQ_INT(pd_store_recover(home, pk, sk2, "4321", NULL, &err), PD_ERR_INVALID);
    CHECK(key0 && same_file(key, key0, nkey));
    CHECK_EQ_INT(pd_store_recover(home, pk, sk, "4321", &PD_KDF_TEST, &err), PD_OK);
    CHECK_EQ_INT(open_code(home, PIN, &err), PD_ERR_BADPIN);
    s = open_ok(home, "4321");
    if (s)
        read_back(s);
    pd_store_close(s);
    free(key0);
    free(key);
    pd_test_rmtree(home);
    free(home);
}

static void ten_wrong_pins_lock_a_recoverable_store(void)
{
    char *home = make_store("store");
    uint8_t pk[32], sk[32];
    crypto_box_keypair(pk, sk);
    pd_store *s = open_ok(home, PIN);
    ENSURE(s != NULL);
    CHECK_EQ_INT(pd_store_set_recovery(s, pk), PD_OK);
    pd_store_close(s);
    pd_error err = {0};
    for (int i = 1; i < PD_KEYFILE_ERASE_AFTER; i++)
        CHECK_EQ_INT(open_code(home, "000000", &err), PD_ERR_BADPIN);
    CHECK_EQ_INT(open_code(home, "000000", &err), PD_ERR_LOCKED);
    CHECK_EQ_INT(open_code(home, PIN, &err), PD_ERR_LOCKED);
    CHECK(strstr(err.msg, "recovery") != NULL);
    CHECK_EQ_INT(pd_store_change_pin(home, PIN, "5555", NULL, &err), PD_ERR_LOCKED);
    CHECK_EQ_INT(pd_store_recover(home, pk, sk, "5555", NULL, &err), PD_OK);
    s = open_ok(home, "5555");
    if (s)
        read_back(s);
    pd_store_close(s);
    pd_test_rmtree(home);
    free(home);
}

static void wrong_pins_never_erase_without_recovery(void)
{
    char *home = make_store("store");
    pd_error err = {0};
    for (int i = 1; i <= PD_KEYFILE_ERASE_AFTER + 2; i++)
        CHECK_EQ_INT(open_code(home, "000000", &err), PD_ERR_BADPIN);
    pd_store *s = open_ok(home, PIN);
    if (s)
        read_back(s);
    pd_store_close(s);
    pd_test_rmtree(home);
    free(home);
}

static void newer_schema_is_refused_untouched(void)
{
    char *home = make_store("store");
    pd_store *s = open_ok(home, PIN);
    ENSURE(s != NULL);
    exec_ok(pd_store_sqlite(s), "PRAGMA user_version = 99");
    pd_store_close(s);
    char *db = pd_test_path(home, "store.db");
    size_t ndb;
    uint8_t *db0 = pd_test_read_file(db, &ndb);
    pd_error err = {0};
    CHECK_EQ_INT(open_code(home, PIN, &err), PD_ERR_VERSION);
    char want[128];
    snprintf(want, sizeof want,
             "store.db is schema version 99; this pendata knows up to %d: "
             "update pendata",
             pd_schema_device_latest());
    CHECK(strcmp(err.msg, want) == 0);
    if (strcmp(err.msg, want) != 0)
        fprintf(stderr, "   got '%s'\n", err.msg);
    CHECK(db0 && same_file(db, db0, ndb));
    free(db0);
    free(db);
    pd_test_rmtree(home);
    free(home);
}

static bool table_exists(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    bool found = false;
    if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_schema WHERE name = ?1", -1, &st, NULL) ==
        SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        found = sqlite3_step(st) == SQLITE_ROW;
    }
    sqlite3_finalize(st);
    return found;
}

static void migrations_are_all_or_nothing(void)
{
    char *home = pd_test_tmpdir("store");
    char *path = pd_test_path(home, "plain.db");
    sqlite3 *db = NULL;
    ENSURE(sqlite3_open(path, &db) == SQLITE_OK);
    pd_error err = {0};
    const pd_migration broken[] = {
        {1, "001_a.sql", "CREATE TABLE a (x); INSERT INTO a VALUES (1);"},
        {2, "002_b.sql", "CREATE TABLE b (x); INSERT INTO no_such_table VALUES (1);"},
    };
    CHECK(pd_schema_apply(db, broken, 2, &err) != PD_OK);
    CHECK(strstr(err.msg, "002_b.sql") != NULL);
    CHECK(strstr(err.msg, "no_such_table") != NULL);
    CHECK_EQ_INT(query_int(db, "PRAGMA user_version"), 0);
    CHECK(!table_exists(db, "a"));
    CHECK(!table_exists(db, "b"));
    CHECK(sqlite3_get_autocommit(db));

    const pd_migration unordered[] = {{2, "002.sql", "SELECT 1"}, {1, "001.sql", "SELECT 1"}};
    CHECK_EQ_INT(pd_schema_apply(db, unordered, 2, &err), PD_ERR_INTERNAL);
    const pd_migration commits[] = {{1, "001.sql", "CREATE TABLE c (x); COMMIT;"}};
    CHECK_EQ_INT(pd_schema_apply(db, commits, 1, &err), PD_ERR_INTERNAL);
    sqlite3_close(db);

    /* on a store at the latest version: a later good migration and a failing one */
    pd_store *s = NULL;
    char *sub = pd_test_path(home, "store");
    CHECK_EQ_INT(pd_store_create(&s, sub, PIN, &PD_KDF_TEST, &err), PD_OK);
    ENSURE(s != NULL);
    int latest = pd_schema_device_latest();
    pd_migration more[3] = {
        {latest, "current.sql", "SELECT 1"},
        {latest + 1, "next_ok.sql", "CREATE TABLE extra_a (x)"},
        {latest + 2, "next_bad.sql", "CREATE TABLE extra_b (x); CREATE TABLE extra_a (y)"},
    };
    sqlite3 *conn = pd_store_sqlite(s);
    CHECK(pd_schema_apply(conn, more, 3, &err) != PD_OK);
    CHECK(strstr(err.msg, "next_bad.sql") != NULL);
    CHECK_EQ_INT(query_int(conn, "PRAGMA user_version"), latest);
    CHECK(!table_exists(conn, "extra_a"));
    CHECK(!table_exists(conn, "extra_b"));
    CHECK_EQ_INT(pd_schema_apply(conn, more, 2, &err), PD_OK);
    CHECK_EQ_INT(query_int(conn, "PRAGMA user_version"), latest + 1);
    CHECK(table_exists(conn, "extra_a"));
    /* already there: nothing to do; the store's own list is now older than the file */
    CHECK_EQ_INT(pd_schema_apply(conn, more, 2, &err), PD_OK);
    CHECK_EQ_INT(pd_schema_apply(conn, more, 1, &err), PD_ERR_VERSION);
    pd_store_close(s);
    free(sub);
    free(path);
    pd_test_rmtree(home);
    free(home);
}

static void create_refuses_bad_input_and_existing_stores(void)
{
    char *home = make_store("store");
    pd_store *s = NULL;
    pd_error err = {0};
    CHECK_EQ_INT(pd_store_create(&s, home, PIN, &PD_KDF_TEST, &err), PD_ERR_EXISTS);
    CHECK(s == NULL);
    s = open_ok(home, PIN); /* the existing store is intact */
    if (s)
        read_back(s);
    pd_store_close(s);
    s = NULL;

    char *fresh = pd_test_path(home, "fresh");
    CHECK_EQ_INT(pd_store_create(&s, fresh, "12", &PD_KDF_TEST, &err), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_store_create(&s, fresh, NULL, &PD_KDF_TEST, &err), PD_ERR_INVALID);
    const pd_kdf_params silly = {0, 8192};
    CHECK_EQ_INT(pd_store_create(&s, fresh, PIN, &silly, &err), PD_ERR_INVALID);
    CHECK(strstr(err.msg, "opslimit") != NULL);
    CHECK_EQ_INT(pd_store_create(&s, "", PIN, &PD_KDF_TEST, &err), PD_ERR_INVALID);
    CHECK(!pd_test_file_exists(fresh));
    CHECK_EQ_INT(open_code(fresh, PIN, &err), PD_ERR_NOTFOUND);

    /* a store.db left without its key file is not overwritten */
    char *orphan = pd_test_path(home, "orphan");
    mkdir(orphan, 0700);
    char *odb = pd_test_path(orphan, "store.db");
    pd_test_write_file(odb, "x", 1);
    CHECK_EQ_INT(pd_store_create(&s, orphan, PIN, &PD_KDF_TEST, &err), PD_ERR_EXISTS);
    CHECK(same_file(odb, (const uint8_t *)"x", 1));
    free(odb);
    free(orphan);
    free(fresh);
    pd_test_rmtree(home);
    free(home);
}

static void another_stores_database_is_refused(void)
{
    char *a = make_store("store"), *b = make_store("store");
    char *adb = pd_test_path(a, "store.db"), *bdb = pd_test_path(b, "store.db");
    size_t n;
    uint8_t *bytes = pd_test_read_file(bdb, &n);
    ENSURE(bytes != NULL);
    CHECK_EQ_INT(pd_test_write_file(adb, bytes, n), 0);
    pd_error err = {0};
    CHECK_EQ_INT(open_code(a, PIN, &err), PD_ERR_CORRUPT);
    CHECK(strstr(err.msg, "store.db") != NULL);
    if (err.code != PD_ERR_CORRUPT)
        fprintf(stderr, "   got '%s'\n", err.msg);
    free(bytes);
    free(adb);
    free(bdb);
    pd_test_rmtree(a);
    pd_test_rmtree(b);
    free(a);
    free(b);
}

static void roles_get_their_own_key_pairs(void)
{
    char *home = make_store("store");
    pd_store *s = open_ok(home, PIN);
    ENSURE(s != NULL);
    uint8_t pk[PD_PUBKEY_BYTES] = {0};
    CHECK_EQ_INT(pd_store_add_role(s, "supervisor", pk), PD_OK);
    CHECK(!sodium_is_zero(pk, sizeof pk));
    CHECK_EQ_INT(pd_store_add_role(s, "supervisor", NULL), PD_ERR_EXISTS);
    CHECK(strstr(pd_store_errmsg(s), "supervisor") != NULL);
    CHECK_EQ_INT(pd_store_add_role(s, "device", NULL), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_store_add_role(s, "root'; DROP TABLE identity; --", NULL), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_store_errcode(s), PD_ERR_INVALID);
    CHECK_EQ_INT(query_int(pd_store_sqlite(s), "SELECT count(*) FROM identity"), 2);
    pd_store_close(s);
    pd_test_rmtree(home);
    free(home);
}

static void nested_transactions_roll_back_only_the_inner_part(void)
{
    char *home = make_store("store");
    pd_store *s = open_ok(home, PIN);
    ENSURE(s != NULL);
    sqlite3 *db = pd_store_sqlite(s);
    CHECK_EQ_INT(pd_store_begin(s), PD_OK);
    exec_ok(db, "INSERT INTO settings VALUES ('outer', 1)");
    CHECK_EQ_INT(pd_store_begin(s), PD_OK);
    exec_ok(db, "INSERT INTO settings VALUES ('inner', 1)");
    pd_store_rollback(s);
    CHECK_EQ_INT(pd_store_begin(s), PD_OK);
    exec_ok(db, "INSERT INTO settings VALUES ('inner2', 1)");
    CHECK_EQ_INT(pd_store_commit(s), PD_OK);
    CHECK_EQ_INT(pd_store_commit(s), PD_OK);
    CHECK(sqlite3_get_autocommit(db));
    CHECK_EQ_INT(query_int(db, "SELECT count(*) FROM settings WHERE key IN "
                               "('outer','inner','inner2')"),
                 2);
    CHECK_EQ_INT(query_int(db, "SELECT count(*) FROM settings WHERE key = 'inner'"), 0);
    CHECK_EQ_INT(pd_store_commit(s), PD_ERR_INTERNAL);
    CHECK_EQ_INT(pd_store_fail(s, PD_ERR_INVALID, "household %s: bad", "x"), PD_ERR_INVALID);
    CHECK(strcmp(pd_store_errmsg(s), "household x: bad") == 0);
    pd_store_close(s);
    pd_store_close(NULL);
    pd_test_rmtree(home);
    free(home);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    RUN(create_write_reopen_reads_back_with_private_files);
    RUN(no_plaintext_in_db_wal_or_journal);
    RUN(wrong_pin_changes_nothing_but_the_counter);
    RUN(pin_change_rewraps_without_touching_the_database);
    RUN(recovery_key_sets_a_new_pin);
    RUN(ten_wrong_pins_lock_a_recoverable_store);
    RUN(wrong_pins_never_erase_without_recovery);
    RUN(newer_schema_is_refused_untouched);
    RUN(migrations_are_all_or_nothing);
    RUN(create_refuses_bad_input_and_existing_stores);
    RUN(another_stores_database_is_refused);
    RUN(roles_get_their_own_key_pairs);
    RUN(nested_transactions_roll_back_only_the_inner_part);
    return pd_test_finish();
}
