/*
 * srv_internal.h — what the files of the server layer share: the pd_server handle, the server's
 * keys, small helpers (time, hex, ids, area lists), the receipt format and the entry points the
 * HTTP layer calls in enrolment, tus, apply and download. Not installed.
 */
#ifndef PD_SRV_INTERNAL_H
#define PD_SRV_INTERNAL_H

#include "internal.h"
#include "pd_server.h"
#include "storage.h"

#include <pthread.h>
#include <stdbool.h>

struct MHD_Daemon;

/* The server's keys; the secret halves live in sodium_malloc'd memory (wiped on free). */
typedef struct srv_keys {
    uint8_t sign_pk[PD_PUBKEY_BYTES];
    uint8_t box_pk[PD_PUBKEY_BYTES];
    uint8_t *sign_sk; /* PD_SECKEY_BYTES */
    uint8_t *box_sk;  /* PD_KEY_BYTES */
} srv_keys;

/* A tus upload a request is writing right now (a second PATCH at once is refused). */
typedef struct srv_busy {
    char id[PD_SRV_UPLOAD_ID_LEN + 1];
    struct srv_busy *next;
} srv_busy;

#define SRV_READERS_MAX 64

struct pd_server {
    pd_storage *st;
    pthread_mutex_t lock; /* serialises every use of st, unless st is concurrent (srv_lock) */
    char *db_url;
    char *data_dir;
    srv_keys keys;

    /* the HTTP service */
    struct MHD_Daemon *mhd;
    pd_server_config cfg;
    uint16_t port;
    pthread_mutex_t log_lock;
    pthread_mutex_t state_lock; /* busy and last_purge (requests run in parallel on PostgreSQL) */
    pthread_mutex_t pkg_lock;   /* building a prelist package (download.c) */
    srv_busy *busy;
    int64_t last_purge;

    /* Readers (storage.h reader_open; SQLite): requests that only read run on one of these
     * without the lock. Opened by pd_server_start, one per request thread; taken and given back
     * under state_lock. */
    pd_storage *readers[SRV_READERS_MAX];
    bool reader_busy[SRV_READERS_MAX];
    int nreaders;
};

/* ---- helpers (util.c) -------------------------------------------------------------------- */

int64_t srv_now_ms(void);

/* The storage lock: srv->lock around storage work for a backend one thread at a time uses
 * (SQLite); nothing for a concurrent one (PostgreSQL's pool), whose requests run in parallel. */
void srv_lock(pd_server *srv);
void srv_unlock(pd_server *srv);

/* The storage the calling thread's request uses: the reader it holds between srv_read_begin and
 * srv_read_end, else srv->st (the writer, under srv_lock where the backend wants it). Everything
 * a handler reads or writes goes through this, so a read-only request on a reader cannot touch
 * the writer without the lock (a reader refuses writes: query_only). */
pd_storage *srv_store(const pd_server *srv);
/* Run the rest of this request's storage work on a free reader, in one read transaction (one
 * snapshot), without the lock: false if there is none (no readers, all busy, or the read
 * transaction did not start): the caller goes on under the lock. srv_read_end ends the read;
 * answered: what was read goes out in an answer, so it is made durable first (storage.h
 * read_flush; false: that fsync failed, answer 503). */
bool srv_read_begin(pd_server *srv);
/* Is this request's storage a reader (between srv_read_begin and srv_read_end)? */
bool srv_on_reader(const pd_server *srv);
bool srv_read_end(pd_server *srv, bool answered);
/* Open and close the readers (pd_server_start, pd_server_stop). */
int srv_readers_open(pd_server *srv, int n);
void srv_readers_close(pd_server *srv);

/* The error of the calling thread's current request or operator act (pd_server_errmsg): kept
 * per thread, like errno, since requests run in parallel. srv_fail sets it and returns code. */
pd_error *srv_err(const pd_server *srv);
int srv_fail(pd_server *srv, int code, const char *fmt, ...) PD_PRINTF(3, 4);
/* Copy the storage's message (the calling thread's) onto the server's error; returns its code. */
int srv_fail_storage(pd_server *srv);

void srv_hex(const uint8_t *p, size_t n, char *out); /* 2n+1 bytes */
/* Exactly 2n hex digits (either case) into n bytes. */
bool srv_unhex(const char *s, uint8_t *out, size_t n);

/* JSON numbers for a delta page's many values, cheaper than cJSON's and exact (NULL when out of
 * memory): an integer past int32 (a time in ms) as its digits, where cJSON prints "%1.15g",
 * reads it back with sscanf and may print again; a double as "%1.15g", or "%1.17g" when that
 * does not read back exactly (checked with strtod; cJSON keeps "%1.15g" when merely close), null
 * when not finite. The text is cJSON's wherever cJSON's is exact. (The server never sets a
 * locale: "C", a '.' for the decimal point.) */
struct cJSON *srv_json_int(int64_t i);
struct cJSON *srv_json_real(double r);

/* [0-9A-Za-z_-]{1,32} */
bool srv_valid_id(const char *id);
/* UTF-8, 1..max bytes, no control characters. */
bool srv_valid_text(const char *s, size_t max);

/* Parse a JSON request body. NULL if it is not JSON, or if a string in it holds the escape
 * \u0000: cJSON would hand the string over cut at that NUL (a device id "abc\u0000x" read as
 * "abc"), so such a body is refused whole rather than read as something it does not say. */
struct cJSON *srv_json_parse(const uint8_t *body, size_t len);

/* Check a comma-separated list of real area codes (empty allowed). */
int srv_areas_check(const char *areas, pd_error *err);
/* Does the list cover code (code equals one of them or lies under one)? */
bool srv_areas_cover(const char *areas, const char *code);
/* Does code cover, or lie inside, one of the comma-separated areas? A batch header's area is the
 * common prefix of its author's areas (a kecamatan for two of its desa), so it is checked for
 * overlap; every record the batch touches is then checked with srv_areas_cover. */
bool srv_areas_overlap(const char *areas, const char *code);

/* Make a directory (and parents) with mode 0700 if missing. */
int srv_mkdirs(const char *path, pd_error *err);
/* Write a file durably: temp + fsync + rename + fsync(dir). */
int srv_fsync_dir(const char *path);

/* "<data_dir>/<sub>/<name>", malloc'd. */
char *srv_path(const pd_server *srv, const char *sub, const char *name);

/* ---- keys (keys.c) ------------------------------------------------------------------------- */

int srv_keys_create(const char *path, pd_error *err);
int srv_keys_load(srv_keys *k, const char *path, pd_error *err);
void srv_keys_free(srv_keys *k);
void srv_sign(const pd_server *srv, const uint8_t *msg, size_t len, uint8_t sig[PD_SIG_BYTES]);
void srv_fingerprint_of(const uint8_t pk[PD_PUBKEY_BYTES], char out[PD_SERVER_FINGERPRINT_LEN + 1]);

/* ---- enrolment (admin.c, enroll.c) ----------------------------------------------------------- */

/* Normalise a code as typed (dashes/spaces dropped, any case, O→0, I/L→1) and hash it; false if
 * it is not 12 characters of the code alphabet. */
bool srv_code_hash(const char *input, uint8_t hash[PD_HASH_BYTES]);

/* Append to the JSON array arr the keyring rows user u must know (PROTOCOL.md §3) whose rev is
 * above since. */
struct cJSON;
int srv_keyring_json(pd_server *srv, const pd_srv_user *u, int64_t since, struct cJSON *arr);

/* ---- receipts (apply.c) --------------------------------------------------------------------- */

typedef enum srv_receipt_status {
    PD_RECEIPT_APPLIED = 1,
    PD_RECEIPT_VOIDED = 2,
    PD_RECEIPT_HELD = 3,
    PD_RECEIPT_FORK = 4
} srv_receipt_status;

typedef struct srv_receipt {
    srv_receipt_status status;
    uint8_t batch_hash[PD_HASH_BYTES];
    uint8_t author_pk[PD_PUBKEY_BYTES];
    uint64_t seq;
    uint32_t applied, merged, conflicted;
    int64_t server_time;
    char device_id[PD_SRV_ID_MAX + 1];
} srv_receipt;

#define PD_RECEIPT_SIGNED_BYTES 136

void srv_receipt_encode(const pd_server *srv, const srv_receipt *r, uint8_t out[PD_RECEIPT_BYTES]);
/* Parse (and check the signature against pk). */
int srv_receipt_decode(const uint8_t in[PD_RECEIPT_BYTES], const uint8_t pk[PD_PUBKEY_BYTES],
                       srv_receipt *r);
const char *srv_receipt_status_name(srv_receipt_status s);

/* Process a complete bundle upload (verify, apply, store results): called with srv->lock held,
 * which it releases while it parses the bundle and checks the batches' signatures (no storage
 * or server state is used then) and takes again before it applies. PD_ERR_INVALID if the bytes
 * are not a bundle (nothing applied). */
int srv_bundle_process(pd_server *srv, const char *upload_id, const char *uploader_device,
                       const uint8_t *bytes, size_t len);

/* ---- requests and responses (http.c) ----------------------------------------------------------
 * Handlers see a request already authenticated (or on an open route) and fill a response; only
 * http.c knows libmicrohttpd. */

typedef struct srv_req {
    const char *method;
    const char *path;  /* without the query */
    const char *query; /* after '?', or "" */
    const uint8_t *body;
    size_t body_len;
    const pd_srv_device *device; /* the authenticated device; NULL on open routes */
    const char *(*header)(const void *hctx, const char *name); /* NULL if absent */
    const void *hctx;
} srv_req;

#define SRV_RESP_HEADERS 12

typedef struct srv_resp {
    int status;
    struct cJSON *json;       /* a JSON body (signed when sent), or */
    uint8_t *body;            /* a raw body (malloc'd, freed by http.c), or */
    int fd;                   /* a file body (closed by http.c); -1 if none */
    size_t body_len;          /* length of body or of the file */
    const char *content_type; /* static string */
    char etag[72];            /* "\"hex\"" when the body may be asked for by Range */
    bool ranges;
    bool needs_writer; /* a handler on a reader (srv_on_reader) must write: run it again under
                        * the lock; nothing else of the answer is set */
    int nh;
    struct {
        char name[40];
        char value[200];
    } h[SRV_RESP_HEADERS];
} srv_resp;

void srv_resp_header(srv_resp *r, const char *name, const char *fmt, ...) PD_PRINTF(3, 4);
/* A JSON error body {"error": code, "message": …}; returns status. */
int srv_resp_error(srv_resp *r, int status, const char *code, const char *fmt, ...) PD_PRINTF(4, 5);
/* Map a pd_status to an HTTP error response with the server's message. */
int srv_resp_status(srv_resp *r, pd_server *srv, int code);
/* The value of name in an application/x-www-form-urlencoded query (no decoding beyond '+'/'%'),
 * into buf; NULL if absent or too long. */
const char *srv_query_param(const char *query, const char *name, char *buf, size_t cap);
/* The same, telling a parameter that is there but unusable (too long for buf, a bad %-escape, a
 * NUL) from an absent one: 1 found (in buf), 0 absent, -1 present but unusable. A handler
 * answers -1 with 400 rather than acting as if the parameter had not been given. */
int srv_query_get(const char *query, const char *name, char *buf, size_t cap);
/* An HTTP date (RFC 7231) of a Unix ms time, into out (40 bytes). */
void srv_http_date(int64_t ms, char out[40]);

/* The Pd-Auth header, parsed (PROTOCOL.md §4): "PD1 device=ID,time=SECONDS,nonce=32HEX,sig=128HEX",
 * exactly these parameters in this order. False for anything else. (http.c; exposed for
 * fuzz/fuzz_auth.c.) */
#define PD_SRV_NONCE_BYTES 16
typedef struct srv_auth {
    char device[PD_SRV_ID_MAX + 1];
    int64_t time;
    uint8_t nonce[PD_SRV_NONCE_BYTES];
    char nonce_hex[2 * PD_SRV_NONCE_BYTES + 1];
    uint8_t sig[PD_SIG_BYTES];
} srv_auth;

bool srv_auth_parse(const char *h, srv_auth *out);

/* ---- handlers ----------------------------------------------------------------------------------
 */

int srv_handle_enroll(pd_server *srv, const srv_req *q, srv_resp *r);
int srv_handle_commit(pd_server *srv, const srv_req *q, srv_resp *r);
/* The commit answer for a processed bundle upload of this device: 200 with {"upload",
 * "server_time", "results"} in r (the POST that created and completed an upload answers with it
 * too). */
int srv_upload_results(pd_server *srv, const char *id, srv_resp *r);
int srv_handle_receipts(pd_server *srv, const srv_req *q, srv_resp *r);
int srv_handle_prelist(pd_server *srv, const srv_req *q, srv_resp *r);
int srv_handle_delta(pd_server *srv, const srv_req *q, srv_resp *r);

/* tus (tus.c). id is the upload id from the path ("" for the collection). */
/* The most bytes a request holds in memory for an upload: a POST's body (creation-with-upload),
 * and a PATCH that brings a whole bundle. */
#define SRV_TUS_MEM_MAX (1u << 20)
int srv_tus_options(pd_server *srv, const srv_req *q, srv_resp *r);
int srv_tus_create(pd_server *srv, const srv_req *q, srv_resp *r);
int srv_tus_head(pd_server *srv, const srv_req *q, const char *id, srv_resp *r);
int srv_tus_delete(pd_server *srv, const srv_req *q, const char *id, srv_resp *r);
void srv_tus_expire(pd_server *srv, int64_t now); /* with srv->lock held */

/* A PATCH streams: begin (headers only; fills r and returns false to answer at once), data
 * (each piece of the body as it arrives), then finish (after authentication of the whole
 * request) or abort (authentication failed: nothing received is kept). */
typedef struct srv_patch srv_patch;
bool srv_tus_patch_begin(pd_server *srv, const srv_req *q, const char *id, srv_patch **p,
                         srv_resp *r);
void srv_tus_patch_data(srv_patch *p, const uint8_t *data, size_t n);
/* Make the bytes received so far durable (fsync), so that finish can acknowledge them without
 * waiting under the server's lock. No lock needed: the patch is this request's own. */
void srv_tus_patch_sync(srv_patch *p);
int srv_tus_patch_finish(pd_server *srv, const srv_req *q, srv_patch *p, srv_resp *r);
void srv_tus_patch_abort(pd_server *srv, srv_patch *p);
/* Process a complete bundle upload; 0 or an HTTP error status with r filled. Lock held. */
int srv_tus_process_bundle(pd_server *srv, const pd_srv_upload *u, srv_resp *r);

/* The tus header parsers (pure; exposed for fuzz/fuzz_tus.c):
 * a non-negative decimal (Upload-Length, Upload-Offset) of at most 18 digits;
 * the base64 value of key in an Upload-Metadata list, decoded into out (cap bytes, NUL-terminated;
 * false when absent, not base64, too long, or holding a NUL);
 * Upload-Checksum "<sha1|sha256|sha512> <base64 digest>": the algorithm (1 sha1, 2 sha256,
 * 3 sha512) with the digest in expect and its length in *digest_len (may be NULL), or 0. */
#define SRV_TUS_DIGEST_MAX 64
bool srv_tus_parse_u64(const char *v, int64_t *out);
bool srv_tus_metadata_get(const char *md, const char *key, char *out, size_t cap);
int srv_tus_checksum_parse(const char *h, uint8_t expect[SRV_TUS_DIGEST_MAX], size_t *digest_len);

#endif
