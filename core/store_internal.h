/*
 * store_internal.h — what the rest of libpendata (households, visits, op log, prelist import,
 * batches) needs from an open device store: its SQLite connection, its home directory and device
 * id, the handle's error message, and transactions. Not installed; front ends use pendata.h.
 *
 * Errors: a function working on a store sets the handle's message with pd_store_fail() (or
 * pd_store_fail_sqlite() after a SQLite failure) and returns the code it got back, so callers
 * write `return pd_store_fail(s, PD_ERR_INVALID, "member %s: NIK must be 16 digits", id);`.
 *
 * Transactions nest: the outermost pd_store_begin() is BEGIN IMMEDIATE (the write lock is taken
 * at once, so a busy database fails at begin, not half-way); an inner one is a SAVEPOINT, so a
 * function that needs atomicity can call pd_store_begin() whether or not its caller already did.
 * Every pd_store_begin() is paired with exactly one pd_store_commit() or pd_store_rollback().
 */
#ifndef PD_STORE_INTERNAL_H
#define PD_STORE_INTERNAL_H

#include "internal.h"

#include <sqlite3.h>

/* The page cache every store connection runs with, in KiB (PRAGMA cache_size = -N); store.c says
 * why this size. bench_store gives plain SQLite the same, so it compares encryption, not caches. */
#define PD_STORE_CACHE_KIB 12288

/* The store's connection (through the pdcrypt VFS). Owned by the store: never close it. A store
 * handle is used by one thread at a time. */
sqlite3 *pd_store_sqlite(pd_store *store);

/* Absolute path of the store's home directory (no trailing slash). */
const char *pd_store_home(pd_store *store);

/* This device's id: 16 lowercase hex characters (64 random bits made at pd_store_create, kept in
 * settings('device_id')). Also declared in pendata.h. */
const char *pd_store_device_id(pd_store *store);

/* Set the handle's error (code and formatted message); returns code. */
int pd_store_fail(pd_store *store, int code, const char *fmt, ...) PD_PRINTF(3, 4);

/* Set the handle's error from a SQLite failure on the store's connection:
 * "<ctx>: <sqlite message>", the code mapped by pd_status_from_sqlite(). Returns that code. */
int pd_store_fail_sqlite(pd_store *store, int rc, const char *ctx);

/* Begin a (possibly nested) transaction. PD_OK, or the failure (PD_ERR_BUSY when another
 * connection holds the write lock past the busy timeout) set on the handle. */
int pd_store_begin(pd_store *store);

/* Commit the innermost transaction (RELEASE for a nested one). On failure the transaction is
 * rolled back, the handle's error is set and its code returned. */
int pd_store_commit(pd_store *store);

/* Roll back the innermost transaction. Leaves the handle's error message alone (it is called on
 * error paths, after the real failure was recorded). */
void pd_store_rollback(pd_store *store);

#endif /* PD_STORE_INTERNAL_H */
