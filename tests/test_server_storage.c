/*
 * test_server_storage.c — the server below HTTP: the storage interface's SQLite backend (schema in
 * step with the column tables, enrolment codes, nonces, field changes, area filters), the key
 * file (never overwritten, refused when open to others or damaged), operator acts refusing bad
 * input without storing anything, prelist loading (generated, from a package with the right
 * and the wrong issuer key, idempotent), and readers beside the writer.
 */
#include "pd_prelist.h"
#include "pd_server.h"
#include "srv_internal.h"
#include "storage.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REQUIRE_V(cond)                                                                            \
    do {                                                                                           \
        pd_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);             \
            pd_test_failures++;                                                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static char *dir;
static char url[4200], path[4100];

static void test_schema_has_every_column_of_the_record_tables(void)
{
    pd_storage *st = NULL;
    pd_error err = {0};
    REQUIRE_V(pd_storage_open(&st, url, &err) == PD_OK);
    pd_storage_close(st);
    sqlite3 *db;
    REQUIRE_V(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    for (int e = 0; e < PD_ENT__COUNT; e++) {
        size_t n;
        const pd_column *cols = pd_entity_columns((pd_entity)e, &n);
        for (size_t i = 0; i < n; i++) {
            sqlite3_stmt *q;
            char sql[256];
            snprintf(sql, sizeof sql,
                     "SELECT type, \"notnull\" FROM pragma_table_info('%s') "
                     "WHERE name = ?1",
                     pd_entity_name((pd_entity)e));
            REQUIRE_V(sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK);
            sqlite3_bind_text(q, 1, cols[i].name, -1, SQLITE_STATIC);
            bool found = sqlite3_step(q) == SQLITE_ROW;
            if (!found)
                fprintf(stderr, "  missing column %s.%s\n", pd_entity_name((pd_entity)e),
                        cols[i].name);
            CHECK(found);
            if (found) {
                const char *t = (const char *)sqlite3_column_text(q, 0);
                const char *want = cols[i].type == PD_VAL_INT    ? "INTEGER"
                                   : cols[i].type == PD_VAL_REAL ? "REAL"
                                   : cols[i].type == PD_VAL_TEXT ? "TEXT"
                                                                 : "BLOB";
                CHECK(!strcmp(t, want));
                CHECK_EQ_INT(sqlite3_column_int(q, 1), cols[i].nullable ? 0 : 1);
            }
            sqlite3_finalize(q);
        }
    }
    /* and the device's columns are a superset: a delta row applies to a device as is */
    sqlite3_close(db);
    CHECK_EQ_INT(pd_entity_column(PD_ENT_HOUSEHOLD, "no_such"), -1);
    CHECK_EQ_INT(pd_entity_column(PD_ENT_MEMBER, "id"), 0);
}

static void test_key_file_is_never_overwritten_and_checked(void)
{
    pd_error err = {0};
    CHECK_EQ_INT(pd_server_init(url, &err), PD_ERR_EXISTS);
    char keyfile[4200];
    snprintf(keyfile, sizeof keyfile, "%s.key", path);
    struct stat sb;
    REQUIRE_V(stat(keyfile, &sb) == 0);
    CHECK_EQ_INT(sb.st_mode & 0777, 0600);
    size_t len;
    uint8_t *orig = pd_test_read_file(keyfile, &len);
    REQUIRE_V(orig && len == PD_SERVER_KEY_FILE_BYTES);

    pd_server *srv = NULL;
    chmod(keyfile, 0644);
    CHECK_EQ_INT(pd_server_open(&srv, url, NULL, &err), PD_ERR_DENIED);
    CHECK(strstr(err.msg, "chmod 600"));
    chmod(keyfile, 0600);
    CHECK_EQ_INT(pd_test_flip_bit(keyfile, 20, 3), 0);
    CHECK_EQ_INT(pd_server_open(&srv, url, NULL, &err), PD_ERR_CORRUPT);
    CHECK(srv == NULL);
    CHECK_EQ_INT(pd_test_write_file(keyfile, orig, len - 1), 0);
    chmod(keyfile, 0600);
    CHECK_EQ_INT(pd_server_open(&srv, url, NULL, &err), PD_ERR_CORRUPT);
    CHECK_EQ_INT(pd_test_write_file(keyfile, orig, len), 0);
    chmod(keyfile, 0600);
    CHECK_EQ_INT(pd_server_open(&srv, url, NULL, &err), PD_OK);
    pd_server_close(srv);
    free(orig);

    CHECK_EQ_INT(pd_server_open(&srv, "postgres://db/pendata", NULL, &err), PD_ERR_INVALID);
    char missing[4200];
    snprintf(missing, sizeof missing, "sqlite:%s/none.db", dir);
    CHECK_EQ_INT(pd_server_open(&srv, missing, NULL, &err), PD_ERR_NOTFOUND);
}

static int64_t user_count(pd_server *srv)
{
    pd_server_status s;
    return pd_server_get_status(srv, &s) == PD_OK ? s.users : -1;
}

static void test_operator_acts_refuse_bad_input_and_store_nothing(void)
{
    pd_server *srv = NULL;
    pd_error err = {0};
    REQUIRE_V(pd_server_open(&srv, url, NULL, &err) == PD_OK);
    pd_server_user sup = {.id = "S9", .role = "supervisor", .name = "Sri", .area = "32.73.01"};
    REQUIRE_V(pd_server_user_add(srv, &sup) == PD_OK);
    int64_t before = user_count(srv);
    const struct {
        pd_server_user u;
        int code;
        const char *msg;
    } bad[] = {
        {{.id = "a b", .role = "enumerator", .name = "X", .area = "32.73.01"},
         PD_ERR_INVALID,
         "user id"},
        {{.id = "E9", .role = "boss", .name = "X", .area = "32.73.01"}, PD_ERR_INVALID, "role"},
        {{.id = "E9", .role = "enumerator", .name = "bad\x01name", .area = "32.73.01"},
         PD_ERR_INVALID,
         "name"},
        {{.id = "E9", .role = "enumerator", .name = "\xc3\x28", .area = "32.73.01"},
         PD_ERR_INVALID,
         "name"},
        {{.id = "E9", .role = "enumerator", .name = "X", .area = "99.99.99"},
         PD_ERR_INVALID,
         "not a real area"},
        {{.id = "E9", .role = "enumerator", .name = "X", .area = "32.73.01,"},
         PD_ERR_INVALID,
         "comma"},
        {{.id = "E9", .role = "enumerator", .name = "X", .area = "32.73.01'; DROP TABLE users"},
         PD_ERR_INVALID,
         "dotted"},
        {{.id = "E9", .role = "enumerator", .name = "X"}, PD_ERR_INVALID, "needs an area"},
        {{.id = "E9",
          .role = "enumerator",
          .name = "X",
          .area = "32.73.01",
          .supervisor_id = "NOPE"},
         PD_ERR_NOTFOUND,
         "does not exist"},
        {{.id = "E9",
          .role = "enumerator",
          .name = "X",
          .area = "32.73.01",
          .supervisor_id = "S9x"},
         PD_ERR_NOTFOUND,
         "does not exist"},
        {{.id = "S9", .role = "supervisor", .name = "again", .area = "32.73.01"},
         PD_ERR_EXISTS,
         "already exists"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = pd_server_user_add(srv, &bad[i].u);
        CHECK_EQ_INT(rc, bad[i].code);
        if (!strstr(pd_server_errmsg(srv), bad[i].msg))
            fprintf(stderr, "  case %zu: '%s'\n", i, pd_server_errmsg(srv));
        CHECK(strstr(pd_server_errmsg(srv), bad[i].msg));
    }
    pd_server_user e = {
        .id = "E9", .role = "enumerator", .name = "X", .area = "32.73.01", .supervisor_id = "E9"};
    CHECK_EQ_INT(pd_server_user_add(srv, &e), PD_ERR_NOTFOUND);
    CHECK_EQ_INT(user_count(srv), before);

    char code[PD_ENROLL_CODE_LEN + 1];
    CHECK_EQ_INT(pd_server_enroll_code(srv, "NOPE", 0, code), PD_ERR_NOTFOUND);
    CHECK(code[0] == '\0');
    CHECK_EQ_INT(pd_server_enroll_code(srv, "../x", 0, code), PD_ERR_INVALID);
    pd_server_close(srv);
}

static void test_enrolment_codes_hash_take_and_expire(void)
{
    uint8_t h1[32], h2[32];
    CHECK(srv_code_hash("K7QF-3M9X-TR2W", h1));
    CHECK(srv_code_hash("k7qf3m9xtr2w", h2));
    CHECK(!memcmp(h1, h2, 32));
    CHECK(srv_code_hash("K7QF-3M9X-TR2W", h1) && srv_code_hash("K7QF 3M9X TR2W", h2) &&
          !memcmp(h1, h2, 32));
    CHECK(srv_code_hash("00II-LLOO-0000", h1) && srv_code_hash("0011-1100-0000", h2) &&
          !memcmp(h1, h2, 32));
    CHECK(!srv_code_hash("K7QF-3M9X-TR2", h1));
    CHECK(!srv_code_hash("K7QF-3M9X-TR2WX", h1));
    CHECK(!srv_code_hash("K7QF-3M9X-TR2U", h1)); /* U is not in the alphabet */

    pd_storage *st = NULL;
    pd_error err = {0};
    REQUIRE_V(pd_storage_open(&st, url, &err) == PD_OK);
    srv_code_hash("AAAA-BBBB-CCCC", h1);
    REQUIRE_V(st->ops->begin(st) == PD_OK);
    CHECK_EQ_INT(st->ops->code_add(st, h1, "S9", 1000, 2000), PD_OK);
    pd_srv_code_state state;
    char user[PD_SRV_ID_MAX + 1];
    CHECK_EQ_INT(st->ops->code_take(st, h1, 2000, "d1", &state, user), PD_OK);
    CHECK_EQ_INT(state, PD_CODE_EXPIRED);
    CHECK_EQ_INT(st->ops->code_take(st, h1, 1500, "d1", &state, user), PD_OK);
    CHECK_EQ_INT(state, PD_CODE_OK);
    CHECK(!strcmp(user, "S9"));
    CHECK_EQ_INT(st->ops->code_take(st, h1, 1500, "d2", &state, user), PD_OK);
    CHECK_EQ_INT(state, PD_CODE_USED);
    CHECK_EQ_INT(st->ops->code_take(st, h2, 1500, "d2", &state, user), PD_OK);
    CHECK_EQ_INT(state, PD_CODE_UNKNOWN);
    /* nonces: once per device */
    uint8_t n[16] = {1, 2, 3};
    CHECK_EQ_INT(st->ops->nonce_add(st, "d1", n, sizeof n, 5000), PD_OK);
    CHECK_EQ_INT(st->ops->nonce_add(st, "d1", n, sizeof n, 5001), PD_ERR_EXISTS);
    CHECK_EQ_INT(st->ops->nonce_add(st, "d2", n, sizeof n, 5001), PD_OK);
    bool seen = false;
    CHECK(st->ops->nonce_purge(st, 5001) == PD_OK);
    CHECK(st->ops->nonce_seen(st, "d1", n, sizeof n, &seen) == PD_OK && !seen);
    CHECK(st->ops->nonce_seen(st, "d2", n, sizeof n, &seen) == PD_OK && seen);
    st->ops->rollback(st);
    pd_storage_close(st);
}

static void test_areas_cover_codes_under_them_only(void)
{
    CHECK(srv_areas_cover("32.73.01", "32.73.01.1001"));
    CHECK(srv_areas_cover("32.73.02,32.73.01.1001", "32.73.01.1001"));
    CHECK(!srv_areas_cover("32.73.01", "32.73.010.1001"));
    CHECK(!srv_areas_cover("32.73.01.1001", "32.73.01"));
    CHECK(!srv_areas_cover("32.73.01.100", "32.73.01.1001"));
    CHECK(!srv_areas_cover("", "32.73.01.1001"));
}

typedef struct collect {
    int households, members;
    char first_desa[32];
} collect;

static int count_row(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    collect *c = ctx;
    if (e == PD_ENT_HOUSEHOLD) {
        c->households++;
        for (size_t i = 0; i < n; i++)
            if (!strcmp(f[i].name, "desa") && !c->first_desa[0])
                snprintf(c->first_desa, sizeof c->first_desa, "%.*s", (int)f[i].value.len,
                         (const char *)f[i].value.p);
    } else if (e == PD_ENT_MEMBER) {
        c->members++;
    }
    return 0;
}

static void test_prelists_load_once_and_only_from_their_issuer(void)
{
    pd_server *srv = NULL;
    pd_error err = {0};
    REQUIRE_V(pd_server_open(&srv, url, NULL, &err) == PD_OK);
    /* a package from an issuer (not the server) */
    uint8_t ipk[32], isk[64], other[32], osk[64];
    crypto_sign_keypair(ipk, isk);
    crypto_sign_keypair(other, osk);
    char pkg[4200];
    snprintf(pkg, sizeof pkg, "%s/desa.pdpl", dir);
    pd_prelist_gen_options o = {.seed = 5, .households = 25};
    REQUIRE_V(pd_prelist_generate_file(pkg, "32.73.01.1002", &o, isk, NULL, &err) == PD_OK);
    pd_server_status s0, s1;
    REQUIRE_V(pd_server_get_status(srv, &s0) == PD_OK);
    pd_server_load_stats st;
    CHECK_EQ_INT(pd_server_load_file(srv, pkg, other, &st), PD_ERR_SIGNATURE);
    CHECK_EQ_INT(pd_server_load_file(srv, pkg, NULL, &st), PD_ERR_SIGNATURE); /* server key */
    REQUIRE_V(pd_server_get_status(srv, &s1) == PD_OK);
    CHECK_EQ_INT(s1.households, s0.households);
    CHECK_EQ_INT(s1.revision, s0.revision);
    CHECK_EQ_INT(pd_server_load_file(srv, pkg, ipk, &st), PD_OK);
    CHECK_EQ_INT(st.households, 25);
    CHECK(st.members >= 25);
    CHECK_EQ_INT(st.shapes, 1);
    CHECK_EQ_INT(pd_server_load_file(srv, pkg, ipk, &st), PD_OK);
    CHECK_EQ_INT(st.households, 0);
    CHECK(st.skipped > 25);
    /* generated, for another desa; an unknown area refused */
    CHECK_EQ_INT(pd_server_load_generated(srv, "32.73.01.1003", 9, 10, &st), PD_OK);
    CHECK_EQ_INT(st.households, 10);
    CHECK_EQ_INT(pd_server_load_generated(srv, "99.99", 9, 10, &st), PD_ERR_INVALID);
    pd_server_close(srv);

    /* the storage's area filter sees each desa's records only */
    pd_storage *sto = NULL;
    REQUIRE_V(pd_storage_open(&sto, url, &err) == PD_OK);
    collect c = {0};
    CHECK_EQ_INT(sto->ops->records_since(sto, "32.73.01.1003", 0, 100000, count_row, &c), PD_OK);
    CHECK_EQ_INT(c.households, 10);
    CHECK(!strcmp(c.first_desa, "32.73.01.1003"));
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(sto->ops->records_since(sto, "32.73.01", 0, 100000, count_row, &c), PD_OK);
    CHECK_EQ_INT(c.households, 35);
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(sto->ops->records_since(sto, "32.73.02", 0, 100000, count_row, &c), PD_OK);
    CHECK_EQ_INT(c.households, 0);
    memset(&c, 0, sizeof c);
    CHECK_EQ_INT(sto->ops->area_records(sto, "32.73.01.1002", count_row, &c), PD_OK);
    CHECK_EQ_INT(c.households, 25);

    /* a field change is remembered with who made it, and the record's rev rises */
    memset(&c, 0, sizeof c);
    REQUIRE_V(sto->ops->begin(sto) == PD_OK);
    int64_t rev;
    CHECK_EQ_INT(sto->ops->revision_next(sto, &rev), PD_OK);
    pd_srv_change ch = {.rev = rev, .device_id = "dev-x", .seq = 7, .hlc = 9};
    pd_value v = {.type = PD_VAL_INT, .i = 4};
    int col = pd_entity_column(PD_ENT_HOUSEHOLD, "rooms");
    CHECK_EQ_INT(sto->ops->field_set(sto, PD_ENT_HOUSEHOLD, "no-such-id", col, &v, &ch),
                 PD_ERR_NOTFOUND);
    pd_srv_change got;
    CHECK_EQ_INT(sto->ops->field_change(sto, PD_ENT_HOUSEHOLD, "no-such-id", col, &got),
                 PD_ERR_NOTFOUND);
    sto->ops->rollback(sto);
    pd_storage_close(sto);
}

/* A reader (SQLite) reads what the writer committed, keeps one snapshot through its read
 * transaction while the writer goes on, refuses to write, and read_flush makes durable what it
 * may have seen (deferred commits included). */
static void test_readers_read_beside_the_writer_and_never_write(void)
{
    pd_storage *w = NULL, *rd = NULL;
    pd_error err = {0};
    REQUIRE_V(pd_storage_open(&w, url, &err) == PD_OK);
    REQUIRE_V(w->ops->reader_open && w->ops->read_flush);
    REQUIRE_V(w->ops->reader_open(w, &rd, &err) == PD_OK);
    int64_t r0 = -1, r1 = -1, r2 = -1, wrev = -1;
    CHECK_EQ_INT(rd->ops->revision_current(rd, &r0), PD_OK);
    CHECK_EQ_INT(rd->ops->begin(rd), PD_OK); /* a read transaction: no write lock taken */
    CHECK_EQ_INT(rd->ops->revision_current(rd, &r1), PD_OK);
    /* the writer commits meanwhile, deferred (not yet durable) */
    w->ops->sync_defer(w, true);
    CHECK_EQ_INT(w->ops->begin(w), PD_OK);
    CHECK_EQ_INT(w->ops->revision_next(w, &wrev), PD_OK);
    CHECK_EQ_INT(w->ops->commit(w), PD_OK);
    w->ops->sync_defer(w, false);
    CHECK_EQ_INT(rd->ops->revision_current(rd, &r2), PD_OK);
    CHECK_EQ_INT(r2, r1); /* one snapshot */
    rd->ops->rollback(rd);
    CHECK_EQ_INT(rd->ops->revision_current(rd, &r2), PD_OK);
    CHECK_EQ_INT(r2, wrev); /* the next read sees the commit */
    CHECK_EQ_INT(w->ops->read_flush(w), PD_OK);
    /* a reader never writes: query_only */
    CHECK(rd->ops->nonce_add(rd, "dev-reader", (const uint8_t *)"0123456789abcdef", 16, 1) !=
          PD_OK);
    bool seen = true;
    CHECK_EQ_INT(
        w->ops->nonce_seen(w, "dev-reader", (const uint8_t *)"0123456789abcdef", 16, &seen), PD_OK);
    CHECK(!seen);
    CHECK(r0 >= 0);
    pd_error e2 = {0};
    pd_storage *none = NULL;
    CHECK(rd->ops->reader_open(rd, &none, &e2) != PD_OK); /* a reader has no readers */
    CHECK(none == NULL);
    pd_storage_close(rd);
    pd_storage_close(w);
}

/* srv_json_int / srv_json_real read back exactly, and print what cJSON prints wherever cJSON's
 * text reads back exactly too (cJSON accepts "%1.15g" when it is merely close: 2^53 as
 * 9.00719925474099e+15, which is another number). */
static void test_json_numbers_print_as_cjson_does(void)
{
    static const int64_t ints[] = {0,
                                   1,
                                   -1,
                                   INT32_MAX,
                                   INT32_MIN,
                                   2147483648,
                                   -2147483649LL,
                                   1733400000000LL,
                                   -1733400000000LL,
                                   999999999999999LL,
                                   9007199254740992LL};
    static const double reals[] = {0.5,
                                   -6.9175,
                                   106.8272,
                                   0.1,
                                   1e-300,
                                   1e300,
                                   123456789.123456789,
                                   5.0,
                                   -12.0,
                                   1e15,
                                   3.0e-5,
                                   -107.60981234567,
                                   2.2250738585072014e-308,
                                   1.7976931348623157e308};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        cJSON *a = cJSON_CreateObject(), *b = cJSON_CreateObject();
        cJSON_AddItemToObject(a, "v", srv_json_int(ints[i]));
        cJSON_AddNumberToObject(b, "v", (double)ints[i]);
        char *ta = cJSON_PrintUnformatted(a), *tb = cJSON_PrintUnformatted(b);
        cJSON *cb = tb ? cJSON_Parse(tb) : NULL;
        const cJSON *cv = cJSON_GetObjectItemCaseSensitive(cb, "v");
        bool cjson_exact = cJSON_IsNumber(cv) && cv->valuedouble == (double)ints[i];
        cJSON_Delete(cb);
        CHECK(ta && tb && (!cjson_exact || !strcmp(ta, tb)));
        if (ta && tb && cjson_exact && strcmp(ta, tb))
            fprintf(stderr, "  int %lld: %s vs cJSON %s\n", (long long)ints[i], ta, tb);
        cJSON *back = ta ? cJSON_Parse(ta) : NULL;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(back, "v");
        CHECK(cJSON_IsNumber(v) && v->valuedouble == (double)ints[i]);
        cJSON_Delete(back);
        free(ta);
        free(tb);
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) {
        cJSON *a = cJSON_CreateObject(), *b = cJSON_CreateObject();
        cJSON_AddItemToObject(a, "v", srv_json_real(reals[i]));
        cJSON_AddNumberToObject(b, "v", reals[i]);
        char *ta = cJSON_PrintUnformatted(a), *tb = cJSON_PrintUnformatted(b);
        cJSON *cb = tb ? cJSON_Parse(tb) : NULL;
        const cJSON *cv = cJSON_GetObjectItemCaseSensitive(cb, "v");
        bool cjson_exact = cJSON_IsNumber(cv) && cv->valuedouble == reals[i];
        cJSON_Delete(cb);
        CHECK(ta && tb && (!cjson_exact || !strcmp(ta, tb)));
        if (ta && tb && cjson_exact && strcmp(ta, tb))
            fprintf(stderr, "  real %.17g: %s vs cJSON %s\n", reals[i], ta, tb);
        cJSON *back = ta ? cJSON_Parse(ta) : NULL;
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(back, "v");
        CHECK(cJSON_IsNumber(v) && v->valuedouble == reals[i]);
        cJSON_Delete(back);
        free(ta);
        free(tb);
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
    /* what JSON cannot say is null, as cJSON prints it */
    cJSON *n = srv_json_real(0.0 / 0.0);
    CHECK(cJSON_IsNull(n));
    cJSON_Delete(n);
    n = srv_json_real(-1.0 / 0.0);
    CHECK(cJSON_IsNull(n));
    cJSON_Delete(n);
    /* -0: "-0", a JSON number equal to 0 (cJSON says "0") */
    n = srv_json_real(-0.0);
    char *t = n ? cJSON_PrintUnformatted(n) : NULL;
    CHECK(t && strtod(t, NULL) == 0.0);
    free(t);
    cJSON_Delete(n);
}

int main(void)
{
    REQUIRE(sodium_init() >= 0);
    dir = pd_test_tmpdir("server-storage");
    snprintf(path, sizeof path, "%s/server.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    pd_error err = {0};
    REQUIRE(pd_server_init(url, &err) == PD_OK);
    RUN(test_json_numbers_print_as_cjson_does);
    RUN(test_schema_has_every_column_of_the_record_tables);
    RUN(test_key_file_is_never_overwritten_and_checked);
    RUN(test_operator_acts_refuse_bad_input_and_store_nothing);
    RUN(test_enrolment_codes_hash_take_and_expire);
    RUN(test_areas_cover_codes_under_them_only);
    RUN(test_prelists_load_once_and_only_from_their_issuer);
    RUN(test_readers_read_beside_the_writer_and_never_write);
    pd_test_rmtree(dir);
    free(dir);
    return pd_test_finish();
}
