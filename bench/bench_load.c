/*
 * bench_load.c — the evening peak: N simulated field devices sync their day at once against one
 * `pendata-server` (its own process, SQLite, on loopback), each a thread with its own libcurl
 * handle and its own enrolled device and person keys, through the real client's HTTP and tus
 * engine (sync/client_http.c, client_tus.c: signed requests, signed answers checked with the
 * pinned server key, retries with backoff and jitter).
 *
 * A device's day: 10–20 visits (a visit op, the household's status, a correction: 3 ops each, and
 * optionally photos), sealed into one signed batch, approved by its supervisor (countersigned),
 * the bundle uploaded by tus (in the creation POST, sha1 checksum, the receipts in its answer, as
 * pd_sync_run does; a commit request only when the server did not take it whole; receipts checked
 * against the server key), then a delta pulled since its cursor. Enumerators are spread two to a
 * real desa of West Java (32), supervisors one to five enumerators, as in the field.
 *
 * Set-up (not timed): users, a generated prelist for each desa and the enrolment codes through the
 * server library; then every device and supervisor enrols over HTTP. Then every device builds its
 * day, waits at a barrier, and all sync at once (the storm). Reported: wall time of the storm,
 * batches/s, ops/s, visits/s, p50/p90/p99/max latency of a whole sync and of each exchange, the
 * retries, the server's peak RSS (VmHWM) and its CPU time, and a check that the server holds
 * exactly the batches and visits sent.
 *
 *   bench_load [--devices N] [--visits MIN-MAX] [--photos K --photo-bytes B] [--threads T]
 *              [--seed S] [--keep]
 * Defaults: 50 devices, 10-20 visits, no photos, the server's default threads (and its limit of 512
 * connections: devices past it are refused and retry, as phones would).
 * scripts/load.sh sweeps N (50, 200, 1000) and projects the national peak from the knee.
 */
#define _GNU_SOURCE /* nftw, pthread_tryjoin_np */
#include "client_internal.h"
#include "pd_prelist.h"
#include "pd_server.h"
#include "pd_sync.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HH_PER_DEVICE 20
#define ENUM_PER_DESA 2
#define ENUM_PER_SUP 5

typedef struct dev {
    int index;
    char id[24];   /* device id */
    char user[16]; /* person id */
    char desa[24];
    char code[PD_ENROLL_CODE_LEN + 1];
    uint8_t pk[32], sk[64];   /* device key */
    uint8_t upk[32], usk[64]; /* person key */
    int sup;                  /* index of its supervisor */
    /* the day */
    uint8_t *bundle;
    size_t bundle_len;
    int visits, ops, photos;
    uint8_t (*photo)[32];
    uint8_t *photo_bytes;
    /* results */
    double t_sync, t_photos, t_upload, t_commit, t_delta;
    uint64_t retries, requests, bytes_sent, bytes_received;
    int applied;
    bool ok;
    char err[256];
} dev;

typedef struct sup {
    char id[24], user[16];
    char code[PD_ENROLL_CODE_LEN + 1];
    uint8_t pk[32], sk[64], upk[32], usk[64];
} sup;

static struct {
    int devices, vmin, vmax, photos, threads;
    size_t photo_bytes;
    uint64_t seed;
    bool keep;
} O = {50, 10, 20, 0, 0, 30000, 1, false};

static char dir[256], db_url[512], base_url[64];
static uint8_t server_pk[32];
static int64_t start_cursor;
static dev *D;
static sup *SV;
static int nsup;
static pid_t server_pid;
static pthread_barrier_t barrier;
static double t_storm0;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_load: %s: %s\n", what, msg);
    return 1;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- set-up through the server library ----------------------------------------------------- */

/* Real desa codes of province 32, depth first, until n are found. */
static int collect_desas(char (*out)[24], int n)
{
    static pd_area kab[64], kec[128], desa[512];
    size_t nk = 0, nc = 0, nd = 0;
    int got = 0;
    pd_error err = {0};
    if (pd_area_children("32", kab, 64, &nk, &err) != PD_OK)
        return -1;
    for (size_t a = 0; a < nk && got < n; a++) {
        if (pd_area_children(kab[a].code, kec, 128, &nc, &err) != PD_OK)
            continue;
        for (size_t b = 0; b < nc && got < n; b++) {
            if (pd_area_children(kec[b].code, desa, 512, &nd, &err) != PD_OK)
                continue;
            for (size_t c = 0; c < nd && got < n; c++)
                snprintf(out[got++], 24, "%s", desa[c].code);
        }
    }
    return got;
}

static int setup_server(void)
{
    pd_error err = {0};
    pd_server *srv = NULL;
    if (pd_server_init(db_url, &err) != PD_OK || pd_server_open(&srv, db_url, NULL, &err) != PD_OK)
        return die("server", err.msg);
    int ndesa = (O.devices + ENUM_PER_DESA - 1) / ENUM_PER_DESA;
    char(*desas)[24] = calloc((size_t)ndesa, 24);
    if (!desas || collect_desas(desas, ndesa) != ndesa) {
        free(desas);
        pd_server_close(srv);
        return die("areas", "not enough desas in province 32");
    }
    double t0 = now_s();
    for (int i = 0; i < ndesa; i++) {
        pd_server_load_stats ls;
        if (pd_server_load_generated(srv, desas[i], O.seed + (uint64_t)i,
                                     HH_PER_DEVICE * ENUM_PER_DESA, &ls) != PD_OK) {
            free(desas);
            int r = die("prelist", pd_server_errmsg(srv));
            pd_server_close(srv);
            return r;
        }
    }
    nsup = (O.devices + ENUM_PER_SUP - 1) / ENUM_PER_SUP;
    SV = calloc((size_t)nsup, sizeof *SV);
    for (int s = 0; s < nsup; s++) {
        snprintf(SV[s].user, sizeof SV[s].user, "S%05d", s + 1);
        snprintf(SV[s].id, sizeof SV[s].id, "sup%05d", s + 1);
        crypto_sign_keypair(SV[s].pk, SV[s].sk);
        crypto_sign_keypair(SV[s].upk, SV[s].usk);
        pd_server_user u = {.id = SV[s].user,
                            .role = "supervisor",
                            .name = "Pengawas",
                            .area = desas[(s * ENUM_PER_SUP) / ENUM_PER_DESA]};
        if (pd_server_user_add(srv, &u) != PD_OK ||
            pd_server_enroll_code(srv, SV[s].user, 0, SV[s].code) != PD_OK)
            break;
    }
    for (int i = 0; i < O.devices; i++) {
        dev *d = &D[i];
        d->index = i;
        d->sup = i / ENUM_PER_SUP;
        snprintf(d->user, sizeof d->user, "E%05d", i + 1);
        snprintf(d->id, sizeof d->id, "dev%05d", i + 1);
        snprintf(d->desa, sizeof d->desa, "%s", desas[i / ENUM_PER_DESA]);
        crypto_sign_keypair(d->pk, d->sk);
        crypto_sign_keypair(d->upk, d->usk);
        pd_server_user u = {.id = d->user,
                            .role = "enumerator",
                            .name = "Pencacah",
                            .area = d->desa,
                            .supervisor_id = SV[d->sup].user};
        if (pd_server_user_add(srv, &u) != PD_OK ||
            pd_server_enroll_code(srv, d->user, 0, d->code) != PD_OK) {
            free(desas);
            int r = die("users", pd_server_errmsg(srv));
            pd_server_close(srv);
            return r;
        }
    }
    pd_server_status st;
    pd_server_get_status(srv, &st);
    start_cursor = st.revision;
    pd_server_public_keys(srv, server_pk, NULL);
    fprintf(stderr, "set-up: %d desas (%d households), %d enumerators, %d supervisors in %.1f s\n",
            ndesa, ndesa * HH_PER_DEVICE * ENUM_PER_DESA, O.devices, nsup, now_s() - t0);
    free(desas);
    pd_server_close(srv);
    return 0;
}

/* `pendata-server serve` next to this program's build directory; reads the port it prints. */
static int start_server(void)
{
    char self[1024], bin[1200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return die("server", "cannot find this program's path");
    self[n] = '\0';
    *strrchr(self, '/') = '\0';
    snprintf(bin, sizeof bin, "%s/../pendata-server", self);
    char threads[16], log[600];
    snprintf(threads, sizeof threads, "%d", O.threads);
    snprintf(log, sizeof log, "%s/serve.err", dir);
    int fds[2];
    if (pipe(fds) != 0)
        return die("server", strerror(errno));
    server_pid = fork();
    if (server_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        int e = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (e >= 0)
            dup2(e, 2);
        if (O.threads)
            execl(bin, bin, "--db", db_url, "serve", "--listen", "127.0.0.1:0", "--threads",
                  threads, (char *)NULL);
        else /* the server's own default */
            execl(bin, bin, "--db", db_url, "serve", "--listen", "127.0.0.1:0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = "";
    size_t got = 0;
    while (got + 1 < sizeof line) {
        ssize_t r = read(fds[0], line + got, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || line[got] == '\n')
            break;
        got++;
    }
    line[got] = '\0';
    close(fds[0]);
    int port = atoi(line);
    if (port <= 0)
        return die("server", "pendata-server serve did not start (see serve.err)");
    snprintf(base_url, sizeof base_url, "http://127.0.0.1:%d", port);
    return 0;
}

static long proc_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, strlen(key)))
            v = atol(line + strlen(key) + 1);
    if (f)
        fclose(f);
    return v;
}

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, stt = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) == 2)
        return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
    return -1;
}

/* ---- the client side: the real HTTP and tus engine --------------------------------------------
 */

/* CPU seconds of this process so far (the simulated devices). */
static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static pd_sync_options client_options(void)
{
    pd_sync_options o;
    memset(&o, 0, sizeof o);
    o.connect_timeout_ms = 10000;
    o.stall_timeout_s = 120;
    o.max_attempts = 30;
    o.backoff_base_ms = 200;
    o.backoff_cap_ms = 5000;
    return o;
}

static int enroll_one(const char *device_id, const char *code, const uint8_t pk[32],
                      const uint8_t upk[32], char *err, size_t cap)
{
    pd_sync_options o = client_options();
    pd_http h;
    pd_error e = {0};
    if (pd_http_init(&h, base_url, &o, &e) != PD_OK) {
        snprintf(err, cap, "%s", e.msg);
        return -1;
    }
    char pkh[65], upkh[65], body[512], url[PD_HTTP_URL_MAX];
    sodium_bin2hex(pkh, sizeof pkh, pk, 32);
    sodium_bin2hex(upkh, sizeof upkh, upk, 32);
    int n =
        snprintf(body, sizeof body,
                 "{\"code\":\"%s\",\"device_id\":\"%s\",\"device_pk\":\"%s\",\"user_pk\":\"%s\"}",
                 code, device_id, pkh, upkh);
    pd_http_url(&h, "/v1/enroll", url);
    pd_http_req req = {.method = "POST",
                       .url = url,
                       .body = (const uint8_t *)body,
                       .body_len = (size_t)n,
                       .content_type = "application/json"};
    pd_http_resp r;
    int rc = pd_http_call(&h, &req, &r);
    if (rc != PD_OK || r.status != 200) {
        snprintf(err, cap, "enrol %s: %ld %.200s %.200s", device_id, r.status, h.err.msg,
                 r.body ? r.body : "");
        rc = -1;
    }
    pd_http_resp_free(&r);
    pd_http_close(&h);
    return rc;
}

typedef struct enroll_job {
    int next;
    pthread_mutex_t lock;
    int failures;
} enroll_job;

static void *enroll_main(void *arg)
{
    enroll_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->lock);
        int i = j->next++;
        pthread_mutex_unlock(&j->lock);
        if (i >= O.devices + nsup)
            return NULL;
        char err[512] = "";
        int rc = i < nsup ? enroll_one(SV[i].id, SV[i].code, SV[i].pk, SV[i].upk, err, sizeof err)
                          : enroll_one(D[i - nsup].id, D[i - nsup].code, D[i - nsup].pk,
                                       D[i - nsup].upk, err, sizeof err);
        if (rc != 0) {
            pthread_mutex_lock(&j->lock);
            if (j->failures++ < 3)
                fprintf(stderr, "bench_load: %s\n", err);
            pthread_mutex_unlock(&j->lock);
        }
    }
}

/* A small valid JPEG of `size` bytes (content from seed). */
static void jpeg(uint8_t *p, size_t size, uint64_t seed)
{
    static const uint8_t head[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x10,
                                   0x00, 0x10, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xDA, 0x00,
                                   0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00};
    memcpy(p, head, sizeof head);
    for (size_t i = sizeof head; i < size - 2; i++)
        p[i] = (uint8_t)(rnd(&seed) % 255);
    p[size - 2] = 0xFF;
    p[size - 1] = 0xD9;
}

static pd_value T(const char *s)
{
    pd_value v = {.type = PD_VAL_TEXT, .p = (const uint8_t *)s, .len = strlen(s)};
    return v;
}

/* The day of device d: its batch (approved by its supervisor) in a bundle, and its photos. */
static int build_day(dev *d)
{
    uint64_t s = O.seed * 1000003 + (uint64_t)d->index;
    d->visits = O.vmin + (int)(rnd(&s) % (uint64_t)(O.vmax - O.vmin + 1));
    int per = 3 + O.photos;
    size_t nops = (size_t)(d->visits * per);
    pd_op *ops = calloc(nops, sizeof *ops);
    char(*hh)[32] = calloc((size_t)d->visits, 32);
    char(*vid)[40] = calloc((size_t)d->visits, 40);
    char(*vjson)[512] = calloc((size_t)d->visits, 512);
    char(*pjson)[300] = O.photos ? calloc((size_t)(d->visits * O.photos), 300) : NULL;
    char(*phex)[65] = O.photos ? calloc((size_t)(d->visits * O.photos), 65) : NULL;
    d->photos = d->visits * O.photos;
    if (d->photos) {
        d->photo = calloc((size_t)d->photos, 32);
        d->photo_bytes = malloc((size_t)d->photos * O.photo_bytes);
    }
    pd_batch_photo *bp = d->photos ? calloc((size_t)d->photos, sizeof *bp) : NULL;
    static const pd_value rooms[] = {{.type = PD_VAL_INT, .i = 1},
                                     {.type = PD_VAL_INT, .i = 2},
                                     {.type = PD_VAL_INT, .i = 3},
                                     {.type = PD_VAL_INT, .i = 4},
                                     {.type = PD_VAL_INT, .i = 5}};
    int64_t now = (int64_t)time(NULL) * 1000;
    char digits[16];
    size_t dl = 0;
    for (const char *c = d->desa; *c; c++)
        if (*c != '.')
            digits[dl++] = *c;
    digits[dl] = '\0';
    size_t k = 0;
    int slot = (d->index % ENUM_PER_DESA) * HH_PER_DEVICE;
    for (int v = 0; v < d->visits; v++) {
        snprintf(hh[v], 32, "%s%06d", digits, slot + (v % HH_PER_DEVICE) + 1);
        snprintf(vid[v], 40, "V%s-%06d", d->id, v + 1);
        snprintf(vjson[v], 512,
                 "{\"household_id\":\"%s\",\"outcome\":\"found\",\"visited_at\":%lld,"
                 "\"enumerator_pk\":null,\"lat\":-6.9,\"lon\":107.6,\"accuracy_m\":8.5,"
                 "\"altitude_m\":null,\"fix_time\":%lld,\"provider\":\"gps\",\"mock\":0,"
                 "\"notes\":\"rumah panggung, pintu biru\",\"warnings\":\"\"}",
                 hh[v], (long long)(now - (d->visits - v) * 600000LL),
                 (long long)(now - (d->visits - v) * 600000LL));
        ops[k++] =
            (pd_op){.kind = "visit", .entity = "visit", .target = vid[v], .new_value = T(vjson[v])};
        ops[k++] = (pd_op){.kind = "set",
                           .entity = "household",
                           .target = hh[v],
                           .field = "status",
                           .new_value = T("found")};
        ops[k++] = (pd_op){.kind = "set",
                           .entity = "household",
                           .target = hh[v],
                           .field = "rooms",
                           .new_value = rooms[rnd(&s) % 5]};
        for (int p = 0; p < O.photos; p++) {
            int pi = v * O.photos + p;
            uint8_t *bytes = d->photo_bytes + (size_t)pi * O.photo_bytes;
            jpeg(bytes, O.photo_bytes, s + (uint64_t)pi);
            crypto_generichash(d->photo[pi], 32, bytes, O.photo_bytes, NULL, 0);
            memcpy(bp[pi].hash, d->photo[pi], 32);
            bp[pi].size = O.photo_bytes;
            sodium_bin2hex(phex[pi], 65, d->photo[pi], 32);
            snprintf(pjson[pi], 300,
                     "{\"household_id\":\"%s\",\"visit_id\":\"%s\",\"kind\":\"front\","
                     "\"size\":%zu,\"taken_at\":%lld}",
                     hh[v], vid[v], O.photo_bytes, (long long)now);
            ops[k++] = (pd_op){
                .kind = "photo", .entity = "photo", .target = phex[pi], .new_value = T(pjson[pi])};
        }
    }
    for (size_t i = 0; i < k; i++) {
        ops[i].seq = (int64_t)i + 1;
        ops[i].device_id = d->id;
        ops[i].hlc = (now << 16) | (int64_t)i;
        if (!ops[i].field)
            ops[i].field = "";
    }
    d->ops = (int)k;
    pd_batch_params bpar = {.device_id = d->id, .area = d->desa, .seq = 1, .created_at = now};
    uint8_t *batch = NULL;
    size_t blen = 0;
    pd_error err = {0};
    int rc = pd_batch_build(&batch, &blen, &bpar, ops, k, bp, (size_t)d->photos, d->usk, &err);
    uint8_t hash[32];
    pd_review rv;
    uint8_t rec[PD_REVIEW_MAX_BYTES];
    size_t rl = 0;
    pd_bundle *b = NULL;
    if (rc == PD_OK)
        rc = pd_batch_peek(&(pd_batch_header){0}, hash, batch, blen, &err);
    if (rc == PD_OK)
        rc = pd_review_make(&rv, PD_REVIEW_APPROVE, hash, NULL, SV[d->sup].usk, &err);
    if (rc == PD_OK)
        rc = pd_review_encode(&rv, rec, sizeof rec, &rl);
    if (rc == PD_OK)
        rc = pd_bundle_new(&b);
    if (rc == PD_OK && (rc = pd_bundle_add(b, PD_BUNDLE_BATCH, batch, blen)) == PD_OK &&
        (rc = pd_bundle_add(b, PD_BUNDLE_REVIEW, rec, rl)) == PD_OK) {
        size_t n;
        const uint8_t *bytes = pd_bundle_bytes(b, &n);
        d->bundle = malloc(n);
        memcpy(d->bundle, bytes, n);
        d->bundle_len = n;
    }
    if (rc != PD_OK)
        snprintf(d->err, sizeof d->err, "build: %.200s", err.msg);
    pd_bundle_free(b);
    free(batch);
    free(ops);
    free(hh);
    free(vid);
    free(vjson);
    free(pjson);
    free(phex);
    free(bp);
    return rc;
}

static int no_save(void *ctx, const char *url, uint64_t offset)
{
    (void)ctx;
    (void)url;
    (void)offset;
    return PD_OK;
}

/* answer: a bundle goes in the creation POST (as pd_sync_run sends it) and the POST's answer,
 * which carries the commit's results when the server took it whole, lands there. */
static int tus_upload(pd_http *h, const uint8_t *data, size_t len, const char *kind,
                      const char *hash_hex, char *url_out, pd_http_resp *answer)
{
    char create[PD_HTTP_URL_MAX];
    pd_http_url(h, "/v1/uploads", create);
    char *meta = NULL;
    const char *keys[] = {"kind", "hash"};
    const char *vals[] = {kind, hash_hex};
    if (pd_tus_metadata(&meta, keys, vals, hash_hex ? 2 : 1) != PD_OK)
        return PD_ERR_NOMEM;
    pd_tus_upload u;
    memset(&u, 0, sizeof u);
    u.data = data;
    u.length = len;
    u.metadata = meta;
    u.sign = true;
    u.checksum = true;
    u.phase = PD_SYNC_PHASE_UPLOAD;
    /* photos too while the link holds, as pd_sync_run sends them (sync/client.c) */
    u.create_with_body = answer != NULL || (!strcmp(kind, "photo") && !h->link_failed);
    u.create_answer = answer;
    pd_tus_store ts = {no_save, NULL};
    int rc = pd_tus_send(h, create, &u, &ts);
    if (url_out)
        snprintf(url_out, PD_HTTP_URL_MAX, "%s", u.url);
    free(meta);
    return rc;
}

static void *device_main(void *arg)
{
    dev *d = arg;
    pd_sync_options o = client_options();
    pd_sync_stats stats;
    memset(&stats, 0, sizeof stats);
    pd_http h;
    pd_error e = {0};
    bool have_h = pd_http_init(&h, base_url, &o, &e) == PD_OK;
    if (have_h) {
        pd_http_pin(&h, server_pk);
        pd_http_set_device(&h, d->id, d->sk);
        h.stats = &stats;
    }
    pthread_barrier_wait(&barrier);
    if (!have_h || !d->bundle) {
        if (!have_h)
            snprintf(d->err, sizeof d->err, "%.200s", e.msg);
        return NULL;
    }
    double t0 = now_s();
    int rc = PD_OK;
    for (int p = 0; rc == PD_OK && p < d->photos; p++) {
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, d->photo[p], 32);
        rc = tus_upload(&h, d->photo_bytes + (size_t)p * O.photo_bytes, O.photo_bytes, "photo", hex,
                        NULL, NULL);
    }
    double t1 = now_s();
    char url[PD_HTTP_URL_MAX] = "";
    pd_http_resp r;
    memset(&r, 0, sizeof r);
    if (rc == PD_OK)
        rc = tus_upload(&h, d->bundle, d->bundle_len, "bundle", NULL, url, &r);
    double t2 = now_s();
    bool answered = rc == PD_OK && r.status == 201 && r.body_len;
    if (answered) {
        r.status = 200; /* the results came with the upload: no commit request */
    } else {
        pd_http_resp_free(&r);
    }
    if (rc == PD_OK) {
        const char *slash = strrchr(url, '/');
        char body[128], curl_[PD_HTTP_URL_MAX];
        int n = snprintf(body, sizeof body, "{\"upload\":\"%s\"}", slash ? slash + 1 : "");
        pd_http_url(&h, "/v1/batches/commit", curl_);
        pd_http_req req = {.method = "POST",
                           .url = curl_,
                           .body = (const uint8_t *)body,
                           .body_len = (size_t)n,
                           .content_type = "application/json",
                           .sign = true,
                           .gzip = true};
        if (!answered)
            rc = pd_http_call(&h, &req, &r);
        if (rc == PD_OK && r.status != 200)
            rc = pd_http_fail_status(&h, "commit", &r);
        cJSON *j = rc == PD_OK ? pd_http_json(&h, "commit", &r) : NULL;
        const cJSON *r0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "results"), 0);
        const cJSON *rh = cJSON_GetObjectItemCaseSensitive(r0, "receipt");
        uint8_t rb[PD_RECEIPT_BYTES_V1];
        pd_receipt rec;
        if (rc == PD_OK &&
            (!cJSON_IsString(rh) || strlen(rh->valuestring) != 400 ||
             sodium_hex2bin(rb, sizeof rb, rh->valuestring, 400, NULL, NULL, NULL) != 0 ||
             pd_receipt_parse(&rec, rb, sizeof rb, server_pk, NULL) != PD_OK || rec.status != 1)) {
            rc = PD_ERR_PROTOCOL;
            snprintf(h.err.msg, sizeof h.err.msg, "commit: no valid 'applied' receipt: %.200s",
                     r.body ? r.body : "");
        }
        if (rc == PD_OK)
            d->applied = (int)(rec.applied + rec.merged + rec.conflicted);
        cJSON_Delete(j);
        pd_http_resp_free(&r);
    }
    double t3 = now_s();
    if (rc == PD_OK) {
        char path[64], durl[PD_HTTP_URL_MAX];
        snprintf(path, sizeof path, "/v1/delta?since=%lld", (long long)start_cursor);
        pd_http_url(&h, path, durl);
        pd_http_req req = {.method = "GET", .url = durl, .sign = true, .gzip = true};
        rc = pd_http_call(&h, &req, &r);
        if (rc == PD_OK && r.status != 200)
            rc = pd_http_fail_status(&h, "delta", &r);
        cJSON *j = rc == PD_OK ? pd_http_json(&h, "delta", &r) : NULL;
        if (rc == PD_OK && !j)
            rc = PD_ERR_PROTOCOL;
        cJSON_Delete(j);
        pd_http_resp_free(&r);
    }
    double t4 = now_s();
    d->t_photos = t1 - t0;
    d->t_upload = t2 - t1;
    d->t_commit = t3 - t2;
    d->t_delta = t4 - t3;
    d->t_sync = t4 - t0;
    d->retries = stats.retries;
    d->requests = stats.requests;
    d->bytes_sent = stats.bytes_sent;
    d->bytes_received = stats.bytes_received;
    d->ok = rc == PD_OK;
    if (!d->ok)
        snprintf(d->err, sizeof d->err, "%.200s", h.err.msg);
    pd_http_close(&h);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    if (n <= 0)
        return 0;
    int i = (int)ceil(p / 100.0 * n) - 1;
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return v[i];
}

static void summary(const char *what, double (*get)(const dev *), double *buf)
{
    int n = 0;
    for (int i = 0; i < O.devices; i++)
        if (D[i].ok)
            buf[n++] = get(&D[i]) * 1000;
    qsort(buf, (size_t)n, sizeof *buf, cmp_double);
    printf("  %-14s p50 %8.1f ms  p90 %8.1f ms  p99 %8.1f ms  max %8.1f ms\n", what,
           pct(buf, n, 50), pct(buf, n, 90), pct(buf, n, 99), n ? buf[n - 1] : 0);
}

static double g_sync(const dev *d)
{
    return d->t_sync;
}
static double g_photos(const dev *d)
{
    return d->t_photos;
}
static double g_upload(const dev *d)
{
    return d->t_upload;
}
static double g_commit(const dev *d)
{
    return d->t_commit;
}
static double g_delta(const dev *d)
{
    return d->t_delta;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_load [--devices N] [--visits MIN-MAX] [--photos K] "
                    "[--photo-bytes B] [--threads T] [--seed S] [--keep]\n");
    return 2;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--keep")) {
            O.keep = true;
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--devices"))
            O.devices = atoi(v);
        else if (!strcmp(a, "--visits") && sscanf(v, "%d-%d", &O.vmin, &O.vmax) == 2)
            ;
        else if (!strcmp(a, "--photos"))
            O.photos = atoi(v);
        else if (!strcmp(a, "--photo-bytes"))
            O.photo_bytes = (size_t)atol(v);
        else if (!strcmp(a, "--threads"))
            O.threads = atoi(v);
        else if (!strcmp(a, "--seed"))
            O.seed = strtoull(v, NULL, 10);
        else
            return usage();
    }
    if (O.devices < 1 || O.vmin < 1 || O.vmax < O.vmin || O.vmax > HH_PER_DEVICE || O.photos < 0 ||
        O.photo_bytes < 64)
        return usage();
    if (sodium_init() < 0 || curl_global_init(CURL_GLOBAL_DEFAULT) != 0)
        return 1;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/pd-bench-load-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        return die("tmp", strerror(errno));
    snprintf(db_url, sizeof db_url, "sqlite:%s/server.db", dir);
    D = calloc((size_t)O.devices, sizeof *D);
    int status = 1;
    if (setup_server() != 0 || start_server() != 0)
        goto out;
    double t0 = now_s();
    enroll_job job = {.lock = PTHREAD_MUTEX_INITIALIZER};
    pthread_t et[8];
    for (int i = 0; i < 8; i++)
        pthread_create(&et[i], NULL, enroll_main, &job);
    for (int i = 0; i < 8; i++)
        pthread_join(et[i], NULL);
    if (job.failures) {
        fprintf(stderr, "bench_load: %d enrolments failed\n", job.failures);
        goto out;
    }
    fprintf(stderr, "enrolled %d devices and %d supervisors over HTTP in %.1f s\n", O.devices, nsup,
            now_s() - t0);
    int total_visits = 0, total_ops = 0, total_photos = 0;
    size_t total_bytes = 0;
    for (int i = 0; i < O.devices; i++) {
        if (build_day(&D[i]) != PD_OK) {
            fprintf(stderr, "bench_load: %s\n", D[i].err);
            goto out;
        }
        total_visits += D[i].visits;
        total_ops += D[i].ops;
        total_photos += D[i].photos;
        total_bytes += D[i].bundle_len + (size_t)D[i].photos * O.photo_bytes;
    }
    long rss0 = proc_kb(server_pid, "VmRSS:");
    double cpu0 = proc_cpu_s(server_pid);
    pthread_barrier_init(&barrier, NULL, (unsigned)O.devices + 1);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    pthread_t *th = calloc((size_t)O.devices, sizeof *th);
    for (int i = 0; i < O.devices; i++)
        if (pthread_create(&th[i], &attr, device_main, &D[i]) != 0) {
            fprintf(stderr, "bench_load: cannot start thread %d\n", i);
            return 1;
        }
    pthread_barrier_wait(&barrier);
    t_storm0 = now_s();
    double self0 = self_cpu_s();
    long rss_peak = rss0;
    /* sample the server's RSS while the storm lasts */
    for (int i = 0; i < O.devices; i++) {
        while (pthread_tryjoin_np(th[i], NULL) != 0) {
            long r = proc_kb(server_pid, "VmRSS:");
            if (r > rss_peak)
                rss_peak = r;
            struct timespec ts = {0, 20 * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    double wall = now_s() - t_storm0;
    double cpu = proc_cpu_s(server_pid) - cpu0;
    double dev_cpu = self_cpu_s() - self0;
    long hwm = proc_kb(server_pid, "VmHWM:");
    int ok = 0, applied = 0;
    uint64_t retries = 0, requests = 0, sent = 0, recv = 0;
    for (int i = 0; i < O.devices; i++) {
        ok += D[i].ok;
        applied += D[i].applied;
        retries += D[i].retries;
        requests += D[i].requests;
        sent += D[i].bytes_sent;
        recv += D[i].bytes_received;
        if (!D[i].ok && ok + 3 > i)
            fprintf(stderr, "bench_load: device %d: %s\n", i, D[i].err);
    }
    /* what the server holds */
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
    server_pid = 0;
    pd_server *srv = NULL;
    pd_error err = {0};
    pd_server_status st = {0};
    if (pd_server_open(&srv, db_url, NULL, &err) == PD_OK)
        pd_server_get_status(srv, &st);
    pd_server_close(srv);

    char nthreads[32] = "default";
    if (O.threads)
        snprintf(nthreads, sizeof nthreads, "%d", O.threads);
    printf("devices %d (%d supervisors), server threads %s, %d visits, %d ops, %d photos of %zu "
           "bytes, %.1f MiB to upload\n",
           O.devices, nsup, nthreads, total_visits, total_ops, total_photos,
           O.photos ? O.photo_bytes : (size_t)0, (double)total_bytes / 1048576.0);
    printf(
        "  storm: %d of %d devices synced in %.2f s: %.1f batches/s, %.0f ops/s, %.1f visits/s\n",
        ok, O.devices, wall, ok / wall, total_ops / wall, total_visits / wall);
    double *buf = calloc((size_t)O.devices, sizeof *buf);
    summary("whole sync", g_sync, buf);
    if (O.photos)
        summary("photos", g_photos, buf);
    summary("bundle upload", g_upload, buf);
    summary("commit (if asked)", g_commit, buf);
    summary("delta", g_delta, buf);
    printf("  requests %llu (%llu retries), %.0f KiB sent, %.0f KiB received\n",
           (unsigned long long)requests, (unsigned long long)retries, (double)sent / 1024.0,
           (double)recv / 1024.0);
    printf("  server: RSS %.1f MiB before, %.1f MiB peak (VmHWM %.1f MiB), CPU %.1f s (%.0f %% of "
           "one core)\n",
           (double)rss0 / 1024, (double)rss_peak / 1024, (double)hwm / 1024, cpu,
           100.0 * cpu / wall);
    printf("  devices (this process, sharing the cores): CPU %.1f s (%.0f %% of one core)\n",
           dev_cpu, 100.0 * dev_cpu / wall);
    printf("  server holds: %lld batches, %lld visits, %lld photos (expected %d, %d, %d)\n",
           (long long)st.batches, (long long)st.visits, (long long)st.photos, O.devices,
           total_visits, total_photos);
    for (int i = 0; i < O.devices; i++)
        buf[i] = D[i].ok ? D[i].t_sync * 1000 : 0;
    qsort(buf, (size_t)O.devices, sizeof *buf, cmp_double);
    printf("LOAD devices=%d ok=%d visits=%d ops=%d photos=%d wall_s=%.2f batches_per_s=%.1f "
           "ops_per_s=%.0f visits_per_s=%.1f p50_ms=%.0f p99_ms=%.0f max_ms=%.0f retries=%llu "
           "rss_peak_mb=%.1f cpu_s=%.1f held_batches=%lld\n",
           O.devices, ok, total_visits, total_ops, total_photos, wall, ok / wall, total_ops / wall,
           total_visits / wall, pct(buf, O.devices, 50), pct(buf, O.devices, 99),
           buf[O.devices - 1], (unsigned long long)retries, (double)rss_peak / 1024, cpu,
           (long long)st.batches);
    free(buf);
    free(th);
    status = ok == O.devices && st.batches == O.devices && st.visits == total_visits ? 0 : 1;
out:
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    for (int i = 0; D && i < O.devices; i++) {
        free(D[i].bundle);
        free(D[i].photo);
        free(D[i].photo_bytes);
    }
    free(D);
    free(SV);
    if (!O.keep)
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    else
        fprintf(stderr, "kept %s\n", dir);
    curl_global_cleanup();
    return status;
}
