/*
 * oplog.h — inside the core: how a change to households, members, visits and photos is made.
 *
 * Every change goes through a pd_change: pd_change_begin opens a transaction (nested in the
 * caller's, if any) and loads the hybrid logical clock; each pd_change_apply applies ONE op to the
 * tables with pd_oplog_apply (the very function a replay or the server uses, so the op log
 * reproduces the tables by construction) and appends it to the op table with the next seq and
 * clock value; pd_change_commit saves the clock (settings 'hlc') and commits. Any failure → the
 * caller calls pd_change_rollback and nothing is stored, neither the change nor its ops.
 */
#ifndef PD_OPLOG_H
#define PD_OPLOG_H

#include "fields.h"
#include "store_internal.h"

typedef struct pd_change {
    pd_store *store;
    sqlite3 *db;
    const char *device_id;
    int64_t hlc;      /* last clock value issued */
    int64_t next_seq; /* seq the next op gets */
    int open;         /* a transaction is open */
    /* bytes of a photo being added, for its op's fetch */
    const uint8_t *photo;
    size_t photo_len;
} pd_change;

/* Begin: a transaction, the clock, the next seq. Errors are set on the store. */
int pd_change_begin(pd_store *store, pd_change *ch);

/* Apply op (seq, device_id, hlc are filled here) and append it. The op's kind, entity, target,
 * field, values and base_rev come from the caller. On failure the store's error is set (the
 * message of pd_oplog_apply) and the caller must roll back. */
int pd_change_apply(pd_change *ch, pd_op *op);

/* The seq the next op of this change will get (for device-made ids). */
int64_t pd_change_next_seq(const pd_change *ch);

int pd_change_commit(pd_change *ch);
void pd_change_rollback(pd_change *ch);

/* Make a "set" op value from a C string (NULL → NULL). */
pd_value pd_text_value(const char *s);
pd_value pd_int_value(int64_t i);

/* Read the current value and rev of an OP field of a record. PD_ERR_NOTFOUND if there is no
 * such record. The value points into stmt's row: the caller finalizes *stmt_out when done. */
int pd_field_current(sqlite3 *db, const pd_field *f, const char *key, sqlite3_stmt **stmt_out,
                     pd_value *value, int64_t *rev, pd_error *err);

#endif /* PD_OPLOG_H */
