/*
 * test_db.h — the server's database for a test, on either backend. Header-only (static
 * functions), like the fixtures that include it (test_server_client.h, test_sync_harness.h) and
 * the benchmarks that share them.
 *
 * Without $PD_TEST_DB_URL (or with a sqlite: one) a test server lives in sqlite:DIR/server.db.
 * With PD_TEST_DB_URL=postgres://…/DB (a cluster, e.g. the one scripts/pg.sh starts) every
 * td_make makes a FRESH database on that cluster (CREATE DATABASE pd_test_<pid>_<n>, through the
 * cluster's "postgres" database) and gives its URL; td_drop drops it, and whatever is left is
 * dropped at exit — WITH (FORCE), so a killed server's connections do not keep it. The data
 * directory (keys, uploads, blobs) is the test's own either way.
 *
 * td_int / td_text read one value beside a running server, from either backend: for checks
 * only, the SQL is a fixed string of the test and must be valid on both.
 */
#ifndef PD_TEST_DB_H
#define PD_TEST_DB_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef PD_HAVE_PQ
#include <libpq-fe.h>
#endif

#define TD_MAX_DBS 256

static inline bool td_is_pg_url(const char *url)
{
    return url && (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13));
}

/* Does this run put the servers on PostgreSQL? */
static inline bool td_is_pg(void)
{
    return td_is_pg_url(getenv("PD_TEST_DB_URL"));
}

#ifdef PD_HAVE_PQ
/* The databases made and not dropped yet (one list per program). */
typedef struct td_list {
    char name[TD_MAX_DBS][64];
    int count;
    int counter;
} td_list;

static inline td_list *td_made(void)
{
    static td_list list;
    return &list;
}

/* base with its database replaced by name (and extra added to the query). */
static inline void td_url_with_db(char *out, size_t cap, const char *base, const char *name,
                                  const char *extra)
{
    const char *auth = strstr(base, "://") + 3;
    const char *path = strchr(auth, '/');
    const char *q = strchr(auth, '?');
    if (path && q && path > q)
        path = NULL;
    size_t head = path ? (size_t)(path - base) : q ? (size_t)(q - base) : strlen(base);
    snprintf(out, cap, "%.*s/%s%s%s%s", (int)head, base, name, q ? q : "",
             extra ? (q ? "&" : "?") : "", extra ? extra : "");
}

static inline void td_quiet(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

static inline PGconn *td_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "test_db: cannot connect to the test cluster: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, td_quiet, NULL);
    return c;
}

/* url without the server's own pool=N parameter (libpq does not know it), into out. */
static inline void td_libpq_url(char *out, size_t cap, const char *url)
{
    snprintf(out, cap, "%s", url);
    char *pool = strstr(out, "pool=");
    if (pool && pool > out && (pool[-1] == '?' || pool[-1] == '&')) {
        char *end = pool + strcspn(pool, "&");
        if (*end)
            memmove(pool, end + 1, strlen(end + 1) + 1); /* "pool=N&" */
        else
            pool[-1] = '\0'; /* the last parameter: "?pool=N" or "&pool=N" */
    }
}

/* Run sql (statements, no rows wanted) on a PostgreSQL database; true if it succeeded. */
static inline bool td_exec(const char *url, const char *sql)
{
    char plain[4608];
    td_libpq_url(plain, sizeof plain, url);
    PGconn *c = td_connect(plain);
    if (!c)
        return false;
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "test_db: %.200s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok;
}

/* Run sql on the cluster's "postgres" database; true if it succeeded. */
static inline bool td_admin(const char *sql)
{
    char url[2048];
    td_url_with_db(url, sizeof url, getenv("PD_TEST_DB_URL"), "postgres", NULL);
    return td_exec(url, sql);
}

static inline void td_drop_at(int i)
{
    char sql[160];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %.63s WITH (FORCE)", td_made()->name[i]);
    td_admin(sql);
    td_made()->name[i][0] = '\0';
}

static inline void td_drop_all(void)
{
    for (int i = 0; i < td_made()->count; i++)
        if (td_made()->name[i][0])
            td_drop_at(i);
}
#endif

/* A fresh database for one test server (see the top of this file): out gets its URL, with extra
 * ("pool=4", may be NULL) added to a PostgreSQL URL's query. 0, or -1 (message on stderr). */
static inline int td_make(char *out, size_t cap, const char *dir, const char *extra)
{
    if (!td_is_pg()) {
        snprintf(out, cap, "sqlite:%s/server.db", dir);
        return 0;
    }
#ifdef PD_HAVE_PQ
    td_list *l = td_made();
    if (l->count >= TD_MAX_DBS) {
        fprintf(stderr, "test_db: more than %d test databases\n", TD_MAX_DBS);
        return -1;
    }
    if (l->count == 0)
        atexit(td_drop_all);
    char *name = l->name[l->count];
    snprintf(name, sizeof l->name[0], "pd_test_%d_%d", (int)getpid(), ++l->counter);
    char sql[160];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    if (!td_admin(sql))
        return -1;
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", name);
    if (!td_admin(sql))
        return -1;
    l->count++;
    td_url_with_db(out, cap, getenv("PD_TEST_DB_URL"), name, extra);
    return 0;
#else
    (void)extra;
    fprintf(stderr, "test_db: PD_TEST_DB_URL names PostgreSQL, but this build has no libpq\n");
    return -1;
#endif
}

/* The database name of a PostgreSQL URL td_make gave, into out. */
static inline void td_name(const char *url, char *out, size_t cap)
{
    const char *auth = strstr(url, "://");
    const char *slash = auth ? strchr(auth + 3, '/') : NULL;
    size_t n = slash ? strcspn(slash + 1, "?") : 0;
    snprintf(out, cap, "%.*s", (int)n, slash ? slash + 1 : "");
}

/* Drop a database td_make made (nothing for SQLite: the test removes its directory). */
static inline void td_drop(const char *url)
{
#ifdef PD_HAVE_PQ
    if (!td_is_pg_url(url))
        return;
    td_list *l = td_made();
    for (int i = 0; i < l->count; i++) {
        char mine[4608];
        if (!l->name[i][0])
            continue;
        td_url_with_db(mine, sizeof mine, getenv("PD_TEST_DB_URL"), l->name[i], NULL);
        size_t n = strcspn(mine, "?");
        if (!strncmp(url, mine, n) && (url[n] == '\0' || url[n] == '?'))
            td_drop_at(i);
    }
#else
    (void)url;
#endif
}

/* The first column of the first row of sql on a test database (the URL td_make gave), as text
 * into out: false if no row, NULL or an error. */
static inline bool td_text(const char *url, const char *sql, char *out, size_t cap)
{
    bool ok = false;
    out[0] = '\0';
    if (td_is_pg_url(url)) {
#ifdef PD_HAVE_PQ
        char plain[4608];
        td_libpq_url(plain, sizeof plain, url);
        PGconn *c = td_connect(plain);
        if (!c)
            return false;
        PGresult *r = PQexec(c, sql);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)) {
            snprintf(out, cap, "%s", PQgetvalue(r, 0, 0));
            ok = true;
        } else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            fprintf(stderr, "test_db: %s: %s", sql, PQerrorMessage(c));
        }
        PQclear(r);
        PQfinish(c);
#endif
        return ok;
    }
    const char *path = !strncmp(url, "sqlite:", 7) ? url + 7 : url;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_text(st, 0)) {
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
        ok = true;
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return ok;
}

/* The same as an integer: -1 if no row, NULL or an error. */
static inline long long td_int(const char *url, const char *sql)
{
    char v[64];
    if (!td_text(url, sql, v, sizeof v))
        return -1;
    return strtoll(v, NULL, 10);
}

#endif
