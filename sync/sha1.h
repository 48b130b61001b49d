/*
 * sha1.h — SHA-1, only because tus 1.0's checksum extension makes "sha1" the one algorithm every
 * server must accept (Upload-Checksum). Not for anything where collision resistance matters:
 * pendata's own hashes are BLAKE2b (libsodium), which has no SHA-1.
 */
#ifndef PD_SHA1_H
#define PD_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define PD_SHA1_BYTES 20

typedef struct pd_sha1 {
    uint32_t h[5];
    uint64_t len; /* bytes hashed */
    uint8_t buf[64];
    size_t used;
} pd_sha1;

void pd_sha1_init(pd_sha1 *s);
void pd_sha1_update(pd_sha1 *s, const void *data, size_t n);
void pd_sha1_final(pd_sha1 *s, uint8_t out[PD_SHA1_BYTES]);

#endif
