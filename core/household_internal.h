/*
 * household_internal.h — what visit.c and photo.c share with household.c: the stored household a
 * change is about, the device's assignment, the duplicate-NIK lookup, ending a member inside a
 * change. Internal to the core.
 */
#ifndef PD_HOUSEHOLD_INTERNAL_H
#define PD_HOUSEHOLD_INTERNAL_H

#include "oplog.h"

#include <stdbool.h>

/* The fields of a stored household a change needs. */
typedef struct pd_household_row {
    int64_t rev;
    char desa[16];
    char kec[16];
    bool is_new;     /* source = 'new' (proposed on a device) */
    char status[32]; /* "" when not visited */
} pd_household_row;

/* Read a household: PD_ERR_NOTFOUND (message in err) if there is none. */
int pd_household_rev(sqlite3 *db, const char *id, pd_household_row *row, pd_error *err);

/* Is desa within this device's assignment (table assignment; without one, the desa of the
 * prelists it imported)? */
int pd_area_assigned(sqlite3 *db, const char *desa, bool *assigned, pd_error *err);

/* Warn (PD_WARN_NIK_DUPLICATE) if an active member other than member_id, in a household other
 * than household_id, holds nik. Placeholders and NULL are never duplicates. */
int pd_nik_elsewhere(sqlite3 *db, const char *nik, const char *member_id, const char *household_id,
                     pd_warnings *w, pd_error *err);

/* End an active member inside a change: its status and its visit outcome become reason. */
int pd_member_end_in(pd_change *ch, const char *member_id, const char *reason);

/* cJSON_PrintUnformatted (malloc'd; NULL on allocation failure). */
char *pd_json_print(cJSON *obj);

#endif /* PD_HOUSEHOLD_INTERNAL_H */
