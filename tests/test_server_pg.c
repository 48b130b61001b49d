/*
 * test_server_pg.c — the server's storage interface (server/storage.h) call by call, on the
 * backend named by PD_TEST_DB_URL: a SQLite file in a temporary directory by default, or a
 * PostgreSQL database ("postgres://…", e.g. from scripts/pg.sh; tests/sys_server_pg.sh runs this
 * program both ways). Every test gets a fresh database (for PostgreSQL: CREATE DATABASE next to
 * the one in the URL, dropped at the end), so the same assertions prove the two backends behave
 * alike: the same results, the same PD_ERR_* codes, nothing stored by a refused call.
 *
 * With PostgreSQL, more: the schema version guard, partition routing, the revision horizon that
 * keeps delta cursors from passing a change still in flight, no lost updates when threads of a
 * pooled handle (and two handles, as two server processes would) write the same record at once,
 * deadlocks answered PD_ERR_BUSY, the serialised duplicate-NIK check, and a retried call after
 * the connection was killed.
 */
#include "internal.h"
#include "pd_server.h"
#include "schema.h"
#include "storage.h"
#include "storage_pg.h"
#include "test_db.h"
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef PD_HAVE_PQ
#include <libpq-fe.h>

extern const pd_migration pd_schema_server_pg[];
extern const int pd_schema_server_pg_count;
#endif

/* ---- a fresh database per test --------------------------------------------------------------- */

static const char *base_url; /* PD_TEST_DB_URL, or NULL for SQLite */

typedef struct testdb {
    char url[1024];
    char name[64]; /* PostgreSQL database name */
    char *dir;     /* the temporary directory (SQLite: its database) */
} testdb;

#ifdef PD_HAVE_PQ
/* A database of the test cluster: the URL of the one named (and extra appended to the query). */
static void url_with_db(char *out, size_t cap, const char *name, const char *extra)
{
    td_url_with_db(out, cap, base_url, name, extra);
}

/* Run sql on a database of the test cluster; true if it succeeded. */
static bool pg_sql(const char *dbname, const char *sql)
{
    char url[1024];
    url_with_db(url, sizeof url, dbname, NULL);
    return td_exec(url, sql);
}

/* The first column of the first row of a query, as text into out ("" if none or NULL); true if
 * the query succeeded. */
static bool pg_value(const char *dbname, const char *sql, char *out, size_t cap)
{
    out[0] = '\0';
    char url[1024];
    url_with_db(url, sizeof url, dbname, NULL);
    PGconn *c = td_connect(url);
    if (!c)
        return false;
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (ok && PQntuples(r) > 0)
        snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
    if (!ok)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok;
}
#endif

static void db_make(testdb *d, const char *extra)
{
    memset(d, 0, sizeof *d);
    d->dir = pd_test_tmpdir("storage");
    if (td_make(d->url, sizeof d->url, d->dir, extra) != 0)
        abort();
    if (td_is_pg())
        td_name(d->url, d->name, sizeof d->name);
}

static void db_drop(testdb *d)
{
    td_drop(d->url);
    pd_test_rmtree(d->dir);
    free(d->dir);
    memset(d, 0, sizeof *d);
}

static pd_storage *db_open(const testdb *d)
{
    pd_storage *st = NULL;
    pd_error err = {0};
    int rc = pd_storage_open(&st, d->url, &err);
    if (rc != PD_OK)
        fprintf(stderr, "open %s: %s\n", d->url, err.msg);
    return st;
}

/* ---- record helpers ----------------------------------------------------------------------------
 */

static pd_value vtext(const char *s)
{
    return (pd_value){.type = PD_VAL_TEXT, .p = (const uint8_t *)s, .len = strlen(s)};
}

static pd_value vint(int64_t i)
{
    return (pd_value){.type = PD_VAL_INT, .i = i};
}

static pd_value vreal(double r)
{
    return (pd_value){.type = PD_VAL_REAL, .r = r};
}

static int64_t next_rev(pd_storage *st)
{
    int64_t rev = 0;
    CHECK(st->ops->revision_next(st, &rev) == PD_OK);
    return rev;
}

/* A household in desa (a code like 32.73.01.1001). */
static int add_household(pd_storage *st, const char *id, const char *desa, int64_t *rev_out)
{
    char prov[3], kab[6], kec[9];
    snprintf(prov, sizeof prov, "%.2s", desa);
    snprintf(kab, sizeof kab, "%.5s", desa);
    snprintf(kec, sizeof kec, "%.8s", desa);
    pd_srv_field f[] = {
        {"id", vtext(id)},         {"prov", vtext(prov)},   {"kab", vtext(kab)},
        {"kec", vtext(kec)},       {"desa", vtext(desa)},   {"head_name", vtext("Siti")},
        {"member_count", vint(0)}, {"lat", vreal(-6.9175)}, {"lon", vint(107)},
    };
    int64_t rev = next_rev(st);
    if (rev_out)
        *rev_out = rev;
    return st->ops->record_insert(st, PD_ENT_HOUSEHOLD, f, PD_ARRAY_LEN(f), rev);
}

static int add_member(pd_storage *st, const char *hh, int no, const char *nik)
{
    char id[64];
    snprintf(id, sizeof id, "%s%02d", hh, no);
    pd_srv_field f[] = {
        {"id", vtext(id)},
        {"household_id", vtext(hh)},
        {"member_no", vint(no)},
        {"name", vtext("Ani")},
        {"nik", nik ? vtext(nik) : (pd_value){.type = PD_VAL_NULL}},
    };
    return st->ops->record_insert(st, PD_ENT_MEMBER, f, PD_ARRAY_LEN(f), next_rev(st));
}

static int add_visit(pd_storage *st, const char *id, const char *hh, const char *outcome,
                     const char *device)
{
    pd_srv_field f[] = {
        {"id", vtext(id)},
        {"household_id", vtext(hh)},
        {"outcome", vtext(outcome)},
        {"visited_at", vint(1700000000000)},
        {"device_id", vtext(device)},
        {"accuracy_m", vreal(4.5)},
    };
    return st->ops->record_insert(st, PD_ENT_VISIT, f, PD_ARRAY_LEN(f), next_rev(st));
}

/* Collected rows of a row callback: entity and id, in order. */
typedef struct rows {
    int n;
    int entity[64];
    char id[64][64];
    int64_t rev[64];
    int stop_after; /* 0: never */
} rows;

static int collect_row(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    rows *r = ctx;
    if (r->n < 64) {
        r->entity[r->n] = (int)e;
        snprintf(r->id[r->n], sizeof r->id[r->n], "%.*s", (int)f[0].value.len,
                 (const char *)f[0].value.p);
        for (size_t i = 0; i < n; i++)
            if (!strcmp(f[i].name, "rev"))
                r->rev[r->n] = f[i].value.i;
        r->n++;
    }
    return r->stop_after && r->n >= r->stop_after ? 7 : 0;
}

/* ---- tests of the interface (both backends) ----------------------------------------------------
 */

static void test_users_keys_devices_codes(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    pd_srv_user s1 = {
        .id = "S1", .role = "supervisor", .name = "Budi", .area = "32.73.01", .created_at = 5};
    pd_srv_user e1 = {.id = "E1",
                      .role = "enumerator",
                      .name = "Dewi",
                      .area = "32.73.01.1001",
                      .supervisor_id = "S1",
                      .created_at = 6};
    pd_srv_user e0 = e1;
    snprintf(e0.id, sizeof e0.id, "E0");
    pd_srv_user orphan = e1;
    snprintf(orphan.id, sizeof orphan.id, "E9");
    snprintf(orphan.supervisor_id, sizeof orphan.supervisor_id, "NOBODY");
    CHECK(st->ops->user_add(st, &s1) == PD_OK);
    CHECK(st->ops->user_add(st, &e1) == PD_OK);
    CHECK(st->ops->user_add(st, &e0) == PD_OK);
    CHECK_EQ_INT(st->ops->user_add(st, &e1), PD_ERR_EXISTS);     /* duplicate id */
    CHECK_EQ_INT(st->ops->user_add(st, &orphan), PD_ERR_EXISTS); /* unknown supervisor */
    pd_srv_user got;
    CHECK(st->ops->user_get(st, "E1", &got) == PD_OK && !strcmp(got.supervisor_id, "S1") &&
          !strcmp(got.area, "32.73.01.1001") && got.created_at == 6);
    CHECK(st->ops->user_get(st, "S1", &got) == PD_OK && got.supervisor_id[0] == '\0');
    CHECK_EQ_INT(st->ops->user_get(st, "E9", &got), PD_ERR_NOTFOUND);
    CHECK(strstr(pd_storage_errmsg(st), "E9") != NULL);

    pd_srv_person_key k1 = {.user_id = "E1", .device_id = "d1", .added_at = 10, .rev = 1};
    memset(k1.pk, 0xa1, sizeof k1.pk);
    pd_srv_person_key k2 = k1;
    memset(k2.pk, 0xa2, sizeof k2.pk);
    k2.added_at = 11;
    k2.rev = 2;
    CHECK(st->ops->person_key_add(st, &k2) == PD_OK);
    CHECK(st->ops->person_key_add(st, &k1) == PD_OK);
    CHECK_EQ_INT(st->ops->person_key_add(st, &k1), PD_ERR_EXISTS);
    pd_srv_person_key kx = k1;
    memset(kx.pk, 0xa3, sizeof kx.pk);
    snprintf(kx.user_id, sizeof kx.user_id, "NOBODY");
    CHECK_EQ_INT(st->ops->person_key_add(st, &kx), PD_ERR_EXISTS); /* unknown user */
    pd_srv_person_key kg;
    CHECK(st->ops->person_key_get(st, k2.pk, &kg) == PD_OK && kg.rev == 2 &&
          !strcmp(kg.device_id, "d1"));
    CHECK_EQ_INT(st->ops->person_key_get(st, kx.pk, &kg), PD_ERR_NOTFOUND);

    pd_srv_device dv = {.id = "d1", .user_id = "E1", .enrolled_at = 100};
    memset(dv.pk, 0xd1, sizeof dv.pk);
    CHECK(st->ops->device_add(st, &dv) == PD_OK);
    CHECK_EQ_INT(st->ops->device_add(st, &dv), PD_ERR_EXISTS);
    pd_srv_device dg;
    CHECK(st->ops->device_get(st, "d1", &dg) == PD_OK && dg.revoked_at == 0 && dg.pk[0] == 0xd1 &&
          dg.enrolled_at == 100);
    CHECK(st->ops->device_revoke(st, "d1", 200) == PD_OK);
    CHECK_EQ_INT(st->ops->device_revoke(st, "d1", 300), PD_ERR_STATE);
    CHECK_EQ_INT(st->ops->device_revoke(st, "zz", 300), PD_ERR_NOTFOUND);
    CHECK(st->ops->device_get(st, "d1", &dg) == PD_OK && dg.revoked_at == 200);

    uint8_t code[PD_HASH_BYTES], other[PD_HASH_BYTES];
    memset(code, 0xc0, sizeof code);
    memset(other, 0xc1, sizeof other);
    CHECK(st->ops->code_add(st, code, "E1", 1000, 2000) == PD_OK);
    CHECK_EQ_INT(st->ops->code_add(st, code, "E1", 1000, 2000), PD_ERR_EXISTS);
    pd_srv_code_state cs;
    char uid[PD_SRV_ID_MAX + 1];
    CHECK(st->ops->code_take(st, other, 1500, "d2", &cs, uid) == PD_OK && cs == PD_CODE_UNKNOWN);
    CHECK(st->ops->code_take(st, code, 2000, "d2", &cs, uid) == PD_OK && cs == PD_CODE_EXPIRED);
    CHECK(st->ops->code_take(st, code, 1500, "d2", &cs, uid) == PD_OK && cs == PD_CODE_OK &&
          !strcmp(uid, "E1"));
    CHECK(st->ops->code_take(st, code, 1500, "d3", &cs, uid) == PD_OK && cs == PD_CODE_USED);
    pd_storage_close(st);
    db_drop(&d);
}

typedef struct keylist {
    int n;
    uint8_t first[PD_PUBKEY_BYTES];
    char ids[8][PD_SRV_ID_MAX + 1];
} keylist;

static int key_cb(void *ctx, const pd_srv_person_key *k)
{
    keylist *l = ctx;
    if (l->n == 0)
        memcpy(l->first, k->pk, PD_PUBKEY_BYTES);
    l->n++;
    return 0;
}

typedef struct idlist {
    int n;
    char ids[8][64];
} idlist;

static int id_cb(void *ctx, const char *id)
{
    idlist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s", id);
    l->n++;
    return 0;
}

static int user_cb(void *ctx, const pd_srv_user *u)
{
    keylist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s", u->id);
    l->n++;
    return 0;
}

static void test_listings(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    pd_srv_user s1 = {.id = "S1", .role = "supervisor", .name = "Budi"};
    CHECK(st->ops->user_add(st, &s1) == PD_OK);
    const char *ids[] = {"E3", "E1", "E2"};
    for (size_t i = 0; i < 3; i++) {
        pd_srv_user e = {.role = "enumerator", .name = "X", .supervisor_id = "S1"};
        snprintf(e.id, sizeof e.id, "%s", ids[i]);
        CHECK(st->ops->user_add(st, &e) == PD_OK);
    }
    keylist l = {0};
    CHECK(st->ops->users_supervised(st, "S1", user_cb, &l) == PD_OK);
    CHECK(l.n == 3 && !strcmp(l.ids[0], "E1") && !strcmp(l.ids[1], "E2") &&
          !strcmp(l.ids[2], "E3"));

    /* person keys: oldest first, only revisions that are stable */
    for (int i = 0; i < 3; i++) {
        pd_srv_person_key k = {
            .user_id = "E1", .device_id = "d", .added_at = 30 - i, .rev = next_rev(st)};
        memset(k.pk, 0x10 + i, sizeof k.pk);
        CHECK(st->ops->person_key_add(st, &k) == PD_OK);
    }
    keylist kl = {0};
    CHECK(st->ops->person_keys_of(st, "E1", key_cb, &kl) == PD_OK);
    CHECK_EQ_INT(kl.n, 3);
    CHECK(kl.first[0] == 0x12); /* added_at 28 */

    /* uploads and blobs */
    pd_srv_upload u = {.id = "u1",
                       .device_id = "d1",
                       .kind = "photo",
                       .length = 10,
                       .created_at = 1,
                       .expires_at = 50,
                       .state = "open",
                       .has_photo_hash = true};
    memset(u.photo_hash, 0xee, sizeof u.photo_hash);
    CHECK(st->ops->upload_add(st, &u) == PD_OK);
    CHECK_EQ_INT(st->ops->upload_add(st, &u), PD_ERR_EXISTS);
    pd_srv_upload u2 = u;
    snprintf(u2.id, sizeof u2.id, "u2");
    u2.has_photo_hash = false;
    u2.expires_at = 40;
    snprintf(u2.kind, sizeof u2.kind, "bundle");
    CHECK(st->ops->upload_add(st, &u2) == PD_OK);
    pd_srv_upload ug;
    CHECK(st->ops->upload_get(st, "u1", &ug) == PD_OK && ug.has_photo_hash &&
          ug.photo_hash[3] == 0xee && ug.length == 10 && !strcmp(ug.state, "open"));
    CHECK(st->ops->upload_get(st, "u2", &ug) == PD_OK && !ug.has_photo_hash);
    CHECK(st->ops->upload_update(st, "u1", 10, 60, "complete") == PD_OK);
    CHECK_EQ_INT(st->ops->upload_update(st, "nope", 1, 2, "open"), PD_ERR_NOTFOUND);
    CHECK(st->ops->upload_get(st, "u1", &ug) == PD_OK && ug.acked == 10 &&
          !strcmp(ug.state, "complete"));
    idlist el = {0};
    CHECK(st->ops->uploads_expired(st, 45, id_cb, &el) == PD_OK);
    CHECK(el.n == 1 && !strcmp(el.ids[0], "u2"));
    int64_t size = 0;
    uint8_t unknown[PD_HASH_BYTES] = {1};
    CHECK(st->ops->blob_add(st, u.photo_hash, 77, 5, "d1") == PD_OK);
    CHECK(st->ops->blob_add(st, u.photo_hash, 99, 6, "d1") == PD_OK); /* known: kept */
    CHECK(st->ops->blob_get(st, u.photo_hash, &size) == PD_OK && size == 77);
    CHECK_EQ_INT(st->ops->blob_get(st, unknown, &size), PD_ERR_NOTFOUND);

    /* nonces */
    uint8_t n1[16] = {1}, n2[16] = {2};
    bool seen = true;
    CHECK(st->ops->nonce_seen(st, "d1", n1, sizeof n1, &seen) == PD_OK && !seen);
    CHECK(st->ops->nonce_add(st, "d1", n1, sizeof n1, 100) == PD_OK);
    CHECK_EQ_INT(st->ops->nonce_add(st, "d1", n1, sizeof n1, 101), PD_ERR_EXISTS);
    CHECK(st->ops->nonce_add(st, "d2", n1, sizeof n1, 100) == PD_OK); /* per device */
    CHECK(st->ops->nonce_add(st, "d1", n2, sizeof n2, 300) == PD_OK);
    CHECK(st->ops->nonce_seen(st, "d1", n1, sizeof n1, &seen) == PD_OK && seen);
    CHECK(st->ops->nonce_purge(st, 200) == PD_OK);
    CHECK(st->ops->nonce_seen(st, "d1", n1, sizeof n1, &seen) == PD_OK && !seen);
    CHECK(st->ops->nonce_seen(st, "d1", n2, sizeof n2, &seen) == PD_OK && seen);
    pd_storage_close(st);
    db_drop(&d);
}

static int batch_cb(void *ctx, const pd_srv_batch *b)
{
    idlist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%lld:%s", (long long)b->seq, b->state);
    l->n++;
    return 0;
}

typedef struct reslist {
    int n;
    pd_srv_result r[4];
} reslist;

static int result_cb(void *ctx, const pd_srv_result *r)
{
    reslist *l = ctx;
    if (l->n < 4)
        l->r[l->n] = *r;
    l->n++;
    return 0;
}

static pd_srv_batch make_batch(const char *dev, int64_t seq, uint8_t tag, const char *state)
{
    static uint8_t bytes[3] = {1, 2, 3};
    pd_srv_batch b;
    memset(&b, 0, sizeof b);
    snprintf(b.device_id, sizeof b.device_id, "%s", dev);
    b.seq = seq;
    memset(b.hash, tag, sizeof b.hash);
    memset(b.prev_hash, tag - 1, sizeof b.prev_hash);
    memset(b.author_pk, 0xab, sizeof b.author_pk);
    snprintf(b.area, sizeof b.area, "32.73.01.1001");
    snprintf(b.state, sizeof b.state, "%s", state);
    b.bytes = bytes;
    b.bytes_len = sizeof bytes;
    b.received_at = 1000 + seq;
    return b;
}

static void test_batches(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    pd_srv_batch last;
    CHECK_EQ_INT(st->ops->batch_last(st, "d1", &last), PD_ERR_NOTFOUND);
    pd_srv_batch b1 = make_batch("d1", 1, 0x11, "applied");
    b1.has_approver = true;
    memset(b1.approver_pk, 0x5a, sizeof b1.approver_pk);
    uint8_t review[2] = {9, 9};
    b1.review = review;
    b1.review_len = sizeof review;
    pd_srv_batch b2 = make_batch("d1", 2, 0x12, "voided");
    pd_srv_batch b4 = make_batch("d1", 4, 0x14, "held");
    CHECK(st->ops->begin(st) == PD_OK);
    CHECK(st->ops->batch_put(st, &b1) == PD_OK);
    CHECK(st->ops->batch_put(st, &b2) == PD_OK);
    CHECK(st->ops->batch_put(st, &b4) == PD_OK);
    CHECK_EQ_INT(st->ops->batch_put(st, &b2), PD_ERR_EXISTS); /* same device and seq */
    pd_srv_batch dup = make_batch("d9", 1, 0x11, "applied");
    CHECK_EQ_INT(st->ops->batch_put(st, &dup), PD_ERR_EXISTS); /* same hash */
    CHECK(st->ops->commit(st) == PD_OK); /* the refused puts did not spoil the transaction */

    CHECK(st->ops->batch_last(st, "d1", &last) == PD_OK && last.seq == 2 &&
          !strcmp(last.state, "voided"));
    pd_srv_batch_clear(&last);
    pd_srv_batch g;
    CHECK(st->ops->batch_get(st, "d1", 1, &g) == PD_OK && g.has_approver &&
          g.approver_pk[0] == 0x5a && g.review_len == 2 && g.bytes_len == 3 && g.bytes[2] == 3 &&
          !g.has_receipt && g.received_at == 1001);
    pd_srv_batch_clear(&g);
    CHECK(st->ops->batch_get(st, "d1", 2, &g) == PD_OK && !g.has_approver && !g.review);
    pd_srv_batch_clear(&g);
    uint8_t h4[PD_HASH_BYTES];
    memset(h4, 0x14, sizeof h4);
    CHECK(st->ops->batch_by_hash(st, h4, &g) == PD_OK && g.seq == 4 && !strcmp(g.state, "held"));
    pd_srv_batch_clear(&g);
    CHECK_EQ_INT(st->ops->batch_get(st, "d1", 3, &g), PD_ERR_NOTFOUND);

    uint8_t receipt[PD_RECEIPT_BYTES];
    memset(receipt, 0x77, sizeof receipt);
    CHECK(st->ops->batch_set_state(st, "d1", 1, "applied", receipt, 5000) == PD_OK);
    CHECK_EQ_INT(st->ops->batch_set_state(st, "d1", 3, "applied", receipt, 5000), PD_ERR_NOTFOUND);
    CHECK(st->ops->batch_get(st, "d1", 1, &g) == PD_OK && g.has_receipt && g.receipt[9] == 0x77);
    pd_srv_batch_clear(&g);
    idlist l = {0};
    CHECK(st->ops->batches_of(st, "d1", 1, batch_cb, &l) == PD_OK);
    CHECK(l.n == 2 && !strcmp(l.ids[0], "2:voided") && !strcmp(l.ids[1], "4:held"));
    CHECK_EQ_INT(st->ops->batch_unhold(st, "d1", 2), PD_ERR_NOTFOUND); /* not held */
    CHECK(st->ops->batch_unhold(st, "d1", 4) == PD_OK);
    CHECK_EQ_INT(st->ops->batch_get(st, "d1", 4, &g), PD_ERR_NOTFOUND);

    pd_srv_batch q = make_batch("d1", 2, 0x22, "fork");
    snprintf(q.reason, sizeof q.reason, "prev_hash does not continue the chain");
    q.has_receipt = true;
    memcpy(q.receipt, receipt, sizeof receipt);
    CHECK(st->ops->quarantine_put(st, &q) == PD_OK);
    CHECK(st->ops->quarantine_put(st, &q) == PD_OK); /* ignored the second time */
    CHECK(st->ops->quarantine_by_hash(st, q.hash, &g) == PD_OK && g.seq == 2 &&
          !strcmp(g.state, "fork") && !strcmp(g.reason, q.reason) && g.has_receipt);
    pd_srv_batch_clear(&g);
    CHECK_EQ_INT(st->ops->quarantine_by_hash(st, h4, &g), PD_ERR_NOTFOUND);

    pd_srv_result r0 = {.idx = 0, .device_id = "d1", .seq = 1, .status = "applied"};
    pd_srv_result r1 = {.idx = 1,
                        .device_id = "d1",
                        .seq = 2,
                        .status = "rejected",
                        .error = "bad_batch",
                        .message = "nope"};
    CHECK(st->ops->result_put(st, "up1", &r1) == PD_OK);
    CHECK(st->ops->result_put(st, "up1", &r0) == PD_OK);
    r0.again = true;
    CHECK(st->ops->result_put(st, "up1", &r0) == PD_OK); /* replaced */
    reslist rl = {0};
    CHECK(st->ops->results_of(st, "up1", result_cb, &rl) == PD_OK);
    CHECK(rl.n == 2 && rl.r[0].idx == 0 && rl.r[0].again && rl.r[0].error[0] == '\0' &&
          rl.r[1].idx == 1 && !strcmp(rl.r[1].error, "bad_batch") &&
          !strcmp(rl.r[1].message, "nope"));
    pd_storage_close(st);
    db_drop(&d);
}

static int pair_cb(void *ctx, const char *a, const char *b, const char *c)
{
    idlist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s|%s|%s", a, b, c ? c : "-");
    l->n++;
    return 0;
}

typedef struct shapes {
    int n;
    char codes[8][32];
} shapes;

static int shape_cb(void *ctx, const char *code, const char *name, const char *shape, int64_t rev)
{
    (void)name;
    (void)shape;
    (void)rev;
    shapes *s = ctx;
    if (s->n < 8)
        snprintf(s->codes[s->n], sizeof s->codes[s->n], "%s", code);
    s->n++;
    return 0;
}

static void test_records(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    int64_t r1, r2, r3, r4;
    CHECK(add_household(st, "3273011001000002", "32.73.01.1001", &r1) == PD_OK);
    CHECK(add_household(st, "3273011001000001", "32.73.01.1001", &r2) == PD_OK);
    CHECK(add_household(st, "3273011002000001", "32.73.01.1002", &r3) == PD_OK);
    CHECK(add_household(st, "3501011001000001", "35.01.01.1001", &r4) == PD_OK);
    CHECK(add_household(st, "N-dev1-000001", "32.73.01.1001", NULL) == PD_OK); /* new hh */
    CHECK_EQ_INT(add_household(st, "3273011001000001", "32.73.01.1001", NULL), PD_ERR_EXISTS);
    CHECK_EQ_INT(add_household(st, "3273011001000001", "35.01.01.1001", NULL), PD_ERR_EXISTS);
    CHECK(strstr(pd_storage_errmsg(st), "household") != NULL);
    CHECK(add_member(st, "3273011001000001", 2, "3273014506900002") == PD_OK);
    CHECK(add_member(st, "3273011001000001", 1, "3273010101800001") == PD_OK);
    CHECK(add_member(st, "3501011001000001", 1, "3273014506900002") == PD_OK);
    CHECK_EQ_INT(add_member(st, "3273011001000001", 1, NULL), PD_ERR_EXISTS);
    CHECK_EQ_INT(add_member(st, "9999999999999999", 1, NULL), PD_ERR_INVALID); /* no household */

    /* refused inserts */
    pd_srv_field bad_type[] = {{"id", vtext("X1")},
                               {"prov", vtext("32")},
                               {"kab", vtext("32.73")},
                               {"kec", vtext("32.73.01")},
                               {"desa", vtext("32.73.01.1001")},
                               {"rooms", vtext("three")}};
    CHECK_EQ_INT(st->ops->record_insert(st, PD_ENT_HOUSEHOLD, bad_type, 6, 99), PD_ERR_INVALID);
    pd_srv_field missing[] = {{"id", vtext("X2")}, {"prov", vtext("32")}};
    CHECK_EQ_INT(st->ops->record_insert(st, PD_ENT_HOUSEHOLD, missing, 2, 99), PD_ERR_INVALID);
    pd_srv_field unknown[] = {{"id", vtext("X3")}, {"colour", vtext("red")}};
    CHECK_EQ_INT(st->ops->record_insert(st, PD_ENT_HOUSEHOLD, unknown, 2, 99), PD_ERR_INVALID);
    pd_srv_field twice[] = {{"id", vtext("X4")}, {"id", vtext("X4")}};
    CHECK_EQ_INT(st->ops->record_insert(st, PD_ENT_HOUSEHOLD, twice, 2, 99), PD_ERR_INVALID);
    int64_t rev;
    CHECK_EQ_INT(st->ops->record_rev(st, PD_ENT_HOUSEHOLD, "X1", &rev), PD_ERR_NOTFOUND);
    CHECK_EQ_INT(st->ops->record_rev(st, PD_ENT_HOUSEHOLD, "X2", &rev), PD_ERR_NOTFOUND);

    /* fields */
    CHECK(st->ops->record_rev(st, PD_ENT_HOUSEHOLD, "3273011001000001", &rev) == PD_OK &&
          rev == r2);
    int c_head = pd_entity_column(PD_ENT_HOUSEHOLD, "head_name");
    int c_lat = pd_entity_column(PD_ENT_HOUSEHOLD, "lat");
    int c_lon = pd_entity_column(PD_ENT_HOUSEHOLD, "lon");
    int c_rooms = pd_entity_column(PD_ENT_HOUSEHOLD, "rooms");
    pd_srv_value v;
    CHECK(st->ops->field_get(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_head, &v) == PD_OK &&
          v.v.type == PD_VAL_TEXT && v.v.len == 4 && !memcmp(v.v.p, "Siti", 4));
    pd_srv_value_clear(&v);
    CHECK(st->ops->field_get(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_lon, &v) == PD_OK &&
          v.v.type == PD_VAL_REAL && v.v.r == 107.0);
    pd_srv_value_clear(&v);
    CHECK(st->ops->field_get(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_rooms, &v) == PD_OK &&
          v.v.type == PD_VAL_NULL);
    pd_srv_value_clear(&v);
    CHECK_EQ_INT(st->ops->field_get(st, PD_ENT_HOUSEHOLD, "nope", c_head, &v), PD_ERR_NOTFOUND);
    pd_srv_change ch;
    CHECK_EQ_INT(st->ops->field_change(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_head, &ch),
                 PD_ERR_NOTFOUND);

    pd_srv_change mine = {
        .device_id = "d1", .has_author = true, .seq = 7, .hlc = 12345, .has_batch = true};
    memset(mine.author_pk, 0x41, sizeof mine.author_pk);
    memset(mine.batch_hash, 0x42, sizeof mine.batch_hash);
    CHECK(st->ops->begin(st) == PD_OK);
    mine.rev = next_rev(st);
    pd_value nv = vtext("Siti Aminah");
    CHECK(st->ops->field_set(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_head, &nv, &mine) ==
          PD_OK);
    pd_value wrong = vtext("north");
    CHECK_EQ_INT(st->ops->field_set(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_lat, &wrong, &mine),
                 PD_ERR_INVALID);
    pd_value gps = vreal(-6.91);
    CHECK_EQ_INT(st->ops->field_set(st, PD_ENT_HOUSEHOLD, "nope", c_lat, &gps, &mine),
                 PD_ERR_NOTFOUND);
    CHECK(st->ops->field_set(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_lat, &gps, &mine) ==
          PD_OK);
    pd_value three = vint(3);
    CHECK(st->ops->field_set(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_rooms, &three, &mine) ==
          PD_OK);
    CHECK(st->ops->commit(st) == PD_OK);
    CHECK(st->ops->field_get(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_head, &v) == PD_OK &&
          v.v.len == 11 && !memcmp(v.v.p, "Siti Aminah", 11));
    pd_srv_value_clear(&v);
    CHECK(st->ops->field_get(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_lat, &v) == PD_OK &&
          v.v.type == PD_VAL_REAL && v.v.r == -6.91);
    pd_srv_value_clear(&v);
    CHECK(st->ops->record_rev(st, PD_ENT_HOUSEHOLD, "3273011001000001", &rev) == PD_OK &&
          rev == mine.rev);
    CHECK(st->ops->field_change(st, PD_ENT_HOUSEHOLD, "3273011001000001", c_head, &ch) == PD_OK &&
          ch.rev == mine.rev && !strcmp(ch.device_id, "d1") && ch.has_author &&
          ch.author_pk[0] == 0x41 && ch.seq == 7 && ch.hlc == 12345 && ch.has_batch &&
          ch.batch_hash[31] == 0x42);

    /* areas of records */
    CHECK(add_visit(st, "Vd1-000001", "3273011001000001", "found", "d1") == PD_OK);
    CHECK(add_visit(st, "Vd2-000001", "3273011001000001", "moved_out", "d2") == PD_OK);
    CHECK(add_visit(st, "Vd2-000002", "UNKNOWN-HH", "found", "d2") == PD_OK); /* as SQLite */
    CHECK_EQ_INT(add_visit(st, "Vd1-000001", "3273011001000001", "found", "d1"), PD_ERR_EXISTS);
    char desa[PD_SRV_CODE_MAX + 1];
    CHECK(st->ops->record_area(st, PD_ENT_HOUSEHOLD, "3501011001000001", desa) == PD_OK &&
          !strcmp(desa, "35.01.01.1001"));
    CHECK(st->ops->record_area(st, PD_ENT_MEMBER, "327301100100000102", desa) == PD_OK &&
          !strcmp(desa, "32.73.01.1001"));
    CHECK(st->ops->record_area(st, PD_ENT_VISIT, "Vd2-000001", desa) == PD_OK &&
          !strcmp(desa, "32.73.01.1001"));
    CHECK_EQ_INT(st->ops->record_area(st, PD_ENT_VISIT, "Vd2-000002", desa), PD_ERR_NOTFOUND);
    CHECK_EQ_INT(st->ops->record_area(st, PD_ENT_MEMBER, "nope", desa), PD_ERR_NOTFOUND);

    idlist l = {0};
    CHECK(st->ops->nik_holders(st, "3273014506900002", pair_cb, &l) == PD_OK);
    CHECK(l.n == 2 && !strcmp(l.ids[0], "327301100100000102|3273011001000001|-") &&
          !strcmp(l.ids[1], "350101100100000101|3501011001000001|-"));
    memset(&l, 0, sizeof l);
    CHECK(st->ops->visits_of(st, "3273011001000001", pair_cb, &l) == PD_OK);
    CHECK(l.n == 2 && !strcmp(l.ids[0], "Vd1-000001|found|d1") &&
          !strcmp(l.ids[1], "Vd2-000001|moved_out|d2"));

    /* deltas: rev order, areas cover the codes below them, limit */
    rows rw = {0};
    CHECK(st->ops->records_since(st, "32.73.01", 0, 100, collect_row, &rw) == PD_OK);
    CHECK_EQ_INT(rw.n, 6); /* 4 households of 32.73.01 + 2 members */
    bool ordered = true;
    for (int i = 1; i < rw.n; i++)
        ordered = ordered && rw.rev[i] > rw.rev[i - 1];
    CHECK(ordered);
    CHECK(rw.n >= 1 && !strcmp(rw.id[rw.n - 1], "3273011001000001")); /* changed last */
    memset(&rw, 0, sizeof rw);
    CHECK(st->ops->records_since(st, "32.73.01.1002,35", r2, 100, collect_row, &rw) == PD_OK);
    CHECK(rw.n == 3 && !strcmp(rw.id[0], "3273011002000001") &&
          !strcmp(rw.id[1], "3501011001000001") && rw.entity[2] == PD_ENT_MEMBER);
    memset(&rw, 0, sizeof rw);
    CHECK(st->ops->records_since(st, "32.73.01,32.73.01.1001", 0, 2, collect_row, &rw) == PD_OK);
    CHECK_EQ_INT(rw.n, 2);
    memset(&rw, 0, sizeof rw);
    CHECK(st->ops->records_since(st, "32.73.010,32.7", 0, 100, collect_row, &rw) == PD_OK);
    CHECK_EQ_INT(rw.n, 0); /* a code covers only the codes under it */
    memset(&rw, 0, sizeof rw);
    rw.stop_after = 1;
    CHECK_EQ_INT(st->ops->records_since(st, "32", 0, 100, collect_row, &rw), 7);
    CHECK_EQ_INT(rw.n, 1);

    /* a prelist: households in id order, each followed by its members in member_no order */
    memset(&rw, 0, sizeof rw);
    CHECK(st->ops->area_records(st, "32.73.01.1001", collect_row, &rw) == PD_OK);
    CHECK(rw.n == 5 && !strcmp(rw.id[0], "3273011001000001") &&
          !strcmp(rw.id[1], "327301100100000101") && !strcmp(rw.id[2], "327301100100000102") &&
          !strcmp(rw.id[3], "3273011001000002") && !strcmp(rw.id[4], "N-dev1-000001"));
    int64_t arev = 0;
    CHECK(st->ops->area_revision(st, "32.73.01.1002", &arev) == PD_OK && arev == r3);
    CHECK(st->ops->area_revision(st, "11", &arev) == PD_OK && arev == 0);

    /* shapes */
    CHECK(st->ops->shape_put(st, "32.73.01.1001", "Cicadas", "POLYGON", 1) == PD_OK);
    CHECK(st->ops->shape_put(st, "32.73.01", "Cibeunying", "POLYGON", 2) == PD_OK);
    CHECK(st->ops->shape_put(st, "32.73.02", "Other", "POLYGON", 3) == PD_OK);
    CHECK_EQ_INT(st->ops->shape_put(st, "32.73.01", "Again", "POLYGON", 4), PD_ERR_EXISTS);
    shapes sh = {0};
    CHECK(st->ops->shapes_in(st, "32.73.01", shape_cb, &sh) == PD_OK);
    CHECK(sh.n == 2 && !strcmp(sh.codes[0], "32.73.01") && !strcmp(sh.codes[1], "32.73.01.1001"));

    /* conflicts */
    pd_value base = vint(4), server = vreal(2.5), device = vtext("x\"y");
    pd_srv_change other = {.device_id = "d2", .seq = 3, .hlc = 9};
    uint8_t author[PD_PUBKEY_BYTES] = {7}, bh[PD_HASH_BYTES] = {8};
    pd_srv_conflict cf = {.kind = "field",
                          .entity = "household",
                          .target = "3273011001000001",
                          .field = "rooms",
                          .area = "32.73.01.1001",
                          .base_rev = 3,
                          .base_value = &base,
                          .server_value = &server,
                          .server = &other,
                          .device_value = &device,
                          .device_id = "d1",
                          .device_author = author,
                          .device_seq = 5,
                          .device_hlc = 6,
                          .batch_seq = 2,
                          .batch_hash = bh,
                          .created_at = 77};
    cf.rev = next_rev(st);
    int64_t id1 = 0, id2 = 0;
    CHECK(st->ops->conflict_add(st, &cf, &id1) == PD_OK && id1 > 0);
    pd_srv_conflict cf2 = cf;
    cf2.kind = "duplicate_nik";
    cf2.area = "35.01.01.1001";
    cf2.server = NULL;
    cf2.base_value = NULL;
    cf2.rev = next_rev(st);
    CHECK(st->ops->conflict_add(st, &cf2, &id2) == PD_OK && id2 > id1);
    memset(&rw, 0, sizeof rw);
    CHECK(st->ops->conflicts_since(st, "32.73", 0, collect_row, &rw) == PD_OK);
    CHECK(rw.n == 1 && rw.entity[0] == PD_ENT__COUNT && rw.rev[0] == cf.rev);
    memset(&rw, 0, sizeof rw);
    CHECK(st->ops->conflicts_since(st, "32,35", cf.rev, collect_row, &rw) == PD_OK);
    CHECK(rw.n == 1 && rw.rev[0] == cf2.rev);

    pd_value old = vtext("Siti");
    pd_srv_audit au = {.at = 1,
                       .action = "merge",
                       .actor = "E1",
                       .device_id = "d1",
                       .batch_hash = bh,
                       .seq = 2,
                       .entity = "household",
                       .target = "3273011001000001",
                       .field = "head_name",
                       .old_value = &old,
                       .new_value = &nv,
                       .rev = mine.rev};
    CHECK(st->ops->audit_add(st, &au) == PD_OK);
    pd_srv_audit au2 = {.at = 2, .action = "init", .actor = "operator"};
    CHECK(st->ops->audit_add(st, &au2) == PD_OK);

    pd_srv_stats stats;
    memset(&stats, 0, sizeof stats);
    CHECK(st->ops->stats(st, &stats) == PD_OK);
    CHECK(stats.households == 5 && stats.members == 3 && stats.visits == 3 &&
          stats.conflicts_open == 2);
    int64_t cur = 0;
    CHECK(st->ops->revision_current(st, &cur) == PD_OK && cur == stats.revision && cur >= cf2.rev);
    pd_storage_close(st);
    db_drop(&d);
}

/* Rollback forgets; a refused call inside a transaction leaves it usable (PostgreSQL would
 * abort the whole transaction on an error: the backend must not raise one for these). */
/* field_merge_read (one call, both backends) answers what the four fine-grained calls answer,
 * value by value, in the states a field can be in. */
static void merge_agrees(pd_storage *st, pd_entity e, const char *id, const char *field,
                         int64_t base, const char *dev, bool want_last, bool want_elsewhere)
{
    int col = pd_entity_column(e, field);
    pd_srv_merge_read m;
    int mrc = st->ops->field_merge_read(st, e, id, col, base, dev, &m);
    CHECK_EQ_INT(mrc, PD_OK);
    if (mrc != PD_OK)
        return;
    char desa[PD_SRV_CODE_MAX + 1] = "";
    CHECK_EQ_INT(st->ops->record_area(st, e, id, desa), PD_OK);
    CHECK(!strcmp(m.desa, desa));
    pd_srv_value v = {0};
    CHECK_EQ_INT(st->ops->field_get(st, e, id, col, &v), PD_OK);
    CHECK_EQ_INT(m.value.v.type, v.v.type);
    if (v.v.type == PD_VAL_INT)
        CHECK_EQ_INT(m.value.v.i, v.v.i);
    if (v.v.type == PD_VAL_TEXT)
        CHECK(m.value.v.len == v.v.len && !memcmp(m.value.v.p, v.v.p, v.v.len));
    pd_srv_change last;
    int lrc = st->ops->field_change(st, e, id, col, &last);
    CHECK_EQ_INT(m.has_last, lrc == PD_OK);
    CHECK_EQ_INT(m.has_last, want_last);
    if (lrc == PD_OK && m.has_last) {
        CHECK_EQ_INT(m.last.rev, last.rev);
        CHECK(!strcmp(m.last.device_id, last.device_id));
        CHECK_EQ_INT(m.last.seq, last.seq);
        CHECK_EQ_INT(m.last.hlc, last.hlc);
        CHECK_EQ_INT(m.last.has_batch, last.has_batch);
    }
    bool elsewhere = !want_elsewhere;
    CHECK_EQ_INT(st->ops->changed_elsewhere(st, e, id, base, dev, &elsewhere), PD_OK);
    CHECK_EQ_INT(m.changed_elsewhere, elsewhere);
    CHECK_EQ_INT(m.changed_elsewhere, want_elsewhere);
    pd_srv_value_clear(&v);
    pd_srv_value_clear(&m.value);
}

static void test_merge_read_agrees_with_the_four_calls(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st || !st->ops->field_merge_read) {
        CHECK(st != NULL && st->ops->field_merge_read != NULL);
        pd_storage_close(st);
        db_drop(&d);
        return;
    }
    int64_t r0;
    CHECK(add_household(st, "3273011001000009", "32.73.01.1001", &r0) == PD_OK);
    CHECK(add_member(st, "3273011001000009", 1, NULL) == PD_OK);
    CHECK_EQ_INT(st->ops->begin(st), PD_OK);
    merge_agrees(st, PD_ENT_HOUSEHOLD, "3273011001000009", "rooms", r0, "dev-a", false, false);
    merge_agrees(st, PD_ENT_HOUSEHOLD, "3273011001000009", "head_name", r0, "dev-a", false, false);
    merge_agrees(st, PD_ENT_MEMBER, "327301100100000901", "name", r0, "dev-a", false, false);
    int64_t r1;
    CHECK_EQ_INT(st->ops->revision_next(st, &r1), PD_OK);
    pd_srv_change ch = {.rev = r1, .device_id = "dev-b", .seq = 7, .hlc = 9, .has_batch = true};
    memset(ch.batch_hash, 0xab, PD_HASH_BYTES);
    pd_value four = vint(4);
    int rooms = pd_entity_column(PD_ENT_HOUSEHOLD, "rooms");
    CHECK_EQ_INT(st->ops->field_set(st, PD_ENT_HOUSEHOLD, "3273011001000009", rooms, &four, &ch),
                 PD_OK);
    merge_agrees(st, PD_ENT_HOUSEHOLD, "3273011001000009", "rooms", r0, "dev-a", true, true);
    merge_agrees(st, PD_ENT_HOUSEHOLD, "3273011001000009", "rooms", r0, "dev-b", true, false);
    merge_agrees(st, PD_ENT_HOUSEHOLD, "3273011001000009", "rooms", r1, "dev-a", true, false);
    merge_agrees(st, PD_ENT_HOUSEHOLD, "3273011001000009", "toilet", r0, "dev-a", false, true);
    pd_srv_merge_read m;
    CHECK_EQ_INT(
        st->ops->field_merge_read(st, PD_ENT_HOUSEHOLD, "3273011001000999", rooms, 0, "dev-a", &m),
        PD_ERR_NOTFOUND);
    CHECK(st->ops->field_merge_read(st, PD_ENT_VISIT, "V1", 1, 0, "dev-a", &m) != PD_OK);
    st->ops->rollback(st);
    pd_storage_close(st);
    db_drop(&d);
}

static void test_transactions(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    CHECK(st->ops->begin(st) == PD_OK);
    CHECK(add_household(st, "H1", "32.73.01.1001", NULL) == PD_OK);
    st->ops->rollback(st);
    int64_t rev;
    CHECK_EQ_INT(st->ops->record_rev(st, PD_ENT_HOUSEHOLD, "H1", &rev), PD_ERR_NOTFOUND);

    CHECK(st->ops->begin(st) == PD_OK);
    CHECK(add_household(st, "H1", "32.73.01.1001", NULL) == PD_OK);
    CHECK_EQ_INT(add_household(st, "H1", "32.73.01.1001", NULL), PD_ERR_EXISTS);
    CHECK_EQ_INT(add_member(st, "NOPE", 1, NULL), PD_ERR_INVALID);
    pd_srv_user u = {.id = "U1", .role = "enumerator", .name = "A", .supervisor_id = "NOPE"};
    CHECK_EQ_INT(st->ops->user_add(st, &u), PD_ERR_EXISTS);
    uint8_t n1[16] = {1};
    CHECK(st->ops->nonce_add(st, "d1", n1, 16, 1) == PD_OK);
    CHECK_EQ_INT(st->ops->nonce_add(st, "d1", n1, 16, 1), PD_ERR_EXISTS);
    pd_value bad = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"a\0b", .len = 3};
    pd_srv_change ch = {.rev = next_rev(st)};
    int rc = st->ops->field_set(st, PD_ENT_HOUSEHOLD, "H1",
                                pd_entity_column(PD_ENT_HOUSEHOLD, "address"), &bad, &ch);
    if (td_is_pg())
        CHECK_EQ_INT(rc, PD_ERR_INVALID); /* PostgreSQL text cannot hold NUL */
    CHECK(add_member(st, "H1", 1, NULL) == PD_OK);
    CHECK(st->ops->commit(st) == PD_OK);
    CHECK(st->ops->record_rev(st, PD_ENT_MEMBER, "H101", &rev) == PD_OK);

    int64_t a = 0, b = 0;
    CHECK(st->ops->revision_next(st, &a) == PD_OK);
    CHECK(st->ops->revision_next(st, &b) == PD_OK && b > a);
    CHECK(st->ops->commit(st) != PD_OK); /* no transaction is open */
    pd_storage_close(st);
    db_drop(&d);
}

typedef struct kseen {
    int n;
    int64_t ids[8];
    char household[8][64];
    char related[8][64];
    char resolution[8][16];
    pd_value_type device_type[8];
    int64_t device_int[8];
    int64_t total;
} kseen;

static int conflict_cb(void *ctx, const pd_srv_conflict_row *c)
{
    kseen *k = ctx;
    if (k->n < 8) {
        k->ids[k->n] = c->id;
        snprintf(k->household[k->n], sizeof k->household[k->n], "%s", c->household_id);
        snprintf(k->related[k->n], sizeof k->related[k->n], "%s", c->related);
        snprintf(k->resolution[k->n], sizeof k->resolution[k->n], "%s", c->resolution);
        k->device_type[k->n] = c->device_value.type;
        k->device_int[k->n] = c->device_value.i;
    }
    k->n++;
    return 0;
}

static int task_cb(void *ctx, const pd_srv_task *t)
{
    idlist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s:%s", t->household_id, t->assignee);
    l->n++;
    return 0;
}

static int point_cb(void *ctx, const pd_srv_point *p)
{
    idlist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s:%s", p->household_id, p->visit_id);
    l->n++;
    return 0;
}

static int audit_cb(void *ctx, const pd_srv_audit_row *a)
{
    idlist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s:%s:%d", a->entity, a->action,
                 (int)a->new_value.type);
    l->n++;
    return 0;
}

static int holder_cb(void *ctx, const pd_srv_holder *h)
{
    idlist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s:%s:%s", h->member_id, h->household_source,
                 h->status);
    l->n++;
    return 0;
}

static int summary_cb(void *ctx, const pd_srv_desa_summary *d)
{
    idlist *l = ctx;
    if (l->n < 8)
        snprintf(l->ids[l->n], sizeof l->ids[l->n], "%s:%lld/%lld/%lld/%lld/%lld", d->desa,
                 (long long)d->households, (long long)d->visited, (long long)d->conflicts_open,
                 (long long)d->conflicts_resolved, (long long)d->tasks);
    l->n++;
    return 0;
}

/* The korcam block: the conflict queue, tasks, lookups, logins. */
static void test_korcam_block(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    if (!st->ops->conflicts_list) {
        fprintf(stderr, "   (this backend has no korcam block)\n");
        pd_storage_close(st);
        db_drop(&d);
        return;
    }
    pd_srv_user e1 = {.id = "E1", .role = "enumerator", .name = "Dewi"};
    CHECK(st->ops->user_add(st, &e1) == PD_OK);
    pd_srv_person_key k = {.user_id = "E1", .device_id = "d1", .rev = 1};
    memset(k.pk, 0x61, sizeof k.pk);
    CHECK(st->ops->person_key_add(st, &k) == PD_OK);
    CHECK(add_household(st, "H1", "32.73.01.1001", NULL) == PD_OK);
    CHECK(add_household(st, "H2", "32.73.01.1002", NULL) == PD_OK);
    CHECK(add_member(st, "H1", 1, "3273014506900002") == PD_OK);
    CHECK(add_visit(st, "V1", "H1", "found", "d1") == PD_OK);
    int c_kk = pd_entity_column(PD_ENT_HOUSEHOLD, "kk");
    pd_value kk = vtext("3273010101200001");
    pd_srv_change ch = {.rev = next_rev(st)};
    CHECK(st->ops->field_set(st, PD_ENT_HOUSEHOLD, "H2", c_kk, &kk, &ch) == PD_OK);

    uint8_t bh[PD_HASH_BYTES] = {3};
    pd_value dv = vint(5);
    pd_srv_conflict cf = {.kind = "field",
                          .entity = "member",
                          .target = "H101",
                          .field = "sex",
                          .area = "32.73.01.1001",
                          .device_value = &dv,
                          .device_id = "d1",
                          .device_author = k.pk,
                          .batch_hash = bh,
                          .created_at = 100,
                          .rev = next_rev(st)};
    int64_t id1 = 0, id2 = 0;
    CHECK(st->ops->conflict_add(st, &cf, &id1) == PD_OK);
    pd_srv_conflict cf2 = cf;
    cf2.kind = "double_visit";
    cf2.entity = "visit";
    cf2.target = "V1";
    cf2.area = "32.73.01.1002";
    cf2.created_at = 200;
    cf2.rev = next_rev(st);
    CHECK(st->ops->conflict_add(st, &cf2, &id2) == PD_OK);
    CHECK(st->ops->conflict_relate(st, id2, "V9") == PD_OK);
    bool ex = false;
    CHECK(st->ops->conflict_exists(st, "double_visit", "V1", "V9", NULL, &ex) == PD_OK && ex);
    pd_value five_real = vreal(5.0), six = vint(6);
    CHECK(st->ops->conflict_exists(st, "field", "H101", "", &five_real, &ex) == PD_OK && ex);
    CHECK(st->ops->conflict_exists(st, "field", "H101", "", &six, &ex) == PD_OK && !ex);

    kseen ks = {0};
    pd_srv_conflict_filter f = {.areas = "32.73.01"};
    CHECK(st->ops->conflicts_list(st, &f, conflict_cb, &ks, &ks.total) == PD_OK);
    CHECK(ks.n == 2 && ks.total == 2 && ks.ids[0] == id2 && ks.ids[1] == id1); /* newest first */
    CHECK(!strcmp(ks.household[0], "H1") && !strcmp(ks.household[1], "H1"));
    CHECK(!strcmp(ks.related[0], "V9") && ks.device_type[1] == PD_VAL_INT && ks.device_int[1] == 5);
    memset(&ks, 0, sizeof ks);
    f = (pd_srv_conflict_filter){
        .areas = "32.73.01", .desa = "32.73.01.1001", .enumerator = "E1", .state = "open"};
    CHECK(st->ops->conflicts_list(st, &f, conflict_cb, &ks, &ks.total) == PD_OK);
    CHECK(ks.n == 1 && ks.ids[0] == id1);
    memset(&ks, 0, sizeof ks);
    f = (pd_srv_conflict_filter){.areas = "32.73.01", .limit = 1, .offset = 1};
    CHECK(st->ops->conflicts_list(st, &f, conflict_cb, &ks, &ks.total) == PD_OK);
    CHECK(ks.n == 1 && ks.ids[0] == id1 && ks.total == 2);
    memset(&ks, 0, sizeof ks);
    f = (pd_srv_conflict_filter){.areas = "33"};
    CHECK(st->ops->conflicts_list(st, &f, conflict_cb, &ks, NULL) == PD_OK && ks.n == 0);

    pd_srv_resolution res = {.id = id1,
                             .resolution = "device",
                             .value = &dv,
                             .by = "K1",
                             .at = 300,
                             .note = "checked",
                             .rev = next_rev(st)};
    CHECK(st->ops->conflict_resolve(st, &res) == PD_OK);
    CHECK_EQ_INT(st->ops->conflict_resolve(st, &res), PD_ERR_STATE);
    res.id = 999;
    CHECK_EQ_INT(st->ops->conflict_resolve(st, &res), PD_ERR_NOTFOUND);
    res.id = id2;
    res.resolution = "coin-toss";
    CHECK(st->ops->conflict_resolve(st, &res) != PD_OK);
    memset(&ks, 0, sizeof ks);
    CHECK(st->ops->conflict_get(st, id1, conflict_cb, &ks) == PD_OK);
    CHECK(ks.n == 1 && !strcmp(ks.resolution[0], "device"));
    CHECK_EQ_INT(st->ops->conflict_get(st, 999, conflict_cb, &ks), PD_ERR_NOTFOUND);

    pd_srv_task t = {.kind = "revisit",
                     .household_id = "H1",
                     .area = "32.73.01.1001",
                     .assignee = "E1",
                     .conflict_id = id2,
                     .note = "go back",
                     .created_by = "K1",
                     .created_at = 400,
                     .rev = next_rev(st)};
    int64_t tid = 0;
    CHECK(st->ops->task_add(st, &t, &tid) == PD_OK && tid > 0);
    pd_srv_task t2 = t;
    t2.household_id = "H2";
    t2.area = "32.73.01.1002";
    t2.assignee = "";
    t2.rev = next_rev(st);
    CHECK(st->ops->task_add(st, &t2, NULL) == PD_OK);
    idlist tl = {0};
    CHECK(st->ops->tasks_since(st, "32.73.01", "E2", 0, task_cb, &tl) == PD_OK);
    CHECK(tl.n == 1 && !strcmp(tl.ids[0], "H2:"));
    memset(&tl, 0, sizeof tl);
    CHECK(st->ops->tasks_since(st, "32.73.01", NULL, t.rev - 1, task_cb, &tl) == PD_OK);
    CHECK(tl.n == 2 && !strcmp(tl.ids[0], "H1:E1"));

    idlist l = {0};
    CHECK(st->ops->nik_members(st, "3273014506900002", holder_cb, &l) == PD_OK);
    CHECK(l.n == 1 && !strcmp(l.ids[0], "H101:prelist:active"));
    memset(&l, 0, sizeof l);
    CHECK(st->ops->kk_households(st, "3273010101200001", pair_cb, &l) == PD_OK);
    CHECK(l.n == 1 && !strcmp(l.ids[0], "H2|Siti|-"));
    memset(&l, 0, sizeof l);
    CHECK(st->ops->points_in_box(st, -7, -6, 106, 108, point_cb, &l) == PD_OK);
    CHECK_EQ_INT(l.n, 2); /* two located households; the visit has no fix */
    memset(&l, 0, sizeof l);
    CHECK(st->ops->household_points(st, "H1", point_cb, &l) == PD_OK);
    CHECK(l.n == 1 && !strcmp(l.ids[0], "H1:"));
    pd_value nv = vtext("new");
    pd_srv_audit au = {.at = 1,
                       .action = "apply",
                       .actor = "E1",
                       .entity = "visit",
                       .target = "V1",
                       .new_value = &nv};
    CHECK(st->ops->audit_add(st, &au) == PD_OK);
    au.entity = "household";
    au.target = "H2";
    CHECK(st->ops->audit_add(st, &au) == PD_OK);
    memset(&l, 0, sizeof l);
    CHECK(st->ops->household_audit(st, "H1", 10, audit_cb, &l) == PD_OK);
    CHECK(l.n == 1 && !strcmp(l.ids[0], "visit:apply:3"));
    rows rw = {0};
    CHECK(st->ops->record_get(st, PD_ENT_MEMBER, "H101", collect_row, &rw) == PD_OK && rw.n == 1);
    CHECK_EQ_INT(st->ops->record_get(st, PD_ENT_HOUSEHOLD, "H9", collect_row, &rw),
                 PD_ERR_NOTFOUND);
    memset(&rw, 0, sizeof rw);
    CHECK(st->ops->household_members(st, "H1", collect_row, &rw) == PD_OK && rw.n == 1 &&
          !strcmp(rw.id[0], "H101"));

    char hash[128];
    CHECK_EQ_INT(st->ops->password_get(st, "E1", hash, sizeof hash), PD_ERR_NOTFOUND);
    CHECK_EQ_INT(st->ops->password_set(st, "NOBODY", "$argon2id$x", 1), PD_ERR_NOTFOUND);
    pd_srv_session se = {.user_id = "E1", .csrf = "c0ffee", .created_at = 1, .expires_at = 50};
    memset(se.token_hash, 0x5e, sizeof se.token_hash);
    CHECK(st->ops->session_add(st, &se) == PD_OK);
    pd_srv_session sg;
    CHECK(st->ops->session_get(st, se.token_hash, &sg) == PD_OK && !strcmp(sg.csrf, "c0ffee"));
    CHECK(st->ops->password_set(st, "E1", "$argon2id$x", 2) == PD_OK); /* ends sessions */
    CHECK_EQ_INT(st->ops->session_get(st, se.token_hash, &sg), PD_ERR_NOTFOUND);
    CHECK(st->ops->password_get(st, "E1", hash, sizeof hash) == PD_OK &&
          !strcmp(hash, "$argon2id$x"));
    CHECK_EQ_INT(st->ops->password_get(st, "E1", hash, 4), PD_ERR_CORRUPT);
    CHECK(st->ops->session_add(st, &se) == PD_OK);
    CHECK(st->ops->sessions_purge(st, 60) == PD_OK);
    CHECK_EQ_INT(st->ops->session_get(st, se.token_hash, &sg), PD_ERR_NOTFOUND);
    int64_t n = -1;
    CHECK(st->ops->login_failure_add(st, "E1", 1000000000) == PD_OK);
    CHECK(st->ops->login_failure_add(st, "E1", 1000000500) == PD_OK);
    CHECK(st->ops->login_failures(st, "E1", 1000000100, &n) == PD_OK && n == 1);
    CHECK(st->ops->login_failures_clear(st, "E1") == PD_OK);
    CHECK(st->ops->login_failures(st, "E1", 0, &n) == PD_OK && n == 0);

    memset(&l, 0, sizeof l);
    CHECK(st->ops->desa_summary(st, "32.73.01", summary_cb, &l) == PD_OK);
    CHECK(l.n == 2 && !strcmp(l.ids[0], "32.73.01.1001:1/1/0/1/1") &&
          !strcmp(l.ids[1], "32.73.01.1002:1/0/1/0/1"));
    pd_storage_close(st);
    db_drop(&d);
}

/* ---- the server on this backend ------------------------------------------------------------- */

/* `pendata-server init` on either backend: a postgres:// database needs a data directory (its key
 * file lives there) and the URL is not echoed; keys are never made twice — not over an existing
 * key file, and not for a database that already holds a server's data. */
static void test_server_init_needs_a_data_dir_and_never_rekeys(void)
{
    testdb d;
    db_make(&d, NULL);
    char *data = pd_test_path(d.dir, "data"), *other = pd_test_path(d.dir, "other");
    char *key =
        td_is_pg() ? pd_test_path(data, "server.key") : pd_test_path(d.dir, "server.db.key");
    pd_error err = {0};
    pd_server *srv = NULL;
    if (td_is_pg()) {
        CHECK_EQ_INT(pd_server_create(d.url, NULL, &err), PD_ERR_INVALID);
        CHECK(strstr(err.msg, "--data") && !strstr(err.msg, d.name));
        CHECK_EQ_INT(pd_server_open(&srv, d.url, NULL, &err), PD_ERR_INVALID);
        CHECK(srv == NULL && !strstr(err.msg, d.name));
    }
    CHECK_EQ_INT(pd_server_create(d.url, data, &err), PD_OK);
    CHECK(pd_test_file_exists(key));
    CHECK_EQ_INT(pd_server_create(d.url, data, &err), PD_ERR_EXISTS);
    CHECK_EQ_INT(pd_server_open(&srv, d.url, data, &err), PD_OK);
    if (srv) {
        pd_server_user u = {.id = "S1", .role = "supervisor", .name = "Budi", .area = "32.73.01"};
        CHECK_EQ_INT(pd_server_user_add(srv, &u), PD_OK);
        pd_server_close(srv);
    }
    /* the database now belongs to that key: no fresh keys for it, from any data directory */
    if (td_is_pg()) {
        CHECK_EQ_INT(pd_server_create(d.url, other, &err), PD_ERR_EXISTS);
        CHECK(!pd_test_file_exists(other));
    } else {
        CHECK(unlink(key) == 0);
        CHECK_EQ_INT(pd_server_create(d.url, NULL, &err), PD_ERR_EXISTS);
        CHECK(!pd_test_file_exists(key));
    }
    CHECK(strstr(err.msg, "already holds a server's data") != NULL);
    free(data);
    free(other);
    free(key);
    db_drop(&d);
}

/* ---- PostgreSQL only ------------------------------------------------------------------------- */

#ifdef PD_HAVE_PQ

static void test_pg_version_guard(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    CHECK(st != NULL);
    pd_storage_close(st);
    char v[32], latest[32];
    snprintf(latest, sizeof latest, "%d",
             pd_schema_latest(pd_schema_server_pg, pd_schema_server_pg_count));
    CHECK(pg_value(d.name, "SELECT version FROM schema_version", v, sizeof v) &&
          !strcmp(v, latest));
    CHECK(pg_sql(d.name, "UPDATE schema_version SET version = 99"));
    pd_error err = {0};
    st = NULL;
    CHECK_EQ_INT(pd_storage_open(&st, d.url, &err), PD_ERR_VERSION);
    CHECK(st == NULL && strstr(err.msg, "99") != NULL);
    CHECK(pg_value(d.name, "SELECT count(*) FROM schema_version", v, sizeof v) && !strcmp(v, "1"));
    db_drop(&d);
}

typedef struct opener {
    const char *url;
    int rc;
} opener;

static void *open_thread(void *arg)
{
    opener *o = arg;
    pd_storage *st = NULL;
    pd_error err = {0};
    o->rc = pd_storage_open(&st, o->url, &err);
    pd_storage_close(st);
    return NULL;
}

/* Four processes starting at once on an empty database migrate it once. */
static void test_pg_concurrent_migration(void)
{
    testdb d;
    db_make(&d, NULL);
    pthread_t t[4];
    opener o[4];
    for (int i = 0; i < 4; i++) {
        o[i] = (opener){.url = d.url, .rc = -1};
        pthread_create(&t[i], NULL, open_thread, &o[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_INT(o[i].rc, PD_OK);
    }
    char v[32], want[32];
    snprintf(want, sizeof want, "1:%d",
             pd_schema_latest(pd_schema_server_pg, pd_schema_server_pg_count));
    CHECK(pg_value(d.name, "SELECT count(*) || ':' || max(version) FROM schema_version", v,
                   sizeof v) &&
          !strcmp(v, want));
    db_drop(&d);
}

static void test_pg_bad_urls(void)
{
    pd_storage *st = NULL;
    pd_error err = {0};
    char url[1200];
    url_with_db(url, sizeof url, "pendata", "pool=0");
    CHECK_EQ_INT(pd_storage_open(&st, url, &err), PD_ERR_INVALID);
    url_with_db(url, sizeof url, "pendata", "pool=65");
    CHECK_EQ_INT(pd_storage_open(&st, url, &err), PD_ERR_INVALID);
    url_with_db(url, sizeof url, "pd_no_such_database", NULL);
    CHECK_EQ_INT(pd_storage_open(&st, url, &err), PD_ERR_BUSY);
    CHECK(strstr(err.msg, "pd_no_such_database") != NULL);
    CHECK(st == NULL);
}

/* Households go to their province's partition, a member and a visit to their household's; a
 * visit of a household the server does not know to the default partition. */
static void test_pg_partitions(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    CHECK(add_household(st, "3273011001000001", "32.73.01.1001", NULL) == PD_OK);
    CHECK(add_household(st, "N-dev9-000001", "35.01.01.1001", NULL) == PD_OK);
    CHECK(add_member(st, "N-dev9-000001", 1, NULL) == PD_OK);
    CHECK(add_visit(st, "V1", "N-dev9-000001", "found", "dev9") == PD_OK);
    CHECK(add_visit(st, "V2", "UNKNOWN", "found", "dev9") == PD_OK);
    char v[64];
    CHECK(pg_value(d.name,
                   "SELECT (SELECT count(*) FROM household_p32) || ',' || (SELECT "
                   "count(*) FROM household_p35) || ',' || (SELECT count(*) FROM member_p35) "
                   "|| ',' || (SELECT count(*) FROM visit_p35) || ',' || (SELECT count(*) FROM "
                   "visit_other) || ',' || (SELECT count(*) FROM record_key)",
                   v, sizeof v));
    CHECK_EQ_INT(strcmp(v, "1,1,1,1,1,5"), 0);
    pd_storage_close(st);
    db_drop(&d);
}

/* The audit log is partitioned by month (003_audit_by_month.sql): a database of version 2 keeps
 * its rows and ids through the migration, each in its month's partition; a row past every
 * month goes to audit_other and moves into its month when that partition is made. */
static void test_pg_audit_by_month(void)
{
    testdb d;
    db_make(&d, NULL);
    if (pd_schema_server_pg_count < 3 || pd_schema_server_pg[2].version != 3) {
        CHECK(!"schema/server_pg has a version 3");
        db_drop(&d);
        return;
    }
    /* a version 2 database with two audit rows: March 2021 and now */
    CHECK(pg_sql(d.name, pd_schema_server_pg[0].sql));
    CHECK(pg_sql(d.name, pd_schema_server_pg[1].sql));
    CHECK(pg_sql(d.name, "CREATE TABLE schema_version (version integer NOT NULL); INSERT INTO "
                         "schema_version VALUES (2)"));
    CHECK(pg_sql(d.name, "INSERT INTO audit (at, action, actor) VALUES (1615766400000, 'init', "
                         "'operator'), ((extract(epoch FROM now()) * 1000)::bigint, 'load', "
                         "'operator')"));
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    char v[128];
    CHECK(pg_value(d.name, "SELECT max(version) FROM schema_version", v, sizeof v) && atoi(v) >= 3);
    CHECK(pg_value(d.name,
                   "SELECT string_agg(id || ':' || action, ',' ORDER BY id) FROM audit_2021_03", v,
                   sizeof v) &&
          !strcmp(v, "1:init"));
    CHECK(pg_value(d.name,
                   "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                   "WHERE i.inhparent = 'audit'::regclass AND c.relname LIKE 'audit\\_2%'",
                   v, sizeof v) &&
          atoi(v) == 4); /* March 2021, this month and the next two */
    /* a new row continues the ids, in this month's partition */
    pd_srv_audit now = {
        .at = (int64_t)time(NULL) * 1000, .action = "user_add", .actor = "operator"};
    CHECK(st->ops->audit_add(st, &now) == PD_OK);
    CHECK(pg_value(d.name,
                   "SELECT string_agg(id::text, ',' ORDER BY id) FROM audit WHERE tableoid = "
                   "format('audit_%s', to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM'))::regclass",
                   v, sizeof v) &&
          !strcmp(v, "2,3"));
    /* January 2100: no partition yet, so audit_other; made, the row moves there */
    pd_srv_audit later = {.at = 4103654400000LL, .action = "revoke", .actor = "operator"};
    CHECK(st->ops->audit_add(st, &later) == PD_OK);
    CHECK(pg_value(d.name, "SELECT count(*) FROM audit_other", v, sizeof v) && !strcmp(v, "1"));
    CHECK(pg_value(d.name, "SELECT pd_audit_months(4103654400000, 0)", v, sizeof v) &&
          !strcmp(v, "1"));
    CHECK(pg_value(d.name, "SELECT pd_audit_months(4103654400000, 0)", v, sizeof v) &&
          !strcmp(v, "0"));
    CHECK(pg_value(d.name,
                   "SELECT (SELECT count(*) FROM audit_other) || ',' || (SELECT string_agg(id || "
                   "':' || action, ',') FROM audit_2100_01) || ',' || (SELECT count(*) FROM audit)",
                   v, sizeof v) &&
          !strcmp(v, "0,4:revoke,4"));
    pd_storage_close(st);
    db_drop(&d);
}

typedef struct resolved {
    int n;
    pd_value_type type;
    uint8_t bytes[8];
    size_t len;
    char state[16];
} resolved;

static int resolved_cb(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    (void)e;
    resolved *r = ctx;
    r->n++;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(f[i].name, "resolved_value")) {
            r->type = f[i].value.type;
            r->len = f[i].value.len;
            if (f[i].value.p && r->len <= sizeof r->bytes)
                memcpy(r->bytes, f[i].value.p, r->len);
        } else if (!strcmp(f[i].name, "state")) {
            snprintf(r->state, sizeof r->state, "%.*s", (int)f[i].value.len,
                     (const char *)f[i].value.p);
        }
    }
    return 0;
}

/* Conflict and audit values keep their type through jsonb. */
static void test_pg_values(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    pd_value base = vint(-42), server = vreal(3), device = vtext("a\"b\\c\n");
    uint8_t author[PD_PUBKEY_BYTES] = {1}, bh[PD_HASH_BYTES] = {2};
    pd_srv_conflict cf = {.kind = "field",
                          .entity = "household",
                          .target = "H",
                          .field = "f",
                          .area = "32.73.01.1001",
                          .base_value = &base,
                          .server_value = &server,
                          .device_value = &device,
                          .device_id = "d1",
                          .device_author = author,
                          .batch_hash = bh,
                          .rev = next_rev(st)};
    CHECK(st->ops->conflict_add(st, &cf, NULL) == PD_OK);
    uint8_t blob[3] = {0, 0xff, 0x10};
    pd_value old = {.type = PD_VAL_BLOB, .p = blob, .len = 3};
    pd_value odd = {.type = PD_VAL_TEXT, .p = (const uint8_t *)"\xff\xfe", .len = 2};
    pd_srv_audit au = {
        .at = 1, .action = "merge", .actor = "E1", .old_value = &old, .new_value = &odd};
    CHECK(st->ops->audit_add(st, &au) == PD_OK);
    char v[256];
    CHECK(pg_value(d.name,
                   "SELECT base_value::text || ' ' || server_value::text || ' ' || "
                   "device_value::text FROM conflicts",
                   v, sizeof v));
    CHECK_EQ_INT(strcmp(v, "-42 3.0 \"a\\\"b\\\\c\\n\""), 0);
    CHECK(pg_value(d.name, "SELECT old_value::text || ' ' || new_value::text FROM audit", v,
                   sizeof v));
    CHECK_EQ_INT(strcmp(v, "{\"blob\": \"00ff10\"} {\"text_hex\": \"fffe\"}"), 0);
    CHECK(pg_sql(d.name, "UPDATE conflicts SET resolved_value = '{\"blob\": \"0a0b\"}', "
                         "resolved_at = 5"));
    resolved r = {0};
    CHECK(st->ops->conflicts_since(st, "32", 0, resolved_cb, &r) == PD_OK);
    CHECK(r.n == 1 && r.type == PD_VAL_BLOB && r.len == 2 && r.bytes[0] == 0x0a &&
          r.bytes[1] == 0x0b && !strcmp(r.state, "resolved"));
    CHECK(pg_sql(d.name, "UPDATE conflicts SET resolved_value = '12345678901234567'"));
    memset(&r, 0, sizeof r);
    CHECK(st->ops->conflicts_since(st, "32", 0, resolved_cb, &r) == PD_OK);
    CHECK(r.n == 1 && r.type == PD_VAL_INT);
    pd_storage_close(st);
    db_drop(&d);
}

/* A delta never hands out a cursor past a revision still in flight: B's change (a later
 * revision, committed first) waits until A's (an earlier one) commits. */
static void test_pg_revision_horizon(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *a = db_open(&d), *b = db_open(&d);
    if (!a || !b) {
        CHECK(a && b);
        pd_storage_close(a);
        pd_storage_close(b);
        db_drop(&d);
        return;
    }
    int64_t r0 = 0;
    CHECK(add_household(b, "H0", "32.73.01.1001", &r0) == PD_OK);
    CHECK(a->ops->begin(a) == PD_OK);
    int64_t ra = 0, rb = 0;
    CHECK(add_household(a, "HA", "32.73.01.1001", &ra) == PD_OK);
    CHECK(add_household(b, "HB", "32.73.01.1001", &rb) == PD_OK);
    pd_srv_person_key k = {.user_id = "U", .device_id = "d", .rev = 0};
    pd_srv_user u = {.id = "U", .role = "enumerator", .name = "U"};
    CHECK(b->ops->user_add(b, &u) == PD_OK);
    CHECK(b->ops->revision_next(b, &k.rev) == PD_OK);
    CHECK(b->ops->person_key_add(b, &k) == PD_OK);
    CHECK(rb > ra && ra > r0);

    rows rw = {0};
    CHECK(b->ops->records_since(b, "32.73.01", 0, 100, collect_row, &rw) == PD_OK);
    CHECK(rw.n == 1 && !strcmp(rw.id[0], "H0"));
    int64_t cur = 0, arev = 0;
    CHECK(b->ops->revision_current(b, &cur) == PD_OK && cur == ra - 1);
    CHECK(b->ops->area_revision(b, "32", &arev) == PD_OK && arev == ra - 1);
    keylist kl = {0};
    CHECK(b->ops->person_keys_of(b, "U", key_cb, &kl) == PD_OK && kl.n == 0);
    /* the writer sees its own change, and what others committed */
    memset(&rw, 0, sizeof rw);
    CHECK(a->ops->records_since(a, "32.73.01", 0, 100, collect_row, &rw) == PD_OK);
    CHECK_EQ_INT(rw.n, 3);

    CHECK(a->ops->commit(a) == PD_OK);
    memset(&rw, 0, sizeof rw);
    CHECK(b->ops->records_since(b, "32.73.01", r0, 100, collect_row, &rw) == PD_OK);
    CHECK(rw.n == 2 && !strcmp(rw.id[0], "HA") && !strcmp(rw.id[1], "HB"));
    CHECK(b->ops->revision_current(b, &cur) == PD_OK && cur >= k.rev);
    CHECK(b->ops->person_keys_of(b, "U", key_cb, &kl) == PD_OK && kl.n == 1);

    /* a rolled-back transaction's revision is a gap, not a wall */
    CHECK(a->ops->begin(a) == PD_OK);
    CHECK(add_household(a, "HC", "32.73.01.1001", NULL) == PD_OK);
    a->ops->rollback(a);
    CHECK(add_household(b, "HD", "32.73.01.1001", NULL) == PD_OK);
    memset(&rw, 0, sizeof rw);
    CHECK(b->ops->records_since(b, "32.73.01", rb, 100, collect_row, &rw) == PD_OK);
    CHECK(rw.n == 1 && !strcmp(rw.id[0], "HD"));
    pd_storage_close(a);
    pd_storage_close(b);
    db_drop(&d);
}

/* Threads of one pooled handle and of a second handle (another server process) apply
 * "batches" that each read-modify-write one shared counter and extend their own device's chain,
 * retrying a transaction on PD_ERR_BUSY. No update is lost, no chain has a gap. */
#define LU_THREADS 6
#define LU_ROUNDS 20

typedef struct worker {
    pd_storage *st;
    char device[16];
    int done, busy_retries, failures;
} worker;

static int one_round(worker *w, int64_t seq)
{
    pd_storage *st = w->st;
    int col = pd_entity_column(PD_ENT_HOUSEHOLD, "member_count");
    int rc = st->ops->begin(st);
    pd_srv_batch last;
    int64_t expected = 1;
    if (rc == PD_OK) {
        rc = st->ops->batch_last(st, w->device, &last);
        if (rc == PD_OK) {
            expected = last.seq + 1;
            pd_srv_batch_clear(&last);
        } else if (rc == PD_ERR_NOTFOUND) {
            rc = PD_OK;
        }
    }
    if (rc == PD_OK && expected != seq)
        rc = PD_ERR_INTERNAL; /* the chain skipped or repeated */
    int64_t rev = 0;
    if (rc == PD_OK)
        rc = st->ops->record_rev(st, PD_ENT_HOUSEHOLD, "SHARED", &rev);
    pd_srv_value v = {0};
    if (rc == PD_OK)
        rc = st->ops->field_get(st, PD_ENT_HOUSEHOLD, "SHARED", col, &v);
    pd_srv_change ch = {0};
    if (rc == PD_OK)
        rc = st->ops->revision_next(st, &ch.rev);
    if (rc == PD_OK) {
        usleep(200); /* widen the window a lost update would need */
        pd_value nv = vint(v.v.i + 1);
        rc = st->ops->field_set(st, PD_ENT_HOUSEHOLD, "SHARED", col, &nv, &ch);
    }
    pd_srv_value_clear(&v);
    if (rc == PD_OK) {
        pd_srv_batch b = make_batch(w->device, seq, (uint8_t)(seq + 1), "applied");
        /* hashes must be unique across devices */
        b.hash[0] = (uint8_t)w->device[1];
        b.hash[1] = (uint8_t)w->device[2];
        rc = st->ops->batch_put(st, &b);
    }
    if (rc == PD_OK)
        return st->ops->commit(st);
    st->ops->rollback(st);
    return rc;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int64_t seq = 1; seq <= LU_ROUNDS; seq++) {
        int rc;
        int attempts = 0;
        while ((rc = one_round(w, seq)) == PD_ERR_BUSY && ++attempts < 10)
            w->busy_retries++;
        if (rc == PD_OK)
            w->done++;
        else
            w->failures++;
    }
    return NULL;
}

static void test_pg_no_lost_updates(void)
{
    testdb d;
    db_make(&d, "pool=4");
    pd_storage *p1 = db_open(&d), *p2 = db_open(&d);
    if (!p1 || !p2) {
        CHECK(p1 && p2);
        pd_storage_close(p1);
        pd_storage_close(p2);
        db_drop(&d);
        return;
    }
    CHECK(add_household(p1, "SHARED", "32.73.01.1001", NULL) == PD_OK);
    pthread_t t[LU_THREADS];
    worker w[LU_THREADS];
    for (int i = 0; i < LU_THREADS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].st = i % 2 ? p2 : p1;
        snprintf(w[i].device, sizeof w[i].device, "d%02d", i);
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    int done = 0, failures = 0, retries = 0;
    for (int i = 0; i < LU_THREADS; i++) {
        pthread_join(t[i], NULL);
        done += w[i].done;
        failures += w[i].failures;
        retries += w[i].busy_retries;
    }
    CHECK_EQ_INT(failures, 0);
    CHECK_EQ_INT(done, LU_THREADS * LU_ROUNDS);
    pd_srv_value v = {0};
    CHECK(p1->ops->field_get(p1, PD_ENT_HOUSEHOLD, "SHARED",
                             pd_entity_column(PD_ENT_HOUSEHOLD, "member_count"), &v) == PD_OK);
    CHECK_EQ_INT(v.v.i, done);
    pd_srv_value_clear(&v);
    char c[32];
    CHECK(pg_value(d.name, "SELECT count(*) FROM batches", c, sizeof c));
    CHECK_EQ_INT(atoi(c), done);
    fprintf(stderr,
            "   %d transactions from %d threads over 2 handles, %d retried after "
            "PD_ERR_BUSY\n",
            done, LU_THREADS, retries);
    pd_storage_close(p1);
    pd_storage_close(p2);
    db_drop(&d);
}

typedef struct locker {
    pd_storage *st;
    const char *first, *second;
    pthread_barrier_t *both_hold_first; /* both transactions hold their first lock */
    int rc;
    char msg[256]; /* the storage message, read on this thread (errors are per thread) */
} locker;

/* One transaction (a transaction belongs to the thread that began it): lock first, wait until the
 * other transaction holds its first lock too, lock second, then commit — or roll back if the
 * second lock failed. The barrier, not a sleep, makes the deadlock certain: with sleeps, a thread
 * delayed on a loaded machine locked its first record only after the other had committed, both
 * committed, and the test failed (it did once under load). */
static void *lock_thread(void *arg)
{
    locker *l = arg;
    pd_storage *st = l->st;
    int64_t rev;
    l->rc = st->ops->begin(st);
    if (l->rc == PD_OK)
        l->rc = st->ops->record_rev(st, PD_ENT_HOUSEHOLD, l->first, &rev);
    pthread_barrier_wait(l->both_hold_first); /* reached on failure too: never leave one waiting */
    if (l->rc == PD_OK)
        l->rc = st->ops->record_rev(st, PD_ENT_HOUSEHOLD, l->second, &rev);
    if (l->rc == PD_OK) {
        l->rc = st->ops->commit(st);
    } else {
        snprintf(l->msg, sizeof l->msg, "%s", pd_storage_errmsg(st));
        st->ops->rollback(st);
    }
    return NULL;
}

/* Two transactions locking two records in opposite orders: PostgreSQL breaks the deadlock and
 * the loser gets PD_ERR_BUSY (to replay); the winner goes on and commits. */
static void test_pg_deadlock_is_busy(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *a = db_open(&d), *b = db_open(&d);
    if (!a || !b) {
        CHECK(a && b);
        pd_storage_close(a);
        pd_storage_close(b);
        db_drop(&d);
        return;
    }
    CHECK(add_household(a, "X", "32.73.01.1001", NULL) == PD_OK);
    CHECK(add_household(a, "Y", "32.73.01.1001", NULL) == PD_OK);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, 2);
    locker la = {.st = a, .first = "X", .second = "Y", .both_hold_first = &barrier, .rc = -1};
    locker lb = {.st = b, .first = "Y", .second = "X", .both_hold_first = &barrier, .rc = -1};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, lock_thread, &la);
    pthread_create(&tb, NULL, lock_thread, &lb);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&barrier);
    CHECK((la.rc == PD_ERR_BUSY) != (lb.rc == PD_ERR_BUSY));
    CHECK(la.rc == PD_OK || lb.rc == PD_OK);
    CHECK(strstr(la.rc == PD_OK ? lb.msg : la.msg, "40P01") != NULL);
    pd_storage_close(a);
    pd_storage_close(b);
    db_drop(&d);
}

typedef struct nikcheck {
    pd_storage *st;
    int rc, holders;
} nikcheck;

static int count_pairs(void *ctx, const char *x, const char *y, const char *z)
{
    (void)x;
    (void)y;
    (void)z;
    (*(int *)ctx)++;
    return 0;
}

static void *nik_thread(void *arg)
{
    nikcheck *n = arg;
    pd_storage *st = n->st;
    n->rc = st->ops->begin(st);
    if (n->rc == PD_OK)
        n->rc = add_member(st, "HB", 1, "3273014506900002");
    if (n->rc == PD_OK)
        n->rc = st->ops->nik_holders(st, "3273014506900002", count_pairs, &n->holders);
    if (n->rc == PD_OK)
        n->rc = st->ops->commit(st);
    else
        st->ops->rollback(st);
    return NULL;
}

/* Two new members with the same NIK at once: the duplicate-NIK check of the second sees the
 * first (the check is serialised by NIK), so the duplicate cannot slip through. */
static void test_pg_nik_check_serialised(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *a = db_open(&d), *b = db_open(&d);
    if (!a || !b) {
        CHECK(a && b);
        pd_storage_close(a);
        pd_storage_close(b);
        db_drop(&d);
        return;
    }
    CHECK(add_household(a, "HA", "32.73.01.1001", NULL) == PD_OK);
    CHECK(add_household(a, "HB", "32.73.02.1001", NULL) == PD_OK);
    int ha = 0;
    CHECK(a->ops->begin(a) == PD_OK);
    CHECK(add_member(a, "HA", 1, "3273014506900002") == PD_OK);
    CHECK(a->ops->nik_holders(a, "3273014506900002", count_pairs, &ha) == PD_OK && ha == 1);
    nikcheck n = {.st = b};
    pthread_t t;
    pthread_create(&t, NULL, nik_thread, &n);
    usleep(150 * 1000); /* b has inserted and now waits on the NIK */
    CHECK(a->ops->commit(a) == PD_OK);
    pthread_join(t, NULL);
    CHECK_EQ_INT(n.rc, PD_OK);
    CHECK_EQ_INT(n.holders, 2);
    pd_storage_close(a);
    pd_storage_close(b);
    db_drop(&d);
}

/* A call outside a transaction survives the server killing its connection (retried). */
static void test_pg_reconnect(void)
{
    testdb d;
    db_make(&d, NULL);
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    pd_srv_user u = {.id = "U1", .role = "admin", .name = "Op"};
    CHECK(st->ops->user_add(st, &u) == PD_OK);
    char sql[256], v[32];
    snprintf(sql, sizeof sql,
             "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE datname = '%s' AND application_name = 'pendata-server'",
             d.name);
    CHECK(pg_value(d.name, sql, v, sizeof v) && atoi(v) == 1);
    usleep(50 * 1000);
    pd_srv_user got;
    CHECK(st->ops->user_get(st, "U1", &got) == PD_OK && !strcmp(got.name, "Op"));
    /* inside a transaction the loss is reported, and the next transaction works again */
    CHECK(st->ops->begin(st) == PD_OK);
    CHECK(pg_value(d.name, sql, v, sizeof v) && atoi(v) == 1);
    usleep(50 * 1000);
    CHECK_EQ_INT(st->ops->user_get(st, "U1", &got), PD_ERR_BUSY);
    st->ops->rollback(st);
    CHECK(st->ops->begin(st) == PD_OK);
    CHECK(st->ops->user_get(st, "U1", &got) == PD_OK);
    CHECK(st->ops->commit(st) == PD_OK);
    pd_storage_close(st);
    db_drop(&d);
}

typedef struct nested {
    pd_storage *st;
    int rows, reads;
} nested;

static int nested_cb(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    (void)n;
    nested *x = ctx;
    x->rows++;
    pd_srv_value v = {0};
    char id[64];
    snprintf(id, sizeof id, "%.*s", (int)f[0].value.len, (const char *)f[0].value.p);
    if (x->st->ops->field_get(x->st, e, id, 0, &v) == PD_OK)
        x->reads++;
    pd_srv_value_clear(&v);
    return 0;
}

/* With one connection, a callback may still use the storage (results are read before it runs),
 * inside and outside a transaction. */
static void test_pg_nested_calls(void)
{
    testdb d;
    db_make(&d, "pool=1");
    pd_storage *st = db_open(&d);
    if (!st) {
        CHECK(st != NULL);
        db_drop(&d);
        return;
    }
    CHECK(add_household(st, "H1", "32.73.01.1001", NULL) == PD_OK);
    CHECK(add_member(st, "H1", 1, NULL) == PD_OK);
    nested x = {.st = st};
    CHECK(st->ops->records_since(st, "32", 0, 10, nested_cb, &x) == PD_OK);
    CHECK(x.rows == 2 && x.reads == 2);
    memset(&x, 0, sizeof x);
    x.st = st;
    CHECK(st->ops->begin(st) == PD_OK);
    CHECK(st->ops->area_records(st, "32", nested_cb, &x) == PD_OK);
    CHECK(st->ops->commit(st) == PD_OK);
    CHECK(x.rows == 2 && x.reads == 2);
    pd_storage_close(st);
    db_drop(&d);
}

#endif /* PD_HAVE_PQ */

int main(void)
{
    base_url = getenv("PD_TEST_DB_URL");
    if (base_url && !*base_url)
        base_url = NULL;
    fprintf(stderr, "backend: %s\n", base_url ? base_url : "sqlite (temporary file)");
    RUN(test_users_keys_devices_codes);
    RUN(test_listings);
    RUN(test_batches);
    RUN(test_records);
    RUN(test_transactions);
    RUN(test_merge_read_agrees_with_the_four_calls);
    RUN(test_korcam_block);
    RUN(test_server_init_needs_a_data_dir_and_never_rekeys);
#ifdef PD_HAVE_PQ
    if (td_is_pg()) {
        RUN(test_pg_version_guard);
        RUN(test_pg_concurrent_migration);
        RUN(test_pg_bad_urls);
        RUN(test_pg_partitions);
        RUN(test_pg_audit_by_month);
        RUN(test_pg_values);
        RUN(test_pg_revision_horizon);
        RUN(test_pg_no_lost_updates);
        RUN(test_pg_deadlock_is_busy);
        RUN(test_pg_nik_check_serialised);
        RUN(test_pg_reconnect);
        RUN(test_pg_nested_calls);
    }
#endif
    return pd_test_finish();
}
