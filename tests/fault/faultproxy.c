/*
 * faultproxy.c — `pd-faultproxy`, a TCP proxy for loopback tests that makes the network of the
 * field: a slow link, a long round trip, connections cut at random byte offsets, stalls longer
 * than the client's timeout, and a server that is not there (restarting).
 *
 *   pd-faultproxy --target HOST:PORT | --target-file FILE
 *                 [--listen HOST:PORT] [--rate BYTES_PER_S] [--latency MS]
 *                 [--cut P] [--stall P] [--stall-ms MS] [--span BYTES] [--seed N]
 *                 [--schedule LETTERS] [--stats FILE]
 *
 * It prints the port it listens on as the first line of stdout, then forwards each accepted
 * connection to the target (connected afresh per connection: a restarted server is picked up;
 * --target-file is re-read for every connection, so a test can move the target). Per connection
 * and direction:
 *   --rate     at most this many bytes a second leave the proxy (a 50 kbit/s EDGE link: 6250);
 *   --latency  every byte is held this long before it is passed on (one way; the round trip is
 *              twice this);
 *   --cut      with probability P the connection is reset (RST, both sides) once a random number
 *              of bytes in [1, span] has passed through it, both directions counted;
 *   --stall    with probability P (drawn after --cut) the connection goes silent at a random offset
 *              in [0, span) for --stall-ms, then is reset: a stall longer than the client's
 * timeout.
 *   --schedule the first established connections' fate, one letter each ('c' cut, 's' stall, '-'
 * spared), before the dice take over (so a short test sees every kind of fault at least once); a
 *              scheduled fault strikes within the connection's first 300 bytes.
 * What each connection will suffer is drawn when it is accepted, from --seed. A refused target is
 * answered by resetting the client. Queues are bounded (64 KiB a direction): a slow side pushes
 * back on the fast one through TCP, as on a real link.
 *
 * Counters (connections, refused, cut, stalled, bytes each way) are written as one JSON object to
 * --stats (atomically: temp file + rename) on SIGUSR1, every second while traffic flows, and on
 * exit (SIGTERM or SIGINT). It is a test tool: loopback only, single-threaded, poll(2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define QUEUE_MAX (64 * 1024)
#define READ_MAX (16 * 1024)
#define SLICE_US 20000 /* a rate-limited direction sends at most 20 ms worth of bytes at once */

typedef struct chunk {
    struct chunk *next;
    int64_t due_us;
    size_t len, off;
    uint8_t data[];
} chunk;

typedef struct dir {
    chunk *head, *tail;
    size_t queued;
    int64_t next_send_us;
    bool eof_in;   /* the source closed its side */
    bool reset_in; /* ... with a reset: pass the reset on once the queue is out */
    bool shut_out; /* the EOF was passed on */
} dir;

typedef struct conn {
    int fd[2]; /* 0 client, 1 server */
    dir d[2];  /* 0 up (client -> server), 1 down */
    uint64_t total;
    uint64_t cut_at;   /* 0: never */
    uint64_t stall_at; /* 0: never (a stall at offset 0 is drawn as 1) */
    int64_t stall_until;
    bool stalled;
} conn;

typedef struct cfg {
    char target[128];
    const char *target_file;
    const char *listen;
    uint64_t rate;
    int64_t latency_us;
    double cut_p, stall_p;
    int64_t stall_us;
    uint64_t span;
    uint64_t seed;
    const char *schedule;
    const char *stats;
} cfg;

static volatile sig_atomic_t g_stop, g_dump;
static cfg C;
static conn *conns[MAX_CONNS];
static struct {
    uint64_t connections, refused, cut, stalled, up, down;
} S;
static int64_t last_dump_us;
static size_t established; /* connections passed on to the target */
static bool dirty;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        g_dump = 1;
    else
        g_stop = 1;
}

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* splitmix64: the proxy's only randomness, replayable with --seed */
static uint64_t rnd(void)
{
    uint64_t z = (C.seed += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rnd01(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static void write_stats(void)
{
    if (!C.stats)
        return;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", C.stats);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f,
            "{\"connections\":%llu,\"refused\":%llu,\"cut\":%llu,\"stalled\":%llu,"
            "\"bytes_up\":%llu,\"bytes_down\":%llu}\n",
            (unsigned long long)S.connections, (unsigned long long)S.refused,
            (unsigned long long)S.cut, (unsigned long long)S.stalled, (unsigned long long)S.up,
            (unsigned long long)S.down);
    if (fclose(f) == 0)
        rename(tmp, C.stats);
    dirty = false;
    last_dump_us = now_us();
}

static bool parse_addr(const char *s, struct sockaddr_in *a)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    const char *port = colon ? colon + 1 : s;
    size_t hl = colon ? (size_t)(colon - s) : 0;
    if (hl >= sizeof host)
        return false;
    memcpy(host, s, hl);
    host[hl] = '\0';
    char *end;
    unsigned long p = strtoul(port, &end, 10);
    if (*port == '\0' || *end || p > 65535)
        return false;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)p);
    return inet_pton(AF_INET, hl ? host : "127.0.0.1", &a->sin_addr) == 1;
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Close with RST: the connection is gone, not finished. */
static void reset_fd(int fd)
{
    if (fd < 0)
        return;
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static void conn_free(int i, bool reset)
{
    conn *c = conns[i];
    if (!c)
        return;
    for (int k = 0; k < 2; k++) {
        if (reset)
            reset_fd(c->fd[k]);
        else if (c->fd[k] >= 0)
            close(c->fd[k]);
        for (chunk *h = c->d[k].head; h;) {
            chunk *n = h->next;
            free(h);
            h = n;
        }
    }
    free(c);
    conns[i] = NULL;
    dirty = true;
}

static int connect_target(void)
{
    char spec[128];
    snprintf(spec, sizeof spec, "%s", C.target);
    if (C.target_file) {
        FILE *f = fopen(C.target_file, "r");
        if (!f || !fgets(spec, sizeof spec, f)) {
            if (f)
                fclose(f);
            return -1;
        }
        fclose(f);
        spec[strcspn(spec, "\r\n ")] = '\0';
    }
    struct sockaddr_in a;
    if (!parse_addr(spec, &a))
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    set_nonblock(fd);
    return fd;
}

static void accept_one(int lfd)
{
    int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    S.connections++;
    dirty = true;
    int slot = -1;
    for (int i = 0; i < MAX_CONNS && slot < 0; i++)
        if (!conns[i])
            slot = i;
    int sfd = slot >= 0 ? connect_target() : -1;
    if (sfd < 0) {
        S.refused++;
        reset_fd(cfd);
        return;
    }
    conn *c = calloc(1, sizeof *c);
    if (!c) {
        reset_fd(cfd);
        close(sfd);
        return;
    }
    set_nonblock(cfd);
    c->fd[0] = cfd;
    c->fd[1] = sfd;
    double r = rnd01();
    uint64_t span = C.span ? C.span : 1;
    char fate = r < C.cut_p ? 'c' : r < C.cut_p + C.stall_p ? 's' : '-';
    if (C.schedule && established < strlen(C.schedule)) {
        fate = C.schedule[established];
        if (span > 300)
            span = 300; /* early, so that even a short connection gets there */
    }
    established++;
    if (fate == 'c')
        c->cut_at = 1 + rnd() % span;
    else if (fate == 's')
        c->stall_at = 1 + rnd() % span;
    conns[slot] = c;
}

/* Read what the source of direction k has, into its queue. false: the connection is over. */
static bool pump_in(conn *c, int k, int64_t now)
{
    dir *d = &c->d[k];
    size_t room = QUEUE_MAX - d->queued;
    if (room > READ_MAX)
        room = READ_MAX;
    chunk *ch = malloc(sizeof *ch + room);
    if (!ch)
        return false;
    ssize_t n = read(c->fd[k], ch->data, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        free(ch);
        return true;
    }
    if (n <= 0) {
        free(ch);
        /* EOF, or a reset by the peer: what came before it still goes out first, in order */
        d->eof_in = true;
        d->reset_in = n < 0;
        return true;
    }
    ch->next = NULL;
    ch->len = (size_t)n;
    ch->off = 0;
    ch->due_us = now + C.latency_us;
    if (d->tail)
        d->tail->next = ch;
    else
        d->head = ch;
    d->tail = ch;
    d->queued += (size_t)n;
    return true;
}

/* Send what is due in direction k. Returns false when the connection must end (cut or error);
 * *cut tells a deliberate cut. */
static bool pump_out(conn *c, int k, int64_t now, bool *cut)
{
    dir *d = &c->d[k];
    int to = c->fd[1 - k];
    while (d->head && d->head->due_us <= now && (C.rate == 0 || d->next_send_us <= now)) {
        chunk *h = d->head;
        size_t n = h->len - h->off;
        if (C.rate) {
            size_t slice = (size_t)(C.rate * SLICE_US / 1000000);
            if (slice < 1)
                slice = 1;
            if (n > slice)
                n = slice;
        }
        if (c->cut_at && c->total + n >= c->cut_at)
            n = (size_t)(c->cut_at - c->total);
        if (c->stall_at && !c->stalled && c->total + n >= c->stall_at)
            n = (size_t)(c->stall_at - c->total);
        ssize_t w = n ? send(to, h->data + h->off, n, MSG_NOSIGNAL) : 0;
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return true;
            /* the receiver is gone: this direction is dead, but what the other direction still
             * carries (an answer sent before the close) goes out first */
            for (chunk *x = d->head; x;) {
                chunk *nx = x->next;
                free(x);
                x = nx;
            }
            d->head = d->tail = NULL;
            d->queued = 0;
            d->eof_in = d->shut_out = true;
            return true;
        }
        h->off += (size_t)w;
        d->queued -= (size_t)w;
        c->total += (uint64_t)w;
        if (k == 0)
            S.up += (uint64_t)w;
        else
            S.down += (uint64_t)w;
        dirty = true;
        if (C.rate) {
            int64_t base = d->next_send_us > now ? d->next_send_us : now;
            d->next_send_us = base + (int64_t)((uint64_t)w * 1000000 / C.rate);
        }
        if (h->off == h->len) {
            d->head = h->next;
            if (!d->head)
                d->tail = NULL;
            free(h);
        }
        if (c->cut_at && c->total >= c->cut_at) {
            S.cut++;
            *cut = true;
            return false;
        }
        if (c->stall_at && !c->stalled && c->total >= c->stall_at) {
            c->stalled = true;
            c->stall_until = now + C.stall_us;
            S.stalled++;
            return true;
        }
        if ((size_t)w < n)
            return true; /* the socket is full: wait for POLLOUT */
    }
    if (!d->head && d->eof_in && !d->shut_out) {
        if (d->reset_in)
            return false;
        shutdown(to, SHUT_WR);
        d->shut_out = true;
    }
    return true;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: pd-faultproxy --target HOST:PORT | --target-file FILE [--listen HOST:PORT]\n"
            "       [--rate BYTES_PER_S] [--latency MS] [--cut P] [--stall P] [--stall-ms MS]\n"
            "       [--span BYTES] [--seed N] [--schedule LETTERS] [--stats FILE]\n");
    return 2;
}

int main(int argc, char **argv)
{
    C.listen = "127.0.0.1:0";
    C.span = 65536;
    C.stall_us = 10 * 1000000LL;
    C.seed = (uint64_t)time(NULL);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        i++;
        if (!strcmp(a, "--target"))
            snprintf(C.target, sizeof C.target, "%s", v);
        else if (!strcmp(a, "--target-file"))
            C.target_file = v;
        else if (!strcmp(a, "--listen"))
            C.listen = v;
        else if (!strcmp(a, "--rate"))
            C.rate = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--latency"))
            C.latency_us = strtoll(v, NULL, 10) * 1000;
        else if (!strcmp(a, "--cut"))
            C.cut_p = strtod(v, NULL);
        else if (!strcmp(a, "--stall"))
            C.stall_p = strtod(v, NULL);
        else if (!strcmp(a, "--stall-ms"))
            C.stall_us = strtoll(v, NULL, 10) * 1000;
        else if (!strcmp(a, "--span"))
            C.span = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--seed"))
            C.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--schedule"))
            C.schedule = v;
        else if (!strcmp(a, "--stats"))
            C.stats = v;
        else
            return usage();
    }
    if (!C.target[0] && !C.target_file)
        return usage();
    struct sockaddr_in la;
    if (!parse_addr(C.listen, &la)) {
        fprintf(stderr, "pd-faultproxy: bad --listen '%s'\n", C.listen);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    socklen_t len = sizeof la;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(lfd, (struct sockaddr *)&la, sizeof la) != 0 || listen(lfd, 128) != 0 ||
        getsockname(lfd, (struct sockaddr *)&la, &len) != 0) {
        fprintf(stderr, "pd-faultproxy: cannot listen on %s: %s\n", C.listen, strerror(errno));
        return 1;
    }
    printf("%u\n", (unsigned)ntohs(la.sin_port));
    fflush(stdout);
    write_stats();

    struct pollfd pf[1 + 2 * MAX_CONNS];
    int owner[1 + 2 * MAX_CONNS];
    while (!g_stop) {
        int64_t now = now_us();
        int64_t wake = now + 100000; /* at least ten times a second: signals, stats */
        int n = 0;
        pf[n].fd = lfd;
        pf[n].events = POLLIN;
        owner[n++] = -1;
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *c = conns[i];
            if (!c)
                continue;
            if (c->stalled) {
                if (c->stall_until < wake)
                    wake = c->stall_until;
                continue;
            }
            for (int k = 0; k < 2; k++) {
                short ev = 0;
                if (!c->d[k].eof_in && c->d[k].queued < QUEUE_MAX)
                    ev |= POLLIN;
                const dir *o = &c->d[1 - k]; /* what goes out through fd[k] */
                if (o->head) {
                    int64_t t = o->head->due_us;
                    if (C.rate && o->next_send_us > t)
                        t = o->next_send_us;
                    if (t <= now)
                        ev |= POLLOUT;
                    else if (t < wake)
                        wake = t;
                }
                pf[n].fd = ev ? c->fd[k] : -1; /* a closed side would report POLLHUP forever */
                pf[n].events = ev;
                owner[n++] = i * 2 + k;
            }
        }
        int64_t wait_ms = (wake - now + 999) / 1000;
        if (wait_ms < 0)
            wait_ms = 0;
        int pr = poll(pf, (nfds_t)n, (int)wait_ms);
        if (pr < 0 && errno != EINTR)
            break;
        now = now_us();
        for (int j = 0; pr > 0 && j < n; j++) {
            if (!pf[j].revents)
                continue;
            if (owner[j] < 0) {
                accept_one(lfd);
                continue;
            }
            int i = owner[j] / 2, k = owner[j] % 2;
            conn *c = conns[i];
            if (!c || c->stalled)
                continue;
            if ((pf[j].revents & (POLLIN | POLLHUP | POLLERR)) && !c->d[k].eof_in &&
                !pump_in(c, k, now))
                conn_free(i, true);
        }
        /* Pass on whatever is due, end stalls, and close finished connections. */
        for (int i = 0; i < MAX_CONNS; i++) {
            conn *c = conns[i];
            if (!c)
                continue;
            if (c->stalled) {
                if (now >= c->stall_until)
                    conn_free(i, true);
                continue;
            }
            bool cut = false, ok = true;
            for (int k = 0; k < 2 && ok; k++)
                ok = pump_out(c, k, now, &cut);
            if (!ok) {
                conn_free(i, true);
                continue;
            }
            if (c->d[0].shut_out && c->d[1].shut_out)
                conn_free(i, false);
        }
        if (g_dump || (dirty && now - last_dump_us > 1000000)) {
            g_dump = 0;
            write_stats();
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        conn_free(i, true);
    close(lfd);
    write_stats();
    return 0;
}
