/*
 * test_sync_resume.c — uploads and downloads that break, against the real `pendata-server` child
 * through a TCP proxy in this test:
 *   - the connection is cut after K bytes (K random) while photos and the bundle go up: the sync
 *     finishes in the same run, and the server acknowledges every byte exactly once (its access
 *     log: the 204 PATCH bodies add up to the uploads' lengths), the only waste being the part of
 *     the one cut request it never acknowledged;
 *   - the prelist download is cut: what arrived stays inside the encrypted store (no file of the
 *     device holds a byte run, a name or a NIK of the package), and the next run resumes with
 *     Range / If-Range, asking only for the bytes it lacks (a 206 in the server's log);
 *   - `pendata sync` itself is killed (SIGKILL) mid-upload: the next sync resumes at the offset
 *     the server holds (HEAD) and sends only what it lacks;
 *   - the server is killed (SIGKILL) and restarted mid-upload: the same sync resumes and the
 *     batch is applied exactly once.
 * The seed of the random cuts is printed; PD_TEST_SEED replays one. No check leans on timing: the
 * faults are explicit cuts and kills (no stall timeout can fire on a slow machine), the access
 * log is read once it has fallen quiet (a request is logged after its answer), and a server
 * that still holds a dead client's request (423) is waited for, its refusals accounted for.
 */
#include "test_sync_harness.h"
#include "testutil.h"

#include "pd_prelist.h"

#include <dirent.h>

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
    /* The faults here are cuts (RST), never stalls: a loaded machine whose server takes seconds
     * to fsync must not add a stall-timeout retry that the byte counts below do not expect. */
    o.stall_timeout_s = 120;
    o.connect_timeout_ms = 30000;
    /* After a kill the server may hold the dead client's PATCH a while (423 busy, sometimes a
     * reset connection) until it notices: patience of seconds, not of the ~1 s of th_options. */
    o.max_attempts = 60;
    o.backoff_cap_ms = 500;
    return o;
}

/* Wait until the server's access log has not grown for quiet_ms (a request still in flight when
 * the client stopped is logged, whatever the load), at most max_ms. */
static void wait_log_quiet(const th_server *s, long quiet_ms, long max_ms)
{
    long size = th_log_size(s), still = 0;
    for (long t = 0; t < max_ms && still < quiet_ms; t += 10) {
        th_sleep_ms(10);
        long now = th_log_size(s);
        still = now == size ? still + 10 : 0;
        size = now;
    }
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
        wait_log_quiet(&srv, 200, 10000); /* the last request is logged after its answer */
        th_log_read(&srv, mark, &log);
        /* the server acknowledged each byte once: nothing it held was sent again */
        CHECK_EQ_INT(log.patch_in, expect);
        /* what went to waste is at most the one request the cut broke */
        CHECK(st.upload_body_bytes >= expect);
        CHECK(st.upload_body_bytes - expect <= o.chunk_bytes);
    }
}

/* Does the file hold these bytes? */
static bool file_holds(const char *path, const void *needle, size_t n)
{
    size_t len = 0;
    uint8_t *p = pd_test_read_file(path, &len);
    bool found = false;
    for (size_t i = 0; p && !found && n <= len && i <= len - n; i++)
        found = !memcmp(p + i, needle, n);
    free(p);
    return found;
}

/* The regular files directly in dir (NULL-terminated, malloc'd paths). */
static char **files_in(const char *dir_path)
{
    char **v = calloc(64, sizeof *v);
    DIR *d = opendir(dir_path);
    size_t n = 0;
    struct dirent *de;
    while (v && d && n < 63 && (de = readdir(d))) {
        char *p = pd_test_path(dir_path, de->d_name);
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode))
            v[n++] = p;
        else
            free(p);
    }
    if (d)
        closedir(d);
    return v;
}

static void free_list(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* Bytes the server sent for GET /v1/prelist answered 206, from the access log at `from`. */
static long long prelist_206_out(const th_server *s, long from)
{
    FILE *f = fopen(s->log, "r");
    long long out = -1;
    char line[1024];
    if (f && fseek(f, from, SEEK_SET) == 0)
        while (fgets(line, sizeof line, f))
            if (strstr(line, "path=/v1/prelist") && th_field(line, "status=") == 206)
                out = th_field(line, " out=");
    if (f)
        fclose(f);
    return out;
}

static void test_a_cut_prelist_download_stays_encrypted_and_resumes_with_range(void)
{
    pd_store *d = th_device(dir, "late", "enumerator");
    REQUIRE_VOID(d);
    REQUIRE_VOID(th_enrol(d, &srv, srv.port, "E0002") == PD_OK);
    REQUIRE_VOID(th_set_url(d, proxy.port) == 0);
    char home[1024], legacy[1100], pkgdir[1100];
    snprintf(home, sizeof home, "%s/late", dir);
    snprintf(legacy, sizeof legacy, "%s/prelist.part", home);
    snprintf(pkgdir, sizeof pkgdir, "%s/server.db.d/packages", dir);
    /* what an older version left: a plain download, removed by the next sync */
    REQUIRE_VOID(pd_test_write_file(legacy, (const uint8_t *)"PDP1", 4) == 0);
    long mark = th_log_size(&srv);
    int cuts = atomic_load(&proxy.cuts);
    /* headers (~300 bytes) + part of a package of several KiB; one attempt: the run stops */
    atomic_store(&proxy.cut_down_after, 1500 + (long long)(next_rand() % 2500));
    pd_sync_options o = opts();
    o.max_attempts = 1;
    pd_sync_stats st;
    CHECK(pd_sync_run(d, &o, &st) != PD_OK);
    atomic_store(&proxy.cut_down_after, 0);
    CHECK_EQ_INT(atomic_load(&proxy.cuts), cuts + 1);
    CHECK(!st.prelist_imported);
    CHECK(access(legacy, F_OK) != 0);
    long long held = th_count(d, "SELECT coalesce(sum(length(data)), 0) FROM prelist_part");
    CHECK(held > PD_PRELIST_PREFIX_BYTES + 64);

    /* No file of the device's home holds a byte run of the package the server sent (the plain
     * download of old did), nor a name or NIK it carries: they are in the store, encrypted. */
    char **pkgs = files_in(pkgdir), **mine = files_in(home);
    REQUIRE_VOID(pkgs && mine && pkgs[0] && mine[0]);
    size_t plen = 0;
    uint8_t *pkg = pd_test_read_file(pkgs[0], &plen);
    REQUIRE_VOID(pkg && plen > (size_t)held);
    sqlite3_stmt *q = NULL;
    REQUIRE_VOID(sqlite3_prepare_v2(pd_store_sqlite(enu),
                                    "SELECT nik, name FROM member WHERE nik NOT LIKE '99999%' "
                                    "ORDER BY rowid LIMIT 5",
                                    -1, &q, NULL) == SQLITE_OK);
    int people = 0;
    while (sqlite3_step(q) == SQLITE_ROW) {
        const char *nik = (const char *)sqlite3_column_text(q, 0);
        const char *name = (const char *)sqlite3_column_text(q, 1);
        people++;
        for (size_t i = 0; mine[i]; i++) {
            CHECK(!file_holds(mine[i], nik, strlen(nik)));
            CHECK(!file_holds(mine[i], name, strlen(name)));
        }
    }
    sqlite3_finalize(q);
    CHECK(people == 5);
    for (size_t i = 0; mine[i]; i++)
        CHECK(!file_holds(mine[i], pkg + PD_PRELIST_PREFIX_BYTES, 48));
    free(pkg);
    free_list(pkgs);
    free_list(mine);

    /* the next run asks only for the bytes it lacks */
    mark = th_log_size(&srv);
    o = opts();
    CHECK_EQ_INT(pd_sync_run(d, &o, &st), PD_OK);
    CHECK(st.prelist_imported);
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM household"), 60);
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM prelist_part"), 0);
    th_log log;
    wait_log_quiet(&srv, 200, 10000); /* the last request is logged after its answer */
    th_log_read(&srv, mark, &log);
    CHECK_EQ_INT(log.prelists, 1);
    CHECK_EQ_INT(log.prelist_partial, 1);
    CHECK_EQ_INT(prelist_206_out(&srv, mark), (long long)plen - held);
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
    /* a request the proxy had passed on whole may still complete on the server: let it (the
     * log falls quiet), however long a loaded machine takes */
    wait_log_quiet(&srv, 1000, 30000);
    th_log before;
    th_log_read(&srv, mark, &before);
    CHECK(before.patch_in > 0 && before.patch_in < expect);
    long mark2 = th_log_size(&srv);
    reopen_enu();
    REQUIRE_VOID(enu);
    int64_t saved = -1;
    CHECK_EQ_INT(pd_sync_state_get_int(enu, "photo.offset", &saved), PD_OK);
    pd_sync_options o = opts();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK(st.upload_resumed >= 1);
    CHECK(st.upload_resume_offset > 0);
    char state[16];
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(!strcmp(state, "acknowledged"));
    th_log all, second;
    wait_log_quiet(&srv, 200, 10000); /* the last request is logged after its answer */
    th_log_read(&srv, mark, &all);
    th_log_read(&srv, mark2, &second);
    /* across both runs, each byte was acknowledged once */
    CHECK_EQ_INT(all.patch_in, expect);
    /* and the second run sent only what the server lacked: exactly that, unless the server still
     * held the dead run's request for a while on a loaded machine (each PATCH it refused then,
     * 423 busy, wasted at most its chunk, and cost one more HEAD) */
    CHECK(st.upload_body_bytes <= expect - before.patch_in + second.patch_other * o.chunk_bytes);
    CHECK(st.upload_resumed <= 1 + second.patch_other);
    CHECK(st.upload_body_bytes > 0);
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
    wait_log_quiet(&srv, 200, 10000); /* the last request is logged after its answer */
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
    RUN(test_a_cut_prelist_download_stays_encrypted_and_resumes_with_range);
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
