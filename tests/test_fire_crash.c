/*
 * test_fire_crash.c — crash points: the device program (`pendata`) and the server
 * (`pendata-server serve`) are killed with SIGKILL at random moments of a field day, restarted,
 * and the day goes on; then the invariants that must survive any crash are checked.
 *
 * Two enumerators and their supervisor work through rounds: each enumerator records visits,
 * corrects a field, attaches a photo, seals; the supervisor imports the batch file and approves it
 * (every fourth round returns it, so voided batches and re-seals are in the mix); the decision goes
 * back; the enumerator syncs. Every one of these `pendata` runs is a kill point: SIGKILL after a
 * random delay drawn from [0, 1.1 x its usual duration]. During syncs the server is killed too —
 * at a random moment, or right after the last byte of a bundle arrived (the verify and apply
 * window) — and restarted on the same port while the device's sync keeps retrying.
 *
 * After every device kill: the store opens through the store API (PIN, recovery of a hot journal),
 * PRAGMA integrity_check is ok, the enumerator's chain is whole (seq 1..n, each prev_hash the hash
 * of the batch before, each hash the hash of its bytes) and every batch holds exactly the ops the
 * op log says it sealed. After every server kill: the server database's integrity (SQLite:
 * integrity_check; PostgreSQL: amcheck and the record keys, fire_pg_integrity), every device's
 * chain on the server whole, nothing quarantined. A step whose effect is absent after a
 * kill is run again; one whose effect is present is not (so nothing is done twice on purpose).
 *
 * At the end everything drains (seal, review, sync until every batch has its receipt) and:
 *   - no batch lost or duplicated: the device's batches and the server's chain for that device are
 *     the same list (seq, hash), applied on one side where the receipt says applied, voided where
 *     it says voided; no fork was ever quarantined;
 *   - every op of an applied batch is on the server exactly once (one audit row with that batch
 *     hash and op seq); no op of a voided batch is;
 *   - device and server agree: every household row (all columns both have) is equal, and the
 *     visits and photos the device made are the server's;
 *   - integrity_check is clean on every device store, and the server database's integrity holds.
 *
 * On PostgreSQL (PD_TEST_DB_URL, tests/sys_server_pg.sh) the server's checks read a copy of its
 * database (fire_server_db); a killed server restarts on the same database URL and data directory.
 *
 * Knobs: PD_FIRE_KILLS (kill points to reach; default 110, under PD_SANITIZED 100),
 * PD_FIRE_SERVER_KILLS (of which at least this many of the server, default 0: the rounds go on
 * until both are reached; tests/sys_server_pg.sh asks for 8 on PostgreSQL),
 * PD_FIRE_SEED (replay), PD_FIRE_MAX_S (a time cap, default 600). scripts/fire.sh runs the long
 * version (PD_FIRE_KILLS=1000).
 */
#include "fault/fire.h"
#include "test_sync_harness.h"
#include "testutil.h"

#include <dirent.h>

#define PIN TH_PIN
#define NDEV 2

enum step { ST_VISIT, ST_SET, ST_PHOTO, ST_SEAL, ST_IMPORT, ST_DECIDE, ST_OUTBOX, ST_SYNC, ST__N };
static const char *const step_name[ST__N] = {"visit",         "household set", "photo add",
                                             "seal",          "review import", "review decide",
                                             "outbox import", "sync"};

typedef struct fdev {
    const char *name, *user, *role;
    char home[1024];
    char device_id[32];
    uint8_t pk[PD_PUBKEY_BYTES]; /* the enumerator's person key */
    int next_hh;
} fdev;

static char *dir;
static th_server srv;
static int port;
static fdev E[NDEV], SUP;
static char out_path[1100];
static fire_proxy proxy;
static int64_t t_start, max_us;

/* what the kills did */
static struct {
    int kills, committed, absent, runs;
    int64_t avg_us;
} K[ST__N];
static int device_kills, server_kills;
static int position[3]; /* device kills in the first half of a run, at 50-90 %, past 90 % */
static int64_t slow_sync_us = 1000000; /* the usual sync through the slowing proxy */
static int srv_phase[3]; /* 0 receiving or verifying, 1 applying, 2 between requests */

static int total_kills(void)
{
    return device_kills + server_kills;
}

/* ---- running `pendata` ------------------------------------------------------------------------
 */

/* argv for `pendata --home HOME args...` (args NULL-terminated). */
static void cli_argv(char **argv, int cap, const fdev *d, const char *const *args)
{
    static char bin[1024];
    snprintf(bin, sizeof bin, "%s/pendata", th_build());
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--home";
    argv[n++] = (char *)d->home;
    for (const char *const *a = args; *a && n < cap - 1; a++)
        argv[n++] = (char *)*a;
    argv[n] = NULL;
}

/* Run a step's command unkilled; true when it exits 0. */
static bool cli_run(const fdev *d, const char *const *args, int *code)
{
    char *argv[40];
    cli_argv(argv, 40, d, args);
    fire_run r;
    fire_run_kill(argv, out_path, -1, &r);
    if (code)
        *code = r.code;
    return r.exited && r.code == 0;
}

/* A kill point: run the step's command and SIGKILL it after a random delay within its usual
 * duration (the first run of each step is not killed: it measures that duration). */
static void kill_point(enum step k, const fdev *d, const char *const *args, fire_run *r)
{
    char *argv[40];
    cli_argv(argv, 40, d, args);
    int64_t delay = -1;
    if (K[k].runs > 0) {
        /* half the kills anywhere in the run, half in its last stretch, where the work is (the
         * first part of every run is start-up: the PIN's key derivation, opening the store) */
        uint64_t t = (uint64_t)K[k].avg_us;
        delay = fire_below(2) ? (int64_t)fire_below(t * 11 / 10 + 1)
                              : (int64_t)(t * 6 / 10 + fire_below(t / 2 + 1));
    }
    fire_run_kill(argv, out_path, delay, r);
    if (r->exited) {
        K[k].avg_us = K[k].runs ? (K[k].avg_us * 3 + r->elapsed_us) / 4 : r->elapsed_us;
        K[k].runs++;
    }
    if (r->killed) {
        K[k].kills++;
        device_kills++;
        /* where in the run it landed, against the run's usual duration */
        int64_t pct = K[k].avg_us ? delay * 100 / K[k].avg_us : 0;
        position[pct < 50 ? 0 : pct < 90 ? 1 : 2]++;
    }
}

static void note_effect(enum step k, const fire_run *r, bool present)
{
    if (!r->killed)
        return;
    if (present)
        K[k].committed++;
    else
        K[k].absent++;
}

/* ---- checks ------------------------------------------------------------------------------------
 */

static pd_store *open_dev(const fdev *d)
{
    pd_store *s = NULL;
    pd_error err = {0};
    if (pd_store_open(&s, d->home, PIN, &err) != PD_OK) {
        fprintf(stderr, "%s: the store does not open after a kill: %s\n", d->name, err.msg);
        return NULL;
    }
    return s;
}

static bool zero32(const uint8_t *p)
{
    static const uint8_t z[32];
    return !memcmp(p, z, 32);
}

/* The device's own chain (author = its enumerator identity) and its op log. */
static void check_device_store(const fdev *d, pd_store *s)
{
    sqlite3 *db = pd_store_sqlite(s);
    char msg[256];
    bool ok = fire_integrity(db, msg, sizeof msg);
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "%s: integrity_check: %s\n", d->name, msg);
    if (!strcmp(d->role, "supervisor")) {
        /* the review queue: one row per (author, seq), each row's hash is its bytes' */
        CHECK_EQ_INT(
            fire_int(db,
                     "SELECT count(*) FROM (SELECT author_pk, seq FROM batch GROUP BY 1, 2 "
                     "HAVING count(*) > 1)",
                     NULL),
            0);
        return;
    }
    sqlite3_stmt *st = NULL;
    REQUIRE_VOID(sqlite3_prepare_v2(db,
                                    "SELECT seq, hash, prev_hash, bytes, op_count FROM batch "
                                    "WHERE author_pk = (SELECT sign_pk FROM identity WHERE role = "
                                    "'enumerator') ORDER BY seq",
                                    -1, &st, NULL) == SQLITE_OK);
    int64_t expect = 1;
    uint8_t prev[32] = {0};
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t seq = sqlite3_column_int64(st, 0);
        const uint8_t *hash = sqlite3_column_blob(st, 1);
        const uint8_t *ph = sqlite3_column_blob(st, 2);
        const uint8_t *bytes = sqlite3_column_blob(st, 3);
        int blen = sqlite3_column_bytes(st, 3);
        int64_t opc = sqlite3_column_int64(st, 4);
        CHECK_EQ_INT(seq, expect);
        REQUIRE_VOID(hash && ph && bytes && blen >= PD_BATCH_PREFIX_BYTES);
        uint8_t h[32];
        crypto_generichash(h, 32, bytes, PD_BATCH_PREFIX_BYTES, NULL, 0);
        CHECK(!memcmp(h, hash, 32));
        CHECK(seq == 1 ? zero32(ph) : !memcmp(ph, prev, 32));
        memcpy(prev, hash, 32);
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM op WHERE batch_seq = %lld", (long long)seq);
        CHECK_EQ_INT(fire_int(db, sql, NULL), opc);
        expect++;
    }
    sqlite3_finalize(st);
    /* no op points at a batch that does not exist */
    CHECK_EQ_INT(
        fire_int(db,
                 "SELECT count(*) FROM op WHERE batch_seq IS NOT NULL AND batch_seq NOT IN "
                 "(SELECT seq FROM batch WHERE author_pk = (SELECT sign_pk FROM identity "
                 "WHERE role = 'enumerator'))",
                 NULL),
        0);
}

static void check_device(const fdev *d)
{
    pd_store *s = open_dev(d);
    CHECK(s != NULL);
    if (!s)
        return;
    check_device_store(d, s);
    pd_store_close(s);
}

/* The server's database (SQLite, or PostgreSQL through a copy: fire_server_db): integrity,
 * every device's chain whole, nothing quarantined, no op audited twice. */
static void check_server_db(void)
{
    sqlite3 *db = fire_server_db(srv.db);
    REQUIRE_VOID(db);
    char msg[256];
    bool ok = fire_server_integrity(srv.db, db, msg, sizeof msg);
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "server: integrity_check: %s\n", msg);
    CHECK_EQ_INT(fire_int(db, "SELECT count(*) FROM quarantine", NULL), 0);
    sqlite3_stmt *st = NULL;
    REQUIRE_VOID(sqlite3_prepare_v2(db,
                                    "SELECT device_id, seq, hash, prev_hash FROM batches WHERE "
                                    "state IN ('applied', 'voided') ORDER BY device_id, seq",
                                    -1, &st, NULL) == SQLITE_OK);
    char dev[64] = "";
    int64_t expect = 1;
    uint8_t prev[32] = {0};
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *d = (const char *)sqlite3_column_text(st, 0);
        if (strcmp(d, dev) != 0) {
            snprintf(dev, sizeof dev, "%s", d);
            expect = 1;
        }
        int64_t seq = sqlite3_column_int64(st, 1);
        const uint8_t *hash = sqlite3_column_blob(st, 2), *ph = sqlite3_column_blob(st, 3);
        CHECK_EQ_INT(seq, expect);
        CHECK(hash && ph && (seq == 1 ? zero32(ph) : !memcmp(ph, prev, 32)));
        if (hash)
            memcpy(prev, hash, 32);
        expect++;
    }
    sqlite3_finalize(st);
    CHECK_EQ_INT(fire_int(db,
                          "SELECT count(*) FROM (SELECT 1 FROM audit WHERE batch_hash IS NOT NULL "
                          "AND action IN ('apply', 'merge', 'conflict') GROUP BY batch_hash, seq, "
                          "action, entity, target, field HAVING count(*) > 1)",
                          NULL),
                 0);
    sqlite3_close(db);
}

/* Where a server kill landed, read from what it left: an upload still open (receiving), one
 * complete but not processed (verifying / applying), or neither (between requests). */
static int server_phase(void)
{
    sqlite3 *db = fire_server_db(srv.db);
    if (!db)
        return 2;
    /* applying: a bundle complete on disk, or one received whole in memory (server/tus.c: it
     * stays 'open' until applied) whose first batches already committed their results */
    int phase = 2;
    if (fire_int(db,
                 "SELECT count(*) FROM uploads u WHERE u.state = 'complete' OR (u.state = 'open' "
                 "AND EXISTS (SELECT 1 FROM upload_results r WHERE r.upload_id = u.id))",
                 NULL) > 0)
        phase = 1;
    else if (fire_int(db, "SELECT count(*) FROM uploads WHERE state = 'open'", NULL) > 0)
        phase = 0;
    sqlite3_close(db);
    return phase;
}

/* ---- the server
 * ---------------------------------------------------------------------------------- */

static void server_kill_and_restart(void)
{
    th_server_kill(&srv, SIGKILL);
    server_kills++;
    srv_phase[server_phase()]++;
    check_server_db();
    fire_sleep_us((int64_t)fire_below(200000));
    for (int i = 0; i < 50; i++) {
        if (th_server_start(&srv, port) == 0)
            return;
        fire_sleep_us(100000); /* the port may be in use a moment longer */
    }
    fprintf(stderr, "the server does not restart on port %d\n", port);
    pd_test_failures++;
}

/* Wait (at most max_us) until a bundle upload is created (its PATCH follows at once). A whole
 * bundle in one PATCH is held in memory, verified and applied (server/tus.c), so the moments
 * after this are the receiving, verify and apply window. Returns true when that moment came
 * while pid still ran. */
static bool wait_bundle_created(pid_t pid, int64_t max_wait_us)
{
    bool hit = false;
    int64_t t0 = fire_now_us();
    while (fire_now_us() - t0 < max_wait_us) {
        if (waitpid(pid, NULL, WNOHANG) != 0)
            break; /* it finished (reaped by the caller's next wait: do not reap here) */
        char row[200];
        if (fire_server_text(srv.db,
                             "SELECT id FROM uploads WHERE state = 'open' AND kind = 'bundle' "
                             "ORDER BY created_at DESC LIMIT 1",
                             row, sizeof row) &&
            row[0])
            hit = true;
        if (hit)
            break;
        fire_sleep_us(1000);
    }
    return hit;
}

/* ---- the steps of a field day
 * ---------------------------------------------------------------------- */

static long long dev_count(const fdev *d, const char *sql, const char *param)
{
    pd_store *s = open_dev(d);
    if (!s)
        return -1;
    long long n = fire_int(pd_store_sqlite(s), sql, param);
    pd_store_close(s);
    return n;
}

/* Run a step as a kill point; after a kill check the store and, if its effect is absent, run it
 * again to completion. effect: a query whose value changes when the step took effect. */
static void step(enum step k, const fdev *d, const char *const *args, const char *effect_sql,
                 const char *param, bool ok_to_fail)
{
    long long before = effect_sql ? dev_count(d, effect_sql, param) : 0;
    fire_run r;
    kill_point(k, d, args, &r);
    if (r.killed) {
        long long now = before;
        pd_store *s = open_dev(d);
        CHECK(s != NULL);
        if (s) {
            check_device_store(d, s);
            if (effect_sql)
                now = fire_int(pd_store_sqlite(s), effect_sql, param);
            pd_store_close(s);
        }
        bool present = now != before;
        note_effect(k, &r, present);
        if (!present) {
            int code = 0;
            bool ok = cli_run(d, args, &code);
            if (!ok && !ok_to_fail) {
                fprintf(stderr, "%s %s failed (exit %d) after a kill\n", d->name, step_name[k],
                        code);
                fire_print_tail(out_path, 600);
                pd_test_failures++;
            }
        }
    } else if (r.code != 0 && !ok_to_fail) {
        fprintf(stderr, "%s %s failed (exit %d)\n", d->name, step_name[k], r.code);
        fire_print_tail(out_path, 600);
        pd_test_failures++;
    }
}

static void hh_id(int i, char out[32])
{
    snprintf(out, 32, "3273011001%06d", i + 1);
}

static void do_visit(fdev *d)
{
    char hh[32];
    hh_id(d->next_hh++, hh);
    const char *args[] = {"visit",      hh,
                          "--outcome",  "found",
                          "--gps",      "-6.9,107.6,8",
                          "--provider", "gps",
                          "--notes",    "rumah panggung, pintu biru",
                          NULL};
    step(ST_VISIT, d, args, "SELECT count(*) FROM visit WHERE household_id = ?1", hh, false);
}

static void do_set(fdev *d)
{
    char hh[32], val[16], sql[200];
    hh_id(d->next_hh - 1, hh);
    snprintf(val, sizeof val, "%d", 1 + (int)fire_below(9));
    /* the effect: rooms equals the value (a no-op set when it already does: nothing to check) */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM op WHERE target = ?1 AND field = 'rooms'");
    const char *args[] = {"household", "set", hh, "rooms", val, NULL};
    step(ST_SET, d, args, sql, hh, false);
}

static void do_photo(fdev *d, int round)
{
    char hh[32], file[1200];
    hh_id(d->next_hh - 1, hh);
    size_t len;
    uint8_t *jpeg = th_jpeg(20000 + fire_below(30000), (uint32_t)(round * 31 + d->next_hh), &len);
    snprintf(file, sizeof file, "%s/photo-%s.jpg", dir, d->name);
    REQUIRE_VOID(jpeg && pd_test_write_file(file, jpeg, len) == 0);
    free(jpeg);
    const char *args[] = {"photo", "add", hh, "--kind", "front", file, NULL};
    step(ST_PHOTO, d, args, "SELECT count(*) FROM photo WHERE household_id = ?1", hh, false);
}

static int64_t enum_batches(const fdev *d)
{
    return dev_count(d,
                     "SELECT count(*) FROM batch WHERE author_pk = (SELECT sign_pk FROM identity "
                     "WHERE role = 'enumerator')",
                     NULL);
}

static bool do_seal(fdev *d, int64_t *seq)
{
    long long pending = dev_count(d, "SELECT count(*) FROM op WHERE batch_seq IS NULL", NULL);
    if (pending <= 0)
        return false;
    const char *args[] = {"seal", NULL};
    step(ST_SEAL, d, args, "SELECT count(*) FROM op WHERE batch_seq IS NULL", NULL, false);
    *seq = enum_batches(d);
    return *seq > 0;
}

typedef struct find_q {
    const uint8_t *pk;
    uint64_t seq;
    int64_t id;
    char state[16];
} find_q;

static int find_cb(void *ctx, const pd_outbox_entry *e)
{
    find_q *f = ctx;
    if (e->seq == f->seq && !memcmp(e->author_pk, f->pk, 32)) {
        f->id = e->id;
        snprintf(f->state, sizeof f->state, "%s", e->state);
    }
    return 0;
}

static void sup_find(find_q *f)
{
    f->id = 0;
    f->state[0] = '\0';
    pd_store *s = open_dev(&SUP);
    if (!s)
        return;
    pd_review_list(s, true, find_cb, f);
    pd_store_close(s);
}

/* The supervisor takes batch seq of d (kill points: import, decision), the decision goes back
 * (kill point: outbox import). */
static void do_review(fdev *d, int64_t seq, bool ret)
{
    char seqs[24], file[1200], back[1200], ids[24];
    snprintf(seqs, sizeof seqs, "%lld", (long long)seq);
    snprintf(file, sizeof file, "%s/%s-b%lld.pdb", dir, d->name, (long long)seq);
    snprintf(back, sizeof back, "%s/%s-d%lld.pdb", dir, d->name, (long long)seq);
    const char *exp[] = {"outbox", "export", seqs, "-o", file, NULL};
    REQUIRE_VOID(cli_run(d, exp, NULL));

    find_q f = {.pk = d->pk, .seq = (uint64_t)seq};
    const char *imp[] = {"review", "import", file, NULL};
    fire_run r;
    kill_point(ST_IMPORT, &SUP, imp, &r);
    if (r.killed)
        check_device(&SUP);
    sup_find(&f);
    note_effect(ST_IMPORT, &r, f.id != 0);
    if (!f.id) {
        REQUIRE_VOID(cli_run(&SUP, imp, NULL));
        sup_find(&f);
    }
    REQUIRE_VOID(f.id != 0);

    snprintf(ids, sizeof ids, "%lld", (long long)f.id);
    const char *approve[] = {"review", "approve", ids, NULL};
    const char *retn[] = {"review", "return", ids, "--reason", "jumlah kamar tidak sesuai", NULL};
    kill_point(ST_DECIDE, &SUP, ret ? retn : approve, &r);
    if (r.killed)
        check_device(&SUP);
    sup_find(&f);
    bool decided = strcmp(f.state, "sealed") != 0;
    note_effect(ST_DECIDE, &r, decided);
    if (!decided)
        REQUIRE_VOID(cli_run(&SUP, ret ? retn : approve, NULL));

    const char *exp2[] = {"review", "export", ids, "-o", back, NULL};
    REQUIRE_VOID(cli_run(&SUP, exp2, NULL));
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM batch WHERE seq = %lld AND state <> 'sealed' AND author_pk = "
             "(SELECT sign_pk FROM identity WHERE role = 'enumerator')",
             (long long)seq);
    const char *oimp[] = {"outbox", "import", back, NULL};
    step(ST_OUTBOX, d, oimp, sql, NULL, false);
}

/* Batches of d still waiting for their receipt. */
static long long unacked(const fdev *d)
{
    return dev_count(d,
                     "SELECT count(*) FROM batch WHERE state IN ('approved', 'voided', 'uploaded') "
                     "AND author_pk = (SELECT sign_pk FROM identity WHERE role = 'enumerator')",
                     NULL);
}

static const char *const sync_args[] = {"sync", "--chunk",
                                        "8192", "--attempts",
                                        "400",  "--backoff",
                                        "10",   "--backoff-cap",
                                        "200",  "--connect-timeout",
                                        "1000", "--stall-timeout",
                                        "10",   NULL};

/* A sync with kill points: the device's sync killed at a random moment, or the server killed (at
 * a random moment, or just after the bundle's last byte arrived) and restarted while the sync
 * retries, or both. Then sync again until every batch has its receipt. */
static void do_sync(fdev *d)
{
    char *argv[40];
    cli_argv(argv, 40, d, sync_args);
    /* -1, 0: the device only; 1: the server at random moments; 2, 4: the server in its verify and
     * apply window first; 3: the server, then the device too */
    int mode = K[ST_SYNC].runs == 0 ? -1 : (int)fire_below(6) - 1;
    if (mode <= 0) {
        fire_run r;
        kill_point(ST_SYNC, d, sync_args, &r);
        if (r.killed)
            check_device(d);
    } else {
        /* through a proxy that slows the upload (about 200 KB/s), so that a kill at a random
         * moment often finds the server receiving */
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d", proxy.port);
        const char *via[40];
        int n = 0;
        for (const char *const *a = sync_args; *a; a++)
            via[n++] = *a;
        via[n++] = "--server";
        via[n++] = url;
        via[n] = NULL;
        cli_argv(argv, 40, d, via);
        int64_t t0 = fire_now_us();
        pid_t pid = fire_spawn(argv, out_path);
        bool hit = false;
        for (int kills = 0; kills < 3; kills++) {
            if (mode == 1 || mode == 3 || kills > 0) {
                fire_sleep_us((int64_t)fire_below((uint64_t)slow_sync_us + 1));
                hit = waitpid(pid, NULL, WNOHANG) == 0;
            } else {
                hit = wait_bundle_created(pid, 20000000);
                if (hit)
                    fire_sleep_us((int64_t)fire_below(60000));
            }
            if (!hit)
                break;
            server_kill_and_restart();
        }
        if (mode == 3 && waitpid(pid, NULL, WNOHANG) == 0) {
            /* and the device too, a moment later */
            fire_sleep_us((int64_t)fire_below(300000));
            if (kill(pid, SIGKILL) == 0) {
                K[ST_SYNC].kills++;
                device_kills++;
            }
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFSIGNALED(status))
            check_device(d);
        else if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && !hit)
            slow_sync_us = (slow_sync_us * 3 + (fire_now_us() - t0)) / 4;
    }
    for (int i = 0; i < 6 && unacked(d) > 0; i++) {
        int code = 0;
        if (!cli_run(d, sync_args, &code) && i == 5) {
            fprintf(stderr, "%s: sync keeps failing (exit %d)\n", d->name, code);
            fire_print_tail(out_path, 800);
        }
    }
    CHECK_EQ_INT(unacked(d), 0);
}

/* ---- set-up and the final account ------------------------------------------------------------ */

static bool make_device(fdev *d, const char *name, const char *user, const char *role)
{
    d->name = name;
    d->user = user;
    d->role = role;
    snprintf(d->home, sizeof d->home, "%s/%s", dir, name);
    char code[PD_ENROLL_CODE_LEN + 1], url[64];
    if (th_code(&srv, user, code) != PD_OK)
        return false;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    const char *init[] = {"init", "--role", role, "--kdf", "test", NULL};
    const char *enr[] = {"enroll",        "--server",      url, "--code", code,
                         "--fingerprint", srv.fingerprint, NULL};
    if (!cli_run(d, init, NULL) || !cli_run(d, enr, NULL)) {
        fire_print_tail(out_path, 600);
        return false;
    }
    pd_store *s = open_dev(d);
    if (!s)
        return false;
    snprintf(d->device_id, sizeof d->device_id, "%s", pd_store_device_id(s));
    if (!strcmp(role, "enumerator"))
        pd_keyring_self(s, "enumerator", d->pk);
    pd_store_close(s);
    return true;
}

static void final_account(fdev *d, sqlite3 *sdb)
{
    pd_store *s = open_dev(d);
    REQUIRE_VOID(s);
    check_device_store(d, s);
    fire_account(s, sdb, d->name);
    pd_store_close(s);
}

static void drain(void)
{
    for (int i = 0; i < NDEV; i++) {
        fdev *d = &E[i];
        int64_t seq;
        for (int j = 0; j < 3 && do_seal(d, &seq); j++)
            do_review(d, seq, false);
        const char *args[] = {"sync", NULL};
        cli_run(d, args, NULL);
        CHECK_EQ_INT(unacked(d), 0);
    }
    /* a last pull for everyone: each device sees the other's changes */
    for (int i = 0; i < NDEV; i++) {
        const char *args[] = {"sync", NULL};
        CHECK(cli_run(&E[i], args, NULL));
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    fire_seed_init("test_fire_crash");
    long target = fire_env_long("PD_FIRE_KILLS", fire_sanitized() ? 100 : 110);
    long server_target = fire_env_long("PD_FIRE_SERVER_KILLS", 0);
    max_us = fire_env_long("PD_FIRE_MAX_S", 600) * 1000000LL;
    t_start = fire_now_us();
    setenv("PENDATA_PIN", PIN, 1);
    dir = pd_test_tmpdir("fire-crash");
    snprintf(out_path, sizeof out_path, "%s/commands.out", dir);
    /* households enough for the visits of the long version too */
    uint32_t households = (uint32_t)(60 + target / 2 + 16 * server_target);
    REQUIRE(th_server_create(&srv, dir, households) == PD_OK);
    REQUIRE(th_server_start(&srv, 0) == 0);
    port = srv.port;
    char to[32], *stats = pd_test_path(dir, "proxy.json");
    snprintf(to, sizeof to, "127.0.0.1:%d", port);
    const char *pargs[] = {"--target", to, "--rate", "200000", NULL};
    REQUIRE(fire_proxy_start(&proxy, stats, pargs) == 0);
    free(stats);
    REQUIRE(make_device(&E[0], "e1", "E0001", "enumerator"));
    REQUIRE(make_device(&E[1], "e2", "E0002", "enumerator"));
    REQUIRE(make_device(&SUP, "s1", "S0001", "supervisor"));
    E[1].next_hh = (int)households / 2;
    const char *first[] = {"sync", NULL};
    for (int i = 0; i < NDEV; i++)
        REQUIRE(cli_run(&E[i], first, NULL));
    REQUIRE(cli_run(&SUP, first, NULL));
    for (int i = 0; i < NDEV; i++) /* the supervisor's key, enrolled after them */
        REQUIRE(cli_run(&E[i], first, NULL));

    int round = 0;
    while ((total_kills() < target || server_kills < server_target) &&
           fire_now_us() - t_start < max_us && !pd_test_failures) {
        for (int i = 0; i < NDEV; i++) {
            fdev *d = &E[i];
            int visits = 2 + (int)fire_below(3);
            for (int v = 0; v < visits; v++)
                do_visit(d);
            do_set(d);
            if ((round + i) % 2 == 0)
                do_photo(d, round);
            int64_t seq;
            if (do_seal(d, &seq))
                do_review(d, seq, round % 4 == 3);
            do_sync(d);
        }
        round++;
        fprintf(stderr, "   round %d: %d device kills, %d server kills\n", round, device_kills,
                server_kills);
    }
    drain();
    /* the server stops cleanly; everything is checked at rest */
    fire_proxy_stop(&proxy);
    th_server_kill(&srv, SIGTERM);
    check_server_db();
    sqlite3 *sdb = fire_server_db(srv.db);
    REQUIRE(sdb);
    for (int i = 0; i < NDEV; i++)
        final_account(&E[i], sdb);
    check_device(&SUP);
    sqlite3_close(sdb);

    fprintf(stderr, "kill points: %d (%d device, %d server) in %d rounds, %.1f s\n", total_kills(),
            device_kills, server_kills, round, (double)(fire_now_us() - t_start) / 1e6);
    for (int k = 0; k < ST__N; k++)
        fprintf(stderr,
                "   %-14s %4d kills: %3d had taken effect, %3d had not (usual run %.0f ms)\n",
                step_name[k], K[k].kills, K[k].committed, K[k].absent, (double)K[k].avg_us / 1e3);
    fprintf(stderr, "   device kills at 0-50 %% of a run: %d, 50-90 %%: %d, past 90 %%: %d\n",
            position[0], position[1], position[2]);
    fprintf(stderr,
            "   server kills: %d while receiving or verifying, %d while applying, %d between\n",
            srv_phase[0], srv_phase[1], srv_phase[2]);
    CHECK(total_kills() >= target);
    CHECK(server_kills >= server_target);
    printf("FIRE crash kill_points=%d device=%d server=%d server_receiving=%d server_applying=%d "
           "rounds=%d seconds=%.1f\n",
           total_kills(), device_kills, server_kills, srv_phase[0], srv_phase[1], round,
           (double)(fire_now_us() - t_start) / 1e6);
    if (!pd_test_failures)
        pd_test_rmtree(dir);
    else
        fprintf(stderr, "kept %s for a look\n", dir);
    free(dir);
    return pd_test_finish();
}
