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

/* Rewrap the data key under a new PIN. The database file is not touched. A wrong old PIN counts
 * as a failed attempt, as in pd_store_open. kdf NULL keeps the parameters store.key has. */
int pd_store_change_pin(const char *home, const char *old_pin, const char *new_pin,
                        const pd_kdf_params *kdf, pd_error *err);

/* Seal the data key to a recovery public key (X25519, normally the server's), so that a holder of
 * the matching secret key can set a new PIN when this one is lost. Needs the open store. */
int pd_store_set_recovery(pd_store *store, const uint8_t recovery_pk[PD_PUBKEY_BYTES]);

/* Set a new PIN on a store whose PIN is lost (or erased by the lockout), with the recovery key
 * pair (X25519). Resets the failure counter. kdf NULL keeps the parameters store.key has. */
int pd_store_recover(const char *home, const uint8_t recovery_pk[PD_PUBKEY_BYTES],
                     const uint8_t recovery_sk[PD_KEY_BYTES], const char *new_pin,
                     const pd_kdf_params *kdf, pd_error *err);

/* Schema version the store is at, and the newest this build knows. */
int pd_store_schema_version(pd_store *store);
int pd_schema_device_latest(void);

/* This device's id: 16 lowercase hex characters (64 random bits made when the store was created).
 * Owned by the store; valid until pd_store_close. */
const char *pd_store_device_id(pd_store *store);

/* Give this device an identity for a person role ("enumerator", "supervisor", "korcam",
 * "admin"): a new Ed25519 key pair in table identity. PD_ERR_EXISTS if it has one for that role;
 * PD_ERR_INVALID for another role. The public key is copied to pk_out when it is not NULL. */
int pd_store_add_role(pd_store *store, const char *role, uint8_t pk_out[PD_PUBKEY_BYTES]);

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
/* Implemented by core/validate.c, core/hlc.c, core/oplog.c, core/household.c, core/visit.c,
 * core/photo.c and core/search.c. Every change below runs in ONE transaction that also appends
 * its field-level ops to the op log; bad input returns PD_ERR_INVALID (or PD_ERR_NOTFOUND,
 * PD_ERR_DENIED, PD_ERR_TOOBIG) with a message naming the field and the reason, and changes
 * nothing. Warnings are not errors: they are returned in a pd_warnings the caller may pass (NULL
 * to ignore them) and, for a visit, recorded with it (visit.warnings). */

struct sqlite3;

/* Warning codes (stable strings: they are stored, comma separated, in visit.warnings). */
#define PD_WARN_NIK_PLACEHOLDER "nik_placeholder"     /* 999...94/95/96/99: no NIK, with why */
#define PD_WARN_NIK_BIRTH_DATE "nik_birth_date"       /* NIK date part differs from birth date */
#define PD_WARN_NIK_DUPLICATE "nik_duplicate"         /* NIK also in another household here */
#define PD_WARN_GPS_OUTSIDE_COUNTRY "gps_outside_indonesia" /* outside Indonesia's rough box */
#define PD_WARN_GPS_OUTSIDE_AREA "gps_outside_area"   /* outside the desa's shape */
#define PD_WARN_GPS_ACCURACY "gps_accuracy"           /* accuracy worse than 50 m */
#define PD_WARN_GPS_JUMP "gps_jump"                   /* > 5 km from a visit within a minute */
#define PD_WARN_GPS_MOCK "gps_mock"                   /* the platform flagged a mock location */

#define PD_WARN_MAX 16
#define PD_WARN_MSG_MAX 200

typedef struct pd_warning {
    const char *code; /* one of PD_WARN_* (static) */
    char msg[PD_WARN_MSG_MAX];
} pd_warning;

/* Warnings gathered by one call. More than PD_WARN_MAX are counted in `dropped`. */
typedef struct pd_warnings {
    size_t count;
    size_t dropped;
    pd_warning item[PD_WARN_MAX];
} pd_warnings;

/* Does w hold a warning with this code? (false for NULL) */
int pd_warnings_has(const pd_warnings *w, const char *code);

/* A location fix as the platform reports it. */
typedef struct pd_gps {
    double lat, lon;      /* degrees, WGS 84 */
    double accuracy;      /* metres (68 %), > 0 */
    double altitude;      /* metres; NAN when unknown */
    int64_t fix_time;     /* unix ms when the fix was taken */
    const char *provider; /* "gps", "network", "fused", "manual"; NULL when unknown */
    int mock;             /* the platform says it is a mock location */
} pd_gps;

#define PD_GPS_ACCURACY_WARN_M 50.0  /* worse than this: a warning */
#define PD_GPS_SKEW_MS 120000        /* a fix may be this far in the future (clock skew) */
#define PD_GPS_JUMP_M 5000.0         /* two visits this far apart ... */
#define PD_GPS_JUMP_MS 60000         /* ... within this time: a warning */

/* Size limits of text fields, in bytes of UTF-8. */
#define PD_NAME_MAX 100
#define PD_ADDRESS_MAX 200
#define PD_PLACE_MAX 60
#define PD_SLS_MAX 60
#define PD_NOTES_MAX 2000
#define PD_PHOTO_MAX_BYTES (4u << 20) /* a photo's JPEG bytes */
#define PD_PHOTO_MAX_PIXELS 16384     /* width and height */

/* Validation (pure: no store). Each returns PD_OK or PD_ERR_INVALID with a message naming the
 * field and the reason in err (which may be NULL); warnings (if w is not NULL) are appended.
 *
 * NIK: 16 digits; digits 1-6 a real kecamatan code; 7-12 the birth date DDMMYY with 40 added to
 * the day for women; 13-16 a serial from 0001. sex (0 unknown, 1, 2) must agree with the day;
 * birth_date ("YYYY-MM-DD" or NULL) differing from the date part is a warning. The placeholders
 * 9999999999999994 (refused), ...95 (under 17), ...96 (17 or older), ...99 (foreigner) pass with
 * a PD_WARN_NIK_PLACEHOLDER warning. */
int pd_validate_nik(const char *nik, int sex, const char *birth_date, pd_warnings *w,
                    pd_error *err);

/* KK number: 16 digits; a real kecamatan code, the issue date DDMMYY (a real date, not after
 * now_ms; years after this one are read as 19YY), a serial from 0001. */
int pd_validate_kk(const char *kk, int64_t now_ms, pd_error *err);

/* A fix: lat -90..90, lon -180..180, finite; accuracy finite and > 0; altitude NAN or
 * -500..9000 m; fix_time after 2000 and not later than now_ms + PD_GPS_SKEW_MS; provider known.
 * Warnings: outside Indonesia's rough box, accuracy worse than 50 m, mock location. */
int pd_validate_gps(const pd_gps *fix, int64_t now_ms, pd_warnings *w, pd_error *err);

/* A calendar date "YYYY-MM-DD" (1900 or later); not after now_ms unless now_ms is 0. */
int pd_validate_date(const char *field, const char *ymd, int64_t now_ms, pd_error *err);

/* UTF-8 text: valid (no overlong forms, surrogates or code points past U+10FFFF), no control
 * characters (tab, CR and LF only where multiline), at most max_bytes bytes. */
int pd_validate_text(const char *field, const char *s, size_t max_bytes, int multiline,
                     pd_error *err);

/* A categorical code of the schema (see core/codes.h), e.g. ("relationship", 3). */
int pd_validate_code(const char *field, int64_t value, pd_error *err);

/* A real Kemendagri area code at any level ("32", "32.73", "32.73.01", "32.73.01.1001"). */
int pd_validate_area(const char *field, const char *code, pd_error *err);

/* A photo: starts with FF D8 FF, ends with FF D9, well-formed segments up to the first scan, a
 * frame header (SOF) with 1..4 components and 1..PD_PHOTO_MAX_PIXELS pixels each way, at most
 * PD_PHOTO_MAX_BYTES. */
int pd_validate_jpeg(const uint8_t *jpeg, size_t len, pd_error *err);

/* ---- Hybrid logical clock ---- */

/* The next clock value after `last` at wall time now_ms: (ms << 16) | counter, strictly greater
 * than last even if the wall clock went back (the counter carries into the milliseconds). */
int64_t pd_hlc_next(int64_t last, int64_t now_ms);

/* The next clock value after both `last` and a clock value received from elsewhere. */
int64_t pd_hlc_merge(int64_t last, int64_t remote, int64_t now_ms);

/* ---- The op log ---- */

/* Called once per op; the op and its values are valid only during the call. Return 0 to go on,
 * anything else to stop (that value is returned by the iterator). */
typedef int (*pd_op_fn)(void *ctx, const pd_op *op);

/* Ops not yet sealed into a batch (batch_seq NULL), in seq order. */
int pd_oplog_pending(pd_store *store, pd_op_fn fn, void *ctx);

/* Every op with seq > after_seq, in seq order. */
int pd_oplog_since(pd_store *store, int64_t after_seq, pd_op_fn fn, void *ctx);

/* Mark ops first_seq..last_seq as sealed into batch `batch_seq` (> 0). All must exist and be
 * pending, else PD_ERR_STATE and nothing changes. Joins the caller's transaction if one is open
 * (pd_store_begin nests). */
int pd_oplog_mark_sealed(pd_store *store, int64_t first_seq, int64_t last_seq, int64_t batch_seq);

/* Where pd_oplog_apply gets a photo's bytes (photos travel beside the ops, named by hash). Return
 * PD_OK with *bytes (owned by the callee, valid until the next call) and *len, or
 * PD_ERR_NOTFOUND. */
typedef int (*pd_photo_fetch_fn)(void *ctx, const uint8_t hash[PD_HASH_BYTES],
                                 const uint8_t **bytes, size_t *len);

/* Apply one op onto the tables of a database with the device schema (a device store's connection,
 * a fresh import on a test, later the server): set → UPDATE of a whitelisted column, create →
 * INSERT of a household or member, end → a member's status, visit → INSERT of the visit and the
 * household's location in household_geo, photo → INSERT with the bytes from `fetch` (checked
 * against the hash). Derived state follows the same way everywhere: member_count is recounted
 * (active members) when a member is created or ended; household_geo holds the latest visit's fix,
 * else the household's lat/lon. A "create" of a member carries why it is new ("born", "joined")
 * in its field. Does not write the op log and opens no transaction: the caller decides.
 * Rejects unknown kinds, entities and fields with PD_ERR_INVALID; a missing target with
 * PD_ERR_NOTFOUND. Independent of pd_store. */
int pd_oplog_apply(struct sqlite3 *db, const pd_op *op, pd_photo_fetch_fn fetch, void *fetch_ctx,
                   pd_error *err);

/* Does the target's current value equal the op's old value (a "set" or "end")? PD_OK, or
 * PD_ERR_CONFLICT with both values in the message. Other kinds: PD_OK when the record to create
 * does not exist yet, PD_ERR_EXISTS when it does. */
int pd_oplog_check(struct sqlite3 *db, const pd_op *op, pd_error *err);

/* ---- Households and members ---- */

/* Parse a text value (as typed on the command line) into the type of a correctable field of
 * entity "household" or "member": integers for codes and counts, a real for lat/lon, "" or
 * "null" for NULL where the field may be empty. Text points into `text`. */
int pd_field_parse(const char *entity, const char *field, const char *text, pd_value *out,
                   pd_error *err);

/* Correct one field of a household or member. Only whitelisted fields (not ids, rev, area codes
 * above desa, status, member_count), each with its type and range checks; a NIK is checked
 * against the member's sex and birth date (and those against the NIK). A value equal to the
 * current one changes nothing and appends no op. */
int pd_household_set(pd_store *store, const char *household_id, const char *field,
                     const pd_value *value, pd_warnings *w);
int pd_member_set(pd_store *store, const char *member_id, const char *field, const pd_value *value,
                  pd_warnings *w);

/* A person joining a household. Zero / NULL fields are unknown. */
typedef struct pd_member_new {
    const char *name;        /* required */
    const char *nik;
    const char *kk;
    int sex;                 /* 1 male, 2 female, 0 unknown */
    const char *birth_place;
    const char *birth_date;  /* YYYY-MM-DD */
    int relationship;        /* 1..9, see codes.h; required */
    int marital;             /* 0 unknown */
    const char *reason;      /* "born" or "joined" */
} pd_member_new;

#define PD_ID_MAX 64 /* a household, member, or visit id fits in this many bytes with its NUL */

/* Add a member: its id is the household id + the next 2-digit member number (PD_ERR_TOOBIG past
 * 99); its visit outcome is "new". id_out (PD_ID_MAX bytes) gets the id. */
int pd_member_add(pd_store *store, const char *household_id, const pd_member_new *m,
                  char id_out[PD_ID_MAX], pd_warnings *w);

/* End a member: reason "deceased", "moved" or "duplicate" (its status and visit outcome). */
int pd_member_end(pd_store *store, const char *member_id, const char *reason);

/* A household proposed in the field ("usulan baru"). */
typedef struct pd_household_new {
    const char *desa;     /* required: a real desa within the device's assignment */
    const char *sls;
    const char *address;
    const char *kk;
    double lat, lon;      /* NAN when unknown */
    pd_member_new head;   /* the head (relationship forced to 1; reason ignored) */
} pd_household_new;

/* Create the household (source 'new') with an id no other device can make: "N" + device id + "-"
 * + a local 6-digit counter, and its head as member 01. id_out gets the household id. */
int pd_household_propose(pd_store *store, const pd_household_new *h, char id_out[PD_ID_MAX],
                         pd_warnings *w);

/* The household with its members, visits and photos (without bytes) as one JSON object:
 * {"household":{column:value,...},"members":[...],"visits":[...],"photos":[...]}.
 * *json_out is malloc'd: free it with pd_free. */
int pd_household_json(pd_store *store, const char *household_id, char **json_out);

/* Free memory the library returned (JSON text). Accepts NULL. */
void pd_free(void *p);

/* ---- Visits ---- */

/* Member outcomes of a visit: "confirmed", "not_confirmed", "duplicate", "deceased", "moved"
 * ("new" is set by pd_member_add). The last three also end the member. */
typedef struct pd_member_outcome {
    const char *member_id;
    const char *outcome;
} pd_member_outcome;

typedef struct pd_visit_in {
    const char *household_id;
    const char *outcome;     /* found, found_new_head, moved_within, moved_out, joined_other,
                                not_found, all_deceased, refused, new_household */
    int64_t visited_at;      /* unix ms; 0: now */
    const pd_gps *gps;       /* NULL: no fix */
    const char *notes;       /* NULL: none */
    const pd_member_outcome *members;
    size_t member_count;
} pd_visit_in;

/* Record a visit: the visit row (id = "V" + device id + "-" + a local counter), the household's
 * status (= outcome) and location (household_geo), the member outcomes, and its warnings (GPS
 * outside the desa's shape, poor accuracy, > 5 km from a visit within a minute, a NIK of this
 * household present in another household, mock location) in visit.warnings and in w. */
int pd_visit_record(pd_store *store, const pd_visit_in *v, char id_out[PD_ID_MAX], pd_warnings *w);

/* ---- Photos ---- */

/* Attach a photo (kind: front, wall, floor, kitchen, toilet, kk, ktp, head, roof) to a household
 * and optionally a visit of it. The JPEG is checked (pd_validate_jpeg) and stored in the photo
 * table, content-addressed by BLAKE2b-256 (hash_out, may be NULL); the same bytes twice →
 * PD_ERR_EXISTS. taken_at 0: now. */
int pd_photo_add(pd_store *store, const char *household_id, const char *visit_id,
                 const char *kind, const uint8_t *jpeg, size_t len, int64_t taken_at,
                 uint8_t hash_out[PD_HASH_BYTES]);

/* ---- Search ---- */

typedef struct pd_find_query {
    const char *name;    /* words of a member's or head's name: accent and case insensitive,
                            each word a prefix */
    const char *nik;     /* exact NIK of a member */
    const char *kk;      /* exact KK number (household or member) */
    const char *address; /* words of the address */
    const char *desa;    /* desa code */
    const char *status;  /* a visit outcome, "visited" or "unvisited" */
    int near;            /* sort by distance from (near_lat, near_lon) */
    double near_lat, near_lon;
    size_t limit;        /* 0: PD_FIND_DEFAULT_LIMIT; at most PD_FIND_MAX_LIMIT */
} pd_find_query;

#define PD_FIND_DEFAULT_LIMIT 20
#define PD_FIND_MAX_LIMIT 1000

/* One household found. Strings are valid only during the callback. */
typedef struct pd_household_hit {
    const char *id;
    const char *desa;
    const char *sls;
    const char *address;
    const char *head_name;
    const char *kk;
    const char *status;  /* NULL: not visited */
    int64_t member_count;
    double lat, lon;     /* best known location (latest visit fix, else prelist); NAN if none */
    double distance_m;   /* from the near point; NAN without one */
} pd_household_hit;

typedef int (*pd_hit_fn)(void *ctx, const pd_household_hit *hit);

/* Households matching every given criterion, nearest first with `near` (great-circle distance
 * from the exact location), else by id. A name search returns the first `limit` matches in index
 * order (so a common name costs no more than a rare one), sorted by id. At least one criterion is
 * needed. The callback's non-zero return stops the search and is returned. */
int pd_household_find(pd_store *store, const pd_find_query *q, pd_hit_fn fn, void *ctx);

/* Great-circle distance in metres (haversine, mean Earth radius). */
double pd_geo_distance_m(double lat1, double lon1, double lat2, double lon2);

#ifdef __cplusplus
}
#endif
#endif /* PENDATA_H */
