/*
 * prelist_internal.h — shared inside the prelist layer (and by its tests, bench and fuzz target):
 * the header codec, record validation and JSON-line codec (record.c), the order checker every
 * writer and reader runs, the streaming reader object the importer drives (package.c), and the
 * helpers that build packages from raw bytes (for the bad-input tests and the fuzzer).
 * Not installed; front ends use pd_prelist.h.
 */
#ifndef PD_PRELIST_INTERNAL_H
#define PD_PRELIST_INTERNAL_H

#include "area_internal.h"
#include "internal.h"
#include "pd_prelist.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- header (package.c) ---------------------------------------------------------------------- */

/* Serialise the header fields of info into the 144 signed bytes. */
void pd_prelist_header_encode(const pd_prelist_info *info, uint8_t out[PD_PRELIST_HEADER_BYTES]);

/* Parse the 144 header bytes strictly (magic, version, header size, area id, reserved zero);
 * `name` prefixes messages. Does not check the signature. */
int pd_prelist_header_decode(pd_prelist_info *info, const uint8_t in[PD_PRELIST_HEADER_BYTES],
                             const char *name, pd_error *err);

/* Is s a valid package area id ("<real area code>[:<part>]")? *area gets the code's key. */
int pd_prelist_area_id_check(const char *s, pd_area_key *area, pd_error *err);

/* ---- records (record.c) ---------------------------------------------------------------------- */

typedef enum pd_rec_kind { PD_REC_SHAPE = 1, PD_REC_HOUSEHOLD, PD_REC_MEMBER } pd_rec_kind;

/* One decoded record: the struct of its kind, strings pointing into `json` (or into the caller's
 * memory when built by hand). */
typedef struct pd_rec {
    pd_rec_kind kind;
    union {
        pd_prelist_shape shape;
        pd_prelist_household hh;
        pd_prelist_member m;
    } u;
    cJSON *json; /* owned; freed by pd_rec_clear */
} pd_rec;

void pd_rec_clear(pd_rec *r);

/* Decode one line (without its "\n"): strict UTF-8, no NUL escapes, one JSON object, a known
 * "type", known keys each at most once, right JSON types, required keys present; then
 * pd_rec_validate. On failure r is cleared. */
int pd_rec_decode(pd_rec *r, const char *line, size_t len, pd_error *err);

/* Check a record's values: lengths, characters, codes, ranges, area codes consistent, dates,
 * ids, shape rings. Messages name the record ("household 3273…: desil must be 1..10, got 12"). */
int pd_shape_validate(const pd_prelist_shape *s, pd_error *err);
int pd_household_validate(const pd_prelist_household *h, pd_error *err);
int pd_member_validate(const pd_prelist_member *m, pd_error *err);

/* A growable byte buffer (for encoding). */
typedef struct pd_buf {
    char *p;
    size_t len, cap, max; /* max: PD_ERR_TOOBIG beyond it */
} pd_buf;

void pd_buf_free(pd_buf *b);

/* Encode one record as a JSON object followed by "\n", appended to b. The record must have been
 * validated. PD_ERR_TOOBIG if the line would pass b->max. */
int pd_shape_encode(pd_buf *b, const pd_prelist_shape *s);
int pd_household_encode(pd_buf *b, const pd_prelist_household *h);
int pd_member_encode(pd_buf *b, const pd_prelist_member *m);

/* The fields of a record kind in table order: their JSON keys, which are also their columns in
 * the device schema. household: id, rev, prov … lon; member: id, household_id, rev, member_no …
 * programmes; shape: code, name, rev, shape. */
size_t pd_rec_nfields(pd_rec_kind kind);
const char *pd_rec_field_name(pd_rec_kind kind, size_t i);

/* Field i of rec (a pd_prelist_shape, _household or _member) as a value: NULL, INT, REAL or TEXT
 * (pointing into rec's strings). */
void pd_rec_field_get(pd_rec_kind kind, const void *rec, size_t i, pd_value *out);

/* ---- record order (record.c) ------------------------------------------------------------------ */

/* What every writer and reader enforces on the sequence of records: shapes first, then each
 * household followed by exactly member_count members in member_no order, every household inside
 * the package's area, counts within the limits (and within `declared` when reading). */
typedef struct pd_seq {
    pd_area_key area;
    bool limit_to_declared;
    uint32_t declared_shapes, declared_households, declared_members;
    uint32_t shapes, households, members;
    bool in_households;
    char hh_id[PD_PRELIST_MAX_TEXT + 1];
    int64_t hh_expected, hh_seen, last_member_no;
} pd_seq;

int pd_seq_shape(pd_seq *q, const pd_prelist_shape *s, pd_error *err);
int pd_seq_household(pd_seq *q, const pd_prelist_household *h, pd_error *err);
int pd_seq_member(pd_seq *q, const pd_prelist_member *m, pd_error *err);
/* At the end: the last household complete (and, when reading, counts equal to the header's). */
int pd_seq_end(pd_seq *q, pd_error *err);

/* ---- reading (package.c) ---------------------------------------------------------------------- */

/* A package opened for reading: header checked, signature verified against the pinned key, file
 * length checked and the compressed payload hashed. pd_prelist_reader_run then inflates and
 * parses the payload once, streaming. */
typedef struct pd_prelist_reader pd_prelist_reader;

int pd_prelist_reader_open(pd_prelist_reader **out, const char *path,
                           const uint8_t pinned_pk[PD_PUBKEY_BYTES], pd_error *err);
int pd_prelist_reader_open_mem(pd_prelist_reader **out, const uint8_t *buf, size_t len,
                               const uint8_t pinned_pk[PD_PUBKEY_BYTES], pd_error *err);
const pd_prelist_info *pd_prelist_reader_info(const pd_prelist_reader *r);
int pd_prelist_reader_run(pd_prelist_reader *r, const pd_prelist_handler *h, pd_error *err);
void pd_prelist_reader_free(pd_prelist_reader *r);

/* ---- building packages from raw bytes (tests, fuzzing) ----------------------------------------- */

/* Wrap an already compressed payload: hdr supplies the area, issued_at, counts and
 * inflated_size; its issuer_pk, version, compressed_size, payload_hash and id are set here; the
 * header is signed with sk. *out (malloc'd) gets the package. */
int pd_prelist_pack_compressed(const uint8_t *z, size_t zlen, pd_prelist_info *hdr,
                               const uint8_t sk[PD_SECKEY_BYTES], uint8_t **out, size_t *out_len,
                               pd_error *err);

/* Deflate payload[0..len) and wrap it as above, inflated_size = len. */
int pd_prelist_pack_mem(const uint8_t *payload, size_t len, pd_prelist_info *hdr,
                        const uint8_t sk[PD_SECKEY_BYTES], uint8_t **out, size_t *out_len,
                        pd_error *err);

/* Sign the first 144 bytes of pkg again with sk (after a test edited the header). */
void pd_prelist_resign(uint8_t *pkg, const uint8_t sk[PD_SECKEY_BYTES]);

/* Little-endian helpers. */
static inline void pd_le16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void pd_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void pd_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t pd_rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t pd_rd32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint64_t pd_rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Header field offsets (see pd_prelist.h). */
enum {
    PD_PL_OFF_MAGIC = 0,
    PD_PL_OFF_VERSION = 4,
    PD_PL_OFF_HSIZE = 6,
    PD_PL_OFF_ISSUER = 8,
    PD_PL_OFF_ISSUED_AT = 40,
    PD_PL_OFF_AREA = 48,
    PD_PL_OFF_SHAPES = 80,
    PD_PL_OFF_HOUSEHOLDS = 84,
    PD_PL_OFF_MEMBERS = 88,
    PD_PL_OFF_ZSIZE = 92,
    PD_PL_OFF_SIZE = 100,
    PD_PL_OFF_HASH = 108,
    PD_PL_OFF_RESERVED = 140
};

/* Hex of the first 8 bytes of a key, for messages ("ab12cd34ef56ab78"). */
void pd_prelist_fingerprint(const uint8_t pk[PD_PUBKEY_BYTES], char out[17]);

#endif /* PD_PRELIST_INTERNAL_H */
