/*
 * fields.h — the columns of the records the op log changes (household, member, visit, photo):
 * their types, which may be corrected by a person and which by an op, how each value is checked,
 * and their conversion to and from the JSON object a "create"/"visit"/"photo" op carries.
 *
 * One table per record (fields.c), in schema column order. It is the whitelist: no column name
 * reaches SQL unless it is listed here, and every statement that names a column is a constant
 * string of this table (UPDATE/SELECT per field, one INSERT per record with named parameters).
 * Internal to the core.
 */
#ifndef PD_FIELDS_H
#define PD_FIELDS_H

#include "internal.h"

#include <cjson/cJSON.h>
#include <stdbool.h>

typedef enum pd_ftype { PD_FT_INT = 1, PD_FT_REAL, PD_FT_TEXT, PD_FT_BLOB } pd_ftype;

/* flags */
#define PD_F_NULL 0x01  /* may be NULL */
#define PD_F_USER 0x02  /* a person may correct it (pd_household_set / pd_member_set) */
#define PD_F_OP 0x04    /* a "set" op may change it (every USER field, plus status/outcome) */
#define PD_F_KEY 0x08   /* the record's key: the op's target, not in the JSON */
#define PD_F_LOCAL 0x10 /* device-local state: not in the JSON, its default on insert */
#define PD_F_BYTES 0x20 /* the photo bytes: fetched beside the op, not in the JSON */
#define PD_F_MULTI 0x40 /* text that may hold line breaks and tabs */

typedef enum pd_fcheck {
    PD_CK_NONE = 0,
    PD_CK_ID,    /* 1..63 of [0-9A-Za-z._-] */
    PD_CK_TEXT,  /* UTF-8 text of at most max bytes */
    PD_CK_NAME,  /* as TEXT, and not empty */
    PD_CK_RANGE, /* min..max */
    PD_CK_CODE,  /* a code of codes.h (table named by the field) */
    PD_CK_BITS,  /* only bits of the mask in max */
    PD_CK_NIK,
    PD_CK_KK,
    PD_CK_DATE, /* YYYY-MM-DD, not in the future */
    PD_CK_AREA, /* a real area code */
    PD_CK_ENUM, /* one of a set of words: by the enum_check function */
    PD_CK_HASH, /* 32 bytes */
    PD_CK_PK    /* 32 bytes (an Ed25519 public key) */
} pd_fcheck;

typedef struct pd_field {
    const char *name;
    pd_ftype type;
    unsigned flags;
    pd_fcheck check;
    int64_t min, max; /* RANGE bounds, TEXT/NAME byte limit, BITS mask */
    int (*enum_check)(const char *value, pd_error *err);
    const char *update_sql; /* "UPDATE t SET col = ?1 WHERE key = ?2" for OP fields */
    const char *select_sql; /* "SELECT col, rev FROM t WHERE key = ?1" for OP fields */
    /* The value on insert when absent (LOCAL fields) */
    int64_t def_int;
    const char *def_text;
} pd_field;

typedef struct pd_record {
    const char *entity;     /* "household", "member", "visit", "photo" */
    const pd_field *fields; /* schema column order, without hh_rowid */
    size_t count;
    const char *insert_sql; /* named parameters ":column" for every field */
    const char *exists_sql; /* "SELECT 1 FROM t WHERE key = ?1" */
} pd_record;

/* The record of an entity name, or NULL. */
const pd_record *pd_record_of(const char *entity);

/* A field of a record, or NULL. */
const pd_field *pd_record_field(const pd_record *r, const char *name);

/* Check one value against its field: type (an INT is accepted for a REAL field and converted in
 * *v), NULL where allowed, and the field's check. Messages start with "<entity>.<field>: ". */
int pd_field_check(const pd_record *r, const pd_field *f, pd_value *v, int64_t now_ms,
                   pd_warnings *w, pd_error *err);

/* Bind v to parameter idx of stmt. */
int pd_value_bind(sqlite3_stmt *stmt, int idx, const pd_value *v);

/* Read column col of the current row of stmt as a pd_value (pointing into the row). */
void pd_value_column(sqlite3_stmt *stmt, int col, pd_value *v);

/* Are two values equal (same type and content; an INT and a REAL of the same number are equal)? */
bool pd_value_equal(const pd_value *a, const pd_value *b);

/* Describe a value for a message ("NULL", "42", "'Siti'"), into buf. */
const char *pd_value_describe(const pd_value *v, char *buf, size_t cap);

/* Add column col of stmt to obj under name, typed by f (BLOB as lowercase hex). NULL → JSON null.
 * Returns false on allocation failure. */
bool pd_json_add_column(cJSON *obj, const char *name, sqlite3_stmt *stmt, int col);

/* Add a pd_value to obj under name (BLOB as hex). false on allocation failure. */
bool pd_json_add_value(cJSON *obj, const char *name, const pd_value *v);

/* Read a record's JSON member into a pd_value of the field's type (text points into the JSON;
 * blob hex is decoded into buf of cap bytes). PD_ERR_INVALID if the JSON type does not fit. */
int pd_json_value(const pd_record *r, const pd_field *f, const cJSON *item, pd_value *v,
                  uint8_t *buf, size_t cap, pd_error *err);

/* Hex of bytes into out (2n+1 bytes). */
void pd_hex(const uint8_t *p, size_t n, char *out);

#endif /* PD_FIELDS_H */
