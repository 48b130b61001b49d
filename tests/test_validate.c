/*
 * test_validate.c — the field validators refuse what they must, with a message naming the field
 * and the reason, and pass what they must: NIK (every kind of defect, placeholders as warnings),
 * KK number, GPS fixes, dates, UTF-8 text and its limits, categorical codes, area codes, JPEG
 * photos; and the hybrid logical clock stays monotone when the wall clock goes back.
 */
#include "codes.h"
#include "internal.h"
#include "testutil.h"
#include "validate.h"
#include "visits_fixture.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* 2025-01-01T00:00:00Z and a fixed "now" mid-2024 for date checks. */
#define MS_2025 1735689600000LL
#define MS_2024_06_01 1717200000000LL

static int expect(int rc, int want, const pd_error *e, const char *fragment, const char *what)
{
    pd_test_checks++;
    if (rc != want || (fragment && !strstr(e->msg, fragment))) {
        pd_test_failures++;
        fprintf(stderr, "  %s: rc %d (want %d), message \"%s\" (want \"%s\")\n", what, rc, want,
                e->msg, fragment ? fragment : "");
        return 0;
    }
    return 1;
}

#define BAD(call, frag)                                                                            \
    do {                                                                                           \
        pd_error e_ = {0};                                                                         \
        pd_error *err = &e_;                                                                       \
        expect((call), PD_ERR_INVALID, err, frag, #call);                                          \
    } while (0)
#define GOOD(call)                                                                                 \
    do {                                                                                           \
        pd_error e_ = {0};                                                                         \
        pd_error *err = &e_;                                                                       \
        expect((call), PD_OK, err, NULL, #call);                                                   \
    } while (0)

static void nik_accepts_real_ones(void)
{
    pd_warnings w = {0};
    GOOD(pd_validate_nik("3273014508900001", 2, "1990-08-05", &w, err)); /* woman: 45 = 5 + 40 */
    GOOD(pd_validate_nik("3273010508900002", 1, "1990-08-05", &w, err));
    GOOD(pd_validate_nik("3273010508900002", 0, NULL, &w, err)); /* sex unknown */
    GOOD(pd_validate_nik("3273012902920001", 0, NULL, &w, err)); /* 29 Feb 1992 */
    GOOD(pd_validate_nik("3273016902000001", 2, NULL, &w, err)); /* 29 Feb 2000, woman */
    GOOD(pd_validate_nik("1101013112990001", 1, NULL, &w, err)); /* Aceh, 31 Dec 99 */
    CHECK_EQ_INT(w.count, 0);
}

static void nik_refuses_each_defect(void)
{
    BAD(pd_validate_nik(NULL, 0, NULL, NULL, err), "nik: missing");
    BAD(pd_validate_nik("", 0, NULL, NULL, err), "nik: missing");
    BAD(pd_validate_nik("327301450890001", 0, NULL, NULL, err), "must be 16 digits, got 15");
    BAD(pd_validate_nik("32730145089000012", 0, NULL, NULL, err), "must be 16 digits, got more");
    BAD(pd_validate_nik("32730145089O0001", 0, NULL, NULL, err), "character 12 is not a digit");
    BAD(pd_validate_nik("3273-14508900001", 0, NULL, NULL, err), "character 5 is not a digit");
    BAD(pd_validate_nik("9901014508900001", 0, NULL, NULL, err),
        "digits 1-6 (990101) are not a known kecamatan code (99.01.01)");
    BAD(pd_validate_nik("3273994508900001", 0, NULL, NULL, err), "not a known kecamatan code");
    BAD(pd_validate_nik("3273011513900001", 0, NULL, NULL, err), "month 13");
    BAD(pd_validate_nik("3273011500900001", 0, NULL, NULL, err), "month 00");
    BAD(pd_validate_nik("3273013002900001", 0, NULL, NULL, err),
        "day 30 of month 02 does not exist");
    BAD(pd_validate_nik("3273017002900001", 0, NULL, NULL, err), "day 30 (day - 40, a woman)");
    BAD(pd_validate_nik("3273012902930001", 0, NULL, NULL, err), "does not exist"); /* no 29 Feb */
    BAD(pd_validate_nik("3273010008900001", 0, NULL, NULL, err), "day 00");
    BAD(pd_validate_nik("3273014008900001", 0, NULL, NULL, err), "does not exist"); /* 40 */
    BAD(pd_validate_nik("3273017208900001", 0, NULL, NULL, err), "does not exist"); /* 72 */
    BAD(pd_validate_nik("3273013104900001", 0, NULL, NULL, err), "day 31 of month 04");
    BAD(pd_validate_nik("3273014508900001", 1, NULL, NULL, err), "means a woman, but sex is male");
    BAD(pd_validate_nik("3273010508900001", 2, NULL, NULL, err), "means a man");
    BAD(pd_validate_nik("3273014508900000", 2, NULL, NULL, err), "serial (digits 13-16) is 0000");
}

static void nik_placeholders_are_warnings(void)
{
    static const struct {
        const char *nik, *meaning;
    } cases[] = {{"9999999999999994", "refused"},
                 {"9999999999999995", "under 17"},
                 {"9999999999999996", "17 or older"},
                 {"9999999999999999", "foreign"}};
    for (size_t i = 0; i < PD_ARRAY_LEN(cases); i++) {
        pd_warnings w = {0};
        GOOD(pd_validate_nik(cases[i].nik, 1, "1990-01-01", &w, err));
        CHECK_EQ_INT(w.count, 1);
        CHECK(pd_warnings_has(&w, PD_WARN_NIK_PLACEHOLDER));
        CHECK(strstr(w.item[0].msg, cases[i].meaning) != NULL);
    }
    /* Other 99...9x numbers are not placeholders: province 99 does not exist. */
    BAD(pd_validate_nik("9999999999999997", 0, NULL, NULL, err), "not a known kecamatan code");
}

static void nik_birth_date_mismatch_is_a_warning(void)
{
    pd_warnings w = {0};
    GOOD(pd_validate_nik("3273014508900001", 2, "1990-08-06", &w, err));
    CHECK(pd_warnings_has(&w, PD_WARN_NIK_BIRTH_DATE));
    CHECK(strstr(w.item[0].msg, "1990-08-06") != NULL);
    pd_warnings w2 = {0};
    GOOD(pd_validate_nik("3273014508900001", 2, "1990-08-05", &w2, err));
    CHECK_EQ_INT(w2.count, 0);
}

static void kk_numbers(void)
{
    GOOD(pd_validate_kk("3273011203150001", MS_2025, err)); /* issued 12-03-2015 */
    GOOD(pd_validate_kk("3273011506240001", MS_2025, err)); /* 15-06-2024 */
    GOOD(pd_validate_kk("3273011203950001", MS_2025, err)); /* 1995 */
    BAD(pd_validate_kk("3273011506240001", MS_2024_06_01, err), "is in the future");
    BAD(pd_validate_kk("3273013002150001", MS_2025, err), "does not exist");
    BAD(pd_validate_kk("3273015202150001", MS_2025, err), "does not exist"); /* no +40 in a KK */
    BAD(pd_validate_kk("3273011203150000", MS_2025, err), "serial (digits 13-16) is 0000");
    BAD(pd_validate_kk("9901011203150001", MS_2025, err), "not a known kecamatan code");
    BAD(pd_validate_kk("327301120315001", MS_2025, err), "kk: must be 16 digits");
    BAD(pd_validate_kk("32730112031500x1", MS_2025, err), "not a digit");
}

static pd_gps fix_at(double lat, double lon, double acc, int64_t t)
{
    pd_gps g = {.lat = lat,
                .lon = lon,
                .accuracy = acc,
                .altitude = NAN,
                .fix_time = t,
                .provider = "gps",
                .mock = 0};
    return g;
}

static void gps_fixes(void)
{
    int64_t now = MS_2025;
    pd_warnings w = {0};
    pd_gps g = fix_at(-6.8731, 107.5905, 4.0, now - 1000);
    GOOD(pd_validate_gps(&g, now, &w, err));
    CHECK_EQ_INT(w.count, 0);
    g.altitude = 760.0;
    GOOD(pd_validate_gps(&g, now, NULL, err));

    g = fix_at(91.0, 107.0, 5, now);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.lat: 91.000000 is outside -90..90");
    g = fix_at(-90.5, 107.0, 5, now);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.lat");
    g = fix_at(-6.9, -180.01, 5, now);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.lon: -180.010000 is outside -180..180");
    g = fix_at(NAN, 107.0, 5, now);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.lat: not a finite number");
    g = fix_at(-6.9, INFINITY, 5, now);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.lon: not a finite number");
    g = fix_at(-6.9, 107.6, 0.0, now);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.accuracy");
    g = fix_at(-6.9, 107.6, -3.0, now);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.accuracy");
    g = fix_at(-6.9, 107.6, NAN, now);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.accuracy");
    g = fix_at(-6.9, 107.6, 5, now + PD_GPS_SKEW_MS + 1000);
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.fix_time: 121 s in the future");
    g = fix_at(-6.9, 107.6, 5, now + PD_GPS_SKEW_MS - 1000); /* within the skew */
    GOOD(pd_validate_gps(&g, now, NULL, err));
    g = fix_at(-6.9, 107.6, 5, 1700000000); /* seconds, not milliseconds */
    BAD(pd_validate_gps(&g, now, NULL, err), "before 2000");
    g = fix_at(-6.9, 107.6, 5, now);
    g.altitude = 12000;
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.altitude");
    g.altitude = NAN;
    g.provider = "satellite";
    BAD(pd_validate_gps(&g, now, NULL, err), "gps.provider: 'satellite'");
    BAD(pd_validate_gps(NULL, now, NULL, err), "gps: missing");

    pd_warnings w2 = {0};
    g = fix_at(48.8584, 2.2945, 80.0, now); /* Paris, poor accuracy, mocked */
    g.mock = 1;
    GOOD(pd_validate_gps(&g, now, &w2, err));
    CHECK(pd_warnings_has(&w2, PD_WARN_GPS_OUTSIDE_COUNTRY));
    CHECK(pd_warnings_has(&w2, PD_WARN_GPS_ACCURACY));
    CHECK(pd_warnings_has(&w2, PD_WARN_GPS_MOCK));
    CHECK_EQ_INT(w2.count, 3);
    char joined[128];
    pd_warnings_join(&w2, joined, sizeof joined);
    CHECK(strcmp(joined, "gps_outside_indonesia,gps_accuracy,gps_mock") == 0);
}

static void dates(void)
{
    GOOD(pd_validate_date("birth_date", "1990-08-05", MS_2025, err));
    GOOD(pd_validate_date("birth_date", "2000-02-29", MS_2025, err));
    BAD(pd_validate_date("birth_date", "1900-02-29", MS_2025, err), "does not exist");
    BAD(pd_validate_date("birth_date", "2024-02-30", MS_2025, err),
        "birth_date: 2024-02-30 does not exist");
    BAD(pd_validate_date("birth_date", "2024-13-01", MS_2025, err), "does not exist");
    BAD(pd_validate_date("birth_date", "24-01-01", MS_2025, err), "is not a date YYYY-MM-DD");
    BAD(pd_validate_date("birth_date", "2024/01/01", MS_2025, err), "is not a date");
    BAD(pd_validate_date("birth_date", "2025-01-02", MS_2025, err), "is in the future");
    BAD(pd_validate_date("birth_date", "1899-12-31", MS_2025, err), "before 1900");
    BAD(pd_validate_date("birth_date", NULL, MS_2025, err), "birth_date: missing");
}

static void text_utf8_and_limits(void)
{
    GOOD(pd_validate_text("name", "Siti Nurhaliza", PD_NAME_MAX, 0, err));
    GOOD(
        pd_validate_text("name", "S\xC3\xADti \xE2\x80\x94 \xF0\x9F\x98\x80", PD_NAME_MAX, 0, err));
    GOOD(pd_validate_text("name", "Robert'); DROP TABLE member;--", PD_NAME_MAX, 0, err));
    BAD(pd_validate_text("name", "Siti \xC3\x28", PD_NAME_MAX, 0, err), "name: not valid UTF-8");
    BAD(pd_validate_text("name", "\xC0\xAF", PD_NAME_MAX, 0, err),
        "not valid UTF-8"); /* overlong */
    BAD(pd_validate_text("name", "\xE0\x80\xAF", PD_NAME_MAX, 0, err), "not valid UTF-8");
    BAD(pd_validate_text("name", "\xED\xA0\x80", PD_NAME_MAX, 0, err),
        "not valid UTF-8"); /* surrogate */
    BAD(pd_validate_text("name", "\xF4\x90\x80\x80", PD_NAME_MAX, 0, err), "not valid UTF-8");
    BAD(pd_validate_text("name", "ab\xE2\x82", PD_NAME_MAX, 0, err), "not valid UTF-8"); /* cut */
    BAD(pd_validate_text("name", "\xFF", PD_NAME_MAX, 0, err), "not valid UTF-8");
    BAD(pd_validate_text("name", "a\x01", PD_NAME_MAX, 0, err), "control character 0x01 at byte 1");
    BAD(pd_validate_text("name", "two\nlines", PD_NAME_MAX, 0, err), "control character 0x0A");
    GOOD(pd_validate_text("notes", "two\nlines\tok", PD_NOTES_MAX, 1, err));
    char big[PD_NAME_MAX + 2];
    memset(big, 'a', sizeof big - 1);
    big[PD_NAME_MAX + 1] = '\0';
    BAD(pd_validate_text("name", big, PD_NAME_MAX, 0, err), "name: longer than 100 bytes");
    big[PD_NAME_MAX] = '\0';
    GOOD(pd_validate_text("name", big, PD_NAME_MAX, 0, err));
    /* 100 bytes, but a 2-byte character cut at the end: not UTF-8 */
    big[PD_NAME_MAX - 1] = (char)0xC3;
    BAD(pd_validate_text("name", big, PD_NAME_MAX, 0, err), "not valid UTF-8");
    /* a 10 MB name is refused without reading it all */
    size_t huge = 10u << 20;
    char *h = malloc(huge + 1);
    if (!h) {
        CHECK(h != NULL);
        return;
    }
    memset(h, 'x', huge);
    h[huge] = '\0';
    BAD(pd_validate_text("name", h, PD_NAME_MAX, 0, err), "longer than 100 bytes");
    free(h);
}

static void codes_and_areas(void)
{
    GOOD(pd_validate_code("relationship", 1, err));
    GOOD(pd_validate_code("relationship", 9, err));
    BAD(pd_validate_code("relationship", 10, err), "relationship: 10 is not a known code (1..9)");
    BAD(pd_validate_code("sex", 3, err), "sex: 3 is not a known code (1..2)");
    BAD(pd_validate_code("sex", 0, err), "sex: 0");
    GOOD(pd_validate_code("disability", 0, err));
    CHECK(strcmp(pd_code_label("sex", 2), "perempuan") == 0);
    CHECK(pd_code_label("tenure", 9) == NULL);
    CHECK(strcmp(pd_code_bit_label("programmes", PD_PROG_PKH), "PKH") == 0);

    GOOD(pd_validate_area("desa", "32.73.01.1001", err));
    GOOD(pd_validate_area("kec", "32.73.01", err));
    GOOD(pd_validate_area("kab", "32.73", err));
    GOOD(pd_validate_area("prov", "32", err));
    BAD(pd_validate_area("desa", "32.73.01.9999", err),
        "desa: 32.73.01.9999 is not a real area code");
    BAD(pd_validate_area("kec", "32.73.99", err), "not a real area code");
    BAD(pd_validate_area("desa", "3273011001", err), "is not an area code");
    BAD(pd_validate_area("desa", "32.73.01.1001'; --", err), "is not an area code");
    BAD(pd_validate_area("desa", "", err), "desa: missing");

    BAD(pd_validate_visit_outcome("visited", err), "outcome: 'visited' is not one of found,");
    GOOD(pd_validate_visit_outcome("all_deceased", err));
    BAD(pd_validate_member_outcome("alive", err), "member outcome: 'alive'");
    BAD(pd_validate_photo_kind("selfie", err), "photo kind: 'selfie' is not one of front");
    GOOD(pd_validate_photo_kind("roof", err));
}

static void jpeg_photos(void)
{
    uint8_t buf[512];
    size_t n = pd_fixture_jpeg(buf, 1, 1, 7);
    GOOD(pd_validate_jpeg(buf, n, err));
    size_t n2 = pd_fixture_jpeg(buf, 64, 48, 8);
    GOOD(pd_validate_jpeg(buf, n2, err));
    n = pd_fixture_jpeg(buf, 1, 1, 7);

    uint8_t bad[512];
    BAD(pd_validate_jpeg((const uint8_t *)"\x89PNG\r\n\x1a\n....", 12, err),
        "not a JPEG (does not start with FF D8 FF)");
    BAD(pd_validate_jpeg(buf, n - 1, err), "no end-of-image marker");
    BAD(pd_validate_jpeg(buf, 0, err), "photo: empty");
    memcpy(bad, buf, n);
    /* The SOF0 segment starts after SOI (2) + COM (8) + DQT (69). */
    size_t sof = 2 + 8 + 69;
    CHECK(bad[sof] == 0xFF && bad[sof + 1] == 0xC0);
    bad[sof + 5] = 0, bad[sof + 6] = 0; /* height 0 */
    BAD(pd_validate_jpeg(bad, n, err), "frame header says 1x0 pixels");
    memcpy(bad, buf, n);
    bad[sof + 4] = 7; /* precision 7 */
    BAD(pd_validate_jpeg(bad, n, err), "sample precision 7");
    memcpy(bad, buf, n);
    bad[sof + 9] = 5; /* 5 components in an 11-byte header */
    BAD(pd_validate_jpeg(bad, n, err), "5 components");
    memcpy(bad, buf, n);
    bad[sof + 1] = 0xFE; /* the SOF turned into a comment: a scan with no frame header */
    BAD(pd_validate_jpeg(bad, n, err), "no frame header (SOF) before the image scan");
    memcpy(bad, buf, n);
    bad[sof + 2] = 0x7F; /* segment length past the end */
    BAD(pd_validate_jpeg(bad, n, err), "bad length");
    /* only SOI ... EOI */
    BAD(pd_validate_jpeg((const uint8_t *)"\xFF\xD8\xFF\xD9", 4, err), "no image scan");
    /* over the size limit: refused before reading */
    pd_error e = {0};
    CHECK_EQ_INT(pd_validate_jpeg(buf, (size_t)PD_PHOTO_MAX_BYTES + 1, &e), PD_ERR_TOOBIG);
    CHECK(strstr(e.msg, "over the") != NULL);
}

static void hlc_is_monotone(void)
{
    int64_t t = 1735689600000LL;
    int64_t a = pd_hlc_next(0, t);
    CHECK_EQ_INT(a, t << 16);
    int64_t b = pd_hlc_next(a, t); /* same millisecond: the counter */
    CHECK_EQ_INT(b, (t << 16) + 1);
    int64_t c = pd_hlc_next(b, t - 3600000); /* the clock went back an hour */
    CHECK(c > b);
    CHECK_EQ_INT(c >> 16, t);
    int64_t d = pd_hlc_next(c, t + 5); /* forward again: follows it, counter reset */
    CHECK_EQ_INT(d, (t + 5) << 16);
    /* a full counter carries into the milliseconds */
    int64_t full = (t << 16) | 0xFFFF;
    int64_t e = pd_hlc_next(full, t);
    CHECK(e > full);
    CHECK_EQ_INT(e, (t + 1) << 16);
    /* merge with a clock from elsewhere that is ahead */
    int64_t m = pd_hlc_merge(d, (t + 1000) << 16, t);
    CHECK(m > ((t + 1000) << 16));
    /* a long run with a wall clock that jumps about stays strictly increasing */
    int64_t last = 0;
    uint32_t x = 12345;
    int ok = 1;
    for (int i = 0; i < 100000; i++) {
        x = x * 1103515245u + 12345u;
        int64_t now = t + (int64_t)(x % 20000) - 10000;
        int64_t next = pd_hlc_next(last, now);
        ok &= next > last;
        last = next;
    }
    CHECK(ok);
}

static void geo_helpers(void)
{
    /* Bandung to Jakarta, about 118 km */
    double d = pd_geo_distance_m(-6.9175, 107.6191, -6.2088, 106.8456);
    CHECK(d > 110000 && d < 125000);
    CHECK(pd_geo_distance_m(1, 2, 1, 2) == 0.0);
    const char *box = "-6.90 107.60,-6.90 107.62,-6.88 107.62,-6.88 107.60,-6.90 107.60";
    CHECK_EQ_INT(pd_shape_contains(box, -6.89, 107.61), 1);
    CHECK_EQ_INT(pd_shape_contains(box, -6.87, 107.61), 0);
    CHECK_EQ_INT(pd_shape_contains(box, -6.89, 107.63), 0);
    CHECK_EQ_INT(pd_shape_contains("garbage", -6.89, 107.61), -1);
    CHECK_EQ_INT(pd_shape_contains("-6.9 107.6,-6.8 107.7", -6.89, 107.61), -1);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    RUN(nik_accepts_real_ones);
    RUN(nik_refuses_each_defect);
    RUN(nik_placeholders_are_warnings);
    RUN(nik_birth_date_mismatch_is_a_warning);
    RUN(kk_numbers);
    RUN(gps_fixes);
    RUN(dates);
    RUN(text_utf8_and_limits);
    RUN(codes_and_areas);
    RUN(jpeg_photos);
    RUN(hlc_is_monotone);
    RUN(geo_helpers);
    return pd_test_finish();
}
