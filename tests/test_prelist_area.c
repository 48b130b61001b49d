/*
 * test_prelist_area.c — the embedded Kemendagri area list (prelist/area.c): every row of the
 * CSVs is found by code with its name (quoted names unescaped), children come in code order and
 * add up to the list's totals, malformed codes are refused, and the synthetic boxes are
 * deterministic, nested and disjoint.
 */
#include "area_internal.h"
#include "testutil.h"

#include <string.h>

static void codes_are_found_with_their_names(void)
{
    CHECK(pd_area_exists("32"));
    CHECK(pd_area_exists("32.73"));
    CHECK(pd_area_exists("32.73.01"));
    CHECK(pd_area_exists("32.73.01.1001"));
    CHECK(strcmp(pd_area_name("32"), "Jawa Barat") == 0);
    CHECK(strcmp(pd_area_name("32.73"), "Kota Bandung") == 0);
    CHECK(strcmp(pd_area_name("32.73.01"), "Sukasari") == 0);
    CHECK(strcmp(pd_area_name("11.01.01.2001"), "Keude Bakongan") == 0);
    /* the last rows of each file */
    CHECK(strcmp(pd_area_name("96"), "Papua Barat Daya") == 0);
    /* RFC 4180 quoting: a comma inside, and "" for a quote */
    CHECK(strcmp(pd_area_name("12.07.28.1007"), "Lubuk Pakam I,II") == 0);
    CHECK(strcmp(pd_area_name("35.13.15.2017"), "Soka\"an") == 0);
    /* UTF-8 names survive */
    CHECK(strcmp(pd_area_name("53.07.01.2021"), "Regapu\xe2\x80\x99u") == 0);
}

static void unknown_and_malformed_codes_are_refused(void)
{
    const char *bad[] = {"",        "3",          "327",          "32.7",         "32-73",
                         "32.73.1", "32.73.01.1", "32.73.01.10011", "32.73.01.100a", "3273011001",
                         " 32",     "32.73.",     "32..73"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(!pd_area_exists(bad[i]));
        CHECK(pd_area_name(bad[i]) == NULL);
        pd_error e = {0};
        CHECK_EQ_INT(pd_area_lookup(bad[i], NULL, &e), PD_ERR_INVALID);
        CHECK(e.msg[0] != '\0');
    }
    CHECK(!pd_area_exists(NULL));
    CHECK(!pd_area_exists("32.73.01.9999")); /* well formed, not real */
    CHECK(!pd_area_exists("99"));
    pd_error e = {0};
    CHECK_EQ_INT(pd_area_lookup("32.73.01.9999", NULL, &e), PD_ERR_NOTFOUND);
    CHECK(strstr(e.msg, "32.73.01.9999") != NULL);
}

static void children_cover_the_whole_list(void)
{
    /* walk the tree from the provinces down: the totals of the idn-area-data README */
    size_t nprov = 0, nreg = 0, nkec = 0, ndesa = 0;
    static pd_area prov[64], reg[128], kec[256], desa[256];
    CHECK_EQ_INT(pd_area_children(NULL, prov, 64, &nprov, NULL), PD_OK);
    CHECK_EQ_INT(nprov, 38);
    for (size_t p = 0; p < nprov; p++) {
        size_t n = 0;
        CHECK_EQ_INT(pd_area_children(prov[p].code, reg, 128, &n, NULL), PD_OK);
        CHECK(n > 0 && n <= 128);
        nreg += n;
        for (size_t r = 0; r < n; r++) {
            CHECK(strncmp(reg[r].code, prov[p].code, 2) == 0);
            CHECK_EQ_INT(reg[r].level, PD_AREA_REGENCY);
            size_t k = 0;
            CHECK_EQ_INT(pd_area_children(reg[r].code, kec, 256, &k, NULL), PD_OK);
            CHECK(k <= 256);
            nkec += k;
            for (size_t i = 0; i < k; i++) {
                size_t d = 0;
                CHECK_EQ_INT(pd_area_children(kec[i].code, NULL, 0, &d, NULL), PD_OK);
                ndesa += d;
                if (i > 0)
                    CHECK(strcmp(kec[i - 1].code, kec[i].code) < 0);
            }
        }
    }
    CHECK_EQ_INT(nreg, 514);
    CHECK_EQ_INT(nkec, 7285);
    CHECK_EQ_INT(ndesa, 83762);
    size_t n = 0;
    CHECK_EQ_INT(pd_area_children("32.73.01", desa, 256, &n, NULL), PD_OK);
    CHECK_EQ_INT(n, 4);
    CHECK(strcmp(desa[0].code, "32.73.01.1001") == 0 && desa[0].level == PD_AREA_DESA);
    CHECK_EQ_INT(pd_area_children("32.73.01.1001", NULL, 0, &n, NULL), PD_OK);
    CHECK_EQ_INT(n, 0);
    /* cap smaller than the count: count still whole */
    CHECK_EQ_INT(pd_area_children("32.73", kec, 2, &n, NULL), PD_OK);
    CHECK_EQ_INT(n, 30);
}

static void digits_become_dotted_codes(void)
{
    char out[PD_AREA_CODE_MAX];
    CHECK_EQ_INT(pd_area_code_from_digits("327301", 6, out), PD_OK);
    CHECK(strcmp(out, "32.73.01") == 0);
    CHECK_EQ_INT(pd_area_code_from_digits("3273011001", 10, out), PD_OK);
    CHECK(strcmp(out, "32.73.01.1001") == 0);
    CHECK_EQ_INT(pd_area_code_from_digits("32", 2, out), PD_OK);
    CHECK(strcmp(out, "32") == 0);
    CHECK_EQ_INT(pd_area_code_from_digits("32730", 5, out), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_area_code_from_digits("32a301", 6, out), PD_ERR_INVALID);
}

static bool box_inside(const pd_area_box *in, const pd_area_box *out)
{
    return in->min_lat >= out->min_lat && in->max_lat <= out->max_lat &&
           in->min_lon >= out->min_lon && in->max_lon <= out->max_lon;
}

static void boxes_are_deterministic_nested_and_disjoint(void)
{
    static const char *const kecs[] = {"32.73.01", "11.01.01", "53.07.01", "94.01.01",
                                       "35.78.01", "31.71.01"};
    for (size_t k = 0; k < sizeof kecs / sizeof kecs[0]; k++) {
        if (!pd_area_exists(kecs[k]))
            continue;
        pd_area_box kb, kb2, pb;
        CHECK_EQ_INT(pd_area_box_of(kecs[k], &kb, NULL), PD_OK);
        CHECK_EQ_INT(pd_area_box_of(kecs[k], &kb2, NULL), PD_OK);
        CHECK(memcmp(&kb, &kb2, sizeof kb) == 0);
        char prov[3] = {kecs[k][0], kecs[k][1], 0};
        CHECK_EQ_INT(pd_area_box_of(prov, &pb, NULL), PD_OK);
        /* the kecamatan's centre lies in its province's extent */
        double clat = (kb.min_lat + kb.max_lat) / 2, clon = (kb.min_lon + kb.max_lon) / 2;
        CHECK(clat >= pb.min_lat && clat <= pb.max_lat && clon >= pb.min_lon &&
              clon <= pb.max_lon);
        static pd_area d[256];
        size_t n = 0;
        pd_area_children(kecs[k], d, 256, &n, NULL);
        pd_area_box b[256];
        for (size_t i = 0; i < n; i++) {
            CHECK_EQ_INT(pd_area_box_of(d[i].code, &b[i], NULL), PD_OK);
            CHECK(b[i].min_lat < b[i].max_lat && b[i].min_lon < b[i].max_lon);
            CHECK(box_inside(&b[i], &kb));
            for (size_t j = 0; j < i; j++) /* disjoint */
                CHECK(b[i].max_lat <= b[j].min_lat || b[j].max_lat <= b[i].min_lat ||
                      b[i].max_lon <= b[j].min_lon || b[j].max_lon <= b[i].min_lon);
        }
    }
    pd_area_box b;
    CHECK_EQ_INT(pd_area_box_of("32.73.01.9999", &b, NULL), PD_ERR_NOTFOUND);
    CHECK_EQ_INT(pd_area_box_of("nonsense", &b, NULL), PD_ERR_INVALID);
}

int main(void)
{
    RUN(codes_are_found_with_their_names);
    RUN(unknown_and_malformed_codes_are_refused);
    RUN(children_cover_the_whole_list);
    RUN(digits_become_dotted_codes);
    RUN(boxes_are_deterministic_nested_and_disjoint);
    return pd_test_finish();
}
