/*
 * test_sync_client.c — the sync client's pieces that need no server: SHA-1 (tus checksums)
 * against the FIPS vectors, the fingerprint format, receipts checked byte by byte, tus metadata,
 * and delta pages applied to a real store: one transaction with the cursor, bad input refused
 * with nothing changed (a page whose text hides \u0000 in a string too: cJSON would cut it), a
 * record not newer left alone, a local unacknowledged change kept, keyring names and areas kept
 * whole up to the server's limits (refused beyond).
 */
#include "test_sync_harness.h"
#include "testutil.h"

#include "pd_prelist.h"

static char *dir;

static void hex(char *out, const uint8_t *p, size_t n)
{
    pd_sync_hex(out, p, n);
}

static void test_sha1_matches_the_fips_vectors(void)
{
    uint8_t d[PD_TUS_SHA1_BYTES];
    char h[41];
    pd_tus_sha1((const uint8_t *)"abc", 3, d);
    hex(h, d, sizeof d);
    CHECK(!strcmp(h, "a9993e364706816aba3e25717850c26c9cd0d89d"));
    pd_tus_sha1((const uint8_t *)"", 0, d);
    hex(h, d, sizeof d);
    CHECK(!strcmp(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709"));
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    pd_tus_sha1((const uint8_t *)m, strlen(m), d);
    hex(h, d, sizeof d);
    CHECK(!strcmp(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1"));
    uint8_t *a = malloc(1000000);
    REQUIRE_VOID(a);
    memset(a, 'a', 1000000);
    pd_tus_sha1(a, 1000000, d);
    hex(h, d, sizeof d);
    CHECK(!strcmp(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"));
    /* 55, 56 and 64 bytes: the padding edge cases */
    pd_tus_sha1(a, 55, d);
    hex(h, d, sizeof d);
    CHECK(!strcmp(h, "c1c8bbdc22796e28c0e15163d20899b65621d65a"));
    pd_tus_sha1(a, 56, d);
    hex(h, d, sizeof d);
    CHECK(!strcmp(h, "c2db330f6083854c99d4b5bfb6e8f29f201be699"));
    pd_tus_sha1(a, 64, d);
    hex(h, d, sizeof d);
    CHECK(!strcmp(h, "0098ba824b5c16427bd7a1122a5a442a25ec644d"));
    free(a);
}

static void test_the_fingerprint_is_eight_groups_of_four_hex(void)
{
    uint8_t pk[PD_PUBKEY_BYTES], hash[PD_HASH_BYTES];
    for (size_t i = 0; i < sizeof pk; i++)
        pk[i] = (uint8_t)i;
    char fp[PD_SYNC_FINGERPRINT_LEN + 1], want[33], got[33];
    pd_sync_fingerprint(pk, fp);
    CHECK_EQ_INT(strlen(fp), PD_SYNC_FINGERPRINT_LEN);
    crypto_generichash(hash, sizeof hash, pk, sizeof pk, NULL, 0);
    hex(want, hash, 16);
    size_t k = 0;
    for (size_t i = 0; fp[i]; i++) {
        if (i % 5 == 4) {
            CHECK(fp[i] == '-');
            continue;
        }
        got[k++] = fp[i];
    }
    got[k] = '\0';
    CHECK(!strcmp(got, want));
}

static void make_receipt(uint8_t r[PD_RECEIPT_BYTES_V1], uint8_t status, const uint8_t *sk)
{
    memset(r, 0, PD_RECEIPT_BYTES_V1);
    memcpy(r, "PDRC", 4);
    r[4] = 1;
    r[5] = status;
    memset(r + 8, 0xAB, 32);  /* batch hash */
    memset(r + 40, 0xCD, 32); /* author */
    pd_sync_put_u64(r + 72, 7);
    pd_sync_put_u32(r + 80, 40);
    pd_sync_put_u32(r + 84, 2);
    pd_sync_put_u32(r + 88, 1);
    pd_sync_put_u64(r + 96, 1732400000000ULL);
    memcpy(r + 104, "a1b2c3d4e5f60718", 16);
    crypto_sign_detached(r + PD_RECEIPT_SIGNED_V1, NULL, r, PD_RECEIPT_SIGNED_V1, sk);
}

static void test_a_receipt_is_checked_byte_by_byte(void)
{
    uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES], pk2[PD_PUBKEY_BYTES], sk2[PD_SECKEY_BYTES];
    crypto_sign_keypair(pk, sk);
    crypto_sign_keypair(pk2, sk2);
    uint8_t r[PD_RECEIPT_BYTES_V1];
    pd_receipt out;
    pd_error e = {0};
    make_receipt(r, 1, sk);
    CHECK_EQ_INT(pd_receipt_parse(&out, r, sizeof r, pk, &e), PD_OK);
    CHECK_EQ_INT(out.status, 1);
    CHECK_EQ_INT(out.seq, 7);
    CHECK_EQ_INT(out.applied, 40);
    CHECK_EQ_INT(out.merged, 2);
    CHECK_EQ_INT(out.conflicted, 1);
    CHECK(!strcmp(out.device_id, "a1b2c3d4e5f60718"));
    CHECK_EQ_INT(pd_receipt_parse(&out, r, sizeof r, pk2, &e), PD_ERR_SIGNATURE);
    CHECK_EQ_INT(pd_receipt_parse(&out, r, sizeof r - 1, pk, &e), PD_ERR_CORRUPT);
    for (size_t i = 0; i < PD_RECEIPT_SIGNED_V1; i += 9) {
        uint8_t bad[PD_RECEIPT_BYTES_V1];
        memcpy(bad, r, sizeof bad);
        bad[i] ^= 0x10;
        CHECK(pd_receipt_parse(&out, bad, sizeof bad, pk, &e) != PD_OK);
    }
    make_receipt(r, 9, sk); /* signed, but no such status */
    CHECK_EQ_INT(pd_receipt_parse(&out, r, sizeof r, pk, &e), PD_ERR_CORRUPT);
}

static void test_tus_metadata_is_key_space_base64(void)
{
    const char *keys[] = {"kind", "hash"};
    const char *vals[] = {"photo", "ab"};
    char *m = NULL;
    CHECK_EQ_INT(pd_tus_metadata(&m, keys, vals, 2), PD_OK);
    CHECK(m && !strcmp(m, "kind cGhvdG8=,hash YWI="));
    free(m);
}

/* ---- deltas -----------------------------------------------------------------------------------
 */

static pd_store *store_with_prelist(const char *name)
{
    pd_store *s = th_device(dir, name, "enumerator");
    if (!s)
        return NULL;
    uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];
    crypto_sign_keypair(pk, sk);
    char *pkg = pd_test_path(dir, "p.pdpl");
    pd_prelist_gen_options go = {.seed = 3, .households = 5};
    pd_error e = {0};
    pd_prelist_import_stats st;
    if (pd_prelist_generate_file(pkg, TH_AREA, &go, sk, NULL, &e) != PD_OK ||
        pd_prelist_import(s, pkg, pk, &st) != PD_OK ||
        pd_sync_state_set_int(s, "cursor", 10) != PD_OK) {
        fprintf(stderr, "fixture: %s %s\n", e.msg, pd_store_errmsg(s));
        pd_store_close(s);
        s = NULL;
    }
    free(pkg);
    return s;
}

static int apply(pd_store *s, const char *json)
{
    int rc = pd_client_apply_delta_text(s, json, strlen(json), NULL);
    if (getenv("PD_TEST_VERBOSE") && rc != PD_OK)
        fprintf(stderr, "   apply: %s\n", pd_store_errmsg(s));
    return rc;
}

#define HH1 "3273011001000001"
#define M_REST "\"disability\":0,\"chronic_illness\":0,\"programmes\":0"
/* the required fields of a whole household row */
#define HH_REST                                                                                    \
    "\"sls\":\"RT 001 / RW 002\",\"address\":\"Jl. Baru 1\",\"member_count\":1,"                   \
    "\"asset_flags\":0,\"cattle\":0,\"goats\":0,\"pigs\":0,\"poultry\":0,\"land_m2\":0"

static void test_a_delta_page_is_applied_with_its_cursor(void)
{
    pd_store *s = store_with_prelist("d1");
    REQUIRE_VOID(s);
    char page[2048];
    snprintf(page, sizeof page,
             "{\"format\":\"pd-delta-1\",\"since\":10,\"cursor\":15,\"more\":false,"
             "\"server_time\":1,\"households\":[{\"id\":\"%s\",\"rev\":12,\"prov\":\"32\","
             "\"kab\":\"32.73\",\"kec\":\"32.73.01\",\"desa\":\"%s\"," HH_REST ","
             "\"head_name\":\"Siti\",\"roof_material\":2,\"status\":\"found\",\"hh_rowid\":999,"
             "\"future_field\":[1]}],"
             "\"members\":[{\"id\":\"%s09\",\"household_id\":\"%s\",\"rev\":13,\"member_no\":9,"
             "\"name\":\"Rina\",\"sex\":2,\"relationship\":3,\"status\":\"active\"," M_REST "}],"
             "\"conflicts\":[{\"id\":1}],\"keyring\":[],\"tasks\":[]}",
             HH1, TH_AREA, HH1, HH1);
    CHECK_EQ_INT(apply(s, page), PD_OK);
    CHECK_EQ_INT(th_count(s, "SELECT value FROM sync_state WHERE key = 'cursor'"), 15);
    CHECK_EQ_INT(th_count(s, "SELECT roof_material FROM household WHERE id = '" HH1 "'"), 2);
    CHECK_EQ_INT(th_count(s, "SELECT rev FROM household WHERE id = '" HH1 "'"), 12);
    CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM household WHERE status = 'found'"), 1);
    CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM member WHERE id = '" HH1 "09'"), 1);
    /* the server's hh_rowid is not taken */
    CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM household WHERE hh_rowid = 999"), 0);
    /* the same page again starts at the wrong cursor: refused */
    CHECK_EQ_INT(apply(s, page), PD_ERR_PROTOCOL);
    pd_store_close(s);
}

static void test_a_bad_record_anywhere_in_a_page_changes_nothing(void)
{
    pd_store *s = store_with_prelist("d2");
    REQUIRE_VOID(s);
    long long roof = th_count(s, "SELECT roof_material FROM household WHERE id = '" HH1 "'");
    static const char *const bad_members[] = {
        "{\"id\":\"" HH1 "09\",\"household_id\":\"" HH1 "\",\"rev\":13,\"member_no\":9,"
        "\"name\":\"Rina\",\"status\":\"zombie\"," M_REST "}",
        "{\"id\":\"" HH1 "09\",\"household_id\":\"" HH1 "\",\"rev\":13,\"member_no\":9,"
        "\"name\":\"Rina\",\"nik\":\"12345\"," M_REST "}",
        "{\"id\":\"" HH1 "09\",\"household_id\":\"" HH1 "\",\"rev\":13,\"member_no\":9,"
        "\"name\":17," M_REST "}",
        "{\"id\":\"" HH1 "09\",\"household_id\":\"9999999999999999\",\"rev\":13,"
        "\"member_no\":9,\"name\":\"Rina\"," M_REST "}",
        "[1,2]",
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(bad_members); i++) {
        char page[2048];
        snprintf(page, sizeof page,
                 "{\"format\":\"pd-delta-1\",\"since\":10,\"cursor\":15,\"more\":false,"
                 "\"households\":[{\"id\":\"%s\",\"rev\":12,\"prov\":\"32\",\"kab\":\"32.73\","
                 "\"kec\":\"32.73.01\",\"desa\":\"%s\",\"head_name\":\"X\"," HH_REST ","
                 "\"roof_material\":%lld}],\"members\":[%s],\"keyring\":[]}",
                 HH1, TH_AREA, roof == 3 ? 4LL : 3LL, bad_members[i]);
        int rc = apply(s, page);
        CHECK(rc == PD_ERR_PROTOCOL || rc == PD_ERR_INVALID);
        CHECK(pd_store_errmsg(s)[0] != '\0');
        CHECK_EQ_INT(th_count(s, "SELECT roof_material FROM household WHERE id = '" HH1 "'"), roof);
        CHECK_EQ_INT(th_count(s, "SELECT value FROM sync_state WHERE key = 'cursor'"), 10);
        CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM member WHERE id = '" HH1 "09'"), 0);
    }
    /* malformed pages */
    CHECK_EQ_INT(apply(s, "{\"format\":\"pd-delta-2\",\"since\":10,\"cursor\":15,\"more\":false}"),
                 PD_ERR_PROTOCOL);
    CHECK_EQ_INT(apply(s, "{\"format\":\"pd-delta-1\",\"since\":10,\"cursor\":9,\"more\":false}"),
                 PD_ERR_PROTOCOL);
    CHECK_EQ_INT(apply(s, "{\"format\":\"pd-delta-1\",\"since\":10,\"cursor\":11,\"more\":false,"
                          "\"keyring\":[{\"pk\":\"zz\",\"role\":\"enumerator\"}]}"),
                 PD_ERR_PROTOCOL);
    CHECK_EQ_INT(th_count(s, "SELECT value FROM sync_state WHERE key = 'cursor'"), 10);
    pd_store_close(s);
}

static void test_a_page_with_a_nul_escape_is_refused_whole(void)
{
    /* cJSON would hand out "Si" for "Si\u0000ti": a value nobody sent, stored without an error */
    pd_store *s = store_with_prelist("d4");
    REQUIRE_VOID(s);
    static const char fmt[] =
        "{\"format\":\"pd-delta-1\",\"since\":10,\"cursor\":15,\"more\":false,"
        "\"households\":[{\"id\":\"%s\",\"rev\":12,\"prov\":\"32\",\"kab\":\"32.73\","
        "\"kec\":\"32.73.01\",\"desa\":\"%s\",\"head_name\":\"%s\"," HH_REST "}],"
        "\"members\":[],\"keyring\":[]}";
    static const char *const names[] = {"Si\\u0000ti", "Siti\\\\u0000"};
    char page[2048];
    snprintf(page, sizeof page, fmt, HH1, TH_AREA, names[0]);
    CHECK_EQ_INT(apply(s, page), PD_ERR_PROTOCOL);
    CHECK(strstr(pd_store_errmsg(s), "\\u0000") != NULL);
    CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM household WHERE head_name = 'Si'"), 0);
    CHECK_EQ_INT(th_count(s, "SELECT rev FROM household WHERE id = '" HH1 "'"), 1);
    CHECK_EQ_INT(th_count(s, "SELECT value FROM sync_state WHERE key = 'cursor'"), 10);
    /* an escaped backslash followed by "u0000" is plain text, not a NUL: the page applies */
    snprintf(page, sizeof page, fmt, HH1, TH_AREA, names[1]);
    CHECK_EQ_INT(apply(s, page), PD_OK);
    CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM household WHERE head_name = 'Siti\\u0000'"), 1);
    CHECK_EQ_INT(th_count(s, "SELECT value FROM sync_state WHERE key = 'cursor'"), 15);
    pd_store_close(s);
}

/* A delta page that carries one keyring row with this name and area. */
static char *keyring_page(int64_t since, const char *name, const char *area)
{
    uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];
    crypto_sign_keypair(pk, sk);
    char pkhex[2 * PD_PUBKEY_BYTES + 1];
    hex(pkhex, pk, sizeof pk);
    size_t cap = strlen(name) + strlen(area) + 1024;
    char *page = malloc(cap);
    if (page)
        snprintf(page, cap,
                 "{\"format\":\"pd-delta-1\",\"since\":%lld,\"cursor\":%lld,\"more\":false,"
                 "\"households\":[],\"members\":[],\"keyring\":[{\"pk\":\"%s\",\"role\":"
                 "\"supervisor\",\"person_id\":\"S0099\",\"name\":\"%s\",\"supervisor_pk\":null,"
                 "\"area\":\"%s\",\"rev\":%lld}]}",
                 (long long)since, (long long)since + 1, pkhex, name, area, (long long)since + 1);
    return page;
}

static void test_keyring_names_and_areas_are_kept_whole_up_to_the_servers_limits(void)
{
    pd_store *s = store_with_prelist("d5");
    REQUIRE_VOID(s);
    /* a name of 255 bytes (two-byte letters) and the area list of a supervisor of many SLS */
    char name[PD_KEYRING_NAME_MAX + 2] = "", area[PD_KEYRING_AREA_MAX + 32] = "";
    for (int i = 0; i < 127; i++)
        strcat(name, "\xc3\x91");
    strcat(name, "a");
    while (strlen(area) + strlen("," TH_AREA) <= PD_KEYRING_AREA_MAX)
        strcat(area, area[0] ? "," TH_AREA : TH_AREA);
    CHECK_EQ_INT(strlen(name), PD_KEYRING_NAME_MAX);
    CHECK(strlen(area) > PD_KEYRING_AREA_MAX - 16 && strlen(area) <= PD_KEYRING_AREA_MAX);
    char *page = keyring_page(10, name, area);
    REQUIRE_VOID(page);
    CHECK_EQ_INT(apply(s, page), PD_OK);
    free(page);
    CHECK_EQ_INT(th_count(s, "SELECT length(CAST(name AS BLOB)) FROM keyring WHERE person_id = "
                             "'S0099'"),
                 PD_KEYRING_NAME_MAX);
    CHECK_EQ_INT(th_count(s, "SELECT length(area) FROM keyring WHERE person_id = 'S0099'"),
                 (long long)strlen(area));
    /* one byte more of either is refused, and nothing of the page is stored */
    strcat(name, "b");
    page = keyring_page(11, name, TH_AREA);
    REQUIRE_VOID(page);
    CHECK_EQ_INT(apply(s, page), PD_ERR_TOOBIG);
    CHECK(strstr(pd_store_errmsg(s), "S0099") != NULL);
    free(page);
    name[PD_KEYRING_NAME_MAX] = '\0';
    while (strlen(area) <= PD_KEYRING_AREA_MAX)
        strcat(area, "," TH_AREA);
    page = keyring_page(11, name, area);
    REQUIRE_VOID(page);
    CHECK_EQ_INT(apply(s, page), PD_ERR_TOOBIG);
    free(page);
    CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM keyring WHERE person_id = 'S0099'"), 1);
    CHECK_EQ_INT(th_count(s, "SELECT value FROM sync_state WHERE key = 'cursor'"), 11);
    pd_store_close(s);
}

static void test_a_record_not_newer_is_left_alone_and_local_changes_are_kept(void)
{
    pd_store *s = store_with_prelist("d3");
    REQUIRE_VOID(s);
    long long roof = th_count(s, "SELECT roof_material FROM household WHERE id = '" HH1 "'");
    long long mine = roof == 5 ? 6 : 5, theirs = roof == 2 ? 3 : 2;
    if (theirs == mine)
        theirs = 1;
    pd_value v = {.type = PD_VAL_INT, .i = mine};
    REQUIRE_VOID(pd_household_set(s, HH1, "roof_material", &v, NULL) == PD_OK);
    char page[2048];
    /* rev 1 is what the prelist had: not newer */
    snprintf(page, sizeof page,
             "{\"format\":\"pd-delta-1\",\"since\":10,\"cursor\":11,\"more\":false,"
             "\"households\":[{\"id\":\"%s\",\"rev\":1,\"prov\":\"32\",\"kab\":\"32.73\","
             "\"kec\":\"32.73.01\",\"desa\":\"%s\"," HH_REST ",\"roof_material\":%lld,"
             "\"head_name\":\"Tidak Berubah\"}]}",
             HH1, TH_AREA, theirs);
    CHECK_EQ_INT(apply(s, page), PD_OK);
    CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM household WHERE head_name = 'Tidak Berubah'"),
                 0);
    /* newer: the head name is taken, the roof (changed here, not sent yet) kept */
    snprintf(page, sizeof page,
             "{\"format\":\"pd-delta-1\",\"since\":11,\"cursor\":20,\"more\":false,"
             "\"households\":[{\"id\":\"%s\",\"rev\":20,\"prov\":\"32\",\"kab\":\"32.73\","
             "\"kec\":\"32.73.01\",\"desa\":\"%s\"," HH_REST ",\"roof_material\":%lld,"
             "\"head_name\":\"Berubah\"}]}",
             HH1, TH_AREA, theirs);
    pd_sync_stats st;
    memset(&st, 0, sizeof st);
    cJSON *j = cJSON_Parse(page);
    CHECK_EQ_INT(pd_client_apply_delta(s, j, &st), PD_OK);
    cJSON_Delete(j);
    CHECK_EQ_INT(st.fields_kept, 1);
    CHECK_EQ_INT(th_count(s, "SELECT count(*) FROM household WHERE head_name = 'Berubah'"), 1);
    CHECK_EQ_INT(th_count(s, "SELECT roof_material FROM household WHERE id = '" HH1 "'"), mine);
    CHECK_EQ_INT(th_count(s, "SELECT server_value FROM server_diff WHERE target = '" HH1 "'"),
                 theirs);
    CHECK_EQ_INT(th_count(s, "SELECT server_rev FROM server_diff WHERE target = '" HH1 "'"), 20);
    pd_store_close(s);
}

static void test_sync_needs_an_enrolled_device(void)
{
    pd_store *s = th_device(dir, "lonely", "enumerator");
    REQUIRE_VOID(s);
    CHECK_EQ_INT(pd_sync_run(s, NULL, NULL), PD_ERR_STATE);
    CHECK(strstr(pd_store_errmsg(s), "enroll") != NULL);
    pd_sync_options o = th_options();
    CHECK_EQ_INT(pd_sync_enroll(s, "ftp://example.org", "AAAA-BBBB-CCCC", NULL, NULL, &o, NULL),
                 PD_ERR_INVALID);
    CHECK_EQ_INT(
        pd_sync_enroll(s, "http://127.0.0.1:1/x?y=1", "AAAA-BBBB-CCCC", NULL, NULL, &o, NULL),
        PD_ERR_INVALID);
    CHECK_EQ_INT(pd_sync_enroll(s, "http://127.0.0.1:1", "AAAA-BBBB-CCCC", "abc", NULL, &o, NULL),
                 PD_ERR_INVALID);
    CHECK_EQ_INT(pd_sync_enroll(s, "http://127.0.0.1:1", "AAAA-BBBB-CCCC", NULL, "chief", &o, NULL),
                 PD_ERR_INVALID);
    pd_store_close(s);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    dir = pd_test_tmpdir("sync-client");
    RUN(test_sha1_matches_the_fips_vectors);
    RUN(test_the_fingerprint_is_eight_groups_of_four_hex);
    RUN(test_a_receipt_is_checked_byte_by_byte);
    RUN(test_tus_metadata_is_key_space_base64);
    RUN(test_a_delta_page_is_applied_with_its_cursor);
    RUN(test_a_bad_record_anywhere_in_a_page_changes_nothing);
    RUN(test_a_page_with_a_nul_escape_is_refused_whole);
    RUN(test_keyring_names_and_areas_are_kept_whole_up_to_the_servers_limits);
    RUN(test_a_record_not_newer_is_left_alone_and_local_changes_are_kept);
    RUN(test_sync_needs_an_enrolled_device);
    pd_test_rmtree(dir);
    free(dir);
    return pd_test_finish();
}
