/*
 * storage_pg.h — the PostgreSQL backend of the server's storage interface (storage.h), for a
 * national deployment: several stateless server processes over one database. The behaviour is
 * the SQLite backend's; what PostgreSQL adds (partitions, the in-flight revision horizon, row and
 * advisory locks, the connection pool) is described at the top of storage_pg.c and in
 * schema/server_pg/001_init.sql.
 */
#ifndef PD_SERVER_STORAGE_PG_H
#define PD_SERVER_STORAGE_PG_H

#include "storage.h"

#define PD_PG_POOL_MAX 64 /* connections in one handle's pool */

/* Open (creating the schema if the database is empty, migrating it if older) the PostgreSQL
 * database named by url: a libpq URI ("postgres://…" or "postgresql://…", e.g.
 * "postgresql:///pendata?host=/run/pg&user=pendata"). One query parameter is the backend's own
 * and is removed before libpq sees the URI:
 *
 *   pool=N   (1..PD_PG_POOL_MAX, default 1) connections in this handle's pool, opened as
 *            needed. With N > 1 the handle may be used by N threads at once: a thread's
 *            transaction keeps one connection from begin to commit/rollback; a call outside a
 *            transaction borrows one for that call. (With concurrent callers the message of
 *            pd_storage_errmsg may be another thread's; the returned code is always the
 *            caller's.)
 *
 * PD_ERR_INVALID for a malformed URL or pool value, PD_ERR_BUSY if the database cannot be
 * reached, PD_ERR_VERSION if its schema is newer than this build, PD_ERR_INVALID if the build
 * has no libpq. Inside a transaction a serialization failure or deadlock (SQLSTATE 40001,
 * 40P01) returns PD_ERR_BUSY: the transaction is lost and the caller runs it again; a single
 * call outside a transaction is retried here (up to 3 times) before it fails. */
int pd_storage_pg_open(pd_storage **out, const char *url, pd_error *err);

#endif
