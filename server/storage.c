/*
 * storage.c — choosing a storage backend by URL, and the few helpers every backend shares
 * (messages on the handle, freeing what a backend filled in). See storage.h.
 */
#include "storage.h"
#include "storage_pg.h"

#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pd_storage_open(pd_storage **out, const char *url, pd_error *err)
{
    *out = NULL;
    if (!url || !*url)
        return pd_error_set(err, PD_ERR_INVALID, "no database URL (use sqlite:PATH)");
    if (!strncmp(url, "sqlite:", 7))
        return pd_storage_sqlite_open(out, url + 7, err);
    if (!strncmp(url, "postgres://", 11) || !strncmp(url, "postgresql://", 13))
        return pd_storage_pg_open(out, url, err);
    if (strstr(url, "://"))
        return pd_error_set(err, PD_ERR_INVALID, "%s: unknown database URL scheme", url);
    return pd_storage_sqlite_open(out, url, err);
}

void pd_storage_close(pd_storage *st)
{
    if (st)
        st->ops->close(st);
}

const char *pd_storage_errmsg(const pd_storage *st)
{
    if (!st)
        return "no storage";
    const pd_error *e = pd_storage_error(st); /* the calling thread's, on a concurrent backend */
    return e->msg[0] ? e->msg : pd_strerror(e->code);
}

int pd_storage_fail(pd_storage *st, int code, const char *fmt, ...)
{
    st->err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err.msg, sizeof st->err.msg, fmt, ap);
    va_end(ap);
    return code;
}

void pd_srv_batch_clear(pd_srv_batch *b)
{
    if (!b)
        return;
    free(b->bytes);
    free(b->review);
    b->bytes = b->review = NULL;
    b->bytes_len = b->review_len = 0;
}

void pd_srv_value_clear(pd_srv_value *v)
{
    if (!v)
        return;
    free(v->buf);
    memset(v, 0, sizeof *v);
}
