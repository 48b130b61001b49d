/*
 * schema.h — migrations embedded from schema/<kind>/NNN_name.sql at build time
 * (cmake/embed_schema.cmake), and the one function that applies them.
 */
#ifndef PD_SCHEMA_H
#define PD_SCHEMA_H

#include "pendata.h"

#include <sqlite3.h>

typedef struct pd_migration {
    int version;      /* the NNN of the file name; versions are strictly increasing */
    const char *name; /* file name, for messages */
    const char *sql;  /* the whole file */
} pd_migration;

extern const pd_migration pd_schema_device[];
extern const int pd_schema_device_count;
extern const pd_migration pd_schema_server[];
extern const int pd_schema_server_count;

/* The newest version in a migration list (0 for an empty list). */
int pd_schema_latest(const pd_migration *m, int count);

/* Bring db up to the newest version in m[0..count): every migration whose version is above
 * PRAGMA user_version runs, in order, inside ONE transaction (BEGIN IMMEDIATE ... COMMIT) that
 * also sets user_version; any failure rolls all of them back and leaves the database as it was.
 * PD_ERR_VERSION if the database is already newer than the list ("database is schema version 7;
 * this build knows up to 1"), PD_ERR_INTERNAL if the list is not strictly increasing or a
 * migration ends the transaction itself, else the mapped SQLite failure naming the migration.
 * Generic: the device store and the server both use it. */
int pd_schema_apply(sqlite3 *db, const pd_migration *m, int count, pd_error *err);

#endif
