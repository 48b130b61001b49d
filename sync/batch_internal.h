/*
 * batch_internal.h — what the sync layer's files share and tests/fuzzers may use, but a front end
 * should not: a growable byte buffer, the header codec, and signing a raw payload (for tests that
 * must make well-signed hostile batches, e.g. a decompression bomb). Not installed.
 */
#ifndef PD_BATCH_INTERNAL_H
#define PD_BATCH_INTERNAL_H

#include "internal.h"
#include "pd_sync.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer. Any failed append sets `failed` and later appends do nothing, so a
 * caller checks once at the end. */
typedef struct pd_sbuf {
    uint8_t *p;
    size_t len;
    size_t cap;
    size_t max; /* 0: no limit other than memory */
    int failed; /* PD_OK, PD_ERR_NOMEM or PD_ERR_TOOBIG */
} pd_sbuf;

void pd_sbuf_put(pd_sbuf *b, const void *data, size_t n);
void pd_sbuf_byte(pd_sbuf *b, uint8_t c);
void pd_sbuf_varint(pd_sbuf *b, uint64_t v);
void pd_sbuf_svarint(pd_sbuf *b, int64_t v);
void pd_sbuf_u16(pd_sbuf *b, uint16_t v);
void pd_sbuf_u32(pd_sbuf *b, uint32_t v);
void pd_sbuf_u64(pd_sbuf *b, uint64_t v);
void pd_sbuf_str(pd_sbuf *b, const char *s);
void pd_sbuf_printf(pd_sbuf *b, const char *fmt, ...) PD_PRINTF(2, 3);
/* Append s with XML escaping (& < > " '). */
void pd_sbuf_xml(pd_sbuf *b, const char *s);
void pd_sbuf_free(pd_sbuf *b);

/* Little-endian readers of fixed-size fields. */
uint16_t pd_sync_get_u16(const uint8_t *p);
uint32_t pd_sync_get_u32(const uint8_t *p);
uint64_t pd_sync_get_u64(const uint8_t *p);
void pd_sync_put_u16(uint8_t *p, uint16_t v);
void pd_sync_put_u32(uint8_t *p, uint32_t v);
void pd_sync_put_u64(uint8_t *p, uint64_t v);

/* Header codec. encode writes every field of h as is (no validation). */
void pd_batch_header_encode(const pd_batch_header *h, uint8_t out[PD_BATCH_HEADER_BYTES]);

/* Sign an already-compressed payload: fills h->author_pk (from sk), payload_len and payload_hash,
 * keeps every other field of h as given (so a test can lie about inflated_len or counts), and
 * returns the batch bytes (malloc'd). */
int pd_batch_wrap(uint8_t **out, size_t *out_len, pd_batch_header *h, const uint8_t *payload,
                  size_t payload_len, const uint8_t sk[PD_SECKEY_BYTES], pd_error *err);

/* Raw deflate (windowBits -15, level 9) of data into a malloc'd buffer. */
int pd_sync_deflate_raw(uint8_t **out, size_t *out_len, const uint8_t *data, size_t len);

/* Best-effort read of the photo and op counts at the start of an inflated payload (for the
 * fuzzer's re-signing mode); 0 for what cannot be read. */
void pd_batch_payload_counts(const uint8_t *p, size_t len, uint32_t *photos, uint32_t *ops);

/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void pd_sync_hex(char *out, const uint8_t *bytes, size_t n);
/* Parse exactly 2n hex digits; 0 on success, -1 otherwise. */
int pd_sync_unhex(uint8_t *out, size_t n, const char *hex);

/* Is s (len bytes) valid UTF-8 (no overlongs, no surrogates)? */
bool pd_sync_utf8_valid(const uint8_t *s, size_t len);

/* Unix time in milliseconds. */
int64_t pd_sync_now_ms(void);

#endif
