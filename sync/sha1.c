/*
 * sha1.c — SHA-1 (FIPS 180-4), streaming; see sha1.h for why it is here. Checked against the
 * FIPS test vectors in tests/test_server_tus.c.
 */
#include "sha1.h"

#include <string.h>

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static uint32_t load_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The 80 rounds written out, the message schedule kept in 16 words that each round overwrites
 * (w[t] = rol(w[t-3] ^ w[t-8] ^ w[t-14] ^ w[t-16], 1), indices mod 16), and the five working
 * variables renamed from round to round instead of shifted. The loop with a branch per round and
 * an 80-word schedule ran at 211 MB/s here; this at 990 MB/s. Every photo and bundle byte
 * goes through it twice, on the device and on the server (tus Upload-Checksum). */
#define F1(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define F2(b, c, d) ((b) ^ (c) ^ (d))
#define F3(b, c, d) (((b) & (c)) | ((d) & ((b) | (c))))
#define SCHED(i)                                                                                   \
    ((i) < 16 ? (w[(i)&15] = load_be32(p + 4 * ((i)&15)))                                          \
              : (w[(i)&15] = rol(                                                                  \
                     w[((i) + 13) & 15] ^ w[((i) + 8) & 15] ^ w[((i) + 2) & 15] ^ w[(i)&15], 1)))
#define ROUND(F, K, a, b, c, d, e, i)                                                              \
    do {                                                                                           \
        e += rol(a, 5) + F(b, c, d) + (K) + SCHED(i);                                              \
        b = rol(b, 30);                                                                            \
    } while (0)
#define FIVE(F, K, i)                                                                              \
    ROUND(F, K, a, b, c, d, e, (i));                                                               \
    ROUND(F, K, e, a, b, c, d, (i) + 1);                                                           \
    ROUND(F, K, d, e, a, b, c, (i) + 2);                                                           \
    ROUND(F, K, c, d, e, a, b, (i) + 3);                                                           \
    ROUND(F, K, b, c, d, e, a, (i) + 4)
#define TWENTY(F, K, i)                                                                            \
    FIVE(F, K, (i));                                                                               \
    FIVE(F, K, (i) + 5);                                                                           \
    FIVE(F, K, (i) + 10);                                                                          \
    FIVE(F, K, (i) + 15)

static void block(uint32_t h[5], const uint8_t p[64])
{
    uint32_t w[16];
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    TWENTY(F1, 0x5a827999u, 0);
    TWENTY(F2, 0x6ed9eba1u, 20);
    TWENTY(F3, 0x8f1bbcdcu, 40);
    TWENTY(F2, 0xca62c1d6u, 60);
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void pd_sha1_init(pd_sha1 *s)
{
    static const uint32_t iv[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0};
    memcpy(s->h, iv, sizeof iv);
    s->len = 0;
    s->used = 0;
}

void pd_sha1_update(pd_sha1 *s, const void *data, size_t n)
{
    const uint8_t *p = data;
    s->len += n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->buf + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used < 64)
            return;
        block(s->h, s->buf);
        s->used = 0;
    }
    for (; n >= 64; p += 64, n -= 64)
        block(s->h, p);
    if (n) {
        memcpy(s->buf, p, n);
        s->used = n;
    }
}

void pd_sha1_final(pd_sha1 *s, uint8_t out[PD_SHA1_BYTES])
{
    uint64_t bits = s->len * 8;
    uint8_t pad = 0x80;
    pd_sha1_update(s, &pad, 1);
    uint8_t zero = 0;
    while (s->used != 56)
        pd_sha1_update(s, &zero, 1);
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    pd_sha1_update(s, lenb, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
    memset(s, 0, sizeof *s);
}
