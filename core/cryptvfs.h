/*
 * cryptvfs.h — the encrypting SQLite VFS shim ("pdcrypt") under every device database.
 *
 * How a store uses it:
 *   pd_cryptvfs_register();                             once per process (idempotent)
 *   pd_cryptvfs_key_add(key, dbid, &slot);               keep the key in locked memory
 *   sqlite3_open_v2("file:/abs/store.db?pdslot=<slot>", &db,
 *                   SQLITE_OPEN_URI | ..., PD_CRYPTVFS_NAME);
 *   ... then pd_cryptvfs_prepare(db) before the first write of a new database ...
 *   sqlite3_close(db); pd_cryptvfs_key_remove(slot);     wipes the key
 *
 * The journal and WAL of that database find the same key through the URI parameter, which SQLite
 * makes visible on their file names too. See cryptvfs.c for the on-disk format.
 */
#ifndef PD_CRYPTVFS_H
#define PD_CRYPTVFS_H

#include "pendata.h"

#include <sqlite3.h>

#define PD_CRYPTVFS_NAME "pdcrypt"
#define PD_CRYPTVFS_SLOT_PARAM "pdslot"

/* Register the VFS (not as the default). Thread-safe and idempotent. Returns a SQLite code. */
int pd_cryptvfs_register(void);

/* Register a data key and database id; *slot gets the number to put in the URI (never 0, never
 * reused within the process). The key is copied into locked, guarded memory. Returns PD_OK,
 * PD_ERR_NOMEM, PD_ERR_INVALID (a NULL argument) or PD_ERR_INTERNAL (libsodium failed to start). */
int pd_cryptvfs_key_add(const uint8_t key[PD_KEY_BYTES], const uint8_t dbid[PD_DBID_BYTES],
                        unsigned *slot);

/* Wipe and forget a key. Files still open with it keep their own copy until closed. */
void pd_cryptvfs_key_remove(unsigned slot);

/* On a connection opened through the VFS: make sure a new, empty database gets 4096-byte pages
 * with PD_PAGE_RESERVE reserved bytes before anything is written, and check an existing one has
 * them. Returns a SQLite code: SQLITE_MISUSE if the main database is not opened through pdcrypt,
 * SQLITE_IOERR_DATA if page 1 does not authenticate (wrong key or database id, tampering),
 * SQLITE_CORRUPT if the format is not 4096/40.
 *
 * Use synchronous=FULL (WAL and rollback modes): cryptvfs.c tells a torn write after a power cut
 * from tampering only under it. */
int pd_cryptvfs_prepare(sqlite3 *db);

#endif
