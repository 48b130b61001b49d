/*
 * main.c — `pendata-server`, the central server's program: operator subcommands around the
 * server library (server/pd_server.h) and `serve`, the HTTP service.
 *
 *   pendata-server [--db URL] [--data DIR] [--json] COMMAND [ARGS]
 *     init                         create the database, the keys (0600) and the data directory
 *     user add --id ID --role R --name NAME [--area CODES] [--supervisor ID]
 *     user passwd --id ID [--password-file FILE]   the korcam's web password (stdin if no file)
 *     enroll-code --user ID [--ttl-hours H]   a one-time code + the server fingerprint
 *     revoke --device ID
 *     load-prelist --area CODE [--seed N] [--households N] | --file PKG [--issuer-key HEX]
 *     serve [--listen HOST:PORT] [--threads N] [--access-log FILE|-]
 *     status
 *
 * The database URL is --db, else $PENDATA_SERVER_DB, else sqlite:pendata-server.db. The data
 * directory (uploads, blobs, packages, and for a postgres:// database the key file server.key) is
 * --data, else $PENDATA_SERVER_DATA, else PATH.d beside a sqlite:PATH database (its keys are
 * PATH.key); a postgres:// database needs one, shared by every instance serving it. Data on
 * stdout, messages on stderr; exit 0 ok, 1 failure, 2 usage. `serve` prints the port it listens
 * on as the first line of stdout (so a test can start it on port 0 and read the port), logs one
 * line per request to --access-log, and stops gracefully on SIGTERM or SIGINT.
 */
#include "pd_server.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EX_OK = 0, EX_FAIL = 1, EX_USAGE = 2 };

typedef struct opts {
    const char *db;
    const char *data;
    bool json;
} opts;

static int fail(const char *what, const char *msg)
{
    fprintf(stderr, "pendata-server: %s: %s\n", what, msg);
    return EX_FAIL;
}

static int usage(const char *text)
{
    fprintf(stderr, "usage: pendata-server %s\n", text);
    return EX_USAGE;
}

static bool wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    return false;
}

/* Find "--name VALUE" in argv[1..]; NULL if absent. *bad is set if the flag has no value. */
static const char *opt(int argc, char **argv, const char *name, bool *bad)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], name)) {
            if (i + 1 >= argc) {
                *bad = true;
                return NULL;
            }
            return argv[i + 1];
        }
    }
    return NULL;
}

/* Every argument must be a known "--flag value" pair (or a known switch). */
static bool only(int argc, char **argv, int first, const char *const *flags)
{
    /* Arguments come in pairs: a known flag, then its value. */
    for (int i = first; i < argc; i += 2) {
        bool ok = false;
        for (const char *const *f = flags; *f; f++)
            if (!strcmp(argv[i], *f)) {
                ok = true;
                break;
            }
        if (!ok) {
            fprintf(stderr, "pendata-server: unknown argument '%s'\n", argv[i]);
            return false;
        }
    }
    return true;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19)
        return false;
    errno = 0;
    *out = strtoull(s, NULL, 10);
    return errno == 0;
}

static pd_server *open_server(const opts *o)
{
    pd_server *srv = NULL;
    pd_error err = {0};
    if (pd_server_open(&srv, o->db, o->data, &err) != PD_OK) {
        fail("cannot open the server", err.msg);
        return NULL;
    }
    return srv;
}

/* The database URL to show: a URL's user information and query (where a password may sit) are
 * left out, and so is anything a JSON string would need escaped. */
static void shown_db(const char *url, char *out, size_t cap)
{
    const char *scheme_end = strstr(url, "://");
    size_t n = 0;
    for (const char *p = url; *p && n + 1 < cap; p++) {
        if (scheme_end && p == scheme_end + 3) {
            const char *at = strchr(p, '@'), *slash = strchr(p, '/');
            if (at && (!slash || at < slash))
                p = at + 1;
            if (!*p)
                break;
        }
        if (scheme_end && p > scheme_end && *p == '?')
            break;
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
            continue;
        out[n++] = *p;
    }
    out[n] = '\0';
}

/* ---- commands -------------------------------------------------------------------------------- */


static int cmd_init(opts *o, int argc, char **argv)
{
    static const char *const flags[] = {"--db", "--data", NULL};
    bool bad = false;
    const char *db = opt(argc, argv, "--db", &bad);
    const char *data = opt(argc, argv, "--data", &bad);
    if (bad || !only(argc, argv, 1, flags) || wants_help(argc, argv))
        return usage("init [--db sqlite:PATH | --db postgres://… --data DIR] [--data DIR]");
    if (db)
        o->db = db;
    if (data)
        o->data = data;
    pd_error err = {0};
    if (pd_server_create(o->db, o->data, &err) != PD_OK)
        return fail("init", err.msg);
    pd_server *srv = open_server(o);
    if (!srv)
        return EX_FAIL;
    char fp[PD_SERVER_FINGERPRINT_LEN + 1], shown[512];
    pd_server_fingerprint(srv, fp);
    shown_db(o->db, shown, sizeof shown);
    if (o->json)
        printf("{\"db\":\"%s\",\"fingerprint\":\"%s\"}\n", shown, fp);
    else
        printf("created %s\nserver key fingerprint: %s\n", shown, fp);
    pd_server_close(srv);
    return EX_OK;
}

int cmd_user_passwd(const char *db, const char *data, int argc, char **argv); /* cmd_passwd.c */

static int cmd_user(opts *o, int argc, char **argv)
{
    const char *text = "user add --id ID --role enumerator|supervisor|korcam|admin --name NAME "
                       "[--area CODES] [--supervisor ID] | user passwd --id ID "
                       "[--password-file FILE]";
    if (argc >= 2 && !strcmp(argv[1], "passwd"))
        return cmd_user_passwd(o->db, o->data, argc - 1, argv + 1);
    if (argc < 2 || strcmp(argv[1], "add") != 0 || wants_help(argc, argv))
        return usage(text);
    static const char *const flags[] = {"--id", "--role", "--name", "--area", "--supervisor", NULL};
    bool bad = false;
    pd_server_user u = {.id = opt(argc - 1, argv + 1, "--id", &bad),
                        .role = opt(argc - 1, argv + 1, "--role", &bad),
                        .name = opt(argc - 1, argv + 1, "--name", &bad),
                        .area = opt(argc - 1, argv + 1, "--area", &bad),
                        .supervisor_id = opt(argc - 1, argv + 1, "--supervisor", &bad)};
    if (bad || !only(argc, argv, 2, flags) || !u.id || !u.role || !u.name)
        return usage(text);
    pd_server *srv = open_server(o);
    if (!srv)
        return EX_FAIL;
    int rc = pd_server_user_add(srv, &u);
    if (rc != PD_OK)
        rc = fail("user add", pd_server_errmsg(srv));
    else if (o->json)
        printf("{\"id\":\"%s\",\"role\":\"%s\"}\n", u.id, u.role);
    else
        printf("added %s %s\n", u.role, u.id);
    pd_server_close(srv);
    return rc == PD_OK ? EX_OK : EX_FAIL;
}

static int cmd_enroll_code(opts *o, int argc, char **argv)
{
    const char *text = "enroll-code --user ID [--ttl-hours H]";
    static const char *const flags[] = {"--user", "--ttl-hours", NULL};
    bool bad = false;
    const char *user = opt(argc, argv, "--user", &bad);
    const char *ttl_s = opt(argc, argv, "--ttl-hours", &bad);
    uint64_t ttl_h = 0;
    if (bad || wants_help(argc, argv) || !only(argc, argv, 1, flags) || !user ||
        (ttl_s && (!parse_u64(ttl_s, &ttl_h) || ttl_h == 0 || ttl_h > 24 * 365)))
        return usage(text);
    pd_server *srv = open_server(o);
    if (!srv)
        return EX_FAIL;
    char code[PD_ENROLL_CODE_LEN + 1], fp[PD_SERVER_FINGERPRINT_LEN + 1];
    int rc = pd_server_enroll_code(srv, user, (int64_t)ttl_h * 3600 * 1000, code);
    pd_server_fingerprint(srv, fp);
    if (rc != PD_OK)
        rc = fail("enroll-code", pd_server_errmsg(srv));
    else if (o->json)
        printf("{\"user\":\"%s\",\"code\":\"%s\",\"fingerprint\":\"%s\"}\n", user, code, fp);
    else
        printf("code: %s\nserver fingerprint: %s\n", code, fp);
    sodium_memzero(code, sizeof code);
    pd_server_close(srv);
    return rc == PD_OK ? EX_OK : EX_FAIL;
}

static int cmd_revoke(opts *o, int argc, char **argv)
{
    static const char *const flags[] = {"--device", NULL};
    bool bad = false;
    const char *dev = opt(argc, argv, "--device", &bad);
    if (bad || wants_help(argc, argv) || !only(argc, argv, 1, flags) || !dev)
        return usage("revoke --device ID");
    pd_server *srv = open_server(o);
    if (!srv)
        return EX_FAIL;
    int rc = pd_server_revoke(srv, dev);
    if (rc != PD_OK)
        rc = fail("revoke", pd_server_errmsg(srv));
    else if (!o->json)
        printf("revoked device %s\n", dev);
    else
        printf("{\"revoked\":\"%s\"}\n", dev);
    pd_server_close(srv);
    return rc == PD_OK ? EX_OK : EX_FAIL;
}

static int cmd_load(opts *o, int argc, char **argv)
{
    const char *text = "load-prelist --area CODE [--seed N] [--households N] | --file PKG "
                       "[--issuer-key HEX]";
    static const char *const flags[] = {"--area", "--seed",       "--households",
                                        "--file", "--issuer-key", NULL};
    bool bad = false;
    const char *area = opt(argc, argv, "--area", &bad);
    const char *seed_s = opt(argc, argv, "--seed", &bad);
    const char *hh_s = opt(argc, argv, "--households", &bad);
    const char *file = opt(argc, argv, "--file", &bad);
    const char *key_s = opt(argc, argv, "--issuer-key", &bad);
    uint64_t seed = 1, hh = 0;
    uint8_t key[PD_PUBKEY_BYTES];
    if (bad || wants_help(argc, argv) || !only(argc, argv, 1, flags) || (!area == !file) ||
        (seed_s && !parse_u64(seed_s, &seed)) ||
        (hh_s && (!parse_u64(hh_s, &hh) || hh > UINT32_MAX)) ||
        (key_s && (!file || strlen(key_s) != 64 ||
                   sodium_hex2bin(key, sizeof key, key_s, 64, NULL, NULL, NULL) != 0)))
        return usage(text);
    pd_server *srv = open_server(o);
    if (!srv)
        return EX_FAIL;
    pd_server_load_stats st;
    int rc = area ? pd_server_load_generated(srv, area, seed, (uint32_t)hh, &st)
                  : pd_server_load_file(srv, file, key_s ? key : NULL, &st);
    if (rc != PD_OK)
        rc = fail("load-prelist", pd_server_errmsg(srv));
    else if (o->json)
        printf("{\"shapes\":%" PRIu32 ",\"households\":%" PRIu32 ",\"members\":%" PRIu32
               ",\"skipped\":%" PRIu32 "}\n",
               st.shapes, st.households, st.members, st.skipped);
    else
        printf("loaded %" PRIu32 " households, %" PRIu32 " members, %" PRIu32
               " area shapes (%" PRIu32 " already present)\n",
               st.households, st.members, st.shapes, st.skipped);
    pd_server_close(srv);
    return rc == PD_OK ? EX_OK : EX_FAIL;
}

static int cmd_status(opts *o, int argc, char **argv)
{
    if (argc > 1 || wants_help(argc, argv))
        return usage("status");
    pd_server *srv = open_server(o);
    if (!srv)
        return EX_FAIL;
    pd_server_status s;
    char fp[PD_SERVER_FINGERPRINT_LEN + 1];
    pd_server_fingerprint(srv, fp);
    int rc = pd_server_get_status(srv, &s);
    if (rc != PD_OK) {
        rc = fail("status", pd_server_errmsg(srv));
    } else if (o->json) {
        printf("{\"fingerprint\":\"%s\",\"users\":%" PRId64 ",\"devices\":%" PRId64
               ",\"devices_revoked\":%" PRId64 ",\"households\":%" PRId64 ",\"members\":%" PRId64
               ",\"visits\":%" PRId64 ",\"photos\":%" PRId64 ",\"batches\":%" PRId64
               ",\"batches_held\":%" PRId64 ",\"forks\":%" PRId64 ",\"conflicts_open\":%" PRId64
               ",\"uploads_open\":%" PRId64 ",\"revision\":%" PRId64 "}\n",
               fp, s.users, s.devices, s.devices_revoked, s.households, s.members, s.visits,
               s.photos, s.batches, s.batches_held, s.forks, s.conflicts_open, s.uploads_open,
               s.revision);
    } else {
        printf(
            "fingerprint     %s\nusers           %" PRId64 "\ndevices         %" PRId64 " (%" PRId64
            " revoked)\nhouseholds      %" PRId64 "\nmembers         %" PRId64
            "\nvisits          %" PRId64 "\nphotos          %" PRId64 "\nbatches         %" PRId64
            " (+%" PRId64 " held, %" PRId64 " forks)\nconflicts open  %" PRId64
            "\nuploads open    %" PRId64 "\nrevision        %" PRId64 "\n",
            fp, s.users, s.devices, s.devices_revoked, s.households, s.members, s.visits, s.photos,
            s.batches, s.batches_held, s.forks, s.conflicts_open, s.uploads_open, s.revision);
    }
    pd_server_close(srv);
    return rc == PD_OK ? EX_OK : EX_FAIL;
}

static int cmd_serve(opts *o, int argc, char **argv)
{
    const char *text = "serve [--listen HOST:PORT] [--threads N] [--access-log FILE|-]";
    static const char *const flags[] = {"--listen", "--threads", "--access-log", NULL};
    bool bad = false;
    const char *listen = opt(argc, argv, "--listen", &bad);
    const char *threads_s = opt(argc, argv, "--threads", &bad);
    const char *log_s = opt(argc, argv, "--access-log", &bad);
    uint64_t threads = 0;
    if (bad || wants_help(argc, argv) || !only(argc, argv, 1, flags) ||
        (threads_s && (!parse_u64(threads_s, &threads) || threads == 0 || threads > 256)))
        return usage(text);
    FILE *log = NULL;
    if (log_s) {
        log = !strcmp(log_s, "-") ? stderr : fopen(log_s, "a");
        if (!log)
            return fail(log_s, strerror(errno));
    }
    /* Block the stop signals before any thread starts, so they all inherit the mask and the
     * signal is taken here, by sigwait. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = EX_FAIL;
    pd_server *srv = open_server(o);
    if (!srv)
        goto out;
    pd_server_config cfg = {.listen = listen ? listen : "127.0.0.1:8080",
                            .threads = (unsigned)threads,
                            .access_log = log};
    if (pd_server_start(srv, &cfg) != PD_OK) {
        fail("serve", pd_server_errmsg(srv));
        goto out;
    }
    printf("%u\n", (unsigned)pd_server_port(srv));
    fflush(stdout);
    char fp[PD_SERVER_FINGERPRINT_LEN + 1];
    pd_server_fingerprint(srv, fp);
    fprintf(stderr, "pendata-server: listening on port %u (fingerprint %s)\n",
            (unsigned)pd_server_port(srv), fp);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "pendata-server: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    pd_server_stop(srv);
    rc = EX_OK;
out:
    pd_server_close(srv);
    if (log && log != stderr)
        fclose(log);
    return rc;
}

/* ---- main -------------------------------------------------------------------------------------
 */

typedef struct command {
    const char *name;
    const char *summary;
    int (*run)(opts *o, int argc, char **argv);
} command;

static const command commands[] = {
    {"init", "create the database and the server's keys", cmd_init},
    {"user", "user add | passwd: add a user; set a korcam's web password", cmd_user},
    {"enroll-code", "issue a one-time enrolment code for a user", cmd_enroll_code},
    {"revoke", "revoke a device", cmd_revoke},
    {"load-prelist", "load a generated or packaged prelist", cmd_load},
    {"serve", "run the HTTP service", cmd_serve},
    {"status", "counts and the server fingerprint", cmd_status},
};

static void help(FILE *f)
{
    fprintf(f,
            "pendata-server %s — the central server of pendata\n\n"
            "usage: pendata-server [--db URL] [--data DIR] [--json] COMMAND [ARGS]\n\n"
            "  --db URL     sqlite:PATH or postgres://… (default $PENDATA_SERVER_DB,\n"
            "               sqlite:pendata-server.db)\n"
            "  --data DIR   uploads, photos, packages; for postgres:// also the key file\n"
            "               (default $PENDATA_SERVER_DATA, or PATH.d for sqlite:PATH)\n"
            "  --json       machine-readable output\n\ncommands:\n",
            PD_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'pendata-server COMMAND --help' tells more.\n");
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "pendata-server: libsodium failed to initialise\n");
        return EX_FAIL;
    }
    opts o = {.db = getenv("PENDATA_SERVER_DB")};
    if (!o.db || !*o.db)
        o.db = "sqlite:pendata-server.db";
    o.data = getenv("PENDATA_SERVER_DATA");
    if (o.data && !*o.data)
        o.data = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--db") && i + 1 < argc) {
            o.db = argv[++i];
        } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
            o.data = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            o.json = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return EX_OK;
        } else if (!strcmp(argv[i], "--version")) {
            printf("pendata-server %s\n", PD_VERSION_STRING);
            return EX_OK;
        } else {
            fprintf(stderr, "pendata-server: unknown option %s\n", argv[i]);
            help(stderr);
            return EX_USAGE;
        }
    }
    if (i >= argc) {
        help(stderr);
        return EX_USAGE;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (!strcmp(argv[i], commands[k].name))
            return commands[k].run(&o, argc - i, argv + i);
    fprintf(stderr, "pendata-server: unknown command '%s'\n", argv[i]);
    help(stderr);
    return EX_USAGE;
}
