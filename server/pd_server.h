/*
 * pd_server.h — the central server's public API: create a server (database + keys), operator
 * acts (users, enrolment codes, revocation, prelists, status), and the HTTP service itself.
 *
 * A server lives in one database (storage.h: "sqlite:PATH", or "postgres://…") plus a data
 * directory for bytes that do not belong in it (tus uploads in progress, photo blobs, built
 * prelist packages) and a key file:
 *
 *     PATH            the database          (0600)
 *     PATH.key        the server's keys     (0600): Ed25519 signing key + X25519 recovery key
 *     PATH.d/         uploads/ blobs/ packages/  (0700)
 *
 * For postgres:// the data directory is given (--data DIR) and the key file is DIR/server.key;
 * every instance serving that database shares both (docs/postgres.md).
 *
 * The HTTP protocol is server/PROTOCOL.md. The service runs libmicrohttpd with an internal thread
 * pool on epoll; storage access is serialised by one lock for SQLite (one writer anyway); on
 * PostgreSQL (a concurrent backend, storage.h) requests run their transactions in parallel, each
 * on a pooled connection.
 *
 * Conventions as in pendata.h: PD_OK or a PD_ERR_* code, the message on the handle
 * (pd_server_errmsg) or in a pd_error, whoever creates frees, the library never prints (the access
 * log goes to the FILE* the caller gives, if any).
 */
#ifndef PD_SERVER_H
#define PD_SERVER_H

#include "pendata.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PD_SERVER_KEY_FILE_BYTES 168 /* see keys.c */
#define PD_SERVER_FINGERPRINT_LEN 39 /* "xxxx-" x 7 + "xxxx" */
#define PD_ENROLL_CODE_LEN 14        /* "XXXX-XXXX-XXXX" */
#define PD_ENROLL_TTL_DEFAULT_MS (72LL * 3600 * 1000)

typedef struct pd_server pd_server;

/* Create a new server: the database (schema applied), the key file (fresh keys) and the data
 * directory. PD_ERR_EXISTS if the key file is already there (never overwrite keys), or if the
 * database already holds a server's data (users, devices, records, batches: its keys exist
 * elsewhere). data_dir NULL: "<sqlite path>.d"; a database other than sqlite: (postgres://…) needs
 * one, and its key file is data_dir/server.key (PD_ERR_INVALID without). pd_server_init(url, err)
 * is pd_server_create(url, NULL, err). */
int pd_server_create(const char *db_url, const char *data_dir, pd_error *err);
int pd_server_init(const char *db_url, pd_error *err);

/* Open an existing server (database migrated if needed, keys loaded). data_dir may be NULL:
 * "<sqlite path>.d". */
int pd_server_open(pd_server **out, const char *db_url, const char *data_dir, pd_error *err);

/* Stop the service if running, close the database, wipe the keys. Accepts NULL. */
void pd_server_close(pd_server *srv);

const char *pd_server_errmsg(const pd_server *srv);

/* The server key's fingerprint (PROTOCOL.md §1), NUL-terminated. */
void pd_server_fingerprint(const pd_server *srv, char out[PD_SERVER_FINGERPRINT_LEN + 1]);
void pd_server_public_keys(const pd_server *srv, uint8_t sign_pk[PD_PUBKEY_BYTES],
                           uint8_t recovery_pk[PD_PUBKEY_BYTES]);

/* ---- Operator acts ------------------------------------------------------------------------- */

typedef struct pd_server_user {
    const char *id;            /* [0-9A-Za-z_-]{1,32} */
    const char *role;          /* enumerator, supervisor, korcam, admin */
    const char *name;          /* 1..255 bytes of UTF-8 */
    const char *area;          /* comma-separated real area codes, may be NULL/"" */
    const char *supervisor_id; /* an existing supervisor; NULL/"" if none */
} pd_server_user;

/* Add a user. PD_ERR_INVALID (the message names the field), PD_ERR_EXISTS, PD_ERR_NOTFOUND for
 * an unknown supervisor. */
int pd_server_user_add(pd_server *srv, const pd_server_user *u);

/* Issue a one-time enrolment code for a user: code gets "XXXX-XXXX-XXXX" (only its hash is
 * stored), valid ttl_ms (<= 0: PD_ENROLL_TTL_DEFAULT_MS). */
int pd_server_enroll_code(pd_server *srv, const char *user_id, int64_t ttl_ms,
                          char code[PD_ENROLL_CODE_LEN + 1]);

/* Revoke a device: its requests are refused from now on (403). */
int pd_server_revoke(pd_server *srv, const char *device_id);

/* Set the password a korcam (or admin) logs in to the korcam web page (/korcam/) with: 10..1024
 * bytes, kept only as an Argon2id hash (crypto_pwhash_str); the user's open web sessions end.
 * PD_ERR_INVALID (short password, another role), PD_ERR_NOTFOUND (no such user).
 * (server/korcam.c) */
int pd_server_user_passwd(pd_server *srv, const char *user_id, const char *password, size_t len);

typedef struct pd_server_load_stats {
    uint32_t shapes, households, members;
    uint32_t skipped; /* records the server already had (left as they are) */
} pd_server_load_stats;

/* Load a prelist into the server's records: generated for a real kecamatan or desa with the
 * prelist generator (seed; households 0: its default), or read from a package file verified with
 * issuer_pk (NULL: the server's own key). One transaction; records already present are left
 * alone (counted as skipped). */
int pd_server_load_generated(pd_server *srv, const char *area, uint64_t seed, uint32_t households,
                             pd_server_load_stats *stats);
int pd_server_load_file(pd_server *srv, const char *path, const uint8_t *issuer_pk,
                        pd_server_load_stats *stats);

typedef struct pd_server_status {
    int64_t users, devices, devices_revoked, households, members, visits, photos;
    int64_t batches, batches_held, forks, conflicts_open, uploads_open, revision;
} pd_server_status;

int pd_server_get_status(pd_server *srv, pd_server_status *out);

/* ---- The HTTP service -------------------------------------------------------------------------
 */

typedef struct pd_server_config {
    const char *listen;        /* "HOST:PORT" (IPv4 literal); port 0 picks a free port */
    unsigned threads;          /* request threads (0: 4 a core, at least 8) */
    unsigned max_connections;  /* 0: 512 */
    unsigned timeout_s;        /* idle connection timeout (0: 60) */
    size_t max_header_bytes;   /* request line + headers (0: 16 KiB) */
    size_t max_json_bytes;     /* JSON request bodies (0: 64 KiB) */
    uint64_t max_upload_bytes; /* Tus-Max-Size (0: 64 MiB) */
    int64_t skew_ms;           /* allowed request time skew (0: 300 s) */
    int64_t upload_ttl_ms;     /* an upload expires this long after its last PATCH (0: 24 h) */
    unsigned max_open_uploads; /* unfinished uploads one device may hold (0: 16) */
    uint64_t max_open_bytes;   /* their Upload-Lengths together (0: 4 × max_upload_bytes) */
    FILE *access_log;          /* one line per request, or NULL */
} pd_server_config;

/* Start serving in background threads. PD_ERR_IO if the address cannot be bound. */
int pd_server_start(pd_server *srv, const pd_server_config *cfg);

/* The port actually bound (after start). */
uint16_t pd_server_port(const pd_server *srv);

/* Stop accepting, finish requests in flight, join the threads. Safe to call twice. */
void pd_server_stop(pd_server *srv);

#ifdef __cplusplus
}
#endif
#endif /* PD_SERVER_H */
