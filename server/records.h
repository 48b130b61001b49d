/*
 * records.h — what the server knows about the records it merges: the entities (household,
 * member, visit, photo) and, for each, its columns with their types and whether an op may set them.
 *
 * This table is the one place column names come from: the merge engine checks an op's field
 * against it, the storage backends build their (prepared, bound) statements from it, the delta
 * encoder names JSON members after it. Column names follow schema/device/001_init.sql so devices
 * apply deltas without translation. Column 0 of each entity is its id.
 */
#ifndef PD_SERVER_RECORDS_H
#define PD_SERVER_RECORDS_H

#include "pendata.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum pd_entity {
    PD_ENT_HOUSEHOLD = 0,
    PD_ENT_MEMBER,
    PD_ENT_VISIT,
    PD_ENT_PHOTO,
    PD_ENT__COUNT
} pd_entity;

typedef struct pd_column {
    const char *name;
    pd_value_type type; /* INT, REAL, TEXT or BLOB */
    bool nullable;      /* may hold NULL */
    bool settable;      /* a "set" op may change it */
    bool device;        /* sent to devices in deltas and prelists */
} pd_column;

/* The entity's table/JSON name ("household", …), or NULL for an invalid value. */
const char *pd_entity_name(pd_entity e);

/* Parse an entity name; -1 if unknown. */
int pd_entity_parse(const char *name);

/* The columns of an entity (column 0 is the id) and their number. */
const pd_column *pd_entity_columns(pd_entity e, size_t *n);

/* Index of a column by name, or -1. */
int pd_entity_column(pd_entity e, const char *name);

/* Does the value's type fit the column (NULL only where nullable; INT accepted for REAL)? */
bool pd_column_accepts(const pd_column *c, const pd_value *v);

#endif
