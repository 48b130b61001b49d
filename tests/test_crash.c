/*
 * test_crash.c — power-cut-style crash test of the encrypting VFS (core/cryptvfs.c).
 *
 * A child process runs a stream of transactions through pdcrypt (synchronous=FULL): each inserts
 * a row with its sequence number and a payload derived from it, rewrites a few rows of a small
 * "hot" table (so old pages go to the journal / WAL again and again) and bumps a counter; after
 * each COMMIT returns it writes the sequence number to a pipe. The parent SIGKILLs it at a random
 * moment — after a random number of acknowledgements plus a random delay, or blindly during
 * start-up, recovery or a journal-mode switch — 200 times over the same database, alternating
 * WAL and rollback-journal (DELETE) mode so both recovery paths run. After every kill the parent
 * reopens the database through pdcrypt and checks: integrity_check is "ok"; every acknowledged
 * transaction is there and at most the one in flight beyond it; nothing is partial (the counter
 * equals the row count, the rows are exactly 1..max, every payload is exactly what was written).
 *
 * A lost committed transaction here would mean the shim broke SQLite's recovery (WAL frames that
 * no longer validate are silently ignored): see "The zero-reserve invariant" in cryptvfs.c.
 * PD_CRASH_SEED=<n> replays a run; PD_CRASH_ROUNDS=<n> changes the number of kills.
 */
#include "cryptvfs.h"
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD_MAX 6000
#define HOT_ROWS 16

static char *g_path;
static unsigned g_slot;

/* What pdcrypt logged in the parent: a SIGKILL can leave a torn WAL tail (a frame header written
 * over a reused WAL, its page not yet), never a page that fails authentication. */
static int log_auth_failures, log_torn_tails;

static void log_cb(void *arg, int code, const char *msg)
{
    (void)arg;
    (void)code;
    if (strncmp(msg, "pdcrypt:", 8) != 0)
        return;
    if (strstr(msg, "fails authentication")) {
        log_auth_failures++;
        fprintf(stderr, "  %s\n", msg);
    } else if (strstr(msg, "torn")) {
        log_torn_tails++;
    }
}

/* ---- deterministic payloads --------------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* The payload of row `seq`: 20..PAYLOAD_MAX bytes, some spilling onto overflow pages. */
static size_t payload_for(int64_t seq, uint8_t *out)
{
    uint64_t h = mix((uint64_t)seq * 0x9e3779b97f4a7c15ULL + 1);
    size_t len = 20 + (size_t)(h % (h % 4 == 0 ? PAYLOAD_MAX - 20 : 1200));
    for (size_t i = 0; i < len; i += 8) {
        uint64_t w = mix(h + i);
        size_t n = len - i < 8 ? len - i : 8;
        memcpy(out + i, &w, n);
    }
    return len;
}

/* ---- SQLite helpers ----------------------------------------------------------------------- */

static int exec(sqlite3 *db, const char *sql)
{
    return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static sqlite3 *open_db(const char *journal_mode)
{
    char uri[1024];
    snprintf(uri, sizeof uri, "file:%s?pdslot=%u", g_path, g_slot);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(uri, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI |
                                 SQLITE_OPEN_EXRESCODE,
                             PD_CRYPTVFS_NAME);
    if (rc == SQLITE_OK)
        rc = pd_cryptvfs_prepare(db);
    if (rc == SQLITE_OK)
        rc = sqlite3_busy_timeout(db, 5000);
    if (rc == SQLITE_OK)
        rc = exec(db, "PRAGMA temp_store=MEMORY; PRAGMA synchronous=FULL");
    if (rc == SQLITE_OK && journal_mode) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", journal_mode);
        rc = exec(db, sql);
    }
    if (rc != SQLITE_OK) {
        fprintf(stderr, "  open %s: %d %s\n", g_path, rc, db ? sqlite3_errmsg(db) : "");
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS tx(seq INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS counter(id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER);"
    "INSERT OR IGNORE INTO counter VALUES(1, 0);"
    "CREATE TABLE IF NOT EXISTS hot(k INTEGER PRIMARY KEY, v BLOB);"
    "WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM k WHERE x < 16) "
    "INSERT OR IGNORE INTO hot SELECT x, zeroblob(300) FROM k;";

/* ---- the child: transactions until killed ------------------------------------------------- */

static void child_fail(const char *what, sqlite3 *db)
{
    fprintf(stderr, "  crash child: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
    _exit(2);
}

static void child_run(int wfd, const char *mode, int checkpoint_pages)
{
    sqlite3 *db = open_db(mode);
    if (!db)
        _exit(2);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA wal_autocheckpoint=%d", checkpoint_pages);
    if (exec(db, sql) != SQLITE_OK)
        child_fail("autocheckpoint", db);
    sqlite3_stmt *next = NULL, *ins = NULL, *hot = NULL, *cnt = NULL;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(seq), 0) + 1 FROM tx", -1, &next, NULL) ||
        sqlite3_prepare_v2(db, "INSERT INTO tx VALUES(?1, ?2)", -1, &ins, NULL) ||
        sqlite3_prepare_v2(db, "UPDATE hot SET v = randomblob(?2) WHERE k = ?1", -1, &hot, NULL) ||
        sqlite3_prepare_v2(db, "UPDATE counter SET n = n + 1 WHERE id = 1", -1, &cnt, NULL))
        child_fail("prepare", db);
    uint8_t *payload = malloc(PAYLOAD_MAX);
    if (!payload)
        _exit(2);
    for (;;) {
        if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK)
            child_fail("begin", db);
        if (sqlite3_step(next) != SQLITE_ROW)
            child_fail("next", db);
        int64_t seq = sqlite3_column_int64(next, 0);
        sqlite3_reset(next);
        size_t len = payload_for(seq, payload);
        sqlite3_bind_int64(ins, 1, seq);
        sqlite3_bind_blob(ins, 2, payload, (int)len, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            child_fail("insert", db);
        sqlite3_reset(ins);
        for (int i = 0; i < 3; i++) {
            uint32_t r = randombytes_uniform(1u << 20);
            sqlite3_bind_int(hot, 1, 1 + (int)(r % HOT_ROWS));
            sqlite3_bind_int(hot, 2, 50 + (int)(r >> 8) % 2500);
            if (sqlite3_step(hot) != SQLITE_DONE)
                child_fail("hot", db);
            sqlite3_reset(hot);
        }
        if (sqlite3_step(cnt) != SQLITE_DONE)
            child_fail("counter", db);
        sqlite3_reset(cnt);
        if (exec(db, "COMMIT") != SQLITE_OK)
            child_fail("commit", db);
        if (write(wfd, &seq, sizeof seq) != (ssize_t)sizeof seq)
            _exit(3);
    }
}

/* ---- the parent: kill, reopen, check ------------------------------------------------------ */

typedef struct stats {
    int blind_kills;      /* killed at a random time, whatever it was doing */
    int in_flight_landed; /* the unacknowledged transaction turned out committed */
    int hot_wal;          /* a WAL with frames was there to recover */
    int hot_journal;      /* a hot journal was there to roll back */
    long acks;
} stats;

/* Read acknowledgements until `want` more arrived (want < 0: until EOF). */
static void read_acks(int fd, int64_t *acked, int want, uint8_t *part, size_t *npart)
{
    int got = 0;
    while (want < 0 || got < want) {
        ssize_t r = read(fd, part + *npart, sizeof(int64_t) - *npart);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        *npart += (size_t)r;
        if (*npart == sizeof(int64_t)) {
            int64_t seq;
            memcpy(&seq, part, sizeof seq);
            if (seq != *acked + 1)
                fprintf(stderr, "  ack %lld after %lld\n", (long long)seq, (long long)*acked);
            CHECK_EQ_INT(seq, *acked + 1);
            *acked = seq;
            *npart = 0;
            got++;
        }
    }
}

static long file_len(const char *path)
{
    size_t n = 0;
    uint8_t *b = pd_test_read_file(path, &n);
    free(b);
    return b ? (long)n : -1;
}

/* Reopen and check the database after a kill; returns the highest committed sequence. */
static int64_t verify(int round, int64_t acked, stats *st)
{
    char wal[1100], jrnl[1100];
    snprintf(wal, sizeof wal, "%s-wal", g_path);
    snprintf(jrnl, sizeof jrnl, "%s-journal", g_path);
    if (file_len(wal) > 32)
        st->hot_wal++;
    if (file_len(jrnl) > 0)
        st->hot_journal++;

    sqlite3 *db = open_db(NULL);
    CHECK(db != NULL);
    if (!db)
        return -1;
    int64_t max = -1, rows = -2, counter = -3;
    bool integrity = false, payloads = true;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(s, 0);
        integrity = r && strcmp(r, "ok") == 0;
        if (!integrity)
            fprintf(stderr, "  round %d: integrity_check: %s\n", round, r ? r : "(null)");
    } else {
        fprintf(stderr, "  round %d: integrity_check fails: %s\n", round, sqlite3_errmsg(db));
    }
    sqlite3_finalize(s);
    s = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT (SELECT coalesce(max(seq), 0) FROM tx), (SELECT count(*) FROM "
                           "tx), (SELECT n FROM counter)",
                           -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW) {
        max = sqlite3_column_int64(s, 0);
        rows = sqlite3_column_int64(s, 1);
        counter = sqlite3_column_int64(s, 2);
    } else {
        fprintf(stderr, "  round %d: counting fails: %s\n", round, sqlite3_errmsg(db));
    }
    sqlite3_finalize(s);
    s = NULL;
    /* every payload exactly as written */
    uint8_t *want = malloc(PAYLOAD_MAX);
    if (want && sqlite3_prepare_v2(db, "SELECT seq, payload FROM tx", -1, &s, NULL) == SQLITE_OK) {
        int rc;
        while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
            size_t len = payload_for(sqlite3_column_int64(s, 0), want);
            if ((size_t)sqlite3_column_bytes(s, 1) != len ||
                memcmp(sqlite3_column_blob(s, 1), want, len) != 0)
                payloads = false;
        }
        if (rc != SQLITE_DONE)
            payloads = false;
    } else {
        payloads = false;
    }
    sqlite3_finalize(s);
    free(want);
    sqlite3_close(db);

    if (max < acked || max > acked + 1 || rows != max || counter != rows || !payloads)
        fprintf(stderr,
                "  round %d: acknowledged %lld, found max %lld, rows %lld, counter %lld, "
                "payloads %s\n",
                round, (long long)acked, (long long)max, (long long)rows, (long long)counter,
                payloads ? "ok" : "WRONG");
    CHECK(integrity);
    CHECK(max >= acked);     /* every acknowledged transaction survived */
    CHECK(max <= acked + 1); /* at most the one in flight beyond it */
    CHECK_EQ_INT(rows, max); /* no gaps, nothing partial */
    CHECK_EQ_INT(counter, rows);
    CHECK(payloads);
    if (max == acked + 1)
        st->in_flight_landed++;
    return max;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static void kills_at_random_moments_lose_no_acknowledged_transaction(void)
{
    bool sanitized = getenv("PD_SANITIZED") != NULL;
    int rounds = env_int("PD_CRASH_ROUNDS", 200);
    unsigned seed = (unsigned)env_int("PD_CRASH_SEED", (int)(time(NULL) ^ getpid()));
    fprintf(stderr, "  seed %u (PD_CRASH_SEED to replay), %d rounds%s\n", seed, rounds,
            sanitized ? ", sanitizer pacing" : "");
    srand(seed);
    /* Under ASan everything is ~3x slower: fewer acknowledgements per round keep the time
     * reasonable; the number of kills stays the same. */
    int max_acks = sanitized ? 10 : 20;
    int max_delay_us = sanitized ? 6000 : 3000;

    char *dir = pd_test_tmpdir("crash");
    g_path = pd_test_path(dir, "crash.db");
    uint8_t key[PD_KEY_BYTES], dbid[PD_DBID_BYTES];
    randombytes_buf(key, sizeof key);
    randombytes_buf(dbid, sizeof dbid);
    CHECK_EQ_INT(pd_cryptvfs_key_add(key, dbid, &g_slot), PD_OK);
    sodium_memzero(key, sizeof key);

    sqlite3 *db = open_db("WAL");
    CHECK(db != NULL);
    if (!db)
        goto out;
    CHECK_EQ_INT(exec(db, SCHEMA), SQLITE_OK);
    sqlite3_close(db);

    stats st = {0};
    int64_t acked = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int round = 0; round < rounds && pd_test_failures == 0; round++) {
        const char *mode = round % 2 == 0 ? "WAL" : "DELETE";
        int ckpt = 1 + rand() % 64; /* checkpoints happen, and get killed too */
        int p[2];
        CHECK(pipe(p) == 0);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            child_run(p[1], mode, ckpt);
            _exit(0);
        }
        close(p[1]);
        uint8_t part[sizeof(int64_t)];
        size_t npart = 0;
        if (rand() % 5 == 0) { /* blind: start-up, recovery, mode switch, first transactions */
            st.blind_kills++;
            usleep((useconds_t)(rand() % (sanitized ? 60000 : 25000)));
        } else {
            read_acks(p[0], &acked, rand() % (max_acks + 1), part, &npart);
            usleep((useconds_t)(rand() % max_delay_us));
        }
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        read_acks(p[0], &acked, -1, part, &npart); /* all it acknowledged before dying */
        close(p[0]);
        if (!WIFSIGNALED(status)) {
            fprintf(stderr, "  round %d: child exited on its own (status %d)\n", round, status);
            CHECK(WIFSIGNALED(status));
        }
        int64_t now = verify(round, acked, &st);
        if (now > acked)
            acked = now;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    st.acks = (long)acked;
    fprintf(stderr,
            "  %d kills in %.1f s: %ld transactions acknowledged, %d blind kills, %d in-flight "
            "transactions found committed, %d hot WALs (%d with a torn tail) and %d hot "
            "journals recovered\n",
            rounds, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
            st.acks, st.blind_kills, st.in_flight_landed, st.hot_wal, log_torn_tails,
            st.hot_journal);
    CHECK_EQ_INT(log_auth_failures, 0);
    CHECK(st.acks > rounds); /* the test did real work */
    CHECK(st.hot_wal > 0 && st.hot_journal > 0);
out:
    pd_cryptvfs_key_remove(g_slot);
    free(g_path);
    pd_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    sqlite3_config(SQLITE_CONFIG_LOG, log_cb, NULL);
    if (sodium_init() < 0 || pd_cryptvfs_register() != SQLITE_OK) {
        fprintf(stderr, "cannot initialise libsodium or register pdcrypt\n");
        return 1;
    }
    RUN(kills_at_random_moments_lose_no_acknowledged_transaction);
    sqlite3_shutdown();
    return pd_test_finish();
}
