/*
 * test_review.c — sealing, the supervisor's review and the way back, on real encrypted stores:
 * an enumerator's visits, corrections, a new member and a photo are sealed into one signed batch
 * (ops marked sealed in the same transaction); the supervisor imports the batch file only for an
 * enumerator it supervises; the batch-level warnings (too fast, too far, outside the area,
 * duplicated NIK, household visited twice) and the device's own visit warnings are reported; the
 * SVG map is a standalone document; an approval by a key that is not the author's supervisor is
 * refused everywhere (PD_ERR_DENIED); a return voids the batch on the enumerator's device with its
 * reason and puts its ops back as new pending ops, and the next seal chains after the voided
 * batch with the AMENDS flag; only reviewed batches are eligible for upload; bad input (garbage
 * files, a tampered batch inside a bundle, an empty reason, a forked batch) changes nothing.
 */
#include "batch_internal.h"
#include "pd_sync.h"
#include "store_internal.h"
#include "testutil.h"
#include "visits_fixture.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MUST(cond)                                                                                 \
    do {                                                                                           \
        pd_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            pd_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: MUST failed: %s\n", __FILE__, __LINE__, #cond);                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static const char *PIN = "246810";
static char *enum_home, *sup_home, *rogue_home, *both_home;
static pd_store *en, *sup, *rogue;
static uint8_t en_pk[PD_PUBKEY_BYTES], sup_pk[PD_PUBKEY_BYTES], rogue_pk[PD_PUBKEY_BYTES];

static const int64_t T0 = 1740798000000; /* 2025-03-01 03:00 UTC */

static pd_store *new_store(char **home, const char *tag, const char *role, uint8_t pk[32])
{
    *home = pd_test_tmpdir(tag);
    char *dir = pd_test_path(*home, "home");
    pd_store *s = NULL;
    pd_error err = {0};
    if (pd_store_create(&s, dir, PIN, &PD_KDF_TEST, &err) != PD_OK) {
        fprintf(stderr, "create %s: %s\n", tag, err.msg);
        free(dir);
        return NULL;
    }
    free(dir);
    if (pd_store_add_role(s, role, pk) != PD_OK) {
        fprintf(stderr, "role %s: %s\n", role, pd_store_errmsg(s));
        pd_store_close(s);
        return NULL;
    }
    return s;
}

static void exec(pd_store *s, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(pd_store_sqlite(s), sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "sql: %s: %s\n", sql, msg);
        CHECK(0);
    }
    sqlite3_free(msg);
}

static int64_t query_int(pd_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(pd_store_sqlite(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* Households of desa 32.73.01.1001 around (-6.5150, 108.2770); the area outline is a box of
 * about 1 km around them. */
static void add_prelist(pd_store *s)
{
    exec(s, "INSERT INTO assignment (desa) VALUES ('32.73.01.1001')");
    for (int i = 1; i <= 4; i++) {
        char sql[512];
        snprintf(sql, sizeof sql,
                 "INSERT INTO household (id, rev, prov, kab, kec, desa, head_name, lat, lon) "
                 "VALUES ('327301100100000%d', 1, '32', '32.73', '32.73.01', '32.73.01.1001', "
                 "'Kepala %d', %f, %f)",
                 i, i, -6.5150 + i * 0.0005, 108.2770 + i * 0.0005);
        exec(s, sql);
    }
}

static void add_shape(pd_store *s)
{
    exec(s, "INSERT INTO area_shape (code, name, shape) VALUES ('32.73.01.1001', 'Sukarasa', "
            "'-6.520 108.272,-6.520 108.282,-6.510 108.282,-6.510 108.272,-6.520 108.272')");
}

static int visit(const char *hh, const char *outcome, int64_t at, double lat, double lon)
{
    pd_gps g = {
        .lat = lat, .lon = lon, .accuracy = 8, .altitude = NAN, .fix_time = at, .provider = "gps"};
    pd_visit_in v = {.household_id = hh, .outcome = outcome, .visited_at = at, .gps = &g};
    char id[PD_ID_MAX];
    int rc = pd_visit_record(en, &v, id, NULL);
    if (rc)
        fprintf(stderr, "visit %s: %s\n", hh, pd_store_errmsg(en));
    return rc;
}

/* A day's work that trips every batch-level warning. */
static void do_fieldwork(void)
{
    CHECK_EQ_INT(visit("3273011001000001", "found", T0, -6.5145, 108.2775), PD_OK);
    /* 30 s later: too fast */
    CHECK_EQ_INT(visit("3273011001000002", "not_found", T0 + 30000, -6.5140, 108.2780), PD_OK);
    /* 60 s after that and ~7 km away: too fast, too far, outside the area */
    CHECK_EQ_INT(visit("3273011001000003", "refused", T0 + 90000, -6.5140, 108.3420), PD_OK);
    /* the first household again, later: visited twice */
    CHECK_EQ_INT(visit("3273011001000001", "found", T0 + 3600000, -6.5146, 108.2776), PD_OK);
    pd_value v = {.type = PD_VAL_INT, .i = 42};
    CHECK_EQ_INT(pd_household_set(en, "3273011001000001", "floor_area", &v, NULL), PD_OK);
    /* one NIK given to two new members of two households */
    pd_member_new m = {.name = "Siti Nurhaliza",
                       .nik = "3273014508900001",
                       .sex = 2,
                       .birth_date = "1990-08-05",
                       .relationship = 3,
                       .reason = "joined"};
    char id[PD_ID_MAX];
    CHECK_EQ_INT(pd_member_add(en, "3273011001000002", &m, id, NULL), PD_OK);
    m.name = "Siti N.";
    CHECK_EQ_INT(pd_member_add(en, "3273011001000004", &m, id, NULL), PD_OK);
    uint8_t jpeg[1024];
    size_t n = pd_fixture_jpeg(jpeg, 16, 16, 1);
    CHECK_EQ_INT(pd_photo_add(en, "3273011001000001", NULL, "front", jpeg, n, T0, NULL), PD_OK);
}

static uint8_t *export_batch(pd_store *s, uint64_t seq, size_t *len)
{
    uint8_t *b = NULL;
    if (pd_outbox_export(s, seq, &b, len) != PD_OK)
        fprintf(stderr, "export: %s\n", pd_store_errmsg(s));
    return b;
}

static pd_seal_result sealed1;

static void test_seal_marks_ops_in_one_batch(void)
{
    do_fieldwork();
    int64_t pending = query_int(en, "SELECT COUNT(*) FROM op WHERE batch_seq IS NULL");
    CHECK(pending > 8);
    MUST(pd_batch_seal(en, &sealed1) == PD_OK);
    CHECK_EQ_INT(sealed1.seq, 1);
    CHECK_EQ_INT(sealed1.op_count, pending);
    CHECK_EQ_INT(sealed1.photo_count, 1);
    CHECK_EQ_INT(sealed1.remaining, 0);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM op WHERE batch_seq IS NULL"), 0);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM op WHERE batch_seq = 1"), pending);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM batch WHERE state = 'sealed'"), 1);
    /* nothing left: a second seal refuses and changes nothing */
    pd_seal_result r;
    CHECK_EQ_INT(pd_batch_seal(en, &r), PD_ERR_STATE);
    CHECK(strstr(pd_store_errmsg(en), "nothing to seal") != NULL);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM batch"), 1);
    /* the stored bytes verify with the enumerator's key, carry the area and name the photo */
    size_t len;
    uint8_t *file = export_batch(en, 1, &len);
    MUST(file);
    pd_bundle_item *items = NULL;
    size_t n = 0;
    CHECK_EQ_INT(pd_bundle_parse(&items, &n, file, len, NULL), PD_OK);
    CHECK_EQ_INT(n, 1);
    pd_batch *b = NULL;
    if (n == 1 && pd_batch_verify(&b, items[0].bytes, items[0].len, en_pk, NULL) == PD_OK) {
        CHECK(!strcmp(pd_batch_header_get(b)->area, "32.73.01.1001"));
        CHECK(!strcmp(pd_batch_header_get(b)->device_id, pd_store_device_id(en)));
        CHECK_EQ_INT(pd_batch_header_get(b)->photo_count, 1);
        CHECK(!memcmp(pd_batch_hash(b), sealed1.hash, PD_HASH_BYTES));
    } else {
        CHECK(0);
    }
    pd_batch_free(b);
    free(items);
    free(file);
}

static void test_import_only_for_supervised_enumerators(void)
{
    size_t len;
    uint8_t *file = export_batch(en, 1, &len);
    MUST(file);
    pd_import_result r;
    /* the supervisor does not know this enumerator yet */
    CHECK_EQ_INT(pd_review_import(sup, file, len, &r), PD_ERR_DENIED);
    CHECK_EQ_INT(query_int(sup, "SELECT COUNT(*) FROM batch"), 0);
    /* now it does */
    pd_keyring_entry e = {.has_supervisor = true};
    memcpy(e.pk, en_pk, 32);
    memcpy(e.supervisor_pk, sup_pk, 32);
    strcpy(e.role, "enumerator");
    strcpy(e.name, "Siti Enumerator");
    CHECK_EQ_INT(pd_keyring_put(sup, &e), PD_OK);
    CHECK_EQ_INT(pd_review_import(sup, file, len, &r), PD_OK);
    CHECK_EQ_INT(r.batches, 1);
    CHECK_EQ_INT(pd_review_import(sup, file, len, &r), PD_OK);
    CHECK_EQ_INT(r.batches, 0);
    CHECK_EQ_INT(r.known, 1);
    /* a rogue supervisor is told the enumerator belongs to someone else */
    CHECK_EQ_INT(pd_keyring_put(rogue, &e), PD_OK);
    CHECK_EQ_INT(pd_review_import(rogue, file, len, &r), PD_ERR_DENIED);
    CHECK(strstr(pd_store_errmsg(rogue), "does not supervise") != NULL);
    free(file);
}

static int count_kind(const pd_review_warning *w, size_t n, pd_review_warn_kind k)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += w[i].kind == k;
    return c;
}

static void test_warnings_and_map(void)
{
    pd_batch *b = NULL;
    pd_keyring_entry a;
    MUST(pd_review_load(sup, 1, &b, &a) == PD_OK);
    CHECK(!strcmp(a.name, "Siti Enumerator"));
    pd_review_warning *w = NULL;
    size_t n = 0;
    CHECK_EQ_INT(pd_review_warnings(sup, b, &w, &n), PD_OK);
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "   %-14s %s\n", w[i].code, w[i].text);
    CHECK_EQ_INT(count_kind(w, n, PD_REVIEW_WARN_TOO_FAST), 2);
    CHECK_EQ_INT(count_kind(w, n, PD_REVIEW_WARN_TOO_FAR), 1);
    CHECK_EQ_INT(count_kind(w, n, PD_REVIEW_WARN_OUTSIDE), 1);
    CHECK_EQ_INT(count_kind(w, n, PD_REVIEW_WARN_DUP_NIK), 1);
    CHECK_EQ_INT(count_kind(w, n, PD_REVIEW_WARN_TWICE), 1);
    /* the device's own warnings travel inside the visits (the 7 km jump, the duplicated NIK
     * is a member warning and not stored with a visit) */
    CHECK(count_kind(w, n, PD_REVIEW_WARN_VISIT) >= 1);
    free(w);

    char *svg = NULL;
    size_t len = 0;
    CHECK_EQ_INT(pd_review_map_svg(sup, b, &svg, &len), PD_OK);
    if (svg) {
        CHECK(strlen(svg) == len);
        CHECK(!strncmp(svg, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=", 50));
        CHECK(strstr(svg, "</svg>\n") == svg + len - 7);
        size_t visits = 0, rings = 0;
        for (const char *p = svg; (p = strstr(p, "class=\"visit\"")); p++)
            visits++;
        for (const char *p = svg; (p = strstr(p, "class=\"warning\"")); p++)
            rings++;
        CHECK_EQ_INT(visits, 4);
        CHECK(rings >= 4);
        CHECK(strstr(svg, "<polygon") != NULL); /* the area outline */
        CHECK(strstr(svg, "class=\"legend\"") != NULL);
        CHECK(strstr(svg, "refused (1)") != NULL);
        char *path = pd_test_path(sup_home, "map.svg");
        pd_test_write_file(path, svg, len);
        free(path);
    }
    free(svg);
    pd_batch_free(b);
}

static void test_approval_by_another_key_is_refused(void)
{
    /* the rogue supervisor cannot approve in its own store (keyring names the real one) */
    size_t len;
    uint8_t *file = export_batch(en, 1, &len);
    MUST(file);
    pd_keyring_entry e = {.has_supervisor = true};
    memcpy(e.pk, en_pk, 32);
    memcpy(e.supervisor_pk, rogue_pk, 32); /* the rogue claims the enumerator */
    strcpy(e.role, "enumerator");
    CHECK_EQ_INT(pd_keyring_put(rogue, &e), PD_OK);
    pd_import_result r;
    CHECK_EQ_INT(pd_review_import(rogue, file, len, &r), PD_OK);
    CHECK_EQ_INT(pd_review_approve(rogue, 1), PD_OK); /* signs a record in its own store */
    uint8_t *rfile = NULL;
    size_t rlen = 0;
    CHECK_EQ_INT(pd_review_export(rogue, 1, &rfile, &rlen), PD_OK);
    MUST(rfile);
    /* the enumerator's device refuses that approval */
    pd_keyring_entry me = {.has_supervisor = true};
    memcpy(me.pk, en_pk, 32);
    memcpy(me.supervisor_pk, sup_pk, 32);
    strcpy(me.role, "enumerator");
    CHECK_EQ_INT(pd_keyring_put(en, &me), PD_OK);
    CHECK_EQ_INT(pd_outbox_import(en, rfile, rlen, &r), PD_ERR_DENIED);
    CHECK(strstr(pd_store_errmsg(en), "not the author's supervisor") != NULL);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM batch WHERE state = 'sealed'"), 1);
    /* the real supervisor's store refuses it too */
    CHECK_EQ_INT(pd_review_import(sup, rfile, rlen, &r), PD_ERR_DENIED);
    CHECK_EQ_INT(query_int(sup, "SELECT COUNT(*) FROM batch WHERE state = 'sealed'"), 1);
    /* and so does the upload check the server runs */
    pd_bundle_item *items = NULL;
    size_t n = 0;
    CHECK_EQ_INT(pd_bundle_parse(&items, &n, rfile, rlen, NULL), PD_OK);
    if (n == 2) {
        bool voided;
        pd_error err = {0};
        CHECK_EQ_INT(pd_batch_verify_reviewed(NULL, &voided, items[0].bytes, items[0].len, en_pk,
                                              items[1].bytes, items[1].len, sup_pk, &err),
                     PD_ERR_DENIED);
        /* ... which would have accepted it, had the rogue been the supervisor: it can fail */
        CHECK_EQ_INT(pd_batch_verify_reviewed(NULL, &voided, items[0].bytes, items[0].len, en_pk,
                                              items[1].bytes, items[1].len, rogue_pk, &err),
                     PD_OK);
        /* a batch with no review is not eligible */
        CHECK_EQ_INT(pd_batch_verify_reviewed(NULL, &voided, items[0].bytes, items[0].len, en_pk,
                                              NULL, 0, sup_pk, &err),
                     PD_ERR_DENIED);
    } else {
        CHECK(0);
    }
    free(items);
    free(rfile);
    free(file);
}

static void test_bad_input_changes_nothing(void)
{
    pd_import_result r;
    const uint8_t garbage[] = "PDF1\x01\x07\x00\x00\x00";
    CHECK_EQ_INT(pd_review_import(sup, garbage, sizeof garbage - 1, &r), PD_ERR_CORRUPT);
    CHECK_EQ_INT(pd_outbox_import(en, (const uint8_t *)"hello", 5, &r), PD_ERR_CORRUPT);
    /* an empty reason */
    CHECK_EQ_INT(pd_review_return(sup, 1, ""), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_review_return(sup, 1, "bad\x01control"), PD_ERR_INVALID);
    CHECK_EQ_INT(query_int(sup, "SELECT COUNT(*) FROM batch WHERE state = 'sealed'"), 1);
    CHECK_EQ_INT(pd_review_approve(sup, 99), PD_ERR_NOTFOUND);
    /* a bundle with one good batch and one tampered batch stores nothing */
    size_t len;
    uint8_t *file = export_batch(en, 1, &len);
    MUST(file);
    pd_bundle_item *items = NULL;
    size_t n = 0;
    CHECK_EQ_INT(pd_bundle_parse(&items, &n, file, len, NULL), PD_OK);
    uint8_t *bad = malloc(items[0].len);
    memcpy(bad, items[0].bytes, items[0].len);
    bad[items[0].len - 1] ^= 1;
    pd_bundle *bu = NULL;
    CHECK_EQ_INT(pd_bundle_new(&bu), PD_OK);
    /* a fresh supervisor store would take the good one; here both must be refused together */
    pd_store *fresh = NULL;
    char *home = NULL;
    uint8_t fresh_pk[32];
    fresh = new_store(&home, "review-fresh", "supervisor", fresh_pk);
    if (fresh && bu) {
        pd_keyring_entry e = {.has_supervisor = true};
        memcpy(e.pk, en_pk, 32);
        memcpy(e.supervisor_pk, fresh_pk, 32);
        strcpy(e.role, "enumerator");
        pd_keyring_put(fresh, &e);
        pd_bundle_add(bu, PD_BUNDLE_BATCH, items[0].bytes, items[0].len);
        pd_bundle_add(bu, PD_BUNDLE_BATCH, bad, items[0].len);
        size_t blen;
        const uint8_t *bb = pd_bundle_bytes(bu, &blen);
        CHECK_EQ_INT(pd_review_import(fresh, bb, blen, &r), PD_ERR_CORRUPT);
        CHECK_EQ_INT(query_int(fresh, "SELECT COUNT(*) FROM batch"), 0);
    } else {
        CHECK(0);
    }
    pd_store_close(fresh);
    pd_test_rmtree(home);
    free(home);
    pd_bundle_free(bu);
    free(bad);
    free(items);
    free(file);
}

static void test_fork_is_refused(void)
{
    /* another batch 1, signed with the enumerator's own key, different content */
    uint8_t sk[PD_SECKEY_BYTES];
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(pd_store_sqlite(en),
                                "SELECT sign_sk FROM identity WHERE role = 'enumerator'", -1, &st,
                                NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 64;
    if (ok)
        memcpy(sk, sqlite3_column_blob(st, 0), 64);
    sqlite3_finalize(st);
    MUST(ok);
    pd_op op = {.seq = 1,
                .device_id = "f0f0f0f0f0f0f0f0",
                .hlc = 1,
                .kind = "set",
                .entity = "household",
                .target = "3273011001000001",
                .field = "rooms",
                .new_value = {.type = PD_VAL_INT, .i = 9}};
    pd_batch_params p = {.device_id = pd_store_device_id(en), .seq = 1, .created_at = T0};
    uint8_t *bytes = NULL;
    size_t len = 0;
    CHECK_EQ_INT(pd_batch_build(&bytes, &len, &p, &op, 1, NULL, 0, sk, NULL), PD_OK);
    sodium_memzero(sk, sizeof sk);
    pd_bundle *bu = NULL;
    pd_bundle_new(&bu);
    pd_bundle_add(bu, PD_BUNDLE_BATCH, bytes, len);
    size_t blen;
    const uint8_t *bb = pd_bundle_bytes(bu, &blen);
    pd_import_result r;
    CHECK_EQ_INT(pd_review_import(sup, bb, blen, &r), PD_ERR_CONFLICT);
    CHECK(strstr(pd_store_errmsg(sup), "forks") != NULL);
    CHECK_EQ_INT(query_int(sup, "SELECT COUNT(*) FROM batch"), 1);
    pd_bundle_free(bu);
    free(bytes);
}

static void test_return_voids_and_requeues(void)
{
    const char *reason = "Rumah 3273011001000003 dikunjungi 7 km dari rumah sebelumnya dalam "
                         "satu menit: mohon cek ulang lokasi (luas lantai juga).";
    CHECK_EQ_INT(pd_review_return(sup, 1, reason), PD_OK);
    CHECK_EQ_INT(pd_review_approve(sup, 1), PD_ERR_STATE); /* a decision is final */
    uint8_t *file = NULL;
    size_t len = 0;
    MUST(pd_review_export(sup, 1, &file, &len) == PD_OK);
    int64_t ops_before = query_int(en, "SELECT COUNT(*) FROM op");
    pd_import_result r;
    CHECK_EQ_INT(pd_outbox_import(en, file, len, &r), PD_OK);
    CHECK_EQ_INT(r.returned, 1);
    CHECK_EQ_INT(r.requeued, sealed1.op_count);
    /* voided with its reason; the originals keep their batch; copies are pending */
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM batch WHERE state = 'voided' AND seq = 1"), 1);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM op WHERE batch_seq = 1"), sealed1.op_count);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM op WHERE batch_seq IS NULL"),
                 sealed1.op_count);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM op"), ops_before + (int64_t)sealed1.op_count);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM op a JOIN op b ON b.batch_seq IS NULL AND "
                               "a.batch_seq = 1 AND a.target = b.target AND a.kind = b.kind AND "
                               "a.field = b.field AND a.hlc = b.hlc AND b.seq > a.seq"),
                 sealed1.op_count);
    /* the outbox shows the reason */
    char got[PD_REVIEW_REASON_MAX + 1] = "";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(pd_store_sqlite(en), "SELECT reason FROM batch WHERE seq = 1", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        snprintf(got, sizeof got, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    CHECK(!strcmp(got, reason));
    /* importing the same file again changes nothing */
    CHECK_EQ_INT(pd_outbox_import(en, file, len, &r), PD_OK);
    CHECK_EQ_INT(r.known, 1);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM op WHERE batch_seq IS NULL"),
                 sealed1.op_count);
    free(file);

    /* amend, re-seal: batch 2 chains after the voided batch 1 and says it amends */
    pd_value v = {.type = PD_VAL_INT, .i = 36};
    CHECK_EQ_INT(pd_household_set(en, "3273011001000001", "floor_area", &v, NULL), PD_OK);
    pd_seal_result s2;
    MUST(pd_batch_seal(en, &s2) == PD_OK);
    CHECK_EQ_INT(s2.seq, 2);
    CHECK_EQ_INT(s2.op_count, sealed1.op_count + 1);
    file = export_batch(en, 2, &len);
    MUST(file);
    pd_bundle_item *items = NULL;
    size_t n = 0;
    pd_batch *b2 = NULL;
    CHECK_EQ_INT(pd_bundle_parse(&items, &n, file, len, NULL), PD_OK);
    CHECK_EQ_INT(pd_batch_verify(&b2, items[0].bytes, items[0].len, en_pk, NULL), PD_OK);
    if (b2) {
        const pd_batch_header *h = pd_batch_header_get(b2);
        CHECK(h->flags & PD_BATCH_FLAG_AMENDS);
        CHECK(!memcmp(h->prev_hash, sealed1.hash, PD_HASH_BYTES));
        pd_chain_link l[2];
        uint8_t *f1 = NULL;
        size_t l1 = 0;
        pd_bundle_item *i1 = NULL;
        size_t n1 = 0;
        pd_batch *b1 = NULL;
        if ((f1 = export_batch(en, 1, &l1)) && pd_bundle_parse(&i1, &n1, f1, l1, NULL) == PD_OK &&
            pd_batch_verify(&b1, i1[0].bytes, i1[0].len, en_pk, NULL) == PD_OK) {
            pd_chain_link_set(&l[0], pd_batch_header_get(b1), pd_batch_hash(b1));
            pd_chain_link_set(&l[1], h, pd_batch_hash(b2));
            CHECK_EQ_INT(pd_chain_check(l, 2, NULL, NULL, NULL), PD_OK);
            /* the voided batch with its return record is eligible, and says it is voided */
            bool voided = false;
            CHECK_EQ_INT(n1, 2);
            if (n1 == 2)
                CHECK_EQ_INT(pd_batch_verify_reviewed(NULL, &voided, i1[0].bytes, i1[0].len, en_pk,
                                                      i1[1].bytes, i1[1].len, sup_pk, NULL),
                             PD_OK);
            CHECK(voided);
        } else {
            CHECK(0);
        }
        pd_batch_free(b1);
        free(i1);
        free(f1);
    }
    pd_batch_free(b2);
    free(items);
    /* the supervisor takes batch 2 and approves it; the enumerator sees it approved */
    CHECK_EQ_INT(pd_review_import(sup, file, len, &r), PD_OK);
    CHECK_EQ_INT(pd_review_approve(sup, 2), PD_OK);
    free(file);
    MUST(pd_review_export(sup, 2, &file, &len) == PD_OK);
    CHECK_EQ_INT(pd_outbox_import(en, file, len, &r), PD_OK);
    CHECK_EQ_INT(r.approved, 1);
    CHECK_EQ_INT(query_int(en, "SELECT COUNT(*) FROM batch WHERE state = 'approved' AND seq = 2"),
                 1);
    free(file);
}

typedef struct collect {
    char states[8][16];
    size_t n;
} collect;

static int collect_state(void *ctx, const pd_outbox_entry *e)
{
    collect *c = ctx;
    if (c->n < 8)
        snprintf(c->states[c->n++], 16, "%s", e->state);
    return 0;
}

static void test_outbox_lists_states(void)
{
    collect c = {0};
    CHECK_EQ_INT(pd_outbox_list(en, collect_state, &c), PD_OK);
    CHECK_EQ_INT(c.n, 2);
    CHECK(!strcmp(c.states[0], "voided"));
    CHECK(!strcmp(c.states[1], "approved"));
    collect q = {0};
    CHECK_EQ_INT(pd_review_list(sup, false, collect_state, &q), PD_OK);
    CHECK_EQ_INT(q.n, 0); /* nothing waits for review */
    CHECK_EQ_INT(pd_review_list(sup, true, collect_state, &q), PD_OK);
    CHECK_EQ_INT(q.n, 2);
}

static void test_review_on_the_enumerators_own_phone(void)
{
    /* one store with both roles: the supervisor reviews on the enumerator's device */
    uint8_t e_pk[32], s_pk[32];
    pd_store *both = new_store(&both_home, "review-both", "enumerator", e_pk);
    MUST(both);
    CHECK_EQ_INT(pd_store_add_role(both, "supervisor", s_pk), PD_OK);
    add_prelist(both);
    pd_keyring_entry e = {.has_supervisor = true};
    memcpy(e.pk, e_pk, 32);
    memcpy(e.supervisor_pk, s_pk, 32);
    strcpy(e.role, "enumerator");
    CHECK_EQ_INT(pd_keyring_put(both, &e), PD_OK);
    pd_store *saved = en;
    en = both;
    CHECK_EQ_INT(visit("3273011001000002", "found", T0, -6.5140, 108.2780), PD_OK);
    en = saved;
    pd_seal_result r;
    CHECK_EQ_INT(pd_batch_seal(both, &r), PD_OK);
    int64_t id = query_int(both, "SELECT rowid FROM batch WHERE seq = 1");
    CHECK_EQ_INT(pd_review_return(both, id, "foto belum ada"), PD_OK);
    CHECK_EQ_INT(query_int(both, "SELECT COUNT(*) FROM batch WHERE state = 'voided'"), 1);
    CHECK_EQ_INT(query_int(both, "SELECT COUNT(*) FROM op WHERE batch_seq IS NULL"),
                 (int64_t)r.op_count);
    pd_store_close(both);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    en = new_store(&enum_home, "review-enum", "enumerator", en_pk);
    sup = new_store(&sup_home, "review-sup", "supervisor", sup_pk);
    rogue = new_store(&rogue_home, "review-rogue", "supervisor", rogue_pk);
    REQUIRE(en && sup && rogue);
    add_prelist(en);
    add_shape(sup);
    RUN(test_seal_marks_ops_in_one_batch);
    RUN(test_import_only_for_supervised_enumerators);
    RUN(test_warnings_and_map);
    RUN(test_approval_by_another_key_is_refused);
    RUN(test_bad_input_changes_nothing);
    RUN(test_fork_is_refused);
    RUN(test_return_voids_and_requeues);
    RUN(test_outbox_lists_states);
    RUN(test_review_on_the_enumerators_own_phone);
    pd_store_close(en);
    pd_store_close(sup);
    pd_store_close(rogue);
    pd_test_rmtree(enum_home);
    pd_test_rmtree(sup_home);
    pd_test_rmtree(rogue_home);
    pd_test_rmtree(both_home);
    free(enum_home);
    free(sup_home);
    free(rogue_home);
    free(both_home);
    return pd_test_finish();
}
