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
 *   - A handle is used by one thread at a time (the server serialises access with its own lock).
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
    char role[16];                 /* enumerator, supervisor, korcam, admin */
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
    PD_CODE_OK = 0,     /* taken now: marked used */
    PD_CODE_UNKNOWN,
    PD_CODE_EXPIRED,
    PD_CODE_USED
} pd_srv_code_state;

typedef struct pd_srv_upload {
    char id[PD_SRV_UPLOAD_ID_LEN + 1];
    char device_id[PD_SRV_ID_MAX + 1];
    char kind[8];     /* bundle, photo */
    int64_t length;
    int64_t acked;    /* bytes durable and acknowledged */
    bool has_photo_hash;
    uint8_t photo_hash[PD_HASH_BYTES];
    int64_t created_at;
    int64_t expires_at;
    char state[12];   /* open, complete, processed, terminated, failed */
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
    char state[12];   /* applied, voided, held; for quarantine rows: fork */
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
    char status[12];  /* applied, voided, held, fork, rejected */
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
    const char *kind;   /* field, create, duplicate_nik, double_visit */
    const char *entity;
    const char *target;
    const char *field;
    const char *area;   /* desa code of the record */
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
    const uint8_t *batch_hash;    /* PD_HASH_BYTES */
    int64_t created_at;
    int64_t rev;
} pd_srv_conflict;

typedef struct pd_srv_audit {
    int64_t at;
    const char *action; /* apply, merge, conflict, void, fork, enroll, revoke, user_add, load */
    const char *actor;  /* user id or "operator" */
    const char *device_id;        /* may be NULL */
    const uint8_t *batch_hash;    /* may be NULL */
    int64_t seq;
    const char *entity, *target, *field; /* may be NULL */
    const pd_value *old_value, *new_value; /* may be NULL */
    int64_t rev;
} pd_srv_audit;

typedef struct pd_srv_stats {
    int64_t users, devices, devices_revoked, households, members, visits, photos;
    int64_t batches, batches_held, forks, conflicts_open, uploads_open, revision;
} pd_srv_stats;

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
typedef int (*pd_storage_shape_cb)(void *ctx, const char *code, const char *name,
                                   const char *shape, int64_t rev);
/* A member holding a NIK, or a visit of a household. */
typedef int (*pd_storage_pair_cb)(void *ctx, const char *a, const char *b, const char *c);

/* ---- the operations a backend implements ---------------------------------------------------- */

typedef struct pd_storage pd_storage;

typedef struct pd_storage_ops {
    const char *name;
    void (*close)(pd_storage *st);

    int (*begin)(pd_storage *st);
    int (*commit)(pd_storage *st);
    void (*rollback)(pd_storage *st);

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
    /* Open uploads whose expires_at < now. */
    int (*uploads_expired)(pd_storage *st, int64_t now, pd_storage_id_cb cb, void *ctx);

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
    int (*quarantine_by_hash)(pd_storage *st, const uint8_t hash[PD_HASH_BYTES],
                              pd_srv_batch *out);

    int (*result_put)(pd_storage *st, const char *upload_id, const pd_srv_result *r);
    int (*results_of)(pd_storage *st, const char *upload_id, pd_storage_result_cb cb, void *ctx);

    /* Records. */
    int (*record_rev)(pd_storage *st, pd_entity e, const char *id, int64_t *rev);
    int (*record_insert)(pd_storage *st, pd_entity e, const pd_srv_field *fields, size_t n,
                         int64_t rev);
    int (*field_get)(pd_storage *st, pd_entity e, const char *id, int column,
                     pd_srv_value *out);
    /* Set one column, raise the record's rev to ch->rev and remember ch as the field's last
     * change. */
    int (*field_set)(pd_storage *st, pd_entity e, const char *id, int column, const pd_value *v,
                     const pd_srv_change *ch);
    /* The field's last change; PD_ERR_NOTFOUND if it never changed since the record was made. */
    int (*field_change)(pd_storage *st, pd_entity e, const char *id, int column,
                        pd_srv_change *out);
    /* The desa code a record lies in (a member's or visit's: its household's); desa has
     * PD_SRV_CODE_MAX+1 bytes. */
    int (*record_area)(pd_storage *st, pd_entity e, const char *id, char *desa);
    /* cb(member id, household id, NULL) for members with this NIK. */
    int (*nik_holders)(pd_storage *st, const char *nik, pd_storage_pair_cb cb, void *ctx);
    /* cb(visit id, outcome, device id) for visits of a household. */
    int (*visits_of)(pd_storage *st, const char *household_id, pd_storage_pair_cb cb,
                     void *ctx);
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
    int (*conflicts_since)(pd_storage *st, const char *areas, int64_t since,
                           pd_storage_row_cb cb, void *ctx);
    int (*audit_add)(pd_storage *st, const pd_srv_audit *a);

    int (*stats)(pd_storage *st, pd_srv_stats *out);
} pd_storage_ops;

/* The part of every backend's handle the interface sees. */
struct pd_storage {
    const pd_storage_ops *ops;
    pd_error err;
};

/* ---- opening ----------------------------------------------------------------------------------- */

/* Open (creating if needed, and migrating to the newest schema) the storage named by url:
 * "sqlite:PATH" or a bare PATH. PD_ERR_INVALID for an unknown scheme; PD_ERR_VERSION for a
 * database newer than this build. */
int pd_storage_open(pd_storage **out, const char *url, pd_error *err);
void pd_storage_close(pd_storage *st);
const char *pd_storage_errmsg(const pd_storage *st);
int pd_storage_fail(pd_storage *st, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The SQLite backend's constructor (storage_sqlite.c). */
int pd_storage_sqlite_open(pd_storage **out, const char *path, pd_error *err);

#endif
