/*
 * bench_visits.c — how long a visit takes to record, and a name search over 100,000 people, on
 * the encrypted device store (synchronous=FULL, WAL, as a phone would run it).
 *
 *   1. a kecamatan of ~28,000 households (~100,000 people) is generated and imported;
 *   2. 1,000 visits (each one transaction: the visit, the household's status and location, the
 *      member outcomes, their ops) — median and p99 of the wall time of pd_visit_record;
 *   3. 1,000 name searches (pd_household_find by a word of a real name, accent-folded prefix,
 *      20 results) — median and p99; and, for scale, NIK lookups and nearest-household queries.
 *
 * Usage: bench_visits [HOUSEHOLDS] (default 28000). Prints one line per figure.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "pd_prelist.h"
#include "store_internal.h"

#include <ftw.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VISITS 1000
#define QUERIES 1000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void report(const char *what, double *t, size_t n)
{
    qsort(t, n, sizeof *t, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += t[i];
    size_t p99 = (size_t)ceil(0.99 * (double)n) - 1;
    printf("%-34s n=%zu  median %.3f ms  p99 %.3f ms  mean %.3f ms  max %.3f ms\n", what, n,
           t[n / 2] * 1e3, t[p99] * 1e3, sum / (double)n * 1e3, t[n - 1] * 1e3);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int count_hit(void *ctx, const pd_household_hit *h)
{
    (void)h;
    (*(size_t *)ctx)++;
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    unsigned households = argc > 1 ? (unsigned)atoi(argv[1]) : 28000;
    const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *home = join(tmp, "pd-bench-visits-XXXXXX");
    if (!home || !mkdtemp(home)) {
        perror("bench_visits: mkdtemp");
        return 1;
    }
    char *pkg = join(home, "prelist.pdpl");
    char *dir = join(home, "store");
    uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];
    crypto_sign_keypair(pk, sk);
    pd_prelist_gen_options opt = {.seed = 1, .households = households};
    pd_error err = {0};
    pd_store *store = NULL;
    int rc = pd_prelist_generate_file(pkg, "32.73.01", &opt, sk, NULL, &err);
    if (rc == PD_OK)
        rc = pd_store_create(&store, dir, "1234", &PD_KDF_TEST, &err);
    double t = now_s();
    pd_prelist_import_stats stats = {0};
    if (rc == PD_OK && (rc = pd_prelist_import(store, pkg, pk, &stats)) != PD_OK)
        snprintf(err.msg, sizeof err.msg, "%s", pd_store_errmsg(store));
    if (rc != PD_OK) {
        fprintf(stderr, "bench_visits: setup: %s\n", err.msg);
        return 1;
    }
    sqlite3 *db = pd_store_sqlite(store);
    int64_t people = 0;
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM member", -1, &st, NULL);
    if (sqlite3_step(st) == SQLITE_ROW)
        people = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    printf("store: %u households, %lld people (import %.2f s)\n", households, (long long)people,
           now_s() - t);

    /* ---- visits ---- */
    char(*ids)[PD_ID_MAX] = calloc(VISITS, sizeof *ids);
    double *lat = calloc(VISITS, sizeof *lat), *lon = calloc(VISITS, sizeof *lon);
    char(*first)[PD_ID_MAX] = calloc(VISITS, sizeof *first);
    size_t n = 0;
    sqlite3_prepare_v2(
        db,
        "SELECT h.id, h.lat, h.lon, (SELECT MIN(m.id) FROM member m WHERE "
        "m.household_id = h.id) FROM household h ORDER BY h.hh_rowid * 7919 % 100003 "
        "LIMIT ?1",
        -1, &st, NULL);
    sqlite3_bind_int(st, 1, VISITS);
    while (sqlite3_step(st) == SQLITE_ROW && n < VISITS) {
        snprintf(ids[n], PD_ID_MAX, "%s", sqlite3_column_text(st, 0));
        lat[n] = sqlite3_column_double(st, 1);
        lon[n] = sqlite3_column_double(st, 2);
        snprintf(first[n], PD_ID_MAX, "%s", sqlite3_column_text(st, 3));
        n++;
    }
    sqlite3_finalize(st);
    double *tv = calloc(VISITS, sizeof *tv);
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t t0 = (int64_t)wall.tv_sec * 1000 - (int64_t)VISITS * 120000;
    static const char *const outcomes[] = {"found",   "found",     "found",         "not_found",
                                           "refused", "moved_out", "found_new_head"};
    for (size_t i = 0; i < n; i++) {
        int64_t at = t0 + (int64_t)i * 120000;
        pd_gps g = {.lat = lat[i] + 0.00005,
                    .lon = lon[i] - 0.00004,
                    .accuracy = 6,
                    .altitude = NAN,
                    .fix_time = at - 3000,
                    .provider = "fused"};
        pd_member_outcome mo = {.member_id = first[i], .outcome = "confirmed"};
        pd_visit_in v = {.household_id = ids[i],
                         .outcome = outcomes[i % 7],
                         .visited_at = at,
                         .gps = &g,
                         .members = &mo,
                         .member_count = 1};
        char vid[PD_ID_MAX];
        double s = now_s();
        if (pd_visit_record(store, &v, vid, NULL) != PD_OK) {
            fprintf(stderr, "bench_visits: visit: %s\n", pd_store_errmsg(store));
            return 1;
        }
        tv[i] = now_s() - s;
    }
    report("visit transaction (pd_visit_record)", tv, n);

    /* ---- name search ---- */
    char(*words)[64] = calloc(QUERIES, sizeof *words);
    size_t nw = 0;
    sqlite3_prepare_v2(db, "SELECT name FROM member ORDER BY rowid * 104729 % 1000003 LIMIT ?1", -1,
                       &st, NULL);
    sqlite3_bind_int(st, 1, QUERIES);
    while (sqlite3_step(st) == SQLITE_ROW && nw < QUERIES) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        size_t len = strcspn(name, " ");
        snprintf(words[nw], sizeof words[nw], "%.*s", (int)(len < 63 ? len : 63), name);
        nw++;
    }
    sqlite3_finalize(st);
    double *tq = calloc(QUERIES, sizeof *tq);
    size_t hits = 0;
    for (size_t i = 0; i < nw; i++) {
        pd_find_query q = {.name = words[i], .limit = 20};
        double s = now_s();
        if (pd_household_find(store, &q, count_hit, &hits) != PD_OK) {
            fprintf(stderr, "bench_visits: find: %s\n", pd_store_errmsg(store));
            return 1;
        }
        tq[i] = now_s() - s;
    }
    char label[64];
    snprintf(label, sizeof label, "name search, %lldk people", (long long)(people / 1000));
    report(label, tq, nw);
    printf("  (%zu households returned, %.1f a query)\n", hits, (double)hits / (double)nw);
    /* two words, accent in the query */
    for (size_t i = 0; i < nw; i++) {
        pd_find_query q = {.name = i % 2 ? "s\xC3\xADti nur" : "budi sant", .limit = 20};
        double s = now_s();
        pd_household_find(store, &q, count_hit, &hits);
        tq[i] = now_s() - s;
    }
    report("name search, two words with accent", tq, nw);

    /* ---- NIK and nearest ---- */
    size_t nn = 0;
    char(*niks)[20] = calloc(QUERIES, sizeof *niks);
    sqlite3_prepare_v2(
        db,
        "SELECT nik FROM member WHERE nik NOT LIKE '9999%' ORDER BY rowid * 7 % 99991 "
        "LIMIT ?1",
        -1, &st, NULL);
    sqlite3_bind_int(st, 1, QUERIES);
    while (sqlite3_step(st) == SQLITE_ROW && nn < QUERIES)
        snprintf(niks[nn++], 20, "%s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    for (size_t i = 0; i < nn; i++) {
        pd_find_query q = {.nik = niks[i]};
        double s = now_s();
        pd_household_find(store, &q, count_hit, &hits);
        tq[i] = now_s() - s;
    }
    report("NIK lookup", tq, nn);
    for (size_t i = 0; i < n; i++) {
        pd_find_query q = {.near = 1, .near_lat = lat[i] + 0.001, .near_lon = lon[i], .limit = 10};
        double s = now_s();
        pd_household_find(store, &q, count_hit, &hits);
        tq[i] = now_s() - s;
    }
    report("nearest 10 households", tq, n);

    pd_store_close(store);
    nftw(home, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(home), free(pkg), free(dir), free(ids), free(lat), free(lon), free(first), free(tv);
    free(words), free(tq), free(niks);
    return 0;
}
