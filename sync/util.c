/*
 * util.c — small helpers of the sync layer (see batch_internal.h): a growable byte buffer with
 * varints, little-endian fields, hex, UTF-8 validation, raw deflate, the clock. Nothing here knows
 * what a batch is.
 */
#include "batch_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

static bool sbuf_grow(pd_sbuf *b, size_t n)
{
    if (b->failed)
        return false;
    size_t need;
    if (!pd_size_add(b->len, n, &need)) {
        b->failed = PD_ERR_TOOBIG;
        return false;
    }
    if (b->max && need > b->max) {
        b->failed = PD_ERR_TOOBIG;
        return false;
    }
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (!pd_size_mul(cap, 2, &cap)) {
            b->failed = PD_ERR_TOOBIG;
            return false;
        }
    }
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        b->failed = PD_ERR_NOMEM;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void pd_sbuf_put(pd_sbuf *b, const void *data, size_t n)
{
    if (n == 0 || !sbuf_grow(b, n))
        return;
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

void pd_sbuf_byte(pd_sbuf *b, uint8_t c)
{
    pd_sbuf_put(b, &c, 1);
}

void pd_sbuf_varint(pd_sbuf *b, uint64_t v)
{
    uint8_t tmp[10];
    size_t n = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        tmp[n++] = c | (v ? 0x80 : 0);
    } while (v);
    pd_sbuf_put(b, tmp, n);
}

void pd_sbuf_svarint(pd_sbuf *b, int64_t v)
{
    pd_sbuf_varint(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

void pd_sbuf_u16(pd_sbuf *b, uint16_t v)
{
    uint8_t t[2];
    pd_sync_put_u16(t, v);
    pd_sbuf_put(b, t, 2);
}

void pd_sbuf_u32(pd_sbuf *b, uint32_t v)
{
    uint8_t t[4];
    pd_sync_put_u32(t, v);
    pd_sbuf_put(b, t, 4);
}

void pd_sbuf_u64(pd_sbuf *b, uint64_t v)
{
    uint8_t t[8];
    pd_sync_put_u64(t, v);
    pd_sbuf_put(b, t, 8);
}

void pd_sbuf_str(pd_sbuf *b, const char *s)
{
    pd_sbuf_put(b, s, strlen(s));
}

void pd_sbuf_printf(pd_sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (!b->failed)
            b->failed = PD_ERR_INTERNAL;
        return;
    }
    if ((size_t)n < sizeof small) {
        pd_sbuf_put(b, small, (size_t)n);
        return;
    }
    if (!sbuf_grow(b, (size_t)n + 1))
        return;
    va_start(ap, fmt);
    vsnprintf((char *)b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void pd_sbuf_xml(pd_sbuf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            pd_sbuf_str(b, "&amp;");
            break;
        case '<':
            pd_sbuf_str(b, "&lt;");
            break;
        case '>':
            pd_sbuf_str(b, "&gt;");
            break;
        case '"':
            pd_sbuf_str(b, "&quot;");
            break;
        case '\'':
            pd_sbuf_str(b, "&apos;");
            break;
        default:
            /* XML 1.0 forbids most control characters even escaped: drop them. */
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                break;
            pd_sbuf_byte(b, (uint8_t)*s);
        }
    }
}

void pd_sbuf_free(pd_sbuf *b)
{
    if (!b)
        return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

uint16_t pd_sync_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

uint32_t pd_sync_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

uint64_t pd_sync_get_u64(const uint8_t *p)
{
    return (uint64_t)pd_sync_get_u32(p) | ((uint64_t)pd_sync_get_u32(p + 4) << 32);
}

void pd_sync_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void pd_sync_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void pd_sync_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void pd_sync_hex(char *out, const uint8_t *bytes, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int pd_sync_unhex(uint8_t *out, size_t n, const char *hex)
{
    if (!hex || strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

bool pd_sync_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

int pd_sync_deflate_raw(uint8_t **out, size_t *out_len, const uint8_t *data, size_t len)
{
    *out = NULL;
    *out_len = 0;
    if (len > UINT32_MAX)
        return PD_ERR_TOOBIG;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return PD_ERR_NOMEM;
    uLong bound = deflateBound(&z, (uLong)len);
    uint8_t *buf = malloc(bound ? bound : 1);
    if (!buf) {
        deflateEnd(&z);
        return PD_ERR_NOMEM;
    }
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = buf;
    z.avail_out = (uInt)bound;
    int zrc = deflate(&z, Z_FINISH);
    size_t n = bound - z.avail_out;
    deflateEnd(&z);
    if (zrc != Z_STREAM_END) {
        free(buf);
        return PD_ERR_INTERNAL;
    }
    *out = buf;
    *out_len = n;
    return PD_OK;
}

int64_t pd_sync_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
