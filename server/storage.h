/*
 * storage.h — the server's ONE storage interface: everything the server keeps goes through here.
 *
 * The server above this line (HTTP, enrolment, auth, tus, merge, downloads) is backend-neutral:
 * it never sees SQL, a connection or a row id. A backend implements the table of operations
 * below; server/storage_sqlite.c is the SQLite one ("sqlite:PATH", also a bare path), a PostgreSQL
 * backend ("postgres://…") comes later behind the same table.
 *
 * Rules every backend keeps:
 *   - Writes happen inside pd_storage_begin … pd_storage_commit (or _rollback), one transaction;
 *     reads may happen inside or outside one. A failed call inside a transaction leaves it to the
 *     caller to roll back.
 *   - A handle is used by one thread at a time (the server serialises access with its own lock),
 *     unless its ops say concurrent (PostgreSQL's pool): then by many threads at once.
 *   - Every function returns PD_OK or a PD_ERR_* code and leaves a message on the handle
 *     (pd_storage_errmsg). "Not there" is PD_ERR_NOTFOUND; a duplicate key PD_ERR_EXISTS.
 *   - Strings and byte buffers handed in are copied; structs filled out are owned by the caller
 *     (free what the struct's _clear function says); pointers handed to callbacks are valid only
 *     during the callback. A callback returning non-zero stops the iteration, and that value is
 *     returned.
 *   - Record column names come from the fixed tables of server/records.h, never from input.
 */
#ifndef PD_SERVER_STORAGE_H
#define PD_SERVER_STORAGE_H

#include "pendata.h"
#include "records.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_SRV_ID_MAX 32        /* user, device ids: [0-9A-Za-z_-]{1,32} */
#define PD_SRV_NAME_MAX 255     /* a person's name, bytes of UTF-8 */
#define PD_SRV_AREA_MAX 4095    /* comma-separated area codes */
#define PD_SRV_CODE_MAX 32      /* one area code */
#define PD_SRV_UPLOAD_ID_LEN 32 /* hex */
#define PD_RECEIPT_BYTES 200    /* see server/PROTOCOL.md §5.3 */

/* ---- structs filled by and handed to the backend ------------------------------------------ */

typedef struct pd_srv_user {
    char id[PD_SRV_ID_MAX + 1];
    char role[16]; /* enumerator, supervisor, korcam, admin */
    char name[PD_SRV_NAME_MAX + 1];
    char area[PD_SRV_AREA_MAX + 1];
    char supervisor_id[PD_SRV_ID_MAX + 1]; /* "" if none */
    int64_t created_at;
} pd_srv_user;

typedef struct pd_srv_device {
    char id[PD_SRV_ID_MAX + 1];
    char user_id[PD_SRV_ID_MAX + 1];
    uint8_t pk[PD_PUBKEY_BYTES];
    int64_t enrolled_at;
    int64_t revoked_at; /* 0: not revoked */
} pd_srv_device;

typedef struct pd_srv_person_key {
    uint8_t pk[PD_PUBKEY_BYTES];
    char user_id[PD_SRV_ID_MAX + 1];
    char device_id[PD_SRV_ID_MAX + 1];
    int64_t added_at;
    int64_t rev;
} pd_srv_person_key;

typedef enum pd_srv_code_state {
    PD_CODE_OK = 0, /* taken now: marked used */
    PD_CODE_UNKNOWN,
    PD_CODE_EXPIRED,
    PD_CODE_USED
} pd_srv_code_state;

typedef struct pd_srv_upload {
    char id[PD_SRV_UPLOAD_ID_LEN + 1];
    char device_id[PD_SRV_ID_MAX + 1];
    char kind[8]; /* bundle, photo */
    int64_t length;
    int64_t acked; /* bytes durable and acknowledged */
    bool has_photo_hash;
    uint8_t photo_hash[PD_HASH_BYTES];
    int64_t created_at;
    int64_t expires_at;
    char state[12]; /* open, complete, processed, terminated, failed */
} pd_srv_upload;

/* A batch as the server holds it. bytes/review are malloc'd by the backend when it fills one:
 * release with pd_srv_batch_clear. When handed in, they are borrowed. */
typedef struct pd_srv_batch {
    char device_id[PD_SRV_ID_MAX + 1];
    int64_t seq;
    uint8_t hash[PD_HASH_BYTES];
    uint8_t prev_hash[PD_HASH_BYTES];
    uint8_t author_pk[PD_PUBKEY_BYTES];
    bool has_approver;
    uint8_t approver_pk[PD_PUBKEY_BYTES];
    char area[PD_SRV_CODE_MAX + 1];
    char state[12]; /* applied, voided, held; for quarantine rows: fork */
    uint8_t *bytes;
    size_t bytes_len;
    uint8_t *review;
    size_t review_len;
    bool has_receipt;
    uint8_t receipt[PD_RECEIPT_BYTES];
    int64_t received_at;
    char reason[256]; /* quarantine only */
} pd_srv_batch;

void pd_srv_batch_clear(pd_srv_batch *b);

/* One row of an upload's processing results (PROTOCOL.md §5.3). */
typedef struct pd_srv_result {
    int idx;
    char device_id[PD_SRV_ID_MAX + 1];
    int64_t seq;
    uint8_t hash[PD_HASH_BYTES];
    char status[12]; /* applied, voided, held, fork, rejected */
    bool again;
    char error[32];
    char message[PD_ERRMSG_MAX];
} pd_srv_result;

/* A value owned by its holder (the bytes of TEXT/BLOB in buf). */
typedef struct pd_srv_value {
    pd_value v;
    uint8_t *buf;
} pd_srv_value;

void pd_srv_value_clear(pd_srv_value *v);

/* Who made the last change of a field (or the change being made). */
typedef struct pd_srv_change {
    int64_t rev;
    char device_id[PD_SRV_ID_MAX + 1]; /* "" for a prelist load */
    bool has_author;
    uint8_t author_pk[PD_PUBKEY_BYTES];
    int64_t seq;
    int64_t hlc;
    bool has_batch;
    uint8_t batch_hash[PD_HASH_BYTES];
} pd_srv_change;

typedef struct pd_srv_conflict {
    const char *kind; /* field, create, duplicate_nik, double_visit */
    const char *entity;
    const char *target;
    const char *field;
    const char *area; /* desa code of the record */
    int64_t base_rev;
    const pd_value *base_value;   /* may be NULL */
    const pd_value *server_value; /* may be NULL */
    const pd_srv_change *server;  /* may be NULL: unknown (prelist load) */
    const pd_value *device_value; /* may be NULL */
    const char *device_id;
    const uint8_t *device_author; /* PD_PUBKEY_BYTES */
    int64_t device_seq;           /* the op's seq */
    int64_t device_hlc;
    int64_t batch_seq;
    const uint8_t *batch_hash; /* PD_HASH_BYTES */
    int64_t created_at;
    int64_t rev;
} pd_srv_conflict;

typedef struct pd_srv_audit {
    int64_t at;
    const char *action;    /* apply, merge, conflict, void, fork, enroll, revoke, user_add, load */
    const char *actor;     /* user id or "operator" */
    const char *device_id; /* may be NULL */
    const uint8_t *batch_hash; /* may be NULL */
    int64_t seq;
    const char *entity, *target, *field;   /* may be NULL */
    const pd_value *old_value, *new_value; /* may be NULL */
    int64_t rev;
} pd_srv_audit;

typedef struct pd_srv_stats {
    int64_t users, devices, devices_revoked, households, members, visits, photos;
    int64_t batches, batches_held, forks, conflicts_open, uploads_open, revision;
} pd_srv_stats;

/* What merging one field of an existing record reads (field_merge_read). */
typedef struct pd_srv_merge_read {
    char desa[PD_SRV_CODE_MAX + 1]; /* the record's desa, as record_area */
    pd_srv_value value;             /* the field's value (pd_srv_value_clear it) */
    bool has_last;                  /* false: the field never changed since the record was made */
    pd_srv_change last;             /* its last change, as field_change */
    bool changed_elsewhere;         /* as changed_elsewhere(base_rev, device_id) */
} pd_srv_merge_read;

/* One column value of a record row handed to a callback. */
typedef struct pd_srv_field {
    const char *name;
    pd_value value;
} pd_srv_field;

typedef int (*pd_storage_row_cb)(void *ctx, pd_entity entity, const pd_srv_field *fields, size_t n);
typedef int (*pd_storage_user_cb)(void *ctx, const pd_srv_user *u);
typedef int (*pd_storage_key_cb)(void *ctx, const pd_srv_person_key *k);
typedef int (*pd_storage_batch_cb)(void *ctx, const pd_srv_batch *b);
typedef int (*pd_storage_result_cb)(void *ctx, const pd_srv_result *r);
typedef int (*pd_storage_id_cb)(void *ctx, const char *id);
typedef int (*pd_storage_shape_cb)(void *ctx, const char *code, const char *name, const char *shape,
                                   int64_t rev);
/* A member holding a NIK, or a visit of a household. */
typedef int (*pd_storage_pair_cb)(void *ctx, const char *a, const char *b, const char *c);

/* ---- korcam: the conflict queue, revisit tasks, web logins (server/korcam.c) ------------------
 * Types of the korcam block of operations at the end of pd_storage_ops. */

#define PD_SRV_NOTE_MAX 1000 /* a resolution's or task's note, bytes of UTF-8 */
#define PD_SRV_CSRF_LEN 64   /* hex */

/* A conflict as the korcam sees it. Strings, keys and values point into the backend's memory,
 * valid only during the callback. Author keys are resolved to their persons ("" if unknown). */
typedef struct pd_srv_conflict_row {
    int64_t id;
    const char *kind, *entity, *target, *field, *area, *related;
    const char *household_id; /* the household the conflict is about ("" if gone) */
    const char *head_name;    /* its head's name ("") */
    int64_t base_rev;
    pd_value base_value, server_value, device_value;
    const char *server_device, *server_user; /* "" if unknown (a prelist load) */
    const uint8_t *server_author;            /* NULL if unknown */
    int64_t server_seq, server_hlc;
    const uint8_t *server_batch; /* NULL if unknown */
    const char *device_device, *device_user;
    const uint8_t *device_author;
    int64_t device_seq, device_hlc, batch_seq;
    const uint8_t *batch_hash;
    int64_t created_at, rev;
    bool resolved;
    const char *resolution; /* "" while open */
    pd_value resolved_value;
    const char *resolved_by, *note; /* "" while open */
    int64_t resolved_at;
} pd_srv_conflict_row;

typedef struct pd_srv_conflict_filter {
    const char *areas;      /* the asker's areas (required): only conflicts whose area they cover */
    const char *kind;       /* NULL: any */
    const char *desa;       /* NULL: any; a code covers the codes under it */
    const char *enumerator; /* the user id of either side's author; NULL: any */
    const char *state;      /* "open" or "resolved"; NULL: any */
    int64_t created_before; /* only conflicts created before (ms); 0: any age */
    int64_t limit, offset;  /* limit 0: no limit */
} pd_srv_conflict_filter;

/* A decision on a conflict (conflict_resolve). */
typedef struct pd_srv_resolution {
    int64_t id;
    const char *resolution; /* server, device, value, merge, split, revisit */
    const pd_value *value;  /* the value that stands now, or NULL */
    const char *by;         /* user id */
    int64_t at;
    const char *note; /* may be NULL */
    int64_t rev;      /* the conflict's new revision */
} pd_srv_resolution;

typedef struct pd_srv_task {
    int64_t id;
    const char *kind; /* revisit */
    const char *household_id;
    const char *area;     /* desa code */
    const char *assignee; /* user id, or "" for every device of the area */
    int64_t conflict_id;  /* 0: none */
    const char *note;
    const char *created_by;
    int64_t created_at, rev;
} pd_srv_task;

/* One audit row (strings and values valid during the callback). */
typedef struct pd_srv_audit_row {
    int64_t id, at;
    const char *action, *actor, *device_id; /* device_id "" if none */
    const uint8_t *batch_hash;              /* NULL if none */
    int64_t seq;
    const char *entity, *target, *field;
    pd_value old_value, new_value;
    int64_t rev;
} pd_srv_audit_row;

/* A located place: a household's own location (visit_id "") or one visit's fix. */
typedef struct pd_srv_point {
    const char *household_id, *head_name, *visit_id;
    double lat, lon, accuracy_m;     /* accuracy_m < 0: unknown */
    int64_t at;                      /* the visit's time (0 for a household's location) */
    const char *outcome, *device_id; /* "" for a household's location */
    const uint8_t *enumerator_pk;    /* NULL if unknown */
} pd_srv_point;

/* A member holding a NIK, with what the korcam's checks need. */
typedef struct pd_srv_holder {
    const char *member_id, *household_id, *status, *household_source, *name;
    int64_t relationship; /* 0 if unknown */
} pd_srv_holder;

typedef struct pd_srv_session {
    uint8_t token_hash[PD_HASH_BYTES];
    char user_id[PD_SRV_ID_MAX + 1];
    char csrf[PD_SRV_CSRF_LEN + 1];
    int64_t created_at, expires_at;
} pd_srv_session;

/* Per desa of an area: households, those visited (at least one visit), pending (none yet),
 * conflicts open and resolved. */
typedef struct pd_srv_desa_summary {
    const char *desa, *name; /* name "" if no outline was loaded */
    int64_t households, visited, pending, conflicts_open, conflicts_resolved, tasks;
} pd_srv_desa_summary;

typedef int (*pd_storage_conflict_cb)(void *ctx, const pd_srv_conflict_row *c);
typedef int (*pd_storage_task_cb)(void *ctx, const pd_srv_task *t);
typedef int (*pd_storage_audit_cb)(void *ctx, const pd_srv_audit_row *a);
typedef int (*pd_storage_point_cb)(void *ctx, const pd_srv_point *p);
typedef int (*pd_storage_holder_cb)(void *ctx, const pd_srv_holder *h);
typedef int (*pd_storage_summary_cb)(void *ctx, const pd_srv_desa_summary *s);

/* ---- the operations a backend implements ---------------------------------------------------- */

typedef struct pd_storage pd_storage;

typedef struct pd_storage_ops {
    const char *name;
    void (*close)(pd_storage *st);

    /* Many threads may use the handle at once (each thread's transaction on a connection of its
     * own): the server then takes no lock of its own around storage work. A failed call's
     * message is then the calling thread's, in thread_error (pd_storage_error reads it). false
     * and NULL: one thread at a time (the server's lock), the message in st->err. */
    bool concurrent;
    const pd_error *(*thread_error)(const pd_storage *st);

    int (*begin)(pd_storage *st);
    int (*commit)(pd_storage *st);
    void (*rollback)(pd_storage *st);

    /* Group commit (optional: NULL where every commit is durable when it returns).
     * sync_defer(st, true): from now on a commit (or a single write outside a transaction) of
     * this handle returns once written, before it is durable; sync_defer(st, false) ends that.
     * Calls nest (requests whose handlers release the lock for a while interleave): commits are
     * deferred while more trues than falses were made.
     * sync_flush makes every commit that returned before the call durable. It needs no lock and
     * may run in many threads at once: one flush (one fsync) serves every caller waiting on it.
     * Whoever defers must flush before it tells anyone that a deferred commit happened. */
    int (*sync_defer)(pd_storage *st, bool on);
    int (*sync_flush)(pd_storage *st);

    /* Readers (optional: NULL for a concurrent handle, which needs none). reader_open gives a
     * handle on the same database that only reads, beside this one's writer and without the
     * caller's lock: one thread at a time on each reader; begin on it starts a read transaction
     * (one snapshot), rollback ends it. A reader sees what was committed, durable or not yet (a
     * deferred commit): read_flush, called on the writer's handle after the read, makes every
     * commit a reader could have seen durable (no lock needed; concurrent calls share one
     * fsync). Close a reader with close, before its writer. */
    int (*reader_open)(pd_storage *st, pd_storage **out, pd_error *err);
    int (*read_flush)(pd_storage *st);

    /* The global revision counter: the next value (inside a transaction), or the current one. */
    int (*revision_next)(pd_storage *st, int64_t *rev);
    int (*revision_current)(pd_storage *st, int64_t *rev);

    int (*user_add)(pd_storage *st, const pd_srv_user *u);
    int (*user_get)(pd_storage *st, const char *id, pd_srv_user *out);
    int (*users_supervised)(pd_storage *st, const char *supervisor_id, pd_storage_user_cb cb,
                            void *ctx);

    int (*person_key_add)(pd_storage *st, const pd_srv_person_key *k);
    int (*person_key_get)(pd_storage *st, const uint8_t pk[PD_PUBKEY_BYTES],
                          pd_srv_person_key *out);
    int (*person_keys_of)(pd_storage *st, const char *user_id, pd_storage_key_cb cb, void *ctx);

    int (*device_add)(pd_storage *st, const pd_srv_device *d);
    int (*device_get)(pd_storage *st, const char *id, pd_srv_device *out);
    int (*device_revoke)(pd_storage *st, const char *id, int64_t at);

    int (*code_add)(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], const char *user_id,
                    int64_t created_at, int64_t expires_at);
    /* Take a code: checks and marks it used (in the caller's transaction). *state says why not;
     * user_id (PD_SRV_ID_MAX+1 bytes) gets the code's user when state is PD_CODE_OK. */
    int (*code_take)(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t now,
                     const char *device_id, pd_srv_code_state *state, char *user_id);

    /* Record a nonce: PD_ERR_EXISTS if this device used it already. */
    int (*nonce_add)(pd_storage *st, const char *device_id, const uint8_t *nonce, size_t len,
                     int64_t at);
    int (*nonce_seen)(pd_storage *st, const char *device_id, const uint8_t *nonce, size_t len,
                      bool *seen);
    int (*nonce_purge)(pd_storage *st, int64_t before);

    int (*upload_add)(pd_storage *st, const pd_srv_upload *u);
    int (*upload_get)(pd_storage *st, const char *id, pd_srv_upload *out);
    int (*upload_update)(pd_storage *st, const char *id, int64_t acked, int64_t expires_at,
                         const char *state);
    /* Forget an upload that never took a byte (a creation-with-upload POST refused whole). */
    int (*upload_del)(pd_storage *st, const char *id);
    /* Open uploads whose expires_at < now. */
    int (*uploads_expired)(pd_storage *st, int64_t now, pd_storage_id_cb cb, void *ctx);
    /* A device's open uploads whose expires_at >= now: how many, the sum of their lengths, and
     * the first expires_at among them (0 if none). One indexed query (uploads_device). */
    int (*uploads_open_of)(pd_storage *st, const char *device_id, int64_t now, int64_t *count,
                           int64_t *bytes, int64_t *first_expiry);

    int (*blob_get)(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t *size);
    int (*blob_add)(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], int64_t size, int64_t at,
                    const char *device_id);

    /* The chain: batches by (device, seq) or by hash; the highest seq in state applied/voided. */
    int (*batch_put)(pd_storage *st, const pd_srv_batch *b);
    int (*batch_get)(pd_storage *st, const char *device_id, int64_t seq, pd_srv_batch *out);
    int (*batch_by_hash)(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], pd_srv_batch *out);
    int (*batch_last)(pd_storage *st, const char *device_id, pd_srv_batch *out);
    int (*batch_set_state)(pd_storage *st, const char *device_id, int64_t seq, const char *state,
                           const uint8_t receipt[PD_RECEIPT_BYTES], int64_t applied_at);
    /* Drop a held batch (it turned out not to continue the chain: it goes to quarantine). */
    int (*batch_unhold)(pd_storage *st, const char *device_id, int64_t seq);
    int (*batches_of)(pd_storage *st, const char *device_id, int64_t since_seq,
                      pd_storage_batch_cb cb, void *ctx);
    int (*quarantine_put)(pd_storage *st, const pd_srv_batch *b);
    int (*quarantine_by_hash)(pd_storage *st, const uint8_t hash[PD_HASH_BYTES], pd_srv_batch *out);

    int (*result_put)(pd_storage *st, const char *upload_id, const pd_srv_result *r);
    int (*results_of)(pd_storage *st, const char *upload_id, pd_storage_result_cb cb, void *ctx);

    /* Records. */
    int (*record_rev)(pd_storage *st, pd_entity e, const char *id, int64_t *rev);
    int (*record_insert)(pd_storage *st, pd_entity e, const pd_srv_field *fields, size_t n,
                         int64_t rev);
    int (*field_get)(pd_storage *st, pd_entity e, const char *id, int column, pd_srv_value *out);
    /* Set one column, raise the record's rev to ch->rev and remember ch as the field's last
     * change. */
    int (*field_set)(pd_storage *st, pd_entity e, const char *id, int column, const pd_value *v,
                     const pd_srv_change *ch);
    /* The field's last change; PD_ERR_NOTFOUND if it never changed since the record was made. */
    int (*field_change)(pd_storage *st, pd_entity e, const char *id, int column,
                        pd_srv_change *out);
    /* Did a field of the record change after rev by a device other than device_id (or by the
     * server itself)? */
    int (*changed_elsewhere)(pd_storage *st, pd_entity e, const char *id, int64_t rev,
                             const char *device_id, bool *changed);
    /* Optional (NULL: the caller makes the four calls): record_area, field_get, field_change
     * and changed_elsewhere(base_rev, device_id) of a household or member in one call, for the
     * merge of one field. PD_ERR_NOTFOUND if there is no such record; out->value is set only
     * on PD_OK. */
    int (*field_merge_read)(pd_storage *st, pd_entity e, const char *id, int column,
                            int64_t base_rev, const char *device_id, pd_srv_merge_read *out);
    /* The desa code a record lies in (a member's or visit's: its household's); desa has
     * PD_SRV_CODE_MAX+1 bytes. */
    int (*record_area)(pd_storage *st, pd_entity e, const char *id, char *desa);
    /* cb(member id, household id, NULL) for members with this NIK. */
    int (*nik_holders)(pd_storage *st, const char *nik, pd_storage_pair_cb cb, void *ctx);
    /* cb(visit id, outcome, device id) for visits of a household. */
    int (*visits_of)(pd_storage *st, const char *household_id, pd_storage_pair_cb cb, void *ctx);
    /* Records of households in any of `areas` (comma-separated codes; a code covers the codes
     * under it) with rev > since, households and members (members of those households) in rev
     * order, at most limit rows; cb gets whole rows. */
    int (*records_since)(pd_storage *st, const char *areas, int64_t since, int64_t limit,
                         pd_storage_row_cb cb, void *ctx);
    /* Every household of the areas in id order, each followed at once by its members in
     * member_no order (cb gets whole rows) — what a prelist package holds. */
    int (*area_records)(pd_storage *st, const char *areas, pd_storage_row_cb cb, void *ctx);
    /* Area outlines: add (an existing code is left alone: PD_ERR_EXISTS), and list those of the
     * areas. */
    int (*shape_put)(pd_storage *st, const char *code, const char *name, const char *shape,
                     int64_t rev);
    int (*shapes_in)(pd_storage *st, const char *areas, pd_storage_shape_cb cb, void *ctx);
    /* The highest rev of any household or member in the areas (0 if none). */
    int (*area_revision)(pd_storage *st, const char *areas, int64_t *rev);

    int (*conflict_add)(pd_storage *st, const pd_srv_conflict *c, int64_t *id);
    /* cb(entity "conflict") with id, kind, entity, target, field, state, resolved_value, rev. */
    int (*conflicts_since)(pd_storage *st, const char *areas, int64_t since, pd_storage_row_cb cb,
                           void *ctx);
    int (*audit_add)(pd_storage *st, const pd_srv_audit *a);

    int (*stats)(pd_storage *st, pd_srv_stats *out);

    /* ---- korcam (server/korcam.c; types above). A backend without them leaves them NULL and the
     * korcam endpoints answer 501. ---------------------------------------------------------- */

    /* Conflicts the filter selects, newest first; *total (may be NULL) gets how many match
     * without limit/offset. */
    int (*conflicts_list)(pd_storage *st, const pd_srv_conflict_filter *f,
                          pd_storage_conflict_cb cb, void *ctx, int64_t *total);
    /* One conflict; PD_ERR_NOTFOUND if there is none. */
    int (*conflict_get)(pd_storage *st, int64_t id, pd_storage_conflict_cb cb, void *ctx);
    /* Set the record a conflict relates to (right after conflict_add). */
    int (*conflict_relate)(pd_storage *st, int64_t id, const char *related);
    /* Is there a conflict (open or resolved) of this kind on target, about related, whose device
     * value is device_value (NULL: any)? */
    int (*conflict_exists)(pd_storage *st, const char *kind, const char *target,
                           const char *related, const pd_value *device_value, bool *exists);
    /* Record the decision and raise the conflict's rev; PD_ERR_STATE if it was resolved already,
     * PD_ERR_NOTFOUND if there is no such conflict. */
    int (*conflict_resolve)(pd_storage *st, const pd_srv_resolution *r);
    /* Members holding a NIK, by member id. */
    int (*nik_members)(pd_storage *st, const char *nik, pd_storage_holder_cb cb, void *ctx);
    /* Households whose KK number, or a member's, is kk: cb(household id, head name, NULL). */
    int (*kk_households)(pd_storage *st, const char *kk, pd_storage_pair_cb cb, void *ctx);
    /* Households located, or visited with a fix, inside the box. */
    int (*points_in_box)(pd_storage *st, double lat_min, double lat_max, double lon_min,
                         double lon_max, pd_storage_point_cb cb, void *ctx);
    /* A household's location and its visits' fixes, in time order. */
    int (*household_points)(pd_storage *st, const char *household_id, pd_storage_point_cb cb,
                            void *ctx);
    /* The audit rows of a household, its members and its visits, oldest first, at most limit. */
    int (*household_audit)(pd_storage *st, const char *household_id, int64_t limit,
                           pd_storage_audit_cb cb, void *ctx);
    /* One whole record (household or member) to cb; PD_ERR_NOTFOUND if there is none. */
    int (*record_get)(pd_storage *st, pd_entity e, const char *id, pd_storage_row_cb cb, void *ctx);
    /* The members of a household (whole rows) in member_no order. */
    int (*household_members)(pd_storage *st, const char *household_id, pd_storage_row_cb cb,
                             void *ctx);
    int (*task_add)(pd_storage *st, const pd_srv_task *t, int64_t *id);
    /* Tasks in the areas with rev > since, for assignee (NULL: every task), in rev order. */
    int (*tasks_since)(pd_storage *st, const char *areas, const char *assignee, int64_t since,
                       pd_storage_task_cb cb, void *ctx);
    /* A user's password hash (crypto_pwhash_str): set (ends the user's sessions), or get into
     * hash (cap bytes); PD_ERR_NOTFOUND if none was set. */
    int (*password_set)(pd_storage *st, const char *user_id, const char *hash, int64_t at);
    int (*password_get)(pd_storage *st, const char *user_id, char *hash, size_t cap);
    int (*session_add)(pd_storage *st, const pd_srv_session *s);
    int (*session_get)(pd_storage *st, const uint8_t token_hash[PD_HASH_BYTES],
                       pd_srv_session *out);
    int (*session_delete)(pd_storage *st, const uint8_t token_hash[PD_HASH_BYTES]);
    int (*sessions_purge)(pd_storage *st, int64_t now);
    /* Failed logins of a subject (a user id as typed): add one, count those at or after since,
     * forget them (after a good login). */
    int (*login_failure_add)(pd_storage *st, const char *subject, int64_t at);
    int (*login_failures)(pd_storage *st, const char *subject, int64_t since, int64_t *count);
    int (*login_failures_clear)(pd_storage *st, const char *subject);
    /* Per desa of the areas (that holds households or conflicts), in code order. */
    int (*desa_summary)(pd_storage *st, const char *areas, pd_storage_summary_cb cb, void *ctx);
} pd_storage_ops;

/* The part of every backend's handle the interface sees. */
struct pd_storage {
    const pd_storage_ops *ops;
    pd_error err;
};

/* ---- opening -----------------------------------------------------------------------------------
 */

/* Open (creating if needed, and migrating to the newest schema) the storage named by url:
 * "sqlite:PATH" or a bare PATH. PD_ERR_INVALID for an unknown scheme; PD_ERR_VERSION for a
 * database newer than this build. */
int pd_storage_open(pd_storage **out, const char *url, pd_error *err);
void pd_storage_close(pd_storage *st);
const char *pd_storage_errmsg(const pd_storage *st);
/* The code and message of the calling thread's last failed call on st. */
static inline const pd_error *pd_storage_error(const pd_storage *st)
{
    return st->ops->thread_error ? st->ops->thread_error(st) : &st->err;
}
int pd_storage_fail(pd_storage *st, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The SQLite backend's constructor (storage_sqlite.c). */
int pd_storage_sqlite_open(pd_storage **out, const char *path, pd_error *err);

#endif
