/*
 * test_prelist_package.c — the signed prelist package (prelist/package.c, record.c): the bytes
 * are laid out as pd_prelist.h documents; a package round-trips record for record; the writer
 * refuses what the reader would; and the bad-input catalogue — bad signature, another issuer,
 * truncation at every offset, every header bit flipped, decompression bombs, a 10 MB name, SQL in
 * names, invalid UTF-8, counts that lie, trailing garbage, malformed records — each fails with a
 * clear error AND leaves the store exactly as it was (a digest of every table before and after).
 */
#include "prelist_fixture.h"
#include "store_internal.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define REQUIRE_VOID_OK(cond)                                                                 \
    do {                                                                                      \
        pd_test_checks++;                                                                     \
        if (!(cond)) {                                                                        \
            pd_test_failures++;                                                               \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);        \
            return;                                                                           \
        }                                                                                     \
    } while (0)

static struct {
    char *dir;
    char *file;
    pd_store *store;
    uint8_t pk[32], sk[64];   /* the pinned issuer */
    uint8_t pk2[32], sk2[64]; /* someone else */
} T;

static void digest(uint8_t out[32])
{
    CHECK_EQ_INT(pd_fixture_store_digest(pd_store_sqlite(T.store), out), 0);
}

/* Import pkg (as a file) into the store: it must fail (with want, unless 0) with a message, and
 * the store must not change. verify_mem must refuse the same bytes with the same code. */
static void refused(const char *what, const uint8_t *pkg, size_t len, int want)
{
    uint8_t before[32], after[32];
    digest(before);
    REQUIRE_VOID_OK(pd_test_write_file(T.file, pkg, len) == 0);
    pd_prelist_import_stats st;
    int rc = pd_prelist_import(T.store, T.file, NULL, &st);
    bool ok = rc != PD_OK && (want == 0 || rc == want);
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "   %s: import gave %d (%s), wanted %d\n", what, rc,
                pd_store_errmsg(T.store), want);
    CHECK(strlen(pd_store_errmsg(T.store)) > 10);
    if (getenv("PD_TEST_VERBOSE"))
        fprintf(stderr, "   %-28s %-10s %s\n", what, pd_strerror(rc), pd_store_errmsg(T.store));
    digest(after);
    CHECK(memcmp(before, after, 32) == 0);
    pd_error e = {0};
    int vrc = pd_prelist_verify_mem(pkg, len, T.pk, NULL, &e);
    CHECK_EQ_INT(vrc, rc);
    CHECK(e.msg[0] != '\0');
}


/* A package of the fixture payload with head name `head` and honest counts. */
static uint8_t *fixture_pkg(const char *head, size_t *len)
{
    size_t cap = strlen(head) * 2 + 4096;
    char *payload = malloc(cap);
    int n = pd_fixture_payload(payload, cap, head);
    uint8_t *pkg = NULL;
    pd_fixture_pack(payload, (size_t)n, "32.73.01", 1, 1, 2, T.sk, &pkg, len);
    free(payload);
    return pkg;
}

/* A package of an arbitrary payload and counts. */
static uint8_t *raw_pkg(const char *payload, uint32_t s, uint32_t h, uint32_t m, size_t *len)
{
    uint8_t *pkg = NULL;
    pd_fixture_pack(payload, strlen(payload), "32.73.01", s, h, m, T.sk, &pkg, len);
    return pkg;
}

/* ---- round trip and layout ------------------------------------------------------------------ */

static int enc_shape(void *ud, const pd_prelist_shape *s, pd_error *e)
{
    (void)e;
    return pd_shape_encode(ud, s);
}
static int enc_household(void *ud, const pd_prelist_household *h, pd_error *e)
{
    (void)e;
    return pd_household_encode(ud, h);
}
static int enc_member(void *ud, const pd_prelist_member *m, pd_error *e)
{
    (void)e;
    return pd_member_encode(ud, m);
}

static void a_package_round_trips(void)
{
    char *path = pd_test_path(T.dir, "rt.pdpl");
    pd_prelist_gen_options o = {.seed = 3, .households = 300};
    pd_prelist_info info;
    CHECK_EQ_INT(pd_prelist_generate_file(path, "32.73.01", &o, T.sk, &info, NULL), PD_OK);
    /* what the generator produced, encoded */
    pd_buf gen = {0}, read = {0}, mem = {0};
    pd_prelist_handler hg = {enc_shape, enc_household, enc_member, &gen};
    CHECK_EQ_INT(pd_prelist_generate("32.73.01", &o, &hg, NULL), PD_OK);
    /* what the reader gives back from the file and from memory */
    pd_prelist_handler hr = {enc_shape, enc_household, enc_member, &read};
    pd_prelist_info got;
    pd_error e = {0};
    CHECK_EQ_INT(pd_prelist_read(path, T.pk, &hr, &got, &e), PD_OK);
    CHECK(gen.len > 0 && gen.len == read.len && memcmp(gen.p, read.p, gen.len) == 0);
    CHECK(memcmp(&got, &info, sizeof got) == 0);
    size_t len = 0;
    uint8_t *bytes = pd_test_read_file(path, &len);
    pd_prelist_handler hm = {enc_shape, enc_household, enc_member, &mem};
    CHECK_EQ_INT(pd_prelist_read_mem(bytes, len, T.pk, &hm, NULL, &e), PD_OK);
    CHECK(mem.len == gen.len && memcmp(mem.p, gen.p, gen.len) == 0);
    CHECK_EQ_INT(info.households, 300);
    CHECK_EQ_INT(info.shapes, 4);

    /* the layout pd_prelist.h documents */
    REQUIRE_VOID_OK(len > PD_PRELIST_PREFIX_BYTES);
    CHECK(memcmp(bytes, "PDPL", 4) == 0);
    CHECK_EQ_INT(pd_rd16(bytes + 4), 1);
    CHECK_EQ_INT(pd_rd16(bytes + 6), 144);
    CHECK(memcmp(bytes + 8, T.pk, 32) == 0);
    CHECK_EQ_INT((int64_t)pd_rd64(bytes + 40), PD_PRELIST_DEFAULT_ISSUED_AT);
    CHECK(strcmp((const char *)bytes + 48, "32.73.01") == 0);
    CHECK_EQ_INT(pd_rd32(bytes + 80), 4);
    CHECK_EQ_INT(pd_rd32(bytes + 84), 300);
    CHECK_EQ_INT(pd_rd32(bytes + 88), info.members);
    CHECK_EQ_INT(pd_rd64(bytes + 92), len - 208);
    CHECK_EQ_INT(pd_rd64(bytes + 100), gen.len);
    uint8_t h[32];
    crypto_generichash(h, 32, bytes + 208, len - 208, NULL, 0);
    CHECK(memcmp(bytes + 108, h, 32) == 0);
    CHECK_EQ_INT(crypto_sign_verify_detached(bytes + 144, bytes, 144, T.pk), 0);
    crypto_generichash(h, 32, bytes, 208, NULL, 0);
    CHECK(memcmp(info.id, h, 32) == 0);
    /* the payload is plain zlib of the NDJSON lines */
    uLongf out_len = (uLongf)gen.len;
    uint8_t *plain = malloc(gen.len);
    CHECK_EQ_INT(uncompress(plain, &out_len, bytes + 208, (uLong)(len - 208)), Z_OK);
    CHECK(out_len == gen.len && memcmp(plain, gen.p, gen.len) == 0);
    /* peek reads the header without the key */
    pd_prelist_info peek;
    CHECK_EQ_INT(pd_prelist_peek(path, &peek, NULL), PD_OK);
    CHECK(memcmp(peek.id, info.id, 32) == 0 && peek.households == 300);
    free(plain);
    free(bytes);
    pd_buf_free(&gen);
    pd_buf_free(&read);
    pd_buf_free(&mem);
    free(path);
}

static void the_writer_refuses_what_the_reader_would(void)
{
    char *path = pd_test_path(T.dir, "w.pdpl");
    char *tmp = pd_test_path(T.dir, "w.pdpl.tmp");
    pd_prelist_writer *w = NULL;
    pd_error e = {0};
    CHECK_EQ_INT(pd_prelist_writer_open(&w, path, T.sk, "32.99", 0, &e), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_prelist_writer_open(&w, path, T.sk, "32.73.01:e01/x", 0, &e), PD_ERR_INVALID);
    REQUIRE_VOID_OK(pd_prelist_writer_open(&w, path, T.sk, "32.73.01", 1, &e) == PD_OK);
    CHECK(pd_test_file_exists(tmp));
    pd_prelist_household h = {
        .id = "3273011001000001", .rev = 1, .prov = "32", .kab = "32.73", .kec = "32.73.01",
        .desa = "32.73.02.1001", .sls = "", .address = "", .head_name = "X", .member_count = 1,
        .tenure = PD_PRELIST_NULL, .floor_area = PD_PRELIST_NULL, .floor_material = PD_PRELIST_NULL,
        .wall_material = PD_PRELIST_NULL, .roof_material = PD_PRELIST_NULL,
        .rooms = PD_PRELIST_NULL, .water_source = PD_PRELIST_NULL, .lighting = PD_PRELIST_NULL,
        .power_va = PD_PRELIST_NULL, .cooking_fuel = PD_PRELIST_NULL, .toilet = PD_PRELIST_NULL,
        .desil = PD_PRELIST_NULL, .percentile = PD_PRELIST_NULL, .lat = 0.0 / 0.0, .lon = 0.0 / 0.0};
    /* desa of another kecamatan, and not nested under kec */
    CHECK_EQ_INT(pd_prelist_writer_household(w, &h, &e), PD_ERR_INVALID);
    pd_prelist_writer_free(w);
    CHECK(!pd_test_file_exists(tmp) && !pd_test_file_exists(path));

    REQUIRE_VOID_OK(pd_prelist_writer_open(&w, path, T.sk, "32.73.01", 1, &e) == PD_OK);
    h.desa = "32.73.01.1001";
    h.desil = 11;
    CHECK_EQ_INT(pd_prelist_writer_household(w, &h, &e), PD_ERR_INVALID);
    CHECK(strstr(e.msg, "desil") != NULL);
    pd_prelist_writer_free(w);

    REQUIRE_VOID_OK(pd_prelist_writer_open(&w, path, T.sk, "32.73.01", 1, &e) == PD_OK);
    h.desil = 3;
    h.member_count = 2;
    CHECK_EQ_INT(pd_prelist_writer_household(w, &h, &e), PD_OK);
    pd_prelist_member m = {
        .id = "327301100100000101", .household_id = h.id, .rev = 1, .member_no = 1,
        .name = "A", .nik = "32730112038", .sex = 1, .relationship = PD_PRELIST_NULL,
        .marital = PD_PRELIST_NULL, .schooling = PD_PRELIST_NULL, .work = PD_PRELIST_NULL};
    CHECK_EQ_INT(pd_prelist_writer_member(w, &m, &e), PD_ERR_INVALID); /* NIK of 11 digits */
    CHECK(strstr(e.msg, "nik") != NULL);
    pd_prelist_writer_free(w);

    REQUIRE_VOID_OK(pd_prelist_writer_open(&w, path, T.sk, "32.73.01", 1, &e) == PD_OK);
    CHECK_EQ_INT(pd_prelist_writer_household(w, &h, &e), PD_OK);
    m.nik = NULL;
    CHECK_EQ_INT(pd_prelist_writer_member(w, &m, &e), PD_OK);
    /* one member of two: finishing must fail, and nothing lands at path */
    CHECK_EQ_INT(pd_prelist_writer_finish(w, NULL, &e), PD_ERR_CORRUPT);
    CHECK(strstr(e.msg, "member_count") != NULL);
    pd_prelist_writer_free(w);
    CHECK(!pd_test_file_exists(path) && !pd_test_file_exists(tmp));
    free(path);
    free(tmp);
}

/* ---- the bad-input catalogue ----------------------------------------------------------------- */

static void bad_signature_and_another_issuer(void)
{
    size_t len;
    uint8_t *pkg = fixture_pkg("Budi Santoso", &len);
    pkg[PD_PRELIST_HEADER_BYTES + 10] ^= 0x01;
    refused("flipped signature bit", pkg, len, PD_ERR_SIGNATURE);
    free(pkg);
    /* signed by another issuer */
    size_t cap = 4096;
    char *payload = malloc(cap);
    int n = pd_fixture_payload(payload, cap, "Budi Santoso");
    pd_fixture_pack(payload, (size_t)n, "32.73.01", 1, 1, 2, T.sk2, &pkg, &len);
    refused("another issuer", pkg, len, PD_ERR_SIGNATURE);
    CHECK(strstr(pd_store_errmsg(T.store), "pinned") != NULL);
    /* another issuer that writes the pinned key into the header */
    memcpy(pkg + PD_PL_OFF_ISSUER, T.pk, 32);
    pd_prelist_resign(pkg, T.sk2);
    refused("forged issuer field", pkg, len, PD_ERR_SIGNATURE);
    free(pkg);
    free(payload);
    /* a valid package, but the caller names another key than the pinned one */
    pkg = fixture_pkg("Budi Santoso", &len);
    REQUIRE_VOID_OK(pd_test_write_file(T.file, pkg, len) == 0);
    uint8_t before[32], after[32];
    digest(before);
    CHECK_EQ_INT(pd_prelist_import(T.store, T.file, T.pk2, NULL), PD_ERR_DENIED);
    digest(after);
    CHECK(memcmp(before, after, 32) == 0);
    free(pkg);
}

static void truncated_at_every_offset(void)
{
    size_t len;
    uint8_t *pkg = fixture_pkg("Budi Santoso", &len);
    for (size_t cut = 0; cut < len; cut++)
        refused("truncated", pkg, cut, 0);
    free(pkg);
}

static void every_header_bit_flipped(void)
{
    size_t len;
    uint8_t *pkg = fixture_pkg("Budi Santoso", &len);
    for (size_t byte = 0; byte < PD_PRELIST_PREFIX_BYTES; byte++)
        for (int bit = 0; bit < 8; bit++) {
            pkg[byte] ^= (uint8_t)(1u << bit);
            refused("header bit", pkg, len, 0);
            pkg[byte] ^= (uint8_t)(1u << bit);
        }
    /* and a sample of payload bits: the hash catches them */
    for (size_t byte = PD_PRELIST_PREFIX_BYTES; byte < len; byte += 7) {
        pkg[byte] ^= 0x10;
        refused("payload bit", pkg, len, PD_ERR_CORRUPT);
        pkg[byte] ^= 0x10;
    }
    /* the untouched package is fine (and is not imported by this test) */
    CHECK_EQ_INT(pd_prelist_verify_mem(pkg, len, T.pk, NULL, NULL), PD_OK);
    free(pkg);
}

/* zlib of `n` zero bytes, streamed (never held in memory) */
static uint8_t *zeros_deflated(size_t n, size_t *zlen)
{
    z_stream z = {0};
    deflateInit(&z, Z_BEST_COMPRESSION);
    size_t cap = n / 500 + 4096, used = 0;
    uint8_t *out = malloc(cap), *in = calloc(1, 1 << 20);
    size_t left = n;
    int flush;
    do {
        size_t chunk = left < (1u << 20) ? left : (1u << 20);
        left -= chunk;
        flush = left ? Z_NO_FLUSH : Z_FINISH;
        z.next_in = in;
        z.avail_in = (uInt)chunk;
        do {
            if (cap - used < 65536) {
                cap *= 2;
                out = realloc(out, cap);
            }
            z.next_out = out + used;
            z.avail_out = (uInt)(cap - used);
            deflate(&z, flush);
            used = cap - z.avail_out;
        } while (z.avail_in || (flush == Z_FINISH && z.avail_out == 0));
    } while (flush != Z_FINISH);
    deflateEnd(&z);
    free(in);
    *zlen = used;
    return out;
}

static void decompression_bombs(void)
{
    size_t zlen;
    uint8_t *z = zeros_deflated((size_t)256 << 20, &zlen); /* 256 MiB of zeros */
    fprintf(stderr, "   bomb: 256 MiB in %zu compressed bytes\n", zlen);
    pd_prelist_info hdr = {0};
    snprintf(hdr.area, sizeof hdr.area, "32.73.01");
    hdr.households = 1;
    uint8_t *pkg;
    size_t len;
    /* honest about its size: refused before inflating, by the ratio */
    hdr.inflated_size = (uint64_t)256 << 20;
    pd_prelist_pack_compressed(z, zlen, &hdr, T.sk, &pkg, &len, NULL);
    refused("honest bomb", pkg, len, PD_ERR_TOOBIG);
    CHECK(strstr(pd_store_errmsg(T.store), "bomb") != NULL);
    free(pkg);
    /* lying about its size: stopped as soon as it inflates past the declared size */
    hdr.inflated_size = 1000;
    pd_prelist_pack_compressed(z, zlen, &hdr, T.sk, &pkg, &len, NULL);
    refused("lying bomb", pkg, len, PD_ERR_TOOBIG);
    CHECK(strstr(pd_store_errmsg(T.store), "declares") != NULL);
    free(pkg);
    free(z);
}

static void huge_and_long_names(void)
{
    /* 10 MB of letters in a name: the line limit stops it, in bounded memory */
    size_t n = 10u << 20;
    char *name = malloc(n + 1);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        name[i] = (char)('a' + (x >> 16) % 26);
    }
    name[n] = '\0';
    size_t len;
    uint8_t *pkg = fixture_pkg(name, &len);
    refused("10 MB name", pkg, len, PD_ERR_TOOBIG);
    CHECK(strstr(pd_store_errmsg(T.store), "longer than") != NULL);
    free(pkg);
    /* a name just over the field limit */
    name[PD_PRELIST_MAX_TEXT + 1] = '\0';
    pkg = fixture_pkg(name, &len);
    refused("long name", pkg, len, PD_ERR_TOOBIG);
    CHECK(strstr(pd_store_errmsg(T.store), "head_name") != NULL);
    free(pkg);
    free(name);
}

static void invalid_utf8_and_control_characters(void)
{
    static const char *const bad[] = {
        "Budi \xC3\x28",          /* a lead byte without its continuation */
        "Budi \xC0\xAF",          /* overlong */
        "Budi \xED\xA0\x80",      /* a surrogate */
        "Budi \xF4\x90\x80\x80",  /* past U+10FFFF */
        "Budi \xFF",              /* never valid */
        "Budi \\u0000 Santoso",   /* a NUL, which would cut the name */
        "Budi \\ud800",           /* a lone surrogate escape */
        "Budi \\u0007",           /* a control character */
        "Budi\\nSantoso",         /* a line break in a name */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t len;
        uint8_t *pkg = fixture_pkg(bad[i], &len);
        refused(bad[i], pkg, len, PD_ERR_INVALID);
        free(pkg);
    }
    CHECK(strstr(pd_store_errmsg(T.store), "record 2") != NULL);
}

static void counts_that_lie(void)
{
    char payload[4096];
    pd_fixture_payload(payload, sizeof payload, "Budi Santoso");
    size_t len;
    uint8_t *pkg = raw_pkg(payload, 1, 2, 2, &len); /* 2 households claimed, 1 there */
    refused("households count", pkg, len, PD_ERR_CORRUPT);
    CHECK(strstr(pd_store_errmsg(T.store), "header counts") != NULL);
    free(pkg);
    pkg = raw_pkg(payload, 1, 1, 1, &len); /* 1 member claimed, 2 there */
    refused("members count", pkg, len, PD_ERR_CORRUPT);
    free(pkg);
    pkg = raw_pkg(payload, 0, 1, 2, &len); /* no areas claimed */
    refused("areas count", pkg, len, PD_ERR_CORRUPT);
    free(pkg);
    /* member_count says 3, two members follow */
    char *p = strstr(payload, "\"member_count\":2");
    p[15] = '3';
    pkg = raw_pkg(payload, 1, 1, 2, &len);
    refused("member_count", pkg, len, PD_ERR_CORRUPT);
    free(pkg);
    p[15] = '2';
    /* inflated size claimed larger than it is */
    pd_prelist_info hdr = {0};
    snprintf(hdr.area, sizeof hdr.area, "32.73.01");
    hdr.shapes = 1, hdr.households = 1, hdr.members = 2;
    uLongf zl = compressBound((uLong)strlen(payload));
    uint8_t *z = malloc(zl);
    compress2(z, &zl, (const uint8_t *)payload, (uLong)strlen(payload), 6);
    hdr.inflated_size = strlen(payload) + 10;
    pd_prelist_pack_compressed(z, zl, &hdr, T.sk, &pkg, &len, NULL);
    refused("inflated size", pkg, len, PD_ERR_CORRUPT);
    free(pkg);
    free(z);
}

static void trailing_garbage(void)
{
    size_t len;
    uint8_t *pkg = fixture_pkg("Budi Santoso", &len);
    uint8_t *more = malloc(len + 5);
    memcpy(more, pkg, len);
    memcpy(more + len, "JUNK!", 5);
    refused("bytes after the package", more, len + 5, PD_ERR_CORRUPT);
    CHECK(strstr(pd_store_errmsg(T.store), "trailing") != NULL);
    free(more);
    free(pkg);
    /* garbage inside the signed payload, after the end of the zlib stream */
    char payload[4096];
    int n = pd_fixture_payload(payload, sizeof payload, "Budi Santoso");
    uLongf zl = compressBound((uLong)n) + 16;
    uint8_t *z = malloc(zl);
    compress2(z, &zl, (const uint8_t *)payload, (uLong)n, 6);
    memcpy(z + zl, "JUNKJUNK", 8);
    pd_prelist_info hdr = {0};
    snprintf(hdr.area, sizeof hdr.area, "32.73.01");
    hdr.shapes = 1, hdr.households = 1, hdr.members = 2, hdr.inflated_size = (uint64_t)n;
    pd_prelist_pack_compressed(z, zl + 8, &hdr, T.sk, &pkg, &len, NULL);
    refused("bytes after the zlib stream", pkg, len, PD_ERR_CORRUPT);
    free(pkg);
    free(z);
}

static void sql_in_names_is_stored_verbatim(void)
{
    const char *evil = "Robert'); DROP TABLE household;-- \\\" OR 1=1";
    const char *stored = "Robert'); DROP TABLE household;-- \" OR 1=1";
    size_t len;
    uint8_t *pkg = fixture_pkg(evil, &len);
    REQUIRE_VOID_OK(pd_test_write_file(T.file, pkg, len) == 0);
    pd_prelist_import_stats st;
    CHECK_EQ_INT(pd_prelist_import(T.store, T.file, NULL, &st), PD_OK);
    CHECK_EQ_INT(st.households_added, 1);
    sqlite3 *db = pd_store_sqlite(T.store);
    sqlite3_stmt *q = NULL;
    sqlite3_prepare_v2(db, "SELECT head_name FROM household WHERE id = '3273011001900001'", -1,
                       &q, NULL);
    CHECK(sqlite3_step(q) == SQLITE_ROW &&
          strcmp((const char *)sqlite3_column_text(q, 0), stored) == 0);
    sqlite3_finalize(q);
    CHECK_EQ_INT(pd_fixture_int(db, "SELECT count(*) FROM member WHERE name = 'Robert'') DROP'"),
                 0);
    CHECK(pd_fixture_int(db, "SELECT count(*) FROM household") > 1);
    free(pkg);
}

static void malformed_records(void)
{
    char good[4096];
    pd_fixture_payload(good, sizeof good, "Budi Santoso");
    struct {
        const char *what, *find, *replace;
        int code;
    } cases[] = {
        {"unknown key", "\"rev\":1,\"prov\"", "\"rev\":1,\"vip\":1,\"prov\"", PD_ERR_INVALID},
        {"repeated key", "\"rev\":1,\"prov\"", "\"rev\":1,\"rev\":2,\"prov\"", PD_ERR_INVALID},
        {"wrong type", "\"member_count\":2", "\"member_count\":\"2\"", PD_ERR_INVALID},
        {"not an integer", "\"member_count\":2", "\"member_count\":2.5", PD_ERR_INVALID},
        {"missing key", "\"head_name\":\"Budi Santoso\",", "", PD_ERR_INVALID},
        {"unknown type", "{\"type\":\"area\"", "{\"type\":\"zone\"", PD_ERR_INVALID},
        {"desa outside the area", "\"kec\":\"32.73.01\",\"desa\":\"32.73.01.1001\"",
         "\"kec\":\"32.73.02\",\"desa\":\"32.73.02.1001\"", PD_ERR_INVALID},
        {"area codes that do not nest", "\"kec\":\"32.73.01\"", "\"kec\":\"32.73.02\"",
         PD_ERR_INVALID},
        {"unreal desa", "\"desa\":\"32.73.01.1001\"", "\"desa\":\"32.73.01.1999\"",
         PD_ERR_INVALID},
        {"short NIK", "\"nik\":\"3273011203800001\"", "\"nik\":\"327301120380001\"",
         PD_ERR_INVALID},
        {"unknown code", "\"relationship\":1", "\"relationship\":42", PD_ERR_INVALID},
        {"unreal date", "\"birth_date\":\"1980-03-12\"", "\"birth_date\":\"1980-02-30\"",
         PD_ERR_INVALID},
        {"member id not household + number", "\"id\":\"327301100190000102\"",
         "\"id\":\"327301100190000103\"", PD_ERR_INVALID},
        {"GPS out of range", "\"lat\":-6.45", "\"lat\":-96.45", PD_ERR_INVALID},
        {"open ring", "-6.5 108.2\"}", "-6.5 108.25\"}", PD_ERR_INVALID},
        {"JSON syntax", "\"programmes\":4}", "\"programmes\":4,}", PD_ERR_INVALID},
        {"array", "{\"type\":\"area\"", "[{\"type\":\"area\"", PD_ERR_INVALID},
        {"empty line", "}\n{\"type\":\"household\"", "}\n\n{\"type\":\"household\"",
         PD_ERR_INVALID},
        {"member of another household",
         "\"id\":\"327301100190000102\",\"household_id\":\"3273011001900001\"",
         "\"id\":\"327301100190000202\",\"household_id\":\"3273011001900002\"",
         PD_ERR_CORRUPT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char payload[4200];
        const char *at = strstr(good, cases[i].find);
        REQUIRE_VOID_OK(at != NULL);
        size_t pre = (size_t)(at - good);
        snprintf(payload, sizeof payload, "%.*s%s%s", (int)pre, good, cases[i].replace,
                 at + strlen(cases[i].find));
        size_t len;
        uint8_t *pkg = raw_pkg(payload, 1, 1, 2, &len);
        refused(cases[i].what, pkg, len, cases[i].code);
        free(pkg);
    }
    /* a member before its household; the last record without its newline */
    char *member_first = malloc(8192);
    const char *hh = strstr(good, "{\"type\":\"household\"");
    const char *m1 = strstr(good, "{\"type\":\"member\"");
    snprintf(member_first, 8192, "%.*s%s%.*s", (int)(hh - good), good, m1, (int)(m1 - hh), hh);
    size_t len;
    uint8_t *pkg = raw_pkg(member_first, 1, 1, 2, &len);
    refused("member first", pkg, len, PD_ERR_CORRUPT);
    free(pkg);
    free(member_first);
    char cut[4096];
    snprintf(cut, sizeof cut, "%.*s", (int)strlen(good) - 1, good);
    pkg = raw_pkg(cut, 1, 1, 2, &len);
    refused("no final newline", pkg, len, PD_ERR_CORRUPT);
    free(pkg);
}

static void not_a_package_and_other_versions(void)
{
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    refused("junk", junk, sizeof junk, PD_ERR_INVALID);
    refused("empty", junk, 0, 0);
    size_t len;
    uint8_t *pkg = fixture_pkg("Budi Santoso", &len);
    pd_le16(pkg + PD_PL_OFF_VERSION, 2);
    pd_prelist_resign(pkg, T.sk);
    refused("version 2", pkg, len, PD_ERR_VERSION);
    free(pkg);
    /* declared sizes over the limits are refused before anything else is trusted */
    pkg = fixture_pkg("Budi Santoso", &len);
    pd_le64(pkg + PD_PL_OFF_ZSIZE, (uint64_t)PD_PRELIST_MAX_COMPRESSED + 1);
    pd_prelist_resign(pkg, T.sk);
    refused("compressed size", pkg, len, PD_ERR_TOOBIG);
    free(pkg);
    pkg = fixture_pkg("Budi Santoso", &len);
    pd_le32(pkg + PD_PL_OFF_HOUSEHOLDS, PD_PRELIST_MAX_HOUSEHOLDS + 1);
    pd_prelist_resign(pkg, T.sk);
    refused("households limit", pkg, len, PD_ERR_TOOBIG);
    free(pkg);
    /* a signed header whose area id is not a real area (found by the fuzzer: it once looped) */
    pkg = fixture_pkg("Budi Santoso", &len);
    memset(pkg + PD_PL_OFF_AREA, 0, PD_PRELIST_AREA_ID_MAX);
    memcpy(pkg + PD_PL_OFF_AREA, "99.99", 5);
    pd_prelist_resign(pkg, T.sk);
    refused("unreal area id", pkg, len, PD_ERR_INVALID);
    CHECK(strstr(pd_store_errmsg(T.store), "real area") != NULL);
    free(pkg);
    /* a file that is not there */
    CHECK_EQ_INT(pd_prelist_import(T.store, "/nonexistent/x.pdpl", NULL, NULL), PD_ERR_NOTFOUND);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    T.dir = pd_test_tmpdir("prelist-pkg");
    T.file = pd_test_path(T.dir, "bad.pdpl");
    pd_fixture_issuer(1, T.pk, T.sk);
    pd_fixture_issuer(2, T.pk2, T.sk2);
    char *home = pd_test_path(T.dir, "home");
    pd_error e = {0};
    int rc = pd_store_create(&T.store, home, PD_FIXTURE_PIN, &PD_KDF_TEST, &e);
    if (rc != PD_OK)
        fprintf(stderr, "store: %s\n", e.msg);
    REQUIRE(rc == PD_OK);
    /* a store with data in it, and the issuer pinned */
    char *first = pd_test_path(T.dir, "first.pdpl");
    pd_prelist_gen_options o = {.seed = 1, .households = 40};
    REQUIRE(pd_prelist_generate_file(first, "32.73.01.1002", &o, T.sk, NULL, NULL) == PD_OK);
    REQUIRE(pd_prelist_import(T.store, first, T.pk, NULL) == PD_OK);

    RUN(a_package_round_trips);
    RUN(the_writer_refuses_what_the_reader_would);
    RUN(bad_signature_and_another_issuer);
    RUN(truncated_at_every_offset);
    RUN(every_header_bit_flipped);
    RUN(decompression_bombs);
    RUN(huge_and_long_names);
    RUN(invalid_utf8_and_control_characters);
    RUN(counts_that_lie);
    RUN(trailing_garbage);
    RUN(malformed_records);
    RUN(not_a_package_and_other_versions);
    RUN(sql_in_names_is_stored_verbatim);

    pd_store_close(T.store);
    pd_test_rmtree(T.dir);
    free(first);
    free(home);
    free(T.file);
    free(T.dir);
    return pd_test_finish();
}
