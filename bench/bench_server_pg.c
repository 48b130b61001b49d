/*
 * bench_server_pg.c — the central server end to end over HTTP on its two storage backends, in
 * one run: SQLite (one process: one writer) beside PostgreSQL with one server instance and with
 * two instances over the same database (as two stateless processes behind a load balancer: own
 * storage handles, own locks, one shared data directory).
 *
 * Each configuration gets a fresh database, a generated prelist for desa 32.73.01.1001, one
 * supervisor and N enumerators, each with an enrolled device (HTTP POST /v1/enroll). Then:
 *
 *   ingest    every device uploads B approved batches (each in one tus creation POST whose 201
 *             carries the receipts, as pd_sync_run sends it) of H households each: a visit, and
 * rooms, toilet and status set (4 ops a household), C devices at a time; figure: field ops applied
 * per second, batches per second, and the cores this process kept busy meanwhile (server and client
 * threads). The batches are sealed and approved before the clock starts (on the phones, hours
 *             before the sync); each client thread keeps its connection between requests, as
 *             the device's client does within a sync;
 *   sync      every device runs one evening sync at once (C at a time): one more batch uploaded
 *             and committed, then the delta of its area since the cursor it held before; figure:
 *             the latency of one device's sync (p50, p95, max).
 *
 * All requests are signed and verified as in production (server/PROTOCOL.md); the client is the
 * shared test client (tests/test_server_client.h). PostgreSQL comes from PD_BENCH_PG_URL (or
 * PD_TEST_DB_URL), e.g. started by scripts/pg.sh; without it only SQLite runs.
 *
 *   apply     (SQLite) the same bundles handed straight to srv_bundle_process, no HTTP: the
 *             ceiling of the apply path behind the HTTP layer (--apply-only runs only this);
 *
 *   bench_server_pg [--devices N] [--batches B] [--households H] [--clients C] [--pool N]
 *                   [--quick] [--apply-only] [--storage-only]
 *
 * Defaults: 200 devices, 3 batches each, 15 households a batch (a day's visits, 60 ops), 16
 * clients at a time. What one batch costs the server is mostly fixed (requests, signatures, a
 * commit), so ops/s grows with the batch: --households 5 gives the small-batch figure.
 *
 * --storage-only runs only "storage alone" (below), on SQLite and, if configured, PostgreSQL.
 *
 * --pool N: each PostgreSQL server's connections (pool=N, default 4). A PostgreSQL server runs
 * its requests' storage work in parallel (storage.h `concurrent`), up to N at once.
 *
 * pd_server_init only creates sqlite: servers yet, so a PostgreSQL server's key file is minted
 * by initialising a throwaway SQLite server and copying its key into the data directory
 * (pd_server_open reads <data_dir>/server.key for other URLs).
 */
#include "test_server_client.h"

#include "srv_internal.h"
#include "storage.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef PD_HAVE_PQ
#include <libpq-fe.h>
#endif

#define DESA "32.73.01.1001"
#define MAX_SERVERS 2
#define HH_MAX 32 /* households in one batch */

/* testutil.h's counters, referenced by the shared client's macros */
int pd_test_failures;
int pd_test_checks;

typedef struct hh {
    char id[64];
    int64_t rev;
    bool has_rooms, has_toilet;
    int64_t rooms, toilet;
} hh;

typedef struct bench {
    const char *label;
    char dir[512];
    char url[1200];
    char data_dir[600];
    char pgdb[64];
    int nservers;
    tsrv srv[MAX_SERVERS];
    tdev sup;
    tdev *dev;
    int ndev, batches, per_dev, clients;
    int pool; /* PostgreSQL connections per server (pool=N) */
    hh *hh;
    int nhh;
    atomic_int next;
    atomic_long ops_applied, batches_applied, failures;
    double *lat_ms;
    int64_t cursor0;
    pd_bundle **pre; /* ingest: device d's batch k at d * batches + k, sealed beforehand */
} bench;

/* CPU seconds this process used so far (the server and the client threads). */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *pg_base_url(void)
{
    const char *u = getenv("PD_BENCH_PG_URL");
    if (!u || !*u)
        u = getenv("PD_TEST_DB_URL");
    if (u && (!strncmp(u, "postgres://", 11) || !strncmp(u, "postgresql://", 13)))
        return u;
    return NULL;
}

#ifdef PD_HAVE_PQ
/* The base URL with its database replaced by name. */
static void pg_url_for(char *out, size_t cap, const char *name)
{
    const char *base = pg_base_url();
    const char *auth = strstr(base, "://") + 3;
    const char *path = strchr(auth, '/');
    const char *q = strchr(auth, '?');
    if (path && q && path > q)
        path = NULL;
    size_t head = path ? (size_t)(path - base) : q ? (size_t)(q - base) : strlen(base);
    snprintf(out, cap, "%.*s/%s%s", (int)head, base, name, q ? q : "");
}

static void quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static bool pg_admin(const char *sql)
{
    char url[1200];
    pg_url_for(url, sizeof url, "postgres");
    PGconn *c = PQconnectdb(url);
    bool ok = PQstatus(c) == CONNECTION_OK;
    if (ok) {
        PQsetNoticeProcessor(c, quiet, NULL);
        PGresult *r = PQexec(c, sql);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        PQclear(r);
    } else {
        fprintf(stderr, "postgres: %s", PQerrorMessage(c));
    }
    PQfinish(c);
    return ok;
}
#endif

static bool copy_file(const char *from, const char *to)
{
    uint8_t buf[4096];
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ssize_t n = in >= 0 ? read(in, buf, sizeof buf) : -1;
    bool ok = in >= 0 && out >= 0 && n > 0 && write(out, buf, (size_t)n) == n;
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return ok;
}

static void rm_rf(const char *dir)
{
    if (getenv("PD_KEEP_TMP"))
        return;
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

/* ---- setup --------------------------------------------------------------------------------------
 */

static int hh_row(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    bench *b = ctx;
    if (e != PD_ENT_HOUSEHOLD || b->nhh >= b->ndev * b->per_dev)
        return 0;
    hh *h = &b->hh[b->nhh++];
    memset(h, 0, sizeof *h);
    for (size_t i = 0; i < n; i++) {
        const pd_value *v = &f[i].value;
        if (!strcmp(f[i].name, "id"))
            snprintf(h->id, sizeof h->id, "%.*s", (int)v->len, (const char *)v->p);
        else if (!strcmp(f[i].name, "rev"))
            h->rev = v->i;
        else if (!strcmp(f[i].name, "rooms") && v->type == PD_VAL_INT)
            h->has_rooms = true, h->rooms = v->i;
        else if (!strcmp(f[i].name, "toilet") && v->type == PD_VAL_INT)
            h->has_toilet = true, h->toilet = v->i;
    }
    return 0;
}

/* The households the devices work on, as the server holds them now. */
static int read_households(bench *b)
{
    pd_storage *st = NULL;
    pd_error err = {0};
    int rc = pd_storage_open(&st, b->url, &err);
    if (rc != PD_OK) {
        fprintf(stderr, "storage: %s\n", err.msg);
        return rc;
    }
    b->nhh = 0;
    rc = st->ops->area_records(st, DESA, hh_row, b);
    if (rc != PD_OK)
        fprintf(stderr, "households: %s\n", pd_storage_errmsg(st));
    pd_storage_close(st);
    return rc == PD_OK && b->nhh == b->ndev * b->per_dev ? PD_OK : PD_ERR_NOTFOUND;
}

static int setup(bench *b, bool pg, int nservers)
{
    char tmpl[] = "/tmp/pd-bench-server-XXXXXX";
    if (!mkdtemp(tmpl))
        return PD_ERR_IO;
    snprintf(b->dir, sizeof b->dir, "%s", tmpl);
    b->nservers = nservers;
    pd_error err = {0};
    char seed[700];
    snprintf(seed, sizeof seed, "sqlite:%s/server.db", b->dir);
    int rc = pd_server_init(seed, &err);
    if (rc != PD_OK) {
        fprintf(stderr, "init: %s\n", err.msg);
        return rc;
    }
    snprintf(b->data_dir, sizeof b->data_dir, "%s/server.db.d", b->dir);
    if (pg) {
#ifdef PD_HAVE_PQ
        snprintf(b->pgdb, sizeof b->pgdb, "pd_bench_%d_%d", (int)getpid(), nservers);
        char sql[200];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", b->pgdb);
        pg_admin(sql);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", b->pgdb);
        if (!pg_admin(sql))
            return PD_ERR_IO;
        pg_url_for(b->url, sizeof b->url, b->pgdb);
        size_t ul = strlen(b->url);
        snprintf(b->url + ul, sizeof b->url - ul, "%spool=%d", strchr(b->url, '?') ? "&" : "?",
                 b->pool);
        char key[700], seedkey[700];
        snprintf(seedkey, sizeof seedkey, "%s/server.db.key", b->dir);
        snprintf(key, sizeof key, "%s/server.key", b->data_dir);
        if (!copy_file(seedkey, key))
            return PD_ERR_IO;
#else
        return PD_ERR_INVALID;
#endif
    } else {
        snprintf(b->url, sizeof b->url, "%s", seed);
    }
    for (int i = 0; i < nservers; i++) {
        tsrv *s = &b->srv[i];
        memset(s, 0, sizeof *s);
        snprintf(s->url, sizeof s->url, "%s", b->url);
        rc = pd_server_open(&s->srv, b->url, b->data_dir, &err);
        if (rc != PD_OK) {
            fprintf(stderr, "open: %s\n", err.msg);
            return rc;
        }
        pd_server_public_keys(s->srv, s->sign_pk, NULL);
    }
    pd_server *srv = b->srv[0].srv;
    pd_server_load_stats ls;
    if ((rc = pd_server_load_generated(srv, DESA, 11, (uint32_t)(b->ndev * b->per_dev), &ls)) !=
        PD_OK) {
        fprintf(stderr, "load: %s\n", pd_server_errmsg(srv));
        return rc;
    }
    pd_server_user sup = {.id = "S1", .role = "supervisor", .name = "Budi", .area = "32.73.01"};
    if ((rc = pd_server_user_add(srv, &sup)) != PD_OK)
        return rc;
    for (int i = 0; i < b->ndev; i++) {
        char id[16];
        snprintf(id, sizeof id, "E%04d", i);
        pd_server_user u = {.id = id,
                            .role = "enumerator",
                            .name = "Enumerator",
                            .area = DESA,
                            .supervisor_id = "S1"};
        if ((rc = pd_server_user_add(srv, &u)) != PD_OK) {
            fprintf(stderr, "user: %s\n", pd_server_errmsg(srv));
            return rc;
        }
    }
    for (int i = 0; i < nservers; i++) {
        pd_server_config cfg = {.listen = "127.0.0.1:0", .threads = 8, .max_connections = 1024};
        if ((rc = pd_server_start(b->srv[i].srv, &cfg)) != PD_OK) {
            fprintf(stderr, "start: %s\n", pd_server_errmsg(b->srv[i].srv));
            return rc;
        }
        b->srv[i].port = pd_server_port(b->srv[i].srv);
    }
    tdev_init(&b->sup, "dev-s1");
    if (ts_enroll(&b->srv[0], &b->sup, "S1") != 200)
        return PD_ERR_DENIED;
    for (int i = 0; i < b->ndev; i++) {
        char id[16], user[16];
        snprintf(id, sizeof id, "dev-%04d", i);
        snprintf(user, sizeof user, "E%04d", i);
        tdev_init(&b->dev[i], id);
        if (ts_enroll(&b->srv[i % nservers], &b->dev[i], user) != 200) {
            fprintf(stderr, "enrol %s failed\n", id);
            return PD_ERR_DENIED;
        }
    }
    return read_households(b);
}

static void teardown(bench *b)
{
    for (int i = 0; i < b->nservers; i++) {
        pd_server_close(b->srv[i].srv);
        b->srv[i].srv = NULL;
    }
#ifdef PD_HAVE_PQ
    if (b->pgdb[0]) {
        char sql[200];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", b->pgdb);
        pg_admin(sql);
        b->pgdb[0] = '\0';
    }
#endif
    rm_rf(b->dir);
}

/* ---- the field work
 * ------------------------------------------------------------------------------ */

static pd_value vtext(const char *s)
{
    return (pd_value){
        .type = s ? PD_VAL_TEXT : PD_VAL_NULL, .p = (const uint8_t *)s, .len = s ? strlen(s) : 0};
}

static pd_value vint_or_null(bool has, int64_t i)
{
    return has ? (pd_value){.type = PD_VAL_INT, .i = i} : (pd_value){.type = PD_VAL_NULL};
}

/* One approved batch of device d over households [first, first + n), sealed into a bundle with
 * its supervisor's approval (*out: pd_bundle_free it). */
static int make_bundle(bench *b, int d, int first, int n, pd_bundle **out)
{
    tdev *dev = &b->dev[d];
    pd_op ops[4 * HH_MAX];
    char *json[HH_MAX];
    char vid[HH_MAX][48];
    int k = 0;
    int64_t t = (int64_t)time(NULL) * 1000;
    for (int i = 0; i < n && i < HH_MAX; i++) {
        hh *h = &b->hh[first + i];
        json[i] = malloc(512);
        snprintf(json[i], 512,
                 "{\"household_id\":\"%s\",\"outcome\":\"found\",\"visited_at\":%lld,"
                 "\"enumerator_pk\":null,\"lat\":-6.88,\"lon\":107.58,\"accuracy_m\":8.5,"
                 "\"altitude_m\":null,\"fix_time\":%lld,\"provider\":\"gps\",\"mock\":0,"
                 "\"notes\":\"\",\"warnings\":\"\"}",
                 h->id, (long long)t, (long long)t);
        snprintf(vid[i], sizeof vid[i], "V%s-%06llu%02d", dev->id, (unsigned long long)dev->seq + 1,
                 i);
        ops[k++] = (pd_op){.kind = "visit",
                           .entity = "visit",
                           .target = vid[i],
                           .new_value = vtext(json[i]),
                           .base_rev = h->rev};
        ops[k++] =
            (pd_op){.kind = "set",
                    .entity = "household",
                    .target = h->id,
                    .field = "rooms",
                    .old_value = vint_or_null(h->has_rooms, h->rooms),
                    .new_value = {.type = PD_VAL_INT, .i = (h->has_rooms ? h->rooms : 1) + 1},
                    .base_rev = h->rev};
        ops[k++] = (pd_op){.kind = "set",
                           .entity = "household",
                           .target = h->id,
                           .field = "toilet",
                           .old_value = vint_or_null(h->has_toilet, h->toilet),
                           .new_value = {.type = PD_VAL_INT, .i = 1},
                           .base_rev = h->rev};
        ops[k++] = (pd_op){.kind = "set",
                           .entity = "household",
                           .target = h->id,
                           .field = "status",
                           .old_value = {.type = PD_VAL_NULL},
                           .new_value = vtext("found"),
                           .base_rev = h->rev};
    }
    uint8_t *batch = NULL;
    size_t len = 0;
    pd_bundle *bu = NULL;
    int rc = tb_seal(dev, DESA, ops, (size_t)k, &batch, &len);
    if (rc == PD_OK)
        rc = pd_bundle_new(&bu);
    if (rc == PD_OK)
        rc = tb_add(bu, batch, len, &b->sup, NULL);
    if (rc != PD_OK) {
        pd_bundle_free(bu);
        bu = NULL;
    }
    free(batch);
    for (int i = 0; i < n && i < HH_MAX; i++)
        free(json[i]);
    *out = bu;
    return rc;
}

/* Upload and commit bundle bu of device d to server s. Returns the ops applied (or -1). */
static long send_bundle(bench *b, int d, pd_bundle *bu, const tsrv *s)
{
    tdev *dev = &b->dev[d];
    long applied = -1;
    if (bu) {
        long st = 0;
        size_t len;
        const uint8_t *bytes = pd_bundle_bytes(bu, &len);
        cJSON *c = ts_post_bundle(s, dev, bytes, len, &st, NULL);
        const cJSON *r0 = c ? ts_result(c, 0) : NULL;
        if (r0 && !strcmp(ts_str(r0, "status"), "applied"))
            applied =
                (long)(ts_num(r0, "applied") + ts_num(r0, "merged") + ts_num(r0, "conflicted"));
        else
            fprintf(stderr, "%s: batch %llu: status %ld %s %s\n", dev->id,
                    (unsigned long long)dev->seq, st, r0 ? ts_str(r0, "status") : "-",
                    r0 ? ts_str(r0, "message") : "");
        cJSON_Delete(c);
    }
    return applied;
}

/* One approved batch of device d over households [first, first + n), sealed now, uploaded and
 * committed to server s. Returns the ops applied (or -1). */
static long one_batch(bench *b, int d, int first, int n, const tsrv *s)
{
    pd_bundle *bu = NULL;
    long applied = make_bundle(b, d, first, n, &bu) == PD_OK ? send_bundle(b, d, bu, s) : -1;
    pd_bundle_free(bu);
    return applied;
}

static void *ingest_worker(void *arg)
{
    bench *b = arg;
    int d;
    while ((d = atomic_fetch_add(&b->next, 1)) < b->ndev) {
        const tsrv *s = &b->srv[d % b->nservers];
        for (int k = 0; k < b->batches; k++) {
            long n = send_bundle(b, d, b->pre[(size_t)d * (size_t)b->batches + (size_t)k], s);
            if (n < 0) {
                atomic_fetch_add(&b->failures, 1);
                break;
            }
            atomic_fetch_add(&b->ops_applied, n);
            atomic_fetch_add(&b->batches_applied, 1);
        }
    }
    ts_thread_done();
    return NULL;
}

/* One evening sync: a batch of one household up, then the delta since the old cursor. */
static void *sync_worker(void *arg)
{
    bench *b = arg;
    int d;
    while ((d = atomic_fetch_add(&b->next, 1)) < b->ndev) {
        const tsrv *s = &b->srv[d % b->nservers];
        double t0 = now_s();
        long n = one_batch(b, d, d * b->per_dev, 1, s);
        char target[96];
        snprintf(target, sizeof target, "/v1/delta?since=%lld&limit=1000", (long long)b->cursor0);
        tresp r;
        ts_request(s, &b->dev[d], "GET", target, NULL, NULL, 0, &r);
        bool ok = n >= 0 && r.status == 200;
        tresp_free(&r);
        b->lat_ms[d] = (now_s() - t0) * 1000.0;
        if (!ok)
            atomic_fetch_add(&b->failures, 1);
    }
    ts_thread_done();
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_workers(bench *b, void *(*fn)(void *))
{
    pthread_t *t = calloc((size_t)b->clients, sizeof *t);
    atomic_store(&b->next, 0);
    for (int i = 0; i < b->clients; i++)
        pthread_create(&t[i], NULL, fn, b);
    for (int i = 0; i < b->clients; i++)
        pthread_join(t[i], NULL);
    free(t);
}

typedef struct figures {
    double ops_s, batches_s, p50, p95, max, sync_wall;
    double cpu; /* CPU seconds per second of ingest: server and clients (this process) */
    long failures;
} figures;

static int run_config(bench *b, const char *label, bool pg, int nservers, figures *f)
{
    memset(f, 0, sizeof *f);
    b->label = label;
    atomic_store(&b->ops_applied, 0);
    atomic_store(&b->batches_applied, 0);
    atomic_store(&b->failures, 0);
    fprintf(stderr, "== %s: setting up (%d households, %d devices)\n", label, b->ndev * b->per_dev,
            b->ndev);
    int rc = setup(b, pg, nservers);
    if (rc != PD_OK) {
        fprintf(stderr, "%s: setup failed (%s)\n", label, pd_strerror(rc));
        teardown(b);
        return rc;
    }
    /* Every device's batches are sealed and approved before the clock starts, as in the field:
     * an enumerator seals a day's visits and its supervisor approves them hours before the
     * evening sync, on their own phones. The figure is the server's ingest. */
    size_t npre = (size_t)b->ndev * (size_t)b->batches;
    b->pre = calloc(npre, sizeof *b->pre);
    for (int d = 0; b->pre && d < b->ndev; d++)
        for (int k = 0; k < b->batches; k++)
            if (make_bundle(b, d, d * b->per_dev, b->per_dev,
                            &b->pre[(size_t)d * (size_t)b->batches + (size_t)k]) != PD_OK)
                atomic_fetch_add(&b->failures, 1);
    double t0 = now_s(), c0 = cpu_s();
    if (b->pre)
        run_workers(b, ingest_worker);
    double dt = now_s() - t0;
    f->cpu = (cpu_s() - c0) / dt;
    for (size_t i = 0; b->pre && i < npre; i++)
        pd_bundle_free(b->pre[i]);
    free(b->pre);
    b->pre = NULL;
    f->ops_s = (double)atomic_load(&b->ops_applied) / dt;
    f->batches_s = (double)atomic_load(&b->batches_applied) / dt;

    /* the evening sync: each device's delta since the cursor before it */
    pd_server_status st;
    if (pd_server_get_status(b->srv[0].srv, &st) == PD_OK)
        b->cursor0 = st.revision;
    if (read_households(b) == PD_OK) {
        t0 = now_s();
        run_workers(b, sync_worker);
        f->sync_wall = now_s() - t0;
        qsort(b->lat_ms, (size_t)b->ndev, sizeof *b->lat_ms, cmp_double);
        f->p50 = b->lat_ms[b->ndev / 2];
        f->p95 = b->lat_ms[(b->ndev * 95) / 100 < b->ndev ? (b->ndev * 95) / 100 : b->ndev - 1];
        f->max = b->lat_ms[b->ndev - 1];
    }
    f->failures = atomic_load(&b->failures);
    teardown(b);
    return PD_OK;
}

/* ---- apply alone: the server's batch processing without HTTP ----------------------------------
 * The ceiling behind the HTTP layer: every device's bundles, sealed and approved beforehand,
 * handed straight to srv_bundle_process (verify, chain, merge, conflicts, receipts) under the
 * server lock with commits deferred, and made durable by one flush every `clients` bundles — what
 * the group commit of that many concurrent requests gives over HTTP. One thread. */
static int apply_alone(bench *b, double *ops_s, double *batches_s)
{
    *ops_s = *batches_s = 0;
    fprintf(stderr, "== apply alone: setting up\n");
    int rc = setup(b, false, 1);
    size_t nb = (size_t)b->ndev * (size_t)b->batches, done = 0;
    uint8_t **bytes = calloc(nb, sizeof *bytes);
    size_t *lens = calloc(nb, sizeof *lens);
    if (!bytes || !lens)
        rc = PD_ERR_NOMEM;
    for (int k = 0; rc == PD_OK && k < b->batches; k++)
        for (int d = 0; rc == PD_OK && d < b->ndev; d++) {
            pd_bundle *bu = NULL;
            rc = make_bundle(b, d, d * b->per_dev, b->per_dev, &bu);
            size_t i = (size_t)k * (size_t)b->ndev + (size_t)d, len = 0;
            const uint8_t *p = rc == PD_OK ? pd_bundle_bytes(bu, &len) : NULL;
            bytes[i] = p ? malloc(len) : NULL;
            if (bytes[i]) {
                memcpy(bytes[i], p, len);
                lens[i] = len;
            } else if (rc == PD_OK) {
                rc = PD_ERR_NOMEM;
            }
            pd_bundle_free(bu);
        }
    pd_server *srv = b->srv[0].srv;
    pd_storage *st = srv->st;
    pd_server_status s0, s1;
    if (rc == PD_OK)
        rc = pd_server_get_status(srv, &s0);
    double t0 = now_s();
    for (size_t i = 0; rc == PD_OK && i < nb; i++) {
        char upload[PD_SRV_UPLOAD_ID_LEN + 1];
        snprintf(upload, sizeof upload, "%032zu", i);
        pthread_mutex_lock(&srv->lock);
        if (st->ops->sync_defer)
            st->ops->sync_defer(st, true);
        rc = srv_bundle_process(srv, upload, b->dev[i % (size_t)b->ndev].id, bytes[i], lens[i]);
        if (st->ops->sync_defer)
            st->ops->sync_defer(st, false);
        pthread_mutex_unlock(&srv->lock);
        if (rc == PD_OK && st->ops->sync_flush &&
            ((i + 1) % (size_t)b->clients == 0 || i + 1 == nb))
            rc = st->ops->sync_flush(st);
        done += rc == PD_OK;
    }
    double dt = now_s() - t0;
    if (rc == PD_OK && pd_server_get_status(srv, &s1) == PD_OK &&
        s1.batches - s0.batches == (int64_t)nb) {
        *batches_s = (double)nb / dt;
        *ops_s = (double)nb * 4.0 * b->per_dev / dt;
    } else {
        fprintf(stderr, "apply alone: %zu of %zu bundles went through (%s)\n", done, nb,
                pd_strerror(rc));
        rc = rc == PD_OK ? PD_ERR_INTERNAL : rc;
    }
    for (size_t i = 0; bytes && i < nb; i++)
        free(bytes[i]);
    free(bytes);
    free(lens);
    teardown(b);
    return rc;
}

static void print_row(const char *label, const figures *f)
{
    printf("%-26s %10.0f %10.1f %9.1f %9.1f %9.1f %9.2f %6ld %7.2f\n", label, f->ops_s,
           f->batches_s, f->p50, f->p95, f->max, f->sync_wall, f->failures, f->cpu);
}

/* ---- the storage alone: the merge's calls for one field op, no HTTP ----------------------------
 */

typedef struct sworker {
    pd_storage *st;
    int id, txns, ops_per_txn;
    long ops, busy;
} sworker;

/* What apply does for one "set" op: lock and read the record, its field's last change, the
 * value; take a revision; write the field and its change; one audit row. */
static int storage_op(pd_storage *st, const char *hid, int col, int64_t val)
{
    int64_t rev;
    pd_srv_change last, ch = {.device_id = "dev-bench", .seq = 1, .hlc = 1};
    pd_srv_value cur = {0};
    int rc = st->ops->record_rev(st, PD_ENT_HOUSEHOLD, hid, &rev);
    if (rc == PD_OK) {
        rc = st->ops->field_change(st, PD_ENT_HOUSEHOLD, hid, col, &last);
        rc = rc == PD_ERR_NOTFOUND ? PD_OK : rc;
    }
    if (rc == PD_OK)
        rc = st->ops->field_get(st, PD_ENT_HOUSEHOLD, hid, col, &cur);
    if (rc == PD_OK)
        rc = st->ops->revision_next(st, &ch.rev);
    pd_value v = {.type = PD_VAL_INT, .i = val};
    if (rc == PD_OK)
        rc = st->ops->field_set(st, PD_ENT_HOUSEHOLD, hid, col, &v, &ch);
    pd_srv_audit a = {.at = 1,
                      .action = "apply",
                      .actor = "E",
                      .device_id = "dev-bench",
                      .entity = "household",
                      .target = hid,
                      .field = "rooms",
                      .old_value = &cur.v,
                      .new_value = &v,
                      .rev = ch.rev};
    if (rc == PD_OK)
        rc = st->ops->audit_add(st, &a);
    pd_srv_value_clear(&cur);
    return rc;
}

static void *storage_worker(void *arg)
{
    sworker *w = arg;
    pd_storage *st = w->st;
    int col = pd_entity_column(PD_ENT_HOUSEHOLD, "rooms");
    for (int t = 0; t < w->txns; t++) {
        for (int attempt = 0; attempt < 5; attempt++) {
            int rc = st->ops->begin(st);
            for (int k = 0; rc == PD_OK && k < w->ops_per_txn; k++) {
                char hid[32];
                snprintf(hid, sizeof hid, "SB%02d-%03d", w->id, k);
                rc = storage_op(st, hid, col, t * 100 + k);
            }
            if (rc == PD_OK)
                rc = st->ops->commit(st);
            else
                st->ops->rollback(st);
            if (rc == PD_OK) {
                w->ops += w->ops_per_txn;
                break;
            }
            if (rc != PD_ERR_BUSY) {
                fprintf(stderr, "storage bench: %s\n", pd_storage_errmsg(st));
                return NULL;
            }
            w->busy++;
        }
    }
    return NULL;
}

/* ops/s of `threads` threads, each its own households, on url (SQLite: a handle per thread;
 * PostgreSQL: one handle with a pool of `threads` connections). */
static double storage_phase(const char *url, bool pg, int threads, int txns, int per_txn)
{
    pd_storage *handles[8] = {0};
    pd_error err = {0};
    int nh = pg ? 1 : threads;
    char u[1300];
    snprintf(u, sizeof u, "%s%s%s%d", url, pg ? (strchr(url, '?') ? "&" : "?") : "",
             pg ? "pool=" : "", pg ? threads : 0);
    if (!pg)
        snprintf(u, sizeof u, "%s", url);
    for (int i = 0; i < nh; i++)
        if (pd_storage_open(&handles[i], u, &err) != PD_OK) {
            fprintf(stderr, "storage bench: %s\n", err.msg);
            for (int j = 0; j < i; j++)
                pd_storage_close(handles[j]);
            return 0;
        }
    /* the households, once */
    pd_storage *st = handles[0];
    for (int w = 0; w < threads; w++)
        for (int k = 0; k < per_txn; k++) {
            char hid[32];
            snprintf(hid, sizeof hid, "SB%02d-%03d", w, k);
            pd_srv_field f[] = {{"id", vtext(hid)},
                                {"prov", vtext("32")},
                                {"kab", vtext("32.73")},
                                {"kec", vtext("32.73.01")},
                                {"desa", vtext(DESA)}};
            int64_t rev = 0;
            st->ops->revision_next(st, &rev);
            st->ops->record_insert(st, PD_ENT_HOUSEHOLD, f, 5, rev); /* (EXISTS on a rerun) */
        }
    pthread_t t[8];
    sworker w[8];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        w[i] = (sworker){.st = handles[pg ? 0 : i], .id = i, .txns = txns, .ops_per_txn = per_txn};
        pthread_create(&t[i], NULL, storage_worker, &w[i]);
    }
    long ops = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        ops += w[i].ops;
    }
    double dt = now_s() - t0;
    for (int i = 0; i < nh; i++)
        pd_storage_close(handles[i]);
    return (double)ops / dt;
}

static void storage_figures(bool pg, int txns)
{
    char dir[] = "/tmp/pd-bench-storage-XXXXXX";
    if (!mkdtemp(dir))
        return;
    char url[1300] = "";
    char name[64] = "";
    if (!pg) {
        snprintf(url, sizeof url, "sqlite:%s/s.db", dir);
    } else {
#ifdef PD_HAVE_PQ
        snprintf(name, sizeof name, "pd_bench_storage_%d", (int)getpid());
        char sql[200];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s", name);
        pg_admin(sql);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
        if (!pg_admin(sql))
            return;
        pg_url_for(url, sizeof url, name);
#endif
    }
    double one = storage_phase(url, pg, 1, txns, 20);
    double four = storage_phase(url, pg, 4, txns, 20);
    printf("%-26s %10.0f %10.0f %8.2fx\n", pg ? "postgresql" : "sqlite", one, four,
           one > 0 ? four / one : 0);
#ifdef PD_HAVE_PQ
    if (name[0]) {
        char sql[200];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
        pg_admin(sql);
    }
#endif
    rm_rf(dir);
}

int main(int argc, char **argv)
{
    bench b;
    memset(&b, 0, sizeof b);
    b.ndev = 200;
    b.batches = 3;
    b.per_dev = 15; /* a day's visits: 10-20 (design.md §6, bench_load, bench_batch) */
    b.clients = 16;
    b.pool = 4;
    bool apply_only = false, storage_only = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--devices") && i + 1 < argc)
            b.ndev = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc)
            b.batches = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--households") && i + 1 < argc)
            b.per_dev = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--clients") && i + 1 < argc)
            b.clients = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pool") && i + 1 < argc)
            b.pool = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--apply-only"))
            apply_only = true;
        else if (!strcmp(argv[i], "--storage-only"))
            storage_only = true;
        else if (!strcmp(argv[i], "--quick"))
            b.ndev = 20, b.batches = 2, b.per_dev = 3, b.clients = 4;
        else {
            fprintf(stderr, "usage: bench_server_pg [--devices N] [--batches B] [--households H] "
                            "[--clients C] [--pool N] [--quick] [--apply-only] "
                            "[--storage-only]\n");
            return 2;
        }
    }
    if (b.ndev < 1 || b.ndev > 5000 || b.batches < 1 || b.per_dev < 1 || b.clients < 1 ||
        b.clients > 256 || b.pool < 1 || b.pool > 64 || b.per_dev > HH_MAX) {
        fprintf(stderr, "bench_server_pg: out of range\n");
        return 2;
    }
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    /* a client thread keeps its connection across requests, as a device does within its sync
     * (each of C client threads stands for the devices it serves one after another) */
    ts_keepalive = true;
    b.dev = calloc((size_t)b.ndev, sizeof *b.dev);
    b.hh = calloc((size_t)(b.ndev * b.per_dev), sizeof *b.hh);
    b.lat_ms = calloc((size_t)b.ndev, sizeof *b.lat_ms);
    if (!b.dev || !b.hh || !b.lat_ms)
        return 1;

    figures fs = {0}, fp1 = {0}, fp2 = {0};
    int bad = 0;
    if (apply_only) {
        double aops = 0, abat = 0;
        bad = apply_alone(&b, &aops, &abat) != PD_OK;
        printf("apply alone (sqlite, no HTTP: srv_bundle_process on pre-sealed bundles, one flush "
               "per %d bundles): %.0f ops/s, %.1f batches/s\n",
               b.clients, aops, abat);
        free(b.dev);
        free(b.hh);
        free(b.lat_ms);
        curl_global_cleanup();
        return bad;
    }
    bool pg = pg_base_url() != NULL;
#ifndef PD_HAVE_PQ
    pg = false;
#endif
    int txns = b.ndev <= 20 ? 10 : 50;
    if (storage_only) {
        printf("%-26s %10s %10s %9s\n", "backend", "1 thread", "4 threads", "scaling");
        storage_figures(false, txns);
        if (pg)
            storage_figures(true, txns);
        free(b.dev);
        free(b.hh);
        free(b.lat_ms);
        curl_global_cleanup();
        return 0;
    }
    bad |= run_config(&b, "sqlite, 1 server", false, 1, &fs) != PD_OK || fs.failures;
    if (pg) {
        bad |= run_config(&b, "postgresql, 1 server", true, 1, &fp1) != PD_OK || fp1.failures;
        bad |= run_config(&b, "postgresql, 2 servers", true, 2, &fp2) != PD_OK || fp2.failures;
    }
    printf("\nstorage alone: the merge's calls for one field op (lock and read the record, last "
           "change, value, revision, write, audit), 20 ops a transaction, %d transactions a "
           "thread\n",
           txns);
    printf("%-26s %10s %10s %9s\n", "backend", "1 thread", "4 threads", "scaling");
    printf("%-26s %10s %10s %9s\n", "", "ops/s", "ops/s", "");
    storage_figures(false, txns);
    if (pg)
        storage_figures(true, txns);
    double aops = 0, abat = 0;
    bad |= apply_alone(&b, &aops, &abat) != PD_OK;
    printf("\napply alone (sqlite, no HTTP: srv_bundle_process on pre-sealed bundles, one flush "
           "per %d bundles): %.0f ops/s, %.1f batches/s\n",
           b.clients, aops, abat);
    printf("\nserver end to end: %d devices x %d batches x %d households (4 ops each), "
           "%d clients at a time, PostgreSQL pool=%d a server\n",
           b.ndev, b.batches, b.per_dev, b.clients, b.pool);
    printf("%-26s %10s %10s %9s %9s %9s %9s %6s %7s\n", "", "ingest", "batches", "sync p50",
           "sync p95", "sync max", "all syncs", "fail", "cores");
    printf("%-26s %10s %10s %9s %9s %9s %9s %6s %7s\n", "configuration", "ops/s", "/s", "ms", "ms",
           "ms", "s", "", "busy");
    print_row("sqlite, 1 server", &fs);
    if (pg) {
        print_row("postgresql, 1 server", &fp1);
        print_row("postgresql, 2 servers", &fp2);
        printf("postgresql scaling 1 -> 2 servers: x%.2f ingest\n",
               fp1.ops_s > 0 ? fp2.ops_s / fp1.ops_s : 0);
    } else {
        printf("(no PostgreSQL: set PD_BENCH_PG_URL, e.g. from scripts/pg.sh start DIR)\n");
    }
    free(b.dev);
    free(b.hh);
    free(b.lat_ms);
    curl_global_cleanup();
    return bad ? 1 : 0;
}
