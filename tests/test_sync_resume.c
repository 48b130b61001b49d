/*
 * test_sync_resume.c — uploads and downloads that break, against the real `pendata-server` child
 * through a TCP proxy in this test:
 *   - the connection is cut after K bytes (K random) while photos and the bundle go up: the sync
 *     finishes in the same run, and the server acknowledges every byte exactly once (its access
 *     log: the 204 PATCH bodies add up to the uploads' lengths), the only waste being the part of
 *     the one cut request it never acknowledged;
 *   - the prelist download is cut: it resumes with Range / If-Range (a 206 in the server's log);
 *   - `pendata sync` itself is killed (SIGKILL) mid-upload: the next sync resumes at the offset
 *     the server holds (HEAD) and sends only what it lacks;
 *   - the server is killed (SIGKILL) and restarted mid-upload: the same sync resumes and the
 *     batch is applied exactly once.
 * The seed of the random cuts is printed; PD_TEST_SEED replays one.
 */
#include "test_sync_harness.h"
#include "testutil.h"

static char *dir;
static th_server srv;
static th_proxy proxy;
static pd_store *enu, *sup;
static char enu_home[1024];
static uint32_t rng;

static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
}

static pd_sync_options opts(void)
{
    pd_sync_options o = th_options();
    o.chunk_bytes = 4096;
    return o;
}

/* The bytes of the bundle that carries batch seq alone: PDF1 framing + batch + record. */
static uint64_t bundle_bytes(pd_store *s, uint64_t seq)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT 5 + 10 + length(bytes) + length(approval) FROM batch WHERE seq = %llu AND "
             "author_pk = (SELECT sign_pk FROM identity WHERE role = 'enumerator')",
             (unsigned long long)seq);
    return (uint64_t)th_count(s, sql);
}

static void test_a_cut_at_a_random_byte_resumes_and_each_byte_is_acknowledged_once(void)
{
    pd_sync_options o = opts();
    for (int round = 0; round < 4; round++) {
        int seq = th_field_work(enu, 20 + round, 4, 1, 30000);
        REQUIRE_VOID(seq > 0);
        REQUIRE_VOID(th_review(enu, sup, (uint64_t)seq, NULL) == PD_OK);
        uint64_t expect = 30000 + bundle_bytes(enu, (uint64_t)seq);
        long long k = 300 + (long long)(next_rand() % (uint32_t)(expect + 1500));
        fprintf(stderr, "   round %d: %llu bytes to send, cut after %lld\n", round,
                (unsigned long long)expect, k);
        long mark = th_log_size(&srv);
        int cuts = atomic_load(&proxy.cuts);
        atomic_store(&proxy.cut_after, k);
        pd_sync_stats st;
        CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
        atomic_store(&proxy.cut_after, 0);
        CHECK_EQ_INT(atomic_load(&proxy.cuts), cuts + 1);
        char state[16];
        th_batch_state(enu, (uint64_t)seq, state);
        CHECK(!strcmp(state, "acknowledged"));
        CHECK_EQ_INT(st.upload_length, expect);
        th_log log;
        th_log_read(&srv, mark, &log);
        /* the server acknowledged each byte once: nothing it held was sent again */
        CHECK_EQ_INT(log.patch_in, expect);
        /* what went to waste is at most the one request the cut broke */
        CHECK(st.upload_body_bytes >= expect);
        CHECK(st.upload_body_bytes - expect <= o.chunk_bytes);
    }
}

static void test_a_cut_prelist_download_resumes_with_range(void)
{
    pd_store *d = th_device(dir, "late", "enumerator");
    REQUIRE_VOID(d);
    REQUIRE_VOID(th_enrol(d, &srv, srv.port, "E0002") == PD_OK);
    REQUIRE_VOID(th_set_url(d, proxy.port) == 0);
    long mark = th_log_size(&srv);
    int cuts = atomic_load(&proxy.cuts);
    /* headers (~300 bytes) + part of a package of several KiB */
    atomic_store(&proxy.cut_down_after, 1500 + (long long)(next_rand() % 2500));
    pd_sync_options o = opts();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(d, &o, &st), PD_OK);
    atomic_store(&proxy.cut_down_after, 0);
    CHECK_EQ_INT(atomic_load(&proxy.cuts), cuts + 1);
    CHECK(st.prelist_imported);
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM household"), 60);
    th_log log;
    th_log_read(&srv, mark, &log);
    CHECK_EQ_INT(log.prelist_partial, 1);
    pd_store_close(d);
}

/* Run `pendata sync` through the proxy as a child; returns its pid. */
static pid_t spawn_sync(const char *home, const char *out)
{
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/pendata", th_build());
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        setenv("PENDATA_PIN", TH_PIN, 1);
        execl(bin, bin, "--home", home, "--json", "sync", "--chunk", "8192", "--attempts", "200",
              "--backoff", "10", "--backoff-cap", "200", "--connect-timeout", "1000", (char *)NULL);
        _exit(127);
    }
    return pid;
}

static bool wait_up(long long bytes, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t++) {
        if (atomic_load(&proxy.up) >= bytes)
            return true;
        th_sleep_ms(1);
    }
    return false;
}

static void reopen_enu(void)
{
    pd_error err = {0};
    if (pd_store_open(&enu, enu_home, TH_PIN, &err) != PD_OK) {
        fprintf(stderr, "reopen: %s\n", err.msg);
        enu = NULL;
    }
}

static void test_a_killed_sync_resumes_at_the_servers_offset(void)
{
    int seq = th_field_work(enu, 30, 3, 3, 60000);
    REQUIRE_VOID(seq > 0);
    REQUIRE_VOID(th_review(enu, sup, (uint64_t)seq, NULL) == PD_OK);
    uint64_t expect = 3 * 60000 + bundle_bytes(enu, (uint64_t)seq);
    pd_store_close(enu);
    enu = NULL;
    long mark = th_log_size(&srv);
    atomic_store(&proxy.up, 0);
    atomic_store(&proxy.up_bytes_per_tick, 512);
    char *out = pd_test_path(dir, "killed-sync.out");
    pid_t pid = spawn_sync(enu_home, out);
    /* in the middle of the second photo */
    long long at = 60000 + 20000 + (long long)(next_rand() % 30000);
    bool reached = wait_up(at, 20000);
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    atomic_store(&proxy.up_bytes_per_tick, 0);
    CHECK(reached);
    CHECK(WIFSIGNALED(status));
    /* a request the proxy had passed on whole may still complete on the server: let it */
    th_sleep_ms(300);
    th_log before;
    th_log_read(&srv, mark, &before);
    CHECK(before.patch_in > 0 && before.patch_in < expect);
    reopen_enu();
    REQUIRE_VOID(enu);
    int64_t saved = -1;
    CHECK_EQ_INT(pd_sync_state_get_int(enu, "photo.offset", &saved), PD_OK);
    pd_sync_options o = opts();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.upload_resumed, 1);
    CHECK(st.upload_resume_offset > 0);
    char state[16];
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(!strcmp(state, "acknowledged"));
    th_log all;
    th_log_read(&srv, mark, &all);
    /* across both runs, each byte was acknowledged once */
    CHECK_EQ_INT(all.patch_in, expect);
    /* and the second run sent only what the server lacked (plus nothing: no cut this time) */
    CHECK_EQ_INT(st.upload_body_bytes, expect - before.patch_in);
    CHECK_EQ_INT(th_count(enu, "SELECT count(*) FROM photo WHERE uploaded = 0"), 0);
    free(out);
}

static void test_a_server_killed_mid_upload_and_restarted_applies_once(void)
{
    int seq = th_field_work(enu, 40, 3, 3, 60000);
    REQUIRE_VOID(seq > 0);
    REQUIRE_VOID(th_review(enu, sup, (uint64_t)seq, NULL) == PD_OK);
    uint64_t expect = 3 * 60000 + bundle_bytes(enu, (uint64_t)seq);
    pd_store_close(enu);
    enu = NULL;
    pd_server_status s0;
    REQUIRE_VOID(th_server_status(&srv, &s0) == PD_OK);
    long mark = th_log_size(&srv);
    atomic_store(&proxy.up, 0);
    atomic_store(&proxy.up_bytes_per_tick, 512);
    char *out = pd_test_path(dir, "server-killed.out");
    pid_t pid = spawn_sync(enu_home, out);
    long long at = 60000 + (long long)(next_rand() % 100000);
    CHECK(wait_up(at, 20000));
    th_server_kill(&srv, SIGKILL);
    th_sleep_ms(200);
    REQUIRE_VOID(th_server_start(&srv, 0) == 0);
    atomic_store(&proxy.target_port, srv.port);
    atomic_store(&proxy.up_bytes_per_tick, 0);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        size_t n = 0;
        uint8_t *text = pd_test_read_file(out, &n);
        if (text)
            fprintf(stderr, "%.*s\n", (int)n, (const char *)text);
        free(text);
    }
    reopen_enu();
    REQUIRE_VOID(enu);
    char state[16];
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(!strcmp(state, "acknowledged"));
    pd_server_status s1;
    REQUIRE_VOID(th_server_status(&srv, &s1) == PD_OK);
    CHECK_EQ_INT(s1.batches, s0.batches + 1); /* exactly once */
    th_log log;
    th_log_read(&srv, mark, &log);
    /* never more than once (a PATCH acknowledged as the server died may miss the log) */
    CHECK(log.patch_in <= expect);
    CHECK(log.heads >= 1);
    free(out);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const char *seed = getenv("PD_TEST_SEED");
    rng = seed ? (uint32_t)strtoul(seed, NULL, 10) : (uint32_t)time(NULL);
    if (!rng)
        rng = 1;
    fprintf(stderr, "seed %u (PD_TEST_SEED replays it)\n", rng);
    dir = pd_test_tmpdir("sync-resume");
    REQUIRE(th_server_create(&srv, dir, 60) == PD_OK);
    REQUIRE(th_server_start(&srv, 0) == 0);
    REQUIRE(th_proxy_start(&proxy, srv.port) == 0);
    enu = th_device(dir, "enu", "enumerator");
    sup = th_device(dir, "sup", "supervisor");
    snprintf(enu_home, sizeof enu_home, "%s/enu", dir);
    REQUIRE(enu && sup);
    REQUIRE(th_enrol(enu, &srv, srv.port, "E0001") == PD_OK);
    REQUIRE(th_enrol(sup, &srv, srv.port, "S0001") == PD_OK);
    pd_sync_options o = opts();
    REQUIRE(pd_sync_run(enu, &o, NULL) == PD_OK);
    REQUIRE(pd_sync_run(sup, &o, NULL) == PD_OK);
    REQUIRE(pd_sync_run(enu, &o, NULL) == PD_OK); /* the supervisor's key */
    REQUIRE(th_set_url(enu, proxy.port) == 0);
    RUN(test_a_cut_at_a_random_byte_resumes_and_each_byte_is_acknowledged_once);
    RUN(test_a_cut_prelist_download_resumes_with_range);
    RUN(test_a_killed_sync_resumes_at_the_servers_offset);
    if (enu)
        RUN(test_a_server_killed_mid_upload_and_restarted_applies_once);
    pd_store_close(enu);
    pd_store_close(sup);
    th_proxy_stop(&proxy);
    th_server_kill(&srv, SIGTERM);
    pd_test_rmtree(dir);
    free(dir);
    return pd_test_finish();
}
