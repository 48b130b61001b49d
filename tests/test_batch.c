/*
 * test_batch.c — the batch format (sync/batch.c): a signed batch round-trips every op kind, entity
 * and value type with its photos; every tampered header byte, payload byte and signature byte is
 * refused with the error the verification order predicts; every truncation is refused; a wrong
 * author key is refused; a well-signed decompression bomb and a well-signed back-reference bomb
 * are refused with PD_ERR_TOOBIG without allocating what they ask for; building refuses bad input.
 */
#include "batch_internal.h"
#include "pd_sync.h"
#include "testutil.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <zlib.h>

/* Stop this test function (not the program) when a precondition fails. */
#define MUST(cond)                                                                                 \
    do {                                                                                           \
        pd_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            pd_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: MUST failed: %s\n", __FILE__, __LINE__, #cond);                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];
static uint8_t pk2[PD_PUBKEY_BYTES], sk2[PD_SECKEY_BYTES];

static pd_value vnull(void)
{
    return (pd_value){.type = PD_VAL_NULL};
}
static pd_value vint(int64_t i)
{
    return (pd_value){.type = PD_VAL_INT, .i = i};
}
static pd_value vreal(double r)
{
    return (pd_value){.type = PD_VAL_REAL, .r = r};
}
static pd_value vtext(const char *s)
{
    return (pd_value){.type = PD_VAL_TEXT, .p = (const uint8_t *)s, .len = strlen(s)};
}
static pd_value vblob(const void *p, size_t n)
{
    return (pd_value){.type = PD_VAL_BLOB, .p = p, .len = n};
}

static bool value_eq(const pd_value *a, const pd_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case PD_VAL_NULL:
        return true;
    case PD_VAL_INT:
        return a->i == b->i;
    case PD_VAL_REAL:
        return memcmp(&a->r, &b->r, sizeof a->r) == 0;
    default:
        return a->len == b->len && (a->len == 0 || !memcmp(a->p, b->p, a->len));
    }
}

static bool op_eq(const pd_op *a, const pd_op *b, const char *hdr_device)
{
    const char *da = a->device_id ? a->device_id : hdr_device;
    return a->seq == b->seq && !strcmp(da, b->device_id) && a->hlc == b->hlc &&
           !strcmp(a->kind, b->kind) && !strcmp(a->entity, b->entity) &&
           !strcmp(a->target, b->target) && !strcmp(a->field ? a->field : "", b->field) &&
           value_eq(&a->old_value, &b->old_value) && value_eq(&a->new_value, &b->new_value) &&
           a->base_rev == b->base_rev;
}

/* JSON texts the transcoder must carry byte for byte (some transcoded, some sent as text). */
static const char *const json_cases[] = {
    "{}",
    "{\"household_id\":\"3273010001000123\",\"outcome\":\"found\",\"visited_at\":1700000000000,"
    "\"lat\":-6.912345,\"lon\":107.6,\"accuracy_m\":8.50,\"mock\":0,\"notes\":\"\",\"x\":null,"
    "\"t\":true,\"f\":false,\"big\":123456789012345678,\"neg\":-42,\"small\":-0.05}",
    "{\"a\":-0.0}",
    "{\"a\":-0}",
    "{\"a\":1e5}",
    "{\"a\":1.5E-3}",
    "{\"a\":\"quote \\\" and \\\\ and \\u00e9 and \\n\"}",
    "{\"nama\":\"S\xc3\xadti Nurhaliza\"}",
    "{\"a\" : 1}",
    "{ \"a\":1}",
    "{\"a\":{\"b\":1}}",
    "{\"a\":[1,2]}",
    "[1,2,3]",
    "{\"a\":1234567890123456789}",
    "{\"a\":00}",
    "{\"a\":1.}",
    "{\"a\":1,}",
    "{\"a\":1",
    "{\"a\"",
    "{\"\":\"empty key\"}",
    "{\"a\":1,\"a\":2}",
};

static pd_batch_params params(uint64_t seq, const uint8_t *prev)
{
    return (pd_batch_params){.device_id = "a1b2c3d4e5f60718",
                             .area = "32.73.01.1001",
                             .seq = seq,
                             .prev_hash = prev,
                             .created_at = 1700000000123,
                             .flags = 0};
}

/* A batch of every kind, entity and value type; ops[] and photos[] stay valid for comparison. */
#define MAX_TEST_OPS 64
static pd_op ops[MAX_TEST_OPS];
static size_t nops;
static pd_batch_photo photos[3];
static char photo_hex[3][2 * PD_HASH_BYTES + 1];

static void make_ops(void)
{
    static const uint8_t blob[] = {0, 1, 2, 0xff, 0, 'x'};
    const char *dev = "a1b2c3d4e5f60718";
    for (int i = 0; i < 3; i++) {
        crypto_generichash(photos[i].hash, PD_HASH_BYTES, (const uint8_t *)&i, sizeof i, NULL, 0);
        photos[i].size = 150000u + (uint64_t)i * 1000;
        pd_sync_hex(photo_hex[i], photos[i].hash, PD_HASH_BYTES);
    }
    nops = 0;
    int64_t hlc = (int64_t)1700000000000 << 16;
#define OP(k, e, t, f, o, n, rev)                                                                  \
    ops[nops] = (pd_op){.seq = (int64_t)(nops * 3 + 7),                                            \
                        .device_id = dev,                                                          \
                        .hlc = hlc,                                                                \
                        .kind = k,                                                                 \
                        .entity = e,                                                               \
                        .target = t,                                                               \
                        .field = f,                                                                \
                        .old_value = o,                                                            \
                        .new_value = n,                                                            \
                        .base_rev = rev};                                                          \
    hlc += 1000 << 16;                                                                             \
    nops++;
    OP("visit", "visit", "Va1b2c3d4e5f60718-000001", "", vnull(), vtext(json_cases[1]), 0);
    OP("set", "household", "3273010001000123", "floor_area", vint(36), vint(42), 17);
    OP("set", "household", "3273010001000123", "lat", vreal(-6.91), vreal(-6.912345), 17);
    OP("set", "household", "3273010001000123", "lon", vnull(), vreal(1.0 / 3.0), 17);
    OP("set", "household", "3273010001000123", "address", vtext("Jl. Merdeka 1"),
       vtext("Jl. Merdeka No. 1, RT 001 / RW 002"), 17);
    OP("set", "household", "3273010001000123", "asset_flags", vint(INT64_MIN), vint(INT64_MAX),
       INT64_MAX);
    OP("set", "household", "3273010001000123", "power_va", vreal(-0.0), vreal(1e300), 1);
    OP("set", "household", "3273010001000123", "custom_field_not_in_table",
       vblob(blob, sizeof blob), vblob("", 0), 2);
    OP("set", "household", "3273010001000123", "notes", vtext(""), vreal(NAN), 3);
    OP("create", "member", "327301000100012305", "", vnull(),
       vtext("{\"name\":\"Siti Nurhaliza\",\"nik\":\"3273014508900001\",\"sex\":2}"), 0);
    OP("create", "household", "Na1b2c3d4e5f60718-000001", "", vnull(),
       vtext("{\"desa\":\"32.73.01.1001\"}"), 0);
    OP("end", "member", "327301000100012302", "status", vtext("active"), vtext("deceased"), 9);
    OP("photo", "photo", photo_hex[0], "", vnull(), vtext("{\"kind\":\"front\",\"size\":150000}"),
       0);
    OP("photo", "photo", photo_hex[2], "", vnull(), vtext("{\"kind\":\"roof\"}"), 0);
    /* a target that looks like a photo hash but is not in the list */
    OP("photo", "photo", "00000000000000000000000000000000000000000000000000000000000000ff", "",
       vnull(), vnull(), 0);
    for (size_t k = 0; k < PD_ARRAY_LEN(json_cases); k++) {
        OP("set", "member", "327301000100012301", "notes", vtext(json_cases[k]),
           vtext(json_cases[(k + 1) % PD_ARRAY_LEN(json_cases)]), (int64_t)k);
    }
    /* an op recorded by another device (e.g. copied from a replaced phone) */
    OP("set", "member", "327301000100012301", "nik", vtext("3273014508900001"),
       vtext("3273014508900002"), 4);
    ops[nops - 1].device_id = "ffff000011112222";
    /* the clock may go back between ops: hlc deltas are signed */
    OP("set", "member", "327301000100012301", "name", vtext("Siti"), vtext("Siti N."), 4);
    ops[nops - 1].hlc = 5;
#undef OP
}

static uint8_t *build_ok(size_t *len, uint64_t seq, const uint8_t *prev)
{
    pd_batch_params p = params(seq, prev);
    uint8_t *b = NULL;
    pd_error err = {0};
    int rc = pd_batch_build(&b, len, &p, ops, nops, photos, 3, sk, &err);
    if (rc != PD_OK)
        fprintf(stderr, "build: %s\n", err.msg);
    return b;
}

static void test_round_trip_every_kind_and_value(void)
{
    size_t len;
    uint8_t *bytes = build_ok(&len, 1, NULL);
    MUST(bytes);
    pd_batch *b = NULL;
    pd_error err = {0};
    int rc = pd_batch_verify(&b, bytes, len, pk, &err);
    if (rc)
        fprintf(stderr, "verify: %s\n", err.msg);
    CHECK_EQ_INT(rc, PD_OK);
    MUST(b);
    const pd_batch_header *h = pd_batch_header_get(b);
    CHECK_EQ_INT(h->version, 1);
    CHECK_EQ_INT(h->seq, 1);
    CHECK(!strcmp(h->device_id, "a1b2c3d4e5f60718"));
    CHECK(!strcmp(h->area, "32.73.01.1001"));
    CHECK_EQ_INT(h->created_at, 1700000000123);
    CHECK_EQ_INT(h->op_count, nops);
    CHECK_EQ_INT(h->photo_count, 3);
    CHECK(!memcmp(h->author_pk, pk, PD_PUBKEY_BYTES));

    /* The signature is plain Ed25519 over the header bytes, and the hash is over header+sig. */
    CHECK(crypto_sign_verify_detached(bytes + PD_BATCH_HEADER_BYTES, bytes, PD_BATCH_HEADER_BYTES,
                                      pk) == 0);
    uint8_t hash[PD_HASH_BYTES];
    crypto_generichash(hash, sizeof hash, bytes, PD_BATCH_PREFIX_BYTES, NULL, 0);
    CHECK(!memcmp(hash, pd_batch_hash(b), PD_HASH_BYTES));
    CHECK(!memcmp(bytes, "PDB1", 4));

    size_t n = 0, np = 0;
    const pd_op *got = pd_batch_ops(b, &n);
    CHECK_EQ_INT(n, nops);
    for (size_t i = 0; i < n && i < nops; i++) {
        if (!op_eq(&ops[i], &got[i], "a1b2c3d4e5f60718")) {
            fprintf(stderr, "op %zu differs after the round trip (target %s field %s)\n", i,
                    ops[i].target, ops[i].field);
            CHECK(0);
        }
    }
    const pd_batch_photo *ph = pd_batch_photos(b, &np);
    CHECK_EQ_INT(np, 3);
    for (size_t i = 0; i < np; i++) {
        CHECK(!memcmp(ph[i].hash, photos[i].hash, PD_HASH_BYTES));
        CHECK_EQ_INT(ph[i].size, photos[i].size);
    }

    /* peek sees the same header and hash without verifying */
    pd_batch_header ph2;
    uint8_t hash2[PD_HASH_BYTES];
    CHECK_EQ_INT(pd_batch_peek(&ph2, hash2, bytes, len, NULL), PD_OK);
    CHECK(!memcmp(hash2, hash, PD_HASH_BYTES));
    CHECK_EQ_INT(ph2.seq, 1);

    /* Building twice gives identical bytes (deterministic: same ops, same key, same time). */
    size_t len2;
    uint8_t *again = build_ok(&len2, 1, NULL);
    CHECK(again && len2 == len && !memcmp(again, bytes, len));
    free(again);

    /* The next batch chains to this one. */
    uint8_t *next = build_ok(&len2, 2, hash);
    pd_batch *b2 = NULL;
    CHECK_EQ_INT(pd_batch_verify(&b2, next, len2, pk, NULL), PD_OK);
    if (b2)
        CHECK(!memcmp(pd_batch_header_get(b2)->prev_hash, hash, PD_HASH_BYTES));
    pd_batch_free(b2);
    free(next);

    /* out == NULL: verify only */
    CHECK_EQ_INT(pd_batch_verify(NULL, bytes, len, pk, NULL), PD_OK);
    pd_batch_free(b);
    free(bytes);
}

/* The code the documented verification order gives for a header whose byte `off` is changed. */
static int expected_for_header_change(const uint8_t *orig, const uint8_t *mod, size_t len,
                                      size_t off)
{
    if (off < 4 || (off >= 6 && off < 8))
        return PD_ERR_CORRUPT;
    if (off == 4)
        return PD_ERR_VERSION;
    uint32_t payload = pd_sync_get_u32(mod + 144), inflated = pd_sync_get_u32(mod + 148);
    uint32_t opc = pd_sync_get_u32(mod + 136), phc = pd_sync_get_u32(mod + 140);
    if (payload > PD_BATCH_MAX_PAYLOAD || inflated > PD_BATCH_MAX_INFLATED)
        return PD_ERR_TOOBIG;
    if (inflated > 65536 && (uint64_t)inflated > (uint64_t)payload * PD_BATCH_MAX_RATIO)
        return PD_ERR_TOOBIG;
    if (opc > PD_BATCH_MAX_OPS || phc > PD_BATCH_MAX_PHOTOS)
        return PD_ERR_TOOBIG;
    if (len - PD_BATCH_PREFIX_BYTES != payload)
        return PD_ERR_CORRUPT;
    (void)orig;
    return PD_ERR_SIGNATURE; /* everything else is covered by the signature */
}

static void test_tampering_each_byte(void)
{
    size_t len;
    uint8_t *bytes = build_ok(&len, 1, NULL);
    MUST(bytes);
    uint8_t *mod = malloc(len);
    MUST(mod);
    int wrong = 0, tried = 0;
    for (size_t off = 0; off < PD_BATCH_HEADER_BYTES; off++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(mod, bytes, len);
            mod[off] ^= (uint8_t)(1 << bit);
            pd_error err = {0};
            int rc = pd_batch_verify(NULL, mod, len, pk, &err);
            int want = expected_for_header_change(bytes, mod, len, off);
            tried++;
            if (rc != want) {
                wrong++;
                fprintf(stderr, "header byte %zu bit %d: got %s, want %s (%s)\n", off, bit,
                        pd_strerror(rc), pd_strerror(want), err.msg);
            }
            if (rc != PD_OK && !err.msg[0]) {
                wrong++;
                fprintf(stderr, "header byte %zu: no message\n", off);
            }
        }
    }
    /* every bit of the signature */
    for (size_t off = PD_BATCH_HEADER_BYTES; off < PD_BATCH_PREFIX_BYTES; off++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(mod, bytes, len);
            mod[off] ^= (uint8_t)(1 << bit);
            tried++;
            if (pd_batch_verify(NULL, mod, len, pk, NULL) != PD_ERR_SIGNATURE) {
                wrong++;
                fprintf(stderr, "signature byte %zu bit %d accepted or misreported\n", off, bit);
            }
        }
    /* one bit in each payload byte */
    for (size_t off = PD_BATCH_PREFIX_BYTES; off < len; off++) {
        memcpy(mod, bytes, len);
        mod[off] ^= (uint8_t)(1 << (off % 8));
        pd_error err = {0};
        tried++;
        if (pd_batch_verify(NULL, mod, len, pk, &err) != PD_ERR_CORRUPT ||
            !strstr(err.msg, "payload's hash")) {
            wrong++;
            fprintf(stderr, "payload byte %zu: %s\n", off, err.msg);
        }
    }
    fprintf(stderr, "   %d tampered batches tried, %d misjudged\n", tried, wrong);
    CHECK_EQ_INT(wrong, 0);
    CHECK(tried > 1500);
    free(mod);
    free(bytes);
}

static void test_truncated_at_every_length(void)
{
    size_t len;
    uint8_t *bytes = build_ok(&len, 1, NULL);
    MUST(bytes);
    int wrong = 0;
    for (size_t n = 0; n < len; n++) {
        /* a fresh copy of exactly n bytes so ASan sees any read past the end */
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, bytes, n);
        pd_error err = {0};
        int rc = pd_batch_verify(NULL, cut, n, pk, &err);
        if (rc != PD_ERR_CORRUPT || !err.msg[0]) {
            wrong++;
            fprintf(stderr, "truncated to %zu: %s (%s)\n", n, pd_strerror(rc), err.msg);
        }
        free(cut);
    }
    CHECK_EQ_INT(wrong, 0);
    /* and one trailing byte too many */
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, bytes, len);
    longer[len] = 0;
    pd_error err = {0};
    CHECK_EQ_INT(pd_batch_verify(NULL, longer, len + 1, pk, &err), PD_ERR_CORRUPT);
    CHECK(strstr(err.msg, "trailing") != NULL);
    CHECK_EQ_INT(pd_batch_peek(NULL, NULL, longer, len + 1, NULL), PD_ERR_CORRUPT);
    free(longer);
    free(bytes);
}

static void test_wrong_author_key(void)
{
    size_t len;
    uint8_t *bytes = build_ok(&len, 1, NULL);
    MUST(bytes);
    pd_error err = {0};
    /* verified against someone else's key */
    CHECK_EQ_INT(pd_batch_verify(NULL, bytes, len, pk2, &err), PD_ERR_SIGNATURE);
    CHECK(strstr(err.msg, "expected") != NULL);
    /* a forger writes the victim's key into the header but signs with its own key */
    uint8_t *forged = malloc(len);
    memcpy(forged, bytes, len);
    memcpy(forged + 8, pk, PD_PUBKEY_BYTES);
    crypto_sign_detached(forged + PD_BATCH_HEADER_BYTES, NULL, forged, PD_BATCH_HEADER_BYTES, sk2);
    CHECK_EQ_INT(pd_batch_verify(NULL, forged, len, pk, &err), PD_ERR_SIGNATURE);
    CHECK(strstr(err.msg, "does not verify") != NULL);
    /* no key at all */
    CHECK_EQ_INT(pd_batch_verify(NULL, bytes, len, NULL, NULL), PD_ERR_INVALID);
    free(forged);
    free(bytes);
}

/* Raw-deflate `total` zero bytes without ever holding them: the bomb's payload. */
static uint8_t *deflate_zeros(size_t total, size_t *out_len)
{
    static uint8_t zeros[1 << 20];
    z_stream z;
    memset(&z, 0, sizeof z);
    deflateInit2(&z, 9, Z_DEFLATED, -15, 9, Z_DEFAULT_STRATEGY);
    size_t cap = total / 500 + 4096, n = 0;
    uint8_t *out = malloc(cap);
    while (total > 0 || 1) {
        size_t chunk = total < sizeof zeros ? total : sizeof zeros;
        total -= chunk;
        z.next_in = zeros;
        z.avail_in = (uInt)chunk;
        int flush = total == 0 ? Z_FINISH : Z_NO_FLUSH;
        int zrc;
        do {
            if (cap - n < 65536) {
                cap *= 2;
                out = realloc(out, cap);
            }
            z.next_out = out + n;
            z.avail_out = (uInt)(cap - n);
            zrc = deflate(&z, flush);
            n = cap - z.avail_out;
        } while (z.avail_in > 0 || (flush == Z_FINISH && zrc != Z_STREAM_END));
        if (flush == Z_FINISH)
            break;
    }
    deflateEnd(&z);
    *out_len = n;
    return out;
}

static long max_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static pd_batch_header bomb_header(uint32_t inflated)
{
    pd_batch_header h = {.version = 1,
                         .seq = 1,
                         .created_at = 1700000000000,
                         .op_count = 1,
                         .inflated_len = inflated};
    memcpy(h.device_id, "bomb", 4);
    return h;
}

static void test_decompression_bomb(void)
{
    size_t zlen;
    /* 512 MiB of zeros deflate to about 0.5 MB */
    uint8_t *z = deflate_zeros((size_t)512 << 20, &zlen);
    MUST(z);
    long rss0 = max_rss_kb();
    uint8_t *bytes = NULL;
    size_t len = 0;
    pd_error err = {0};

    /* (a) the header claims the maximum; the stream goes on far past it */
    pd_batch_header h = bomb_header(PD_BATCH_MAX_INFLATED);
    CHECK_EQ_INT(pd_batch_wrap(&bytes, &len, &h, z, zlen, sk, &err), PD_OK);
    int rc = pd_batch_verify(NULL, bytes, len, pk, &err);
    CHECK_EQ_INT(rc, PD_ERR_TOOBIG);
    CHECK(strstr(err.msg, "inflates past") != NULL);
    free(bytes);

    /* (b) the header claims a little; the stream is the same bomb */
    h = bomb_header(4096);
    CHECK_EQ_INT(pd_batch_wrap(&bytes, &len, &h, z, zlen, sk, &err), PD_OK);
    CHECK_EQ_INT(pd_batch_verify(NULL, bytes, len, pk, &err), PD_ERR_TOOBIG);
    free(bytes);

    /* (c) the header claims the truth (512 MiB): refused before the signature is even checked */
    h = bomb_header(0xffffffffu);
    CHECK_EQ_INT(pd_batch_wrap(&bytes, &len, &h, z, zlen, sk, &err), PD_OK);
    CHECK_EQ_INT(pd_batch_verify(NULL, bytes, len, pk, &err), PD_ERR_TOOBIG);
    CHECK(strstr(err.msg, "over the") != NULL);
    free(bytes);
    free(z);

    /* (d) a small payload claiming 8 MiB: over the ratio limit */
    z = deflate_zeros((size_t)8 << 20, &zlen);
    h = bomb_header(PD_BATCH_MAX_INFLATED);
    CHECK_EQ_INT(pd_batch_wrap(&bytes, &len, &h, z, zlen, sk, &err), PD_OK);
    CHECK_EQ_INT(pd_batch_verify(NULL, bytes, len, pk, &err), PD_ERR_TOOBIG);
    CHECK(strstr(err.msg, "ratio") != NULL);
    free(bytes);
    free(z);

    long grown_mb = (max_rss_kb() - rss0) / 1024;
    fprintf(stderr, "   peak RSS grew by %ld MiB while refusing a 512 MiB bomb\n", grown_mb);
    if (!getenv("PD_SANITIZED"))
        CHECK(grown_mb < 64);
}

/* A hand-made payload, deflated and signed with the test key. */
static int verify_raw_payload(const uint8_t *payload, size_t n, uint32_t ops_n, pd_error *err)
{
    uint8_t *z = NULL, *bytes = NULL;
    size_t zlen = 0, len = 0;
    pd_sync_deflate_raw(&z, &zlen, payload, n);
    pd_batch_header h = bomb_header((uint32_t)n);
    h.op_count = ops_n;
    pd_batch_wrap(&bytes, &len, &h, z, zlen, sk, err);
    int rc = pd_batch_verify(NULL, bytes, len, pk, err);
    free(z);
    free(bytes);
    return rc;
}

static void test_signed_hostile_payloads(void)
{
    pd_error err = {0};
    pd_sbuf b = {0};
    /* back-reference amplification: one 60 KB string, referenced by 600 JSON values */
    const size_t big = 60000, refs = 600;
    pd_sbuf_varint(&b, 0); /* photos */
    pd_sbuf_varint(&b, refs);
    for (size_t i = 0; i < refs; i++) {
        pd_sbuf_byte(&b, 0);    /* set household */
        pd_sbuf_varint(&b, 1);  /* seq delta */
        pd_sbuf_svarint(&b, 0); /* hlc */
        if (i == 0) {
            pd_sbuf_varint(&b, 0);
            pd_sbuf_varint(&b, 1);
            pd_sbuf_byte(&b, 't'); /* table entry 0 */
        } else {
            pd_sbuf_varint(&b, 2); /* target: entry 0 */
        }
        pd_sbuf_varint(&b, 1); /* field "id" */
        pd_sbuf_byte(&b, 0);   /* old NULL */
        pd_sbuf_byte(&b, 6);   /* new JSON */
        pd_sbuf_varint(&b, 1);
        pd_sbuf_varint(&b, 1); /* key "id" */
        pd_sbuf_byte(&b, 5);   /* string */
        if (i == 0) {
            pd_sbuf_varint(&b, 0);
            pd_sbuf_varint(&b, big);
            for (size_t k = 0; k < big; k++)
                pd_sbuf_byte(&b, (uint8_t)('a' + randombytes_uniform(26)));
        } else {
            pd_sbuf_varint(&b, 2); /* table entry 1 */
        }
    }
    MUST(!b.failed);
    CHECK_EQ_INT(verify_raw_payload(b.p, b.len, (uint32_t)refs, &err), PD_ERR_TOOBIG);
    CHECK(strstr(err.msg, "limit") != NULL);

    /* a reference past the table */
    b.len = 0;
    pd_sbuf_varint(&b, 0);
    pd_sbuf_varint(&b, 1);
    const uint8_t op_bad_ref[] = {0, 1, 0, 9, 0, 0, 0};
    pd_sbuf_put(&b, op_bad_ref, sizeof op_bad_ref);
    CHECK_EQ_INT(verify_raw_payload(b.p, b.len, 1, &err), PD_ERR_CORRUPT);
    CHECK(strstr(err.msg, "past the table") != NULL);

    /* a string length past the payload */
    b.len = 0;
    pd_sbuf_varint(&b, 0);
    pd_sbuf_varint(&b, 1);
    const uint8_t op_long[] = {0, 1, 0, 0, 0x80, 0x80, 0x04, 'x', 0, 0, 0};
    pd_sbuf_put(&b, op_long, sizeof op_long);
    CHECK_EQ_INT(verify_raw_payload(b.p, b.len, 1, &err), PD_ERR_CORRUPT);

    /* the op count differs from the header's */
    b.len = 0;
    pd_sbuf_varint(&b, 0);
    pd_sbuf_varint(&b, 2);
    const uint8_t op_ok[] = {0, 1, 0, 0, 1, 'x', 0, 0, 0};
    pd_sbuf_put(&b, op_ok, sizeof op_ok);
    CHECK_EQ_INT(verify_raw_payload(b.p, b.len, 1, &err), PD_ERR_CORRUPT);
    CHECK(strstr(err.msg, "op count") != NULL);

    /* trailing bytes after the last op; seq that does not increase; unknown value type */
    b.len = 0;
    pd_sbuf_varint(&b, 0);
    pd_sbuf_varint(&b, 1);
    pd_sbuf_put(&b, op_ok, sizeof op_ok);
    pd_sbuf_byte(&b, 0);
    CHECK_EQ_INT(verify_raw_payload(b.p, b.len, 1, &err), PD_ERR_CORRUPT);
    CHECK(strstr(err.msg, "after the last op") != NULL);
    b.len = 0;
    pd_sbuf_varint(&b, 0);
    pd_sbuf_varint(&b, 1);
    const uint8_t op_seq0[] = {0, 0, 0, 0, 1, 'x', 0, 0, 0};
    pd_sbuf_put(&b, op_seq0, sizeof op_seq0);
    CHECK_EQ_INT(verify_raw_payload(b.p, b.len, 1, &err), PD_ERR_CORRUPT);
    b.len = 0;
    pd_sbuf_varint(&b, 0);
    pd_sbuf_varint(&b, 1);
    const uint8_t op_type[] = {0, 1, 0, 0, 1, 'x', 0, 0, 42};
    pd_sbuf_put(&b, op_type, sizeof op_type);
    CHECK_EQ_INT(verify_raw_payload(b.p, b.len, 1, &err), PD_ERR_CORRUPT);
    /* a JSON string value that would not be valid JSON when written back */
    b.len = 0;
    pd_sbuf_varint(&b, 0);
    pd_sbuf_varint(&b, 1);
    const uint8_t op_json[] = {0, 1, 0, 0, 1, 'x', 0, 0, 6, 1, 1, 5, 0, 3, 'a', '"', 'b'};
    pd_sbuf_put(&b, op_json, sizeof op_json);
    CHECK_EQ_INT(verify_raw_payload(b.p, b.len, 1, &err), PD_ERR_CORRUPT);
    CHECK(strstr(err.msg, "JSON") != NULL);
    pd_sbuf_free(&b);
}

static void test_build_refuses_bad_input(void)
{
    uint8_t *out = NULL;
    size_t len = 0;
    pd_error err = {0};
    pd_batch_params p = params(1, NULL);
    pd_op two[2] = {ops[1], ops[2]};
    two[1].seq = two[0].seq; /* not increasing */
    CHECK_EQ_INT(pd_batch_build(&out, &len, &p, two, 2, NULL, 0, sk, &err), PD_ERR_INVALID);
    CHECK(strstr(err.msg, "increasing") != NULL);
    two[1] = ops[2];
    two[1].kind = "delete";
    CHECK_EQ_INT(pd_batch_build(&out, &len, &p, two, 2, NULL, 0, sk, &err), PD_ERR_INVALID);
    CHECK(strstr(err.msg, "unknown kind") != NULL);
    two[1] = ops[2];
    two[1].target = NULL;
    CHECK_EQ_INT(pd_batch_build(&out, &len, &p, two, 2, NULL, 0, sk, &err), PD_ERR_INVALID);
    p.device_id = "has space";
    CHECK_EQ_INT(pd_batch_build(&out, &len, &p, ops, 2, NULL, 0, sk, &err), PD_ERR_INVALID);
    p = params(2, NULL);
    CHECK_EQ_INT(pd_batch_build(&out, &len, &p, ops, 2, NULL, 0, sk, &err), PD_ERR_INVALID);
    CHECK(strstr(err.msg, "previous") != NULL);
    p = params(1, NULL);
    p.area = "32.73'; DROP TABLE";
    CHECK_EQ_INT(pd_batch_build(&out, &len, &p, ops, 2, NULL, 0, sk, &err), PD_ERR_INVALID);
    p = params(1, NULL);
    pd_batch_photo dup[2] = {photos[0], photos[0]};
    CHECK_EQ_INT(pd_batch_build(&out, &len, &p, ops, 2, dup, 2, sk, &err), PD_ERR_INVALID);
    CHECK(out == NULL);
}

static void test_compact_encoding(void)
{
    /* The transcoded JSON is much smaller than its text, and deflate then shrinks it again. */
    size_t len;
    uint8_t *bytes = build_ok(&len, 1, NULL);
    MUST(bytes);
    size_t text = 0;
    for (size_t i = 0; i < nops; i++)
        text += ops[i].new_value.len + ops[i].old_value.len + strlen(ops[i].target);
    pd_batch_header h;
    CHECK_EQ_INT(pd_batch_peek(&h, NULL, bytes, len, NULL), PD_OK);
    fprintf(stderr, "   %zu ops: %zu bytes of text values, payload %u inflated / %u deflated\n",
            nops, text, h.inflated_len, h.payload_len);
    CHECK(h.payload_len < text);
    free(bytes);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    uint8_t seed[32] = {1};
    crypto_sign_seed_keypair(pk, sk, seed);
    seed[0] = 2;
    crypto_sign_seed_keypair(pk2, sk2, seed);
    make_ops();
    RUN(test_round_trip_every_kind_and_value);
    RUN(test_tampering_each_byte);
    RUN(test_truncated_at_every_length);
    RUN(test_wrong_author_key);
    RUN(test_decompression_bomb);
    RUN(test_signed_hostile_payloads);
    RUN(test_build_refuses_bad_input);
    RUN(test_compact_encoding);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(sk2, sizeof sk2);
    return pd_test_finish();
}
