/*
 * test_fire_net.c — networks from the field: a device syncs its day through pd-faultproxy
 * (tests/fault/faultproxy.c) on an EDGE-like link, and everything arrives exactly once.
 *
 * The same day's work (batches of visits with a photo each, approved by the supervisor) is synced
 * twice over: once through the proxy with no fault (the ideal: bytes on the wire and time), once
 * through a bad link — about 50 kbit/s each way, 600 ms one-way latency, 30 % of connections cut
 * (RST) at a random byte offset, 20 % stalling longer than the client's stall timeout, and the
 * server killed (SIGKILL) and restarted in the middle. The device's sync (the real client,
 * pd_sync_run) is run again until every batch has its receipt, as a phone retries when it can.
 *
 * Proved: every batch arrives once (the server's batch count rises by exactly the number sealed;
 * each op of each batch is on the server exactly once — fire_account), each photo is held once,
 * the access log shows no byte acknowledged twice; and the figures: time to drain and bytes on
 * the wire (both directions, as the proxy counted them) against the ideal.
 *
 * Knobs (scripts/fire.sh uses them for the long version and for the run in a network
 * namespace): PD_FIRE_BATCHES (2), PD_FIRE_PHOTO_BYTES (8000), PD_FIRE_RATE (bytes/s, 6250),
 * PD_FIRE_LATENCY_MS (600), PD_FIRE_CUT_PCT (30), PD_FIRE_STALL_PCT (20), PD_FIRE_RESTART (1),
 * PD_FIRE_SEED.
 */
#include "fault/fire.h"
#include "test_sync_harness.h"
#include "testutil.h"

static char *dir;
static th_server srv;
static pd_store *enu, *sup;
static int next_hh;

typedef struct figures {
    double seconds;
    long long up, down, connections, cut, stalled, refused;
    int runs;
    uint64_t requests, retries;
} figures;

/* A stretch of the day's work: n batches of 3 visits, a photo on the first, approved. */
static bool field_day(int n, size_t photo_bytes)
{
    for (int i = 0; i < n; i++) {
        int seq = th_field_work(enu, next_hh, 3, 1, photo_bytes);
        next_hh += 3;
        if (seq <= 0 || th_review(enu, sup, (uint64_t)seq, NULL) != PD_OK)
            return false;
    }
    return true;
}

static void add_figures(figures *to, const figures *f)
{
    to->seconds += f->seconds;
    to->up += f->up;
    to->down += f->down;
    to->connections += f->connections;
    to->cut += f->cut;
    to->stalled += f->stalled;
    to->refused += f->refused;
    to->runs += f->runs;
    to->requests += f->requests;
    to->retries += f->retries;
}

static long long unacked(void)
{
    return th_count(enu, "SELECT count(*) FROM batch WHERE state IN ('approved', 'voided', "
                         "'uploaded') AND author_pk = (SELECT sign_pk FROM identity WHERE role = "
                         "'enumerator')");
}

/* Kill the server (SIGKILL) after_s into a drain and start it again on its port. */
typedef struct restart_ctx {
    double after_s;
    bool restarted;
} restart_ctx;

static void *restart_main(void *arg)
{
    restart_ctx *c = arg;
    fire_sleep_us((int64_t)(c->after_s * 1e6));
    int port = srv.port;
    th_server_kill(&srv, SIGKILL);
    fire_sleep_us(500000);
    for (int i = 0; i < 50 && !c->restarted; i++) {
        c->restarted = th_server_start(&srv, port) == 0 && srv.port == port;
        if (!c->restarted)
            fire_sleep_us(100000);
    }
    return NULL;
}

/* Sync through a proxy started with args until every batch has its receipt; restart_after_s > 0
 * kills the server that long into it (once) and starts it again on the same port. */
static void drain(const char *tag, const char *const *args, double restart_after_s,
                  const pd_sync_options *o, figures *f)
{
    memset(f, 0, sizeof *f);
    char stats[1200];
    snprintf(stats, sizeof stats, "%s/proxy-%s.json", dir, tag);
    fire_proxy px;
    REQUIRE_VOID(fire_proxy_start(&px, stats, args) == 0);
    REQUIRE_VOID(th_set_url(enu, px.port) == 0);
    int64_t t0 = fire_now_us();
    pthread_t killer;
    restart_ctx rc_ctx = {.after_s = restart_after_s};
    bool killing = restart_after_s > 0 && pthread_create(&killer, NULL, restart_main, &rc_ctx) == 0;
    int64_t deadline = t0 + 900 * 1000000LL;
    while (fire_now_us() < deadline) {
        pd_sync_stats st;
        int rc = pd_sync_run(enu, o, &st);
        f->runs++;
        f->requests += st.requests;
        f->retries += st.retries;
        if (rc == PD_OK && unacked() == 0)
            break;
        if (rc != PD_OK)
            fprintf(stderr, "   %s: sync run %d: %s (%s)\n", tag, f->runs, pd_strerror(rc),
                    pd_store_errmsg(enu));
    }
    if (killing) {
        pthread_join(killer, NULL);
        CHECK(rc_ctx.restarted);
    }
    f->seconds = (double)(fire_now_us() - t0) / 1e6;
    fire_proxy_stop(&px);
    fire_proxy_stats ps;
    CHECK(fire_proxy_read(stats, &ps) == 0);
    f->up = ps.up;
    f->down = ps.down;
    f->connections = ps.connections;
    f->cut = ps.cut;
    f->stalled = ps.stalled;
    f->refused = ps.refused;
    CHECK_EQ_INT(unacked(), 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    fire_seed_init("test_fire_net");
    int batches = (int)fire_env_long("PD_FIRE_BATCHES", 2);
    size_t photo = (size_t)fire_env_long("PD_FIRE_PHOTO_BYTES", 8000);
    long rate = fire_env_long("PD_FIRE_RATE", 6250);
    long latency = fire_env_long("PD_FIRE_LATENCY_MS", 600);
    long cut = fire_env_long("PD_FIRE_CUT_PCT", 30), stall = fire_env_long("PD_FIRE_STALL_PCT", 20);
    bool restart = fire_env_long("PD_FIRE_RESTART", 1) != 0;

    dir = pd_test_tmpdir("fire-net");
    REQUIRE(th_server_create(&srv, dir, (uint32_t)(60 + 6 * batches)) == PD_OK);
    REQUIRE(th_server_start(&srv, 0) == 0);
    enu = th_device(dir, "enu", "enumerator");
    sup = th_device(dir, "sup", "supervisor");
    REQUIRE(enu && sup);
    REQUIRE(th_enrol(enu, &srv, srv.port, "E0001") == PD_OK);
    REQUIRE(th_enrol(sup, &srv, srv.port, "S0001") == PD_OK);
    pd_sync_options o = th_options();
    REQUIRE(pd_sync_run(enu, &o, NULL) == PD_OK);
    REQUIRE(pd_sync_run(sup, &o, NULL) == PD_OK);
    REQUIRE(pd_sync_run(enu, &o, NULL) == PD_OK);

    char target[32], rate_s[24], lat_s[24], cut_s[24], stall_s[24], span_s[24], seed_s[24];
    snprintf(target, sizeof target, "127.0.0.1:%d", srv.port);
    snprintf(rate_s, sizeof rate_s, "%ld", rate);
    snprintf(lat_s, sizeof lat_s, "%ld", latency);

    snprintf(rate_s, sizeof rate_s, "%ld", rate);
    snprintf(lat_s, sizeof lat_s, "%ld", latency);
    /* the ideal: the day's work, a batch at a time, each synced over the same slow, long link
     * with no fault */
    pd_server_status s0, s1, s2;
    REQUIRE(th_server_status(&srv, &s0) == PD_OK);
    const char *clean[] = {"--target", target, "--rate", rate_s, "--latency", lat_s, NULL};
    figures ideal = {0};
    for (int i = 0; i < batches; i++) {
        figures one;
        REQUIRE(field_day(1, photo));
        drain("ideal", clean, 0, &o, &one);
        add_figures(&ideal, &one);
    }
    REQUIRE(th_server_status(&srv, &s1) == PD_OK);
    CHECK_EQ_INT(s1.batches, s0.batches + batches);
    CHECK_EQ_INT(ideal.cut, 0);
    double ideal_s = ideal.seconds / batches;
    double ideal_bytes = (double)(ideal.up + ideal.down) / batches;

    /* the field: cuts and stalls (a cut lands anywhere within what one sync moves), and the
     * server restarted during the second sync; as many syncs as the ideal had */
    snprintf(cut_s, sizeof cut_s, "%.2f", (double)cut / 100);
    snprintf(stall_s, sizeof stall_s, "%.2f", (double)stall / 100);
    snprintf(span_s, sizeof span_s, "%.0f", ideal_bytes > 1000 ? ideal_bytes : 1000);
    pd_sync_options field = th_options();
    field.connect_timeout_ms = 5000;
    field.stall_timeout_s = 3; /* the proxy's stalls (6 s) outlast it */
    field.max_attempts = 30;
    field.backoff_base_ms = 200;
    field.backoff_cap_ms = 2000;
    figures f = {0};
    int rounds = 0;
    double restart_at = 0;
    long mark = th_log_size(&srv);
    while (rounds < batches) {
        snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)fire_rand());
        /* the first sync's first connection is cut and its second stalls, whatever the dice say */
        const char *bad[] = {"--target", target,       "--rate",
                             rate_s,     "--latency",  lat_s,
                             "--cut",    cut_s,        "--stall",
                             stall_s,    "--stall-ms", "6000",
                             "--span",   span_s,       "--seed",
                             seed_s,     "--schedule", rounds == 0 && cut && stall ? "cs" : "",
                             NULL};
        figures one;
        REQUIRE(field_day(1, photo));
        int restart_round = batches > 1 ? 1 : 0;
        if (rounds == restart_round && restart)
            restart_at = 1.0 + fire_unit() * ideal_s * 2 / 3;
        drain("field", bad, rounds == restart_round ? restart_at : 0, &field, &one);
        add_figures(&f, &one);
        rounds++;
    }
    if (cut)
        CHECK(f.cut > 0);
    if (stall)
        CHECK(f.stalled > 0);
    REQUIRE(th_server_status(&srv, &s2) == PD_OK);
    /* exactly once: the server's chain grew by exactly the batches sealed */
    CHECK_EQ_INT(s2.batches, s1.batches + rounds);
    CHECK_EQ_INT(s2.forks, 0);
    CHECK_EQ_INT(s2.photos, s0.photos + batches + rounds);
    th_log log;
    th_log_read(&srv, mark, &log);
    fprintf(stderr,
            "   server log: %zu PATCH acknowledged (%llu bytes), %zu PATCH refused or cut\n",
            log.patch_ok, (unsigned long long)log.patch_in, log.patch_other);

    th_server_kill(&srv, SIGTERM);
    sqlite3 *sdb = fire_server_db(srv.db);
    REQUIRE(sdb);
    char msg[200];
    bool intact = fire_server_integrity(srv.db, sdb, msg, sizeof msg);
    if (!intact)
        fprintf(stderr, "server: %s\n", msg);
    CHECK(intact);
    CHECK(fire_integrity(pd_store_sqlite(enu), msg, sizeof msg));
    fire_account(enu, sdb, "enumerator");
    sqlite3_close(sdb);

    double ratio = (double)(f.up + f.down) / (ideal_bytes * rounds);
    double tratio = f.seconds / (ideal_s * rounds);
    char link[64];
    if (rate > 0)
        snprintf(link, sizeof link, "%ld B/s each way", rate);
    else
        snprintf(link, sizeof link, "no rate limit in the proxy (tc's, if any)");
    fprintf(stderr,
            "link: %s, %ld ms one way; ideal (no fault) per sync: %.1f s, %.0f "
            "bytes on the wire\n"
            "field (%ld %% of connections cut, %ld %% stalled 6 s, server restart at %.1f s): %d "
            "syncs drained in %.1f s = %.2f x ideal time; %lld bytes = %.2f x ideal bytes; %lld "
            "connections, %lld cut, %lld stalled, %lld refused; %d sync runs, %llu requests, %llu "
            "retries\n",
            link, latency, ideal_s, ideal_bytes, cut, stall, restart_at, rounds, f.seconds, tratio,
            f.up + f.down, ratio, f.connections, f.cut, f.stalled, f.refused, f.runs,
            (unsigned long long)f.requests, (unsigned long long)f.retries);
    printf("FIRE net rate=%ld latency_ms=%ld cut_pct=%ld stall_pct=%ld photo_bytes=%zu syncs=%d "
           "ideal_s=%.1f ideal_bytes=%.0f field_s=%.1f field_bytes=%lld time_ratio=%.2f "
           "byte_ratio=%.2f connections=%lld cut=%lld stalled=%lld refused=%lld\n",
           rate, latency, cut, stall, photo, rounds, ideal_s, ideal_bytes, f.seconds, f.up + f.down,
           tratio, ratio, f.connections, f.cut, f.stalled, f.refused);
    pd_store_close(enu);
    pd_store_close(sup);
    if (!pd_test_failures)
        pd_test_rmtree(dir);
    else
        fprintf(stderr, "kept %s\n", dir);
    free(dir);
    return pd_test_finish();
}
