/*
 * korcam.h — korcam reconciliation inside the server (server/korcam.c): what the merge engine,
 * the delta and the HTTP layer call. Not installed; the operator's act (a web password) is in
 * pd_server.h.
 *
 *   merge time  srv_korcam_check_nik and srv_korcam_after_op add the conflict kinds apply.c does
 *               not find itself: a NIK twice in one household or in two, the head of a proposed
 *               household who heads another one, a proposal with the KK of another household or
 *               a similar head name within 50 m, a member reported deceased or moved out who is
 *               active elsewhere (and the other way round);
 *   delta       srv_korcam_delta completes the delta's `conflicts` with their resolutions and
 *               fills its `tasks` (PROTOCOL.md §6, §9);
 *   HTTP        srv_korcam_handle answers /v1/korcam/... (Pd-Auth, a korcam's device) and
 *               /korcam/... (the web page: its files, login, and the same API behind a session
 *               cookie).
 */
#ifndef PD_SRV_KORCAM_H
#define PD_SRV_KORCAM_H

#include "srv_internal.h"

struct cJSON;

/* The batch an op belongs to, as the conflict rows need it. */
typedef struct srv_korcam_batch {
    const char *device_id;    /* the op's device */
    const char *author_id;    /* the enumerator (user id) who signed the batch */
    const uint8_t *author_pk; /* PD_PUBKEY_BYTES */
    int64_t batch_seq;
    const uint8_t *batch_hash; /* PD_HASH_BYTES */
    int64_t now;
    uint32_t *conflicted; /* the receipt's counter, raised per conflict row */
} srv_korcam_batch;

/* A member's NIK was set (an applied "set" or "create"): queue duplicate_nik, moved_active or
 * duplicate_household when another member holds it (placeholders excepted). Inside the batch's
 * transaction; on failure the message is on srv->st. */
int srv_korcam_check_nik(pd_server *srv, const srv_korcam_batch *b, const pd_op *op,
                         const char *member_id, const char *household_id, const char *desa,
                         const pd_value *nik);

/* After an op was applied: a proposed household (create, or its visit's fix) that matches an
 * existing one, a member ended as deceased/moved who is active elsewhere. As above. */
int srv_korcam_after_op(pd_server *srv, const srv_korcam_batch *b, const pd_op *op);

/* Once every op of a batch is applied: a household that got members keeps a member_count of at
 * least its active members (a device proposes a household with member_count 0 and its head in
 * the next op; devices refuse a household whose count is not 1..99). An explicit "set
 * member_count" of the batch, applied before, leaves nothing to do. As above. */
int srv_korcam_after_batch(pd_server *srv, const srv_korcam_batch *b, const pd_op *ops, size_t n);

/* Complete a delta for user u: each conflict of `conflicts` gets its related record, household
 * and resolution; `tasks` gets the tasks of u's area (an enumerator's own) with rev > since.
 * *cursor rises to the highest task rev sent. Storage lock held. */
int srv_korcam_delta(pd_server *srv, const pd_srv_user *u, int64_t since, struct cJSON *conflicts,
                     struct cJSON *tasks, int64_t *cursor);

/* Answer a request under /v1/korcam/ (authenticated: q->device set) or /korcam (the web page:
 * q->device NULL). Storage lock held; returns the status. */
int srv_korcam_handle(pd_server *srv, const srv_req *q, srv_resp *r);

/* The web page's files, embedded at build time from server/web/ (cmake/embed_web.cmake). */
typedef struct srv_web_asset {
    const char *name; /* "index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} srv_web_asset;

extern const srv_web_asset srv_korcam_web[];
extern const size_t srv_korcam_web_count;

#endif
