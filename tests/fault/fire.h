/*
 * fire.h — what the fire tests (tests/test_fire_*.c: crash points, cut networks, hostile input)
 * share: a replayable random source, knobs from the environment, child processes killed at a
 * random moment, the fault proxy (tests/fault/faultproxy.c) as a child, PRAGMA integrity_check,
 * a content hash of every table of a database (to prove that refused input stored nothing), and
 * the final account of a device against the server (fire_account: every batch and op once, the
 * same records on both sides). Header-only (static functions), like the other test headers: each
 * test is its own program.
 *
 * The server's side on either backend (the device's is always its encrypted SQLite store):
 * fire_server_db gives the server's SQLite file, or on PostgreSQL (PD_TEST_DB_URL, test_db.h) a
 * copy of its database in memory, so every check reads the same facts with the same SQL;
 * fire_server_integrity is integrity_check on SQLite, amcheck and the record keys on PostgreSQL.
 *
 * Knobs: PD_FIRE_SEED replays a run (the seed is printed); PD_SANITIZED=1 (set by scripts/test.sh
 * for the ASan build) scales the counts down; each test documents its own PD_FIRE_* counts.
 */
#ifndef PD_FIRE_H
#define PD_FIRE_H

#include "pd_sync.h"
#include "store_internal.h"
#include "test_db.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FIRE_UNUSED __attribute__((unused))

/* REQUIRE for a void function: count a failure and leave it. */
#define FIRE_REQUIRE(cond)                                                                         \
    do {                                                                                           \
        pd_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);             \
            pd_test_failures++;                                                                    \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- randomness and knobs ------------------------------------------------------------------ */

static uint64_t fire_rng_state;

static FIRE_UNUSED uint64_t fire_rand(void)
{
    uint64_t z = (fire_rng_state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (0 when n is 0). */
static FIRE_UNUSED uint64_t fire_below(uint64_t n)
{
    return n ? fire_rand() % n : 0;
}

static FIRE_UNUSED double fire_unit(void)
{
    return (double)(fire_rand() >> 11) / 9007199254740992.0;
}

/* Seed from PD_FIRE_SEED or the clock; printed so a failure can be replayed. */
static FIRE_UNUSED uint64_t fire_seed_init(const char *test)
{
    const char *s = getenv("PD_FIRE_SEED");
    uint64_t seed = s && *s ? strtoull(s, NULL, 10) : (uint64_t)time(NULL) ^ (uint64_t)getpid();
    fire_rng_state = seed;
    fprintf(stderr, "%s: seed %llu (PD_FIRE_SEED=%llu replays it)\n", test,
            (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

static FIRE_UNUSED long fire_env_long(const char *name, long def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    return *end ? def : n;
}

static FIRE_UNUSED bool fire_sanitized(void)
{
    const char *v = getenv("PD_SANITIZED");
    return v && *v && strcmp(v, "0") != 0;
}

static FIRE_UNUSED const char *fire_build(void)
{
    const char *b = getenv("PD_BUILD");
    return b && *b ? b : ".";
}

static FIRE_UNUSED int64_t fire_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static FIRE_UNUSED void fire_sleep_us(int64_t us)
{
    if (us <= 0)
        return;
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- child processes --------------------------------------------------------------------------
 */

/* Start argv[0] with stdout and stderr appended to out (NULL: /dev/null). */
static FIRE_UNUSED pid_t fire_spawn(char *const argv[], const char *out)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(out ? out : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    execv(argv[0], argv);
    _exit(127);
}

typedef struct fire_run {
    bool killed; /* our SIGKILL ended it */
    bool exited; /* it ended by itself */
    int code;    /* its exit code when exited */
    int64_t elapsed_us;
} fire_run;

/* Run argv; if kill_after_us >= 0, SIGKILL it that long after the start unless it finished
 * first. */
static FIRE_UNUSED void fire_run_kill(char *const argv[], const char *out, int64_t kill_after_us,
                                      fire_run *res)
{
    memset(res, 0, sizeof *res);
    int64_t t0 = fire_now_us();
    pid_t pid = fire_spawn(argv, out);
    int status = 0;
    if (pid < 0) {
        res->exited = true;
        res->code = 127;
        return;
    }
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        int64_t el = fire_now_us() - t0;
        if (kill_after_us >= 0 && el >= kill_after_us) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        int64_t step = 200;
        if (kill_after_us >= 0 && kill_after_us - el < step)
            step = kill_after_us - el;
        fire_sleep_us(step > 0 ? step : 1);
    }
    res->elapsed_us = fire_now_us() - t0;
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        res->killed = true;
    else if (WIFEXITED(status)) {
        res->exited = true;
        res->code = WEXITSTATUS(status);
    } else {
        res->exited = true;
        res->code = 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
}

/* Print the tail of a child's output file (for a failure). */
static FIRE_UNUSED void fire_print_tail(const char *path, size_t max)
{
    size_t n = 0;
    uint8_t *text = pd_test_read_file(path, &n);
    if (!text)
        return;
    size_t from = n > max ? n - max : 0;
    fprintf(stderr, "---- %s (last %zu bytes)\n%.*s\n----\n", path, n - from, (int)(n - from),
            (const char *)text + from);
    free(text);
}

/* ---- databases ------------------------------------------------------------------------------ */

/* PRAGMA integrity_check == "ok"; the first complaint goes to msg. */
static FIRE_UNUSED bool fire_integrity(sqlite3 *db, char *msg, size_t cap)
{
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (msg && cap)
        msg[0] = '\0';
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        ok = r && !strcmp(r, "ok");
        if (msg && cap)
            snprintf(msg, cap, "%s", r ? r : "(null)");
    } else if (msg && cap) {
        snprintf(msg, cap, "%s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return ok;
}

/* One integer from a query with up to one text parameter; -1 on failure. */
static FIRE_UNUSED long long fire_int(sqlite3 *db, const char *sql, const char *param)
{
    sqlite3_stmt *st = NULL;
    long long n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (param)
            sqlite3_bind_text(st, 1, param, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return n;
}

static FIRE_UNUSED bool fire_skip(const char *name, const char *const *skip)
{
    for (const char *const *s = skip; s && *s; s++)
        if (!strcmp(*s, name))
            return true;
    return false;
}

/* BLAKE2b-256 over every row of every table (by name; rows in the order of all their columns),
 * except the tables named in skip (NULL-terminated, may be NULL). Two databases, or one before
 * and after, hash equal exactly when their stored content is equal. Returns 0 or -1. */
static FIRE_UNUSED int fire_db_hash(sqlite3 *db, const char *const *skip, uint8_t out[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    sqlite3_stmt *tables = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT "
                                "LIKE 'sqlite_%' ORDER BY name",
                                -1, &tables, NULL);
    if (rc != SQLITE_OK)
        return -1;
    int result = 0;
    while (sqlite3_step(tables) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(tables, 0);
        if (!name || fire_skip(name, skip))
            continue;
        crypto_generichash_update(&h, (const uint8_t *)name, strlen(name) + 1);
        /* ORDER BY every column: the table names come from the schema, not from input */
        char sql[512];
        snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", name);
        sqlite3_stmt *probe = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &probe, NULL) != SQLITE_OK) {
            result = -1;
            break;
        }
        int ncol = sqlite3_column_count(probe);
        sqlite3_finalize(probe);
        size_t off = (size_t)snprintf(sql, sizeof sql, "SELECT * FROM \"%s\" ORDER BY ", name);
        for (int i = 1; i <= ncol && off < sizeof sql - 8; i++)
            off += (size_t)snprintf(sql + off, sizeof sql - off, "%s%d", i > 1 ? "," : "", i);
        sqlite3_stmt *rows = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &rows, NULL) != SQLITE_OK) {
            result = -1;
            break;
        }
        while (sqlite3_step(rows) == SQLITE_ROW) {
            for (int i = 0; i < ncol; i++) {
                uint8_t type = (uint8_t)sqlite3_column_type(rows, i);
                crypto_generichash_update(&h, &type, 1);
                const void *p = type == SQLITE_BLOB ? sqlite3_column_blob(rows, i)
                                                    : (const void *)sqlite3_column_text(rows, i);
                int n = sqlite3_column_bytes(rows, i);
                uint32_t len = (uint32_t)n;
                crypto_generichash_update(&h, (const uint8_t *)&len, sizeof len);
                if (p && n > 0)
                    crypto_generichash_update(&h, p, (size_t)n);
            }
        }
        sqlite3_finalize(rows);
    }
    sqlite3_finalize(tables);
    crypto_generichash_final(&h, out, 32);
    return result;
}

/* Open a server's SQLite database file directly (read-write: a WAL left by a killed server is
 * recovered on open, as the server itself would). */
static FIRE_UNUSED sqlite3 *fire_open_db(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "open %s: %s\n", path, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* ---- the server's database, on either backend --------------------------------------------- */

#ifdef PD_HAVE_PQ
static FIRE_UNUSED int fire_hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Bind PostgreSQL's text form of (row, col) of r as parameter i of st, in the type SQLite gives
 * the same value: integers and booleans INTEGER, double precision REAL, bytea BLOB, the rest
 * (text, jsonb) TEXT. 0, or -1 for a type the fire tests do not expect. */
static FIRE_UNUSED int fire_bind_pg(sqlite3_stmt *st, int i, const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return sqlite3_bind_null(st, i) == SQLITE_OK ? 0 : -1;
    const char *v = PQgetvalue(r, row, col);
    int n = PQgetlength(r, row, col);
    switch (PQftype(r, col)) {
    case 16: /* boolean */
        return sqlite3_bind_int64(st, i, v[0] == 't') == SQLITE_OK ? 0 : -1;
    case 20: /* bigint */
    case 21: /* smallint */
    case 23: /* integer */
        return sqlite3_bind_int64(st, i, strtoll(v, NULL, 10)) == SQLITE_OK ? 0 : -1;
    case 700: /* real */
    case 701: /* double precision: printed shortest-exact (extra_float_digits 1) */
        return sqlite3_bind_double(st, i, strtod(v, NULL)) == SQLITE_OK ? 0 : -1;
    case 17: { /* bytea, hex form "\x…" */
        if (n < 2 || v[0] != '\\' || v[1] != 'x' || n % 2)
            return -1;
        size_t len = (size_t)(n - 2) / 2;
        uint8_t *b = malloc(len ? len : 1);
        if (!b)
            return -1;
        for (size_t k = 0; k < len; k++) {
            int hi = fire_hex_digit(v[2 + 2 * k]), lo = fire_hex_digit(v[3 + 2 * k]);
            if (hi < 0 || lo < 0) {
                free(b);
                return -1;
            }
            b[k] = (uint8_t)(hi << 4 | lo);
        }
        return sqlite3_bind_blob(st, i, b, (int)len, free) == SQLITE_OK ? 0 : -1;
    }
    case 25:   /* text */
    case 1043: /* varchar */
    case 3802: /* jsonb */
        return sqlite3_bind_text(st, i, v, n, SQLITE_TRANSIENT) == SQLITE_OK ? 0 : -1;
    default:
        fprintf(stderr, "fire: column %s has a PostgreSQL type (oid %u) the copy does not map\n",
                PQfname(r, col), (unsigned)PQftype(r, col));
        return -1;
    }
}

/* SQLite's declared type for a PostgreSQL column type (as fire_bind_pg stores it). */
static FIRE_UNUSED const char *fire_pg_decl(Oid type)
{
    switch (type) {
    case 16:
    case 20:
    case 21:
    case 23:
        return "INTEGER";
    case 700:
    case 701:
        return "REAL";
    case 17:
        return "BLOB";
    default:
        return "TEXT";
    }
}

/* Copy table name of c (inside the caller's transaction) into db. 0 or -1. */
static FIRE_UNUSED int fire_pg_copy_table(PGconn *c, sqlite3 *db, const char *name)
{
    /* the table names come from the catalogue, not from input */
    char sql[4096];
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", name);
    PGresult *r = PQexec(c, sql);
    int result = -1;
    sqlite3_stmt *ins = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        fprintf(stderr, "fire: %s: %s", sql, PQerrorMessage(c));
        goto out;
    }
    int ncol = PQnfields(r);
    size_t off = (size_t)snprintf(sql, sizeof sql, "CREATE TABLE \"%s\" (", name);
    for (int i = 0; i < ncol && off < sizeof sql; i++)
        off += (size_t)snprintf(sql + off, sizeof sql - off, "%s\"%s\" %s", i ? ", " : "",
                                PQfname(r, i), fire_pg_decl(PQftype(r, i)));
    if (off + 2 >= sizeof sql)
        goto out;
    snprintf(sql + off, sizeof sql - off, ")");
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    off = (size_t)snprintf(sql, sizeof sql, "INSERT INTO \"%s\" VALUES (", name);
    for (int i = 0; i < ncol && off < sizeof sql; i++)
        off += (size_t)snprintf(sql + off, sizeof sql - off, "%s?", i ? ", " : "");
    if (off + 2 >= sizeof sql)
        goto out;
    snprintf(sql + off, sizeof sql - off, ")");
    if (sqlite3_prepare_v2(db, sql, -1, &ins, NULL) != SQLITE_OK)
        goto out;
    for (int row = 0; row < PQntuples(r); row++) {
        for (int i = 0; i < ncol; i++)
            if (fire_bind_pg(ins, i + 1, r, row, i) != 0)
                goto out;
        if (sqlite3_step(ins) != SQLITE_DONE)
            goto out;
        sqlite3_reset(ins);
    }
    result = 0;
out:
    if (result != 0)
        fprintf(stderr, "fire: cannot copy table %s: %s\n", name, sqlite3_errmsg(db));
    sqlite3_finalize(ins);
    PQclear(r);
    return result;
}

/* Every table of the PostgreSQL database at url (a partitioned table as one, with the rows of
 * all its partitions), copied into a new SQLite database in memory under the same table and
 * column names, in one REPEATABLE READ transaction (one moment's state). The checks then read the
 * same facts with the same SQL on either backend, and fire_db_hash hashes the copy. NULL on
 * failure (message on stderr). */
static FIRE_UNUSED sqlite3 *fire_pg_snapshot(const char *url)
{
    char plain[4608];
    td_libpq_url(plain, sizeof plain, url);
    PGconn *c = td_connect(plain);
    if (!c)
        return NULL;
    sqlite3 *db = NULL;
    PGresult *tables = NULL;
    bool ok = false;
    if (sqlite3_open_v2(":memory:", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK)
        goto out;
    PQclear(PQexec(c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"));
    tables = PQexec(c, "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
                       "c.relnamespace WHERE n.nspname = current_schema() AND c.relkind IN "
                       "('r', 'p') AND NOT c.relispartition ORDER BY 1");
    if (PQresultStatus(tables) != PGRES_TUPLES_OK) {
        fprintf(stderr, "fire: the list of tables: %s", PQerrorMessage(c));
        goto out;
    }
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    for (int i = 0; i < PQntuples(tables); i++)
        if (fire_pg_copy_table(c, db, PQgetvalue(tables, i, 0)) != 0)
            goto out;
    ok = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
out:
    PQclear(tables);
    PQclear(PQexec(c, "ROLLBACK"));
    PQfinish(c);
    if (!ok) {
        sqlite3_close(db);
        db = NULL;
    }
    return db;
}

/* amcheck on every table (verify_heapam) and every B-tree index (bt_index_check, every heap tuple
 * in its indexes) of the PostgreSQL database at url, plus what the partitioned record tables
 * owe their global id index (record_key): one key for each household, member and visit, in the
 * same province, and no key without its record. "ok" in msg, or the first complaint. */
static FIRE_UNUSED bool fire_pg_integrity(const char *url, char *msg, size_t cap)
{
    static const char *const checks[][2] = {
        /* the lists first (MATERIALIZED): amcheck only on this database's own relations */
        {"amcheck: a corrupt heap page or tuple",
         "WITH t AS MATERIALIZED (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = "
         "c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r') SELECT count(*) "
         "FROM t, LATERAL verify_heapam(t.oid)"},
        {"amcheck: a B-tree index does not match its table",
         "WITH i AS MATERIALIZED (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = "
         "c.relnamespace JOIN pg_am a ON a.oid = c.relam WHERE n.nspname = current_schema() AND "
         "c.relkind = 'i' AND a.amname = 'btree') SELECT count(*) FROM i WHERE "
         "bt_index_check(i.oid, true)::text IS NULL"},
        {"record_key: a record without its key, or in another province",
         "SELECT (SELECT count(*) FROM household r WHERE NOT EXISTS (SELECT 1 FROM record_key k "
         "WHERE k.entity = 0 AND k.id = r.id AND k.prov = r.prov)) + (SELECT count(*) FROM member "
         "r WHERE NOT EXISTS (SELECT 1 FROM record_key k WHERE k.entity = 1 AND k.id = r.id AND "
         "k.prov = r.prov)) + (SELECT count(*) FROM visit r WHERE NOT EXISTS (SELECT 1 FROM "
         "record_key k WHERE k.entity = 2 AND k.id = r.id AND k.prov = r.prov))"},
        {"record_key: a key without its record",
         "SELECT count(*) FROM record_key k WHERE k.entity < 3 AND NOT EXISTS (SELECT 1 FROM "
         "household r WHERE k.entity = 0 AND r.id = k.id AND r.prov = k.prov UNION ALL SELECT 1 "
         "FROM member r WHERE k.entity = 1 AND r.id = k.id AND r.prov = k.prov UNION ALL SELECT 1 "
         "FROM visit r WHERE k.entity = 2 AND r.id = k.id AND r.prov = k.prov)"},
    };
    if (msg && cap)
        snprintf(msg, cap, "ok");
    /* amcheck is a contrib extension of the PostgreSQL server (postgresql-contrib); the test
     * cluster's owner makes it in each fresh test database. Without it only the record keys are
     * checked (said once). */
    static bool told;
    size_t from = 0;
    if (!td_exec(url, "CREATE EXTENSION IF NOT EXISTS amcheck")) {
        if (!told)
            fprintf(stderr, "fire: no amcheck on this PostgreSQL: its pages are not checked\n");
        told = true;
        from = 2;
    }
    for (size_t i = from; i < sizeof checks / sizeof checks[0]; i++) {
        long long n = td_int(url, checks[i][1]);
        if (n != 0) {
            if (msg && cap)
                snprintf(msg, cap, "%s (%lld)", checks[i][0], n);
            return false;
        }
    }
    return true;
}
#endif

/* The server's database at url (a URL td_make gave) for the checks: its SQLite file, opened
 * read-write so that a WAL left by a killed server is recovered as the server would, or a copy of
 * the PostgreSQL database in memory (fire_pg_snapshot). NULL on failure (message on stderr). */
static FIRE_UNUSED sqlite3 *fire_server_db(const char *url)
{
    if (td_is_pg_url(url)) {
#ifdef PD_HAVE_PQ
        return fire_pg_snapshot(url);
#else
        fprintf(stderr, "fire: %s needs libpq\n", url);
        return NULL;
#endif
    }
    return fire_open_db(!strncmp(url, "sqlite:", 7) ? url + 7 : url);
}

/* td_text for polling the server's database at url: on PostgreSQL through one connection kept
 * open between calls (a new one per call costs more than the moments a poll looks for). */
static FIRE_UNUSED bool fire_server_text(const char *url, const char *sql, char *out, size_t cap)
{
#ifdef PD_HAVE_PQ
    if (td_is_pg_url(url)) {
        static PGconn *c;
        out[0] = '\0';
        if (c && PQstatus(c) != CONNECTION_OK) {
            PQfinish(c);
            c = NULL;
        }
        if (!c) {
            char plain[4608];
            td_libpq_url(plain, sizeof plain, url);
            if (!(c = td_connect(plain)))
                return false;
        }
        PGresult *r = PQexec(c, sql);
        bool ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0);
        if (ok)
            snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        return ok;
    }
#endif
    return td_text(url, sql, out, cap);
}

/* The integrity of the server's database at url: PRAGMA integrity_check on SQLite (db is what
 * fire_server_db gave), amcheck and the record keys on PostgreSQL (fire_pg_integrity). */
static FIRE_UNUSED bool fire_server_integrity(const char *url, sqlite3 *db, char *msg, size_t cap)
{
    if (td_is_pg_url(url)) {
#ifdef PD_HAVE_PQ
        return fire_pg_integrity(url, msg, cap);
#else
        return false;
#endif
    }
    return fire_integrity(db, msg, cap);
}

/* ---- the fault proxy ------------------------------------------------------------------------ */

typedef struct fire_proxy {
    pid_t pid;
    int port;
    char stats[4096];
} fire_proxy;

typedef struct fire_proxy_stats {
    long long connections, refused, cut, stalled, up, down;
} fire_proxy_stats;

/* Start pd-faultproxy with the extra arguments args (NULL-terminated, e.g. "--rate", "6250"),
 * its counters in stats_path. Returns 0 with p->port set. */
static FIRE_UNUSED int fire_proxy_start(fire_proxy *p, const char *stats_path,
                                        const char *const *args)
{
    memset(p, 0, sizeof *p);
    snprintf(p->stats, sizeof p->stats, "%s", stats_path);
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/tests/fault/pd-faultproxy", fire_build());
    const char *argv[40];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--stats";
    argv[n++] = p->stats;
    for (const char *const *a = args; a && *a && n < 38; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(bin, (char *const *)argv);
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
    p->pid = pid;
    p->port = atoi(line);
    if (p->port <= 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        p->pid = 0;
        return -1;
    }
    return 0;
}

/* Stop it (its counters are written on the way out). */
static FIRE_UNUSED void fire_proxy_stop(fire_proxy *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

static FIRE_UNUSED int fire_proxy_read(const char *path, fire_proxy_stats *st)
{
    memset(st, 0, sizeof *st);
    size_t n = 0;
    uint8_t *text = pd_test_read_file(path, &n);
    if (!text)
        return -1;
    cJSON *o = cJSON_ParseWithLength((const char *)text, n);
    free(text);
    if (!o)
        return -1;
    const struct {
        const char *k;
        long long *v;
    } f[] = {
        {"connections", &st->connections}, {"refused", &st->refused}, {"cut", &st->cut},
        {"stalled", &st->stalled},         {"bytes_up", &st->up},     {"bytes_down", &st->down}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, f[i].k);
        *f[i].v = cJSON_IsNumber(it) ? (long long)it->valuedouble : 0;
    }
    cJSON_Delete(o);
    return 0;
}

/* ---- the final account: device against server ------------------------------------------- */

/* Columns the device's and the server's household tables share. */
static FIRE_UNUSED int fire_common_columns(sqlite3 *a, sqlite3 *b, char cols[][32], int cap)
{
    int n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(a, "SELECT name FROM pragma_table_info('household') ORDER BY cid", -1,
                           &st, NULL) != SQLITE_OK)
        return 0;
    while (sqlite3_step(st) == SQLITE_ROW && n < cap) {
        const char *c = (const char *)sqlite3_column_text(st, 0);
        if (fire_int(b, "SELECT count(*) FROM pragma_table_info('household') WHERE name = ?1", c) ==
            1)
            snprintf(cols[n++], 32, "%s", c);
    }
    sqlite3_finalize(st);
    return n;
}

/* Every value of column c of household id, as text with its type, from db. */
static FIRE_UNUSED void fire_hh_value(sqlite3 *db, const char *c, const char *id, char *out,
                                      size_t cap)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT typeof(\"%s\") || ':' || quote(\"%s\") FROM household WHERE id = ?1", c, c);
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW)
            snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
}

/* The final account of one enumerator device against the server's database (both at rest),
 * after every batch drained:
 *   - the device's batches and the server's chain for this device are the same list (seq, hash),
 *     'applied' where the receipt says applied, 'voided' where it says voided, nothing more;
 *   - every op of an applied batch has exactly one audit row (apply, merge or conflict) with that
 *     batch hash and op seq on the server, and the batch has no other; a voided batch has none;
 *   - no op is left unsealed; the device's visits and photos are all on the server;
 *   - every household row is equal on both sides in every column both tables have.
 * Failures are counted with CHECK; a summary line goes to stderr. */
static FIRE_UNUSED void fire_account(pd_store *s, sqlite3 *sdb, const char *name)
{
    sqlite3 *db = pd_store_sqlite(s);
    const char *device_id = pd_store_device_id(s);
    /* the same chain on both sides */
    sqlite3_stmt *st = NULL;
    FIRE_REQUIRE(sqlite3_prepare_v2(db,
                                    "SELECT seq, hash, state, receipt FROM batch WHERE author_pk = "
                                    "(SELECT sign_pk FROM identity WHERE role = 'enumerator') "
                                    "ORDER BY seq",
                                    -1, &st, NULL) == SQLITE_OK);
    long long nbatches = 0, applied_ops = 0, checked_ops = 0, voided = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        nbatches++;
        int64_t seq = sqlite3_column_int64(st, 0);
        const uint8_t *hash = sqlite3_column_blob(st, 1);
        const char *state = (const char *)sqlite3_column_text(st, 2);
        const uint8_t *rc = sqlite3_column_blob(st, 3);
        CHECK(!strcmp(state, "acknowledged"));
        FIRE_REQUIRE(rc && sqlite3_column_bytes(st, 3) == PD_RECEIPT_BYTES_V1);
        bool is_void = rc[5] == 2;
        voided += is_void;
        CHECK(rc[5] == 1 || rc[5] == 2);
        /* the server's row of this batch */
        sqlite3_stmt *q = NULL;
        FIRE_REQUIRE(sqlite3_prepare_v2(sdb,
                                        "SELECT hash, state FROM batches WHERE device_id = ?1 AND "
                                        "seq = ?2",
                                        -1, &q, NULL) == SQLITE_OK);
        sqlite3_bind_text(q, 1, device_id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(q, 2, seq);
        bool row = sqlite3_step(q) == SQLITE_ROW;
        CHECK(row);
        if (row) {
            CHECK(!memcmp(sqlite3_column_blob(q, 0), hash, 32));
            CHECK(!strcmp((const char *)sqlite3_column_text(q, 1), is_void ? "voided" : "applied"));
        }
        sqlite3_finalize(q);
        /* each of its ops exactly once in the server's audit (none for a voided batch) */
        sqlite3_stmt *ops = NULL;
        FIRE_REQUIRE(sqlite3_prepare_v2(db, "SELECT seq FROM op WHERE batch_seq = ?1 ORDER BY seq",
                                        -1, &ops, NULL) == SQLITE_OK);
        sqlite3_bind_int64(ops, 1, seq);
        long long batch_ops = 0;
        while (sqlite3_step(ops) == SQLITE_ROW) {
            batch_ops++;
            int64_t op_seq = sqlite3_column_int64(ops, 0);
            sqlite3_stmt *a = NULL;
            FIRE_REQUIRE(sqlite3_prepare_v2(sdb,
                                            "SELECT count(*) FROM audit WHERE batch_hash = ?1 AND "
                                            "seq = ?2 AND action IN ('apply', 'merge', 'conflict')",
                                            -1, &a, NULL) == SQLITE_OK);
            sqlite3_bind_blob(a, 1, hash, 32, SQLITE_TRANSIENT);
            sqlite3_bind_int64(a, 2, op_seq);
            long long n = sqlite3_step(a) == SQLITE_ROW ? sqlite3_column_int64(a, 0) : -1;
            sqlite3_finalize(a);
            if (n != (is_void ? 0 : 1))
                fprintf(stderr, "%s: batch %lld op %lld is on the server %lld times\n", name,
                        (long long)seq, (long long)op_seq, n);
            CHECK_EQ_INT(n, is_void ? 0 : 1);
            checked_ops++;
            applied_ops += !is_void;
        }
        sqlite3_finalize(ops);
        /* and nothing else of that batch */
        sqlite3_stmt *a = NULL;
        FIRE_REQUIRE(sqlite3_prepare_v2(sdb,
                                        "SELECT count(*) FROM audit WHERE batch_hash = ?1 AND "
                                        "action IN ('apply', 'merge', 'conflict')",
                                        -1, &a, NULL) == SQLITE_OK);
        sqlite3_bind_blob(a, 1, hash, 32, SQLITE_TRANSIENT);
        long long all = sqlite3_step(a) == SQLITE_ROW ? sqlite3_column_int64(a, 0) : -1;
        sqlite3_finalize(a);
        CHECK_EQ_INT(all, is_void ? 0 : batch_ops);
    }
    sqlite3_finalize(st);
    /* the server holds no other batch of this device */
    CHECK_EQ_INT(fire_int(sdb, "SELECT count(*) FROM batches WHERE device_id = ?1", device_id),
                 nbatches);
    /* no op left behind */
    CHECK_EQ_INT(fire_int(db, "SELECT count(*) FROM op WHERE batch_seq IS NULL", NULL), 0);
    /* the visits and photos it made are the server's */
    CHECK_EQ_INT(fire_int(sdb, "SELECT count(*) FROM visit WHERE device_id = ?1", device_id),
                 fire_int(db, "SELECT count(*) FROM visit", NULL));
    sqlite3_stmt *v = NULL;
    FIRE_REQUIRE(sqlite3_prepare_v2(db, "SELECT id FROM visit", -1, &v, NULL) == SQLITE_OK);
    while (sqlite3_step(v) == SQLITE_ROW)
        CHECK_EQ_INT(fire_int(sdb, "SELECT count(*) FROM visit WHERE id = ?1",
                              (const char *)sqlite3_column_text(v, 0)),
                     1);
    sqlite3_finalize(v);
    FIRE_REQUIRE(sqlite3_prepare_v2(db, "SELECT lower(hex(hash)) FROM photo", -1, &v, NULL) ==
                 SQLITE_OK);
    while (sqlite3_step(v) == SQLITE_ROW)
        CHECK_EQ_INT(fire_int(sdb, "SELECT count(*) FROM photo WHERE hash = ?1",
                              (const char *)sqlite3_column_text(v, 0)),
                     1);
    sqlite3_finalize(v);
    /* device and server agree on every household, field by field */
    char cols[64][32];
    int nc = fire_common_columns(db, sdb, cols, 64);
    CHECK(nc >= 20);
    sqlite3_stmt *h = NULL;
    FIRE_REQUIRE(sqlite3_prepare_v2(db, "SELECT id FROM household ORDER BY id", -1, &h, NULL) ==
                 SQLITE_OK);
    long long households = 0, differ = 0;
    while (sqlite3_step(h) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(h, 0);
        households++;
        for (int c = 0; c < nc; c++) {
            char a[512], b[512];
            fire_hh_value(db, cols[c], id, a, sizeof a);
            fire_hh_value(sdb, cols[c], id, b, sizeof b);
            if (strcmp(a, b) != 0) {
                if (differ++ < 5)
                    fprintf(stderr, "%s: household %s.%s: device %s, server %s\n", name, id,
                            cols[c], a, b);
            }
        }
    }
    sqlite3_finalize(h);
    CHECK_EQ_INT(differ, 0);
    CHECK_EQ_INT(households, fire_int(sdb, "SELECT count(*) FROM household", NULL));
    fprintf(stderr,
            "   %s: %lld batches (%lld voided), %lld ops checked, %lld applied exactly once; "
            "%lld households x %d columns agree\n",
            name, nbatches, voided, checked_ops, applied_ops, households, nc);
}

#endif
