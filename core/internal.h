/*
 * internal.h — helpers shared inside libpendata (core, prelist, sync). Not installed.
 */
#ifndef PD_INTERNAL_H
#define PD_INTERNAL_H

#include "pendata.h"

#include <sqlite3.h>
#include <stdbool.h>

#if defined(__GNUC__)
#define PD_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PD_PRINTF(a, b)
#endif

#define PD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Fill err (if not NULL) with code and a formatted message; returns code. */
int pd_error_set(pd_error *err, int code, const char *fmt, ...) PD_PRINTF(3, 4);
void pd_error_clear(pd_error *err);

/* Map a SQLite result code to a pd_status (SQLITE_IOERR_DATA, a failed page
 * authentication, maps to PD_ERR_CORRUPT). */
int pd_status_from_sqlite(int rc);

/* Set err from a SQLite failure: "<context>: <sqlite message>"; returns the pd_status. */
int pd_error_sqlite(pd_error *err, sqlite3 *db, int rc, const char *context);

/* Checked size arithmetic: return false on overflow. */
static inline bool pd_size_add(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline bool pd_size_mul(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

#endif /* PD_INTERNAL_H */
