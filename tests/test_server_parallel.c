/*
 * test_server_parallel.c — ONE server taking many requests at once from several devices (SQLite,
 * or PostgreSQL with a pool of 4 when PD_TEST_DB_URL names a cluster). On PostgreSQL the server
 * takes no lock of its own around storage work (the handle is concurrent: each request's
 * transaction runs on a pooled connection of its own), so this is where requests of one process
 * really meet inside the database:
 *   - every batch of every device is applied exactly once, none refused, none a conflict, and the
 *     households hold what the last batch of their device set;
 *   - the devices' reads (delta pulls) between their uploads all succeed;
 *   - a request that fails (a replayed nonce, an unknown upload) gets its own error, not another
 *     request's.
 */
#include "test_server_client.h"

#include "srv_internal.h"

#include <pthread.h>

#define THREADS 6
#define ROUNDS 6 /* batches per device, each on a household of its own */

static tsrv S;
static tdev SUP;

static ts_households HL; /* the desa's households and their revisions */

typedef struct worker {
    tdev dev;
    int t;
    pthread_barrier_t *go;
    int applied, failed, pulls_failed, wrong_errors;
    char why[256];
} worker;

/* Household of round r of thread t: distinct for every (t, r). */
static size_t hh_of(int t, int r)
{
    return (size_t)(r * THREADS + t);
}

static int64_t rooms_of(int t, int r)
{
    return 100 + t * 10 + r;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(w->go);
    for (int r = 0; r < ROUNDS; r++) {
        size_t k = hh_of(w->t, r);
        pd_op op = {.kind = "set",
                    .entity = "household",
                    .target = HL.h[k].id,
                    .field = "rooms",
                    .old_value = {.type = PD_VAL_NULL},
                    .new_value = {.type = PD_VAL_INT, .i = rooms_of(w->t, r)},
                    .base_rev = HL.h[k].rev};
        uint8_t *batch = NULL;
        size_t len = 0;
        pd_bundle *b = NULL;
        long st = 0;
        cJSON *res = NULL;
        if (tb_seal(&w->dev, TS_DESA, &op, 1, &batch, &len) == PD_OK &&
            pd_bundle_new(&b) == PD_OK && tb_add(b, batch, len, &SUP, NULL) == PD_OK)
            res = ts_sync(&S, &w->dev, b, &st);
        const cJSON *r0 = res ? ts_result(res, 0) : NULL;
        if (r0 && !strcmp(ts_str(r0, "status"), "applied") && ts_num(r0, "applied") == 1 &&
            ts_num(r0, "conflicted") == 0)
            w->applied++;
        else {
            w->failed++;
            snprintf(w->why, sizeof w->why, "round %d: HTTP %ld, status '%s'", r, st,
                     r0 ? ts_str(r0, "status") : "-");
        }
        cJSON_Delete(res);
        pd_bundle_free(b);
        free(batch);

        tresp p;
        ts_request(&S, &w->dev, "GET", "/v1/delta?since=0", NULL, NULL, 0, &p);
        if (p.status != 200)
            w->pulls_failed++;
        tresp_free(&p);

        /* a failing request: its message names its own upload, whatever runs beside it */
        char path[80], want[64];
        snprintf(path, sizeof path, "/v1/uploads/%032x", (unsigned)(w->t * 1000 + r + 1));
        snprintf(want, sizeof want, "%032x", (unsigned)(w->t * 1000 + r + 1));
        const char *head[] = {"Tus-Resumable: 1.0.0", NULL};
        ts_request(&S, &w->dev, "HEAD", path, head, NULL, 0, &p);
        if (p.status != 404)
            w->wrong_errors++;
        tresp_free(&p);
        ts_request(&S, &w->dev, "DELETE", path, head, NULL, 0, &p);
        if (p.status != 404 || !p.body || !strstr(p.body, want))
            w->wrong_errors++;
        tresp_free(&p);
    }
    return NULL;
}

static void test_one_server_many_parallel_requests_apply_exactly_once(void)
{
    REQUIRE_V(ts_start(&S, "parallel", false));
    /* more worker threads than connections: requests wait for a connection, never for a lock */
    pd_server_stop(S.srv);
    pd_server_config cfg = {.listen = "127.0.0.1:0", .threads = 8, .max_upload_bytes = 1 << 20};
    REQUIRE_V(pd_server_start(S.srv, &cfg) == PD_OK);
    S.port = pd_server_port(S.srv);
    CHECK(S.srv->st->ops->concurrent == td_is_pg());

    REQUIRE_V(S.srv->st->ops->area_records(S.srv->st, TS_DESA, ts_household_row, &HL) == PD_OK);
    REQUIRE_V(HL.n >= THREADS * ROUNDS);

    tdev_init(&SUP, "dev-S1");
    REQUIRE_V(ts_enroll(&S, &SUP, "S1") == 200);
    static worker w[THREADS];
    pthread_barrier_t go;
    pthread_barrier_init(&go, NULL, THREADS);
    for (int t = 0; t < THREADS; t++) {
        char user[16], dev[32];
        snprintf(user, sizeof user, "P%d", t);
        snprintf(dev, sizeof dev, "dev-P%d", t);
        pd_server_user u = {.id = user,
                            .role = "enumerator",
                            .name = "Petugas",
                            .area = TS_DESA,
                            .supervisor_id = "S1"};
        REQUIRE_V(pd_server_user_add(S.srv, &u) == PD_OK);
        memset(&w[t], 0, sizeof w[t]);
        tdev_init(&w[t].dev, dev);
        REQUIRE_V(ts_enroll(&S, &w[t].dev, user) == 200);
        w[t].t = t;
        w[t].go = &go;
    }
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, worker_main, &w[t]);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    pthread_barrier_destroy(&go);

    int applied = 0;
    for (int t = 0; t < THREADS; t++) {
        applied += w[t].applied;
        if (w[t].failed)
            fprintf(stderr, "device %s: %s\n", w[t].dev.id, w[t].why);
        CHECK(w[t].failed == 0);
        CHECK(w[t].pulls_failed == 0);
        CHECK(w[t].wrong_errors == 0);
    }
    CHECK(applied == THREADS * ROUNDS);

    pd_server_status stt;
    REQUIRE_V(pd_server_get_status(S.srv, &stt) == PD_OK);
    CHECK(stt.batches == THREADS * ROUNDS);
    CHECK(stt.batches_held == 0);
    CHECK(stt.forks == 0);
    CHECK(stt.conflicts_open == 0);
    for (int t = 0; t < THREADS; t++)
        for (int r = 0; r < ROUNDS; r++) {
            pd_srv_value v = {0};
            int col = pd_entity_column(PD_ENT_HOUSEHOLD, "rooms");
            REQUIRE_V(col >= 0);
            CHECK(S.srv->st->ops->field_get(S.srv->st, PD_ENT_HOUSEHOLD, HL.h[hh_of(t, r)].id, col,
                                            &v) == PD_OK);
            CHECK(v.v.type == PD_VAL_INT && v.v.i == rooms_of(t, r));
            pd_srv_value_clear(&v);
        }
    ts_stop(&S);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    REQUIRE(sodium_init() >= 0);
    RUN(test_one_server_many_parallel_requests_apply_exactly_once);
    curl_global_cleanup();
    return pd_test_finish();
}
