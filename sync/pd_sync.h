/*
 * pd_sync.h — the sync layer's public header: signed change batches, the per-device chain, the
 * supervisor's review records, the batch file container, and (below, added later) the network
 * client.
 *
 * ===== The batch format, version 1 ==============================================================
 *
 * A batch is the unit of upload: the field-level ops (pd_op, core/pendata.h) one enumerator made
 * since the last batch, signed by the enumerator, chained to the previous batch of the same
 * author. The bytes that travel are exactly the bytes that were signed:
 *
 *     batch = header (184 bytes) || signature (64 bytes) || payload (payload_len bytes)
 *
 * Header, fixed size, every integer little-endian:
 *
 *     off len field
 *       0   4 magic "PDB1"
 *       4   1 format version = 1
 *       5   1 flags: bit 0 PD_BATCH_FLAG_AMENDS (this batch re-seals the ops of a returned batch);
 *                    other bits must be 0
 *       6   2 header size = 184
 *       8  32 author public key (Ed25519, the enumerator)
 *      40  24 device id, ASCII [0-9A-Za-z._-], 1..24 characters, NUL-padded
 *      64  24 area code (Kemendagri dotted digits, e.g. "32.73.01.1001"), 0..24 chars, NUL-padded
 *      88   8 sequence number of this batch for its author (u64, the first batch is 1)
 *      96  32 hash of the previous batch of the same author (all zeros for seq 1)
 *     128   8 created time (i64, Unix milliseconds, UTC)
 *     136   4 op count (u32)
 *     140   4 photo count (u32)
 *     144   4 payload length, compressed (u32)
 *     148   4 payload length, inflated (u32)
 *     152  32 BLAKE2b-256 of the compressed payload
 *
 * Signature: Ed25519, detached, single-part (crypto_sign_detached) over the 184 header bytes with
 * the author's key. (Not crypto_sign_init/update: that is Ed25519ph, a different signature.)
 *
 * Batch hash: BLAKE2b-256 over header || signature (248 bytes). This is the batch's identity: the
 * next batch's prev_hash, what the supervisor countersigns, what the server keys exactly-once on.
 *
 * The voided state is deliberately NOT a header bit: the header is signed by the author and
 * chained by hash, so it cannot change after sealing. A batch is voided by a supervisor's signed
 * return record (below) that travels beside it; the batch keeps its place in the chain, its ops are
 * never applied, and the enumerator re-seals the amended ops as a new batch (next seq) with
 * PD_BATCH_FLAG_AMENDS set.
 *
 * Payload: raw deflate (zlib, windowBits -15, no zlib/gzip wrapper) of this byte layout, where
 * "varint" is unsigned LEB128 (at most 10 bytes) and "svarint" a zigzag-encoded signed varint:
 *
 *     varint photo_count                       (must equal the header's)
 *       photo_count x { 32-byte BLAKE2b-256 of the JPEG, varint size in bytes }
 *     varint op_count                          (must equal the header's)
 *       op_count x op
 *     (nothing after the last op)
 *
 *     op = tag byte: bits 0-2 kind (0 set, 1 create, 2 end, 3 visit, 4 photo)
 *                    bits 3-4 entity (0 household, 1 member, 2 visit, 3 photo)
 *                    bit 5 the op's device id differs from the header's (a string ref follows)
 *                    bit 6 base_rev is not 0 (a varint follows)           bit 7 must be 0
 *          varint  seq delta (first op: its seq; later ops: seq - previous seq, never 0)
 *          svarint hlc delta (first op: its hlc; later ops: hlc - previous hlc)
 *          target  (see string refs)
 *          field   varint code (0 "", 1..126 the names of the field table in sync/batch.c —
 *                  append-only —, 127 escape: a string ref follows)
 *          value   old value
 *          value   new value
 *          [string ref: device id]                  if bit 5
 *          [varint base_rev]                        if bit 6
 *
 *     string ref = varint r: 0 a new string follows (varint length, bytes) and is appended to
 *                  the table; r >= 1 the table's entry r-1. The table starts empty and is shared
 *                  by every ref in the payload. A target ref is the same but r = 1 means "the
 *                  lowercase hex of photo number (varint) of the photo list", r >= 2 entry r-2.
 *
 *     value = type byte, then: 0 NULL | 1 INT svarint | 2 REAL 8 bytes IEEE-754 LE |
 *             3 REAL as decimal: scale byte (0..30), svarint mantissa m; the value is the double
 *               nearest to m * 10^-scale (used only when that is bit-exact) |
 *             4 TEXT string ref | 5 BLOB varint length, bytes |
 *             6 TEXT that is a flat JSON object, transcoded: varint field count (<= 255), then per
 *               member: key (field code as above) and a type byte: 0 null, 1 true, 2 false,
 *               3 integer svarint, 4 decimal (scale byte 1..18, svarint mantissa), 5 string (ref to
 *               the raw, still-escaped bytes between the quotes). Decoding writes the object back
 *               as {"k":v,...} with no spaces; the encoder uses this form only when that writes
 *               back exactly the original bytes, so it is lossless.
 *
 * Verification (pd_batch_verify — the ONE verifier used by devices, supervisors and the server),
 * in this order, each step before anything more expensive:
 *   1. length >= 248, magic, version, header size              -> PD_ERR_CORRUPT / PD_ERR_VERSION
 *   2. declared sizes within the limits below (and the inflate ratio) -> PD_ERR_TOOBIG
 *   3. length == 248 + payload_len (no truncation, no trailing bytes)   -> PD_ERR_CORRUPT
 *   4. author key == the expected key; Ed25519 over the header  -> PD_ERR_SIGNATURE
 *   5. BLAKE2b-256 of the payload == the header's               -> PD_ERR_CORRUPT
 *   6. header semantics (device id, area, seq, prev hash of seq 1, flags, counts vs sizes)
 *                                                               -> PD_ERR_CORRUPT
 *   7. inflate into a buffer of exactly the declared inflated length (never larger); a stream that
 *      would inflate further -> PD_ERR_TOOBIG; shorter or broken -> PD_ERR_CORRUPT
 *   8. decode with every count and length bounded                -> PD_ERR_CORRUPT / PD_ERR_TOOBIG
 *
 * ===== Review records ============================================================================
 *
 * A supervisor approves (countersigns) or returns a batch:
 *     approve: Ed25519 by the supervisor over "approve" || batch hash
 *     return:  Ed25519 by the supervisor over "return" || batch hash || reason (UTF-8, 1..1000 B)
 * Encoded (136 + reason bytes): magic "PDR1", kind byte (1 approve, 2 return), a zero byte, reason
 * length (u16 LE, 0 for approve), batch hash (32), supervisor public key (32), signature (64),
 * reason. The record is self-contained: it names the batch by hash.
 * Who may review whom comes from the keyring (schema table keyring): an enumerator's row carries
 * its supervisor_pk; a record signed by any other key is refused with PD_ERR_DENIED. Only a batch
 * approved, or voided by a return, may be uploaded.
 *
 * ===== A returned batch ==========================================================================
 *
 * It is voided, never rewritten or deleted: on the enumerator's device its row keeps its bytes,
 * takes state 'voided' and the supervisor's signed reason, and stays in the chain. Its ops are
 * never applied by anyone (pd_chain_apply skips a voided batch whole). The op log is append-only,
 * so its ops are COPIED back as new pending ops (new seqs at the end of the log; kind, entity,
 * target, field, values, base_rev and clock unchanged — the clock says when the change was made);
 * the originals keep their batch_seq, sync_state 'requeued.<seq>' = "first-last" records which
 * copies stand for them, and the next seal (which carries PD_BATCH_FLAG_AMENDS) sends the copies
 * together with whatever the enumerator changed since.
 *
 * ===== Batch files (bundles) =====================================================================
 *
 * For an SD card, Bluetooth, or one upload of several batches: magic "PDF1", version byte (1),
 * then items until the end: type byte (1 batch, 2 review record), u32 LE length, bytes. At most
 * PD_BUNDLE_MAX_ITEMS items and PD_BUNDLE_MAX_BYTES in all.
 *
 * ===== The chain =================================================================================
 *
 * The batches of one author, by seq: seq 1 has prev_hash zero, each next batch has seq + 1 and
 * prev_hash = the previous batch's hash. pd_chain_check finds gaps, duplicates, reordering, forks
 * (two different batches at one seq) and rewritten batches (a link whose prev_hash does not match).
 */
#ifndef PD_SYNC_H
#define PD_SYNC_H

#include "pendata.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Sizes and limits of the batch format ------------------------------------------------- */

#define PD_BATCH_MAGIC "PDB1"
#define PD_BATCH_VERSION 1
#define PD_BATCH_HEADER_BYTES 184
#define PD_BATCH_PREFIX_BYTES (PD_BATCH_HEADER_BYTES + PD_SIG_BYTES) /* hashed: 248 */
#define PD_BATCH_DEVICE_ID_MAX 24
#define PD_BATCH_AREA_MAX 24

#define PD_BATCH_FLAG_AMENDS 0x01u /* re-seals ops of a batch the supervisor returned */

#define PD_BATCH_MAX_PAYLOAD (8u << 20)   /* compressed payload */
#define PD_BATCH_MAX_INFLATED (8u << 20)  /* inflated payload */
#define PD_BATCH_MAX_RATIO 128u           /* inflated / compressed, above 64 KiB inflated */
#define PD_BATCH_MAX_OPS 65536u
#define PD_BATCH_MAX_PHOTOS 4096u
#define PD_BATCH_MAX_STRING 65536u        /* one text, blob, target or field */
#define PD_BATCH_MAX_DECODED (32u << 20)  /* text materialised while decoding (JSON values) */
#define PD_BATCH_MAX_JSON_FIELDS 255u

/* ---- Batches -------------------------------------------------------------------------------- */

/* The header, parsed. */
typedef struct pd_batch_header {
    uint8_t version;
    uint8_t flags;
    uint8_t author_pk[PD_PUBKEY_BYTES];
    char device_id[PD_BATCH_DEVICE_ID_MAX + 1];
    char area[PD_BATCH_AREA_MAX + 1];
    uint64_t seq;
    uint8_t prev_hash[PD_HASH_BYTES];
    int64_t created_at;
    uint32_t op_count;
    uint32_t photo_count;
    uint32_t payload_len;
    uint32_t inflated_len;
    uint8_t payload_hash[PD_HASH_BYTES];
} pd_batch_header;

/* A photo named by a batch: the bytes travel separately, content-addressed by this hash. */
typedef struct pd_batch_photo {
    uint8_t hash[PD_HASH_BYTES];
    uint64_t size;
} pd_batch_photo;

/* What a new batch is (the rest of the header is computed). */
typedef struct pd_batch_params {
    const char *device_id;    /* 1..24 chars of [0-9A-Za-z._-] */
    const char *area;         /* 0..24 chars of [0-9.], may be NULL or "" */
    uint64_t seq;             /* >= 1 */
    const uint8_t *prev_hash; /* PD_HASH_BYTES; NULL means zeros (required for seq 1) */
    int64_t created_at;       /* Unix ms */
    uint8_t flags;            /* PD_BATCH_FLAG_* */
} pd_batch_params;

/* A verified, decoded batch. Opaque; read it with the accessors below. */
typedef struct pd_batch pd_batch;

/* Build a signed batch from ops (strictly increasing seq) and the photos they name. On success
 * *out is a malloc'd buffer of *out_len bytes (free with free()). Nothing is written on failure:
 * PD_ERR_INVALID names the op and field at fault, PD_ERR_TOOBIG a limit. author_sk is the
 * Ed25519 secret key (64 bytes); the author's public key is taken from it. */
int pd_batch_build(uint8_t **out, size_t *out_len, const pd_batch_params *params, const pd_op *ops,
                   size_t op_count, const pd_batch_photo *photos, size_t photo_count,
                   const uint8_t author_sk[PD_SECKEY_BYTES], pd_error *err);

/* THE verifier (see the top of this file for the order of checks). author_pk is the key the
 * caller expects to have signed it (from its keyring / device registry); it is required. On
 * success, if out is not NULL, *out is the decoded batch (pd_batch_free); it does not point into
 * `bytes`. */
int pd_batch_verify(pd_batch **out, const uint8_t *bytes, size_t len,
                    const uint8_t author_pk[PD_PUBKEY_BYTES], pd_error *err);

/* Parse the header of untrusted bytes WITHOUT verifying the signature: steps 1-3 of the verifier
 * only. For routing and for finding which key to verify with; trust nothing in it until
 * pd_batch_verify agrees. hash (may be NULL) gets the batch hash. */
int pd_batch_peek(pd_batch_header *hdr, uint8_t hash[PD_HASH_BYTES], const uint8_t *bytes,
                  size_t len, pd_error *err);

void pd_batch_free(pd_batch *b);

const pd_batch_header *pd_batch_header_get(const pd_batch *b);
const uint8_t *pd_batch_hash(const pd_batch *b); /* PD_HASH_BYTES */
/* The ops, in seq order; strings and values point into memory owned by the batch. */
const pd_op *pd_batch_ops(const pd_batch *b, size_t *count);
const pd_batch_photo *pd_batch_photos(const pd_batch *b, size_t *count);

/* ---- Review records ------------------------------------------------------------------------- */

#define PD_REVIEW_MAGIC "PDR1"
#define PD_REVIEW_REASON_MAX 1000
#define PD_REVIEW_FIXED_BYTES 136 /* magic, kind, reason length, hash, key, signature */

typedef enum pd_review_kind { PD_REVIEW_APPROVE = 1, PD_REVIEW_RETURN = 2 } pd_review_kind;

typedef struct pd_review {
    pd_review_kind kind;
    uint8_t batch_hash[PD_HASH_BYTES];
    uint8_t supervisor_pk[PD_PUBKEY_BYTES];
    uint8_t sig[PD_SIG_BYTES];
    size_t reason_len;
    char reason[PD_REVIEW_REASON_MAX + 1]; /* NUL-terminated; "" for an approval */
} pd_review;

/* Make and sign a record. reason is required for a return (valid UTF-8, 1..1000 bytes, no control
 * characters but newline and tab) and must be NULL or "" for an approval. */
int pd_review_make(pd_review *out, pd_review_kind kind, const uint8_t batch_hash[PD_HASH_BYTES],
                   const char *reason, const uint8_t supervisor_sk[PD_SECKEY_BYTES],
                   pd_error *err);

/* Encode into buf (cap bytes); *len gets the size. PD_ERR_TOOBIG if cap is too small. */
int pd_review_encode(const pd_review *r, uint8_t *buf, size_t cap, size_t *len);
#define PD_REVIEW_MAX_BYTES (PD_REVIEW_FIXED_BYTES + PD_REVIEW_REASON_MAX)

/* Parse exactly len bytes (bounded and strict) and check the signature with the key the record
 * names. PD_ERR_CORRUPT / PD_ERR_SIGNATURE / PD_ERR_INVALID on failure. */
int pd_review_parse(pd_review *out, const uint8_t *buf, size_t len, pd_error *err);

/* Is r a valid review of batch_hash by the author's supervisor? Checks the signature, that it
 * names this batch (PD_ERR_INVALID otherwise), and that the signer is supervisor_pk — the
 * author's supervisor from the keyring (PD_ERR_DENIED otherwise). */
int pd_review_check(const pd_review *r, const uint8_t batch_hash[PD_HASH_BYTES],
                    const uint8_t supervisor_pk[PD_PUBKEY_BYTES], pd_error *err);

/* Everything the server (or an uploading device) checks before accepting a batch: the batch
 * verifies with author_pk, the review record is by supervisor_pk about this very batch, and so the
 * batch is eligible (approved or voided). *voided tells which; out (may be NULL) the batch. */
int pd_batch_verify_reviewed(pd_batch **out, bool *voided, const uint8_t *batch, size_t batch_len,
                             const uint8_t author_pk[PD_PUBKEY_BYTES], const uint8_t *review,
                             size_t review_len, const uint8_t supervisor_pk[PD_PUBKEY_BYTES],
                             pd_error *err);

/* ---- Bundles: batch files --------------------------------------------------------------------- */

#define PD_BUNDLE_MAGIC "PDF1"
#define PD_BUNDLE_MAX_ITEMS 4096u
#define PD_BUNDLE_MAX_BYTES (256u << 20)

typedef enum pd_bundle_type { PD_BUNDLE_BATCH = 1, PD_BUNDLE_REVIEW = 2 } pd_bundle_type;

typedef struct pd_bundle_item {
    pd_bundle_type type;
    const uint8_t *bytes; /* points into the parsed buffer */
    size_t len;
} pd_bundle_item;

typedef struct pd_bundle pd_bundle; /* a bundle being written */

int pd_bundle_new(pd_bundle **out);
int pd_bundle_add(pd_bundle *b, pd_bundle_type type, const uint8_t *bytes, size_t len);
/* The bytes so far; valid until the next add or free. */
const uint8_t *pd_bundle_bytes(const pd_bundle *b, size_t *len);
void pd_bundle_free(pd_bundle *b);

/* Parse a bundle. *items is a malloc'd array (free()) of *count items pointing into buf. Item
 * contents are not verified here: each goes through pd_batch_verify / pd_review_parse. */
int pd_bundle_parse(pd_bundle_item **items, size_t *count, const uint8_t *buf, size_t len,
                    pd_error *err);

/* ---- The chain ------------------------------------------------------------------------------- */

typedef struct pd_chain_link {
    uint8_t author_pk[PD_PUBKEY_BYTES];
    uint64_t seq;
    uint8_t hash[PD_HASH_BYTES];
    uint8_t prev_hash[PD_HASH_BYTES];
} pd_chain_link;

typedef enum pd_chain_fault {
    PD_CHAIN_OK = 0,
    PD_CHAIN_BAD_START,   /* seq 1 with a non-zero prev hash, or seq 0 */
    PD_CHAIN_GAP,         /* a seq is missing (PD_ERR_NOTFOUND) */
    PD_CHAIN_DUPLICATE,   /* the same batch twice (PD_ERR_EXISTS) */
    PD_CHAIN_REORDER,     /* seq goes backwards (PD_ERR_INVALID) */
    PD_CHAIN_FORK,        /* two different batches with one seq (PD_ERR_CONFLICT) */
    PD_CHAIN_BROKEN_LINK, /* prev_hash is not the previous batch's hash: rewritten (CONFLICT) */
    PD_CHAIN_AUTHOR,      /* batches of different authors mixed (PD_ERR_INVALID) */
} pd_chain_fault;

typedef struct pd_chain_report {
    pd_chain_fault fault;
    size_t index; /* position in the list where the fault shows */
    uint64_t seq; /* seq of that batch */
} pd_chain_report;

/* Fill a link from a header and its hash. */
void pd_chain_link_set(pd_chain_link *l, const pd_batch_header *h,
                       const uint8_t hash[PD_HASH_BYTES]);

/* Check links (one author's batches in the order claimed). anchor is the last batch the caller
 * already trusts (the server's last applied one), or NULL when the list must start at seq 1.
 * Returns PD_OK or the code noted at each fault; report (may be NULL) says which and where. */
int pd_chain_check(const pd_chain_link *links, size_t n, const pd_chain_link *anchor,
                   pd_chain_report *report, pd_error *err);

const char *pd_chain_fault_name(pd_chain_fault f);

/* One batch of a chain to apply, and whether a verified return record voided it. */
typedef struct pd_chain_item {
    const pd_batch *batch; /* verified (pd_batch_verify) */
    bool voided;           /* from pd_batch_verify_reviewed */
} pd_chain_item;

/* Apply the ops of a chain of batches, in order, onto a database with the device schema
 * (pd_oplog_apply): first the whole chain is checked (pd_chain_check against anchor), then each
 * batch that is not voided has its ops applied; a voided batch keeps its place in the chain and
 * applies NOTHING. Opens no transaction (the caller's decides atomicity). *applied (may be NULL)
 * gets the number of ops applied. */
int pd_chain_apply(struct sqlite3 *db, const pd_chain_item *items, size_t n,
                   const pd_chain_link *anchor, pd_photo_fetch_fn fetch, void *fetch_ctx,
                   size_t *applied, pd_error *err);

/* ---- On the device: sealing, the outbox, the supervisor's queue ------------------------------- */

/* Keyring rows (schema table keyring). The text limits are the server's (a person's name, and the
 * comma-separated area codes of, say, a supervisor of many SLS): what the server may send always
 * fits whole; a longer value is refused, never cut. */
#define PD_KEYRING_NAME_MAX 255  /* bytes of UTF-8 */
#define PD_KEYRING_AREA_MAX 4095 /* bytes of the area list */
typedef struct pd_keyring_entry {
    uint8_t pk[PD_PUBKEY_BYTES];
    char role[16];
    char person_id[64];
    char name[PD_KEYRING_NAME_MAX + 1];
    bool has_supervisor;
    uint8_t supervisor_pk[PD_PUBKEY_BYTES];
    char area[PD_KEYRING_AREA_MAX + 1];
} pd_keyring_entry;

/* Add or replace a keyring row. */
int pd_keyring_put(pd_store *store, const pd_keyring_entry *e);
/* PD_ERR_NOTFOUND if the key is not in the keyring. */
int pd_keyring_get(pd_store *store, const uint8_t pk[PD_PUBKEY_BYTES], pd_keyring_entry *e);
/* The public key of this device's identity for a role ("enumerator", "supervisor", ...).
 * PD_ERR_NOTFOUND if the device has no such identity. */
int pd_keyring_self(pd_store *store, const char *role, uint8_t pk[PD_PUBKEY_BYTES]);

typedef struct pd_seal_result {
    uint64_t seq;
    uint8_t hash[PD_HASH_BYTES];
    size_t op_count;
    size_t photo_count;
    size_t bytes;
    size_t remaining; /* ops still pending (over PD_BATCH_MAX_OPS): seal again */
} pd_seal_result;

/* Seal every pending op (in seq order, at most PD_BATCH_MAX_OPS) and the photos they name into
 * the next batch of this device's enumerator identity: built, signed, stored in table batch
 * (state 'sealed') and the ops marked sealed, in one transaction. PD_ERR_STATE if nothing is
 * pending; PD_ERR_NOTFOUND if the device has no enumerator identity. */
int pd_batch_seal(pd_store *store, pd_seal_result *out);

/* One row of the outbox (an enumerator's own batches) or of the review queue. */
typedef struct pd_outbox_entry {
    int64_t id; /* the batch's number in this store (review show/approve take it) */
    uint8_t author_pk[PD_PUBKEY_BYTES];
    uint64_t seq;
    uint8_t hash[PD_HASH_BYTES];
    char state[16]; /* sealed, approved, returned, voided, uploaded, acknowledged */
    int64_t created_at;
    int64_t op_count;
    size_t bytes;
    char reason[PD_REVIEW_REASON_MAX + 1]; /* return reason, "" if none */
} pd_outbox_entry;

typedef int (*pd_outbox_fn)(void *ctx, const pd_outbox_entry *e);

/* This device's enumerator's batches by seq; stops early if fn returns non-zero (returned). */
int pd_outbox_list(pd_store *store, pd_outbox_fn fn, void *ctx);

/* A bundle holding batch `seq` of this device's enumerator and its review record if any. *out is
 * malloc'd (free()). */
int pd_outbox_export(pd_store *store, uint64_t seq, uint8_t **out, size_t *out_len);

typedef struct pd_import_result {
    size_t batches;    /* new batches stored */
    size_t known;      /* batches already held (no change) */
    size_t approved;   /* review records applied: approvals */
    size_t returned;   /* review records applied: returns (voided on the enumerator's side) */
    size_t requeued;   /* ops copied back to pending after returns */
} pd_import_result;

/* Enumerator side: apply the review records of a bundle (from `pendata review`) to this device's
 * own batches. An approval sets state 'approved'; a return sets state 'voided' with the reason
 * and copies the batch's ops as new pending ops (new seqs; the op log is append-only), so the next
 * seal re-sends them amended. Records are checked against the enumerator's supervisor key from the
 * keyring (PD_ERR_DENIED for any other). All or nothing. */
int pd_outbox_import(pd_store *store, const uint8_t *bundle, size_t len, pd_import_result *out);

/* Supervisor side: store the batches (and records) of a bundle in the review queue. Each batch
 * must verify with its author's key, and the author must be an enumerator this supervisor
 * supervises (keyring), else PD_ERR_DENIED. A different batch at a held (author, seq) is a fork:
 * PD_ERR_CONFLICT. All or nothing. */
int pd_review_import(pd_store *store, const uint8_t *bundle, size_t len, pd_import_result *out);

/* The queue: batches awaiting review (state 'sealed'), or all held batches if all is true. */
int pd_review_list(pd_store *store, bool all, pd_outbox_fn fn, void *ctx);

/* Load and verify batch `id` of the queue. *author (may be NULL) gets its keyring row. */
int pd_review_load(pd_store *store, int64_t id, pd_batch **out, pd_keyring_entry *author);

/* Approve / return batch `id` with this device's supervisor identity. The author must be
 * supervised by it (PD_ERR_DENIED), the batch must be 'sealed' (PD_ERR_STATE). The record is
 * stored with the batch; if this device is also the author's (a review on the enumerator's
 * phone), a return voids the batch and requeues its ops at once. */
int pd_review_approve(pd_store *store, int64_t id);
int pd_review_return(pd_store *store, int64_t id, const char *reason);

/* A bundle with batch `id` and its review record (to carry back to the enumerator, or onward). */
int pd_review_export(pd_store *store, int64_t id, uint8_t **out, size_t *out_len);

/* ---- Batch-level warnings and the map --------------------------------------------------------- */

typedef enum pd_review_warn_kind {
    PD_REVIEW_WARN_VISIT = 1, /* stored with the visit by the device (its code in `code`) */
    PD_REVIEW_WARN_TOO_FAST,  /* visits less than 2 minutes apart */
    PD_REVIEW_WARN_TOO_FAR,   /* more than 5 km between visits within a minute */
    PD_REVIEW_WARN_OUTSIDE,   /* visit point outside the area's outline */
    PD_REVIEW_WARN_DUP_NIK,   /* a NIK given to two different members */
    PD_REVIEW_WARN_TWICE,     /* one household visited twice */
} pd_review_warn_kind;

#define PD_REVIEW_TOO_FAST_MS 120000 /* visits closer in time than this */
#define PD_REVIEW_TOO_FAR_M 5000.0   /* ... and farther apart than this ... */
#define PD_REVIEW_TOO_FAR_MS 60000   /* ... within this time */

typedef struct pd_review_warning {
    pd_review_warn_kind kind;
    size_t op;      /* index of the op it is about */
    size_t other;   /* the other op involved (TOO_FAST, TOO_FAR, DUP_NIK, TWICE), else = op */
    char code[32];  /* "too_fast", "too_far", "outside_area", "dup_nik", "visited_twice", or the
                       device's own code (PD_WARN_* of pendata.h) */
    char text[200]; /* one readable line */
} pd_review_warning;

/* Work out the warnings of a decoded batch: the visit-level ones its ops carry and the batch-level
 * ones above. Area outlines come from the store's area_shape table (store may be NULL: no outline
 * check), existing NIKs from its member table. *out is malloc'd (free()). */
int pd_review_warnings(pd_store *store, const pd_batch *b, pd_review_warning **out,
                       size_t *count);

/* A standalone SVG map of batch b: visit points over the area outline, coloured by outcome,
 * warnings marked, with a legend. *svg is malloc'd, NUL-terminated (free()). */
int pd_review_map_svg(pd_store *store, const pd_batch *b, char **svg, size_t *len);

/* ===== The sync client (owner: client; sync/client*.c) ===========================================
 *
 * The device side of server/PROTOCOL.md over libcurl: enrolment, then each sync
 *   1. upload: every approved or voided batch not yet acknowledged, with its review record, as ONE
 *      bundle (pd_bundle above, which the server parses; PROTOCOL.md §5.1 still describes a
 *      "PDBN" framing) through tus (create, PATCH with sha1 checksums, commit);
 *      the photos those batches name go first as tus photo uploads (none resent when the server
 *      already holds them). The upload's URL and acknowledged offset are saved in sync_state
 *      before any byte past that offset is sent, so a cut connection, a timeout, a server restart
 *      or a killed program resumes with HEAD at exactly the server's offset;
 *   2. receipts: each result's receipt is checked with the pinned server key and stored on its
 *      batch (state 'acknowledged'); only a valid receipt marks a batch done; a held batch is
 *      asked about later (GET /v1/receipts);
 *   3. pull (after the upload drained, PowerSync's rule): the first time the prelist package
 *      (Range-resumable into <home>/prelist.part, If-Range with its ETag) imported with the pinned
 *      key, then deltas since the cursor until more=false, each page applied in one transaction
 *      that keeps the local value of every field with a change not yet acknowledged (the server's
 *      value is kept in server_diff).
 * Every request is signed (Pd-Auth, the device key); every JSON answer must carry a valid
 * signature by the server key pinned at enrolment (else PD_ERR_SIGNATURE): pinning is inherent,
 * for http and https alike (https uses the system CA store). Transient failures (network, 408,
 * 423, 429, 5xx) are retried with exponential backoff and full jitter; other 4xx are not.
 * Errors are set on the store's handle (pd_store_errmsg). */

#define PD_SYNC_FINGERPRINT_LEN 39 /* "3f2a-91c0-77de-0b41-5a6e-c2d8-1f09-e4b3" */
#define PD_RECEIPT_BYTES_V1 200
#define PD_RECEIPT_SIGNED_V1 136

typedef enum pd_sync_phase {
    PD_SYNC_PHASE_ENROLL = 1,
    PD_SYNC_PHASE_PHOTOS,   /* uploading photos */
    PD_SYNC_PHASE_UPLOAD,   /* uploading the bundle (or a file) */
    PD_SYNC_PHASE_RECEIPTS,
    PD_SYNC_PHASE_PRELIST,  /* downloading the prelist */
    PD_SYNC_PHASE_DELTA
} pd_sync_phase;

/* Progress of a transfer: bytes done of total (0: unknown). Called often; keep it cheap. */
typedef void (*pd_sync_progress_fn)(void *ctx, pd_sync_phase phase, uint64_t done,
                                    uint64_t total);

/* Network options; a zeroed struct (or NULL) gives the defaults in brackets. */
typedef struct pd_sync_options {
    const char *server_url;   /* NULL: the URL saved at enrolment */
    long connect_timeout_ms;  /* [15000] */
    long stall_timeout_s;     /* a transfer slower than stall_bytes_per_s this long fails [60] */
    long stall_bytes_per_s;   /* [16] */
    unsigned max_attempts;    /* tries of one request without progress [8] */
    unsigned backoff_base_ms; /* [500] */
    unsigned backoff_cap_ms;  /* [30000] */
    size_t chunk_bytes;       /* bytes per tus PATCH [256 KiB] */
    const char *ca_file;      /* extra CA bundle (PEM) for https; NULL: the system store */
    pd_sync_progress_fn progress;
    void *progress_ctx;
} pd_sync_options;

/* What one sync (or enrolment, or file upload) did. */
typedef struct pd_sync_stats {
    uint64_t requests;       /* HTTP requests sent (attempts included) */
    uint64_t bytes_sent;     /* request lines, headers and bodies */
    uint64_t bytes_received; /* status lines, headers and bodies */
    uint64_t retries;
    uint64_t upload_body_bytes;   /* tus POST/PATCH body bytes sent (cut ones too) */
    uint64_t upload_length;       /* the lengths of the uploads this run completed */
    uint64_t upload_resumed;      /* resumes: a HEAD found bytes the server held (> 0) */
    uint64_t upload_resume_offset;/* the offset the last such HEAD reported */
    uint64_t photos_uploaded, photos_skipped;
    uint64_t batches_uploaded;     /* sent in a bundle */
    uint64_t batches_acknowledged; /* a valid receipt (applied or voided) stored */
    uint64_t batches_held, batches_rejected, batches_forked;
    uint64_t records_pulled;       /* households and members received (prelist or delta) */
    uint64_t fields_kept;          /* local unacknowledged values kept over the server's */
    uint64_t conflicts_pulled, keys_pulled;
    bool prelist_imported;
    int64_t cursor;                /* the delta cursor after the sync */
    bool pulled;                   /* the pull ran to its end */
    int upload_error;              /* PD_OK, or why the upload failed (the pull still ran unless
                                      the link was down) */
} pd_sync_stats;

/* The server's key fingerprint (PROTOCOL.md §1) of sign_pk. */
void pd_sync_fingerprint(const uint8_t sign_pk[PD_PUBKEY_BYTES],
                         char out[PD_SYNC_FINGERPRINT_LEN + 1]);

typedef struct pd_enroll_result {
    char person_id[64];
    char role[16];
    char name[256];
    char fingerprint[PD_SYNC_FINGERPRINT_LEN + 1];
    uint8_t user_pk[PD_PUBKEY_BYTES];
    size_t areas, keys;
    bool key_reused; /* the person key existed on this device already */
} pd_enroll_result;

/* Enrol this device with a one-time code (PROTOCOL.md §3). The person key is the device's
 * identity for `role` if it has one (role NULL: its only person identity, if any), else a new
 * key pair. The answer must name our device id, its sign_pk must match `fingerprint` (required
 * unless NULL is passed on purpose: trust on first use, the caller shows the fingerprint), and its
 * signature must verify with that key. Then, in one transaction: the identity for the role the
 * server assigned, the pinned server keys (settings server_sign_pk / server_recovery_pk, keyring
 * role 'server'), the server URL, the assignment and keyring; and the data key is sealed to the
 * recovery key (pd_store_set_recovery). PD_ERR_EXISTS if the device is already enrolled;
 * PD_ERR_SIGNATURE for a fingerprint or signature mismatch (nothing stored); the server's
 * refusals map to PD_ERR_DENIED (code unknown/expired/used), PD_ERR_EXISTS (device or key in use),
 * PD_ERR_INVALID. out may be NULL. */
int pd_sync_enroll(pd_store *store, const char *server_url, const char *code,
                   const char *fingerprint, const char *role, const pd_sync_options *opt,
                   pd_enroll_result *out);

/* One sync as described above. stats (may be NULL) is filled even on failure (what was done
 * before it). PD_ERR_STATE if the device is not enrolled; PD_ERR_NETWORK when the server stayed
 * unreachable after the retries (everything done so far is kept; the next sync resumes);
 * PD_ERR_SIGNATURE for an answer the pinned key does not verify; PD_ERR_PROTOCOL for an answer
 * the protocol does not allow. */
int pd_sync_run(pd_store *store, const pd_sync_options *opt, pd_sync_stats *stats);

/* A verified receipt (PROTOCOL.md §5.3). */
typedef struct pd_receipt {
    int status; /* 1 applied, 2 voided, 3 held, 4 fork */
    uint8_t batch_hash[PD_HASH_BYTES];
    uint8_t author_pk[PD_PUBKEY_BYTES];
    uint64_t seq;
    uint32_t applied, merged, conflicted;
    int64_t server_time;
    char device_id[33];
} pd_receipt;

/* Parse exactly PD_RECEIPT_BYTES_V1 bytes and check the signature with the server key.
 * PD_ERR_CORRUPT for a malformed receipt, PD_ERR_SIGNATURE when it does not verify. */
int pd_receipt_parse(pd_receipt *out, const uint8_t *buf, size_t len,
                     const uint8_t server_pk[PD_PUBKEY_BYTES], pd_error *err);

/* Upload a plain file to any tus 1.0 server (no Pd-Auth; e.g. @tus/server): create at
 * `endpoint` (or resume the upload named in state_path, a small file holding its URL, written
 * before any byte is sent and removed when done; state_path may be NULL), then PATCH from the
 * server's offset until done, resuming after cuts with HEAD. Upload-Checksum is sent only when
 * the server lists the checksum extension. url_out (may be NULL, url_cap bytes) gets the upload
 * URL. */
int pd_tus_upload_file(const char *endpoint, const char *path, const char *state_path,
                       const pd_sync_options *opt, pd_sync_stats *stats, char *url_out,
                       size_t url_cap, pd_error *err);

/* ===== end of the sync client ==================================================================== */

#ifdef __cplusplus
}
#endif
#endif /* PD_SYNC_H */
