/*
 * pendata.h — the public API of the pendata core (libpendata).
 *
 * The core is what every front end links (the command line, an Android app through JNI, a
 * desktop program): the encrypted device store, keys, households, members, visits, validation
 * and the field-level op log. It holds no network code; sync/ builds on it.
 *
 * Conventions (see shared/style.md):
 *   - every function that can fail returns an int status: PD_OK (0) or a PD_ERR_* code;
 *   - a handle keeps the message of its last failure (pd_store_errmsg); constructors, which have
 *     no handle yet, fill a caller-provided pd_error (which may be NULL);
 *   - whoever creates frees; every _close/_free accepts NULL;
 *   - the library never prints and never exits.
 */
#ifndef PENDATA_H
#define PENDATA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PD_VERSION_STRING "0.1.0"

/* ---- Errors ------------------------------------------------------------------------------- */

/* One code per kind of failure a caller can act on. */
typedef enum pd_status {
    PD_OK = 0,
    PD_ERR_NOMEM,     /* out of memory */
    PD_ERR_IO,        /* the file system failed (open, read, write, rename, fsync) */
    PD_ERR_CORRUPT,   /* stored data failed authentication or an integrity check */
    PD_ERR_BADPIN,    /* wrong PIN or passphrase */
    PD_ERR_LOCKED,    /* too many wrong PINs: only recovery opens the store now */
    PD_ERR_INVALID,   /* input fails validation (the message says which field and why) */
    PD_ERR_NOTFOUND,  /* no such record, file or key */
    PD_ERR_EXISTS,    /* already exists */
    PD_ERR_VERSION,   /* written by a newer pendata, or an unknown format version */
    PD_ERR_SIGNATURE, /* a signature does not verify */
    PD_ERR_TOOBIG,    /* a size or count is over its limit */
    PD_ERR_DENIED,    /* not allowed for this identity, role or area */
    PD_ERR_CONFLICT,  /* concurrent change that needs a decision */
    PD_ERR_NETWORK,   /* could not reach the peer, or the connection broke */
    PD_ERR_PROTOCOL,  /* the peer answered something the protocol does not allow */
    PD_ERR_BUSY,      /* the resource is in use; try again */
    PD_ERR_STATE,     /* not valid in the current state (e.g. batch already sealed) */
    PD_ERR_INTERNAL,  /* a bug: an invariant of pendata itself failed */
    PD_ERR__COUNT
} pd_status;

/* A short, static, English description of a status code. Never NULL. */
const char *pd_strerror(int code);

#define PD_ERRMSG_MAX 512

/* Where a function without a handle reports what went wrong. */
typedef struct pd_error {
    int code;
    char msg[PD_ERRMSG_MAX];
} pd_error;

/* ---- Sizes -------------------------------------------------------------------------------- */

#define PD_KEY_BYTES 32      /* a data key (XChaCha20-Poly1305) */
#define PD_DBID_BYTES 16     /* random id of one database, bound into every page */
#define PD_PUBKEY_BYTES 32   /* Ed25519 / X25519 public key */
#define PD_SECKEY_BYTES 64   /* Ed25519 secret key (seed + public key) */
#define PD_SIG_BYTES 64      /* Ed25519 signature */
#define PD_HASH_BYTES 32     /* BLAKE2b-256 */
#define PD_PAGE_SIZE 4096    /* page size of every encrypted database */
#define PD_PAGE_RESERVE 40   /* nonce (24) + tag (16) kept at the end of each page */

/* ---- Key derivation ----------------------------------------------------------------------- */

/* Argon2id cost. The defaults are chosen for a low-end Android phone (see README, "Encryption at
 * rest"); tests use PD_KDF_TEST to stay fast. */
typedef struct pd_kdf_params {
    uint32_t opslimit;   /* passes */
    uint64_t memlimit;   /* bytes */
} pd_kdf_params;

extern const pd_kdf_params PD_KDF_DEFAULT;
extern const pd_kdf_params PD_KDF_TEST;

/* ---- The encrypted device store ----------------------------------------------------------- */

/* A device's data directory ("home") holds:
 *   store.db    the SQLite database, every page encrypted (see core/cryptvfs.c)
 *   store.key   the sidecar: the random data key wrapped by the PIN and sealed to the recovery key
 * The store handle owns an open SQLite connection through the encrypting VFS. */
typedef struct pd_store pd_store;

/* Create a new store in `home` (created if missing; must not already hold a store). A random data
 * key is made and wrapped by `pin` with `kdf` (NULL: PD_KDF_DEFAULT). The schema is created. */
int pd_store_create(pd_store **out, const char *home, const char *pin, const pd_kdf_params *kdf,
                    pd_error *err);

/* Open an existing store with its PIN. PD_ERR_BADPIN on a wrong PIN (nothing changes but the
 * failure counter); PD_ERR_LOCKED after too many; PD_ERR_VERSION if a newer pendata wrote it.
 * Pending schema migrations are applied in one transaction. */
int pd_store_open(pd_store **out, const char *home, const char *pin, pd_error *err);

/* Close the store and wipe its key material. Accepts NULL. */
void pd_store_close(pd_store *store);

/* Message and code of the last failure on this handle. */
const char *pd_store_errmsg(const pd_store *store);
int pd_store_errcode(const pd_store *store);

/* Rewrap the data key under a new PIN. The database file is not touched. */
int pd_store_change_pin(const char *home, const char *old_pin, const char *new_pin,
                        const pd_kdf_params *kdf, pd_error *err);

/* Seal the data key to a recovery public key (X25519, normally the server's), so that a holder of
 * the matching secret key can set a new PIN when this one is lost. Needs the open store. */
int pd_store_set_recovery(pd_store *store, const uint8_t recovery_pk[PD_PUBKEY_BYTES]);

/* Set a new PIN on a store whose PIN is lost, with the recovery key pair (X25519). */
int pd_store_recover(const char *home, const uint8_t recovery_pk[PD_PUBKEY_BYTES],
                     const uint8_t recovery_sk[PD_KEY_BYTES], const char *new_pin,
                     const pd_kdf_params *kdf, pd_error *err);

/* Schema version the store is at, and the newest this build knows. */
int pd_store_schema_version(pd_store *store);
int pd_schema_device_latest(void);

/* ---- Field-level ops (the op log) ----------------------------------------------------------- */

/* A value carried by an op: SQLite's storage classes. Text and blob point into memory owned by
 * whoever produced the op (a statement row, a decoded batch). */
typedef enum pd_value_type {
    PD_VAL_NULL = 0,
    PD_VAL_INT = 1,
    PD_VAL_REAL = 2,
    PD_VAL_TEXT = 3,
    PD_VAL_BLOB = 4
} pd_value_type;

typedef struct pd_value {
    pd_value_type type;
    int64_t i;
    double r;
    const uint8_t *p; /* TEXT (UTF-8, not NUL-terminated) or BLOB bytes */
    size_t len;
} pd_value;

/* One field-level change, as recorded in the op table (schema/device/001_init.sql) and as it
 * travels in a batch. kind: "set", "create", "end", "visit", "photo"; entity: "household",
 * "member", "visit", "photo". For "set" the field names a column; for "create"/"visit" the
 * new_value is a JSON object of the record's fields. */
typedef struct pd_op {
    int64_t seq;           /* the device's local sequence, strictly increasing */
    const char *device_id; /* NUL-terminated */
    int64_t hlc;           /* hybrid logical clock: unix ms << 16 | counter */
    const char *kind;
    const char *entity;
    const char *target;    /* household or member id, visit id, photo hash (hex) */
    const char *field;     /* "" when not a single field */
    pd_value old_value;
    pd_value new_value;
    int64_t base_rev;      /* server revision of the target when the change was made */
} pd_op;

/* ---- Households, members, visits, photos, search, validation -------------------------------- */
/* (declared below by core/household.c, core/visit.c, core/photo.c, core/search.c,
 *  core/validate.c, core/oplog.c) */

#ifdef __cplusplus
}
#endif
#endif /* PENDATA_H */
