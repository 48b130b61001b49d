/*
 * error.c — status codes and the messages carried by handles.
 *
 * Every layer reports failures the same way: a pd_status code plus a message with context,
 * written here with pd_error_set(). Nothing in the library prints.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const messages[PD_ERR__COUNT] = {
    [PD_OK] = "ok",
    [PD_ERR_NOMEM] = "out of memory",
    [PD_ERR_IO] = "input/output error",
    [PD_ERR_CORRUPT] = "data is corrupt or has been tampered with",
    [PD_ERR_BADPIN] = "wrong PIN",
    [PD_ERR_LOCKED] = "locked after too many wrong PINs; use recovery",
    [PD_ERR_INVALID] = "invalid input",
    [PD_ERR_NOTFOUND] = "not found",
    [PD_ERR_EXISTS] = "already exists",
    [PD_ERR_VERSION] = "unsupported version",
    [PD_ERR_SIGNATURE] = "signature does not verify",
    [PD_ERR_TOOBIG] = "over a size or count limit",
    [PD_ERR_DENIED] = "not allowed",
    [PD_ERR_CONFLICT] = "conflicting change",
    [PD_ERR_NETWORK] = "network error",
    [PD_ERR_PROTOCOL] = "protocol error",
    [PD_ERR_BUSY] = "busy",
    [PD_ERR_STATE] = "not valid in the current state",
    [PD_ERR_INTERNAL] = "internal error",
};

const char *pd_strerror(int code)
{
    if (code < 0 || code >= PD_ERR__COUNT || !messages[code])
        return "unknown error";
    return messages[code];
}

int pd_error_set(pd_error *err, int code, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    if (!fmt) {
        snprintf(err->msg, sizeof err->msg, "%s", pd_strerror(code));
        return code;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void pd_error_clear(pd_error *err)
{
    if (!err)
        return;
    err->code = PD_OK;
    err->msg[0] = '\0';
}

int pd_status_from_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return PD_OK;
    case SQLITE_NOMEM:
        return PD_ERR_NOMEM;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return PD_ERR_CORRUPT;
    case SQLITE_IOERR:
        return (rc == SQLITE_IOERR_DATA) ? PD_ERR_CORRUPT : PD_ERR_IO;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return PD_ERR_BUSY;
    case SQLITE_CONSTRAINT:
        return PD_ERR_EXISTS;
    case SQLITE_TOOBIG:
        return PD_ERR_TOOBIG;
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_READONLY:
        return PD_ERR_IO;
    default:
        return PD_ERR_INTERNAL;
    }
}

int pd_error_sqlite(pd_error *err, sqlite3 *db, int rc, const char *context)
{
    int code = pd_status_from_sqlite(rc);
    if (code == PD_OK)
        code = PD_ERR_INTERNAL;
    return pd_error_set(err, code, "%s: %s", context ? context : "sqlite",
                        db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}
