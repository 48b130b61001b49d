/*
 * storage_pg.c — the PostgreSQL backend of the server's storage interface (storage.h, and
 * storage_pg.h for the URL and pool): the production database of a national deployment, where
 * several stateless server processes (each with a pool of connections) share one database.
 *
 * Same behaviour as storage_sqlite.c, call for call: the same results, the same PD_ERR_* codes
 * (a duplicate key PD_ERR_EXISTS, a missing row PD_ERR_NOTFOUND, a value a column refuses
 * PD_ERR_INVALID). The schema is schema/server_pg/NNN_*.sql, applied here by pg_migrate — the
 * PostgreSQL twin of core/migrate.c: a schema_version table, every pending migration in ONE
 * transaction under an advisory lock (two processes starting at once migrate once), a database
 * newer than this build refused with PD_ERR_VERSION.
 *
 * SQL: every statement is a fixed string with numbered parameters, prepared once per connection
 * (PQprepare / PQexecPrepared) with a generic plan (planning over 39 partitions costs more than
 * running; run-time pruning finds the province); the few that name record columns are built from
 * the fixed column tables of records.h, never from input, and record inserts and the korcam
 * block's statements are prepared through a small per-connection cache keyed by their SQL. Values
 * always travel as parameters: numbers and text in text format, bytea in binary; results come back
 * in binary format and are decoded by type.
 *
 * PostgreSQL aborts a whole transaction on the first failing statement, where SQLite fails only
 * the statement. So nothing that the interface answers with a code may raise an error: duplicate
 * keys are INSERT … ON CONFLICT DO NOTHING (no row: PD_ERR_EXISTS), missing parents are checked
 * in the same statement, values are checked against their column (type, UTF-8, no NUL) before
 * they are sent. What still fails for real (a lost connection, a deadlock) poisons the
 * transaction, and the caller rolls back — as storage.h says.
 *
 * Concurrency (READ COMMITTED, explicit locks — every statement sees what committed before it):
 *   - the chain of a device: the first chain call of a transaction for a device (batch_last,
 *     batch_get, batch_put, …) takes pg_advisory_xact_lock(1, hashtext(device_id)), so two
 *     processes never decide the same device's next seq at once; the read runs after the lock,
 *     in a new snapshot;
 *   - records: record_rev inside a transaction is SELECT … FOR UPDATE — the merge reads a
 *     record's revision first, so its read-modify-write of any field is serialised with any
 *     other writer of that record; visits_of locks the household row (double visit check) and
 *     nik_holders takes pg_advisory_xact_lock(2, hashtext(nik)) (duplicate NIK check) before
 *     reading, so of two concurrent writers the second always sees the first;
 *   - locks are taken in op order, not a global order, so a deadlock is possible (two batches
 *     touching the same two records in opposite orders): PostgreSQL detects it, one transaction
 *     gets 40P01 -> PD_ERR_BUSY, and the caller replays it. Single calls outside a transaction
 *     are retried here (3 attempts) on 40001/40P01 or a lost connection.
 *   - the revision counter is a sequence (no global row lock): a transaction registers its first
 *     revision as in flight, and every reader that hands out a cursor (records_since,
 *     conflicts_since, area_revision, person_keys_of outside a transaction, revision_current,
 *     stats) stops at pd_revision_stable(), computed in an EARLIER statement than the read.
 *     See schema/server_pg/001_init.sql.
 *
 * Connections: a pool of up to `pool=N` connections (storage_pg.h), opened as needed. A thread's
 * transaction owns one connection from begin to commit/rollback; other calls borrow one. Results
 * are read completely before a callback runs and the connection is back in the pool by then, so
 * a callback may call the storage again (as the SQLite backend allows). So the handle is
 * `concurrent` (storage.h): one server process runs many requests' storage work at once, and a
 * failure's message is the calling thread's (pg_fail keeps it per thread).
 */
#include "storage_pg.h"

#include "internal.h"
#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PD_HAVE_PQ

int pd_storage_pg_open(pd_storage **out, const char *url, pd_error *err)
{
    *out = NULL;
    return pd_error_set(err, PD_ERR_INVALID,
                        "%s: this build has no PostgreSQL support (libpq was not found)",
                        url ? url : "(none)");
}

#else

#include <cJSON.h>
#include <libpq-fe.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>

extern const pd_migration pd_schema_server_pg[];
extern const int pd_schema_server_pg_count;

#define MAX_COLS 48
#define MAX_PARAMS 64
#define RETRIES 3
#define PAGE_ROWS 1000 /* area_records reads households a page at a time */
#define PG_MIN_VERSION 120000

/* PostgreSQL type oids of the binary results we decode (pg_type.h). */
#define OID_BOOL 16
#define OID_BYTEA 17
#define OID_NAME 19
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_JSON 114
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_VARCHAR 1043
#define OID_JSONB 3802

/* Advisory lock classes (two-int4 form; the bigint form is reserved for revisions). */
#define LOCK_CHAIN 1
#define LOCK_NIK 2
#define LOCK_MIGRATE 3

/* In-areas join: $1 the codes (text[], none covering another), h the table alias, col the code
 * column. A code matches itself and every code below it; the range makes it an index scan on a
 * COLLATE "C" column, starts_with keeps it exact for any string. */
#define AREA_JOIN "unnest($1::text[]) a(code) JOIN "
#define AREA_ON(col)                                                                               \
    col " >= a.code AND " col " < a.code || '/' AND (" col " = a.code OR starts_with(" col         \
        ", a.code || '.'))"

#define HH_COLS                                                                                    \
    "h.id, h.rev, h.source, h.prov, h.kab, h.kec, h.desa, h.sls, h.address, h.head_name, "         \
    "h.kk, h.member_count, h.tenure, h.floor_area, h.floor_material, h.wall_material, "            \
    "h.roof_material, h.rooms, h.water_source, h.lighting, h.power_va, h.cooking_fuel, "           \
    "h.toilet, h.asset_flags, h.cattle, h.goats, h.pigs, h.poultry, h.land_m2, h.desil, "          \
    "h.percentile, h.lat, h.lon, h.status"
#define MEMBER_COLS                                                                                \
    "m.id, m.household_id, m.rev, m.member_no, m.name, m.nik, m.kk, m.sex, m.birth_place, "        \
    "m.birth_date, m.relationship, m.marital, m.disability, m.chronic_illness, m.schooling, "      \
    "m.work, m.programmes, m.status, m.outcome"
#define BATCH_COLS                                                                                 \
    "device_id, seq, hash, prev_hash, author_pk, approver_pk, area, state, bytes, review, "        \
    "receipt, received_at, ''::text"
#define KEY_PROV(ent, p) "(SELECT prov FROM record_key WHERE entity = " ent " AND id = " p ")"

/* The fixed statements, by id. */
#define STATEMENTS(X)                                                                              \
    X(BEGIN, "BEGIN ISOLATION LEVEL READ COMMITTED")                                               \
    X(REV_NEXT, "SELECT pd_revision_next($1::boolean)")                                            \
    X(REV_STABLE, "SELECT pd_revision_stable()")                                                   \
    X(LOCK, "SELECT pg_advisory_xact_lock($1::integer, hashtext($2::text))")                       \
    X(USER_ADD, "INSERT INTO users (id, role, name, area, supervisor_id, created_at) "             \
                "SELECT $1::text, $2::text, $3::text, $4::text, NULLIF($5::text, ''), "            \
                "$6::bigint WHERE NULLIF($5::text, '') IS NULL OR EXISTS (SELECT 1 FROM "          \
                "users WHERE id = $5::text) ON CONFLICT DO NOTHING")                               \
    X(USER_GET, "SELECT id, role, name, area, COALESCE(supervisor_id, ''), created_at "            \
                "FROM users WHERE id = $1::text")                                                  \
    X(USERS_SUP, "SELECT id, role, name, area, COALESCE(supervisor_id, ''), created_at "           \
                 "FROM users WHERE supervisor_id = $1::text ORDER BY id")                          \
    X(PKEY_ADD, "INSERT INTO person_keys (pk, user_id, device_id, added_at, rev) "                 \
                "SELECT $1::bytea, $2::text, $3::text, $4::bigint, $5::bigint WHERE EXISTS "       \
                "(SELECT 1 FROM users WHERE id = $2::text) ON CONFLICT DO NOTHING")                \
    X(PKEY_GET, "SELECT pk, user_id, device_id, added_at, rev FROM person_keys "                   \
                "WHERE pk = $1::bytea")                                                            \
    X(PKEYS_OF, "SELECT pk, user_id, device_id, added_at, rev FROM person_keys "                   \
                "WHERE user_id = $1::text AND rev <= $2::bigint ORDER BY added_at, pk")            \
    X(DEV_ADD, "INSERT INTO devices (id, user_id, pk, enrolled_at) SELECT $1::text, "              \
               "$2::text, $3::bytea, $4::bigint WHERE EXISTS (SELECT 1 FROM users WHERE "          \
               "id = $2::text) ON CONFLICT DO NOTHING")                                            \
    X(DEV_GET, "SELECT id, user_id, pk, enrolled_at, COALESCE(revoked_at, 0) FROM devices "        \
               "WHERE id = $1::text")                                                              \
    X(DEV_REVOKE, "UPDATE devices SET revoked_at = $2::bigint WHERE id = $1::text "                \
                  "AND revoked_at IS NULL")                                                        \
    X(CODE_ADD, "INSERT INTO enroll_codes (hash, user_id, created_at, expires_at) SELECT "         \
                "$1::bytea, $2::text, $3::bigint, $4::bigint WHERE EXISTS (SELECT 1 FROM "         \
                "users WHERE id = $2::text) ON CONFLICT DO NOTHING")                               \
    X(CODE_GET, "SELECT user_id, expires_at, used_at FROM enroll_codes WHERE hash = $1::bytea")    \
    X(CODE_USE, "UPDATE enroll_codes SET used_at = $2::bigint, device_id = $3::text "              \
                "WHERE hash = $1::bytea AND used_at IS NULL")                                      \
    X(NONCE_ADD, "INSERT INTO nonces (device_id, nonce, seen_at) VALUES ($1::text, "               \
                 "$2::bytea, $3::bigint) ON CONFLICT DO NOTHING")                                  \
    X(NONCE_SEEN, "SELECT 1 FROM nonces WHERE device_id = $1::text AND nonce = $2::bytea")         \
    X(NONCE_PURGE, "DELETE FROM nonces WHERE seen_at < $1::bigint")                                \
    X(UP_ADD, "INSERT INTO uploads (id, device_id, kind, length, acked, photo_hash, "              \
              "created_at, expires_at, state) VALUES ($1::text, $2::text, $3::text, "              \
              "$4::bigint, $5::bigint, $6::bytea, $7::bigint, $8::bigint, $9::text) "              \
              "ON CONFLICT DO NOTHING")                                                            \
    X(UP_GET, "SELECT id, device_id, kind, length, acked, photo_hash, created_at, "                \
              "expires_at, state FROM uploads WHERE id = $1::text")                                \
    X(UP_UPDATE, "UPDATE uploads SET acked = $2::bigint, expires_at = $3::bigint, "                \
                 "state = $4::text WHERE id = $1::text")                                           \
    X(UP_DEL, "DELETE FROM uploads WHERE id = $1::text")                                           \
    X(UP_EXPIRED, "SELECT id FROM uploads WHERE state IN ('open', 'complete') "                    \
                  "AND expires_at < $1::bigint ORDER BY expires_at")                               \
    X(UP_OPEN_OF, "SELECT count(*), coalesce(sum(length), 0)::bigint, "                            \
                  "coalesce(min(expires_at), 0) "                                                  \
                  "FROM uploads WHERE device_id = $1::text AND state = 'open' "                    \
                  "AND expires_at >= $2::bigint")                                                  \
    X(BLOB_GET, "SELECT size FROM blobs WHERE hash = $1::bytea")                                   \
    X(BLOB_ADD, "INSERT INTO blobs (hash, size, stored_at, device_id) VALUES ($1::bytea, "         \
                "$2::bigint, $3::bigint, $4::text) ON CONFLICT DO NOTHING")                        \
    X(BATCH_PUT, "INSERT INTO batches (device_id, seq, hash, prev_hash, author_pk, "               \
                 "approver_pk, area, state, bytes, review, receipt, received_at) VALUES "          \
                 "($1::text, $2::bigint, $3::bytea, $4::bytea, $5::bytea, $6::bytea, "             \
                 "$7::text, $8::text, $9::bytea, $10::bytea, $11::bytea, $12::bigint) "            \
                 "ON CONFLICT DO NOTHING")                                                         \
    X(BATCH_GET, "SELECT " BATCH_COLS " FROM batches WHERE device_id = $1::text "                  \
                 "AND seq = $2::bigint")                                                           \
    X(BATCH_BY_HASH, "SELECT " BATCH_COLS " FROM batches WHERE hash = $1::bytea")                  \
    X(BATCH_LAST, "SELECT " BATCH_COLS " FROM batches WHERE device_id = $1::text "                 \
                  "AND state IN ('applied', 'voided') ORDER BY seq DESC LIMIT 1")                  \
    X(BATCH_SET, "UPDATE batches SET state = $3::text, receipt = $4::bytea, "                      \
                 "applied_at = NULLIF($5::bigint, 0) WHERE device_id = $1::text "                  \
                 "AND seq = $2::bigint")                                                           \
    X(BATCH_UNHOLD, "DELETE FROM batches WHERE device_id = $1::text AND seq = $2::bigint "         \
                    "AND state = 'held'")                                                          \
    X(BATCHES_OF, "SELECT " BATCH_COLS " FROM batches WHERE device_id = $1::text "                 \
                  "AND seq > $2::bigint ORDER BY seq")                                             \
    X(Q_PUT, "INSERT INTO quarantine (device_id, seq, hash, prev_hash, author_pk, bytes, "         \
             "review, reason, receipt, received_at) VALUES ($1::text, $2::bigint, $3::bytea, "     \
             "$4::bytea, $5::bytea, $6::bytea, $7::bytea, $8::text, $9::bytea, $10::bigint) "      \
             "ON CONFLICT DO NOTHING")                                                             \
    X(Q_BY_HASH, "SELECT device_id, seq, hash, prev_hash, author_pk, NULL::bytea, ''::text, "      \
                 "'fork'::text, bytes, review, receipt, received_at, reason FROM quarantine "      \
                 "WHERE hash = $1::bytea")                                                         \
    X(RES_PUT, "INSERT INTO upload_results (upload_id, idx, device_id, seq, hash, status, "        \
               "again, error, message) VALUES ($1::text, $2::bigint, $3::text, $4::bigint, "       \
               "$5::bytea, $6::text, $7::boolean, $8::text, $9::text) ON CONFLICT "                \
               "(upload_id, idx) DO UPDATE SET device_id = EXCLUDED.device_id, "                   \
               "seq = EXCLUDED.seq, hash = EXCLUDED.hash, status = EXCLUDED.status, "              \
               "again = EXCLUDED.again, error = EXCLUDED.error, message = EXCLUDED.message")       \
    X(RES_OF, "SELECT idx, device_id, seq, hash, status, again, COALESCE(error, ''), "             \
              "COALESCE(message, '') FROM upload_results WHERE upload_id = $1::text "              \
              "ORDER BY idx")                                                                      \
    X(FCH_GET, "SELECT rev, device_id, author_pk, seq, hlc, batch_hash FROM field_rev "            \
               "WHERE entity = $1::text AND target = $2::text AND field = $3::text")               \
    X(FCH_PUT, "INSERT INTO field_rev (entity, target, field, rev, device_id, author_pk, "         \
               "seq, hlc, batch_hash) VALUES ($1::text, $2::text, $3::text, $4::bigint, "          \
               "$5::text, $6::bytea, $7::bigint, $8::bigint, $9::bytea) ON CONFLICT "              \
               "(entity, target, field) DO UPDATE SET rev = EXCLUDED.rev, "                        \
               "device_id = EXCLUDED.device_id, author_pk = EXCLUDED.author_pk, "                  \
               "seq = EXCLUDED.seq, hlc = EXCLUDED.hlc, batch_hash = EXCLUDED.batch_hash")         \
    X(FCH_OTHER, "SELECT 1 FROM field_rev WHERE entity = $1::text AND target = $2::text AND "      \
                 "rev > $3::bigint AND (device_id IS NULL OR device_id <> $4::text) LIMIT 1")      \
    X(KEY_GET, "SELECT prov FROM record_key WHERE entity = $1::smallint AND id = $2::text")        \
    X(AREA_HH,                                                                                     \
      "SELECT desa FROM household WHERE prov = " KEY_PROV("0", "$1::text") " AND id = $1::text")   \
    X(AREA_MEMBER, "SELECT h.desa FROM member m JOIN household h ON h.prov = m.prov "              \
                   "AND h.id = m.household_id WHERE m.prov = " KEY_PROV(                           \
                       "1", "$1::text") " AND m.id = $1::text")                                    \
    X(AREA_VISIT, "SELECT h.desa FROM visit v JOIN household h ON h.prov = v.prov "                \
                  "AND h.id = v.household_id WHERE v.prov = " KEY_PROV(                            \
                      "2", "$1::text") " AND v.id = $1::text")                                     \
    X(AREA_PHOTO, "SELECT h.desa FROM photo p JOIN household h ON h.prov = p.prov "                \
                  "AND h.id = p.household_id WHERE p.prov = " KEY_PROV(                            \
                      "3", "$1::text") " AND p.hash = $1::text")                                   \
    X(NIK_HOLDERS, "SELECT id, household_id FROM member WHERE nik = $1::text ORDER BY id")         \
    X(HH_LOCK, "SELECT 1 FROM household WHERE prov = " KEY_PROV(                                   \
                   "0", "$1::text") " AND id = $1::text FOR UPDATE")                               \
    X(VISITS_OF, "SELECT id, outcome, device_id FROM visit WHERE prov = " KEY_PROV(                \
                     "0", "$1::text") " AND household_id = $1::text "                              \
                                      "ORDER BY visited_at, id")                                   \
    X(HH_SINCE, "SELECT " HH_COLS " FROM " AREA_JOIN "household h ON h.prov = "                    \
                "substr(a.code, 1, 2) AND " AREA_ON(                                               \
                    "h.desa") " WHERE h.rev > $2::bigint "                                         \
                              "AND h.rev <= $3::bigint ORDER BY h.rev LIMIT $4::bigint")           \
    X(MEMBER_SINCE,                                                                                \
      "SELECT " MEMBER_COLS " FROM " AREA_JOIN "household h ON h.prov = "                          \
      "substr(a.code, 1, 2) AND " AREA_ON(                                                         \
          "h.desa") " JOIN member m ON "                                                           \
                    "m.prov = h.prov AND m.household_id = h.id WHERE m.rev > $2::bigint "          \
                    "AND m.rev <= $3::bigint ORDER BY m.rev LIMIT $4::bigint")                     \
    X(AREA_HHS, "SELECT " HH_COLS " FROM " AREA_JOIN "household h ON h.prov = "                    \
                "substr(a.code, 1, 2) AND " AREA_ON("h.desa") " WHERE h.id > $2::text "            \
                                                              "ORDER BY h.id LIMIT $3::bigint")    \
    X(AREA_MEMBERS, "SELECT " MEMBER_COLS " FROM member m WHERE m.prov = ANY($1::text[]) "         \
                    "AND m.household_id = ANY($2::text[]) "                                        \
                    "ORDER BY m.household_id, m.member_no, m.id")                                  \
    X(SHAPE_PUT, "INSERT INTO area_shape (code, name, shape, rev) VALUES ($1::text, $2::text, "    \
                 "$3::text, $4::bigint) ON CONFLICT DO NOTHING")                                   \
    X(SHAPES_IN, "SELECT s.code, s.name, s.shape, s.rev FROM " AREA_JOIN                           \
                 "area_shape s ON " AREA_ON("s.code") " ORDER BY s.code")                          \
    X(AREA_REV, "SELECT least($2::bigint, greatest(COALESCE((SELECT max(h.rev) FROM " AREA_JOIN    \
                "household h ON h.prov = substr(a.code, 1, 2) AND " AREA_ON(                       \
                    "h.desa") "), 0), COALESCE((SELECT max(m.rev) FROM " AREA_JOIN                 \
                              "household h ON h.prov = substr(a.code, 1, 2) AND " AREA_ON(         \
                                  "h.desa") " JOIN member m ON m.prov = h.prov AND "               \
                                            "m.household_id = h.id), 0)))")                        \
    X(CONFLICT_ADD, "INSERT INTO conflicts (kind, entity, target, field, area, base_rev, "         \
                    "base_value, server_value, server_device, server_author, server_seq, "         \
                    "server_hlc, server_batch, device_value, device_device, device_author, "       \
                    "device_seq, device_hlc, batch_seq, batch_hash, created_at, rev) VALUES "      \
                    "($1::text, $2::text, $3::text, $4::text, $5::text, $6::bigint, "              \
                    "$7::jsonb, $8::jsonb, $9::text, $10::bytea, $11::bigint, $12::bigint, "       \
                    "$13::bytea, $14::jsonb, $15::text, $16::bytea, $17::bigint, $18::bigint, "    \
                    "$19::bigint, $20::bytea, $21::bigint, $22::bigint) RETURNING id")             \
    X(CONFLICTS_SINCE,                                                                             \
      "SELECT c.id, c.kind, c.entity, c.target, c.field, "                                         \
      "CASE WHEN c.resolved_at IS NULL THEN 'open' ELSE 'resolved' END, "                          \
      "c.resolved_value, c.rev FROM " AREA_JOIN                                                    \
      "conflicts c ON " AREA_ON("c.area") " WHERE c.rev > $2::bigint AND c.rev <= $3::bigint "     \
                                          "ORDER BY c.rev")                                        \
    X(AUDIT_ADD, "INSERT INTO audit (at, action, actor, device_id, batch_hash, seq, entity, "      \
                 "target, field, old_value, new_value, rev) VALUES ($1::bigint, $2::text, "        \
                 "$3::text, $4::text, $5::bytea, $6::bigint, $7::text, $8::text, $9::text, "       \
                 "$10::jsonb, $11::jsonb, $12::bigint)")                                           \
    X(STATS, "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM devices), "               \
             "(SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL), "                       \
             "(SELECT count(*) FROM household), (SELECT count(*) FROM member), "                   \
             "(SELECT count(*) FROM visit), (SELECT count(*) FROM photo), "                        \
             "(SELECT count(*) FROM batches WHERE state <> 'held'), "                              \
             "(SELECT count(*) FROM batches WHERE state = 'held'), "                               \
             "(SELECT count(*) FROM quarantine), "                                                 \
             "(SELECT count(*) FROM conflicts WHERE resolved_at IS NULL), "                        \
             "(SELECT count(*) FROM uploads WHERE state IN ('open', 'complete')), "                \
             "$1::bigint")

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

/* Prepared-statement slots: the fixed statements, then the ones built per entity and column. */
enum {
    SLOT_GET = ST__COUNT,                               /* SELECT col … by id */
    SLOT_SET = SLOT_GET + PD_ENT__COUNT * MAX_COLS,     /* UPDATE col, rev … by id */
    SLOT_LOCKREV = SLOT_SET + PD_ENT__COUNT * MAX_COLS, /* SELECT rev … FOR UPDATE */
    SLOT_MERGE = SLOT_LOCKREV + PD_ENT__COUNT,          /* field_merge_read's one SELECT */
    SLOT__COUNT = SLOT_MERGE + PD_ENT__COUNT * MAX_COLS
};

/* Statements built or chosen at run time, prepared per connection and found by their SQL. */
#define SQL_CACHE 48

typedef struct pg_conn {
    PGconn *pg;
    bool prepared[SLOT__COUNT + SQL_CACHE];
    char *sql_text[SQL_CACHE]; /* the SQL of slot SLOT__COUNT + i */
    bool busy;                 /* a call is using it now */
    bool in_tx; /* a transaction is open: it belongs to owner until commit/rollback */
    pthread_t owner;
    bool rev_registered; /* this transaction's first revision is registered in flight */
    int64_t tx_last_rev;
    char chain_locked[PD_SRV_ID_MAX + 1]; /* device whose chain lock this transaction holds */
} pg_conn;

typedef struct pg_storage {
    pd_storage base;
    char *conninfo; /* the URL without our own parameters */
    int nconn;
    pg_conn *conns;
    pthread_mutex_t mu; /* the pool */
    pthread_cond_t cv;
    pthread_mutex_t err_mu; /* base.err */
} pg_storage;

static pg_storage *PG(pd_storage *st)
{
    return (pg_storage *)st;
}

static int pg_fail(pg_storage *s, int code, const char *fmt, ...) PD_PRINTF(3, 4);

/* The handle serves many threads at once (ops.concurrent), so a failure's message is kept per
 * thread, like errno: the calling thread reads its own (pd_storage_error), never another
 * request's. base.err gets a copy too, for single-threaded users of pd_storage_errmsg. */
static _Thread_local pd_error thread_err;

static const pd_error *pg_thread_error(const pd_storage *st)
{
    (void)st;
    return &thread_err;
}

static int pg_fail(pg_storage *s, int code, const char *fmt, ...)
{
    thread_err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(thread_err.msg, sizeof thread_err.msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->err_mu);
    s->base.err = thread_err;
    pthread_mutex_unlock(&s->err_mu);
    return code;
}

/* Change the code of the failure just reported, keeping its message. */
static int pg_recode(pg_storage *s, int code)
{
    thread_err.code = code;
    pthread_mutex_lock(&s->err_mu);
    s->base.err.code = code;
    pthread_mutex_unlock(&s->err_mu);
    return code;
}

/* ---- values: validation and encoding --------------------------------------------------------- */

/* Is p[0..n) UTF-8 that a PostgreSQL text value can hold (well-formed, no NUL)? */
static bool pg_text_ok(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = p[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            k = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            k = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            k = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + j] & 0x3f);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += k + 1;
    }
    return true;
}

static void hex_into(char *out, const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* A growable string for JSON and array literals. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool nomem;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->nomem)
        return;
    size_t need;
    if (!pd_size_add(b->len, n + 1, &need)) {
        b->nomem = true;
        return;
    }
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < need)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) {
            b->nomem = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_hex(sbuf *b, const uint8_t *p, size_t n)
{
    char tmp[129];
    while (n > 0) {
        size_t k = n > 64 ? 64 : n;
        hex_into(tmp, p, k);
        sb_add(b, tmp, 2 * k);
        p += k;
        n -= k;
    }
}

/* A pd_value as jsonb text (see schema/server_pg/001_init.sql); NULL for SQL NULL, and with
 * *nomem set when memory ran out. */
static char *json_of_value(const pd_value *v, bool *nomem)
{
    *nomem = false;
    if (!v || v->type == PD_VAL_NULL)
        return NULL;
    sbuf b = {0};
    char num[40];
    switch (v->type) {
    case PD_VAL_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->i);
        sb_str(&b, num);
        break;
    case PD_VAL_REAL:
        if (isnan(v->r)) {
            sb_str(&b, "{\"real\": \"NaN\"}");
        } else if (isinf(v->r)) {
            sb_str(&b, v->r > 0 ? "{\"real\": \"Infinity\"}" : "{\"real\": \"-Infinity\"}");
        } else {
            snprintf(num, sizeof num, "%.17g", v->r);
            sb_str(&b, num);
            if (!strpbrk(num, ".eE"))
                sb_str(&b, ".0");
        }
        break;
    case PD_VAL_TEXT:
        if (pg_text_ok(v->p, v->len)) {
            sb_str(&b, "\"");
            for (size_t i = 0; i < v->len; i++) {
                uint8_t c = v->p[i];
                if (c == '"' || c == '\\') {
                    char e[2] = {'\\', (char)c};
                    sb_add(&b, e, 2);
                } else if (c < 0x20) {
                    char e[8];
                    snprintf(e, sizeof e, "\\u%04x", c);
                    sb_str(&b, e);
                } else {
                    sb_add(&b, (const char *)&v->p[i], 1);
                }
            }
            sb_str(&b, "\"");
        } else {
            sb_str(&b, "{\"text_hex\": \"");
            sb_hex(&b, v->p, v->len);
            sb_str(&b, "\"}");
        }
        break;
    case PD_VAL_BLOB:
        sb_str(&b, "{\"blob\": \"");
        sb_hex(&b, v->p, v->len);
        sb_str(&b, "\"}");
        break;
    default:
        sb_str(&b, "null");
    }
    if (b.nomem || !b.p) {
        free(b.p);
        *nomem = true;
        return NULL;
    }
    return b.p;
}

static int unhex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode jsonb text written by json_of_value into *v; bytes go to a malloc'd *buf (the caller
 * frees). false if it is not one of our encodings (or memory ran out). */
static bool value_of_json(const char *text, size_t len, pd_value *v, uint8_t **buf)
{
    memset(v, 0, sizeof *v);
    *buf = NULL;
    while (len > 0 && (*text == ' ' || *text == '\n'))
        text++, len--;
    if (len == 0)
        return false;
    if ((*text >= '0' && *text <= '9') || *text == '-') {
        char tmp[64];
        if (len >= sizeof tmp)
            return false;
        memcpy(tmp, text, len);
        tmp[len] = '\0';
        char *end;
        if (strpbrk(tmp, ".eE")) {
            v->type = PD_VAL_REAL;
            v->r = strtod(tmp, &end);
        } else {
            v->type = PD_VAL_INT;
            v->i = strtoll(tmp, &end, 10);
        }
        return *end == '\0';
    }
    if (len == 4 && !memcmp(text, "null", 4)) {
        v->type = PD_VAL_NULL;
        return true;
    }
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!j)
        return false;
    bool ok = false;
    if (cJSON_IsString(j)) {
        size_t n = strlen(j->valuestring);
        if ((*buf = malloc(n + 1)) != NULL) {
            memcpy(*buf, j->valuestring, n + 1);
            v->type = PD_VAL_TEXT;
            v->p = *buf;
            v->len = n;
            ok = true;
        }
    } else if (cJSON_IsObject(j)) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "blob");
        pd_value_type t = PD_VAL_BLOB;
        if (!h) {
            h = cJSON_GetObjectItemCaseSensitive(j, "text_hex");
            t = PD_VAL_TEXT;
        }
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "real");
        if (cJSON_IsString(h) && strlen(h->valuestring) % 2 == 0) {
            size_t n = strlen(h->valuestring) / 2;
            if ((*buf = malloc(n + 1)) != NULL) {
                ok = true;
                for (size_t i = 0; i < n && ok; i++) {
                    int hi = unhex_digit(h->valuestring[2 * i]);
                    int lo = unhex_digit(h->valuestring[2 * i + 1]);
                    ok = hi >= 0 && lo >= 0;
                    (*buf)[i] = (uint8_t)(hi << 4 | lo);
                }
                (*buf)[n] = 0;
                v->type = t;
                v->p = *buf;
                v->len = n;
            }
        } else if (cJSON_IsString(r)) {
            v->type = PD_VAL_REAL;
            v->r = !strcmp(r->valuestring, "NaN")         ? NAN
                   : !strcmp(r->valuestring, "-Infinity") ? -INFINITY
                                                          : INFINITY;
            ok = true;
        }
    }
    cJSON_Delete(j);
    if (!ok) {
        free(*buf);
        *buf = NULL;
        memset(v, 0, sizeof *v);
    }
    return ok;
}

/* ---- parameters --------------------------------------------------------------------------------
 */

typedef struct params {
    int n;
    const char *val[MAX_PARAMS];
    int len[MAX_PARAMS];
    int fmt[MAX_PARAMS];
    char *own[MAX_PARAMS];
    char num[MAX_PARAMS][40];
    int bad; /* a PD_ERR_* when a value cannot be sent */
    char badmsg[160];
} params;

static void params_free(params *P)
{
    for (int i = 0; i < P->n; i++)
        free(P->own[i]);
    P->n = 0;
}

static int p_slot(params *P)
{
    if (P->n >= MAX_PARAMS) {
        if (!P->bad) {
            P->bad = PD_ERR_INTERNAL;
            snprintf(P->badmsg, sizeof P->badmsg, "too many statement parameters");
        }
        return -1;
    }
    int i = P->n++;
    P->val[i] = NULL;
    P->len[i] = 0;
    P->fmt[i] = 0;
    P->own[i] = NULL;
    return i;
}

static void p_null(params *P)
{
    p_slot(P);
}

static void p_int(params *P, int64_t v)
{
    int i = p_slot(P);
    if (i < 0)
        return;
    snprintf(P->num[i], sizeof P->num[i], "%lld", (long long)v);
    P->val[i] = P->num[i];
}

static void p_bool(params *P, bool v)
{
    int i = p_slot(P);
    if (i >= 0)
        P->val[i] = v ? "true" : "false";
}

static void p_real(params *P, double v)
{
    int i = p_slot(P);
    if (i < 0)
        return;
    if (isnan(v))
        snprintf(P->num[i], sizeof P->num[i], "NaN");
    else if (isinf(v))
        snprintf(P->num[i], sizeof P->num[i], "%s", v > 0 ? "Infinity" : "-Infinity");
    else
        snprintf(P->num[i], sizeof P->num[i], "%.17g", v);
    P->val[i] = P->num[i];
}

static void p_bad(params *P, int code, const char *what)
{
    if (!P->bad) {
        P->bad = code;
        snprintf(P->badmsg, sizeof P->badmsg, "%s", what);
    }
}

/* A NUL-terminated string (NULL: SQL NULL). */
static void p_text(params *P, const char *s)
{
    int i = p_slot(P);
    if (i < 0 || !s)
        return;
    if (!pg_text_ok((const uint8_t *)s, strlen(s)))
        p_bad(P, PD_ERR_INVALID, "a text value is not valid UTF-8");
    P->val[i] = s;
}

/* Text of a known length (copied, NUL-terminated). */
static void p_textn(params *P, const uint8_t *s, size_t n)
{
    int i = p_slot(P);
    if (i < 0)
        return;
    if (!pg_text_ok(s, n)) {
        p_bad(P, PD_ERR_INVALID, "a text value is not valid UTF-8 or holds a NUL byte");
        return;
    }
    if (n > 0x7fffffff || !(P->own[i] = malloc(n + 1))) {
        p_bad(P, PD_ERR_NOMEM, "out of memory for a text value");
        return;
    }
    if (n)
        memcpy(P->own[i], s, n);
    P->own[i][n] = '\0';
    P->val[i] = P->own[i];
}

/* Bytes (NULL: SQL NULL), binary format, borrowed for the call. */
static void p_blob(params *P, const void *p, size_t n)
{
    int i = p_slot(P);
    if (i < 0 || !p)
        return;
    if (n > 0x7fffffff) {
        p_bad(P, PD_ERR_TOOBIG, "a byte value is over 2 GiB");
        return;
    }
    P->val[i] = p;
    P->len[i] = (int)n;
    P->fmt[i] = 1;
}

/* A malloc'd string the params own (NULL: out of memory). */
static void p_owned(params *P, char *s)
{
    int i = p_slot(P);
    if (i < 0) {
        free(s);
        return;
    }
    if (!s) {
        p_bad(P, PD_ERR_NOMEM, "out of memory for a parameter");
        return;
    }
    P->own[i] = s;
    P->val[i] = s;
}

/* A value for a typed record column (the SQL casts the parameter to the column's type). */
static void p_value(params *P, const pd_value *v)
{
    if (!v) {
        p_null(P);
        return;
    }
    switch (v->type) {
    case PD_VAL_INT:
        p_int(P, v->i);
        break;
    case PD_VAL_REAL:
        p_real(P, v->r);
        break;
    case PD_VAL_TEXT:
        p_textn(P, v->p ? v->p : (const uint8_t *)"", v->len);
        break;
    case PD_VAL_BLOB:
        p_blob(P, v->p ? (const void *)v->p : (const void *)"", v->len);
        break;
    default:
        p_null(P);
    }
}

/* A value for an "ANY" column (jsonb). */
static void p_json(params *P, const pd_value *v)
{
    bool nomem;
    char *j = json_of_value(v, &nomem);
    if (!j && !nomem)
        p_null(P);
    else
        p_owned(P, j);
}

/* ---- area lists --------------------------------------------------------------------------------
 */

/* The caller's comma-separated codes as a text[] literal without codes another one covers (so
 * the area joins yield each row once), and the provinces they lie in as another. */
typedef struct areas {
    char *codes; /* '{"32.73.01","33"}' */
    char *provs;
    size_t n;
} areas;

static void areas_free(areas *a)
{
    free(a->codes);
    free(a->provs);
    memset(a, 0, sizeof *a);
}

static bool covers(const char *outer, size_t on, const char *inner, size_t in)
{
    return on <= in && !memcmp(outer, inner, on) && (on == in || inner[on] == '.');
}

static void sb_quoted(sbuf *b, const char *s, size_t n)
{
    sb_str(b, "\"");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            sb_str(b, "\\");
        sb_add(b, &s[i], 1);
    }
    sb_str(b, "\"");
}

static int areas_parse(pg_storage *s, const char *list, areas *out)
{
    memset(out, 0, sizeof *out);
    if (!list)
        list = "";
    if (!pg_text_ok((const uint8_t *)list, strlen(list)))
        return pg_fail(s, PD_ERR_INVALID, "area list is not valid UTF-8");
    /* split */
    const char *starts[256];
    size_t lens[256], n = 0;
    for (const char *p = list; *p;) {
        size_t k = strcspn(p, ",");
        if (k > 0) {
            if (n == PD_ARRAY_LEN(starts))
                return pg_fail(s, PD_ERR_TOOBIG, "more than %zu area codes in one list",
                               PD_ARRAY_LEN(starts));
            starts[n] = p;
            lens[n] = k;
            n++;
        }
        p += k;
        if (*p == ',')
            p++;
    }
    sbuf codes = {0}, provs = {0};
    sb_str(&codes, "{");
    sb_str(&provs, "{");
    size_t kept = 0, nprov = 0;
    char seen_prov[256][3];
    for (size_t i = 0; i < n; i++) {
        bool dropped = false;
        for (size_t j = 0; j < n && !dropped; j++) {
            if (i == j || !covers(starts[j], lens[j], starts[i], lens[i]))
                continue;
            /* j covers i: drop i, unless they are equal and i is the first of them */
            dropped = lens[j] < lens[i] || j < i;
        }
        if (dropped)
            continue;
        if (kept++)
            sb_str(&codes, ",");
        sb_quoted(&codes, starts[i], lens[i]);
        char pv[3] = {0};
        memcpy(pv, starts[i], lens[i] < 2 ? lens[i] : 2);
        bool have = false;
        for (size_t k = 0; k < nprov && !have; k++)
            have = !strcmp(seen_prov[k], pv);
        if (!have) {
            memcpy(seen_prov[nprov], pv, sizeof pv);
            if (nprov++)
                sb_str(&provs, ",");
            sb_quoted(&provs, pv, strlen(pv));
        }
    }
    sb_str(&codes, "}");
    sb_str(&provs, "}");
    if (codes.nomem || provs.nomem) {
        free(codes.p);
        free(provs.p);
        return pg_fail(s, PD_ERR_NOMEM, "out of memory reading an area list");
    }
    out->codes = codes.p;
    out->provs = provs.p;
    out->n = kept;
    return PD_OK;
}

/* ---- connections and the pool -------------------------------------------------------------- */

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* the library never prints: NOTICEs are dropped */
}

static int conn_open(pg_storage *s, pg_conn *c)
{
    const char *keys[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
    const char *vals[] = {s->conninfo, "pendata-server", "UTF8", NULL};
    c->pg = PQconnectdbParams(keys, vals, 1);
    memset(c->prepared, 0, sizeof c->prepared);
    if (!c->pg)
        return pg_fail(s, PD_ERR_NOMEM, "out of memory connecting to PostgreSQL");
    if (PQstatus(c->pg) != CONNECTION_OK) {
        pg_fail(s, PD_ERR_BUSY, "cannot connect to PostgreSQL: %s", PQerrorMessage(c->pg));
        PQfinish(c->pg);
        c->pg = NULL;
        return PD_ERR_BUSY;
    }
    PQsetNoticeProcessor(c->pg, quiet_notices, NULL);
    if (PQserverVersion(c->pg) < PG_MIN_VERSION) {
        pg_fail(s, PD_ERR_VERSION, "PostgreSQL %d is too old: pendata needs 12 or newer",
                PQserverVersion(c->pg) / 10000);
        PQfinish(c->pg);
        c->pg = NULL;
        return PD_ERR_VERSION;
    }
    /* Plan each prepared statement once per connection: planning over 39 partitions costs more
     * than running the statement, and run-time pruning picks the province from the parameters
     * (or record_key) at execution anyway. */
    PGresult *r = PQexec(c->pg, "SET plan_cache_mode = force_generic_plan");
    PQclear(r);
    return PD_OK;
}

/* Reconnect a connection that broke (outside a transaction). */
static int conn_reset(pg_storage *s, pg_conn *c)
{
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->in_tx = false;
    return conn_open(s, c);
}

/* The calling thread's connection: the one holding its transaction, else a free one (waiting
 * for one if all are in use), connected. PD_OK, or the failure to connect. */
static int conn_get(pg_storage *s, pg_conn **out)
{
    pthread_t self = pthread_self();
    *out = NULL;
    pthread_mutex_lock(&s->mu);
    pg_conn *c = NULL;
    for (;;) {
        for (int i = 0; i < s->nconn && !c; i++)
            if (s->conns[i].in_tx && pthread_equal(s->conns[i].owner, self))
                c = &s->conns[i];
        if (c) {
            if (c->busy) { /* cannot happen: results are read before callbacks run */
                pthread_mutex_unlock(&s->mu);
                return pg_fail(s, PD_ERR_INTERNAL, "storage used again while a call is running");
            }
            break;
        }
        for (int i = 0; i < s->nconn; i++) {
            pg_conn *k = &s->conns[i];
            if (k->busy || k->in_tx)
                continue;
            if (!c || (k->pg && !c->pg))
                c = k;
        }
        if (c)
            break;
        pthread_cond_wait(&s->cv, &s->mu);
    }
    c->busy = true;
    c->owner = self;
    pthread_mutex_unlock(&s->mu);
    if (!c->pg) {
        int rc = conn_open(s, c);
        if (rc != PD_OK) {
            pthread_mutex_lock(&s->mu);
            c->busy = false;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            return rc;
        }
    }
    *out = c;
    return PD_OK;
}

/* The calling thread's open transaction's connection, or NULL (nothing is opened). */
static pg_conn *conn_of_tx(pg_storage *s)
{
    pthread_t self = pthread_self();
    pg_conn *c = NULL;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nconn && !c; i++)
        if (s->conns[i].in_tx && pthread_equal(s->conns[i].owner, self) && !s->conns[i].busy)
            c = &s->conns[i];
    if (c)
        c->busy = true;
    pthread_mutex_unlock(&s->mu);
    return c;
}

static void conn_put(pg_storage *s, pg_conn *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&s->mu);
    c->busy = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

/* ---- running statements ------------------------------------------------------------------- */

static bool valid_column(pd_entity e, int col)
{
    size_t n;
    pd_entity_columns(e, &n);
    return (unsigned)e < PD_ENT__COUNT && col >= 0 && (size_t)col < n && col < MAX_COLS;
}

static const char *pg_type_of(pd_value_type t)
{
    switch (t) {
    case PD_VAL_INT:
        return "bigint";
    case PD_VAL_REAL:
        return "double precision";
    case PD_VAL_BLOB:
        return "bytea";
    default:
        return "text";
    }
}

/* The SQL of a slot (fixed statements and those built from records.h). */
static bool slot_sql(int slot, char *buf, size_t cap)
{
    if (slot < ST__COUNT) {
        snprintf(buf, cap, "%s", statement_sql[slot]);
        return true;
    }
    size_t n;
    if (slot < SLOT_SET) {
        int e = (slot - SLOT_GET) / MAX_COLS, col = (slot - SLOT_GET) % MAX_COLS;
        const pd_column *cols = pd_entity_columns((pd_entity)e, &n);
        snprintf(buf, cap,
                 "SELECT %s FROM %s WHERE prov = (SELECT prov FROM record_key WHERE "
                 "entity = %d AND id = $1::text) AND %s = $1::text",
                 cols[col].name, pd_entity_name((pd_entity)e), e, cols[0].name);
        return true;
    }
    if (slot < SLOT_LOCKREV) {
        int e = (slot - SLOT_SET) / MAX_COLS, col = (slot - SLOT_SET) % MAX_COLS;
        const pd_column *cols = pd_entity_columns((pd_entity)e, &n);
        snprintf(buf, cap,
                 "UPDATE %s SET %s = $1::%s, rev = greatest(rev, $2::bigint) WHERE "
                 "prov = (SELECT prov FROM record_key WHERE entity = %d AND id = $3::text) AND "
                 "%s = $3::text",
                 pd_entity_name((pd_entity)e), cols[col].name, pg_type_of(cols[col].type), e,
                 cols[0].name);
        return true;
    }
    if (slot < SLOT_MERGE) {
        int e = slot - SLOT_LOCKREV;
        const pd_column *cols = pd_entity_columns((pd_entity)e, &n);
        snprintf(buf, cap,
                 "SELECT rev FROM %s WHERE prov = (SELECT prov FROM record_key WHERE "
                 "entity = %d AND id = $1::text) AND %s = $1::text FOR UPDATE",
                 pd_entity_name((pd_entity)e), e, cols[0].name);
        return true;
    }
    if (slot < SLOT__COUNT) { /* $1 id, $2 entity, $3 field, $4 base rev, $5 device */
        int e = (slot - SLOT_MERGE) / MAX_COLS, col = (slot - SLOT_MERGE) % MAX_COLS;
        const pd_column *cols = pd_entity_columns((pd_entity)e, &n);
        bool member = e == PD_ENT_MEMBER;
        snprintf(buf, cap,
                 "SELECT r.%s, %s, f.rev, f.device_id, f.author_pk, f.seq, f.hlc, f.batch_hash, "
                 "EXISTS (SELECT 1 FROM field_rev o WHERE o.entity = $2::text AND o.target = "
                 "$1::text AND o.rev > $4::bigint AND (o.device_id IS NULL OR o.device_id <> "
                 "$5::text)) FROM %s r %s LEFT JOIN field_rev f ON f.entity = $2::text AND "
                 "f.target = $1::text AND f.field = $3::text WHERE r.prov = (SELECT prov FROM "
                 "record_key WHERE entity = %d AND id = $1::text) AND r.%s = $1::text "
                 "FOR UPDATE OF r",
                 cols[col].name, member ? "h.desa" : "r.desa", pd_entity_name((pd_entity)e),
                 member ? "JOIN household h ON h.prov = r.prov AND h.id = r.household_id" : "", e,
                 cols[0].name);
        return true;
    }
    return false;
}

static bool is_retryable(const char *state)
{
    return state && (!strcmp(state, "40001") || !strcmp(state, "40P01"));
}

/* Turn a failed result into a PD_ERR_* with "<ctx>: <message>" on the handle. */
static int result_fail(pg_storage *s, pg_conn *c, const PGresult *r, const char *ctx)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg)
        msg = c->pg ? PQerrorMessage(c->pg) : "no connection";
    int code;
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK)
        code = PD_ERR_BUSY; /* the database went away: try again later */
    else if (!state)
        code = PD_ERR_INTERNAL;
    else if (!strncmp(state, "23", 2))
        code = PD_ERR_EXISTS; /* constraint, as the SQLite backend maps it */
    else if (!strncmp(state, "22", 2))
        code = PD_ERR_INVALID;
    else if (is_retryable(state) || !strcmp(state, "55P03") || !strncmp(state, "53", 2) ||
             !strncmp(state, "57", 2) || !strncmp(state, "08", 2))
        code = PD_ERR_BUSY;
    else if (!strcmp(state, "25P02"))
        code = PD_ERR_STATE;
    else if (!strncmp(state, "54", 2))
        code = PD_ERR_TOOBIG;
    else
        code = PD_ERR_INTERNAL;
    size_t ml = strlen(msg);
    while (ml > 0 && (msg[ml - 1] == '\n' || msg[ml - 1] == ' '))
        ml--;
    return pg_fail(s, code, "%s: %.*s%s%s%s", ctx, (int)ml, msg, state ? " (SQLSTATE " : "",
                   state ? state : "", state ? ")" : "");
}

/* Run a slot's statement (prepared on first use on this connection) or, with slot -1, the given
 * SQL unnamed. PD_OK with *out the result (PGRES_TUPLES_OK or PGRES_COMMAND_OK; the caller
 * clears it; out may be NULL) or a PD_ERR_* with the message set. Outside a transaction a lost
 * connection or a serialization failure / deadlock is retried (RETRIES attempts in all). */
static int run(pg_storage *s, pg_conn *c, int slot, const char *sql, params *P, const char *ctx,
               PGresult **out)
{
    if (out)
        *out = NULL;
    if (P && P->bad)
        return pg_fail(s, P->bad, "%s: %s", ctx, P->badmsg);
    char built[1024], name[16];
    snprintf(name, sizeof name, "pd%d", slot);
    int n = P ? P->n : 0;
    for (int attempt = 1;; attempt++) {
        PGresult *r = NULL;
        if (!c->pg) {
            int rc = conn_open(s, c);
            if (rc != PD_OK)
                return rc;
        }
        if (slot >= 0 && !c->prepared[slot]) {
            if (!sql && !slot_sql(slot, built, sizeof built))
                return pg_fail(s, PD_ERR_INTERNAL, "%s: no statement %d", ctx, slot);
            r = PQprepare(c->pg, name, sql ? sql : built, 0, NULL);
            if (PQresultStatus(r) == PGRES_COMMAND_OK) {
                c->prepared[slot] = true;
                PQclear(r);
                r = NULL;
            }
        }
        if (!r && slot >= 0)
            r = PQexecPrepared(c->pg, name, n, P ? P->val : NULL, P ? P->len : NULL,
                               P ? P->fmt : NULL, 1);
        else if (!r)
            r = PQexecParams(c->pg, sql, n, NULL, P ? P->val : NULL, P ? P->len : NULL,
                             P ? P->fmt : NULL, 1);
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            if (out)
                *out = r;
            else
                PQclear(r);
            return PD_OK;
        }
        const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
        bool broken = PQstatus(c->pg) != CONNECTION_OK;
        if (c->in_tx || attempt >= RETRIES || !(broken || is_retryable(state))) {
            int rc = result_fail(s, c, r, ctx);
            PQclear(r);
            if (broken && !c->in_tx) { /* reconnect on next use; a transaction's rollback does */
                PQfinish(c->pg);
                c->pg = NULL;
            }
            return rc;
        }
        PQclear(r);
        if (broken) {
            int rc = conn_reset(s, c);
            if (rc != PD_OK)
                return rc;
        }
    }
}

/* conn_get + run + conn_put, for a call that needs one statement; P is freed. */
static int call(pg_storage *s, int slot, params *P, const char *ctx, PGresult **out)
{
    if (out)
        *out = NULL;
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK) {
        if (P)
            params_free(P);
        return rc;
    }
    rc = run(s, c, slot, NULL, P, ctx, out);
    conn_put(s, c);
    if (P)
        params_free(P);
    return rc;
}

/* Rows changed by a result (INSERT/UPDATE/DELETE). */
static long changes(PGresult *r)
{
    const char *t = PQcmdTuples(r);
    return t && *t ? strtol(t, NULL, 10) : 0;
}

/* ---- decoding binary results ------------------------------------------------------------------
 */

static uint64_t be_get(const char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | (uint8_t)p[i];
    return v;
}

static bool r_null(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col);
}

static int64_t r_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const char *p = PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    switch (PQftype(r, col)) {
    case OID_INT8:
        return len == 8 ? (int64_t)be_get(p, 8) : 0;
    case OID_INT4:
        return len == 4 ? (int32_t)(uint32_t)be_get(p, 4) : 0;
    case OID_INT2:
        return len == 2 ? (int16_t)(uint16_t)be_get(p, 2) : 0;
    case OID_BOOL:
        return len == 1 && p[0] != 0;
    default:
        return 0;
    }
}

static double r_real(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const char *p = PQgetvalue(r, row, col);
    int len = PQgetlength(r, row, col);
    if (PQftype(r, col) == OID_FLOAT8 && len == 8) {
        uint64_t u = be_get(p, 8);
        double d;
        memcpy(&d, &u, sizeof d);
        return d;
    }
    if (PQftype(r, col) == OID_FLOAT4 && len == 4) {
        uint32_t u = (uint32_t)be_get(p, 4);
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    return (double)r_int(r, row, col);
}

/* Text or bytes, NUL-terminated by libpq; "" for NULL. */
static const char *r_text(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
}

static void r_copy_text(char *dst, size_t cap, const PGresult *r, int row, int col)
{
    snprintf(dst, cap, "%s", r_text(r, row, col));
}

static bool r_copy_blob(uint8_t *dst, size_t n, const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) != n)
        return false;
    memcpy(dst, PQgetvalue(r, row, col), n);
    return true;
}

static uint8_t *r_dup_blob(const PGresult *r, int row, int col, size_t *len, bool *nomem)
{
    *len = 0;
    if (PQgetisnull(r, row, col))
        return NULL;
    size_t n = (size_t)PQgetlength(r, row, col);
    uint8_t *p = malloc(n ? n : 1);
    if (!p) {
        *nomem = true;
        return NULL;
    }
    if (n)
        memcpy(p, PQgetvalue(r, row, col), n);
    *len = n;
    return p;
}

/* Decoded jsonb values live until the row's callback returns. */
typedef struct arena {
    uint8_t *bufs[8];
    int n;
} arena;

static void arena_free(arena *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->bufs[i]);
    a->n = 0;
}

/* A column as a pd_value pointing into the result (or into the arena for jsonb). */
static pd_value r_value(const PGresult *r, int row, int col, arena *a)
{
    pd_value v = {0};
    if (PQgetisnull(r, row, col))
        return v;
    switch (PQftype(r, col)) {
    case OID_INT8:
    case OID_INT4:
    case OID_INT2:
    case OID_BOOL:
        v.type = PD_VAL_INT;
        v.i = r_int(r, row, col);
        break;
    case OID_FLOAT8:
    case OID_FLOAT4:
        v.type = PD_VAL_REAL;
        v.r = r_real(r, row, col);
        break;
    case OID_BYTEA:
        v.type = PD_VAL_BLOB;
        v.p = (const uint8_t *)PQgetvalue(r, row, col);
        v.len = (size_t)PQgetlength(r, row, col);
        break;
    case OID_JSONB:
    case OID_JSON: {
        const char *t = PQgetvalue(r, row, col);
        size_t len = (size_t)PQgetlength(r, row, col);
        if (PQftype(r, col) == OID_JSONB && len > 0) { /* binary jsonb: version 1, then text */
            t++;
            len--;
        }
        uint8_t *buf = NULL;
        if (a && a->n < (int)PD_ARRAY_LEN(a->bufs) && value_of_json(t, len, &v, &buf)) {
            if (buf)
                a->bufs[a->n++] = buf;
        } else {
            free(buf);
            v.type = PD_VAL_TEXT; /* not ours: hand over the JSON text */
            v.p = (const uint8_t *)t;
            v.len = len;
        }
        break;
    }
    default:
        v.type = PD_VAL_TEXT;
        v.p = (const uint8_t *)PQgetvalue(r, row, col);
        v.len = (size_t)PQgetlength(r, row, col);
    }
    return v;
}

/* ---- lifecycle and transactions ---------------------------------------------------------------
 */

static void pg_close(pd_storage *st)
{
    pg_storage *s = PG(st);
    for (int i = 0; s->conns && i < s->nconn; i++) {
        if (s->conns[i].pg)
            PQfinish(s->conns[i].pg);
        for (int k = 0; k < SQL_CACHE; k++)
            free(s->conns[i].sql_text[k]);
    }
    free(s->conns);
    if (s->conninfo) {
        sodium_memzero(s->conninfo, strlen(s->conninfo)); /* it may hold a password */
        free(s->conninfo);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->err_mu);
    free(s);
}

static int pg_begin(pd_storage *st)
{
    pg_storage *s = PG(st);
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK)
        return rc;
    if (c->in_tx) {
        rc = pg_fail(s, PD_ERR_STATE, "a transaction is already open on this thread");
    } else {
        rc = run(s, c, ST_BEGIN, NULL, NULL, "starting a transaction", NULL);
        if (rc == PD_OK) {
            c->in_tx = true;
            c->rev_registered = false;
            c->tx_last_rev = 0;
            c->chain_locked[0] = '\0';
        }
    }
    conn_put(s, c);
    return rc;
}

/* After a transaction ends: a connection that broke is dropped (reopened on next use). */
static void tx_end(pg_conn *c)
{
    c->in_tx = false;
    c->rev_registered = false;
    c->tx_last_rev = 0;
    c->chain_locked[0] = '\0';
    if (c->pg && PQstatus(c->pg) != CONNECTION_OK) {
        PQfinish(c->pg);
        c->pg = NULL;
    }
}

static int pg_commit(pd_storage *st)
{
    pg_storage *s = PG(st);
    pg_conn *c = conn_of_tx(s);
    if (!c)
        return pg_fail(s, PD_ERR_STATE, "committing: no transaction is open on this thread");
    int rc = PD_OK;
    PGresult *r = c->pg ? PQexec(c->pg, "COMMIT") : NULL;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        bool lost = !c->pg || PQstatus(c->pg) != CONNECTION_OK;
        rc = result_fail(
            s, c, r, lost ? "committing (connection lost: the outcome is unknown)" : "committing");
    } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        /* PostgreSQL answers COMMIT of a failed transaction with ROLLBACK */
        rc = pg_fail(s, PD_ERR_STATE,
                     "committing: a statement of this transaction failed, "
                     "and it was rolled back");
    }
    PQclear(r);
    tx_end(c);
    conn_put(s, c);
    return rc;
}

static void pg_rollback(pd_storage *st)
{
    pg_storage *s = PG(st);
    pg_conn *c = conn_of_tx(s);
    if (!c)
        return;
    if (c->pg && PQstatus(c->pg) == CONNECTION_OK)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    tx_end(c);
    conn_put(s, c);
}

/* ---- revision ----------------------------------------------------------------------------- */

static int one_int(pg_storage *s, pg_conn *c, int slot, params *P, const char *ctx, int64_t *out)
{
    PGresult *r;
    int rc = run(s, c, slot, NULL, P, ctx, &r);
    if (P)
        params_free(P);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(s, PD_ERR_INTERNAL, "%s: no row", ctx);
    }
    *out = r_int(r, 0, 0);
    PQclear(r);
    return PD_OK;
}

/* The stable revision (schema/server_pg/001_init.sql): read it in a statement BEFORE the rows it
 * bounds. Inside a transaction that took revisions, its own count as stable for itself. */
static int stable_rev(pg_storage *s, pg_conn *c, int64_t *out)
{
    int rc = one_int(s, c, ST_REV_STABLE, NULL, "reading the stable revision", out);
    if (rc == PD_OK && c->in_tx && c->tx_last_rev > *out)
        *out = c->tx_last_rev;
    return rc;
}

static int pg_revision_next(pd_storage *st, int64_t *rev)
{
    pg_storage *s = PG(st);
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK)
        return rc;
    params P = {0};
    bool reg = c->in_tx && !c->rev_registered;
    p_bool(&P, reg);
    rc = one_int(s, c, ST_REV_NEXT, &P, "taking the next revision", rev);
    if (rc == PD_OK && c->in_tx) {
        c->rev_registered = true;
        c->tx_last_rev = *rev;
    }
    conn_put(s, c);
    return rc;
}

static int pg_revision_current(pd_storage *st, int64_t *rev)
{
    pg_storage *s = PG(st);
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK)
        return rc;
    rc = stable_rev(s, c, rev);
    conn_put(s, c);
    return rc;
}

/* ---- users, keys, devices, codes ------------------------------------------------------------ */

/* Run an INSERT … ON CONFLICT DO NOTHING: PD_ERR_EXISTS (message from the caller) if it added
 * no row. */
static int insert_new(pg_storage *s, int slot, params *P, const char *ctx, bool *added)
{
    PGresult *r;
    int rc = call(s, slot, P, ctx, &r);
    if (rc != PD_OK)
        return rc;
    *added = changes(r) > 0;
    PQclear(r);
    return PD_OK;
}

static int pg_user_add(pd_storage *st, const pd_srv_user *u)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, u->id);
    p_text(&P, u->role);
    p_text(&P, u->name);
    p_text(&P, u->area);
    p_text(&P, u->supervisor_id);
    p_int(&P, u->created_at);
    bool added;
    int rc = insert_new(s, ST_USER_ADD, &P, "adding a user", &added);
    if (rc == PD_OK && !added)
        rc = pg_fail(s, PD_ERR_EXISTS, "user %s already exists (or its supervisor %s does not)",
                     u->id, u->supervisor_id[0] ? u->supervisor_id : "-");
    return rc;
}

static void read_user(const PGresult *r, int i, pd_srv_user *u)
{
    memset(u, 0, sizeof *u);
    r_copy_text(u->id, sizeof u->id, r, i, 0);
    r_copy_text(u->role, sizeof u->role, r, i, 1);
    r_copy_text(u->name, sizeof u->name, r, i, 2);
    r_copy_text(u->area, sizeof u->area, r, i, 3);
    r_copy_text(u->supervisor_id, sizeof u->supervisor_id, r, i, 4);
    u->created_at = r_int(r, i, 5);
}

static int pg_user_get(pd_storage *st, const char *id, pd_srv_user *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, id);
    PGresult *r;
    int rc = call(s, ST_USER_GET, &P, "reading a user", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1)
        read_user(r, 0, out);
    else
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no user %s", id);
    PQclear(r);
    return rc;
}

static int pg_users_supervised(pd_storage *st, const char *sup, pd_storage_user_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, sup);
    PGresult *r;
    int rc = call(s, ST_USERS_SUP, &P, "listing supervised users", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        pd_srv_user u;
        read_user(r, i, &u);
        stop = cb(ctx, &u);
    }
    PQclear(r);
    return stop;
}

static int pg_person_key_add(pd_storage *st, const pd_srv_person_key *k)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, k->pk, PD_PUBKEY_BYTES);
    p_text(&P, k->user_id);
    p_text(&P, k->device_id);
    p_int(&P, k->added_at);
    p_int(&P, k->rev);
    bool added;
    int rc = insert_new(s, ST_PKEY_ADD, &P, "adding a person key", &added);
    if (rc == PD_OK && !added)
        rc = pg_fail(s, PD_ERR_EXISTS,
                     "adding a person key: the key is enrolled already (or "
                     "user %s does not exist)",
                     k->user_id);
    return rc;
}

static void read_key(const PGresult *r, int i, pd_srv_person_key *k)
{
    memset(k, 0, sizeof *k);
    r_copy_blob(k->pk, PD_PUBKEY_BYTES, r, i, 0);
    r_copy_text(k->user_id, sizeof k->user_id, r, i, 1);
    r_copy_text(k->device_id, sizeof k->device_id, r, i, 2);
    k->added_at = r_int(r, i, 3);
    k->rev = r_int(r, i, 4);
}

static int pg_person_key_get(pd_storage *st, const uint8_t pk[PD_PUBKEY_BYTES],
                             pd_srv_person_key *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, pk, PD_PUBKEY_BYTES);
    PGresult *r;
    int rc = call(s, ST_PKEY_GET, &P, "reading a person key", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1)
        read_key(r, 0, out);
    else
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no enrolled person has this key");
    PQclear(r);
    return rc;
}

/* Outside a transaction only keys up to the stable revision are listed: the keyring goes into
 * deltas, whose cursor must not pass a revision still in flight. */
static int pg_person_keys_of(pd_storage *st, const char *user_id, pd_storage_key_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK)
        return rc;
    int64_t upto = INT64_MAX;
    if (!c->in_tx)
        rc = stable_rev(s, c, &upto);
    PGresult *r = NULL;
    params P = {0};
    p_text(&P, user_id);
    p_int(&P, upto);
    if (rc == PD_OK)
        rc = run(s, c, ST_PKEYS_OF, NULL, &P, "listing person keys", &r);
    params_free(&P);
    conn_put(s, c);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        pd_srv_person_key k;
        read_key(r, i, &k);
        stop = cb(ctx, &k);
    }
    PQclear(r);
    return stop;
}

static int pg_device_add(pd_storage *st, const pd_srv_device *d)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, d->id);
    p_text(&P, d->user_id);
    p_blob(&P, d->pk, PD_PUBKEY_BYTES);
    p_int(&P, d->enrolled_at);
    bool added;
    int rc = insert_new(s, ST_DEV_ADD, &P, "adding a device", &added);
    if (rc == PD_OK && !added)
        rc = pg_fail(s, PD_ERR_EXISTS,
                     "adding a device: device %s or its key is enrolled "
                     "already (or user %s does not exist)",
                     d->id, d->user_id);
    return rc;
}

static int pg_device_get(pd_storage *st, const char *id, pd_srv_device *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, id);
    PGresult *r;
    int rc = call(s, ST_DEV_GET, &P, "reading a device", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1) {
        memset(out, 0, sizeof *out);
        r_copy_text(out->id, sizeof out->id, r, 0, 0);
        r_copy_text(out->user_id, sizeof out->user_id, r, 0, 1);
        r_copy_blob(out->pk, PD_PUBKEY_BYTES, r, 0, 2);
        out->enrolled_at = r_int(r, 0, 3);
        out->revoked_at = r_int(r, 0, 4);
    } else {
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no device %s", id);
    }
    PQclear(r);
    return rc;
}

static int pg_device_revoke(pd_storage *st, const char *id, int64_t at)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, id);
    p_int(&P, at);
    PGresult *r;
    int rc = call(s, ST_DEV_REVOKE, &P, "revoking a device", &r);
    if (rc != PD_OK)
        return rc;
    long n = changes(r);
    PQclear(r);
    if (n == 0) {
        pd_srv_device d;
        rc = pg_device_get(st, id, &d);
        if (rc != PD_OK)
            return rc;
        return pg_fail(s, PD_ERR_STATE, "device %s is already revoked", id);
    }
    return PD_OK;
}

static int pg_code_add(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], const char *user_id,
                       int64_t created_at, int64_t expires_at)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, hash, PD_HASH_BYTES);
    p_text(&P, user_id);
    p_int(&P, created_at);
    p_int(&P, expires_at);
    bool added;
    int rc = insert_new(s, ST_CODE_ADD, &P, "adding an enrolment code", &added);
    if (rc == PD_OK && !added)
        rc = pg_fail(s, PD_ERR_EXISTS,
                     "adding an enrolment code: the code exists already (or "
                     "user %s does not exist)",
                     user_id);
    return rc;
}

static int pg_code_take(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t now,
                        const char *device_id, pd_srv_code_state *state, char *user_id)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, hash, PD_HASH_BYTES);
    PGresult *r;
    int rc = call(s, ST_CODE_GET, &P, "reading an enrolment code", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        *state = PD_CODE_UNKNOWN;
        return PD_OK;
    }
    r_copy_text(user_id, PD_SRV_ID_MAX + 1, r, 0, 0);
    int64_t expires = r_int(r, 0, 1);
    bool used = !r_null(r, 0, 2);
    PQclear(r);
    if (used) {
        *state = PD_CODE_USED;
        return PD_OK;
    }
    if (now >= expires) {
        *state = PD_CODE_EXPIRED;
        return PD_OK;
    }
    p_blob(&P, hash, PD_HASH_BYTES);
    p_int(&P, now);
    p_text(&P, device_id);
    rc = call(s, ST_CODE_USE, &P, "using an enrolment code", &r);
    if (rc != PD_OK)
        return rc;
    /* the UPDATE's "used_at IS NULL" decides between two takers at once */
    *state = changes(r) == 1 ? PD_CODE_OK : PD_CODE_USED;
    PQclear(r);
    return PD_OK;
}

/* ---- nonces -------------------------------------------------------------------------------- */

static int pg_nonce_add(pd_storage *st, const char *device_id, const uint8_t *nonce, size_t len,
                        int64_t at)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, device_id);
    p_blob(&P, nonce ? nonce : (const uint8_t *)"", len);
    p_int(&P, at);
    bool added;
    int rc = insert_new(s, ST_NONCE_ADD, &P, "recording a nonce", &added);
    if (rc == PD_OK && !added)
        rc = pg_fail(s, PD_ERR_EXISTS, "nonce already used by device %s", device_id);
    return rc;
}

static int pg_nonce_seen(pd_storage *st, const char *device_id, const uint8_t *nonce, size_t len,
                         bool *seen)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, device_id);
    p_blob(&P, nonce ? nonce : (const uint8_t *)"", len);
    PGresult *r;
    int rc = call(s, ST_NONCE_SEEN, &P, "looking up a nonce", &r);
    if (rc != PD_OK)
        return rc;
    *seen = PQntuples(r) > 0;
    PQclear(r);
    return PD_OK;
}

static int pg_nonce_purge(pd_storage *st, int64_t before)
{
    params P = {0};
    p_int(&P, before);
    return call(PG(st), ST_NONCE_PURGE, &P, "purging old nonces", NULL);
}

/* ---- uploads and blobs ----------------------------------------------------------------------- */

static int pg_upload_add(pd_storage *st, const pd_srv_upload *u)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, u->id);
    p_text(&P, u->device_id);
    p_text(&P, u->kind);
    p_int(&P, u->length);
    p_int(&P, u->acked);
    p_blob(&P, u->has_photo_hash ? u->photo_hash : NULL, PD_HASH_BYTES);
    p_int(&P, u->created_at);
    p_int(&P, u->expires_at);
    p_text(&P, u->state);
    bool added;
    int rc = insert_new(s, ST_UP_ADD, &P, "adding an upload", &added);
    if (rc == PD_OK && !added)
        rc = pg_fail(s, PD_ERR_EXISTS, "adding an upload: upload %s exists already", u->id);
    return rc;
}

static int pg_upload_get(pd_storage *st, const char *id, pd_srv_upload *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, id);
    PGresult *r;
    int rc = call(s, ST_UP_GET, &P, "reading an upload", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1) {
        memset(out, 0, sizeof *out);
        r_copy_text(out->id, sizeof out->id, r, 0, 0);
        r_copy_text(out->device_id, sizeof out->device_id, r, 0, 1);
        r_copy_text(out->kind, sizeof out->kind, r, 0, 2);
        out->length = r_int(r, 0, 3);
        out->acked = r_int(r, 0, 4);
        out->has_photo_hash = r_copy_blob(out->photo_hash, PD_HASH_BYTES, r, 0, 5);
        out->created_at = r_int(r, 0, 6);
        out->expires_at = r_int(r, 0, 7);
        r_copy_text(out->state, sizeof out->state, r, 0, 8);
    } else {
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no upload %s", id);
    }
    PQclear(r);
    return rc;
}

static int pg_upload_update(pd_storage *st, const char *id, int64_t acked, int64_t expires_at,
                            const char *state)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, id);
    p_int(&P, acked);
    p_int(&P, expires_at);
    p_text(&P, state);
    PGresult *r;
    int rc = call(s, ST_UP_UPDATE, &P, "updating an upload", &r);
    if (rc != PD_OK)
        return rc;
    long n = changes(r);
    PQclear(r);
    return n == 0 ? pg_fail(s, PD_ERR_NOTFOUND, "no upload %s", id) : PD_OK;
}

static int pg_upload_del(pd_storage *st, const char *id)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, id);
    PGresult *r;
    int rc = call(s, ST_UP_DEL, &P, "forgetting an upload", &r);
    if (rc == PD_OK)
        PQclear(r);
    return rc;
}

static int pg_uploads_expired(pd_storage *st, int64_t now, pd_storage_id_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_int(&P, now);
    PGresult *r;
    int rc = call(s, ST_UP_EXPIRED, &P, "listing expired uploads", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        char id[PD_SRV_UPLOAD_ID_LEN + 1];
        r_copy_text(id, sizeof id, r, i, 0);
        stop = cb(ctx, id);
    }
    PQclear(r);
    return stop;
}

static int pg_uploads_open_of(pd_storage *st, const char *device_id, int64_t now, int64_t *count,
                              int64_t *bytes, int64_t *first_expiry)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, device_id);
    p_int(&P, now);
    PGresult *r;
    int rc = call(s, ST_UP_OPEN_OF, &P, "counting a device's open uploads", &r);
    if (rc != PD_OK)
        return rc;
    *count = r_int(r, 0, 0);
    *bytes = r_int(r, 0, 1);
    *first_expiry = r_int(r, 0, 2);
    PQclear(r);
    return PD_OK;
}

static int pg_blob_get(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t *size)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, hash, PD_HASH_BYTES);
    PGresult *r;
    int rc = call(s, ST_BLOB_GET, &P, "reading a blob", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1)
        *size = r_int(r, 0, 0);
    else
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no such blob");
    PQclear(r);
    return rc;
}

static int pg_blob_add(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t size, int64_t at,
                       const char *device_id)
{
    params P = {0};
    p_blob(&P, hash, PD_HASH_BYTES);
    p_int(&P, size);
    p_int(&P, at);
    p_text(&P, device_id);
    return call(PG(st), ST_BLOB_ADD, &P, "adding a blob", NULL); /* a known blob: kept */
}

/* ---- batches ------------------------------------------------------------------------------- */

/* Inside a transaction, the first chain call for a device takes its chain lock (in its own
 * statement, so the reads after it see what the previous holder committed). */
static int chain_lock(pg_storage *s, pg_conn *c, const char *device_id)
{
    if (!c->in_tx || !device_id || !strcmp(c->chain_locked, device_id))
        return PD_OK;
    params P = {0};
    p_int(&P, LOCK_CHAIN);
    p_text(&P, device_id);
    int rc = run(s, c, ST_LOCK, NULL, &P, "locking a device's chain", NULL);
    params_free(&P);
    if (rc == PD_OK)
        snprintf(c->chain_locked, sizeof c->chain_locked, "%s", device_id);
    return rc;
}

/* A chain statement: the device's chain lock first (in a transaction), then the statement. */
static int call_chain(pg_storage *s, const char *device_id, int slot, params *P, const char *ctx,
                      PGresult **out)
{
    if (out)
        *out = NULL;
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc == PD_OK) {
        rc = chain_lock(s, c, device_id);
        if (rc == PD_OK)
            rc = run(s, c, slot, NULL, P, ctx, out);
        conn_put(s, c);
    }
    params_free(P);
    return rc;
}

/* Columns in BATCH_COLS order (13, the last the quarantine reason). */
static int read_batch(pg_storage *s, const PGresult *r, int i, pd_srv_batch *b)
{
    memset(b, 0, sizeof *b);
    bool nomem = false;
    r_copy_text(b->device_id, sizeof b->device_id, r, i, 0);
    b->seq = r_int(r, i, 1);
    r_copy_blob(b->hash, PD_HASH_BYTES, r, i, 2);
    r_copy_blob(b->prev_hash, PD_HASH_BYTES, r, i, 3);
    r_copy_blob(b->author_pk, PD_PUBKEY_BYTES, r, i, 4);
    b->has_approver = r_copy_blob(b->approver_pk, PD_PUBKEY_BYTES, r, i, 5);
    r_copy_text(b->area, sizeof b->area, r, i, 6);
    r_copy_text(b->state, sizeof b->state, r, i, 7);
    b->bytes = r_dup_blob(r, i, 8, &b->bytes_len, &nomem);
    b->review = r_dup_blob(r, i, 9, &b->review_len, &nomem);
    b->has_receipt = r_copy_blob(b->receipt, PD_RECEIPT_BYTES, r, i, 10);
    b->received_at = r_int(r, i, 11);
    r_copy_text(b->reason, sizeof b->reason, r, i, 12);
    if (nomem) {
        pd_srv_batch_clear(b);
        return pg_fail(s, PD_ERR_NOMEM, "out of memory reading a batch");
    }
    return PD_OK;
}

static int one_batch(pg_storage *s, int rc, PGresult *r, pd_srv_batch *out, const char *what)
{
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) >= 1)
        rc = read_batch(s, r, 0, out);
    else
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no such batch (%s)", what);
    PQclear(r);
    return rc;
}

static int pg_batch_put(pd_storage *st, const pd_srv_batch *b)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, b->device_id);
    p_int(&P, b->seq);
    p_blob(&P, b->hash, PD_HASH_BYTES);
    p_blob(&P, b->prev_hash, PD_HASH_BYTES);
    p_blob(&P, b->author_pk, PD_PUBKEY_BYTES);
    p_blob(&P, b->has_approver ? b->approver_pk : NULL, PD_PUBKEY_BYTES);
    p_text(&P, b->area);
    p_text(&P, b->state);
    p_blob(&P, b->bytes ? b->bytes : (const uint8_t *)"", b->bytes_len);
    p_blob(&P, b->review, b->review_len);
    p_blob(&P, b->has_receipt ? b->receipt : NULL, PD_RECEIPT_BYTES);
    p_int(&P, b->received_at);
    PGresult *r;
    int rc = call_chain(s, b->device_id, ST_BATCH_PUT, &P, "storing a batch", &r);
    if (rc != PD_OK)
        return rc;
    long n = changes(r);
    PQclear(r);
    if (n == 0)
        return pg_fail(s, PD_ERR_EXISTS,
                       "storing a batch: %s/%lld (or its hash) is held "
                       "already",
                       b->device_id, (long long)b->seq);
    return PD_OK;
}

static int pg_batch_get(pd_storage *st, const char *device_id, int64_t seq, pd_srv_batch *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, device_id);
    p_int(&P, seq);
    PGresult *r;
    int rc = call_chain(s, device_id, ST_BATCH_GET, &P, "reading a batch", &r);
    return one_batch(s, rc, r, out, "device and seq");
}

static int pg_batch_by_hash(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], pd_srv_batch *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, hash, PD_HASH_BYTES);
    PGresult *r;
    int rc = call(s, ST_BATCH_BY_HASH, &P, "reading a batch", &r);
    return one_batch(s, rc, r, out, "hash");
}

static int pg_batch_last(pd_storage *st, const char *device_id, pd_srv_batch *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, device_id);
    PGresult *r;
    int rc = call_chain(s, device_id, ST_BATCH_LAST, &P, "reading a batch", &r);
    return one_batch(s, rc, r, out, "last of device");
}

static int pg_batch_set_state(pd_storage *st, const char *device_id, int64_t seq, const char *state,
                              const uint8_t receipt[PD_RECEIPT_BYTES], int64_t applied_at)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, device_id);
    p_int(&P, seq);
    p_text(&P, state);
    p_blob(&P, receipt, PD_RECEIPT_BYTES);
    p_int(&P, applied_at);
    PGresult *r;
    int rc = call_chain(s, device_id, ST_BATCH_SET, &P, "updating a batch", &r);
    if (rc != PD_OK)
        return rc;
    long n = changes(r);
    PQclear(r);
    if (n == 0)
        return pg_fail(s, PD_ERR_NOTFOUND, "no batch %s/%lld", device_id, (long long)seq);
    return PD_OK;
}

static int pg_batch_unhold(pd_storage *st, const char *device_id, int64_t seq)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, device_id);
    p_int(&P, seq);
    PGresult *r;
    int rc = call_chain(s, device_id, ST_BATCH_UNHOLD, &P, "dropping a held batch", &r);
    if (rc != PD_OK)
        return rc;
    long n = changes(r);
    PQclear(r);
    if (n == 0)
        return pg_fail(s, PD_ERR_NOTFOUND, "no held batch %s/%lld", device_id, (long long)seq);
    return PD_OK;
}

static int pg_batches_of(pd_storage *st, const char *device_id, int64_t since,
                         pd_storage_batch_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, device_id);
    p_int(&P, since);
    PGresult *r;
    int rc = call(s, ST_BATCHES_OF, &P, "listing batches", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        pd_srv_batch b;
        if ((stop = read_batch(s, r, i, &b)) != PD_OK)
            break;
        stop = cb(ctx, &b);
        pd_srv_batch_clear(&b);
    }
    PQclear(r);
    return stop;
}

static int pg_quarantine_put(pd_storage *st, const pd_srv_batch *b)
{
    params P = {0};
    p_text(&P, b->device_id);
    p_int(&P, b->seq);
    p_blob(&P, b->hash, PD_HASH_BYTES);
    p_blob(&P, b->prev_hash, PD_HASH_BYTES);
    p_blob(&P, b->author_pk, PD_PUBKEY_BYTES);
    p_blob(&P, b->bytes ? b->bytes : (const uint8_t *)"", b->bytes_len);
    p_blob(&P, b->review, b->review_len);
    p_text(&P, b->reason);
    p_blob(&P, b->has_receipt ? b->receipt : NULL, PD_RECEIPT_BYTES);
    p_int(&P, b->received_at);
    /* a batch quarantined already stays as it was (as INSERT OR IGNORE) */
    return call(PG(st), ST_Q_PUT, &P, "quarantining a batch", NULL);
}

static int pg_quarantine_by_hash(pd_storage *st, const uint8_t hash[PD_HASH_BYTES],
                                 pd_srv_batch *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, hash, PD_HASH_BYTES);
    PGresult *r;
    int rc = call(s, ST_Q_BY_HASH, &P, "reading a quarantined batch", &r);
    return one_batch(s, rc, r, out, "quarantine");
}

static int pg_result_put(pd_storage *st, const char *upload_id, const pd_srv_result *r)
{
    params P = {0};
    p_text(&P, upload_id);
    p_int(&P, r->idx);
    p_text(&P, r->device_id);
    p_int(&P, r->seq);
    p_blob(&P, r->hash, PD_HASH_BYTES);
    p_text(&P, r->status);
    p_bool(&P, r->again);
    p_text(&P, r->error[0] ? r->error : NULL);
    p_text(&P, r->message[0] ? r->message : NULL);
    return call(PG(st), ST_RES_PUT, &P, "storing an upload result", NULL);
}

static int pg_results_of(pd_storage *st, const char *upload_id, pd_storage_result_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, upload_id);
    PGresult *r;
    int rc = call(s, ST_RES_OF, &P, "listing upload results", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        pd_srv_result x;
        memset(&x, 0, sizeof x);
        x.idx = (int)r_int(r, i, 0);
        r_copy_text(x.device_id, sizeof x.device_id, r, i, 1);
        x.seq = r_int(r, i, 2);
        r_copy_blob(x.hash, PD_HASH_BYTES, r, i, 3);
        r_copy_text(x.status, sizeof x.status, r, i, 4);
        x.again = r_int(r, i, 5) != 0;
        r_copy_text(x.error, sizeof x.error, r, i, 6);
        r_copy_text(x.message, sizeof x.message, r, i, 7);
        stop = cb(ctx, &x);
    }
    PQclear(r);
    return stop;
}

/* ---- records ------------------------------------------------------------------------------ */

/* Record columns that are NOT NULL without a default (schema/server_pg/001_init.sql): an insert
 * without them is refused here, before PostgreSQL would fail the whole transaction. */
static const char *const required[PD_ENT__COUNT][8] = {
    [PD_ENT_HOUSEHOLD] = {"id", "prov", "kab", "kec", "desa", NULL},
    [PD_ENT_MEMBER] = {"id", "household_id", "member_no", "name", NULL},
    [PD_ENT_VISIT] = {"id", "household_id", "outcome", "visited_at", "device_id", NULL},
    [PD_ENT_PHOTO] = {"hash", "household_id", "kind", "size", "taken_at", "device_id", NULL},
};

/* A field_rev row (rev, device_id, author_pk, seq, hlc, batch_hash) from column i of row 0 on. */
static void read_change(const PGresult *r, int i, pd_srv_change *out)
{
    memset(out, 0, sizeof *out);
    out->rev = r_int(r, 0, i);
    r_copy_text(out->device_id, sizeof out->device_id, r, 0, i + 1);
    out->has_author = r_copy_blob(out->author_pk, PD_PUBKEY_BYTES, r, 0, i + 2);
    out->seq = r_int(r, 0, i + 3);
    out->hlc = r_int(r, 0, i + 4);
    out->has_batch = r_copy_blob(out->batch_hash, PD_HASH_BYTES, r, 0, i + 5);
}

/* Column col of row 0 of r into out, bytes copied (they outlive r). */
static int take_value(pg_storage *s, const PGresult *r, int col, pd_srv_value *out)
{
    out->v = r_value(r, 0, col, NULL);
    if (out->v.type == PD_VAL_TEXT || out->v.type == PD_VAL_BLOB) {
        out->buf = malloc(out->v.len + 1);
        if (!out->buf) {
            memset(out, 0, sizeof *out);
            return pg_fail(s, PD_ERR_NOMEM, "out of memory reading a field");
        }
        if (out->v.len)
            memcpy(out->buf, out->v.p, out->v.len);
        out->buf[out->v.len] = 0;
        out->v.p = out->buf;
    }
    return PD_OK;
}

static int pg_field_get(pd_storage *st, pd_entity e, const char *id, int col, pd_srv_value *out)
{
    pg_storage *s = PG(st);
    memset(out, 0, sizeof *out);
    if (!valid_column(e, col))
        return pg_fail(s, PD_ERR_INTERNAL, "bad column %d of %s", col,
                       pd_entity_name(e) ? pd_entity_name(e) : "?");
    params P = {0};
    p_text(&P, id);
    PGresult *r;
    int rc = call(s, SLOT_GET + (int)e * MAX_COLS + col, &P, "reading a field", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(s, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    }
    rc = take_value(s, r, 0, out);
    PQclear(r);
    return rc;
}

/* The four reads of a field merge in one round trip (storage.h field_merge_read): the value and
 * the record's desa, the field's last change (LEFT JOIN: none if it never changed), and whether
 * another device changed the record since the base. The record's row is locked (FOR UPDATE OF
 * r) till the transaction ends: two servers merging into one record take turns, the second
 * reads what the first wrote (a deadlock between two is retried whole, as PD_ERR_BUSY). */
static int pg_field_merge_read(pd_storage *st, pd_entity e, const char *id, int col,
                               int64_t base_rev, const char *device_id, pd_srv_merge_read *out)
{
    pg_storage *s = PG(st);
    memset(out, 0, sizeof *out);
    if ((e != PD_ENT_HOUSEHOLD && e != PD_ENT_MEMBER) || !valid_column(e, col))
        return pg_fail(s, PD_ERR_INTERNAL, "bad column %d of %s", col,
                       pd_entity_name(e) ? pd_entity_name(e) : "?");
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    params P = {0};
    p_text(&P, id);
    p_text(&P, pd_entity_name(e));
    p_text(&P, cols[col].name);
    p_int(&P, base_rev);
    p_text(&P, device_id);
    PGresult *r;
    int rc = call(s, SLOT_MERGE + (int)e * MAX_COLS + col, &P, "reading a field to merge", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(s, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    }
    r_copy_text(out->desa, sizeof out->desa, r, 0, 1);
    out->has_last = !r_null(r, 0, 2);
    if (out->has_last) {
        read_change(r, 2, &out->last);
    }
    out->changed_elsewhere = !r_null(r, 0, 8) && PQgetvalue(r, 0, 8)[0] != 0;
    rc = take_value(s, r, 0, &out->value);
    PQclear(r);
    return rc;
}

/* Inside a transaction the record's row is locked (FOR UPDATE): the merge reads the revision
 * before it reads and writes fields, so this serialises writers of one record. */
static int pg_record_rev(pd_storage *st, pd_entity e, const char *id, int64_t *rev)
{
    pg_storage *s = PG(st);
    int col = pd_entity_column(e, "rev");
    if (!valid_column(e, col))
        return pg_fail(s, PD_ERR_INTERNAL, "entity %d has no rev", (int)e);
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK)
        return rc;
    params P = {0};
    p_text(&P, id);
    PGresult *r = NULL;
    rc = run(s, c, c->in_tx ? SLOT_LOCKREV + (int)e : SLOT_GET + (int)e * MAX_COLS + col, NULL, &P,
             "reading a record's revision", &r);
    params_free(&P);
    conn_put(s, c);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1)
        *rev = r_int(r, 0, 0);
    else
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    PQclear(r);
    return rc;
}

static int put_change(pg_storage *s, pg_conn *c, pd_entity e, const char *id, const char *field,
                      const pd_srv_change *ch)
{
    params P = {0};
    p_text(&P, pd_entity_name(e));
    p_text(&P, id);
    p_text(&P, field);
    p_int(&P, ch->rev);
    p_text(&P, ch->device_id[0] ? ch->device_id : NULL);
    p_blob(&P, ch->has_author ? ch->author_pk : NULL, PD_PUBKEY_BYTES);
    p_int(&P, ch->seq);
    p_int(&P, ch->hlc);
    p_blob(&P, ch->has_batch ? ch->batch_hash : NULL, PD_HASH_BYTES);
    int rc = run(s, c, ST_FCH_PUT, NULL, &P, "recording a field change", NULL);
    params_free(&P);
    return rc;
}

static int pg_field_set(pd_storage *st, pd_entity e, const char *id, int col, const pd_value *v,
                        const pd_srv_change *ch)
{
    pg_storage *s = PG(st);
    if (!valid_column(e, col))
        return pg_fail(s, PD_ERR_INTERNAL, "bad column %d", col);
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    /* Refused values never reach PostgreSQL (an error there would end the transaction). */
    if (!v || !pd_column_accepts(&cols[col], v))
        return pg_fail(s, PD_ERR_INVALID, "%s %s: value refused for %s: wrong type%s",
                       pd_entity_name(e), id, cols[col].name,
                       v && v->type == PD_VAL_NULL ? " (NULL)" : "");
    if (col == 0 || !strcmp(cols[col].name, "prov") || !strcmp(cols[col].name, "rev"))
        return pg_fail(s, PD_ERR_INVALID, "%s %s: value refused for %s: it cannot change",
                       pd_entity_name(e), id, cols[col].name);
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK)
        return rc;
    params P = {0};
    if (cols[col].type == PD_VAL_REAL && v->type == PD_VAL_INT)
        p_real(&P, (double)v->i);
    else
        p_value(&P, v);
    p_int(&P, ch->rev);
    p_text(&P, id);
    PGresult *r = NULL;
    rc = run(s, c, SLOT_SET + (int)e * MAX_COLS + col, NULL, &P, "setting a field", &r);
    params_free(&P);
    if (rc == PD_OK) {
        long changed = changes(r);
        PQclear(r);
        if (changed == 0)
            rc = pg_fail(s, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
        else
            rc = put_change(s, c, e, id, cols[col].name, ch);
    } else if (rc == PD_ERR_EXISTS) {
        rc = pg_recode(s, PD_ERR_INVALID); /* a constraint refused the value */
    }
    conn_put(s, c);
    return rc;
}

static int pg_field_change(pd_storage *st, pd_entity e, const char *id, int col, pd_srv_change *out)
{
    pg_storage *s = PG(st);
    if (!valid_column(e, col))
        return pg_fail(s, PD_ERR_INTERNAL, "bad column %d", col);
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    params P = {0};
    p_text(&P, pd_entity_name(e));
    p_text(&P, id);
    p_text(&P, cols[col].name);
    PGresult *r;
    int rc = call(s, ST_FCH_GET, &P, "reading a field change", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1) {
        read_change(r, 0, out);
    } else {
        rc = pg_fail(s, PD_ERR_NOTFOUND, "field never changed");
    }
    PQclear(r);
    return rc;
}

static int pg_changed_elsewhere(pd_storage *st, pd_entity e, const char *id, int64_t rev,
                                const char *device_id, bool *changed)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, pd_entity_name(e));
    p_text(&P, id);
    p_int(&P, rev);
    p_text(&P, device_id);
    PGresult *r;
    int rc = call(s, ST_FCH_OTHER, &P, "reading a record's changes", &r);
    if (rc != PD_OK)
        return rc;
    *changed = PQntuples(r) > 0;
    PQclear(r);
    return PD_OK;
}

/* The prepared-statement slot of a statement's SQL on this connection — record inserts (the
 * column sets callers use are few; the SQLite backend caches them too) and the korcam block's
 * statements (some run at batch pace, in the merge-time checks) — or -1 to send it unnamed. */
static int sql_slot(pg_conn *c, const char *sql)
{
    for (int i = 0; i < SQL_CACHE; i++) {
        if (!c->sql_text[i]) {
            if (!(c->sql_text[i] = strdup(sql)))
                return -1;
            c->prepared[SLOT__COUNT + i] = false;
            return SLOT__COUNT + i;
        }
        if (!strcmp(c->sql_text[i], sql))
            return SLOT__COUNT + i;
    }
    return -1;
}

/* Insert a record: its key into record_key first (ON CONFLICT DO NOTHING: a duplicate id in any
 * province adds nothing), then the row into its province's partition, in one statement. */
static int pg_record_insert(pd_storage *st, pd_entity e, const pd_srv_field *fields, size_t n,
                            int64_t rev)
{
    pg_storage *s = PG(st);
    size_t ncols;
    const pd_column *cols = pd_entity_columns(e, &ncols);
    const char *ename = pd_entity_name(e);
    if (!cols || n == 0 || n > ncols || n + 2 > MAX_PARAMS)
        return pg_fail(s, PD_ERR_INVALID, "record insert: bad field list");
    int revcol = pd_entity_column(e, "rev");
    int idx[MAX_COLS];
    int at_id = -1, at_prov = -1, at_hh = -1;
    for (size_t i = 0; i < n; i++) {
        int c = pd_entity_column(e, fields[i].name);
        if (c < 0 || c == revcol)
            return pg_fail(s, PD_ERR_INVALID, "%s has no settable column '%s'", ename,
                           fields[i].name ? fields[i].name : "");
        for (size_t j = 0; j < i; j++)
            if (idx[j] == c)
                return pg_fail(s, PD_ERR_INVALID, "%s: column '%s' given twice", ename,
                               cols[c].name);
        idx[i] = c;
        const pd_value *v = &fields[i].value;
        if (!pd_column_accepts(&cols[c], v))
            return pg_fail(s, PD_ERR_INVALID, "%s: %s constraint failed: %s.%s", ename,
                           v->type == PD_VAL_NULL ? "NOT NULL" : "datatype", ename, cols[c].name);
        if (c == 0)
            at_id = (int)i;
        else if (!strcmp(cols[c].name, "prov"))
            at_prov = (int)i;
        else if (!strcmp(cols[c].name, "household_id"))
            at_hh = (int)i;
    }
    for (int k = 0; required[e][k]; k++) {
        bool have = false;
        for (size_t i = 0; i < n && !have; i++)
            have = !strcmp(cols[idx[i]].name, required[e][k]);
        if (!have)
            return pg_fail(s, PD_ERR_INVALID, "%s: NOT NULL constraint failed: %s.%s", ename, ename,
                           required[e][k]);
    }
    if (e == PD_ENT_PHOTO && fields[at_id].value.len != 64)
        return pg_fail(s, PD_ERR_INVALID, "photo: CHECK constraint failed: length(hash) = 64");

    /* $1 rev, $2.. the fields in order */
    sbuf q = {0};
    char num[64];
    sb_str(&q, "WITH k AS (INSERT INTO record_key (entity, id, prov) ");
    if (e == PD_ENT_HOUSEHOLD) {
        snprintf(num, sizeof num, "VALUES (0, $%d::text, $%d::text) ", at_id + 2, at_prov + 2);
    } else if (e == PD_ENT_MEMBER) { /* a member needs its household (foreign key) */
        snprintf(num, sizeof num, "SELECT 1, $%d::text, hk.prov FROM record_key hk WHERE ",
                 at_id + 2);
        sb_str(&q, num);
        snprintf(num, sizeof num, "hk.entity = 0 AND hk.id = $%d::text ", at_hh + 2);
    } else {
        snprintf(num, sizeof num, "SELECT %d, $%d::text, COALESCE((SELECT prov FROM ", (int)e,
                 at_id + 2);
        sb_str(&q, num);
        snprintf(num, sizeof num, "record_key WHERE entity = 0 AND id = $%d::text), '') ",
                 at_hh + 2);
    }
    sb_str(&q, num);
    sb_str(&q, "ON CONFLICT DO NOTHING RETURNING prov) INSERT INTO ");
    sb_str(&q, ename);
    sb_str(&q, e == PD_ENT_HOUSEHOLD ? " (rev" : " (prov, rev");
    for (size_t i = 0; i < n; i++) {
        sb_str(&q, ", ");
        sb_str(&q, cols[idx[i]].name);
    }
    sb_str(&q, e == PD_ENT_HOUSEHOLD ? ") SELECT $1::bigint" : ") SELECT k.prov, $1::bigint");
    for (size_t i = 0; i < n; i++) {
        snprintf(num, sizeof num, ", $%zu::%s", i + 2, pg_type_of(cols[idx[i]].type));
        sb_str(&q, num);
    }
    sb_str(&q, " FROM k");
    if (q.nomem) {
        free(q.p);
        return pg_fail(s, PD_ERR_NOMEM, "out of memory building a record insert");
    }
    params P = {0};
    p_int(&P, rev);
    for (size_t i = 0; i < n; i++) {
        const pd_value *v = &fields[i].value;
        if (cols[idx[i]].type == PD_VAL_REAL && v->type == PD_VAL_INT)
            p_real(&P, (double)v->i);
        else
            p_value(&P, v);
    }
    pg_conn *c;
    int rc = conn_get(s, &c);
    PGresult *r = NULL;
    if (rc == PD_OK) {
        rc = run(s, c, sql_slot(c, q.p), q.p, &P, "inserting a record", &r);
        long added = 0;
        if (rc == PD_OK) {
            added = changes(r);
            PQclear(r);
            r = NULL;
        } else if (rc == PD_ERR_EXISTS) {
            rc = pg_recode(s, PD_ERR_INVALID); /* another constraint (a CHECK) refused a value */
        }
        bool no_household = false;
        if (rc == PD_OK && added == 0 && e == PD_ENT_MEMBER) {
            /* nothing added: the id exists, or the household does not (foreign key) */
            params K = {0};
            p_int(&K, PD_ENT_HOUSEHOLD);
            p_textn(&K, fields[at_hh].value.p, fields[at_hh].value.len);
            rc = run(s, c, ST_KEY_GET, NULL, &K, "inserting a record", &r);
            params_free(&K);
            no_household = rc == PD_OK && PQntuples(r) == 0;
            PQclear(r);
        }
        if (rc == PD_OK && no_household)
            rc = pg_fail(s, PD_ERR_INVALID,
                         "member: FOREIGN KEY constraint failed (no "
                         "household %.*s)",
                         (int)fields[at_hh].value.len, (const char *)fields[at_hh].value.p);
        else if (rc == PD_OK && added == 0)
            rc = pg_fail(s, PD_ERR_EXISTS, "%s: UNIQUE constraint failed: %s.%s", ename, ename,
                         cols[0].name);
        conn_put(s, c);
    }
    params_free(&P);
    free(q.p);
    return rc;
}

static int pg_record_area(pd_storage *st, pd_entity e, const char *id, char *desa)
{
    pg_storage *s = PG(st);
    static const int ids[PD_ENT__COUNT] = {ST_AREA_HH, ST_AREA_MEMBER, ST_AREA_VISIT,
                                           ST_AREA_PHOTO};
    if ((unsigned)e >= PD_ENT__COUNT)
        return pg_fail(s, PD_ERR_INTERNAL, "bad entity");
    params P = {0};
    p_text(&P, id);
    PGresult *r;
    int rc = call(s, ids[e], &P, "reading a record's area", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1)
        r_copy_text(desa, PD_SRV_CODE_MAX + 1, r, 0, 0);
    else
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    PQclear(r);
    return rc;
}

/* Inside a transaction a lock first (its own statement), then the read: of two transactions
 * checking the same key, the second sees what the first wrote. */
static int locked_pairs(pg_storage *s, int lock_slot, int lock_class, int slot, const char *key,
                        pd_storage_pair_cb cb, void *ctx, const char *what)
{
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK)
        return rc;
    params P = {0};
    if (c->in_tx) {
        if (lock_class)
            p_int(&P, lock_class);
        p_text(&P, key);
        rc = run(s, c, lock_slot, NULL, &P, what, NULL);
        params_free(&P);
    }
    PGresult *r = NULL;
    if (rc == PD_OK) {
        p_text(&P, key);
        rc = run(s, c, slot, NULL, &P, what, &r);
        params_free(&P);
    }
    conn_put(s, c);
    if (rc != PD_OK)
        return rc;
    int stop = 0, ncol = PQnfields(r);
    for (int i = 0; i < PQntuples(r) && !stop; i++)
        stop = cb(ctx, r_text(r, i, 0), r_text(r, i, 1), ncol > 2 ? r_text(r, i, 2) : NULL);
    PQclear(r);
    return stop;
}

static int pg_nik_holders(pd_storage *st, const char *nik, pd_storage_pair_cb cb, void *ctx)
{
    return locked_pairs(PG(st), ST_LOCK, LOCK_NIK, ST_NIK_HOLDERS, nik, cb, ctx,
                        "looking up a NIK");
}

static int pg_visits_of(pd_storage *st, const char *household_id, pd_storage_pair_cb cb, void *ctx)
{
    return locked_pairs(PG(st), ST_HH_LOCK, 0, ST_VISITS_OF, household_id, cb, ctx,
                        "listing visits");
}

/* Hand row i of a whole-row result (columns in records.h order) to cb. */
static int emit(pd_entity e, const PGresult *r, int i, pd_storage_row_cb cb, void *ctx)
{
    size_t n;
    const pd_column *cols = pd_entity_columns(e, &n);
    pd_srv_field f[MAX_COLS];
    for (size_t k = 0; k < n && k < MAX_COLS; k++) {
        f[k].name = cols[k].name;
        f[k].value = r_value(r, i, (int)k, NULL);
    }
    return cb(ctx, e, f, n);
}

/* The codes and the stable revision, then the statements run by body, on one connection. */
static int pg_records_since(pd_storage *st, const char *area_list, int64_t since, int64_t limit,
                            pd_storage_row_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    areas a;
    int rc = areas_parse(s, area_list, &a);
    if (rc != PD_OK)
        return rc;
    PGresult *hh = NULL, *mm = NULL;
    pg_conn *c;
    rc = conn_get(s, &c);
    if (rc == PD_OK) {
        int64_t upto = 0;
        rc = stable_rev(s, c, &upto);
        for (int k = 0; k < 2 && rc == PD_OK; k++) {
            params P = {0};
            p_text(&P, a.codes);
            p_int(&P, since);
            p_int(&P, upto);
            if (limit >= 0)
                p_int(&P, limit);
            else
                p_null(&P);
            rc = run(s, c, k == 0 ? ST_HH_SINCE : ST_MEMBER_SINCE, NULL, &P,
                     "listing changed records", k == 0 ? &hh : &mm);
            params_free(&P);
        }
        conn_put(s, c);
    }
    areas_free(&a);
    /* merge the two rev-ordered lists */
    int stop = 0, i = 0, j = 0, nh = hh ? PQntuples(hh) : 0, nm = mm ? PQntuples(mm) : 0;
    int64_t emitted = 0;
    int hrev = pd_entity_column(PD_ENT_HOUSEHOLD, "rev");
    int mrev = pd_entity_column(PD_ENT_MEMBER, "rev");
    while (rc == PD_OK && !stop && (i < nh || j < nm) && (limit < 0 || emitted < limit)) {
        bool take_hh = j >= nm || (i < nh && r_int(hh, i, hrev) <= r_int(mm, j, mrev));
        stop = take_hh ? emit(PD_ENT_HOUSEHOLD, hh, i++, cb, ctx)
                       : emit(PD_ENT_MEMBER, mm, j++, cb, ctx);
        emitted++;
    }
    PQclear(hh);
    PQclear(mm);
    return rc != PD_OK ? rc : stop;
}

/* A text[] literal of the ids in column 0 of r. */
static char *id_array(const PGresult *r)
{
    sbuf b = {0};
    sb_str(&b, "{");
    for (int i = 0; i < PQntuples(r); i++) {
        if (i)
            sb_str(&b, ",");
        const char *t = r_text(r, i, 0);
        sb_quoted(&b, t, strlen(t));
    }
    sb_str(&b, "}");
    if (b.nomem) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* Households in id order a page at a time, each followed by its members in member_no order. */
static int pg_area_records(pd_storage *st, const char *area_list, pd_storage_row_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    areas a;
    int rc = areas_parse(s, area_list, &a);
    if (rc != PD_OK)
        return rc;
    char after[256] = "";
    int stop = 0, mhh = pd_entity_column(PD_ENT_MEMBER, "household_id");
    for (;;) {
        PGresult *hh = NULL, *mm = NULL;
        pg_conn *c;
        rc = conn_get(s, &c);
        if (rc != PD_OK)
            break;
        params P = {0};
        p_text(&P, a.codes);
        p_text(&P, after);
        p_int(&P, PAGE_ROWS);
        rc = run(s, c, ST_AREA_HHS, NULL, &P, "listing an area's households", &hh);
        params_free(&P);
        if (rc == PD_OK && PQntuples(hh) > 0) {
            p_text(&P, a.provs);
            p_owned(&P, id_array(hh));
            rc = run(s, c, ST_AREA_MEMBERS, NULL, &P, "listing households' members", &mm);
            params_free(&P);
        }
        conn_put(s, c);
        int nh = rc == PD_OK ? PQntuples(hh) : 0, nm = mm ? PQntuples(mm) : 0, j = 0;
        for (int i = 0; i < nh && !stop; i++) {
            const char *id = r_text(hh, i, 0);
            stop = emit(PD_ENT_HOUSEHOLD, hh, i, cb, ctx);
            while (!stop && j < nm && strcmp(r_text(mm, j, mhh), id) < 0)
                j++;
            while (!stop && j < nm && !strcmp(r_text(mm, j, mhh), id))
                stop = emit(PD_ENT_MEMBER, mm, j++, cb, ctx);
        }
        if (nh > 0)
            snprintf(after, sizeof after, "%s", r_text(hh, nh - 1, 0));
        PQclear(hh);
        PQclear(mm);
        if (rc != PD_OK || stop || nh < PAGE_ROWS)
            break;
    }
    areas_free(&a);
    return rc != PD_OK ? rc : stop;
}

static int pg_shape_put(pd_storage *st, const char *code, const char *name, const char *shape,
                        int64_t rev)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, code);
    p_text(&P, name);
    p_text(&P, shape);
    p_int(&P, rev);
    bool added;
    int rc = insert_new(s, ST_SHAPE_PUT, &P, "adding an area shape", &added);
    if (rc == PD_OK && !added)
        rc = pg_fail(s, PD_ERR_EXISTS, "adding an area shape: %s has one already", code);
    return rc;
}

static int pg_shapes_in(pd_storage *st, const char *area_list, pd_storage_shape_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    areas a;
    int rc = areas_parse(s, area_list, &a);
    if (rc != PD_OK)
        return rc;
    params P = {0};
    p_text(&P, a.codes);
    PGresult *r;
    rc = call(s, ST_SHAPES_IN, &P, "listing area shapes", &r);
    areas_free(&a);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++)
        stop = cb(ctx, r_text(r, i, 0), r_text(r, i, 1), r_text(r, i, 2), r_int(r, i, 3));
    PQclear(r);
    return stop;
}

static int pg_area_revision(pd_storage *st, const char *area_list, int64_t *rev)
{
    pg_storage *s = PG(st);
    areas a;
    int rc = areas_parse(s, area_list, &a);
    if (rc != PD_OK)
        return rc;
    pg_conn *c;
    rc = conn_get(s, &c);
    if (rc == PD_OK) {
        int64_t upto = 0;
        rc = stable_rev(s, c, &upto);
        if (rc == PD_OK) {
            params P = {0};
            p_text(&P, a.codes);
            p_int(&P, upto);
            rc = one_int(s, c, ST_AREA_REV, &P, "reading an area's revision", rev);
        }
        conn_put(s, c);
    }
    areas_free(&a);
    return rc;
}

static int pg_conflict_add(pd_storage *st, const pd_srv_conflict *c, int64_t *id)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, c->kind);
    p_text(&P, c->entity);
    p_text(&P, c->target);
    p_text(&P, c->field ? c->field : "");
    p_text(&P, c->area ? c->area : "");
    p_int(&P, c->base_rev);
    p_json(&P, c->base_value);
    p_json(&P, c->server_value);
    if (c->server) {
        p_text(&P, c->server->device_id[0] ? c->server->device_id : NULL);
        p_blob(&P, c->server->has_author ? c->server->author_pk : NULL, PD_PUBKEY_BYTES);
        p_int(&P, c->server->seq);
        p_int(&P, c->server->hlc);
        p_blob(&P, c->server->has_batch ? c->server->batch_hash : NULL, PD_HASH_BYTES);
    } else {
        for (int k = 0; k < 5; k++)
            p_null(&P);
    }
    p_json(&P, c->device_value);
    p_text(&P, c->device_id);
    p_blob(&P, c->device_author, PD_PUBKEY_BYTES);
    p_int(&P, c->device_seq);
    p_int(&P, c->device_hlc);
    p_int(&P, c->batch_seq);
    p_blob(&P, c->batch_hash, PD_HASH_BYTES);
    p_int(&P, c->created_at);
    p_int(&P, c->rev);
    PGresult *r;
    int rc = call(s, ST_CONFLICT_ADD, &P, "adding a conflict", &r);
    if (rc != PD_OK)
        return rc;
    if (id && PQntuples(r) == 1)
        *id = r_int(r, 0, 0);
    PQclear(r);
    return PD_OK;
}

static int pg_conflicts_since(pd_storage *st, const char *area_list, int64_t since,
                              pd_storage_row_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    static const char *const names[] = {"id",    "kind",  "entity",         "target",
                                        "field", "state", "resolved_value", "rev"};
    areas a;
    int rc = areas_parse(s, area_list, &a);
    if (rc != PD_OK)
        return rc;
    PGresult *r = NULL;
    pg_conn *c;
    rc = conn_get(s, &c);
    if (rc == PD_OK) {
        int64_t upto = 0;
        rc = stable_rev(s, c, &upto);
        if (rc == PD_OK) {
            params P = {0};
            p_text(&P, a.codes);
            p_int(&P, since);
            p_int(&P, upto);
            rc = run(s, c, ST_CONFLICTS_SINCE, NULL, &P, "listing conflicts", &r);
            params_free(&P);
        }
        conn_put(s, c);
    }
    areas_free(&a);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        pd_srv_field f[8];
        arena ar = {0};
        for (int k = 0; k < 8; k++) {
            f[k].name = names[k];
            f[k].value = r_value(r, i, k, &ar);
        }
        /* The entity argument is not a record here: conflicts are their own kind of row. */
        stop = cb(ctx, PD_ENT__COUNT, f, 8);
        arena_free(&ar);
    }
    PQclear(r);
    return stop;
}

static int pg_audit_add(pd_storage *st, const pd_srv_audit *a)
{
    params P = {0};
    p_int(&P, a->at);
    p_text(&P, a->action);
    p_text(&P, a->actor);
    p_text(&P, a->device_id);
    p_blob(&P, a->batch_hash, PD_HASH_BYTES);
    p_int(&P, a->seq);
    p_text(&P, a->entity);
    p_text(&P, a->target);
    p_text(&P, a->field);
    p_json(&P, a->old_value);
    p_json(&P, a->new_value);
    p_int(&P, a->rev);
    return call(PG(st), ST_AUDIT_ADD, &P, "writing the audit log", NULL);
}

static int pg_stats(pd_storage *st, pd_srv_stats *out)
{
    pg_storage *s = PG(st);
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc != PD_OK)
        return rc;
    int64_t upto = 0;
    PGresult *r = NULL;
    rc = stable_rev(s, c, &upto);
    if (rc == PD_OK) {
        params P = {0};
        p_int(&P, upto);
        rc = run(s, c, ST_STATS, NULL, &P, "reading statistics", &r);
        params_free(&P);
    }
    conn_put(s, c);
    if (rc != PD_OK)
        return rc;
    int64_t *f[] = {&out->users,        &out->devices, &out->devices_revoked, &out->households,
                    &out->members,      &out->visits,  &out->photos,          &out->batches,
                    &out->batches_held, &out->forks,   &out->conflicts_open,  &out->uploads_open,
                    &out->revision};
    for (size_t i = 0; i < PD_ARRAY_LEN(f); i++)
        *f[i] = PQntuples(r) == 1 ? r_int(r, 0, (int)i) : 0;
    PQclear(r);
    return PD_OK;
}

/* ==== korcam =====================================================================================
 * The korcam block (server/korcam.c; storage.h "korcam"), as in storage_sqlite.c: these run at a
 * person's pace, so each statement is sent unnamed (parsed per call) — fixed SQL with parameters
 * all the same. Lookups by a household id find its province through record_key; area filters
 * take the codes as a text[] parameter ($1). Values a CHECK would refuse are refused here first
 * (an error would end the caller's transaction). */

#define KO_IN_AREAS(col)                                                                           \
    "EXISTS (SELECT 1 FROM unnest($1::text[]) a(code) WHERE " col " = a.code OR starts_with(" col  \
    ", a.code || '.'))"

#define KO_CONFLICT_COLS                                                                           \
    "c.id, c.kind, c.entity, c.target, c.field, c.area, c.related, COALESCE(hh.id, ''), "          \
    "COALESCE(hh.head_name, ''), COALESCE(c.base_rev, 0), c.base_value, c.server_value, "          \
    "c.device_value, COALESCE(c.server_device, ''), COALESCE(sk.user_id, ''), "                    \
    "c.server_author, COALESCE(c.server_seq, 0), COALESCE(c.server_hlc, 0), c.server_batch, "      \
    "c.device_device, COALESCE(dk.user_id, ''), c.device_author, c.device_seq, c.device_hlc, "     \
    "c.batch_seq, c.batch_hash, c.created_at, c.rev, c.resolved_at IS NOT NULL, "                  \
    "COALESCE(c.resolution, ''), c.resolved_value, COALESCE(c.resolved_by, ''), "                  \
    "COALESCE(c.resolution_note, ''), COALESCE(c.resolved_at, 0) "
/* the household a conflict is about: its target, or a member's or visit's household */
#define KO_CONFLICT_FROM                                                                           \
    "FROM conflicts c LEFT JOIN person_keys sk ON sk.pk = c.server_author "                        \
    "LEFT JOIN person_keys dk ON dk.pk = c.device_author "                                         \
    "LEFT JOIN LATERAL (SELECT CASE c.entity WHEN 'household' THEN c.target "                      \
    "WHEN 'member' THEN (SELECT m.household_id FROM member m WHERE m.prov = (SELECT prov FROM "    \
    "record_key WHERE entity = 1 AND id = c.target) AND m.id = c.target) "                         \
    "WHEN 'visit' THEN (SELECT v.household_id FROM visit v WHERE v.prov = (SELECT prov FROM "      \
    "record_key WHERE entity = 2 AND id = c.target) AND v.id = c.target) END AS hid) x ON true "   \
    "LEFT JOIN record_key hk ON hk.entity = 0 AND hk.id = x.hid "                                  \
    "LEFT JOIN household hh ON hh.prov = hk.prov AND hh.id = x.hid "
#define KO_CONFLICT_WHERE                                                                          \
    "WHERE " KO_IN_AREAS(                                                                          \
        "c.area") " AND ($2::text IS NULL OR c.kind = $2::text) "                                  \
                  "AND ($3::text IS NULL OR c.area = $3::text OR starts_with(c.area, $3::text || " \
                  "'.')) "                                                                         \
                  "AND ($4::text IS NULL OR c.device_author IN (SELECT pk FROM person_keys WHERE " \
                  "user_id = "                                                                     \
                  "$4::text) OR c.server_author IN (SELECT pk FROM person_keys WHERE user_id = "   \
                  "$4::text)) "                                                                    \
                  "AND ($5::text IS NULL OR ($5::text = 'open') = (c.resolved_at IS NULL)) "       \
                  "AND ($6::bigint = 0 OR c.created_at < $6::bigint) "

static const char ko_sql_list[] = "SELECT " KO_CONFLICT_COLS KO_CONFLICT_FROM KO_CONFLICT_WHERE
                                  "ORDER BY c.created_at DESC, c.id DESC LIMIT $7::bigint "
                                  "OFFSET $8::bigint";
static const char ko_sql_count[] = "SELECT count(*) FROM conflicts c " KO_CONFLICT_WHERE;
static const char ko_sql_get[] = "SELECT " KO_CONFLICT_COLS KO_CONFLICT_FROM "WHERE c.id = $1";

/* A korcam statement on a borrowed (or the transaction's) connection; P is freed. */
static int ko_run(pg_storage *s, const char *sql, params *P, const char *ctx, PGresult **out)
{
    if (out)
        *out = NULL;
    pg_conn *c;
    int rc = conn_get(s, &c);
    if (rc == PD_OK) {
        rc = run(s, c, sql_slot(c, sql), sql, P, ctx, out);
        conn_put(s, c);
    }
    params_free(P);
    return rc;
}

static const uint8_t *ko_blob(const PGresult *r, int row, int col, size_t n)
{
    if (PQgetisnull(r, row, col) || (size_t)PQgetlength(r, row, col) != n)
        return NULL;
    return (const uint8_t *)PQgetvalue(r, row, col);
}

static void ko_conflict_row(const PGresult *r, int row, pd_srv_conflict_row *c, arena *a)
{
    memset(c, 0, sizeof *c);
    int i = 0;
    c->id = r_int(r, row, i++);
    c->kind = r_text(r, row, i++);
    c->entity = r_text(r, row, i++);
    c->target = r_text(r, row, i++);
    c->field = r_text(r, row, i++);
    c->area = r_text(r, row, i++);
    c->related = r_text(r, row, i++);
    c->household_id = r_text(r, row, i++);
    c->head_name = r_text(r, row, i++);
    c->base_rev = r_int(r, row, i++);
    c->base_value = r_value(r, row, i++, a);
    c->server_value = r_value(r, row, i++, a);
    c->device_value = r_value(r, row, i++, a);
    c->server_device = r_text(r, row, i++);
    c->server_user = r_text(r, row, i++);
    c->server_author = ko_blob(r, row, i++, PD_PUBKEY_BYTES);
    c->server_seq = r_int(r, row, i++);
    c->server_hlc = r_int(r, row, i++);
    c->server_batch = ko_blob(r, row, i++, PD_HASH_BYTES);
    c->device_device = r_text(r, row, i++);
    c->device_user = r_text(r, row, i++);
    c->device_author = ko_blob(r, row, i++, PD_PUBKEY_BYTES);
    c->device_seq = r_int(r, row, i++);
    c->device_hlc = r_int(r, row, i++);
    c->batch_seq = r_int(r, row, i++);
    c->batch_hash = ko_blob(r, row, i++, PD_HASH_BYTES);
    c->created_at = r_int(r, row, i++);
    c->rev = r_int(r, row, i++);
    c->resolved = r_int(r, row, i++) != 0;
    c->resolution = r_text(r, row, i++);
    c->resolved_value = r_value(r, row, i++, a);
    c->resolved_by = r_text(r, row, i++);
    c->note = r_text(r, row, i++);
    c->resolved_at = r_int(r, row, i++);
}

static int ko_conflicts(const PGresult *r, pd_storage_conflict_cb cb, void *ctx)
{
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        arena a = {0};
        pd_srv_conflict_row c;
        ko_conflict_row(r, i, &c, &a);
        stop = cb(ctx, &c);
        arena_free(&a);
    }
    return stop;
}

static int ko_filter_params(pg_storage *s, const pd_srv_conflict_filter *f, params *P)
{
    areas a;
    int rc = areas_parse(s, f->areas ? f->areas : "", &a);
    if (rc != PD_OK)
        return rc;
    p_owned(P, a.codes);
    a.codes = NULL;
    areas_free(&a);
    p_text(P, f->kind);
    p_text(P, f->desa);
    p_text(P, f->enumerator);
    p_text(P, f->state);
    p_int(P, f->created_before > 0 ? f->created_before : 0);
    return PD_OK;
}

static int pg_conflicts_list(pd_storage *st, const pd_srv_conflict_filter *f,
                             pd_storage_conflict_cb cb, void *ctx, int64_t *total)
{
    pg_storage *s = PG(st);
    params P = {0};
    PGresult *r;
    int rc;
    if (total) {
        if ((rc = ko_filter_params(s, f, &P)) != PD_OK) {
            params_free(&P);
            return rc;
        }
        if ((rc = ko_run(s, ko_sql_count, &P, "counting conflicts", &r)) != PD_OK)
            return rc;
        *total = PQntuples(r) == 1 ? r_int(r, 0, 0) : 0;
        PQclear(r);
    }
    if ((rc = ko_filter_params(s, f, &P)) != PD_OK) {
        params_free(&P);
        return rc;
    }
    if (f->limit > 0)
        p_int(&P, f->limit);
    else
        p_null(&P);
    p_int(&P, f->offset > 0 ? f->offset : 0);
    if ((rc = ko_run(s, ko_sql_list, &P, "listing conflicts", &r)) != PD_OK)
        return rc;
    int stop = ko_conflicts(r, cb, ctx);
    PQclear(r);
    return stop;
}

static int pg_conflict_get(pd_storage *st, int64_t id, pd_storage_conflict_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_int(&P, id);
    PGresult *r;
    int rc = ko_run(s, ko_sql_get, &P, "reading a conflict", &r);
    if (rc != PD_OK)
        return rc;
    rc = PQntuples(r) == 0 ? pg_fail(s, PD_ERR_NOTFOUND, "no conflict %lld", (long long)id)
                           : ko_conflicts(r, cb, ctx);
    PQclear(r);
    return rc;
}

static int pg_conflict_relate(pd_storage *st, int64_t id, const char *related)
{
    params P = {0};
    p_int(&P, id);
    p_text(&P, related ? related : "");
    return ko_run(PG(st), "UPDATE conflicts SET related = $2::text WHERE id = $1::bigint", &P,
                  "relating a conflict", NULL);
}

static int pg_conflict_exists(pd_storage *st, const char *kind, const char *target,
                              const char *related, const pd_value *device_value, bool *exists)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, kind);
    p_text(&P, target);
    p_text(&P, related ? related : "");
    p_bool(&P, device_value == NULL);
    p_json(&P, device_value);
    PGresult *r;
    int rc = ko_run(s,
                    "SELECT 1 FROM conflicts WHERE kind = $1::text AND target = $2::text AND "
                    "related = $3::text AND ($4::boolean OR device_value IS NOT DISTINCT FROM "
                    "$5::jsonb) LIMIT 1",
                    &P, "looking for a conflict", &r);
    if (rc != PD_OK)
        return rc;
    *exists = PQntuples(r) > 0;
    PQclear(r);
    return PD_OK;
}

static bool one_of(const char *v, const char *const *list)
{
    for (; v && *list; list++)
        if (!strcmp(v, *list))
            return true;
    return false;
}

static int pg_conflict_resolve(pd_storage *st, const pd_srv_resolution *r)
{
    pg_storage *s = PG(st);
    static const char *const kinds[] = {"server", "device",  "value", "merge",
                                        "split",  "revisit", NULL};
    if (!one_of(r->resolution, kinds))
        return pg_fail(s, PD_ERR_INVALID,
                       "conflict %lld: the resolution was refused: no "
                       "resolution '%s'",
                       (long long)r->id, r->resolution ? r->resolution : "");
    params P = {0};
    p_int(&P, r->id);
    p_text(&P, r->resolution);
    p_json(&P, r->value);
    p_text(&P, r->by);
    p_int(&P, r->at);
    p_text(&P, r->note && *r->note ? r->note : NULL);
    p_int(&P, r->rev);
    PGresult *res;
    int rc = ko_run(s,
                    "UPDATE conflicts SET resolution = $2::text, resolved_value = $3::jsonb, "
                    "resolved_by = $4::text, resolved_at = $5::bigint, resolution_note = "
                    "$6::text, rev = $7::bigint WHERE id = $1::bigint AND resolved_at IS NULL",
                    &P, "resolving a conflict", &res);
    if (rc != PD_OK)
        return rc;
    long n = changes(res);
    PQclear(res);
    if (n == 1)
        return PD_OK;
    p_int(&P, r->id);
    rc = ko_run(s, "SELECT resolved_by FROM conflicts WHERE id = $1::bigint", &P,
                "reading a conflict", &res);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(res) == 1)
        rc = pg_fail(s, PD_ERR_STATE, "conflict %lld was already resolved by %s", (long long)r->id,
                     r_text(res, 0, 0));
    else
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no conflict %lld", (long long)r->id);
    PQclear(res);
    return rc;
}

static int pg_nik_members(pd_storage *st, const char *nik, pd_storage_holder_cb cb, void *ctx)
{
    params P = {0};
    p_text(&P, nik);
    PGresult *r;
    int rc = ko_run(PG(st),
                    "SELECT m.id, m.household_id, m.status, COALESCE(h.source, ''), "
                    "m.name, COALESCE(m.relationship, 0) FROM member m LEFT JOIN "
                    "household h ON h.prov = m.prov AND h.id = m.household_id WHERE "
                    "m.nik = $1::text ORDER BY m.id",
                    &P, "looking up a NIK", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        pd_srv_holder h = {.member_id = r_text(r, i, 0),
                           .household_id = r_text(r, i, 1),
                           .status = r_text(r, i, 2),
                           .household_source = r_text(r, i, 3),
                           .name = r_text(r, i, 4),
                           .relationship = r_int(r, i, 5)};
        stop = cb(ctx, &h);
    }
    PQclear(r);
    return stop;
}

static int pg_kk_households(pd_storage *st, const char *kk, pd_storage_pair_cb cb, void *ctx)
{
    params P = {0};
    p_text(&P, kk);
    PGresult *r;
    int rc = ko_run(PG(st),
                    "SELECT id, head_name FROM household WHERE kk = $1::text UNION "
                    "SELECT h.id, h.head_name FROM member m JOIN household h ON "
                    "h.prov = m.prov AND h.id = m.household_id WHERE m.kk = $1::text "
                    "ORDER BY 1",
                    &P, "looking up a KK", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++)
        stop = cb(ctx, r_text(r, i, 0), r_text(r, i, 1), NULL);
    PQclear(r);
    return stop;
}

#define KO_POINT_HH                                                                                \
    "SELECT h.id, h.head_name, ''::text, h.lat, h.lon, -1.0::float8, 0::bigint, ''::text, "        \
    "''::text, NULL::bytea FROM household h "
#define KO_POINT_VISIT                                                                             \
    "SELECT v.household_id, COALESCE(h.head_name, ''), v.id, v.lat, v.lon, "                       \
    "COALESCE(v.accuracy_m, -1.0), v.visited_at, v.outcome, v.device_id, v.enumerator_pk "         \
    "FROM visit v LEFT JOIN household h ON h.prov = v.prov AND h.id = v.household_id "

static int ko_points(const PGresult *r, pd_storage_point_cb cb, void *ctx)
{
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        if (r_null(r, i, 3) || r_null(r, i, 4))
            continue;
        pd_srv_point p = {.household_id = r_text(r, i, 0),
                          .head_name = r_text(r, i, 1),
                          .visit_id = r_text(r, i, 2),
                          .lat = r_real(r, i, 3),
                          .lon = r_real(r, i, 4),
                          .accuracy_m = r_real(r, i, 5),
                          .at = r_int(r, i, 6),
                          .outcome = r_text(r, i, 7),
                          .device_id = r_text(r, i, 8),
                          .enumerator_pk = ko_blob(r, i, 9, PD_PUBKEY_BYTES)};
        stop = cb(ctx, &p);
    }
    return stop;
}

static int pg_points_in_box(pd_storage *st, double lat_min, double lat_max, double lon_min,
                            double lon_max, pd_storage_point_cb cb, void *ctx)
{
    params P = {0};
    p_real(&P, lat_min);
    p_real(&P, lat_max);
    p_real(&P, lon_min);
    p_real(&P, lon_max);
    PGresult *r;
    int rc = ko_run(PG(st),
                    KO_POINT_HH "WHERE h.lat BETWEEN $1::float8 AND $2::float8 AND h.lon "
                                "BETWEEN $3::float8 AND $4::float8 UNION ALL " KO_POINT_VISIT
                                "WHERE v.lat BETWEEN $1::float8 AND $2::float8 AND v.lon BETWEEN "
                                "$3::float8 AND $4::float8 LIMIT 5000",
                    &P, "listing locations", &r);
    if (rc != PD_OK)
        return rc;
    int stop = ko_points(r, cb, ctx);
    PQclear(r);
    return stop;
}

static int pg_household_points(pd_storage *st, const char *household_id, pd_storage_point_cb cb,
                               void *ctx)
{
    params P = {0};
    p_text(&P, household_id);
    PGresult *r;
    int rc =
        ko_run(PG(st),
               KO_POINT_HH "WHERE h.prov = " KEY_PROV(
                   "0", "$1::text") " AND h.id = "
                                    "$1::text UNION ALL " KO_POINT_VISIT "WHERE v.prov = " KEY_PROV(
                                        "0", "$1::text") " AND v.household_id = $1::text "
                                                         "ORDER BY 7, 3",
               &P, "listing locations", &r);
    if (rc != PD_OK)
        return rc;
    int stop = ko_points(r, cb, ctx);
    PQclear(r);
    return stop;
}

static int pg_household_audit(pd_storage *st, const char *household_id, int64_t limit,
                              pd_storage_audit_cb cb, void *ctx)
{
    params P = {0};
    p_text(&P, household_id);
    if (limit > 0)
        p_int(&P, limit);
    else
        p_null(&P);
    PGresult *r;
    int rc = ko_run(
        PG(st),
        "SELECT * FROM (SELECT id, at, action, actor, COALESCE(device_id, ''), batch_hash, "
        "COALESCE(seq, 0), COALESCE(entity, ''), COALESCE(target, ''), COALESCE(field, ''), "
        "old_value, new_value, COALESCE(rev, 0) FROM audit WHERE (entity = 'household' AND "
        "target = $1::text) OR (entity = 'member' AND target IN (SELECT id FROM member WHERE "
        "prov = " KEY_PROV("0",
                           "$1::text") " AND household_id = $1::text)) OR (entity = 'visit' "
                                       "AND target IN (SELECT id FROM visit WHERE prov = " KEY_PROV(
                                           "0", "$1::text") " AND "
                                                            "household_id = $1::text)) ORDER BY id "
                                                            "DESC LIMIT $2::bigint) x ORDER BY id",
        &P, "reading a household's history", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        arena ar = {0};
        pd_srv_audit_row a = {.id = r_int(r, i, 0),
                              .at = r_int(r, i, 1),
                              .action = r_text(r, i, 2),
                              .actor = r_text(r, i, 3),
                              .device_id = r_text(r, i, 4),
                              .batch_hash = ko_blob(r, i, 5, PD_HASH_BYTES),
                              .seq = r_int(r, i, 6),
                              .entity = r_text(r, i, 7),
                              .target = r_text(r, i, 8),
                              .field = r_text(r, i, 9),
                              .old_value = r_value(r, i, 10, &ar),
                              .new_value = r_value(r, i, 11, &ar),
                              .rev = r_int(r, i, 12)};
        stop = cb(ctx, &a);
        arena_free(&ar);
    }
    PQclear(r);
    return stop;
}

static int pg_record_get(pd_storage *st, pd_entity e, const char *id, pd_storage_row_cb cb,
                         void *ctx)
{
    pg_storage *s = PG(st);
    if (e != PD_ENT_HOUSEHOLD && e != PD_ENT_MEMBER)
        return pg_fail(s, PD_ERR_INTERNAL, "record_get: households and members only");
    params P = {0};
    p_text(&P, id);
    PGresult *r;
    int rc = ko_run(
        s,
        e == PD_ENT_HOUSEHOLD
            ? "SELECT " HH_COLS
              " FROM household h WHERE h.prov = " KEY_PROV("0", "$1::text") " AND h.id = $1::text"
            : "SELECT " MEMBER_COLS
              " FROM member m WHERE m.prov = " KEY_PROV("1", "$1::text") " AND m.id = $1::text",
        &P, "reading a record", &r);
    if (rc != PD_OK)
        return rc;
    rc = PQntuples(r) == 0 ? pg_fail(s, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id)
                           : emit(e, r, 0, cb, ctx);
    PQclear(r);
    return rc;
}

static int pg_household_members(pd_storage *st, const char *household_id, pd_storage_row_cb cb,
                                void *ctx)
{
    params P = {0};
    p_text(&P, household_id);
    PGresult *r;
    int rc = ko_run(PG(st),
                    "SELECT " MEMBER_COLS " FROM member m WHERE m.prov = " KEY_PROV(
                        "0", "$1::text") " AND m.household_id = $1::text "
                                         "ORDER BY m.member_no, m.id",
                    &P, "listing a household's members", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++)
        stop = emit(PD_ENT_MEMBER, r, i, cb, ctx);
    PQclear(r);
    return stop;
}

static int pg_task_add(pd_storage *st, const pd_srv_task *t, int64_t *id)
{
    pg_storage *s = PG(st);
    static const char *const kinds[] = {"revisit", NULL};
    if (!one_of(t->kind, kinds) || !t->household_id || !t->area || !t->created_by)
        return pg_fail(s, PD_ERR_INVALID,
                       "task refused: kind must be revisit, with a household, "
                       "an area and its author");
    params P = {0};
    p_text(&P, t->kind);
    p_text(&P, t->household_id);
    p_text(&P, t->area);
    p_text(&P, t->assignee ? t->assignee : "");
    p_int(&P, t->conflict_id);
    p_text(&P, t->note ? t->note : "");
    p_text(&P, t->created_by);
    p_int(&P, t->created_at);
    p_int(&P, t->rev);
    PGresult *r;
    int rc = ko_run(s,
                    "INSERT INTO tasks (kind, household_id, area, assignee, conflict_id, note, "
                    "created_by, created_at, rev) VALUES ($1::text, $2::text, $3::text, "
                    "$4::text, NULLIF($5::bigint, 0), $6::text, $7::text, $8::bigint, "
                    "$9::bigint) RETURNING id",
                    &P, "adding a task", &r);
    if (rc != PD_OK)
        return rc;
    if (id && PQntuples(r) == 1)
        *id = r_int(r, 0, 0);
    PQclear(r);
    return PD_OK;
}

/* Tasks go into deltas: like records, only up to the stable revision. */
static int pg_tasks_since(pd_storage *st, const char *area_list, const char *assignee,
                          int64_t since, pd_storage_task_cb cb, void *ctx)
{
    pg_storage *s = PG(st);
    areas a;
    int rc = areas_parse(s, area_list ? area_list : "", &a);
    if (rc != PD_OK)
        return rc;
    PGresult *r = NULL;
    pg_conn *c;
    rc = conn_get(s, &c);
    if (rc == PD_OK) {
        int64_t upto = 0;
        rc = stable_rev(s, c, &upto);
        if (rc == PD_OK) {
            params P = {0};
            p_text(&P, a.codes);
            p_int(&P, since);
            p_text(&P, assignee);
            p_int(&P, upto);
            static const char sql[] =
                "SELECT id, kind, household_id, area, assignee, COALESCE(conflict_id, 0), "
                "note, created_by, created_at, rev FROM tasks t WHERE t.rev > $2::bigint "
                "AND t.rev <= $4::bigint AND " KO_IN_AREAS(
                    "t.area") " AND ($3::text IS "
                              "NULL OR t.assignee = $3::text OR t.assignee = '') ORDER BY t.rev";
            rc = run(s, c, sql_slot(c, sql), sql, &P, "listing tasks", &r);
            params_free(&P);
        }
        conn_put(s, c);
    }
    areas_free(&a);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        pd_srv_task t = {.id = r_int(r, i, 0),
                         .kind = r_text(r, i, 1),
                         .household_id = r_text(r, i, 2),
                         .area = r_text(r, i, 3),
                         .assignee = r_text(r, i, 4),
                         .conflict_id = r_int(r, i, 5),
                         .note = r_text(r, i, 6),
                         .created_by = r_text(r, i, 7),
                         .created_at = r_int(r, i, 8),
                         .rev = r_int(r, i, 9)};
        stop = cb(ctx, &t);
    }
    PQclear(r);
    return stop;
}

static int pg_password_set(pd_storage *st, const char *user_id, const char *hash, int64_t at)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, user_id);
    p_text(&P, hash);
    p_int(&P, at);
    PGresult *r;
    int rc = ko_run(s,
                    "INSERT INTO user_passwords (user_id, hash, set_at) SELECT $1::text, "
                    "$2::text, $3::bigint WHERE EXISTS (SELECT 1 FROM users WHERE id = "
                    "$1::text) ON CONFLICT (user_id) DO UPDATE SET hash = EXCLUDED.hash, "
                    "set_at = EXCLUDED.set_at",
                    &P, "setting a password", &r);
    if (rc != PD_OK)
        return rc;
    long n = changes(r);
    PQclear(r);
    if (n == 0)
        return pg_fail(s, PD_ERR_NOTFOUND, "no user %s", user_id);
    p_text(&P, user_id);
    return ko_run(s, "DELETE FROM web_sessions WHERE user_id = $1::text", &P,
                  "ending a user's sessions", NULL);
}

static int pg_password_get(pd_storage *st, const char *user_id, char *hash, size_t cap)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, user_id);
    PGresult *r;
    int rc = ko_run(s, "SELECT hash FROM user_passwords WHERE user_id = $1::text", &P,
                    "reading a password", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, PD_ERR_NOTFOUND, "user %s has no password", user_id);
    else if ((size_t)PQgetlength(r, 0, 0) >= cap)
        rc = pg_fail(s, PD_ERR_CORRUPT, "user %s: the stored hash is too long", user_id);
    else
        r_copy_text(hash, cap, r, 0, 0);
    PQclear(r);
    return rc;
}

static int pg_session_add(pd_storage *st, const pd_srv_session *se)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, se->token_hash, PD_HASH_BYTES);
    p_text(&P, se->user_id);
    p_text(&P, se->csrf);
    p_int(&P, se->created_at);
    p_int(&P, se->expires_at);
    PGresult *r;
    int rc = ko_run(s,
                    "INSERT INTO web_sessions (token_hash, user_id, csrf, created_at, "
                    "expires_at) SELECT $1::bytea, $2::text, $3::text, $4::bigint, $5::bigint "
                    "WHERE EXISTS (SELECT 1 FROM users WHERE id = $2::text) ON CONFLICT DO "
                    "NOTHING",
                    &P, "adding a session", &r);
    if (rc != PD_OK)
        return rc;
    long n = changes(r);
    PQclear(r);
    return n == 1 ? PD_OK
                  : pg_fail(s, PD_ERR_EXISTS,
                            "adding a session: the token exists already (or "
                            "user %s does not)",
                            se->user_id);
}

static int pg_session_get(pd_storage *st, const uint8_t token_hash[PD_HASH_BYTES],
                          pd_srv_session *out)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_blob(&P, token_hash, PD_HASH_BYTES);
    PGresult *r;
    int rc = ko_run(s,
                    "SELECT user_id, csrf, created_at, expires_at FROM web_sessions WHERE "
                    "token_hash = $1::bytea",
                    &P, "reading a session", &r);
    if (rc != PD_OK)
        return rc;
    if (PQntuples(r) == 1) {
        memset(out, 0, sizeof *out);
        memcpy(out->token_hash, token_hash, PD_HASH_BYTES);
        r_copy_text(out->user_id, sizeof out->user_id, r, 0, 0);
        r_copy_text(out->csrf, sizeof out->csrf, r, 0, 1);
        out->created_at = r_int(r, 0, 2);
        out->expires_at = r_int(r, 0, 3);
    } else {
        rc = pg_fail(s, PD_ERR_NOTFOUND, "no such session");
    }
    PQclear(r);
    return rc;
}

static int pg_session_delete(pd_storage *st, const uint8_t token_hash[PD_HASH_BYTES])
{
    params P = {0};
    p_blob(&P, token_hash, PD_HASH_BYTES);
    return ko_run(PG(st), "DELETE FROM web_sessions WHERE token_hash = $1::bytea", &P,
                  "ending a session", NULL);
}

static int pg_sessions_purge(pd_storage *st, int64_t now)
{
    params P = {0};
    p_int(&P, now);
    return ko_run(PG(st), "DELETE FROM web_sessions WHERE expires_at < $1::bigint", &P,
                  "ending expired sessions", NULL);
}

static int pg_login_failure_add(pd_storage *st, const char *subject, int64_t at)
{
    pg_storage *s = PG(st);
    params P = {0};
    p_text(&P, subject);
    p_int(&P, at);
    int rc = ko_run(s, "INSERT INTO login_failures (subject, at) VALUES ($1::text, $2::bigint)", &P,
                    "counting a failed login", NULL);
    if (rc != PD_OK)
        return rc;
    /* keep the table small: failures older than a day count for nothing */
    p_int(&P, at - 24LL * 3600 * 1000);
    return ko_run(s, "DELETE FROM login_failures WHERE at < $1::bigint", &P,
                  "forgetting old failed logins", NULL);
}

static int pg_login_failures(pd_storage *st, const char *subject, int64_t since, int64_t *count)
{
    params P = {0};
    p_text(&P, subject);
    p_int(&P, since);
    PGresult *r;
    int rc = ko_run(PG(st),
                    "SELECT count(*) FROM login_failures WHERE subject = $1::text AND "
                    "at >= $2::bigint",
                    &P, "counting failed logins", &r);
    if (rc != PD_OK)
        return rc;
    *count = PQntuples(r) == 1 ? r_int(r, 0, 0) : 0;
    PQclear(r);
    return PD_OK;
}

static int pg_login_failures_clear(pd_storage *st, const char *subject)
{
    params P = {0};
    p_text(&P, subject);
    return ko_run(PG(st), "DELETE FROM login_failures WHERE subject = $1::text", &P,
                  "forgetting failed logins", NULL);
}

static int pg_desa_summary(pd_storage *st, const char *area_list, pd_storage_summary_cb cb,
                           void *ctx)
{
    pg_storage *s = PG(st);
    areas a;
    int rc = areas_parse(s, area_list ? area_list : "", &a);
    if (rc != PD_OK)
        return rc;
    params P = {0};
    p_owned(&P, a.codes);
    a.codes = NULL;
    areas_free(&a);
    PGresult *r;
    rc = ko_run(
        s,
        "WITH hh AS (SELECT h.desa AS desa, count(*) AS n, count(*) FILTER (WHERE EXISTS (SELECT "
        "1 FROM visit v WHERE v.prov = h.prov AND v.household_id = h.id)) AS visited "
        "FROM " AREA_JOIN "household h ON h.prov = substr(a.code, 1, 2) AND " AREA_ON(
            "h.desa") " GROUP BY h.desa), cf AS (SELECT c.area AS desa, count(*) FILTER (WHERE "
                      "c.resolved_at "
                      "IS NULL) AS open, count(*) FILTER (WHERE c.resolved_at IS NOT NULL) AS done "
                      "FROM "
                      "conflicts c WHERE " KO_IN_AREAS(
                          "c.area") " GROUP BY c.area), tk AS (SELECT t.area AS "
                                    "desa, count(*) AS n FROM tasks t WHERE " KO_IN_AREAS(
                                        "t.area") " GROUP BY t.area), "
                                                  "d AS (SELECT desa FROM hh UNION SELECT desa "
                                                  "FROM cf UNION SELECT desa FROM tk) SELECT "
                                                  "d.desa, COALESCE(sh.name, ''), COALESCE(hh.n, "
                                                  "0), COALESCE(hh.visited, 0), "
                                                  "COALESCE(cf.open, 0), COALESCE(cf.done, 0), "
                                                  "COALESCE(tk.n, 0) FROM d LEFT JOIN hh ON "
                                                  "hh.desa = d.desa LEFT JOIN cf ON cf.desa = "
                                                  "d.desa LEFT JOIN tk ON tk.desa = d.desa "
                                                  "LEFT JOIN area_shape sh ON sh.code = d.desa "
                                                  "ORDER BY d.desa",
        &P, "summarising an area", &r);
    if (rc != PD_OK)
        return rc;
    int stop = 0;
    for (int i = 0; i < PQntuples(r) && !stop; i++) {
        pd_srv_desa_summary d = {.desa = r_text(r, i, 0),
                                 .name = r_text(r, i, 1),
                                 .households = r_int(r, i, 2),
                                 .visited = r_int(r, i, 3),
                                 .conflicts_open = r_int(r, i, 4),
                                 .conflicts_resolved = r_int(r, i, 5),
                                 .tasks = r_int(r, i, 6)};
        d.pending = d.households - d.visited;
        stop = cb(ctx, &d);
    }
    PQclear(r);
    return stop;
}

/* ==== end of the korcam block ==================================================================
 */

static const pd_storage_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .concurrent = true,
    .thread_error = pg_thread_error,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .revision_next = pg_revision_next,
    .revision_current = pg_revision_current,
    .user_add = pg_user_add,
    .user_get = pg_user_get,
    .users_supervised = pg_users_supervised,
    .person_key_add = pg_person_key_add,
    .person_key_get = pg_person_key_get,
    .person_keys_of = pg_person_keys_of,
    .device_add = pg_device_add,
    .device_get = pg_device_get,
    .device_revoke = pg_device_revoke,
    .code_add = pg_code_add,
    .code_take = pg_code_take,
    .nonce_add = pg_nonce_add,
    .nonce_seen = pg_nonce_seen,
    .nonce_purge = pg_nonce_purge,
    .upload_add = pg_upload_add,
    .upload_get = pg_upload_get,
    .upload_update = pg_upload_update,
    .upload_del = pg_upload_del,
    .uploads_expired = pg_uploads_expired,
    .uploads_open_of = pg_uploads_open_of,
    .blob_get = pg_blob_get,
    .blob_add = pg_blob_add,
    .batch_put = pg_batch_put,
    .batch_get = pg_batch_get,
    .batch_by_hash = pg_batch_by_hash,
    .batch_last = pg_batch_last,
    .batch_set_state = pg_batch_set_state,
    .batch_unhold = pg_batch_unhold,
    .batches_of = pg_batches_of,
    .quarantine_put = pg_quarantine_put,
    .quarantine_by_hash = pg_quarantine_by_hash,
    .result_put = pg_result_put,
    .results_of = pg_results_of,
    .record_rev = pg_record_rev,
    .record_insert = pg_record_insert,
    .field_get = pg_field_get,
    .field_set = pg_field_set,
    .field_change = pg_field_change,
    .field_merge_read = pg_field_merge_read,
    .changed_elsewhere = pg_changed_elsewhere,
    .record_area = pg_record_area,
    .nik_holders = pg_nik_holders,
    .visits_of = pg_visits_of,
    .records_since = pg_records_since,
    .area_records = pg_area_records,
    .shape_put = pg_shape_put,
    .shapes_in = pg_shapes_in,
    .area_revision = pg_area_revision,
    .conflict_add = pg_conflict_add,
    .conflicts_since = pg_conflicts_since,
    .audit_add = pg_audit_add,
    .stats = pg_stats,
    /* korcam */
    .conflicts_list = pg_conflicts_list,
    .conflict_get = pg_conflict_get,
    .conflict_relate = pg_conflict_relate,
    .conflict_exists = pg_conflict_exists,
    .conflict_resolve = pg_conflict_resolve,
    .nik_members = pg_nik_members,
    .kk_households = pg_kk_households,
    .points_in_box = pg_points_in_box,
    .household_points = pg_household_points,
    .household_audit = pg_household_audit,
    .record_get = pg_record_get,
    .household_members = pg_household_members,
    .task_add = pg_task_add,
    .tasks_since = pg_tasks_since,
    .password_set = pg_password_set,
    .password_get = pg_password_get,
    .session_add = pg_session_add,
    .session_get = pg_session_get,
    .session_delete = pg_session_delete,
    .sessions_purge = pg_sessions_purge,
    .login_failure_add = pg_login_failure_add,
    .login_failures = pg_login_failures,
    .login_failures_clear = pg_login_failures_clear,
    .desa_summary = pg_desa_summary,
};

/* ---- migrations ------------------------------------------------------------------------------ */

/* One simple-protocol command (several statements allowed) inside the migration. */
static int mig_exec(pg_storage *s, pg_conn *c, const char *sql, const char *ctx)
{
    PGresult *r = PQexec(c->pg, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY)
                 ? PD_OK
                 : result_fail(s, c, r, ctx);
    PQclear(r);
    return rc;
}

/* Bring the database to the newest version of schema/server_pg, in ONE transaction under an
 * advisory lock; the PostgreSQL twin of pd_schema_apply (core/migrate.c). */
static int pg_migrate(pg_storage *s, pg_conn *c, const pd_migration *m, int count)
{
    for (int i = 0; i < count; i++)
        if (m[i].version <= 0 || !m[i].sql || (i > 0 && m[i].version <= m[i - 1].version))
            return pg_fail(s, PD_ERR_INTERNAL,
                           "schema migration %s: versions must be positive and increasing",
                           m[i].name ? m[i].name : "?");
    int latest = pd_schema_latest(m, count);
    int rc = mig_exec(s, c, "BEGIN ISOLATION LEVEL READ COMMITTED", "starting the migration");
    if (rc != PD_OK)
        return rc;
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_xact_lock(%d, 0)", LOCK_MIGRATE);
    rc = mig_exec(s, c, sql, "locking the schema");
    if (rc == PD_OK)
        rc = mig_exec(s, c,
                      "CREATE TABLE IF NOT EXISTS schema_version (version integer NOT "
                      "NULL)",
                      "creating schema_version");
    int version = 0;
    if (rc == PD_OK) {
        PGresult *r = PQexec(c->pg, "SELECT COALESCE(max(version), 0) FROM schema_version");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
            version = atoi(PQgetvalue(r, 0, 0));
        else
            rc = result_fail(s, c, r, "reading the schema version");
        PQclear(r);
    }
    if (rc == PD_OK && version > latest)
        rc = pg_fail(s, PD_ERR_VERSION,
                     "database is schema version %d; this pendata knows up "
                     "to %d: update pendata",
                     version, latest);
    for (int i = 0; rc == PD_OK && version < latest && i < count; i++) {
        if (m[i].version <= version)
            continue;
        char ctx[160];
        snprintf(ctx, sizeof ctx, "schema migration %s", m[i].name ? m[i].name : "?");
        rc = mig_exec(s, c, m[i].sql, ctx);
        if (rc == PD_OK && PQtransactionStatus(c->pg) != PQTRANS_INTRANS)
            rc = pg_fail(s, PD_ERR_INTERNAL,
                         "schema migration %s ends the transaction itself "
                         "(it must not contain BEGIN/COMMIT)",
                         m[i].name ? m[i].name : "?");
    }
    /* The audit log's month partitions (003_audit_by_month.sql): this month and the next two,
     * made at every open, under the same lock; a no-op once they exist. */
    if (rc == PD_OK && latest >= 3)
        rc = mig_exec(s, c, "SELECT pd_audit_months((extract(epoch FROM now()) * 1000)::bigint, 2)",
                      "making the audit log's month partitions");
    if (rc == PD_OK && version < latest) {
        /* latest is an int from the compiled-in list, not input */
        snprintf(sql, sizeof sql,
                 "DELETE FROM schema_version; INSERT INTO schema_version "
                 "(version) VALUES (%d)",
                 latest);
        rc = mig_exec(s, c, sql, "setting the schema version");
    }
    if (rc == PD_OK)
        rc = mig_exec(s, c, "COMMIT", "committing the schema migration");
    else if (PQstatus(c->pg) == CONNECTION_OK)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    return rc;
}

/* ---- opening -----------------------------------------------------------------------------------
 */

/* Copy url without our own query parameters into *conninfo; *pool gets pool=N. */
static int parse_url(const char *url, char **conninfo, int *pool, pd_error *err)
{
    *conninfo = NULL;
    *pool = 1;
    size_t len = strlen(url);
    char *out = malloc(len + 1);
    if (!out)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    const char *q = strchr(url, '?');
    size_t base = q ? (size_t)(q - url) : len;
    memcpy(out, url, base);
    size_t o = base;
    bool first = true;
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        size_t k = strcspn(p, "&");
        if (k > 5 && !strncmp(p, "pool=", 5)) {
            char num[16];
            if (k - 5 >= sizeof num) {
                free(out);
                return pd_error_set(err, PD_ERR_INVALID, "database URL: pool must be 1..%d",
                                    PD_PG_POOL_MAX);
            }
            memcpy(num, p + 5, k - 5);
            num[k - 5] = '\0';
            char *end;
            long v = strtol(num, &end, 10);
            if (*end || v < 1 || v > PD_PG_POOL_MAX) {
                free(out);
                return pd_error_set(err, PD_ERR_INVALID, "database URL: pool must be 1..%d",
                                    PD_PG_POOL_MAX);
            }
            *pool = (int)v;
        } else if (k > 0) {
            out[o++] = first ? '?' : '&';
            memcpy(out + o, p, k);
            o += k;
            first = false;
        }
        p += k;
        if (*p == '&')
            p++;
    }
    out[o] = '\0';
    *conninfo = out;
    return PD_OK;
}

int pd_storage_pg_open(pd_storage **out, const char *url, pd_error *err)
{
    *out = NULL;
    if (!url || (strncmp(url, "postgres://", 11) && strncmp(url, "postgresql://", 13)))
        return pd_error_set(err, PD_ERR_INVALID, "not a PostgreSQL URL (postgres://…)");
    pg_storage *s = calloc(1, sizeof *s);
    if (!s)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory opening storage");
    s->base.ops = &pg_ops;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->err_mu, NULL);
    int rc = parse_url(url, &s->conninfo, &s->nconn, err);
    if (rc != PD_OK)
        goto fail;
    s->conns = calloc((size_t)s->nconn, sizeof *s->conns);
    if (!s->conns) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory opening storage");
        goto fail;
    }
    pg_conn *c;
    rc = conn_get(s, &c);
    if (rc == PD_OK) {
        rc = pg_migrate(s, c, pd_schema_server_pg, pd_schema_server_pg_count);
        conn_put(s, c);
    }
    if (rc != PD_OK) {
        pd_error_set(err, rc, "%s", thread_err.msg);
        goto fail;
    }
    memset(&s->base.err, 0, sizeof s->base.err);
    memset(&thread_err, 0, sizeof thread_err);
    *out = &s->base;
    return PD_OK;
fail:
    pg_close(&s->base);
    return rc;
}

#endif /* PD_HAVE_PQ */
