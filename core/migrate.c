/*
 * migrate.c — applying schema migrations (schema/<kind>/NNN_*.sql, embedded at build time by
 * cmake/embed_schema.cmake) to a SQLite database. Used by the device store (core/store.c) and
 * the server; knows nothing about either.
 *
 * The schema version is PRAGMA user_version. All pending migrations run in one transaction with
 * the new user_version, so a database is always at exactly one known version: a failing
 * migration (or a crash half-way) leaves it where it was. The write lock is taken first
 * (BEGIN IMMEDIATE) and the version read again under it, so two processes opening an old
 * database at once migrate it once.
 */
#include "internal.h"
#include "schema.h"

#include <stdio.h>

int pd_schema_latest(const pd_migration *m, int count)
{
    return (m && count > 0) ? m[count - 1].version : 0;
}

static int read_version(sqlite3 *db, int *version, pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *version = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return pd_error_sqlite(err, db, rc, "reading the schema version");
    return PD_OK;
}

/* Run every statement of one migration file. */
static int run_sql(sqlite3 *db, const pd_migration *m, pd_error *err)
{
    const char *sql = m->sql;
    while (sql && *sql) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
        if (rc == SQLITE_OK && st) {
            do
                rc = sqlite3_step(st);
            while (rc == SQLITE_ROW);
            if (rc == SQLITE_DONE)
                rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) {
            char ctx[160];
            snprintf(ctx, sizeof ctx, "schema migration %s", m->name ? m->name : "?");
            return pd_error_sqlite(err, db, rc, ctx);
        }
        sql = tail;
    }
    return PD_OK;
}

int pd_schema_apply(sqlite3 *db, const pd_migration *m, int count, pd_error *err)
{
    if (!db || (!m && count > 0) || count < 0)
        return pd_error_set(err, PD_ERR_INVALID, "pd_schema_apply: no database or migrations");
    for (int i = 0; i < count; i++)
        if (m[i].version <= 0 || !m[i].sql || (i > 0 && m[i].version <= m[i - 1].version))
            return pd_error_set(err, PD_ERR_INTERNAL,
                                "schema migration %s: versions must be positive and increasing",
                                m[i].name ? m[i].name : "?");
    int latest = pd_schema_latest(m, count);
    int version = 0;
    int rc = read_version(db, &version, err);
    if (rc != PD_OK)
        return rc;
    if (version > latest)
        goto too_new;
    if (version == latest)
        return PD_OK;
    if (!sqlite3_get_autocommit(db))
        return pd_error_set(err, PD_ERR_STATE,
                            "schema migrations cannot run inside an open transaction");

    int src = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (src != SQLITE_OK)
        return pd_error_sqlite(err, db, src, "starting the schema migration");
    rc = read_version(db, &version, err); /* again, under the write lock */
    if (rc != PD_OK)
        goto fail;
    if (version > latest) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        goto too_new;
    }
    for (int i = 0; i < count; i++) {
        if (m[i].version <= version)
            continue;
        rc = run_sql(db, &m[i], err);
        if (rc != PD_OK)
            goto fail;
        if (sqlite3_get_autocommit(db)) {
            /* the migration ended our transaction: what ran is committed, stop loudly */
            return pd_error_set(err, PD_ERR_INTERNAL,
                                "schema migration %s ends the transaction itself (it must not "
                                "contain BEGIN/COMMIT)",
                                m[i].name ? m[i].name : "?");
        }
    }
    /* PRAGMA takes no bound parameters; `latest` is an int from the compiled-in list. */
    char pragma[48];
    snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", latest);
    src = sqlite3_exec(db, pragma, NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = pd_error_sqlite(err, db, src, "setting the schema version");
        goto fail;
    }
    src = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = pd_error_sqlite(err, db, src, "committing the schema migration");
        goto fail;
    }
    return PD_OK;

fail:
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
too_new:
    return pd_error_set(err, PD_ERR_VERSION,
                        "database is schema version %d; this pendata knows up to %d: update "
                        "pendata",
                        version, latest);
}
