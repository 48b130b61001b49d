/*
 * test_server_apply.c — applying batches when two servers share one database (issue #8), each
 * with its own storage handle and lock, as two stateless processes behind a load balancer
 * (SQLite, or PostgreSQL when PD_TEST_DB_URL names a cluster):
 *   - the same bundle handed to both at the same instant is applied exactly once: one server
 *     applies it, the other answers with the receipt it got ("again"), and neither quarantines
 *     it as a fork (the exactly-once check is made inside the applying transaction);
 *   - two consecutive batches of one device, one to each server at once, both join the chain
 *     whatever the order (a batch held ahead of its gap is drained by the other server, the
 *     chain read inside the draining transaction).
 */
#include "test_server_client.h"

#include "srv_internal.h"

#include <pthread.h>

#define ROUNDS 12

static tsrv S;
static pd_server *B; /* the second server on S's database */
static tdev E1, S1;

static ts_households HL; /* the desa's households and their revisions */

/* One approved bundle of E1: "set rooms" on household k. */
static pd_bundle *bundle_for(size_t k, int64_t rooms)
{
    pd_op op = {.kind = "set",
                .entity = "household",
                .target = HL.h[k].id,
                .field = "rooms",
                .old_value = {.type = PD_VAL_NULL},
                .new_value = {.type = PD_VAL_INT, .i = rooms},
                .base_rev = HL.h[k].rev};
    uint8_t *batch = NULL;
    size_t len = 0;
    pd_bundle *b = NULL;
    if (tb_seal(&E1, TS_DESA, &op, 1, &batch, &len) != PD_OK || pd_bundle_new(&b) != PD_OK ||
        tb_add(b, batch, len, &S1, NULL) != PD_OK) {
        pd_bundle_free(b);
        b = NULL;
    }
    free(batch);
    return b;
}

typedef struct runner {
    pd_server *srv;
    const uint8_t *bytes;
    size_t len;
    char upload[PD_SRV_UPLOAD_ID_LEN + 1];
    pthread_barrier_t *go;
    int rc;
} runner;

static void *run(void *arg)
{
    runner *r = arg;
    pthread_barrier_wait(r->go);
    pthread_mutex_lock(&r->srv->lock);
    r->rc = srv_bundle_process(r->srv, r->upload, E1.id, r->bytes, r->len);
    pthread_mutex_unlock(&r->srv->lock);
    return NULL;
}

/* Both servers process their bundle at once. */
static void run_both(const pd_bundle *a, const pd_bundle *b, const char *ua, const char *ub,
                     int *rca, int *rcb)
{
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, 2);
    runner r[2] = {{.srv = S.srv, .go = &go}, {.srv = B, .go = &go}};
    r[0].bytes = pd_bundle_bytes(a, &r[0].len);
    r[1].bytes = pd_bundle_bytes(b, &r[1].len);
    snprintf(r[0].upload, sizeof r[0].upload, "%s", ua);
    snprintf(r[1].upload, sizeof r[1].upload, "%s", ub);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, run, &r[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&go);
    *rca = r[0].rc;
    *rcb = r[1].rc;
}

typedef struct result_ctx {
    char status[12];
    bool again;
    int n;
} result_ctx;

static int result_cb(void *ctx, const pd_srv_result *r)
{
    result_ctx *c = ctx;
    snprintf(c->status, sizeof c->status, "%s", r->status);
    c->again = r->again;
    c->n++;
    return 0;
}

static result_ctx result_of(const char *upload)
{
    result_ctx c;
    memset(&c, 0, sizeof c);
    pthread_mutex_lock(&B->lock);
    B->st->ops->results_of(B->st, upload, result_cb, &c);
    pthread_mutex_unlock(&B->lock);
    return c;
}

static void upload_id(char out[PD_SRV_UPLOAD_ID_LEN + 1], const char *tag, int i)
{
    snprintf(out, PD_SRV_UPLOAD_ID_LEN + 1, "%s%0*d", tag,
             (int)(PD_SRV_UPLOAD_ID_LEN - strlen(tag)), i);
}

static void test_same_batch_on_two_servers_at_once_applies_exactly_once(void)
{
    pd_server_status before, after;
    REQUIRE_V(pd_server_get_status(B, &before) == PD_OK);
    for (int i = 0; i < ROUNDS; i++) {
        pd_bundle *bu = bundle_for((size_t)i, 100 + i);
        REQUIRE_V(bu);
        char ua[PD_SRV_UPLOAD_ID_LEN + 1], ub[PD_SRV_UPLOAD_ID_LEN + 1];
        upload_id(ua, "a", i);
        upload_id(ub, "b", i);
        int rca, rcb;
        run_both(bu, bu, ua, ub, &rca, &rcb);
        pd_bundle_free(bu);
        CHECK_EQ_INT(rca, PD_OK);
        CHECK_EQ_INT(rcb, PD_OK);
        result_ctx a = result_of(ua), b = result_of(ub);
        CHECK_EQ_INT(a.n, 1);
        CHECK_EQ_INT(b.n, 1);
        CHECK(!strcmp(a.status, "applied"));
        CHECK(!strcmp(b.status, "applied"));
        CHECK(a.again != b.again); /* exactly one applied it; the other answered again */
        if (strcmp(a.status, "applied") != 0 || strcmp(b.status, "applied") != 0)
            fprintf(stderr, "round %d: %s/%d and %s/%d\n", i, a.status, a.again, b.status, b.again);
    }
    REQUIRE_V(pd_server_get_status(B, &after) == PD_OK);
    CHECK_EQ_INT(after.forks, before.forks);
    CHECK_EQ_INT(after.batches, before.batches + ROUNDS);
    CHECK_EQ_INT(after.batches_held, 0);
}

static void test_consecutive_batches_on_two_servers_both_join_the_chain(void)
{
    pd_server_status before, after;
    REQUIRE_V(pd_server_get_status(B, &before) == PD_OK);
    for (int i = 0; i < ROUNDS; i++) {
        pd_bundle *first = bundle_for((size_t)(ROUNDS + 2 * i), 7);
        pd_bundle *second = bundle_for((size_t)(ROUNDS + 2 * i + 1), 8);
        REQUIRE_V(first && second);
        char ua[PD_SRV_UPLOAD_ID_LEN + 1], ub[PD_SRV_UPLOAD_ID_LEN + 1];
        upload_id(ua, "c", i);
        upload_id(ub, "d", i);
        int rca, rcb;
        /* alternate which server gets the later batch */
        if (i % 2)
            run_both(first, second, ua, ub, &rca, &rcb);
        else
            run_both(second, first, ua, ub, &rca, &rcb);
        pd_bundle_free(first);
        pd_bundle_free(second);
        CHECK_EQ_INT(rca, PD_OK);
        CHECK_EQ_INT(rcb, PD_OK);
        result_ctx a = result_of(ua), b = result_of(ub);
        CHECK(!strcmp(a.status, "applied") || !strcmp(a.status, "held"));
        CHECK(!strcmp(b.status, "applied") || !strcmp(b.status, "held"));
    }
    REQUIRE_V(pd_server_get_status(B, &after) == PD_OK);
    CHECK_EQ_INT(after.forks, before.forks);
    CHECK_EQ_INT(after.batches, before.batches + 2 * ROUNDS); /* all in the chain */
    CHECK_EQ_INT(after.batches_held, 0);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    REQUIRE(sodium_init() >= 0);
    REQUIRE(ts_start(&S, "server-apply", false));
    tdev_init(&E1, "dev-e1");
    tdev_init(&S1, "dev-s1");
    REQUIRE(ts_enroll(&S, &E1, "E1") == 200);
    REQUIRE(ts_enroll(&S, &S1, "S1") == 200);
    pd_error err = {0};
    REQUIRE(pd_server_open(&B, S.url, S.data_dir, &err) == PD_OK);
    REQUIRE(B->st->ops->area_records(B->st, TS_DESA, ts_household_row, &HL) == PD_OK);
    REQUIRE(HL.n >= 3 * ROUNDS);
    RUN(test_same_batch_on_two_servers_at_once_applies_exactly_once);
    RUN(test_consecutive_batches_on_two_servers_both_join_the_chain);
    pd_server_close(B);
    ts_stop(&S);
    curl_global_cleanup();
    return pd_test_finish();
}
