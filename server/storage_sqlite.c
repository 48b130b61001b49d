/*
 * storage_sqlite.c — the SQLite backend of the server's storage interface (storage.h).
 *
 * One connection, WAL, foreign keys on, a busy timeout so operator commands can run beside
 * `serve`. The schema is schema/server/NNN_*.sql, applied by pd_schema_apply (core/migrate.c).
 *
 * Durability (an acknowledged upload offset or receipt must survive a power cut) is what
 * synchronous=FULL gives in WAL mode — synchronous=NORMAL plus an fsync of the WAL after each
 * commit — done here by hand so that it can be grouped: the connection runs NORMAL, and a WAL
 * hook counts each commit and fsyncs the WAL at once, unless the caller deferred it
 * (sync_defer). A deferred commit becomes durable at the next sync_flush, which needs no lock:
 * the server flushes after releasing its lock and before answering, and one fsync then serves
 * every request that committed meanwhile (group commit) instead of one fsync per commit under
 * the lock. The hook replaces SQLite's auto-checkpoint: a checkpointer thread (started with the
 * first deferral; without one, the flush) copies the WAL into the database on a connection of
 * its own, so that neither the copy nor its fsyncs happen under the lock or in a request.
 * (Another process on the same file may read a deferred commit up to one flush before it is
 * durable; within this process no answer leaves before the commits it read are flushed.)
 *
 * Readers (reader_open): more connections on the same file, query_only, for requests that only
 * read (a delta, receipts): WAL lets them read beside the writer without the server's lock. A
 * reader may see a commit that is written but not yet durable (deferred above, or counted by the
 * WAL hook only just after it became visible), so read_flush fdatasyncs the WAL after the read —
 * one fsync shared by every reader that finished reading before it began.
 *
 * Every statement is prepared once, with bound parameters. The few statements that name a record
 * column (get/set one field, insert a record, read a whole row) are built from the fixed column
 * tables of records.h — never from input — and cached per column.
 *
 * Area filters take the caller's comma-separated list of codes as ONE bound parameter and split
 * it in SQL (a recursive CTE); a code matches itself and every code below it ("32.73.01" covers
 * "32.73.01.1001").
 */
#include "storage.h"

#include "internal.h"
#include "schema.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_COLS 48
#define KO_CACHE 40                /* korcam statements kept prepared (ko_prepare) */
#define WAL_CHECKPOINT_FRAMES 1000 /* as SQLite's auto-checkpoint */

#define AREAS_CTE                                                                                  \
    "WITH RECURSIVE split(code, rest) AS (SELECT '', ?1 || ',' UNION ALL "                         \
    "SELECT substr(rest, 1, instr(rest, ',') - 1), substr(rest, instr(rest, ',') + 1) "            \
    "FROM split WHERE rest <> ''), areas(code) AS (SELECT code FROM split WHERE code <> '') "
#define IN_AREAS(col)                                                                              \
    "EXISTS (SELECT 1 FROM areas a WHERE " col " = a.code OR substr(" col                          \
    ", 1, length(a.code) + 1) = a.code || '.')"
/* The same test as a join condition from `areas a`: col lies in a.code's range [code, code/)
 * first ('/' follows '.'; codes are digits and dots), so an index on col is searched by range
 * (a desa's rows, not the whole table), then the exact test. The ranges of overlapping codes
 * ("32.73.01" and "32.73.01.1001") meet the same row twice: callers DISTINCT what they list. */
#define AREA_ON(col)                                                                               \
    col " >= a.code AND " col " < a.code || '/' AND (" col " = a.code OR substr(" col              \
        ", 1, length(a.code) + 1) = a.code || '.')"

/* The fixed statements, by id. */
#define STATEMENTS(X)                                                                              \
    X(REV_NEXT, "UPDATE meta SET value = value + 1 WHERE key = 'revision' RETURNING value")        \
    X(REV_CUR, "SELECT value FROM meta WHERE key = 'revision'")                                    \
    X(REV_SET, "UPDATE meta SET value = ?1 WHERE key = 'revision'")                                \
    X(USER_ADD, "INSERT INTO users (id, role, name, area, supervisor_id, created_at) "             \
                "VALUES (?1, ?2, ?3, ?4, NULLIF(?5, ''), ?6)")                                     \
    X(USER_GET, "SELECT id, role, name, area, COALESCE(supervisor_id, ''), created_at "            \
                "FROM users WHERE id = ?1")                                                        \
    X(USERS_SUP, "SELECT id, role, name, area, COALESCE(supervisor_id, ''), created_at "           \
                 "FROM users WHERE supervisor_id = ?1 ORDER BY id")                                \
    X(PKEY_ADD, "INSERT INTO person_keys (pk, user_id, device_id, added_at, rev) "                 \
                "VALUES (?1, ?2, ?3, ?4, ?5)")                                                     \
    X(PKEY_GET, "SELECT pk, user_id, device_id, added_at, rev FROM person_keys WHERE pk = ?1")     \
    X(PKEYS_OF, "SELECT pk, user_id, device_id, added_at, rev FROM person_keys "                   \
                "WHERE user_id = ?1 ORDER BY added_at, pk")                                        \
    X(DEV_ADD, "INSERT INTO devices (id, user_id, pk, enrolled_at) VALUES (?1, ?2, ?3, ?4)")       \
    X(DEV_GET, "SELECT id, user_id, pk, enrolled_at, COALESCE(revoked_at, 0) FROM devices "        \
               "WHERE id = ?1")                                                                    \
    X(DEV_REVOKE, "UPDATE devices SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")       \
    X(CODE_ADD, "INSERT INTO enroll_codes (hash, user_id, created_at, expires_at) "                \
                "VALUES (?1, ?2, ?3, ?4)")                                                         \
    X(CODE_GET, "SELECT user_id, expires_at, used_at FROM enroll_codes WHERE hash = ?1")           \
    X(CODE_USE, "UPDATE enroll_codes SET used_at = ?2, device_id = ?3 "                            \
                "WHERE hash = ?1 AND used_at IS NULL")                                             \
    X(NONCE_ADD, "INSERT INTO nonces (device_id, nonce, seen_at) VALUES (?1, ?2, ?3)")             \
    X(NONCE_SEEN, "SELECT 1 FROM nonces WHERE device_id = ?1 AND nonce = ?2")                      \
    X(NONCE_PURGE, "DELETE FROM nonces WHERE seen_at < ?1")                                        \
    X(UP_ADD, "INSERT INTO uploads (id, device_id, kind, length, acked, photo_hash, "              \
              "created_at, expires_at, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")        \
    X(UP_GET, "SELECT id, device_id, kind, length, acked, photo_hash, created_at, expires_at, "    \
              "state FROM uploads WHERE id = ?1")                                                  \
    X(UP_UPDATE, "UPDATE uploads SET acked = ?2, expires_at = ?3, state = ?4 WHERE id = ?1")       \
    X(UP_DEL, "DELETE FROM uploads WHERE id = ?1")                                                 \
    X(UP_EXPIRED, "SELECT id FROM uploads WHERE state IN ('open', 'complete') "                    \
                  "AND expires_at < ?1 ORDER BY expires_at")                                       \
    X(UP_OPEN_OF, "SELECT count(*), coalesce(sum(length), 0), coalesce(min(expires_at), 0) "       \
                  "FROM uploads WHERE device_id = ?1 AND state = 'open' AND expires_at >= ?2")     \
    X(BLOB_GET, "SELECT size FROM blobs WHERE hash = ?1")                                          \
    X(BLOB_ADD, "INSERT OR IGNORE INTO blobs (hash, size, stored_at, device_id) "                  \
                "VALUES (?1, ?2, ?3, ?4)")                                                         \
    X(BATCH_PUT, "INSERT INTO batches (device_id, seq, hash, prev_hash, author_pk, "               \
                 "approver_pk, area, state, bytes, review, receipt, received_at) "                 \
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")                     \
    X(BATCH_GET, "SELECT " BATCH_COLS " FROM batches WHERE device_id = ?1 AND seq = ?2")           \
    X(BATCH_BY_HASH, "SELECT " BATCH_COLS " FROM batches WHERE hash = ?1")                         \
    X(BATCH_LAST, "SELECT " BATCH_COLS " FROM batches WHERE device_id = ?1 "                       \
                  "AND state IN ('applied', 'voided') ORDER BY seq DESC LIMIT 1")                  \
    X(BATCH_SET, "UPDATE batches SET state = ?3, receipt = ?4, applied_at = NULLIF(?5, 0) "        \
                 "WHERE device_id = ?1 AND seq = ?2")                                              \
    X(BATCH_UNHOLD, "DELETE FROM batches WHERE device_id = ?1 AND seq = ?2 AND state = 'held'")    \
    X(BATCHES_OF, "SELECT " BATCH_COLS " FROM batches WHERE device_id = ?1 AND seq > ?2 "          \
                  "ORDER BY seq")                                                                  \
    X(Q_PUT, "INSERT OR IGNORE INTO quarantine (device_id, seq, hash, prev_hash, author_pk, "      \
             "bytes, review, reason, receipt, received_at) "                                       \
             "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")                                   \
    X(Q_BY_HASH, "SELECT device_id, seq, hash, prev_hash, author_pk, NULL, '', 'fork', "           \
                 "bytes, review, receipt, received_at, reason FROM quarantine WHERE hash = ?1")    \
    X(RES_PUT, "INSERT OR REPLACE INTO upload_results (upload_id, idx, device_id, seq, hash, "     \
               "status, again, error, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")       \
    X(RES_OF, "SELECT idx, device_id, seq, hash, status, again, COALESCE(error, ''), "             \
              "COALESCE(message, '') FROM upload_results WHERE upload_id = ?1 ORDER BY idx")       \
    X(FCH_GET, "SELECT rev, device_id, author_pk, seq, hlc, batch_hash FROM field_rev "            \
               "WHERE entity = ?1 AND target = ?2 AND field = ?3")                                 \
    X(FCH_PUT, "INSERT OR REPLACE INTO field_rev (entity, target, field, rev, device_id, "         \
               "author_pk, seq, hlc, batch_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")     \
    X(FCH_OTHER, "SELECT 1 FROM field_rev WHERE entity = ?1 AND target = ?2 AND rev > ?3 "         \
                 "AND (device_id IS NULL OR device_id <> ?4) LIMIT 1")                             \
    X(AREA_HH, "SELECT desa FROM household WHERE id = ?1")                                         \
    X(AREA_MEMBER, "SELECT h.desa FROM member m JOIN household h ON h.id = m.household_id "        \
                   "WHERE m.id = ?1")                                                              \
    X(AREA_VISIT, "SELECT h.desa FROM visit v JOIN household h ON h.id = v.household_id "          \
                  "WHERE v.id = ?1")                                                               \
    X(AREA_PHOTO, "SELECT h.desa FROM photo p JOIN household h ON h.id = p.household_id "          \
                  "WHERE p.hash = ?1")                                                             \
    X(NIK_HOLDERS, "SELECT id, household_id FROM member WHERE nik = ?1 ORDER BY id")               \
    X(VISITS_OF, "SELECT id, outcome, device_id FROM visit WHERE household_id = ?1 "               \
                 "ORDER BY visited_at, id")                                                        \
    /* area first (household_desa, member_household_rev): a delta costs what changed in the        \
     * area, not what changed in the whole database since the cursor */                            \
    X(SINCE,                                                                                       \
      AREAS_CTE "SELECT DISTINCT 0, h.id, h.rev FROM areas a JOIN household h ON " AREA_ON(        \
          "h.desa") " WHERE h.rev > ?2 UNION ALL SELECT DISTINCT 1, m.id, m.rev FROM areas a "     \
                    "JOIN household h ON " AREA_ON("h.desa") " JOIN member m ON m.household_id = " \
                                                             "h.id AND m.rev > ?2 ORDER BY 3 "     \
                                                             "LIMIT ?3")                           \
    X(AREA_HHS, AREAS_CTE                                                                          \
      "SELECT DISTINCT h.id FROM areas a JOIN household h ON " AREA_ON("h.desa") " ORDER BY h.id") \
    X(HH_MEMBERS, "SELECT id FROM member WHERE household_id = ?1 ORDER BY member_no, id")          \
    X(SHAPE_PUT, "INSERT INTO area_shape (code, name, shape, rev) VALUES (?1, ?2, ?3, ?4)")        \
    X(SHAPES_IN, AREAS_CTE "SELECT code, name, shape, rev FROM area_shape s WHERE " IN_AREAS(      \
                     "s.code") " ORDER BY code")                                                   \
    X(AREA_REV, AREAS_CTE                                                                          \
      "SELECT max(r) FROM (SELECT max(h.rev) AS r FROM areas a JOIN household h ON " AREA_ON(      \
          "h.desa") " UNION ALL SELECT max(m.rev) FROM areas a JOIN household h "                  \
                    "ON " AREA_ON("h.desa") " JOIN member m ON m.household_id = "                  \
                                            "h.id)")                                               \
    X(CONFLICT_ADD, "INSERT INTO conflicts (kind, entity, target, field, area, base_rev, "         \
                    "base_value, server_value, server_device, server_author, server_seq, "         \
                    "server_hlc, server_batch, device_value, device_device, device_author, "       \
                    "device_seq, device_hlc, batch_seq, batch_hash, created_at, rev) VALUES "      \
                    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, "     \
                    "?17, ?18, ?19, ?20, ?21, ?22)")                                               \
    X(CONFLICTS_SINCE,                                                                             \
      AREAS_CTE "SELECT id, kind, entity, target, field, "                                         \
                "CASE WHEN resolved_at IS NULL THEN 'open' ELSE 'resolved' END, "                  \
                "resolved_value, rev FROM conflicts c WHERE rev > ?2 AND " IN_AREAS(               \
                    "c.area") " ORDER BY rev")                                                     \
    X(AUDIT_ADD, "INSERT INTO audit (at, action, actor, device_id, batch_hash, seq, entity, "      \
                 "target, field, old_value, new_value, rev) "                                      \
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)")                     \
    X(STATS, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM devices), "               \
             "(SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL), "                       \
             "(SELECT count(*) FROM household), (SELECT count(*) FROM member), "                   \
             "(SELECT count(*) FROM visit), (SELECT count(*) FROM photo), "                        \
             "(SELECT count(*) FROM batches WHERE state <> 'held'), "                              \
             "(SELECT count(*) FROM batches WHERE state = 'held'), "                               \
             "(SELECT count(*) FROM quarantine), "                                                 \
             "(SELECT count(*) FROM conflicts WHERE resolved_at IS NULL), "                        \
             "(SELECT count(*) FROM uploads WHERE state IN ('open', 'complete')), "                \
             "(SELECT value FROM meta WHERE key = 'revision')")

#define BATCH_COLS                                                                                 \
    "device_id, seq, hash, prev_hash, author_pk, approver_pk, area, state, bytes, review, "        \
    "receipt, received_at, ''"

enum {
#define X(id, sql) ST_##id,
    STATEMENTS(X)
#undef X
        ST__COUNT
};

static const char *const statement_sql[ST__COUNT] = {
#define X(id, sql) [ST_##id] = sql,
    STATEMENTS(X)
#undef X
};

typedef struct sq_storage {
    pd_storage base;
    sqlite3 *db;
    char *path;
    sqlite3_stmt *st[ST__COUNT];
    sqlite3_stmt *get_col[PD_ENT__COUNT][MAX_COLS];
    sqlite3_stmt *set_col[PD_ENT__COUNT][MAX_COLS];
    sqlite3_stmt *merge_col[PD_ENT__COUNT][MAX_COLS]; /* field_merge_read */
    sqlite3_stmt *row[PD_ENT__COUNT];
    /* record inserts, by their SQL (the set of columns given varies by caller) */
    struct {
        char *sql;
        sqlite3_stmt *st;
    } ins[16];

    /* the revision counter inside a transaction (sq_revision_next) */
    bool rev_held;  /* rev is meta's value plus what this transaction took since */
    bool rev_dirty; /* rev not yet written back to meta */
    int64_t rev;

    /* group commit (see the top of the file) */
    int deferred;               /* sync_defer depth; set and read under the caller's lock */
    _Atomic uint64_t committed; /* commits written to the WAL */
    _Atomic uint64_t synced;    /* commits known durable */
    pthread_mutex_t sync_mu;    /* one flush at a time; wal_fd */
    int wal_fd;                 /* -1 until the first flush */
    char *wal_path;
    _Atomic int wal_frames; /* frames in the WAL at the last commit */
    sqlite3 *ckpt_db;       /* the checkpointer's own connection */
    /* the checkpointer thread (started with the first sync_defer): ckpt_mu guards what follows */
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
    pthread_t ckpt_thread;
    _Atomic bool ckpt_running; /* (written under the caller's lock, read by flushes too) */
    bool ckpt_due, ckpt_stop;

    /* ko_prepare's statements */
    struct ko_stmt {
        const char *sql;
        sqlite3_stmt *st;
        bool out;
    } ko[KO_CACHE];

    bool reader;            /* a reader's connection (reader_open): query_only */
    _Atomic uint64_t reads; /* read_flush calls begun (on the writer's handle) */
    uint64_t reads_synced;  /* every read_flush up to this one is covered (under sync_mu) */
} sq_storage;

static sq_storage *SQ(pd_storage *st)
{
    return (sq_storage *)st;
}

static int sq_fail(sq_storage *s, int rc, const char *ctx)
{
    return pd_error_sqlite(&s->base.err, s->db, rc, ctx);
}

/* Get a fixed statement, reset and unbound. NULL (error set) if it cannot be prepared. */
static sqlite3_stmt *stmt(sq_storage *s, int id)
{
    if (!s->st[id]) {
        int rc = sqlite3_prepare_v3(s->db, statement_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->st[id], NULL);
        if (rc != SQLITE_OK) {
            sq_fail(s, rc, "preparing a storage statement");
            return NULL;
        }
    }
    sqlite3_reset(s->st[id]);
    sqlite3_clear_bindings(s->st[id]);
    return s->st[id];
}

/* Step a statement that returns no rows (or whose rows we ignore); map constraint failures. */
static int step_done(sq_storage *s, sqlite3_stmt *q, const char *ctx)
{
    int rc = sqlite3_step(q);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return PD_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        pd_error_sqlite(&s->base.err, s->db, rc, ctx);
        s->base.err.code = PD_ERR_EXISTS;
        return PD_ERR_EXISTS;
    }
    return sq_fail(s, rc, ctx);
}

static void bind_text(sqlite3_stmt *q, int i, const char *t)
{
    if (t)
        sqlite3_bind_text(q, i, t, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, i);
}

static void bind_blob(sqlite3_stmt *q, int i, const void *p, size_t n)
{
    if (p)
        sqlite3_bind_blob64(q, i, p, n, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(q, i);
}

static void bind_value(sqlite3_stmt *q, int i, const pd_value *v)
{
    if (!v) {
        sqlite3_bind_null(q, i);
        return;
    }
    switch (v->type) {
    case PD_VAL_INT:
        sqlite3_bind_int64(q, i, v->i);
        break;
    case PD_VAL_REAL:
        sqlite3_bind_double(q, i, v->r);
        break;
    case PD_VAL_TEXT:
        sqlite3_bind_text64(q, i, v->p ? (const char *)v->p : "", v->len, SQLITE_TRANSIENT,
                            SQLITE_UTF8);
        break;
    case PD_VAL_BLOB:
        sqlite3_bind_blob64(q, i, v->p ? (const void *)v->p : (const void *)"", v->len,
                            SQLITE_TRANSIENT);
        break;
    default:
        sqlite3_bind_null(q, i);
    }
}

/* A column as a pd_value pointing into the statement's memory. */
static pd_value column_value(sqlite3_stmt *q, int i)
{
    pd_value v = {0};
    switch (sqlite3_column_type(q, i)) {
    case SQLITE_INTEGER:
        v.type = PD_VAL_INT;
        v.i = sqlite3_column_int64(q, i);
        break;
    case SQLITE_FLOAT:
        v.type = PD_VAL_REAL;
        v.r = sqlite3_column_double(q, i);
        break;
    case SQLITE_TEXT:
        v.type = PD_VAL_TEXT;
        v.p = sqlite3_column_text(q, i);
        v.len = (size_t)sqlite3_column_bytes(q, i);
        break;
    case SQLITE_BLOB:
        v.type = PD_VAL_BLOB;
        v.p = sqlite3_column_blob(q, i);
        v.len = (size_t)sqlite3_column_bytes(q, i);
        break;
    default:
        v.type = PD_VAL_NULL;
    }
    return v;
}

static void copy_text(char *dst, size_t cap, sqlite3_stmt *q, int i)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static bool copy_blob(uint8_t *dst, size_t n, sqlite3_stmt *q, int i)
{
    if (sqlite3_column_type(q, i) != SQLITE_BLOB || (size_t)sqlite3_column_bytes(q, i) != n)
        return false;
    memcpy(dst, sqlite3_column_blob(q, i), n);
    return true;
}

static uint8_t *dup_blob(sqlite3_stmt *q, int i, size_t *len)
{
    *len = 0;
    if (sqlite3_column_type(q, i) != SQLITE_BLOB)
        return NULL;
    size_t n = (size_t)sqlite3_column_bytes(q, i);
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, sqlite3_column_blob(q, i), n);
    *len = n;
    return p;
}

/* ---- durability (group commit) --------------------------------------------------------------- */

/* fdatasync the WAL (our own descriptor of it: fsync is per file, so it covers SQLite's writes).
 * A WAL that is not there holds nothing: the checkpoint that removed it synced the database. */
static int wal_fsync(sq_storage *s)
{
    struct stat now, held;
    if (stat(s->wal_path, &now) != 0)
        return errno == ENOENT ? PD_OK : PD_ERR_IO;
    if (s->wal_fd >= 0 &&
        (fstat(s->wal_fd, &held) != 0 || held.st_ino != now.st_ino || held.st_dev != now.st_dev)) {
        close(s->wal_fd);
        s->wal_fd = -1;
    }
    if (s->wal_fd < 0)
        s->wal_fd = open(s->wal_path, O_RDONLY | O_CLOEXEC);
    if (s->wal_fd < 0)
        return errno == ENOENT ? PD_OK : PD_ERR_IO;
    return fdatasync(s->wal_fd) == 0 ? PD_OK : PD_ERR_IO;
}

/* Copy the WAL into the database (what SQLite's auto-checkpoint would do once it is long), on a
 * connection of its own: a PASSIVE checkpoint runs beside the writer, so its page copies and
 * fsyncs are not made under the caller's lock. Run by the checkpointer thread while the server
 * defers commits, else by the flush (under sync_mu). */
static void wal_checkpoint(sq_storage *s)
{
    if (!s->ckpt_db &&
        sqlite3_open_v2(s->path, &s->ckpt_db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK) {
        sqlite3_close(s->ckpt_db);
        s->ckpt_db = NULL;
        return; /* the WAL grows till a later try; nothing is lost */
    }
    if (sqlite3_wal_checkpoint_v2(s->ckpt_db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) ==
        SQLITE_OK)
        atomic_store(&s->wal_frames, 0);
}

/* Make every commit counted so far durable; callers that arrive while a flush runs wait for it
 * and usually find their commit covered by it. No message on the handle (no lock held). */
static int wal_flush(sq_storage *s)
{
    uint64_t want = atomic_load(&s->committed);
    if (atomic_load(&s->synced) >= want)
        return PD_OK;
    int rc = PD_OK;
    pthread_mutex_lock(&s->sync_mu);
    if (atomic_load(&s->synced) < want) {
        uint64_t upto = atomic_load(&s->committed);
        rc = wal_fsync(s);
        if (rc == PD_OK) {
            atomic_store(&s->synced, upto);
            if (!s->ckpt_running && atomic_load(&s->wal_frames) >= WAL_CHECKPOINT_FRAMES)
                wal_checkpoint(s);
        }
    }
    pthread_mutex_unlock(&s->sync_mu);
    return rc;
}

/* SQLite calls this after each commit is written to the WAL (under the caller's lock). */
static int on_wal_commit(void *ctx, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    sq_storage *s = ctx;
    atomic_store(&s->wal_frames, frames);
    atomic_fetch_add(&s->committed, 1);
    if (s->ckpt_running && frames >= WAL_CHECKPOINT_FRAMES) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_due = true;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
    }
    if (!s->deferred && wal_flush(s) != PD_OK)
        return SQLITE_IOERR_FSYNC; /* the commit stands, but its caller hears it is not durable */
    return SQLITE_OK;
}

/* The checkpointer: waits till a commit finds the WAL long, checkpoints, waits again. A request
 * that made the WAL long does not wait for the copy. */
static void *checkpointer(void *arg)
{
    sq_storage *s = arg;
    pthread_mutex_lock(&s->ckpt_mu);
    for (;;) {
        while (!s->ckpt_due && !s->ckpt_stop)
            pthread_cond_wait(&s->ckpt_cv, &s->ckpt_mu);
        if (s->ckpt_stop)
            break;
        s->ckpt_due = false;
        pthread_mutex_unlock(&s->ckpt_mu);
        wal_checkpoint(s);
        pthread_mutex_lock(&s->ckpt_mu);
    }
    pthread_mutex_unlock(&s->ckpt_mu);
    return NULL;
}

static int sq_sync_defer(pd_storage *st, bool on)
{
    sq_storage *s = SQ(st);
    s->deferred += on ? 1 : s->deferred > 0 ? -1 : 0;
    /* (if the thread cannot start, the flush checkpoints as before) */
    if (on && !s->ckpt_running)
        s->ckpt_running = pthread_create(&s->ckpt_thread, NULL, checkpointer, s) == 0;
    return PD_OK;
}

static int sq_sync_flush(pd_storage *st)
{
    return wal_flush(SQ(st));
}

/* After a reader's read: everything it saw is in the WAL file already (SQLite writes the frames
 * before it publishes the commit), so one fdatasync begun after the read covers it. A flush that
 * began after this call did covers it too: callers waiting on sync_mu usually find themselves
 * covered by the one before them. */
static int sq_read_flush(pd_storage *st)
{
    sq_storage *s = SQ(st);
    uint64_t mine = atomic_fetch_add(&s->reads, 1) + 1;
    int rc = PD_OK;
    pthread_mutex_lock(&s->sync_mu);
    if (s->reads_synced < mine) {
        uint64_t upto = atomic_load(&s->reads), commits = atomic_load(&s->committed);
        rc = wal_fsync(s);
        if (rc == PD_OK) {
            s->reads_synced = upto;
            if (atomic_load(&s->synced) < commits)
                atomic_store(&s->synced, commits);
        }
    }
    pthread_mutex_unlock(&s->sync_mu);
    return rc;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

static void sq_close(pd_storage *st)
{
    sq_storage *s = SQ(st);
    if (s->ckpt_running) {
        pthread_mutex_lock(&s->ckpt_mu);
        s->ckpt_stop = true;
        pthread_cond_signal(&s->ckpt_cv);
        pthread_mutex_unlock(&s->ckpt_mu);
        pthread_join(s->ckpt_thread, NULL);
        s->ckpt_running = false;
    }
    wal_flush(s);
    sqlite3_close(s->ckpt_db); /* before the main one: the last to close checkpoints the WAL */
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(s->st[i]);
    for (int e = 0; e < PD_ENT__COUNT; e++) {
        for (int c = 0; c < MAX_COLS; c++) {
            sqlite3_finalize(s->get_col[e][c]);
            sqlite3_finalize(s->set_col[e][c]);
            sqlite3_finalize(s->merge_col[e][c]);
        }
        sqlite3_finalize(s->row[e]);
    }
    for (size_t i = 0; i < PD_ARRAY_LEN(s->ins); i++) {
        sqlite3_finalize(s->ins[i].st);
        free(s->ins[i].sql);
    }
    for (int i = 0; i < KO_CACHE; i++)
        sqlite3_finalize(s->ko[i].st);
    sqlite3_close(s->db);
    if (s->wal_fd >= 0)
        close(s->wal_fd);
    pthread_mutex_destroy(&s->sync_mu);
    pthread_mutex_destroy(&s->ckpt_mu);
    pthread_cond_destroy(&s->ckpt_cv);
    free(s->wal_path);
    free(s->path);
    free(s);
}

static int sq_exec(sq_storage *s, const char *sql, const char *ctx)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? PD_OK : sq_fail(s, rc, ctx);
}

static void rev_forget(sq_storage *s)
{
    s->rev_held = s->rev_dirty = false;
}

/* Write the transaction's revision counter back to meta (before COMMIT, or a read of meta). */
static int rev_store(sq_storage *s)
{
    if (!s->rev_dirty)
        return PD_OK;
    sqlite3_stmt *q = stmt(s, ST_REV_SET);
    if (!q)
        return s->base.err.code;
    sqlite3_bind_int64(q, 1, s->rev);
    int rc = step_done(s, q, "storing the revision");
    if (rc == PD_OK)
        s->rev_dirty = false;
    return rc;
}

static int sq_begin(pd_storage *st)
{
    sq_storage *s = SQ(st);
    if (sqlite3_get_autocommit(s->db)) /* (not when BEGIN will fail inside a transaction) */
        rev_forget(s);
    /* a reader's transaction only reads: one snapshot, no write lock */
    return sq_exec(s, s->reader ? "BEGIN" : "BEGIN IMMEDIATE", "starting a transaction");
}

static int sq_commit(pd_storage *st)
{
    sq_storage *s = SQ(st);
    int rc = rev_store(s);
    rev_forget(s);
    if (rc == PD_OK)
        rc = sq_exec(s, "COMMIT", "committing");
    if (rc != PD_OK && !sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void sq_rollback(pd_storage *st)
{
    sq_storage *s = SQ(st);
    rev_forget(s);
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

/* ---- revision ----------------------------------------------------------------------------- */

static int sq_int_query(sq_storage *s, int id, int64_t *out, const char *ctx)
{
    sqlite3_stmt *q = stmt(s, id);
    if (!q)
        return s->base.err.code;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(q, 0);
        sqlite3_reset(q);
        return PD_OK;
    }
    sqlite3_reset(q);
    return sq_fail(s, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, ctx);
}

/* Inside a transaction (which holds the write lock: BEGIN IMMEDIATE) the first revision is
 * taken from meta and the rest counted here, written back once before COMMIT: an applied batch
 * takes a revision per change, and one UPDATE of meta per change was a statement per op. */
static int sq_revision_next(pd_storage *st, int64_t *rev)
{
    sq_storage *s = SQ(st);
    bool in_txn = !sqlite3_get_autocommit(s->db);
    if (s->rev_held && in_txn) {
        *rev = ++s->rev;
        s->rev_dirty = true;
        return PD_OK;
    }
    rev_forget(s);
    int rc = sq_int_query(s, ST_REV_NEXT, rev, "taking the next revision");
    if (rc == PD_OK && in_txn) {
        s->rev = *rev;
        s->rev_held = true;
    }
    return rc;
}

static int sq_revision_current(pd_storage *st, int64_t *rev)
{
    sq_storage *s = SQ(st);
    if (s->rev_held && !sqlite3_get_autocommit(s->db)) {
        *rev = s->rev;
        return PD_OK;
    }
    return sq_int_query(s, ST_REV_CUR, rev, "reading the revision");
}

/* ---- users, keys, devices, codes ------------------------------------------------------------ */

static int sq_user_add(pd_storage *st, const pd_srv_user *u)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_USER_ADD);
    if (!q)
        return st->err.code;
    bind_text(q, 1, u->id);
    bind_text(q, 2, u->role);
    bind_text(q, 3, u->name);
    bind_text(q, 4, u->area);
    bind_text(q, 5, u->supervisor_id);
    sqlite3_bind_int64(q, 6, u->created_at);
    int rc = step_done(s, q, "adding a user");
    if (rc == PD_ERR_EXISTS)
        pd_error_set(&st->err, PD_ERR_EXISTS,
                     "user %s already exists (or its supervisor %s "
                     "does not)",
                     u->id, u->supervisor_id[0] ? u->supervisor_id : "-");
    return rc;
}

static void read_user(sqlite3_stmt *q, pd_srv_user *u)
{
    memset(u, 0, sizeof *u);
    copy_text(u->id, sizeof u->id, q, 0);
    copy_text(u->role, sizeof u->role, q, 1);
    copy_text(u->name, sizeof u->name, q, 2);
    copy_text(u->area, sizeof u->area, q, 3);
    copy_text(u->supervisor_id, sizeof u->supervisor_id, q, 4);
    u->created_at = sqlite3_column_int64(q, 5);
}

static int sq_user_get(pd_storage *st, const char *id, pd_srv_user *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_USER_GET);
    if (!q)
        return st->err.code;
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        read_user(q, out);
        sqlite3_reset(q);
        return PD_OK;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no user %s", id);
    return sq_fail(s, rc, "reading a user");
}

static int sq_users_supervised(pd_storage *st, const char *sup, pd_storage_user_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_USERS_SUP);
    if (!q)
        return st->err.code;
    bind_text(q, 1, sup);
    int rc, stop = 0;
    pd_srv_user u;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        read_user(q, &u);
        if ((stop = cb(ctx, &u)) != 0)
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing supervised users");
}

static int sq_person_key_add(pd_storage *st, const pd_srv_person_key *k)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_PKEY_ADD);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, k->pk, PD_PUBKEY_BYTES);
    bind_text(q, 2, k->user_id);
    bind_text(q, 3, k->device_id);
    sqlite3_bind_int64(q, 4, k->added_at);
    sqlite3_bind_int64(q, 5, k->rev);
    return step_done(s, q, "adding a person key");
}

static void read_key(sqlite3_stmt *q, pd_srv_person_key *k)
{
    memset(k, 0, sizeof *k);
    copy_blob(k->pk, PD_PUBKEY_BYTES, q, 0);
    copy_text(k->user_id, sizeof k->user_id, q, 1);
    copy_text(k->device_id, sizeof k->device_id, q, 2);
    k->added_at = sqlite3_column_int64(q, 3);
    k->rev = sqlite3_column_int64(q, 4);
}

static int sq_person_key_get(pd_storage *st, const uint8_t pk[PD_PUBKEY_BYTES],
                             pd_srv_person_key *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_PKEY_GET);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, pk, PD_PUBKEY_BYTES);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        read_key(q, out);
        sqlite3_reset(q);
        return PD_OK;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no enrolled person has this key");
    return sq_fail(s, rc, "reading a person key");
}

static int sq_person_keys_of(pd_storage *st, const char *user_id, pd_storage_key_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_PKEYS_OF);
    if (!q)
        return st->err.code;
    bind_text(q, 1, user_id);
    int rc, stop = 0;
    pd_srv_person_key k;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        read_key(q, &k);
        if ((stop = cb(ctx, &k)) != 0)
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing person keys");
}

static int sq_device_add(pd_storage *st, const pd_srv_device *d)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_DEV_ADD);
    if (!q)
        return st->err.code;
    bind_text(q, 1, d->id);
    bind_text(q, 2, d->user_id);
    bind_blob(q, 3, d->pk, PD_PUBKEY_BYTES);
    sqlite3_bind_int64(q, 4, d->enrolled_at);
    return step_done(s, q, "adding a device");
}

static int sq_device_get(pd_storage *st, const char *id, pd_srv_device *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_DEV_GET);
    if (!q)
        return st->err.code;
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        copy_text(out->id, sizeof out->id, q, 0);
        copy_text(out->user_id, sizeof out->user_id, q, 1);
        copy_blob(out->pk, PD_PUBKEY_BYTES, q, 2);
        out->enrolled_at = sqlite3_column_int64(q, 3);
        out->revoked_at = sqlite3_column_int64(q, 4);
        sqlite3_reset(q);
        return PD_OK;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no device %s", id);
    return sq_fail(s, rc, "reading a device");
}

static int sq_device_revoke(pd_storage *st, const char *id, int64_t at)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_DEV_REVOKE);
    if (!q)
        return st->err.code;
    bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, at);
    int rc = step_done(s, q, "revoking a device");
    if (rc != PD_OK)
        return rc;
    if (sqlite3_changes(s->db) == 0) {
        pd_srv_device d;
        rc = sq_device_get(st, id, &d);
        if (rc != PD_OK)
            return rc;
        return pd_storage_fail(st, PD_ERR_STATE, "device %s is already revoked", id);
    }
    return PD_OK;
}

static int sq_code_add(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], const char *user_id,
                       int64_t created_at, int64_t expires_at)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_CODE_ADD);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, hash, PD_HASH_BYTES);
    bind_text(q, 2, user_id);
    sqlite3_bind_int64(q, 3, created_at);
    sqlite3_bind_int64(q, 4, expires_at);
    return step_done(s, q, "adding an enrolment code");
}

static int sq_code_take(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t now,
                        const char *device_id, pd_srv_code_state *state, char *user_id)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_CODE_GET);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, hash, PD_HASH_BYTES);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(q);
        *state = PD_CODE_UNKNOWN;
        return PD_OK;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(q);
        return sq_fail(s, rc, "reading an enrolment code");
    }
    copy_text(user_id, PD_SRV_ID_MAX + 1, q, 0);
    int64_t expires = sqlite3_column_int64(q, 1);
    bool used = sqlite3_column_type(q, 2) != SQLITE_NULL;
    sqlite3_reset(q);
    if (used) {
        *state = PD_CODE_USED;
        return PD_OK;
    }
    if (now >= expires) {
        *state = PD_CODE_EXPIRED;
        return PD_OK;
    }
    q = stmt(s, ST_CODE_USE);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, hash, PD_HASH_BYTES);
    sqlite3_bind_int64(q, 2, now);
    bind_text(q, 3, device_id);
    rc = step_done(s, q, "using an enrolment code");
    if (rc != PD_OK)
        return rc;
    *state = sqlite3_changes(s->db) == 1 ? PD_CODE_OK : PD_CODE_USED;
    return PD_OK;
}

/* ---- nonces -------------------------------------------------------------------------------- */

static int sq_nonce_add(pd_storage *st, const char *device_id, const uint8_t *nonce, size_t len,
                        int64_t at)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_NONCE_ADD);
    if (!q)
        return st->err.code;
    bind_text(q, 1, device_id);
    bind_blob(q, 2, nonce, len);
    sqlite3_bind_int64(q, 3, at);
    int rc = step_done(s, q, "recording a nonce");
    if (rc == PD_ERR_EXISTS)
        pd_storage_fail(st, PD_ERR_EXISTS, "nonce already used by device %s", device_id);
    return rc;
}

static int sq_nonce_seen(pd_storage *st, const char *device_id, const uint8_t *nonce, size_t len,
                         bool *seen)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_NONCE_SEEN);
    if (!q)
        return st->err.code;
    bind_text(q, 1, device_id);
    bind_blob(q, 2, nonce, len);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(s, rc, "looking up a nonce");
    *seen = rc == SQLITE_ROW;
    return PD_OK;
}

static int sq_nonce_purge(pd_storage *st, int64_t before)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_NONCE_PURGE);
    if (!q)
        return st->err.code;
    sqlite3_bind_int64(q, 1, before);
    return step_done(s, q, "purging old nonces");
}

/* ---- uploads and blobs ----------------------------------------------------------------------- */

static int sq_upload_add(pd_storage *st, const pd_srv_upload *u)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_UP_ADD);
    if (!q)
        return st->err.code;
    bind_text(q, 1, u->id);
    bind_text(q, 2, u->device_id);
    bind_text(q, 3, u->kind);
    sqlite3_bind_int64(q, 4, u->length);
    sqlite3_bind_int64(q, 5, u->acked);
    bind_blob(q, 6, u->has_photo_hash ? u->photo_hash : NULL, PD_HASH_BYTES);
    sqlite3_bind_int64(q, 7, u->created_at);
    sqlite3_bind_int64(q, 8, u->expires_at);
    bind_text(q, 9, u->state);
    return step_done(s, q, "adding an upload");
}

static int sq_upload_get(pd_storage *st, const char *id, pd_srv_upload *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_UP_GET);
    if (!q)
        return st->err.code;
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        copy_text(out->id, sizeof out->id, q, 0);
        copy_text(out->device_id, sizeof out->device_id, q, 1);
        copy_text(out->kind, sizeof out->kind, q, 2);
        out->length = sqlite3_column_int64(q, 3);
        out->acked = sqlite3_column_int64(q, 4);
        out->has_photo_hash = copy_blob(out->photo_hash, PD_HASH_BYTES, q, 5);
        out->created_at = sqlite3_column_int64(q, 6);
        out->expires_at = sqlite3_column_int64(q, 7);
        copy_text(out->state, sizeof out->state, q, 8);
        sqlite3_reset(q);
        return PD_OK;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no upload %s", id);
    return sq_fail(s, rc, "reading an upload");
}

static int sq_upload_update(pd_storage *st, const char *id, int64_t acked, int64_t expires_at,
                            const char *state)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_UP_UPDATE);
    if (!q)
        return st->err.code;
    bind_text(q, 1, id);
    sqlite3_bind_int64(q, 2, acked);
    sqlite3_bind_int64(q, 3, expires_at);
    bind_text(q, 4, state);
    int rc = step_done(s, q, "updating an upload");
    if (rc == PD_OK && sqlite3_changes(s->db) == 0)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no upload %s", id);
    return rc;
}

static int sq_upload_del(pd_storage *st, const char *id)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_UP_DEL);
    if (!q)
        return st->err.code;
    bind_text(q, 1, id);
    return step_done(s, q, "forgetting an upload");
}

static int sq_uploads_expired(pd_storage *st, int64_t now, pd_storage_id_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_UP_EXPIRED);
    if (!q)
        return st->err.code;
    sqlite3_bind_int64(q, 1, now);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        char id[PD_SRV_UPLOAD_ID_LEN + 1];
        copy_text(id, sizeof id, q, 0);
        if ((stop = cb(ctx, id)) != 0)
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing expired uploads");
}

static int sq_uploads_open_of(pd_storage *st, const char *device_id, int64_t now, int64_t *count,
                              int64_t *bytes, int64_t *first_expiry)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_UP_OPEN_OF);
    if (!q)
        return st->err.code;
    sqlite3_bind_text(q, 1, device_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 2, now);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        *count = sqlite3_column_int64(q, 0);
        *bytes = sqlite3_column_int64(q, 1);
        *first_expiry = sqlite3_column_int64(q, 2);
    }
    sqlite3_reset(q);
    return rc == SQLITE_ROW ? PD_OK : sq_fail(s, rc, "counting a device's open uploads");
}

static int sq_blob_get(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t *size)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BLOB_GET);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, hash, PD_HASH_BYTES);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *size = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    if (rc == SQLITE_ROW)
        return PD_OK;
    if (rc == SQLITE_DONE)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no such blob");
    return sq_fail(s, rc, "reading a blob");
}

static int sq_blob_add(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t size, int64_t at,
                       const char *device_id)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BLOB_ADD);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, hash, PD_HASH_BYTES);
    sqlite3_bind_int64(q, 2, size);
    sqlite3_bind_int64(q, 3, at);
    bind_text(q, 4, device_id);
    return step_done(s, q, "adding a blob");
}

/* ---- batches ------------------------------------------------------------------------------- */

/* Columns in BATCH_COLS order (13, the last the quarantine reason). */
static int read_batch(sq_storage *s, sqlite3_stmt *q, pd_srv_batch *b)
{
    memset(b, 0, sizeof *b);
    copy_text(b->device_id, sizeof b->device_id, q, 0);
    b->seq = sqlite3_column_int64(q, 1);
    copy_blob(b->hash, PD_HASH_BYTES, q, 2);
    copy_blob(b->prev_hash, PD_HASH_BYTES, q, 3);
    copy_blob(b->author_pk, PD_PUBKEY_BYTES, q, 4);
    b->has_approver = copy_blob(b->approver_pk, PD_PUBKEY_BYTES, q, 5);
    copy_text(b->area, sizeof b->area, q, 6);
    copy_text(b->state, sizeof b->state, q, 7);
    b->bytes = dup_blob(q, 8, &b->bytes_len);
    b->review = dup_blob(q, 9, &b->review_len);
    b->has_receipt = copy_blob(b->receipt, PD_RECEIPT_BYTES, q, 10);
    b->received_at = sqlite3_column_int64(q, 11);
    copy_text(b->reason, sizeof b->reason, q, 12);
    if ((sqlite3_column_type(q, 8) == SQLITE_BLOB && !b->bytes) ||
        (sqlite3_column_type(q, 9) == SQLITE_BLOB && !b->review)) {
        pd_srv_batch_clear(b);
        return pd_storage_fail(&s->base, PD_ERR_NOMEM, "out of memory reading a batch");
    }
    return PD_OK;
}

static int one_batch(sq_storage *s, sqlite3_stmt *q, pd_srv_batch *out, const char *what)
{
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        rc = read_batch(s, q, out);
        sqlite3_reset(q);
        return rc;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return pd_storage_fail(&s->base, PD_ERR_NOTFOUND, "no such batch (%s)", what);
    return sq_fail(s, rc, "reading a batch");
}

static int sq_batch_put(pd_storage *st, const pd_srv_batch *b)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BATCH_PUT);
    if (!q)
        return st->err.code;
    bind_text(q, 1, b->device_id);
    sqlite3_bind_int64(q, 2, b->seq);
    bind_blob(q, 3, b->hash, PD_HASH_BYTES);
    bind_blob(q, 4, b->prev_hash, PD_HASH_BYTES);
    bind_blob(q, 5, b->author_pk, PD_PUBKEY_BYTES);
    bind_blob(q, 6, b->has_approver ? b->approver_pk : NULL, PD_PUBKEY_BYTES);
    bind_text(q, 7, b->area);
    bind_text(q, 8, b->state);
    bind_blob(q, 9, b->bytes ? b->bytes : (const uint8_t *)"", b->bytes_len);
    bind_blob(q, 10, b->review, b->review_len);
    bind_blob(q, 11, b->has_receipt ? b->receipt : NULL, PD_RECEIPT_BYTES);
    sqlite3_bind_int64(q, 12, b->received_at);
    return step_done(s, q, "storing a batch");
}

static int sq_batch_get(pd_storage *st, const char *device_id, int64_t seq, pd_srv_batch *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BATCH_GET);
    if (!q)
        return st->err.code;
    bind_text(q, 1, device_id);
    sqlite3_bind_int64(q, 2, seq);
    return one_batch(s, q, out, "device and seq");
}

static int sq_batch_by_hash(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], pd_srv_batch *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BATCH_BY_HASH);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, hash, PD_HASH_BYTES);
    return one_batch(s, q, out, "hash");
}

static int sq_batch_last(pd_storage *st, const char *device_id, pd_srv_batch *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BATCH_LAST);
    if (!q)
        return st->err.code;
    bind_text(q, 1, device_id);
    return one_batch(s, q, out, "last of device");
}

static int sq_batch_set_state(pd_storage *st, const char *device_id, int64_t seq, const char *state,
                              const uint8_t receipt[PD_RECEIPT_BYTES], int64_t applied_at)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BATCH_SET);
    if (!q)
        return st->err.code;
    bind_text(q, 1, device_id);
    sqlite3_bind_int64(q, 2, seq);
    bind_text(q, 3, state);
    bind_blob(q, 4, receipt, PD_RECEIPT_BYTES);
    sqlite3_bind_int64(q, 5, applied_at);
    int rc = step_done(s, q, "updating a batch");
    if (rc == PD_OK && sqlite3_changes(s->db) == 0)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no batch %s/%lld", device_id, (long long)seq);
    return rc;
}

static int sq_batch_unhold(pd_storage *st, const char *device_id, int64_t seq)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BATCH_UNHOLD);
    if (!q)
        return st->err.code;
    bind_text(q, 1, device_id);
    sqlite3_bind_int64(q, 2, seq);
    int rc = step_done(s, q, "dropping a held batch");
    if (rc == PD_OK && sqlite3_changes(s->db) == 0)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no held batch %s/%lld", device_id,
                               (long long)seq);
    return rc;
}

static int sq_batches_of(pd_storage *st, const char *device_id, int64_t since,
                         pd_storage_batch_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_BATCHES_OF);
    if (!q)
        return st->err.code;
    bind_text(q, 1, device_id);
    sqlite3_bind_int64(q, 2, since);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_srv_batch b;
        if ((stop = read_batch(s, q, &b)) != PD_OK)
            break;
        stop = cb(ctx, &b);
        pd_srv_batch_clear(&b);
        if (stop)
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing batches");
}

static int sq_quarantine_put(pd_storage *st, const pd_srv_batch *b)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_Q_PUT);
    if (!q)
        return st->err.code;
    bind_text(q, 1, b->device_id);
    sqlite3_bind_int64(q, 2, b->seq);
    bind_blob(q, 3, b->hash, PD_HASH_BYTES);
    bind_blob(q, 4, b->prev_hash, PD_HASH_BYTES);
    bind_blob(q, 5, b->author_pk, PD_PUBKEY_BYTES);
    bind_blob(q, 6, b->bytes ? b->bytes : (const uint8_t *)"", b->bytes_len);
    bind_blob(q, 7, b->review, b->review_len);
    bind_text(q, 8, b->reason);
    bind_blob(q, 9, b->has_receipt ? b->receipt : NULL, PD_RECEIPT_BYTES);
    sqlite3_bind_int64(q, 10, b->received_at);
    return step_done(s, q, "quarantining a batch");
}

static int sq_quarantine_by_hash(pd_storage *st, const uint8_t hash[PD_HASH_BYTES],
                                 pd_srv_batch *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_Q_BY_HASH);
    if (!q)
        return st->err.code;
    bind_blob(q, 1, hash, PD_HASH_BYTES);
    return one_batch(s, q, out, "quarantine");
}

static int sq_result_put(pd_storage *st, const char *upload_id, const pd_srv_result *r)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_RES_PUT);
    if (!q)
        return st->err.code;
    bind_text(q, 1, upload_id);
    sqlite3_bind_int(q, 2, r->idx);
    bind_text(q, 3, r->device_id);
    sqlite3_bind_int64(q, 4, r->seq);
    bind_blob(q, 5, r->hash, PD_HASH_BYTES);
    bind_text(q, 6, r->status);
    sqlite3_bind_int(q, 7, r->again ? 1 : 0);
    bind_text(q, 8, r->error[0] ? r->error : NULL);
    bind_text(q, 9, r->message[0] ? r->message : NULL);
    return step_done(s, q, "storing an upload result");
}

static int sq_results_of(pd_storage *st, const char *upload_id, pd_storage_result_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_RES_OF);
    if (!q)
        return st->err.code;
    bind_text(q, 1, upload_id);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_srv_result r;
        memset(&r, 0, sizeof r);
        r.idx = sqlite3_column_int(q, 0);
        copy_text(r.device_id, sizeof r.device_id, q, 1);
        r.seq = sqlite3_column_int64(q, 2);
        copy_blob(r.hash, PD_HASH_BYTES, q, 3);
        copy_text(r.status, sizeof r.status, q, 4);
        r.again = sqlite3_column_int(q, 5) != 0;
        copy_text(r.error, sizeof r.error, q, 6);
        copy_text(r.message, sizeof r.message, q, 7);
        if ((stop = cb(ctx, &r)) != 0)
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing upload results");
}

/* ---- records ------------------------------------------------------------------------------ */

/* The name of an entity's id column (photo: hash). */
static const char *id_col(pd_entity e)
{
    size_t n;
    return pd_entity_columns(e, &n)[0].name;
}

static bool valid_column(pd_entity e, int col)
{
    size_t n;
    pd_entity_columns(e, &n);
    return col >= 0 && (size_t)col < n && col < MAX_COLS;
}

/* Prepare a statement built from static names (entity and column names of records.c). */
static sqlite3_stmt *prepare_built(sq_storage *s, sqlite3_stmt **slot, const char *sql)
{
    if (!*slot) {
        int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL);
        if (rc != SQLITE_OK) {
            sq_fail(s, rc, "preparing a record statement");
            return NULL;
        }
    }
    sqlite3_reset(*slot);
    sqlite3_clear_bindings(*slot);
    return *slot;
}

static int sq_record_rev(pd_storage *st, pd_entity e, const char *id, int64_t *rev)
{
    sq_storage *s = SQ(st);
    int col = pd_entity_column(e, "rev");
    if (!valid_column(e, col))
        return pd_storage_fail(st, PD_ERR_INTERNAL, "entity %d has no rev", (int)e);
    pd_srv_value v = {0};
    int rc = st->ops->field_get(st, e, id, col, &v);
    if (rc == PD_OK)
        *rev = v.v.i;
    pd_srv_value_clear(&v);
    (void)s;
    return rc;
}

/* Column i of the current row as a value of the caller's own (before the statement resets). */
static int take_value(sq_storage *s, sqlite3_stmt *q, int i, pd_srv_value *out)
{
    memset(out, 0, sizeof *out);
    out->v = column_value(q, i);
    if (out->v.type == PD_VAL_TEXT || out->v.type == PD_VAL_BLOB) {
        out->buf = malloc(out->v.len + 1);
        if (!out->buf) {
            memset(out, 0, sizeof *out);
            return pd_storage_fail(&s->base, PD_ERR_NOMEM, "out of memory reading a field");
        }
        if (out->v.len)
            memcpy(out->buf, out->v.p, out->v.len);
        out->buf[out->v.len] = 0;
        out->v.p = out->buf;
    }
    return PD_OK;
}

static int sq_field_get(pd_storage *st, pd_entity e, const char *id, int col, pd_srv_value *out)
{
    sq_storage *s = SQ(st);
    memset(out, 0, sizeof *out);
    if (!valid_column(e, col))
        return pd_storage_fail(st, PD_ERR_INTERNAL, "bad column %d of %s", col,
                               pd_entity_name(e) ? pd_entity_name(e) : "?");
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE %s = ?1", cols[col].name, pd_entity_name(e),
             id_col(e));
    sqlite3_stmt *q = prepare_built(s, &s->get_col[e][col], sql);
    if (!q)
        return st->err.code;
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(q);
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(q);
        return sq_fail(s, rc, "reading a field");
    }
    rc = take_value(s, q, 0, out);
    sqlite3_reset(q);
    return rc;
}

static int put_change(sq_storage *s, pd_entity e, const char *id, const char *field,
                      const pd_srv_change *ch)
{
    sqlite3_stmt *q = stmt(s, ST_FCH_PUT);
    if (!q)
        return s->base.err.code;
    bind_text(q, 1, pd_entity_name(e));
    bind_text(q, 2, id);
    bind_text(q, 3, field);
    sqlite3_bind_int64(q, 4, ch->rev);
    bind_text(q, 5, ch->device_id[0] ? ch->device_id : NULL);
    bind_blob(q, 6, ch->has_author ? ch->author_pk : NULL, PD_PUBKEY_BYTES);
    sqlite3_bind_int64(q, 7, ch->seq);
    sqlite3_bind_int64(q, 8, ch->hlc);
    bind_blob(q, 9, ch->has_batch ? ch->batch_hash : NULL, PD_HASH_BYTES);
    return step_done(s, q, "recording a field change");
}

static int sq_field_set(pd_storage *st, pd_entity e, const char *id, int col, const pd_value *v,
                        const pd_srv_change *ch)
{
    sq_storage *s = SQ(st);
    if (!valid_column(e, col))
        return pd_storage_fail(st, PD_ERR_INTERNAL, "bad column %d", col);
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE %s SET %s = ?1, rev = max(rev, ?2) WHERE %s = ?3",
             pd_entity_name(e), cols[col].name, id_col(e));
    sqlite3_stmt *q = prepare_built(s, &s->set_col[e][col], sql);
    if (!q)
        return st->err.code;
    bind_value(q, 1, v);
    sqlite3_bind_int64(q, 2, ch->rev);
    bind_text(q, 3, id);
    int rc = step_done(s, q, "setting a field");
    if (rc == PD_ERR_EXISTS)
        return pd_storage_fail(st, PD_ERR_INVALID, "%s %s: value refused for %s: %s",
                               pd_entity_name(e), id, cols[col].name, sqlite3_errmsg(s->db));
    if (rc != PD_OK)
        return rc;
    if (sqlite3_changes(s->db) == 0)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    return put_change(s, e, id, cols[col].name, ch);
}

/* A field_rev row (rev, device_id, author_pk, seq, hlc, batch_hash) from column i on. */
static void read_change(sqlite3_stmt *q, int i, pd_srv_change *out)
{
    memset(out, 0, sizeof *out);
    out->rev = sqlite3_column_int64(q, i);
    copy_text(out->device_id, sizeof out->device_id, q, i + 1);
    out->has_author = copy_blob(out->author_pk, PD_PUBKEY_BYTES, q, i + 2);
    out->seq = sqlite3_column_int64(q, i + 3);
    out->hlc = sqlite3_column_int64(q, i + 4);
    out->has_batch = copy_blob(out->batch_hash, PD_HASH_BYTES, q, i + 5);
}

static int sq_field_change(pd_storage *st, pd_entity e, const char *id, int col, pd_srv_change *out)
{
    sq_storage *s = SQ(st);
    if (!valid_column(e, col))
        return pd_storage_fail(st, PD_ERR_INTERNAL, "bad column %d", col);
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    sqlite3_stmt *q = stmt(s, ST_FCH_GET);
    if (!q)
        return st->err.code;
    bind_text(q, 1, pd_entity_name(e));
    bind_text(q, 2, id);
    bind_text(q, 3, cols[col].name);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        read_change(q, 0, out);
        sqlite3_reset(q);
        return PD_OK;
    }
    sqlite3_reset(q);
    if (rc == SQLITE_DONE)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "field never changed");
    return sq_fail(s, rc, "reading a field change");
}

static int sq_changed_elsewhere(pd_storage *st, pd_entity e, const char *id, int64_t rev,
                                const char *device_id, bool *changed)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_FCH_OTHER);
    if (!q)
        return st->err.code;
    bind_text(q, 1, pd_entity_name(e));
    bind_text(q, 2, id);
    sqlite3_bind_int64(q, 3, rev);
    bind_text(q, 4, device_id);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(s, rc, "reading a record's changes");
    *changed = rc == SQLITE_ROW;
    return PD_OK;
}

/* One statement for the four reads of a merge (storage.h): the row (with its household's desa),
 * the field's last change (a LEFT JOIN: none if it never changed) and whether another device
 * changed the record since the base — one B-tree descent each instead of four statements. */
static int sq_field_merge_read(pd_storage *st, pd_entity e, const char *id, int col,
                               int64_t base_rev, const char *device_id, pd_srv_merge_read *out)
{
    sq_storage *s = SQ(st);
    memset(out, 0, sizeof *out);
    if ((e != PD_ENT_HOUSEHOLD && e != PD_ENT_MEMBER) || !valid_column(e, col))
        return pd_storage_fail(st, PD_ERR_INTERNAL, "bad column %d of %s", col,
                               pd_entity_name(e) ? pd_entity_name(e) : "?");
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    char sql[768];
    snprintf(sql, sizeof sql,
             "SELECT r.%s, %s, f.rev, f.device_id, f.author_pk, f.seq, f.hlc, f.batch_hash, "
             "EXISTS (SELECT 1 FROM field_rev o WHERE o.entity = ?1 AND o.target = ?2 "
             "AND o.rev > ?4 AND (o.device_id IS NULL OR o.device_id <> ?5)) "
             "FROM %s r %s LEFT JOIN field_rev f ON f.entity = ?1 AND f.target = ?2 "
             "AND f.field = ?3 WHERE r.id = ?2",
             cols[col].name, e == PD_ENT_MEMBER ? "h.desa" : "r.desa", pd_entity_name(e),
             e == PD_ENT_MEMBER ? "JOIN household h ON h.id = r.household_id" : "");
    sqlite3_stmt *q = prepare_built(s, &s->merge_col[e][col], sql);
    if (!q)
        return st->err.code;
    bind_text(q, 1, pd_entity_name(e));
    bind_text(q, 2, id);
    bind_text(q, 3, cols[col].name);
    sqlite3_bind_int64(q, 4, base_rev);
    bind_text(q, 5, device_id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(q);
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(q);
        return sq_fail(s, rc, "reading a field to merge");
    }
    copy_text(out->desa, sizeof out->desa, q, 1);
    out->has_last = sqlite3_column_type(q, 2) != SQLITE_NULL;
    if (out->has_last)
        read_change(q, 2, &out->last);
    out->changed_elsewhere = sqlite3_column_int(q, 8) != 0;
    rc = take_value(s, q, 0, &out->value);
    sqlite3_reset(q);
    return rc;
}

static int sq_record_insert(pd_storage *st, pd_entity e, const pd_srv_field *fields, size_t n,
                            int64_t rev)
{
    sq_storage *s = SQ(st);
    size_t ncols;
    const pd_column *cols = pd_entity_columns(e, &ncols);
    if (!cols || n == 0 || n > ncols)
        return pd_storage_fail(st, PD_ERR_INVALID, "record insert: bad field list");
    int revcol = pd_entity_column(e, "rev");
    /* Column names come from the static table: map each field to its column first. */
    int idx[MAX_COLS];
    char sql[2048];
    size_t len = (size_t)snprintf(sql, sizeof sql, "INSERT INTO %s (rev", pd_entity_name(e));
    for (size_t i = 0; i < n; i++) {
        int c = pd_entity_column(e, fields[i].name);
        if (c < 0 || c == revcol)
            return pd_storage_fail(st, PD_ERR_INVALID, "%s has no settable column '%s'",
                                   pd_entity_name(e), fields[i].name ? fields[i].name : "");
        for (size_t j = 0; j < i; j++)
            if (idx[j] == c)
                return pd_storage_fail(st, PD_ERR_INVALID, "%s: column '%s' given twice",
                                       pd_entity_name(e), cols[c].name);
        idx[i] = c;
        len += (size_t)snprintf(sql + len, sizeof sql - len, ", %s", cols[c].name);
    }
    len += (size_t)snprintf(sql + len, sizeof sql - len, ") VALUES (?1");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(sql + len, sizeof sql - len, ", ?%zu", i + 2);
    snprintf(sql + len, sizeof sql - len, ")");
    sqlite3_stmt *q = NULL;
    size_t slot = 0;
    for (; slot < PD_ARRAY_LEN(s->ins) && s->ins[slot].sql; slot++)
        if (!strcmp(s->ins[slot].sql, sql))
            break;
    if (slot < PD_ARRAY_LEN(s->ins) && s->ins[slot].sql) {
        q = s->ins[slot].st;
        sqlite3_reset(q);
        sqlite3_clear_bindings(q);
    } else {
        int prc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &q, NULL);
        if (prc != SQLITE_OK)
            return sq_fail(s, prc, "preparing a record insert");
        if (slot == PD_ARRAY_LEN(s->ins)) { /* full: replace the oldest */
            slot = 0;
            sqlite3_finalize(s->ins[0].st);
            free(s->ins[0].sql);
            s->ins[0].sql = NULL;
        }
        s->ins[slot].sql = strdup(sql);
        if (!s->ins[slot].sql) {
            sqlite3_finalize(q);
            return pd_storage_fail(st, PD_ERR_NOMEM, "out of memory");
        }
        s->ins[slot].st = q;
    }
    int rc;
    sqlite3_bind_int64(q, 1, rev);
    for (size_t i = 0; i < n; i++)
        bind_value(q, (int)i + 2, &fields[i].value);
    rc = sqlite3_step(q);
    int out = PD_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        out = pd_storage_fail(st,
                              rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE
                                  ? PD_ERR_EXISTS
                                  : PD_ERR_INVALID,
                              "%s: %s", pd_entity_name(e), sqlite3_errmsg(s->db));
    } else if (rc != SQLITE_DONE) {
        out = sq_fail(s, rc, "inserting a record");
    }
    sqlite3_reset(q);
    return out;
}

static int sq_record_area(pd_storage *st, pd_entity e, const char *id, char *desa)
{
    sq_storage *s = SQ(st);
    static const int ids[PD_ENT__COUNT] = {ST_AREA_HH, ST_AREA_MEMBER, ST_AREA_VISIT,
                                           ST_AREA_PHOTO};
    if ((unsigned)e >= PD_ENT__COUNT)
        return pd_storage_fail(st, PD_ERR_INTERNAL, "bad entity");
    sqlite3_stmt *q = stmt(s, ids[e]);
    if (!q)
        return st->err.code;
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        copy_text(desa, PD_SRV_CODE_MAX + 1, q, 0);
    sqlite3_reset(q);
    if (rc == SQLITE_ROW)
        return PD_OK;
    if (rc == SQLITE_DONE)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    return sq_fail(s, rc, "reading a record's area");
}

static int pairs(sq_storage *s, int id, const char *key, pd_storage_pair_cb cb, void *ctx,
                 const char *what)
{
    sqlite3_stmt *q = stmt(s, id);
    if (!q)
        return s->base.err.code;
    bind_text(q, 1, key);
    int rc, stop = 0, ncol = sqlite3_column_count(q);
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *a = (const char *)sqlite3_column_text(q, 0);
        const char *b = (const char *)sqlite3_column_text(q, 1);
        const char *c = ncol > 2 ? (const char *)sqlite3_column_text(q, 2) : NULL;
        if ((stop = cb(ctx, a ? a : "", b ? b : "", c)) != 0)
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, what);
}

static int sq_nik_holders(pd_storage *st, const char *nik, pd_storage_pair_cb cb, void *ctx)
{
    return pairs(SQ(st), ST_NIK_HOLDERS, nik, cb, ctx, "looking up a NIK");
}

static int sq_visits_of(pd_storage *st, const char *household_id, pd_storage_pair_cb cb, void *ctx)
{
    return pairs(SQ(st), ST_VISITS_OF, household_id, cb, ctx, "listing visits");
}

/* Read one whole row of entity e by id and hand it to cb. */
static int emit_row(sq_storage *s, pd_entity e, const char *id, pd_storage_row_cb cb, void *ctx)
{
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    if (!s->row[e]) {
        char sql[2048];
        size_t len = (size_t)snprintf(sql, sizeof sql, "SELECT ");
        for (size_t i = 0; i < n; i++)
            len +=
                (size_t)snprintf(sql + len, sizeof sql - len, "%s%s", i ? ", " : "", cols[i].name);
        snprintf(sql + len, sizeof sql - len, " FROM %s WHERE %s = ?1", pd_entity_name(e),
                 cols[0].name);
        if (!prepare_built(s, &s->row[e], sql))
            return s->base.err.code;
    }
    sqlite3_stmt *q = s->row[e];
    sqlite3_reset(q);
    bind_text(q, 1, id);
    int rc = sqlite3_step(q);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(q);
        return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "reading a record");
    }
    pd_srv_field f[MAX_COLS];
    for (size_t i = 0; i < n && i < MAX_COLS; i++) {
        f[i].name = cols[i].name;
        f[i].value = column_value(q, (int)i);
    }
    int stop = cb(ctx, e, f, n);
    sqlite3_reset(q);
    return stop;
}

static int sq_records_since(pd_storage *st, const char *areas, int64_t since, int64_t limit,
                            pd_storage_row_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    /* Collect (entity, id) first: emit_row uses other statements while this one is live, which
     * is fine in SQLite, but the ids must outlive the step. */
    sqlite3_stmt *q = stmt(s, ST_SINCE);
    if (!q)
        return st->err.code;
    bind_text(q, 1, areas);
    sqlite3_bind_int64(q, 2, since);
    sqlite3_bind_int64(q, 3, limit);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_entity e = sqlite3_column_int(q, 0) == 0 ? PD_ENT_HOUSEHOLD : PD_ENT_MEMBER;
        char id[256];
        copy_text(id, sizeof id, q, 1);
        if ((stop = emit_row(s, e, id, cb, ctx)) != 0)
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing changed records");
}

/* Read a whole list of ids first (a statement's row must not be held across emit_row's own
 * statement use of the same prepared statement); ids are small. */
typedef struct idlist {
    char **v;
    size_t n, cap;
} idlist;

static void idlist_free(idlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int collect_ids(sq_storage *s, sqlite3_stmt *q, idlist *l, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (l->n == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 256;
            char **nv = realloc(l->v, cap * sizeof *nv);
            if (!nv)
                goto nomem;
            l->v = nv;
            l->cap = cap;
        }
        const char *t = (const char *)sqlite3_column_text(q, 0);
        if (!(l->v[l->n] = strdup(t ? t : "")))
            goto nomem;
        l->n++;
    }
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, what);
nomem:
    sqlite3_reset(q);
    return pd_storage_fail(&s->base, PD_ERR_NOMEM, "out of memory %s", what);
}

static int sq_area_records(pd_storage *st, const char *areas, pd_storage_row_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    idlist hh = {0};
    sqlite3_stmt *q = stmt(s, ST_AREA_HHS);
    if (!q)
        return st->err.code;
    bind_text(q, 1, areas);
    int rc = collect_ids(s, q, &hh, "listing an area's households");
    for (size_t i = 0; rc == PD_OK && i < hh.n; i++) {
        if ((rc = emit_row(s, PD_ENT_HOUSEHOLD, hh.v[i], cb, ctx)) != PD_OK)
            break;
        idlist mm = {0};
        q = stmt(s, ST_HH_MEMBERS);
        if (!q) {
            rc = st->err.code;
            break;
        }
        bind_text(q, 1, hh.v[i]);
        rc = collect_ids(s, q, &mm, "listing a household's members");
        for (size_t j = 0; rc == PD_OK && j < mm.n; j++)
            rc = emit_row(s, PD_ENT_MEMBER, mm.v[j], cb, ctx);
        idlist_free(&mm);
    }
    idlist_free(&hh);
    return rc;
}

static int sq_shape_put(pd_storage *st, const char *code, const char *name, const char *shape,
                        int64_t rev)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_SHAPE_PUT);
    if (!q)
        return st->err.code;
    bind_text(q, 1, code);
    bind_text(q, 2, name);
    bind_text(q, 3, shape);
    sqlite3_bind_int64(q, 4, rev);
    return step_done(s, q, "adding an area shape");
}

static int sq_shapes_in(pd_storage *st, const char *areas, pd_storage_shape_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_SHAPES_IN);
    if (!q)
        return st->err.code;
    bind_text(q, 1, areas);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        const char *c = (const char *)sqlite3_column_text(q, 0);
        const char *n = (const char *)sqlite3_column_text(q, 1);
        const char *sh = (const char *)sqlite3_column_text(q, 2);
        if ((stop = cb(ctx, c ? c : "", n ? n : "", sh ? sh : "", sqlite3_column_int64(q, 3))))
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing area shapes");
}

static int sq_area_revision(pd_storage *st, const char *areas, int64_t *rev)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_AREA_REV);
    if (!q)
        return st->err.code;
    bind_text(q, 1, areas);
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW)
        *rev = sqlite3_column_int64(q, 0);
    sqlite3_reset(q);
    return rc == SQLITE_ROW ? PD_OK : sq_fail(s, rc, "reading an area's revision");
}

static int sq_conflict_add(pd_storage *st, const pd_srv_conflict *c, int64_t *id)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_CONFLICT_ADD);
    if (!q)
        return st->err.code;
    bind_text(q, 1, c->kind);
    bind_text(q, 2, c->entity);
    bind_text(q, 3, c->target);
    bind_text(q, 4, c->field ? c->field : "");
    bind_text(q, 5, c->area ? c->area : "");
    sqlite3_bind_int64(q, 6, c->base_rev);
    bind_value(q, 7, c->base_value);
    bind_value(q, 8, c->server_value);
    if (c->server) {
        bind_text(q, 9, c->server->device_id[0] ? c->server->device_id : NULL);
        bind_blob(q, 10, c->server->has_author ? c->server->author_pk : NULL, PD_PUBKEY_BYTES);
        sqlite3_bind_int64(q, 11, c->server->seq);
        sqlite3_bind_int64(q, 12, c->server->hlc);
        bind_blob(q, 13, c->server->has_batch ? c->server->batch_hash : NULL, PD_HASH_BYTES);
    }
    bind_value(q, 14, c->device_value);
    bind_text(q, 15, c->device_id);
    bind_blob(q, 16, c->device_author, PD_PUBKEY_BYTES);
    sqlite3_bind_int64(q, 17, c->device_seq);
    sqlite3_bind_int64(q, 18, c->device_hlc);
    sqlite3_bind_int64(q, 19, c->batch_seq);
    bind_blob(q, 20, c->batch_hash, PD_HASH_BYTES);
    sqlite3_bind_int64(q, 21, c->created_at);
    sqlite3_bind_int64(q, 22, c->rev);
    int rc = step_done(s, q, "adding a conflict");
    if (rc == PD_OK && id)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc;
}

static int sq_conflicts_since(pd_storage *st, const char *areas, int64_t since,
                              pd_storage_row_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    static const char *const names[] = {"id",    "kind",  "entity",         "target",
                                        "field", "state", "resolved_value", "rev"};
    sqlite3_stmt *q = stmt(s, ST_CONFLICTS_SINCE);
    if (!q)
        return st->err.code;
    bind_text(q, 1, areas);
    sqlite3_bind_int64(q, 2, since);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_srv_field f[8];
        for (int i = 0; i < 8; i++) {
            f[i].name = names[i];
            f[i].value = column_value(q, i);
        }
        /* The entity argument is not a record here: conflicts are their own kind of row. */
        if ((stop = cb(ctx, PD_ENT__COUNT, f, 8)) != 0)
            break;
    }
    sqlite3_reset(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing conflicts");
}

static int sq_audit_add(pd_storage *st, const pd_srv_audit *a)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = stmt(s, ST_AUDIT_ADD);
    if (!q)
        return st->err.code;
    sqlite3_bind_int64(q, 1, a->at);
    bind_text(q, 2, a->action);
    bind_text(q, 3, a->actor);
    bind_text(q, 4, a->device_id);
    bind_blob(q, 5, a->batch_hash, PD_HASH_BYTES);
    sqlite3_bind_int64(q, 6, a->seq);
    bind_text(q, 7, a->entity);
    bind_text(q, 8, a->target);
    bind_text(q, 9, a->field);
    bind_value(q, 10, a->old_value);
    bind_value(q, 11, a->new_value);
    sqlite3_bind_int64(q, 12, a->rev);
    return step_done(s, q, "writing the audit log");
}

static int sq_stats(pd_storage *st, pd_srv_stats *out)
{
    sq_storage *s = SQ(st);
    if (rev_store(s) != PD_OK) /* (inside a transaction: it reads meta) */
        return st->err.code;
    sqlite3_stmt *q = stmt(s, ST_STATS);
    if (!q)
        return st->err.code;
    int rc = sqlite3_step(q);
    if (rc == SQLITE_ROW) {
        int64_t *f[] = {&out->users,      &out->devices,        &out->devices_revoked,
                        &out->households, &out->members,        &out->visits,
                        &out->photos,     &out->batches,        &out->batches_held,
                        &out->forks,      &out->conflicts_open, &out->uploads_open,
                        &out->revision};
        for (size_t i = 0; i < PD_ARRAY_LEN(f); i++)
            *f[i] = sqlite3_column_int64(q, (int)i);
    }
    sqlite3_reset(q);
    return rc == SQLITE_ROW ? PD_OK : sq_fail(s, rc, "reading statistics");
}

/* ==== korcam ===================================================================================
 * The korcam block (server/korcam.c; storage.h "korcam"): the conflict queue as the korcam reads
 * and decides it, revisit tasks, the duplicate-household and NIK lookups of the merge-time checks,
 * web logins. These run at a person's pace (a korcam's clicks, a login), not a batch's, so each
 * statement is prepared when called and finalized after — fixed SQL with bound parameters all
 * the same — which keeps this block out of the handle's statement cache. */

#define KO_CONFLICT_COLS                                                                           \
    "c.id, c.kind, c.entity, c.target, c.field, c.area, c.related, COALESCE(hh.id, ''), "          \
    "COALESCE(hh.head_name, ''), COALESCE(c.base_rev, 0), c.base_value, c.server_value, "          \
    "c.device_value, COALESCE(c.server_device, ''), COALESCE(sk.user_id, ''), "                    \
    "c.server_author, COALESCE(c.server_seq, 0), COALESCE(c.server_hlc, 0), c.server_batch, "      \
    "c.device_device, COALESCE(dk.user_id, ''), c.device_author, c.device_seq, c.device_hlc, "     \
    "c.batch_seq, c.batch_hash, c.created_at, c.rev, c.resolved_at IS NOT NULL, "                  \
    "COALESCE(c.resolution, ''), c.resolved_value, COALESCE(c.resolved_by, ''), "                  \
    "COALESCE(c.resolution_note, ''), COALESCE(c.resolved_at, 0) "
#define KO_CONFLICT_FROM                                                                           \
    "FROM conflicts c LEFT JOIN person_keys sk ON sk.pk = c.server_author "                        \
    "LEFT JOIN person_keys dk ON dk.pk = c.device_author "                                         \
    "LEFT JOIN household hh ON hh.id = CASE c.entity WHEN 'household' THEN c.target "              \
    "WHEN 'member' THEN (SELECT m.household_id FROM member m WHERE m.id = c.target) "              \
    "WHEN 'visit' THEN (SELECT v.household_id FROM visit v WHERE v.id = c.target) END "
#define KO_CONFLICT_WHERE                                                                          \
    "WHERE " IN_AREAS(                                                                             \
        "c.area") " AND (?2 IS NULL OR c.kind = ?2) "                                              \
                  "AND (?3 IS NULL OR c.area = ?3 OR substr(c.area, 1, length(?3) + 1) = ?3 || "   \
                  "'.') "                                                                          \
                  "AND (?4 IS NULL OR c.device_author IN (SELECT pk FROM person_keys WHERE "       \
                  "user_id = ?4) "                                                                 \
                  "OR c.server_author IN (SELECT pk FROM person_keys WHERE user_id = ?4)) "        \
                  "AND (?5 IS NULL OR (?5 = 'open') = (c.resolved_at IS NULL)) "                   \
                  "AND (?6 = 0 OR c.created_at < ?6) "

static const char ko_sql_list[] =
    AREAS_CTE "SELECT " KO_CONFLICT_COLS KO_CONFLICT_FROM KO_CONFLICT_WHERE
              "ORDER BY c.created_at DESC, c.id DESC LIMIT ?7 OFFSET ?8";
static const char ko_sql_count[] = AREAS_CTE "SELECT count(*) FROM conflicts c " KO_CONFLICT_WHERE;
static const char ko_sql_get[] = "SELECT " KO_CONFLICT_COLS KO_CONFLICT_FROM "WHERE c.id = ?1";

/* The korcam statements (and the merge's conflict checks) are prepared on first use and kept,
 * keyed by their SQL text's address (every one is a constant of this file): a delta or an
 * applied op no longer parses and plans a statement each time. A statement already out (a caller
 * that runs one while it holds another of the same text) is prepared afresh and finalized by
 * ko_release. */
static sqlite3_stmt *ko_prepare(sq_storage *s, const char *sql)
{
    int free_slot = -1;
    for (int i = 0; i < KO_CACHE; i++) {
        if (s->ko[i].sql == sql && !s->ko[i].out) {
            s->ko[i].out = true;
            sqlite3_reset(s->ko[i].st);
            sqlite3_clear_bindings(s->ko[i].st);
            return s->ko[i].st;
        }
        if (!s->ko[i].sql && free_slot < 0)
            free_slot = i;
    }
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v3(s->db, sql, -1, free_slot >= 0 ? SQLITE_PREPARE_PERSISTENT : 0, &q,
                                NULL);
    if (rc != SQLITE_OK) {
        sq_fail(s, rc, "preparing a korcam statement");
        sqlite3_finalize(q);
        return NULL;
    }
    if (free_slot >= 0)
        s->ko[free_slot] = (struct ko_stmt){.sql = sql, .st = q, .out = true};
    return q;
}

/* Done with a statement of ko_prepare: reset and kept, or finalized if it was not cached. */
static void ko_release(sq_storage *s, sqlite3_stmt *q)
{
    if (!q)
        return;
    for (int i = 0; i < KO_CACHE; i++)
        if (s->ko[i].st == q) {
            sqlite3_reset(q);
            sqlite3_clear_bindings(q);
            s->ko[i].out = false;
            return;
        }
    sqlite3_finalize(q);
}

static const char *ko_text(sqlite3_stmt *q, int i)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    return t ? (const char *)t : "";
}

static const uint8_t *ko_blob(sqlite3_stmt *q, int i, size_t n)
{
    if (sqlite3_column_type(q, i) != SQLITE_BLOB || (size_t)sqlite3_column_bytes(q, i) != n)
        return NULL;
    return sqlite3_column_blob(q, i);
}

/* Step a prepared, bound statement that returns no rows, then finalize it. */
static int ko_exec(sq_storage *s, sqlite3_stmt *q, const char *ctx)
{
    int rc = sqlite3_step(q);
    ko_release(s, q);
    if (rc == SQLITE_DONE)
        return PD_OK;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        pd_error_sqlite(&s->base.err, s->db, rc, ctx);
        s->base.err.code = PD_ERR_EXISTS;
        return PD_ERR_EXISTS;
    }
    return sq_fail(s, rc, ctx);
}

static void ko_conflict_row(sqlite3_stmt *q, pd_srv_conflict_row *c)
{
    memset(c, 0, sizeof *c);
    int i = 0;
    c->id = sqlite3_column_int64(q, i++);
    c->kind = ko_text(q, i++);
    c->entity = ko_text(q, i++);
    c->target = ko_text(q, i++);
    c->field = ko_text(q, i++);
    c->area = ko_text(q, i++);
    c->related = ko_text(q, i++);
    c->household_id = ko_text(q, i++);
    c->head_name = ko_text(q, i++);
    c->base_rev = sqlite3_column_int64(q, i++);
    c->base_value = column_value(q, i++);
    c->server_value = column_value(q, i++);
    c->device_value = column_value(q, i++);
    c->server_device = ko_text(q, i++);
    c->server_user = ko_text(q, i++);
    c->server_author = ko_blob(q, i++, PD_PUBKEY_BYTES);
    c->server_seq = sqlite3_column_int64(q, i++);
    c->server_hlc = sqlite3_column_int64(q, i++);
    c->server_batch = ko_blob(q, i++, PD_HASH_BYTES);
    c->device_device = ko_text(q, i++);
    c->device_user = ko_text(q, i++);
    c->device_author = ko_blob(q, i++, PD_PUBKEY_BYTES);
    c->device_seq = sqlite3_column_int64(q, i++);
    c->device_hlc = sqlite3_column_int64(q, i++);
    c->batch_seq = sqlite3_column_int64(q, i++);
    c->batch_hash = ko_blob(q, i++, PD_HASH_BYTES);
    c->created_at = sqlite3_column_int64(q, i++);
    c->rev = sqlite3_column_int64(q, i++);
    c->resolved = sqlite3_column_int(q, i++) != 0;
    c->resolution = ko_text(q, i++);
    c->resolved_value = column_value(q, i++);
    c->resolved_by = ko_text(q, i++);
    c->note = ko_text(q, i++);
    c->resolved_at = sqlite3_column_int64(q, i++);
}

static void ko_bind_filter(sqlite3_stmt *q, const pd_srv_conflict_filter *f)
{
    bind_text(q, 1, f->areas ? f->areas : "");
    bind_text(q, 2, f->kind);
    bind_text(q, 3, f->desa);
    bind_text(q, 4, f->enumerator);
    bind_text(q, 5, f->state);
    sqlite3_bind_int64(q, 6, f->created_before > 0 ? f->created_before : 0);
}

static int sq_conflicts_list(pd_storage *st, const pd_srv_conflict_filter *f,
                             pd_storage_conflict_cb cb, void *ctx, int64_t *total)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q;
    int rc;
    if (total) {
        if (!(q = ko_prepare(s, ko_sql_count)))
            return st->err.code;
        ko_bind_filter(q, f);
        rc = sqlite3_step(q);
        *total = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
        ko_release(s, q);
        if (rc != SQLITE_ROW)
            return sq_fail(s, rc, "counting conflicts");
    }
    if (!(q = ko_prepare(s, ko_sql_list)))
        return st->err.code;
    ko_bind_filter(q, f);
    sqlite3_bind_int64(q, 7, f->limit > 0 ? f->limit : -1);
    sqlite3_bind_int64(q, 8, f->offset > 0 ? f->offset : 0);
    int stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_srv_conflict_row c;
        ko_conflict_row(q, &c);
        if ((stop = cb(ctx, &c)) != 0)
            break;
    }
    ko_release(s, q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing conflicts");
}

static int sq_conflict_get(pd_storage *st, int64_t id, pd_storage_conflict_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, ko_sql_get);
    if (!q)
        return st->err.code;
    sqlite3_bind_int64(q, 1, id);
    int rc = sqlite3_step(q), out;
    if (rc == SQLITE_ROW) {
        pd_srv_conflict_row c;
        ko_conflict_row(q, &c);
        out = cb(ctx, &c);
    } else if (rc == SQLITE_DONE) {
        out = pd_storage_fail(st, PD_ERR_NOTFOUND, "no conflict %lld", (long long)id);
    } else {
        out = sq_fail(s, rc, "reading a conflict");
    }
    ko_release(s, q);
    return out;
}

static int sq_conflict_relate(pd_storage *st, int64_t id, const char *related)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "UPDATE conflicts SET related = ?2 WHERE id = ?1");
    if (!q)
        return st->err.code;
    sqlite3_bind_int64(q, 1, id);
    bind_text(q, 2, related ? related : "");
    return ko_exec(s, q, "relating a conflict");
}

static int sq_conflict_exists(pd_storage *st, const char *kind, const char *target,
                              const char *related, const pd_value *device_value, bool *exists)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "SELECT 1 FROM conflicts WHERE kind = ?1 AND target = ?2 "
                                    "AND related = ?3 AND (?4 OR device_value IS ?5) LIMIT 1");
    if (!q)
        return st->err.code;
    bind_text(q, 1, kind);
    bind_text(q, 2, target);
    bind_text(q, 3, related ? related : "");
    sqlite3_bind_int(q, 4, device_value == NULL);
    bind_value(q, 5, device_value);
    int rc = sqlite3_step(q);
    ko_release(s, q);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_fail(s, rc, "looking for a conflict");
    *exists = rc == SQLITE_ROW;
    return PD_OK;
}

static int sq_conflict_resolve(pd_storage *st, const pd_srv_resolution *r)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "UPDATE conflicts SET resolution = ?2, resolved_value = ?3, "
                                    "resolved_by = ?4, resolved_at = ?5, resolution_note = ?6, "
                                    "rev = ?7 WHERE id = ?1 AND resolved_at IS NULL");
    if (!q)
        return st->err.code;
    sqlite3_bind_int64(q, 1, r->id);
    bind_text(q, 2, r->resolution);
    bind_value(q, 3, r->value);
    bind_text(q, 4, r->by);
    sqlite3_bind_int64(q, 5, r->at);
    bind_text(q, 6, r->note && *r->note ? r->note : NULL);
    sqlite3_bind_int64(q, 7, r->rev);
    int rc = ko_exec(s, q, "resolving a conflict");
    if (rc != PD_OK)
        return rc == PD_ERR_EXISTS ? pd_storage_fail(st, PD_ERR_INVALID,
                                                     "conflict %lld: the "
                                                     "resolution was refused: %s",
                                                     (long long)r->id, sqlite3_errmsg(s->db))
                                   : rc;
    if (sqlite3_changes(s->db) == 1)
        return PD_OK;
    if (!(q = ko_prepare(s, "SELECT resolved_by FROM conflicts WHERE id = ?1")))
        return st->err.code;
    sqlite3_bind_int64(q, 1, r->id);
    rc = sqlite3_step(q);
    char by[PD_SRV_ID_MAX + 1] = "";
    if (rc == SQLITE_ROW)
        copy_text(by, sizeof by, q, 0);
    ko_release(s, q);
    if (rc == SQLITE_ROW)
        return pd_storage_fail(st, PD_ERR_STATE, "conflict %lld was already resolved by %s",
                               (long long)r->id, by);
    if (rc == SQLITE_DONE)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no conflict %lld", (long long)r->id);
    return sq_fail(s, rc, "reading a conflict");
}

static int sq_nik_members(pd_storage *st, const char *nik, pd_storage_holder_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "SELECT m.id, m.household_id, m.status, "
                                    "COALESCE(h.source, ''), m.name, COALESCE(m.relationship, 0) "
                                    "FROM member m LEFT JOIN household h ON h.id = m.household_id "
                                    "WHERE m.nik = ?1 ORDER BY m.id");
    if (!q)
        return st->err.code;
    bind_text(q, 1, nik);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_srv_holder h = {.member_id = ko_text(q, 0),
                           .household_id = ko_text(q, 1),
                           .status = ko_text(q, 2),
                           .household_source = ko_text(q, 3),
                           .name = ko_text(q, 4),
                           .relationship = sqlite3_column_int64(q, 5)};
        if ((stop = cb(ctx, &h)) != 0)
            break;
    }
    ko_release(s, q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "looking up a NIK");
}

static int sq_kk_households(pd_storage *st, const char *kk, pd_storage_pair_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "SELECT id, head_name FROM household WHERE kk = ?1 UNION "
                                    "SELECT h.id, h.head_name FROM member m JOIN household h "
                                    "ON h.id = m.household_id WHERE m.kk = ?1 ORDER BY 1");
    if (!q)
        return st->err.code;
    bind_text(q, 1, kk);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW)
        if ((stop = cb(ctx, ko_text(q, 0), ko_text(q, 1), NULL)) != 0)
            break;
    ko_release(s, q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "looking up a KK");
}

#define KO_POINT_HH                                                                                \
    "SELECT h.id, h.head_name, '', h.lat, h.lon, -1.0, 0, '', '', NULL FROM household h "
#define KO_POINT_VISIT                                                                             \
    "SELECT v.household_id, COALESCE(h.head_name, ''), v.id, v.lat, v.lon, "                       \
    "COALESCE(v.accuracy_m, -1.0), v.visited_at, v.outcome, v.device_id, v.enumerator_pk "         \
    "FROM visit v LEFT JOIN household h ON h.id = v.household_id "

static int ko_points(sq_storage *s, sqlite3_stmt *q, pd_storage_point_cb cb, void *ctx)
{
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        if (sqlite3_column_type(q, 3) == SQLITE_NULL || sqlite3_column_type(q, 4) == SQLITE_NULL)
            continue;
        pd_srv_point p = {.household_id = ko_text(q, 0),
                          .head_name = ko_text(q, 1),
                          .visit_id = ko_text(q, 2),
                          .lat = sqlite3_column_double(q, 3),
                          .lon = sqlite3_column_double(q, 4),
                          .accuracy_m = sqlite3_column_double(q, 5),
                          .at = sqlite3_column_int64(q, 6),
                          .outcome = ko_text(q, 7),
                          .device_id = ko_text(q, 8),
                          .enumerator_pk = ko_blob(q, 9, PD_PUBKEY_BYTES)};
        if ((stop = cb(ctx, &p)) != 0)
            break;
    }
    ko_release(s, q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing locations");
}

static int sq_points_in_box(pd_storage *st, double lat_min, double lat_max, double lon_min,
                            double lon_max, pd_storage_point_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q =
        ko_prepare(s, KO_POINT_HH "WHERE h.lat BETWEEN ?1 AND ?2 AND h.lon "
                                  "BETWEEN ?3 AND ?4 UNION ALL " KO_POINT_VISIT
                                  "WHERE v.lat BETWEEN ?1 AND ?2 AND v.lon BETWEEN ?3 AND ?4 "
                                  "LIMIT 5000");
    if (!q)
        return st->err.code;
    sqlite3_bind_double(q, 1, lat_min);
    sqlite3_bind_double(q, 2, lat_max);
    sqlite3_bind_double(q, 3, lon_min);
    sqlite3_bind_double(q, 4, lon_max);
    return ko_points(s, q, cb, ctx);
}

static int sq_household_points(pd_storage *st, const char *household_id, pd_storage_point_cb cb,
                               void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, KO_POINT_HH "WHERE h.id = ?1 UNION ALL " KO_POINT_VISIT
                                                "WHERE v.household_id = ?1 ORDER BY 7, 3");
    if (!q)
        return st->err.code;
    bind_text(q, 1, household_id);
    return ko_points(s, q, cb, ctx);
}

static int sq_household_audit(pd_storage *st, const char *household_id, int64_t limit,
                              pd_storage_audit_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(
        s, "SELECT * FROM (SELECT id, at, action, actor, COALESCE(device_id, ''), batch_hash, "
           "COALESCE(seq, 0), COALESCE(entity, ''), COALESCE(target, ''), COALESCE(field, ''), "
           "old_value, new_value, COALESCE(rev, 0) FROM audit WHERE (entity = 'household' AND "
           "target = ?1) OR (entity = 'member' AND target IN (SELECT id FROM member WHERE "
           "household_id = ?1)) OR (entity = 'visit' AND target IN (SELECT id FROM visit WHERE "
           "household_id = ?1)) ORDER BY id DESC LIMIT ?2) ORDER BY id");
    if (!q)
        return st->err.code;
    bind_text(q, 1, household_id);
    sqlite3_bind_int64(q, 2, limit > 0 ? limit : -1);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_srv_audit_row a = {.id = sqlite3_column_int64(q, 0),
                              .at = sqlite3_column_int64(q, 1),
                              .action = ko_text(q, 2),
                              .actor = ko_text(q, 3),
                              .device_id = ko_text(q, 4),
                              .batch_hash = ko_blob(q, 5, PD_HASH_BYTES),
                              .seq = sqlite3_column_int64(q, 6),
                              .entity = ko_text(q, 7),
                              .target = ko_text(q, 8),
                              .field = ko_text(q, 9),
                              .old_value = column_value(q, 10),
                              .new_value = column_value(q, 11),
                              .rev = sqlite3_column_int64(q, 12)};
        if ((stop = cb(ctx, &a)) != 0)
            break;
    }
    ko_release(s, q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "reading a household's history");
}

static int sq_record_get(pd_storage *st, pd_entity e, const char *id, pd_storage_row_cb cb,
                         void *ctx)
{
    if (e != PD_ENT_HOUSEHOLD && e != PD_ENT_MEMBER)
        return pd_storage_fail(st, PD_ERR_INTERNAL, "record_get: households and members only");
    int64_t rev;
    int rc = sq_record_rev(st, e, id, &rev);
    if (rc != PD_OK)
        return rc;
    return emit_row(SQ(st), e, id, cb, ctx);
}

static int sq_household_members(pd_storage *st, const char *household_id, pd_storage_row_cb cb,
                                void *ctx)
{
    sq_storage *s = SQ(st);
    idlist mm = {0};
    sqlite3_stmt *q = stmt(s, ST_HH_MEMBERS);
    if (!q)
        return st->err.code;
    bind_text(q, 1, household_id);
    int rc = collect_ids(s, q, &mm, "listing a household's members");
    for (size_t j = 0; rc == PD_OK && j < mm.n; j++)
        rc = emit_row(s, PD_ENT_MEMBER, mm.v[j], cb, ctx);
    idlist_free(&mm);
    return rc;
}

static int sq_task_add(pd_storage *st, const pd_srv_task *t, int64_t *id)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "INSERT INTO tasks (kind, household_id, area, assignee, "
                                    "conflict_id, note, created_by, created_at, rev) VALUES "
                                    "(?1, ?2, ?3, ?4, NULLIF(?5, 0), ?6, ?7, ?8, ?9)");
    if (!q)
        return st->err.code;
    bind_text(q, 1, t->kind);
    bind_text(q, 2, t->household_id);
    bind_text(q, 3, t->area);
    bind_text(q, 4, t->assignee ? t->assignee : "");
    sqlite3_bind_int64(q, 5, t->conflict_id);
    bind_text(q, 6, t->note ? t->note : "");
    bind_text(q, 7, t->created_by);
    sqlite3_bind_int64(q, 8, t->created_at);
    sqlite3_bind_int64(q, 9, t->rev);
    int rc = ko_exec(s, q, "adding a task");
    if (rc == PD_OK && id)
        *id = sqlite3_last_insert_rowid(s->db);
    return rc == PD_ERR_EXISTS
               ? pd_storage_fail(st, PD_ERR_INVALID, "task refused: %s", sqlite3_errmsg(s->db))
               : rc;
}

static int sq_tasks_since(pd_storage *st, const char *areas, const char *assignee, int64_t since,
                          pd_storage_task_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q =
        ko_prepare(s, AREAS_CTE
                   "SELECT id, kind, household_id, area, assignee, COALESCE(conflict_id, 0), "
                   "note, created_by, created_at, rev FROM tasks t WHERE t.rev > ?2 AND " IN_AREAS(
                       "t.area") " AND (?3 IS NULL OR t.assignee = ?3 OR t.assignee = '') "
                                 "ORDER BY t.rev");
    if (!q)
        return st->err.code;
    bind_text(q, 1, areas ? areas : "");
    sqlite3_bind_int64(q, 2, since);
    bind_text(q, 3, assignee);
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_srv_task t = {.id = sqlite3_column_int64(q, 0),
                         .kind = ko_text(q, 1),
                         .household_id = ko_text(q, 2),
                         .area = ko_text(q, 3),
                         .assignee = ko_text(q, 4),
                         .conflict_id = sqlite3_column_int64(q, 5),
                         .note = ko_text(q, 6),
                         .created_by = ko_text(q, 7),
                         .created_at = sqlite3_column_int64(q, 8),
                         .rev = sqlite3_column_int64(q, 9)};
        if ((stop = cb(ctx, &t)) != 0)
            break;
    }
    ko_release(s, q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "listing tasks");
}

static int sq_password_set(pd_storage *st, const char *user_id, const char *hash, int64_t at)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "INSERT INTO user_passwords (user_id, hash, set_at) VALUES "
                                    "(?1, ?2, ?3) ON CONFLICT (user_id) DO UPDATE SET "
                                    "hash = excluded.hash, set_at = excluded.set_at");
    if (!q)
        return st->err.code;
    bind_text(q, 1, user_id);
    bind_text(q, 2, hash);
    sqlite3_bind_int64(q, 3, at);
    int rc = ko_exec(s, q, "setting a password");
    if (rc == PD_ERR_EXISTS)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no user %s", user_id);
    if (rc != PD_OK)
        return rc;
    if (!(q = ko_prepare(s, "DELETE FROM web_sessions WHERE user_id = ?1")))
        return st->err.code;
    bind_text(q, 1, user_id);
    return ko_exec(s, q, "ending a user's sessions");
}

static int sq_password_get(pd_storage *st, const char *user_id, char *hash, size_t cap)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "SELECT hash FROM user_passwords WHERE user_id = ?1");
    if (!q)
        return st->err.code;
    bind_text(q, 1, user_id);
    int rc = sqlite3_step(q), out = PD_OK;
    if (rc == SQLITE_ROW) {
        if ((size_t)sqlite3_column_bytes(q, 0) >= cap)
            out = pd_storage_fail(st, PD_ERR_CORRUPT, "user %s: the stored hash is too long",
                                  user_id);
        else
            copy_text(hash, cap, q, 0);
    } else if (rc == SQLITE_DONE) {
        out = pd_storage_fail(st, PD_ERR_NOTFOUND, "user %s has no password", user_id);
    } else {
        out = sq_fail(s, rc, "reading a password");
    }
    ko_release(s, q);
    return out;
}

static int sq_session_add(pd_storage *st, const pd_srv_session *se)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "INSERT INTO web_sessions (token_hash, user_id, csrf, "
                                    "created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!q)
        return st->err.code;
    bind_blob(q, 1, se->token_hash, PD_HASH_BYTES);
    bind_text(q, 2, se->user_id);
    bind_text(q, 3, se->csrf);
    sqlite3_bind_int64(q, 4, se->created_at);
    sqlite3_bind_int64(q, 5, se->expires_at);
    return ko_exec(s, q, "adding a session");
}

static int sq_session_get(pd_storage *st, const uint8_t token_hash[PD_HASH_BYTES],
                          pd_srv_session *out)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "SELECT user_id, csrf, created_at, expires_at FROM "
                                    "web_sessions WHERE token_hash = ?1");
    if (!q)
        return st->err.code;
    bind_blob(q, 1, token_hash, PD_HASH_BYTES);
    int rc = sqlite3_step(q), res = PD_OK;
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        memcpy(out->token_hash, token_hash, PD_HASH_BYTES);
        copy_text(out->user_id, sizeof out->user_id, q, 0);
        copy_text(out->csrf, sizeof out->csrf, q, 1);
        out->created_at = sqlite3_column_int64(q, 2);
        out->expires_at = sqlite3_column_int64(q, 3);
    } else if (rc == SQLITE_DONE) {
        res = pd_storage_fail(st, PD_ERR_NOTFOUND, "no such session");
    } else {
        res = sq_fail(s, rc, "reading a session");
    }
    ko_release(s, q);
    return res;
}

static int sq_session_delete(pd_storage *st, const uint8_t token_hash[PD_HASH_BYTES])
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "DELETE FROM web_sessions WHERE token_hash = ?1");
    if (!q)
        return st->err.code;
    bind_blob(q, 1, token_hash, PD_HASH_BYTES);
    return ko_exec(s, q, "ending a session");
}

static int sq_sessions_purge(pd_storage *st, int64_t now)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "DELETE FROM web_sessions WHERE expires_at < ?1");
    if (!q)
        return st->err.code;
    sqlite3_bind_int64(q, 1, now);
    return ko_exec(s, q, "ending expired sessions");
}

static int sq_login_failure_add(pd_storage *st, const char *subject, int64_t at)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "INSERT INTO login_failures (subject, at) VALUES (?1, ?2)");
    if (!q)
        return st->err.code;
    bind_text(q, 1, subject);
    sqlite3_bind_int64(q, 2, at);
    int rc = ko_exec(s, q, "counting a failed login");
    if (rc != PD_OK)
        return rc;
    /* keep the table small: failures older than a day count for nothing */
    if (!(q = ko_prepare(s, "DELETE FROM login_failures WHERE at < ?1")))
        return st->err.code;
    sqlite3_bind_int64(q, 1, at - 24LL * 3600 * 1000);
    return ko_exec(s, q, "forgetting old failed logins");
}

static int sq_login_failures(pd_storage *st, const char *subject, int64_t since, int64_t *count)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "SELECT count(*) FROM login_failures WHERE subject = ?1 "
                                    "AND at >= ?2");
    if (!q)
        return st->err.code;
    bind_text(q, 1, subject);
    sqlite3_bind_int64(q, 2, since);
    int rc = sqlite3_step(q);
    *count = rc == SQLITE_ROW ? sqlite3_column_int64(q, 0) : 0;
    ko_release(s, q);
    return rc == SQLITE_ROW ? PD_OK : sq_fail(s, rc, "counting failed logins");
}

static int sq_login_failures_clear(pd_storage *st, const char *subject)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(s, "DELETE FROM login_failures WHERE subject = ?1");
    if (!q)
        return st->err.code;
    bind_text(q, 1, subject);
    return ko_exec(s, q, "forgetting failed logins");
}

static int sq_desa_summary(pd_storage *st, const char *areas, pd_storage_summary_cb cb, void *ctx)
{
    sq_storage *s = SQ(st);
    sqlite3_stmt *q = ko_prepare(
        s, AREAS_CTE
        ", hh AS (SELECT h.desa AS desa, count(*) AS n, sum(EXISTS (SELECT 1 FROM "
        "visit v WHERE v.household_id = h.id)) AS visited FROM household h WHERE " IN_AREAS(
            "h.desa") " GROUP BY h.desa), cf AS (SELECT c.area AS desa, "
                      "sum(c.resolved_at IS NULL) AS open, sum(c.resolved_at IS NOT NULL) AS done "
                      "FROM conflicts c WHERE " IN_AREAS(
                          "c.area") " GROUP BY c.area), "
                                    "tk AS (SELECT t.area AS desa, count(*) AS n FROM tasks t "
                                    "WHERE " IN_AREAS(
                                        "t.area") " GROUP BY t.area), d AS (SELECT desa FROM hh "
                                                  "UNION SELECT desa "
                                                  "FROM cf UNION SELECT desa FROM tk) SELECT "
                                                  "d.desa, COALESCE(sh.name, ''), "
                                                  "COALESCE(hh.n, 0), COALESCE(hh.visited, 0), "
                                                  "COALESCE(cf.open, 0), "
                                                  "COALESCE(cf.done, 0), COALESCE(tk.n, 0) FROM d "
                                                  "LEFT JOIN hh ON "
                                                  "hh.desa = d.desa LEFT JOIN cf ON cf.desa = "
                                                  "d.desa LEFT JOIN tk ON "
                                                  "tk.desa = d.desa LEFT JOIN area_shape sh ON "
                                                  "sh.code = d.desa "
                                                  "ORDER BY d.desa");
    if (!q)
        return st->err.code;
    bind_text(q, 1, areas ? areas : "");
    int rc, stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_srv_desa_summary d = {.desa = ko_text(q, 0),
                                 .name = ko_text(q, 1),
                                 .households = sqlite3_column_int64(q, 2),
                                 .visited = sqlite3_column_int64(q, 3),
                                 .conflicts_open = sqlite3_column_int64(q, 4),
                                 .conflicts_resolved = sqlite3_column_int64(q, 5),
                                 .tasks = sqlite3_column_int64(q, 6)};
        d.pending = d.households - d.visited;
        if ((stop = cb(ctx, &d)) != 0)
            break;
    }
    ko_release(s, q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : sq_fail(s, rc, "summarising an area");
}

/* ==== end of the korcam block ==================================================================
 */

static int sq_reader_open(pd_storage *st, pd_storage **out, pd_error *err);

static const pd_storage_ops sqlite_ops = {
    .name = "sqlite",
    .close = sq_close,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .sync_defer = sq_sync_defer,
    .sync_flush = sq_sync_flush,
    .reader_open = sq_reader_open,
    .read_flush = sq_read_flush,
    .revision_next = sq_revision_next,
    .revision_current = sq_revision_current,
    .user_add = sq_user_add,
    .user_get = sq_user_get,
    .users_supervised = sq_users_supervised,
    .person_key_add = sq_person_key_add,
    .person_key_get = sq_person_key_get,
    .person_keys_of = sq_person_keys_of,
    .device_add = sq_device_add,
    .device_get = sq_device_get,
    .device_revoke = sq_device_revoke,
    .code_add = sq_code_add,
    .code_take = sq_code_take,
    .nonce_add = sq_nonce_add,
    .nonce_seen = sq_nonce_seen,
    .nonce_purge = sq_nonce_purge,
    .upload_add = sq_upload_add,
    .upload_get = sq_upload_get,
    .upload_update = sq_upload_update,
    .upload_del = sq_upload_del,
    .uploads_expired = sq_uploads_expired,
    .uploads_open_of = sq_uploads_open_of,
    .blob_get = sq_blob_get,
    .blob_add = sq_blob_add,
    .batch_put = sq_batch_put,
    .batch_get = sq_batch_get,
    .batch_by_hash = sq_batch_by_hash,
    .batch_last = sq_batch_last,
    .batch_set_state = sq_batch_set_state,
    .batch_unhold = sq_batch_unhold,
    .batches_of = sq_batches_of,
    .quarantine_put = sq_quarantine_put,
    .quarantine_by_hash = sq_quarantine_by_hash,
    .result_put = sq_result_put,
    .results_of = sq_results_of,
    .record_rev = sq_record_rev,
    .record_insert = sq_record_insert,
    .field_get = sq_field_get,
    .field_set = sq_field_set,
    .field_change = sq_field_change,
    .changed_elsewhere = sq_changed_elsewhere,
    .field_merge_read = sq_field_merge_read,
    .record_area = sq_record_area,
    .nik_holders = sq_nik_holders,
    .visits_of = sq_visits_of,
    .records_since = sq_records_since,
    .area_records = sq_area_records,
    .shape_put = sq_shape_put,
    .shapes_in = sq_shapes_in,
    .area_revision = sq_area_revision,
    .conflict_add = sq_conflict_add,
    .conflicts_since = sq_conflicts_since,
    .audit_add = sq_audit_add,
    .stats = sq_stats,
    /* korcam */
    .conflicts_list = sq_conflicts_list,
    .conflict_get = sq_conflict_get,
    .conflict_relate = sq_conflict_relate,
    .conflict_exists = sq_conflict_exists,
    .conflict_resolve = sq_conflict_resolve,
    .nik_members = sq_nik_members,
    .kk_households = sq_kk_households,
    .points_in_box = sq_points_in_box,
    .household_points = sq_household_points,
    .household_audit = sq_household_audit,
    .record_get = sq_record_get,
    .household_members = sq_household_members,
    .task_add = sq_task_add,
    .tasks_since = sq_tasks_since,
    .password_set = sq_password_set,
    .password_get = sq_password_get,
    .session_add = sq_session_add,
    .session_get = sq_session_get,
    .session_delete = sq_session_delete,
    .sessions_purge = sq_sessions_purge,
    .login_failure_add = sq_login_failure_add,
    .login_failures = sq_login_failures,
    .login_failures_clear = sq_login_failures_clear,
    .desa_summary = sq_desa_summary,
};

/* A connection on path with its pragmas: the writer's (WAL hook, group commit), or a reader's
 * (query_only; reader_open). */
static int sq_connect(const char *path, bool reader, sq_storage **out, pd_error *err)
{
    *out = NULL;
    sq_storage *s = calloc(1, sizeof *s);
    if (!s)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory opening storage");
    s->base.ops = &sqlite_ops;
    s->reader = reader;
    s->wal_fd = -1;
    pthread_mutex_init(&s->sync_mu, NULL);
    pthread_mutex_init(&s->ckpt_mu, NULL);
    pthread_cond_init(&s->ckpt_cv, NULL);
    s->path = strdup(path);
    s->wal_path = malloc(strlen(path) + 5);
    if (s->wal_path)
        snprintf(s->wal_path, strlen(path) + 5, "%s-wal", path);
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK || !s->path || !s->wal_path) {
        rc = rc != SQLITE_OK ? pd_error_sqlite(err, s->db, rc, path)
                             : pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, 5000);
    if (!reader)
        sqlite3_wal_hook(s->db, on_wal_commit, s);
    /* synchronous = NORMAL: the WAL hook adds the fsync of FULL (see the top of the file) */
    static const char *const writer_pragmas[] = {
        "PRAGMA journal_mode = WAL",  "PRAGMA synchronous = NORMAL", "PRAGMA foreign_keys = ON",
        "PRAGMA temp_store = MEMORY", "PRAGMA trusted_schema = OFF", "PRAGMA cache_size = -65536"};
    /* No mmap for readers: a read transaction that finds the WAL changed (under a storm of syncs,
     * nearly every one) drops its page cache and unmaps the whole file (SQLite's
     * pagerBeginReadTransaction), and each page it then touches is a fresh page fault; the
     * munmaps' TLB shootdowns and those faults cost more than pread. 200 syncs at once, 8
     * interleaved pairs: p99 849 -> 756 ms mean, server CPU 1.0-1.2 -> 0.8-1.1 s. */
    static const char *const reader_pragmas[] = {
        "PRAGMA query_only = ON", "PRAGMA temp_store = MEMORY", "PRAGMA trusted_schema = OFF",
        "PRAGMA cache_size = -16384", "PRAGMA mmap_size = 0"};
    const char *const *pragmas = reader ? reader_pragmas : writer_pragmas;
    size_t n = reader ? PD_ARRAY_LEN(reader_pragmas) : PD_ARRAY_LEN(writer_pragmas);
    for (size_t i = 0; i < n; i++) {
        rc = sqlite3_exec(s->db, pragmas[i], NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            rc = pd_error_sqlite(err, s->db, rc, pragmas[i]);
            goto fail;
        }
    }
    *out = s;
    return PD_OK;
fail:
    sq_close(&s->base); /* (frees s) */
    return rc;
}

static int sq_reader_open(pd_storage *st, pd_storage **out, pd_error *err)
{
    *out = NULL;
    sq_storage *s = SQ(st), *r = NULL;
    if (s->reader)
        return pd_error_set(err, PD_ERR_INVALID, "storage: a reader has no readers");
    int rc = sq_connect(s->path, true, &r, err);
    if (rc == PD_OK)
        *out = &r->base;
    return rc;
}

int pd_storage_sqlite_open(pd_storage **out, const char *path, pd_error *err)
{
    *out = NULL;
    if (!path || !*path)
        return pd_error_set(err, PD_ERR_INVALID, "storage: no database path");
    /* Create the file 0600 ourselves: SQLite would use the umask, and the WAL and shm files
     * take the main file's mode. */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return pd_error_set(err, PD_ERR_IO, "%s: cannot open or create the database", path);
    close(fd);

    sq_storage *s = NULL;
    int rc = sq_connect(path, false, &s, err);
    if (rc != PD_OK)
        return rc;
    rc = pd_schema_apply(s->db, pd_schema_server, pd_schema_server_count, err);
    if (rc != PD_OK) {
        sq_close(&s->base);
        return rc;
    }
    *out = &s->base;
    return PD_OK;
}
