/*
 * pd_korcam.h — conflict reconciliation on a device (sync/korcam.c).
 *
 * Two sides:
 *   - a korcam's device works the conflict queue of its kecamatan on the server (PROTOCOL.md §9):
 *     list, show, resolve, and the summary per desa — requests signed with this device's key
 *     (Pd-Auth), answers checked against the pinned server key, exactly as a sync is;
 *   - every device keeps what deltas bring about conflicts of its area (their resolution: who
 *     decided what, when, why) and the revisit tasks sent to it, so an enumerator sees what
 *     became of their changes and which households to visit again.
 *
 * Answers of the queue API are handed back as the server's JSON text (malloc'd, caller frees):
 * a front end renders them; the command line prints them (cmd_conflicts.c). Errors as everywhere:
 * a PD_ERR_* code and the message on the store (pd_store_errmsg) — PD_ERR_NOTFOUND for a conflict
 * that is not there or not in this korcam's area, PD_ERR_STATE for one decided already,
 * PD_ERR_INVALID for a decision the server refuses, PD_ERR_DENIED for a device that is not a
 * korcam's.
 */
#ifndef PD_KORCAM_H
#define PD_KORCAM_H

#include "pd_sync.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the queue on the server (a korcam's device) ------------------------------------------- */

typedef struct pd_korcam_filter {
    const char *kind;       /* field, create, duplicate_nik, double_visit, duplicate_household,
                               moved_active; NULL: any */
    const char *desa;       /* an area code; NULL: the whole kecamatan */
    const char *enumerator; /* a user id; NULL: anyone */
    const char *state;      /* open (NULL), resolved, all */
    int64_t age_hours;      /* only conflicts at least this old; 0: any */
    int64_t limit, offset;  /* limit 0: the server's default (100) */
} pd_korcam_filter;

/* The decision (one of the actions a conflict's "actions" lists). */
typedef struct pd_korcam_resolution {
    const char *action; /* server, device, value, merge, split, revisit */
    const char *value;  /* action value: the value (NULL: clear the field) */
    const char *into;   /* action merge: the household to merge into (NULL: the other one) */
    const char *member; /* action split: the member to split out */
    const char *note;   /* why (may be NULL) */
} pd_korcam_resolution;

int pd_korcam_list(pd_store *store, const pd_korcam_filter *f, const pd_sync_options *opt,
                   char **json);
int pd_korcam_show(pd_store *store, int64_t id, const pd_sync_options *opt, char **json);
int pd_korcam_resolve(pd_store *store, int64_t id, const pd_korcam_resolution *r,
                      const pd_sync_options *opt, char **json);
int pd_korcam_summary(pd_store *store, const pd_sync_options *opt, char **json);

/* ---- what this device received -----------------------------------------------------------------
 */

typedef struct pd_korcam_notice {
    int64_t id;
    const char *kind, *entity, *target, *field, *household_id, *head_name, *related;
    const char *state;      /* open, resolved */
    const char *resolution; /* "" while open */
    pd_value resolved_value;
    const char *resolved_by, *note;
    int64_t resolved_at, rev;
} pd_korcam_notice;

typedef struct pd_korcam_task {
    int64_t id;
    const char *kind, *household_id, *head_name, *note, *created_by;
    int64_t conflict_id; /* 0: none */
    int64_t created_at;
    int64_t revisited_at; /* the first visit of the household after the task (0: not yet) */
} pd_korcam_task;

typedef int (*pd_korcam_notice_fn)(void *ctx, const pd_korcam_notice *n);
typedef int (*pd_korcam_task_fn)(void *ctx, const pd_korcam_task *t);

/* Conflicts received, the latest decided first (open ones after). A callback returning non-zero
 * stops and that value is returned. Strings are valid during the callback. */
int pd_korcam_notices(pd_store *store, pd_korcam_notice_fn fn, void *ctx);
/* Revisit tasks received, newest first. */
int pd_korcam_tasks(pd_store *store, pd_korcam_task_fn fn, void *ctx);

/* ---- for the sync client (client_pull.c)
 * --------------------------------------------------------- */

struct cJSON;
/* Keep a delta page's `conflicts` and `tasks` (newest revision wins), inside the page's
 * transaction. Entries without the shape PROTOCOL.md §9.4 gives are left out; PD_ERR_PROTOCOL
 * (message in err) when `conflicts` or `tasks` is not an array, a storage failure otherwise. */
int pd_korcam_delta_store(pd_store *store, const struct cJSON *conflicts, const struct cJSON *tasks,
                          pd_error *err);

#ifdef __cplusplus
}
#endif
#endif
