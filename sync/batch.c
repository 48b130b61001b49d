/*
 * batch.c — the batch format: encode ops into a compact payload, deflate, sign (build); and the
 * one verifier that checks, inflates with hard limits and decodes (verify). The format itself is
 * documented at the top of pd_sync.h; this file is its only implementation.
 *
 * What is not here: the store (sealing pending ops, the outbox: outbox.c), review records
 * (review.c), the chain (chain.c). Nothing here touches a file or a database.
 *
 * Memory: a decoded batch owns one inflated buffer, its op and photo arrays, and an arena for the
 * strings it had to materialise (NUL-terminated table entries, JSON texts, photo hex targets).
 * The arena is budgeted (PD_BATCH_MAX_DECODED) so that a small payload of back-references cannot
 * make the decoder allocate without bound.
 */
#include "batch_internal.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- Codes shared by encoder and decoder ---------------------------------------------------- */

static const char *const kinds[] = {"set", "create", "end", "visit", "photo"};
static const char *const entities[] = {"household", "member", "visit", "photo"};

/* Field names with one-byte codes (index + 1). APPEND ONLY: a code, once published, keeps its
 * name forever (batches already signed depend on it). */
static const char *const fields[] = {
    /* household */
    "id", "rev", "source", "prov", "kab", "kec", "desa", "sls", "address", "head_name", "kk",
    "member_count", "tenure", "floor_area", "floor_material", "wall_material", "roof_material",
    "rooms", "water_source", "lighting", "power_va", "cooking_fuel", "toilet", "asset_flags",
    "cattle", "goats", "pigs", "poultry", "land_m2", "desil", "percentile", "lat", "lon", "status",
    /* member */
    "household_id", "member_no", "name", "nik", "sex", "birth_place", "birth_date", "relationship",
    "marital", "disability", "chronic_illness", "schooling", "work", "programmes", "outcome",
    /* visit */
    "visited_at", "enumerator_pk", "accuracy_m", "altitude_m", "fix_time", "provider", "mock",
    "notes", "warnings",
    /* photo */
    "hash", "visit_id", "kind", "size", "taken_at", "uploaded",
    /* keys seen in record objects */
    "reason", "member_id", "head", "members", "accuracy", "altitude"};

#define FIELD_ESCAPE 127u
#define TARGET_PHOTO 1u
#define MAX_PHOTO_SIZE (64u << 20)
#define MIN_OP_BYTES 7u /* tag, seq, hlc, target, field, two value types */
#define MIN_PHOTO_BYTES 33u

enum { V_NULL, V_INT, V_REAL64, V_REALDEC, V_TEXT, V_BLOB, V_JSON };
enum { J_NULL, J_TRUE, J_FALSE, J_INT, J_DEC, J_STR };

static int code_of(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return (int)i;
    return -1;
}

static int field_code_of(const uint8_t *s, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < PD_ARRAY_LEN(fields); i++)
        if (strlen(fields[i]) == len && !memcmp(fields[i], s, len))
            return (int)i + 1;
    return -1;
}

/* ---- Header --------------------------------------------------------------------------------- */

void pd_batch_header_encode(const pd_batch_header *h, uint8_t out[PD_BATCH_HEADER_BYTES])
{
    memset(out, 0, PD_BATCH_HEADER_BYTES);
    memcpy(out, PD_BATCH_MAGIC, 4);
    out[4] = h->version;
    out[5] = h->flags;
    pd_sync_put_u16(out + 6, PD_BATCH_HEADER_BYTES);
    memcpy(out + 8, h->author_pk, PD_PUBKEY_BYTES);
    memcpy(out + 40, h->device_id, strnlen(h->device_id, PD_BATCH_DEVICE_ID_MAX));
    memcpy(out + 64, h->area, strnlen(h->area, PD_BATCH_AREA_MAX));
    pd_sync_put_u64(out + 88, h->seq);
    memcpy(out + 96, h->prev_hash, PD_HASH_BYTES);
    pd_sync_put_u64(out + 128, (uint64_t)h->created_at);
    pd_sync_put_u32(out + 136, h->op_count);
    pd_sync_put_u32(out + 140, h->photo_count);
    pd_sync_put_u32(out + 144, h->payload_len);
    pd_sync_put_u32(out + 148, h->inflated_len);
    memcpy(out + 152, h->payload_hash, PD_HASH_BYTES);
}

static void header_decode(pd_batch_header *h, const uint8_t *in)
{
    memset(h, 0, sizeof *h);
    h->version = in[4];
    h->flags = in[5];
    memcpy(h->author_pk, in + 8, PD_PUBKEY_BYTES);
    memcpy(h->device_id, in + 40, PD_BATCH_DEVICE_ID_MAX);
    memcpy(h->area, in + 64, PD_BATCH_AREA_MAX);
    h->seq = pd_sync_get_u64(in + 88);
    memcpy(h->prev_hash, in + 96, PD_HASH_BYTES);
    h->created_at = (int64_t)pd_sync_get_u64(in + 128);
    h->op_count = pd_sync_get_u32(in + 136);
    h->photo_count = pd_sync_get_u32(in + 140);
    h->payload_len = pd_sync_get_u32(in + 144);
    h->inflated_len = pd_sync_get_u32(in + 148);
    memcpy(h->payload_hash, in + 152, PD_HASH_BYTES);
}

static bool is_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static bool device_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '_' || c == '-';
}

/* A fixed, NUL-padded text field: allowed characters, then only NULs. */
static bool padded_ok(const char *f, size_t width, bool (*ok)(char), size_t min)
{
    size_t n = strnlen(f, width);
    if (n < min)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!ok(f[i]))
            return false;
    for (size_t i = n; i < width; i++)
        if (f[i])
            return false;
    return true;
}

static bool area_char(char c)
{
    return (c >= '0' && c <= '9') || c == '.';
}

/* Steps 1-3 of the verifier: what can be checked without trusting anything. */
static int parse_prefix(pd_batch_header *h, const uint8_t *bytes, size_t len, pd_error *err)
{
    if (!bytes)
        return pd_error_set(err, PD_ERR_INVALID, "batch: no bytes given");
    if (len < PD_BATCH_PREFIX_BYTES)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "batch is truncated: %zu bytes, a batch has at least %d", len,
                            PD_BATCH_PREFIX_BYTES);
    if (memcmp(bytes, PD_BATCH_MAGIC, 4) != 0)
        return pd_error_set(err, PD_ERR_CORRUPT, "not a pendata batch (magic is not PDB1)");
    if (bytes[4] != PD_BATCH_VERSION)
        return pd_error_set(err, PD_ERR_VERSION,
                            "batch format version %u; this pendata reads version %d", bytes[4],
                            PD_BATCH_VERSION);
    if (pd_sync_get_u16(bytes + 6) != PD_BATCH_HEADER_BYTES)
        return pd_error_set(err, PD_ERR_CORRUPT, "batch header size is %u, version 1 has %d",
                            pd_sync_get_u16(bytes + 6), PD_BATCH_HEADER_BYTES);
    header_decode(h, bytes);
    if (h->payload_len > PD_BATCH_MAX_PAYLOAD)
        return pd_error_set(err, PD_ERR_TOOBIG, "batch payload of %u bytes is over the %u limit",
                            h->payload_len, PD_BATCH_MAX_PAYLOAD);
    if (h->inflated_len > PD_BATCH_MAX_INFLATED)
        return pd_error_set(err, PD_ERR_TOOBIG,
                            "batch payload would inflate to %u bytes, over the %u limit",
                            h->inflated_len, PD_BATCH_MAX_INFLATED);
    if (h->inflated_len > 65536 &&
        (uint64_t)h->inflated_len > (uint64_t)h->payload_len * PD_BATCH_MAX_RATIO)
        return pd_error_set(err, PD_ERR_TOOBIG,
                            "batch payload would inflate %u bytes to %u, over the %u:1 ratio limit",
                            h->payload_len, h->inflated_len, PD_BATCH_MAX_RATIO);
    if (h->op_count > PD_BATCH_MAX_OPS)
        return pd_error_set(err, PD_ERR_TOOBIG, "batch has %u ops, over the %u limit", h->op_count,
                            PD_BATCH_MAX_OPS);
    if (h->photo_count > PD_BATCH_MAX_PHOTOS)
        return pd_error_set(err, PD_ERR_TOOBIG, "batch names %u photos, over the %u limit",
                            h->photo_count, PD_BATCH_MAX_PHOTOS);
    if (len - PD_BATCH_PREFIX_BYTES != h->payload_len)
        return pd_error_set(err, PD_ERR_CORRUPT, "batch is %zu bytes but its header says %u (%s)",
                            len, PD_BATCH_PREFIX_BYTES + h->payload_len,
                            len - PD_BATCH_PREFIX_BYTES < h->payload_len ? "truncated"
                                                                         : "trailing bytes");
    return PD_OK;
}

/* Step 6: the signed header must make sense. */
static int check_header(const pd_batch_header *h, pd_error *err)
{
    if (h->flags & ~PD_BATCH_FLAG_AMENDS)
        return pd_error_set(err, PD_ERR_CORRUPT, "batch header has unknown flags 0x%02x", h->flags);
    if (!padded_ok(h->device_id, PD_BATCH_DEVICE_ID_MAX, device_char, 1))
        return pd_error_set(err, PD_ERR_CORRUPT, "batch header: malformed device id");
    if (!padded_ok(h->area, PD_BATCH_AREA_MAX, area_char, 0))
        return pd_error_set(err, PD_ERR_CORRUPT, "batch header: malformed area code");
    if (h->seq == 0 || h->seq > (uint64_t)INT64_MAX)
        return pd_error_set(err, PD_ERR_CORRUPT, "batch header: sequence number %llu is invalid",
                            (unsigned long long)h->seq);
    if (h->seq == 1 && !is_zero(h->prev_hash, PD_HASH_BYTES))
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "batch header: the first batch must have a zero previous hash");
    if (h->seq > 1 && is_zero(h->prev_hash, PD_HASH_BYTES))
        return pd_error_set(err, PD_ERR_CORRUPT, "batch header: batch %llu has no previous hash",
                            (unsigned long long)h->seq);
    uint64_t min =
        2 + (uint64_t)h->photo_count * MIN_PHOTO_BYTES + (uint64_t)h->op_count * MIN_OP_BYTES;
    if (min > h->inflated_len)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "batch header: %u ops and %u photos cannot fit in %u bytes",
                            h->op_count, h->photo_count, h->inflated_len);
    return PD_OK;
}

/* ---- Numbers as decimals ------------------------------------------------------------------------
 */

/* m * 10^-scale as the nearest double (locale-independent: no radix character involved). */
static double dec_to_real(int64_t m, unsigned scale)
{
    char buf[48];
    snprintf(buf, sizeof buf, "%llde-%u", (long long)m, scale);
    return strtod(buf, NULL);
}

/* Find (m, scale) with dec_to_real(m, scale) bit-identical to d and few digits. */
static bool real_to_dec(double d, int64_t *m_out, unsigned *scale_out)
{
    if (!isfinite(d))
        return false;
    for (int p = 1; p <= 17; p++) {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*e", p - 1, d);
        const char *s = tmp;
        bool neg = false;
        if (*s == '-') {
            neg = true;
            s++;
        }
        int64_t m = 0;
        int digits = 0;
        for (; *s && *s != 'e'; s++) {
            if (*s >= '0' && *s <= '9') {
                m = m * 10 + (*s - '0');
                digits++;
            }
        }
        if (*s != 'e' || digits != p)
            return false;
        long e = strtol(s + 1, NULL, 10);
        long scale = (p - 1) - e;
        while (scale < 0) {
            if (m > 100000000000000000LL / 10)
                break;
            m *= 10;
            scale++;
        }
        if (scale < 0)
            continue;
        if (scale > 30)
            return false;
        if (neg)
            m = -m;
        double back = dec_to_real(m, (unsigned)scale);
        if (memcmp(&back, &d, sizeof d) == 0) {
            *m_out = m;
            *scale_out = (unsigned)scale;
            return true;
        }
    }
    return false;
}

static size_t varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint64_t zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* ---- Flat JSON objects: parse, write back -------------------------------------------------------
 */

typedef struct jmember {
    const uint8_t *key; /* raw bytes between the quotes */
    size_t key_len;
    int type;         /* J_* */
    int64_t i;        /* J_INT, J_DEC mantissa */
    unsigned scale;   /* J_DEC */
    const uint8_t *s; /* J_STR: raw bytes between the quotes */
    size_t s_len;
} jmember;

/* The body of a JSON string starting after the opening quote: returns its length up to the
 * closing quote, or -1 if it is not a well-formed string. */
static long json_string_len(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c == '"')
            return (long)i;
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (i + 1 >= len)
                return -1;
            uint8_t e = p[i + 1];
            if (e == 'u') {
                if (i + 6 > len)
                    return -1;
                for (size_t k = 2; k < 6; k++) {
                    uint8_t h = p[i + k];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F')))
                        return -1;
                }
                i += 6;
                continue;
            }
            if (!strchr("\"\\/bfnrt", e) || e == 0)
                return -1;
            i += 2;
            continue;
        }
        i++;
    }
    return -1;
}

/* Is p[0..len) the inside of a JSON string (no closing quote in it, all escapes complete)? */
static bool json_body_ok(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c == '"' || c < 0x20)
            return false;
        if (c == '\\') {
            if (i + 1 >= len)
                return false;
            uint8_t e = p[i + 1];
            if (e == 'u') {
                if (i + 6 > len)
                    return false;
                for (size_t k = 2; k < 6; k++) {
                    uint8_t h = p[i + k];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F')))
                        return false;
                }
                i += 6;
                continue;
            }
            if (e == 0 || !strchr("\"\\/bfnrt", e))
                return false;
            i += 2;
            continue;
        }
        i++;
    }
    return true;
}

/* A number token: -?(0|[1-9][0-9]*)(\.[0-9]+)? with at most 18 digits in all. */
static bool json_number(const uint8_t *p, size_t len, size_t *used, jmember *m)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && p[i] == '-') {
        neg = true;
        i++;
    }
    size_t start = i;
    int64_t v = 0;
    int digits = 0;
    while (i < len && p[i] >= '0' && p[i] <= '9') {
        if (++digits > 18)
            return false;
        v = v * 10 + (p[i] - '0');
        i++;
    }
    if (i == start)
        return false;
    unsigned scale = 0;
    if (i < len && p[i] == '.') {
        i++;
        size_t fs = i;
        while (i < len && p[i] >= '0' && p[i] <= '9') {
            if (++digits > 18)
                return false;
            v = v * 10 + (p[i] - '0');
            i++;
        }
        if (i == fs)
            return false;
        scale = (unsigned)(i - fs);
    }
    if (i < len && (p[i] == 'e' || p[i] == 'E'))
        return false;
    m->type = scale ? J_DEC : J_INT;
    m->i = neg ? -v : v;
    m->scale = scale;
    *used = i;
    return true;
}

/* Parse a flat object with no whitespace; false for anything else (the caller then sends the
 * text as it is). */
static bool json_parse_flat(const uint8_t *p, size_t len, jmember *out, size_t *count)
{
    size_t i = 0, n = 0;
    if (len < 2 || p[0] != '{')
        return false;
    i = 1;
    if (p[i] == '}') {
        *count = 0;
        return i + 1 == len;
    }
    for (;;) {
        if (n >= PD_BATCH_MAX_JSON_FIELDS)
            return false;
        jmember *m = &out[n];
        memset(m, 0, sizeof *m);
        if (i >= len || p[i] != '"')
            return false;
        long kl = json_string_len(p + i + 1, len - i - 1);
        if (kl < 0)
            return false;
        m->key = p + i + 1;
        m->key_len = (size_t)kl;
        i += (size_t)kl + 2;
        if (i >= len || p[i] != ':')
            return false;
        i++;
        if (i >= len)
            return false;
        if (p[i] == '"') {
            long sl = json_string_len(p + i + 1, len - i - 1);
            if (sl < 0)
                return false;
            m->type = J_STR;
            m->s = p + i + 1;
            m->s_len = (size_t)sl;
            i += (size_t)sl + 2;
        } else if (len - i >= 4 && !memcmp(p + i, "null", 4)) {
            m->type = J_NULL;
            i += 4;
        } else if (len - i >= 4 && !memcmp(p + i, "true", 4)) {
            m->type = J_TRUE;
            i += 4;
        } else if (len - i >= 5 && !memcmp(p + i, "false", 5)) {
            m->type = J_FALSE;
            i += 5;
        } else {
            size_t used;
            if (!json_number(p + i, len - i, &used, m))
                return false;
            i += used;
        }
        n++;
        if (i >= len)
            return false;
        if (p[i] == '}') {
            *count = n;
            return i + 1 == len;
        }
        if (p[i] != ',')
            return false;
        i++;
    }
}

static void json_write_dec(pd_sbuf *b, int64_t m, unsigned scale)
{
    char digits[32];
    uint64_t a = m < 0 ? (uint64_t)0 - (uint64_t)m : (uint64_t)m;
    int n = snprintf(digits, sizeof digits, "%llu", (unsigned long long)a);
    if (m < 0)
        pd_sbuf_byte(b, '-');
    if ((unsigned)n <= scale) {
        pd_sbuf_str(b, "0.");
        for (unsigned k = (unsigned)n; k < scale; k++)
            pd_sbuf_byte(b, '0');
        pd_sbuf_put(b, digits, (size_t)n);
    } else {
        pd_sbuf_put(b, digits, (size_t)n - scale);
        pd_sbuf_byte(b, '.');
        pd_sbuf_put(b, digits + n - scale, scale);
    }
}

static void json_write(pd_sbuf *b, const jmember *m, size_t n)
{
    pd_sbuf_byte(b, '{');
    for (size_t k = 0; k < n; k++) {
        if (k)
            pd_sbuf_byte(b, ',');
        pd_sbuf_byte(b, '"');
        pd_sbuf_put(b, m[k].key, m[k].key_len);
        pd_sbuf_str(b, "\":");
        switch (m[k].type) {
        case J_NULL:
            pd_sbuf_str(b, "null");
            break;
        case J_TRUE:
            pd_sbuf_str(b, "true");
            break;
        case J_FALSE:
            pd_sbuf_str(b, "false");
            break;
        case J_INT:
            pd_sbuf_printf(b, "%lld", (long long)m[k].i);
            break;
        case J_DEC:
            json_write_dec(b, m[k].i, m[k].scale);
            break;
        default:
            pd_sbuf_byte(b, '"');
            pd_sbuf_put(b, m[k].s, m[k].s_len);
            pd_sbuf_byte(b, '"');
        }
    }
    pd_sbuf_byte(b, '}');
}

/* ---- Encoder ------------------------------------------------------------------------------------
 */

struct photo_key {
    uint8_t hash[PD_HASH_BYTES];
    size_t idx;
};

typedef struct enc_str {
    const uint8_t *p;
    size_t len;
} enc_str;

typedef struct enc {
    pd_sbuf out;
    enc_str *strs; /* the string table, in order of first use */
    size_t nstrs, strcap;
    uint32_t *slots; /* open addressing: string index + 1, 0 empty */
    size_t nslots;
    const pd_batch_photo *photos;
    size_t nphotos;
    struct photo_key *photo_order; /* photos sorted by hash, for target lookup */
    jmember *jm;                   /* scratch for JSON objects */
    pd_sbuf scratch;
    pd_error *err;
} enc;

static uint64_t str_hash(const uint8_t *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static bool enc_rehash(enc *e, size_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return false;
    for (size_t k = 0; k < e->nstrs; k++) {
        size_t h = (size_t)str_hash(e->strs[k].p, e->strs[k].len) & (nslots - 1);
        while (slots[h])
            h = (h + 1) & (nslots - 1);
        slots[h] = (uint32_t)k + 1;
    }
    free(e->slots);
    e->slots = slots;
    e->nslots = nslots;
    return true;
}

/* Write a string ref with the given base (1 for plain refs, 2 for targets). */
static int enc_strref(enc *e, const uint8_t *p, size_t len, unsigned base)
{
    if (len > PD_BATCH_MAX_STRING)
        return PD_ERR_TOOBIG;
    if (e->nslots == 0 && !enc_rehash(e, 1024))
        return PD_ERR_NOMEM;
    size_t h = (size_t)str_hash(p, len) & (e->nslots - 1);
    while (e->slots[h]) {
        const enc_str *s = &e->strs[e->slots[h] - 1];
        if (s->len == len && (len == 0 || !memcmp(s->p, p, len))) {
            pd_sbuf_varint(&e->out, (uint64_t)(e->slots[h] - 1) + base);
            return PD_OK;
        }
        h = (h + 1) & (e->nslots - 1);
    }
    if (e->nstrs == e->strcap) {
        size_t cap = e->strcap ? e->strcap * 2 : 256;
        enc_str *ns = realloc(e->strs, cap * sizeof *ns);
        if (!ns)
            return PD_ERR_NOMEM;
        e->strs = ns;
        e->strcap = cap;
    }
    e->strs[e->nstrs].p = p;
    e->strs[e->nstrs].len = len;
    e->nstrs++;
    e->slots[h] = (uint32_t)e->nstrs;
    if (e->nstrs * 2 > e->nslots && !enc_rehash(e, e->nslots * 2))
        return PD_ERR_NOMEM;
    pd_sbuf_varint(&e->out, 0);
    pd_sbuf_varint(&e->out, len);
    pd_sbuf_put(&e->out, p, len);
    return PD_OK;
}

static int enc_field(enc *e, const uint8_t *name, size_t len)
{
    int code = field_code_of(name, len);
    if (code >= 0) {
        pd_sbuf_varint(&e->out, (uint64_t)code);
        return PD_OK;
    }
    pd_sbuf_varint(&e->out, FIELD_ESCAPE);
    return enc_strref(e, name, len, 1);
}

static int cmp_photo_key(const void *a, const void *b)
{
    return memcmp(((const struct photo_key *)a)->hash, ((const struct photo_key *)b)->hash,
                  PD_HASH_BYTES);
}

/* The index of the photo whose lowercase hex is `target`, or -1. */
static long photo_index(const enc *e, const char *target)
{
    uint8_t h[PD_HASH_BYTES];
    if (e->nphotos == 0 || strlen(target) != 2 * PD_HASH_BYTES)
        return -1;
    for (const char *c = target; *c; c++)
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f')))
            return -1;
    if (pd_sync_unhex(h, PD_HASH_BYTES, target) != 0)
        return -1;
    size_t lo = 0, hi = e->nphotos;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp(e->photo_order[mid].hash, h, PD_HASH_BYTES);
        if (c == 0)
            return (long)e->photo_order[mid].idx;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* Try the JSON transcoding of a text value; false if it would not write back exactly. */
static int enc_json(enc *e, const uint8_t *p, size_t len, bool *done)
{
    size_t n = 0;
    *done = false;
    if (len < 2 || p[0] != '{' || !json_parse_flat(p, len, e->jm, &n))
        return PD_OK;
    e->scratch.len = 0;
    e->scratch.failed = PD_OK;
    json_write(&e->scratch, e->jm, n);
    if (e->scratch.failed)
        return e->scratch.failed;
    if (e->scratch.len != len || memcmp(e->scratch.p, p, len) != 0)
        return PD_OK;
    pd_sbuf_byte(&e->out, V_JSON);
    pd_sbuf_varint(&e->out, n);
    for (size_t k = 0; k < n; k++) {
        const jmember *m = &e->jm[k];
        int rc = enc_field(e, m->key, m->key_len);
        if (rc)
            return rc;
        switch (m->type) {
        case J_INT:
            pd_sbuf_byte(&e->out, J_INT);
            pd_sbuf_svarint(&e->out, m->i);
            break;
        case J_DEC:
            pd_sbuf_byte(&e->out, J_DEC);
            pd_sbuf_byte(&e->out, (uint8_t)m->scale);
            pd_sbuf_svarint(&e->out, m->i);
            break;
        case J_STR:
            pd_sbuf_byte(&e->out, J_STR);
            rc = enc_strref(e, m->s, m->s_len, 1);
            if (rc)
                return rc;
            break;
        default:
            pd_sbuf_byte(&e->out, (uint8_t)m->type);
        }
    }
    *done = true;
    return PD_OK;
}

static int enc_value(enc *e, const pd_value *v, size_t op, const char *which)
{
    int64_t m;
    unsigned scale;
    switch (v->type) {
    case PD_VAL_NULL:
        pd_sbuf_byte(&e->out, V_NULL);
        return PD_OK;
    case PD_VAL_INT:
        pd_sbuf_byte(&e->out, V_INT);
        pd_sbuf_svarint(&e->out, v->i);
        return PD_OK;
    case PD_VAL_REAL:
        if (real_to_dec(v->r, &m, &scale) && 2 + varint_len(zigzag(m)) < 9) {
            pd_sbuf_byte(&e->out, V_REALDEC);
            pd_sbuf_byte(&e->out, (uint8_t)scale);
            pd_sbuf_svarint(&e->out, m);
        } else {
            uint64_t bits;
            memcpy(&bits, &v->r, sizeof bits);
            pd_sbuf_byte(&e->out, V_REAL64);
            pd_sbuf_u64(&e->out, bits);
        }
        return PD_OK;
    case PD_VAL_TEXT:
    case PD_VAL_BLOB:
        if (v->len > PD_BATCH_MAX_STRING)
            return pd_error_set(e->err, PD_ERR_TOOBIG,
                                "op %zu: %s value of %zu bytes is over the %u limit", op, which,
                                v->len, PD_BATCH_MAX_STRING);
        if (v->len && !v->p)
            return pd_error_set(e->err, PD_ERR_INVALID, "op %zu: %s value has no bytes", op, which);
        if (v->type == PD_VAL_BLOB) {
            pd_sbuf_byte(&e->out, V_BLOB);
            pd_sbuf_varint(&e->out, v->len);
            pd_sbuf_put(&e->out, v->p, v->len);
            return PD_OK;
        } else {
            bool done;
            int rc = enc_json(e, v->p, v->len, &done);
            if (rc == PD_OK && !done) {
                pd_sbuf_byte(&e->out, V_TEXT);
                rc = enc_strref(e, v->len ? v->p : (const uint8_t *)"", v->len, 1);
            }
            if (rc)
                return pd_error_set(e->err, rc, "op %zu: %s value: %s", op, which, pd_strerror(rc));
            return PD_OK;
        }
    }
    return pd_error_set(e->err, PD_ERR_INVALID, "op %zu: %s value has unknown type %d", op, which,
                        (int)v->type);
}

static bool cstr_ok(const char *s, size_t *len)
{
    if (!s)
        return false;
    *len = strnlen(s, PD_BATCH_MAX_STRING + 1);
    return *len <= PD_BATCH_MAX_STRING;
}

static int enc_op(enc *e, const pd_op *op, size_t i, const pd_op *prev, const char *device_id)
{
    int k = op->kind ? code_of(kinds, PD_ARRAY_LEN(kinds), op->kind) : -1;
    int en = op->entity ? code_of(entities, PD_ARRAY_LEN(entities), op->entity) : -1;
    if (k < 0)
        return pd_error_set(e->err, PD_ERR_INVALID, "op %zu (seq %lld): unknown kind \"%s\"", i,
                            (long long)op->seq, op->kind ? op->kind : "(null)");
    if (en < 0)
        return pd_error_set(e->err, PD_ERR_INVALID, "op %zu (seq %lld): unknown entity \"%s\"", i,
                            (long long)op->seq, op->entity ? op->entity : "(null)");
    size_t tlen, flen = 0, dlen = 0;
    if (!cstr_ok(op->target, &tlen) || tlen == 0)
        return pd_error_set(e->err, PD_ERR_INVALID,
                            "op %zu (seq %lld): missing or oversized target", i,
                            (long long)op->seq);
    const char *field = op->field ? op->field : "";
    if (!cstr_ok(field, &flen))
        return pd_error_set(e->err, PD_ERR_INVALID, "op %zu (seq %lld): oversized field name", i,
                            (long long)op->seq);
    bool other_device = op->device_id && strcmp(op->device_id, device_id) != 0;
    if (other_device && (!cstr_ok(op->device_id, &dlen) || dlen == 0))
        return pd_error_set(e->err, PD_ERR_INVALID, "op %zu (seq %lld): malformed device id", i,
                            (long long)op->seq);
    if (op->seq < 1 || (prev && op->seq <= prev->seq))
        return pd_error_set(e->err, PD_ERR_INVALID,
                            "op %zu: seq %lld does not follow %lld (ops must be in strictly "
                            "increasing seq order, from 1)",
                            i, (long long)op->seq, prev ? (long long)prev->seq : 0LL);
    if (op->base_rev < 0)
        return pd_error_set(e->err, PD_ERR_INVALID, "op %zu (seq %lld): negative base_rev", i,
                            (long long)op->seq);
    uint8_t tag = (uint8_t)(k | en << 3 | (other_device ? 0x20 : 0) | (op->base_rev ? 0x40 : 0));
    pd_sbuf_byte(&e->out, tag);
    pd_sbuf_varint(&e->out, (uint64_t)op->seq - (prev ? (uint64_t)prev->seq : 0));
    pd_sbuf_svarint(&e->out, (int64_t)((uint64_t)op->hlc - (prev ? (uint64_t)prev->hlc : 0)));
    long ph = photo_index(e, op->target);
    int rc;
    if (ph >= 0) {
        pd_sbuf_varint(&e->out, TARGET_PHOTO);
        pd_sbuf_varint(&e->out, (uint64_t)ph);
        rc = PD_OK;
    } else {
        rc = enc_strref(e, (const uint8_t *)op->target, tlen, 2);
    }
    if (rc == PD_OK)
        rc = enc_field(e, (const uint8_t *)field, flen);
    if (rc)
        return pd_error_set(e->err, rc, "op %zu (seq %lld): %s", i, (long long)op->seq,
                            pd_strerror(rc));
    if ((rc = enc_value(e, &op->old_value, i, "old")) != PD_OK)
        return rc;
    if ((rc = enc_value(e, &op->new_value, i, "new")) != PD_OK)
        return rc;
    if (other_device && (rc = enc_strref(e, (const uint8_t *)op->device_id, dlen, 1)) != PD_OK)
        return pd_error_set(e->err, rc, "op %zu: device id: %s", i, pd_strerror(rc));
    if (op->base_rev)
        pd_sbuf_varint(&e->out, (uint64_t)op->base_rev);
    return PD_OK;
}

static int check_params(const pd_batch_params *p, size_t op_count, size_t photo_count,
                        pd_error *err)
{
    if (!p || !p->device_id)
        return pd_error_set(err, PD_ERR_INVALID, "batch: no device id");
    size_t dl = strlen(p->device_id);
    if (dl == 0 || dl > PD_BATCH_DEVICE_ID_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "batch: device id must be 1..%d characters",
                            PD_BATCH_DEVICE_ID_MAX);
    for (size_t i = 0; i < dl; i++)
        if (!device_char(p->device_id[i]))
            return pd_error_set(err, PD_ERR_INVALID,
                                "batch: device id \"%s\" has a character outside [0-9A-Za-z._-]",
                                p->device_id);
    const char *area = p->area ? p->area : "";
    size_t al = strlen(area);
    if (al > PD_BATCH_AREA_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "batch: area code \"%s\" is over %d characters",
                            area, PD_BATCH_AREA_MAX);
    for (size_t i = 0; i < al; i++)
        if (!area_char(area[i]))
            return pd_error_set(err, PD_ERR_INVALID, "batch: area code \"%s\" is not dotted digits",
                                area);
    if (p->seq == 0 || p->seq > (uint64_t)INT64_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "batch: sequence number must be >= 1");
    bool zero_prev = !p->prev_hash || is_zero(p->prev_hash, PD_HASH_BYTES);
    if (p->seq == 1 && !zero_prev)
        return pd_error_set(err, PD_ERR_INVALID, "batch 1 cannot have a previous hash");
    if (p->seq > 1 && zero_prev)
        return pd_error_set(err, PD_ERR_INVALID, "batch %llu needs the previous batch's hash",
                            (unsigned long long)p->seq);
    if (p->flags & ~PD_BATCH_FLAG_AMENDS)
        return pd_error_set(err, PD_ERR_INVALID, "batch: unknown flags 0x%02x", p->flags);
    if (op_count > PD_BATCH_MAX_OPS)
        return pd_error_set(err, PD_ERR_TOOBIG, "batch: %zu ops, over the %u limit", op_count,
                            PD_BATCH_MAX_OPS);
    if (photo_count > PD_BATCH_MAX_PHOTOS)
        return pd_error_set(err, PD_ERR_TOOBIG, "batch: %zu photos, over the %u limit", photo_count,
                            PD_BATCH_MAX_PHOTOS);
    return PD_OK;
}

int pd_batch_wrap(uint8_t **out, size_t *out_len, pd_batch_header *h, const uint8_t *payload,
                  size_t payload_len, const uint8_t sk[PD_SECKEY_BYTES], pd_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (payload_len > UINT32_MAX)
        return pd_error_set(err, PD_ERR_TOOBIG, "batch payload over 4 GiB");
    crypto_sign_ed25519_sk_to_pk(h->author_pk, sk);
    h->payload_len = (uint32_t)payload_len;
    crypto_generichash(h->payload_hash, PD_HASH_BYTES, payload, payload_len, NULL, 0);
    size_t total = PD_BATCH_PREFIX_BYTES + payload_len;
    uint8_t *b = malloc(total);
    if (!b)
        return pd_error_set(err, PD_ERR_NOMEM, "batch: out of memory for %zu bytes", total);
    pd_batch_header_encode(h, b);
    crypto_sign_detached(b + PD_BATCH_HEADER_BYTES, NULL, b, PD_BATCH_HEADER_BYTES, sk);
    if (payload_len)
        memcpy(b + PD_BATCH_PREFIX_BYTES, payload, payload_len);
    *out = b;
    *out_len = total;
    return PD_OK;
}

int pd_batch_build(uint8_t **out, size_t *out_len, const pd_batch_params *params, const pd_op *ops,
                   size_t op_count, const pd_batch_photo *photos, size_t photo_count,
                   const uint8_t author_sk[PD_SECKEY_BYTES], pd_error *err)
{
    if (!out || !out_len || !author_sk || (op_count && !ops) || (photo_count && !photos))
        return pd_error_set(err, PD_ERR_INVALID, "pd_batch_build: missing argument");
    *out = NULL;
    *out_len = 0;
    int rc = check_params(params, op_count, photo_count, err);
    if (rc)
        return rc;
    enc e = {.out = {.max = PD_BATCH_MAX_INFLATED},
             .scratch = {.max = PD_BATCH_MAX_STRING},
             .photos = photos,
             .nphotos = photo_count,
             .err = err};
    uint8_t *z = NULL;
    size_t zlen = 0;
    e.jm = calloc(PD_BATCH_MAX_JSON_FIELDS, sizeof *e.jm);
    e.photo_order = calloc(photo_count ? photo_count : 1, sizeof *e.photo_order);
    if (!e.jm || !e.photo_order) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "batch: out of memory");
        goto out;
    }
    for (size_t i = 0; i < photo_count; i++) {
        memcpy(e.photo_order[i].hash, photos[i].hash, PD_HASH_BYTES);
        e.photo_order[i].idx = i;
    }
    qsort(e.photo_order, photo_count, sizeof *e.photo_order, cmp_photo_key);
    for (size_t i = 1; i < photo_count; i++)
        if (!memcmp(e.photo_order[i].hash, e.photo_order[i - 1].hash, PD_HASH_BYTES)) {
            rc = pd_error_set(err, PD_ERR_INVALID, "batch: photo %zu is listed twice",
                              e.photo_order[i].idx);
            goto out;
        }

    pd_sbuf_varint(&e.out, photo_count);
    for (size_t i = 0; i < photo_count; i++) {
        if (photos[i].size > MAX_PHOTO_SIZE) {
            rc = pd_error_set(err, PD_ERR_TOOBIG, "batch: photo %zu of %llu bytes is over %u", i,
                              (unsigned long long)photos[i].size, MAX_PHOTO_SIZE);
            goto out;
        }
        pd_sbuf_put(&e.out, photos[i].hash, PD_HASH_BYTES);
        pd_sbuf_varint(&e.out, photos[i].size);
    }
    pd_sbuf_varint(&e.out, op_count);
    for (size_t i = 0; i < op_count; i++) {
        rc = enc_op(&e, &ops[i], i, i ? &ops[i - 1] : NULL, params->device_id);
        if (rc)
            goto out;
        if (e.out.failed)
            break;
    }
    if (e.out.failed) {
        rc = e.out.failed == PD_ERR_TOOBIG
                 ? pd_error_set(err, PD_ERR_TOOBIG,
                                "batch: the ops encode to more than %u bytes: seal fewer at once",
                                PD_BATCH_MAX_INFLATED)
                 : pd_error_set(err, e.out.failed, "batch: %s", pd_strerror(e.out.failed));
        goto out;
    }
    rc = pd_sync_deflate_raw(&z, &zlen, e.out.p, e.out.len);
    if (rc) {
        pd_error_set(err, rc, "batch: deflate failed");
        goto out;
    }
    if (zlen > PD_BATCH_MAX_PAYLOAD ||
        (e.out.len > 65536 && (uint64_t)e.out.len > (uint64_t)zlen * PD_BATCH_MAX_RATIO)) {
        rc = pd_error_set(err, PD_ERR_TOOBIG,
                          "batch: payload of %zu bytes (%zu compressed) is over the limits",
                          e.out.len, zlen);
        goto out;
    }
    pd_batch_header h = {.version = PD_BATCH_VERSION,
                         .flags = params->flags,
                         .seq = params->seq,
                         .created_at = params->created_at,
                         .op_count = (uint32_t)op_count,
                         .photo_count = (uint32_t)photo_count,
                         .inflated_len = (uint32_t)e.out.len};
    memcpy(h.device_id, params->device_id, strlen(params->device_id));
    if (params->area)
        memcpy(h.area, params->area, strlen(params->area));
    if (params->prev_hash)
        memcpy(h.prev_hash, params->prev_hash, PD_HASH_BYTES);
    rc = pd_batch_wrap(out, out_len, &h, z, zlen, author_sk, err);
out:
    free(z);
    free(e.jm);
    free(e.photo_order);
    free(e.strs);
    free(e.slots);
    pd_sbuf_free(&e.out);
    pd_sbuf_free(&e.scratch);
    return rc;
}

/* ---- Decoder ------------------------------------------------------------------------------------
 */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    uint8_t data[];
} arena_block;

typedef struct dec_str {
    const char *s; /* NUL-terminated copy in the arena */
    size_t len;
} dec_str;

struct pd_batch {
    pd_batch_header h;
    uint8_t hash[PD_HASH_BYTES];
    uint8_t *inflated;
    pd_op *ops;
    size_t op_count;
    pd_batch_photo *photos;
    size_t photo_count;
    char **photo_hex; /* lazily made hex of each photo hash, for photo targets */
    arena_block *arena;
    size_t arena_total;
};

typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
} rd;

typedef struct dec {
    pd_batch *b;
    rd r;
    dec_str *strs;
    size_t nstrs, strcap;
    jmember *jm;
    pd_sbuf scratch;
    pd_error *err;
    size_t op; /* op being decoded, for messages */
} dec;

static void *arena_alloc(pd_batch *b, size_t n, int *why)
{
    if (n > PD_BATCH_MAX_DECODED || b->arena_total > PD_BATCH_MAX_DECODED - n) {
        *why = PD_ERR_TOOBIG;
        return NULL;
    }
    arena_block *a = b->arena;
    if (!a || a->cap - a->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        a = malloc(sizeof *a + cap);
        if (!a) {
            *why = PD_ERR_NOMEM;
            return NULL;
        }
        a->next = b->arena;
        a->used = 0;
        a->cap = cap;
        b->arena = a;
    }
    void *p = a->data + a->used;
    a->used += n;
    b->arena_total += n;
    return p;
}

static bool rd_byte(rd *r, uint8_t *c)
{
    if (r->pos >= r->len)
        return false;
    *c = r->p[r->pos++];
    return true;
}

static bool rd_varint(rd *r, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70; shift += 7) {
        uint8_t c;
        if (!rd_byte(r, &c))
            return false;
        if (shift == 63 && c > 1)
            return false;
        x |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

static bool rd_svarint(rd *r, int64_t *v)
{
    uint64_t u;
    if (!rd_varint(r, &u))
        return false;
    *v = (int64_t)((u >> 1) ^ (0 - (u & 1)));
    return true;
}

static bool rd_bytes(rd *r, size_t n, const uint8_t **out)
{
    if (n > r->len - r->pos)
        return false;
    *out = r->p + r->pos;
    r->pos += n;
    return true;
}

static int dec_fail(dec *d, int code, const char *what)
{
    return pd_error_set(d->err, code, "batch %llu: payload op %zu: %s",
                        (unsigned long long)d->b->h.seq, d->op, what);
}

/* Read a string ref; base 1 (plain) or 2 (target, with 1 meaning a photo). */
static int dec_strref(dec *d, unsigned base, const char **s, size_t *len)
{
    uint64_t r;
    if (!rd_varint(&d->r, &r))
        return dec_fail(d, PD_ERR_CORRUPT, "truncated string reference");
    if (r == 0) {
        uint64_t n;
        const uint8_t *p;
        if (!rd_varint(&d->r, &n))
            return dec_fail(d, PD_ERR_CORRUPT, "truncated string length");
        if (n > PD_BATCH_MAX_STRING)
            return dec_fail(d, PD_ERR_CORRUPT, "string longer than the limit");
        if (!rd_bytes(&d->r, (size_t)n, &p))
            return dec_fail(d, PD_ERR_CORRUPT, "string runs past the payload");
        /* the table's own entries count against the decoding budget too */
        if (d->b->arena_total > PD_BATCH_MAX_DECODED - sizeof(dec_str))
            return dec_fail(d, PD_ERR_TOOBIG, "strings over the decoding limit");
        d->b->arena_total += sizeof(dec_str);
        if (d->nstrs == d->strcap) {
            size_t cap = d->strcap ? d->strcap * 2 : 256;
            dec_str *ns = realloc(d->strs, cap * sizeof *ns);
            if (!ns)
                return dec_fail(d, PD_ERR_NOMEM, "out of memory");
            d->strs = ns;
            d->strcap = cap;
        }
        int why = PD_OK;
        char *copy = arena_alloc(d->b, (size_t)n + 1, &why);
        if (!copy)
            return dec_fail(d, why, "strings over the decoding limit");
        if (n)
            memcpy(copy, p, (size_t)n);
        copy[n] = '\0';
        d->strs[d->nstrs].s = copy;
        d->strs[d->nstrs].len = (size_t)n;
        d->nstrs++;
        *s = copy;
        *len = (size_t)n;
        return PD_OK;
    }
    if (base == 2 && r == TARGET_PHOTO) {
        uint64_t k;
        if (!rd_varint(&d->r, &k) || k >= d->b->photo_count)
            return dec_fail(d, PD_ERR_CORRUPT, "target names a photo not in the photo list");
        if (!d->b->photo_hex[k]) {
            int why = PD_OK;
            char *hex = arena_alloc(d->b, 2 * PD_HASH_BYTES + 1, &why);
            if (!hex)
                return dec_fail(d, why, "strings over the decoding limit");
            pd_sync_hex(hex, d->b->photos[k].hash, PD_HASH_BYTES);
            d->b->photo_hex[k] = hex;
        }
        *s = d->b->photo_hex[k];
        *len = 2 * PD_HASH_BYTES;
        return PD_OK;
    }
    if (r < base || r - base >= d->nstrs)
        return dec_fail(d, PD_ERR_CORRUPT, "string reference past the table");
    *s = d->strs[r - base].s;
    *len = d->strs[r - base].len;
    return PD_OK;
}

/* A string used as a C string must hold no NUL. */
static int dec_cstr(dec *d, unsigned base, const char **s, const char *what)
{
    size_t len;
    int rc = dec_strref(d, base, s, &len);
    if (rc)
        return rc;
    if (memchr(*s, 0, len))
        return dec_fail(d, PD_ERR_CORRUPT, what);
    return PD_OK;
}

static int dec_field(dec *d, const char **name, size_t *len)
{
    uint64_t code;
    if (!rd_varint(&d->r, &code))
        return dec_fail(d, PD_ERR_CORRUPT, "truncated field code");
    if (code == 0) {
        *name = "";
        *len = 0;
        return PD_OK;
    }
    if (code <= PD_ARRAY_LEN(fields)) {
        *name = fields[code - 1];
        *len = strlen(*name);
        return PD_OK;
    }
    if (code != FIELD_ESCAPE)
        return dec_fail(d, PD_ERR_CORRUPT, "unknown field code");
    int rc = dec_strref(d, 1, name, len);
    if (rc)
        return rc;
    if (memchr(*name, 0, *len))
        return dec_fail(d, PD_ERR_CORRUPT, "field name holds a NUL byte");
    return PD_OK;
}

static int dec_json(dec *d, pd_value *v)
{
    uint64_t n;
    if (!rd_varint(&d->r, &n) || n > PD_BATCH_MAX_JSON_FIELDS)
        return dec_fail(d, PD_ERR_CORRUPT, "bad JSON member count");
    for (size_t k = 0; k < n; k++) {
        jmember *m = &d->jm[k];
        const char *key;
        int rc = dec_field(d, &key, &m->key_len);
        if (rc)
            return rc;
        m->key = (const uint8_t *)key;
        if (!json_body_ok(m->key, m->key_len))
            return dec_fail(d, PD_ERR_CORRUPT, "JSON key is not a valid JSON string");
        uint8_t t;
        if (!rd_byte(&d->r, &t))
            return dec_fail(d, PD_ERR_CORRUPT, "truncated JSON member");
        m->type = t;
        switch (t) {
        case J_NULL:
        case J_TRUE:
        case J_FALSE:
            break;
        case J_INT:
            if (!rd_svarint(&d->r, &m->i))
                return dec_fail(d, PD_ERR_CORRUPT, "truncated JSON integer");
            break;
        case J_DEC: {
            uint8_t sc;
            if (!rd_byte(&d->r, &sc) || sc < 1 || sc > 18 || !rd_svarint(&d->r, &m->i) ||
                m->i <= -1000000000000000000LL || m->i >= 1000000000000000000LL)
                return dec_fail(d, PD_ERR_CORRUPT, "bad JSON decimal");
            m->scale = sc;
            break;
        }
        case J_STR: {
            const char *s;
            rc = dec_strref(d, 1, &s, &m->s_len);
            if (rc)
                return rc;
            m->s = (const uint8_t *)s;
            if (!json_body_ok(m->s, m->s_len))
                return dec_fail(d, PD_ERR_CORRUPT, "JSON string is not valid JSON");
            break;
        }
        default:
            return dec_fail(d, PD_ERR_CORRUPT, "unknown JSON member type");
        }
    }
    d->scratch.len = 0;
    d->scratch.failed = PD_OK;
    json_write(&d->scratch, d->jm, (size_t)n);
    if (d->scratch.failed)
        return dec_fail(d, d->scratch.failed == PD_ERR_TOOBIG ? PD_ERR_TOOBIG : PD_ERR_NOMEM,
                        "JSON value over the size limit");
    int why = PD_OK;
    uint8_t *text = arena_alloc(d->b, d->scratch.len + 1, &why);
    if (!text)
        return dec_fail(d, why, "decoded text over the limit");
    memcpy(text, d->scratch.p, d->scratch.len);
    text[d->scratch.len] = 0;
    v->type = PD_VAL_TEXT;
    v->p = text;
    v->len = d->scratch.len;
    return PD_OK;
}

static int dec_value(dec *d, pd_value *v)
{
    uint8_t t;
    memset(v, 0, sizeof *v);
    if (!rd_byte(&d->r, &t))
        return dec_fail(d, PD_ERR_CORRUPT, "truncated value");
    switch (t) {
    case V_NULL:
        v->type = PD_VAL_NULL;
        return PD_OK;
    case V_INT:
        v->type = PD_VAL_INT;
        if (!rd_svarint(&d->r, &v->i))
            return dec_fail(d, PD_ERR_CORRUPT, "truncated integer");
        return PD_OK;
    case V_REAL64: {
        const uint8_t *p;
        if (!rd_bytes(&d->r, 8, &p))
            return dec_fail(d, PD_ERR_CORRUPT, "truncated real");
        uint64_t bits = pd_sync_get_u64(p);
        v->type = PD_VAL_REAL;
        memcpy(&v->r, &bits, sizeof v->r);
        return PD_OK;
    }
    case V_REALDEC: {
        uint8_t sc;
        int64_t m;
        if (!rd_byte(&d->r, &sc) || sc > 30 || !rd_svarint(&d->r, &m) ||
            m <= -1000000000000000000LL || m >= 1000000000000000000LL)
            return dec_fail(d, PD_ERR_CORRUPT, "bad decimal real");
        v->type = PD_VAL_REAL;
        v->r = dec_to_real(m, sc);
        return PD_OK;
    }
    case V_TEXT: {
        const char *s;
        size_t len;
        int rc = dec_strref(d, 1, &s, &len);
        if (rc)
            return rc;
        v->type = PD_VAL_TEXT;
        v->p = (const uint8_t *)s;
        v->len = len;
        return PD_OK;
    }
    case V_BLOB: {
        uint64_t n;
        const uint8_t *p;
        if (!rd_varint(&d->r, &n) || n > PD_BATCH_MAX_STRING || !rd_bytes(&d->r, (size_t)n, &p))
            return dec_fail(d, PD_ERR_CORRUPT, "bad blob");
        v->type = PD_VAL_BLOB;
        v->p = p;
        v->len = (size_t)n;
        return PD_OK;
    }
    case V_JSON:
        return dec_json(d, v);
    default:
        return dec_fail(d, PD_ERR_CORRUPT, "unknown value type");
    }
}

static int dec_op(dec *d, pd_op *op, const pd_op *prev)
{
    uint8_t tag;
    if (!rd_byte(&d->r, &tag))
        return dec_fail(d, PD_ERR_CORRUPT, "truncated op");
    if ((tag & 7) >= PD_ARRAY_LEN(kinds) || (tag & 0x80))
        return dec_fail(d, PD_ERR_CORRUPT, "unknown op kind");
    op->kind = kinds[tag & 7];
    op->entity = entities[(tag >> 3) & 3];
    uint64_t ds;
    if (!rd_varint(&d->r, &ds))
        return dec_fail(d, PD_ERR_CORRUPT, "truncated seq");
    uint64_t base = prev ? (uint64_t)prev->seq : 0;
    if (ds == 0 || ds > (uint64_t)INT64_MAX - base)
        return dec_fail(d, PD_ERR_CORRUPT, "op seq does not increase");
    op->seq = (int64_t)(base + ds);
    int64_t dh;
    if (!rd_svarint(&d->r, &dh))
        return dec_fail(d, PD_ERR_CORRUPT, "truncated hlc");
    op->hlc = (int64_t)((prev ? (uint64_t)prev->hlc : 0) + (uint64_t)dh);
    int rc = dec_cstr(d, 2, &op->target, "target holds a NUL byte");
    if (rc)
        return rc;
    if (!op->target[0])
        return dec_fail(d, PD_ERR_CORRUPT, "empty target");
    size_t flen;
    if ((rc = dec_field(d, &op->field, &flen)) != PD_OK)
        return rc;
    if ((rc = dec_value(d, &op->old_value)) != PD_OK)
        return rc;
    if ((rc = dec_value(d, &op->new_value)) != PD_OK)
        return rc;
    op->device_id = d->b->h.device_id;
    if (tag & 0x20) {
        if ((rc = dec_cstr(d, 1, &op->device_id, "device id holds a NUL byte")) != PD_OK)
            return rc;
        if (!op->device_id[0])
            return dec_fail(d, PD_ERR_CORRUPT, "empty device id");
    }
    op->base_rev = 0;
    if (tag & 0x40) {
        uint64_t br;
        if (!rd_varint(&d->r, &br) || br == 0 || br > (uint64_t)INT64_MAX)
            return dec_fail(d, PD_ERR_CORRUPT, "bad base_rev");
        op->base_rev = (int64_t)br;
    }
    return PD_OK;
}

static int cmp_photo(const void *a, const void *b)
{
    return memcmp(((const pd_batch_photo *)a)->hash, ((const pd_batch_photo *)b)->hash,
                  PD_HASH_BYTES);
}

static int decode_payload(pd_batch *b, pd_error *err)
{
    dec d = {.b = b,
             .r = {.p = b->inflated, .len = b->h.inflated_len},
             .scratch = {.max = PD_BATCH_MAX_STRING},
             .err = err};
    pd_batch_photo *sorted = NULL;
    int rc = PD_OK;
    uint64_t n;
    d.jm = calloc(PD_BATCH_MAX_JSON_FIELDS, sizeof *d.jm);
    if (!d.jm) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "batch: out of memory");
        goto out;
    }
    if (!rd_varint(&d.r, &n) || n != b->h.photo_count) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: photo count differs from the header",
                          (unsigned long long)b->h.seq);
        goto out;
    }
    b->photo_count = (size_t)n;
    b->photos = calloc(n ? (size_t)n : 1, sizeof *b->photos);
    b->photo_hex = calloc(n ? (size_t)n : 1, sizeof *b->photo_hex);
    sorted = calloc(n ? (size_t)n : 1, sizeof *sorted);
    if (!b->photos || !b->photo_hex || !sorted) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "batch: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *h;
        uint64_t size;
        if (!rd_bytes(&d.r, PD_HASH_BYTES, &h) || !rd_varint(&d.r, &size) ||
            size > MAX_PHOTO_SIZE) {
            rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: photo %zu is malformed",
                              (unsigned long long)b->h.seq, i);
            goto out;
        }
        memcpy(b->photos[i].hash, h, PD_HASH_BYTES);
        b->photos[i].size = size;
    }
    memcpy(sorted, b->photos, (size_t)n * sizeof *sorted);
    qsort(sorted, (size_t)n, sizeof *sorted, cmp_photo);
    for (size_t i = 1; i < n; i++)
        if (!memcmp(sorted[i].hash, sorted[i - 1].hash, PD_HASH_BYTES)) {
            rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: a photo is listed twice",
                              (unsigned long long)b->h.seq);
            goto out;
        }
    if (!rd_varint(&d.r, &n) || n != b->h.op_count) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: op count differs from the header",
                          (unsigned long long)b->h.seq);
        goto out;
    }
    b->ops = calloc(n ? (size_t)n : 1, sizeof *b->ops);
    if (!b->ops) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "batch: out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        d.op = i;
        rc = dec_op(&d, &b->ops[i], i ? &b->ops[i - 1] : NULL);
        if (rc)
            goto out;
    }
    b->op_count = (size_t)n;
    if (d.r.pos != d.r.len) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: %zu bytes after the last op",
                          (unsigned long long)b->h.seq, d.r.len - d.r.pos);
        goto out;
    }
out:
    free(sorted);
    free(d.jm);
    free(d.strs);
    pd_sbuf_free(&d.scratch);
    return rc;
}

/* Step 7: inflate into exactly inflated_len bytes, never more. */
static int inflate_payload(pd_batch *b, const uint8_t *payload, pd_error *err)
{
    size_t cap = b->h.inflated_len;
    b->inflated = malloc(cap ? cap : 1);
    if (!b->inflated)
        return pd_error_set(err, PD_ERR_NOMEM, "batch: out of memory for %zu bytes", cap);
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -15) != Z_OK)
        return pd_error_set(err, PD_ERR_NOMEM, "batch: inflate init failed");
    z.next_in = (Bytef *)(uintptr_t)payload;
    z.avail_in = b->h.payload_len;
    z.next_out = b->inflated;
    z.avail_out = (uInt)cap;
    int rc = PD_OK;
    for (;;) {
        int zrc = inflate(&z, Z_NO_FLUSH);
        if (zrc == Z_STREAM_END)
            break;
        if (zrc == Z_OK)
            continue;
        if (zrc == Z_BUF_ERROR && z.avail_out == 0) {
            /* The buffer is full: is that the end, or would it inflate further? */
            uint8_t one;
            z.next_out = &one;
            z.avail_out = 1;
            zrc = inflate(&z, Z_NO_FLUSH);
            if (zrc == Z_STREAM_END && z.avail_out == 1)
                break;
            if (z.avail_out == 0)
                rc = pd_error_set(err, PD_ERR_TOOBIG,
                                  "batch %llu: payload inflates past the %u bytes its header "
                                  "declares",
                                  (unsigned long long)b->h.seq, b->h.inflated_len);
            else
                rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: deflate stream is truncated",
                                  (unsigned long long)b->h.seq);
            goto out;
        }
        if (zrc == Z_BUF_ERROR)
            rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: deflate stream is truncated",
                              (unsigned long long)b->h.seq);
        else
            rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: payload does not inflate: %s",
                              (unsigned long long)b->h.seq, z.msg ? z.msg : "bad data");
        goto out;
    }
    if (z.total_out != cap)
        rc = pd_error_set(err, PD_ERR_CORRUPT,
                          "batch %llu: payload inflates to %lu bytes, its header declares %u",
                          (unsigned long long)b->h.seq, z.total_out, b->h.inflated_len);
    else if (z.avail_in != 0)
        rc = pd_error_set(err, PD_ERR_CORRUPT, "batch %llu: bytes after the deflate stream",
                          (unsigned long long)b->h.seq);
out:
    inflateEnd(&z);
    return rc;
}

int pd_batch_peek(pd_batch_header *hdr, uint8_t hash[PD_HASH_BYTES], const uint8_t *bytes,
                  size_t len, pd_error *err)
{
    pd_batch_header h;
    int rc = parse_prefix(&h, bytes, len, err);
    if (rc)
        return rc;
    if (hdr)
        *hdr = h;
    if (hash)
        crypto_generichash(hash, PD_HASH_BYTES, bytes, PD_BATCH_PREFIX_BYTES, NULL, 0);
    return PD_OK;
}

int pd_batch_verify(pd_batch **out, const uint8_t *bytes, size_t len,
                    const uint8_t author_pk[PD_PUBKEY_BYTES], pd_error *err)
{
    if (out)
        *out = NULL;
    if (!author_pk)
        return pd_error_set(err, PD_ERR_INVALID, "batch: no author key to verify with");
    pd_batch *b = calloc(1, sizeof *b);
    if (!b)
        return pd_error_set(err, PD_ERR_NOMEM, "batch: out of memory");
    int rc = parse_prefix(&b->h, bytes, len, err);
    if (rc)
        goto out;
    if (sodium_memcmp(b->h.author_pk, author_pk, PD_PUBKEY_BYTES) != 0) {
        char want[2 * PD_PUBKEY_BYTES + 1], got[2 * PD_PUBKEY_BYTES + 1];
        pd_sync_hex(want, author_pk, 8);
        pd_sync_hex(got, b->h.author_pk, 8);
        rc =
            pd_error_set(err, PD_ERR_SIGNATURE, "batch %llu names author key %s..., expected %s...",
                         (unsigned long long)b->h.seq, got, want);
        goto out;
    }
    if (crypto_sign_verify_detached(bytes + PD_BATCH_HEADER_BYTES, bytes, PD_BATCH_HEADER_BYTES,
                                    author_pk) != 0) {
        rc = pd_error_set(err, PD_ERR_SIGNATURE,
                          "batch %llu: the header's signature does not verify with the author's "
                          "key",
                          (unsigned long long)b->h.seq);
        goto out;
    }
    uint8_t ph[PD_HASH_BYTES];
    crypto_generichash(ph, PD_HASH_BYTES, bytes + PD_BATCH_PREFIX_BYTES, b->h.payload_len, NULL, 0);
    if (sodium_memcmp(ph, b->h.payload_hash, PD_HASH_BYTES) != 0) {
        rc = pd_error_set(err, PD_ERR_CORRUPT,
                          "batch %llu: the payload's hash does not match the signed header",
                          (unsigned long long)b->h.seq);
        goto out;
    }
    if ((rc = check_header(&b->h, err)) != PD_OK)
        goto out;
    crypto_generichash(b->hash, PD_HASH_BYTES, bytes, PD_BATCH_PREFIX_BYTES, NULL, 0);
    if ((rc = inflate_payload(b, bytes + PD_BATCH_PREFIX_BYTES, err)) != PD_OK)
        goto out;
    rc = decode_payload(b, err);
out:
    if (rc == PD_OK && out)
        *out = b;
    else
        pd_batch_free(b);
    return rc;
}

void pd_batch_free(pd_batch *b)
{
    if (!b)
        return;
    arena_block *a = b->arena;
    while (a) {
        arena_block *next = a->next;
        free(a);
        a = next;
    }
    free(b->inflated);
    free(b->ops);
    free(b->photos);
    free(b->photo_hex);
    free(b);
}

const pd_batch_header *pd_batch_header_get(const pd_batch *b)
{
    return &b->h;
}

const uint8_t *pd_batch_hash(const pd_batch *b)
{
    return b->hash;
}

const pd_op *pd_batch_ops(const pd_batch *b, size_t *count)
{
    if (count)
        *count = b->op_count;
    return b->ops;
}

const pd_batch_photo *pd_batch_photos(const pd_batch *b, size_t *count)
{
    if (count)
        *count = b->photo_count;
    return b->photos;
}

void pd_batch_payload_counts(const uint8_t *p, size_t len, uint32_t *photos, uint32_t *ops)
{
    rd r = {.p = p, .len = len};
    uint64_t n = 0, m = 0;
    *photos = *ops = 0;
    if (!rd_varint(&r, &n) || n > PD_BATCH_MAX_PHOTOS)
        return;
    *photos = (uint32_t)n;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *h;
        uint64_t size;
        if (!rd_bytes(&r, PD_HASH_BYTES, &h) || !rd_varint(&r, &size))
            return;
    }
    if (rd_varint(&r, &m) && m <= PD_BATCH_MAX_OPS)
        *ops = (uint32_t)m;
}
