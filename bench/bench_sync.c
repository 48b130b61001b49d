/*
 * bench_sync.c — what a sync costs on the wire, against the real `pendata-server` (a child
 * process) over loopback:
 *   1. a realistic day of one enumerator: 10 visits, each with corrections and 9 photos
 *      (PD_BENCH_PHOTO_KB each, default 80 KiB), sealed, approved by the supervisor, then ONE
 *      sync: requests, bytes sent and received, and the overhead over the payload;
 *   2. a sync with nothing to do;
 *   3. the same day again with the connection cut once at a random byte: bytes sent that the
 *      server never acknowledged (the cut request) and bytes the server already held that were
 *      sent again (the goal: 0).
 * Judged by: ≤ 3 requests for the bundle + 2 per photo + 1 pull; 0 bytes resent that the
 * server held. PD_BENCH_SEED fixes the cut.
 */
#define _GNU_SOURCE /* nftw */
#include "test_sync_harness.h"

#include <ftw.h>
#include <libgen.h>
#include <limits.h>

static int failures;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "bench_sync: expected %s\n", #cond);                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* A day of field work: visits with corrections and nine photos each, sealed. */
static int day(pd_store *enu, int from, int visits, size_t photo_bytes)
{
    static const char *const kinds[] = {"front", "wall", "floor", "kitchen", "toilet",
                                        "kk",    "ktp",  "head",  "roof"};
    for (int i = 0; i < visits; i++) {
        char hh[32], vid[PD_ID_MAX];
        snprintf(hh, sizeof hh, "3273011001%06d", from + i + 1);
        pd_gps fix = {.lat = -6.9 + 0.0003 * i,
                      .lon = 107.6,
                      .accuracy = 6,
                      .altitude = NAN,
                      .fix_time = pd_sync_now_ms() - 5000,
                      .provider = "gps"};
        pd_visit_in v = {.household_id = hh,
                         .outcome = "found",
                         .gps = &fix,
                         .notes = "rumah semi permanen, atap seng, air dari sumur bor"};
        if (pd_visit_record(enu, &v, vid, NULL) != PD_OK)
            return -1;
        static const char *const fields[] = {"roof_material", "wall_material", "floor_material",
                                             "water_source", "cooking_fuel"};
        for (size_t f = 0; f < PD_ARRAY_LEN(fields); f++) {
            pd_value val = {.type = PD_VAL_INT, .i = 1 + (int64_t)((i + (int)f) % 3)};
            if (pd_household_set(enu, hh, fields[f], &val, NULL) != PD_OK)
                return -1;
        }
        for (int k = 0; k < 9; k++) {
            size_t len;
            uint8_t *jpeg = th_jpeg(photo_bytes, (uint32_t)((from + i) * 10 + k + 1), &len);
            int rc = jpeg ? pd_photo_add(enu, hh, vid, kinds[k], jpeg, len, 0, NULL) : -1;
            free(jpeg);
            if (rc != PD_OK)
                return -1;
        }
    }
    pd_seal_result sr;
    if (pd_batch_seal(enu, &sr) != PD_OK)
        return -1;
    return (int)sr.seq;
}

static void print_sync(const char *what, const pd_sync_stats *st, const th_log *log)
{
    printf("%-28s %4llu requests (%zu POST + %zu PATCH + %zu HEAD + %zu commit + %zu pull)\n", what,
           (unsigned long long)st->requests, log->posts, log->patch_ok + log->patch_other,
           log->heads, log->commits, log->deltas + log->prelists);
    printf("%-28s %10llu bytes sent, %llu received; payload %llu bytes (overhead %.2f %%)\n", "",
           (unsigned long long)st->bytes_sent, (unsigned long long)st->bytes_received,
           (unsigned long long)st->upload_length,
           st->upload_length ? 100.0 * ((double)st->bytes_sent - (double)st->upload_length) /
                                   (double)st->upload_length
                             : 0.0);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (sodium_init() < 0)
        return 1;
    if (!getenv("PD_BUILD")) {
        char self[PATH_MAX];
        if (realpath(argv[0], self)) {
            char *d = dirname(dirname(self));
            setenv("PD_BUILD", d, 1);
        }
    }
    const char *kb = getenv("PD_BENCH_PHOTO_KB");
    size_t photo = (size_t)(kb ? atoi(kb) : 80) * 1024;
    const char *seed_s = getenv("PD_BENCH_SEED");
    uint32_t seed = seed_s ? (uint32_t)strtoul(seed_s, NULL, 10) : (uint32_t)time(NULL);
    const char *base = getenv("TMPDIR");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/pd-bench-sync-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir))
        return 1;
    th_server srv;
    th_proxy proxy;
    if (th_server_create(&srv, dir, 60) != PD_OK || th_server_start(&srv, 0) != 0 ||
        th_proxy_start(&proxy, srv.port) != 0) {
        fprintf(stderr, "bench_sync: cannot start the server (PD_BUILD=%s)\n", th_build());
        return 1;
    }
    pd_store *enu = th_device(dir, "enu", "enumerator");
    pd_store *sup = th_device(dir, "sup", "supervisor");
    pd_sync_options o = th_options();
    pd_sync_stats st;
    th_log log;
    int rc = 1;
    if (!enu || !sup || th_enrol(enu, &srv, srv.port, "E0001") != PD_OK ||
        th_enrol(sup, &srv, srv.port, "S0001") != PD_OK)
        goto out;
    long mark = th_log_size(&srv);
    if (pd_sync_run(enu, &o, &st) != PD_OK)
        goto out;
    th_log_read(&srv, mark, &log);
    printf("photos of %zu KiB, 9 a visit, 10 visits a day; chunk %zu KiB\n", photo / 1024,
           (size_t)256);
    print_sync("first sync (prelist)", &st, &log);
    if (pd_sync_run(sup, &o, &st) != PD_OK || pd_sync_run(enu, &o, &st) != PD_OK ||
        th_set_url(enu, proxy.port) != 0)
        goto out;

    /* 1. a day */
    int seq = day(enu, 0, 10, photo);
    if (seq < 1 || th_review(enu, sup, (uint64_t)seq, NULL) != PD_OK)
        goto out;
    mark = th_log_size(&srv);
    if (pd_sync_run(enu, &o, &st) != PD_OK)
        goto out;
    th_log_read(&srv, mark, &log);
    print_sync("a day (90 photos, 1 batch)", &st, &log);
    EXPECT(st.batches_acknowledged == 1);
    EXPECT(st.requests <= 3 + 2 * 90 + 1);
    EXPECT(log.patch_in == st.upload_length);

    /* 2. nothing to do */
    mark = th_log_size(&srv);
    if (pd_sync_run(enu, &o, &st) != PD_OK)
        goto out;
    th_log_read(&srv, mark, &log);
    print_sync("nothing to do", &st, &log);
    EXPECT(st.requests == 1);

    /* 3. another day, cut once */
    seq = day(enu, 10, 10, photo);
    if (seq < 1 || th_review(enu, sup, (uint64_t)seq, NULL) != PD_OK)
        goto out;
    uint64_t approx = 90 * (uint64_t)photo;
    long long k = 1000 + (long long)(seed % (uint32_t)approx);
    atomic_store(&proxy.cut_after, k);
    mark = th_log_size(&srv);
    if (pd_sync_run(enu, &o, &st) != PD_OK)
        goto out;
    atomic_store(&proxy.cut_after, 0);
    th_log_read(&srv, mark, &log);
    print_sync("a day, cut once", &st, &log);
    uint64_t lost = st.upload_body_bytes - log.patch_in;
    uint64_t resent_held = log.patch_in - st.upload_length;
    printf("%-28s cut after %lld bytes (seed %u): %llu bytes of the cut request never "
           "acknowledged; %llu bytes the server held sent again\n",
           "", k, seed, (unsigned long long)lost, (unsigned long long)resent_held);
    EXPECT(atomic_load(&proxy.cuts) == 1);
    EXPECT(resent_held == 0);
    EXPECT(lost <= 256 * 1024);
    rc = failures ? 1 : 0;
out:
    if (rc && !failures)
        fprintf(stderr, "bench_sync: %s\n", enu ? pd_store_errmsg(enu) : "no store");
    pd_store_close(enu);
    pd_store_close(sup);
    th_proxy_stop(&proxy);
    th_server_kill(&srv, SIGTERM);
    if (!getenv("PD_KEEP_TMP"))
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
