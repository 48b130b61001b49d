/*
 * test_server_merge_read.c — the SQLite backend's field_merge_read (storage.h), the one call the
 * merge makes for a field, answers what its four fine-grained calls answer (record_area,
 * field_get, field_change, changed_elsewhere) in every state a field can be in; revisions
 * counted inside a transaction are each taken once and persist at COMMIT; and schema
 * version 4 (fewer B-trees per applied batch) migrates a version-3 database keeping its rows.
 * Real SQLite files in a temporary directory.
 */
#include "internal.h"
#include "schema.h"
#include "storage.h"
#include "testutil.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#define DESA "32.73.01.1001"

/* REQUIRE for a test function (void): stop this test, count the failure. */
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

static pd_value vtext(const char *s)
{
    return (pd_value){.type = PD_VAL_TEXT, .p = (const uint8_t *)s, .len = strlen(s)};
}

static bool same_value(const pd_value *a, const pd_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case PD_VAL_INT:
        return a->i == b->i;
    case PD_VAL_REAL:
        return a->r == b->r;
    case PD_VAL_TEXT:
    case PD_VAL_BLOB:
        return a->len == b->len && (a->len == 0 || !memcmp(a->p, b->p, a->len));
    default:
        return true;
    }
}

/* field_merge_read against the four calls, for one record, field, base and device. */
static void check_agrees(pd_storage *st, pd_entity e, const char *id, const char *field,
                         int64_t base, const char *device, bool want_last, bool want_elsewhere)
{
    int col = pd_entity_column(e, field);
    pd_srv_merge_read m;
    CHECK_EQ_INT(st->ops->field_merge_read(st, e, id, col, base, device, &m), PD_OK);
    char desa[PD_SRV_CODE_MAX + 1];
    CHECK_EQ_INT(st->ops->record_area(st, e, id, desa), PD_OK);
    CHECK(!strcmp(m.desa, desa));
    pd_srv_value v = {0};
    CHECK_EQ_INT(st->ops->field_get(st, e, id, col, &v), PD_OK);
    CHECK(same_value(&m.value.v, &v.v));
    pd_srv_change last;
    int rc = st->ops->field_change(st, e, id, col, &last);
    CHECK_EQ_INT(m.has_last, rc == PD_OK);
    CHECK_EQ_INT(m.has_last, want_last);
    if (m.has_last && rc == PD_OK) {
        CHECK_EQ_INT(m.last.rev, last.rev);
        CHECK(!strcmp(m.last.device_id, last.device_id));
        CHECK_EQ_INT(m.last.seq, last.seq);
        CHECK_EQ_INT(m.last.hlc, last.hlc);
        CHECK_EQ_INT(m.last.has_author, last.has_author);
        CHECK_EQ_INT(m.last.has_batch, last.has_batch);
        CHECK(!m.last.has_batch || !memcmp(m.last.batch_hash, last.batch_hash, PD_HASH_BYTES));
    }
    bool elsewhere = false;
    CHECK_EQ_INT(st->ops->changed_elsewhere(st, e, id, base, device, &elsewhere), PD_OK);
    CHECK_EQ_INT(m.changed_elsewhere, elsewhere);
    CHECK_EQ_INT(m.changed_elsewhere, want_elsewhere);
    pd_srv_value_clear(&v);
    pd_srv_value_clear(&m.value);
}

static void test_merge_read_answers_what_the_four_calls_answer(void)
{
    char url[4200];
    snprintf(url, sizeof url, "sqlite:%s/merge.db", dir);
    pd_storage *st = NULL;
    pd_error err = {0};
    REQUIRE_V(pd_storage_open(&st, url, &err) == PD_OK);
    REQUIRE_V(st->ops->field_merge_read != NULL);
    REQUIRE_V(st->ops->begin(st) == PD_OK);
    int64_t r0;
    REQUIRE_V(st->ops->revision_next(st, &r0) == PD_OK);
    pd_srv_field hh[] = {{"id", vtext("H1")},     {"prov", vtext("32")},
                         {"kab", vtext("32.73")}, {"kec", vtext("32.73.01")},
                         {"desa", vtext(DESA)},   {"head_name", vtext("Siti")}};
    REQUIRE_V(st->ops->record_insert(st, PD_ENT_HOUSEHOLD, hh, PD_ARRAY_LEN(hh), r0) == PD_OK);
    pd_value one = {.type = PD_VAL_INT, .i = 1};
    pd_srv_field mem[] = {{"id", vtext("M1")},
                          {"household_id", vtext("H1")},
                          {"member_no", one},
                          {"name", vtext("Siti")}};
    REQUIRE_V(st->ops->record_insert(st, PD_ENT_MEMBER, mem, PD_ARRAY_LEN(mem), r0) == PD_OK);

    /* never changed: no last change, nothing elsewhere; a NULL value and a text one */
    check_agrees(st, PD_ENT_HOUSEHOLD, "H1", "rooms", r0, "dev-a", false, false);
    check_agrees(st, PD_ENT_HOUSEHOLD, "H1", "head_name", 0, "dev-a", false, false);
    check_agrees(st, PD_ENT_MEMBER, "M1", "name", r0, "dev-a", false, false); /* desa: H1's */

    /* dev-b sets rooms: seen as elsewhere by dev-a from an older base, not by dev-b itself nor
     * from a base at or after the change */
    int64_t r1;
    REQUIRE_V(st->ops->revision_next(st, &r1) == PD_OK);
    pd_srv_change ch = {.rev = r1, .device_id = "dev-b", .seq = 7, .hlc = 9, .has_batch = true};
    memset(ch.batch_hash, 0xab, PD_HASH_BYTES);
    pd_value four = {.type = PD_VAL_INT, .i = 4};
    int rooms = pd_entity_column(PD_ENT_HOUSEHOLD, "rooms");
    REQUIRE_V(st->ops->field_set(st, PD_ENT_HOUSEHOLD, "H1", rooms, &four, &ch) == PD_OK);
    check_agrees(st, PD_ENT_HOUSEHOLD, "H1", "rooms", r0, "dev-a", true, true);
    check_agrees(st, PD_ENT_HOUSEHOLD, "H1", "rooms", r0, "dev-b", true, false);
    check_agrees(st, PD_ENT_HOUSEHOLD, "H1", "rooms", r1, "dev-a", true, false);
    /* another field of the record: its own last change none, the record changed elsewhere */
    check_agrees(st, PD_ENT_HOUSEHOLD, "H1", "toilet", r0, "dev-a", false, true);

    /* a change by the server itself (a prelist load: no device) is elsewhere for every device */
    int64_t r2;
    REQUIRE_V(st->ops->revision_next(st, &r2) == PD_OK);
    pd_srv_change srv_ch = {.rev = r2};
    int name = pd_entity_column(PD_ENT_MEMBER, "name");
    pd_value newname = vtext("Siti Aminah");
    REQUIRE_V(st->ops->field_set(st, PD_ENT_MEMBER, "M1", name, &newname, &srv_ch) == PD_OK);
    check_agrees(st, PD_ENT_MEMBER, "M1", "name", r1, "dev-b", true, true);

    /* no such record: NOTFOUND, no value to free */
    pd_srv_merge_read m;
    CHECK_EQ_INT(st->ops->field_merge_read(st, PD_ENT_HOUSEHOLD, "H9", rooms, 0, "dev-a", &m),
                 PD_ERR_NOTFOUND);
    CHECK_EQ_INT(m.value.buf == NULL, 1);
    CHECK_EQ_INT(st->ops->field_merge_read(st, PD_ENT_MEMBER, "M9", name, 0, "dev-a", &m),
                 PD_ERR_NOTFOUND);
    /* not a household or member: refused */
    CHECK(st->ops->field_merge_read(st, PD_ENT_VISIT, "V1", 1, 0, "dev-a", &m) != PD_OK);
    st->ops->rollback(st);
    pd_storage_close(st);
}

/* Revisions taken inside a transaction are counted by the handle and written back at COMMIT:
 * consecutive, each once, seen by revision_current and stats meanwhile, kept by a commit (also
 * for another handle), given back by a rollback. */
static void test_revisions_in_a_transaction_persist_once_each(void)
{
    char url[4200];
    snprintf(url, sizeof url, "sqlite:%s/rev.db", dir);
    pd_storage *st = NULL, *other = NULL;
    pd_error err = {0};
    REQUIRE_V(pd_storage_open(&st, url, &err) == PD_OK);
    REQUIRE_V(pd_storage_open(&other, url, &err) == PD_OK);
    int64_t r0, r, cur;
    REQUIRE_V(st->ops->revision_current(st, &r0) == PD_OK);
    REQUIRE_V(st->ops->begin(st) == PD_OK);
    for (int i = 1; i <= 5; i++) {
        CHECK_EQ_INT(st->ops->revision_next(st, &r), PD_OK);
        CHECK_EQ_INT(r, r0 + i);
    }
    CHECK_EQ_INT(st->ops->revision_current(st, &cur), PD_OK);
    CHECK_EQ_INT(cur, r0 + 5);
    pd_srv_stats stats;
    CHECK_EQ_INT(st->ops->stats(st, &stats), PD_OK);
    CHECK_EQ_INT(stats.revision, r0 + 5);
    CHECK_EQ_INT(st->ops->revision_next(st, &r), PD_OK);
    CHECK_EQ_INT(r, r0 + 6);
    CHECK_EQ_INT(st->ops->commit(st), PD_OK);
    CHECK_EQ_INT(other->ops->revision_current(other, &cur), PD_OK);
    CHECK_EQ_INT(cur, r0 + 6);
    CHECK_EQ_INT(st->ops->revision_current(st, &cur), PD_OK);
    CHECK_EQ_INT(cur, r0 + 6);

    /* the other handle takes the next one; a rolled-back transaction gives its revisions back */
    REQUIRE_V(other->ops->begin(other) == PD_OK);
    CHECK_EQ_INT(other->ops->revision_next(other, &r), PD_OK);
    CHECK_EQ_INT(r, r0 + 7);
    CHECK_EQ_INT(other->ops->commit(other), PD_OK);
    REQUIRE_V(st->ops->begin(st) == PD_OK);
    CHECK_EQ_INT(st->ops->revision_next(st, &r), PD_OK);
    CHECK_EQ_INT(r, r0 + 8);
    CHECK_EQ_INT(st->ops->revision_next(st, &r), PD_OK);
    st->ops->rollback(st);
    CHECK_EQ_INT(st->ops->revision_current(st, &cur), PD_OK);
    CHECK_EQ_INT(cur, r0 + 7);
    /* outside a transaction each call stands alone */
    CHECK_EQ_INT(st->ops->revision_next(st, &r), PD_OK);
    CHECK_EQ_INT(r, r0 + 8);
    CHECK_EQ_INT(other->ops->revision_current(other, &cur), PD_OK);
    CHECK_EQ_INT(cur, r0 + 8);
    pd_storage_close(other);
    pd_storage_close(st);
}

static int count_result(void *ctx, const pd_srv_result *r)
{
    int *n = ctx;
    if (r->idx == 0 && !strcmp(r->status, "applied") && r->seq == 5)
        (*n)++;
    return 0;
}

static void test_version_4_migrates_a_version_3_database(void)
{
    char path[4200], url[4300];
    snprintf(path, sizeof path, "%s/v3.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    sqlite3 *db;
    REQUIRE_V(sqlite3_open(path, &db) == SQLITE_OK);
    pd_error err = {0};
    REQUIRE_V(pd_schema_server_count >= 4 && pd_schema_server[2].version == 3);
    REQUIRE_V(pd_schema_apply(db, pd_schema_server, 3, &err) == PD_OK);
    REQUIRE_V(
        sqlite3_exec(db,
                     "INSERT INTO upload_results (upload_id, idx, device_id, seq, hash, status) "
                     "VALUES ('u1', 0, 'dev-a', 5, x'00', 'applied')",
                     NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);

    pd_storage *st = NULL;
    REQUIRE_V(pd_storage_open(&st, url, &err) == PD_OK);
    int n = 0;
    CHECK_EQ_INT(st->ops->results_of(st, "u1", count_result, &n), PD_OK);
    CHECK_EQ_INT(n, 1);
    pd_storage_close(st);

    REQUIRE_V(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *q;
    REQUIRE_V(sqlite3_prepare_v2(db,
                                 "SELECT (SELECT count(*) FROM sqlite_schema WHERE name = "
                                 "'audit_batch' OR name = 'visit_rev'), (SELECT count(*) FROM "
                                 "sqlite_schema WHERE name = "
                                 "'upload_results' AND sql LIKE '%WITHOUT ROWID%'), "
                                 "(SELECT user_version FROM pragma_user_version)",
                                 -1, &q, NULL) == SQLITE_OK);
    REQUIRE_V(sqlite3_step(q) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(q, 0), 0); /* audit_batch, visit_rev gone */
    CHECK_EQ_INT(sqlite3_column_int(q, 1), 1); /* rebuilt WITHOUT ROWID */
    CHECK(sqlite3_column_int(q, 2) >= 4);
    sqlite3_finalize(q);
    sqlite3_close(db);
}

int main(void)
{
    dir = pd_test_tmpdir("server-merge-read");
    RUN(test_merge_read_answers_what_the_four_calls_answer);
    RUN(test_revisions_in_a_transaction_persist_once_each);
    RUN(test_version_4_migrates_a_version_3_database);
    pd_test_rmtree(dir);
    free(dir);
    return pd_test_finish();
}
