/*
 * test_sync_harness.h — what the sync client's tests (tests/test_sync*.c) and bench/bench_sync.c
 * share: a real `pendata-server` started as a child process on port 0 (its database prepared
 * with the server library first), a tiny TCP proxy that can cut a connection after K bytes,
 * throttle, and count bytes each way, devices made with the real library, the field work that
 * makes batches (visit, photo, seal, supervisor approval), and a reader of the server's access
 * log (what the server says it received). Header-only (static functions): each test is one
 * program.
 *
 * The server's database is sqlite:DIR/server.db, or with PD_TEST_DB_URL=postgres://… a fresh
 * database on that cluster (test_db.h; dropped at exit). Its data directory is
 * DIR/server.db.d either way (th_server.data): pass it whenever the server is opened.
 */
#ifndef PD_TEST_SYNC_HARNESS_H
#define PD_TEST_SYNC_HARNESS_H

#include "client_internal.h"
#include "pd_server.h"
#include "pd_sync.h"
#include "test_db.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH_UNUSED __attribute__((unused))

#define TH_PIN "482915"

/* REQUIRE for a void test function (testutil's REQUIRE ends main). */
#define REQUIRE_VOID(cond)                                                                         \
    do {                                                                                           \
        pd_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);             \
            pd_test_failures++;                                                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define TH_AREA "32.73.01.1001"

static TH_UNUSED void th_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static TH_UNUSED const char *th_build(void)
{
    const char *b = getenv("PD_BUILD");
    return b && *b ? b : ".";
}

/* Fast retries for tests: a cut is retried within milliseconds. */
static TH_UNUSED pd_sync_options th_options(void)
{
    pd_sync_options o;
    memset(&o, 0, sizeof o);
    o.connect_timeout_ms = 3000;
    o.stall_timeout_s = 5;
    o.max_attempts = 12;
    o.backoff_base_ms = 5;
    o.backoff_cap_ms = 100;
    return o;
}

/* ---- the server -------------------------------------------------------------------------------
 */

typedef struct th_server {
    char dir[512];
    char db[1200];  /* the database URL */
    char data[600]; /* the data directory: keys (PostgreSQL), uploads, blobs */
    char log[600];
    char fingerprint[PD_SERVER_FINGERPRINT_LEN + 1];
    pid_t pid;
    int port;
} th_server;

/* A server database with a supervisor S0001 (kecamatan 32.73.01), enumerators E0001 and E0002 in
 * desa 32.73.01.1001 supervised by S0001, an admin A0001 without an area, and a generated prelist
 * of `households` there. */
static TH_UNUSED int th_server_create(th_server *s, const char *dir, uint32_t households)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    snprintf(s->data, sizeof s->data, "%s/server.db.d", dir);
    snprintf(s->log, sizeof s->log, "%s/access.log", dir);
    if (td_make(s->db, sizeof s->db, dir, "pool=4") != 0)
        return PD_ERR_IO;
    pd_error err = {0};
    pd_server *srv = NULL;
    int rc = pd_server_create(s->db, s->data, &err);
    if (rc == PD_OK)
        rc = pd_server_open(&srv, s->db, s->data, &err);
    if (rc != PD_OK) {
        fprintf(stderr, "server: %s\n", err.msg);
        return rc;
    }
    pd_server_user sup = {"S0001", "supervisor", "Budi Santoso", "32.73.01", NULL};
    pd_server_user e1 = {"E0001", "enumerator", "Dewi Lestari", TH_AREA, "S0001"};
    pd_server_user e2 = {"E0002", "enumerator", "Agus Salim", TH_AREA, "S0001"};
    pd_server_user adm = {"A0001", "admin", "Operator Pusat", NULL, NULL};
    pd_server_load_stats ls;
    if ((rc = pd_server_user_add(srv, &sup)) != PD_OK ||
        (rc = pd_server_user_add(srv, &adm)) != PD_OK ||
        (rc = pd_server_user_add(srv, &e1)) != PD_OK ||
        (rc = pd_server_user_add(srv, &e2)) != PD_OK ||
        (rc = pd_server_load_generated(srv, TH_AREA, 7, households, &ls)) != PD_OK)
        fprintf(stderr, "server setup: %s\n", pd_server_errmsg(srv));
    pd_server_fingerprint(srv, s->fingerprint);
    pd_server_close(srv);
    return rc;
}

/* A one-time enrolment code for user (issued through the library while the service may run). */
static TH_UNUSED int th_code(th_server *s, const char *user, char code[PD_ENROLL_CODE_LEN + 1])
{
    pd_error err = {0};
    pd_server *srv = NULL;
    int rc = pd_server_open(&srv, s->db, s->data, &err);
    if (rc == PD_OK) {
        rc = pd_server_enroll_code(srv, user, 0, code);
        if (rc != PD_OK)
            fprintf(stderr, "enroll code: %s\n", pd_server_errmsg(srv));
    } else {
        fprintf(stderr, "enroll code: %s\n", err.msg);
    }
    pd_server_close(srv);
    return rc;
}

/* Start `pendata-server serve` on 127.0.0.1:port (0: any); reads the port from its first line. */
static TH_UNUSED int th_server_start(th_server *s, int port)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    char bin[1024], listen[64];
    snprintf(bin, sizeof bin, "%s/pendata-server", th_build());
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0 && !getenv("PD_TEST_VERBOSE"))
            dup2(devnull, 2);
        execl(bin, bin, "--db", s->db, "--data", s->data, "serve", "--listen", listen,
              "--access-log", s->log, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = "";
    size_t n = 0;
    while (n + 1 < sizeof line) {
        ssize_t r = read(fds[0], line + n, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    close(fds[0]);
    s->pid = pid;
    s->port = atoi(line);
    if (s->port <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        s->pid = 0;
        return -1;
    }
    return 0;
}

static TH_UNUSED void th_server_kill(th_server *s, int sig)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, sig);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static TH_UNUSED int th_server_status(th_server *s, pd_server_status *st)
{
    pd_error err = {0};
    pd_server *srv = NULL;
    int rc = pd_server_open(&srv, s->db, s->data, &err);
    if (rc == PD_OK)
        rc = pd_server_get_status(srv, st);
    pd_server_close(srv);
    return rc;
}

/* ---- the access log: what the server received --------------------------------------------------
 */

typedef struct th_log {
    size_t patch_ok;    /* PATCHes answered 204 */
    uint64_t patch_in;  /* their body bytes, and those of creation POSTs answered 201 */
    size_t patch_other; /* PATCHes answered otherwise */
    size_t heads, posts, commits, deltas, prelists, prelist_partial, receipts, total;
} th_log;

static TH_UNUSED long long th_field(const char *line, const char *key)
{
    const char *p = strstr(line, key);
    return p ? atoll(p + strlen(key)) : -1;
}

/* Read the log from byte `from` on (0: all). */
static TH_UNUSED void th_log_read(const th_server *s, long from, th_log *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(s->log, "r");
    if (!f)
        return;
    fseek(f, from, SEEK_SET);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        out->total++;
        long long st = th_field(line, "status=");
        if (strstr(line, "method=PATCH")) {
            if (st == 204) {
                out->patch_ok++;
                out->patch_in += (uint64_t)th_field(line, " in=");
            } else {
                out->patch_other++;
            }
        } else if (strstr(line, "method=HEAD")) {
            out->heads++;
        } else if (strstr(line, "path=/v1/batches/commit")) {
            out->commits++;
        } else if (strstr(line, "method=POST path=/v1/uploads")) {
            out->posts++;
            if (st == 201) /* creation-with-upload: the bytes it carried were taken */
                out->patch_in += (uint64_t)th_field(line, " in=");
        } else if (strstr(line, "path=/v1/delta")) {
            out->deltas++;
        } else if (strstr(line, "path=/v1/prelist")) {
            out->prelists++;
            if (st == 206)
                out->prelist_partial++;
        } else if (strstr(line, "path=/v1/receipts")) {
            out->receipts++;
        }
    }
    fclose(f);
}

static TH_UNUSED long th_log_size(const th_server *s)
{
    struct stat sb;
    return stat(s->log, &sb) == 0 ? (long)sb.st_size : 0;
}

/* ---- the proxy --------------------------------------------------------------------------------
 */

#define TH_PROXY_CONNS 32

typedef struct th_proxy {
    int listen_fd, port;
    atomic_int target_port;
    atomic_llong up, down;        /* bytes client->server, server->client */
    atomic_llong cut_after;       /* > 0: cut the connection once this many more bytes went up */
    atomic_llong cut_down_after;  /* > 0: the same for bytes coming down */
    atomic_int cuts;              /* connections cut so far */
    atomic_int up_bytes_per_tick; /* > 0: at most this many upstream bytes per 2 ms tick */
    atomic_int refuse;            /* close new connections at once */
    atomic_bool stop;
    pthread_t thread;
    int stop_pipe[2];
} th_proxy;

typedef struct th_pair {
    int c, s; /* client side, server side; -1 when unused */
} th_pair;

static TH_UNUSED int th_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static TH_UNUSED void th_pair_close(th_pair *p)
{
    if (p->c >= 0)
        close(p->c);
    if (p->s >= 0)
        close(p->s);
    p->c = p->s = -1;
}

static TH_UNUSED void *th_proxy_main(void *arg)
{
    th_proxy *x = arg;
    th_pair pairs[TH_PROXY_CONNS];
    for (int i = 0; i < TH_PROXY_CONNS; i++)
        pairs[i].c = pairs[i].s = -1;
    char buf[16384];
    while (!atomic_load(&x->stop)) {
        struct pollfd pf[2 + 2 * TH_PROXY_CONNS];
        int map[2 + 2 * TH_PROXY_CONNS];
        int n = 0;
        pf[n].fd = x->listen_fd;
        pf[n].events = POLLIN;
        map[n++] = -1;
        pf[n].fd = x->stop_pipe[0];
        pf[n].events = POLLIN;
        map[n++] = -2;
        for (int i = 0; i < TH_PROXY_CONNS; i++) {
            if (pairs[i].c < 0)
                continue;
            pf[n].fd = pairs[i].c;
            pf[n].events = POLLIN;
            map[n++] = 2 * i;
            pf[n].fd = pairs[i].s;
            pf[n].events = POLLIN;
            map[n++] = 2 * i + 1;
        }
        if (poll(pf, (nfds_t)n, 200) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!(pf[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (map[k] == -2)
                continue;
            if (map[k] == -1) {
                int c = accept(x->listen_fd, NULL, NULL);
                if (c < 0)
                    continue;
                int s = atomic_load(&x->refuse) ? -1 : th_connect(atomic_load(&x->target_port));
                int slot = -1;
                for (int i = 0; i < TH_PROXY_CONNS && slot < 0; i++)
                    if (pairs[i].c < 0)
                        slot = i;
                if (s < 0 || slot < 0) {
                    close(c);
                    if (s >= 0)
                        close(s);
                    continue;
                }
                pairs[slot].c = c;
                pairs[slot].s = s;
                continue;
            }
            th_pair *p = &pairs[map[k] / 2];
            if (p->c < 0)
                continue;
            bool upstream = map[k] % 2 == 0;
            size_t want = sizeof buf;
            int tick = atomic_load(&x->up_bytes_per_tick);
            if (upstream && tick > 0 && (size_t)tick < want)
                want = (size_t)tick;
            long long cut = atomic_load(upstream ? &x->cut_after : &x->cut_down_after);
            if (cut > 0 && (long long)want > cut)
                want = (size_t)cut;
            ssize_t r = read(upstream ? p->c : p->s, buf, want);
            if (r <= 0) {
                th_pair_close(p);
                continue;
            }
            int to = upstream ? p->s : p->c;
            ssize_t off = 0;
            while (off < r) {
                ssize_t w = send(to, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0)
                    break;
                off += w;
            }
            if (off < r) {
                th_pair_close(p);
                continue;
            }
            atomic_fetch_add(upstream ? &x->up : &x->down, r);
            if (cut > 0) {
                atomic_llong *cp = upstream ? &x->cut_after : &x->cut_down_after;
                long long left = atomic_fetch_sub(cp, r) - r;
                if (left <= 0) {
                    atomic_store(cp, 0);
                    atomic_fetch_add(&x->cuts, 1);
                    /* RST rather than FIN: the connection is gone, not finished */
                    struct linger lg = {1, 0};
                    setsockopt(p->c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                    setsockopt(p->s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                    th_pair_close(p);
                    continue;
                }
            }
            if (upstream && tick > 0)
                th_sleep_ms(2);
        }
    }
    for (int i = 0; i < TH_PROXY_CONNS; i++)
        th_pair_close(&pairs[i]);
    return NULL;
}

static TH_UNUSED int th_proxy_start(th_proxy *x, int target_port)
{
    memset(x, 0, sizeof *x);
    atomic_store(&x->target_port, target_port);
    x->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (x->listen_fd < 0 || pipe(x->stop_pipe) != 0)
        return -1;
    int one = 1;
    setsockopt(x->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(x->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(x->listen_fd, 16) != 0 ||
        getsockname(x->listen_fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    x->port = ntohs(a.sin_port);
    return pthread_create(&x->thread, NULL, th_proxy_main, x) == 0 ? 0 : -1;
}

static TH_UNUSED void th_proxy_stop(th_proxy *x)
{
    atomic_store(&x->stop, true);
    if (write(x->stop_pipe[1], "x", 1) < 0) {
        /* the poll timeout ends the loop anyway */
    }
    pthread_join(x->thread, NULL);
    close(x->listen_fd);
    close(x->stop_pipe[0]);
    close(x->stop_pipe[1]);
}

/* ---- devices ------------------------------------------------------------------------------------
 */

/* A new store in dir/name with a person identity for role. */
static TH_UNUSED pd_store *th_device(const char *dir, const char *name, const char *role)
{
    char home[1024];
    snprintf(home, sizeof home, "%s/%s", dir, name);
    pd_store *s = NULL;
    pd_error err = {0};
    if (pd_store_create(&s, home, TH_PIN, &PD_KDF_TEST, &err) != PD_OK) {
        fprintf(stderr, "store: %s\n", err.msg);
        return NULL;
    }
    if (pd_store_add_role(s, role, NULL) != PD_OK) {
        fprintf(stderr, "role: %s\n", pd_store_errmsg(s));
        pd_store_close(s);
        return NULL;
    }
    return s;
}

static TH_UNUSED int th_enrol(pd_store *s, th_server *srv, int port, const char *user)
{
    char code[PD_ENROLL_CODE_LEN + 1], url[64];
    if (th_code(srv, user, code) != PD_OK)
        return -1;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    pd_sync_options o = th_options();
    int rc = pd_sync_enroll(s, url, code, srv->fingerprint, NULL, &o, NULL);
    if (rc != PD_OK)
        fprintf(stderr, "enrol %s: %s\n", user, pd_store_errmsg(s));
    return rc;
}

/* Point the device at another port of the same server (a proxy). */
static TH_UNUSED int th_set_url(pd_store *s, int port)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(s),
                                "UPDATE settings SET value = ?1 WHERE key = 'server_url'", -1, &st,
                                NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, url, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* A small but valid JPEG of about `size` bytes whose content depends on seed. */
static TH_UNUSED uint8_t *th_jpeg(size_t size, uint32_t seed, size_t *len)
{
    static const uint8_t head[] = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x10,
                                   0x00, 0x10, 0x01, 0x01, 0x11, 0x00, 0xFF, 0xDA, 0x00,
                                   0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00};
    if (size < sizeof head + 16)
        size = sizeof head + 16;
    uint8_t *p = malloc(size);
    if (!p)
        return NULL;
    memcpy(p, head, sizeof head);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = sizeof head; i < size - 2; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)((x >> 16) % 255); /* never 0xFF: no markers in the scan */
    }
    p[size - 2] = 0xFF;
    p[size - 1] = 0xD9;
    *len = size;
    return p;
}

/* The queue entry of batch `seq` (0: the first one); n counts the queue. */
typedef struct th_first {
    int n;
    int64_t id;
    uint64_t seq;
} th_first;

static TH_UNUSED int th_first_queued(void *ctx, const pd_outbox_entry *e)
{
    th_first *f = ctx;
    if ((f->seq == 0 && f->n == 0) || (f->seq != 0 && e->seq == f->seq))
        f->id = e->id;
    f->n++;
    return 0;
}

/* Visit `visits` households of the prelist (from index `from`), with `photos` photos of
 * photo_bytes each on the first visit, a correction on each, and seal. */
static TH_UNUSED int th_field_work(pd_store *enu, int from, int visits, int photos,
                                   size_t photo_bytes)
{
    for (int i = 0; i < visits; i++) {
        char hh[32], vid[PD_ID_MAX];
        snprintf(hh, sizeof hh, "3273011001%06d", from + i + 1);
        pd_gps fix = {.lat = -6.9 + 0.0001 * i,
                      .lon = 107.6,
                      .accuracy = 8,
                      .altitude = NAN,
                      .fix_time = pd_sync_now_ms() - 1000,
                      .provider = "gps"};
        pd_visit_in v = {.household_id = hh,
                         .outcome = "found",
                         .gps = &fix,
                         .notes = "pintu depan dicat biru, rumah panggung"};
        if (pd_visit_record(enu, &v, vid, NULL) != PD_OK) {
            fprintf(stderr, "visit %s: %s\n", hh, pd_store_errmsg(enu));
            return -1;
        }
        pd_value roof = {.type = PD_VAL_INT, .i = 1 + (i % 5)};
        if (pd_household_set(enu, hh, "roof_material", &roof, NULL) != PD_OK) {
            fprintf(stderr, "set %s: %s\n", hh, pd_store_errmsg(enu));
            return -1;
        }
        static const char *const kinds[] = {"front", "wall", "floor", "kitchen", "toilet",
                                            "kk",    "ktp",  "head",  "roof"};
        for (int k = 0; i == 0 && k < photos; k++) {
            size_t len;
            uint8_t *jpeg = th_jpeg(photo_bytes, (uint32_t)(from * 100 + k + 1), &len);
            int rc =
                jpeg ? pd_photo_add(enu, hh, vid, kinds[k % 9], jpeg, len, 0, NULL) : PD_ERR_NOMEM;
            free(jpeg);
            if (rc != PD_OK) {
                fprintf(stderr, "photo: %s\n", pd_store_errmsg(enu));
                return -1;
            }
        }
    }
    pd_seal_result sr;
    if (pd_batch_seal(enu, &sr) != PD_OK) {
        fprintf(stderr, "seal: %s\n", pd_store_errmsg(enu));
        return -1;
    }
    return (int)sr.seq;
}

/* The supervisor takes batch `seq` of the enumerator, approves (or returns) it, and the decision
 * goes back to the enumerator's device. */
static TH_UNUSED int th_review(pd_store *enu, pd_store *sup, uint64_t seq,
                               const char *return_reason)
{
    uint8_t *file = NULL, *back = NULL;
    size_t len = 0, back_len = 0;
    pd_import_result ir;
    th_first f = {0, 0, seq};
    int rc = pd_outbox_export(enu, seq, &file, &len);
    if (rc == PD_OK)
        rc = pd_review_import(sup, file, len, &ir);
    if (rc == PD_OK)
        rc = pd_review_list(sup, false, th_first_queued, &f);
    if (rc == PD_OK && f.id == 0)
        rc = PD_ERR_NOTFOUND;
    if (rc == PD_OK)
        rc = return_reason ? pd_review_return(sup, f.id, return_reason)
                           : pd_review_approve(sup, f.id);
    if (rc == PD_OK)
        rc = pd_review_export(sup, f.id, &back, &back_len);
    if (rc == PD_OK)
        rc = pd_outbox_import(enu, back, back_len, &ir);
    if (rc != PD_OK)
        fprintf(stderr, "review: %s / %s\n", pd_store_errmsg(enu), pd_store_errmsg(sup));
    free(file);
    free(back);
    return rc;
}

/* The state of batch seq of this device's enumerator ("" if none). */
static TH_UNUSED void th_batch_state(pd_store *s, uint64_t seq, char out[16])
{
    out[0] = '\0';
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(pd_store_sqlite(s),
                           "SELECT state FROM batch WHERE seq = ?1 AND author_pk = (SELECT "
                           "sign_pk FROM identity WHERE role = 'enumerator')",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(out, 16, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
}

static TH_UNUSED long long th_count(pd_store *s, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(pd_store_sqlite(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

#endif
