/*
 * schema.h — migrations embedded from schema/<kind>/NNN_name.sql at build time
 * (cmake/embed_schema.cmake), and the one function that applies them.
 */
#ifndef PD_SCHEMA_H
#define PD_SCHEMA_H

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

#endif
