/*
 * client_internal.h — what the files of the sync client share (client_http.c, client_tus.c,
 * client.c, client_pull.c) and its tests may use; front ends use the "sync client" section of
 * pd_sync.h. Not installed.
 *
 *   client_http.c  one HTTP exchange over libcurl (pd_http): Pd-Auth request signing, the server's
 *                  response signature, clock-skew correction, retries with backoff and full
 *                  jitter, request and byte counters, progress
 *   client_tus.c   the tus 1.0 upload engine (create, HEAD, PATCH with sha1 checksums, resume at
 *                  the server's offset) and pd_tus_upload_file for any tus server
 *   client.c       enrolment, the sync run (upload first, receipts, then pull), its saved state
 *   client_pull.c  the download side: the prelist (Range-resumable) and deltas applied to the
 *                  store without overwriting local changes
 */
#ifndef PD_CLIENT_INTERNAL_H
#define PD_CLIENT_INTERNAL_H

#include "batch_internal.h"
#include "pd_sync.h"
#include "store_internal.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define PD_HTTP_URL_MAX 2048
#define PD_HTTP_NONCE_HEX 32
#define PD_HTTP_JSON_MAX (64u << 20)  /* a JSON answer held in memory (a delta page) */
#define PD_HTTP_ERROR_MAX (64u << 10) /* the body of an error answer */
#define PD_HTTP_SKEW_WINDOW_MS 300000 /* PROTOCOL.md §4 */

/* The settled options (defaults filled in). */
typedef struct pd_http_cfg {
    long connect_timeout_ms;
    long stall_timeout_s;
    long stall_bytes_per_s;
    unsigned max_attempts;
    unsigned backoff_base_ms;
    unsigned backoff_cap_ms;
    size_t chunk_bytes;
    const char *ca_file;
    pd_sync_progress_fn progress;
    void *progress_ctx;
} pd_http_cfg;

void pd_http_cfg_from(pd_http_cfg *cfg, const pd_sync_options *opt);

/* A connection to one server: a curl handle kept for keep-alive, the device's signing key (when
 * requests are signed), the pinned server key (when answers are checked), the clock correction
 * and the counters. One thread at a time. */
typedef struct pd_http {
    void *curl; /* CURL * */
    pd_http_cfg cfg;
    char base[PD_HTTP_URL_MAX]; /* server URL without a trailing '/' */
    char device_id[64];
    uint8_t *device_sk; /* sodium_malloc'd PD_SECKEY_BYTES, or NULL: requests are not signed */
    bool pinned;
    uint8_t sign_pk[PD_PUBKEY_BYTES];
    int64_t skew_ms; /* server clock - ours */
    bool skew_changed;
    pd_sync_stats *stats; /* counters go here (may be NULL) */
    /* A tus creation was answered 429 (the device's upload cap, PROTOCOL.md §5) with a
     * Retry-After past the backoff cap: no upload is created before quota_retry_s seconds. */
    bool over_quota;
    int64_t quota_retry_s;
    /* A transfer failed on the network (cut, timeout, refused) since this handle was made: the
     * link is unreliable, and photos go by POST then PATCH, each byte sent once (client.c). */
    bool link_failed;
    pd_error err;
} pd_http;

int pd_http_init(pd_http *h, const char *base_url, const pd_sync_options *opt, pd_error *err);
/* Sign requests as this device (the secret key is copied into guarded memory). */
int pd_http_set_device(pd_http *h, const char *device_id, const uint8_t sk[PD_SECKEY_BYTES]);
void pd_http_pin(pd_http *h, const uint8_t sign_pk[PD_PUBKEY_BYTES]);
void pd_http_close(pd_http *h);

/* "<base><path>" into out. PD_ERR_TOOBIG if it does not fit. */
int pd_http_url(const pd_http *h, const char *path, char out[PD_HTTP_URL_MAX]);
/* Resolve a Location (absolute, or relative to the URL of the request it answered). */
int pd_http_resolve(const char *request_url, const char *location, char out[PD_HTTP_URL_MAX]);

typedef struct pd_http_req {
    const char *method; /* GET, HEAD, POST, PATCH, DELETE, OPTIONS */
    const char *url;    /* absolute */
    const uint8_t *body;
    size_t body_len;
    const char *content_type;
    const char *const *headers; /* extra "Name: value" lines, NULL-terminated; may be NULL */
    bool sign;                  /* add Pd-Auth (needs pd_http_set_device) */
    bool tus;                   /* add Tus-Resumable: 1.0.0 */
    bool gzip;                  /* accept gzip/deflate */
    /* The body may not be sent twice by libcurl itself (it resends a request whose reused
     * connection died before any answer): a tus PATCH must go through HEAD first instead. */
    bool no_resend;
    /* The body of a 200/206 answer goes to sink (return 0 to go on) instead of memory. */
    int (*sink)(void *ctx, const uint8_t *p, size_t n);
    void *sink_ctx;
    size_t max_body;         /* memory body cap; 0: PD_HTTP_JSON_MAX */
    pd_sync_phase phase;     /* for progress */
    uint64_t progress_base;  /* bytes already done before this request */
    uint64_t progress_total; /* the whole transfer (0: unknown) */
} pd_http_req;

typedef struct pd_http_resp {
    long status; /* 0: no HTTP answer (see curl_rc) */
    int curl_rc;
    char curl_msg[256];
    char *body; /* NUL-terminated, malloc'd (NULL when the body went to a sink) */
    size_t body_len;
    char content_type[128];
    char location[PD_HTTP_URL_MAX];
    char etag[160];
    char content_range[128];
    char sig[160];
    char tus_version[64];
    char tus_extension[256];
    bool tus_resumable;
    bool has_offset, has_length, has_cursor, pd_complete;
    int64_t upload_offset, upload_length, cursor;
    int64_t retry_after_s;
    int64_t content_length;
    char nonce[PD_HTTP_NONCE_HEX + 1]; /* the Pd-Auth nonce sent ("" when not signed) */
    uint64_t body_sent;                /* request body bytes curl sent */
    bool sink_failed;
} pd_http_resp;

void pd_http_resp_free(pd_http_resp *r);

/* One exchange, no retry. PD_OK when an HTTP answer arrived (any status: look at r->status);
 * PD_ERR_NETWORK (message in h->err) when none did; PD_ERR_SIGNATURE when a JSON answer to a
 * signed request does not carry a valid signature by the pinned key. */
int pd_http_once(pd_http *h, const pd_http_req *req, pd_http_resp *r);

/* The exchange with retries: network failures and 408, 423, 429, 5xx are retried with backoff
 * (Retry-After honoured up to the cap), a 401 stale_time corrects the clock and retries at once.
 * Returns as pd_http_once after the last attempt; the caller maps the final status. */
int pd_http_call(pd_http *h, const pd_http_req *req, pd_http_resp *r);

/* A verified 401 that a new attempt fixes: stale_time (the clock is corrected from the
 * answer's server_time) or replayed_nonce (a resent copy of a request the server took). */
bool pd_http_auth_retry(pd_http *h, const pd_http_resp *r);

/* Is this status worth another try? */
bool pd_http_transient(long status);

/* Sleep before retry number `attempt` (0-based): full jitter over min(cap, base * 2^attempt),
 * or at least retry_after_s seconds (capped). */
void pd_http_backoff(pd_http *h, unsigned attempt, int64_t retry_after_s);

/* Map a final non-2xx answer to a status code and a message in h->err ("POST /v1/enroll: 403
 * code_used: <server message>"); returns the code. */
int pd_http_fail_status(pd_http *h, const char *what, const pd_http_resp *r);

/* Check Pd-Server-Signature of an answer against `pk` with `third` as the third line (the
 * request nonce, or for enrolment the hex hash of the request body). */
int pd_http_check_sig(pd_http *h, const pd_http_resp *r, const char *third,
                      const uint8_t pk[PD_PUBKEY_BYTES]);

/* Parse an answer's JSON body (object). NULL with h->err set when it is not JSON. */
cJSON *pd_http_json(pd_http *h, const char *what, const pd_http_resp *r);

/* Hex BLAKE2b-256 of bytes. */
void pd_http_hash_hex(const uint8_t *p, size_t n, char out[2 * PD_HASH_BYTES + 1]);

/* Unix ms on the server's clock (ours + the correction). */
int64_t pd_http_now_ms(const pd_http *h);

/* ---- tus (client_tus.c) --------------------------------------------------------------------- */

/* Where an upload's resume point lives (the sync state, or a file for pd_tus_upload_file). The
 * engine calls save with the upload URL and the offset the server acknowledged BEFORE it sends
 * any byte past that offset. */
typedef struct pd_tus_store {
    int (*save)(void *ctx, const char *url, uint64_t offset);
    void *ctx;
} pd_tus_store;

/* The most bytes a creation POST carries: our server holds them in memory (SRV_TUS_MEM_MAX). */
#define PD_TUS_CREATE_BODY_MAX (1u << 20)

typedef struct pd_tus_upload {
    const uint8_t *data; /* the whole upload (kept by the caller) */
    uint64_t length;
    const char *metadata; /* Upload-Metadata value, or NULL */
    bool sign;            /* pendata server: Pd-Auth on every request */
    bool checksum;        /* send Upload-Checksum: sha1 */
    pd_sync_phase phase;
    /* in: send the bytes (up to a chunk, at most PD_TUS_CREATE_BODY_MAX) in the creation POST
     * (tus creation-with-upload); the server takes what it takes and the rest goes by PATCH */
    bool create_with_body;
    /* in, may be NULL: where the creation's answer goes when the POST carried bytes (the
     * caller frees it; status 0 when no such POST was answered) */
    pd_http_resp *create_answer;
    char url[PD_HTTP_URL_MAX]; /* in: "" to create, or the URL to resume; out: the upload URL */
    bool complete_at_create;   /* out: the server answered Pd-Complete at creation */
    bool resumed;              /* out: a HEAD found bytes the server already held */
    uint64_t resumed_at;       /* out: the offset the last such HEAD reported */
} pd_tus_upload;

/* Create (when url is "") or resume, and send every byte the server lacks. PD_ERR_NOTFOUND when
 * the upload to resume is gone (404/410) or is not this one (another length): the caller
 * terminates it and starts over. PD_ERR_BUSY with h->over_quota when the server refused to create
 * it for the device's upload cap. */
int pd_tus_send(pd_http *h, const char *create_url, pd_tus_upload *u, const pd_tus_store *st);

/* Terminate an upload given up on (tus termination: DELETE). PD_OK when the server removed it
 * or no longer has it (404/410); a 423 (a request of ours still held) is retried; PD_ERR_NETWORK
 * when no answer came (the caller keeps the URL to try again later). */
int pd_tus_terminate(pd_http *h, const char *url, bool sign);

/* SHA-1 (tus's mandatory checksum algorithm; libsodium has none). */
#define PD_TUS_SHA1_BYTES 20
void pd_tus_sha1(const uint8_t *p, size_t n, uint8_t out[PD_TUS_SHA1_BYTES]);

/* tus metadata "key base64(value)" pairs for key/value arrays (n pairs); *out malloc'd. */
int pd_tus_metadata(char **out, const char *const *keys, const char *const *values, size_t n);

/* ---- the download side (client_pull.c) ------------------------------------------------------- */

/* First time: the prelist (resumable) and its import. Then deltas until more=false. */
int pd_client_pull(pd_store *store, pd_http *h, pd_sync_stats *stats);

/* Remove <home>/prelist.part, where versions before device schema 4 kept a prelist download in
 * plain (the download now stays inside the store). PD_ERR_IO if it is there and cannot go. */
int pd_client_forget_plain_part(pd_store *store);

/* Apply one parsed delta page in one transaction with the new cursor; counts go to stats. The
 * page must have been parsed from text without \u0000 in a string (pd_http_json checks it;
 * cJSON cuts such a string short). */
int pd_client_apply_delta(pd_store *store, const cJSON *page, pd_sync_stats *stats);

/* The same from the page's JSON text (len bytes): PD_ERR_PROTOCOL, nothing stored, for text
 * that is not a JSON object or whose strings hold \u0000. */
int pd_client_apply_delta_text(pd_store *store, const char *text, size_t len, pd_sync_stats *stats);

/* The sync_state table (key/value). get_* return PD_ERR_NOTFOUND for a missing key. */
int pd_sync_state_get_int(pd_store *store, const char *key, int64_t *v);
int pd_sync_state_get_text(pd_store *store, const char *key, char *buf, size_t cap);
int pd_sync_state_get_blob(pd_store *store, const char *key, uint8_t **p, size_t *n);
int pd_sync_state_set_int(pd_store *store, const char *key, int64_t v);
int pd_sync_state_set_text(pd_store *store, const char *key, const char *v);
int pd_sync_state_set_blob(pd_store *store, const char *key, const uint8_t *p, size_t n);
int pd_sync_state_del(pd_store *store, const char *key);

/* settings (key/value) of the device: the enrolment's server URL and keys. */
int pd_client_setting_text(pd_store *store, const char *key, char *buf, size_t cap);
int pd_client_setting_blob(pd_store *store, const char *key, uint8_t *buf, size_t n);

/* Keyring rows from JSON objects of enrolment and deltas ({"pk","role","person_id","name",
 * "supervisor_pk","area"}). */
int pd_client_keyring_json(pd_store *store, const cJSON *arr, size_t *count, pd_error *err);

/* An enumerator's own keyring row names its supervisor's key (who may approve its batches): the
 * server tells the supervisor's person id at enrolment (settings supervisor_id) and the
 * supervisor's key arrives in the keyring (at enrolment, or in a delta once the supervisor
 * enrolled). Called after keyring rows changed; joins the caller's transaction. */
int pd_client_link_self(pd_store *store);

#endif
